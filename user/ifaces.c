// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Keeping the attachments in step with the configuration and the interfaces present. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sluice/abi.h>

#include "attach.h"
#include "ifaces.h"
#include "ifslots.h"
#include "log.h"
#include "state.h"

static struct iface_state *find(struct iface_set *s, __u32 ifindex)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->items[i].ifindex == ifindex)
			return &s->items[i];
	return NULL;
}

static void drop(struct iface_set *s, struct iface_state *it)
{
	*it = s->items[--s->n];
}

static bool present(const struct if_nameindex *ifs, __u32 ifindex)
{
	for (const struct if_nameindex *i = ifs; i->if_index; i++)
		if (i->if_index == ifindex)
			return true;
	return false;
}

/* Does the configuration want tc (egress and ingress) or XDP on this interface? */
static bool wants_tc(const struct daemon_config *cfg, const char *name)
{
	return config_match(&cfg->ifaces, name) != NULL;
}

static bool wants_xdp(const struct daemon_config *cfg, const char *name)
{
	return config_match(&cfg->xdp, name) != NULL;
}

/* The hooks the configuration wants on one interface, with its counter slot. */
static int attach_one(const struct datapath *dp, const struct daemon_config *cfg,
		      const char *pin_dir, const char *name, __u32 ifindex)
{
	enum attach_kind kind, ingress_kind;
	enum xdp_mode mode;
	int slot, err = 0;

	slot = ifslot_assign(dp->ifaces_fd, dp->totals_fd, ifindex);
	if (slot < 0) {
		pr_err("cannot assign counters to %s: %s", name, strerror(-slot));
		return slot;
	}
	if (wants_tc(cfg, name)) {
		err = attach_iface(pin_dir, dp->egress_prog_fd, dp->ingress_prog_fd, name, &kind,
				   &ingress_kind);
		if (err)
			return err;
		pr_info("attached to %s egress (%s) and ingress (%s)", name,
			attach_kind_name(kind), attach_kind_name(ingress_kind));
	}
	if (wants_xdp(cfg, name)) {
		err = attach_xdp(pin_dir, dp->xdp_prog_fd, name, &mode);
		if (!err)
			pr_info("attached to %s XDP (%s)", name, xdp_mode_name(mode));
	}
	return err;
}

/* The interface is gone: the kernel detached it; release what sluice kept for it. */
static void forget(const struct datapath *dp, const char *pin_dir, __u32 ifindex,
		   const char *name)
{
	int err = attach_forget(pin_dir, ifindex);

	if (err)
		pr_warn("cannot remove the pins of %s (ifindex %u): %s", name, ifindex,
			strerror(-err));
	ifslot_release(dp->ifaces_fd, ifindex);
	pr_info("%s (ifindex %u) is gone: its pins and counter slot are released", name, ifindex);
}

/* Start and reload: remove attachments that match nothing, clean pins of gone interfaces. */
static void prune(struct iface_set *s, const struct daemon_config *cfg, const struct datapath *dp,
		  const char *pin_dir)
{
	char name[IF_NAMESIZE], label[32];
	struct attachment *att;
	size_t n;
	int err = attach_list(pin_dir, &att, &n);

	if (err) {
		pr_warn("cannot list the attachments under %s: %s", pin_dir, strerror(-err));
		return;
	}
	for (size_t i = 0, next; i < n; i = next) {
		bool has_tc = false, has_xdp = false, tc, xdp;
		struct iface_state *it;

		/* One decision per interface, whatever its hooks. */
		for (next = i; next < n && att[next].ifindex == att[i].ifindex; next++) {
			if (strcmp(att[next].hook, SLUICE_PIN_PROG_XDP) == 0)
				has_xdp = true;
			else
				has_tc = true;
		}
		if (att[i].stale || !if_indextoname(att[i].ifindex, name)) {
			snprintf(label, sizeof(label), "interface %u", att[i].ifindex);
			forget(dp, pin_dir, att[i].ifindex, label);
			continue;
		}
		/* The configuration no longer names it for a hook: it decides, enforcement ends. */
		tc = wants_tc(cfg, name);
		xdp = wants_xdp(cfg, name);
		if (has_tc && !tc && detach_tc(pin_dir, att[i].ifindex, name) == 0)
			pr_warn("detached tc from %s: no interface line names or matches it", name);
		if (has_xdp && !xdp && detach_xdp(pin_dir, att[i].ifindex, name) == 0)
			pr_warn("detached XDP from %s: no xdp line names or matches it", name);
		if (tc || xdp)
			continue;
		ifslot_release(dp->ifaces_fd, att[i].ifindex);
		it = find(s, att[i].ifindex);
		if (it)
			drop(s, it);
	}
	free(att);
}

int ifaces_reconcile(struct iface_set *s, const struct daemon_config *cfg,
		     const struct datapath *dp, const char *pin_dir, const char *state_dir,
		     bool full)
{
	int lock = state_lock_writers(state_dir), first_err = 0;
	time_t now = time(NULL);
	struct if_nameindex *ifs;

	if (lock < 0)
		return lock;
	ifs = if_nameindex();
	if (!ifs) {
		first_err = -errno;
		pr_err("cannot list interfaces: %s", strerror(-first_err));
		close(lock);
		return first_err;
	}
	/* Gone: deleted, or moved to another namespace. The kernel detached it already. */
	for (size_t i = 0; i < s->n;) {
		struct iface_state *it = &s->items[i];

		if (present(ifs, it->ifindex)) {
			i++;
			continue;
		}
		forget(dp, pin_dir, it->ifindex, it->name);
		drop(s, it);
	}
	if (full)
		prune(s, cfg, dp, pin_dir);
	for (struct if_nameindex *i = ifs; i->if_index; i++) {
		struct iface_state *it = find(s, i->if_index);
		int err;

		if (it && strcmp(it->name, i->if_name) != 0) {
			pr_info("%s was renamed %s: enforcement follows the device", it->name,
				i->if_name);
			snprintf(it->name, sizeof(it->name), "%s", i->if_name);
		}
		if (!wants_tc(cfg, i->if_name) && !wants_xdp(cfg, i->if_name))
			continue;
		/* Attached already; a failed one is retried, but not in a tight loop. */
		if (it && !full && (!it->err || now - it->tried < IFACES_RETRY_SECONDS))
			continue;
		if (!it) {
			if (s->n == IFACES_MAX) {
				pr_err("cannot attach to %s: sluice tracks at most %d interfaces",
				       i->if_name, IFACES_MAX);
				first_err = first_err ?: -ENOSPC;
				continue;
			}
			it = &s->items[s->n++];
			memset(it, 0, sizeof(*it));
			it->ifindex = i->if_index;
			snprintf(it->name, sizeof(it->name), "%s", i->if_name);
		}
		it->tried = now;
		err = attach_one(dp, cfg, pin_dir, i->if_name, i->if_index);
		it->err = err;
		if (err && !first_err)
			first_err = err;
	}
	if_freenameindex(ifs);
	close(lock);
	return first_err;
}

bool ifaces_retry_due(const struct iface_set *s, time_t now)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->items[i].err && now - s->items[i].tried >= IFACES_RETRY_SECONDS)
			return true;
	return false;
}

json_t *ifaces_errors_json(const struct iface_set *s)
{
	json_t *a = json_array();

	for (size_t i = 0; i < s->n; i++)
		if (s->items[i].err)
			json_array_append_new(a, json_pack("{s:s,s:I,s:s}", "iface", s->items[i].name,
							   "ifindex", (json_int_t)s->items[i].ifindex,
							   "error", strerror(-s->items[i].err)));
	return a;
}

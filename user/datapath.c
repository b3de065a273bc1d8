// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Loading the BPF programs and their shared maps, pinned or private. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <sluice/abi.h>

#include "attach_cgroup.h"
#include "btf_layout.h"
#include "datapath.h"
#include "log.h"
#include "pins.h"
#include "sluice_bpf.skel.h"

/* What a refused adoption leaves, and what the admin can do (docs/operations.md, Upgrade). */
#define REFUSED_HOW                                                                          \
	"Its policy and counters stay in force; to change versions, run 'sluice detach --all' " \
	"(enforcement ends, counters restart) and start this one"

static void datapath_reset(struct datapath *dp)
{
	memset(dp, 0, sizeof(*dp));
	dp->egress_prog_fd = dp->ingress_prog_fd = dp->xdp_prog_fd = -1;
	for (int h = 0; h < CONNECT_HOOKS; h++)
		dp->connect_prog_fds[h] = -1;
	dp->policy_fd = dp->grace_fd = dp->config_fd = dp->dests_fd = dp->totals_fd = dp->ifaces_fd = -1;
	dp->frags_fd = dp->flows_fd = dp->rules_fd = -1;
	dp->events_fd = dp->event_config_fd = dp->event_limits_fd = dp->event_lost_fd = -1;
	dp->event_reported_fd = dp->local_addrs_fd = dp->local_gen_fd = dp->users_fd = -1;
	dp->budget = (struct budget_maps){ -1, -1, -1, -1, -1 };
}

/*
 * Do the pinned map's key and value types (its BTF, from the version that created it) lay
 * memory out as this build's do? Sizes can agree while a field changed meaning. A map
 * without BTF on either side cannot be compared: taken as it is.
 */
static bool same_btf_layout(const struct bpf_map *map, const struct btf *obj_btf,
			    const struct bpf_map_info *info, char *why, size_t len)
{
	struct btf *pinned;
	bool same = true;

	if (!obj_btf || !info->btf_id || !info->btf_value_type_id ||
	    !bpf_map__btf_value_type_id(map))
		return true;
	pinned = btf__load_from_kernel_by_id(info->btf_id);
	if (!pinned)
		return true;
	if (info->btf_key_type_id && bpf_map__btf_key_type_id(map))
		same = btf_same_layout(pinned, info->btf_key_type_id, obj_btf,
				       bpf_map__btf_key_type_id(map), why, len);
	if (same)
		same = btf_same_layout(pinned, info->btf_value_type_id, obj_btf,
				       bpf_map__btf_value_type_id(map), why, len);
	btf__free(pinned);
	return same;
}

/*
 * Does the map pinned at path (if any) have the layout this build's map needs? A pinned map
 * from another version with another layout cannot be adopted, and is never replaced behind
 * the admin's back (it holds the policy and counters in force): refuse, saying which map
 * differs and how. -EEXIST: it differs; 0: it fits, or there is none.
 */
static int check_pinned_layout(const struct bpf_map *map, const struct btf *obj_btf,
			       const char *path)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	const char *what = NULL;
	unsigned long have = 0, need = 0;
	char why[256];
	int fd = bpf_obj_get(path);

	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	close(fd);
	if (info.type != bpf_map__type(map))
		what = "map type", have = info.type, need = bpf_map__type(map);
	else if (info.key_size != bpf_map__key_size(map))
		what = "key size", have = info.key_size, need = bpf_map__key_size(map);
	else if (info.value_size != bpf_map__value_size(map))
		what = "value size", have = info.value_size, need = bpf_map__value_size(map);
	else if (info.max_entries != bpf_map__max_entries(map))
		what = "capacity", have = info.max_entries, need = bpf_map__max_entries(map);
	else if (info.map_flags != bpf_map__map_flags(map))
		what = "flags", have = info.map_flags, need = bpf_map__map_flags(map);
	if (what) {
		pr_err("the pinned map %s has another layout than this sluice needs (%s %lu, this "
		       "build: %lu): it comes from another sluice version. " REFUSED_HOW,
		       path, what, have, need);
		return -EEXIST;
	}
	if (!same_btf_layout(map, obj_btf, &info, why, sizeof(why))) {
		pr_err("the pinned map %s has another layout than this sluice needs (%s): it comes "
		       "from another sluice version. " REFUSED_HOW,
		       path, why);
		return -EEXIST;
	}
	return 0;
}

/*
 * Point every map at PIN_DIR/maps/NAME: libbpf reuses the pin or pins a new map. Every pin
 * that exists is checked first, so a layout change is refused with a precise message.
 */
static int set_map_pins(struct bpf_object *obj, const char *pin_dir)
{
	char path[PATH_MAX];
	struct bpf_map *map;

	bpf_object__for_each_map(map, obj) {
		int err;

		if (pin_path(path, sizeof(path), pin_dir, SLUICE_PIN_MAPS, bpf_map__name(map)) < 0) {
			pr_err("pin path too long under %s", pin_dir);
			return -ENAMETOOLONG;
		}
		err = check_pinned_layout(map, bpf_object__btf(obj), path);
		if (err == -EEXIST)
			return err;
		if (err) {
			pr_err("cannot read the pinned map %s: %s", path, strerror(-err));
			return err;
		}
		err = bpf_map__set_pin_path(map, path);
		if (err)
			return err;
	}
	return 0;
}

/* Replace PIN_DIR/progs/NAME with prog (the links keep the old program alive until updated). */
static int pin_program(struct bpf_program *prog, const char *pin_dir, const char *name)
{
	char path[PATH_MAX];
	int err;

	if (pin_path(path, sizeof(path), pin_dir, SLUICE_PIN_PROGS, name) < 0)
		return -ENAMETOOLONG;
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	err = bpf_program__pin(prog, path);
	if (err)
		pr_err("cannot pin program at %s: %s", path, strerror(-err));
	return err;
}

int datapath_load(struct datapath *dp, const char *pin_dir)
{
	struct sluice_bpf *skel;
	int err;

	datapath_reset(dp);
	skel = sluice_bpf__open();
	if (!skel) {
		err = -errno;
		pr_err("cannot open the BPF object: %s", strerror(-err));
		return err;
	}
	if (pin_dir) {
		err = set_map_pins(skel->obj, pin_dir);
		if (err)
			goto fail;
	}
	err = sluice_bpf__load(skel);
	if (err) {
		if (pin_dir)
			pr_err("cannot load the BPF programs: %s (if the maps pinned under %s come "
			       "from another sluice version, run 'sluice detach --all' first; -v "
			       "shows details)",
			       strerror(-err), pin_dir);
		else
			pr_err("cannot load the BPF programs: %s (-v shows the verifier log)",
			       strerror(-err));
		goto fail;
	}
	if (pin_dir) {
		err = pin_program(skel->progs.sluice_tc_egress, pin_dir, SLUICE_PIN_PROG_TC_EGRESS);
		if (!err)
			err = pin_program(skel->progs.sluice_tc_ingress, pin_dir,
					  SLUICE_PIN_PROG_TC_INGRESS);
		if (!err)
			err = pin_program(skel->progs.sluice_xdp, pin_dir, SLUICE_PIN_PROG_XDP);
		if (!err)
			err = pin_program(skel->progs.sluice_connect4, pin_dir,
					  SLUICE_PIN_PROG_CONNECT4);
		if (!err)
			err = pin_program(skel->progs.sluice_connect6, pin_dir,
					  SLUICE_PIN_PROG_CONNECT6);
		if (!err)
			err = pin_program(skel->progs.sluice_sendmsg4, pin_dir,
					  SLUICE_PIN_PROG_SENDMSG4);
		if (!err)
			err = pin_program(skel->progs.sluice_sendmsg6, pin_dir,
					  SLUICE_PIN_PROG_SENDMSG6);
		if (err)
			goto fail;
	}
	dp->skel = skel;
	dp->egress_prog_fd = bpf_program__fd(skel->progs.sluice_tc_egress);
	dp->ingress_prog_fd = bpf_program__fd(skel->progs.sluice_tc_ingress);
	dp->xdp_prog_fd = bpf_program__fd(skel->progs.sluice_xdp);
	dp->connect_prog_fds[CONNECT_HOOK_CONNECT4] = bpf_program__fd(skel->progs.sluice_connect4);
	dp->connect_prog_fds[CONNECT_HOOK_CONNECT6] = bpf_program__fd(skel->progs.sluice_connect6);
	dp->connect_prog_fds[CONNECT_HOOK_SENDMSG4] = bpf_program__fd(skel->progs.sluice_sendmsg4);
	dp->connect_prog_fds[CONNECT_HOOK_SENDMSG6] = bpf_program__fd(skel->progs.sluice_sendmsg6);
	dp->policy_fd = bpf_map__fd(skel->maps.sluice_policy);
	dp->grace_fd = bpf_map__fd(skel->maps.sluice_grace);
	dp->config_fd = bpf_map__fd(skel->maps.sluice_config);
	dp->dests_fd = bpf_map__fd(skel->maps.sluice_dests);
	dp->totals_fd = bpf_map__fd(skel->maps.sluice_totals);
	dp->ifaces_fd = bpf_map__fd(skel->maps.sluice_ifaces);
	dp->frags_fd = bpf_map__fd(skel->maps.sluice_frags);
	dp->flows_fd = bpf_map__fd(skel->maps.sluice_flows);
	dp->rules_fd = bpf_map__fd(skel->maps.sluice_rules);
	dp->events_fd = bpf_map__fd(skel->maps.sluice_events);
	dp->event_config_fd = bpf_map__fd(skel->maps.sluice_event_config);
	dp->event_limits_fd = bpf_map__fd(skel->maps.sluice_event_limits);
	dp->event_lost_fd = bpf_map__fd(skel->maps.sluice_event_lost);
	dp->event_reported_fd = bpf_map__fd(skel->maps.sluice_event_reported);
	dp->local_addrs_fd = bpf_map__fd(skel->maps.sluice_local_addrs);
	dp->local_gen_fd = bpf_map__fd(skel->maps.sluice_local_gen);
	dp->users_fd = bpf_map__fd(skel->maps.sluice_users);
	dp->budget.targets_fd = bpf_map__fd(skel->maps.sluice_budget_targets);
	dp->budget.defs_fd = bpf_map__fd(skel->maps.sluice_budgets);
	dp->budget.sets_fd = bpf_map__fd(skel->maps.sluice_budget_sets);
	dp->budget.crossed_fd = bpf_map__fd(skel->maps.sluice_budget_crossed);
	dp->budget.usage_fd = bpf_map__fd(skel->maps.sluice_budget_usage);
	return 0;
fail:
	sluice_bpf__destroy(skel);
	return err;
}

void datapath_close(struct datapath *dp)
{
	/* Pinned objects stay: destroying the skeleton only drops this process's references. */
	sluice_bpf__destroy(dp->skel);
	datapath_reset(dp);
}

static const struct {
	const char *name;
	size_t offset;
} pinned_map_names[] = {
	{ "sluice_policy", offsetof(struct pinned_maps, policy_fd) },
	{ "sluice_grace", offsetof(struct pinned_maps, grace_fd) },
	{ "sluice_config", offsetof(struct pinned_maps, config_fd) },
	{ "sluice_dests", offsetof(struct pinned_maps, dests_fd) },
	{ "sluice_totals", offsetof(struct pinned_maps, totals_fd) },
	{ "sluice_ifaces", offsetof(struct pinned_maps, ifaces_fd) },
	{ "sluice_flows", offsetof(struct pinned_maps, flows_fd) },
	{ "sluice_rules", offsetof(struct pinned_maps, rules_fd) },
	{ "sluice_event_lost", offsetof(struct pinned_maps, event_lost_fd) },
	{ "sluice_users", offsetof(struct pinned_maps, users_fd) },
	{ "sluice_budget_targets", offsetof(struct pinned_maps, budget.targets_fd) },
	{ "sluice_budgets", offsetof(struct pinned_maps, budget.defs_fd) },
	{ "sluice_budget_sets", offsetof(struct pinned_maps, budget.sets_fd) },
	{ "sluice_budget_crossed", offsetof(struct pinned_maps, budget.crossed_fd) },
	{ "sluice_budget_usage", offsetof(struct pinned_maps, budget.usage_fd) },
};

int pinned_maps_open(const char *pin_dir, struct pinned_maps *m)
{
	char path[PATH_MAX];

	for (size_t i = 0; i < sizeof(pinned_map_names) / sizeof(pinned_map_names[0]); i++)
		*(int *)((char *)m + pinned_map_names[i].offset) = -1;
	for (size_t i = 0; i < sizeof(pinned_map_names) / sizeof(pinned_map_names[0]); i++) {
		int fd, err;

		if (pin_path(path, sizeof(path), pin_dir, SLUICE_PIN_MAPS, pinned_map_names[i].name) < 0)
			return -ENAMETOOLONG;
		fd = bpf_obj_get(path);
		if (fd < 0) {
			err = -errno;
			if (err == -ENOENT)
				pr_err("sluice is not loaded: no pinned maps under %s", pin_dir);
			else if (err == -EACCES || err == -EPERM)
				pr_err("cannot read %s: %s (sluice's state is readable by root only)",
				       path, strerror(-err));
			else
				pr_err("cannot open %s: %s", path, strerror(-err));
			pinned_maps_close(m);
			return err;
		}
		*(int *)((char *)m + pinned_map_names[i].offset) = fd;
	}
	return 0;
}

struct policy_maps datapath_policy_maps(const struct datapath *dp)
{
	return (struct policy_maps){ .policy_fd = dp->policy_fd, .grace_fd = dp->grace_fd,
				     .config_fd = dp->config_fd, .rules_fd = dp->rules_fd,
				     .budgets = &dp->budget };
}

struct policy_maps pinned_policy_maps(const struct pinned_maps *m)
{
	return (struct policy_maps){ .policy_fd = m->policy_fd, .grace_fd = m->grace_fd,
				     .config_fd = m->config_fd, .rules_fd = m->rules_fd,
				     .budgets = &m->budget };
}

void pinned_maps_close(struct pinned_maps *m)
{
	for (size_t i = 0; i < sizeof(pinned_map_names) / sizeof(pinned_map_names[0]); i++) {
		int *fd = (int *)((char *)m + pinned_map_names[i].offset);

		if (*fd >= 0)
			close(*fd);
		*fd = -1;
	}
}

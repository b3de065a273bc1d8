// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* tcx links (pinned), the clsact fallback for kernels without tcx, and XDP links. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <sluice/abi.h>

#include "attach.h"
#include "attach_cgroup.h"
#include "log.h"
#include "pins.h"

/* The uapi headers of older distributions predate tcx (Linux 6.6); the values are ABI. */
#ifndef BPF_TCX_INGRESS
#define BPF_TCX_INGRESS 46
#endif
#ifndef BPF_TCX_EGRESS
#define BPF_TCX_EGRESS 47
#endif

/* Our clsact filter's identity when tcx is unavailable. */
#define CLSACT_HANDLE 0x51ce
#define CLSACT_PRIORITY 1

/* Where each direction attaches, and the names of its pins. */
static const struct {
	const char *name;      /* program pin and link-pin prefix: NAME_IFINDEX */
	enum bpf_attach_type tcx;
	enum bpf_tc_attach_point tc;
} hooks[] = {
	[ATTACH_EGRESS] = { SLUICE_PIN_PROG_TC_EGRESS, BPF_TCX_EGRESS, BPF_TC_EGRESS },
	[ATTACH_INGRESS] = { SLUICE_PIN_PROG_TC_INGRESS, BPF_TCX_INGRESS, BPF_TC_INGRESS },
};

#define ATTACH_DIRS (sizeof(hooks) / sizeof(hooks[0]))

const char *attach_kind_name(enum attach_kind kind)
{
	static const char *const names[] = {
		[ATTACH_TCX] = "tcx",
		[ATTACH_CLSACT] = "clsact",
		[ATTACH_XDP_NATIVE] = "xdp native",
		[ATTACH_XDP_GENERIC] = "xdp generic",
	};

	return (unsigned)kind < sizeof(names) / sizeof(names[0]) ? names[kind] : "?";
}

/* bpffs refuses names with dots (reserved for its own files): tc_egress_IFINDEX. */
static int link_pin(char *buf, size_t len, const char *pin_dir, enum attach_dir dir,
		    unsigned ifindex)
{
	char name[32];

	snprintf(name, sizeof(name), "%s_%u", hooks[dir].name, ifindex);
	return pin_path(buf, len, pin_dir, SLUICE_PIN_LINKS, name);
}

int attach_adopt_link(const char *path, int prog_fd)
{
	int link_fd = bpf_obj_get(path), err;

	if (link_fd < 0)
		return -ENOENT;
	err = bpf_link_update(link_fd, prog_fd, NULL) ? -errno : 0;
	close(link_fd);
	if (!err)
		return 0;
	/* A link whose interface or cgroup went away cannot be updated: replace it. */
	pr_warn("pinned link %s is stale (%s); attaching anew", path, strerror(-err));
	unlink(path);
	return -ENOENT;
}

static int attach_clsact(int prog_fd, unsigned ifindex, enum attach_dir dir)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = hooks[dir].tc);
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = CLSACT_HANDLE, .priority = CLSACT_PRIORITY,
		    .prog_fd = prog_fd, .flags = BPF_TC_F_REPLACE);
	int err;

	err = bpf_tc_hook_create(&hook);
	if (err && err != -EEXIST)
		return err;
	return bpf_tc_attach(&hook, &opts);
}

static int detach_clsact(unsigned ifindex, enum attach_dir dir)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = hooks[dir].tc);
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = CLSACT_HANDLE, .priority = CLSACT_PRIORITY);

	return bpf_tc_detach(&hook, &opts);
}

/* True when the kernel refused the tcx attach type itself (a kernel older than 6.6). */
static bool tcx_unsupported(int err)
{
	return err == -EINVAL || err == -EOPNOTSUPP || err == -ENOTSUP;
}

static int attach_one(const char *pin_dir, int prog_fd, const char *ifname, unsigned ifindex,
		      enum attach_dir dir, enum attach_kind *kind)
{
	const char *where = dir == ATTACH_EGRESS ? "egress" : "ingress";
	char path[PATH_MAX];
	int link_fd, err;

	if (link_pin(path, sizeof(path), pin_dir, dir, ifindex) < 0)
		return -ENAMETOOLONG;

	if (attach_adopt_link(path, prog_fd) == 0) {
		*kind = ATTACH_TCX;
		return 0;
	}

	/* SLUICE_FORCE_CLSACT lets the tests exercise the fallback on a kernel with tcx. */
	if (getenv("SLUICE_FORCE_CLSACT"))
		link_fd = -EINVAL;
	else
		link_fd = bpf_link_create(prog_fd, ifindex, hooks[dir].tcx, NULL);
	if (link_fd < 0) {
		err = link_fd; /* libbpf >= 1.0 returns -errno */
		if (!tcx_unsupported(err)) {
			pr_err("cannot attach to %s %s: %s", ifname, where, strerror(-err));
			return err;
		}
		err = attach_clsact(prog_fd, ifindex, dir);
		if (err) {
			pr_err("cannot attach to %s %s (clsact): %s", ifname, where,
			       strerror(-err));
			return err;
		}
		*kind = ATTACH_CLSACT;
		return 0;
	}
	if (bpf_obj_pin(link_fd, path) < 0) {
		err = -errno;
		pr_err("cannot pin link for %s %s at %s: %s", ifname, where, path, strerror(-err));
		close(link_fd); /* the only reference: closing detaches */
		return err;
	}
	close(link_fd);
	*kind = ATTACH_TCX;
	return 0;
}

int attach_iface(const char *pin_dir, int egress_fd, int ingress_fd, const char *ifname,
		 enum attach_kind *egress_kind, enum attach_kind *ingress_kind)
{
	unsigned ifindex = if_nametoindex(ifname);
	int err;

	if (!ifindex) {
		pr_err("cannot attach to %s: no such interface", ifname);
		return -ENODEV;
	}
	/* Enforcement first: if recording replies fails, the interface is still policed. */
	err = attach_one(pin_dir, egress_fd, ifname, ifindex, ATTACH_EGRESS, egress_kind);
	if (!err)
		err = attach_one(pin_dir, ingress_fd, ifname, ifindex, ATTACH_INGRESS,
				 ingress_kind);
	return err;
}

const char *xdp_mode_name(enum xdp_mode mode)
{
	return mode == XDP_MODE_NATIVE ? "native" : "generic";
}

static int xdp_link_pin(char *buf, size_t len, const char *pin_dir, unsigned ifindex)
{
	char name[32];

	snprintf(name, sizeof(name), "%s_%u", SLUICE_PIN_PROG_XDP, ifindex);
	return pin_path(buf, len, pin_dir, SLUICE_PIN_LINKS, name);
}

/* How the XDP program on ifindex runs (a pinned link keeps the mode it was created with). */
static enum xdp_mode xdp_mode_of(unsigned ifindex)
{
	LIBBPF_OPTS(bpf_xdp_query_opts, q);

	if (bpf_xdp_query(ifindex, 0, &q) == 0 && q.attach_mode == XDP_ATTACHED_DRV)
		return XDP_MODE_NATIVE;
	return XDP_MODE_GENERIC;
}

int attach_xdp(const char *pin_dir, int prog_fd, const char *ifname, enum xdp_mode *mode)
{
	LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = XDP_FLAGS_DRV_MODE);
	unsigned ifindex = if_nametoindex(ifname);
	char path[PATH_MAX];
	int link_fd, err;

	if (!ifindex) {
		pr_err("cannot attach XDP to %s: no such interface", ifname);
		return -ENODEV;
	}
	if (xdp_link_pin(path, sizeof(path), pin_dir, ifindex) < 0)
		return -ENAMETOOLONG;

	if (attach_adopt_link(path, prog_fd) == 0) {
		*mode = xdp_mode_of(ifindex);
		return 0;
	}

	/* SLUICE_FORCE_XDP_GENERIC lets the tests choose generic mode on a driver with native. */
	*mode = XDP_MODE_NATIVE;
	if (getenv("SLUICE_FORCE_XDP_GENERIC"))
		link_fd = -EOPNOTSUPP;
	else
		link_fd = bpf_link_create(prog_fd, ifindex, BPF_XDP, &opts);
	if (link_fd == -EOPNOTSUPP || link_fd == -EINVAL) {
		/* The driver has no XDP of its own (or refuses this setup): run in the stack. */
		pr_debug("native XDP on %s: %s; using generic", ifname, strerror(-link_fd));
		opts.flags = XDP_FLAGS_SKB_MODE;
		*mode = XDP_MODE_GENERIC;
		link_fd = bpf_link_create(prog_fd, ifindex, BPF_XDP, &opts);
	}
	if (link_fd < 0) {
		err = link_fd;
		if (err == -EBUSY || err == -EEXIST)
			pr_err("cannot attach XDP to %s: another XDP program is attached there",
			       ifname);
		else
			pr_err("cannot attach XDP to %s: %s", ifname, strerror(-err));
		return err;
	}
	if (bpf_obj_pin(link_fd, path) < 0) {
		err = -errno;
		pr_err("cannot pin link for %s XDP at %s: %s", ifname, path, strerror(-err));
		close(link_fd); /* the only reference: closing detaches */
		return err;
	}
	close(link_fd);
	return 0;
}

static int detach_link_pin(const char *path)
{
	int fd = bpf_obj_get(path), err = 0;

	if (fd < 0)
		return -errno;
	/* Detach explicitly: other holders of the link (a running daemon) must not keep it. */
	if (bpf_link_detach(fd) < 0 && errno != ENOLINK)
		err = -errno;
	close(fd);
	if (unlink(path) < 0 && !err)
		err = -errno;
	return err;
}

/* The id of a program pinned under pin_dir, to recognise our clsact filters. */
static __u32 pinned_prog_id(const char *pin_dir, enum attach_dir dir)
{
	struct bpf_prog_info info = {};
	__u32 len = sizeof(info);
	char path[PATH_MAX];
	int fd;

	if (pin_path(path, sizeof(path), pin_dir, SLUICE_PIN_PROGS, hooks[dir].name) < 0)
		return 0;
	fd = bpf_obj_get(path);
	if (fd < 0)
		return 0;
	if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0)
		info.id = 0;
	close(fd);
	return info.id;
}

/* Remove our clsact filter from ifindex if it runs this pin directory's program. */
static int detach_clsact_ours(unsigned ifindex, enum attach_dir dir, __u32 prog_id)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = hooks[dir].tc);
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = CLSACT_HANDLE, .priority = CLSACT_PRIORITY);

	if (!prog_id || bpf_tc_query(&hook, &opts) < 0 || opts.prog_id != prog_id)
		return -ENOENT;
	return detach_clsact(ifindex, dir);
}

/* Detach one direction: its pinned link, else our clsact filter. -ENOENT: neither. */
static int detach_one(const char *pin_dir, unsigned ifindex, enum attach_dir dir)
{
	char path[PATH_MAX];
	int err;

	if (link_pin(path, sizeof(path), pin_dir, dir, ifindex) < 0)
		return -ENAMETOOLONG;
	err = detach_link_pin(path);
	if (err == -ENOENT)
		err = detach_clsact_ours(ifindex, dir, pinned_prog_id(pin_dir, dir));
	return err;
}

/* Whatever is not there is no error (an older sluice had no ingress); log the rest. */
static int detach_report(const char *ifname, const char *what, int err, int *found)
{
	if (!err) {
		(*found)++;
		return 0;
	}
	if (err == -ENOENT)
		return 0;
	pr_err("cannot detach from %s %s: %s", ifname, what, strerror(-err));
	return err;
}

static int detach_tc_found(const char *pin_dir, unsigned ifindex, const char *ifname, int *found)
{
	int e = detach_report(ifname, "egress", detach_one(pin_dir, ifindex, ATTACH_EGRESS), found);
	int i = detach_report(ifname, "ingress", detach_one(pin_dir, ifindex, ATTACH_INGRESS),
			      found);

	return e ?: i;
}

static int detach_xdp_found(const char *pin_dir, unsigned ifindex, const char *ifname, int *found)
{
	char path[PATH_MAX];

	if (xdp_link_pin(path, sizeof(path), pin_dir, ifindex) < 0)
		return -ENAMETOOLONG;
	return detach_report(ifname, "XDP", detach_link_pin(path), found);
}

int detach_tc(const char *pin_dir, unsigned ifindex, const char *ifname)
{
	int found = 0, err = detach_tc_found(pin_dir, ifindex, ifname, &found);

	return err ?: (found ? 0 : -ENOENT);
}

int detach_xdp(const char *pin_dir, unsigned ifindex, const char *ifname)
{
	int found = 0, err = detach_xdp_found(pin_dir, ifindex, ifname, &found);

	return err ?: (found ? 0 : -ENOENT);
}

int detach_iface(const char *pin_dir, const char *ifname)
{
	unsigned ifindex = if_nametoindex(ifname);
	int err, xdp_err, found = 0;

	if (!ifindex) {
		pr_err("cannot detach from %s: no such interface", ifname);
		return -ENODEV;
	}
	err = detach_tc_found(pin_dir, ifindex, ifname, &found);
	xdp_err = detach_xdp_found(pin_dir, ifindex, ifname, &found);
	err = err ?: xdp_err;
	if (!err && !found) {
		pr_err("sluice is not attached to %s", ifname);
		err = -ENOENT;
	}
	return err;
}

/* Is name a link pin of ours (NAME_IFINDEX for one of the hooks, or a cgroup hook's)? */
static bool is_link_pin(const char *name)
{
	size_t xdp_len = strlen(SLUICE_PIN_PROG_XDP);

	if (is_connect_link_pin(name))
		return true;
	if (strncmp(name, SLUICE_PIN_PROG_XDP, xdp_len) == 0 && name[xdp_len] == '_')
		return true;
	for (size_t i = 0; i < ATTACH_DIRS; i++) {
		size_t len = strlen(hooks[i].name);

		if (strncmp(name, hooks[i].name, len) == 0 && name[len] == '_')
			return true;
	}
	return false;
}

int detach_all(const char *pin_dir)
{
	char dir[PATH_MAX], path[PATH_MAX];
	__u32 prog_ids[ATTACH_DIRS];
	struct if_nameindex *ifs;
	struct dirent *de;
	int err = 0;
	DIR *d;

	for (size_t i = 0; i < ATTACH_DIRS; i++)
		prog_ids[i] = pinned_prog_id(pin_dir, i);
	if (pin_path(dir, sizeof(dir), pin_dir, SLUICE_PIN_LINKS, NULL) < 0)
		return -ENAMETOOLONG;
	d = opendir(dir);
	if (d) {
		while ((de = readdir(d))) {
			int ret;

			if (!is_link_pin(de->d_name))
				continue;
			if (pin_path(path, sizeof(path), dir, NULL, de->d_name) < 0)
				continue;
			ret = detach_link_pin(path);
			if (ret) {
				pr_err("cannot detach link %s: %s", path, strerror(-ret));
				if (!err)
					err = ret;
			}
		}
		closedir(d);
	}
	/* clsact filters leave no pin: find them by the program they run. */
	ifs = if_nameindex();
	for (struct if_nameindex *i = ifs; i && i->if_index; i++)
		for (size_t k = 0; k < ATTACH_DIRS; k++)
			detach_clsact_ours(i->if_index, k, prog_ids[k]);
	if_freenameindex(ifs);
	return err;
}

#define ATTACH_LIST_MAX 4096 /* attachments listed; a node has far fewer interfaces */

static int add_attachment(struct attachment **out, size_t *n, size_t *cap,
			  const struct attachment *a)
{
	if (*n == *cap) {
		size_t grown = *cap ? *cap * 2 : 16;
		struct attachment *p;

		if (grown > ATTACH_LIST_MAX)
			return -E2BIG;
		p = realloc(*out, grown * sizeof(*p));
		if (!p)
			return -ENOMEM;
		*out = p;
		*cap = grown;
	}
	(*out)[(*n)++] = *a;
	return 0;
}

/*
 * An interface's link pin's name is HOOK_IFINDEX: split it. The connect hooks' pins
 * (NAME_CGROUPID) are a cgroup's, not an interface's: not one of these.
 */
static bool parse_link_pin(const char *name, struct attachment *a)
{
	const char *us = strrchr(name, '_');
	char *end;
	unsigned long ifindex;

	if (is_connect_link_pin(name))
		return false;
	if (!us || us == name || (size_t)(us - name) >= sizeof(a->hook) || !us[1])
		return false;
	ifindex = strtoul(us + 1, &end, 10);
	if (*end || !ifindex || ifindex > UINT32_MAX)
		return false;
	memset(a, 0, sizeof(*a));
	memcpy(a->hook, name, us - name);
	a->ifindex = ifindex;
	return true;
}

static int by_ifindex(const void *a, const void *b)
{
	const struct attachment *x = a, *y = b;

	if (x->ifindex != y->ifindex)
		return x->ifindex < y->ifindex ? -1 : 1;
	return strcmp(x->hook, y->hook);
}

int attach_list(const char *pin_dir, struct attachment **out, size_t *n)
{
	char dir[PATH_MAX], path[PATH_MAX], name[IF_NAMESIZE];
	__u32 prog_ids[ATTACH_DIRS];
	struct if_nameindex *ifs;
	size_t cap = 0;
	struct dirent *de;
	int err = 0;
	DIR *d;

	*out = NULL;
	*n = 0;
	for (size_t k = 0; k < ATTACH_DIRS; k++)
		prog_ids[k] = pinned_prog_id(pin_dir, k);
	if (pin_path(dir, sizeof(dir), pin_dir, SLUICE_PIN_LINKS, NULL) < 0)
		return -ENAMETOOLONG;
	d = opendir(dir);
	if (!d && errno != ENOENT)
		return -errno;
	while (d && !err && (de = readdir(d))) {
		struct bpf_link_info info = {};
		__u32 len = sizeof(info);
		struct attachment a;
		int fd;

		if (!parse_link_pin(de->d_name, &a) ||
		    pin_path(path, sizeof(path), dir, NULL, de->d_name) < 0)
			continue;
		a.kind = ATTACH_TCX;
		if (strcmp(a.hook, SLUICE_PIN_PROG_XDP) == 0)
			a.kind = xdp_mode_of(a.ifindex) == XDP_MODE_NATIVE ? ATTACH_XDP_NATIVE
									  : ATTACH_XDP_GENERIC;
		fd = bpf_obj_get(path);
		if (fd >= 0) {
			if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) {
				a.link_id = info.id;
				a.prog_id = info.prog_id;
			}
			close(fd);
		}
		a.stale = !if_indextoname(a.ifindex, name);
		err = add_attachment(out, n, &cap, &a);
	}
	if (d)
		closedir(d);
	/* clsact filters leave no pin: ask each interface, each direction, for our filter. */
	ifs = (prog_ids[0] || prog_ids[1]) && !err ? if_nameindex() : NULL;
	for (struct if_nameindex *i = ifs; i && i->if_index && !err; i++) {
		for (size_t k = 0; k < ATTACH_DIRS && !err; k++) {
			LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = i->if_index,
				    .attach_point = hooks[k].tc);
			LIBBPF_OPTS(bpf_tc_opts, opts, .handle = CLSACT_HANDLE,
				    .priority = CLSACT_PRIORITY);
			struct attachment a = { .ifindex = i->if_index, .kind = ATTACH_CLSACT };

			if (!prog_ids[k] || bpf_tc_query(&hook, &opts) < 0 ||
			    opts.prog_id != prog_ids[k])
				continue;
			snprintf(a.hook, sizeof(a.hook), "%s", hooks[k].name);
			a.prog_id = opts.prog_id;
			err = add_attachment(out, n, &cap, &a);
		}
	}
	if (ifs)
		if_freenameindex(ifs);
	if (err) {
		free(*out);
		*out = NULL;
		*n = 0;
		return err;
	}
	if (*n)
		qsort(*out, *n, sizeof(**out), by_ifindex);
	return 0;
}

int attach_forget(const char *pin_dir, __u32 ifindex)
{
	char dir[PATH_MAX], path[PATH_MAX];
	struct dirent *de;
	int err = 0;
	DIR *d;

	if (pin_path(dir, sizeof(dir), pin_dir, SLUICE_PIN_LINKS, NULL) < 0)
		return -ENAMETOOLONG;
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	/* Every hook's pin for this interface: HOOK_IFINDEX. */
	while ((de = readdir(d))) {
		struct attachment a;

		if (!parse_link_pin(de->d_name, &a) || a.ifindex != ifindex ||
		    pin_path(path, sizeof(path), dir, NULL, de->d_name) < 0)
			continue;
		if (unlink(path) < 0 && errno != ENOENT && !err)
			err = -errno;
	}
	closedir(d);
	return err;
}

// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* tcx links (pinned) and the clsact fallback for kernels without tcx. */
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
#include <sluice/abi.h>

#include "attach.h"
#include "log.h"
#include "pins.h"

/* The uapi headers of older distributions predate tcx (Linux 6.6); the values are ABI. */
#ifndef BPF_TCX_EGRESS
#define BPF_TCX_EGRESS 47
#endif

/* Our clsact filter's identity when tcx is unavailable. */
#define CLSACT_HANDLE 0x51ce
#define CLSACT_PRIORITY 1

/* bpffs refuses names with dots (reserved for its own files): tc_egress_IFINDEX. */
#define LINK_PIN_PREFIX "tc_egress_"

const char *attach_kind_name(enum attach_kind kind)
{
	return kind == ATTACH_TCX ? "tcx" : "clsact";
}

static int link_pin(char *buf, size_t len, const char *pin_dir, unsigned ifindex)
{
	char name[32];

	snprintf(name, sizeof(name), LINK_PIN_PREFIX "%u", ifindex);
	return pin_path(buf, len, pin_dir, SLUICE_PIN_LINKS, name);
}

static int attach_clsact(int prog_fd, unsigned ifindex)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_EGRESS);
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = CLSACT_HANDLE, .priority = CLSACT_PRIORITY,
		    .prog_fd = prog_fd, .flags = BPF_TC_F_REPLACE);
	int err;

	err = bpf_tc_hook_create(&hook);
	if (err && err != -EEXIST)
		return err;
	return bpf_tc_attach(&hook, &opts);
}

static int detach_clsact(unsigned ifindex)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_EGRESS);
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = CLSACT_HANDLE, .priority = CLSACT_PRIORITY);

	return bpf_tc_detach(&hook, &opts);
}

/* True when the kernel refused the tcx attach type itself (a kernel older than 6.6). */
static bool tcx_unsupported(int err)
{
	return err == -EINVAL || err == -EOPNOTSUPP || err == -ENOTSUP;
}

int attach_egress(const char *pin_dir, int prog_fd, const char *ifname, enum attach_kind *kind)
{
	char path[PATH_MAX];
	unsigned ifindex = if_nametoindex(ifname);
	int link_fd, err;

	if (!ifindex) {
		pr_err("cannot attach to %s: no such interface", ifname);
		return -ENODEV;
	}
	if (link_pin(path, sizeof(path), pin_dir, ifindex) < 0)
		return -ENAMETOOLONG;

	/* Adopt: swap the program on the pinned link, so the interface is never unfiltered. */
	link_fd = bpf_obj_get(path);
	if (link_fd >= 0) {
		err = bpf_link_update(link_fd, prog_fd, NULL) ? -errno : 0;
		close(link_fd);
		if (!err) {
			*kind = ATTACH_TCX;
			return 0;
		}
		/* A link whose interface went away cannot be updated: replace it. */
		pr_warn("pinned link %s is stale (%s); attaching anew", path, strerror(-err));
		unlink(path);
	}

	/* SLUICE_FORCE_CLSACT lets the tests exercise the fallback on a kernel with tcx. */
	link_fd = getenv("SLUICE_FORCE_CLSACT") ? -EINVAL
						: bpf_link_create(prog_fd, ifindex, BPF_TCX_EGRESS, NULL);
	if (link_fd < 0) {
		err = link_fd; /* libbpf >= 1.0 returns -errno */
		if (!tcx_unsupported(err)) {
			pr_err("cannot attach to %s: %s", ifname, strerror(-err));
			return err;
		}
		err = attach_clsact(prog_fd, ifindex);
		if (err) {
			pr_err("cannot attach to %s (clsact): %s", ifname, strerror(-err));
			return err;
		}
		*kind = ATTACH_CLSACT;
		return 0;
	}
	if (bpf_obj_pin(link_fd, path) < 0) {
		err = -errno;
		pr_err("cannot pin link for %s at %s: %s", ifname, path, strerror(-err));
		close(link_fd); /* the only reference: closing detaches */
		return err;
	}
	close(link_fd);
	*kind = ATTACH_TCX;
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

/* The id of the program pinned under pin_dir, to recognise our clsact filters. */
static __u32 pinned_prog_id(const char *pin_dir)
{
	struct bpf_prog_info info = {};
	__u32 len = sizeof(info);
	char path[PATH_MAX];
	int fd;

	if (pin_path(path, sizeof(path), pin_dir, SLUICE_PIN_PROGS, "tc_egress") < 0)
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
static int detach_clsact_ours(unsigned ifindex, __u32 prog_id)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_EGRESS);
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = CLSACT_HANDLE, .priority = CLSACT_PRIORITY);

	if (!prog_id || bpf_tc_query(&hook, &opts) < 0 || opts.prog_id != prog_id)
		return -ENOENT;
	return detach_clsact(ifindex);
}

int detach_egress(const char *pin_dir, const char *ifname)
{
	char path[PATH_MAX];
	unsigned ifindex = if_nametoindex(ifname);
	int err;

	if (!ifindex) {
		pr_err("cannot detach from %s: no such interface", ifname);
		return -ENODEV;
	}
	if (link_pin(path, sizeof(path), pin_dir, ifindex) < 0)
		return -ENAMETOOLONG;
	err = detach_link_pin(path);
	if (err == -ENOENT)
		err = detach_clsact_ours(ifindex, pinned_prog_id(pin_dir));
	if (err == -ENOENT)
		pr_err("sluice is not attached to %s", ifname);
	else if (err)
		pr_err("cannot detach from %s: %s", ifname, strerror(-err));
	return err;
}

int detach_all(const char *pin_dir)
{
	char dir[PATH_MAX], path[PATH_MAX];
	__u32 prog_id = pinned_prog_id(pin_dir);
	struct if_nameindex *ifs;
	struct dirent *de;
	int err = 0;
	DIR *d;

	if (pin_path(dir, sizeof(dir), pin_dir, SLUICE_PIN_LINKS, NULL) < 0)
		return -ENAMETOOLONG;
	d = opendir(dir);
	if (d) {
		while ((de = readdir(d))) {
			int ret;

			if (strncmp(de->d_name, LINK_PIN_PREFIX, strlen(LINK_PIN_PREFIX)) != 0)
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
		detach_clsact_ours(i->if_index, prog_id);
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

/* A link pin's name is HOOK_IFINDEX: split it. */
static bool parse_link_pin(const char *name, struct attachment *a)
{
	const char *us = strrchr(name, '_');
	char *end;
	unsigned long ifindex;

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
	__u32 prog_id = pinned_prog_id(pin_dir);
	struct if_nameindex *ifs;
	size_t cap = 0;
	struct dirent *de;
	int err = 0;
	DIR *d;

	*out = NULL;
	*n = 0;
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
	/* clsact filters leave no pin: ask each interface for our filter. */
	ifs = prog_id && !err ? if_nameindex() : NULL;
	for (struct if_nameindex *i = ifs; i && i->if_index && !err; i++) {
		LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = i->if_index, .attach_point = BPF_TC_EGRESS);
		LIBBPF_OPTS(bpf_tc_opts, opts, .handle = CLSACT_HANDLE, .priority = CLSACT_PRIORITY);
		struct attachment a = { .hook = "tc_egress", .ifindex = i->if_index,
					.kind = ATTACH_CLSACT };

		if (bpf_tc_query(&hook, &opts) < 0 || opts.prog_id != prog_id)
			continue;
		a.prog_id = opts.prog_id;
		err = add_attachment(out, n, &cap, &a);
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

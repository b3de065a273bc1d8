/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Attaching the tc egress program to interfaces: a tcx link pinned under PIN_DIR/links
 * where the kernel has tcx (>= 6.6), a clsact filter otherwise. Re-attaching to an
 * interface that already has a pinned link swaps the program on that link, with no
 * window in which the interface is unfiltered.
 */
#ifndef SLUICE_ATTACH_H
#define SLUICE_ATTACH_H

#include <stdbool.h>
#include <stddef.h>
#include <linux/types.h>

enum attach_kind { ATTACH_TCX, ATTACH_CLSACT };

const char *attach_kind_name(enum attach_kind kind);
/* Attach (or re-attach) prog_fd to ifname's egress. */
int attach_egress(const char *pin_dir, int prog_fd, const char *ifname, enum attach_kind *kind);
/* Detach from one interface; -ENOENT when sluice was not attached there. */
int detach_egress(const char *pin_dir, const char *ifname);
/* Detach from every interface this pin directory's programs are attached to. */
int detach_all(const char *pin_dir);

/* One program of this pin directory attached to one interface, as the kernel has it. */
struct attachment {
	char hook[16];   /* "tc_egress", ... (the link pin's name without _IFINDEX) */
	__u32 ifindex;
	enum attach_kind kind;
	__u32 link_id;   /* 0 for clsact: a filter is not a link */
	__u32 prog_id;
	bool stale;      /* a link pin whose interface is gone */
};
/*
 * Every attachment: the pinned links (stale ones included) and the clsact filters running
 * this pin directory's program, ordered by ifindex. *out is malloc'd.
 */
int attach_list(const char *pin_dir, struct attachment **out, size_t *n);
/* Remove the link pins of ifindex, whose interface is gone (the kernel has detached them). */
int attach_forget(const char *pin_dir, __u32 ifindex);

#endif

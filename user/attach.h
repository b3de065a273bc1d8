/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Attaching the programs to interfaces. tc egress (enforcement) and ingress (recording
 * inbound flows): tcx links pinned under PIN_DIR/links (tc_egress_IFINDEX,
 * tc_ingress_IFINDEX) where the kernel has tcx (>= 6.6), clsact filters otherwise.
 * Re-attaching to an interface that already has a pinned link swaps the program on that
 * link, with no window in which the interface is unfiltered.
 */
#ifndef SLUICE_ATTACH_H
#define SLUICE_ATTACH_H

#include <stdbool.h>
#include <stddef.h>
#include <linux/types.h>

/* How a program is attached: tcx link, clsact filter, XDP link (driver or generic). */
enum attach_kind { ATTACH_TCX, ATTACH_CLSACT, ATTACH_XDP_NATIVE, ATTACH_XDP_GENERIC };
enum attach_dir { ATTACH_EGRESS, ATTACH_INGRESS };

const char *attach_kind_name(enum attach_kind kind);
/*
 * Adopt the link pinned at path: swap prog_fd in on it (the hook never goes empty). 0 when
 * done; -ENOENT when there is no usable link (none, or a stale one, now unpinned): attach
 * anew.
 */
int attach_adopt_link(const char *path, int prog_fd);
/* Attach (or re-attach) the egress and ingress programs to ifname, saying how each was. */
int attach_iface(const char *pin_dir, int egress_fd, int ingress_fd, const char *ifname,
		 enum attach_kind *egress_kind, enum attach_kind *ingress_kind);
/*
 * XDP on a gateway's inside interface: a link pinned under PIN_DIR/links (xdp_IFINDEX),
 * native where the driver supports XDP, generic (in the stack, after the skb is built)
 * otherwise. Re-attaching swaps the program on the pinned link, as for tc.
 */
enum xdp_mode { XDP_MODE_NATIVE, XDP_MODE_GENERIC };

const char *xdp_mode_name(enum xdp_mode mode);
int attach_xdp(const char *pin_dir, int prog_fd, const char *ifname, enum xdp_mode *mode);

/*
 * Detach every sluice program (tc egress, tc ingress, XDP) from one interface; -ENOENT when
 * sluice was attached there with none of them.
 */
int detach_iface(const char *pin_dir, const char *ifname);
/* Detach only the tc programs, or only XDP, from ifindex (named ifname in messages). */
int detach_tc(const char *pin_dir, unsigned ifindex, const char *ifname);
int detach_xdp(const char *pin_dir, unsigned ifindex, const char *ifname);
/* Detach from every interface (and cgroup) this pin directory's programs are attached to. */
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

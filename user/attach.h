/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Attaching the tc egress program to interfaces: a tcx link pinned under PIN_DIR/links
 * where the kernel has tcx (>= 6.6), a clsact filter otherwise. Re-attaching to an
 * interface that already has a pinned link swaps the program on that link, with no
 * window in which the interface is unfiltered.
 */
#ifndef SLUICE_ATTACH_H
#define SLUICE_ATTACH_H

#include <stddef.h>

enum attach_kind { ATTACH_TCX, ATTACH_CLSACT };

const char *attach_kind_name(enum attach_kind kind);
/* Attach (or re-attach) prog_fd to ifname's egress. */
int attach_egress(const char *pin_dir, int prog_fd, const char *ifname, enum attach_kind *kind);
/* Detach from one interface; -ENOENT when sluice was not attached there. */
int detach_egress(const char *pin_dir, const char *ifname);
/* Detach from every interface this pin directory's programs are attached to. */
int detach_all(const char *pin_dir);

#endif

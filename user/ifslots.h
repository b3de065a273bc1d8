/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Interface slots: each interface sluice attaches to gets a small slot number so the
 * datapath can keep its node totals in a per-CPU array (see sluice_ifaces in abi.h).
 */
#ifndef SLUICE_IFSLOTS_H
#define SLUICE_IFSLOTS_H

#include <linux/types.h>
#include <sluice/abi.h>

/* The slot of ifindex, assigning a free one (with zeroed totals) if it has none. */
int ifslot_assign(int ifaces_fd, int totals_fd, __u32 ifindex);
/* Give ifindex's slot back (its totals stay readable until the slot is reused). */
int ifslot_release(int ifaces_fd, __u32 ifindex);
/* slot -> ifindex for every assigned slot (0 where none): a walk of the whole table. */
int ifslot_table(int ifaces_fd, __u32 slot_ifindex[SLUICE_IFSLOTS]);
/*
 * The same for the interfaces of this network namespace only: one lookup per interface
 * instead of a walk of all SLUICE_IFINDEX_MAX indexes (what the read paths and scrapes
 * use). A slot whose interface is gone, or in another namespace, reads as 0 ("other").
 */
int ifslot_table_local(int ifaces_fd, __u32 slot_ifindex[SLUICE_IFSLOTS]);

#endif

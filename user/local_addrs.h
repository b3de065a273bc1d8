/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The node's own addresses in sluice_local_addrs, for XDP to tell packets for the node
 * (left to the stack) from packets to forward (policed). The daemon syncs the map at start
 * and whenever rtnetlink says an address came or went.
 */
#ifndef SLUICE_LOCAL_ADDRS_H
#define SLUICE_LOCAL_ADDRS_H

/*
 * Make map_fd hold exactly the addresses of this network namespace's interfaces, and their
 * IPv4 broadcast addresses, then move the set's generation (gen_fd, sluice_local_gen) on if
 * that changed anything. Returns how many it holds, or -errno (-ENOSPC: more than
 * SLUICE_LOCAL_ADDRS_MAX; those beyond are policed as if forwarded).
 */
int local_addrs_sync(int map_fd, int gen_fd);

#endif

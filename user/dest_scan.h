/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Walking the destination table in the kernel (bpf_for_each_map_elem from a syscall program,
 * or a BPF map iterator when more qualify than the first holds) and copying out only the
 * destinations with at least a given number of bytes: how a scrape finds the top N of a
 * million-entry table without a million copies.
 */
#ifndef SLUICE_DEST_SCAN_H
#define SLUICE_DEST_SCAN_H

#include <stdbool.h>
#include <linux/types.h>
#include <sluice/abi.h>
#include "output.h"

struct dest_scan;

/* Load the iterator program for dests_fd; NULL (logged at debug) if the kernel refuses. */
struct dest_scan *dest_scan_open(int dests_fd);
void dest_scan_close(struct dest_scan *s);

/*
 * Call cb for every destination with at least min_bytes bytes over all verdicts; *entries
 * gets the number of entries the walk saw. Not for concurrent use of one dest_scan.
 */
int dest_scan_run(struct dest_scan *s, __u64 min_bytes,
		  int (*cb)(const struct dest_row *row, void *ctx), void *ctx, __u64 *entries);

/*
 * Clear destination addr's usage of (destination) budget id in its entry, in place: 1 when it
 * had some, 0 when not, -errno (-EOPNOTSUPP: the kernel refused the syscall program).
 */
int dest_scan_budget_reset(struct dest_scan *s, __u32 budget, const struct sluice_addr *addr);

/* Walk with the iterator only (benchmarks and tests compare the two ways). */
void dest_scan_force_iterator(struct dest_scan *s, bool on);
/* Was the last walk the one without iterator (for tests: both ways must agree)? */
bool dest_scan_used_top(const struct dest_scan *s);

#endif

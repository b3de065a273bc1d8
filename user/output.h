/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Reading the counters back, shared by the read commands (and later the exporter). */
#ifndef SLUICE_OUTPUT_H
#define SLUICE_OUTPUT_H

#include <stddef.h>
#include <jansson.h>
#include <sluice/abi.h>

struct dest_row {
	struct sluice_addr addr;
	struct sluice_dest_stats stats;
	__u64 packets, bytes; /* over all verdicts */
};

/* The decision cached in a destination entry (as last written; its generation may be old). */
struct cached_decision {
	__u32 generation, rule_id, port_class;
	__u8 verdict, reason, flags;
};
void dest_cached_decision(const struct sluice_dest_stats *s, struct cached_decision *d);

/* Read every destination entry with batch lookups. *rows is malloc'd. */
int read_destinations(int dests_fd, struct dest_row **rows, size_t *n);

/* One node-total series: ifindex 0 means interfaces without a slot ("other"). */
struct total_row {
	__u32 ifindex;
	__u8 hook, verdict, reason;
	struct sluice_counter sum; /* over all CPUs */
};
/* Read the non-zero node totals (one batch lookup of the per-CPU array). */
int read_totals(int totals_fd, int ifaces_fd, struct total_row **rows, size_t *n);

/* The active policy's generation and mode flags (SLUICE_POLICY_F_*); -ENOENT if none. */
int read_policy_state(int policy_fd, int config_fd, __u32 *generation, __u8 *flags);

/* Print JSON to stdout (indented, key order kept) and drop the reference. */
void json_print(json_t *doc);
/* Interface name for an ifindex of this network namespace, "other" for 0, else "if<N>". */
const char *ifname_of(__u32 ifindex, char *buf, size_t len);

#endif

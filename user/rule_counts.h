/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Per-rule packet and byte counts by rule name: read from one half of the kernel's per-rule
 * counters (sluice_rules, see abi.h) and kept across full installs, which renumber rules.
 */
#ifndef SLUICE_RULE_COUNTS_H
#define SLUICE_RULE_COUNTS_H

#include <stddef.h>
#include <linux/types.h>
#include <sluice/abi.h>

#define RULE_COUNTS_NAMES_MAX 16384 /* names kept; further ones add to "other" */

struct rule_count {
	char *name;
	__u64 packets, bytes;
};

/* A bounded table of counts by name (open addressing). */
struct rule_counts {
	struct rule_count *slots;
	size_t mask, n;
};

void rule_counts_free(struct rule_counts *t);
/* Add to name's counts (a new name past RULE_COUNTS_NAMES_MAX adds to "other"). */
int rule_counts_add(struct rule_counts *t, const char *name, __u64 packets, __u64 bytes);
/* name's counts, or NULL when t has none. */
const struct rule_count *rule_counts_find(const struct rule_counts *t, const char *name);
/* Add every entry of from to t. */
int rule_counts_merge(struct rule_counts *t, const struct rule_counts *from);

/*
 * Read the half of the kernel counters that epoch_flag (SLUICE_POLICY_F_EPOCH or 0) names
 * and add it to t, naming slot i by names[i] (i < n), "default" and "other".
 */
int rule_counts_read(struct rule_counts *t, int rules_fd, __u8 epoch_flag, char *const *names,
		     size_t n);

#endif

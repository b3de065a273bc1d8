/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Budgets in userspace: compiling a policy's budgets into the kernel's tables (definitions,
 * target trie, budget sets), installing them into an epoch's half, and the budget table the
 * state directory keeps so that read commands and the daemon can name budgets.
 */
#ifndef SLUICE_BUDGET_H
#define SLUICE_BUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <linux/types.h>
#include <sluice/abi.h>
#include "addr.h"

struct policy;

/* The budget maps of a datapath; -1 where absent. */
struct budget_maps {
	int targets_fd; /* LPM trie: prefix -> budget set, both epochs */
	int defs_fd;    /* array: definitions, two halves */
	int sets_fd;    /* array: budget sets, two halves */
	int crossed_fd; /* array: crossings per budget, two halves */
	int usage_fd;   /* LRU hash: usage per (user budget, uid) and per node budget */
};

struct budget_target {
	struct prefix prefix;
	__u32 set;
};

struct compiled_budgets {
	struct sluice_budget defs[SLUICE_BUDGET_MAX];
	size_t ndefs;
	struct sluice_budget_set sets[SLUICE_BUDGET_SETS]; /* sets[0] is the empty set */
	size_t nsets;
	struct budget_target *targets;
	size_t ntargets;
};

/* The stable id of a budget named name (keys its usage across reloads). */
__u32 budget_id(const char *name);
/*
 * Compile p's budgets. Returns 0, -ENOMEM, or -E2BIG with a message in err when the kernel's
 * limits are exceeded (budgets per packet, distinct budget sets, colliding ids).
 */
int budget_compile(const struct policy *p, struct compiled_budgets *out, char *err, size_t len);
void compiled_budgets_free(struct compiled_budgets *cb);
/* Compile and discard: does p fit the kernel's limits? 0 or -E2BIG/-ENOMEM with err. */
int budget_check(const struct policy *p, char *err, size_t len);
/*
 * Install cb into the half epoch_flag (SLUICE_POLICY_F_EPOCH or 0) names, which no packet
 * may be reading: its old trie entries are removed, its crossing counters zeroed.
 */
int budget_install(const struct budget_maps *m, const struct compiled_budgets *cb,
		   __u8 epoch_flag);

/* The budget table of the state directory: what names each budget index and id. */
struct budget_info {
	__u32 id;
	__u8 kind, block;
	__u64 limit, window_s;
	char name[64];
	char target[72];
};

struct budget_table {
	struct budget_info *items; /* by index in the policy (the index in its epoch's half) */
	size_t n;
};

int state_write_budgets(const char *state_dir, const struct policy *p);
/* A missing file gives an empty table. */
int state_read_budgets(const char *state_dir, struct budget_table *t);
void budget_table_free(struct budget_table *t);
/* The budget with stable id, or NULL. */
const struct budget_info *budget_table_find(const struct budget_table *t, __u32 id);

const char *budget_kind_name(unsigned kind);

/* One usage record of the kernel's table. */
struct budget_usage_row {
	struct sluice_budget_usage_key key;
	struct sluice_budget_usage usage;
	bool in_dest; /* a destination budget's, kept in the destination's entry */
};
struct dest_scan;
/*
 * Read every usage record: the user and node budgets' from the usage table (usage_fd), the
 * destination budgets' from the destination entries (walked with scan). Bounded by the
 * tables' capacities. *rows is malloc'd.
 */
int budget_usage_read(int usage_fd, struct dest_scan *scan, struct budget_usage_row **rows,
		      size_t *n);
/*
 * Clear one usage record: its key's window ends, its next packet starts a new one from zero
 * (and a block lifts). 1 when cleared, 0 when it was gone already, or -errno.
 */
int budget_usage_clear(int usage_fd, struct dest_scan *scan, const struct budget_usage_row *row);
/* Crossings of budget index i (0..n-1) of the install of epoch flag epoch_flag. */
__u64 budget_crossed_read(int crossed_fd, __u8 epoch_flag, __u32 i);

#endif

/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Installing a compiled policy into the kernel atomically: the new policy's port classes
 * are added next to the old ones, a new trie is built off to the side and swapped into the
 * outer map's slot in one update, the generation moves on so cached per-destination
 * decisions are retaken, and only then are the old classes removed.
 */
#ifndef SLUICE_POLICY_KERNEL_H
#define SLUICE_POLICY_KERNEL_H

#include <linux/types.h>
#include "budget.h"
#include "policy.h"

/* The maps a policy lives in. */
struct policy_maps {
	int policy_fd; /* outer array-of-maps; slot 0 holds the active trie */
	int config_fd;
	int ports_fd;
	int rules_fd; /* per-rule counters (two halves, one per install epoch); -1: none */
	/* The budget maps (budget.h); NULL: a caller that installs policies without budgets. */
	const struct budget_maps *budgets;
};

/* The generation the next policy should carry (current + 1; never 0). */
int policy_next_generation(int config_fd, __u32 *generation);
/* Install cp as generation; returns 0 or -errno, and on error the old policy stays whole. */
int policy_install(const struct policy_maps *maps, const struct compiled_policy *cp,
		   __u32 generation);

/*
 * Change the active policy in place: add cp's classes (fresh numbers), write cp's trie entries
 * over the active trie, delete the removed keys, and move to generation. For changes that
 * touch few prefixes (an override): every packet is decided by its prefix's old or new
 * entry. The error leaves a partial change: the caller must reinstall in full.
 */
int policy_patch(const struct policy_maps *maps, const struct compiled_policy *cp,
		 const struct sluice_lpm_key *removed, size_t nremoved, __u32 generation);

#endif

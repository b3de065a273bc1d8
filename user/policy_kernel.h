/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Installing a compiled policy into the kernel atomically. The policy map holds
 * SLUICE_POLICY_BANKS banks of address and port ranges, and the generation in the config
 * map names the one in force. An install makes sure a grace period has passed since the bank
 * it writes left service (so no packet still searches it), fills it, and moves the
 * generation on: one store switches every packet. The grace period is usually waited for in
 * the background while the policy is parsed (policy_grace_begin).
 */
#ifndef SLUICE_POLICY_KERNEL_H
#define SLUICE_POLICY_KERNEL_H

#include <pthread.h>
#include <stdbool.h>
#include <linux/types.h>
#include "budget.h"
#include "policy.h"

/* The maps a policy lives in. */
struct policy_maps {
	int policy_fd; /* the two banks of ranges (sluice_policy) */
	int grace_fd;  /* sluice_grace, updated to wait for a grace period */
	int config_fd;
	int rules_fd; /* per-rule counters (two halves, one per install epoch); -1: none */
	/* The budget maps (budget.h); NULL: a caller that installs policies without budgets. */
	const struct budget_maps *budgets;
};

/*
 * A grace period waited for in a thread, begun under the generation in force at the time. It
 * serves the next two generations: each writes the bank the generation before the one in
 * force replaced.
 */
struct policy_grace {
	int grace_fd;
	__u32 generation; /* in force when it began */
	pthread_t thread;
	bool begun, running; /* running: a thread to join */
	int err;
};

/* Start waiting for a grace period in a thread (inline if none can be started). */
int policy_grace_begin(const struct policy_maps *maps, struct policy_grace *g);
/* Wait for g's thread to end (a no-op when it has). */
void policy_grace_end(struct policy_grace *g);

/* What a failed install's -errno means to an admin (E2BIG: the policy does not fit a bank). */
const char *policy_install_error(int err);

/* The generation the next policy should carry (current + 1; never 0). */
int policy_next_generation(int config_fd, __u32 *generation);
/*
 * Install cp as generation; grace (may be NULL) is a grace period begun under the policy in
 * force. Returns 0 or -errno, and on error the old policy stays whole.
 */
int policy_install(const struct policy_maps *maps, const struct compiled_policy *cp,
		   __u32 generation, struct policy_grace *grace);

/*
 * The flags (SLUICE_POLICY_F_*) of the policy of cfg's generation, read from its bank;
 * -ENOENT (flags 0) when none is installed.
 */
int policy_flags_in_force(int policy_fd, const struct sluice_config *cfg, __u8 *flags);

/*
 * Switch to the policy in force changed by a few prefixes (an override): live (entries in
 * order, as compiled) without the removed keys, with added's entries and classes
 * (numbered after live's), becomes generation. On success *merged (to free) is the new
 * policy in force, the next change's live. On error nothing changed.
 */
int policy_patch(const struct policy_maps *maps, const struct compiled_policy *live,
		 const struct sluice_lpm_key *removed, size_t nremoved,
		 const struct compiled_policy *added, __u32 generation, struct policy_grace *grace,
		 struct compiled_policy *merged);

/* The policy in force as the datapath searches it, mapped read-only (tests, benchmarks). */
struct policy_view {
	void *mem;
	size_t len;
	const struct sluice_policy_range *bank;
	size_t nranges;
	const struct sluice_policy_range *ports; /* the port ranges, after the address ones */
	size_t nports;
	__u32 generation;
};
/* Map the policy of the generation in force; -ENOENT when none is installed. */
int policy_view_open(int policy_fd, int config_fd, struct policy_view *v);
void policy_view_close(struct policy_view *v);
/* The decision the datapath's search gives dst. */
const struct sluice_policy_entry *policy_view_decide(const struct policy_view *v,
						     const struct sluice_addr *dst);

#endif

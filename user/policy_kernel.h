/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Installing a compiled policy into the kernel atomically: a new trie is built off to the
 * side, swapped into the outer map's slot in one update, and then the generation in the
 * config map moves on so cached per-destination decisions are taken again.
 */
#ifndef SLUICE_POLICY_KERNEL_H
#define SLUICE_POLICY_KERNEL_H

#include <linux/types.h>
#include "policy.h"

/* The generation the next policy should carry (current + 1; never 0). */
int policy_next_generation(int config_fd, __u32 *generation);
/* Build, fill and swap in a trie for cp; returns 0 or -errno (the old policy stays). */
int policy_install(int policy_fd, int config_fd, const struct compiled_policy *cp,
		   __u32 generation);

#endif

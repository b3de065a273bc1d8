/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * A compiled policy as the datapath searches it: the prefixes flattened into sorted,
 * disjoint address ranges, each with the decision of the longest prefix covering it
 * (struct sluice_policy_range in include/sluice/abi.h).
 */
#ifndef SLUICE_POLICY_RANGES_H
#define SLUICE_POLICY_RANGES_H

#include <stddef.h>
#include "policy.h"

/*
 * Flatten n compiled entries (any order; the compiler's preorder is fastest) into bank,
 * which has room for cap ranges, adding flags (SLUICE_POLICY_F_*, the install's epoch) to
 * every decision, and return the number of ranges written (also stored in
 * bank[0].start_lo), or -E2BIG when they do not fit, -EINVAL when no entry covers address 0
 * (every compiled policy has the ::/0 catch-all), -ENOMEM. Ranges next to each other with
 * the same decision are merged.
 */
long policy_flatten(const struct compiled_entry *entries, size_t n, __u8 flags,
		    struct sluice_policy_range *bank, size_t cap);

/*
 * A policy's bank: its address ranges from element 0, then its port classes' ranges (the port
 * entries flattened the same way, as prefixes whose first 7 bytes are class, protocol and
 * port). Fill bank (room for cap ranges; policy_bank_most(cp) always suffices), the address
 * ranges' decisions with flags added, and return the number of ranges, or -E2BIG, -EINVAL,
 * -ENOMEM as policy_flatten.
 */
long policy_bank_fill(const struct compiled_policy *cp, __u8 flags,
		      struct sluice_policy_range *bank, size_t cap);
size_t policy_bank_most(const struct compiled_policy *cp);
/*
 * The decision a filled bank gives a packet (port POLICY_PORT_NONE: none), as the datapath
 * takes it: into
 * out, which is returned; NULL if the bank is broken.
 */
const struct sluice_policy_entry *policy_bank_decide(const struct sluice_policy_range *bank,
						     const struct sluice_addr *dst, __u8 proto,
						     int port, struct sluice_policy_entry *out);

/* The decision a bank of nranges ranges gives dst: the datapath's search, in userspace. */
const struct sluice_policy_entry *policy_ranges_decide(const struct sluice_policy_range *bank,
						       size_t nranges,
						       const struct sluice_addr *dst);

/* Sort entries by address, then prefix length: the order policy_flatten walks them in. */
int compiled_entries_sort(struct compiled_entry *entries, size_t n);
/* That order on prefixes: <0, 0 or >0. */
int lpm_key_order(const struct sluice_lpm_key *a, const struct sluice_lpm_key *b);

#endif

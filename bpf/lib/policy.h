/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The decision: which verdict a destination gets under the active policy. Include from
 * bpf/ entry files after maps.h. Steady state costs one hash lookup: the per-destination
 * entry caches the decision with the generation that produced it, and the trie is
 * consulted again only when the generation moves on.
 */
#ifndef SLUICE_BPF_POLICY_H
#define SLUICE_BPF_POLICY_H

#include "maps.h"

struct decision {
	__u32 rule_id;
	__u32 generation;
	__u8 verdict;
	__u8 reason;
	__u8 flags;
};

static __always_inline __u32 active_generation(void)
{
	__u32 zero = 0;
	struct sluice_config *cfg = bpf_map_lookup_elem(&sluice_config, &zero);

	return cfg ? cfg->generation : 0;
}

/* Look the destination up in the active trie; 0 on success, -1 when no policy is installed. */
static __always_inline int policy_lookup(const struct sluice_addr *dst, __u32 prefixlen,
					 struct decision *d)
{
	struct sluice_lpm_key key = { .prefixlen = prefixlen, .addr = *dst };
	struct sluice_policy_entry *e;
	__u32 zero = 0;
	void *trie;

	trie = bpf_map_lookup_elem(&sluice_policy, &zero);
	if (!trie)
		return -1;
	e = bpf_map_lookup_elem(trie, &key);
	if (!e)
		return -1;
	d->rule_id = e->rule_id;
	d->generation = e->generation;
	d->verdict = e->verdict;
	d->reason = e->reason;
	d->flags = e->flags;
	return 0;
}

/*
 * The verdict for a packet the parser could not decide: deny, or audit when the active
 * policy is in audit mode. The policy's flags are read from the catch-all entry (::/0).
 */
static __always_inline void decide_unparsed(int reason, struct decision *d)
{
	struct sluice_addr any = {};

	d->verdict = SLUICE_VERDICT_DENY;
	if (policy_lookup(&any, 0, d) == 0 && (d->flags & SLUICE_POLICY_F_AUDIT))
		d->verdict = SLUICE_VERDICT_AUDIT;
	d->reason = reason;
	d->rule_id = SLUICE_RULE_NONE;
}

/*
 * Decide for an IP destination. Returns the destination's entry (created if needed, NULL
 * only if the table refused it) with its cached decision brought up to date.
 */
static __always_inline struct sluice_dest_stats *decide_destination(const struct sluice_addr *dst,
								    struct decision *d)
{
	__u32 generation = active_generation();
	struct sluice_dest_stats *entry;

	entry = bpf_map_lookup_elem(&sluice_dests, dst);
	if (entry && generation && entry->generation == generation) {
		d->verdict = entry->verdict;
		d->reason = entry->reason;
		d->rule_id = entry->rule_id;
		return entry;
	}

	if (policy_lookup(dst, 128, d) < 0) {
		/* Fail closed, and do not cache: a policy may arrive any moment. */
		d->verdict = SLUICE_VERDICT_DENY;
		d->reason = SLUICE_REASON_NO_POLICY;
		d->rule_id = SLUICE_RULE_NONE;
		return entry;
	}

	if (entry) {
		/* Racing CPUs write the same values, so plain stores are fine. */
		entry->verdict = d->verdict;
		entry->reason = d->reason;
		entry->rule_id = d->rule_id;
		entry->generation = d->generation;
		return entry;
	}

	struct sluice_dest_stats fresh = {
		.first_seen_ns = bpf_ktime_get_ns(), /* once per new destination only */
		.generation = d->generation,
		.rule_id = d->rule_id,
		.verdict = d->verdict,
		.reason = d->reason,
	};
	/* NOEXIST: if another CPU created it first, keep its counters and use its entry. */
	bpf_map_update_elem(&sluice_dests, dst, &fresh, BPF_NOEXIST);
	return bpf_map_lookup_elem(&sluice_dests, dst);
}

#endif /* SLUICE_BPF_POLICY_H */

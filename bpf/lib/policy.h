/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The decision: which verdict a destination gets under the active policy. Include from
 * bpf/ entry files after maps.h. Steady state costs one hash lookup: the per-destination
 * entry caches the decision with the generation in force when it was taken, and the policy's
 * ranges are searched again only when the generation moves on. A destination whose decision
 * depends on protocol or port searches its bank's port ranges per packet.
 */
#ifndef SLUICE_BPF_POLICY_H
#define SLUICE_BPF_POLICY_H

#include "maps.h"
#include "parse.h"

/* Single-copy-atomic 64-bit accesses: the compiler must neither split nor merge them. */
#define READ_ONCE_U64(x) (*(volatile __u64 *)&(x))
#define WRITE_ONCE_U64(x, v) (*(volatile __u64 *)&(x) = (v))

struct decision {
	__u32 rule_id;
	__u32 generation;
	__u32 port_class;
	__u8 verdict;
	__u8 reason;
	__u8 flags;
	__u8 new_dest; /* this packet created the destination's entry: a first contact */
	__u8 budget_set;   /* the destination's budget set (budget.h); 0: no budget applies */
	__u8 budget_epoch; /* the half of the budget maps budget_set belongs to (0/1) */
	/*
	 * The wire packets the frame stands for (a GSO super-packet's segments), for the budget
	 * step's events: set by budgets_charge, which has one argument too many for a call.
	 */
	__u16 packets;
};

/*
 * The budget set of a destination under the policy of epoch flag `flags` (miss path only):
 * 0 when no budget covers it.
 */
static __always_inline __u8 budget_set_lookup(const struct sluice_addr *dst, __u8 flags)
{
	struct sluice_budget_target_key key = {
		.prefixlen = SLUICE_BUDGET_PREFIX_EPOCH + 128,
		.epoch = flags & SLUICE_POLICY_F_EPOCH ? 1 : 0,
		.addr = *dst,
	};
	struct sluice_budget_target *t = bpf_map_lookup_elem(&sluice_budget_targets, &key);

	return t && t->set < SLUICE_BUDGET_SETS ? t->set : 0;
}

static __always_inline __u32 active_generation(void)
{
	__u32 zero = 0;
	struct sluice_config *cfg = bpf_map_lookup_elem(&sluice_config, &zero);

	return cfg ? cfg->generation : 0;
}

/*
 * A word read with a full barrier: no read after it can be done before it. An atomic add of
 * 0, since this toolchain cannot emit a load-acquire.
 */
static __always_inline __u32 read_ordered(__u32 *word)
{
	return __sync_fetch_and_add(word, 0);
}

/*
 * The generation again, on the miss path, ordered before the search of its bank. Userspace
 * fills a bank and only then writes the generation that names it; without the barrier a
 * weakly ordered CPU could read ranges from before the fill with the generation after it.
 */
static __always_inline __u32 ordered_generation(void)
{
	__u32 zero = 0;
	struct sluice_config *cfg = bpf_map_lookup_elem(&sluice_config, &zero);

	return cfg ? read_ordered(&cfg->generation) : 0;
}

/* The address as the number policy ranges start at: bytes 0..7 (hi) and 8..15 (lo). */
static __always_inline void addr_number(const struct sluice_addr *a, __u64 *hi, __u64 *lo)
{
	__u64 h, l;

	__builtin_memcpy(&h, a->a, 8);
	__builtin_memcpy(&l, a->a + 8, 8);
	*hi = bpf_be64_to_cpu(h);
	*lo = bpf_be64_to_cpu(l);
}

/* Element 0 of generation's bank, and the index it has in the map; NULL: no policy. */
static __always_inline struct sluice_policy_range *policy_bank(__u32 generation, __u32 *base)
{
	if (!generation)
		return NULL;
	*base = SLUICE_POLICY_BANK(generation) * SLUICE_RANGE_MAX;
	return bpf_map_lookup_elem(&sluice_policy, base);
}

/*
 * The last of the ranges from map index base (first is their element 0, which holds their
 * number) that starts at or below (hi, lo); NULL when there are none or the map is short.
 */
static __always_inline struct sluice_policy_range *
range_search(__u32 base, struct sluice_policy_range *first, __u64 hi, __u64 lo)
{
	struct sluice_policy_range *best = first, *r;
	__u64 n = first->start_lo; /* element 0 starts at 0 and holds the count instead */
	__u32 pos = 0, key;

	if (n == 0)
		return NULL;
	/*
	 * Binary search by decreasing powers of two: pos moves up by 2^step whenever the range
	 * there still starts at or below the key. Element 0 starts at 0: pos = 0 is valid.
	 */
	for (int step = SLUICE_RANGE_STEPS - 1; step >= 0; step--) {
		__u32 next = pos + (1u << step);
		/*
		 * next < n, as arithmetic (both are far below 2^63): a comparison would let the
		 * verifier narrow n on each path, settle later comparisons from it, track pos
		 * exactly, and walk all 2^SLUICE_RANGE_STEPS paths instead of merging them.
		 */
		__u64 inside = ((__u64)next - n) >> 63;

		if (!inside)
			continue;
		key = base + next;
		r = bpf_map_lookup_elem(&sluice_policy, &key);
		if (!r)
			return NULL;
		if (r->start_hi < hi || (r->start_hi == hi && r->start_lo <= lo)) {
			pos = next;
			best = r;
		}
	}
	return best;
}

/*
 * Decide dst by the policy of `generation` (read by the caller): the last range of its bank
 * that starts at or below dst. 0 on success, -1 when no policy is installed.
 */
static __always_inline int policy_lookup(__u32 generation, const struct sluice_addr *dst,
					 struct decision *d)
{
	struct sluice_policy_range *first, *best;
	__u32 base = 0;
	__u64 hi, lo;

	first = policy_bank(generation, &base);
	if (!first)
		return -1;
	addr_number(dst, &hi, &lo);
	best = range_search(base, first, hi, lo);
	if (!best)
		return -1;
	d->rule_id = best->decision.rule_id;
	d->generation = generation; /* the bank its port class, if any, is looked up in */
	d->port_class = best->decision.port_class;
	d->verdict = best->decision.verdict;
	d->reason = best->decision.reason;
	d->flags = best->decision.flags;
	return 0;
}

/*
 * The policy-wide flags (SLUICE_POLICY_F_*) of the policy in force, which every range of
 * it carries; -1 when no policy is installed.
 */
static __always_inline int policy_flags_now(void)
{
	struct sluice_policy_range *first;
	__u32 base;

	first = policy_bank(active_generation(), &base);
	return first && first->start_lo ? first->decision.flags : -1;
}

/* Deny for a reason of its own: audit instead when the policy (d->flags) is in audit mode. */
static __always_inline void decide_deny(int reason, struct decision *d)
{
	d->verdict = d->flags & SLUICE_POLICY_F_AUDIT ? SLUICE_VERDICT_AUDIT : SLUICE_VERDICT_DENY;
	d->reason = reason;
	d->rule_id = SLUICE_RULE_NONE;
}

/*
 * The verdict for a packet the parser could not decide: deny, or audit when the active
 * policy is in audit mode. The policy's flags are read from the catch-all entry (::/0).
 */
static __always_inline void decide_unparsed(int reason, struct decision *d)
{
	int flags = policy_flags_now();

	/* Only the flags: no range's verdict says anything about this packet. */
	d->flags = flags >= 0 ? flags : 0;
	decide_deny(reason, d);
}

/* A deny, or the audit that stands for one in audit mode. */
static __always_inline int decision_denied(const struct decision *d)
{
	return d->verdict == SLUICE_VERDICT_DENY || d->verdict == SLUICE_VERDICT_AUDIT;
}

/*
 * The decision of port class d->port_class for a protocol and port (has_port 0: none, looked
 * up as port 0, which no port block holds), among the port ranges of d->generation's bank.
 */
static __always_inline void port_class_lookup(struct decision *d, __u8 proto, int has_port,
					      __u8 port0, __u8 port1)
{
	struct sluice_policy_range *first, *best = NULL;
	__u32 base = 0, ports;
	__u64 key;

	first = policy_bank(d->generation, &base);
	if (first) {
		/* Where the port ranges begin, from the bank's element 0 (bounded by the map). */
		ports = base + (__u32)first->start_hi;
		first = bpf_map_lookup_elem(&sluice_policy, &ports);
	}
	if (first) {
		key = (__u64)d->port_class << 32 | (__u64)proto << 24;
		if (has_port)
			key |= (__u64)port0 << 16 | (__u64)port1 << 8;
		best = range_search(ports, first, key, 0);
	}
	if (!best) {
		/* Every policy has its port ranges; none means a broken install: fail closed. */
		d->verdict = SLUICE_VERDICT_DENY;
		d->reason = SLUICE_REASON_NO_POLICY;
		d->rule_id = SLUICE_RULE_NONE;
		return;
	}
	d->verdict = best->decision.verdict;
	d->reason = best->decision.reason;
	d->rule_id = best->decision.rule_id;
}

/*
 * The decision of a port class for this packet's protocol and port. A packet whose
 * transport header cannot be read cannot be matched against port rules: denied.
 */
static __always_inline void decide_port_class(const struct packet_info *pi, struct decision *d)
{
	if (pi->opaque) {
		/* Bytes after an extension header we do not walk are no transport header. */
		decide_deny(SLUICE_REASON_UNPARSEABLE, d);
		return;
	}
	if (!pi_has_port(pi) && pi->frag != PKT_FRAG_LATER && proto_has_ports(pi->l4_proto)) {
		/* Cut short: a first fragment too small for its ports, or a truncated packet. */
		decide_deny(pi->frag == PKT_FRAG_FIRST ? SLUICE_REASON_FRAGMENT
						       : SLUICE_REASON_TRUNCATED,
			    d);
		return;
	}
	port_class_lookup(d, pi->l4_proto, pi_has_port(pi), pi->l4[2], pi->l4[3]);
}

/* The destination's entry, if it has one yet (decide_destination creates it). */
static __always_inline struct sluice_dest_stats *dest_entry(const struct packet_info *pi)
{
	return bpf_map_lookup_elem(&sluice_dests, &pi->dst);
}

/*
 * Decide for an IP packet, given its destination's entry as dest_entry() found it. Returns
 * the entry (created if needed, NULL only if the table refused it) with its cached decision
 * brought up to date.
 */
static __always_inline struct sluice_dest_stats *
decide_destination(const struct packet_info *pi, struct decision *d,
		   struct sluice_dest_stats *entry)
{
	__u32 generation = active_generation();

	if (entry && generation) {
		/* One load per word: each is consistent with its own tag. */
		__u64 rule = READ_ONCE_U64(entry->cache_rule);
		__u64 class = READ_ONCE_U64(entry->cache_class);
		__u64 verdict = READ_ONCE_U64(entry->cache_verdict);

		if (SLUICE_CACHE_GEN(rule) == generation && SLUICE_CACHE_GEN(class) == generation &&
		    SLUICE_CACHE_GEN(verdict) == generation) {
			d->rule_id = SLUICE_CACHE_VALUE(rule);
			d->port_class = SLUICE_CACHE_VALUE(class);
			d->verdict = SLUICE_CACHE_VALUE(verdict) & 0xff;
			d->reason = SLUICE_CACHE_VALUE(verdict) >> 8 & 0xff;
			d->flags = SLUICE_CACHE_VALUE(verdict) >> 16 & 0xff;
			d->budget_set = SLUICE_CACHE_VALUE(verdict) >> 24;
			d->budget_epoch = d->flags & SLUICE_POLICY_F_EPOCH ? 1 : 0;
			d->generation = generation;
			if (d->port_class)
				decide_port_class(pi, d);
			return entry;
		}
	}

	generation = ordered_generation();
	if (policy_lookup(generation, &pi->dst, d) < 0) {
		/* Fail closed, and do not cache: a policy may arrive any moment. */
		d->verdict = SLUICE_VERDICT_DENY;
		d->reason = SLUICE_REASON_NO_POLICY;
		d->rule_id = SLUICE_RULE_NONE;
		return entry;
	}
	/* Cached with the decision: the hot path pays nothing for budgets it has none of. */
	d->budget_set = budget_set_lookup(&pi->dst, d->flags);
	d->budget_epoch = d->flags & SLUICE_POLICY_F_EPOCH ? 1 : 0;

	/*
	 * Tagged with the generation whose bank was searched: a decision taken while the
	 * generation moves on carries the old tag and is retaken by the next packet.
	 */
	__u64 rule = SLUICE_CACHE_WORD(generation, d->rule_id);
	__u64 class = SLUICE_CACHE_WORD(generation, d->port_class);
	__u64 verdict = SLUICE_CACHE_WORD(generation, (__u32)d->budget_set << 24 |
							  (__u32)d->flags << 16 |
							  (__u32)d->reason << 8 | d->verdict);

	if (!entry) {
		/*
		 * Created zeroed, from a template (too large for the stack beside the rest), and
		 * filled in below; a CPU that finds it meanwhile takes the decision itself. NOEXIST:
		 * if another CPU created it first, keep its counters and use its entry.
		 */
		__u32 zero = 0;
		const struct sluice_dest_stats *blank = bpf_map_lookup_elem(&sluice_dest_blank, &zero);

		if (blank &&
		    bpf_map_update_elem(&sluice_dests, &pi->dst, blank, BPF_NOEXIST) == 0)
			d->new_dest = 1;
		entry = bpf_map_lookup_elem(&sluice_dests, &pi->dst);
		if (entry && d->new_dest)
			entry->first_seen_ns = bpf_ktime_get_ns(); /* once per new destination only */
	}
	if (entry) {
		WRITE_ONCE_U64(entry->cache_rule, rule);
		WRITE_ONCE_U64(entry->cache_class, class);
		WRITE_ONCE_U64(entry->cache_verdict, verdict);
	}
	if (d->port_class)
		decide_port_class(pi, d);
	return entry;
}

#endif /* SLUICE_BPF_POLICY_H */

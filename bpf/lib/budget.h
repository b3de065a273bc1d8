/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Budgets: charge a decided packet's bytes to every budget of its destination (its user's,
 * the node's), drop the packets of a key whose `block` budget is spent, and report each
 * crossing once. Include from bpf/ entry files after events.h. The destination's budget set
 * is cached with its decision (policy.h), so a packet no budget applies to pays one compare.
 *
 * Precision: the packet whose add reaches the limit passes whole, and packets that read the
 * usage on other CPUs before that add landed pass too. A `block` budget therefore lets
 * through at most one packet per CPU beyond its limit (a GSO super-packet counts as one
 * packet here, up to 64 KiB): slack <= CPUs * 64 KiB per key and window.
 */
#ifndef SLUICE_BPF_BUDGET_H
#define SLUICE_BPF_BUDGET_H

#include "events.h"

/* Allowed, reply and audited bytes count against budgets; denied and essential ones do not. */
static __always_inline int budget_counts(__u8 verdict)
{
	return verdict == SLUICE_VERDICT_ALLOW || verdict == SLUICE_VERDICT_REPLY ||
	       verdict == SLUICE_VERDICT_AUDIT;
}

/*
 * The usage key of budget b for this packet (its destination, its uid, or nothing) in this
 * CPU's scratch entry, next to a zeroed new record. NULL
 * when the budget has no key for it (a user budget, and no local socket sent the packet).
 * Off the stack: the global function budgets run in (below) has too little room left
 * beside its caller's (512 bytes for the two).
 */
static __always_inline struct budget_scratch *
budget_key(struct ctx_buff *ctx, const struct packet_info *pi, const struct sluice_budget *b)
{
	struct budget_scratch *scratch;
	struct sluice_budget_usage_key *key;
	__u32 zero = 0;

	(void)ctx; /* at XDP, where no frame has a local socket, ctx_has_socket() is constant 0 */
	scratch = bpf_map_lookup_elem(&sluice_budget_scratch, &zero);
	if (!scratch)
		return NULL;
	/* Word stores, not a byte-wise struct copy: this runs for every charged packet. */
	key = &scratch->key;
	key->budget = b->id;
	key->uid = 0;
	if (b->kind == SLUICE_BUDGET_DEST) {
		const __u32 *a = (const __u32 *)&pi->dst; /* 4-byte aligned: packet_info's first */
		__u32 *k = (__u32 *)&key->addr;

		k[0] = a[0];
		k[1] = a[1];
		k[2] = a[2];
		k[3] = a[3];
		return scratch;
	}
	__builtin_memset(&key->addr, 0, sizeof(key->addr));
	if (b->kind == SLUICE_BUDGET_USER) {
		if (!ctx_has_socket(ctx))
			return NULL;
		key->uid = ctx_socket_uid(ctx);
	}
	return scratch;
}

/*
 * The usage record of budget b for this packet (created at the key's first packet, which
 * starts its window), its window rolled over when it has ended. NULL when the budget has
 * no key for this packet (a user budget and no local socket) or the table refused one.
 */
static __always_inline struct sluice_budget_usage *
budget_usage(struct ctx_buff *ctx, const struct packet_info *pi, const struct sluice_budget *b,
	     __u64 now)
{
	struct budget_scratch *scratch = budget_key(ctx, pi, b);
	struct sluice_budget_usage *u;

	if (!scratch)
		return NULL;
	u = bpf_map_lookup_elem(&sluice_budget_usage, &scratch->key);
	if (u) {
		__u64 end = READ_ONCE_U64(u->window_end_ns);

		/* Racing CPUs: the compare-and-swap lets exactly one of them start the window. */
		if (now >= end &&
		    __sync_val_compare_and_swap(&u->window_end_ns, end, now + b->window_ns) == end) {
			__sync_lock_test_and_set(&u->bytes, 0);
			__sync_lock_test_and_set(&u->dropped, 0);
		}
		return u;
	}
	/*
	 * Created with its window yet to start (end 0), which the compare-and-swap below
	 * starts. NOEXIST: if another CPU created it first, charge the one it made.
	 */
	__builtin_memset(&scratch->fresh, 0, sizeof(scratch->fresh));
	bpf_map_update_elem(&sluice_budget_usage, &scratch->key, &scratch->fresh, BPF_NOEXIST);
	u = bpf_map_lookup_elem(&sluice_budget_usage, &scratch->key);
	if (u && __sync_val_compare_and_swap(&u->window_end_ns, 0, now + b->window_ns) == 0) {
		__sync_lock_test_and_set(&u->bytes, 0);
		__sync_lock_test_and_set(&u->dropped, 0);
	}
	return u;
}

/* A crossing: counted for the metric, and one `budget` event (never rate limited). */
static __always_inline void budget_crossed(struct ctx_buff *ctx, const struct packet_info *pi,
					   struct decision *d, __u32 index, __u64 usage,
					   __u64 packets, __u8 hook)
{
	const struct sluice_event_config *cfg;
	__u64 *crossed = bpf_map_lookup_elem(&sluice_budget_crossed, &index);
	__u32 zero = 0, rule_id = d->rule_id;

	if (crossed)
		__sync_fetch_and_add(crossed, 1);
	cfg = bpf_map_lookup_elem(&sluice_event_config, &zero);
	if (!cfg || cfg->off)
		return;
	/* A budget event names its budget in rule_id (abi.h); the decision's own comes back. */
	d->rule_id = index;
	event_emit(ctx, pi, d, packets, usage, hook, 1, SLUICE_EVENT_BUDGET, 0, NULL);
	d->rule_id = rule_id;
}

/* The i-th budget of a set, within its half (an out-of-range index cannot come from us). */
static __always_inline __u32 budget_index(const struct sluice_budget_set *set, int i)
{
	__u8 b = set->budget[i];

	return b < SLUICE_BUDGET_MAX ? b : 0;
}

/*
 * Has the key of budget `index` spent its `block` budget in its current window? Looked up,
 * never created: a key without a record has spent nothing.
 */
static __always_inline int budget_spent(struct ctx_buff *ctx, const struct packet_info *pi,
					__u32 index, __u64 now, int drops)
{
	const struct sluice_budget *b = bpf_map_lookup_elem(&sluice_budgets, &index);
	struct budget_scratch *scratch;
	struct sluice_budget_usage *u;

	if (!b || !b->block)
		return 0;
	scratch = budget_key(ctx, pi, b);
	if (!scratch)
		return 0;
	u = bpf_map_lookup_elem(&sluice_budget_usage, &scratch->key);
	if (!u || now >= READ_ONCE_U64(u->window_end_ns) || READ_ONCE_U64(u->bytes) < b->limit)
		return 0;
	if (drops)
		__sync_fetch_and_add(&u->dropped, 1);
	return 1;
}

/* Add the packet's bytes to budget `index`; the add that reaches the limit reports it. */
static __always_inline void budget_charge(struct ctx_buff *ctx, const struct packet_info *pi,
					  struct decision *d, __u32 index, __u64 now,
					  __u64 packets, __u64 bytes, __u8 hook)
{
	const struct sluice_budget *b = bpf_map_lookup_elem(&sluice_budgets, &index);
	struct sluice_budget_usage *u;
	__u64 before, limit;

	if (!b || !b->window_ns)
		return;
	limit = b->limit;
	u = budget_usage(ctx, pi, b, now);
	if (!u)
		return;
	before = __sync_fetch_and_add(&u->bytes, bytes);
	/* Exactly one add takes the usage from below the limit to at or above it. */
	if (before < limit && before + bytes >= limit)
		budget_crossed(ctx, pi, d, index, before + bytes, packets, hook);
}

/*
 * Charge the packet to its budgets, or drop it (reason budget; audit in audit mode) when a
 * `block` budget of its key is spent. A dropped packet is charged to none of them. Two
 * passes with nothing carried between slots but scalars: the verifier prunes each slot's
 * branches instead of multiplying them.
 */
static __always_inline void budgets_apply(struct ctx_buff *ctx, const struct packet_info *pi,
					  struct decision *d, __u64 packets, __u64 bytes, __u8 hook)
{
	__u32 key, base;
	const struct sluice_budget_set *set;
	int spent = 0, n;
	__u64 now;

	if (!d->budget_set || !budget_counts(d->verdict))
		return;
	key = (d->budget_epoch ? SLUICE_BUDGET_SETS : 0) + d->budget_set;
	set = bpf_map_lookup_elem(&sluice_budget_sets, &key);
	if (!set)
		return;
	base = d->budget_epoch ? SLUICE_BUDGET_MAX : 0;
	n = set->n < SLUICE_BUDGET_SLOTS ? set->n : SLUICE_BUDGET_SLOTS;
	/* A window of seconds to weeks: the coarse clock's few milliseconds do not matter. */
	now = bpf_ktime_get_coarse_ns();
	if (d->verdict != SLUICE_VERDICT_AUDIT) {
#pragma unroll
		for (int i = 0; i < SLUICE_BUDGET_SLOTS; i++)
			if (i < n)
				spent |= budget_spent(ctx, pi, base + budget_index(set, i), now,
						      !(d->flags & SLUICE_POLICY_F_AUDIT));
	}
	if (spent) {
		decide_deny(SLUICE_REASON_BUDGET, d);
		if (d->verdict == SLUICE_VERDICT_DENY)
			return;
	}
#pragma unroll
	for (int i = 0; i < SLUICE_BUDGET_SLOTS; i++)
		if (i < n)
			budget_charge(ctx, pi, d, base + budget_index(set, i), now, packets, bytes,
				      hook);
}

/*
 * The budget step as a global function, one per context flavour: the verifier checks a
 * global function once, on its own, instead of once per path that reaches it. Inlined,
 * its branches multiplied with the rest of the program's past the verifier's limit of a
 * million instructions. The cost is a call, paid only by packets a budget applies to.
 */
#ifdef SLUICE_CTX_XDP
#define budgets_charge_global budgets_charge_xdp
#else
#define budgets_charge_global budgets_charge_skb
#endif

/* One hook per context flavour: the hook need not take one of a call's five arguments. */
#ifdef SLUICE_CTX_XDP
#define BUDGET_HOOK SLUICE_HOOK_XDP
#else
#define BUDGET_HOOK SLUICE_HOOK_TC_EGRESS
#endif

__noinline int budgets_charge_global(struct ctx_buff *ctx, const struct packet_info *pi,
				     struct decision *d, __u64 packets, __u64 bytes);

__noinline int budgets_charge_global(struct ctx_buff *ctx, const struct packet_info *pi,
				     struct decision *d, __u64 packets, __u64 bytes)
{
	/* The verifier checks a global function's pointer arguments as possibly NULL. */
	if (!ctx || !pi || !d)
		return 0;
	budgets_apply(ctx, pi, d, packets, bytes, BUDGET_HOOK);
	return 0;
}

/* Charge a decided packet to its budgets: one compare when none applies, no call when denied. */
static __always_inline void budgets_charge(struct ctx_buff *ctx, const struct packet_info *pi,
					   struct decision *d, __u64 packets, __u64 bytes)
{
	if (d->budget_set && budget_counts(d->verdict))
		budgets_charge_global(ctx, pi, d, packets, bytes);
}

#endif /* SLUICE_BPF_BUDGET_H */

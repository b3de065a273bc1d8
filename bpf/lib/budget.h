/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Budgets: charge a decided packet's bytes to every budget of its destination (its user's,
 * the node's), drop the packets of a key whose `block` budget is spent, and report each
 * crossing once. Include from bpf/ entry files after events.h. The destination's budget set
 * is cached with its decision (policy.h), so a packet no budget applies to pays one compare;
 * a destination budget's usage sits in the destination's entry, so charging one costs no
 * lookup of its own, while user and node budgets look their usage up in sluice_budget_usage.
 *
 * Precision: the packet whose add reaches the limit passes whole, and packets that read the
 * usage on other CPUs before that add landed pass too. A `block` budget therefore lets
 * through at most one packet per CPU beyond its limit (a GSO super-packet counts as one
 * packet here, up to 64 KiB). When a window starts, a packet another CPU adds while the
 * starting CPU zeroes the usage is not counted (at most one per other CPU). Slack: under
 * 2 * CPUs * 64 KiB per key and window.
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
 * The usage key of a user or node budget b for this packet, built in the scratch entry.
 * Returns -1 when the budget has no key for it (a user budget, and no local socket sent the
 * packet). In the scratch entry, off the stack: the global function budgets run in (below)
 * has too little room left beside its caller's (512 bytes for the two).
 */
static __always_inline int budget_key(struct ctx_buff *ctx, struct budget_scratch *scratch,
				      const struct sluice_budget *b)
{
	struct sluice_budget_usage_key *key = &scratch->key;

	(void)ctx; /* at XDP, where no frame has a local socket, ctx_has_socket() is constant 0 */
	key->budget = b->id;
	key->uid = 0;
	__builtin_memset(&key->addr, 0, sizeof(key->addr));
	if (b->kind == SLUICE_BUDGET_USER) {
		if (!ctx_has_socket(ctx))
			return -1;
		key->uid = ctx_socket_uid(ctx);
	}
	return 0;
}

/* The i-th budget of a set, within its half (an out-of-range index cannot come from us). */
static __always_inline __u32 budget_index(const struct sluice_budget_set *set, int i)
{
	__u8 b = set->budget[i];

	return b < SLUICE_BUDGET_MAX ? b : 0;
}

/* The budgets that apply to a packet: its destination's set, in the half of its policy. */
struct budget_list {
	const struct sluice_budget_set *set;
	__u32 base; /* the half's first index in sluice_budgets */
	int n;      /* budgets in the set, at most SLUICE_BUDGET_SLOTS */
};

/* The budgets of the decision's budget set; -1 when the set is missing (a broken install). */
static __always_inline int budget_list_of(const struct decision *d, struct budget_list *list)
{
	__u32 key = (d->budget_epoch ? SLUICE_BUDGET_SETS : 0) + d->budget_set;

	list->set = bpf_map_lookup_elem(&sluice_budget_sets, &key);
	if (!list->set)
		return -1;
	list->base = d->budget_epoch ? SLUICE_BUDGET_MAX : 0;
	list->n = list->set->n < SLUICE_BUDGET_SLOTS ? list->set->n : SLUICE_BUDGET_SLOTS;
	return 0;
}

/*
 * The slot of a destination budget in the destination's entry: the one counting for it, or,
 * when `claim`, a free one or one whose budget no longer applies here (not in the packet's
 * list), taken over from zero. NULL when there is none (never when claiming: a list holds at
 * most as many budgets as the entry has slots). Claiming, once per destination and budget,
 * is the only part that reads the list's definitions.
 */
static __always_inline struct sluice_budget_usage *
dest_budget_slot(struct sluice_dest_stats *entry, __u32 id, const struct budget_list *list,
		 int claim)
{
	struct budget_scratch *scratch;
	__u32 zero = 0, *ids;

#pragma unroll
	for (int j = 0; j < SLUICE_BUDGET_SLOTS; j++)
		if (entry->budget[j].budget == id)
			return &entry->budget[j];
	if (!claim)
		return NULL;
	scratch = bpf_map_lookup_elem(&sluice_budget_scratch, &zero);
	if (!scratch)
		return NULL;
	ids = scratch->ids;
#pragma unroll
	for (int i = 0; i < SLUICE_BUDGET_SLOTS; i++) {
		__u32 index = list->base + budget_index(list->set, i);
		const struct sluice_budget *b = bpf_map_lookup_elem(&sluice_budgets, &index);

		ids[i] = i < list->n && b ? b->id : 0;
	}
#pragma unroll
	for (int j = 0; j < SLUICE_BUDGET_SLOTS; j++) {
		__u32 old = entry->budget[j].budget, prev;

		/* Another CPU claimed a slot for this budget since the search above: share it. */
		if (old == id)
			return &entry->budget[j];
		if (old && (old == ids[0] || old == ids[1] || old == ids[2] || old == ids[3]))
			continue;
		/* Racing CPUs: the compare-and-swap gives the slot to one budget. */
		prev = __sync_val_compare_and_swap(&entry->budget[j].budget, old, id);
		if (prev == id)
			return &entry->budget[j]; /* lost it to a CPU claiming it for this budget */
		if (prev != old)
			continue;
		/*
		 * Window end 0: the charge below starts a window and zeroes the rest. (A CPU
		 * that shares the slot meanwhile may add to the previous budget's usage, which
		 * that zeroing drops: at most a packet per CPU, once per destination and budget.)
		 */
		WRITE_ONCE_U64(entry->budget[j].window_end_ns, 0);
		return &entry->budget[j];
	}
	return NULL;
}

/*
 * The coarse clock (bpf_ktime_get_coarse_ns), for budget windows, at the price of jiffies.
 * The coarse clock moves only at a tick: this CPU keeps its last reading with the jiffies it
 * was taken at and reuses it until they move on. Reading the clock itself cost about 20 ns a
 * packet on the benchmark VM, jiffies next to nothing. A reading can lag by at most a tick
 * (a program that interrupts this one between the two stores), nothing to windows of seconds.
 */
static __always_inline __u64 budget_now(void)
{
	__u32 zero = 0;
	struct budget_scratch *c = bpf_map_lookup_elem(&sluice_budget_scratch, &zero);
	__u64 jiffies = bpf_jiffies64();

	if (!c)
		return bpf_ktime_get_coarse_ns();
	if (c->clock_jiffies != jiffies || !c->clock_ns) {
		c->clock_ns = bpf_ktime_get_coarse_ns();
		c->clock_jiffies = jiffies;
	}
	return c->clock_ns;
}

/* A window that has ended (or never started) begins again from zero, once. */
static __always_inline void usage_roll(struct sluice_budget_usage *u,
				       const struct sluice_budget *b, __u64 now)
{
	__u64 end = READ_ONCE_U64(u->window_end_ns);

	/* Racing CPUs: the compare-and-swap lets exactly one of them start the window. */
	if (now >= end &&
	    __sync_val_compare_and_swap(&u->window_end_ns, end, now + b->window_ns) == end) {
		__sync_lock_test_and_set(&u->bytes, 0);
		__sync_lock_test_and_set(&u->dropped, 0);
	}
}

/*
 * The usage record of budget b for this packet: a destination budget's in the destination's
 * entry, a user's or the node's in sluice_budget_usage. Looked up, or with `claim` created
 * (a new key starts its window). NULL when the budget has no key for this packet (a user
 * budget and no local socket) or no room was found.
 */
static __always_inline struct sluice_budget_usage *
budget_usage(struct ctx_buff *ctx, struct sluice_dest_stats *entry,
	     const struct budget_list *list, const struct sluice_budget *b, int claim)
{
	struct budget_scratch *scratch;
	struct sluice_budget_usage *u;
	__u32 zero = 0;

	if (b->kind == SLUICE_BUDGET_DEST)
		return dest_budget_slot(entry, b->id, list, claim);
	scratch = bpf_map_lookup_elem(&sluice_budget_scratch, &zero);
	if (!scratch || budget_key(ctx, scratch, b))
		return NULL;
	u = bpf_map_lookup_elem(&sluice_budget_usage, &scratch->key);
	if (u || !claim)
		return u;
	/* Window end 0, which the charge starts. NOEXIST: if another CPU made it, use its. */
	__builtin_memset(&scratch->fresh, 0, sizeof(scratch->fresh));
	bpf_map_update_elem(&sluice_budget_usage, &scratch->key, &scratch->fresh, BPF_NOEXIST);
	return bpf_map_lookup_elem(&sluice_budget_usage, &scratch->key);
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

/*
 * Has the key of budget `index` spent its `block` budget in its current window? Looked up,
 * never created: a key without a record has spent nothing.
 */
static __always_inline int budget_spent(struct ctx_buff *ctx, struct sluice_dest_stats *entry,
					const struct budget_list *list, __u32 index, __u64 now,
					int drops)
{
	const struct sluice_budget *b = bpf_map_lookup_elem(&sluice_budgets, &index);
	struct sluice_budget_usage *u;

	if (!b || !b->block)
		return 0;
	u = budget_usage(ctx, entry, list, b, 0);
	if (!u || now >= READ_ONCE_U64(u->window_end_ns) || READ_ONCE_U64(u->bytes) < b->limit)
		return 0;
	if (drops)
		__sync_fetch_and_add(&u->dropped, 1);
	return 1;
}

/* Add the packet's bytes to budget `index`; the add that reaches the limit reports it. */
static __always_inline void budget_charge(struct ctx_buff *ctx, const struct packet_info *pi,
					  struct decision *d, struct sluice_dest_stats *entry,
					  const struct budget_list *list, __u32 index, __u64 now,
					  __u64 bytes, __u8 hook)
{
	const struct sluice_budget *b = bpf_map_lookup_elem(&sluice_budgets, &index);
	struct sluice_budget_usage *u;
	__u64 before, limit;

	if (!b || !b->window_ns)
		return;
	limit = b->limit;
	u = budget_usage(ctx, entry, list, b, 1);
	if (!u)
		return;
	usage_roll(u, b, now);
	before = __sync_fetch_and_add(&u->bytes, bytes);
	/* Exactly one add takes the usage from below the limit to at or above it. */
	if (before < limit && before + bytes >= limit)
		budget_crossed(ctx, pi, d, index, before + bytes, d->packets, hook);
}

/*
 * Charge the packet to its budgets, or drop it (reason budget; audit in audit mode) when a
 * `block` budget of its key is spent. A dropped packet is charged to none of them. Two
 * passes with nothing carried between slots but scalars: the verifier prunes each slot's
 * branches instead of multiplying them.
 */
static __always_inline void budgets_apply(struct ctx_buff *ctx, const struct packet_info *pi,
					  struct decision *d, struct sluice_dest_stats *entry,
					  __u64 bytes, __u8 hook)
{
	struct budget_list list;
	int spent = 0;
	__u64 now;

	if (!d->budget_set || !budget_counts(d->verdict) || budget_list_of(d, &list))
		return;
	/* A window of seconds to weeks: the coarse clock's few milliseconds do not matter. */
	now = budget_now();
	if (list.set->block && d->verdict != SLUICE_VERDICT_AUDIT) {
#pragma unroll
		for (int i = 0; i < SLUICE_BUDGET_SLOTS; i++)
			if (i < list.n)
				spent |= budget_spent(ctx, entry, &list,
						      list.base + budget_index(list.set, i), now,
						      !(d->flags & SLUICE_POLICY_F_AUDIT));
	}
	if (spent) {
		decide_deny(SLUICE_REASON_BUDGET, d);
		if (d->verdict == SLUICE_VERDICT_DENY)
			return;
	}
#pragma unroll
	for (int i = 0; i < SLUICE_BUDGET_SLOTS; i++)
		if (i < list.n)
			budget_charge(ctx, pi, d, entry, &list,
				      list.base + budget_index(list.set, i), now, bytes, hook);
}

/*
 * The budget step as a global function, one per context flavour: the verifier checks a
 * global function once, on its own, instead of once per path that reaches it. Inlined,
 * its branches multiplied with the rest of the program's past the verifier's limit of a
 * million instructions. The cost is a call, paid only by packets a budget applies to.
 */
#ifdef SLUICE_CTX_XDP
#define budgets_charge_global budgets_charge_xdp
#define budget_crossed_global budget_crossed_xdp
#else
#define budgets_charge_global budgets_charge_skb
#define budget_crossed_global budget_crossed_skb
#endif

/* One hook per context flavour: the hook need not take one of a call's five arguments. */
#ifdef SLUICE_CTX_XDP
#define BUDGET_HOOK SLUICE_HOOK_XDP
#else
#define BUDGET_HOOK SLUICE_HOOK_TC_EGRESS
#endif

__noinline int budgets_charge_global(struct ctx_buff *ctx, const struct packet_info *pi,
				     struct decision *d, struct sluice_dest_stats *entry,
				     __u64 bytes);

__noinline int budgets_charge_global(struct ctx_buff *ctx, const struct packet_info *pi,
				     struct decision *d, struct sluice_dest_stats *entry,
				     __u64 bytes)
{
	/* The verifier checks a global function's pointer arguments as possibly NULL. */
	if (!ctx || !pi || !d || !entry)
		return 0;
	budgets_apply(ctx, pi, d, entry, bytes, BUDGET_HOOK);
	return 0;
}

/* A crossing found by the fast path below: reported by a call, as it is rare. */
__noinline int budget_crossed_global(struct ctx_buff *ctx, const struct packet_info *pi,
				     struct decision *d, __u32 index, __u64 usage);

__noinline int budget_crossed_global(struct ctx_buff *ctx, const struct packet_info *pi,
				     struct decision *d, __u32 index, __u64 usage)
{
	if (!ctx || !pi || !d)
		return 0;
	budget_crossed(ctx, pi, d, index, usage, d->packets, BUDGET_HOOK);
	return 0;
}

/*
 * The common case without a call into budgets_apply: the packet's only budget is a
 * destination budget whose slot in the entry is slot 0, its window is running, and the
 * packet leaves the usage below the limit, so there is nothing to claim, roll over, block or
 * report. 1: charged; 0: budgets_apply is to take the packet. Another CPU's add may land
 * between the read and this add: then this add can be the crossing, and reports it.
 */
static __always_inline int budget_charge_fast(struct ctx_buff *ctx, const struct packet_info *pi,
					      struct decision *d, struct sluice_dest_stats *entry,
					      __u64 bytes)
{
	struct sluice_budget_usage *u = &entry->budget[0];
	const struct sluice_budget *b;
	struct budget_list list;
	__u64 before, limit;
	__u32 index;

	if (budget_list_of(d, &list) || list.n != 1)
		return 0;
	index = list.base + budget_index(list.set, 0);
	b = bpf_map_lookup_elem(&sluice_budgets, &index);
	if (!b || b->kind != SLUICE_BUDGET_DEST || u->budget != b->id)
		return 0;
	limit = b->limit;
	if (READ_ONCE_U64(u->bytes) + bytes >= limit ||
	    budget_now() >= READ_ONCE_U64(u->window_end_ns))
		return 0;
	before = __sync_fetch_and_add(&u->bytes, bytes);
	if (before < limit && before + bytes >= limit)
		budget_crossed_global(ctx, pi, d, index, before + bytes);
	return 1;
}

/*
 * Charge a decided packet to its budgets: one compare when none applies, no call when denied.
 * A packet whose destination has no entry (the table refused one: never on an LRU table,
 * which evicts instead) is charged to none.
 */
static __always_inline void budgets_charge(struct ctx_buff *ctx, const struct packet_info *pi,
					   struct decision *d, struct sluice_dest_stats *entry,
					   __u64 packets, __u64 bytes)
{
	if (entry && d->budget_set && budget_counts(d->verdict)) {
		d->packets = packets;
		if (!budget_charge_fast(ctx, pi, d, entry, bytes))
			budgets_charge_global(ctx, pi, d, entry, bytes);
	}
}

#endif /* SLUICE_BPF_BUDGET_H */

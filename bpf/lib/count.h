/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Counters: per destination (shared entry, atomic adds) and node totals (per CPU). Include
 * from bpf/ entry files after maps.h.
 */
#ifndef SLUICE_BPF_COUNT_H
#define SLUICE_BPF_COUNT_H

#include "maps.h"

static __always_inline void count_destination(struct sluice_dest_stats *entry, __u8 verdict,
					      __u64 packets, __u64 bytes)
{
	__u32 v = verdict;

	if (!entry || v >= SLUICE_VERDICT_MAX)
		return;
	/* Keep the bound check on the register that indexes (clang may copy it otherwise). */
	barrier_var(v);
	if (v >= SLUICE_VERDICT_MAX)
		return;
	__sync_fetch_and_add(&entry->packets[v], packets);
	__sync_fetch_and_add(&entry->bytes[v], bytes);
}

static __always_inline void count_total(__u32 ifindex, __u8 hook, __u8 verdict, __u8 reason,
					__u64 packets, __u64 bytes)
{
	struct sluice_iface *iface = bpf_map_lookup_elem(&sluice_ifaces, &ifindex);
	__u32 slot = iface ? iface->slot : SLUICE_IFSLOT_OTHER;
	struct sluice_counter *c;
	__u32 index;

	/* Out-of-range values would alias another series; they cannot come from our trie. */
	if (hook >= SLUICE_HOOK_MAX || verdict >= SLUICE_VERDICT_MAX || reason >= SLUICE_REASON_MAX)
		return;
	if (slot >= SLUICE_IFSLOTS)
		slot = SLUICE_IFSLOT_OTHER;
	index = SLUICE_TOTALS_INDEX(slot, hook, verdict, reason);
	c = bpf_map_lookup_elem(&sluice_totals, &index);
	if (!c)
		return;
	/* Per-CPU value: this CPU's copy is ours alone, plain adds are exact. */
	c->packets += packets;
	c->bytes += bytes;
}

/* The rule that decided, in the half of its install's epoch (flags of the decision). */
static __always_inline void count_rule(__u32 rule_id, __u8 flags, __u64 packets, __u64 bytes)
{
	__u32 index = SLUICE_RULE_INDEX(flags & SLUICE_POLICY_F_EPOCH ? 1 : 0, rule_id);
	struct sluice_counter *c;

	if (rule_id == SLUICE_RULE_NONE)
		return;
	c = bpf_map_lookup_elem(&sluice_rules, &index);
	if (!c)
		return;
	c->packets += packets;
	c->bytes += bytes;
}

/*
 * Per local user: a packet a full local socket sent and sluice did not drop (tc only: a
 * forwarded packet has no local sender). Reading skb->sk is the whole cost for the rest.
 */
static __always_inline void count_user(struct ctx_buff *ctx, __u8 verdict, __u64 packets,
				       __u64 bytes)
{
	struct sluice_user_slot *s;
	__u32 uid, hash, index;

	(void)ctx; /* at XDP, where no frame has a local socket, ctx_has_socket() is constant 0 */
	if (verdict == SLUICE_VERDICT_DENY || !ctx_has_socket(ctx))
		return;
	uid = ctx_socket_uid(ctx);
	hash = (uid * 2654435761u) >> (32 - SLUICE_USER_SLOT_BITS);
	for (__u32 i = 0; i < SLUICE_USER_PROBES; i++) {
		index = (hash + i) & (SLUICE_USER_SLOTS - 1);
		s = bpf_map_lookup_elem(&sluice_users, &index);
		if (!s)
			return;
		/* This CPU's copy is ours alone: claiming a slot and adding need no atomics. */
		if (!s->used) {
			s->uid = uid;
			s->used = 1;
		}
		if (s->uid == uid)
			goto add;
	}
	index = SLUICE_USER_OTHER;
	s = bpf_map_lookup_elem(&sluice_users, &index);
	if (!s)
		return;
	s->used = 1;
add:
	s->packets += packets;
	s->bytes += bytes;
}

#endif /* SLUICE_BPF_COUNT_H */

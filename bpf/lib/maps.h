/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The maps every sluice hook shares. Include from the bpf/ entry files only. Each entry
 * file carries the same definitions, marked weak: the entry files are statically linked
 * into one object (bpftool gen object), where the linker keeps one copy of each, so all
 * hooks read one policy and write one set of counters; userspace pins that one set.
 */
#ifndef SLUICE_BPF_MAPS_H
#define SLUICE_BPF_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <sluice/abi.h>

/*
 * The policy: SLUICE_POLICY_BANKS banks of flattened address ranges and, after them, the
 * port classes' ranges (struct sluice_policy_range), the one in force named by the
 * generation in sluice_config. Userspace fills the other bank through an
 * mmap and then moves the generation on: one store switches every packet to the new policy,
 * never to a mixture. A bank is rewritten only after a grace period (sluice_grace) has passed
 * since it left service, so no program can still be searching it.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, SLUICE_POLICY_BANKS * SLUICE_RANGE_MAX);
	__type(key, __u32);
	__type(value, struct sluice_policy_range);
} sluice_policy SEC(".maps") __weak;

/* Inner map of sluice_grace: nothing is ever read from it. */
struct sluice_grace_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	/*
	 * Sizes, not __type(): clang 14 emits the types of an inner map template only as
	 * forward declarations, which libbpf cannot size.
	 */
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
};

/*
 * Never read by a program. Userspace updates its slot to wait for a grace period: the kernel
 * returns from a map-of-maps update only once every program run that began before it has
 * ended (synchronize_rcu), which is what reusing a bank needs.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct sluice_grace_inner);
} sluice_grace SEC(".maps") __weak;

/* Runtime state written by userspace: the active policy generation. One entry. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sluice_config);
} sluice_config SEC(".maps") __weak;

/*
 * Per-destination counters and cached decision, written by the datapath. LRU so that the
 * number of destinations a node talks to can never exhaust it; node totals stay exact
 * when an entry is evicted.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SLUICE_DEST_MAX);
	__type(key, struct sluice_addr);
	__type(value, struct sluice_dest_stats);
} sluice_dests SEC(".maps") __weak;

/*
 * A new destination's entry before the datapath fills it in: all zero, never written. From a
 * map, not the stack: the entry is larger than the stack can spare beside the rest.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sluice_dest_stats);
} sluice_dest_blank SEC(".maps") __weak;

/* Interface slots for the node totals, indexed by ifindex. Written by userspace on attach. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SLUICE_IFINDEX_MAX);
	__type(key, __u32);
	__type(value, struct sluice_iface);
} sluice_ifaces SEC(".maps") __weak;

/* Node totals, per CPU, at SLUICE_TOTALS_INDEX(slot, hook, verdict, reason). Datapath writes. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLUICE_TOTALS_MAX);
	__type(key, __u32);
	__type(value, struct sluice_counter);
} sluice_totals SEC(".maps") __weak;

/* Per-rule counters, per CPU, at SLUICE_RULE_INDEX(epoch, rule id). Datapath writes. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * SLUICE_RULE_HALF);
	__type(key, __u32);
	__type(value, struct sluice_counter);
} sluice_rules SEC(".maps") __weak;

/*
 * The decision of each fragmented datagram's first fragment, for its later fragments.
 * Written by tc egress on a first fragment, read on later ones. LRU: a flood of fragmented
 * datagrams evicts old records, whose later fragments are then decided as orphans.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SLUICE_FRAG_MAX);
	__type(key, struct sluice_frag_key);
	__type(value, struct sluice_frag_entry);
} sluice_frags SEC(".maps") __weak;

/*
 * Connections initiated from outside, whose replies pass. Written by tc ingress (a SYN to
 * a listening socket, a datagram to a bound one; refreshed by later inbound packets) and
 * by tc egress (the node's FIN/RST); read by tc egress for packets the policy denies, and
 * by the connect-time hooks for UDP sends the policy denies.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SLUICE_FLOW_MAX);
	__type(key, struct sluice_flow_key);
	__type(value, struct sluice_flow);
} sluice_flows SEC(".maps") __weak;

/*
 * The local address of each recorded UDP flow, by remote end and local port. Written by tc
 * ingress with the flow; read by the connect-time hooks of wildcard-bound sockets.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SLUICE_FLOW_MAX);
	__type(key, struct sluice_flow_peer);
	__type(value, struct sluice_addr);
} sluice_flow_locals SEC(".maps") __weak;

/*
 * The node's own addresses, and its IPv4 subnet broadcast addresses (value unused): XDP
 * leaves packets to them to the stack, unpoliced. Written by the daemon from rtnetlink.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLUICE_LOCAL_ADDRS_MAX);
	__type(key, struct sluice_addr);
	__type(value, __u8);
} sluice_local_addrs SEC(".maps") __weak;

/*
 * The generation of sluice_local_addrs (one entry; 0: never synced). The daemon moves it on
 * after each sync, which retires the answers XDP cached in destination entries (cache_local).
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} sluice_local_gen SEC(".maps") __weak;

/* Events for the daemon (struct sluice_event). Written by the datapath, read by the daemon. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, SLUICE_EVENTS_RINGBUF_BYTES);
} sluice_events SEC(".maps") __weak;

/* The events' rate limit and on/off switch. One entry, written by the daemon at start. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sluice_event_config);
} sluice_event_config SEC(".maps") __weak;

/*
 * Rate limiters of events without a destination entry, at SLUICE_EVENT_LIMIT_INDEX(type,
 * reason). Written by the datapath (atomics: every CPU shares them).
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SLUICE_EVENT_LIMITS_MAX);
	__type(key, __u32);
	__type(value, struct sluice_event_limit);
} sluice_event_limits SEC(".maps") __weak;

/*
 * Events the ring buffer had no room for, per CPU, by type. Written by the datapath; the
 * daemon reports the growth as `lost` events.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLUICE_EVENT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} sluice_event_lost SEC(".maps") __weak;

/*
 * How many of sluice_event_lost's losses, by type, a daemon has already reported: written
 * by the daemon, so the next one (after a restart) reports only what is new.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SLUICE_EVENT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} sluice_event_reported SEC(".maps") __weak;

/*
 * Budgets (bpf/lib/budget.h). The prefixes destination budgets cover, both install epochs
 * in one trie (the epoch is the key's first byte), valued with the budget set that applies
 * there. Written by the policy installer; read on the decision's miss path only.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, SLUICE_POLICY_MAX);
	__type(key, struct sluice_budget_target_key);
	__type(value, struct sluice_budget_target);
} sluice_budget_targets SEC(".maps") __weak;

/* Budget definitions, at epoch * SLUICE_BUDGET_MAX + index. Written by the policy installer. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * SLUICE_BUDGET_MAX);
	__type(key, __u32);
	__type(value, struct sluice_budget);
} sluice_budgets SEC(".maps") __weak;

/* Budget sets, at epoch * SLUICE_BUDGET_SETS + set. Written by the policy installer. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * SLUICE_BUDGET_SETS);
	__type(key, __u32);
	__type(value, struct sluice_budget_set);
} sluice_budget_sets SEC(".maps") __weak;

/*
 * Crossings per budget (the sluice_budget_exceeded_total metric), at the budget's index in
 * sluice_budgets. The datapath adds (atomics); the installer zeroes a half before reuse.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * SLUICE_BUDGET_MAX);
	__type(key, __u32);
	__type(value, __u64);
} sluice_budget_crossed SEC(".maps") __weak;

/*
 * Usage of user and node budgets per (budget id, uid) in its current window (a destination
 * budget's is in the destination's entry). Written by the datapath, deleted by `sluice
 * budget reset`. LRU: a key that ages out starts a fresh window.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SLUICE_BUDGET_USAGE_MAX);
	__type(key, struct sluice_budget_usage_key);
	__type(value, struct sluice_budget_usage);
} sluice_budget_usage SEC(".maps") __weak;

/* Per-user counters in slots (struct sluice_user_slot says how). Written by tc egress. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLUICE_USER_SLOTS + 1);
	__type(key, __u32);
	__type(value, struct sluice_user_slot);
} sluice_users SEC(".maps") __weak;

/*
 * The budget step's working space, off the stack (budget.h says why): a usage key being
 * built, a new usage record, the ids of the budgets that apply to the packet, and this CPU's
 * last reading of the coarse clock with the jiffies it was taken at (budget_now).
 */
struct budget_scratch {
	struct sluice_budget_usage_key key;
	struct sluice_budget_usage fresh; /* all zero: a record whose window is yet to start */
	__u32 ids[SLUICE_BUDGET_SLOTS];   /* 0 past the set's budgets */
	__u64 clock_jiffies;
	__u64 clock_ns;
};

/* Scratch space for the budget step, one per CPU. Datapath only. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct budget_scratch);
} sluice_budget_scratch SEC(".maps") __weak;

#endif /* SLUICE_BPF_MAPS_H */

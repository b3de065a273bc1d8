/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The kernel <-> userspace ABI of sluice, defined once and included by the BPF programs
 * (bpf/) and by the daemon and CLI (user/). Every map key and value lives here, with its
 * size pinned by _Static_assert so a layout change is a compile error on both sides.
 *
 * Addresses: IPv4 is stored as an IPv4-mapped IPv6 address (::ffff:a.b.c.d), so one
 * policy (one sorted run of address ranges) and one per-destination table serve both
 * families. An IPv4 /N prefix is the
 * mapped /(96+N) prefix.
 */
#ifndef SLUICE_ABI_H
#define SLUICE_ABI_H

#include <linux/types.h>

/*
 * Verdicts: what happened to a packet. The numbering feeds the datapath, the counters'
 * array indexes and the metric labels; names come from the X-macro so there is one list.
 */
#define SLUICE_VERDICTS(X)                                                                         \
	X(ALLOW, "allow")                                                                          \
	X(DENY, "deny")                                                                            \
	X(AUDIT, "audit")                                                                          \
	X(REPLY, "reply")                                                                          \
	X(ESSENTIAL, "essential")

enum sluice_verdict {
#define SLUICE_ENUM_VERDICT(id, name) SLUICE_VERDICT_##id,
	SLUICE_VERDICTS(SLUICE_ENUM_VERDICT)
#undef SLUICE_ENUM_VERDICT
		SLUICE_VERDICT_MAX,
};

/*
 * Reasons: why a verdict was reached. Packets the parser cannot decide are never allowed
 * silently: they get DENY (or AUDIT in audit mode) with a reason of their own.
 */
#define SLUICE_REASONS(X)                                                                          \
	X(RULE, "rule")               /* a policy rule matched */                                  \
	X(DEFAULT, "default")         /* no rule matched: the policy's default verdict */          \
	X(NON_IP, "non_ip")           /* not IPv4/IPv6: passes, counted on its own */              \
	X(TRUNCATED, "truncated")     /* headers end before the destination address */            \
	X(UNPARSEABLE, "unparseable") /* too many VLAN tags, bad IP header length, ... */         \
	X(NO_POLICY, "no_policy")     /* no policy installed: fail closed */                       \
	X(REPLY, "reply")             /* part of a connection initiated from outside */            \
	X(ESSENTIAL, "essential")     /* ARP, neighbour/router discovery, MLD, DHCP clients */     \
	X(FRAGMENT, "fragment")       /* a fragment that cannot be tied to an allowed datagram */  \
	X(BUDGET, "budget")           /* a `block` budget of this destination/user is spent */

enum sluice_reason {
#define SLUICE_ENUM_REASON(id, name) SLUICE_REASON_##id,
	SLUICE_REASONS(SLUICE_ENUM_REASON)
#undef SLUICE_ENUM_REASON
		SLUICE_REASON_MAX,
};

/*
 * Per local user (uid of the sending socket): what left the node, written by tc egress for
 * every locally originated packet that was not dropped. A per-CPU array of slots: a uid
 * takes the first free slot among SLUICE_USER_PROBES from its hash, on each CPU on its
 * own (the same uid may sit in different slots on different CPUs: readers sum by uid). A
 * uid that finds them all taken counts in the last slot, SLUICE_USER_OTHER ("other"), so
 * the sums stay exact. An array lookup is inlined by the verifier: no helper call, no hash.
 */
struct sluice_user_slot {
	__u32 uid;
	__u32 used; /* 0: free */
	__u64 packets;
	__u64 bytes;
};
_Static_assert(sizeof(struct sluice_user_slot) == 24, "sluice_user_slot is 24 bytes");

#ifndef SLUICE_USER_SLOT_BITS
#define SLUICE_USER_SLOT_BITS 12 /* 4096 slots: uids seen on one CPU */
#endif
#define SLUICE_USER_SLOTS (1u << SLUICE_USER_SLOT_BITS)
#define SLUICE_USER_OTHER SLUICE_USER_SLOTS /* the slot of uids that found no slot */
#define SLUICE_USER_PROBES 4
#define SLUICE_USER_MAX SLUICE_USER_SLOTS /* distinct uids a reader can report */

/*
 * Hooks, the `hook` label of the counters. At `connect` (the cgroup connect/sendmsg hooks)
 * a "packet" is one decided connect() or sendmsg() call and its bytes are 0: the hook sees
 * the call before any packet, and not its length.
 */
#define SLUICE_HOOKS(X) X(TC_EGRESS, "tc_egress") X(XDP, "xdp") X(CONNECT, "connect")

enum sluice_hook {
#define SLUICE_ENUM_HOOK(id, name) SLUICE_HOOK_##id,
	SLUICE_HOOKS(SLUICE_ENUM_HOOK)
#undef SLUICE_ENUM_HOOK
		SLUICE_HOOK_MAX,
};

enum sluice_mode {
	SLUICE_MODE_ENFORCE = 0,
	SLUICE_MODE_AUDIT = 1,
};

/*
 * Policy-wide flags, repeated in every trie entry so the datapath can read them from ::/0
 * (and from a destination's cached decision). A set bit departs from the default policy.
 */
#define SLUICE_POLICY_F_AUDIT 0x01        /* audit mode: nothing is dropped */
#define SLUICE_POLICY_F_NO_ESSENTIAL 0x02 /* `essential off`: essential traffic is policed */
#define SLUICE_POLICY_F_NO_REPLIES 0x04   /* `replies off`: recorded inbound flows do not pass */
#define SLUICE_POLICY_F_EPOCH 0x80        /* the half of sluice_rules this install counts into */

/* Rule id of the policy's default verdict (no rule matched). */
#define SLUICE_RULE_DEFAULT 0xffffffffu
/* Rule id when no rule applies at all (non-IP, truncated, ...). */
#define SLUICE_RULE_NONE 0xfffffffeu

/* An IPv6 address, or an IPv4 address mapped into IPv6 (::ffff:a.b.c.d). Network order. */
struct sluice_addr {
	__u8 a[16];
};
_Static_assert(sizeof(struct sluice_addr) == 16, "sluice_addr is 16 bytes");

/*
 * Budgets (SPEC section 4). A policy's budgets are compiled into a table of definitions
 * (struct sluice_budget), a trie of the destination prefixes they cover (the value names a
 * budget set: which definitions apply to addresses there), and the sets themselves. Like the
 * per-rule counters, each of these has two halves, one per install epoch
 * (SLUICE_POLICY_F_EPOCH): a full install fills the half the active policy does not use, so
 * a packet reads the definitions of the policy that decided it. User and node budgets apply
 * to every destination: the compiler adds them to every set, and adds ::/0 to the trie.
 */
#define SLUICE_BUDGET_KINDS(X) X(DEST, "destination") X(USER, "user") X(NODE, "node")

enum sluice_budget_kind {
#define SLUICE_ENUM_BUDGET_KIND(id, name) SLUICE_BUDGET_##id,
	SLUICE_BUDGET_KINDS(SLUICE_ENUM_BUDGET_KIND)
#undef SLUICE_ENUM_BUDGET_KIND
		SLUICE_BUDGET_KIND_MAX,
};

#ifndef SLUICE_BUDGET_MAX
#define SLUICE_BUDGET_MAX 64 /* budgets in one policy (per epoch half) */
#endif
#define SLUICE_BUDGET_SLOTS 4  /* budgets that may apply to one packet: nesting targets + user + node */
#define SLUICE_BUDGET_SETS 256 /* distinct budget sets per policy; set 0 is "no budget" */
#ifndef SLUICE_BUDGET_USAGE_MAX
#define SLUICE_BUDGET_USAGE_MAX 131072 /* (budget, destination or user) usage records */
#endif

/* One budget: written by the installer into its epoch's half of sluice_budgets. */
struct sluice_budget {
	__u64 limit;     /* bytes per window; reaching it crosses the budget */
	__u64 window_ns; /* window length */
	__u32 id;        /* stable identity (hash of the name): keys its usage across reloads */
	__u8 kind;       /* enum sluice_budget_kind */
	__u8 block;      /* 1: drop a key's packets once its usage reached the limit */
	__u8 pad[2];
};
_Static_assert(sizeof(struct sluice_budget) == 24, "sluice_budget is 24 bytes");

/* The budgets that apply to one destination: indexes into the epoch's half of sluice_budgets. */
struct sluice_budget_set {
	__u8 n;
	__u8 budget[SLUICE_BUDGET_SLOTS];
	__u8 block; /* 1: one of them is a `block` budget (else no packet looks for a spent one) */
	__u8 pad[2];
};
_Static_assert(sizeof(struct sluice_budget_set) == 8, "sluice_budget_set is 8 bytes");

/*
 * Key of the budget target trie: the epoch (0/1) as the first byte of the data, then the
 * address, so one trie holds both halves. prefixlen = 8 + the address prefix length.
 */
struct sluice_budget_target_key {
	__u32 prefixlen;
	__u8 epoch;
	struct sluice_addr addr;
	__u8 pad[3]; /* never inside a prefix */
};
_Static_assert(sizeof(struct sluice_budget_target_key) == 24, "budget target key is 24 bytes");
#define SLUICE_BUDGET_PREFIX_EPOCH 8

/* Value of the budget target trie: the budget set (1..SLUICE_BUDGET_SETS-1) of the prefix. */
struct sluice_budget_target {
	__u32 set;
};
_Static_assert(sizeof(struct sluice_budget_target) == 4, "sluice_budget_target is 4 bytes");

/*
 * A budget usage key: a budget's stable id and what it counts: the destination (destination
 * budgets), the uid (user budgets) or nothing (node budgets). The usage table
 * (sluice_budget_usage) holds user and node keys; a destination budget's usage is in the
 * destination's entry (struct sluice_dest_stats), which userspace reports under this key.
 */
struct sluice_budget_usage_key {
	__u32 budget; /* sluice_budget.id */
	__u32 uid;    /* user budgets; else 0 */
	struct sluice_addr addr; /* destination budgets; else all zero */
};
_Static_assert(sizeof(struct sluice_budget_usage_key) == 24, "budget usage key is 24 bytes");

/*
 * One key's usage in its current window, written by the datapath (atomics: every CPU shares
 * it) and cleared by `sluice budget reset`. The window starts at the key's first counted
 * packet and rolls over at the first packet at or after window_end_ns.
 */
struct sluice_budget_usage {
	__u64 window_end_ns; /* bpf_ktime_get_coarse_ns (CLOCK_MONOTONIC_COARSE) */
	__u64 bytes;         /* counted in this window */
	/*
	 * In a destination entry's slot: the sluice_budget.id it counts for (never 0; 0: the
	 * slot is free). 0 in the usage table, whose key says it.
	 */
	__u32 budget;
	__u32 pad;
	__u64 dropped; /* packets `block` dropped in this window (last: a charge does not read it) */
};
_Static_assert(sizeof(struct sluice_budget_usage) == 32, "sluice_budget_usage is 32 bytes");

/*
 * A destination prefix as the compiler emits it (the layout a kernel LPM trie expects: the
 * benchmark's plain LPM baseline keys its trie with it).
 */
struct sluice_lpm_key {
	__u32 prefixlen; /* 0..128, over the mapped address */
	struct sluice_addr addr;
};
_Static_assert(sizeof(struct sluice_lpm_key) == 20, "sluice_lpm_key is 20 bytes");

/*
 * The compiled decision for a prefix, and for the address ranges the prefix wins. The
 * compiler bakes the policy's mode in (a deny in audit mode is stored as AUDIT), so the
 * whole policy is one bank of ranges and switching banks switches everything at once. When
 * the decision depends on protocol or port, port_class names its entries among the port
 * ranges and the verdict here is unused.
 */
struct sluice_policy_entry {
	__u32 rule_id;    /* index into the policy's rule table, or SLUICE_RULE_DEFAULT */
	__u32 generation; /* the policy generation that produced this entry */
	__u32 port_class; /* 0: verdict below; else look (class, proto, port) up in the port ranges */
	__u8 verdict;     /* enum sluice_verdict, mode already applied */
	__u8 reason;      /* enum sluice_reason */
	__u8 flags;       /* SLUICE_POLICY_F_*, the same in every entry of one policy */
	__u8 pad;
};
_Static_assert(sizeof(struct sluice_policy_entry) == 16, "sluice_policy_entry is 16 bytes");

/*
 * One element of the policy map: the installed policy flattened into the sorted, disjoint
 * address ranges its prefixes carve out of the (IPv4-mapped) 128-bit address space, each
 * with the decision of the longest prefix covering it. A destination's decision is that of
 * the last range starting at or below it: a binary search the datapath does in
 * SLUICE_RANGE_STEPS steps, and userspace fills with plain stores into an mmap of the map.
 *
 * The map holds SLUICE_POLICY_BANKS banks of SLUICE_RANGE_MAX elements; the policy of
 * generation G lives in bank SLUICE_POLICY_BANK(G). A bank holds the address ranges from its
 * element 0, then the port classes' ranges: the same flattening of the port entries (struct
 * sluice_port_key) as prefixes whose first 7 bytes are the class (big endian), protocol and
 * port. Element 0 of each part starts at 0, so its start is implied: start_lo there holds
 * the part's number of ranges instead, and in the bank's element 0 start_hi holds the index
 * (from the bank's start) where the port ranges begin.
 */
struct sluice_policy_range {
	__u64 start_hi; /* first address of the range as a number: bytes 0..7 of the address */
	__u64 start_lo; /* bytes 8..15 (in element 0 of a part: its number of ranges) */
	struct sluice_policy_entry decision;
};
_Static_assert(sizeof(struct sluice_policy_range) == 32, "sluice_policy_range is 32 bytes");

/*
 * A port entry as the compiler emits it: a port class, then protocol, then destination
 * port, as a prefix. Entries are /32 (the class's fallback: any protocol), /40 (a protocol,
 * any or no port) and /40+k (a block of ports, never holding port 0). A packet is decided by
 * the longest entry holding (class, protocol, port), port 0 for a packet without one: the
 * /40 or /32 entry, since no block holds port 0.
 */
struct sluice_port_key {
	__u32 prefixlen; /* 32..56 over the bytes below */
	__u32 port_class;
	__u8 proto;
	__u8 port[2]; /* network order */
	__u8 pad;     /* never inside a prefix */
};
_Static_assert(sizeof(struct sluice_port_key) == 12, "sluice_port_key is 12 bytes");

struct sluice_port_entry {
	__u32 rule_id;
	__u8 verdict; /* mode already applied */
	__u8 reason;
	__u8 pad[2];
};
_Static_assert(sizeof(struct sluice_port_entry) == 8, "sluice_port_entry is 8 bytes");

#define SLUICE_PORT_PREFIX_CLASS 32
#define SLUICE_PORT_PREFIX_PROTO 40
#define SLUICE_PORT_PREFIX_PORT 56

/*
 * Event types (SPEC section 5). The rate-limited ones come first, so they index the
 * limiter arrays of struct sluice_dest_stats directly. The kernel emits deny, audit,
 * new_destination (and budget); the daemon adds policy and lost.
 */
#define SLUICE_EVENT_TYPES(X)                                                                      \
	X(DENY, "deny")                                                                            \
	X(AUDIT, "audit")                                                                          \
	X(BUDGET, "budget")                                                                        \
	X(NEW_DESTINATION, "new_destination")                                                      \
	X(POLICY, "policy")                                                                        \
	X(LOST, "lost")

enum sluice_event_type {
#define SLUICE_ENUM_EVENT(id, name) SLUICE_EVENT_##id,
	SLUICE_EVENT_TYPES(SLUICE_ENUM_EVENT)
#undef SLUICE_ENUM_EVENT
		SLUICE_EVENT_MAX,
};
/* Types below this are rate-limited per destination in the kernel. */
#define SLUICE_EVENT_LIMITED_MAX (SLUICE_EVENT_BUDGET + 1)

/* struct sluice_event.flags: which optional fields hold a value. */
#define SLUICE_EVENT_F_DST 0x01    /* src, dst, proto (an IP packet) */
#define SLUICE_EVENT_F_PORTS 0x02  /* sport, dport */
#define SLUICE_EVENT_F_SOCKET 0x04 /* uid, cgroup_id: a locally originated packet */

/*
 * One record of the sluice_events ring buffer, written by the datapath. `suppressed` is
 * the number of events of the same (destination, type) the rate limiter held back since
 * the previous one was emitted. A budget event (never rate limited) carries the budget's
 * index in sluice_budgets in rule_id, and the key's usage so far in bytes.
 */
struct sluice_event {
	__u64 ts_ns;     /* bpf_ktime_get_ns (CLOCK_MONOTONIC) */
	__u64 cgroup_id; /* cgroup v2 id (inode) of the sending socket */
	__u64 suppressed;
	__u64 packets; /* wire packets of the frame (GSO segments) */
	__u64 bytes;
	struct sluice_addr src;
	struct sluice_addr dst;
	__u32 rule_id;
	__u32 ifindex;
	__u32 uid;
	__u8 sport[2]; /* network order */
	__u8 dport[2]; /* network order */
	__u8 type;     /* enum sluice_event_type */
	__u8 verdict;
	__u8 reason;
	__u8 hook;
	__u8 proto;
	__u8 flags; /* SLUICE_EVENT_F_* */
	__u8 pad[2];
};
_Static_assert(sizeof(struct sluice_event) == 96, "sluice_event is 96 bytes");

/* Events config: the single entry of sluice_event_config, written by the daemon. */
struct sluice_event_config {
	__u64 interval_ns; /* rate limit: one event per (destination, type) per interval;
			      0 = SLUICE_EVENT_INTERVAL_DEFAULT_NS */
	__u32 off;         /* 1: emit nothing (no consumer, or events on vs off benchmarks) */
	__u32 pad;
};
_Static_assert(sizeof(struct sluice_event_config) == 16, "sluice_event_config is 16 bytes");

#define SLUICE_EVENT_INTERVAL_DEFAULT_NS 1000000000ull

/*
 * Events that had no destination entry to limit them by (a frame that is not IP or could
 * not be parsed, or the table refused an entry) share one limiter per (type, reason),
 * in sluice_event_limits at SLUICE_EVENT_LIMIT_INDEX.
 */
#define SLUICE_EVENT_LIMITS_MAX (SLUICE_EVENT_LIMITED_MAX * SLUICE_REASON_MAX)
#define SLUICE_EVENT_LIMIT_INDEX(type, reason) ((type)*SLUICE_REASON_MAX + (reason))

struct sluice_event_limit {
	__u64 last_ns;
	__u64 suppressed;
};
_Static_assert(sizeof(struct sluice_event_limit) == 16, "sluice_event_limit is 16 bytes");

#ifndef SLUICE_EVENTS_RINGBUF_BYTES
#define SLUICE_EVENTS_RINGBUF_BYTES (1u << 20)
#endif

/*
 * Value of the per-destination table (LRU hash keyed by struct sluice_addr). Counters are
 * added atomically by every CPU. The cached decision lets a packet skip the LPM lookup
 * while it carries the active policy generation; it is three 64-bit words, each written in
 * one store and tagged with the generation in its high half, so a reader can tell a
 * decision written whole from one that racing CPUs (one still on the old trie across a
 * policy switch) wrote piecewise: unless all three tags equal the active generation, the
 * entry is a miss and is written again. No per-packet timestamp: reading a clock costs more
 * than the rest of the hot path (see docs/performance.md).
 */
struct sluice_dest_stats {
	__u64 packets[SLUICE_VERDICT_MAX];
	__u64 bytes[SLUICE_VERDICT_MAX];
	__u64 cache_rule;    /* SLUICE_CACHE_WORD(generation, rule_id) */
	__u64 cache_class;   /* SLUICE_CACHE_WORD(generation, port_class); class 0: none */
	__u64 cache_verdict; /* SLUICE_CACHE_WORD(generation, budget set << 24 | flags << 16 |
				reason << 8 | verdict) */
	/*
	 * XDP's "is this address the node's own?" (xdp.bpf.c): SLUICE_CACHE_WORD(local-address
	 * generation, SLUICE_LOCAL_KNOWN | 1 if local), valid while the generation is current.
	 */
	__u64 cache_local;
	/*
	 * The usage of the destination budgets that apply here, kept in the destination's own
	 * entry so that charging one costs no lookup of its own (budget.h); touched only when a
	 * budget applies, right after the cached decision: a charge reads the first 20 bytes of
	 * a slot. Slot j counts for the budget whose stable id is budget[j].budget, across
	 * policy reloads; 0: free. A slot whose budget no longer applies to the destination is
	 * taken over by the next budget that needs one.
	 */
	struct sluice_budget_usage budget[SLUICE_BUDGET_SLOTS];
	__u64 first_seen_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns) when the entry was created */
	/*
	 * The event rate limiter of this destination, per rate-limited event type (events.h):
	 * when the last event was emitted (bpf_ktime_get_coarse_ns), and the repeats since, which
	 * the next event carries as `suppressed`. Touched only by denied and audited packets.
	 */
	__u64 event_last_ns[SLUICE_EVENT_LIMITED_MAX];
	__u64 event_suppressed[SLUICE_EVENT_LIMITED_MAX];
};
_Static_assert(sizeof(struct sluice_dest_stats) == 2 * 8 * SLUICE_VERDICT_MAX + 40 +
							  2 * 8 * SLUICE_EVENT_LIMITED_MAX +
							  32 * SLUICE_BUDGET_SLOTS,
	       "sluice_dest_stats layout");

/* cache_local's value bits: the answer is known (a zeroed entry knows nothing), and local. */
#define SLUICE_LOCAL_KNOWN 2u
#define SLUICE_LOCAL_YES 1u

/*
 * One destination as the exporter's in-kernel walk (bpf/dests_iter.bpf.c) copies it out:
 * the key and the value of the destination table, side by side.
 */
struct sluice_dest_record {
	struct sluice_addr addr;
	struct sluice_dest_stats stats;
};

/*
 * Records the walk without a seq_file (sluice_dests_top) holds per run; when more
 * destinations qualify, the exporter walks again with the map iterator, which streams them.
 * Well above the default top N (100): after a first scrape, only the previous top N and
 * those that passed its smallest count since qualify.
 */
#define SLUICE_DEST_FOUND_MAX 4096

#define SLUICE_CACHE_WORD(generation, value) (((__u64)(generation) << 32) | (__u32)(value))
#define SLUICE_CACHE_GEN(word) ((__u32)((word) >> 32))
#define SLUICE_CACHE_VALUE(word) ((__u32)(word))

/*
 * Node totals live in a per-CPU array indexed by (interface slot, hook, verdict, reason):
 * two inlined array lookups per packet instead of a hash lookup. Userspace gives each
 * attached interface a slot in sluice_ifaces (indexed by ifindex); slot 0 counts
 * interfaces without one (never attached by this instance, or ifindex beyond the table).
 */
#ifndef SLUICE_IFINDEX_MAX
#define SLUICE_IFINDEX_MAX 65536
#endif
#ifndef SLUICE_IFSLOTS
#define SLUICE_IFSLOTS 64
#endif
#define SLUICE_IFSLOT_OTHER 0

struct sluice_iface {
	__u32 slot; /* 0 = no slot */
};
_Static_assert(sizeof(struct sluice_iface) == 4, "sluice_iface is 4 bytes");

#define SLUICE_TOTALS_MAX (SLUICE_IFSLOTS * SLUICE_HOOK_MAX * SLUICE_VERDICT_MAX * SLUICE_REASON_MAX)
#define SLUICE_TOTALS_INDEX(slot, hook, verdict, reason)                                           \
	((((slot)*SLUICE_HOOK_MAX + (hook)) * SLUICE_VERDICT_MAX + (verdict)) * SLUICE_REASON_MAX + \
	 (reason))

struct sluice_counter {
	__u64 packets;
	__u64 bytes;
};
_Static_assert(sizeof(struct sluice_counter) == 16, "sluice_counter is 16 bytes");

/*
 * Key of the fragment table (LRU hash): what identifies one datagram's fragments. For IPv6,
 * proto is the fragment header's next header, the same in every fragment of a datagram.
 */
struct sluice_frag_key {
	struct sluice_addr src;
	struct sluice_addr dst;
	__u32 id; /* IPv4 identification (16 bits) or IPv6 fragment identification, host order */
	__u8 proto;
	__u8 pad[3];
};
_Static_assert(sizeof(struct sluice_frag_key) == 40, "sluice_frag_key is 40 bytes");

/* The decision of a datagram's first fragment, which its later fragments follow. */
struct sluice_frag_entry {
	__u32 rule_id;
	__u8 verdict;
	__u8 reason;
	__u8 epoch; /* SLUICE_POLICY_F_EPOCH of the decision: which install rule_id belongs to */
	__u8 pad;
};
_Static_assert(sizeof(struct sluice_frag_entry) == 8, "sluice_frag_entry is 8 bytes");

/*
 * Key of the flow table (LRU hash): a connection initiated from outside, seen from the
 * node. The ingress program writes it from an arriving packet (local = its destination);
 * egress looks it up from a departing one (local = its source).
 */
struct sluice_flow_key {
	struct sluice_addr local;
	struct sluice_addr remote;
	__u8 local_port[2];  /* network order */
	__u8 remote_port[2]; /* network order */
	__u8 proto;          /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad[3];
};
_Static_assert(sizeof(struct sluice_flow_key) == 40, "sluice_flow_key is 40 bytes");

/*
 * Key of the flow table's index by remote end (LRU hash): a recorded UDP flow without its
 * local address. A connect-time hook on a socket bound to the wildcard address does not know
 * which local address the flow was recorded under; this finds it, then sluice_flows decides.
 */
struct sluice_flow_peer {
	struct sluice_addr remote;
	__u8 local_port[2];  /* network order */
	__u8 remote_port[2]; /* network order */
	__u8 proto;          /* IPPROTO_UDP */
	__u8 pad[3];
};
_Static_assert(sizeof(struct sluice_flow_peer) == 24, "sluice_flow_peer is 24 bytes");

/*
 * A recorded inbound flow. Live while the clock (bpf_ktime_get_coarse_ns) is below
 * expires_ns. fin_in is written by the ingress program only and fin_out by egress only, so
 * neither side overwrites the other's; closing, once set, stops refreshes from extending it.
 */
struct sluice_flow {
	__u64 expires_ns;
	__u8 fin_in;  /* the remote end sent a FIN */
	__u8 fin_out; /* the node sent a FIN */
	__u8 closing; /* RST, or FIN both ways: the flow lingers until expires_ns, then ends */
	__u8 pad[5];
};
_Static_assert(sizeof(struct sluice_flow) == 16, "sluice_flow is 16 bytes");

/*
 * Per-rule counters: a per-CPU array in two halves. Rule ids are positions in one installed
 * policy and change meaning at the next full install, so each full install counts into the
 * other half (SLUICE_POLICY_F_EPOCH in its entries, cached with the decision): the daemon
 * reads the old half by the old rule names once the switch is done, and the installer zeroes
 * a half before reusing it. Rule ids beyond SLUICE_RULE_COUNTERS share one "other" slot, so
 * the series stay bounded whatever the policy's size.
 */
#ifndef SLUICE_RULE_COUNTERS
#define SLUICE_RULE_COUNTERS 4096
#endif
#define SLUICE_RULE_SLOT_DEFAULT SLUICE_RULE_COUNTERS
#define SLUICE_RULE_SLOT_OTHER (SLUICE_RULE_COUNTERS + 1)
#define SLUICE_RULE_HALF (SLUICE_RULE_COUNTERS + 2)
#define SLUICE_RULE_SLOT(rule_id)                                                                  \
	((rule_id) == SLUICE_RULE_DEFAULT       ? SLUICE_RULE_SLOT_DEFAULT                      \
	 : (rule_id) < SLUICE_RULE_COUNTERS ? (rule_id)                                     \
					    : SLUICE_RULE_SLOT_OTHER)
#define SLUICE_RULE_INDEX(epoch, rule_id) ((epoch)*SLUICE_RULE_HALF + SLUICE_RULE_SLOT(rule_id))

/* The single entry of the config array: state the daemon changes while programs run. */
struct sluice_config {
	__u32 generation; /* the active policy generation (it names the bank); 0 = none */
	__u32 pad;
};
_Static_assert(sizeof(struct sluice_config) == 8, "sluice_config is 8 bytes");

/*
 * The bank of the policy map that generation g lives in. Consecutive generations take the
 * banks in turn, so an install writes the bank that left service two switches ago: the
 * grace period it needs (no program still searching it) has usually passed already, even
 * for overrides a few milliseconds apart. Generations wrap from 2^32 - 1 (bank 0) to 1
 * (0 means "none"), keeping the turn.
 */
#define SLUICE_POLICY_BANKS 3
#define SLUICE_POLICY_BANK(g) ((g) % SLUICE_POLICY_BANKS)

/* Capacities. The policy map and the others are preallocated. */
#ifndef SLUICE_POLICY_MAX
#define SLUICE_POLICY_MAX (1u << 18) /* destination prefixes in one policy */
#endif
/*
 * Ranges in one bank, address and port ranges together: each prefix or port entry opens one
 * and closes one, plus the catch-alls, rounded so that a bank is a whole number of pages (up
 * to 64 KiB ones): userspace maps just one bank.
 */
#define SLUICE_RANGE_MAX (2 * SLUICE_POLICY_MAX + 2048)
/* Steps of the datapath's binary search: 2^steps must exceed a bank. */
#define SLUICE_RANGE_STEPS 20
_Static_assert((1ull << SLUICE_RANGE_STEPS) > SLUICE_RANGE_MAX, "the search covers a bank");
_Static_assert(SLUICE_RANGE_MAX * sizeof(struct sluice_policy_range) % 65536 == 0,
	       "a bank is a whole number of pages");
#ifndef SLUICE_PORT_MAX
#define SLUICE_PORT_MAX (1u << 20)
#endif
#ifndef SLUICE_DEST_MAX
#define SLUICE_DEST_MAX 131072
#endif
#ifndef SLUICE_FRAG_MAX
#define SLUICE_FRAG_MAX 8192
#endif
#ifndef SLUICE_FLOW_MAX
#define SLUICE_FLOW_MAX 65536
#endif
#ifndef SLUICE_LOCAL_ADDRS_MAX
#define SLUICE_LOCAL_ADDRS_MAX 4096 /* the node's own addresses, for XDP */
#endif

/*
 * Pinned objects, relative to the pin directory (default /sys/fs/bpf/sluice). Map pins
 * carry the map's name so libbpf can reuse them on the next start.
 */
#define SLUICE_PIN_DIR_DEFAULT "/sys/fs/bpf/sluice"
#define SLUICE_STATE_DIR_DEFAULT "/var/lib/sluice"
#define SLUICE_PIN_MAPS "maps"
#define SLUICE_PIN_PROGS "progs"
#define SLUICE_PIN_LINKS "links"
/* Program pins under progs/; link pins under links/ are NAME_IFINDEX (bpffs reserves dots). */
#define SLUICE_PIN_PROG_TC_EGRESS "tc_egress"
#define SLUICE_PIN_PROG_TC_INGRESS "tc_ingress"
#define SLUICE_PIN_PROG_XDP "xdp"
/* The cgroup connect-time hooks: programs under progs/, links under links/ as NAME_CGROUPID. */
#define SLUICE_PIN_PROG_CONNECT4 "connect4"
#define SLUICE_PIN_PROG_CONNECT6 "connect6"
#define SLUICE_PIN_PROG_SENDMSG4 "sendmsg4"
#define SLUICE_PIN_PROG_SENDMSG6 "sendmsg6"

#endif /* SLUICE_ABI_H */

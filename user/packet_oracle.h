/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The packet-level reference decision: what the tc egress program must do with one frame,
 * written in plain C straight from docs/design.md ("Packet shapes: the verdict and reason
 * each one gets"), for clarity and not for speed. It is the oracle the BPF tests hold the
 * datapath to; policy_decide() (policy.h) is its rule-level part.
 *
 * The datapath's state that a decision depends on is modelled here: the fragment table
 * (first fragments seen, whose decision later fragments follow) and the flow table
 * (connections initiated from outside, which the tests record). Neither model evicts:
 * tests keep them far below the kernel maps' capacities, and reset both sides together.
 */
#ifndef SLUICE_PACKET_ORACLE_H
#define SLUICE_PACKET_ORACLE_H

#include <stdbool.h>
#include <stddef.h>
#include <sluice/abi.h>
#include "policy.h"

#define ORACLE_VLAN_MAX 2    /* in-band tags walked; a deeper stack is unparseable */
#define ORACLE_IPV6_EXT_MAX 8 /* IPv6 extension headers walked; a longer chain is unparseable */

/* The skb facts the datapath reads besides the frame's bytes. */
struct oracle_skb {
	unsigned gso_segs;   /* > 1: a GSO super-packet of that many wire packets */
	bool vlan_offloaded; /* a tag in skb metadata, not in the data: changes nothing */
};

/* What identifies one datagram's fragments (the datapath's sluice_frag_key). */
struct oracle_frag_key {
	struct sluice_addr src, dst;
	__u32 id;   /* IPv4 identification or IPv6 fragment identification */
	__u8 proto; /* IPv4 protocol, or the IPv6 fragment header's next header */
};

/* A connection initiated from outside, seen from the node (the datapath's sluice_flows). */
struct oracle_flow_key {
	struct sluice_addr local, remote;
	__u16 local_port, remote_port; /* host order */
	__u8 proto;                    /* IPPROTO_TCP or IPPROTO_UDP */
};

struct oracle_frag {
	struct oracle_frag_key key;
	__u32 rule_id;
	__u8 verdict, reason;
};

struct oracle_flow {
	struct oracle_flow_key key;
	bool live; /* false: recorded but expired or closed (it must not let anything pass) */
};

struct oracle_state {
	struct oracle_frag *frags;
	size_t nfrags, frags_cap;
	struct oracle_flow *flows;
	size_t nflows, flows_cap;
};

/* What the datapath must do with the frame and count for it. */
struct oracle_result {
	__u8 verdict; /* enum sluice_verdict */
	__u8 reason;  /* enum sluice_reason */
	__u32 rule_id;
	bool has_dst;           /* an IP destination was read: counted per destination */
	struct sluice_addr dst; /* when has_dst; IPv4 mapped into IPv6 */
	__u64 packets, bytes;   /* wire packets and bytes (a GSO super-packet's segments) */
	/* Tables the frame touched, so a test can keep the kernel's copies in step. */
	bool recorded_frag;      /* a first fragment: the fragment table holds its decision */
	bool flow_key_valid;     /* a TCP/UDP packet with ports: flow_key is its flow */
	struct oracle_flow_key flow_key;
};

void oracle_state_init(struct oracle_state *st);
void oracle_state_free(struct oracle_state *st);
/* Forget every recorded fragment (what a test does when it clears the kernel's table). */
void oracle_frags_clear(struct oracle_state *st);
/* Record an inbound flow, live or not, as the ingress program would have. 0 or -ENOMEM. */
int oracle_flow_add(struct oracle_state *st, const struct oracle_flow_key *key, bool live);
void oracle_flows_clear(struct oracle_state *st);

/*
 * Decide one frame of len bytes under policy p, as the tc egress program must: fills *out
 * and updates the fragment table model (a first fragment records its decision). Returns 0,
 * or -ENOMEM when the model cannot grow.
 */
int oracle_decide(const struct policy *p, struct oracle_state *st, const __u8 *frame,
		  size_t len, const struct oracle_skb *skb, struct oracle_result *out);

/*
 * Does the decision for dst depend on protocol or port (a port class, docs/design.md)?
 * True when the best rule of the longest rule prefix containing dst has a protocol/port
 * condition.
 */
bool oracle_port_class(const struct policy *p, const struct sluice_addr *dst);

#endif

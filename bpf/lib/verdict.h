/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The verdict of one frame, in the order of docs/design.md, "Packet shapes": link layer,
 * IP headers (parse.h), fragments (frag.h), essential traffic, the policy (policy.h), ICMP
 * errors, replies (flow.h). Include from bpf/ entry files. An ordinary allowed packet costs
 * what the policy costs: the later steps are a few compares unless the packet is denied, a
 * fragment, or ICMP.
 */
#ifndef SLUICE_BPF_VERDICT_H
#define SLUICE_BPF_VERDICT_H

#include "frag.h"
#include "flow.h"
#include "parse.h"
#include "policy.h"

#define PORT_DHCP_SERVER 67
#define PORT_DHCP_CLIENT 68
#define PORT_DHCP6_CLIENT 546
#define PORT_DHCP6_SERVER 547
/*
 * ICMP types (linux/icmp.h pulls in libc headers a BPF build does not have; neighbour
 * discovery's are not uapi at all).
 */
#define ICMP_DEST_UNREACH 3
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12
#define ICMPV6_DEST_UNREACH 1
#define ICMPV6_PARAMPROB 4
#define ICMPV6_MGM_QUERY 130
#define ICMPV6_MGM_REPORT 131
#define ICMPV6_MGM_REDUCTION 132
#define ICMPV6_ROUTER_SOLICITATION 133
#define ICMPV6_REDIRECT 137
#define ICMPV6_MLD2_REPORT 143

/* The packet's two ports as one word: source in the high half, as they sit in the header. */
static __always_inline __u32 pi_ports(const struct packet_info *pi)
{
	return (__u32)pi->l4[0] << 24 | (__u32)pi->l4[1] << 16 | (__u32)pi->l4[2] << 8 | pi->l4[3];
}

/*
 * Traffic the node needs to stay on the network. Each shape takes a privileged port or a
 * raw socket to send, so an unprivileged account cannot forge one.
 */
static __always_inline int is_essential(const struct packet_info *pi)
{
	__u8 type = pi->l4[0];

	if (!pi->has_l4)
		return 0;
	if (pi->l4_proto == IPPROTO_UDP) {
		if (pi->l3_proto == ETH_P_IP)
			return pi_ports(pi) == (PORT_DHCP_CLIENT << 16 | PORT_DHCP_SERVER);
		return pi_ports(pi) == (PORT_DHCP6_CLIENT << 16 | PORT_DHCP6_SERVER);
	}
	if (pi->l4_proto != IPPROTO_ICMPV6 || pi->l3_proto != ETH_P_IPV6)
		return 0;
	/* Router/neighbour discovery and redirect (133-137); MLD query, reports, done. */
	return (type >= ICMPV6_ROUTER_SOLICITATION && type <= ICMPV6_REDIRECT) ||
	       type == ICMPV6_MGM_QUERY || type == ICMPV6_MGM_REPORT ||
	       type == ICMPV6_MGM_REDUCTION || type == ICMPV6_MLD2_REPORT;
}

/* An ICMP error that quotes the packet it is about (the contract's list of types). */
static __always_inline int is_icmp_error(const struct packet_info *pi)
{
	__u8 type = pi->l4[0];

	if (!pi->has_l4)
		return 0;
	if (pi->l4_proto == IPPROTO_ICMP && pi->l3_proto == ETH_P_IP)
		return type == ICMP_DEST_UNREACH || type == ICMP_TIME_EXCEEDED ||
		       type == ICMP_PARAMETERPROB;
	if (pi->l4_proto == IPPROTO_ICMPV6 && pi->l3_proto == ETH_P_IPV6)
		return type >= ICMPV6_DEST_UNREACH && type <= ICMPV6_PARAMPROB;
	return 0;
}

/*
 * A denied ICMP error passes when the packet it quotes belongs to a flow that passes. That
 * packet came from q.src to us: the error passes when a packet to q.src, its protocol and
 * source port would be allowed (taking that decision), or, with replies on, when the
 * quoted flow is a live recorded inbound flow. A quote cut short decides nothing.
 */
static __always_inline void decide_icmp_error(struct ctx_buff *ctx, const struct packet_info *pi,
					      struct decision *d)
{
	struct quoted_packet q = {};
	struct decision qd = {};

	if (parse_icmp_quote(ctx, pi, &q))
		return;
	if (policy_lookup(active_generation(), &q.src, &qd) == 0) {
		if (qd.port_class)
			port_class_lookup(&qd, q.proto, q.has_port, q.sport[0], q.sport[1]);
		if (qd.verdict == SLUICE_VERDICT_ALLOW) {
			d->verdict = SLUICE_VERDICT_ALLOW;
			d->reason = qd.reason;
			d->rule_id = qd.rule_id;
			/* The quoted decision's rule id counts in its own install's half. */
			d->flags = (d->flags & ~SLUICE_POLICY_F_EPOCH) |
				   (qd.flags & SLUICE_POLICY_F_EPOCH);
			return;
		}
	}
	if ((d->flags & SLUICE_POLICY_F_NO_REPLIES) || !q.has_port ||
	    (q.proto != IPPROTO_TCP && q.proto != IPPROTO_UDP))
		return;

	struct sluice_flow_key k = {
		.local = q.dst,
		.remote = q.src,
		.local_port = { q.dport[0], q.dport[1] },
		.remote_port = { q.sport[0], q.sport[1] },
		.proto = q.proto,
	};

	if (flow_live(&k, bpf_ktime_get_coarse_ns())) {
		d->verdict = SLUICE_VERDICT_REPLY;
		d->reason = SLUICE_REASON_REPLY;
		d->rule_id = SLUICE_RULE_NONE;
	}
}

/*
 * Decide an IP packet, given its destination's entry as dest_entry() found it. Returns the
 * entry for the counters (NULL only when the table refused one).
 */
static __always_inline struct sluice_dest_stats *
decide_ip(struct ctx_buff *ctx, const struct packet_info *pi, struct decision *d,
	  struct sluice_dest_stats *entry)
{
	entry = decide_destination(pi, d, entry);

	/* No policy installed (or a broken one): nothing below may pass the packet. */
	if (d->reason == SLUICE_REASON_NO_POLICY)
		return entry;
	if (pi->frag == PKT_FRAG_LATER) {
		frag_follow(pi, d);
		return entry;
	}
	if (!(d->flags & SLUICE_POLICY_F_NO_ESSENTIAL) && is_essential(pi)) {
		d->verdict = SLUICE_VERDICT_ESSENTIAL;
		d->reason = SLUICE_REASON_ESSENTIAL;
		d->rule_id = SLUICE_RULE_NONE;
	} else if (decision_denied(d)) {
		if (!(d->flags & SLUICE_POLICY_F_NO_ESSENTIAL) && is_icmp_error(pi))
			decide_icmp_error(ctx, pi, d);
		else if (!(d->flags & SLUICE_POLICY_F_NO_REPLIES))
			decide_reply(ctx, pi, d);
	}
	if (pi->frag == PKT_FRAG_FIRST)
		frag_record(pi, d);
	return entry;
}

/* A frame that is not IP: ARP is essential traffic, everything else passes as non-IP. */
static __always_inline void decide_non_ip(__u16 ethertype, struct decision *d)
{
	int flags;

	d->verdict = SLUICE_VERDICT_ALLOW;
	d->reason = SLUICE_REASON_NON_IP;
	d->rule_id = SLUICE_RULE_NONE;
	if (ethertype != ETH_P_ARP || (flags = policy_flags_now()) < 0 ||
	    (flags & SLUICE_POLICY_F_NO_ESSENTIAL))
		return;
	d->verdict = SLUICE_VERDICT_ESSENTIAL;
	d->reason = SLUICE_REASON_ESSENTIAL;
}

#endif /* SLUICE_BPF_VERDICT_H */

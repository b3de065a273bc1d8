/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Stateful replies: connections initiated from outside, recorded by tc ingress in
 * sluice_flows, let the node's answers pass egress although the policy denies their
 * destination. Include from bpf/ entry files after policy.h. The clock is read only on
 * the paths that need it: a denied TCP/UDP packet on egress, a TCP/UDP packet on ingress.
 */
#ifndef SLUICE_BPF_FLOW_H
#define SLUICE_BPF_FLOW_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>

#include "maps.h"
#include "parse.h"
#include "policy.h"

#define NSEC_PER_SEC 1000000000ull

/* A TCP flow lingers this long after RST, or after FIN was seen both ways. */
#ifndef FLOW_TCP_LINGER_NS
#define FLOW_TCP_LINGER_NS (10 * NSEC_PER_SEC)
#endif
/* An established TCP flow without inbound packets for this long has ended. */
#ifndef FLOW_TCP_IDLE_NS
#define FLOW_TCP_IDLE_NS (2 * 3600 * NSEC_PER_SEC)
#endif
/* A UDP flow without inbound datagrams for this long has ended. */
#ifndef FLOW_UDP_IDLE_NS
#define FLOW_UDP_IDLE_NS (60 * NSEC_PER_SEC)
#endif
/* A refresh writes the shared entry only when it moves the deadline at least this much. */
#define FLOW_REFRESH_NS NSEC_PER_SEC

/* The flow of a packet leaving the node: it goes from the local end to the remote one. */
static __always_inline void flow_key_out(const struct packet_info *pi, struct sluice_flow_key *k)
{
	k->local = pi->src;
	k->remote = pi->dst;
	__builtin_memcpy(k->local_port, &pi->l4[0], 2);
	__builtin_memcpy(k->remote_port, &pi->l4[2], 2);
	k->proto = pi->l4_proto;
}

/* The flow of a packet arriving at the node. */
static __always_inline void flow_key_in(const struct packet_info *pi, struct sluice_flow_key *k)
{
	k->local = pi->dst;
	k->remote = pi->src;
	__builtin_memcpy(k->local_port, &pi->l4[2], 2);
	__builtin_memcpy(k->remote_port, &pi->l4[0], 2);
	k->proto = pi->l4_proto;
}

/* The recorded flow for k if it has not ended by now, else NULL. */
static __always_inline struct sluice_flow *flow_live(const struct sluice_flow_key *k, __u64 now)
{
	struct sluice_flow *f = bpf_map_lookup_elem(&sluice_flows, k);

	return f && now < READ_ONCE_U64(f->expires_ns) ? f : NULL;
}

/* RST, or FIN both ways: the flow ends after the linger (never later than it would have). */
static __always_inline void flow_close(struct sluice_flow *f, __u64 now)
{
	if (f->closing)
		return;
	f->closing = 1;
	if (now + FLOW_TCP_LINGER_NS < f->expires_ns)
		f->expires_ns = now + FLOW_TCP_LINGER_NS;
}

/* An inbound packet of a live flow keeps it alive for idle_ns more, unless it is closing. */
static __always_inline void flow_refresh(struct sluice_flow *f, __u64 now, __u64 idle_ns)
{
	/*
	 * Every inbound packet would otherwise write the entry: write only when the deadline
	 * moves by FLOW_REFRESH_NS, so a busy flow costs a read per packet, not a shared write.
	 */
	if (!f->closing && f->expires_ns + FLOW_REFRESH_NS < now + idle_ns)
		f->expires_ns = now + idle_ns;
}

/*
 * Egress, for a TCP/UDP packet the policy denies: if it belongs to a live inbound flow it
 * passes as a reply. The node's FIN and RST end the flow.
 */
static __always_inline void decide_reply(struct ctx_buff *ctx, const struct packet_info *pi,
					 struct decision *d)
{
	struct sluice_flow_key k = {};
	struct sluice_flow *f;
	__u64 now;
	int flags;

	if (!pi_has_port(pi) || (pi->l4_proto != IPPROTO_TCP && pi->l4_proto != IPPROTO_UDP))
		return;
	flow_key_out(pi, &k);
	now = bpf_ktime_get_coarse_ns();
	f = flow_live(&k, now);
	if (!f)
		return;
	d->verdict = SLUICE_VERDICT_REPLY;
	d->reason = SLUICE_REASON_REPLY;
	d->rule_id = SLUICE_RULE_NONE;
	flags = tcp_flags(ctx, pi);
	if (flags < 0)
		return;
	if (flags & TCPF_RST) {
		flow_close(f, now);
	} else if (flags & TCPF_FIN) {
		f->fin_out = 1;
		if (f->fin_in)
			flow_close(f, now);
	}
}

/* --- ingress: recording flows ----------------------------------------------------------- */

/*
 * Is there a local socket for this arriving packet: a TCP socket in LISTEN state, or a UDP
 * socket bound to its port? ctx is the program's context (the lookups run in its netns).
 * Only then is a flow recorded, so spoofed packets to closed ports open nothing.
 */
static __always_inline int flow_local_socket(struct ctx_buff *ctx, const struct packet_info *pi)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;
	__u32 size;
	int found;

	if (pi->l3_proto == ETH_P_IP) {
		__builtin_memcpy(&t.ipv4.saddr, &pi->src.a[12], 4);
		__builtin_memcpy(&t.ipv4.daddr, &pi->dst.a[12], 4);
		__builtin_memcpy(&t.ipv4.sport, &pi->l4[0], 2);
		__builtin_memcpy(&t.ipv4.dport, &pi->l4[2], 2);
		size = sizeof(t.ipv4);
	} else {
		__builtin_memcpy(t.ipv6.saddr, pi->src.a, 16);
		__builtin_memcpy(t.ipv6.daddr, pi->dst.a, 16);
		__builtin_memcpy(&t.ipv6.sport, &pi->l4[0], 2);
		__builtin_memcpy(&t.ipv6.dport, &pi->l4[2], 2);
		size = sizeof(t.ipv6);
	}
	if (pi->l4_proto == IPPROTO_TCP) {
		/* skc: a listener is what a SYN finds; request and timewait sockets are not it. */
		sk = bpf_skc_lookup_tcp(ctx, &t, size, BPF_F_CURRENT_NETNS, 0);
		if (!sk)
			return 0;
		found = sk->state == BPF_TCP_LISTEN;
	} else {
		sk = bpf_sk_lookup_udp(ctx, &t, size, BPF_F_CURRENT_NETNS, 0);
		if (!sk)
			return 0;
		found = 1;
	}
	bpf_sk_release(sk);
	return found;
}

/* The index entry of a UDP flow: its remote end and local port, without the local address. */
static __always_inline void flow_peer_key(const struct sluice_flow_key *k,
					  struct sluice_flow_peer *p)
{
	p->remote = k->remote;
	__builtin_memcpy(p->local_port, k->local_port, 2);
	__builtin_memcpy(p->remote_port, k->remote_port, 2);
	p->proto = k->proto;
}

/*
 * Record a new flow (or restart one whose 5-tuple is reused) that lives idle_ns. A UDP flow
 * is also indexed by its remote end, for the connect-time hooks (sluice_flow_locals).
 */
static __always_inline void flow_record(const struct sluice_flow_key *k, __u64 now, __u64 idle_ns)
{
	struct sluice_flow f = { .expires_ns = now + idle_ns };
	struct sluice_flow_peer p = {};

	/* A full LRU evicts its oldest flow: under a flood, old replies lose their record. */
	bpf_map_update_elem(&sluice_flows, k, &f, BPF_ANY);
	if (k->proto != IPPROTO_UDP)
		return;
	flow_peer_key(k, &p);
	bpf_map_update_elem(&sluice_flow_locals, &p, &k->local, BPF_ANY);
}

/*
 * The local address a UDP datagram from a wildcard-bound socket would leave from, if it is
 * the reply to a recorded flow: pi->src (unknown, all zero past the mapping prefix) becomes
 * the flow's local address, so decide_reply finds the flow as tc egress will. Two local
 * addresses with flows from the same remote end to the same port: the latest recorded wins.
 */
static __always_inline void flow_local_of(struct packet_info *pi)
{
	struct sluice_flow_peer p = {
		.remote = pi->dst,
		.local_port = { pi->l4[0], pi->l4[1] },
		.remote_port = { pi->l4[2], pi->l4[3] },
		.proto = pi->l4_proto,
	};
	struct sluice_addr *local;

	if (pi->l4_proto != IPPROTO_UDP || !pi->has_l4)
		return;
	local = bpf_map_lookup_elem(&sluice_flow_locals, &p);
	if (local)
		pi->src = *local;
}

/*
 * An arriving TCP or UDP packet (not a later fragment): start a flow initiated from
 * outside, keep a live one alive, or note its end.
 */
static __always_inline void flow_inbound(struct ctx_buff *ctx, const struct packet_info *pi)
{
	struct sluice_flow_key k = {};
	struct sluice_flow *f;
	__u64 now;
	int flags;

	if (!pi_has_port(pi) || (pi->l4_proto != IPPROTO_TCP && pi->l4_proto != IPPROTO_UDP))
		return;
	flow_key_in(pi, &k);
	now = bpf_ktime_get_coarse_ns();
	f = flow_live(&k, now);
	if (pi->l4_proto == IPPROTO_UDP) {
		if (f)
			flow_refresh(f, now, FLOW_UDP_IDLE_NS);
		else if (flow_local_socket(ctx, pi))
			flow_record(&k, now, FLOW_UDP_IDLE_NS);
		return;
	}

	flags = tcp_flags(ctx, pi);
	if (flags < 0)
		return;
	if ((flags & (TCPF_SYN | TCPF_ACK | TCPF_RST | TCPF_FIN)) == TCPF_SYN) {
		/* A retransmitted SYN of a live flow changes nothing; else ask for a listener. */
		if ((!f || f->closing) && flow_local_socket(ctx, pi))
			flow_record(&k, now, FLOW_TCP_IDLE_NS);
		return;
	}
	if (!f)
		return;
	if (flags & TCPF_RST) {
		flow_close(f, now);
		return;
	}
	if (flags & TCPF_FIN) {
		f->fin_in = 1;
		if (f->fin_out) {
			flow_close(f, now);
			return;
		}
	}
	flow_refresh(f, now, FLOW_TCP_IDLE_NS);
}

#endif /* SLUICE_BPF_FLOW_H */

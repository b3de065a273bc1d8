/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Packet parsing, cursor style. Include from bpf/ only. Works on a (data, data_end) pair,
 * so the same code serves skb and xdp contexts. Each helper checks bounds, advances the
 * cursor, and returns the next protocol (>= 0) or a negative enum sluice_reason.
 */
#ifndef SLUICE_BPF_PARSE_H
#define SLUICE_BPF_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <sluice/abi.h>

/* In-band VLAN tags we walk (802.1Q inside 802.1ad = QinQ). A deeper stack is unparseable. */
#ifndef VLAN_MAX_DEPTH
#define VLAN_MAX_DEPTH 2
#endif

/* Transport headers further into the frame than this are not looked at. */
#define L4_OFFSET_MAX 1023 /* a mask: 2^n - 1 */

struct cursor {
	void *pos;
	void *end;
};

struct vlan_tag {
	__be16 tci;
	__be16 encap_proto;
};

/* What the decision and the counters need to know about a packet. */
struct packet_info {
	struct sluice_addr dst; /* IPv4 mapped into IPv6 */
	__u16 l3_proto;         /* ETH_P_IP / ETH_P_IPV6, host order */
	__u8 l4_proto;          /* IPPROTO_*, as found after the fixed IP header */
	__u8 later_fragment;    /* a non-first fragment: no transport header */
	__u16 l4_offset;        /* bytes from the frame start to the transport header */
	__u8 dport[2];          /* destination port, network order, when has_port */
	__u8 has_port;          /* TCP, UDP or SCTP with its ports inside the frame */
};

static __always_inline int parse_eth(struct cursor *c)
{
	struct ethhdr *eth = c->pos;
	__u16 proto;

	if ((void *)(eth + 1) > c->end)
		return -SLUICE_REASON_TRUNCATED;
	c->pos = eth + 1;
	proto = bpf_ntohs(eth->h_proto);

	/*
	 * A tag offloaded to skb metadata is not in the data at all; in-band tags are. Either
	 * way the destination follows the innermost tag.
	 */
#pragma unroll
	for (int i = 0; i < VLAN_MAX_DEPTH; i++) {
		struct vlan_tag *tag = c->pos;

		if (proto != ETH_P_8021Q && proto != ETH_P_8021AD)
			break;
		if ((void *)(tag + 1) > c->end)
			return -SLUICE_REASON_TRUNCATED;
		c->pos = tag + 1;
		proto = bpf_ntohs(tag->encap_proto);
	}
	if (proto == ETH_P_8021Q || proto == ETH_P_8021AD)
		return -SLUICE_REASON_UNPARSEABLE;
	return proto;
}

static __always_inline void map_ipv4(struct sluice_addr *dst, __be32 addr)
{
	__builtin_memset(dst->a, 0, 10);
	dst->a[10] = 0xff;
	dst->a[11] = 0xff;
	__builtin_memcpy(&dst->a[12], &addr, 4);
}

static __always_inline int parse_ipv4(struct cursor *c, void *frame, struct packet_info *pi)
{
	struct iphdr *iph = c->pos;
	__u32 hdr_len;

	if ((void *)(iph + 1) > c->end)
		return -SLUICE_REASON_TRUNCATED;
	hdr_len = iph->ihl * 4;
	if (iph->version != 4 || hdr_len < sizeof(*iph))
		return -SLUICE_REASON_UNPARSEABLE;
	/* Options are skipped, not interpreted: the destination is in the fixed header. */
	if (c->pos + hdr_len > c->end)
		return -SLUICE_REASON_TRUNCATED;
	c->pos += hdr_len;

	map_ipv4(&pi->dst, iph->daddr);
	pi->later_fragment = (bpf_ntohs(iph->frag_off) & 0x1fff) != 0;
	pi->l3_proto = ETH_P_IP;
	pi->l4_proto = iph->protocol;
	pi->l4_offset = c->pos - frame;
	return iph->protocol;
}

static __always_inline int parse_ipv6(struct cursor *c, void *frame, struct packet_info *pi)
{
	struct ipv6hdr *ip6h = c->pos;

	if ((void *)(ip6h + 1) > c->end)
		return -SLUICE_REASON_TRUNCATED;
	if (ip6h->version != 6)
		return -SLUICE_REASON_UNPARSEABLE;
	c->pos = ip6h + 1;

	__builtin_memcpy(pi->dst.a, &ip6h->daddr, 16);
	pi->l3_proto = ETH_P_IPV6;
	pi->l4_proto = ip6h->nexthdr;
	pi->l4_offset = c->pos - frame;
	return ip6h->nexthdr;
}

/*
 * Parse a frame up to the transport header. Returns 0 for an IP packet (pi filled in),
 * 1 for a frame that is not IP, or a negative enum sluice_reason.
 */
static __always_inline int parse_packet(void *data, void *data_end, struct packet_info *pi)
{
	struct cursor c = { .pos = data, .end = data_end };
	int proto;

	proto = parse_eth(&c);
	if (proto < 0)
		return proto;
	if (proto == ETH_P_IP)
		proto = parse_ipv4(&c, data, pi);
	else if (proto == ETH_P_IPV6)
		proto = parse_ipv6(&c, data, pi);
	else
		return 1;
	return proto < 0 ? proto : 0;
}

/* Protocols whose destination port policies can name (it sits at offset 2 in each). */
static __always_inline int proto_has_ports(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP;
}

/* Read the destination port of TCP, UDP or SCTP; has_port stays 0 if it is not there. */
static __always_inline void parse_ports(void *data, void *data_end, struct packet_info *pi)
{
	__u32 offset = pi->l4_offset;
	__u8 *ports;

	if (pi->later_fragment || !proto_has_ports(pi->l4_proto) || offset > L4_OFFSET_MAX)
		return;
	/* Same bound-on-the-accessing-register technique as gso_header_len below. */
	barrier_var(offset);
	ports = data + (offset & L4_OFFSET_MAX);
	if ((void *)(ports + 4) > data_end)
		return;
	pi->dport[0] = ports[2];
	pi->dport[1] = ports[3];
	pi->has_port = 1;
}

/*
 * Length of the headers that a GSO super-packet repeats in each wire segment: everything
 * up to the end of the transport header. Returns 0 when it cannot be read.
 */
static __always_inline __u32 gso_header_len(void *data, void *data_end, const struct packet_info *pi)
{
	__u32 offset = pi->l4_offset;
	void *l4;

	/*
	 * The verifier tracks packet ranges only for offsets it can bound well below 64 KiB.
	 * barrier_var stops clang from dropping the mask as redundant after the check, so the
	 * bound is on the very register the access uses.
	 */
	if (offset > L4_OFFSET_MAX)
		return 0;
	barrier_var(offset);
	l4 = data + (offset & L4_OFFSET_MAX);

	if (pi->l4_proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end)
			return 0;
		return pi->l4_offset + th->doff * 4;
	}
	if (pi->l4_proto == IPPROTO_UDP)
		return pi->l4_offset + 8;
	return 0;
}

#endif /* SLUICE_BPF_PARSE_H */

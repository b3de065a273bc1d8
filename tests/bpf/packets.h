/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Crafting test frames: Ethernet, up to three VLAN tags, IPv4 (with options) or IPv6,
 * UDP or TCP, optionally cut short. Frames are described as data (struct pkt_spec).
 */
#ifndef SLUICE_TEST_PACKETS_H
#define SLUICE_TEST_PACKETS_H

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <string.h>

#define PKT_MAX 256

struct pkt_spec {
	const char *dst;         /* IPv4 or IPv6 destination; NULL for a non-IP frame */
	__u16 ethertype;         /* for non-IP frames (ARP, LLDP, ...) */
	__u16 vlan[3];           /* TPIDs of in-band tags, outermost first (0 = none) */
	__u8 l4;                 /* IPPROTO_UDP (default) or IPPROTO_TCP */
	__u8 ipv4_options;       /* 32-bit words of IPv4 options */
	__u8 ihl_override;       /* a bogus IHL, when non-zero */
	unsigned truncate;       /* cut the frame to this many bytes (0 = whole) */
	unsigned payload;        /* transport payload bytes */
	__u16 dport;             /* destination port (default: 443 for TCP, 53 otherwise) */
	__u16 frag_off;          /* IPv4 fragment offset in 8-byte units (0 = first/unfragmented) */
	__u16 ip_len;            /* IPv4 total length / IPv6 payload length, if not the real one */
};

/* Build the frame into buf; returns its length. */
static inline unsigned pkt_build(const struct pkt_spec *s, __u8 *buf)
{
	struct in6_addr d6;
	struct in_addr d4;
	unsigned off = 12, l4_len, len;
	bool v6 = s->dst && strchr(s->dst, ':');
	__u8 proto = s->l4 ? s->l4 : IPPROTO_UDP;

	memset(buf, 0, PKT_MAX);
	memcpy(buf, "\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01", 12);
	for (int i = 0; i < 3 && s->vlan[i]; i++) {
		*(__be16 *)(buf + off) = htons(s->vlan[i]);
		*(__be16 *)(buf + off + 2) = htons(100 + i); /* TCI: VLAN id */
		off += 4;
	}
	if (!s->dst) {
		*(__be16 *)(buf + off) = htons(s->ethertype);
		len = off + 2 + 46;
		return s->truncate && s->truncate < len ? s->truncate : len;
	}
	*(__be16 *)(buf + off) = htons(v6 ? ETH_P_IPV6 : ETH_P_IP);
	off += 2;
	l4_len = (proto == IPPROTO_TCP ? sizeof(struct tcphdr) : sizeof(struct udphdr)) + s->payload;
	if (v6) {
		struct ipv6hdr *ip6 = (void *)(buf + off);

		inet_pton(AF_INET6, s->dst, &d6);
		ip6->version = 6;
		ip6->payload_len = htons(s->ip_len ? s->ip_len : l4_len);
		ip6->nexthdr = proto;
		ip6->hop_limit = 64;
		inet_pton(AF_INET6, "2001:db8:1::1", &ip6->saddr);
		ip6->daddr = d6;
		off += sizeof(*ip6);
	} else {
		struct iphdr *ip = (void *)(buf + off);
		unsigned hl = sizeof(*ip) + 4 * s->ipv4_options;

		inet_pton(AF_INET, s->dst, &d4);
		ip->version = 4;
		ip->ihl = s->ihl_override ? s->ihl_override : hl / 4;
		ip->tot_len = htons(s->ip_len ? s->ip_len : hl + l4_len);
		ip->ttl = 64;
		ip->protocol = proto;
		ip->saddr = htonl(0xc0000201); /* 192.0.2.1 */
		ip->frag_off = htons(s->frag_off);
		ip->daddr = d4.s_addr;
		for (unsigned i = sizeof(*ip); i < hl; i++)
			buf[off + i] = 1; /* NOP options */
		off += hl;
	}
	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = (void *)(buf + off);

		th->source = htons(40000);
		th->dest = htons(s->dport ? s->dport : 443);
		th->doff = 5;
		th->ack = 1;
	} else {
		struct udphdr *uh = (void *)(buf + off);

		uh->source = htons(40000);
		uh->dest = htons(s->dport ? s->dport : 53); /* other protocols: UDP-shaped bytes */
		uh->len = htons(l4_len);
	}
	len = off + l4_len;
	return s->truncate && s->truncate < len ? s->truncate : len;
}

#endif

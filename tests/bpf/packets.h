/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Crafting test frames from data (struct pkt_spec): Ethernet, up to three VLAN tags, IPv4
 * (options, fragments) or IPv6 (extension-header chains, fragment headers), then TCP, UDP,
 * ICMP/ICMPv6 (errors quoting another packet) or other protocols, optionally lying about
 * lengths or cut short.
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
#include <stdbool.h>
#include <string.h>

/* Room for a 9000-byte jumbo frame plus tags. */
#define PKT_MAX 9216
/* Extension headers a spec can chain (one more than the datapath walks). */
#define PKT_EXT_MAX 10

#define PKT_SRC4 "192.0.2.1"
#define PKT_SRC6 "2001:db8:1::1"
#define PKT_SPORT 40000

/* The packet an ICMP error quotes: its IP header and the first 8 transport bytes. */
struct pkt_quote {
	const char *src, *dst; /* the quoted packet's addresses (it came from src to dst) */
	__u8 proto;
	__u16 sport, dport;
	unsigned cut; /* keep only this many bytes of the quote (0 = all) */
};

struct pkt_spec {
	const char *dst;         /* IPv4 or IPv6 destination; NULL for a non-IP frame */
	__u16 ethertype;         /* for non-IP frames (ARP, LLDP, ...) */
	__u16 vlan[3];           /* TPIDs of in-band tags, outermost first (0 = none) */
	__u8 l4;                 /* protocol number written in the header (default UDP) */
	__u8 ipv4_options;       /* 32-bit words of IPv4 options */
	__u8 ihl_override;       /* a bogus IHL, when non-zero */
	unsigned truncate;       /* cut the frame to this many bytes (0 = whole) */
	unsigned payload;        /* transport payload bytes */
	__u16 dport;             /* destination port (default: 443 for TCP, 53 otherwise) */
	__u16 frag_off;          /* fragment offset in 8-byte units (IPv4 header / IPv6 frag hdr) */
	__u16 ip_len;            /* IPv4 total length / IPv6 payload length, if not the real one */
	/* Added for the packet-shape table. */
	const char *src;         /* source address (default PKT_SRC4 / PKT_SRC6) */
	__u16 sport;             /* source port (default PKT_SPORT) */
	__u8 body;               /* shape of the transport bytes, if not l4's: TCP, UDP, ICMP */
	__u8 tcp_flags;          /* TCP flags byte (default ACK) */
	bool more_frags;         /* MF (IPv4) / M (IPv6 fragment header) */
	__u32 frag_id;           /* IPv4 identification / IPv6 fragment identification */
	__u8 ext[PKT_EXT_MAX];   /* IPv6 extension headers in order: the first `next` of them */
	__u8 next;               /* extension headers present: ext[0..next-1] (HBH is 0) */
	__u16 ext_bytes;         /* size of each HBH/routing/dstopts header (default 8) */
	__u8 icmp_type, icmp_code;
	const struct pkt_quote *quote; /* for ICMP errors */
};

/* Bytes of one IPv6 extension header of type t in this spec. */
static inline unsigned pkt_ext_len(const struct pkt_spec *s, __u8 t)
{
	if (t == IPPROTO_FRAGMENT)
		return 8;
	if (t == IPPROTO_AH)
		return 20; /* hdrlen 3: (3 + 2) * 4; read as 8-byte units it would be 32 */
	return s->ext_bytes ? s->ext_bytes : 8;
}

/* The quoted packet of an ICMP error; returns its length. */
static inline unsigned pkt_quote_build(const struct pkt_quote *q, bool v6, __u8 *p)
{
	unsigned len;

	if (v6) {
		struct ipv6hdr *ip6 = (void *)p;

		ip6->version = 6;
		ip6->payload_len = htons(64);
		ip6->nexthdr = q->proto;
		ip6->hop_limit = 1;
		inet_pton(AF_INET6, q->src, &ip6->saddr);
		inet_pton(AF_INET6, q->dst, &ip6->daddr);
		len = sizeof(*ip6);
	} else {
		struct iphdr *ip = (void *)p;

		ip->version = 4;
		ip->ihl = 5;
		ip->tot_len = htons(84);
		ip->ttl = 1;
		ip->protocol = q->proto;
		inet_pton(AF_INET, q->src, &ip->saddr);
		inet_pton(AF_INET, q->dst, &ip->daddr);
		len = sizeof(*ip);
	}
	*(__be16 *)(p + len) = htons(q->sport);
	*(__be16 *)(p + len + 2) = htons(q->dport);
	len += 8;
	return q->cut && q->cut < len ? q->cut : len;
}

/* The transport header and payload at p; returns its length. */
static inline unsigned pkt_l4_build(const struct pkt_spec *s, bool v6, __u8 *p)
{
	__u8 shape = s->body ? s->body : s->l4 ? s->l4 : IPPROTO_UDP;
	unsigned len;

	if (shape == IPPROTO_TCP) {
		struct tcphdr *th = (void *)p;

		th->source = htons(s->sport ? s->sport : PKT_SPORT);
		th->dest = htons(s->dport ? s->dport : 443);
		th->doff = 5;
		p[13] = s->tcp_flags ? s->tcp_flags : 0x10; /* ACK */
		return sizeof(*th) + s->payload;
	}
	if (shape == IPPROTO_ICMP || shape == IPPROTO_ICMPV6) {
		p[0] = s->icmp_type;
		p[1] = s->icmp_code;
		len = 8;
		if (s->quote)
			len += pkt_quote_build(s->quote, v6, p + 8);
		return len + s->payload;
	}
	/* UDP, and UDP-shaped bytes for every other protocol. */
	struct udphdr *uh = (void *)p;

	len = sizeof(*uh) + s->payload;
	uh->source = htons(s->sport ? s->sport : PKT_SPORT);
	uh->dest = htons(s->dport ? s->dport : 53);
	uh->len = htons(len);
	return len;
}

/* IPv6 extension headers from p: returns their length; *first is the first next header. */
static inline unsigned pkt_ext_build(const struct pkt_spec *s, __u8 proto, __u8 *p, __u8 *first)
{
	unsigned off = 0;

	*first = s->next ? s->ext[0] : proto;
	for (int i = 0; i < s->next && i < PKT_EXT_MAX; i++) {
		__u8 t = s->ext[i];
		unsigned len = pkt_ext_len(s, t);

		p[off] = i + 1 < s->next ? s->ext[i + 1] : proto;
		if (t == IPPROTO_FRAGMENT) {
			__u16 fo = s->frag_off << 3 | (s->more_frags ? 1 : 0);

			*(__be16 *)(p + off + 2) = htons(fo);
			*(__be32 *)(p + off + 4) = htonl(s->frag_id);
		} else if (t == IPPROTO_AH) {
			p[off + 1] = len / 4 - 2;
		} else {
			p[off + 1] = len / 8 - 1;
			p[off + 2] = 1; /* a PadN option filling the rest */
			p[off + 3] = len - 4;
		}
		off += len;
	}
	return off;
}

/* Build the frame into buf (PKT_MAX bytes); returns its length. */
static inline unsigned pkt_build(const struct pkt_spec *s, __u8 *buf)
{
	bool v6 = s->dst && strchr(s->dst, ':');
	__u8 proto = s->l4 ? s->l4 : IPPROTO_UDP;
	unsigned off = 12, l3, len;

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
	l3 = off;
	if (v6) {
		struct ipv6hdr *ip6 = (void *)(buf + off);
		unsigned ext;

		ip6->version = 6;
		ip6->hop_limit = 64;
		inet_pton(AF_INET6, s->src ? s->src : PKT_SRC6, &ip6->saddr);
		inet_pton(AF_INET6, s->dst, &ip6->daddr);
		off += sizeof(*ip6);
		ext = pkt_ext_build(s, proto, buf + off, &ip6->nexthdr);
		off += ext;
		off += pkt_l4_build(s, true, buf + off);
		ip6->payload_len = htons(s->ip_len ? s->ip_len : off - l3 - sizeof(*ip6));
	} else {
		struct iphdr *ip = (void *)(buf + off);
		unsigned hl = sizeof(*ip) + 4 * s->ipv4_options;

		ip->version = 4;
		ip->ihl = s->ihl_override ? s->ihl_override : hl / 4;
		ip->ttl = 64;
		ip->protocol = proto;
		ip->id = htons(s->frag_id);
		ip->frag_off = htons(s->frag_off | (s->more_frags ? 0x2000 : 0));
		inet_pton(AF_INET, s->src ? s->src : PKT_SRC4, &ip->saddr);
		inet_pton(AF_INET, s->dst, &ip->daddr);
		for (unsigned i = sizeof(*ip); i < hl; i++)
			buf[off + i] = 1; /* NOP options */
		off += hl;
		off += pkt_l4_build(s, false, buf + off);
		ip->tot_len = htons(s->ip_len ? s->ip_len : off - l3);
	}
	len = off;
	return s->truncate && s->truncate < len ? s->truncate : len;
}

#endif

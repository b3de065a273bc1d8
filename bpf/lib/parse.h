/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Packet parsing, cursor style. Include from bpf/ only. The fixed headers are read in place
 * through a (pos, end) cursor; each helper checks bounds, advances the cursor, and returns
 * the next protocol (>= 0) or a negative enum sluice_reason. What lies at a variable depth
 * (IPv6 extension headers, later reads at the transport offset) is copied out with
 * ctx_load. The context (skb or XDP buffer) is reached only through ctx.h, so tc and XDP
 * parse with this one file. The rules implemented here are docs/design.md, "Packet shapes".
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

#include "ctx.h"

/* In-band VLAN tags we walk (802.1Q inside 802.1ad = QinQ). A deeper stack is unparseable. */
#ifndef VLAN_MAX_DEPTH
#define VLAN_MAX_DEPTH 2
#endif

/* IPv6 extension headers walked before the transport header. A longer chain is unparseable. */
#ifndef IPV6_EXT_MAX
#define IPV6_EXT_MAX 8
#endif

/* IPv4 fragment field bits (host order). */
#define IP4_MF 0x2000
#define IP4_OFFSET 0x1fff

/* The fragment a packet is. */
enum {
	PKT_FRAG_NONE,  /* not fragmented (an IPv6 atomic fragment included) */
	PKT_FRAG_FIRST, /* offset 0, more fragments follow */
	PKT_FRAG_LATER, /* offset > 0: no transport header, payload follows the IP headers */
};

/* parse_packet's result for a frame that is not IPv4/IPv6 (ethertype in packet_info). */
#define PARSE_NON_IP 1

struct cursor {
	void *pos;
	void *end;
};

struct vlan_tag {
	__be16 tci;
	__be16 encap_proto;
};

/* The common start of every IPv6 extension header the walk understands. */
struct ipv6_ext {
	__u8 nexthdr;
	__u8 hdrlen;
};

/* What the decision and the counters need to know about a packet. */
struct packet_info {
	struct sluice_addr dst; /* IPv4 mapped into IPv6 */
	struct sluice_addr src;
	__u32 frag_id;   /* IPv4 identification / IPv6 fragment identification, host order */
	__u32 l3_end;    /* bytes from the frame start to the end of the IP packet */
	__u16 l3_proto;  /* ETH_P_IP / ETH_P_IPV6, or the ethertype of a non-IP frame */
	__u16 l4_offset; /* bytes from the frame start to the transport header */
	__u8 l4_proto;   /* IPPROTO_*: the header after the IPv4 header or IPv6 chain */
	__u8 frag;       /* PKT_FRAG_* */
	__u8 frag_proto; /* protocol of the fragment key: IPv4 protocol, IPv6 fragment nexthdr */
	__u8 opaque;     /* l4_proto is an extension header sluice does not walk */
	__u8 has_l4;     /* l4 holds the transport header's first 4 bytes */
	__u8 l4[4];      /* source and destination port (TCP/UDP/SCTP), or ICMP type and code */
};

static __always_inline int proto_has_ports(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP;
}

/* Both ports of TCP, UDP or SCTP are in the packet (the destination port is at offset 2). */
static __always_inline int pi_has_port(const struct packet_info *pi)
{
	return pi->has_l4 && proto_has_ports(pi->l4_proto);
}

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

/*
 * IPv4: everything the fixed header can tell is checked before anything that needs the
 * rest of the frame. A GSO super-packet's total length describes the whole super-packet
 * (or is 0 with BIG TCP): it is neither checked nor used, the packet ends with the frame.
 */
static __always_inline int parse_ipv4(struct cursor *c, void *frame, __u32 frame_len, int gso,
				      struct packet_info *pi)
{
	struct iphdr *iph = c->pos;
	__u32 l3_off = c->pos - frame, hdr_len, tot_len;
	__u16 frag_off;

	if ((void *)(iph + 1) > c->end)
		return -SLUICE_REASON_TRUNCATED;
	hdr_len = iph->ihl * 4;
	tot_len = bpf_ntohs(iph->tot_len);
	if (iph->version != 4 || hdr_len < sizeof(*iph) || (!gso && tot_len < hdr_len))
		return -SLUICE_REASON_UNPARSEABLE;
	/* Options are skipped, not interpreted: the destination is in the fixed header. */
	if (c->pos + hdr_len > c->end)
		return -SLUICE_REASON_TRUNCATED;
	if (gso)
		pi->l3_end = frame_len;
	else if (l3_off + tot_len > frame_len)
		return -SLUICE_REASON_TRUNCATED;
	else
		pi->l3_end = l3_off + tot_len; /* Ethernet padding is not part of the packet */
	c->pos += hdr_len;

	map_ipv4(&pi->dst, iph->daddr);
	map_ipv4(&pi->src, iph->saddr);
	frag_off = bpf_ntohs(iph->frag_off);
	if (frag_off & IP4_OFFSET)
		pi->frag = PKT_FRAG_LATER;
	else if (frag_off & IP4_MF)
		pi->frag = PKT_FRAG_FIRST;
	pi->frag_id = bpf_ntohs(iph->id);
	pi->frag_proto = iph->protocol;
	pi->l3_proto = ETH_P_IP;
	return iph->protocol;
}

/* Extension headers the walk steps over; AH's length counts 4-byte units, the rest 8. */
static __always_inline int ipv6_ext_walked(__u8 nexthdr)
{
	return nexthdr == IPPROTO_HOPOPTS || nexthdr == IPPROTO_ROUTING ||
	       nexthdr == IPPROTO_FRAGMENT || nexthdr == IPPROTO_DSTOPTS || nexthdr == IPPROTO_AH;
}

/*
 * IANA extension headers that are not walked (mobility, HIP, shim6, experimental): what
 * follows one cannot be trusted as a transport header.
 */
static __always_inline int ipv6_ext_opaque(__u8 nexthdr)
{
	return nexthdr == 135 || nexthdr == 139 || nexthdr == 140 || nexthdr == 253 ||
	       nexthdr == 254;
}

/* The IPv6 fragment header (struct frag_hdr lives in a kernel-internal header). */
struct ipv6_frag {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off; /* offset in 8-byte units << 3, M flag in bit 0 */
	__be32 identification;
};

/*
 * One IPv6 fragment header: records what the packet is. Returns 1 when the walk must end
 * here (a later fragment: what follows is payload, not headers), else 0.
 */
static __always_inline int ipv6_fragment(struct ipv6_frag *fh, struct packet_info *pi)
{
	__u16 frag_off = bpf_ntohs(fh->frag_off);

	pi->frag_id = bpf_ntohl(fh->identification);
	pi->frag_proto = fh->nexthdr;
	if (frag_off >> 3) {
		pi->frag = PKT_FRAG_LATER;
		return 1;
	}
	/* Offset 0 without M is an atomic fragment (RFC 6946): the whole datagram. */
	pi->frag = frag_off & 1 ? PKT_FRAG_FIRST : PKT_FRAG_NONE;
	return 0;
}

/*
 * Walk the extension-header chain at offset off: at most IPV6_EXT_MAX headers, hop-by-hop
 * only first, each wholly inside the packet. Returns the header after the chain and sets
 * pi->l4_offset.
 *
 * Offsets and copies, not packet pointers: a pointer's range differs on every way through
 * each header (three header lengths, eight headers), and the verifier would walk each
 * combination separately; a scalar offset handed only to a helper stays imprecise, so the
 * ways merge at every iteration.
 */
static __always_inline int parse_ipv6_ext(struct ctx_buff *ctx, __u32 off, __u8 nexthdr,
					  struct packet_info *pi)
{
	for (int i = 0; i < IPV6_EXT_MAX; i++) {
		struct ipv6_frag h; /* the fragment header; the others' first 2 bytes */
		int later = 0;
		__u32 len;

		if (!ipv6_ext_walked(nexthdr))
			break;
		if (nexthdr == IPPROTO_HOPOPTS && i > 0)
			return -SLUICE_REASON_UNPARSEABLE;
		if (nexthdr == IPPROTO_FRAGMENT) {
			len = sizeof(h);
			if (off + len > pi->l3_end || ctx_load(ctx, off, &h, len))
				return -SLUICE_REASON_TRUNCATED;
			later = ipv6_fragment(&h, pi);
		} else {
			struct ipv6_ext *ext = (void *)&h;

			if (off + sizeof(*ext) > pi->l3_end ||
			    ctx_load(ctx, off, ext, sizeof(*ext)))
				return -SLUICE_REASON_TRUNCATED;
			if (nexthdr == IPPROTO_AH)
				len = (ext->hdrlen + 2) * 4;
			else
				len = (ext->hdrlen + 1) * 8;
			if (off + len > pi->l3_end)
				return -SLUICE_REASON_TRUNCATED;
		}
		off += len;
		nexthdr = h.nexthdr;
		if (later)
			break;
	}
	pi->l4_offset = off;
	if (pi->frag != PKT_FRAG_LATER && ipv6_ext_walked(nexthdr))
		return -SLUICE_REASON_UNPARSEABLE; /* a ninth header */
	return nexthdr;
}

static __always_inline int parse_ipv6(struct cursor *c, void *frame, __u32 frame_len, int gso,
				      struct packet_info *pi)
{
	struct ipv6hdr *ip6h = c->pos;
	__u32 l3_off = c->pos - frame, payload;

	if ((void *)(ip6h + 1) > c->end)
		return -SLUICE_REASON_TRUNCATED;
	if (ip6h->version != 6)
		return -SLUICE_REASON_UNPARSEABLE;
	payload = bpf_ntohs(ip6h->payload_len);
	/* As IPv4; a payload length of 0 (jumbogram, BIG TCP) also runs to the frame's end. */
	if (gso || payload == 0)
		pi->l3_end = frame_len;
	else if (l3_off + sizeof(*ip6h) + payload > frame_len)
		return -SLUICE_REASON_TRUNCATED;
	else
		pi->l3_end = l3_off + sizeof(*ip6h) + payload;
	c->pos = ip6h + 1;

	__builtin_memcpy(pi->dst.a, &ip6h->daddr, 16);
	__builtin_memcpy(pi->src.a, &ip6h->saddr, 16);
	pi->l3_proto = ETH_P_IPV6;
	return ip6h->nexthdr;
}

/*
 * Parse a frame up to the transport header and read that header's first 4 bytes when the
 * packet holds them. Returns 0 for an IP packet (pi filled in), PARSE_NON_IP with
 * pi->l3_proto = the ethertype, or a negative reason. The frame's length is
 * ctx_frame_len (for tc, skb->len: data_end may end earlier in a non-linear skb); a GSO
 * super-packet's IP length is not checked.
 */
static __always_inline int parse_packet(struct ctx_buff *ctx, struct packet_info *pi)
{
	void *data = ctx_data(ctx);
	struct cursor c = { .pos = data, .end = ctx_data_end(ctx) };
	__u32 frame_len = ctx_frame_len(ctx);
	int gso = ctx_is_gso(ctx);
	__u8 *l4;
	int proto;

	proto = parse_eth(&c);
	if (proto < 0)
		return proto;
	if (proto == ETH_P_IP) {
		proto = parse_ipv4(&c, data, frame_len, gso, pi);
	} else if (proto == ETH_P_IPV6) {
		proto = parse_ipv6(&c, data, frame_len, gso, pi);
	} else {
		pi->l3_proto = proto;
		return PARSE_NON_IP;
	}
	if (proto < 0)
		return proto;
	pi->l4_offset = c.pos - data;
	if (pi->l3_proto == ETH_P_IPV6 && ipv6_ext_walked(proto)) {
		proto = parse_ipv6_ext(ctx, pi->l4_offset, proto, pi);
		if (proto < 0)
			return proto;
	}
	pi->l4_proto = proto;
	/* A later fragment carries payload where the transport header would be. */
	if (pi->frag == PKT_FRAG_LATER)
		return 0;
	pi->opaque = pi->l3_proto == ETH_P_IPV6 && ipv6_ext_opaque(proto);
	if (pi->opaque || (__u32)pi->l4_offset + 4 > pi->l3_end)
		return 0;
	l4 = c.pos;
	if (l4 == data + pi->l4_offset && (void *)(l4 + 4) <= c.end)
		__builtin_memcpy(pi->l4, l4, 4); /* no extension headers: read in place */
	else if (ctx_load(ctx, pi->l4_offset, pi->l4, 4))
		return 0;
	pi->has_l4 = 1;
	return 0;
}

/*
 * Copy n bytes at offset off (from the frame start) that lie inside the IP packet. Later
 * reads (TCP flags, ICMP quotes, GSO headers) go through the helper rather than packet
 * pointers: an offset used in pointer arithmetic becomes precise for the verifier, which
 * then tells apart every way the parser could have reached it.
 */
static __always_inline int pkt_load(struct ctx_buff *ctx, const struct packet_info *pi, __u32 off,
				    void *to, __u32 n)
{
	if (off + n > pi->l3_end)
		return -1;
	return ctx_load(ctx, off, to, n) ? -1 : 0;
}

/* The TCP flags byte (TCP_FLAG_* >> 16 in host terms: FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10). */
#define TCPF_FIN 0x01
#define TCPF_SYN 0x02
#define TCPF_RST 0x04
#define TCPF_ACK 0x10

/* The flags of a TCP packet, or -1 when its header does not reach them. */
static __always_inline int tcp_flags(struct ctx_buff *ctx, const struct packet_info *pi)
{
	__u8 flags;

	if (pi->l4_proto != IPPROTO_TCP || pi->frag == PKT_FRAG_LATER || pi->opaque)
		return -1;
	return pkt_load(ctx, pi, (__u32)pi->l4_offset + 13, &flags, 1) ? -1 : flags;
}

/*
 * The packet an ICMP error quotes: it travelled from src to dst (to this node), so the
 * error goes back towards src.
 */
struct quoted_packet {
	struct sluice_addr src;
	struct sluice_addr dst;
	__u8 proto;
	__u8 has_port; /* TCP/UDP/SCTP with both ports in the quote */
	__u8 sport[2];
	__u8 dport[2];
};

#define ICMP_HDR_LEN 8

/*
 * Read the IP header an ICMP error quotes (after the 8-byte ICMP header), of the same
 * family as the error. Quoted IPv6 extension headers are not walked: the quoted next header
 * is the protocol. Returns 0, or -1 when the quote is cut short or is not a valid header
 * (it then decides nothing).
 */
static __always_inline int parse_icmp_quote(struct ctx_buff *ctx, const struct packet_info *pi,
					    struct quoted_packet *q)
{
	__u32 off = (__u32)pi->l4_offset + ICMP_HDR_LEN, hdr_len;
	__u8 ports[4];

	if (pi->frag == PKT_FRAG_LATER || pi->opaque)
		return -1;
	if (pi->l3_proto == ETH_P_IP) {
		struct iphdr iph;

		if (pkt_load(ctx, pi, off, &iph, sizeof(iph)) || iph.version != 4 || iph.ihl < 5)
			return -1;
		hdr_len = iph.ihl * 4;
		map_ipv4(&q->src, iph.saddr);
		map_ipv4(&q->dst, iph.daddr);
		q->proto = iph.protocol;
	} else {
		struct ipv6hdr ip6h;

		if (pkt_load(ctx, pi, off, &ip6h, sizeof(ip6h)) || ip6h.version != 6)
			return -1;
		hdr_len = sizeof(ip6h);
		__builtin_memcpy(q->src.a, &ip6h.saddr, 16);
		__builtin_memcpy(q->dst.a, &ip6h.daddr, 16);
		q->proto = ip6h.nexthdr;
	}
	/* The quoted IP header, options included, must be all inside the packet. */
	if (off + hdr_len > pi->l3_end)
		return -1;
	if (!proto_has_ports(q->proto))
		return 0;
	if (pkt_load(ctx, pi, off + hdr_len, ports, sizeof(ports)))
		return -1;
	__builtin_memcpy(q->sport, ports, 2);
	__builtin_memcpy(q->dport, ports + 2, 2);
	q->has_port = 1;
	return 0;
}

/*
 * Length of the headers that a GSO super-packet repeats in each wire segment: everything
 * up to the end of the transport header. Returns 0 when it cannot be read.
 */
static __always_inline __u32 gso_header_len(struct ctx_buff *ctx, const struct packet_info *pi)
{
	struct tcphdr th;
	__u8 udp[8];

	/* A later fragment, or bytes after an unwalked header, repeat no transport header. */
	if (pi->frag == PKT_FRAG_LATER || pi->opaque)
		return 0;
	if (pi->l4_proto == IPPROTO_TCP) {
		if (pkt_load(ctx, pi, pi->l4_offset, &th, sizeof(th)))
			return 0;
		return pi->l4_offset + th.doff * 4;
	}
	if (pi->l4_proto == IPPROTO_UDP && !pkt_load(ctx, pi, pi->l4_offset, udp, sizeof(udp)))
		return pi->l4_offset + 8;
	return 0;
}

#endif /* SLUICE_BPF_PARSE_H */

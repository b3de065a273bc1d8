// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The packet-level reference decision (see packet_oracle.h). Each step below is one
 * numbered step of docs/design.md, "Packet shapes", in the same order; a frame stops at the
 * first step that decides it. Where the contract leaves a detail open, the comment says
 * which reading this oracle takes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>

#include "packet_oracle.h"

#define ETH_P_8021AD_ 0x88a8 /* linux/if_ether.h has it, but not every libc copy does */

/* IPv6 extension headers the datapath walks. */
#define NH_HOP 0
#define NH_ROUTING 43
#define NH_FRAGMENT 44
#define NH_AH 51
#define NH_DSTOPTS 60

void oracle_state_init(struct oracle_state *st)
{
	memset(st, 0, sizeof(*st));
}

void oracle_state_free(struct oracle_state *st)
{
	free(st->frags);
	free(st->flows);
	memset(st, 0, sizeof(*st));
}

void oracle_frags_clear(struct oracle_state *st)
{
	st->nfrags = 0;
}

void oracle_flows_clear(struct oracle_state *st)
{
	st->nflows = 0;
}

static int grow(void **arr, size_t *cap, size_t need, size_t size)
{
	size_t n = *cap ? *cap : 16;
	void *p;

	if (need <= *cap)
		return 0;
	while (n < need)
		n *= 2;
	p = realloc(*arr, n * size);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = n;
	return 0;
}

static bool flow_key_eq(const struct oracle_flow_key *a, const struct oracle_flow_key *b)
{
	return !memcmp(&a->local, &b->local, sizeof(a->local)) &&
	       !memcmp(&a->remote, &b->remote, sizeof(a->remote)) &&
	       a->local_port == b->local_port && a->remote_port == b->remote_port &&
	       a->proto == b->proto;
}

static struct oracle_flow *flow_find(const struct oracle_state *st, const struct oracle_flow_key *k)
{
	for (size_t i = 0; i < st->nflows; i++)
		if (flow_key_eq(&st->flows[i].key, k))
			return &st->flows[i];
	return NULL;
}

int oracle_flow_add(struct oracle_state *st, const struct oracle_flow_key *key, bool live)
{
	struct oracle_flow *f = flow_find(st, key);

	if (!f) {
		if (grow((void **)&st->flows, &st->flows_cap, st->nflows + 1, sizeof(*st->flows)))
			return -ENOMEM;
		f = &st->flows[st->nflows++];
		f->key = *key;
	}
	f->live = live;
	return 0;
}

static bool frag_key_eq(const struct oracle_frag_key *a, const struct oracle_frag_key *b)
{
	return !memcmp(&a->src, &b->src, sizeof(a->src)) &&
	       !memcmp(&a->dst, &b->dst, sizeof(a->dst)) && a->id == b->id && a->proto == b->proto;
}

static struct oracle_frag *frag_find(const struct oracle_state *st, const struct oracle_frag_key *k)
{
	for (size_t i = 0; i < st->nfrags; i++)
		if (frag_key_eq(&st->frags[i].key, k))
			return &st->frags[i];
	return NULL;
}

/* A first fragment's decision replaces whatever an earlier datagram with its key left. */
static int frag_record(struct oracle_state *st, const struct oracle_frag_key *k,
		       const struct oracle_result *r)
{
	struct oracle_frag *f = frag_find(st, k);

	if (!f) {
		if (grow((void **)&st->frags, &st->frags_cap, st->nfrags + 1, sizeof(*st->frags)))
			return -ENOMEM;
		f = &st->frags[st->nfrags++];
		f->key = *k;
	}
	f->verdict = r->verdict;
	f->reason = r->reason;
	f->rule_id = r->rule_id;
	return 0;
}

bool oracle_port_class(const struct policy *p, const struct sluice_addr *dst)
{
	const struct policy_rule *best = NULL;
	bool v4 = addr_is_v4(dst);

	for (size_t i = 0; i < p->nrules; i++) {
		const struct policy_rule *r = &p->rules[i];
		bool rule_v4 = r->dst.prefixlen >= 96 && addr_is_v4(&r->dst.addr);

		if (rule_v4 != v4 || !prefix_contains(&r->dst, dst))
			continue;
		/* Longest prefix first; on equal prefixes deny, then the earliest rule. */
		if (best && (r->dst.prefixlen < best->dst.prefixlen ||
			     (r->dst.prefixlen == best->dst.prefixlen &&
			      (r->action == best->action || r->action != SLUICE_VERDICT_DENY))))
			continue;
		best = r;
	}
	return best && p->matches[best->match].nprotos > 0;
}

static unsigned be16(const __u8 *b)
{
	return (unsigned)b[0] << 8 | b[1];
}

static __u32 be32(const __u8 *b)
{
	return (__u32)b[0] << 24 | (__u32)b[1] << 16 | (__u32)b[2] << 8 | b[3];
}

static void map_v4(struct sluice_addr *a, const __u8 *v4)
{
	memset(a, 0, sizeof(*a));
	a->a[10] = a->a[11] = 0xff;
	memcpy(&a->a[12], v4, 4);
}

/* "Denied": deny in enforce mode, audit in audit mode. */
static __u8 denied(const struct policy *p)
{
	return p->mode == SLUICE_MODE_AUDIT ? SLUICE_VERDICT_AUDIT : SLUICE_VERDICT_DENY;
}

static bool is_denied(__u8 verdict)
{
	return verdict == SLUICE_VERDICT_DENY || verdict == SLUICE_VERDICT_AUDIT;
}

static void set(struct oracle_result *r, __u8 verdict, __u8 reason, __u32 rule_id)
{
	r->verdict = verdict;
	r->reason = reason;
	r->rule_id = rule_id;
}

/* What steps 1-3 learn about an IP packet. */
struct ip_facts {
	bool v6;
	struct sluice_addr src, dst;
	__u8 proto;       /* the header after the IPv6 chain; IPv4: the protocol field */
	size_t l4;        /* where that header starts */
	size_t end;       /* where the packet ends: its IP length, else the frame's end */
	bool fragment;    /* part of a fragmented datagram */
	bool later;       /* a non-first fragment: no transport header in it */
	struct oracle_frag_key frag_key;
};

/*
 * Step 1: Ethernet and in-band VLAN tags. Returns the ethertype after the tags and sets
 * *l3, or -reason.
 */
static int link_layer(const __u8 *f, size_t len, size_t *l3)
{
	size_t off = 2 * ETH_ALEN;
	unsigned type, tags = 0;

	if (len < ETH_HLEN)
		return -SLUICE_REASON_TRUNCATED;
	type = be16(f + off);
	off += 2;
	while (type == ETH_P_8021Q || type == ETH_P_8021AD_) {
		if (tags == ORACLE_VLAN_MAX)
			return -SLUICE_REASON_UNPARSEABLE;
		if (off + 4 > len)
			return -SLUICE_REASON_TRUNCATED;
		type = be16(f + off + 2);
		off += 4;
		tags++;
	}
	*l3 = off;
	return (int)type;
}

/*
 * Step 2: the IPv4 header. All checks that need only the fixed header (version, IHL,
 * total length shorter than the header) come before the checks against the frame's end.
 * The packet ends where its total length says (bytes after it are Ethernet padding); a
 * GSO super-packet's total length describes the whole of it, or is 0 (BIG TCP): it ends
 * with the frame.
 */
static int ipv4_header(const __u8 *f, size_t len, size_t l3, bool gso, struct ip_facts *ip)
{
	const __u8 *h = f + l3;
	size_t ihl_bytes, tot_len;
	unsigned frag;

	if (l3 + 20 > len)
		return -SLUICE_REASON_TRUNCATED;
	ihl_bytes = (h[0] & 0x0f) * 4u;
	tot_len = be16(h + 2);
	if (h[0] >> 4 != 4 || ihl_bytes < 20 || (!gso && tot_len < ihl_bytes))
		return -SLUICE_REASON_UNPARSEABLE;
	if (l3 + ihl_bytes > len)
		return -SLUICE_REASON_TRUNCATED;
	if (!gso && l3 + tot_len > len)
		return -SLUICE_REASON_TRUNCATED;

	ip->v6 = false;
	map_v4(&ip->src, h + 12);
	map_v4(&ip->dst, h + 16);
	ip->proto = h[9];
	ip->l4 = l3 + ihl_bytes;
	ip->end = gso ? len : l3 + tot_len;
	frag = be16(h + 6);
	ip->fragment = (frag & 0x2000) || (frag & 0x1fff);
	ip->later = (frag & 0x1fff) != 0;
	ip->frag_key = (struct oracle_frag_key){
		.src = ip->src, .dst = ip->dst, .id = be16(h + 4), .proto = h[9]
	};
	return 0;
}

static bool walked_ext(unsigned nh)
{
	return nh == NH_HOP || nh == NH_ROUTING || nh == NH_FRAGMENT || nh == NH_DSTOPTS ||
	       nh == NH_AH;
}

/* IANA extension headers that are not walked: nothing after them can be trusted as L4. */
static bool unwalked_ext(unsigned nh)
{
	return nh == 135 || nh == 139 || nh == 140 || nh == 253 || nh == 254;
}

/*
 * Step 3: the IPv6 header and its extension-header chain. The packet ends where its
 * payload length says; a payload length of 0 (jumbogram, BIG TCP) or a GSO super-packet
 * runs to the frame's end. A non-first fragment ends the walk at its fragment header: what
 * follows is the middle of the datagram, and the fragment header's next header is the
 * packet's protocol. An atomic fragment (offset 0, no more fragments) is a whole datagram,
 * not part of a fragmented one.
 */
static int ipv6_header(const __u8 *f, size_t len, size_t l3, bool gso, struct ip_facts *ip)
{
	const __u8 *h = f + l3;
	size_t off = l3 + 40, plen;
	unsigned nh, n = 0;

	if (l3 + 40 > len)
		return -SLUICE_REASON_TRUNCATED;
	if (h[0] >> 4 != 6)
		return -SLUICE_REASON_UNPARSEABLE;
	plen = be16(h + 4);
	if (!gso && l3 + 40 + plen > len)
		return -SLUICE_REASON_TRUNCATED;
	ip->end = gso || plen == 0 ? len : l3 + 40 + plen;
	len = ip->end; /* the chain is read within the packet */
	ip->v6 = true;
	memcpy(ip->src.a, h + 8, 16);
	memcpy(ip->dst.a, h + 24, 16);
	ip->fragment = ip->later = false;

	for (nh = h[6]; walked_ext(nh); n++) {
		size_t hdr_len;

		if (nh == NH_HOP && n > 0)
			return -SLUICE_REASON_UNPARSEABLE; /* hop-by-hop only as the first header */
		if (n == ORACLE_IPV6_EXT_MAX)
			return -SLUICE_REASON_UNPARSEABLE;
		if (off + 2 > len)
			return -SLUICE_REASON_TRUNCATED;
		if (nh == NH_FRAGMENT)
			hdr_len = 8;
		else if (nh == NH_AH)
			hdr_len = (f[off + 1] + 2u) * 4;
		else
			hdr_len = (f[off + 1] + 1u) * 8;
		if (off + hdr_len > len)
			return -SLUICE_REASON_TRUNCATED;
		if (nh == NH_FRAGMENT) {
			unsigned offset = be16(f + off + 2) >> 3, more = be16(f + off + 2) & 1;

			ip->fragment = offset || more;
			ip->later = offset != 0;
			ip->frag_key = (struct oracle_frag_key){
				.src = ip->src, .dst = ip->dst, .id = be32(f + off + 4), .proto = f[off]
			};
			if (ip->later) {
				nh = f[off];
				off += hdr_len;
				break;
			}
		}
		nh = f[off];
		off += hdr_len;
	}
	ip->proto = nh;
	ip->l4 = off;
	return 0;
}

/* TCP, UDP or SCTP source and destination ports, when the frame holds them. */
static bool read_ports(const __u8 *f, size_t len, size_t l4, unsigned *sport, unsigned *dport)
{
	if (l4 + 4 > len)
		return false;
	*sport = be16(f + l4);
	*dport = be16(f + l4 + 2);
	return true;
}

/* The headers each further segment of a GSO super-packet repeats (0: none readable). */
static size_t gso_header_len(const __u8 *f, size_t len, const struct ip_facts *ip)
{
	if (ip->later)
		return 0;
	if (ip->proto == IPPROTO_TCP && ip->l4 + 20 <= len)
		return ip->l4 + (f[ip->l4 + 12] >> 4) * 4u;
	if (ip->proto == IPPROTO_UDP && ip->l4 + 8 <= len)
		return ip->l4 + 8;
	return 0;
}

/* Step 5: DHCP(v6) client traffic, neighbour/router discovery, MLD. */
static bool essential_ip(const __u8 *f, size_t len, const struct ip_facts *ip)
{
	unsigned sport, dport, type;

	if (ip->proto == IPPROTO_UDP && read_ports(f, len, ip->l4, &sport, &dport))
		return ip->v6 ? sport == 546 && dport == 547 : sport == 68 && dport == 67;
	/* The ICMPv6 header (type, code, checksum) must be whole to say what the message is. */
	if (ip->v6 && ip->proto == IPPROTO_ICMPV6 && ip->l4 + 4 <= len) {
		type = f[ip->l4];
		return (type >= 133 && type <= 137) || type == 130 || type == 131 || type == 132 ||
		       type == 143;
	}
	return false;
}

/* The packet an ICMP error quotes: the one that travelled from the error's destination. */
struct quoted {
	struct sluice_addr src, dst;
	__u8 proto;
	int sport, dport; /* POLICY_PORT_NONE for protocols without ports */
};

static bool icmp_error(const __u8 *f, size_t len, const struct ip_facts *ip)
{
	unsigned type;

	if (ip->l4 + 4 > len)
		return false; /* an ICMP header cut short says nothing */
	type = f[ip->l4];
	if (ip->v6)
		return ip->proto == IPPROTO_ICMPV6 && type >= 1 && type <= 4;
	return ip->proto == IPPROTO_ICMP && (type == 3 || type == 11 || type == 12);
}

/*
 * Read the quoted packet: its IP header (same family as the error; IPv6 extension headers
 * are not walked inside a quote, the quoted next header is its protocol) and, for TCP, UDP
 * and SCTP, its ports. False when any of that is cut short or is not a valid IP header.
 */
static bool read_quoted(const __u8 *f, size_t len, const struct ip_facts *ip, struct quoted *q)
{
	size_t in = ip->l4 + 8, t;
	unsigned sport, dport;

	if (ip->v6) {
		if (in + 40 > len || f[in] >> 4 != 6)
			return false;
		memcpy(q->src.a, f + in + 8, 16);
		memcpy(q->dst.a, f + in + 24, 16);
		q->proto = f[in + 6];
		t = in + 40;
	} else {
		size_t ihl_bytes;

		if (in + 20 > len || f[in] >> 4 != 4)
			return false;
		ihl_bytes = (f[in] & 0x0f) * 4u;
		if (ihl_bytes < 20 || in + ihl_bytes > len)
			return false;
		map_v4(&q->src, f + in + 12);
		map_v4(&q->dst, f + in + 16);
		q->proto = f[in + 9];
		t = in + ihl_bytes;
	}
	q->sport = q->dport = POLICY_PORT_NONE;
	if (proto_has_ports(q->proto)) {
		if (!read_ports(f, len, t, &sport, &dport))
			return false;
		q->sport = sport;
		q->dport = dport;
	}
	return true;
}

static bool flow_live(const struct oracle_state *st, const struct oracle_flow_key *k)
{
	const struct oracle_flow *fl = flow_find(st, k);

	return fl && fl->live;
}

/*
 * Steps 5-8 for a packet with a transport header (unfragmented, or a first fragment):
 * essential traffic, the policy, ICMP errors, replies.
 */
static void decide_whole(const struct policy *p, const struct oracle_state *st, const __u8 *f,
			 size_t len, const struct ip_facts *ip, bool port_class,
			 struct oracle_result *r)
{
	struct sluice_policy_entry d;
	unsigned sport = 0, dport = 0;
	bool ports = proto_has_ports(ip->proto) && read_ports(f, len, ip->l4, &sport, &dport);
	struct quoted q;

	if (p->essential && essential_ip(f, len, ip)) {
		set(r, SLUICE_VERDICT_ESSENTIAL, SLUICE_REASON_ESSENTIAL, SLUICE_RULE_NONE);
		return;
	}

	/* Step 6. A port rule cannot judge a header cut before its ports. */
	if (port_class && proto_has_ports(ip->proto) && !ports) {
		set(r, denied(p), ip->fragment ? SLUICE_REASON_FRAGMENT : SLUICE_REASON_TRUNCATED,
		    SLUICE_RULE_NONE);
		return;
	}
	policy_decide(p, &ip->dst, ip->proto, ports ? (int)dport : POLICY_PORT_NONE, &d);
	set(r, d.verdict, d.reason, d.rule_id);
	if (!is_denied(d.verdict))
		return;

	/* Step 7: an error about a flow that passes passes too. */
	if (p->essential && icmp_error(f, len, ip) && read_quoted(f, len, ip, &q)) {
		struct oracle_flow_key k = { .local = q.dst, .remote = q.src, .proto = q.proto };

		policy_decide(p, &q.src, q.proto, q.sport, &d);
		if (d.verdict == SLUICE_VERDICT_ALLOW) {
			set(r, d.verdict, d.reason, d.rule_id);
			return;
		}
		/* The reading taken: a quoted inbound flow counts only while replies are on. */
		if (p->replies && (q.proto == IPPROTO_TCP || q.proto == IPPROTO_UDP)) {
			k.local_port = q.dport;
			k.remote_port = q.sport;
			if (flow_live(st, &k))
				set(r, SLUICE_VERDICT_REPLY, SLUICE_REASON_REPLY, SLUICE_RULE_NONE);
		}
		return;
	}

	/* Step 8: a reply on a connection initiated from outside. */
	if (p->replies && ports && (ip->proto == IPPROTO_TCP || ip->proto == IPPROTO_UDP) &&
	    flow_live(st, &r->flow_key))
		set(r, SLUICE_VERDICT_REPLY, SLUICE_REASON_REPLY, SLUICE_RULE_NONE);
}

/*
 * Step 4 for a later fragment: the first fragment's recorded decision; an orphan gets the
 * destination's decision for its protocol without a port (for a port class, the rules
 * without port restriction), and a deny of an orphan is counted as `fragment`.
 */
static void decide_later_fragment(const struct policy *p, const struct oracle_state *st,
				  const struct ip_facts *ip, struct oracle_result *r)
{
	const struct oracle_frag *rec = frag_find(st, &ip->frag_key);
	struct sluice_policy_entry d;

	if (rec) {
		set(r, rec->verdict, rec->reason, rec->rule_id);
		return;
	}
	policy_decide(p, &ip->dst, ip->proto, POLICY_PORT_NONE, &d);
	set(r, d.verdict, is_denied(d.verdict) ? SLUICE_REASON_FRAGMENT : d.reason, d.rule_id);
}

int oracle_decide(const struct policy *p, struct oracle_state *st, const __u8 *frame,
		  size_t len, const struct oracle_skb *skb, struct oracle_result *r)
{
	bool gso = skb && skb->gso_segs > 1;
	struct ip_facts ip = {};
	size_t l3 = 0, end;
	unsigned sport, dport;
	bool port_class;
	int type, ret;

	memset(r, 0, sizeof(*r));
	r->packets = 1;
	r->bytes = len;

	/* Step 1. (An offloaded VLAN tag is not in the frame and changes nothing.) */
	type = link_layer(frame, len, &l3);
	if (type < 0) {
		set(r, denied(p), -type, SLUICE_RULE_NONE);
		return 0;
	}
	if (type != ETH_P_IP && type != ETH_P_IPV6) {
		if (type == ETH_P_ARP && p->essential)
			set(r, SLUICE_VERDICT_ESSENTIAL, SLUICE_REASON_ESSENTIAL, SLUICE_RULE_NONE);
		else
			set(r, SLUICE_VERDICT_ALLOW, SLUICE_REASON_NON_IP, SLUICE_RULE_NONE);
		return 0;
	}

	/* Steps 2 and 3. */
	ret = type == ETH_P_IP ? ipv4_header(frame, len, l3, gso, &ip)
			       : ipv6_header(frame, len, l3, gso, &ip);
	if (ret < 0) {
		set(r, denied(p), -ret, SLUICE_RULE_NONE);
		return 0;
	}
	/* From here on, nothing past the packet's own end is read. */
	end = ip.end;
	r->has_dst = true;
	r->dst = ip.dst;
	if (gso) {
		r->packets = skb->gso_segs;
		r->bytes = len + (__u64)(skb->gso_segs - 1) * gso_header_len(frame, end, &ip);
	}
	if (!ip.later && (ip.proto == IPPROTO_TCP || ip.proto == IPPROTO_UDP) &&
	    read_ports(frame, end, ip.l4, &sport, &dport)) {
		r->flow_key_valid = true;
		r->flow_key = (struct oracle_flow_key){ .local = ip.src, .remote = ip.dst,
							.local_port = sport, .remote_port = dport,
							.proto = ip.proto };
	}
	port_class = oracle_port_class(p, &ip.dst);

	/* Step 4 for later fragments, which have no transport header to distrust. */
	if (ip.later) {
		decide_later_fragment(p, st, &ip, r);
		return 0;
	}
	/*
	 * Step 3's last rule needs the destination's decision. The reading taken: it decides
	 * a first fragment like any other reason would, so the datagram's later fragments
	 * follow it (a fragmented datagram is decided as a whole); only a first fragment whose
	 * headers cannot be parsed at all is not recorded.
	 */
	if (ip.v6 && unwalked_ext(ip.proto) && port_class)
		set(r, denied(p), SLUICE_REASON_UNPARSEABLE, SLUICE_RULE_NONE);
	else
		decide_whole(p, st, frame, end, &ip, port_class, r);
	if (ip.fragment) {
		r->recorded_frag = true;
		return frag_record(st, &ip.frag_key, r);
	}
	return 0;
}

// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The packet-level reference decision (user/packet_oracle.c) on hand-made frames: one or
 * more frames for every bullet of docs/design.md, "Packet shapes: the verdict and reason
 * each one gets", each with the verdict, reason and rule the contract gives it.
 */
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <linux/if_ether.h>

#include "check.h"
#include "frame.h"
#include "packet_oracle.h"
#include "policy.h"

#define V(x) SLUICE_VERDICT_##x
#define R(x) SLUICE_REASON_##x
#define RULE_ANY 0xfffffffdu /* do not check the rule */
#define NONE SLUICE_RULE_NONE
#define DFLT SLUICE_RULE_DEFAULT

/*
 * The destinations: 198.51.100.0/24 and 2001:db8:a::/48 have port classes (a TCP and a
 * UDP port allowed, everything else to the default deny); 203.0.113.0/25 and
 * 2001:db8:b::/48 are allowed without conditions, 203.0.113.128/25 and 2001:db8:c::/48
 * denied without conditions; 203.0.113.64/26 is allowed, but its ICMP is denied.
 */
static const char base_rules[] = "allow 198.51.100.0/24 tcp 443 name web4\n"
				 "allow 198.51.100.0/24 udp 9999 name udp4\n"
				 "allow 203.0.113.0/25 name open4\n"
				 "deny 203.0.113.128/25 name closed4\n"
				 "deny 203.0.113.64/26 icmp name noicmp4\n"
				 "allow 203.0.113.64/26 name open4b\n"
				 "allow 2001:db8:a::/48 tcp 443 name web6\n"
				 "allow 2001:db8:a::/48 udp 9999 name udp6\n"
				 "allow 2001:db8:b::/48 name open6\n"
				 "deny 2001:db8:c::/48 name closed6\n";

static struct policy pol;
static struct oracle_state st;

static void load(const char *head)
{
	char text[2048], err[POLICY_ERROR_MAX];

	policy_free(&pol);
	snprintf(text, sizeof(text), "%s%s", head, base_rules);
	if (policy_parse_text("t.conf", text, &pol, err)) {
		fprintf(stderr, "%s\n", err);
		exit(1);
	}
	oracle_frags_clear(&st);
	oracle_flows_clear(&st);
}

static __u32 rule(const char *name)
{
	for (size_t i = 0; i < pol.nidents; i++)
		if (strcmp(pol.idents[i].name, name) == 0)
			return i;
	fprintf(stderr, "no rule %s\n", name);
	exit(1);
}

static struct oracle_result last;

static void expect_skb(const char *name, struct frame *f, const struct oracle_skb *skb,
		       __u8 verdict, __u8 reason, __u32 rule_id)
{
	int ret = oracle_decide(&pol, &st, f->b, f->len, skb, &last);

	CHECK(ret == 0, "%s: oracle_decide returned %d", name, ret);
	CHECK(last.verdict == verdict && last.reason == reason,
	      "%s: got %s/%s, want %s/%s", name, verdict_name(last.verdict),
	      reason_name(last.reason), verdict_name(verdict), reason_name(reason));
	CHECK(rule_id == RULE_ANY || last.rule_id == rule_id, "%s: rule %u, want %u", name,
	      last.rule_id, rule_id);
}

static void expect(const char *name, struct frame *f, __u8 verdict, __u8 reason, __u32 rule_id)
{
	expect_skb(name, f, NULL, verdict, reason, rule_id);
}

/* Common shapes. */
static void udp4(struct frame *f, const char *dst, unsigned sport, unsigned dport)
{
	fr_init(f);
	fr_eth(f, ETH_P_IP);
	fr_ipv4(f, "192.0.2.1", dst, IPPROTO_UDP);
	fr_udp(f, sport, dport, 16);
	fr_pad(f, 16);
	fr_done(f);
}

static void tcp4(struct frame *f, const char *dst, unsigned sport, unsigned dport, __u8 flags)
{
	fr_init(f);
	fr_eth(f, ETH_P_IP);
	fr_ipv4(f, "192.0.2.1", dst, IPPROTO_TCP);
	fr_tcp(f, sport, dport, flags);
	fr_done(f);
}

static void udp6(struct frame *f, const char *dst, unsigned sport, unsigned dport)
{
	fr_init(f);
	fr_eth(f, ETH_P_IPV6);
	fr_ipv6(f, "2001:db8:1::1", dst, IPPROTO_UDP);
	fr_udp(f, sport, dport, 16);
	fr_pad(f, 16);
	fr_done(f);
}

static void icmp6(struct frame *f, const char *dst, __u8 type)
{
	fr_init(f);
	fr_eth(f, ETH_P_IPV6);
	fr_ipv6(f, "2001:db8:1::1", dst, IPPROTO_ICMPV6);
	fr_icmp(f, type, 0);
	fr_pad(f, 16);
	fr_done(f);
}

/* 1. Link layer. */
static void test_link_layer(void)
{
	struct oracle_skb offloaded = { .vlan_offloaded = true };
	struct frame f;

	load("default deny\n");
	fr_init(&f);
	fr_eth(&f, ETH_P_ARP);
	fr_pad(&f, 28);
	expect("ARP, essential on", &f, V(ESSENTIAL), R(ESSENTIAL), NONE);
	fr_init(&f);
	fr_mac(&f);
	fr_tag(&f, ETH_P_8021Q, 5);
	fr_u16(&f, ETH_P_ARP);
	fr_pad(&f, 28);
	expect("VLAN-tagged ARP, essential on", &f, V(ESSENTIAL), R(ESSENTIAL), NONE);
	fr_init(&f);
	fr_eth(&f, 0x88cc);
	fr_pad(&f, 46);
	expect("LLDP", &f, V(ALLOW), R(NON_IP), NONE);
	f.len = 13;
	expect("frame shorter than Ethernet", &f, V(DENY), R(TRUNCATED), NONE);

	udp4(&f, "203.0.113.10", 1000, 53);
	expect("untagged IPv4", &f, V(ALLOW), R(RULE), rule("open4"));
	expect_skb("offloaded tag changes nothing", &f, &offloaded, V(ALLOW), R(RULE),
		   rule("open4"));

	fr_init(&f);
	fr_mac(&f);
	fr_tag(&f, ETH_P_8021AD, 1);
	fr_tag(&f, ETH_P_8021Q, 2);
	fr_u16(&f, ETH_P_IP);
	fr_ipv4(&f, "192.0.2.1", "203.0.113.200", IPPROTO_UDP);
	fr_udp(&f, 1000, 53, 0);
	fr_done(&f);
	expect("QinQ, IPv4 denied", &f, V(DENY), R(RULE), rule("closed4"));
	CHECK(last.has_dst, "QinQ: destination read");

	fr_init(&f);
	fr_mac(&f);
	fr_tag(&f, ETH_P_8021AD, 1);
	fr_tag(&f, ETH_P_8021Q, 2);
	fr_tag(&f, ETH_P_8021Q, 3);
	fr_u16(&f, ETH_P_IP);
	fr_ipv4(&f, "192.0.2.1", "203.0.113.10", IPPROTO_UDP);
	fr_udp(&f, 1000, 53, 0);
	fr_done(&f);
	expect("three tags", &f, V(DENY), R(UNPARSEABLE), NONE);
	CHECK(!last.has_dst, "three tags: no destination");
	f.len = 14 + 4 + 4 + 2; /* the third TPID is still there, nothing after it */
	expect("three tags, cut after the third TPID", &f, V(DENY), R(UNPARSEABLE), NONE);
	f.len = 14 + 2;
	expect("tag cut short", &f, V(DENY), R(TRUNCATED), NONE);

	load("default deny\nessential off\n");
	fr_init(&f);
	fr_eth(&f, ETH_P_ARP);
	fr_pad(&f, 28);
	expect("ARP, essential off", &f, V(ALLOW), R(NON_IP), NONE);
}

/* 2. IPv4 header. */
static void test_ipv4(void)
{
	struct oracle_skb gso = { .gso_segs = 4 };
	struct frame f;

	load("default deny\n");
	udp4(&f, "203.0.113.10", 1000, 53);
	f.b[14] = 0x44;
	expect("IHL 4", &f, V(DENY), R(UNPARSEABLE), NONE);
	f.b[14] = 0x55;
	expect("version 5", &f, V(DENY), R(UNPARSEABLE), NONE);
	udp4(&f, "203.0.113.10", 1000, 53);
	f.b[14 + 3] = 19, f.b[14 + 2] = 0;
	expect("total length below the header", &f, V(DENY), R(UNPARSEABLE), NONE);
	f.len = 14 + 10;
	expect("IPv4 header cut short", &f, V(DENY), R(TRUNCATED), NONE);
	CHECK(!last.has_dst, "cut IPv4 header: no destination");

	fr_init(&f);
	fr_eth(&f, ETH_P_IP);
	fr_ipv4_opts(&f, "192.0.2.1", "198.51.100.10", IPPROTO_TCP, 0, 1, 10);
	fr_tcp(&f, 1000, 443, FR_SYN);
	fr_done(&f);
	expect("40 bytes of options skipped, port read after them", &f, V(ALLOW), R(RULE),
	       rule("web4"));
	f.len = 14 + 40;
	expect("options cut short", &f, V(DENY), R(TRUNCATED), NONE);

	udp4(&f, "203.0.113.10", 1000, 53);
	f.b[14 + 3] += 1;
	expect("total length beyond the frame", &f, V(DENY), R(TRUNCATED), NONE);
	f.b[14 + 2] = 0xfe;
	expect_skb("GSO super-packet: total length describes the whole", &f, &gso, V(ALLOW),
		   R(RULE), rule("open4"));
	f.b[14 + 2] = f.b[14 + 3] = 0;
	expect_skb("GSO super-packet: total length 0 (BIG TCP)", &f, &gso, V(ALLOW), R(RULE),
		   rule("open4"));

	udp4(&f, "203.0.113.10", 1000, 53);
	fr_pad(&f, 20); /* Ethernet padding after the datagram */
	expect("padding after the datagram", &f, V(ALLOW), R(RULE), rule("open4"));

	/* The packet ends at its total length: padding is never read as a transport header. */
	fr_init(&f);
	fr_eth(&f, ETH_P_IP);
	fr_ipv4(&f, "192.0.2.1", "198.51.100.10", IPPROTO_UDP);
	fr_done(&f);
	fr_udp(&f, 1000, 9999, 0); /* port bytes in the padding */
	fr_pad(&f, 10);
	expect("ports only in the padding, port class", &f, V(DENY), R(TRUNCATED), NONE);
	f.b[14 + 3] = 20 + 3;
	expect("total length ends inside the ports", &f, V(DENY), R(TRUNCATED), NONE);
	f.b[14 + 3] = 20 + 4;
	expect("total length ends right after the ports", &f, V(ALLOW), R(RULE), rule("udp4"));
	f.b[14 + 3] = 10;
	expect_skb("GSO: a total length below the header is not checked", &f, &gso, V(ALLOW),
		   R(RULE), rule("udp4"));
}

/* IPv6 with a chain of n destination-options headers, then TCP to port 443 or 22. */
static void chain6(struct frame *f, const char *dst, int n, unsigned dport)
{
	fr_init(f);
	fr_eth(f, ETH_P_IPV6);
	fr_ipv6(f, "2001:db8:1::1", dst, n ? 60 : IPPROTO_TCP);
	for (int i = 0; i < n; i++)
		fr_ext(f, 60, i == n - 1 ? IPPROTO_TCP : 60, 8);
	fr_tcp(f, 1000, dport, FR_ACK);
	fr_done(f);
}

/* 3. IPv6 header and extension headers. */
static void test_ipv6(void)
{
	struct oracle_skb gso = { .gso_segs = 3 };
	struct frame f;
	char name[64];

	load("default deny\n");
	for (int n = 0; n <= ORACLE_IPV6_EXT_MAX; n++) {
		snprintf(name, sizeof(name), "%d extension headers, TCP 443", n);
		chain6(&f, "2001:db8:a::10", n, 443);
		expect(name, &f, V(ALLOW), R(RULE), rule("web6"));
		snprintf(name, sizeof(name), "%d extension headers, TCP 22", n);
		chain6(&f, "2001:db8:a::10", n, 22);
		expect(name, &f, V(DENY), R(DEFAULT), DFLT);
	}
	chain6(&f, "2001:db8:a::10", ORACLE_IPV6_EXT_MAX + 1, 443);
	expect("9 extension headers", &f, V(DENY), R(UNPARSEABLE), NONE);
	chain6(&f, "2001:db8:b::10", ORACLE_IPV6_EXT_MAX + 1, 443);
	expect("9 extension headers, open destination", &f, V(DENY), R(UNPARSEABLE), NONE);
	CHECK(!last.has_dst, "over-long chain: not counted per destination");

	chain6(&f, "2001:db8:a::10", 3, 443);
	f.len = 14 + 40 + 8 + 4;
	fr_done(&f);
	expect("chain cut inside a header", &f, V(DENY), R(TRUNCATED), NONE);
	f.len = 14 + 40 + 8 + 8 + 1;
	fr_done(&f);
	expect("chain cut inside a header's first two bytes", &f, V(DENY), R(TRUNCATED), NONE);
	/* The payload length, not the frame, ends the packet. */
	chain6(&f, "2001:db8:a::10", 3, 443);
	f.b[14 + 5] -= 17; /* the TCP header now ends 1 byte into its ports */
	expect("payload length ends inside the ports", &f, V(DENY), R(TRUNCATED), NONE);
	f.b[14 + 5] -= 8;
	expect("payload length ends inside the chain", &f, V(DENY), R(TRUNCATED), NONE);
	f.b[14 + 4] = f.b[14 + 5] = 0;
	expect("payload length 0: the packet runs to the frame's end", &f, V(ALLOW), R(RULE),
	       rule("web6"));
	chain6(&f, "2001:db8:a::10", 1, 443);
	f.b[14 + 5] += 1;
	expect("payload length beyond the frame", &f, V(DENY), R(TRUNCATED), NONE);
	expect_skb("payload length beyond the frame, GSO", &f, &gso, V(ALLOW), R(RULE),
		   rule("web6"));
	chain6(&f, "2001:db8:a::10", 3, 443);
	f.b[14] = 0x40;
	expect("version 4 in an IPv6 ethertype", &f, V(DENY), R(UNPARSEABLE), NONE);
	f.b[14] = 0x60;
	f.len = 14 + 39;
	expect("IPv6 header cut short", &f, V(DENY), R(TRUNCATED), NONE);

	/* Every walked header type, with its own length rules. */
	fr_init(&f);
	fr_eth(&f, ETH_P_IPV6);
	fr_ipv6(&f, "2001:db8:1::1", "2001:db8:a::10", 0);
	fr_ext(&f, 0, 43, 16);
	fr_ext(&f, 43, 44, 24);
	fr_frag6(&f, 51, 0, false, 7); /* atomic fragment: a whole datagram */
	fr_ext(&f, 51, 60, 24);        /* AH: length in 4-byte units minus 2 */
	fr_ext(&f, 60, IPPROTO_TCP, 8);
	fr_tcp(&f, 1000, 443, FR_ACK);
	fr_done(&f);
	expect("hop-by-hop, routing, fragment, AH, destination options, TCP", &f, V(ALLOW), R(RULE),
	       rule("web6"));
	CHECK(!last.recorded_frag, "an atomic fragment is not recorded");

	fr_init(&f);
	fr_eth(&f, ETH_P_IPV6);
	fr_ipv6(&f, "2001:db8:1::1", "2001:db8:b::10", 60);
	fr_ext(&f, 60, 0, 8);
	fr_ext(&f, 0, IPPROTO_TCP, 8);
	fr_tcp(&f, 1000, 443, FR_ACK);
	fr_done(&f);
	expect("hop-by-hop after the first header", &f, V(DENY), R(UNPARSEABLE), NONE);

	/* Unwalked extension headers: a port class cannot be decided past them. */
	for (unsigned i = 0; i < 5; i++) {
		static const __u8 unwalked[] = { 135, 139, 140, 253, 254 };

		fr_init(&f);
		fr_eth(&f, ETH_P_IPV6);
		fr_ipv6(&f, "2001:db8:1::1", "2001:db8:a::10", unwalked[i]);
		/* Forged: TCP-shaped bytes with port 443 where a transport header would be. */
		fr_tcp(&f, 1000, 443, FR_ACK);
		fr_done(&f);
		snprintf(name, sizeof(name), "next header %u, port class", unwalked[i]);
		expect(name, &f, V(DENY), R(UNPARSEABLE), NONE);
		memcpy(&f.b[14 + 24], "\x20\x01\x0d\xb8\x00\x0b", 6); /* to 2001:db8:b::10 */
		snprintf(name, sizeof(name), "next header %u, no port class", unwalked[i]);
		expect(name, &f, V(ALLOW), R(RULE), rule("open6"));
	}
	/* After a walked header too. */
	fr_init(&f);
	fr_eth(&f, ETH_P_IPV6);
	fr_ipv6(&f, "2001:db8:1::1", "2001:db8:a::10", 60);
	fr_ext(&f, 60, 253, 8);
	fr_tcp(&f, 1000, 443, FR_ACK);
	fr_done(&f);
	expect("destination options then 253, port class", &f, V(DENY), R(UNPARSEABLE), NONE);
	/* An unknown protocol that is not an extension header: decided with no port. */
	fr_init(&f);
	fr_eth(&f, ETH_P_IPV6);
	fr_ipv6(&f, "2001:db8:1::1", "2001:db8:a::10", 200);
	fr_pad(&f, 8);
	fr_done(&f);
	expect("protocol 200, port class", &f, V(DENY), R(DEFAULT), DFLT);
}

/* 4. Fragments. */
static void frag4(struct frame *f, const char *dst, unsigned frag_field, unsigned id, bool udp,
		  unsigned dport)
{
	fr_init(f);
	fr_eth(f, ETH_P_IP);
	fr_ipv4_opts(f, "192.0.2.1", dst, udp ? IPPROTO_UDP : IPPROTO_TCP, frag_field, id, 0);
	if (frag_field & 0x1fff)
		fr_pad(f, 64); /* a later fragment: data only */
	else if (udp)
		fr_udp(f, 1000, dport, 2000), fr_pad(f, 56);
	else
		fr_tcp(f, 1000, dport, FR_ACK), fr_pad(f, 44);
	fr_done(f);
}

static void frag6(struct frame *f, const char *dst, unsigned offset, bool more, __u32 id,
		  unsigned dport)
{
	fr_init(f);
	fr_eth(f, ETH_P_IPV6);
	fr_ipv6(f, "2001:db8:1::1", dst, 44);
	fr_frag6(f, IPPROTO_UDP, offset, more, id);
	if (offset)
		fr_pad(f, 64);
	else
		fr_udp(f, 1000, dport, 2000), fr_pad(f, 56);
	fr_done(f);
}

static void test_fragments(void)
{
	struct frame f;

	load("default deny\n");
	/* IPv4: first, middle, last of an allowed datagram. */
	frag4(&f, "198.51.100.10", FR_MF, 100, true, 9999);
	expect("v4 first fragment, allowed port", &f, V(ALLOW), R(RULE), rule("udp4"));
	CHECK(last.recorded_frag, "first fragment recorded");
	frag4(&f, "198.51.100.10", FR_MF | 10, 100, true, 0);
	expect("v4 middle fragment follows the first", &f, V(ALLOW), R(RULE), rule("udp4"));
	frag4(&f, "198.51.100.10", 20, 100, true, 0);
	expect("v4 last fragment follows the first", &f, V(ALLOW), R(RULE), rule("udp4"));
	frag4(&f, "198.51.100.10", 20, 100, true, 0);
	expect("v4 last fragment again: the record stays", &f, V(ALLOW), R(RULE), rule("udp4"));
	/* The key is (source, destination, id, protocol): change any and it is an orphan. */
	frag4(&f, "198.51.100.10", 20, 101, true, 0);
	expect("v4 orphan (other id), port class", &f, V(DENY), R(FRAGMENT), DFLT);
	frag4(&f, "198.51.100.10", 20, 100, false, 0);
	expect("v4 orphan (other protocol), port class", &f, V(DENY), R(FRAGMENT), DFLT);
	frag4(&f, "198.51.100.11", 20, 100, true, 0);
	expect("v4 orphan (other destination), port class", &f, V(DENY), R(FRAGMENT), DFLT);

	/* A denied first fragment takes its later fragments with it. */
	frag4(&f, "198.51.100.10", FR_MF, 200, true, 53);
	expect("v4 first fragment, denied port", &f, V(DENY), R(DEFAULT), DFLT);
	frag4(&f, "198.51.100.10", 30, 200, true, 0);
	expect("v4 later fragment of a denied first", &f, V(DENY), R(DEFAULT), DFLT);

	/* Orphans of destinations without a port class: the destination decides. */
	frag4(&f, "203.0.113.10", 30, 300, true, 0);
	expect("v4 orphan, open destination", &f, V(ALLOW), R(RULE), rule("open4"));
	frag4(&f, "203.0.113.200", 30, 300, true, 0);
	expect("v4 orphan, closed destination", &f, V(DENY), R(FRAGMENT), rule("closed4"));

	/* Tiny first fragment: too short for the port a port class needs. */
	fr_init(&f);
	fr_eth(&f, ETH_P_IP);
	fr_ipv4_opts(&f, "192.0.2.1", "198.51.100.10", IPPROTO_UDP, FR_MF, 400, 0);
	fr_pad(&f, 2);
	fr_done(&f);
	expect("v4 tiny first fragment, port class", &f, V(DENY), R(FRAGMENT), NONE);
	frag4(&f, "198.51.100.10", 1, 400, true, 0);
	expect("v4 fragment after a tiny first", &f, V(DENY), R(FRAGMENT), NONE);
	fr_init(&f);
	fr_eth(&f, ETH_P_IP);
	fr_ipv4_opts(&f, "192.0.2.1", "203.0.113.10", IPPROTO_UDP, FR_MF, 401, 0);
	fr_pad(&f, 2);
	fr_done(&f);
	expect("v4 tiny first fragment, no port class", &f, V(ALLOW), R(RULE), rule("open4"));
	/* Not a fragment: a cut UDP header is `truncated`, not `fragment`. */
	fr_init(&f);
	fr_eth(&f, ETH_P_IP);
	fr_ipv4(&f, "192.0.2.1", "198.51.100.10", IPPROTO_UDP);
	fr_pad(&f, 2);
	fr_done(&f);
	expect("v4 UDP header cut before the ports, port class", &f, V(DENY), R(TRUNCATED), NONE);
	CHECK(!last.recorded_frag, "unfragmented packet not recorded");

	/* IPv6: the same through the fragment header. */
	frag6(&f, "2001:db8:a::10", 0, true, 0x10000, 9999);
	expect("v6 first fragment, allowed port", &f, V(ALLOW), R(RULE), rule("udp6"));
	frag6(&f, "2001:db8:a::10", 1448, true, 0x10000, 0);
	expect("v6 middle fragment follows", &f, V(ALLOW), R(RULE), rule("udp6"));
	frag6(&f, "2001:db8:a::10", 2896, false, 0x10000, 0);
	expect("v6 last fragment follows", &f, V(ALLOW), R(RULE), rule("udp6"));
	frag6(&f, "2001:db8:a::10", 2896, false, 0x10001, 0);
	expect("v6 orphan, port class", &f, V(DENY), R(FRAGMENT), DFLT);
	frag6(&f, "2001:db8:b::10", 2896, false, 0x10001, 0);
	expect("v6 orphan, open destination", &f, V(ALLOW), R(RULE), rule("open6"));
	frag6(&f, "2001:db8:a::10", 0, true, 0x20000, 22);
	expect("v6 first fragment, denied port", &f, V(DENY), R(DEFAULT), DFLT);
	frag6(&f, "2001:db8:a::10", 8, false, 0x20000, 0);
	expect("v6 later fragment of a denied first", &f, V(DENY), R(DEFAULT), DFLT);

	/* IPv6 first fragment with headers after the fragment header. */
	fr_init(&f);
	fr_eth(&f, ETH_P_IPV6);
	fr_ipv6(&f, "2001:db8:1::1", "2001:db8:a::10", 44);
	fr_frag6(&f, 60, 0, true, 0x30000);
	fr_ext(&f, 60, IPPROTO_TCP, 16);
	fr_tcp(&f, 1000, 443, FR_ACK);
	fr_done(&f);
	expect("v6 first fragment, options after the fragment header", &f, V(ALLOW), R(RULE),
	       rule("web6"));
	/* Its later fragments name destination options (60) as next header, like the first. */
	fr_init(&f);
	fr_eth(&f, ETH_P_IPV6);
	fr_ipv6(&f, "2001:db8:1::1", "2001:db8:a::10", 44);
	fr_frag6(&f, 60, 64, false, 0x30000);
	fr_pad(&f, 40);
	fr_done(&f);
	expect("v6 later fragment, next header 60, follows", &f, V(ALLOW), R(RULE), rule("web6"));
	/* A later fragment naming an unwalked header is an ordinary orphan, not unparseable. */
	f.b[14 + 40] = 135;
	expect("v6 orphan naming header 135, port class", &f, V(DENY), R(FRAGMENT), DFLT);
	memcpy(&f.b[14 + 24], "\x20\x01\x0d\xb8\x00\x0b", 6); /* to 2001:db8:b::10 */
	expect("v6 orphan naming header 135, open destination", &f, V(ALLOW), R(RULE),
	       rule("open6"));

	/* A first fragment naming an unwalked header: unparseable, and the datagram with it. */
	fr_init(&f);
	fr_eth(&f, ETH_P_IPV6);
	fr_ipv6(&f, "2001:db8:1::1", "2001:db8:a::10", 44);
	fr_frag6(&f, 135, 0, true, 0x50000);
	fr_tcp(&f, 1000, 443, FR_ACK);
	fr_done(&f);
	expect("v6 first fragment naming header 135, port class", &f, V(DENY), R(UNPARSEABLE), NONE);
	CHECK(last.recorded_frag, "unparseable first fragment recorded");
	fr_init(&f);
	fr_eth(&f, ETH_P_IPV6);
	fr_ipv6(&f, "2001:db8:1::1", "2001:db8:a::10", 44);
	fr_frag6(&f, 135, 8, false, 0x50000);
	fr_pad(&f, 16);
	fr_done(&f);
	expect("v6 later fragment of it follows", &f, V(DENY), R(UNPARSEABLE), NONE);
	/* A first fragment whose chain is cut is rejected by the parser: not recorded. */
	fr_init(&f);
	fr_eth(&f, ETH_P_IPV6);
	fr_ipv6(&f, "2001:db8:1::1", "2001:db8:b::10", 44);
	fr_frag6(&f, 60, 0, true, 0x60000);
	fr_ext(&f, 60, IPPROTO_TCP, 16);
	f.len -= 4;
	fr_done(&f);
	expect("v6 first fragment, chain cut", &f, V(DENY), R(TRUNCATED), NONE);
	CHECK(!last.recorded_frag, "first fragment rejected by the parser not recorded");

	/* Tiny IPv6 first fragment. */
	fr_init(&f);
	fr_eth(&f, ETH_P_IPV6);
	fr_ipv6(&f, "2001:db8:1::1", "2001:db8:a::10", 44);
	fr_frag6(&f, IPPROTO_TCP, 0, true, 0x40000);
	fr_pad(&f, 2);
	fr_done(&f);
	expect("v6 tiny first fragment, port class", &f, V(DENY), R(FRAGMENT), NONE);

	/* The record holds the decision of its policy; clearing the table forgets it. */
	oracle_frags_clear(&st);
	frag6(&f, "2001:db8:a::10", 1448, true, 0x10000, 0);
	expect("v6 middle fragment after the table was cleared", &f, V(DENY), R(FRAGMENT), DFLT);

	load("mode audit\ndefault deny\n");
	frag4(&f, "198.51.100.10", 20, 500, true, 0);
	expect("audit: v4 orphan, port class", &f, V(AUDIT), R(FRAGMENT), DFLT);
	frag4(&f, "198.51.100.10", FR_MF, 501, true, 22);
	expect("audit: first fragment, denied port", &f, V(AUDIT), R(DEFAULT), DFLT);
	frag4(&f, "198.51.100.10", 20, 501, true, 0);
	expect("audit: later fragment follows", &f, V(AUDIT), R(DEFAULT), DFLT);
}

/* 5. Essential traffic. */
static void test_essential(void)
{
	static const struct {
		__u8 type;
		bool essential;
	} icmp6_types[] = { { 133, true }, { 134, true }, { 135, true }, { 136, true },
			    { 137, true }, { 130, true }, { 131, true }, { 132, true },
			    { 143, true }, { 128, false }, { 1, false }, { 138, false } };
	struct frame f;
	char name[64];

	load("default deny\n");
	udp4(&f, "255.255.255.255", 68, 67);
	expect("DHCPv4 client", &f, V(ESSENTIAL), R(ESSENTIAL), NONE);
	CHECK(last.has_dst, "DHCPv4: counted per destination");
	udp4(&f, "255.255.255.255", 67, 68);
	expect("DHCPv4 server side", &f, V(DENY), R(DEFAULT), DFLT);
	udp6(&f, "ff02::1:2", 546, 547);
	expect("DHCPv6 client", &f, V(ESSENTIAL), R(ESSENTIAL), NONE);
	udp4(&f, "192.0.2.99", 546, 547);
	expect("DHCPv6 ports over IPv4", &f, V(DENY), R(DEFAULT), DFLT);
	udp6(&f, "ff02::1:2", 68, 67);
	expect("DHCPv4 ports over IPv6", &f, V(DENY), R(DEFAULT), DFLT);
	for (unsigned i = 0; i < sizeof(icmp6_types) / sizeof(icmp6_types[0]); i++) {
		icmp6(&f, "ff02::1:ff00:1", icmp6_types[i].type);
		snprintf(name, sizeof(name), "ICMPv6 type %u", icmp6_types[i].type);
		if (icmp6_types[i].essential)
			expect(name, &f, V(ESSENTIAL), R(ESSENTIAL), NONE);
		else
			expect(name, &f, V(DENY), R(DEFAULT), DFLT);
	}
	icmp6(&f, "ff02::1:ff00:1", 135);
	f.b[14 + 5] = 3; /* the packet ends inside the ICMPv6 header */
	expect("NS cut inside its ICMPv6 header", &f, V(DENY), R(DEFAULT), DFLT);
	f.b[14 + 5] = 4;
	expect("NS of just an ICMPv6 header", &f, V(ESSENTIAL), R(ESSENTIAL), NONE);
	/* A neighbour solicitation behind extension headers is still one. */
	fr_init(&f);
	fr_eth(&f, ETH_P_IPV6);
	fr_ipv6(&f, "2001:db8:1::1", "ff02::1:ff00:1", 0);
	fr_ext(&f, 0, IPPROTO_ICMPV6, 8);
	fr_icmp(&f, 135, 0);
	fr_pad(&f, 16);
	fr_done(&f);
	expect("NS after hop-by-hop", &f, V(ESSENTIAL), R(ESSENTIAL), NONE);
	/* DHCP to a port-class destination: essential wins over the port rules. */
	udp4(&f, "198.51.100.10", 68, 67);
	expect("DHCPv4 to a port-class destination", &f, V(ESSENTIAL), R(ESSENTIAL), NONE);

	load("default deny\nessential off\n");
	udp4(&f, "255.255.255.255", 68, 67);
	expect("essential off: DHCPv4 follows the policy", &f, V(DENY), R(DEFAULT), DFLT);
	icmp6(&f, "ff02::1:ff00:1", 135);
	expect("essential off: NS follows the policy", &f, V(DENY), R(DEFAULT), DFLT);
	load("default allow\nessential off\n");
	icmp6(&f, "ff02::1:ff00:1", 135);
	expect("essential off, default allow: NS allowed", &f, V(ALLOW), R(DEFAULT), DFLT);
}

/* 6. The policy, protocol and port. */
static void test_policy(void)
{
	struct frame f;

	load("default deny\n");
	tcp4(&f, "198.51.100.10", 1000, 443, FR_ACK);
	expect("TCP 443, port class", &f, V(ALLOW), R(RULE), rule("web4"));
	tcp4(&f, "198.51.100.10", 1000, 444, FR_ACK);
	expect("TCP 444, port class", &f, V(DENY), R(DEFAULT), DFLT);
	tcp4(&f, "198.51.100.10", 1000, 443, FR_ACK);
	f.len = 14 + 20 + 3;
	fr_done(&f);
	expect("TCP cut before the ports, port class", &f, V(DENY), R(TRUNCATED), NONE);
	CHECK(last.has_dst, "cut ports: counted per destination");
	tcp4(&f, "203.0.113.10", 1000, 443, FR_ACK);
	f.len = 14 + 20 + 3;
	fr_done(&f);
	expect("TCP cut before the ports, no port class", &f, V(ALLOW), R(RULE), rule("open4"));
	tcp4(&f, "198.51.100.10", 1000, 443, FR_ACK);
	f.len = 14 + 20 + 4;
	fr_done(&f);
	expect("TCP cut right after the ports", &f, V(ALLOW), R(RULE), rule("web4"));
	fr_init(&f);
	fr_eth(&f, ETH_P_IP);
	fr_ipv4(&f, "192.0.2.1", "203.0.113.70", IPPROTO_ICMP);
	fr_icmp(&f, 8, 0);
	fr_done(&f);
	expect("ICMP echo, protocol rule inside an allowed /26", &f, V(DENY), R(RULE),
	       rule("noicmp4"));
	CHECK(oracle_port_class(&pol, &last.dst), "203.0.113.70 has a port class");
	udp4(&f, "203.0.113.70", 1, 2);
	expect("UDP inside that /26", &f, V(ALLOW), R(RULE), rule("open4b"));
	udp4(&f, "192.0.2.99", 1, 2);
	expect("no rule", &f, V(DENY), R(DEFAULT), DFLT);

	load("mode audit\ndefault deny\n");
	udp4(&f, "192.0.2.99", 1, 2);
	expect("audit: no rule", &f, V(AUDIT), R(DEFAULT), DFLT);
	f.b[14] = 0x43;
	expect("audit: IHL 3", &f, V(AUDIT), R(UNPARSEABLE), NONE);
}

/* An ICMP error from the node to `to`, quoting a packet from `qsrc:qsport` to `qdst:qdport`. */
static void icmp_err4(struct frame *f, const char *to, __u8 type, const char *qsrc,
		      const char *qdst, __u8 qproto, unsigned qsport, unsigned qdport)
{
	fr_init(f);
	fr_eth(f, ETH_P_IP);
	fr_ipv4(f, "192.0.2.1", to, IPPROTO_ICMP);
	fr_icmp(f, type, 3);
	fr_ipv4(f, qsrc, qdst, qproto);
	if (qproto == IPPROTO_TCP)
		fr_tcp(f, qsport, qdport, FR_SYN);
	else
		fr_udp(f, qsport, qdport, 0);
	fr_done(f);
}

static void icmp_err6(struct frame *f, const char *to, __u8 type, const char *qsrc,
		      const char *qdst, unsigned qsport, unsigned qdport)
{
	fr_init(f);
	fr_eth(f, ETH_P_IPV6);
	fr_ipv6(f, "2001:db8:1::1", to, IPPROTO_ICMPV6);
	fr_icmp(f, type, 0);
	fr_ipv6(f, qsrc, qdst, IPPROTO_UDP);
	fr_udp(f, qsport, qdport, 0);
	fr_done(f);
}

/* 7. ICMP errors. */
static void test_icmp_errors(void)
{
	struct oracle_flow_key k = { .proto = IPPROTO_TCP, .local_port = 22, .remote_port = 5555 };
	struct frame f;

	load("default deny\n");
	/* 198.51.100.10's ICMP is denied; a UDP packet to its port 9999 would be allowed. */
	icmp_err4(&f, "198.51.100.10", 3, "198.51.100.10", "192.0.2.1", IPPROTO_UDP, 9999, 7);
	expect("port unreachable quoting an allowed flow", &f, V(ALLOW), R(RULE), rule("udp4"));
	icmp_err4(&f, "198.51.100.10", 11, "198.51.100.10", "192.0.2.1", IPPROTO_UDP, 9999, 7);
	expect("time exceeded quoting an allowed flow", &f, V(ALLOW), R(RULE), rule("udp4"));
	icmp_err4(&f, "198.51.100.10", 12, "198.51.100.10", "192.0.2.1", IPPROTO_TCP, 443, 7);
	expect("parameter problem quoting an allowed TCP flow", &f, V(ALLOW), R(RULE),
	       rule("web4"));
	icmp_err4(&f, "198.51.100.10", 3, "198.51.100.10", "192.0.2.1", IPPROTO_UDP, 53, 7);
	expect("port unreachable quoting a denied flow", &f, V(DENY), R(DEFAULT), DFLT);
	icmp_err4(&f, "198.51.100.10", 5, "198.51.100.10", "192.0.2.1", IPPROTO_UDP, 9999, 7);
	expect("redirect (not an error sluice honours)", &f, V(DENY), R(DEFAULT), DFLT);
	icmp_err4(&f, "198.51.100.10", 3, "198.51.100.10", "192.0.2.1", IPPROTO_UDP, 9999, 7);
	f.len = 14 + 20 + 8 + 20 + 3;
	fr_done(&f);
	expect("quoted ports cut short", &f, V(DENY), R(DEFAULT), DFLT);
	f.len = 14 + 20 + 8 + 19;
	fr_done(&f);
	expect("quoted IP header cut short", &f, V(DENY), R(DEFAULT), DFLT);
	f.len = 14 + 20 + 8 + 20 + 4;
	fr_done(&f);
	expect("quoted ports just there", &f, V(ALLOW), R(RULE), rule("udp4"));
	f.b[14 + 20 + 8] = 0x65;
	expect("quoted header is not IPv4", &f, V(DENY), R(DEFAULT), DFLT);

	/* A reply flow: the quoted packet came in on a connection recorded by ingress. */
	addr_parse("192.0.2.1", &k.local);
	addr_parse("192.0.2.99", &k.remote);
	oracle_flow_add(&st, &k, true);
	icmp_err4(&f, "192.0.2.99", 3, "192.0.2.99", "192.0.2.1", IPPROTO_TCP, 5555, 22);
	expect("error quoting a recorded inbound flow", &f, V(REPLY), R(REPLY), NONE);
	oracle_flow_add(&st, &k, false);
	expect("error quoting an expired inbound flow", &f, V(DENY), R(DEFAULT), DFLT);

	icmp_err6(&f, "2001:db8:a::10", 2, "2001:db8:a::10", "2001:db8:1::1", 9999, 7);
	expect("packet too big quoting an allowed flow", &f, V(ALLOW), R(RULE), rule("udp6"));
	icmp_err6(&f, "2001:db8:a::10", 1, "2001:db8:a::10", "2001:db8:1::1", 10, 7);
	expect("v6 unreachable quoting a denied flow", &f, V(DENY), R(DEFAULT), DFLT);
	icmp_err6(&f, "2001:db8:a::10", 4, "2001:db8:a::10", "2001:db8:1::1", 9999, 7);
	expect("v6 parameter problem quoting an allowed flow", &f, V(ALLOW), R(RULE),
	       rule("udp6"));

	load("default deny\nessential off\n");
	icmp_err4(&f, "198.51.100.10", 3, "198.51.100.10", "192.0.2.1", IPPROTO_UDP, 9999, 7);
	expect("essential off: errors follow the policy", &f, V(DENY), R(DEFAULT), DFLT);

	load("default deny\nreplies off\n");
	oracle_flow_add(&st, &k, true);
	icmp_err4(&f, "192.0.2.99", 3, "192.0.2.99", "192.0.2.1", IPPROTO_TCP, 5555, 22);
	expect("replies off: an error quoting an inbound flow", &f, V(DENY), R(DEFAULT), DFLT);
}

/* 8. Replies. */
static void test_replies(void)
{
	struct oracle_flow_key tk = { .proto = IPPROTO_TCP, .local_port = 22, .remote_port = 40000 };
	struct oracle_flow_key uk = { .proto = IPPROTO_UDP, .local_port = 53, .remote_port = 40001 };
	struct frame f;

	load("default deny\n");
	addr_parse("192.0.2.1", &tk.local);
	addr_parse("203.0.113.200", &tk.remote);
	uk.local = tk.local;
	addr_parse("192.0.2.99", &uk.remote);

	tcp4(&f, "203.0.113.200", 22, 40000, FR_ACK | FR_SYN);
	expect("no flow: denied", &f, V(DENY), R(RULE), rule("closed4"));
	CHECK(last.flow_key_valid, "a TCP packet names its flow");
	oracle_flow_add(&st, &tk, true);
	expect("SYN-ACK of a recorded flow", &f, V(REPLY), R(REPLY), NONE);
	tcp4(&f, "203.0.113.200", 22, 40000, FR_ACK | FR_FIN);
	expect("FIN of a recorded flow", &f, V(REPLY), R(REPLY), NONE);
	tcp4(&f, "203.0.113.200", 22, 40001, FR_ACK);
	expect("other remote port", &f, V(DENY), R(RULE), rule("closed4"));
	tcp4(&f, "203.0.113.200", 23, 40000, FR_ACK);
	expect("other local port", &f, V(DENY), R(RULE), rule("closed4"));
	udp4(&f, "203.0.113.200", 22, 40000);
	expect("other protocol", &f, V(DENY), R(RULE), rule("closed4"));
	oracle_flow_add(&st, &uk, true);
	udp4(&f, "192.0.2.99", 53, 40001);
	expect("UDP reply", &f, V(REPLY), R(REPLY), NONE);
	oracle_flow_add(&st, &uk, false);
	expect("UDP reply after the flow expired", &f, V(DENY), R(DEFAULT), DFLT);

	/* Allowed packets are not looked up: they stay allow. */
	tk.remote_port = 443;
	addr_parse("198.51.100.10", &tk.remote);
	oracle_flow_add(&st, &tk, true);
	tcp4(&f, "198.51.100.10", 22, 443, FR_ACK);
	expect("allowed packet of a recorded flow", &f, V(ALLOW), R(RULE), rule("web4"));
	/* A packet cut before its ports has no flow. */
	tcp4(&f, "203.0.113.200", 22, 40000, FR_ACK);
	f.len = 14 + 20 + 3;
	fr_done(&f);
	expect("TCP cut before the ports", &f, V(DENY), R(RULE), rule("closed4"));

	load("mode audit\ndefault deny\n");
	oracle_flow_add(&st, &uk, true);
	udp4(&f, "192.0.2.99", 53, 40001);
	expect("audit: UDP reply", &f, V(REPLY), R(REPLY), NONE);

	load("default deny\nreplies off\n");
	oracle_flow_add(&st, &uk, true);
	expect("replies off: denied", &f, V(DENY), R(DEFAULT), DFLT);
}

/* GSO: a super-packet counts as its wire packets and bytes. */
static void test_gso(void)
{
	struct oracle_skb gso = { .gso_segs = 5 };
	struct frame f;

	load("default deny\n");
	fr_init(&f);
	fr_eth(&f, ETH_P_IP);
	fr_ipv4(&f, "192.0.2.1", "203.0.113.10", IPPROTO_TCP);
	fr_tcp_opts(&f, 1000, 443, FR_ACK, 3); /* 32-byte TCP header */
	fr_pad(&f, 200);
	fr_done(&f);
	expect_skb("TCP super-packet", &f, &gso, V(ALLOW), R(RULE), rule("open4"));
	CHECK_EQ_U64(last.packets, 5, "TCP super-packet: packets");
	CHECK_EQ_U64(last.bytes, f.len + 4 * (14 + 20 + 32), "TCP super-packet: bytes");
	expect("the same without GSO", &f, V(ALLOW), R(RULE), rule("open4"));
	CHECK_EQ_U64(last.packets, 1, "no GSO: packets");
	CHECK_EQ_U64(last.bytes, f.len, "no GSO: bytes");

	chain6(&f, "2001:db8:b::10", 2, 443);
	fr_pad(&f, 100);
	fr_done(&f);
	expect_skb("IPv6 super-packet behind two extension headers", &f, &gso, V(ALLOW), R(RULE),
		   rule("open6"));
	CHECK_EQ_U64(last.bytes, f.len + 4 * (14 + 40 + 16 + 20), "IPv6 super-packet: bytes");

	udp4(&f, "203.0.113.200", 1, 2);
	expect_skb("denied UDP super-packet", &f, &gso, V(DENY), R(RULE), rule("closed4"));
	CHECK_EQ_U64(last.bytes, f.len + 4 * (14 + 20 + 8), "UDP super-packet: bytes");
	f.b[14] = 0x44;
	expect_skb("unparseable super-packet: one packet", &f, &gso, V(DENY), R(UNPARSEABLE), NONE);
	CHECK_EQ_U64(last.packets, 1, "unparseable super-packet: packets");
}

int main(void)
{
	policy_init(&pol);
	oracle_state_init(&st);
	test_link_layer();
	test_ipv4();
	test_ipv6();
	test_fragments();
	test_essential();
	test_policy();
	test_icmp_errors();
	test_replies();
	test_gso();
	oracle_state_free(&st);
	policy_free(&pol);
	return check_summary();
}

// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The tc egress program on crafted frames (BPF_PROG_TEST_RUN): each case is data — a
 * frame, the policy in force, and the verdict, reason and counters it must produce.
 * Then the program is held to the reference decision on random policies and packets.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/pkt_cls.h>

#include "addr.h"
#include "check.h"
#include "datapath.h"
#include "log.h"
#include "output.h"
#include "packets.h"
#include "policy.h"
#include "policy_apply.h"
#include "policy_kernel.h"

#define PASS TC_ACT_UNSPEC
#define DROP TC_ACT_SHOT /* the only code tcx treats as a drop */

static const char policy_rules[] = "allow 198.51.100.0/24\n"
				   "deny 198.51.100.128/25\n"
				   "deny 203.0.113.0/24\n"
				   "allow 203.0.113.64/26\n"
				   "allow 2001:db8:a::/48\n"
				   "deny 2001:db8:a:bad::/64\n"
				   "deny 2001:db8:d::/48\n"
				   "allow 2001:db8:d:900d::/64\n";

static struct datapath dp;
static struct policy_maps maps;

static int install_text(const char *text)
{
	char err[POLICY_ERROR_MAX];
	struct compiled_policy cp;
	struct policy p;
	__u32 gen;
	int ret;

	ret = policy_parse_text("t.conf", text, &p, err);
	if (ret) {
		fprintf(stderr, "%s\n", err);
		return ret;
	}
	ret = policy_next_generation(dp.config_fd, &gen);
	if (!ret)
		ret = policy_compile(&p, gen, &cp);
	if (!ret) {
		ret = policy_install(&maps, &cp, gen);
		compiled_policy_free(&cp);
	}
	policy_free(&p);
	return ret;
}

static int install_policy(const char *mode)
{
	char text[1024];

	snprintf(text, sizeof(text), "mode %s\ndefault deny\n%s", mode, policy_rules);
	return install_text(text);
}

/* Run one frame; returns the program's return code, or -1000 on a harness error. */
static int run_frame(const struct pkt_spec *s, unsigned *len, unsigned gso_segs)
{
	__u8 buf[PKT_MAX];
	struct __sk_buff ctx = { .gso_segs = gso_segs, .gso_size = gso_segs ? 1000 : 0 };
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = buf, .repeat = 1);
	int err;

	*len = pkt_build(s, buf);
	opts.data_size_in = *len;
	if (gso_segs) {
		opts.ctx_in = &ctx;
		opts.ctx_size_in = sizeof(ctx);
	}
	err = bpf_prog_test_run_opts(dp.egress_prog_fd, &opts);
	if (err) {
		fprintf(stderr, "BPF_PROG_TEST_RUN: %s\n", strerror(-err));
		return -1000;
	}
	return (int)opts.retval;
}

static bool dest_get(const char *dst, struct sluice_dest_stats *out)
{
	struct sluice_addr a;

	memset(out, 0, sizeof(*out));
	return dst && addr_parse(dst, &a) == 0 && bpf_map_lookup_elem(dp.dests_fd, &a, out) == 0;
}

static struct sluice_counter totals_of(__u8 verdict, __u8 reason)
{
	struct sluice_counter sum = {};
	struct total_row *rows;
	size_t n;

	if (read_totals(dp.totals_fd, dp.ifaces_fd, &rows, &n))
		return sum;
	for (size_t i = 0; i < n; i++) {
		if (rows[i].verdict == verdict && rows[i].reason == reason &&
		    rows[i].hook == SLUICE_HOOK_TC_EGRESS) {
			sum.packets += rows[i].sum.packets;
			sum.bytes += rows[i].sum.bytes;
		}
	}
	free(rows);
	return sum;
}

struct frame_case {
	const char *name;
	const char *mode; /* enforce | audit */
	struct pkt_spec pkt;
	int ret;
	__u8 verdict, reason;
	int rule_line;     /* line of the winning rule in t.conf, 0 = default / none */
	unsigned gso_segs; /* GSO super-packet of this many segments */
};

#define V(x) SLUICE_VERDICT_##x
#define R(x) SLUICE_REASON_##x
#define VLAN_Q 0x8100
#define VLAN_AD 0x88a8

/* Rule lines in t.conf: 3 = allow 198.51.100.0/24, 4 = deny .128/25, ... (see above). */
static const struct frame_case cases[] = {
	{ "v4 allowed", "enforce", { .dst = "198.51.100.10" }, PASS, V(ALLOW), R(RULE), 3 },
	{ "v4 denied", "enforce", { .dst = "203.0.113.10" }, DROP, V(DENY), R(RULE), 5 },
	{ "v4 default deny", "enforce", { .dst = "192.0.2.99" }, DROP, V(DENY), R(DEFAULT), 0 },
	{ "v4 /25 deny inside /24 allow", "enforce", { .dst = "198.51.100.200" }, DROP, V(DENY),
	  R(RULE), 4 },
	{ "v4 /26 allow inside /24 deny", "enforce", { .dst = "203.0.113.70" }, PASS, V(ALLOW),
	  R(RULE), 6 },
	{ "v6 allowed", "enforce", { .dst = "2001:db8:a::10" }, PASS, V(ALLOW), R(RULE), 7 },
	{ "v6 denied", "enforce", { .dst = "2001:db8:d::10" }, DROP, V(DENY), R(RULE), 9 },
	{ "v6 default deny", "enforce", { .dst = "2001:db8:ffff::1" }, DROP, V(DENY), R(DEFAULT), 0 },
	{ "v6 /64 deny inside /48 allow", "enforce", { .dst = "2001:db8:a:bad::1" }, DROP, V(DENY),
	  R(RULE), 8 },
	{ "v6 /64 allow inside /48 deny", "enforce", { .dst = "2001:db8:d:900d::1" }, PASS,
	  V(ALLOW), R(RULE), 10 },
	{ "v4 TCP allowed", "enforce", { .dst = "198.51.100.11", .l4 = IPPROTO_TCP }, PASS,
	  V(ALLOW), R(RULE), 3 },
	{ "v4 with options denied", "enforce", { .dst = "203.0.113.11", .ipv4_options = 3 }, DROP,
	  V(DENY), R(RULE), 5 },
	{ "802.1Q tag, v4 denied", "enforce", { .dst = "203.0.113.12", .vlan = { VLAN_Q } }, DROP,
	  V(DENY), R(RULE), 5 },
	{ "802.1Q tag, v4 allowed", "enforce", { .dst = "198.51.100.12", .vlan = { VLAN_Q } }, PASS,
	  V(ALLOW), R(RULE), 3 },
	{ "QinQ, v6 allowed", "enforce", { .dst = "2001:db8:a::12", .vlan = { VLAN_AD, VLAN_Q } },
	  PASS, V(ALLOW), R(RULE), 7 },
	{ "QinQ, v6 denied", "enforce", { .dst = "2001:db8:d::12", .vlan = { VLAN_AD, VLAN_Q } },
	  DROP, V(DENY), R(RULE), 9 },
	{ "three tags: unparseable", "enforce",
	  { .dst = "198.51.100.13", .vlan = { VLAN_AD, VLAN_Q, VLAN_Q } }, DROP, V(DENY),
	  R(UNPARSEABLE), 0 },
	{ "ARP is essential", "enforce", { .ethertype = ETH_P_ARP }, PASS, V(ESSENTIAL),
	  R(ESSENTIAL), 0 },
	{ "LLDP passes as non-IP", "enforce", { .ethertype = 0x88cc }, PASS, V(ALLOW), R(NON_IP), 0 },
	{ "VLAN-tagged ARP is essential", "enforce", { .ethertype = ETH_P_ARP, .vlan = { VLAN_Q } },
	  PASS, V(ESSENTIAL), R(ESSENTIAL), 0 },
	/*
	 * Truncated IP headers ride behind a VLAN tag: the kernel's test runner itself rejects
	 * untagged IPv4/IPv6 frames shorter than an IP header, yet a packet socket can send them.
	 */
	{ "frame ends after the VLAN tag", "enforce",
	  { .dst = "198.51.100.14", .vlan = { VLAN_Q }, .truncate = 18 }, DROP, V(DENY),
	  R(TRUNCATED), 0 },
	{ "IPv4 header cut short", "enforce",
	  { .dst = "198.51.100.14", .vlan = { VLAN_Q }, .truncate = 18 + 12 }, DROP, V(DENY),
	  R(TRUNCATED), 0 },
	{ "IPv4 options cut short", "enforce",
	  { .dst = "198.51.100.14", .ipv4_options = 4, .truncate = 14 + 24 }, DROP, V(DENY),
	  R(TRUNCATED), 0 },
	{ "IPv6 header cut short", "enforce",
	  { .dst = "2001:db8:a::14", .vlan = { VLAN_Q }, .truncate = 18 + 30 }, DROP, V(DENY),
	  R(TRUNCATED), 0 },
	{ "VLAN tag cut short", "enforce", { .dst = "198.51.100.14", .vlan = { VLAN_Q }, .truncate = 16 },
	  DROP, V(DENY), R(TRUNCATED), 0 },
	{ "IPv4 IHL below 5", "enforce", { .dst = "198.51.100.14", .ihl_override = 4 }, DROP,
	  V(DENY), R(UNPARSEABLE), 0 },
	{ "GSO: 4 segments counted as 4 wire packets", "enforce",
	  { .dst = "198.51.100.15", .l4 = IPPROTO_TCP, .payload = 64 }, PASS, V(ALLOW), R(RULE), 3,
	  4 },
	{ "audit: denied passes as audit", "audit", { .dst = "203.0.113.20" }, PASS, V(AUDIT),
	  R(RULE), 5 },
	{ "audit: default deny passes as audit", "audit", { .dst = "192.0.2.98" }, PASS, V(AUDIT),
	  R(DEFAULT), 0 },
	{ "audit: allowed stays allow", "audit", { .dst = "2001:db8:a::20" }, PASS, V(ALLOW),
	  R(RULE), 7 },
	{ "audit: truncated passes as audit", "audit",
	  { .dst = "198.51.100.21", .vlan = { VLAN_Q }, .truncate = 24 },
	  PASS, V(AUDIT), R(TRUNCATED), 0 },
	{ "audit: three tags pass as audit", "audit",
	  { .dst = "198.51.100.13", .vlan = { VLAN_AD, VLAN_Q, VLAN_Q } }, PASS, V(AUDIT),
	  R(UNPARSEABLE), 0 },
};

static void test_frames(void)
{
	const char *mode = NULL;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct frame_case *c = &cases[i];
		bool ip_decided = c->reason == R(RULE) || c->reason == R(DEFAULT);
		struct sluice_dest_stats before, after;
		struct sluice_counter tot_before, tot_after;
		unsigned len, segs = c->gso_segs ? c->gso_segs : 1;
		__u64 want_bytes;
		int ret;

		if (!mode || strcmp(mode, c->mode) != 0) {
			mode = c->mode;
			if (install_policy(mode)) {
				CHECK(0, "cannot install the %s policy", mode);
				return;
			}
		}
		dest_get(c->pkt.dst, &before);
		tot_before = totals_of(c->verdict, c->reason);
		ret = run_frame(&c->pkt, &len, c->gso_segs);
		CHECK(ret == c->ret, "%s: return code %d, want %d", c->name, ret, c->ret);

		/* Wire bytes: every further segment repeats Ethernet + IPv4 + TCP headers. */
		want_bytes = len + (segs - 1) * (14 + 20 + 20);
		tot_after = totals_of(c->verdict, c->reason);
		CHECK_EQ_U64(tot_after.packets - tot_before.packets, segs, c->name);
		CHECK_EQ_U64(tot_after.bytes - tot_before.bytes, want_bytes, c->name);

		bool have = dest_get(c->pkt.dst, &after);
		if (!ip_decided) {
			/* Undecidable frames have no trustworthy destination: no entry moves. */
			CHECK(!c->pkt.dst || memcmp(&before, &after, sizeof(before)) == 0,
			      "%s: destination entry changed", c->name);
			continue;
		}
		CHECK(have, "%s: no destination entry for %s", c->name, c->pkt.dst);
		struct cached_decision cd;

		dest_cached_decision(&after, &cd);
		CHECK(cd.verdict == c->verdict && cd.reason == c->reason,
		      "%s: cached verdict %s/%s", c->name, verdict_name(cd.verdict),
		      reason_name(cd.reason));
		CHECK(cd.rule_id == (c->rule_line ? (__u32)c->rule_line - 3 : SLUICE_RULE_DEFAULT),
		      "%s: rule id %u", c->name, cd.rule_id);
		CHECK_EQ_U64(after.packets[c->verdict] - before.packets[c->verdict], segs, c->name);
		CHECK_EQ_U64(after.bytes[c->verdict] - before.bytes[c->verdict], want_bytes, c->name);
	}
}

/* A new policy takes effect for destinations whose old verdict is cached. */
static void test_policy_switch(void)
{
	struct pkt_spec pkt = { .dst = "192.0.2.200" };
	struct sluice_dest_stats st;
	unsigned len;

	CHECK(install_text("default deny\n") == 0, "install deny-all");
	CHECK(run_frame(&pkt, &len, 0) == DROP, "dropped under default deny");
	CHECK(run_frame(&pkt, &len, 0) == DROP, "still dropped (cached)");
	CHECK(install_text("default deny\nallow 192.0.2.0/24\n") == 0, "install allow");
	CHECK(run_frame(&pkt, &len, 0) == PASS, "passes right after the switch");
	dest_get(pkt.dst, &st);
	CHECK(st.packets[V(DENY)] == 2 && st.packets[V(ALLOW)] == 1,
	      "counters kept across the switch: deny %llu allow %llu",
	      (unsigned long long)st.packets[V(DENY)], (unsigned long long)st.packets[V(ALLOW)]);
	CHECK(install_text("default deny\n") == 0, "install deny-all again");
	CHECK(run_frame(&pkt, &len, 0) == DROP, "dropped again right after the switch");
}

/* Protocol and port rules: the trie entry points at a port class; the cache keeps no verdict. */
static void test_port_rules(void)
{
	static const char text[] = "default deny\n"
				   "allow 198.51.100.0/24 tcp 443,8000-8100 name web\n"
				   "deny 198.51.100.0/24 udp 53 name no-dns\n"
				   "allow 198.51.100.128/25\n"
				   "deny 198.51.100.130 tcp 22 name no-ssh\n"
				   "allow 2001:db8:a::/48 icmpv6\n";
	static const struct {
		struct pkt_spec pkt;
		int ret;
		__u8 reason;
		__u32 rule; /* ident */
	} cases[] = {
		{ { .dst = "198.51.100.10", .l4 = IPPROTO_TCP, .dport = 443 }, PASS, R(RULE), 0 },
		{ { .dst = "198.51.100.10", .l4 = IPPROTO_TCP, .dport = 22 }, DROP, R(DEFAULT), SLUICE_RULE_DEFAULT },
		{ { .dst = "198.51.100.10", .l4 = IPPROTO_TCP, .dport = 8050 }, PASS, R(RULE), 0 },
		{ { .dst = "198.51.100.10", .l4 = IPPROTO_TCP, .dport = 8101 }, DROP, R(DEFAULT), SLUICE_RULE_DEFAULT },
		{ { .dst = "198.51.100.10", .l4 = IPPROTO_UDP, .dport = 53 }, DROP, R(RULE), 1 },
		{ { .dst = "198.51.100.10", .l4 = IPPROTO_UDP, .dport = 443 }, DROP, R(DEFAULT), SLUICE_RULE_DEFAULT },
		{ { .dst = "198.51.100.10", .l4 = IPPROTO_ICMP }, DROP, R(DEFAULT), SLUICE_RULE_DEFAULT },
		{ { .dst = "198.51.100.200", .l4 = IPPROTO_TCP, .dport = 22 }, PASS, R(RULE), 2 },
		{ { .dst = "198.51.100.130", .l4 = IPPROTO_TCP, .dport = 22 }, DROP, R(RULE), 3 },
		{ { .dst = "198.51.100.130", .l4 = IPPROTO_TCP, .dport = 443 }, PASS, R(RULE), 2 },
		{ { .dst = "198.51.100.10", .l4 = IPPROTO_TCP, .dport = 443 }, PASS, R(RULE), 0 },
		/* A TCP header cut before its ports cannot be matched against port rules. */
		{ { .dst = "198.51.100.11", .l4 = IPPROTO_TCP, .truncate = 14 + 20 + 2, .ip_len = 22 }, DROP,
		  R(TRUNCATED), SLUICE_RULE_NONE },
		/* A later fragment has no ports: only rules without ports can match it. */
		{ { .dst = "198.51.100.12", .l4 = IPPROTO_TCP, .dport = 443, .frag_off = 100 }, DROP,
		  R(DEFAULT), SLUICE_RULE_DEFAULT },
		{ { .dst = "2001:db8:a::1", .l4 = IPPROTO_ICMPV6 }, PASS, R(RULE), 4 },
		{ { .dst = "2001:db8:a::1", .l4 = IPPROTO_UDP, .dport = 53 }, DROP, R(DEFAULT), SLUICE_RULE_DEFAULT },
	};

	if (install_text(text)) {
		CHECK(0, "cannot install the port policy");
		return;
	}
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct pkt_spec *pkt = &cases[i].pkt;
		struct sluice_dest_stats before, after;
		unsigned len;
		int ret;
		__u8 verdict = cases[i].ret == DROP ? V(DENY) : V(ALLOW);

		dest_get(pkt->dst, &before);
		ret = run_frame(pkt, &len, 0);
		dest_get(pkt->dst, &after);
		CHECK(ret == cases[i].ret, "%s proto %u port %u: return %d, want %d", pkt->dst, pkt->l4,
		      pkt->dport, ret, cases[i].ret);
		CHECK_EQ_U64(after.packets[verdict] - before.packets[verdict], 1, pkt->dst);
		/* Only 198.51.100.128/25 has a verdict that does not depend on the port. */
		struct cached_decision cd;

		dest_cached_decision(&after, &cd);
		CHECK((cd.port_class != 0) == (strcmp(pkt->dst, "198.51.100.200") != 0),
		      "%s: port class %u", pkt->dst, cd.port_class);
	}
	/* The same destination, one port allowed and one denied, alternating: no stale cache. */
	for (int i = 0; i < 6; i++) {
		struct pkt_spec pkt = { .dst = "198.51.100.20", .l4 = IPPROTO_TCP,
					.dport = i % 2 ? 22 : 443 };
		unsigned len;

		CHECK(run_frame(&pkt, &len, 0) == (i % 2 ? DROP : PASS), "alternating ports, %d", i);
	}
}

/* A datapath with no policy installed fails closed. */
static void test_no_policy(void)
{
	struct datapath fresh;
	struct pkt_spec pkt = { .dst = "198.51.100.30" };
	__u8 buf[PKT_MAX];
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = buf, .repeat = 1);

	if (datapath_load(&fresh, NULL)) {
		CHECK(0, "cannot load a second datapath");
		return;
	}
	opts.data_size_in = pkt_build(&pkt, buf);
	CHECK(bpf_prog_test_run_opts(fresh.egress_prog_fd, &opts) == 0 && (int)opts.retval == DROP,
	      "no policy: dropped (retval %d)", (int)opts.retval);
	datapath_close(&fresh);
}

static struct sluice_addr random_dest(bool v4, const struct policy *p)
{
	struct sluice_addr a = {};

	if (p->nrules && rand() % 4) {
		a = p->rules[rand() % p->nrules].dst.addr;
		if (addr_is_v4(&a) != v4)
			memset(&a, 0, sizeof(a));
	}
	if (v4) {
		memset(a.a, 0, 10);
		a.a[10] = a.a[11] = 0xff;
		for (int i = 13 + rand() % 3; i < 16; i++)
			a.a[i] = rand();
	} else {
		a.a[0] = 0x20, a.a[1] = 0x01, a.a[2] = 0x0d, a.a[3] = 0xb8;
		for (int i = 6 + rand() % 10; i < 16; i++)
			a.a[i] = rand();
	}
	return a;
}

static const __u8 diff_protos[] = { IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, IPPROTO_SCTP };

static __u16 diff_port(void)
{
	static const __u16 pool[] = { 22, 53, 80, 443, 444, 2811, 50000, 50999, 51000, 65535 };

	return rand() % 4 ? pool[rand() % 10] : 1 + rand() % 65535;
}

static void diff_match(struct l4_match *m)
{
	memset(m, 0, sizeof(*m));
	if (rand() % 2)
		return;
	m->nprotos = 1 + rand() % 2;
	for (int i = 0; i < m->nprotos; i++)
		m->protos[i] = diff_protos[rand() % 4];
	for (int i = 0; i < m->nprotos; i++)
		if (!proto_has_ports(m->protos[i]) || rand() % 3 == 0)
			return;
	m->nports = 1 + rand() % 3;
	for (int i = 0; i < m->nports; i++) {
		__u16 x = diff_port(), y = rand() % 3 ? x : diff_port();

		m->ports[i] = (struct port_range){ x < y ? x : y, x < y ? y : x };
	}
}

/*
 * Differential test: the kernel program and the reference decision on 100 000 random
 * (policy, packet) pairs — nested IPv4 and IPv6 prefixes, protocol and port rules,
 * allow/deny mixes, both modes — with zero disagreements.
 */
static void test_random_against_reference(void)
{
	unsigned mismatches = 0, total = 0;

	srand(777);
	for (int round = 0; round < 25; round++) {
		struct compiled_policy cp;
		struct policy p;
		__u32 gen;

		policy_init(&p);
		p.default_verdict = round % 2 ? SLUICE_VERDICT_ALLOW : SLUICE_VERDICT_DENY;
		p.mode = round % 5 == 4 ? SLUICE_MODE_AUDIT : SLUICE_MODE_ENFORCE;
		for (int r = 0; r < 200; r++) {
			bool v4 = rand() % 2;
			struct prefix pre = { .addr = random_dest(v4, &p) };
			struct l4_match m;

			pre.prefixlen = v4 ? 96 + 8 + rand() % 25 : 16 + rand() % 113;
			for (unsigned bit = pre.prefixlen; bit < 128; bit++)
				pre.addr.a[bit / 8] &= ~(0x80 >> (bit % 8));
			diff_match(&m);
			policy_add_rules(&p, rand() % 2 ? V(ALLOW) : V(DENY), &pre, 1, &m, "r", "r", 0);
		}
		if (policy_next_generation(dp.config_fd, &gen) || policy_compile(&p, gen, &cp) ||
		    policy_install(&maps, &cp, gen)) {
			CHECK(0, "cannot install random policy %d", round);
			policy_free(&p);
			return;
		}
		compiled_policy_free(&cp);
		for (int i = 0; i < 4000; i++) {
			struct sluice_addr a = random_dest(rand() % 2, &p);
			struct sluice_policy_entry want;
			struct sluice_dest_stats before, after;
			char dst[ADDR_STRLEN];
			struct pkt_spec pkt = { .dst = dst, .l4 = diff_protos[rand() % 4],
						.dport = diff_port() };
			int port = proto_has_ports(pkt.l4) ? pkt.dport : POLICY_PORT_NONE;
			unsigned len;
			int ret;

			addr_format(&a, dst, sizeof(dst));
			policy_decide(&p, &a, pkt.l4, port, &want);
			dest_get(dst, &before);
			ret = run_frame(&pkt, &len, 0);
			dest_get(dst, &after);
			total++;
			/* The verdict shows in the return code and in which counter moved. */
			if (ret != (want.verdict == V(DENY) ? DROP : PASS) ||
			    after.packets[want.verdict] != before.packets[want.verdict] + 1) {
				if (mismatches++ < 5)
					fprintf(stderr, "mismatch for %s proto %u port %d: ret %d, want %s rule %u\n",
						dst, pkt.l4, port, ret, verdict_name(want.verdict),
						want.rule_id);
			}
		}
		policy_free(&p);
	}
	CHECK(total == 100000, "%u random packets", total);
	CHECK(mismatches == 0, "%u of %u random packets differ from the reference", mismatches, total);
}

/* A random override: a rule's prefix, something inside one, or a wider or unrelated one. */
static void random_override(const struct policy *base, int n, struct override *o)
{
	static const char *const protos[] = { "", "", "tcp", "udp", "tcp,udp", "icmp" };
	static const char *const ports[] = { "", "443", "50000-51000", "22,80" };
	struct prefix x;
	bool v4 = rand() % 2;

	memset(o, 0, sizeof(*o));
	x.addr = random_dest(v4, base);
	switch (rand() % 3) {
	case 0: /* a host */
		x.prefixlen = 128;
		break;
	case 1: /* exactly a rule's prefix, when one of this family exists */
		x = base->rules[rand() % base->nrules].dst;
		break;
	default: /* anything from wide to narrow */
		x.prefixlen = addr_is_v4(&x.addr) ? 96 + 8 + rand() % 25 : 16 + rand() % 113;
	}
	for (unsigned bit = x.prefixlen; bit < 128; bit++)
		x.addr.a[bit / 8] &= ~(0x80 >> (bit % 8));
	prefix_format(&x, o->target, sizeof(o->target));
	o->action = rand() % 2 ? V(ALLOW) : V(DENY);
	snprintf(o->protocols, sizeof(o->protocols), "%s", protos[rand() % 6]);
	if (strstr(o->protocols, "tcp") || strstr(o->protocols, "udp"))
		snprintf(o->ports, sizeof(o->ports), "%s", ports[rand() % 4]);
	snprintf(o->name, sizeof(o->name), "o%d", n);
}

/* Is the active trie still the one installed by the last full apply? */
static __u32 active_trie_id(void)
{
	__u32 zero = 0, id = 0;

	bpf_map_lookup_elem(dp.policy_fd, &zero, &id);
	return id;
}

/*
 * Overrides changed in place (sluice allow/deny/remove with the daemon running): after each
 * of many random adds and removes, the kernel decides like the reference decision of the
 * base policy plus the overrides applied from scratch — and the trie was patched, not
 * replaced.
 */
static void test_overrides_in_place(void)
{
	char state[] = "/tmp/sluice-test-live-XXXXXX", path[PATH_MAX], err[POLICY_ERROR_MAX];
	struct override_list list = {};
	struct policy_live live = {};
	struct apply_result res;
	unsigned mismatches = 0, total = 0, in_place = 0, steps = 0;
	struct policy base;
	FILE *f;

	srand(4242);
	if (!mkdtemp(state)) {
		CHECK(0, "mkdtemp: %s", strerror(errno));
		return;
	}
	snprintf(path, sizeof(path), "%s/base.conf", state);
	f = fopen(path, "w");
	policy_init(&base);
	fprintf(f, "default deny\n");
	for (int r = 0; r < 300; r++) {
		bool v4 = rand() % 2;
		struct prefix pre = { .addr = random_dest(v4, &base) };
		char text[ADDR_STRLEN];

		pre.prefixlen = v4 ? 96 + 8 + rand() % 25 : 16 + rand() % 113;
		for (unsigned bit = pre.prefixlen; bit < 128; bit++)
			pre.addr.a[bit / 8] &= ~(0x80 >> (bit % 8));
		prefix_format(&pre, text, sizeof(text));
		policy_add_rule(&base, V(ALLOW), &pre, "x", 0); /* for random_dest's choices */
		fprintf(f, "%s %s%s\n", rand() % 2 ? "allow" : "deny", text,
			rand() % 3 ? "" : " tcp 443,2811");
	}
	fclose(f);
	list.items = calloc(OVERRIDES_MAX + 1, sizeof(*list.items));
	if (!list.items || policy_live_load(&live, state, &maps, path, POLICY_MODE_FILE, &res)) {
		CHECK(0, "cannot load the base policy");
		goto out;
	}
	__u32 trie = active_trie_id();

	for (int step = 0; step < 80; step++) {
		struct policy want;
		__u32 gen = res.generation;

		if (list.n && rand() % 3 == 0) {
			list.items[rand() % list.n] = list.items[list.n - 1]; /* remove one */
			list.n--;
		} else {
			random_override(&base, step, &list.items[list.n++]);
		}
		if (overrides_save(state, &list) ||
		    policy_live_sync_overrides(&live, state, &maps, &res)) {
			CHECK(0, "step %d: cannot apply the overrides", step);
			break;
		}
		steps++;
		in_place += active_trie_id() == trie && res.generation == gen + 1 && res.changed;

		/* The reference: the base policy and the overrides, from scratch. */
		if (policy_parse_file(path, &want, err)) {
			CHECK(0, "%s", err);
			break;
		}
		for (size_t i = 0; i < list.n; i++) {
			char rule[512];

			override_rule_text(&list.items[i], rule, sizeof(rule));
			if (policy_add_rule_text(&want, "override", rule, err))
				CHECK(0, "%s: %s", rule, err);
		}
		for (int i = 0; i < 300; i++) {
			struct sluice_addr a;
			struct sluice_policy_entry expect;
			struct sluice_dest_stats before, after;
			char dst[ADDR_STRLEN];
			struct pkt_spec pkt = { .dst = dst, .l4 = diff_protos[rand() % 4],
						.dport = diff_port() };
			int port = proto_has_ports(pkt.l4) ? pkt.dport : POLICY_PORT_NONE;
			unsigned len;
			int ret;

			/* Half the packets go inside the overrides' prefixes. */
			if (list.n && rand() % 2) {
				struct prefix x;
				size_t col;

				prefix_parse(list.items[rand() % list.n].target, &x, err, sizeof(err),
					     &col);
				a = x.addr;
				for (unsigned bit = x.prefixlen; bit < 128; bit++)
					if (rand() % 2)
						a.a[bit / 8] |= 0x80 >> (bit % 8);
			} else {
				a = random_dest(rand() % 2, &base);
			}
			addr_format(&a, dst, sizeof(dst));
			policy_decide(&want, &a, pkt.l4, port, &expect);
			/* Twice: the first run takes the decision, the second uses the cached one. */
			for (int k = 0; k < 2; k++) {
				dest_get(dst, &before);
				ret = run_frame(&pkt, &len, 0);
				dest_get(dst, &after);
				total++;
				if (ret != (expect.verdict == V(DENY) ? DROP : PASS) ||
				    after.packets[expect.verdict] != before.packets[expect.verdict] + 1) {
					if (mismatches++ < 5)
						fprintf(stderr, "step %d: %s proto %u port %d: ret %d, want %s\n",
							step, dst, pkt.l4, port, ret,
							verdict_name(expect.verdict));
				}
			}
		}
		policy_free(&want);
	}
	CHECK(steps == 80, "80 override changes applied (%u)", steps);
	CHECK(in_place == steps, "each changed the active trie in place (%u of %u)", in_place, steps);
	CHECK(total == 2 * 300 * 80, "%u packets decided", total);
	CHECK(mismatches == 0, "%u of %u packets differ from the reference", mismatches, total);
out:
	policy_live_free(&live);
	overrides_free(&list);
	policy_free(&base);
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", state);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", state);
}

/* --- events -------------------------------------------------------------------------- */

#define EVENTS_SEEN_MAX 64

/* The records one consume of the ring buffer brought (beyond EVENTS_SEEN_MAX: counted). */
struct events_seen {
	struct sluice_event ev[EVENTS_SEEN_MAX];
	size_t n, total;
};

static int collect_event(void *ctx, void *data, size_t size)
{
	struct events_seen *seen = ctx;

	if (size >= sizeof(struct sluice_event) && seen->n < EVENTS_SEEN_MAX)
		memcpy(&seen->ev[seen->n++], data, sizeof(struct sluice_event));
	seen->total++;
	return 0;
}

static struct ring_buffer *events_rb;
static struct events_seen seen;

/* Empty the ring buffer and forget what it held. */
static void events_reset(void)
{
	ring_buffer__consume(events_rb);
	memset(&seen, 0, sizeof(seen));
}

/* How many records of type (to dst, when given) the last consume brought; *last: the last. */
static size_t events_of(__u8 type, const char *dst, struct sluice_event *last)
{
	struct sluice_addr a = {};
	size_t n = 0;

	if (dst && addr_parse(dst, &a))
		return 0;
	for (size_t i = 0; i < seen.n; i++) {
		if (seen.ev[i].type != type || (dst && memcmp(&seen.ev[i].dst, &a, sizeof(a))))
			continue;
		n++;
		if (last)
			*last = seen.ev[i];
	}
	return n;
}

static void run_times(const struct pkt_spec *s, unsigned times)
{
	unsigned len;

	for (unsigned i = 0; i < times; i++)
		run_frame(s, &len, 0);
}

/* Pretend the destination's last event of type was long ago: the next one is due. */
static void limiter_expire(const char *dst, unsigned type)
{
	struct sluice_dest_stats st;
	struct sluice_addr a;

	if (addr_parse(dst, &a) || bpf_map_lookup_elem(dp.dests_fd, &a, &st))
		return;
	st.event_last_ns[type] = 1;
	bpf_map_update_elem(dp.dests_fd, &a, &st, BPF_EXIST);
}

static __u64 lost_of(__u32 type)
{
	__u64 values[1024] = {}, sum = 0;
	int ncpus = libbpf_num_possible_cpus();

	if (ncpus <= 0 || ncpus > 1024 || bpf_map_lookup_elem(dp.event_lost_fd, &type, values))
		return 0;
	for (int i = 0; i < ncpus; i++)
		sum += values[i];
	return sum;
}

static void events_config(__u64 interval_ns, __u32 off)
{
	struct sluice_event_config c = { .interval_ns = interval_ns, .off = off };
	__u32 zero = 0;

	bpf_map_update_elem(dp.event_config_fd, &zero, &c, BPF_ANY);
}

static void test_events(void)
{
	const struct pkt_spec denied = { .dst = "203.0.113.201" };
	const struct pkt_spec allowed = { .dst = "198.51.100.21" };
	const struct pkt_spec truncated = { .dst = "198.51.100.14", .ipv4_options = 4,
					    .truncate = 14 + 24 };
	struct sluice_event_limit lim;
	struct sluice_dest_stats st;
	struct sluice_event e = {};
	__u32 index;

	events_rb = ring_buffer__new(dp.events_fd, collect_event, &seen, NULL);
	CHECK(events_rb != NULL, "ring buffer: %s", strerror(errno));
	if (!events_rb)
		return;
	CHECK(install_policy("enforce") == 0, "install");
	events_config(0, 0); /* the default interval, one second: the test takes less */
	events_reset();

	/* A first denied packet: new_destination and deny; four repeats are held back. */
	run_times(&denied, 5);
	ring_buffer__consume(events_rb);
	CHECK_EQ_U64(events_of(SLUICE_EVENT_NEW_DESTINATION, denied.dst, &e), 1,
		     "new_destination for a first contact");
	CHECK_EQ_U64(e.verdict, SLUICE_VERDICT_DENY, "new_destination carries the verdict");
	CHECK_EQ_U64(events_of(SLUICE_EVENT_DENY, denied.dst, &e), 1, "one deny event for five");
	CHECK_EQ_U64(e.suppressed, 0, "the first deny event has nothing suppressed");
	CHECK_EQ_U64(e.packets, 1, "deny event packets");
	CHECK_EQ_U64(e.rule_id, 2, "deny event rule (deny 203.0.113.0/24, the third rule)");
	CHECK(e.flags & SLUICE_EVENT_F_DST, "deny event has addresses");
	CHECK(e.flags & SLUICE_EVENT_F_PORTS, "deny event has ports");
	CHECK_EQ_U64(e.dport[0] << 8 | e.dport[1], 53, "deny event destination port");
	CHECK_EQ_U64(seen.total, 2, "records for five packets to one new destination");
	CHECK(dest_get(denied.dst, &st), "entry");
	CHECK_EQ_U64(st.event_suppressed[SLUICE_EVENT_DENY], 4, "repeats held back");

	/* Past the interval, the next event carries the repeats. */
	limiter_expire(denied.dst, SLUICE_EVENT_DENY);
	events_reset();
	run_times(&denied, 3);
	ring_buffer__consume(events_rb);
	CHECK_EQ_U64(events_of(SLUICE_EVENT_DENY, denied.dst, &e), 1,
		     "one deny event past the interval");
	CHECK_EQ_U64(e.suppressed, 4, "it reports the four repeats");
	CHECK_EQ_U64(events_of(SLUICE_EVENT_NEW_DESTINATION, NULL, NULL), 0,
		     "no new_destination for a known destination");
	dest_get(denied.dst, &st);
	CHECK_EQ_U64(st.event_suppressed[SLUICE_EVENT_DENY], 2, "the two repeats after it wait");

	/* Allowed: an event for the first contact only. */
	events_reset();
	run_times(&allowed, 3);
	ring_buffer__consume(events_rb);
	CHECK_EQ_U64(seen.total, 1, "allowed traffic: one record");
	CHECK_EQ_U64(events_of(SLUICE_EVENT_NEW_DESTINATION, allowed.dst, &e), 1,
		     "allowed first contact: new_destination");
	CHECK_EQ_U64(e.verdict, SLUICE_VERDICT_ALLOW, "with the allow verdict");

	/* A frame without a destination: the (type, reason) limiter. */
	index = SLUICE_EVENT_LIMIT_INDEX(SLUICE_EVENT_DENY, SLUICE_REASON_TRUNCATED);
	lim = (struct sluice_event_limit){};
	bpf_map_update_elem(dp.event_limits_fd, &index, &lim, BPF_ANY);
	events_reset();
	run_times(&truncated, 3);
	ring_buffer__consume(events_rb);
	CHECK_EQ_U64(events_of(SLUICE_EVENT_DENY, NULL, &e), 1, "truncated frames: one deny event");
	CHECK_EQ_U64(e.reason, SLUICE_REASON_TRUNCATED, "with its reason");
	CHECK(!(e.flags & SLUICE_EVENT_F_DST), "and no addresses");
	bpf_map_lookup_elem(dp.event_limits_fd, &index, &lim);
	CHECK_EQ_U64(lim.suppressed, 2, "the shared limiter holds the repeats");

	/* Audit mode: audit events, rate limited apart from deny. */
	CHECK(install_policy("audit") == 0, "install audit");
	events_reset();
	run_times(&denied, 2);
	ring_buffer__consume(events_rb);
	CHECK_EQ_U64(events_of(SLUICE_EVENT_AUDIT, denied.dst, &e), 1,
		     "audit mode: one audit event");
	CHECK_EQ_U64(events_of(SLUICE_EVENT_DENY, NULL, NULL), 0, "and no deny event");
	dest_get(denied.dst, &st);
	CHECK_EQ_U64(st.event_suppressed[SLUICE_EVENT_AUDIT], 1, "audit repeats held back apart");
	CHECK(install_policy("enforce") == 0, "install");

	/* Events off: nothing emitted, nothing counted. */
	events_config(0, 1);
	limiter_expire(denied.dst, SLUICE_EVENT_DENY);
	events_reset();
	run_times(&denied, 2);
	ring_buffer__consume(events_rb);
	CHECK_EQ_U64(seen.total, 0, "events off: no records");
	events_config(0, 0);

	/*
	 * A full ring buffer: the event is counted lost and the repeats it would have
	 * reported go back to the limiter, for the next event. Fill it with new destinations.
	 */
	__u64 lost_before;
	__u64 new_lost_before = lost_of(SLUICE_EVENT_NEW_DESTINATION);
	char dst[32];

	events_reset();
	for (unsigned i = 0; i < 65536 && lost_of(SLUICE_EVENT_NEW_DESTINATION) == new_lost_before;
	     i++) {
		struct pkt_spec fill = { .dst = dst };

		snprintf(dst, sizeof(dst), "2001:db8:d:1::%x", i + 1);
		run_times(&fill, 1);
	}
	CHECK(lost_of(SLUICE_EVENT_NEW_DESTINATION) > new_lost_before, "the ring buffer filled up");
	dest_get(denied.dst, &st);
	__u64 waiting = st.event_suppressed[SLUICE_EVENT_DENY];

	lost_before = lost_of(SLUICE_EVENT_DENY); /* the last fill packet's deny was lost too */

	limiter_expire(denied.dst, SLUICE_EVENT_DENY);
	run_times(&denied, 1);
	CHECK_EQ_U64(lost_of(SLUICE_EVENT_DENY) - lost_before, 1, "the deny event is counted lost");
	dest_get(denied.dst, &st);
	CHECK_EQ_U64(st.event_suppressed[SLUICE_EVENT_DENY], waiting,
		     "the repeats it would have reported wait for the next event");
	events_reset();
	limiter_expire(denied.dst, SLUICE_EVENT_DENY);
	run_times(&denied, 1);
	ring_buffer__consume(events_rb);
	CHECK_EQ_U64(events_of(SLUICE_EVENT_DENY, denied.dst, &e), 1, "room again: the deny event");
	CHECK_EQ_U64(e.suppressed, waiting, "carries the repeats that waited");
	ring_buffer__free(events_rb);
}

int main(void)
{
	log_init(getenv("SLUICE_TEST_VERBOSE") ? LOG_DEBUG : LOG_WARN);
	if (datapath_load(&dp, NULL)) {
		fprintf(stderr, "cannot load the datapath (root needed)\n");
		return 1;
	}
	maps = (struct policy_maps){ dp.policy_fd, dp.config_fd, dp.ports_fd };
	test_no_policy();
	test_frames();
	test_policy_switch();
	test_port_rules();
	test_random_against_reference();
	test_overrides_in_place();
	test_events();
	datapath_close(&dp);
	return check_summary();
}

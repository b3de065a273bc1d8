// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The tc egress program on crafted frames (BPF_PROG_TEST_RUN): each case is data — a
 * frame, the policy in force, and the verdict, reason and counters it must produce.
 * Then the program is held to the reference decision on random policies and packets.
 * The XDP program runs the same tables and the same random packets: one library, one
 * verdict, whichever hook decides. Its packets are forwarded ones: main gives the test's
 * namespace forwarding and routes, and checks that packets for the node itself pass XDP
 * unpoliced.
 */
#define _GNU_SOURCE /* unshare */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/pkt_cls.h>

#include "addr.h"
#include "check.h"
#include "datapath.h"
#include "dest_scan.h"
#include "local_addrs.h"
#include "log.h"
#include "output.h"
#include "packets.h"
#include "policy.h"
#include "budget.h"
#include "policy_apply.h"
#include "policy_kernel.h"
#include "users.h"

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
		ret = policy_install(&maps, &cp, gen, NULL);
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

/* Run one frame through a program; returns its return code, or -1000 on a harness error. */
static int run_prog(int prog_fd, const struct pkt_spec *s, unsigned *len, unsigned gso_segs)
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
	err = bpf_prog_test_run_opts(prog_fd, &opts);
	if (err) {
		fprintf(stderr, "BPF_PROG_TEST_RUN: %s\n", strerror(-err));
		return -1000;
	}
	return (int)opts.retval;
}

static int run_frame(const struct pkt_spec *s, unsigned *len, unsigned gso_segs)
{
	return run_prog(dp.egress_prog_fd, s, len, gso_segs);
}

/* A program that decides packets: how it says pass and drop, and its hook in the totals. */
struct decider {
	const char *name;
	const int *prog_fd;
	__u8 hook;
	int pass, drop;
};

static const struct decider tc_egress = { "tc", &dp.egress_prog_fd, SLUICE_HOOK_TC_EGRESS, PASS,
					  DROP };
static const struct decider xdp = { "xdp", &dp.xdp_prog_fd, SLUICE_HOOK_XDP, XDP_PASS, XDP_DROP };

/* Run one frame through a decider; PASS or DROP whichever hook it is, else -1000 - code. */
static int run_on(const struct decider *p, const struct pkt_spec *s, unsigned *len,
		  unsigned gso_segs)
{
	int ret = run_prog(*p->prog_fd, s, len, gso_segs);

	if (ret == p->pass)
		return PASS;
	if (ret == p->drop)
		return DROP;
	return -1000 - ret;
}

static bool dest_get(const char *dst, struct sluice_dest_stats *out)
{
	struct sluice_addr a;

	memset(out, 0, sizeof(*out));
	return dst && addr_parse(dst, &a) == 0 && bpf_map_lookup_elem(dp.dests_fd, &a, out) == 0;
}

static struct sluice_counter totals_of(__u8 hook, __u8 verdict, __u8 reason)
{
	struct sluice_counter sum = {};
	struct total_row *rows;
	size_t n;

	if (read_totals(dp.totals_fd, dp.ifaces_fd, &rows, &n))
		return sum;
	for (size_t i = 0; i < n; i++) {
		if (rows[i].verdict == verdict && rows[i].reason == reason &&
		    rows[i].hook == hook) {
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

static void test_frames(const struct decider *p)
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

		/* XDP sees wire packets: GSO super-packets exist only above it. */
		if (c->gso_segs && p->hook == SLUICE_HOOK_XDP)
			continue;
		if (!mode || strcmp(mode, c->mode) != 0) {
			mode = c->mode;
			if (install_policy(mode)) {
				CHECK(0, "cannot install the %s policy", mode);
				return;
			}
		}
		dest_get(c->pkt.dst, &before);
		tot_before = totals_of(p->hook, c->verdict, c->reason);
		ret = run_on(p, &c->pkt, &len, c->gso_segs);
		CHECK(ret == c->ret, "%s %s: return code %d, want %d", p->name, c->name, ret, c->ret);

		/* Wire bytes: every further segment repeats Ethernet + IPv4 + TCP headers. */
		want_bytes = len + (segs - 1) * (14 + 20 + 20);
		tot_after = totals_of(p->hook, c->verdict, c->reason);
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

/* Port ranges in the bank in force (the policy's port classes, flattened). */
static size_t port_ranges(void)
{
	struct policy_view v;
	size_t n;

	if (policy_view_open(dp.policy_fd, dp.config_fd, &v))
		return 0;
	n = v.nports;
	policy_view_close(&v);
	return n;
}

/* Port rules, one per address of 2001:db8:1::/112; each one its own port class. */
#define MANY_PORT_RULES 1000

/*
 * Each install writes its own port classes into the bank it switches to, so nothing of a
 * replaced policy's classes stays: installs in a row do not fill anything up, and the
 * classes decide by port right after each switch. The big policy's ports fill thousands of
 * ranges.
 */
static void test_port_classes_replaced(void)
{
	static const char small[] = "default deny\n"
				    "allow 198.51.100.0/24 tcp 443 name web\n";
	size_t len = 64 * MANY_PORT_RULES + 64, at = 0, small_ranges = 0;
	char *big = malloc(len);
	struct pkt_spec big_web = { .dst = "2001:db8:1::2a", .l4 = IPPROTO_TCP, .dport = 8050 };
	struct pkt_spec big_ssh = { .dst = "2001:db8:1::2a", .l4 = IPPROTO_TCP, .dport = 22 };
	unsigned plen;

	if (!big) {
		CHECK(0, "out of memory");
		return;
	}
	at += snprintf(big + at, len - at, "default deny\n");
	for (int i = 1; i <= MANY_PORT_RULES; i++)
		at += snprintf(big + at, len - at, "allow 2001:db8:1::%x tcp 443,8000-8100\n", i);
	for (int round = 0; round < 2; round++) {
		CHECK(install_text(small) == 0, "install the small port policy (round %d)", round);
		if (round == 0)
			small_ranges = port_ranges();
		CHECK(small_ranges > 0, "the small policy has port ranges");
		CHECK_EQ_U64(port_ranges(), small_ranges, "port ranges of the small policy");
		CHECK(install_text(big) == 0, "install the big port policy (round %d)", round);
		CHECK(port_ranges() > 3 * MANY_PORT_RULES, "the big policy fills %zu port ranges",
		      port_ranges());
		CHECK(run_frame(&big_web, &plen, 0) == PASS, "the big policy passes tcp 8050");
		CHECK(run_frame(&big_ssh, &plen, 0) == DROP, "the big policy drops tcp 22");
		CHECK(install_text(small) == 0, "install the small port policy again (round %d)",
		      round);
		CHECK_EQ_U64(port_ranges(), small_ranges, "port ranges after the big policy left");
	}
	/* And the small policy decides by port, from the classes left in place. */
	struct pkt_spec web = { .dst = "198.51.100.7", .l4 = IPPROTO_TCP, .dport = 443 };
	struct pkt_spec ssh = { .dst = "198.51.100.7", .l4 = IPPROTO_TCP, .dport = 22 };

	CHECK(run_frame(&web, &plen, 0) == PASS, "port 443 passes after the replacements");
	CHECK(run_frame(&ssh, &plen, 0) == DROP, "port 22 drops after the replacements");
	free(big);
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
	unsigned mismatches = 0, total = 0, xdp_mismatches = 0;

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
		    policy_install(&maps, &cp, gen, NULL)) {
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
			total++;
			/* The verdict shows in the return code and in which counter moved. */
			for (int h = 0; h < 2; h++) {
				const struct decider *prog = h ? &xdp : &tc_egress;

				dest_get(dst, &before);
				ret = run_on(prog, &pkt, &len, 0);
				dest_get(dst, &after);
				if (ret == (want.verdict == V(DENY) ? DROP : PASS) &&
				    after.packets[want.verdict] == before.packets[want.verdict] + 1)
					continue;
				if ((h ? xdp_mismatches++ : mismatches++) < 5)
					fprintf(stderr,
						"%s mismatch for %s proto %u port %d: ret %d, "
						"want %s rule %u\n",
						prog->name, dst, pkt.l4, port, ret,
						verdict_name(want.verdict), want.rule_id);
			}
		}
		policy_free(&p);
	}
	CHECK(total == 100000, "%u random packets", total);
	CHECK(mismatches == 0, "tc: %u of %u random packets differ from the reference", mismatches,
	      total);
	CHECK(xdp_mismatches == 0, "xdp: %u of %u random packets differ from the reference",
	      xdp_mismatches, total);
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

/*
 * The epoch of the policy in force: a full install moves it on (the per-rule counters change
 * halves), a change from the daemon's live policy keeps it.
 */
static __u8 active_epoch_flag(void)
{
	__u32 generation;
	__u8 flags = 0;

	read_policy_state(dp.policy_fd, dp.config_fd, &generation, &flags);
	return flags & SLUICE_POLICY_F_EPOCH;
}

/*
 * Overrides changed in place (sluice allow/deny/remove with the daemon running): after each
 * of many random adds and removes, the kernel decides like the reference decision of the
 * base policy plus the overrides applied from scratch — and each was switched in from the
 * daemon's live policy, not a full install.
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
	__u8 epoch = active_epoch_flag();

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
		in_place += active_epoch_flag() == epoch && res.generation == gen + 1 && res.changed;

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
	CHECK(in_place == steps, "each was a change from the live policy, not a full install (%u of %u)", in_place, steps);
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

/* --- packet shapes: docs/design.md, "Packet shapes: the verdict and reason each one gets" */

/* The rules of the shape table; the comment is each rule's id (its index). */
static const char shape_rules[] = "allow 198.51.100.0/24 name v4-allow\n"      /* 0 */
				  "deny 198.51.100.128/25 name v4-deny\n"      /* 1 */
				  "allow 203.0.113.0/24 tcp 443 name v4-web\n" /* 2 */
				  "allow 203.0.113.0/24 udp 53 name v4-dns\n"  /* 3 */
				  "allow 192.0.2.128/25 name v4-mixed\n"       /* 4 */
				  "deny 192.0.2.128/25 tcp 22 name v4-no-ssh\n" /* 5 */
				  "allow 2001:db8:a::/48 name v6-allow\n"      /* 6 */
				  "deny 2001:db8:a:bad::/64 name v6-deny\n"    /* 7 */
				  "allow 2001:db8:c::/48 tcp 443 name v6-web\n" /* 8 */
				  "allow 2001:db8:e::/48 name v6-mixed\n"      /* 9 */
				  "deny 2001:db8:e::/48 tcp 22 name v6-no-ssh\n"; /* 10 */

/* The policy around shape_rules: default deny, and one switch turned per variant. */
enum shape_policy { SP_BASE, SP_NO_ESSENTIAL, SP_NO_REPLIES, SP_AUDIT };

static int install_shape_policy(enum shape_policy v)
{
	char text[2048];

	snprintf(text, sizeof(text), "mode %s\ndefault deny\nessential %s\nreplies %s\n%s",
		 v == SP_AUDIT ? "audit" : "enforce", v == SP_NO_ESSENTIAL ? "off" : "on",
		 v == SP_NO_REPLIES ? "off" : "on", shape_rules);
	return install_text(text);
}

/* BPF_PROG_TEST_RUN takes at most a page of skb data, less head and tail room. */
#define TEST_RUN_FRAME_MAX 3500

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10
#define TCP IPPROTO_TCP
#define UDP IPPROTO_UDP
#define HBH IPPROTO_HOPOPTS
#define RTG IPPROTO_ROUTING
#define FRG IPPROTO_FRAGMENT
#define DST IPPROTO_DSTOPTS
#define AH IPPROTO_AH
#define NONE_RULE SLUICE_RULE_NONE
#define DEF_RULE SLUICE_RULE_DEFAULT

/* Clock of the flow table (bpf_ktime_get_coarse_ns). */
static __u64 coarse_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (__u64)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static int flow_key_make(struct sluice_flow_key *k, __u8 proto, const char *local, __u16 lport,
			 const char *remote, __u16 rport)
{
	memset(k, 0, sizeof(*k));
	if (addr_parse(local, &k->local) || addr_parse(remote, &k->remote))
		return -EINVAL;
	*(__be16 *)k->local_port = htons(lport);
	*(__be16 *)k->remote_port = htons(rport);
	k->proto = proto;
	return 0;
}

/* Record a flow directly (as the ingress program would) that ends at expires_ns. */
static int flow_put(__u8 proto, const char *local, __u16 lport, const char *remote, __u16 rport,
		    __u64 expires_ns)
{
	struct sluice_flow f = { .expires_ns = expires_ns };
	struct sluice_flow_key k;

	if (flow_key_make(&k, proto, local, lport, remote, rport))
		return -EINVAL;
	return bpf_map_update_elem(dp.flows_fd, &k, &f, BPF_ANY) ? -errno : 0;
}

static bool flow_get(__u8 proto, const char *local, __u16 lport, const char *remote, __u16 rport,
		     struct sluice_flow *f)
{
	struct sluice_flow_key k;

	memset(f, 0, sizeof(*f));
	return flow_key_make(&k, proto, local, lport, remote, rport) == 0 &&
	       bpf_map_lookup_elem(dp.flows_fd, &k, f) == 0;
}

static bool frag_get(const struct pkt_spec *s, struct sluice_frag_entry *e)
{
	bool v6 = strchr(s->dst, ':');
	struct sluice_frag_key k = { .id = s->frag_id };

	if (addr_parse(s->src ? s->src : v6 ? PKT_SRC6 : PKT_SRC4, &k.src) ||
	    addr_parse(s->dst, &k.dst))
		return false;
	/* IPv6: the fragment header's next header, i.e. what follows it in the spec. */
	k.proto = s->l4 ? s->l4 : UDP;
	for (int i = 0; v6 && i + 1 < s->next; i++)
		if (s->ext[i] == FRG)
			k.proto = s->ext[i + 1];
	return bpf_map_lookup_elem(dp.frags_fd, &k, e) == 0;
}

struct shape_case {
	const char *name;
	enum shape_policy policy;
	struct pkt_spec pkt;
	int ret;
	__u8 verdict, reason;
	bool counted;    /* an IP destination was decided: its counters move */
	__u32 frag_rule; /* first fragments: the rule recorded for the later ones */
};

/* Quoted packets of ICMP errors: they came from the error's destination to the node. */
static const struct pkt_quote q_dns = { "203.0.113.5", PKT_SRC4, UDP, 53, PKT_SPORT };
static const struct pkt_quote q_udp_5000 = { "203.0.113.5", PKT_SRC4, UDP, 5000, PKT_SPORT };
static const struct pkt_quote q_web = { "203.0.113.5", PKT_SRC4, TCP, 443, PKT_SPORT };
static const struct pkt_quote q_dns_cut = { "203.0.113.5", PKT_SRC4, UDP, 53, PKT_SPORT, 12 };
static const struct pkt_quote q_dns_noports = { "203.0.113.5", PKT_SRC4, UDP, 53, PKT_SPORT, 22 };
static const struct pkt_quote q6_web = { "2001:db8:c::1", PKT_SRC6, TCP, 443, PKT_SPORT };
static const struct pkt_quote q6_ssh = { "2001:db8:c::1", PKT_SRC6, TCP, 22, PKT_SPORT };
static const struct pkt_quote q_reply = { "203.0.113.9", PKT_SRC4, TCP, 50000, 22 };
static const struct pkt_quote q6_reply = { "2001:db8:c::9", PKT_SRC6, TCP, 50000, 22 };

/* An 8-header chain, as long as the walk goes. */
#define CHAIN8 { HBH, DST, RTG, DST, DST, DST, DST, DST }, .next = 8
#define CHAIN9 { HBH, DST, RTG, DST, DST, DST, DST, DST, DST }, .next = 9

static const struct shape_case shape_cases[] = {
	/* IPv6 extension headers; 2001:db8:c::/48 allows tcp 443 only (a port class). */
	{ "v6 ext: none, tcp 443", SP_BASE, { .dst = "2001:db8:c::1", .l4 = TCP }, PASS, V(ALLOW),
	  R(RULE), true },
	{ "v6 ext: HBH, tcp 443", SP_BASE, { .dst = "2001:db8:c::1", .l4 = TCP, .ext = { HBH },
	  .next = 1 },
	  PASS, V(ALLOW), R(RULE), true },
	{ "v6 ext: HBH dstopts, tcp 443", SP_BASE,
	  { .dst = "2001:db8:c::1", .l4 = TCP, .ext = { HBH, DST }, .next = 2 }, PASS, V(ALLOW),
	  R(RULE), true },
	{ "v6 ext: HBH routing dstopts, tcp 443", SP_BASE,
	  { .dst = "2001:db8:c::1", .l4 = TCP, .ext = { HBH, RTG, DST }, .next = 3 }, PASS,
	  V(ALLOW), R(RULE), true },
	{ "v6 ext: 8 headers, tcp 443", SP_BASE, { .dst = "2001:db8:c::1", .l4 = TCP,
	  .ext = CHAIN8 },
	  PASS, V(ALLOW), R(RULE), true },
	{ "v6 ext: 8 headers, tcp 22", SP_BASE,
	  { .dst = "2001:db8:c::1", .l4 = TCP, .dport = 22, .ext = CHAIN8 }, DROP, V(DENY),
	  R(DEFAULT), true },
	{ "v6 ext: 9 headers (over-long)", SP_BASE, { .dst = "2001:db8:c::1", .l4 = TCP,
	  .ext = CHAIN9 },
	  DROP, V(DENY), R(UNPARSEABLE), false },
	{ "v6 ext: HBH not first", SP_BASE,
	  { .dst = "2001:db8:c::1", .l4 = TCP, .ext = { DST, HBH }, .next = 2 }, DROP, V(DENY),
	  R(UNPARSEABLE), false },
	{ "v6 ext: AH (4-byte units), tcp 443", SP_BASE,
	  { .dst = "2001:db8:c::1", .l4 = TCP, .ext = { AH }, .next = 1 }, PASS, V(ALLOW), R(RULE),
	  true },
	{ "v6 ext: HBH AH dstopts, tcp 22", SP_BASE,
	  { .dst = "2001:db8:c::1", .l4 = TCP, .dport = 22, .ext = { HBH, AH, DST }, .next = 3 },
	  DROP, V(DENY), R(DEFAULT), true },
	{ "v6 ext: two 1 KiB dstopts, tcp 443 beyond 2 KiB", SP_BASE,
	  { .dst = "2001:db8:c::1", .l4 = TCP, .ext = { DST, DST }, .next = 2, .ext_bytes = 1024 },
	  PASS, V(ALLOW), R(RULE), true },
	{ "v6: next header 135, forged tcp 443, port class", SP_BASE,
	  { .dst = "2001:db8:c::1", .l4 = 135, .body = TCP }, DROP, V(DENY), R(UNPARSEABLE), true },
	{ "v6: HBH then next header 253, forged tcp 443, port class", SP_BASE,
	  { .dst = "2001:db8:c::1", .l4 = 253, .body = TCP, .ext = { HBH }, .next = 1 }, DROP,
	  V(DENY), R(UNPARSEABLE), true },
	{ "v6: next header 253, no port class, allowed", SP_BASE,
	  { .dst = "2001:db8:a::1", .l4 = 253, .body = TCP }, PASS, V(ALLOW), R(RULE), true },
	{ "v6: next header 253, no port class, denied", SP_BASE,
	  { .dst = "2001:db8:a:bad::1", .l4 = 253, .body = TCP }, DROP, V(DENY), R(RULE), true },
	{ "v6: protocol 200 is a protocol, port class", SP_BASE,
	  { .dst = "2001:db8:c::1", .l4 = 200, .body = TCP }, DROP, V(DENY), R(DEFAULT), true },
	{ "v6 ext: chain cut by the payload length", SP_BASE,
	  { .dst = "2001:db8:c::1", .l4 = TCP, .ext = { HBH, DST }, .next = 2, .ext_bytes = 64,
	    .ip_len = 80 },
	  DROP, V(DENY), R(TRUNCATED), false },
	{ "v6 ext: frame cut inside the chain", SP_BASE,
	  { .dst = "2001:db8:c::1", .l4 = TCP, .ext = { HBH, DST }, .next = 2,
	  .truncate = 14 + 40 + 12 },
	  DROP, V(DENY), R(TRUNCATED), false },
	{ "v6: payload length beyond the frame", SP_BASE,
	  { .dst = "2001:db8:c::1", .l4 = TCP, .ip_len = 2000 }, DROP, V(DENY), R(TRUNCATED),
	  false },

	/* IPv4 header. */
	{ "v4: IHL below 5", SP_BASE, { .dst = "203.0.113.5", .ihl_override = 4 }, DROP, V(DENY),
	  R(UNPARSEABLE), false },
	{ "v4: total length beyond the frame", SP_BASE, { .dst = "203.0.113.5", .ip_len = 1500 },
	  DROP, V(DENY), R(TRUNCATED), false },
	{ "v4: total length below the header", SP_BASE, { .dst = "203.0.113.5", .ip_len = 12 },
	  DROP, V(DENY), R(UNPARSEABLE), false },
	{ "v4: options, then tcp 443 to a port class", SP_BASE,
	  { .dst = "203.0.113.5", .l4 = TCP, .ipv4_options = 4 }, PASS, V(ALLOW), R(RULE), true },
	{ "v4: bytes past the total length are no transport header", SP_BASE,
	  { .dst = "203.0.113.5", .ip_len = 22 }, DROP, V(DENY), R(TRUNCATED), true },

	/* IPv4 fragments: 203.0.113.0/24 allows tcp 443 and udp 53 (a port class). */
	{ "v4 frag: first, udp 53", SP_BASE,
	  { .dst = "203.0.113.5", .payload = 64, .more_frags = true, .frag_id = 100 }, PASS,
	  V(ALLOW), R(RULE), true, 3 },
	{ "v4 frag: middle follows the first", SP_BASE,
	  { .dst = "203.0.113.5", .frag_off = 9, .more_frags = true, .frag_id = 100 }, PASS,
	  V(ALLOW), R(RULE), true },
	{ "v4 frag: last follows the first", SP_BASE,
	  { .dst = "203.0.113.5", .frag_off = 18, .frag_id = 100 }, PASS, V(ALLOW), R(RULE), true },
	{ "v4 frag: first, tcp 22", SP_BASE,
	  { .dst = "203.0.113.5", .l4 = TCP, .dport = 22, .payload = 64, .more_frags = true,
	    .frag_id = 101 },
	  DROP, V(DENY), R(DEFAULT), true, DEF_RULE },
	{ "v4 frag: later follows the denied first", SP_BASE,
	  { .dst = "203.0.113.5", .l4 = TCP, .frag_off = 9, .frag_id = 101 }, DROP, V(DENY),
	  R(DEFAULT), true },
	{ "v4 frag: orphan, port class without a port-less allow", SP_BASE,
	  { .dst = "203.0.113.5", .frag_off = 9, .frag_id = 999 }, DROP, V(DENY), R(FRAGMENT),
	  true },
	{ "v4 frag: orphan, allowed destination", SP_BASE,
	  { .dst = "198.51.100.5", .frag_off = 9, .frag_id = 999 }, PASS, V(ALLOW), R(RULE), true },
	{ "v4 frag: orphan, denied destination", SP_BASE,
	  { .dst = "198.51.100.200", .frag_off = 9, .frag_id = 999 }, DROP, V(DENY), R(FRAGMENT),
	  true },
	{ "v4 frag: orphan tcp, class allows tcp without port", SP_BASE,
	  { .dst = "192.0.2.200", .l4 = TCP, .frag_off = 9, .frag_id = 999 }, PASS, V(ALLOW),
	  R(RULE), true },
	{ "v4 frag: tiny first fragment, no room for ports", SP_BASE,
	  { .dst = "203.0.113.5", .more_frags = true, .frag_id = 102, .ip_len = 22 }, DROP, V(DENY),
	  R(FRAGMENT), true, NONE_RULE },
	{ "v4 frag: later follows the tiny first", SP_BASE,
	  { .dst = "203.0.113.5", .frag_off = 1, .frag_id = 102 }, DROP, V(DENY), R(FRAGMENT),
	  true },
	{ "v4 frag: same id, other protocol: an orphan", SP_BASE,
	  { .dst = "203.0.113.5", .l4 = TCP, .frag_off = 9, .frag_id = 100 }, DROP, V(DENY),
	  R(FRAGMENT), true },
	{ "v4 frag: audit, orphan denied", SP_AUDIT,
	  { .dst = "198.51.100.200", .frag_off = 9, .frag_id = 998 }, PASS, V(AUDIT), R(FRAGMENT),
	  true },

	/* IPv6 fragments: 2001:db8:c::/48 allows tcp 443 only; 2001:db8:e::/48 all but tcp 22. */
	{ "v6 frag: first, tcp 443", SP_BASE,
	  { .dst = "2001:db8:c::1", .l4 = TCP, .payload = 64, .ext = { FRG }, .next = 1,
	    .more_frags = true, .frag_id = 7 },
	  PASS, V(ALLOW), R(RULE), true, 8 },
	{ "v6 frag: middle follows the first", SP_BASE,
	  { .dst = "2001:db8:c::1", .l4 = TCP, .ext = { FRG }, .next = 1, .frag_off = 10,
	    .more_frags = true, .frag_id = 7 },
	  PASS, V(ALLOW), R(RULE), true },
	{ "v6 frag: last follows the first", SP_BASE,
	  { .dst = "2001:db8:c::1", .l4 = TCP, .ext = { FRG }, .next = 1, .frag_off = 20,
	    .frag_id = 7 },
	  PASS, V(ALLOW), R(RULE), true },
	{ "v6 frag: first behind HBH, dstopts after, tcp 22", SP_BASE,
	  { .dst = "2001:db8:c::1", .l4 = TCP, .dport = 22, .ext = { HBH, FRG, DST }, .next = 3,
	    .more_frags = true, .frag_id = 8 },
	  DROP, V(DENY), R(DEFAULT), true, DEF_RULE },
	{ "v6 frag: later (behind HBH) follows it", SP_BASE,
	  { .dst = "2001:db8:c::1", .l4 = DST, .ext = { HBH, FRG }, .next = 2, .frag_off = 10,
	    .frag_id = 8 },
	  DROP, V(DENY), R(DEFAULT), true },
	{ "v6 frag: orphan, port class without a port-less allow", SP_BASE,
	  { .dst = "2001:db8:c::1", .l4 = TCP, .ext = { FRG }, .next = 1, .frag_off = 10,
	    .frag_id = 99 },
	  DROP, V(DENY), R(FRAGMENT), true },
	{ "v6 frag: orphan tcp, class allows tcp without port", SP_BASE,
	  { .dst = "2001:db8:e::1", .l4 = TCP, .ext = { FRG }, .next = 1, .frag_off = 10,
	    .frag_id = 99 },
	  PASS, V(ALLOW), R(RULE), true },
	{ "v6 frag: atomic fragment is a whole packet, tcp 22", SP_BASE,
	  { .dst = "2001:db8:e::1", .l4 = TCP, .dport = 22, .ext = { FRG }, .next = 1,
	  .frag_id = 5 },
	  DROP, V(DENY), R(RULE), true },
	{ "v6 frag: tiny first fragment, no room for ports", SP_BASE,
	  { .dst = "2001:db8:c::1", .l4 = TCP, .ext = { FRG }, .next = 1, .more_frags = true,
	    .frag_id = 9, .ip_len = 8 + 2 },
	  DROP, V(DENY), R(FRAGMENT), true, NONE_RULE },
	{ "v6 frag: orphan with next header 253 is still a fragment", SP_BASE,
	  { .dst = "2001:db8:c::1", .l4 = 253, .ext = { FRG }, .next = 1, .frag_off = 10,
	    .frag_id = 98 },
	  DROP, V(DENY), R(FRAGMENT), true },

	/* Link layer and sizes. */
	/*
	 * BPF_PROG_TEST_RUN cannot set skb vlan metadata (the ctx fields must be zero), so an
	 * offloaded tag is shown the way the program sees it: the frame data carries no tag.
	 */
	{ "VLAN offloaded: no tag in the data, tcp 443", SP_BASE, { .dst = "203.0.113.5",
	  .l4 = TCP },
	  PASS, V(ALLOW), R(RULE), true },
	{ "VLAN in-band, tcp 443", SP_BASE,
	  { .dst = "203.0.113.5", .l4 = TCP, .vlan = { VLAN_Q } }, PASS, V(ALLOW), R(RULE), true },
	{ "VLAN in-band, tcp 22", SP_BASE,
	  { .dst = "203.0.113.5", .l4 = TCP, .dport = 22, .vlan = { VLAN_Q } }, DROP, V(DENY),
	  R(DEFAULT), true },
	{ "QinQ, v6 behind HBH, tcp 443", SP_BASE,
	  { .dst = "2001:db8:c::1", .l4 = TCP, .vlan = { VLAN_AD, VLAN_Q }, .ext = { HBH },
	  .next = 1 },
	  PASS, V(ALLOW), R(RULE), true },
	{ "three tags", SP_BASE, { .dst = "203.0.113.5", .vlan = { VLAN_AD, VLAN_Q, VLAN_Q } },
	  DROP,
	  V(DENY), R(UNPARSEABLE), false },
	/*
	 * A 9000-byte jumbo frame cannot be run: the test runner copies skb data into one page.
	 * The largest frame it takes stands in for it (nothing in the parser depends on the
	 * MTU; the real jumbo frame is an e2e case).
	 */
	{ "large frame (test runner's limit), udp 53", SP_BASE,
	  { .dst = "203.0.113.5", .payload = TEST_RUN_FRAME_MAX - 14 - 20 - 8 }, PASS, V(ALLOW),
	  R(RULE), true },
	{ "frame cut inside the TCP header", SP_BASE,
	  { .dst = "2001:db8:c::1", .l4 = TCP, .truncate = 14 + 40 + 2 }, DROP, V(DENY),
	  R(TRUNCATED), false },

	/* Essential traffic. */
	{ "ARP, essential on", SP_BASE, { .ethertype = ETH_P_ARP }, PASS, V(ESSENTIAL),
	  R(ESSENTIAL),
	  false },
	{ "ARP, essential off", SP_NO_ESSENTIAL, { .ethertype = ETH_P_ARP }, PASS, V(ALLOW),
	  R(NON_IP), false },
	{ "NDP neighbour solicitation", SP_BASE,
	  { .dst = "ff02::1:ff00:2", .l4 = IPPROTO_ICMPV6, .icmp_type = 135, .payload = 16 }, PASS,
	  V(ESSENTIAL), R(ESSENTIAL), true },
	{ "NDP neighbour advertisement", SP_BASE,
	  { .dst = "2001:db8:1::2", .l4 = IPPROTO_ICMPV6, .icmp_type = 136, .payload = 16 }, PASS,
	  V(ESSENTIAL), R(ESSENTIAL), true },
	{ "router solicitation", SP_BASE, { .dst = "ff02::2", .l4 = IPPROTO_ICMPV6,
	  .icmp_type = 133 },
	  PASS, V(ESSENTIAL), R(ESSENTIAL), true },
	{ "MLDv2 report behind a hop-by-hop header", SP_BASE,
	  { .dst = "ff02::16", .l4 = IPPROTO_ICMPV6, .icmp_type = 143, .ext = { HBH }, .next = 1 },
	  PASS, V(ESSENTIAL), R(ESSENTIAL), true },
	{ "DHCPv4 client", SP_BASE,
	  { .dst = "255.255.255.255", .src = "0.0.0.0", .sport = 68, .dport = 67, .payload = 240 },
	  PASS, V(ESSENTIAL), R(ESSENTIAL), true },
	{ "DHCPv6 client", SP_BASE,
	  { .dst = "ff02::1:2", .src = "fe80::1", .sport = 546, .dport = 547, .payload = 40 }, PASS,
	  V(ESSENTIAL), R(ESSENTIAL), true },
	{ "DHCPv4 server ports: not client traffic", SP_BASE,
	  { .dst = "255.255.255.255", .sport = 67, .dport = 68 }, DROP, V(DENY), R(DEFAULT), true },
	{ "DHCPv4 ports in IPv6: not essential", SP_BASE,
	  { .dst = "ff02::1:2", .sport = 68, .dport = 67 }, DROP, V(DENY), R(DEFAULT), true },
	{ "ICMPv6 echo: not essential", SP_BASE,
	  { .dst = "ff02::1", .l4 = IPPROTO_ICMPV6, .icmp_type = 128 }, DROP, V(DENY), R(DEFAULT),
	  true },
	{ "NDP, essential off", SP_NO_ESSENTIAL,
	  { .dst = "ff02::1:ff00:2", .l4 = IPPROTO_ICMPV6, .icmp_type = 135, .payload = 16 }, DROP,
	  V(DENY), R(DEFAULT), true },
	{ "DHCPv4 client, essential off", SP_NO_ESSENTIAL,
	  { .dst = "255.255.255.255", .src = "0.0.0.0", .sport = 68, .dport = 67 }, DROP, V(DENY),
	  R(DEFAULT), true },
	{ "NDP, audit mode", SP_AUDIT,
	  { .dst = "ff02::1:ff00:2", .l4 = IPPROTO_ICMPV6, .icmp_type = 135, .payload = 16 }, PASS,
	  V(ESSENTIAL), R(ESSENTIAL), true },

	/* ICMP errors; the quoted packet came from the error's destination to the node. */
	{ "ICMP port unreachable quoting allowed udp 53", SP_BASE,
	  { .dst = "203.0.113.5", .l4 = IPPROTO_ICMP, .icmp_type = 3, .icmp_code = 3,
	  .quote = &q_dns },
	  PASS, V(ALLOW), R(RULE), true },
	{ "ICMP unreachable quoting denied udp 5000", SP_BASE,
	  { .dst = "203.0.113.5", .l4 = IPPROTO_ICMP, .icmp_type = 3, .quote = &q_udp_5000 }, DROP,
	  V(DENY), R(DEFAULT), true },
	{ "ICMP time exceeded quoting allowed tcp 443", SP_BASE,
	  { .dst = "203.0.113.5", .l4 = IPPROTO_ICMP, .icmp_type = 11, .quote = &q_web }, PASS,
	  V(ALLOW), R(RULE), true },
	{ "ICMP parameter problem, quote cut inside the IP header", SP_BASE,
	  { .dst = "203.0.113.5", .l4 = IPPROTO_ICMP, .icmp_type = 12, .quote = &q_dns_cut }, DROP,
	  V(DENY), R(DEFAULT), true },
	{ "ICMP unreachable, quote cut before the ports", SP_BASE,
	  { .dst = "203.0.113.5", .l4 = IPPROTO_ICMP, .icmp_type = 3, .quote = &q_dns_noports },
	  DROP, V(DENY), R(DEFAULT), true },
	{ "ICMPv6 packet too big quoting allowed tcp 443", SP_BASE,
	  { .dst = "2001:db8:c::1", .l4 = IPPROTO_ICMPV6, .icmp_type = 2, .quote = &q6_web }, PASS,
	  V(ALLOW), R(RULE), true },
	{ "ICMPv6 unreachable quoting denied tcp 22", SP_BASE,
	  { .dst = "2001:db8:c::1", .l4 = IPPROTO_ICMPV6, .icmp_type = 1, .quote = &q6_ssh }, DROP,
	  V(DENY), R(DEFAULT), true },
	{ "ICMP unreachable quoting a reply flow", SP_BASE,
	  { .dst = "203.0.113.9", .l4 = IPPROTO_ICMP, .icmp_type = 3, .quote = &q_reply }, PASS,
	  V(REPLY), R(REPLY), true },
	{ "ICMPv6 unreachable quoting a reply flow", SP_BASE,
	  { .dst = "2001:db8:c::9", .l4 = IPPROTO_ICMPV6, .icmp_type = 1, .quote = &q6_reply },
	  PASS,
	  V(REPLY), R(REPLY), true },
	{ "ICMP error quoting a reply flow, replies off", SP_NO_REPLIES,
	  { .dst = "203.0.113.9", .l4 = IPPROTO_ICMP, .icmp_type = 3, .quote = &q_reply }, DROP,
	  V(DENY), R(DEFAULT), true },
	{ "ICMP error quoting allowed udp 53, essential off", SP_NO_ESSENTIAL,
	  { .dst = "203.0.113.5", .l4 = IPPROTO_ICMP, .icmp_type = 3, .quote = &q_dns }, DROP,
	  V(DENY), R(DEFAULT), true },
	{ "ICMP echo reply: not an error", SP_BASE,
	  { .dst = "203.0.113.5", .l4 = IPPROTO_ICMP, .icmp_type = 0, .quote = &q_dns }, DROP,
	  V(DENY), R(DEFAULT), true },
	{ "ICMP error quoting a denied flow, audit mode", SP_AUDIT,
	  { .dst = "203.0.113.5", .l4 = IPPROTO_ICMP, .icmp_type = 3, .quote = &q_udp_5000 }, PASS,
	  V(AUDIT), R(DEFAULT), true },

	/* Replies: flows recorded by setup_shape_flows(). */
	{ "reply: tcp of a recorded inbound flow", SP_BASE,
	  { .dst = "203.0.113.9", .l4 = TCP, .sport = 22, .dport = 50000 }, PASS, V(REPLY),
	  R(REPLY),
	  true },
	{ "reply: udp of a recorded inbound flow", SP_BASE,
	  { .dst = "203.0.113.9", .sport = 5353, .dport = 50001 }, PASS, V(REPLY), R(REPLY), true },
	{ "reply: v6 tcp of a recorded inbound flow", SP_BASE,
	  { .dst = "2001:db8:c::9", .l4 = TCP, .sport = 22, .dport = 50000 }, PASS, V(REPLY),
	  R(REPLY), true },
	{ "reply: another local port is no reply", SP_BASE,
	  { .dst = "203.0.113.9", .l4 = TCP, .sport = 23, .dport = 50000 }, DROP, V(DENY),
	  R(DEFAULT), true },
	{ "reply: udp on a tcp flow is no reply", SP_BASE,
	  { .dst = "203.0.113.9", .sport = 22, .dport = 50000 }, DROP, V(DENY), R(DEFAULT), true },
	{ "reply: expired flow", SP_BASE,
	  { .dst = "203.0.113.10", .l4 = TCP, .sport = 22, .dport = 50000 }, DROP, V(DENY),
	  R(DEFAULT), true },
	{ "reply: replies off", SP_NO_REPLIES,
	  { .dst = "203.0.113.9", .l4 = TCP, .sport = 22, .dport = 50000 }, DROP, V(DENY),
	  R(DEFAULT), true },
	{ "reply: audit mode", SP_AUDIT,
	  { .dst = "203.0.113.9", .l4 = TCP, .sport = 22, .dport = 50000 }, PASS, V(REPLY),
	  R(REPLY),
	  true },
	{ "reply: audit mode, no flow", SP_AUDIT,
	  { .dst = "203.0.113.9", .l4 = TCP, .sport = 23, .dport = 50000 }, PASS, V(AUDIT),
	  R(DEFAULT), true },
	{ "reply: an allowed packet of a flow stays allow", SP_BASE,
	  { .dst = "198.51.100.9", .l4 = TCP, .sport = 22, .dport = 50000 }, PASS, V(ALLOW),
	  R(RULE),
	  true },
	{ "reply: first fragment of a reply, then its later fragment", SP_BASE,
	  { .dst = "203.0.113.9", .sport = 5353, .dport = 50001, .payload = 64, .more_frags = true,
	    .frag_id = 300 },
	  PASS, V(REPLY), R(REPLY), true, NONE_RULE },
	{ "reply: later fragment follows the reply", SP_BASE,
	  { .dst = "203.0.113.9", .frag_off = 9, .frag_id = 300 }, PASS, V(REPLY), R(REPLY), true },
};

/* The inbound flows the reply cases rely on, as tc ingress would have recorded them. */
static int setup_shape_flows(void)
{
	__u64 live = coarse_now() + 3600ull * 1000000000ull, past = coarse_now() - 1;

	return flow_put(TCP, PKT_SRC4, 22, "203.0.113.9", 50000, live) ||
	       flow_put(UDP, PKT_SRC4, 5353, "203.0.113.9", 50001, live) ||
	       flow_put(TCP, PKT_SRC6, 22, "2001:db8:c::9", 50000, live) ||
	       flow_put(TCP, PKT_SRC4, 22, "203.0.113.10", 50000, past) ||
	       flow_put(TCP, PKT_SRC4, 22, "198.51.100.9", 50000, live);
}

/* Multicast and broadcast go to the node, never forwarded: XDP leaves them to the stack. */
static bool for_the_node(const char *dst)
{
	int first = atoi(dst);

	return strncmp(dst, "ff", 2) == 0 || strcmp(dst, "255.255.255.255") == 0 ||
	       (!strchr(dst, ':') && first >= 224 && first <= 239);
}

static void test_packet_shapes(const struct decider *p)
{
	int policy = -1;

	CHECK(sizeof(shape_cases) / sizeof(shape_cases[0]) >= 40, "at least 40 shapes");
	if (setup_shape_flows()) {
		CHECK(0, "cannot record the test flows");
		return;
	}
	for (size_t i = 0; i < sizeof(shape_cases) / sizeof(shape_cases[0]); i++) {
		const struct shape_case *c = &shape_cases[i];
		struct sluice_dest_stats before, after;
		struct sluice_counter tot_before, tot_after;
		unsigned len;
		int ret;

		/* test_xdp_for_the_node checks what XDP does with them. */
		if (p->hook == SLUICE_HOOK_XDP && c->pkt.dst && for_the_node(c->pkt.dst))
			continue;
		if ((int)c->policy != policy) {
			policy = c->policy;
			if (install_shape_policy(c->policy)) {
				CHECK(0, "cannot install shape policy %d", policy);
				return;
			}
		}
		dest_get(c->pkt.dst, &before);
		tot_before = totals_of(p->hook, c->verdict, c->reason);
		ret = run_on(p, &c->pkt, &len, 0);
		tot_after = totals_of(p->hook, c->verdict, c->reason);
		CHECK(ret == c->ret, "%s %s: return code %d, want %d", p->name, c->name, ret,
		      c->ret);
		CHECK(tot_after.packets - tot_before.packets == 1 &&
			      tot_after.bytes - tot_before.bytes == len,
		      "%s %s: node total %s/%s moved by %llu packets, %llu bytes (want 1, %u)",
		      p->name, c->name, verdict_name(c->verdict), reason_name(c->reason),
		      (unsigned long long)(tot_after.packets - tot_before.packets),
		      (unsigned long long)(tot_after.bytes - tot_before.bytes), len);

		bool have = dest_get(c->pkt.dst, &after);
		if (c->counted) {
			CHECK(have && after.packets[c->verdict] - before.packets[c->verdict] == 1 &&
				      after.bytes[c->verdict] - before.bytes[c->verdict] == len,
			      "%s: destination counter for %s did not move by 1 packet, %u bytes",
			      c->name, verdict_name(c->verdict), len);
		} else {
			CHECK(!c->pkt.dst || memcmp(&before, &after, sizeof(before)) == 0,
			      "%s: destination entry changed", c->name);
		}
		if (c->pkt.more_frags && c->pkt.frag_off == 0 && c->frag_rule) {
			struct sluice_frag_entry e;

			CHECK(frag_get(&c->pkt, &e) && e.verdict == c->verdict &&
				      e.reason == c->reason && e.rule_id == c->frag_rule,
			      "%s: first fragment recorded as %s/%s rule %d", c->name,
			      verdict_name(e.verdict), reason_name(e.reason), (int)e.rule_id);
		}
	}
}

/* Chains of every length up to the bound pass by their ports; one more is unparseable. */
static void test_ext_chain_lengths(void)
{
	if (install_shape_policy(SP_BASE)) {
		CHECK(0, "cannot install the shape policy");
		return;
	}
	for (int n = 0; n <= 9; n++) {
		struct pkt_spec pkt = { .dst = "2001:db8:c::2", .l4 = TCP, .next = n };
		unsigned len;

		for (int i = 0; i < n; i++)
			pkt.ext[i] = i == 0 ? HBH : i % 3 == 1 ? RTG : i % 3 == 2 ? AH : DST;
		pkt.dport = 443;
		CHECK(run_frame(&pkt, &len, 0) == (n <= 8 ? PASS : DROP), "%d headers, tcp 443", n);
		pkt.dport = 22;
		CHECK(run_frame(&pkt, &len, 0) == DROP, "%d headers, tcp 22", n);
	}
}

/* --- flows: the ingress program, and how FIN/RST end a flow --------------------------- */

static int run_ingress(const struct pkt_spec *s)
{
	unsigned len;

	return run_prog(dp.ingress_prog_fd, s, &len, 0);
}

/* A socket of type on the wildcard address and a kernel-chosen port; returns the port. */
static int open_socket(int family, int type, int *fd)
{
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6 };
	struct sockaddr_in a4 = { .sin_family = AF_INET };
	struct sockaddr *a = family == AF_INET6 ? (void *)&a6 : (void *)&a4;
	socklen_t len = family == AF_INET6 ? sizeof(a6) : sizeof(a4);
	int zero = 0;

	*fd = socket(family, type, 0);
	if (*fd < 0)
		return -errno;
	if (family == AF_INET6)
		setsockopt(*fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)); /* dual stack */
	if (bind(*fd, a, len) < 0 || (type == SOCK_STREAM && listen(*fd, 4) < 0) ||
	    getsockname(*fd, a, &len) < 0)
		return -errno;
	return ntohs(family == AF_INET6 ? a6.sin6_port : a4.sin_port);
}

/* Connect to the listener on port over loopback (brought up here); returns the client port. */
static int connect_loopback(int listen_fd, int port, int *client, int *server)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct ifreq ifr = { .ifr_name = "lo" };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0) {
		close(fd);
		return -errno;
	}
	close(fd);
	*client = socket(AF_INET, SOCK_STREAM, 0);
	if (*client < 0 || connect(*client, (struct sockaddr *)&a, sizeof(a)) < 0)
		return -errno;
	*server = accept(listen_fd, NULL, NULL);
	if (getsockname(*client, (struct sockaddr *)&a, &len) < 0)
		return -errno;
	return ntohs(a.sin_port);
}

static bool within(__u64 value, __u64 lo, __u64 hi)
{
	return value >= lo && value <= hi;
}

#define SEC_NS 1000000000ull
#define TCP_IDLE_NS (2 * 3600 * SEC_NS)
#define UDP_IDLE_NS (60 * SEC_NS)
#define LINGER_NS (10 * SEC_NS)

/*
 * The ingress program in this process's own network namespace (main unshares one): sk
 * lookups of BPF_PROG_TEST_RUN run in the caller's namespace, on sockets this test opens.
 */
static void test_ingress(void)
{
	int tcp_fd = -1, tcp6_fd = -1, udp_fd = -1, tcp_port, tcp6_port, udp_port;
	struct sluice_flow f;
	__u64 t0;

	if (install_shape_policy(SP_BASE)) {
		CHECK(0, "cannot install the shape policy");
		return;
	}
	tcp_port = open_socket(AF_INET, SOCK_STREAM, &tcp_fd);
	tcp6_port = open_socket(AF_INET6, SOCK_STREAM, &tcp6_fd);
	udp_port = open_socket(AF_INET, SOCK_DGRAM, &udp_fd);
	if (tcp_port < 0 || tcp6_port < 0 || udp_port < 0) {
		CHECK(0, "cannot open test sockets");
		goto out;
	}

	struct pkt_spec syn = { .dst = PKT_SRC4, .src = "203.0.113.30", .l4 = TCP,
				.sport = 50000, .dport = tcp_port, .tcp_flags = TCP_SYN };
	struct pkt_spec answer = { .dst = "203.0.113.30", .l4 = TCP, .sport = tcp_port,
				   .dport = 50000 };
	unsigned len;

	CHECK(run_frame(&answer, &len, 0) == DROP, "before the SYN the answer is denied");
	t0 = coarse_now();
	CHECK(run_ingress(&syn) == PASS, "ingress passes the SYN");
	CHECK(flow_get(TCP, PKT_SRC4, tcp_port, "203.0.113.30", 50000, &f) &&
		      within(f.expires_ns, t0 + TCP_IDLE_NS, coarse_now() + TCP_IDLE_NS) &&
		      !f.closing,
	      "SYN to a listening port records a flow for the TCP idle time");
	CHECK(run_frame(&answer, &len, 0) == PASS, "its answer passes egress");

	/* Spoofed SYN to a port where nothing listens (port 1 in a fresh namespace). */
	struct pkt_spec spoof = syn, spoof_answer = answer;

	spoof.src = spoof_answer.dst = "203.0.113.31";
	spoof.dport = spoof_answer.sport = 1;
	CHECK(run_ingress(&spoof) == PASS, "ingress passes the spoofed SYN");
	CHECK(!flow_get(TCP, PKT_SRC4, 1, "203.0.113.31", 50000, &f),
	      "SYN to a closed port records nothing");
	CHECK(run_frame(&spoof_answer, &len, 0) == DROP, "later data to that peer is denied");

	struct pkt_spec synack = syn, ack = syn;

	synack.src = "203.0.113.32";
	synack.tcp_flags = TCP_SYN | TCP_ACK;
	ack.src = "203.0.113.33";
	ack.tcp_flags = TCP_ACK;
	run_ingress(&synack);
	run_ingress(&ack);
	CHECK(!flow_get(TCP, PKT_SRC4, tcp_port, "203.0.113.32", 50000, &f) &&
		      !flow_get(TCP, PKT_SRC4, tcp_port, "203.0.113.33", 50000, &f),
	      "SYN+ACK or a bare ACK to a listening port record nothing");

	/* A SYN whose tuple is an established connection finds no listener: nothing recorded. */
	int client = -1, server = -1;
	int client_port = connect_loopback(tcp_fd, tcp_port, &client, &server);
	struct pkt_spec syn_est = { .dst = "127.0.0.1", .src = "127.0.0.1", .l4 = TCP,
				    .sport = client_port, .dport = tcp_port, .tcp_flags = TCP_SYN };

	CHECK(client_port > 0, "loopback connection: %s", strerror(-client_port));
	run_ingress(&syn_est);
	CHECK(client_port > 0 &&
		      !flow_get(TCP, "127.0.0.1", tcp_port, "127.0.0.1", client_port, &f),
	      "SYN matching an established socket records nothing");
	if (client >= 0)
		close(client);
	if (server >= 0)
		close(server);

	struct pkt_spec syn6 = { .dst = PKT_SRC6, .src = "2001:db8:c::30", .l4 = TCP,
				 .sport = 50000, .dport = tcp6_port, .tcp_flags = TCP_SYN };
	struct pkt_spec syn6_to_v4 = syn;

	syn6_to_v4.src = "203.0.113.34";
	syn6_to_v4.dport = tcp6_port;
	run_ingress(&syn6);
	run_ingress(&syn6_to_v4);
	CHECK(flow_get(TCP, PKT_SRC6, tcp6_port, "2001:db8:c::30", 50000, &f),
	      "IPv6 SYN to a listening socket records a flow");
	CHECK(flow_get(TCP, PKT_SRC4, tcp6_port, "203.0.113.34", 50000, &f),
	      "IPv4 SYN to a dual-stack listener records a flow");

	struct pkt_spec dgram = { .dst = PKT_SRC4, .src = "203.0.113.35", .sport = 50001,
				  .dport = udp_port };
	struct pkt_spec dgram_closed = dgram, dgram_later = dgram;

	dgram_closed.src = "203.0.113.36";
	dgram_closed.dport = 1;
	dgram_later.src = "203.0.113.37";
	dgram_later.frag_off = 9;
	t0 = coarse_now();
	run_ingress(&dgram);
	run_ingress(&dgram_closed);
	run_ingress(&dgram_later);
	CHECK(flow_get(UDP, PKT_SRC4, udp_port, "203.0.113.35", 50001, &f) &&
		      within(f.expires_ns, t0 + UDP_IDLE_NS, coarse_now() + UDP_IDLE_NS),
	      "datagram to a bound port records a flow for the UDP idle time");
	CHECK(!flow_get(UDP, PKT_SRC4, 1, "203.0.113.36", 50001, &f),
	      "datagram to an unbound port records nothing");
	CHECK(!flow_get(UDP, PKT_SRC4, udp_port, "203.0.113.37", 50001, &f),
	      "a later fragment records nothing");

	/* Ingress never drops, whatever it is given. */
	struct pkt_spec junk[] = {
		{ .dst = PKT_SRC4, .vlan = { VLAN_AD, VLAN_Q, VLAN_Q } },
		{ .dst = PKT_SRC6, .l4 = TCP, .ext = CHAIN9 },
		{ .dst = PKT_SRC4, .ihl_override = 3 },
		{ .ethertype = ETH_P_ARP },
	};
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
		CHECK(run_ingress(&junk[i]) == PASS, "ingress passes junk frame %zu", i);
out:
	if (tcp_fd >= 0)
		close(tcp_fd);
	if (tcp6_fd >= 0)
		close(tcp6_fd);
	if (udp_fd >= 0)
		close(udp_fd);
}

/* Refresh, FIN both ways, RST: what each direction does to a recorded flow. */
static void test_flow_lifecycle(void)
{
	__u64 now = coarse_now(), hour = 3600 * SEC_NS;
	struct pkt_spec out = { .dst = "203.0.113.40", .l4 = TCP, .sport = 22, .dport = 50000 };
	struct pkt_spec in = { .dst = PKT_SRC4, .src = "203.0.113.40", .l4 = TCP, .sport = 50000,
			       .dport = 22, .tcp_flags = TCP_ACK };
	struct sluice_flow f;
	unsigned len;

	if (install_shape_policy(SP_BASE) ||
	    flow_put(TCP, PKT_SRC4, 22, "203.0.113.40", 50000, now + 5 * SEC_NS)) {
		CHECK(0, "cannot set up the flow");
		return;
	}
	run_ingress(&in);
	CHECK(flow_get(TCP, PKT_SRC4, 22, "203.0.113.40", 50000, &f) &&
		      f.expires_ns >= now + TCP_IDLE_NS - 2 * SEC_NS,
	      "an inbound packet refreshes the flow to the idle time");

	out.tcp_flags = TCP_FIN | TCP_ACK;
	CHECK(run_frame(&out, &len, 0) == PASS, "the node's FIN passes as a reply");
	CHECK(flow_get(TCP, PKT_SRC4, 22, "203.0.113.40", 50000, &f) && f.fin_out && !f.closing,
	      "a FIN one way does not end the flow (half-close)");
	in.tcp_flags = TCP_ACK;
	in.payload = 100;
	run_ingress(&in);
	out.tcp_flags = TCP_ACK;
	CHECK(run_frame(&out, &len, 0) == PASS, "half-closed: the node still answers");

	in.tcp_flags = TCP_FIN | TCP_ACK;
	now = coarse_now();
	run_ingress(&in);
	CHECK(flow_get(TCP, PKT_SRC4, 22, "203.0.113.40", 50000, &f) && f.fin_in && f.closing &&
		      within(f.expires_ns, now + LINGER_NS, coarse_now() + LINGER_NS),
	      "FIN both ways: the flow lingers %llu s", (unsigned long long)(LINGER_NS / SEC_NS));
	in.tcp_flags = TCP_ACK;
	run_ingress(&in);
	CHECK(flow_get(TCP, PKT_SRC4, 22, "203.0.113.40", 50000, &f) &&
		      f.expires_ns <= coarse_now() + LINGER_NS,
	      "a closing flow is not refreshed");
	CHECK(run_frame(&out, &len, 0) == PASS, "the last ACK passes while it lingers");

	/* RST from either side: the flow ends after the linger. */
	out.dst = in.src = "203.0.113.41";
	in.tcp_flags = TCP_RST;
	flow_put(TCP, PKT_SRC4, 22, "203.0.113.41", 50000, coarse_now() + hour);
	run_ingress(&in);
	CHECK(flow_get(TCP, PKT_SRC4, 22, "203.0.113.41", 50000, &f) && f.closing &&
		      f.expires_ns <= coarse_now() + LINGER_NS,
	      "inbound RST ends the flow");
	out.dst = "203.0.113.42";
	out.tcp_flags = TCP_RST;
	flow_put(TCP, PKT_SRC4, 22, "203.0.113.42", 50000, coarse_now() + hour);
	CHECK(run_frame(&out, &len, 0) == PASS, "the node's RST passes as a reply");
	CHECK(flow_get(TCP, PKT_SRC4, 22, "203.0.113.42", 50000, &f) && f.closing &&
		      f.expires_ns <= coarse_now() + LINGER_NS,
	      "outbound RST ends the flow");

	/* An expired flow is dead: its packets are denied and inbound data does not revive it. */
	out.dst = in.src = "203.0.113.43";
	out.tcp_flags = in.tcp_flags = TCP_ACK;
	flow_put(TCP, PKT_SRC4, 22, "203.0.113.43", 50000, coarse_now() - 1);
	run_ingress(&in);
	CHECK(run_frame(&out, &len, 0) == DROP, "an expired flow's packets are denied");
}

/* Under 'default allow', undecidable frames are still denied (fail closed). */
static void test_unparsed_default_allow(void)
{
	struct pkt_spec pkts[] = {
		{ .dst = "198.51.100.50", .vlan = { VLAN_AD, VLAN_Q, VLAN_Q } },
		{ .dst = "198.51.100.50", .ip_len = 1500 },
		{ .dst = "2001:db8:a::50", .l4 = TCP, .ext = CHAIN9 },
	};
	unsigned len;

	if (install_text("default allow\n")) {
		CHECK(0, "cannot install default allow");
		return;
	}
	for (size_t i = 0; i < sizeof(pkts) / sizeof(pkts[0]); i++)
		CHECK(run_frame(&pkts[i], &len, 0) == DROP, "default allow: frame %zu dropped", i);
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

	/* XDP: a forwarded denied packet's events name the hook and no local sender. */
	const struct pkt_spec forwarded = { .dst = "203.0.113.202" };
	unsigned len;

	events_reset();
	CHECK(run_on(&xdp, &forwarded, &len, 0) == DROP, "xdp drops the forwarded packet");
	ring_buffer__consume(events_rb);
	CHECK_EQ_U64(events_of(SLUICE_EVENT_DENY, forwarded.dst, &e), 1, "xdp: one deny event");
	CHECK_EQ_U64(e.hook, SLUICE_HOOK_XDP, "with hook xdp");
	CHECK(!(e.flags & SLUICE_EVENT_F_SOCKET), "and no socket owner");
	CHECK_EQ_U64(events_of(SLUICE_EVENT_NEW_DESTINATION, forwarded.dst, NULL), 1,
		     "xdp: new_destination for its first contact");

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
	events_rb = NULL;
}

/*
 * XDP decides packets the node forwards. Make this namespace a router: forwarding on,
 * default routes out of a veth (the kernel may lack the dummy driver), and an address of
 * its own on it, GW_V4/GW_V6.
 */
#define GW_IF "sl-gw0"
#define GW_V4 "192.0.2.254"
#define GW_V6 "2001:db8:1::fe"

static int gateway_setup(void)
{
	static const char *const steps[] = {
		"ip link set lo up",
		"ip link add " GW_IF " type veth peer name " GW_IF "p",
		"ip link set " GW_IF "p up",
		"ip link set " GW_IF " up",
		"ip addr add " GW_V4 "/24 dev " GW_IF,
		"ip addr add " GW_V6 "/64 dev " GW_IF " nodad",
		"ip route add default dev " GW_IF,
		"ip -6 route add default dev " GW_IF,
		"sysctl -qw net.ipv4.conf.all.forwarding=1 net.ipv6.conf.all.forwarding=1",
	};

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		if (system(steps[i]) != 0) {
			fprintf(stderr, "failed: %s\n", steps[i]);
			return -1;
		}
	}
	return 0;
}

/* Sum of every node total, all hooks, verdicts and reasons. */
static struct sluice_counter totals_all(void)
{
	struct sluice_counter sum = {};
	struct total_row *rows;
	size_t n;

	if (read_totals(dp.totals_fd, dp.ifaces_fd, &rows, &n))
		return sum;
	for (size_t i = 0; i < n; i++) {
		sum.packets += rows[i].sum.packets;
		sum.bytes += rows[i].sum.bytes;
	}
	free(rows);
	return sum;
}

/*
 * Under default deny, packets addressed to the node (its own addresses, broadcast) pass
 * XDP and are counted nowhere; the same destinations are still policed by tc egress, and a
 * forwarded packet next to them is denied by XDP.
 */
static void test_xdp_for_the_node(void)
{
	static const struct pkt_spec local[] = {
		{ .dst = GW_V4, .l4 = TCP, .dport = 22 },
		{ .dst = GW_V6, .l4 = TCP, .dport = 22 },
		{ .dst = GW_V4, .l4 = UDP, .dport = 53 },
		{ .dst = "255.255.255.255", .l4 = UDP, .dport = 9 },
		{ .dst = "ff02::1", .l4 = UDP, .dport = 9 },
		{ .dst = "ff0e::1234", .l4 = UDP, .dport = 9 },
		{ .dst = "239.1.2.3", .l4 = UDP, .dport = 9 },
		{ .dst = "192.0.2.255", .l4 = UDP, .dport = 9 }, /* the subnet's broadcast */
		{ .dst = "fe80::1", .l4 = UDP, .dport = 9 },     /* link-local: never forwarded */
	};
	struct sluice_counter before, after;
	struct sluice_dest_stats st_before, st_after;
	struct pkt_spec routed = { .dst = "192.0.2.253", .l4 = TCP, .dport = 22 };
	unsigned len;

	if (install_text("default deny\n")) {
		CHECK(0, "cannot install default deny");
		return;
	}
	/*
	 * Twice each, the second time with the destination's entry in place (tc egress makes
	 * one for the node's broadcast, say): XDP's answer is then cached there, and must not
	 * change.
	 */
	for (int round = 0; round < 2; round++) {
		for (size_t i = 0; i < sizeof(local) / sizeof(local[0]); i++) {
			if (round == 1)
				run_on(&tc_egress, &local[i], &len, 0);
			before = totals_all();
			dest_get(local[i].dst, &st_before);
			CHECK(run_on(&xdp, &local[i], &len, 0) == PASS,
			      "xdp passes a packet for %s (%s)", local[i].dst,
			      round ? "with an entry" : "no entry");
			CHECK(run_on(&xdp, &local[i], &len, 0) == PASS, "and again (cached: %s)",
			      local[i].dst);
			after = totals_all();
			dest_get(local[i].dst, &st_after);
			CHECK(after.packets == before.packets && after.bytes == before.bytes,
			      "xdp counts nothing for %s", local[i].dst);
			CHECK(memcmp(st_before.packets, st_after.packets, sizeof(st_before.packets)) ==
					      0 &&
				      memcmp(st_before.bytes, st_after.bytes,
					     sizeof(st_before.bytes)) == 0,
			      "xdp counts nothing in the destination entry of %s", local[i].dst);
		}
	}
	CHECK(run_on(&tc_egress, &local[0], &len, 0) == DROP, "tc egress still polices " GW_V4);
	before = totals_of(SLUICE_HOOK_XDP, V(DENY), R(DEFAULT));
	CHECK(run_on(&xdp, &routed, &len, 0) == DROP, "xdp drops a forwarded packet next to them");
	after = totals_of(SLUICE_HOOK_XDP, V(DENY), R(DEFAULT));
	CHECK(after.packets == before.packets + 1 && after.bytes == before.bytes + len,
	      "xdp counts the forwarded packet as deny/default");

	/* An address the node gains is its own once the set is synced (the daemon: rtnetlink). */
	CHECK(system("ip addr add 198.51.100.254/32 dev " GW_IF) == 0, "add an address");
	routed.dst = "198.51.100.254";
	/* Twice each time: the second packet reads the answer cached in the entry by the first. */
	for (int i = 0; i < 2; i++)
		CHECK(run_on(&xdp, &routed, &len, 0) == DROP,
		      "not synced yet: policed as forwarded (%d)", i);
	CHECK(local_addrs_sync(dp.local_addrs_fd, dp.local_gen_fd) > 0, "sync");
	for (int i = 0; i < 2; i++)
		CHECK(run_on(&xdp, &routed, &len, 0) == PASS,
		      "synced: the node's own, left to the stack (%d)", i);
	CHECK(system("ip addr del 198.51.100.254/32 dev " GW_IF) == 0, "remove it");
	CHECK(local_addrs_sync(dp.local_addrs_fd, dp.local_gen_fd) > 0, "sync");
	for (int i = 0; i < 2; i++)
		CHECK(run_on(&xdp, &routed, &len, 0) == DROP, "removed and synced: policed again (%d)",
		      i);
}

/*
 * The slot of destination budget `name` in dst's entry, read into *st (the datapath keeps a
 * destination budget's usage there); -1 when the entry or the slot does not exist.
 */
static int usage_slot(const char *name, const char *dst, struct sluice_addr *a,
		      struct sluice_dest_stats *st)
{
	if (addr_parse(dst, a) || bpf_map_lookup_elem(dp.dests_fd, a, st))
		return -1;
	for (int j = 0; j < SLUICE_BUDGET_SLOTS; j++)
		if (st->budget[j].budget == budget_id(name))
			return j;
	return -1;
}

static bool usage_get(const char *name, const char *dst, struct sluice_budget_usage *u)
{
	struct sluice_dest_stats st;
	struct sluice_addr a;
	int j = usage_slot(name, dst, &a, &st);

	memset(u, 0, sizeof(*u));
	if (j < 0)
		return false;
	*u = st.budget[j];
	return true;
}

/* Rewrite the slot (the entry whole: nothing else runs meanwhile in this test). */
static bool usage_put(const char *name, const char *dst, const struct sluice_budget_usage *u)
{
	struct sluice_dest_stats st;
	struct sluice_addr a;
	int j = usage_slot(name, dst, &a, &st);

	if (j < 0)
		return false;
	st.budget[j] = *u;
	return bpf_map_update_elem(dp.dests_fd, &a, &st, BPF_EXIST) == 0;
}

/* Crossings of the budget at index i of the active policy (either epoch half). */
static __u64 crossed_of(__u32 i)
{
	__u64 a = 0, b = 0;
	__u32 k0 = i, k1 = SLUICE_BUDGET_MAX + i;

	bpf_map_lookup_elem(dp.budget.crossed_fd, &k0, &a);
	bpf_map_lookup_elem(dp.budget.crossed_fd, &k1, &b);
	return a + b;
}

static const char budget_policy[] =
	"mode %s\ndefault deny\n"
	"allow 198.51.100.0/24\n"
	"budget 198.51.100.10 3000B per 1h block name b-block\n"  /* budget 0 */
	"budget 198.51.100.20 3000B per 1h alert name b-alert\n"  /* budget 1 */
	"budget 203.0.113.50 2500B per 1h block name b-reply\n"   /* budget 2: replies only */
	"budget 198.51.100.64/26 1B per 1h block name b-tiny\n";  /* budget 3 */

static int install_budget_policy(const char *mode)
{
	char text[1024];

	snprintf(text, sizeof(text), budget_policy, mode);
	return install_text(text);
}

static void test_budgets(const struct decider *p)
{
	const struct pkt_spec to_block = { .dst = "198.51.100.10", .payload = 958 };
	const struct pkt_spec to_alert = { .dst = "198.51.100.20", .payload = 958 };
	const struct pkt_spec to_other = { .dst = "198.51.100.30", .payload = 958 };
	const struct pkt_spec reply = { .dst = "203.0.113.50", .l4 = IPPROTO_TCP, .dport = 50000,
					.sport = 22, .payload = 946 };
	struct sluice_counter before, after;
	struct sluice_budget_usage u;
	struct sluice_event e = {};
	unsigned len = 0;
	int ret;

	printf("budgets (%s)\n", p->name);
	events_rb = ring_buffer__new(dp.events_fd, collect_event, &seen, NULL);
	CHECK(events_rb != NULL, "ring buffer: %s", strerror(errno));
	if (!events_rb)
		return;
	CHECK(install_budget_policy("enforce") == 0, "install the budget policy");
	bpf_map_delete_elem(dp.budget.usage_fd, &(struct sluice_budget_usage_key){ 0 });
	events_config(0, 0);
	events_reset();

	/* 1000-byte frames against 3000 bytes: the third reaches the limit, the fourth is dropped. */
	before = totals_of(p->hook, SLUICE_VERDICT_DENY, SLUICE_REASON_BUDGET);
	for (int i = 1; i <= 3; i++) {
		ret = run_on(p, &to_block, &len, 0);
		CHECK(ret == PASS, "%s: packet %d under the budget passes (got %d)", p->name, i, ret);
	}
	CHECK_EQ_U64(len, 1000, "frame size the budget arithmetic assumes");
	CHECK(usage_get("b-block", to_block.dst, &u), "usage record exists");
	CHECK_EQ_U64(u.bytes, 3000, "usage after three packets");
	CHECK(u.window_end_ns > coarse_now() + 3500ull * 1000000000ull &&
		      u.window_end_ns <= coarse_now() + 3600ull * 1000000000ull,
	      "window ends an hour after the first packet");
	ring_buffer__consume(events_rb);
	CHECK_EQ_U64(events_of(SLUICE_EVENT_BUDGET, to_block.dst, &e), 1,
		     "one budget event at the crossing");
	CHECK_EQ_U64(e.bytes, 3000, "the event carries the usage so far");
	CHECK_EQ_U64(e.rule_id % SLUICE_BUDGET_MAX, 0, "the event names budget 0");
	CHECK_EQ_U64(crossed_of(0), 1, "crossing counted once");
	for (int i = 0; i < 3; i++) {
		ret = run_on(p, &to_block, &len, 0);
		CHECK(ret == DROP, "%s: a packet past a spent block budget is dropped (got %d)", p->name,
		      ret);
	}
	after = totals_of(p->hook, SLUICE_VERDICT_DENY, SLUICE_REASON_BUDGET);
	CHECK_EQ_U64(after.packets - before.packets, 3, "drops counted with reason budget");
	CHECK(usage_get("b-block", to_block.dst, &u), "usage record still there");
	CHECK_EQ_U64(u.bytes, 3000, "dropped packets are not charged");
	CHECK_EQ_U64(u.dropped, 3, "dropped packets counted in the usage record");
	events_reset();
	run_on(p, &to_block, &len, 0);
	ring_buffer__consume(events_rb);
	CHECK_EQ_U64(events_of(SLUICE_EVENT_BUDGET, to_block.dst, NULL), 0,
		     "no second budget event in the window");
	CHECK_EQ_U64(crossed_of(0), 1, "still one crossing");

	/* Another destination of the same rule: no budget, unaffected. */
	ret = run_on(p, &to_other, &len, 0);
	CHECK(ret == PASS, "%s: another destination passes", p->name);
	CHECK(!usage_get("b-block", to_other.dst, &u), "no usage for a destination without budget");

	/* Window roll-over: once the window has ended, usage starts again and blocking lifts. */
	CHECK(usage_get("b-block", to_block.dst, &u), "usage record");
	u.window_end_ns = coarse_now() - 1;
	CHECK(usage_put("b-block", to_block.dst, &u), "end the window");
	ret = run_on(p, &to_block, &len, 0);
	CHECK(ret == PASS, "%s: a new window lets traffic pass again (got %d)", p->name, ret);
	CHECK(usage_get("b-block", to_block.dst, &u), "usage record");
	CHECK_EQ_U64(u.bytes, 1000, "the new window counts from zero");
	CHECK_EQ_U64(u.dropped, 0, "the new window has no drops");
	CHECK(u.window_end_ns > coarse_now() + 3500ull * 1000000000ull, "the new window is an hour");
	/* And the new window can be crossed again: one more event. */
	events_reset();
	for (int i = 0; i < 3; i++)
		run_on(p, &to_block, &len, 0);
	ring_buffer__consume(events_rb);
	CHECK_EQ_U64(events_of(SLUICE_EVENT_BUDGET, to_block.dst, NULL), 1,
		     "one budget event in the new window");
	CHECK_EQ_U64(crossed_of(0), 2, "two crossings in all");

	/* Reset (what `sluice budget reset` does): the usage is cleared in place, traffic flows. */
	CHECK(run_on(p, &to_block, &len, 0) == DROP, "spent again");
	{
		struct budget_usage_row row = { .key = { .budget = budget_id("b-block") },
						.in_dest = true };
		struct dest_scan *scan = dest_scan_open(dp.dests_fd);
		struct sluice_dest_stats st_before, st_after;

		addr_parse(to_block.dst, &row.key.addr);
		bpf_map_lookup_elem(dp.dests_fd, &row.key.addr, &st_before);
		CHECK(scan && budget_usage_clear(dp.budget.usage_fd, scan, &row) == 1,
		      "clear the destination's usage");
		CHECK(scan && budget_usage_clear(dp.budget.usage_fd, scan, &row) == 1,
		      "clearing again finds the (empty) slot still there");
		CHECK(usage_get("b-block", to_block.dst, &u) && u.bytes == 0 && u.dropped == 0 &&
			      u.window_end_ns == 0,
		      "cleared: no bytes, no drops, no window");
		bpf_map_lookup_elem(dp.dests_fd, &row.key.addr, &st_after);
		CHECK(memcmp(st_before.packets, st_after.packets, sizeof(st_before.packets)) == 0 &&
			      memcmp(st_before.bytes, st_after.bytes, sizeof(st_before.bytes)) == 0,
		      "the destination's counters are untouched by the reset");
		dest_scan_close(scan);
	}
	CHECK(run_on(p, &to_block, &len, 0) == PASS, "after a reset the destination passes");
	CHECK(usage_get("b-block", to_block.dst, &u), "usage after the reset");
	CHECK_EQ_U64(u.bytes, 1000, "a new window from zero");

	/* Alert: every packet passes, one event at the crossing. */
	events_reset();
	for (int i = 1; i <= 10; i++) {
		ret = run_on(p, &to_alert, &len, 0);
		CHECK(ret == PASS, "%s: alert budget packet %d passes (got %d)", p->name, i, ret);
	}
	ring_buffer__consume(events_rb);
	CHECK_EQ_U64(events_of(SLUICE_EVENT_BUDGET, to_alert.dst, &e), 1,
		     "alert: exactly one budget event");
	CHECK_EQ_U64(e.bytes, 3000, "alert: the event at the crossing packet");
	CHECK_EQ_U64(e.verdict, SLUICE_VERDICT_ALLOW, "alert: the crossing packet was allowed");
	CHECK(usage_get("b-alert", to_alert.dst, &u), "alert usage");
	CHECK_EQ_U64(u.bytes, 10000, "alert: every byte counted");
	CHECK_EQ_U64(crossed_of(1), 1, "alert crossing counted");

	/* A GSO super-packet counts its wire bytes (tc only: XDP sees wire frames). */
	if (p->hook == SLUICE_HOOK_TC_EGRESS) {
		const struct pkt_spec tiny = { .dst = "198.51.100.70", .l4 = IPPROTO_TCP,
					       .payload = 3000 };

		ret = run_on(p, &tiny, &len, 3);
		CHECK(ret == PASS, "a GSO packet reaching the limit passes whole (the slack)");
		CHECK(usage_get("b-tiny", tiny.dst, &u), "gso usage");
		CHECK(u.bytes > 3000, "a GSO packet counts all its segments' bytes (%llu)",
		      (unsigned long long)u.bytes);
		CHECK(run_on(p, &tiny, &len, 3) == DROP, "and the next one is dropped");
	}

	/* Replies to a connection initiated from outside count against budgets too. */
	if (p->hook == SLUICE_HOOK_TC_EGRESS) {
		before = totals_of(p->hook, SLUICE_VERDICT_REPLY, SLUICE_REASON_REPLY);
		CHECK(flow_put(IPPROTO_TCP, PKT_SRC4, 22, reply.dst, 50000,
			       coarse_now() + 600ull * 1000000000ull) == 0,
		      "record an inbound flow");
		for (int i = 1; i <= 3; i++) {
			ret = run_on(p, &reply, &len, 0);
			CHECK(ret == PASS, "reply %d under the budget passes (got %d)", i, ret);
		}
		after = totals_of(p->hook, SLUICE_VERDICT_REPLY, SLUICE_REASON_REPLY);
		CHECK_EQ_U64(after.packets - before.packets, 3, "they passed as replies");
		CHECK(usage_get("b-reply", reply.dst, &u), "reply usage");
		CHECK_EQ_U64(u.bytes, 3000, "reply bytes are charged");
		CHECK(run_on(p, &reply, &len, 0) == DROP, "a reply past a spent block budget is dropped");
	}

	/* Audit mode: a spent block budget is reported as audit (reason budget), never dropped. */
	run_on(p, &to_block, &len, 0);
	run_on(p, &to_block, &len, 0);
	CHECK(run_on(p, &to_block, &len, 0) == DROP, "spent once more before the audit install");
	CHECK(install_budget_policy("audit") == 0, "install in audit mode");
	before = totals_of(p->hook, SLUICE_VERDICT_AUDIT, SLUICE_REASON_BUDGET);
	ret = run_on(p, &to_block, &len, 0);
	CHECK(ret == PASS, "%s: audit mode passes a packet of a spent budget (got %d)", p->name,
	      ret);
	after = totals_of(p->hook, SLUICE_VERDICT_AUDIT, SLUICE_REASON_BUDGET);
	CHECK_EQ_U64(after.packets - before.packets, 1, "counted as audit, reason budget");
	CHECK(usage_get("b-block", to_block.dst, &u), "usage in audit mode");
	CHECK_EQ_U64(u.bytes, 4000, "audited bytes count (usage kept across the reload)");

	/* A policy without budgets: nothing is charged or blocked any more. */
	CHECK(install_policy("enforce") == 0, "install a policy without budgets");
	CHECK(install_text("default deny\nallow 198.51.100.0/24\n") == 0, "and again (both halves)");
	CHECK(run_on(p, &to_block, &len, 0) == PASS, "no budget, no block");
	/* Leave no state for the next run: what `sluice budget reset` does, for every key. */
	{
		struct dest_scan *scan = dest_scan_open(dp.dests_fd);
		struct budget_usage_row *rows = NULL;
		size_t n = 0, cleared = 0;

		CHECK(scan && budget_usage_read(dp.budget.usage_fd, scan, &rows, &n) == 0,
		      "read the usage");
		for (size_t i = 0; scan && i < n; i++)
			cleared += budget_usage_clear(dp.budget.usage_fd, scan, &rows[i]) == 1;
		CHECK(n >= 2 && cleared == n, "every usage record cleared (%zu of %zu)", cleared, n);
		free(rows);
		rows = NULL;
		CHECK(scan && budget_usage_read(dp.budget.usage_fd, scan, &rows, &n) == 0 && n == 0,
		      "none left (%zu)", n);
		free(rows);
		dest_scan_close(scan);
	}
	ring_buffer__free(events_rb);
	events_rb = NULL;
}

/*
 * Destination budgets keep their usage in the destination's entry, one slot per budget:
 * nested budgets count side by side, a reload keeps a budget's slot, and a budget new to the
 * destination takes over the slot of one that no longer applies, from zero.
 */
static void test_budget_slots(void)
{
	const struct pkt_spec pkt = { .dst = "198.51.100.40", .payload = 958 };
	struct sluice_budget_usage u;
	unsigned len = 0;
	int ret;

	printf("budget slots in the destination entry\n");
	CHECK(install_text("default deny\nallow 198.51.100.0/24\n"
			   "budget 198.51.100.0/24 5000B per 1h alert name outer\n"
			   "budget 198.51.100.40 3000B per 1h block name inner\n") == 0,
	      "install nested budgets");
	for (int i = 1; i <= 4; i++) {
		ret = run_on(&tc_egress, &pkt, &len, 0);
		CHECK(ret == (i <= 3 ? PASS : DROP), "packet %d %s (got %d)", i,
		      i <= 3 ? "passes" : "is dropped: the inner budget is spent", ret);
	}
	CHECK(usage_get("inner", pkt.dst, &u) && u.bytes == 3000 && u.dropped == 1,
	      "inner: 3000 bytes, 1 dropped (%llu, %llu)", (unsigned long long)u.bytes,
	      (unsigned long long)u.dropped);
	CHECK(usage_get("outer", pkt.dst, &u) && u.bytes == 3000,
	      "outer: the same 3000 bytes, the dropped packet not charged (%llu)",
	      (unsigned long long)u.bytes);

	CHECK(install_text("default deny\nallow 198.51.100.0/24\n"
			   "budget 198.51.100.0/24 5000B per 1h alert name outer\n"
			   "budget 198.51.100.40 2000B per 1h block name other\n") == 0,
	      "reload: inner replaced by another budget");
	CHECK(run_on(&tc_egress, &pkt, &len, 0) == PASS, "the new budget starts from zero");
	CHECK(!usage_get("inner", pkt.dst, &u), "inner's slot was taken over");
	CHECK(usage_get("other", pkt.dst, &u) && u.bytes == 1000, "other: 1000 bytes (%llu)",
	      (unsigned long long)u.bytes);
	CHECK(usage_get("outer", pkt.dst, &u) && u.bytes == 4000,
	      "outer kept its usage across the reload: 4000 (%llu)", (unsigned long long)u.bytes);
	CHECK(run_on(&tc_egress, &pkt, &len, 0) == PASS, "other reaches its limit");
	CHECK(run_on(&tc_egress, &pkt, &len, 0) == DROP, "and blocks the next packet");
	CHECK(install_text("default deny\nallow 198.51.100.0/24\n") == 0, "no budgets");
	CHECK(install_text("default deny\nallow 198.51.100.0/24\n") == 0, "(both halves)");
}

/* One CPU's share of the concurrent budget test: runs frames of one packet spec. */
struct budget_runner {
	const struct pkt_spec *pkt;
	int cpu, err;
	__u32 runs;
};

static void *budget_runner(void *arg)
{
	struct budget_runner *r = arg;
	__u8 buf[PKT_MAX];
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = buf, .repeat = r->runs);
	cpu_set_t cpus;

	CPU_ZERO(&cpus);
	CPU_SET(r->cpu, &cpus);
	r->err = pthread_setaffinity_np(pthread_self(), sizeof(cpus), &cpus);
	opts.data_size_in = pkt_build(r->pkt, buf);
	if (!r->err)
		r->err = bpf_prog_test_run_opts(dp.egress_prog_fd, &opts);
	return NULL;
}

/*
 * Every CPU sends to one destination at once, across its budget: the precision the design
 * states holds (at most a packet per CPU past the limit, and at the window's start a packet
 * per other CPU the start does not count), exactly one crossing and one event, every packet
 * either charged or dropped and counted as such, one usage slot for the budget.
 */
static void test_budget_concurrent(void)
{
	const struct pkt_spec pkt = { .dst = "198.51.100.61", .payload = 958 }; /* 1000 B */
	const __u64 frame = 1000, limit = 10000 * frame, runs = 20000;
	int ncpus = libbpf_num_possible_cpus();
	struct budget_runner r[2] = { { &pkt, 0, 0, runs }, { &pkt, 1, 0, runs } };
	pthread_t t[2];
	struct sluice_dest_stats st;
	struct sluice_budget_usage u;
	struct ring_buffer *rb;
	__u64 allowed, denied, slots = 0;

	printf("a destination budget charged from two CPUs at once\n");
	memset(&seen, 0, sizeof(seen));
	rb = ring_buffer__new(dp.events_fd, collect_event, &seen, NULL);
	CHECK(rb != NULL, "ring buffer");
	CHECK(ncpus >= 2, "two CPUs to run on (%d)", ncpus);
	if (!rb || ncpus < 2) {
		ring_buffer__free(rb);
		return;
	}
	CHECK(install_text("default deny\nallow 198.51.100.0/24\n"
			   "budget 198.51.100.61 10000000B per 1h block name racing\n") == 0,
	      "install a 10 MB block budget");
	ring_buffer__consume(rb);
	memset(&seen, 0, sizeof(seen));
	for (int i = 0; i < 2; i++)
		CHECK(pthread_create(&t[i], NULL, budget_runner, &r[i]) == 0, "start CPU %d", i);
	for (int i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		CHECK(r[i].err == 0, "CPU %d ran its %llu frames (%d)", i, (unsigned long long)runs,
		      r[i].err);
	}
	ring_buffer__consume(rb);
	CHECK(dest_get(pkt.dst, &st), "the destination's entry");
	allowed = st.packets[SLUICE_VERDICT_ALLOW];
	denied = st.packets[SLUICE_VERDICT_DENY];
	printf("  allowed %llu, dropped %llu frames of %llu\n", (unsigned long long)allowed,
	       (unsigned long long)denied, (unsigned long long)(2 * runs));
	CHECK_EQ_U64(allowed + denied, 2 * runs, "every frame decided once");
	CHECK(allowed * frame >= limit, "nothing dropped before the limit (%llu bytes passed)",
	      (unsigned long long)(allowed * frame));
	CHECK(allowed * frame < limit + 2 * (__u64)ncpus * frame,
	      "past the limit at most two frames per CPU (%llu bytes passed, limit %llu)",
	      (unsigned long long)(allowed * frame), (unsigned long long)limit);
	CHECK(usage_get("racing", pkt.dst, &u), "the usage slot");
	CHECK(u.bytes <= allowed * frame && u.bytes + ((__u64)ncpus - 1) * frame >= allowed * frame,
	      "usage counts what passed, less at most a frame per other CPU (%llu of %llu)",
	      (unsigned long long)u.bytes, (unsigned long long)(allowed * frame));
	CHECK_EQ_U64(u.dropped, denied, "the drops are counted in the usage");
	for (int j = 0; j < SLUICE_BUDGET_SLOTS; j++)
		slots += st.budget[j].budget == budget_id("racing");
	CHECK_EQ_U64(slots, 1, "one slot for the budget, however the CPUs raced to claim it");
	CHECK_EQ_U64(events_of(SLUICE_EVENT_BUDGET, pkt.dst, NULL), 1, "exactly one budget event");
	ring_buffer__free(rb);
	CHECK(install_text("default deny\nallow 198.51.100.0/24\n") == 0, "no budgets");
	CHECK(install_text("default deny\nallow 198.51.100.0/24\n") == 0, "(both halves)");
}

/* Set one slot of the per-user array to the same value on every CPU. */
static void user_slot_set(__u32 index, const struct sluice_user_slot *v)
{
	int ncpus = libbpf_num_possible_cpus();
	struct sluice_user_slot *all = calloc(ncpus, sizeof(*all));

	for (int c = 0; all && c < ncpus; c++)
		all[c] = *v;
	if (all)
		bpf_map_update_elem(dp.users_fd, &index, all, BPF_ANY);
	free(all);
}

/* uid's row from users_read: packets, bytes (the "other" row for uid -1). */
static struct user_row user_of(long uid)
{
	struct user_row *rows, r = {};
	size_t n;

	if (users_read(dp.users_fd, &rows, &n))
		return r;
	for (size_t i = 0; i < n; i++)
		if ((uid < 0 && rows[i].other) || (uid >= 0 && !rows[i].other && rows[i].uid == uid))
			r = rows[i];
	free(rows);
	return r;
}

/*
 * Per-user counting: BPF_PROG_TEST_RUN gives every packet a socket of the caller's uid (0,
 * root). Its slots are 0..3 (hash of 0 is 0): with them taken by other uids the packets
 * count as "other"; a slot freed is claimed; readers sum a uid over CPUs and slots.
 */
static void test_users(void)
{
	const struct pkt_spec allowed = { .dst = "198.51.100.21" };
	const struct pkt_spec denied = { .dst = "203.0.113.201" };
	struct sluice_user_slot taken = { .used = 1 }, free_slot = {};
	struct user_row before, after;
	unsigned len;

	CHECK(install_policy("enforce") == 0, "install");
	for (__u32 i = 0; i < SLUICE_USER_SLOTS + 1; i++)
		user_slot_set(i, &free_slot);
	run_frame(&allowed, &len, 0);
	after = user_of(0);
	CHECK_EQ_U64(after.stats.packets, 1, "a passed packet counts for its socket's uid");
	CHECK_EQ_U64(after.stats.bytes, len, "with its bytes");
	run_frame(&denied, &len, 0);
	CHECK_EQ_U64(user_of(0).stats.packets, 1, "a dropped one does not");

	for (__u32 i = 0; i < SLUICE_USER_PROBES; i++) {
		taken.uid = 1000 + i;
		user_slot_set(i, &taken);
	}
	before = user_of(-1);
	run_frame(&allowed, &len, 0);
	after = user_of(-1);
	CHECK_EQ_U64(after.stats.packets - before.stats.packets, 1,
		     "every probed slot taken by another uid: counted as other");
	CHECK_EQ_U64(user_of(1002).stats.packets, 0, "and not to the uids in the way");
	user_slot_set(2, &free_slot);
	before = user_of(0);
	run_frame(&allowed, &len, 0);
	CHECK_EQ_U64(user_of(0).stats.packets - before.stats.packets, 1,
		     "a slot freed on the way is claimed for the uid");
	CHECK_EQ_U64(user_of(-1).stats.packets, after.stats.packets, "other unchanged");
	/* One uid in two slots (as on two CPUs): one row, the sum. */
	taken = (struct sluice_user_slot){ .uid = 4242, .used = 1, .packets = 3, .bytes = 300 };
	user_slot_set(100, &taken);
	user_slot_set(200, &taken);
	after = user_of(4242);
	CHECK_EQ_U64(after.stats.packets, 6 * (__u64)libbpf_num_possible_cpus(),
		     "a uid in two slots on every CPU: read back as one sum");
	for (__u32 i = 0; i < SLUICE_USER_SLOTS + 1; i++)
		user_slot_set(i, &free_slot);
}

int main(void)
{
	log_init(getenv("SLUICE_TEST_VERBOSE") ? LOG_DEBUG : LOG_WARN);
	/* A network namespace of our own: the ingress tests open sockets and look them up. */
	if (unshare(CLONE_NEWNET) < 0) {
		fprintf(stderr, "cannot create a network namespace: %s (root needed)\n",
			strerror(errno));
		return 1;
	}
	if (gateway_setup()) {
		fprintf(stderr, "cannot make the test namespace a gateway (ip, sysctl)\n");
		return 1;
	}
	if (datapath_load(&dp, NULL)) {
		fprintf(stderr, "cannot load the datapath (root needed)\n");
		return 1;
	}
	/* What the daemon does at start: XDP's set of the node's own addresses. */
	if (local_addrs_sync(dp.local_addrs_fd, dp.local_gen_fd) < 0) {
		fprintf(stderr, "cannot record the namespace's addresses\n");
		return 1;
	}
	maps = datapath_policy_maps(&dp);
	test_no_policy();
	test_frames(&tc_egress);
	test_frames(&xdp);
	test_policy_switch();
	test_port_rules();
	test_port_classes_replaced();
	test_random_against_reference();
	test_overrides_in_place();
	test_packet_shapes(&tc_egress);
	test_packet_shapes(&xdp);
	test_xdp_for_the_node();
	test_ext_chain_lengths();
	test_ingress();
	test_flow_lifecycle();
	test_unparsed_default_allow();
	test_events();
	test_users();
	test_budgets(&tc_egress);
	test_budgets(&xdp);
	test_budget_slots();
	test_budget_concurrent();
	datapath_close(&dp);
	return check_summary();
}

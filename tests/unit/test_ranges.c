// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The policy's flattening into address ranges (user/policy_ranges.c), held to its
 * definition: for every address, the range search gives the decision of the longest
 * compiled prefix containing it. Hand-made edges first (the ends of the address space,
 * neighbours that merge, a missing catch-all, a bank too small), then random nested
 * policies probed at and around every prefix's first and last address.
 */
#include <errno.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <string.h>

#include "addr.h"
#include "check.h"
#include "policy.h"
#include "policy_ranges.h"

#define RANDOM_POLICIES 150
#define RANDOM_PROBES 3000

/* The definition: the longest prefix among the entries that contains dst (linear). */
static const struct sluice_policy_entry *lpm_linear(const struct compiled_policy *cp,
						    const struct sluice_addr *dst)
{
	const struct compiled_entry *best = NULL;

	for (size_t i = 0; i < cp->n; i++) {
		struct prefix p = {.addr = cp->entries[i].key.addr,
				   .prefixlen = cp->entries[i].key.prefixlen};

		if (prefix_contains(&p, dst) && (!best || p.prefixlen > best->key.prefixlen))
			best = &cp->entries[i];
	}
	return best ? &best->value : NULL;
}

static struct sluice_policy_range *bank_for(const struct compiled_policy *cp, long *n)
{
	size_t cap = 2 * cp->n + 3;
	struct sluice_policy_range *bank = calloc(cap, sizeof(*bank));

	*n = bank ? policy_flatten(cp->entries, cp->n, 0, bank, cap) : -ENOMEM;
	return bank;
}

static int compile_text(const char *text, struct compiled_policy *cp)
{
	char err[POLICY_ERROR_MAX];
	struct policy p;
	int ret = policy_parse_text("r.conf", text, &p, err);

	if (ret) {
		fprintf(stderr, "%s\n", err);
		return ret;
	}
	ret = policy_compile(&p, 1, cp);
	policy_free(&p);
	return ret;
}

/* Does the search agree with the definition at address text? */
static bool agrees_at(const struct sluice_policy_range *bank, long n,
		      const struct compiled_policy *cp, const char *text)
{
	struct sluice_addr a;
	const struct sluice_policy_entry *want, *got;

	if (addr_parse(text, &a) < 0)
		return false;
	want = lpm_linear(cp, &a);
	got = policy_ranges_decide(bank, (size_t)n, &a);
	return want && got && memcmp(want, got, sizeof(*want)) == 0;
}

static void test_edges(void)
{
	static const char *probes[] = {
		"::",
		"::1",
		"0.0.0.0",
		"10.0.0.0",
		"9.255.255.255",
		"10.255.255.255",
		"11.0.0.0",
		"10.1.0.0",
		"10.1.255.255",
		"10.2.0.0",
		"255.255.255.255",
		"ffff::",
		"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
		"fffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
		"2001:db8::",
		"2001:db8::1",
		"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
		"2001:db9::",
		"::ffff:0:0",
		"::fffe:ffff:ffff",
	};
	struct compiled_policy cp;
	struct sluice_policy_range *bank;
	long n;

	CHECK(compile_text("default deny\n"
			   "allow 10.0.0.0/8\n"
			   "deny 10.1.0.0/16\n"
			   "allow ffff::/16\n"
			   "deny ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff\n"
			   "allow 255.255.255.255\n"
			   "allow 2001:db8::/32 tcp 443\n"
			   "deny 2001:db8::1\n",
			   &cp) == 0,
	      "compile the edge policy");
	bank = bank_for(&cp, &n);
	CHECK(n > 0, "flattened: %ld", n);
	CHECK(n > 0 && bank[0].start_lo == (__u64)n, "element 0 holds the count");
	for (size_t i = 0; n > 0 && i < sizeof(probes) / sizeof(probes[0]); i++)
		CHECK(agrees_at(bank, n, &cp, probes[i]), "the search agrees at %s", probes[i]);
	for (long i = 2; i < n; i++) {
		bool ordered = bank[i - 1].start_hi < bank[i].start_hi ||
			       (bank[i - 1].start_hi == bank[i].start_hi &&
				bank[i - 1].start_lo < bank[i].start_lo);

		CHECK(ordered, "range %ld starts after range %ld", i, i - 1);
		CHECK(memcmp(&bank[i - 1].decision, &bank[i].decision, sizeof(bank[i].decision)),
		      "ranges %ld and %ld decide differently (else merged)", i - 1, i);
	}
	free(bank);

	/* An install's flags (its epoch) go into every range, and merge nothing new. */
	struct sluice_policy_range *flagged = calloc(2 * cp.n + 3, sizeof(*flagged));
	long nflagged = flagged ? policy_flatten(cp.entries, cp.n, SLUICE_POLICY_F_EPOCH, flagged,
						 2 * cp.n + 3)
				: -ENOMEM;
	bool all_flagged = nflagged == n;

	for (long i = 0; all_flagged && i < nflagged; i++)
		all_flagged = flagged[i].decision.flags & SLUICE_POLICY_F_EPOCH;
	CHECK(all_flagged, "the epoch flag is in all %ld ranges (%ld)", n, nflagged);
	free(flagged);

	/* One range too few: refused, not truncated. */
	bank = calloc(2 * cp.n + 3, sizeof(*bank));
	CHECK(bank && policy_flatten(cp.entries, cp.n, 0, bank, n - 1) == -E2BIG,
	      "a bank one range too small is refused");
	/* Without the catch-all ::/0, addresses would be left undecided: refused. */
	size_t kept = 0;
	struct compiled_entry *e = calloc(cp.n, sizeof(*e));

	for (size_t i = 0; e && i < cp.n; i++)
		if (cp.entries[i].key.prefixlen != 0)
			e[kept++] = cp.entries[i];
	CHECK(e && bank && policy_flatten(e, kept, 0, bank, 2 * cp.n + 3) == -EINVAL,
	      "entries without ::/0 are refused");
	free(e);
	free(bank);
	compiled_policy_free(&cp);

	/* The empty policy: one range, the default, everywhere. */
	CHECK(compile_text("default allow\n", &cp) == 0, "compile the empty policy");
	bank = bank_for(&cp, &n);
	CHECK(n == 1, "the empty policy is one range: %ld", n);
	CHECK(n == 1 && agrees_at(bank, n, &cp, "198.51.100.1") && agrees_at(bank, n, &cp, "::"),
	      "the empty policy decides by its default");
	free(bank);
	compiled_policy_free(&cp);
}

/* A random address inside p (host bits random), or p's first or last address, or beside. */
static struct sluice_addr probe_near(const struct prefix *p)
{
	struct sluice_addr a = p->addr;
	int how = rand() % 4;

	for (unsigned bit = p->prefixlen; bit < 128; bit++)
		if (how == 1 || (how == 0 && rand() % 2))
			a.a[bit / 8] |= 0x80 >> (bit % 8);
	if (how == 2 || how == 3) { /* one below the first, one above the last */
		if (how == 3)
			for (unsigned bit = p->prefixlen; bit < 128; bit++)
				a.a[bit / 8] |= 0x80 >> (bit % 8);
		for (int i = 15; i >= 0; i--) {
			if (how == 2 ? a.a[i]-- != 0 : ++a.a[i] != 0)
				break;
		}
	}
	return a;
}

#define PORT_POOL 8
static const __u16 port_pool[PORT_POOL] = { 22, 53, 80, 443, 2811, 50000, 51000, 65535 };

/*
 * Whole packets (address, protocol, port) decided by the filled bank the way the datapath
 * does, against compiled_decide (the compiled policy's own longest-prefix and port-class
 * semantics): the port ranges after the address ranges must decide like the port entries.
 */
static void port_probes(const struct compiled_policy *cp, int round, unsigned *disagreements,
			unsigned *checked)
{
	static const __u8 protos[] = { IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP };
	size_t cap = policy_bank_most(cp);
	struct sluice_policy_range *bank = calloc(cap, sizeof(*bank));

	if (!bank || policy_bank_fill(cp, 0, bank, cap) <= 0) {
		CHECK(0, "round %d: cannot fill a bank", round);
		free(bank);
		return;
	}
	for (int i = 0; i < 1000; i++) {
		const struct compiled_entry *e = &cp->entries[rand() % cp->n];
		struct prefix x = { .addr = e->key.addr, .prefixlen = e->key.prefixlen };
		struct sluice_addr a = probe_near(&x);
		__u8 proto = protos[rand() % 3];
		int port = rand() % 5 == 0	? POLICY_PORT_NONE
			   : rand() % 2 ? port_pool[rand() % PORT_POOL] + rand() % 3 - 1
					 : 1 + rand() % 65535;
		struct sluice_policy_entry want, got;

		if (port == 0 || port > 65535)
			port = 443;
		compiled_decide(cp, &a, proto, port, &want);
		(*checked)++;
		if (!policy_bank_decide(bank, &a, proto, port, &got) || got.rule_id != want.rule_id ||
		    got.verdict != want.verdict || got.reason != want.reason) {
			if ((*disagreements)++ < 5)
				fprintf(stderr, "round %d: proto %u port %d: bank rule %u, compiled %u\n",
					round, proto, port, got.rule_id, want.rule_id);
		}
	}
	free(bank);
}

static void test_random(void)
{
	unsigned disagreements = 0, probes = 0, port_disagreements = 0, port_checked = 0;

	srand(20261128);
	for (int round = 0; round < RANDOM_POLICIES; round++) {
		struct compiled_policy cp;
		struct sluice_policy_range *bank;
		struct policy p;
		long n;

		policy_init(&p);
		p.default_verdict = rand() % 2 ? SLUICE_VERDICT_ALLOW : SLUICE_VERDICT_DENY;
		for (int r = 0, nrules = 1 + rand() % 60; r < nrules; r++) {
			bool v4 = rand() % 2;
			struct prefix x = {.prefixlen = v4 ? 96 + rand() % 33 : rand() % 129};
			struct l4_match m = {0};

			/* Nested often: start from an earlier rule's prefix. */
			if (p.nrules && rand() % 2 &&
			    addr_is_v4(&p.rules[rand() % p.nrules].dst.addr) == v4)
				x.addr = p.rules[rand() % p.nrules].dst.addr;
			else
				for (int i = 0; i < 16; i++)
					x.addr.a[i] = (__u8)rand();
			if (v4) {
				memset(x.addr.a, 0, 10);
				x.addr.a[10] = x.addr.a[11] = 0xff;
			}
			for (unsigned bit = x.prefixlen; bit < 128; bit++)
				x.addr.a[bit / 8] &= ~(0x80 >> (bit % 8));
			if (rand() % 4 == 0) {
				m.nprotos = 1 + rand() % 2;
				m.protos[0] = IPPROTO_TCP;
				m.protos[1] = IPPROTO_UDP;
				for (m.nports = 0; m.nports < rand() % 3; m.nports++) {
					__u16 lo = port_pool[rand() % PORT_POOL];

					m.ports[m.nports].lo = lo;
					m.ports[m.nports].hi = rand() % 2 ? lo : lo + rand() % 2000;
				}
			}
			policy_add_rules(&p,
					 rand() % 2 ? SLUICE_VERDICT_ALLOW : SLUICE_VERDICT_DENY,
					 &x, 1, m.nprotos ? &m : NULL, "r", "r", 0);
		}
		if (policy_compile(&p, 7, &cp)) {
			CHECK(0, "round %d: cannot compile", round);
			policy_free(&p);
			continue;
		}
		bank = bank_for(&cp, &n);
		CHECK(n > 0, "round %d: flattened (%ld)", round, n);
		port_probes(&cp, round, &port_disagreements, &port_checked);
		for (int i = 0; n > 0 && i < RANDOM_PROBES; i++) {
			const struct compiled_entry *e = &cp.entries[rand() % cp.n];
			struct prefix x = {.addr = e->key.addr, .prefixlen = e->key.prefixlen};
			struct sluice_addr a = probe_near(&x);
			const struct sluice_policy_entry *want = lpm_linear(&cp, &a);
			const struct sluice_policy_entry *got = policy_ranges_decide(bank, n, &a);

			probes++;
			if (!want || !got || memcmp(want, got, sizeof(*want))) {
				char text[ADDR_STRLEN];

				addr_format(&a, text, sizeof(text));
				if (disagreements++ < 5)
					fprintf(stderr,
						"round %d: %s: search says rule %u, definition "
						"%u\n",
						round, text, got ? got->rule_id : 0,
						want ? want->rule_id : 0);
			}
		}
		free(bank);
		compiled_policy_free(&cp);
		policy_free(&p);
	}
	CHECK(disagreements == 0, "the search agrees with the definition on %u of %u probes",
	      probes - disagreements, probes);
	CHECK(port_disagreements == 0 && port_checked > 100000,
	      "with port classes, the bank decides like the compiled policy on %u of %u packets",
	      port_checked - port_disagreements, port_checked);
	printf("random policies: %d, probes: %u, disagreements: %u; packets with ports: %u, "
	       "disagreements: %u\n",
	       RANDOM_POLICIES, probes, disagreements, port_checked, port_disagreements);
}

int main(void)
{
	test_edges();
	test_random();
	return check_summary();
}

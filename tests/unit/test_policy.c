// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Unit tests of the policy parser, the address parser, and the compiler held against the
 * reference decision on random policies.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "check.h"
#include "policy.h"

static void test_prefix_parse(void)
{
	static const struct {
		const char *text;
		int ok;
		unsigned prefixlen;
		const char *formatted;
	} cases[] = {
		{ "192.0.2.0/24", 1, 120, "192.0.2.0/24" },
		{ "192.0.2.7", 1, 128, "192.0.2.7/32" },
		{ "0.0.0.0/0", 1, 96, "0.0.0.0/0" },
		{ "2001:db8::/32", 1, 32, "2001:db8::/32" },
		{ "2001:db8::1", 1, 128, "2001:db8::1/128" },
		{ "::/0", 1, 0, "::/0" },
		{ "192.0.2.1/24", 0, 0, NULL },  /* host bits set */
		{ "192.0.2.0/33", 0, 0, NULL },  /* length out of range */
		{ "2001:db8::/129", 0, 0, NULL },
		{ "192.0.2.0/", 0, 0, NULL },
		{ "192.0.2.0/-1", 0, 0, NULL },
		{ "192.0.2.0/24x", 0, 0, NULL },
		{ "300.0.2.0/24", 0, 0, NULL },
		{ "::ffff:192.0.2.1", 0, 0, NULL }, /* mapped: write the IPv4 form */
		{ "example.org", 0, 0, NULL },
		{ "", 0, 0, NULL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct prefix p;
		char err[128], buf[ADDR_STRLEN];
		size_t col;
		int ret = prefix_parse(cases[i].text, &p, err, sizeof(err), &col);

		CHECK((ret == 0) == cases[i].ok, "prefix_parse(\"%s\") returned %d (%s)",
		      cases[i].text, ret, ret ? err : "ok");
		if (ret || !cases[i].ok)
			continue;
		CHECK_EQ_U64(p.prefixlen, cases[i].prefixlen, cases[i].text);
		prefix_format(&p, buf, sizeof(buf));
		CHECK(strcmp(buf, cases[i].formatted) == 0, "format %s gave %s", cases[i].text, buf);
	}
}

static void test_parse_ok(void)
{
	const char *text = "# a comment line\n"
			   "mode audit   # trailing comment\n"
			   "\n"
			   "default allow\n"
			   "\tdeny 203.0.113.0/24\n"
			   "allow 2001:db8:a::/48#no space before the comment\n"
			   "deny 198.51.100.7\n";
	char err[POLICY_ERROR_MAX] = "";
	struct policy p;
	int ret = policy_parse_text("t.conf", text, &p, err);

	CHECK(ret == 0, "parse failed: %s", err);
	if (ret)
		return;
	CHECK(p.mode == SLUICE_MODE_AUDIT, "mode");
	CHECK(p.default_verdict == SLUICE_VERDICT_ALLOW, "default");
	CHECK_EQ_U64(p.nrules, 3, "rule count");
	CHECK(strcmp(p.rules[0].name, "t.conf:5") == 0, "rule identity is FILE:LINE, got %s",
	      p.rules[0].name);
	CHECK(p.rules[0].action == SLUICE_VERDICT_DENY && p.rules[0].dst.prefixlen == 120,
	      "deny 203.0.113.0/24");
	CHECK(p.rules[1].action == SLUICE_VERDICT_ALLOW && p.rules[1].dst.prefixlen == 48,
	      "allow 2001:db8:a::/48");
	CHECK(p.rules[2].dst.prefixlen == 128, "a bare address is a /32");
	policy_free(&p);

	/* An empty policy is valid: enforce, default deny. */
	ret = policy_parse_text("empty.conf", "# nothing\n", &p, err);
	CHECK(ret == 0 && p.mode == SLUICE_MODE_ENFORCE && p.default_verdict == SLUICE_VERDICT_DENY &&
		      p.nrules == 0,
	      "empty policy defaults");
	policy_free(&p);
}

static void test_parse_errors(void)
{
	static const struct {
		const char *text;
		const char *message; /* exact */
	} cases[] = {
		{ "deny 203.0.113.1/24\n",
		  "p.conf:1:6: address has bits set beyond the prefix length: '203.0.113.1/24'" },
		{ "mode enforce\n  allow 198.51.100.0/40\n",
		  "p.conf:2:22: prefix length must be 0..32: '198.51.100.0/40'" },
		{ "allow 2001:db8::/48 tcp 443\n",
		  "p.conf:1:21: unexpected 'tcp': this version accepts only 'allow ADDRESS[/LEN]'" },
		{ "mode enforce\nmode audit\n", "p.conf:2:1: mode is already set at line 1" },
		{ "mode strict\n", "p.conf:1:6: unknown mode 'strict' (expected enforce or audit)" },
		{ "default maybe\n", "p.conf:1:9: unknown default 'maybe' (expected allow or deny)" },
		{ "default\n", "p.conf:1:1: expected 'default allow' or 'default deny'" },
		{ "permit 192.0.2.0/24\n",
		  "p.conf:1:1: unknown statement 'permit' (expected mode, default, allow or deny)" },
		{ "deny\n", "p.conf:1:1: expected a destination after 'deny'" },
		{ "deny ::ffff:192.0.2.1\n",
		  "p.conf:1:6: IPv4-mapped IPv6 address: write the IPv4 address instead: "
		  "'::ffff:192.0.2.1'" },
		{ "deny 192.0.2.0/24\x01\n", "p.conf:1:18: unexpected character 0x01" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[POLICY_ERROR_MAX] = "";
		struct policy p;
		int ret = policy_parse_text("p.conf", cases[i].text, &p, err);

		CHECK(ret != 0, "\"%s\" should be rejected", cases[i].text);
		CHECK(strcmp(err, cases[i].message) == 0, "message\n  got:  %s\n  want: %s", err,
		      cases[i].message);
		CHECK(p.nrules == 0 && p.rules == NULL, "a rejected policy leaves nothing behind");
	}

	/* A nonexistent file names the file and the reason. */
	char err[POLICY_ERROR_MAX];
	struct policy p;
	CHECK(policy_parse_file("/nonexistent/sluice.conf", &p, err) == -ENOENT, "missing file");
	CHECK(strstr(err, "/nonexistent/sluice.conf") && strstr(err, "No such file"), "got %s", err);
}

/* Longest-prefix match over compiled entries, the way the kernel's trie answers. */
static const struct sluice_policy_entry *compiled_lookup(const struct compiled_policy *cp,
							 const struct sluice_addr *a)
{
	const struct compiled_entry *best = NULL;

	for (size_t i = 0; i < cp->n; i++) {
		struct prefix p = { .addr = cp->entries[i].key.addr,
				    .prefixlen = cp->entries[i].key.prefixlen };

		if (prefix_contains(&p, a) && (!best || p.prefixlen > best->key.prefixlen))
			best = &cp->entries[i];
	}
	return best ? &best->value : NULL;
}

static struct sluice_addr random_addr(bool v4, const struct policy *p)
{
	struct sluice_addr a = {};

	/* Half of the time start from a rule's prefix so that rules actually match. */
	if (p->nrules && rand() % 2) {
		a = p->rules[rand() % p->nrules].dst.addr;
		if (v4 != addr_is_v4(&a))
			a = (struct sluice_addr){};
	}
	if (v4) {
		a.a[10] = a.a[11] = 0xff;
		memset(a.a, 0, 10);
		for (int i = 12 + rand() % 4; i < 16; i++)
			a.a[i] = rand() % 2 ? (__u8)rand() : a.a[i];
	} else {
		a.a[0] = 0x20;
		a.a[1] = 0x01;
		a.a[2] = 0x0d;
		a.a[3] = 0xb8;
		for (int i = 4 + rand() % 12; i < 16; i++)
			a.a[i] = rand() % 2 ? (__u8)rand() : a.a[i];
	}
	return a;
}

static void random_rule(struct policy *p)
{
	bool v4 = rand() % 2;
	unsigned len = v4 ? 96 + 8 + rand() % 25 : (rand() % 8 == 0 ? rand() % 32 : 16 + rand() % 113);
	struct prefix pre = { .prefixlen = len };

	pre.addr = random_addr(v4, p);
	if (!v4 && len < 32) /* short IPv6 prefixes: anything, including ::/0 */
		memset(pre.addr.a, 0, 16);
	for (unsigned bit = len; bit < 128; bit++)
		pre.addr.a[bit / 8] &= ~(0x80 >> (bit % 8));
	if (!v4 && addr_is_v4(&pre.addr))
		return;
	policy_add_rule(p, rand() % 2 ? SLUICE_VERDICT_ALLOW : SLUICE_VERDICT_DENY, &pre, "r", 0);
}

/* The compiler must agree with the reference decision everywhere. */
static void test_compile_matches_reference(void)
{
	unsigned mismatches = 0, decided = 0;

	srand(4242);
	for (int round = 0; round < 200; round++) {
		struct compiled_policy cp;
		struct policy p;

		policy_init(&p);
		p.mode = round % 3 == 0 ? SLUICE_MODE_AUDIT : SLUICE_MODE_ENFORCE;
		p.default_verdict = round % 2 ? SLUICE_VERDICT_ALLOW : SLUICE_VERDICT_DENY;
		for (int r = rand() % 40; r > 0; r--)
			random_rule(&p);
		if (policy_compile(&p, 7, &cp)) {
			CHECK(0, "compile failed");
			policy_free(&p);
			continue;
		}
		for (int i = 0; i < 300; i++) {
			struct sluice_addr a = random_addr(rand() % 2, &p);
			struct sluice_policy_entry want;
			const struct sluice_policy_entry *got = compiled_lookup(&cp, &a);

			policy_decide(&p, &a, &want);
			decided++;
			if (!got || got->verdict != want.verdict || got->rule_id != want.rule_id ||
			    got->reason != want.reason || got->flags != want.flags ||
			    got->generation != 7)
				mismatches++;
		}
		compiled_policy_free(&cp);
		policy_free(&p);
	}
	CHECK(mismatches == 0, "%u of %u random decisions differ from the reference", mismatches,
	      decided);
}

static void test_decision_semantics(void)
{
	char err[POLICY_ERROR_MAX];
	struct sluice_policy_entry d;
	struct sluice_addr a;
	struct policy p;
	const char *text = "default allow\n"
			   "allow 198.51.100.0/24\n"
			   "deny 198.51.100.128/25\n" /* longer prefix beats the /24 allow */
			   "deny 203.0.113.0/24\n"
			   "allow 203.0.113.0/24\n" /* equal prefix: deny wins */
			   "deny ::/0\n";           /* all IPv6, never IPv4 */

	if (policy_parse_text("s.conf", text, &p, err)) {
		CHECK(0, "%s", err);
		return;
	}
	addr_parse("198.51.100.200", &a);
	policy_decide(&p, &a, &d);
	CHECK(d.verdict == SLUICE_VERDICT_DENY && d.rule_id == 1, "/25 deny inside /24 allow");
	addr_parse("198.51.100.1", &a);
	policy_decide(&p, &a, &d);
	CHECK(d.verdict == SLUICE_VERDICT_ALLOW && d.rule_id == 0, "/24 allow");
	addr_parse("203.0.113.9", &a);
	policy_decide(&p, &a, &d);
	CHECK(d.verdict == SLUICE_VERDICT_DENY && d.rule_id == 2, "deny beats allow on a tie");
	addr_parse("192.0.2.1", &a);
	policy_decide(&p, &a, &d);
	CHECK(d.verdict == SLUICE_VERDICT_ALLOW && d.reason == SLUICE_REASON_DEFAULT,
	      "::/0 does not match IPv4");
	addr_parse("2001:db8::1", &a);
	policy_decide(&p, &a, &d);
	CHECK(d.verdict == SLUICE_VERDICT_DENY && d.rule_id == 4, "::/0 matches IPv6");
	p.mode = SLUICE_MODE_AUDIT;
	policy_decide(&p, &a, &d);
	CHECK(d.verdict == SLUICE_VERDICT_AUDIT && (d.flags & SLUICE_POLICY_F_AUDIT),
	      "audit mode turns deny into audit");
	policy_free(&p);
}

int main(void)
{
	test_prefix_parse();
	test_parse_ok();
	test_parse_errors();
	test_decision_semantics();
	test_compile_matches_reference();
	return check_summary();
}

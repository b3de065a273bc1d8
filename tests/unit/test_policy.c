// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Unit tests of the policy parser, the address parser, and the compiler held against the
 * reference decision on random policies.
 */
#include <errno.h>
#include <stdarg.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "check.h"
#include "policy.h"
#include "budget.h"
#include "units.h"


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

/*
 * addr_format and prefix_format write addresses by hand: held to inet_ntop on addresses
 * with every pattern of zero groups (where "::" goes, ties, the IPv4-compatible and
 * -mapped forms) and random ones.
 */
static void test_format_matches_inet_ntop(void)
{
	unsigned long long rng = 0x5eed;
	size_t wrong = 0, total = 0;

	for (unsigned i = 0; i < 256 * 64; i++) {
		struct sluice_addr a = {};
		struct prefix p;
		char got[ADDR_STRLEN], want[INET6_ADDRSTRLEN], want_p[ADDR_STRLEN + 8];
		unsigned zeros = i % 256;

		for (int w = 0; w < 8; w++) {
			rng = rng * 6364136223846793005ull + 1442695040888963407ull;
			unsigned v = (unsigned)(rng >> 33) & 0xffff;

			/* Small values too, for the digit counts; 0xffff for the mapped form. */
			if (i / 256 % 4 == 1)
				v &= 0xf << (4 * (rng >> 60 & 3));
			if (i / 256 % 4 == 2 && w == 5)
				v = 0xffff;
			if (zeros >> w & 1)
				v = 0;
			a.a[2 * w] = v >> 8;
			a.a[2 * w + 1] = v & 0xff;
		}
		if (addr_is_v4(&a))
			inet_ntop(AF_INET, &a.a[12], want, sizeof(want));
		else
			inet_ntop(AF_INET6, a.a, want, sizeof(want));
		addr_format(&a, got, sizeof(got));
		total++;
		if (strcmp(got, want) != 0 && wrong++ < 5)
			CHECK(0, "addr_format wrote %s, inet_ntop %s", got, want);
		p.addr = a;
		p.prefixlen = addr_is_v4(&a) ? 96 + i % 33 : i % 129;
		snprintf(want_p, sizeof(want_p), "%s/%u", want,
			 addr_is_v4(&a) ? p.prefixlen - 96 : p.prefixlen);
		prefix_format(&p, got, sizeof(got));
		if (strcmp(got, want_p) != 0 && wrong++ < 5)
			CHECK(0, "prefix_format wrote %s, want %s", got, want_p);
	}
	CHECK(wrong == 0, "%zu of %zu addresses formatted unlike inet_ntop", wrong, total);
	/* Cut to fit, as snprintf did. */
	struct prefix p;
	char small[8];
	size_t col;

	prefix_parse("2001:db8::/32", &p, NULL, 0, &col);
	prefix_format(&p, small, sizeof(small));
	CHECK(strcmp(small, "2001:db") == 0, "prefix_format into 8 bytes gave %s", small);
}

/* A step of a 64-bit linear congruential generator: the tests' own, seeded, repeatable. */
static unsigned long long next_rand(unsigned long long *rng)
{
	*rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
	return *rng;
}

/* The characters addresses are made of, '.' and ':' twice as likely. */
static const char addr_chars[] = "0123456789abcdefABCDEF:.:.";

/* Delete, insert or replace one character of text (of size `size`) at random. */
static void edit_text(unsigned long long *rng, char *text, size_t size)
{
	size_t len = strlen(text), at = (next_rand(rng) >> 33) % (len + 1);
	char c = addr_chars[(*rng >> 20) % (sizeof(addr_chars) - 1)];

	switch (*rng >> 62) {
	case 0: /* delete */
		if (at < len)
			memmove(text + at, text + at + 1, len - at);
		break;
	case 1: /* insert */
		if (len + 1 < size) {
			memmove(text + at + 1, text + at, len - at + 1);
			text[at] = c;
		}
		break;
	default: /* replace */
		if (at < len)
			text[at] = c;
	}
}

/*
 * A string to parse: three times in four a valid address (IPv4 or IPv6, many zero
 * groups or none) with up to two characters edited, else random address characters.
 */
static void random_addr_text(unsigned long long *rng, char text[48])
{
	unsigned long long r = next_rand(rng);
	struct sluice_addr a = {};

	if (r >> 62 == 0) {
		size_t len = (r >> 33) % 24;

		for (size_t k = 0; k < len; k++)
			text[k] = addr_chars[(next_rand(rng) >> 33) % (sizeof(addr_chars) - 1)];
		text[len] = '\0';
		return;
	}
	for (int b = 0; b < 16; b++)
		a.a[b] = (r >> (b * 3 % 61)) & (r >> 40 & 1 ? 0xff : 0x01);
	if (r >> 41 & 1) { /* IPv4 */
		memset(a.a, 0, 10);
		a.a[10] = a.a[11] = 0xff;
		inet_ntop(AF_INET, &a.a[12], text, 48);
	} else {
		inet_ntop(AF_INET6, a.a, text, 48);
	}
	for (unsigned e = r >> 42 & 3; e > 0 && e < 3; e--)
		edit_text(rng, text, 48);
}

/* The reference: inet_pton, IPv4 first, into the mapped form. */
static bool pton_addr(const char *text, struct sluice_addr *out)
{
	struct in6_addr v6;
	struct in_addr v4;

	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, text, &v4) == 1) {
		out->a[10] = out->a[11] = 0xff;
		memcpy(&out->a[12], &v4, 4);
		return true;
	}
	if (inet_pton(AF_INET6, text, &v6) == 1) {
		memcpy(out->a, &v6, 16);
		return true;
	}
	return false;
}

/*
 * The address parser is sluice's own (inet_pton was a fifth of the time to read a large
 * policy): held to inet_pton, the reference for what an address is, on edge cases and on
 * many random strings built from the characters addresses are made of, mostly valid
 * addresses with a character changed, added or removed.
 */
static void test_addr_parse_matches_inet_pton(void)
{
	static const char *const edges[] = {
		"::", "::1", "1::", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8",
		"1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7::8", "1::2:3:4:5:6:7:8", ":::", "1:::2", ":1",
		"1:", "1:2::3::4", "::ffff:1.2.3.4", "::1.2.3.4", "1::1.2.3.4", "::1.2.3", "::01.2.3.4",
		"1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:7:1.2.3.4", "1:2:3:4:5::1.2.3.4", "::a1.2.3.4",
		"::1234.1.2.3", "::1.2.3.4:5", "00001::", "0001::", "FfFf::", "abcd:EF01::",
		"1.2.3.4", "0.0.0.0", "255.255.255.255", "256.1.1.1", "1.2.3.04", "01.2.3.4",
		"1.2.3.4.5", "1..2.3", ".1.2.3", "1.2.3.", "1.2.3", "1234.1.2.3", "", ":", ".", "::.",
		"1:2:3:4:5:6:7:",
	};
	size_t nedges = sizeof(edges) / sizeof(edges[0]);
	unsigned long long rng = 0xadd7;
	size_t wrong = 0, total = 0, accepted = 0;

	for (size_t i = 0; i < nedges + 400000; i++) {
		struct sluice_addr got, want;
		char text[48];
		bool ok_want, ok_got;

		if (i < nedges)
			snprintf(text, sizeof(text), "%s", edges[i]);
		else
			random_addr_text(&rng, text);
		ok_want = pton_addr(text, &want);
		memset(&got, 0, sizeof(got));
		ok_got = addr_parse(text, &got) == 0;
		total++;
		accepted += ok_want;
		if ((ok_got != ok_want || (ok_want && memcmp(&got, &want, sizeof(got)) != 0)) &&
		    wrong++ < 5)
			CHECK(0, "addr_parse(\"%s\") %s, inet_pton %s", text,
			      ok_got ? "accepts" : "refuses", ok_want ? "accepts" : "refuses");
	}
	CHECK(wrong == 0, "%zu of %zu strings parsed unlike inet_pton", wrong, total);
	CHECK(accepted > total / 4 && accepted < total * 3 / 4,
	      "%zu of %zu strings valid: the test should try both kinds", accepted, total);
}

/*
 * prefix_text_canonical says whether a prefix as written is what prefix_format writes, so
 * that the parser formats only those that are not (it may say no for a canonical dotted
 * quad: those are formatted, to no harm): held to formatting on many spellings of
 * addresses rich in zero groups (every placement of "::", padded and upper-case groups,
 * dotted quads, lengths with leading zeros or none).
 */
#define SPELLINGS_MAX 64

/* Ways to write one address. */
struct spellings {
	char text[SPELLINGS_MAX][48];
	int n;
};

static void add_spelling(struct spellings *sp, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void add_spelling(struct spellings *sp, const char *fmt, ...)
{
	va_list ap;

	if (sp->n == SPELLINGS_MAX)
		return;
	va_start(ap, fmt);
	vsnprintf(sp->text[sp->n++], sizeof(sp->text[0]), fmt, ap);
	va_end(ap);
}

/* Groups w as group_fmt writes each, "::" standing for groups [from, to) (from < 0: none). */
static void add_v6_spelling(struct spellings *sp, const unsigned w[8], int from, int to,
			    const char *group_fmt)
{
	char t[64], group[8];
	size_t n = 0;

	for (int i = 0; i < 8; i++) {
		if (i == from)
			n += snprintf(t + n, sizeof(t) - n, "::");
		if (i >= from && i < to)
			continue;
		snprintf(group, sizeof(group), group_fmt, w[i]);
		n += snprintf(t + n, sizeof(t) - n, "%s%s", group, i < 7 && i + 1 != from ? ":" : "");
	}
	add_spelling(sp, "%s", t);
}

/*
 * prefix_text_canonical says whether a prefix as written is what prefix_format writes, so
 * that the parser formats only those that are not (it may say no for a canonical dotted
 * quad: those are formatted, to no harm). Held to formatting on many spellings of
 * addresses rich in zero groups: every placement of "::", plain, padded and upper-case
 * groups, dotted quads, lengths written plainly, with a leading zero or not at all.
 */
static void test_canonical_text(void)
{
	static const char *const group_fmts[] = { "%x", "%04x", "%X" };
	unsigned long long rng = 0xca70;
	size_t wrong = 0, total = 0, canonical = 0;

	for (int round = 0; round < 6000; round++) {
		unsigned long long r = next_rand(&rng);
		unsigned len = r >> 40 & 1 ? 128 : (r >> 41) % 129, w[8];
		struct spellings sp = { .n = 0 };
		struct prefix p = { .prefixlen = len };
		char canon[ADDR_STRLEN];

		for (int i = 0; i < 8; i++) {
			unsigned g = r >> (i * 7 + 3) & 1 ? 0 : (r >> (i * 5)) & (i % 3 ? 0xffff : 0x0f0f);

			if (round % 7 == 0 && i < 6) /* the IPv4-compatible and -mapped forms */
				g = i == 5 && round % 2 ? 0xffff : 0;
			p.addr.a[2 * i] = g >> 8;
			p.addr.a[2 * i + 1] = g & 0xff;
		}
		for (unsigned bit = len; bit < 128; bit++)
			p.addr.a[bit / 8] &= ~(0x80 >> (bit % 8));
		for (int i = 0; i < 8; i++)
			w[i] = p.addr.a[2 * i] << 8 | p.addr.a[2 * i + 1];
		addr_format(&p.addr, canon, sizeof(canon));
		add_spelling(&sp, "%s", canon);
		for (size_t f = 0; f < sizeof(group_fmts) / sizeof(group_fmts[0]); f++) {
			add_v6_spelling(&sp, w, -1, -1, group_fmts[f]);
			for (int from = 0; from < 8; from++)
				for (int to = from + 1; to <= 8 && w[to - 1] == 0; to++)
					add_v6_spelling(&sp, w, from, to, group_fmts[f]);
		}
		if (!w[0] && !w[1] && !w[2] && !w[3] && !w[4] && (!w[5] || w[5] == 0xffff))
			add_spelling(&sp, "::%s%u.%u.%u.%u", w[5] ? "ffff:" : "", p.addr.a[12],
				     p.addr.a[13], p.addr.a[14], p.addr.a[15]);
		for (int t = 0; t < sp.n; t++) {
			for (int form = 0; form < 3; form++) {
				char text[64], err[128];
				struct prefix q;
				size_t col;

				if (form == 2 && len != 128) /* no length: /128 */
					continue;
				if (form == 0)
					snprintf(text, sizeof(text), "%s/%u", sp.text[t], len);
				else if (form == 1)
					snprintf(text, sizeof(text), "%s/0%u", sp.text[t], len);
				else
					snprintf(text, sizeof(text), "%s", sp.text[t]);
				if (prefix_parse(text, &q, err, sizeof(err), &col))
					continue;
				prefix_format(&q, canon, sizeof(canon));
				total++;
				canonical += strcmp(text, canon) == 0;
				/* Never yes for a spelling that formats otherwise; no only for dotted quads. */
				if (prefix_text_canonical(text, &q) !=
					    (strcmp(text, canon) == 0 && !strchr(text, '.')) &&
				    wrong++ < 5)
					CHECK(0, "prefix_text_canonical(\"%s\") is wrong (formatted: %s)",
					      text, canon);
			}
		}
	}
	CHECK(wrong == 0, "%zu of %zu spellings judged wrongly", wrong, total);
	CHECK(canonical > total / 100 && canonical < total / 2,
	      "%zu of %zu spellings canonical: the test should try both kinds", canonical, total);
	/* IPv4: the address as parsed is canonical; the length must be written, plainly. */
	static const struct {
		const char *text;
		bool canonical;
	} v4[] = {
		{ "192.0.2.0/24", true }, { "192.0.2.0/024", false }, { "192.0.2.7", false },
		{ "0.0.0.0/0", true },    { "0.0.0.0/00", false },    { "198.51.100.1/32", true },
	};
	for (size_t i = 0; i < sizeof(v4) / sizeof(v4[0]); i++) {
		struct prefix q;
		size_t col;

		CHECK(prefix_parse(v4[i].text, &q, NULL, 0, &col) == 0 &&
			      prefix_text_canonical(v4[i].text, &q) == v4[i].canonical,
		      "prefix_text_canonical(\"%s\")", v4[i].text);
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
	CHECK(strcmp(policy_rule_name(&p, &p.rules[0]), "t.conf:5") == 0,
	      "rule identity is FILE:LINE, got %s", policy_rule_name(&p, &p.rules[0]));
	CHECK(p.rules[0].action == SLUICE_VERDICT_DENY && p.rules[0].dst.prefixlen == 120,
	      "deny 203.0.113.0/24");
	CHECK(p.rules[1].action == SLUICE_VERDICT_ALLOW && p.rules[1].dst.prefixlen == 48,
	      "allow 2001:db8:a::/48");
	CHECK(p.rules[2].dst.prefixlen == 128, "a bare address is a /32");
	CHECK(p.essential && p.replies, "essential and replies default to on");
	policy_free(&p);

	/* An empty policy is valid: enforce, default deny. */
	ret = policy_parse_text("empty.conf", "", &p, err);
	CHECK(ret == 0 && p.mode == SLUICE_MODE_ENFORCE && p.default_verdict == SLUICE_VERDICT_DENY &&
		      p.nrules == 0,
	      "empty policy defaults");
	policy_free(&p);
}

/* The statements of SPEC section 3, each one parsed into what it means. */
static void test_parse_language(void)
{
	const char *text = "mode enforce\n"
			   "default deny\n"
			   "essential off\n"
			   "replies off\n"
			   "set campus   { 10.0.0.0/8, 172.16.0.0/12, fd00::/8 }\n"
			   "set partners {\n"
			   "    192.0.2.0/24,      # site A\n"
			   "    2001:db8:100::/48  # site B, no comma needed at line ends\n"
			   "    @campus\n"
			   "}\n"
			   "allow @campus\n"
			   "allow @partners tcp 443,2811,50000-51000   name globus\n"
			   "allow 198.51.100.53 udp, tcp 53 name resolver\n"
			   "deny  10.66.0.0/16\n"
			   "deny any 6,17 25\n"
			   "allow 2001:db8::/32 icmpv6\n"
			   "allow 203.0.113.0/24 sctp 9899\n";
	char err[POLICY_ERROR_MAX] = "";
	struct policy p;
	const struct l4_match *m;

	if (policy_parse_text("lang.conf", text, &p, err)) {
		CHECK(0, "parse failed: %s", err);
		return;
	}
	CHECK(!p.essential && !p.replies, "essential off, replies off");
	CHECK_EQ_U64(p.nsets, 2, "sets");
	CHECK_EQ_U64(p.sets[0].n, 3, "campus members");
	CHECK_EQ_U64(p.sets[1].n, 5, "partners members (two plus @campus flattened)");
	CHECK_EQ_U64(p.nidents, 7, "rules written");
	/* 3 (campus) + 5 (partners) + 1 + 1 + 2 (any: IPv4 and IPv6) + 1 + 1 destinations */
	CHECK_EQ_U64(p.nrules, 14, "rule destinations");
	CHECK(strcmp(p.idents[1].name, "globus") == 0, "name globus: %s", p.idents[1].name);
	CHECK(strcmp(p.idents[0].name, "lang.conf:11") == 0, "derived name %s", p.idents[0].name);
	m = &p.matches[p.idents[1].match];
	CHECK(m->nprotos == 1 && m->protos[0] == IPPROTO_TCP && m->nports == 3 &&
		      m->ports[2].lo == 50000 && m->ports[2].hi == 51000,
	      "tcp 443,2811,50000-51000");
	m = &p.matches[p.idents[2].match];
	CHECK(m->nprotos == 2 && m->protos[0] == IPPROTO_UDP && m->protos[1] == IPPROTO_TCP &&
		      m->nports == 1 && m->ports[0].lo == 53,
	      "udp, tcp 53");
	m = &p.matches[p.idents[4].match];
	CHECK(m->nprotos == 2 && m->protos[0] == 6 && m->protos[1] == 17, "numeric protocols");
	CHECK(p.idents[3].match == 0, "a rule without protocol matches everything");

	struct sluice_policy_entry d;
	struct sluice_addr a;

	addr_parse("192.0.2.10", &a);
	policy_decide(&p, &a, IPPROTO_TCP, 2811, &d);
	CHECK(d.verdict == SLUICE_VERDICT_ALLOW && d.rule_id == 1, "globus allows tcp/2811");
	policy_decide(&p, &a, IPPROTO_TCP, 22, &d);
	CHECK(d.verdict == SLUICE_VERDICT_DENY && d.reason == SLUICE_REASON_DEFAULT,
	      "globus does not allow tcp/22");
	policy_decide(&p, &a, IPPROTO_TCP, 25, &d);
	CHECK(d.verdict == SLUICE_VERDICT_DENY && d.rule_id == 4, "deny any 6,17 25");
	addr_parse("10.66.1.1", &a);
	policy_decide(&p, &a, IPPROTO_UDP, 123, &d);
	CHECK(d.verdict == SLUICE_VERDICT_DENY && d.rule_id == 3, "/16 deny beats @campus");
	addr_parse("10.1.1.1", &a);
	policy_decide(&p, &a, IPPROTO_UDP, 123, &d);
	CHECK(d.verdict == SLUICE_VERDICT_ALLOW && d.rule_id == 0, "@campus allows");
	policy_decide(&p, &a, IPPROTO_TCP, 25, &d);
	CHECK(d.verdict == SLUICE_VERDICT_ALLOW && d.rule_id == 0,
	      "the longer prefix wins even against a matching port rule on a shorter one");
	policy_free(&p);
}

/* What policy_format writes parses back to the same policy (the snapshot relies on it). */
static void test_format_roundtrip(void)
{
	const char *text = "set s { 192.0.2.0/24, 2001:db8:100::/48 }\n"
			   "allow 2001:db8:a::/0000000000000000000000000000000000000000000000000000"
			   "00000000000000000000047\n" /* a token longer than any stored target */
			   "allow @s tcp,udp 53,50000-51000 name dns\n"
			   "deny any icmp\n";
	char err[POLICY_ERROR_MAX], *out = NULL;
	size_t len = 0;
	struct policy a, b;
	FILE *f;

	if (policy_parse_text("r.conf", text, &a, err)) {
		CHECK(0, "%s", err);
		return;
	}
	f = open_memstream(&out, &len);
	policy_format(&a, f);
	fclose(f);
	CHECK(policy_parse_text("snapshot", out, &b, err) == 0, "formatted policy parses: %s", err);
	CHECK(a.nrules == b.nrules && a.nidents == b.nidents && a.nsets == b.nsets,
	      "same shape after a round trip");
	for (size_t i = 0; i < a.nrules && i < b.nrules; i++)
		CHECK(a.rules[i].dst.prefixlen == b.rules[i].dst.prefixlen &&
			      memcmp(&a.rules[i].dst.addr, &b.rules[i].dst.addr, 16) == 0 &&
			      a.rules[i].action == b.rules[i].action,
		      "rule %zu survives the round trip", i);
	CHECK(a.rules[0].dst.prefixlen == 47, "zero-padded /47 read as /47");
	free(out);
	policy_free(&a);
	policy_free(&b);
}

/* include: relative to the including file, nested, cycles refused. */
static void test_include(void)
{
	char dir[] = "/tmp/sluice-unit-XXXXXX", path[256], err[POLICY_ERROR_MAX];
	struct policy p;
	FILE *f;

	if (!mkdtemp(dir)) {
		CHECK(0, "mkdtemp");
		return;
	}
#define WRITE(name, text)                                                                          \
	do {                                                                                       \
		snprintf(path, sizeof(path), "%s/%s", dir, name);                                  \
		f = fopen(path, "w");                                                              \
		fputs(text, f);                                                                    \
		fclose(f);                                                                         \
	} while (0)
	mkdir(strcat(strcpy(path, dir), "/sub"), 0700);
	WRITE("main.conf", "default allow\ninclude sub/sets.conf\ndeny @bad\n");
	WRITE("sub/sets.conf", "set bad { 203.0.113.0/24 }\ninclude more.conf\n");
	WRITE("sub/more.conf", "deny 198.51.100.0/24\n");
	snprintf(path, sizeof(path), "%s/main.conf", dir);
	CHECK(policy_parse_file(path, &p, err) == 0 && p.nrules == 2 && p.nsets == 1,
	      "nested includes relative to the including file: %s", err);
	CHECK(p.nidents == 2 && strcmp(p.idents[0].name, "more.conf:1") == 0,
	      "an included rule is named after its own file: %s",
	      p.nidents ? p.idents[0].name : "");
	policy_free(&p);

	/* Two files included under one spelling give their rules the same default names. */
	mkdir(strcat(strcpy(path, dir), "/other"), 0700);
	mkdir(strcat(strcpy(path, dir), "/other/sub"), 0700);
	WRITE("sub/x.conf", "\nallow 203.0.113.0/24\n");
	WRITE("other/sub/x.conf", "allow 2001:db8::/32\nallow 2001:db8:1::/48\n");
	WRITE("other/inc.conf", "include sub/x.conf\n");
	WRITE("twice.conf", "include other/inc.conf\ninclude sub/x.conf\n");
	snprintf(path, sizeof(path), "%s/twice.conf", dir);
	CHECK(policy_parse_file(path, &p, err) == -EINVAL, "same default name from two files");
	CHECK(strstr(err, "/sub/x.conf:2:1: this rule's identity 'sub/x.conf:2' is already used at "
			  "line 2: give it a name") != NULL, "message: %s", err);
	/* Not a default name: "p.conf:01" (a default name has no leading zero), "p.conf:3". */
	CHECK(policy_parse_text("p.conf", "allow 192.0.2.0/24\nallow 198.51.100.0/24 name p.conf:01\n"
			  "allow 203.0.113.0/24 name p.conf:3\nallow 2001:db8::/32 name p.conf\n",
			  &p, err) == 0 && p.nidents == 4, "names like default ones: %s", err);
	policy_free(&p);

	WRITE("loop.conf", "include loop2.conf\n");
	WRITE("loop2.conf", "deny 192.0.2.0/24\ninclude loop.conf\n");
	snprintf(path, sizeof(path), "%s/loop.conf", dir);
	CHECK(policy_parse_file(path, &p, err) == -EINVAL, "include cycle rejected");
	CHECK(strstr(err, "loop2.conf:2:9: include cycle: ") != NULL, "cycle message: %s", err);

	/* Text input has no directory to read from. */
	CHECK(policy_parse_text("t.conf", "include x.conf\n", &p, err) == -EINVAL &&
		      strcmp(err, "t.conf:1:1: include is not available here") == 0,
	      "%s", err);
#undef WRITE
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	CHECK(system(path) == 0, "cleanup");
}

/* A huge file is refused after a bounded read, in bounded memory. */
static void test_huge_file(void)
{
	char path[] = "/tmp/sluice-huge-XXXXXX", err[POLICY_ERROR_MAX];
	static char line[4096];
	struct rusage before, after;
	struct policy p;
	int fd = mkstemp(path);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;

	if (!f) {
		CHECK(0, "mkstemp");
		return;
	}
	memset(line, '#', sizeof(line) - 1);
	line[sizeof(line) - 2] = '\n';
	for (size_t written = 0; written < 100u << 20; written += sizeof(line) - 1)
		fwrite(line, 1, sizeof(line) - 1, f);
	fclose(f);
	getrusage(RUSAGE_SELF, &before);
	CHECK(policy_parse_file(path, &p, err) == -EINVAL, "100 MB policy rejected");
	getrusage(RUSAGE_SELF, &after);
	CHECK(strstr(err, ": policy larger than 64 MiB") != NULL, "message: %s", err);
	CHECK(after.ru_maxrss - before.ru_maxrss < 8 * 1024, "memory grew by %ld KiB",
	      after.ru_maxrss - before.ru_maxrss);
	unlink(path);
}

static void test_parse_errors(void)
{
	static const struct {
		const char *text;
		const char *message; /* exact */
	} cases[] = {
		{ "permit 192.0.2.0/24\n",
		  "p.conf:1:1: unknown statement 'permit' (expected mode, default, set, allow, deny, "
		  "budget, essential, replies or include)" },
		{ "deny 10.0.0.1/8\n", "p.conf:1:6: '10.0.0.1/8' has host bits set: did you mean 10.0.0.0/8?" },
		{ "deny 203.0.113.1/24\n",
		  "p.conf:1:6: '203.0.113.1/24' has host bits set: did you mean 203.0.113.0/24?" },
		{ "mode enforce\n  allow 198.51.100.0/40\n",
		  "p.conf:2:22: prefix length in '198.51.100.0/40' must be 0..32" },
		{ "allow 2001:db8::/129\n", "p.conf:1:18: prefix length in '2001:db8::/129' must be 0..128" },
		{ "allow 203.0.113.300\n", "p.conf:1:7: '203.0.113.300' is not an IPv4 or IPv6 address" },
		{ "allow 2001:db8::zz/64\n", "p.conf:1:7: '2001:db8::zz/64' is not an IPv4 or IPv6 address" },
		{ "deny ::ffff:192.0.2.1\n",
		  "p.conf:1:6: IPv4-mapped address '::ffff:192.0.2.1': write 192.0.2.1 instead" },
		{ "allow 192.0.2.0/24 tcp 0\n",
		  "p.conf:1:24: port 0 is not a valid destination port (1-65535)" },
		{ "allow 192.0.2.0/24 tcp 65536\n", "p.conf:1:24: port 65536 is out of range (1-65535)" },
		{ "allow 192.0.2.0/24 udp 2000-1000\n",
		  "p.conf:1:24: reversed port range 2000-1000: write 1000-2000" },
		{ "allow 192.0.2.0/24 tcp 80-\n", "p.conf:1:27: expected a port number, not ''" },
		{ "allow 192.0.2.0/24 tcp http\n", "p.conf:1:24: expected a port number, not 'http'" },
		{ "allow 192.0.2.0/24 tcp 80,\n", "p.conf:1:26: expected a port or port range after ','" },
		{ "allow 192.0.2.0/24 gre\n",
		  "p.conf:1:20: unknown protocol 'gre' (expected tcp, udp, icmp, icmpv6, sctp or a "
		  "number 0-255)" },
		{ "allow 192.0.2.0/24 256\n", "p.conf:1:20: protocol number 256 is out of range (0-255)" },
		{ "allow 192.0.2.0/24 icmp 8\n",
		  "p.conf:1:25: ports apply only to tcp, udp and sctp; 'icmp' has none" },
		{ "allow 192.0.2.0/24 tcp,,udp\n", "p.conf:1:24: expected a protocol, not ','" },
		{ "allow @nowhere\n", "p.conf:1:7: set @nowhere is not defined (sets must be defined before use)" },
		{ "set a { 192.0.2.0/24 }\nset a { 198.51.100.0/24 }\n",
		  "p.conf:2:5: set @a is already defined at line 1" },
		{ "set a { 192.0.2.0/24,\n  198.51.100.0/24\n",
		  "p.conf:1:1: set @a is not closed (missing '}')" },
		{ "set a 192.0.2.0/24\n", "p.conf:1:7: expected '{' after 'set a'" },
		{ "set a { @a }\n", "p.conf:1:9: set @a cannot contain itself" },
		{ "set a { 192.0.2.0/24 } deny\n", "p.conf:1:24: unexpected 'deny' after '}'" },
		{ "set a { , 192.0.2.0/24 }\n", "p.conf:1:9: expected an address, prefix or @set before ','" },
		{ "set a/b { }\n", "p.conf:1:5: invalid set name 'a/b' (letters, digits, '_', '-', '.', ':')" },
		{ "mode enforce\nmode audit\n", "p.conf:2:1: mode is already set at line 1" },
		{ "mode strict\n", "p.conf:1:6: unknown mode 'strict' (expected enforce or audit)" },
		{ "default maybe\n", "p.conf:1:9: unknown default 'maybe' (expected allow or deny)" },
		{ "default\n", "p.conf:1:1: expected 'default allow' or 'default deny'" },
		{ "essential yes\n", "p.conf:1:11: expected on or off, not 'yes'" },
		{ "replies on\nreplies off\n", "p.conf:2:1: replies is already set at line 1" },
		{ "deny\n",
		  "p.conf:1:1: expected a destination after 'deny' (address, prefix, @set or any)" },
		{ "deny host example.org\n", "p.conf:1:6: host names are not supported yet" },
		{ "allow 192.0.2.0/24 tcp 443 name\n", "p.conf:1:28: expected a name after 'name'" },
		{ "allow 192.0.2.0/24 name a\nallow 198.51.100.0/24 name a\n",
		  "p.conf:2:28: name 'a' is already used at line 1" },
		/* Given names and default names (FILE:LINE) share one space. */
		{ "allow 192.0.2.0/24\nallow 198.51.100.0/24 name p.conf:1\n",
		  "p.conf:2:28: name 'p.conf:1' is already used at line 1" },
		{ "allow 192.0.2.0/24 name p.conf:2\nallow 198.51.100.0/24\n",
		  "p.conf:2:1: this rule's identity 'p.conf:2' is already used at line 1: give it a name" },
		{ "allow 192.0.2.0/24 name x y\n", "p.conf:1:27: unexpected 'y'" },
		{ "deny 192.0.2.0/24\x01\n", "p.conf:1:18: unexpected character 0x01" },
		{ "deny 192.0.2.0/24\n\0deny 10.0.0.0/8\n", NULL }, /* NUL: see below */
		{ "include\n", "p.conf:1:1: expected 'include PATH'" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[POLICY_ERROR_MAX] = "";
		struct policy p;
		int ret;

		if (!cases[i].message)
			continue;
		ret = policy_parse_text("p.conf", cases[i].text, &p, err);
		CHECK(ret != 0, "\"%s\" should be rejected", cases[i].text);
		CHECK(strcmp(err, cases[i].message) == 0, "message\n  got:  %s\n  want: %s", err,
		      cases[i].message);
		CHECK(p.nrules == 0 && p.rules == NULL, "a rejected policy leaves nothing behind");
	}

	/* A NUL byte (text input stops at it, so go through a file). */
	char path[] = "/tmp/sluice-nul-XXXXXX", err[POLICY_ERROR_MAX];
	struct policy p;
	int fd = mkstemp(path);

	CHECK(fd >= 0 && write(fd, "deny 192.0.2.0/24\ndeny 10\0.0.0.0/8\n", 35) == 35, "write");
	close(fd);
	CHECK(policy_parse_file(path, &p, err) == -EINVAL, "NUL rejected");
	CHECK(strstr(err, ":2:8: NUL byte in policy") != NULL, "NUL message: %s", err);
	unlink(path);

	/* A line too long. */
	static char longline[5000];
	memset(longline, 'a', sizeof(longline) - 1);
	CHECK(policy_parse_text("p.conf", longline, &p, err) == -EINVAL &&
		      strcmp(err, "p.conf:1:4097: line longer than 4096 bytes") == 0,
	      "%s", err);

	/* A nonexistent file names the file and the reason. */
	CHECK(policy_parse_file("/nonexistent/sluice.conf", &p, err) == -ENOENT, "missing file");
	CHECK(strstr(err, "/nonexistent/sluice.conf") && strstr(err, "No such file"), "got %s", err);
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

static const __u8 test_protos[] = { IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, IPPROTO_SCTP, 47 };

/* Ports from a small pool so that rules overlap and probes hit range edges. */
static __u16 random_port(void)
{
	static const __u16 pool[] = { 22, 25, 53, 80, 443, 444, 2811, 50000, 50500, 51000, 65535 };

	return rand() % 4 ? pool[rand() % (sizeof(pool) / sizeof(pool[0]))] : 1 + rand() % 65535;
}

static void random_match(struct l4_match *m)
{
	memset(m, 0, sizeof(*m));
	if (rand() % 2)
		return; /* any */
	m->nprotos = 1 + rand() % 2;
	for (int i = 0; i < m->nprotos; i++)
		m->protos[i] = test_protos[rand() % 4];
	if (rand() % 3 == 0)
		return; /* protocols only */
	for (int i = 0; i < m->nprotos; i++)
		if (!proto_has_ports(m->protos[i]))
			return;
	m->nports = 1 + rand() % 3;
	for (int i = 0; i < m->nports; i++) {
		__u16 x = random_port(), y = rand() % 3 ? x : random_port();

		m->ports[i].lo = x < y ? x : y;
		m->ports[i].hi = x < y ? y : x;
	}
}

static void random_rule(struct policy *p)
{
	bool v4 = rand() % 2;
	unsigned len = v4 ? 96 + 8 + rand() % 25 : (rand() % 8 == 0 ? rand() % 32 : 16 + rand() % 113);
	struct prefix pre = { .prefixlen = len };
	struct l4_match m;

	pre.addr = random_addr(v4, p);
	if (!v4 && len < 32) /* short IPv6 prefixes: anything, including ::/0 */
		memset(pre.addr.a, 0, 16);
	for (unsigned bit = len; bit < 128; bit++)
		pre.addr.a[bit / 8] &= ~(0x80 >> (bit % 8));
	if (!v4 && addr_is_v4(&pre.addr))
		return;
	random_match(&m);
	policy_add_rules(p, rand() % 2 ? SLUICE_VERDICT_ALLOW : SLUICE_VERDICT_DENY, &pre, 1, &m, "r",
			 "r", 0);
}

/* The compiler (trie + port classes, evaluated as the datapath does) agrees with the reference. */
static void test_compile_matches_reference(void)
{
	unsigned mismatches = 0, decided = 0, with_classes = 0;

	srand(4242);
	for (int round = 0; round < 300; round++) {
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
		with_classes += cp.nclasses > 0;
		for (int i = 0; i < 300; i++) {
			struct sluice_addr a = random_addr(rand() % 2, &p);
			__u8 proto = test_protos[rand() % 5];
			int port = proto_has_ports(proto) && rand() % 8 ? random_port() : POLICY_PORT_NONE;
			struct sluice_policy_entry want, got;

			policy_decide(&p, &a, proto, port, &want);
			compiled_decide(&cp, &a, proto, port, &got);
			decided++;
			if (got.verdict != want.verdict || got.rule_id != want.rule_id ||
			    got.reason != want.reason || got.flags != want.flags || got.generation != 7) {
				if (mismatches++ < 5) {
					char buf[ADDR_STRLEN];

					addr_format(&a, buf, sizeof(buf));
					fprintf(stderr, "round %d: %s proto %u port %d: got %s rule %u, want %s rule %u\n",
						round, buf, proto, port, verdict_name(got.verdict), got.rule_id,
						verdict_name(want.verdict), want.rule_id);
				}
			}
		}
		compiled_policy_free(&cp);
		policy_free(&p);
	}
	CHECK(mismatches == 0, "%u of %u random decisions differ from the reference", mismatches,
	      decided);
	CHECK(with_classes > 100, "only %u of 300 random policies exercised port classes",
	      with_classes);
}

/* FNV-1a over bytes, continuing from h. */
static __u64 digest(__u64 h, const void *data, size_t len)
{
	const unsigned char *c = data;

	for (size_t i = 0; i < len; i++)
		h = (h ^ c[i]) * 0x100000001b3ull;
	return h;
}

/*
 * The compiled form itself, not only its decisions: the kernel receives these entries in
 * this order (the order makes installing fast) and these port classes, and a faster
 * compiler must not change them. Random policies with overlapping prefixes, port rules and
 * catch-alls, small and large, digested; the digest is the compiler's output before it was
 * made faster (the same policies compiled by the previous implementation).
 */
static void test_compile_output_unchanged(void)
{
	static const struct prefix any[2] = {
		{ .addr = { .a = { [10] = 0xff, [11] = 0xff } }, .prefixlen = 96 },
		{ .prefixlen = 0 },
	};
	__u64 h = 0xcbf29ce484222325ull;
	size_t entries = 0, ports = 0;

	srand(777);
	for (int round = 0; round < 240; round++) {
		struct compiled_policy cp;
		struct policy p;
		int nrules = round % 40 == 39 ? 20000 : rand() % (round % 4 ? 60 : 400);

		policy_init(&p);
		p.mode = round % 3 == 0 ? SLUICE_MODE_AUDIT : SLUICE_MODE_ENFORCE;
		p.default_verdict = round % 2 ? SLUICE_VERDICT_ALLOW : SLUICE_VERDICT_DENY;
		for (int r = nrules; r > 0; r--) {
			if (rand() % 50 == 0) {
				struct l4_match m;
				size_t n = 1 + rand() % 2; /* `any`, or one of its halves */

				random_match(&m);
				policy_add_rules(&p, rand() % 2 ? SLUICE_VERDICT_ALLOW : SLUICE_VERDICT_DENY,
						 &any[n == 2 ? 0 : rand() % 2], n, &m, "a", "any", 0);
			} else {
				random_rule(&p);
			}
		}
		if (policy_compile(&p, 9 + round, &cp)) {
			CHECK(0, "compile failed");
			policy_free(&p);
			continue;
		}
		h = digest(h, &cp.n, sizeof(cp.n));
		h = digest(h, &cp.nports, sizeof(cp.nports));
		h = digest(h, &cp.nclasses, sizeof(cp.nclasses));
		h = digest(h, cp.entries, cp.n * sizeof(*cp.entries));
		h = digest(h, cp.ports, cp.nports * sizeof(*cp.ports));
		entries += cp.n;
		ports += cp.nports;
		compiled_policy_free(&cp);
		policy_free(&p);
	}
	CHECK(entries > 50000 && ports > 10000, "only %zu entries, %zu port entries compiled",
	      entries, ports);
	CHECK(h == 0x575d693977d37d7bull, "compiled output digest %#llx changed", (unsigned long long)h);
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
	policy_decide(&p, &a, IPPROTO_TCP, 443, &d);
	CHECK(d.verdict == SLUICE_VERDICT_DENY && d.rule_id == 1, "/25 deny inside /24 allow");
	addr_parse("198.51.100.1", &a);
	policy_decide(&p, &a, IPPROTO_TCP, 443, &d);
	CHECK(d.verdict == SLUICE_VERDICT_ALLOW && d.rule_id == 0, "/24 allow");
	addr_parse("203.0.113.9", &a);
	policy_decide(&p, &a, IPPROTO_TCP, 443, &d);
	CHECK(d.verdict == SLUICE_VERDICT_DENY && d.rule_id == 2, "deny beats allow on a tie");
	addr_parse("192.0.2.1", &a);
	policy_decide(&p, &a, IPPROTO_TCP, 443, &d);
	CHECK(d.verdict == SLUICE_VERDICT_ALLOW && d.reason == SLUICE_REASON_DEFAULT,
	      "::/0 does not match IPv4");
	addr_parse("2001:db8::1", &a);
	policy_decide(&p, &a, IPPROTO_TCP, 443, &d);
	CHECK(d.verdict == SLUICE_VERDICT_DENY && d.rule_id == 4, "::/0 matches IPv6");
	p.mode = SLUICE_MODE_AUDIT;
	policy_decide(&p, &a, IPPROTO_TCP, 443, &d);
	CHECK(d.verdict == SLUICE_VERDICT_AUDIT && (d.flags & SLUICE_POLICY_F_AUDIT),
	      "audit mode turns deny into audit");
	policy_free(&p);
}

/* `essential off` and `replies off` reach every compiled entry as flags; on sets none. */
static void test_policy_flags(void)
{
	static const struct {
		const char *text;
		__u8 flags;
	} cases[] = {
		{ "default deny\nallow 192.0.2.0/24\n", 0 },
		{ "essential off\nallow 192.0.2.0/24\n", SLUICE_POLICY_F_NO_ESSENTIAL },
		{ "replies off\nallow 192.0.2.0/24\n", SLUICE_POLICY_F_NO_REPLIES },
		{ "mode audit\nessential off\nreplies off\nallow 192.0.2.0/24 tcp 22\n",
		  SLUICE_POLICY_F_AUDIT | SLUICE_POLICY_F_NO_ESSENTIAL | SLUICE_POLICY_F_NO_REPLIES },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[POLICY_ERROR_MAX];
		struct compiled_policy cp;
		struct sluice_policy_entry d;
		struct sluice_addr a;
		struct policy p;
		bool all = true;

		if (policy_parse_text("f.conf", cases[i].text, &p, err) ||
		    policy_compile(&p, 1, &cp)) {
			CHECK(0, "case %zu: %s", i, err);
			continue;
		}
		for (size_t k = 0; k < cp.n; k++)
			all &= cp.entries[k].value.flags == cases[i].flags;
		CHECK(all && cp.n > 0, "case %zu: every entry carries flags %#x", i, cases[i].flags);
		addr_parse("192.0.2.1", &a);
		policy_decide(&p, &a, IPPROTO_TCP, 22, &d);
		CHECK(d.flags == cases[i].flags, "case %zu: reference flags %#x", i, d.flags);
		compiled_policy_free(&cp);
		policy_free(&p);
	}
}

static void test_sizes(void)
{
	static const struct {
		const char *text;
		int ret;
		unsigned long long bytes;
	} cases[] = {
		{ "1B", 0, 1 },
		{ "20MB", 0, 20000000ull },
		{ "20MiB", 0, 20ull << 20 },
		{ "1KB", 0, 1000 },
		{ "1KiB", 0, 1024 },
		{ "3GB", 0, 3000000000ull },
		{ "10TiB", 0, 10ull << 40 },
		{ "2PB", 0, 2000000000000000ull },
		{ "16383PiB", 0, 16383ull << 50 },
		{ "16384PiB", -ERANGE, 0 }, /* 2^64 */
		{ "18446744073709551615B", 0, 18446744073709551615ull },
		{ "18446744073709551616B", -ERANGE, 0 },
		{ "99999999999999999999999PB", -ERANGE, 0 },
		{ "0MB", -EINVAL, 0 },
		{ "20", -EINVAL, 0 },
		{ "20mb", -EINVAL, 0 },
		{ "20 MB", -EINVAL, 0 },
		{ "MB", -EINVAL, 0 },
		{ "-1MB", -EINVAL, 0 },
		{ "1.5GB", -EINVAL, 0 },
		{ "", -EINVAL, 0 },
	};
	char buf[32];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t bytes = 0;
		size_t col;
		int ret = parse_size(cases[i].text, &bytes, &col);

		CHECK(ret == cases[i].ret, "parse_size(\"%s\") returned %d, want %d", cases[i].text,
		      ret, cases[i].ret);
		if (ret == 0 && cases[i].ret == 0)
			CHECK_EQ_U64(bytes, cases[i].bytes, cases[i].text);
	}
	format_size(20000000ull, buf, sizeof(buf));
	CHECK(strcmp(buf, "20MB") == 0, "format_size 20MB gave %s", buf);
	format_size(10ull << 40, buf, sizeof(buf));
	CHECK(strcmp(buf, "10TiB") == 0, "format_size 10TiB gave %s", buf);
	format_size(1500, buf, sizeof(buf));
	CHECK(strcmp(buf, "1500B") == 0, "format_size 1500 gave %s", buf);
	format_duration(3600, buf, sizeof(buf));
	CHECK(strcmp(buf, "1h") == 0, "format_duration 3600 gave %s", buf);
	format_duration(90, buf, sizeof(buf));
	CHECK(strcmp(buf, "90s") == 0, "format_duration 90 gave %s", buf);
}

static void test_budget_parse(void)
{
	const char *text = "set partners { 192.0.2.0/24, 2001:db8:100::/48 }\n"
			   "budget @partners 10TiB per 1d alert\n"
			   "budget any 50GiB per 1h block name big\n"
			   "budget user 200GiB per 1d alert\n"
			   "budget node 1PB per 1w alert\n"
			   "budget 198.51.100.7 20MB per 5s block\n";
	static const struct {
		const char *text;
		const char *message; /* exact */
	} errors[] = {
		{ "budget\n",
		  "p.conf:1:1: expected 'budget TARGET SIZE per DURATION alert|block [name NAME]'" },
		{ "budget any\n", "p.conf:1:11: expected a size after the target (e.g. 20MB, 10TiB)" },
		{ "budget any 20XB per 1h block\n",
		  "p.conf:1:14: invalid size '20XB' (a number > 0 and B, KB, MB, GB, TB, PB, KiB, MiB, "
		  "GiB, TiB or PiB)" },
		{ "budget any 0MB per 1h block\n",
		  "p.conf:1:13: invalid size '0MB' (a number > 0 and B, KB, MB, GB, TB, PB, KiB, MiB, "
		  "GiB, TiB or PiB)" },
		{ "budget any 16384PiB per 1h block\n",
		  "p.conf:1:12: size '16384PiB' is more than 2^64-1 bytes" },
		{ "budget any 20MB in 1h block\n", "p.conf:1:17: expected 'per DURATION' after the size" },
		{ "budget any 20MB per\n", "p.conf:1:20: expected a duration after 'per' (e.g. 1h, 1d)" },
		{ "budget any 20MB per 0s block\n",
		  "p.conf:1:21: invalid window '0s' (1s to 8w: a number and s, m, h, d or w)" },
		{ "budget any 20MB per 9w block\n",
		  "p.conf:1:21: invalid window '9w' (1s to 8w: a number and s, m, h, d or w)" },
		{ "budget any 20MB per 1h\n", "p.conf:1:23: expected alert or block" },
		{ "budget any 20MB per 1h drop\n", "p.conf:1:24: expected alert or block, not 'drop'" },
		{ "budget any 20MB per 1h block name\n", "p.conf:1:30: expected a name after 'name'" },
		{ "budget any 20MB per 1h block extra\n", "p.conf:1:30: unexpected 'extra'" },
		{ "budget @nope 20MB per 1h block\n",
		  "p.conf:1:8: set @nope is not defined (sets must be defined before use)" },
		{ "budget 10.0.0.1/8 20MB per 1h block\n",
		  "p.conf:1:8: '10.0.0.1/8' has host bits set: did you mean 10.0.0.0/8?" },
		{ "budget any 1MB per 1h block name a\nbudget node 1MB per 1h block name a\n",
		  "p.conf:2:1: budget name 'a' is already used at line 1" },
		{ "budget 192.0.2.0/24 1MB per 1h block\nbudget 192.0.2.0/25 1MB per 1h block\n"
		  "budget any 1MB per 1h block\nbudget user 1MB per 1h block\n"
		  "budget node 1MB per 1h block\n",
		  "p.conf:5:1: 5 budgets would apply to destinations in 192.0.2.0/25 (at most 4, user "
		  "and node budgets included)" },
	};
	char err[POLICY_ERROR_MAX];
	struct policy p, q;
	char *out = NULL;
	size_t len = 0;
	FILE *f;

	CHECK(policy_parse_text("p.conf", text, &p, err) == 0, "budget policy: %s", err);
	CHECK_EQ_U64(p.nbudgets, 5, "budgets parsed");
	if (p.nbudgets == 5) {
		CHECK(strcmp(p.budgets[0].name, "p.conf:2") == 0, "identity FILE:LINE, got %s",
		      p.budgets[0].name);
		CHECK_EQ_U64(p.budgets[0].limit, 10ull << 40, "10TiB");
		CHECK_EQ_U64(p.budgets[0].window_s, 86400, "1d");
		CHECK_EQ_U64(p.budgets[0].nprefixes, 2, "@partners prefixes");
		CHECK_EQ_U64(p.budgets[0].block, 0, "alert");
		CHECK(strcmp(p.budgets[1].name, "big") == 0, "named budget, got %s", p.budgets[1].name);
		CHECK_EQ_U64(p.budgets[1].block, 1, "block");
		CHECK_EQ_U64(p.budgets[1].nprefixes, 2, "any is IPv4 and IPv6");
		CHECK_EQ_U64(p.budgets[2].kind, SLUICE_BUDGET_USER, "user");
		CHECK_EQ_U64(p.budgets[3].kind, SLUICE_BUDGET_NODE, "node");
		CHECK_EQ_U64(p.budgets[3].limit, 1000000000000000ull, "1PB");
		CHECK(strcmp(p.budgets[4].target, "198.51.100.7/32") == 0, "target canonical: %s",
		      p.budgets[4].target);
		CHECK_EQ_U64(p.budgets[4].window_s, 5, "5s");
	}

	/* Written back and read again: the same budgets (the snapshot overrides rely on). */
	f = open_memstream(&out, &len);
	policy_format(&p, f);
	fclose(f);
	CHECK(policy_parse_text("again.conf", out, &q, err) == 0, "formatted policy: %s", err);
	CHECK_EQ_U64(q.nbudgets, p.nbudgets, "budgets after format");
	for (size_t i = 0; i < q.nbudgets && i < p.nbudgets; i++) {
		CHECK(strcmp(q.budgets[i].name, p.budgets[i].name) == 0, "name %zu", i);
		CHECK_EQ_U64(q.budgets[i].limit, p.budgets[i].limit, "limit after format");
		CHECK_EQ_U64(q.budgets[i].window_s, p.budgets[i].window_s, "window after format");
		CHECK_EQ_U64(q.budgets[i].block, p.budgets[i].block, "action after format");
		CHECK_EQ_U64(q.budgets[i].nprefixes, p.budgets[i].nprefixes, "prefixes after format");
	}
	free(out);
	policy_free(&q);
	policy_free(&p);

	for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++) {
		int ret = policy_parse_text("p.conf", errors[i].text, &p, err);

		CHECK(ret == -EINVAL, "'%s' must be rejected (got %d)", errors[i].text, ret);
		CHECK(strcmp(err, errors[i].message) == 0, "'%s':\n   got  %s\n   want %s",
		      errors[i].text, err, errors[i].message);
		if (ret == 0)
			policy_free(&p);
	}
}

/* The budgets a destination gets from the compiled trie (longest prefix wins), as a mask. */
static __u64 compiled_budget_mask(const struct compiled_budgets *cb, const char *addr)
{
	const struct budget_target *best = NULL;
	struct sluice_addr a;
	__u64 mask = 0;

	addr_parse(addr, &a);
	for (size_t i = 0; i < cb->ntargets; i++)
		if (prefix_contains(&cb->targets[i].prefix, &a) &&
		    (!best || cb->targets[i].prefix.prefixlen > best->prefix.prefixlen))
			best = &cb->targets[i];
	if (!best)
		return 0;
	for (int k = 0; k < cb->sets[best->set].n; k++)
		mask |= 1ull << cb->sets[best->set].budget[k];
	return mask;
}

static void test_budget_compile(void)
{
	const char *text = "set s { 192.0.2.0/24, 198.51.100.0/24 }\n"
			   "budget @s 1MB per 1h alert\n"
			   "budget 192.0.2.128/25 1MB per 1h block\n"
			   "budget 2001:db8::/32 1MB per 1h block\n";
	char err[POLICY_ERROR_MAX];
	struct compiled_budgets cb;
	struct policy p;

	CHECK(policy_parse_text("p.conf", text, &p, err) == 0, "budget policy: %s", err);
	CHECK(budget_compile(&p, &cb, err, sizeof(err)) == 0, "compile: %s", err);
	CHECK_EQ_U64(compiled_budget_mask(&cb, "192.0.2.1"), 0x1, "192.0.2.1: @s only");
	CHECK_EQ_U64(compiled_budget_mask(&cb, "192.0.2.200"), 0x3, "192.0.2.200: @s and /25");
	CHECK_EQ_U64(compiled_budget_mask(&cb, "198.51.100.9"), 0x1, "198.51.100.9: @s");
	CHECK_EQ_U64(compiled_budget_mask(&cb, "2001:db8::1"), 0x4, "2001:db8::1: v6 budget");
	CHECK_EQ_U64(compiled_budget_mask(&cb, "203.0.113.1"), 0, "203.0.113.1: none");
	CHECK_EQ_U64(cb.defs[1].block, 1, "block flag compiled");
	CHECK_EQ_U64(cb.defs[1].window_ns, 3600000000000ull, "window in ns");
	CHECK_EQ_U64(cb.defs[0].id, budget_id("p.conf:2"), "id from the identity");
	compiled_budgets_free(&cb);
	policy_free(&p);

	/* User and node budgets reach every destination, on top of the destination's own. */
	text = "budget 192.0.2.0/24 1MB per 1h block\nbudget user 1GB per 1d alert\n";
	CHECK(policy_parse_text("p.conf", text, &p, err) == 0, "budget policy: %s", err);
	CHECK(budget_compile(&p, &cb, err, sizeof(err)) == 0, "compile: %s", err);
	CHECK_EQ_U64(compiled_budget_mask(&cb, "192.0.2.1"), 0x3, "192.0.2.1: own + user");
	CHECK_EQ_U64(compiled_budget_mask(&cb, "203.0.113.1"), 0x2, "203.0.113.1: user");
	CHECK_EQ_U64(compiled_budget_mask(&cb, "2001:db8::1"), 0x2, "2001:db8::1: user");
	compiled_budgets_free(&cb);
	policy_free(&p);
}

int main(void)
{
	test_prefix_parse();
	test_format_matches_inet_ntop();
	test_addr_parse_matches_inet_pton();
	test_canonical_text();
	test_parse_ok();
	test_parse_language();
	test_include();
	test_format_roundtrip();
	test_parse_errors();
	test_huge_file();
	test_decision_semantics();
	test_compile_matches_reference();
	test_compile_output_unchanged();
	test_policy_flags();
	test_sizes();
	test_budget_parse();
	test_budget_compile();
	return check_summary();
}

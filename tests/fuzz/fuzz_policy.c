// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * libFuzzer target for the policy parser and compiler: the input is policy text. Beyond
 * what the sanitizers catch (memory errors, leaks, undefined behaviour), it aborts when an
 * invariant the rest of sluice relies on breaks:
 *   - a rejected policy has a "fuzz.conf:LINE:COL: message" error and leaves nothing behind;
 *   - an accepted policy is well-formed (rules point at existing identities and matches,
 *     prefixes are clean, identities are unique: counters and events are keyed by them);
 *   - it compiles (unless too big), every trie and port-trie key is clean (no bits beyond
 *     its prefix length: the kernel's LPM trie would treat it as another key than the
 *     oracle does), each key appears once (a second insert would fail or overwrite), the
 *     catch-alls and every port class's fallback are there, every value is well-formed;
 *   - for addresses derived from the input (edges of the rules' prefixes, the addresses
 *     just outside them, pseudo-random ones) and protocol/port pairs derived from the
 *     rules (edges of their port ranges), a lookup over the compiled entries done the way
 *     the datapath does it agrees with policy_decide (and with compiled_decide);
 *   - compiling only the part under a prefix (what an in-place override rewrites) gives
 *     the full compile's entries there, deciding alike;
 *   - parsing the same text twice, and parsing what policy_format writes back, give the
 *     same compiled policy.
 *
 * Built only with -DSLUICE_FUZZ=ON; see tests/fuzz/CMakeLists.txt and scripts/test.sh.
 */
#define _GNU_SOURCE /* open_memstream */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include "addr.h"
#include "policy.h"
#include "policy_ranges.h"
#include "budget.h"

#define FUZZ_FILE "fuzz.conf"
/* Not 0 (the datapath's "no policy") and not small: a stray 0 or 1 in a value shows. */
#define FUZZ_GENERATION 0x8badf00du
/* Inputs beyond this are not interesting for a line-based grammar; they only slow runs. */
#define FUZZ_INPUT_MAX (64 * 1024)
/* Rules the decision check starts from (4 addresses each), and pseudo-random addresses. */
#define PROBE_RULES 16
#define PROBE_RANDOM 8
#define PROBE_MAX (PROBE_RULES * 4 + PROBE_RANDOM)
/* Protocol/port pairs tried on every probe address. */
#define PROBE_L4_MAX 32

/* --- the sandbox for `include` (see sandbox.h) ------------------------------------------ */

FILE *fuzz_fopen(const char *path, const char *mode)
{
	(void)path;
	(void)mode;
	errno = EACCES;
	return NULL;
}

int fuzz_open(const char *path, int flags, ...)
{
	(void)path;
	(void)flags;
	errno = EACCES;
	return -1;
}

int fuzz_openat(int dirfd, const char *path, int flags, ...)
{
	(void)dirfd;
	(void)path;
	(void)flags;
	errno = EACCES;
	return -1;
}

/* --- helpers ---------------------------------------------------------------------------- */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fuzz_policy: invariant violated: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

/*
 * The harness's own loops run thousands of times per input; coverage feedback from them
 * would only steer the fuzzer towards the harness and cost most of the time per input.
 */
#define HARNESS __attribute__((no_sanitize("coverage")))

/* Are all bits of data (len bytes) from bit `from` on zero? */
HARNESS static bool bits_clear(const __u8 *data, size_t len, unsigned from)
{
	for (size_t i = from / 8; i < len; i++) {
		__u8 host = i == from / 8 ? (__u8)(0xff >> (from % 8)) : 0xff;

		if (data[i] & host)
			return false;
	}
	return true;
}

/* Do a and b agree on their first `bits` bits? */
HARNESS static bool bits_equal(const __u8 *a, const __u8 *b, unsigned bits)
{
	unsigned full = bits / 8, rest = bits % 8;
	__u8 m = (__u8)(0xff << (8 - rest));

	for (unsigned i = 0; i < full; i++)
		if (a[i] != b[i])
			return false;
	return rest == 0 || ((a[full] ^ b[full]) & m) == 0;
}

static void fmt_prefix(const struct sluice_addr *a, unsigned prefixlen, char *buf, size_t len)
{
	struct prefix p = { .addr = *a, .prefixlen = prefixlen };

	prefix_format(&p, buf, len);
}

/* splitmix64: the pseudo-random probes must depend on the input only. */
static uint64_t mix(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static __u8 with_mode(const struct policy *p, __u8 verdict)
{
	return p->mode == SLUICE_MODE_AUDIT && verdict == SLUICE_VERDICT_DENY ? SLUICE_VERDICT_AUDIT
									      : verdict;
}

/* --- a rejected policy ------------------------------------------------------------------- */

static unsigned count_lines(const char *text)
{
	unsigned n = 0;

	for (const char *c = text; *c; c++)
		n += *c == '\n';
	return n + 1; /* the last line, terminated or not (an error at EOF names it) */
}

/* Read a decimal number of at most 9 digits at *s; false if there is none. */
static bool read_number(const char **s, unsigned long *out)
{
	unsigned digits = 0;

	*out = 0;
	while (**s >= '0' && **s <= '9' && digits < 9) {
		*out = *out * 10 + (unsigned long)(**s - '0');
		(*s)++;
		digits++;
	}
	return digits > 0;
}

/* "fuzz.conf:LINE:COL: message" (SPEC section 3); out of memory alone has no position. */
static void check_rejected(const char *text, int ret, const char *err, const struct policy *p)
{
	static const char prefix[] = FUZZ_FILE ":";
	size_t len = strnlen(err, POLICY_ERROR_MAX);
	unsigned long line, col;
	const char *c;

	if (ret >= 0)
		die("parse returned %d, neither 0 nor -errno", ret);
	if (p->nrules || p->rules || p->nidents || p->idents || p->nsets || p->sets ||
	    p->nmatches || p->matches)
		die("a rejected policy left something behind (%zu rules, %zu sets)", p->nrules,
		    p->nsets);
	if (len == POLICY_ERROR_MAX)
		die("error message is not NUL-terminated");
	if (len == 0)
		die("rejected (%d) with an empty error message", ret);
	if (strncmp(err, prefix, strlen(prefix)) != 0)
		die("error does not start with '%s': '%s'", prefix, err);
	if (ret == -ENOMEM)
		return;
	c = err + strlen(prefix);
	if (!read_number(&c, &line) || *c++ != ':' || !read_number(&c, &col) ||
	    strncmp(c, ": ", 2) != 0 || c[2] == '\0')
		die("error is not FILE:LINE:COL: message: '%s'", err);
	if (line == 0 || col == 0)
		die("lines and columns count from 1: '%s'", err);
	if (line > count_lines(text))
		die("error line %lu beyond the input's %u lines: '%s'", line, count_lines(text),
		    err);
}

/* --- an accepted policy ------------------------------------------------------------------ */

static void check_match(size_t i, const struct l4_match *m)
{
	if (m->nprotos > POLICY_PROTOS_MAX || m->nports > POLICY_PORTS_MAX)
		die("match %zu: %u protocols, %u port ranges", i, m->nprotos, m->nports);
	if (m->nports && !m->nprotos)
		die("match %zu: ports without a protocol", i);
	for (int k = 0; k < m->nprotos && m->nports; k++)
		if (!proto_has_ports(m->protos[k]))
			die("match %zu: ports on protocol %u, which has none", i, m->protos[k]);
	for (int k = 0; k < m->nports; k++)
		if (m->ports[k].lo == 0 || m->ports[k].lo > m->ports[k].hi)
			die("match %zu: port range %u-%u", i, m->ports[k].lo, m->ports[k].hi);
}

static void check_policy(const struct policy *p)
{
	char buf[ADDR_STRLEN];

	if (p->mode != SLUICE_MODE_ENFORCE && p->mode != SLUICE_MODE_AUDIT)
		die("mode %d", p->mode);
	if (p->default_verdict != SLUICE_VERDICT_ALLOW && p->default_verdict != SLUICE_VERDICT_DENY)
		die("default verdict %u", p->default_verdict);
	if (p->nrules > SLUICE_POLICY_MAX || (p->nrules && (!p->rules || !p->nidents)))
		die("%zu rules, %zu identities", p->nrules, p->nidents);
	if (p->nidents && (!p->nmatches || p->matches[0].nprotos != 0))
		die("matches[0] must be 'any protocol, any port'");
	for (size_t i = 0; i < p->nmatches; i++)
		check_match(i, &p->matches[i]);

	for (size_t i = 0; i < p->nidents; i++) {
		const struct policy_ident *id = &p->idents[i];

		if (strnlen(id->name, POLICY_NAME_MAX) == POLICY_NAME_MAX || id->name[0] == '\0')
			die("identity %zu: name empty or not NUL-terminated", i);
		if (id->action != SLUICE_VERDICT_ALLOW && id->action != SLUICE_VERDICT_DENY)
			die("identity %zu (%s): action %u", i, id->name, id->action);
		if (id->match >= p->nmatches)
			die("identity %zu (%s): match %u of %zu", i, id->name, id->match,
			    p->nmatches);
		/* Counters and events are keyed by the identity: two rules must not share one. */
		for (size_t k = 0; k < i; k++)
			if (strcmp(p->idents[k].name, id->name) == 0)
				die("rules at lines %u and %u have the same identity '%s'",
				    p->idents[k].line, id->line, id->name);
	}

	for (size_t i = 0; i < p->nrules; i++) {
		const struct policy_rule *r = &p->rules[i];

		fmt_prefix(&r->dst.addr, r->dst.prefixlen, buf, sizeof(buf));
		if (r->dst.prefixlen > 128 || !bits_clear(r->dst.addr.a, 16, r->dst.prefixlen))
			die("rule %zu: prefix %s has host bits set or a bad length %u", i, buf,
			    r->dst.prefixlen);
		/* IPv4 lives only at ::ffff:0:0/96 and below; a shorter prefix there is IPv6. */
		if (addr_is_v4(&r->dst.addr) && r->dst.prefixlen < 96)
			die("rule %zu: IPv6 prefix %s inside the IPv4-mapped block", i, buf);
		if (r->ident >= p->nidents)
			die("rule %zu (%s): identity %u of %zu", i, buf, r->ident, p->nidents);
		if (r->match != p->idents[r->ident].match ||
		    r->action != p->idents[r->ident].action)
			die("rule %zu (%s) disagrees with its identity %s on match or action", i,
			    buf, p->idents[r->ident].name);
	}
}

static bool valid_outcome(const struct policy *p, __u8 verdict, __u8 reason, __u32 rule_id)
{
	if (reason == SLUICE_REASON_DEFAULT)
		return rule_id == SLUICE_RULE_DEFAULT &&
		       verdict == with_mode(p, p->default_verdict);
	if (reason == SLUICE_REASON_RULE)
		return rule_id < p->nidents && verdict == with_mode(p, p->idents[rule_id].action);
	return false;
}

HARNESS static int cmp_keys(const void *a, const void *b)
{
	const struct sluice_lpm_key *ka = a, *kb = b;

	if (ka->prefixlen != kb->prefixlen)
		return ka->prefixlen < kb->prefixlen ? -1 : 1;
	return memcmp(ka->addr.a, kb->addr.a, 16);
}

/* Is (prefixlen, a) among the n sorted keys? */
HARNESS static bool has_key(const struct sluice_lpm_key *sorted, size_t n, unsigned prefixlen,
		    const struct sluice_addr *a)
{
	struct sluice_lpm_key k = { .prefixlen = prefixlen, .addr = *a };

	return bsearch(&k, sorted, n, sizeof(k), cmp_keys) != NULL;
}

HARNESS static int cmp_port_keys(const void *a, const void *b)
{
	const struct sluice_port_key *ka = a, *kb = b;

	if (ka->port_class != kb->port_class)
		return ka->port_class < kb->port_class ? -1 : 1;
	if (ka->prefixlen != kb->prefixlen)
		return ka->prefixlen < kb->prefixlen ? -1 : 1;
	if (ka->proto != kb->proto)
		return ka->proto < kb->proto ? -1 : 1;
	return memcmp(ka->port, kb->port, 2);
}

static void check_trie(const struct policy *p, const struct compiled_policy *cp)
{
	static const struct sluice_addr v6_any = { 0 };
	static const struct sluice_addr v4_any = { .a = { [10] = 0xff, [11] = 0xff } };
	/* Written out here, not taken from the compiler: the invariant checks it. */
	__u8 flags = (p->mode == SLUICE_MODE_AUDIT ? SLUICE_POLICY_F_AUDIT : 0) |
		     (p->essential ? 0 : SLUICE_POLICY_F_NO_ESSENTIAL) |
		     (p->replies ? 0 : SLUICE_POLICY_F_NO_REPLIES);
	struct sluice_lpm_key *keys;
	char buf[ADDR_STRLEN];

	if (!cp->entries || cp->n < 2)
		die("%zu compiled entries: the two catch-alls are missing", cp->n);
	for (size_t i = 0; i < cp->n; i++) {
		const struct compiled_entry *e = &cp->entries[i];
		const struct sluice_policy_entry *v = &e->value;

		fmt_prefix(&e->key.addr, e->key.prefixlen, buf, sizeof(buf));
		if (e->key.prefixlen > 128 || !bits_clear(e->key.addr.a, 16, e->key.prefixlen))
			die("entry %zu: key %s (/%u) has host bits set or a bad length", i, buf,
			    e->key.prefixlen);
		if (v->generation != FUZZ_GENERATION)
			die("entry %zu (%s): generation %u", i, buf, v->generation);
		if (v->flags != flags)
			die("entry %zu (%s): flags 0x%x in a policy whose flags are 0x%x", i, buf,
			    v->flags, flags);
		if (v->pad)
			die("entry %zu (%s): padding not zero", i, buf);
		if (v->port_class > cp->nclasses)
			die("entry %zu (%s): port class %u of %u", i, buf, v->port_class,
			    cp->nclasses);
		/* With a port class the verdict here is unused; without, it is the decision. */
		if (!v->port_class && !valid_outcome(p, v->verdict, v->reason, v->rule_id))
			die("entry %zu (%s): verdict %u reason %u rule %u", i, buf, v->verdict,
			    v->reason, v->rule_id);
	}

	/* One entry per prefix: a second BPF_NOEXIST insert of the same key would fail. */
	keys = malloc(cp->n * sizeof(*keys));
	if (!keys)
		return; /* out of memory in the harness is not a finding */
	for (size_t i = 0; i < cp->n; i++)
		keys[i] = cp->entries[i].key;
	qsort(keys, cp->n, sizeof(*keys), cmp_keys);
	for (size_t i = 1; i < cp->n; i++) {
		if (cmp_keys(&keys[i - 1], &keys[i]) == 0) {
			fmt_prefix(&keys[i].addr, keys[i].prefixlen, buf, sizeof(buf));
			die("prefix %s compiled into more than one entry", buf);
		}
	}
	/* The datapath reads the mode from ::/0 and keeps IPv6 rules off IPv4 with the /96. */
	if (!has_key(keys, cp->n, 0, &v6_any) || !has_key(keys, cp->n, 96, &v4_any))
		die("a catch-all (::/0 or 0.0.0.0/0) is missing");
	/* Every rule's prefix is in the trie (its winner may be another rule of that prefix). */
	for (size_t i = 0; i < p->nrules; i++) {
		const struct prefix *d = &p->rules[i].dst;

		if (!has_key(keys, cp->n, d->prefixlen, &d->addr)) {
			fmt_prefix(&d->addr, d->prefixlen, buf, sizeof(buf));
			die("rule %zu (%s) has no entry", i, buf);
		}
	}
	free(keys);
}

static void check_ports(const struct policy *p, const struct compiled_policy *cp)
{
	struct sluice_port_key *keys;
	bool *has_fallback;

	if (cp->nports && !cp->ports)
		die("%zu port entries at NULL", cp->nports);
	if (cp->nclasses && !cp->nports)
		die("%u port classes without entries", cp->nclasses);
	for (size_t i = 0; i < cp->nports; i++) {
		const struct compiled_port_entry *e = &cp->ports[i];
		const __u8 data[3] = { e->key.proto, e->key.port[0], e->key.port[1] };

		if (e->key.prefixlen < SLUICE_PORT_PREFIX_CLASS ||
		    e->key.prefixlen > SLUICE_PORT_PREFIX_PORT)
			die("port entry %zu: prefix length %u", i, e->key.prefixlen);
		if (e->key.port_class == 0 || e->key.port_class > cp->nclasses)
			die("port entry %zu: class %u of %u", i, e->key.port_class, cp->nclasses);
		if (e->key.pad || e->value.pad[0] || e->value.pad[1])
			die("port entry %zu: padding not zero", i);
		if (!bits_clear(data, sizeof(data), e->key.prefixlen - SLUICE_PORT_PREFIX_CLASS))
			die("port entry %zu (class %u /%u proto %u port %u): bits beyond its "
			    "prefix",
			    i, e->key.port_class, e->key.prefixlen, e->key.proto,
			    e->key.port[0] << 8 | e->key.port[1]);
		if (!valid_outcome(p, e->value.verdict, e->value.reason, e->value.rule_id))
			die("port entry %zu: verdict %u reason %u rule %u", i, e->value.verdict,
			    e->value.reason, e->value.rule_id);
	}

	keys = malloc((cp->nports ? cp->nports : 1) * sizeof(*keys));
	has_fallback = calloc(cp->nclasses + 1, sizeof(*has_fallback));
	if (!keys || !has_fallback) {
		free(keys);
		free(has_fallback);
		return;
	}
	for (size_t i = 0; i < cp->nports; i++) {
		keys[i] = cp->ports[i].key;
		if (keys[i].prefixlen == SLUICE_PORT_PREFIX_CLASS)
			has_fallback[keys[i].port_class] = true;
	}
	qsort(keys, cp->nports, sizeof(*keys), cmp_port_keys);
	for (size_t i = 1; i < cp->nports; i++)
		if (cmp_port_keys(&keys[i - 1], &keys[i]) == 0)
			die("port key (class %u /%u proto %u) appears twice", keys[i].port_class,
			    keys[i].prefixlen, keys[i].proto);
	/* A lookup that misses its class fails closed in the datapath: every class needs one. */
	for (__u32 c = 1; c <= cp->nclasses; c++)
		if (!has_fallback[c])
			die("port class %u has no fallback (/%u) entry", c,
			    SLUICE_PORT_PREFIX_CLASS);
	free(keys);
	free(has_fallback);
}

/* --- the compiled policy, evaluated as the datapath does --------------------------------- */

/*
 * Written from the ABI (include/sluice/abi.h, bpf/lib/policy.h) rather than shared with
 * the compiler or compiled_decide, so that a mistake in one of them does not hide in both:
 * the longest matching prefix; if its entry names a port class, the longest match of
 * (class, protocol, port) among the class's entries, at /56 for a packet with a port and at
 * /40 without (class and protocol only). The bank of ranges the installer writes
 * (policy_bank_fill) must decide every probe the same way.
 */
HARNESS static void datapath_decide(const struct compiled_policy *cp, const struct sluice_addr *dst,
			    __u8 proto, int port, struct sluice_policy_entry *out)
{
	const __u8 pkt[3] = { proto, port == POLICY_PORT_NONE ? 0 : (__u8)(port >> 8),
			      port == POLICY_PORT_NONE ? 0 : (__u8)port };
	unsigned maxlen =
		port == POLICY_PORT_NONE ? SLUICE_PORT_PREFIX_PROTO : SLUICE_PORT_PREFIX_PORT;
	const struct compiled_entry *best = NULL;
	const struct compiled_port_entry *pbest = NULL;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < cp->n; i++) {
		const struct compiled_entry *e = &cp->entries[i];

		if (bits_equal(e->key.addr.a, dst->a, e->key.prefixlen) &&
		    (!best || e->key.prefixlen > best->key.prefixlen))
			best = e;
	}
	if (!best) {
		out->reason = SLUICE_REASON_NO_POLICY;
		return;
	}
	*out = best->value;
	if (!best->value.port_class)
		return;
	for (size_t i = 0; i < cp->nports; i++) {
		const struct compiled_port_entry *e = &cp->ports[i];
		const __u8 ent[3] = { e->key.proto, e->key.port[0], e->key.port[1] };

		if (e->key.port_class != best->value.port_class || e->key.prefixlen > maxlen ||
		    e->key.prefixlen < SLUICE_PORT_PREFIX_CLASS)
			continue;
		if (!bits_equal(pkt, ent, e->key.prefixlen - SLUICE_PORT_PREFIX_CLASS))
			continue;
		if (!pbest || e->key.prefixlen > pbest->key.prefixlen)
			pbest = e;
	}
	if (!pbest) { /* the datapath fails closed here */
		out->verdict = SLUICE_VERDICT_DENY;
		out->reason = SLUICE_REASON_NO_POLICY;
		out->rule_id = SLUICE_RULE_NONE;
		return;
	}
	out->verdict = pbest->value.verdict;
	out->reason = pbest->value.reason;
	out->rule_id = pbest->value.rule_id;
}

/* The last address of a prefix: every host bit set. */
static struct sluice_addr prefix_last(const struct prefix *p)
{
	struct sluice_addr a = p->addr;

	for (unsigned bit = p->prefixlen; bit < 128; bit++)
		a.a[bit / 8] |= 0x80 >> (bit % 8);
	return a;
}

/* a + delta (+1 or -1) over 128 bits, wrapping: the addresses just outside a prefix. */
static struct sluice_addr addr_step(struct sluice_addr a, int delta)
{
	for (int i = 15; i >= 0; i--) {
		__u8 before = a.a[i];

		a.a[i] = (__u8)(a.a[i] + delta);
		if ((delta > 0 && before != 0xff) || (delta < 0 && before != 0x00))
			break;
	}
	return a;
}

static size_t probe_addrs(const struct policy *p, uint64_t *h, struct sluice_addr *out)
{
	size_t n = 0, step = p->nrules > PROBE_RULES ? p->nrules / PROBE_RULES : 1;

	/* The edges of (a spread of) the rules' prefixes and the addresses just outside. */
	for (size_t i = 0; i < p->nrules && n + 4 <= PROBE_MAX - PROBE_RANDOM; i += step) {
		const struct prefix *d = &p->rules[i].dst;
		struct sluice_addr last = prefix_last(d);

		out[n++] = d->addr;
		out[n++] = last;
		out[n++] = addr_step(d->addr, -1);
		out[n++] = addr_step(last, +1);
	}
	/* Pseudo-random: half anywhere (a quarter IPv4), half inside a rule. */
	for (int i = 0; i < PROBE_RANDOM; i++) {
		struct sluice_addr a;
		uint64_t hi = mix(h), lo = mix(h);

		memcpy(a.a, &hi, 8);
		memcpy(&a.a[8], &lo, 8);
		if (i % 4 == 1) {
			memset(a.a, 0, 10);
			a.a[10] = a.a[11] = 0xff;
		}
		if (i % 2 == 0 && p->nrules) {
			const struct prefix *d = &p->rules[mix(h) % p->nrules].dst;

			for (unsigned bit = 0; bit < d->prefixlen; bit++) {
				__u8 m = 0x80 >> (bit % 8), *b = &a.a[bit / 8];

				*b = (__u8)((*b & ~m) | (d->addr.a[bit / 8] & m));
			}
		}
		out[n++] = a;
	}
	return n;
}

struct l4 {
	__u8 proto;
	int port; /* POLICY_PORT_NONE: none (or a later fragment of a TCP/UDP datagram) */
};

static void add_l4(struct l4 *out, size_t *n, __u8 proto, long port)
{
	if (*n < PROBE_L4_MAX && (port == POLICY_PORT_NONE || (port >= 0 && port <= 65535)))
		out[(*n)++] = (struct l4){ .proto = proto, .port = (int)port };
}

/* Common traffic, then the edges of the port ranges the rules name (from a varying start). */
static size_t probe_l4(const struct policy *p, uint64_t *h, struct l4 *out)
{
	size_t n = 0, start = p->nmatches ? mix(h) % p->nmatches : 0;

	add_l4(out, &n, IPPROTO_TCP, 443);
	add_l4(out, &n, IPPROTO_UDP, 53);
	add_l4(out, &n, IPPROTO_ICMP, POLICY_PORT_NONE);
	add_l4(out, &n, IPPROTO_TCP, POLICY_PORT_NONE);
	add_l4(out, &n, IPPROTO_GRE, POLICY_PORT_NONE);
	add_l4(out, &n, IPPROTO_UDP, 0);
	for (size_t k = 0; k < p->nmatches && n < PROBE_L4_MAX; k++) {
		const struct l4_match *m = &p->matches[(start + k) % p->nmatches];

		for (int i = 0; i < m->nprotos; i++) {
			__u8 proto = m->protos[i];

			if (!proto_has_ports(proto)) {
				add_l4(out, &n, proto, POLICY_PORT_NONE);
				continue;
			}
			add_l4(out, &n, proto, (long)(mix(h) % 65536));
			for (int r = 0; r < m->nports; r++) {
				add_l4(out, &n, proto, m->ports[r].lo);
				add_l4(out, &n, proto, m->ports[r].hi);
				add_l4(out, &n, proto, (long)m->ports[r].lo - 1);
				add_l4(out, &n, proto, (long)m->ports[r].hi + 1);
			}
		}
	}
	return n;
}

HARNESS static bool same_decision(const struct sluice_policy_entry *a, const struct sluice_policy_entry *b)
{
	return a->verdict == b->verdict && a->rule_id == b->rule_id && a->reason == b->reason &&
	       a->flags == b->flags;
}

static void check_decisions(const struct policy *p, const struct compiled_policy *cp,
			    const uint8_t *data, size_t size)
{
	struct sluice_addr probes[PROBE_MAX];
	struct l4 l4[PROBE_L4_MAX];
	uint64_t h = 0xcbf29ce484222325ull;
	size_t na, nl, most = policy_bank_most(cp);
	/* The bank the installer writes: what the datapath's binary searches decide from. */
	struct sluice_policy_range *bank = calloc(most, sizeof(*bank));
	long ranges = bank ? policy_bank_fill(cp, 0, bank, most) : -ENOMEM;

	if (ranges == -ENOMEM) {
		free(bank);
		return;
	}
	if (ranges <= 0)
		die("the compiled policy does not flatten into a bank: %ld", ranges);
	for (size_t i = 0; i < size; i++)
		h = (h ^ data[i]) * 0x100000001b3ull;
	na = probe_addrs(p, &h, probes);
	nl = probe_l4(p, &h, l4);
	for (size_t i = 0; i < na; i++) {
		for (size_t k = 0; k < nl; k++) {
			struct sluice_policy_entry want, got, helper, ranged;
			char buf[ADDR_STRLEN];

			policy_decide(p, &probes[i], l4[k].proto, l4[k].port, &want);
			datapath_decide(cp, &probes[i], l4[k].proto, l4[k].port, &got);
			compiled_decide(cp, &probes[i], l4[k].proto, l4[k].port, &helper);
			if (!policy_bank_decide(bank, &probes[i], l4[k].proto, l4[k].port, &ranged) ||
			    !same_decision(&ranged, &got)) {
				addr_format(&probes[i], buf, sizeof(buf));
				die("%s proto %u port %d: the bank of ranges says %s/%s rule %u, the "
				    "compiled prefixes %s/%s rule %u",
				    buf, l4[k].proto, l4[k].port, verdict_name(ranged.verdict),
				    reason_name(ranged.reason), ranged.rule_id,
				    verdict_name(got.verdict), reason_name(got.reason), got.rule_id);
			}
			if (same_decision(&got, &want) && same_decision(&helper, &got))
				continue;
			addr_format(&probes[i], buf, sizeof(buf));
			die("%s proto %u port %d: compiled (as the datapath) says %s/%s rule %u "
			    "flags 0x%x, compiled_decide %s/%s rule %u, policy_decide %s/%s "
			    "rule %u flags 0x%x",
			    buf, l4[k].proto, l4[k].port, verdict_name(got.verdict),
			    reason_name(got.reason), got.rule_id, got.flags,
			    verdict_name(helper.verdict), reason_name(helper.reason),
			    helper.rule_id, verdict_name(want.verdict), reason_name(want.reason),
			    want.rule_id, want.flags);
		}
	}
	free(bank);
}

/* --- a change's part of the compile (in-place overrides) ----------------------------------- */

/*
 * policy_compile_under(x) must emit exactly the full compile's entries at or inside x, and
 * decide every address inside x that one of them covers as the full compile does (its port
 * classes are numbered apart, so decisions are compared, not class numbers).
 */
static void check_compile_under(const struct policy *p, const struct compiled_policy *cp,
				const uint8_t *data, size_t size)
{
	struct sluice_addr probes[PROBE_MAX];
	struct l4 l4[PROBE_L4_MAX];
	struct compiled_policy under;
	uint64_t h = 0x84222325cbf29ce4ull;
	struct prefix x;
	size_t na, nl, inside = 0;

	for (size_t i = 0; i < size; i++)
		h = (h ^ data[i]) * 0x100000001b3ull;
	na = probe_addrs(p, &h, probes);
	nl = probe_l4(p, &h, l4);
	if (p->nrules && mix(&h) % 2) {
		x = p->rules[mix(&h) % p->nrules].dst;
	} else {
		x.addr = probes[mix(&h) % (na ? na : 1)];
		x.prefixlen = mix(&h) % 129;
		for (unsigned bit = x.prefixlen; bit < 128; bit++)
			x.addr.a[bit / 8] &= ~(0x80 >> (bit % 8));
	}
	if (policy_compile_under(p, &x, FUZZ_GENERATION, &under))
		return; /* out of memory: nothing to compare */
	for (size_t i = 0; i < cp->n; i++) {
		const struct compiled_entry *e = &cp->entries[i];
		bool found = false;

		if (e->key.prefixlen < x.prefixlen || !prefix_contains(&x, &e->key.addr))
			continue;
		inside++;
		for (size_t k = 0; k < under.n && !found; k++)
			found = !memcmp(&under.entries[k].key, &e->key, sizeof(e->key));
		if (!found)
			die("compile_under(/%u) lacks an entry /%u of the full compile", x.prefixlen,
			    e->key.prefixlen);
	}
	if (inside != under.n)
		die("compile_under(/%u) has %zu entries, the full compile %zu inside it", x.prefixlen,
		    under.n, inside);
	for (size_t i = 0; i < na; i++) {
		if (!prefix_contains(&x, &probes[i]))
			continue;
		for (size_t k = 0; k < nl; k++) {
			struct sluice_policy_entry full, part;

			datapath_decide(&under, &probes[i], l4[k].proto, l4[k].port, &part);
			if (part.reason == SLUICE_REASON_NO_POLICY)
				continue; /* decided by an entry above x, which the change keeps */
			datapath_decide(cp, &probes[i], l4[k].proto, l4[k].port, &full);
			if (!same_decision(&part, &full))
				die("compile_under(/%u) decides %s/%s rule %u where the full compile "
				    "says %s/%s rule %u",
				    x.prefixlen, verdict_name(part.verdict), reason_name(part.reason),
				    part.rule_id, verdict_name(full.verdict), reason_name(full.reason),
				    full.rule_id);
		}
	}
	compiled_policy_free(&under);
}

/* --- the same policy again --------------------------------------------------------------- */

static bool same_compiled(const struct compiled_policy *a, const struct compiled_policy *b)
{
	return a->n == b->n && a->nports == b->nports && a->nclasses == b->nclasses &&
	       memcmp(a->entries, b->entries, a->n * sizeof(*a->entries)) == 0 &&
	       (!a->nports || memcmp(a->ports, b->ports, a->nports * sizeof(*a->ports)) == 0);
}

/* Parse text and compile it; it must give exactly cp. `what` says where text came from. */
static void check_same(const char *what, const char *text, const struct policy *p,
		       const struct compiled_policy *cp)
{
	char err[POLICY_ERROR_MAX];
	struct compiled_policy cp2 = { 0 };
	struct policy p2;
	int ret;

	ret = policy_parse_text(FUZZ_FILE, text, &p2, err);
	if (ret)
		die("%s does not parse: %s\n--- text ---\n%s", what, err, text);
	if (p2.nrules != p->nrules || p2.nidents != p->nidents || p2.mode != p->mode ||
	    p2.default_verdict != p->default_verdict || p2.essential != p->essential ||
	    p2.replies != p->replies || p2.nbudgets != p->nbudgets)
		die("%s gives another policy (%zu rules, %zu identities, %zu budgets; was %zu, %zu, "
		    "%zu)",
		    what, p2.nrules, p2.nidents, p2.nbudgets, p->nrules, p->nidents, p->nbudgets);
	for (size_t i = 0; i < p->nbudgets; i++)
		if (strcmp(p2.budgets[i].name, p->budgets[i].name) != 0 ||
		    p2.budgets[i].limit != p->budgets[i].limit ||
		    p2.budgets[i].window_s != p->budgets[i].window_s ||
		    p2.budgets[i].block != p->budgets[i].block ||
		    p2.budgets[i].kind != p->budgets[i].kind ||
		    p2.budgets[i].nprefixes != p->budgets[i].nprefixes)
			die("%s changes budget %zu (%s)", what, i, p->budgets[i].name);
	for (size_t i = 0; i < p->nidents; i++)
		if (strcmp(p2.idents[i].name, p->idents[i].name) != 0)
			die("%s renames identity %zu from %s to %s", what, i, p->idents[i].name,
			    p2.idents[i].name);
	ret = policy_compile(&p2, FUZZ_GENERATION, &cp2);
	if (ret)
		die("%s does not compile: %d", what, ret);
	if (!same_compiled(cp, &cp2))
		die("%s compiles differently (%zu/%zu entries, %zu/%zu port entries)", what, cp->n,
		    cp2.n, cp->nports, cp2.nports);
	compiled_policy_free(&cp2);
	policy_free(&p2);
}

/*
 * Budgets: an accepted policy's budgets compiled, every destination prefix's set within
 * SLUICE_BUDGET_SLOTS and naming real budgets, every target naming a real set; and the
 * budgets read back alike (check_same's second parse and policy_format's output).
 */
static void check_budgets(const struct policy *p, const struct compiled_policy *cp)
{
	const struct compiled_budgets *cb = cp->budgets;

	if (!p->nbudgets) {
		if (cb)
			die("budgets compiled for a policy without budgets");
		return;
	}
	if (!cb || cb->ndefs != p->nbudgets || cb->nsets < 1 || cb->nsets > SLUICE_BUDGET_SETS)
		die("%zu budgets compiled into %zu definitions, %zu sets", p->nbudgets,
		    cb ? cb->ndefs : 0, cb ? cb->nsets : 0);
	for (size_t i = 0; i < cb->nsets; i++) {
		if (cb->sets[i].n > SLUICE_BUDGET_SLOTS)
			die("budget set %zu has %u budgets", i, cb->sets[i].n);
		for (unsigned k = 0; k < cb->sets[i].n; k++)
			if (cb->sets[i].budget[k] >= cb->ndefs)
				die("budget set %zu names budget %u of %zu", i,
				    cb->sets[i].budget[k], cb->ndefs);
	}
	for (size_t i = 0; i < cb->ntargets; i++)
		if (cb->targets[i].set == 0 || cb->targets[i].set >= cb->nsets)
			die("budget target %zu names set %u of %zu", i, cb->targets[i].set,
			    cb->nsets);
	for (size_t i = 0; i < p->nbudgets; i++)
		if (p->budgets[i].limit == 0 || p->budgets[i].window_s == 0 ||
		    p->budgets[i].window_s > POLICY_BUDGET_WINDOW_MAX)
			die("budget %zu accepted with limit %llu, window %llu s", i,
			    (unsigned long long)p->budgets[i].limit,
			    (unsigned long long)p->budgets[i].window_s);
}

/* policy_format writes policy text: it must read back as the same policy. */
static void check_format(const struct policy *p, const struct compiled_policy *cp)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (!f)
		return;
	policy_format(p, f);
	if (fclose(f) != 0 || !text) {
		free(text);
		return;
	}
	check_same("policy_format's output", text, p, cp);
	free(text);
}

/* --- the target -------------------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[POLICY_ERROR_MAX];
	struct compiled_policy cp = { 0 };
	struct policy p;
	char *text;
	int ret;

	if (size > FUZZ_INPUT_MAX)
		return 0;
	/* policy_parse_text takes a C string; an embedded NUL simply ends the text. */
	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';

	/* Garbage in err must not leak into a message: the parser writes a whole one. */
	memset(err, 'X', sizeof(err));
	ret = policy_parse_text(FUZZ_FILE, text, &p, err);
	if (ret) {
		check_rejected(text, ret, err, &p);
		policy_free(&p);
		free(text);
		return 0;
	}
	check_policy(&p);

	ret = policy_compile(&p, FUZZ_GENERATION, &cp);
	if (ret == -E2BIG || ret == -ENOMEM) { /* too big for the maps, or for this process */
		if (cp.entries || cp.n || cp.ports || cp.nports)
			die("failed compile (%d) left entries behind", ret);
		goto out;
	}
	if (ret)
		die("an accepted policy failed to compile: %d (%s)", ret, strerror(-ret));
	check_trie(&p, &cp);
	check_ports(&p, &cp);
	check_budgets(&p, &cp);
	check_decisions(&p, &cp, data, size);
	check_compile_under(&p, &cp, data, size);
	/* Same text, same result: no state carried over between parses or compiles. */
	check_same("a second parse of the same text", text, &p, &cp);
	check_format(&p, &cp);
	compiled_policy_free(&cp);
out:
	policy_free(&p);
	free(text);
	return 0;
}

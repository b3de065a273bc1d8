// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* The benchmarks' generated policy, and its writers for sluice, nft, ipset and iptables. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "ruleset.h"

const char *const ruleset_set_names[RULESET_SETS] = { "allow", "deny", "ports" };

/* Private space for rulesets loaded where traffic flows: 10.0.0.0/8 and fd00::/8. */
#define PRIVATE_V4_OCTET 10
#define PRIVATE_V6_BYTE 0xfd
/* ipset's own default; sets are made larger when they hold more. */
#define IPSET_MAXELEM_MIN 65536
#define IPSET_HASHSIZE_MIN 1024

__u64 ruleset_rng(__u64 *state)
{
	__u64 z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static unsigned rng_below(__u64 *state, unsigned n)
{
	return (unsigned)(ruleset_rng(state) % n);
}

static void mask_addr(struct sluice_addr *a, unsigned prefixlen)
{
	for (unsigned bit = prefixlen; bit < 128; bit++)
		a->a[bit / 8] &= ~(0x80 >> (bit % 8));
}

/*
 * Prefix lengths shaped like real allow/deny lists (as in sluice-bench-pktcost): IPv4 half
 * /24, the rest /16../32; IPv6 /32../64 and one in ten a single host, in 2000::/3. In
 * private space IPv4 is half /24, the rest /25../32: 10.0.0.0/8 has room for 50 000 of
 * those but not for thousands of /16s.
 */
static void random_prefix(__u64 *r, bool v4, bool private_space, struct prefix *p)
{
	__u64 hi = ruleset_rng(r), lo = ruleset_rng(r);

	memcpy(p->addr.a, &hi, 8);
	memcpy(&p->addr.a[8], &lo, 8);
	if (v4) {
		memset(p->addr.a, 0, 10);
		p->addr.a[10] = p->addr.a[11] = 0xff;
		if (private_space) {
			p->addr.a[12] = PRIVATE_V4_OCTET;
			p->prefixlen = 96 + (rng_below(r, 2) ? 24 : 25 + rng_below(r, 8));
		} else {
			p->prefixlen = 96 + (rng_below(r, 2) ? 24 : 16 + rng_below(r, 17));
		}
	} else {
		p->addr.a[0] = private_space ? PRIVATE_V6_BYTE : (p->addr.a[0] & 0x1f) | 0x20;
		p->prefixlen = rng_below(r, 10) == 0 ? 128 : 32 + rng_below(r, 33);
	}
	mask_addr(&p->addr, p->prefixlen);
}

static int cmp_prefix_start(const void *a, const void *b)
{
	const struct prefix *pa = a, *pb = b;
	int c = memcmp(pa->addr.a, pb->addr.a, 16);

	if (c)
		return c;
	return pa->prefixlen < pb->prefixlen ? -1 : pa->prefixlen > pb->prefixlen;
}

/*
 * n prefixes of one family, none inside another: sorted by first address, a prefix that
 * starts inside the last one kept is inside it (prefixes are aligned) and is dropped;
 * draws continue until there are n.
 */
static void disjoint_prefixes(__u64 *r, bool v4, bool private_space, size_t n, struct prefix *out)
{
	size_t have = 0;

	while (have < n) {
		size_t kept = 0;

		for (size_t i = have; i < n; i++)
			random_prefix(r, v4, private_space, &out[i]);
		qsort(out, n, sizeof(*out), cmp_prefix_start);
		for (size_t i = 0; i < n; i++) {
			if (kept) {
				struct sluice_addr last = out[kept - 1].addr;

				for (unsigned bit = out[kept - 1].prefixlen; bit < 128; bit++)
					last.a[bit / 8] |= 0x80 >> (bit % 8);
				if (memcmp(out[i].addr.a, last.a, 16) <= 0)
					continue;
			}
			out[kept++] = out[i];
		}
		have = kept;
	}
}

static bool prefixes_overlap(const struct prefix *a, const struct prefix *b)
{
	return prefix_contains(a, &b->addr) || prefix_contains(b, &a->addr);
}

/* Half IPv4, half IPv6, shuffled; a quarter deny; port_rules allow rules spread evenly. */
int ruleset_build(const struct ruleset_params *p, bool ports, struct ruleset *rs)
{
	size_t n4 = p->prefixes / 2, n6 = p->prefixes - n4, every;
	struct prefix *pfx;
	__u64 rng = p->seed;

	*rs = (struct ruleset){ .params = *p, .ports = ports && p->port_rules > 0 };
	if (p->nextra > RULESET_EXTRA_MAX || p->port_rules > p->prefixes)
		return -EINVAL;
	pfx = calloc(p->prefixes ? p->prefixes : 1, sizeof(*pfx));
	rs->rules = calloc(p->prefixes ? p->prefixes : 1, sizeof(*rs->rules));
	if (!pfx || !rs->rules) {
		free(pfx);
		ruleset_free(rs);
		return -ENOMEM;
	}
	disjoint_prefixes(&rng, true, p->private_space, n4, pfx);
	disjoint_prefixes(&rng, false, p->private_space, n6, pfx + n4);
	/* Fisher-Yates: a real list mixes families and is not sorted the compiler's way. */
	for (size_t i = p->prefixes; i > 1; i--) {
		size_t j = ruleset_rng(&rng) % i;
		struct prefix t = pfx[i - 1];

		pfx[i - 1] = pfx[j];
		pfx[j] = t;
	}
	every = p->port_rules ? p->prefixes / p->port_rules : 0;
	for (size_t i = 0; i < p->prefixes; i++) {
		struct ruleset_rule *r = &rs->rules[i];

		r->pfx = pfx[i];
		r->ports = every && i % every == 0 && i / every < p->port_rules;
		r->action = !r->ports && rng_below(&rng, 100) < RULESET_DENY_PERCENT
				    ? SLUICE_VERDICT_DENY
				    : SLUICE_VERDICT_ALLOW;
		rs->n4 += addr_is_v4(&r->pfx.addr);
		/* The extra prefixes are decided by their own rules: none may overlap these. */
		for (size_t e = 0; e < p->nextra; e++) {
			if (prefixes_overlap(&r->pfx, &p->extra[e].pfx)) {
				free(pfx);
				ruleset_free(rs);
				return -EEXIST;
			}
		}
	}
	rs->n = p->prefixes;
	free(pfx);
	return 0;
}

void ruleset_free(struct ruleset *rs)
{
	free(rs->rules);
	rs->rules = NULL;
	rs->n = rs->n4 = 0;
}

static FILE *open_out(const char *path, int *err)
{
	FILE *f = fopen(path, "w");

	*err = f ? 0 : -errno;
	if (!f)
		fprintf(stderr, "ruleset: cannot write %s: %s\n", path, strerror(-*err));
	return f;
}

static int close_out(FILE *f, const char *path)
{
	bool failed = ferror(f);

	if (fclose(f) != 0 || failed) {
		int err = errno ? -errno : -EIO;

		fprintf(stderr, "ruleset: cannot write %s: %s\n", path, strerror(-err));
		return err;
	}
	return 0;
}

static void header(FILE *f, const struct ruleset *rs)
{
	fprintf(f,
		"# sluice benchmark ruleset: %zu prefixes (%zu IPv4), %zu port rules, seed "
		"%llu%s\n",
		rs->n, rs->n4, rs->ports ? rs->params.port_rules : 0,
		(unsigned long long)rs->params.seed,
		rs->params.private_space ? ", private space" : "");
}

int ruleset_write_sluice(const struct ruleset *rs, const char *path)
{
	char buf[ADDR_STRLEN];
	int err;
	FILE *f = open_out(path, &err);

	if (!f)
		return err;
	header(f, rs);
	fprintf(f, "mode enforce\ndefault deny\n");
	for (size_t e = 0; e < rs->params.nextra; e++) {
		prefix_format(&rs->params.extra[e].pfx, buf, sizeof(buf));
		fprintf(f, "%s %s\n", verdict_name(rs->params.extra[e].action), buf);
	}
	for (size_t i = 0; i < rs->n; i++) {
		prefix_format(&rs->rules[i].pfx, buf, sizeof(buf));
		fprintf(f, "%s %s%s\n", verdict_name(rs->rules[i].action), buf,
			rs->rules[i].ports && rs->ports ? " " RULESET_PORTS_SLUICE : "");
	}
	return close_out(f, path);
}

static enum ruleset_set set_of(const struct ruleset *rs, const struct ruleset_rule *r)
{
	if (r->action == SLUICE_VERDICT_DENY)
		return RULESET_DENY;
	return r->ports && rs->ports ? RULESET_PORTS : RULESET_ALLOW;
}

/*
 * Calls emit for every prefix of one family that goes into set s: the extra prefixes go
 * into the allow or deny sets, ahead of the generated ones.
 */
/* emit may be NULL: then it only counts. */
static size_t for_each_in_set(const struct ruleset *rs, bool v4, enum ruleset_set s,
			      void (*emit)(FILE *f, const char *pfx, size_t i, const void *arg),
			      FILE *f, const void *arg)
{
	char buf[ADDR_STRLEN];
	size_t count = 0;

	for (size_t e = 0; e < rs->params.nextra; e++) {
		const struct ruleset_extra *x = &rs->params.extra[e];

		if (addr_is_v4(&x->pfx.addr) != v4 ||
		    (x->action == SLUICE_VERDICT_DENY ? RULESET_DENY : RULESET_ALLOW) != s)
			continue;
		prefix_format(&x->pfx, buf, sizeof(buf));
		if (emit)
			emit(f, buf, count, arg);
		count++;
	}
	for (size_t i = 0; i < rs->n; i++) {
		const struct ruleset_rule *r = &rs->rules[i];

		if (addr_is_v4(&r->pfx.addr) != v4 || set_of(rs, r) != s)
			continue;
		prefix_format(&r->pfx, buf, sizeof(buf));
		if (emit)
			emit(f, buf, count, arg);
		count++;
	}
	return count;
}

static void emit_nft(FILE *f, const char *pfx, size_t i, const void *arg)
{
	(void)arg;
	fprintf(f, "%s%s", i == 0 ? "\t\telements = {\n\t\t\t" : ",\n\t\t\t", pfx);
}

/*
 * One interval set per family and outcome, and an output chain that decides as sluice
 * does: the prefixes are disjoint, so the order of the rules does not matter; anything
 * else is dropped, as by `default deny`. The file replaces the whole ruleset in one
 * transaction (`flush ruleset` first), as sluice replaces its policy.
 */
int ruleset_write_nft(const struct ruleset *rs, const char *path, size_t elements[2][RULESET_SETS])
{
	int err;
	FILE *f = open_out(path, &err);

	if (!f)
		return err;
	header(f, rs);
	fprintf(f, "flush ruleset\ntable inet " RULESET_NFT_TABLE " {\n");
	for (int v6 = 0; v6 <= 1; v6++) {
		for (int s = 0; s < RULESET_SETS; s++) {
			size_t n;

			fprintf(f, "\tset %s%d {\n\t\ttype %s; flags interval;\n",
				ruleset_set_names[s], v6 ? 6 : 4, v6 ? "ipv6_addr" : "ipv4_addr");
			n = for_each_in_set(rs, !v6, s, emit_nft, f, NULL);
			fprintf(f, "%s\t}\n", n ? "\n\t\t}\n" : "");
			if (elements)
				elements[v6][s] = n;
		}
	}
	fprintf(f, "\tchain egress {\n\t\ttype filter hook output priority filter; policy drop;\n");
	if (rs->params.accept_loopback)
		fprintf(f, "\t\toif \"lo\" accept\n");
	fprintf(f, "\t\tip daddr @deny4 drop\n\t\tip6 daddr @deny6 drop\n");
	if (rs->ports)
		fprintf(f, "\t\tip daddr @ports4 " RULESET_PORTS_NFT " accept\n"
			   "\t\tip6 daddr @ports6 " RULESET_PORTS_NFT " accept\n");
	fprintf(f, "\t\tip daddr @allow4 accept\n\t\tip6 daddr @allow6 accept\n\t}\n}\n");
	return close_out(f, path);
}

static void emit_ipset(FILE *f, const char *pfx, size_t i, const void *arg)
{
	(void)i;
	fprintf(f, "add %s-new %s\n", (const char *)arg, pfx);
}

static size_t pow2_at_least(size_t n, size_t min)
{
	size_t p = min;

	while (p < n)
		p *= 2;
	return p;
}

/*
 * For each set: create the live set if it is missing (`-exist` makes that a no-op
 * otherwise), fill a new one beside it, swap the two, destroy the old contents. Each set
 * is replaced atomically; the six together are not (ipset has no transaction across
 * sets). The hash is sized for its elements, as an admin loading a list this large would
 * do, so the load does not spend its time growing the table.
 */
int ruleset_write_ipset(const struct ruleset *rs, const char *path,
			size_t elements[2][RULESET_SETS])
{
	int err;
	FILE *f = open_out(path, &err);

	if (!f)
		return err;
	header(f, rs);
	for (int v6 = 0; v6 <= 1; v6++) {
		for (int s = 0; s < RULESET_SETS; s++) {
			char name[32];
			size_t n = for_each_in_set(rs, !v6, s, NULL, NULL, NULL), maxelem, hashsize;

			snprintf(name, sizeof(name), RULESET_IPSET_PREFIX "%s%d",
				 ruleset_set_names[s], v6 ? 6 : 4);
			maxelem = pow2_at_least(2 * n, IPSET_MAXELEM_MIN);
			hashsize = pow2_at_least(n, IPSET_HASHSIZE_MIN);
			for (int live = 1; live >= 0; live--)
				fprintf(f,
					"create %s%s hash:net family %s hashsize %zu maxelem %zu\n",
					name, live ? "" : "-new", v6 ? "inet6" : "inet", hashsize,
					maxelem);
			for_each_in_set(rs, !v6, s, emit_ipset, f, name);
			fprintf(f, "swap %s-new %s\ndestroy %s-new\n", name, name, name);
			if (elements)
				elements[v6][s] = n;
		}
	}
	return close_out(f, path);
}

static void filter_head(FILE *f, const struct ruleset *rs)
{
	header(f, rs);
	fprintf(f, "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT DROP [0:0]\n");
	if (rs->params.accept_loopback)
		fprintf(f, "-A OUTPUT -o lo -j ACCEPT\n");
}

/* OUTPUT policy DROP (default deny); deny set, port rule, allow set, as the nft chain. */
int ruleset_write_ipset_rules(const struct ruleset *rs, const char *path4, const char *path6)
{
	for (int v6 = 0; v6 <= 1; v6++) {
		const char *path = v6 ? path6 : path4;
		int fam = v6 ? 6 : 4, err;
		FILE *f = open_out(path, &err);

		if (!f)
			return err;
		filter_head(f, rs);
		fprintf(f,
			"-A OUTPUT -m set --match-set " RULESET_IPSET_PREFIX "deny%d dst -j DROP\n",
			fam);
		if (rs->ports)
			fprintf(f,
				"-A OUTPUT -m set --match-set " RULESET_IPSET_PREFIX
				"ports%d dst " RULESET_PORTS_IPTABLES " -j ACCEPT\n",
				fam);
		fprintf(f,
			"-A OUTPUT -m set --match-set " RULESET_IPSET_PREFIX
			"allow%d dst -j ACCEPT\nCOMMIT\n",
			fam);
		err = close_out(f, path);
		if (err)
			return err;
	}
	return 0;
}

/*
 * First match wins, so the rules are in the generated order and the extra prefixes come
 * last, denied ones first: a packet to one of them walks every other rule first, as it
 * does when a list is appended to by hand or by a tool.
 */
int ruleset_write_iptables_linear(const struct ruleset *rs, size_t n, const char *path,
				  size_t *written)
{
	char buf[ADDR_STRLEN];
	size_t count = 0;
	int err;
	FILE *f = open_out(path, &err);

	if (!f)
		return err;
	filter_head(f, rs);
	for (size_t i = 0; i < rs->n && count < n; i++) {
		const struct ruleset_rule *r = &rs->rules[i];

		if (!addr_is_v4(&r->pfx.addr))
			continue;
		prefix_format(&r->pfx, buf, sizeof(buf));
		fprintf(f, "-A OUTPUT -d %s%s -j %s\n", buf,
			r->ports && rs->ports ? " " RULESET_PORTS_IPTABLES : "",
			r->action == SLUICE_VERDICT_DENY ? "DROP" : "ACCEPT");
		count++;
	}
	for (int deny = 1; deny >= 0; deny--) {
		for (size_t e = 0; e < rs->params.nextra; e++) {
			const struct ruleset_extra *x = &rs->params.extra[e];

			if (!addr_is_v4(&x->pfx.addr) || (x->action == SLUICE_VERDICT_DENY) != deny)
				continue;
			prefix_format(&x->pfx, buf, sizeof(buf));
			fprintf(f, "-A OUTPUT -d %s -j %s\n", buf, deny ? "DROP" : "ACCEPT");
		}
	}
	fprintf(f, "COMMIT\n");
	*written = count;
	return close_out(f, path);
}

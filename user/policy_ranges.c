// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Compiled prefixes -> the sorted, disjoint ranges the datapath binary-searches. */
#include <endian.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "policy_ranges.h"

typedef unsigned __int128 u128;

/* The deepest nesting of prefixes: one per length, 0..128. */
#define NEST_MAX 129

/* Two 8-byte loads and byte swaps: a byte loop here was a third of the flatten. */
static u128 addr_number(const struct sluice_addr *a)
{
	__u64 hi, lo;

	memcpy(&hi, a->a, 8);
	memcpy(&lo, a->a + 8, 8);
	return (u128)be64toh(hi) << 64 | be64toh(lo);
}

static u128 prefix_end(u128 start, unsigned prefixlen)
{
	return prefixlen >= 128 ? start : start | (~(u128)0 >> prefixlen);
}

int lpm_key_order(const struct sluice_lpm_key *a, const struct sluice_lpm_key *b)
{
	u128 x = addr_number(&a->addr), y = addr_number(&b->addr);

	if (x != y)
		return x < y ? -1 : 1;
	return a->prefixlen < b->prefixlen ? -1 : a->prefixlen > b->prefixlen;
}

static int entry_cmp(const void *a, const void *b)
{
	return lpm_key_order(&((const struct compiled_entry *)a)->key,
			     &((const struct compiled_entry *)b)->key);
}

/* How many entries from the start are already in order. */
static size_t ordered_run(const struct compiled_entry *entries, size_t n)
{
	size_t run = n ? 1 : 0;

	while (run < n && entry_cmp(&entries[run - 1], &entries[run]) <= 0)
		run++;
	return run;
}

int compiled_entries_sort(struct compiled_entry *entries, size_t n)
{
	size_t run = ordered_run(entries, n), i, j, k;
	struct compiled_entry *tmp;

	if (run == n)
		return 0;
	/* Usually only a few entries trail the ordered run: sort those, then merge. */
	qsort(entries + run, n - run, sizeof(*entries), entry_cmp);
	tmp = malloc(n * sizeof(*tmp));
	if (!tmp)
		return -ENOMEM;
	for (i = 0, j = run, k = 0; i < run || j < n;) {
		bool right = j < n && (i == run || entry_cmp(&entries[j], &entries[i]) < 0);

		tmp[k++] = right ? entries[j++] : entries[i++];
	}
	memcpy(entries, tmp, n * sizeof(*tmp));
	free(tmp);
	return 0;
}

struct flattener {
	struct sluice_policy_range *bank;
	size_t cap, n;
	__u8 flags; /* added to every range's decision */
	u128 cur;  /* the first address no range covers yet */
	bool full; /* cur went past the last address */
	struct {
		u128 end;
		const struct sluice_policy_entry *d;
	} open[NEST_MAX]; /* the prefixes containing cur, innermost last */
	int depth;
};

/* Two decisions alike, all 16 bytes, as two words (a memcmp call per range cost more). */
static bool same_decision(const struct sluice_policy_entry *a, const struct sluice_policy_entry *b)
{
	__u64 x[2], y[2];

	memcpy(x, a, sizeof(x));
	memcpy(y, b, sizeof(y));
	return x[0] == y[0] && x[1] == y[1];
}

/* A range from f->cur with decision d (merged into the previous one when they decide alike). */
static int emit(struct flattener *f, const struct sluice_policy_entry *from)
{
	struct sluice_policy_entry d = *from;
	struct sluice_policy_range *r;

	d.flags |= f->flags;
	if (f->n && same_decision(&f->bank[f->n - 1].decision, &d))
		return 0;
	if (f->n == f->cap)
		return -E2BIG;
	r = &f->bank[f->n++];
	r->start_hi = (__u64)(f->cur >> 64);
	r->start_lo = (__u64)f->cur;
	r->decision = d;
	return 0;
}

/* Close the innermost open prefix: the addresses from cur to its end are its own. */
static int close_innermost(struct flattener *f)
{
	u128 end = f->open[f->depth - 1].end;
	int err = 0;

	if (!f->full && f->cur <= end) {
		err = emit(f, f->open[f->depth - 1].d);
		if (end == ~(u128)0)
			f->full = true;
		else
			f->cur = end + 1;
	}
	f->depth--;
	return err;
}

/* Walk e, the next prefix in address order: close what ends before it, open it. */
static int step(struct flattener *f, const struct compiled_entry *e)
{
	u128 start = addr_number(&e->key.addr);
	int err = 0;

	if (e->key.prefixlen > 128)
		return -EINVAL;
	while (!err && f->depth && f->open[f->depth - 1].end < start)
		err = close_innermost(f);
	if (err)
		return err;
	if (f->depth) {
		/* Up to the new prefix, the addresses belong to the one containing it. */
		if (f->cur < start) {
			err = emit(f, f->open[f->depth - 1].d);
			f->cur = start;
		}
	} else if (f->cur != start || f->full) {
		return -EINVAL; /* addresses no prefix covers: the catch-all is missing */
	}
	if (f->depth == NEST_MAX)
		return -EINVAL; /* only a prefix given twice nests this deep */
	f->open[f->depth].end = prefix_end(start, e->key.prefixlen);
	f->open[f->depth].d = &e->value;
	f->depth++;
	return err;
}

long policy_flatten(const struct compiled_entry *entries, size_t n, __u8 flags,
		    struct sluice_policy_range *bank, size_t cap)
{
	struct flattener *f = calloc(1, sizeof(*f));
	struct compiled_entry *late = NULL;
	size_t sorted = ordered_run(entries, n), nlate, i, j;
	long ret = 0;

	if (!f)
		return -ENOMEM;
	f->bank = bank;
	f->cap = cap;
	f->flags = flags;
	/*
	 * The compiler emits its prefixes in order but appends the catch-alls it adds: walk the
	 * ordered run and the sorted rest side by side instead of sorting everything.
	 */
	nlate = n - sorted;
	if (nlate) {
		late = malloc(nlate * sizeof(*late));
		if (!late) {
			free(f);
			return -ENOMEM;
		}
		memcpy(late, entries + sorted, nlate * sizeof(*late));
		qsort(late, nlate, sizeof(*late), entry_cmp);
	}
	for (i = 0, j = 0; !ret && (i < sorted || j < nlate);) {
		bool from_late = j < nlate && (i == sorted || entry_cmp(&late[j], &entries[i]) < 0);

		ret = step(f, from_late ? &late[j++] : &entries[i++]);
	}
	while (!ret && f->depth)
		ret = close_innermost(f);
	if (!ret && (!f->full || f->n == 0))
		ret = -EINVAL; /* the ranges must reach the last address */
	if (!ret) {
		bank[0].start_lo =
			f->n; /* element 0 starts at 0: its start field holds the count */
		ret = (long)f->n;
	}
	free(late);
	free(f);
	return ret;
}

size_t policy_bank_most(const struct compiled_policy *cp)
{
	/* Each prefix opens a range and closes one; a few more for the catch-alls' edges. */
	return 2 * cp->n + 3 + 2 * (cp->nports + 1) + 3;
}

/*
 * The port entries as prefixes over the same 128-bit space as addresses: the class (big
 * endian), the protocol and the port are its first 7 bytes, so a class's /32, /40 and /40+k
 * entries keep their lengths. A ::/0 catch-all denies a class that is not there (a broken
 * install): fail closed.
 */
static struct compiled_entry *port_prefixes(const struct compiled_policy *cp)
{
	struct compiled_entry *out = calloc(cp->nports + 1, sizeof(*out));

	if (!out)
		return NULL;
	out[0].value = (struct sluice_policy_entry){ .rule_id = SLUICE_RULE_NONE,
						     .verdict = SLUICE_VERDICT_DENY,
						     .reason = SLUICE_REASON_NO_POLICY };
	for (size_t i = 0; i < cp->nports; i++) {
		const struct compiled_port_entry *p = &cp->ports[i];
		struct compiled_entry *e = &out[i + 1];

		e->key.prefixlen = p->key.prefixlen;
		e->key.addr.a[0] = p->key.port_class >> 24;
		e->key.addr.a[1] = p->key.port_class >> 16;
		e->key.addr.a[2] = p->key.port_class >> 8;
		e->key.addr.a[3] = p->key.port_class;
		e->key.addr.a[4] = p->key.proto;
		e->key.addr.a[5] = p->key.port[0];
		e->key.addr.a[6] = p->key.port[1];
		e->value.rule_id = p->value.rule_id;
		e->value.verdict = p->value.verdict;
		e->value.reason = p->value.reason;
	}
	return out;
}

long policy_bank_fill(const struct compiled_policy *cp, __u8 flags,
		      struct sluice_policy_range *bank, size_t cap)
{
	struct compiled_entry *ports = port_prefixes(cp);
	long naddr, nports = 0;

	if (!ports)
		return -ENOMEM;
	naddr = policy_flatten(cp->entries, cp->n, flags, bank, cap);
	if (naddr > 0) {
		nports = policy_flatten(ports, cp->nports + 1, 0, bank + naddr, cap - naddr);
		bank[0].start_hi = (__u64)naddr; /* element 0 starts at 0: where the ports begin */
	}
	free(ports);
	if (naddr < 0)
		return naddr;
	return nports < 0 ? nports : naddr + nports;
}

const struct sluice_policy_entry *policy_bank_decide(const struct sluice_policy_range *bank,
						     const struct sluice_addr *dst, __u8 proto,
						     int port, struct sluice_policy_entry *out)
{
	const struct sluice_policy_entry *e = policy_ranges_decide(bank, bank[0].start_lo, dst);
	const struct sluice_policy_range *ports = bank + bank[0].start_hi;
	struct sluice_addr key = { 0 };

	if (!e)
		return NULL;
	*out = *e;
	if (!e->port_class)
		return out;
	key.a[0] = e->port_class >> 24;
	key.a[1] = e->port_class >> 16;
	key.a[2] = e->port_class >> 8;
	key.a[3] = e->port_class;
	key.a[4] = proto;
	if (port >= 0) {
		key.a[5] = port >> 8;
		key.a[6] = port & 0xff;
	}
	e = policy_ranges_decide(ports, ports[0].start_lo, &key);
	if (!e)
		return NULL;
	out->rule_id = e->rule_id;
	out->verdict = e->verdict;
	out->reason = e->reason;
	return out;
}

const struct sluice_policy_entry *policy_ranges_decide(const struct sluice_policy_range *bank,
						       size_t nranges,
						       const struct sluice_addr *dst)
{
	u128 d = addr_number(dst);
	size_t lo = 0, hi = nranges; /* the answer is in [lo, hi) */

	if (!nranges)
		return NULL;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		u128 start = (u128)bank[mid].start_hi << 64 | bank[mid].start_lo;

		if (start <= d)
			lo = mid;
		else
			hi = mid;
	}
	return &bank[lo].decision;
}

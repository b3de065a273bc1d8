// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Budgets: compiling a policy's budgets. Pure C (no libbpf), so the policy fuzzer builds it;
 * installing and reading them back is budget_kernel.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budget.h"
#include "policy.h"

#define NS_PER_S 1000000000ull
/* Prefixes nest at most this deep: one per prefix length 0..128. */
#define BUDGET_NEST_MAX 129

static const char *const budget_kind_names[] = {
#define SLUICE_BUDGET_KIND_NAME(id, name) name,
	SLUICE_BUDGET_KINDS(SLUICE_BUDGET_KIND_NAME)
#undef SLUICE_BUDGET_KIND_NAME
};

const char *budget_kind_name(unsigned kind)
{
	return kind < SLUICE_BUDGET_KIND_MAX ? budget_kind_names[kind] : "unknown";
}

__u32 budget_id(const char *name)
{
	__u32 h = 2166136261u; /* FNV-1a */

	for (const unsigned char *c = (const unsigned char *)name; *c; c++)
		h = (h ^ *c) * 16777619u;
	return h ? h : 1; /* 0 marks a free usage slot in a destination entry (abi.h) */
}

/* One (prefix, budget) pair of a destination budget; budget BUDGET_NONE: a bare ::/0. */
#define BUDGET_NONE 0xff
struct pair {
	struct prefix prefix;
	__u8 budget;
};

static int cmp_pair(const void *a, const void *b)
{
	const struct pair *x = a, *y = b;
	int c = memcmp(x->prefix.addr.a, y->prefix.addr.a, sizeof(x->prefix.addr.a));

	/* Address, then length: every prefix comes right after the prefixes containing it. */
	if (c)
		return c;
	return (x->prefix.prefixlen > y->prefix.prefixlen) - (x->prefix.prefixlen < y->prefix.prefixlen);
}

static int popcount64(__u64 v)
{
	return __builtin_popcountll(v);
}

/* The set id of mask (interned), or -E2BIG when there are too many distinct sets. */
static int intern_set(struct compiled_budgets *cb, __u64 mask, __u64 *masks)
{
	struct sluice_budget_set *s;

	for (size_t i = 0; i < cb->nsets; i++)
		if (masks[i] == mask)
			return i;
	if (cb->nsets == SLUICE_BUDGET_SETS)
		return -E2BIG;
	s = &cb->sets[cb->nsets];
	memset(s, 0, sizeof(*s));
	for (unsigned b = 0; b < SLUICE_BUDGET_MAX; b++)
		if (mask & (1ull << b)) {
			s->budget[s->n++] = b;
			s->block |= cb->defs[b].block;
		}
	masks[cb->nsets] = mask;
	return cb->nsets++;
}

int budget_compile(const struct policy *p, struct compiled_budgets *out, char *err, size_t len)
{
	struct {
		struct prefix prefix;
		__u64 mask;
	} stack[BUDGET_NEST_MAX];
	__u64 masks[SLUICE_BUDGET_SETS] = { 0 }, global = 0;
	struct pair *pairs;
	size_t npairs = 0, depth = 0;
	int ret = 0;

	_Static_assert(SLUICE_BUDGET_MAX <= 64, "budget masks are 64 bits");
	memset(out, 0, sizeof(*out));
	out->nsets = 1; /* set 0: no budget */
	if (p->nbudgets > SLUICE_BUDGET_MAX) {
		snprintf(err, len, "more than %u budgets", SLUICE_BUDGET_MAX);
		return -E2BIG;
	}
	for (size_t i = 0; i < p->nbudgets; i++) {
		const struct policy_budget *b = &p->budgets[i];
		struct sluice_budget *d = &out->defs[i];

		*d = (struct sluice_budget){ .limit = b->limit, .window_ns = b->window_s * NS_PER_S,
					     .id = budget_id(b->name), .kind = b->kind,
					     .block = b->block };
		for (size_t k = 0; k < i; k++) {
			if (out->defs[k].id == d->id) {
				snprintf(err, len, "budget names '%s' and '%s' hash alike: rename one",
					 p->budgets[k].name, b->name);
				return -E2BIG;
			}
		}
		if (b->kind != SLUICE_BUDGET_DEST)
			global |= 1ull << i;
		else
			npairs += b->nprefixes;
	}
	out->ndefs = p->nbudgets;
	if (p->nbudgets == 0)
		return 0;
	pairs = malloc((npairs + 1) * sizeof(*pairs));
	if (!pairs)
		return -ENOMEM;
	npairs = 0;
	for (size_t i = 0; i < p->nbudgets; i++)
		for (size_t k = 0; p->budgets[i].kind == SLUICE_BUDGET_DEST &&
				   k < p->budgets[i].nprefixes; k++)
			pairs[npairs++] = (struct pair){ p->budgets[i].prefixes[k], i };
	/* User and node budgets apply to every destination: ::/0 carries them. */
	if (global)
		pairs[npairs++] = (struct pair){ { .prefixlen = 0 }, BUDGET_NONE };
	qsort(pairs, npairs, sizeof(*pairs), cmp_pair);
	out->targets = calloc(npairs ? npairs : 1, sizeof(*out->targets));
	if (!out->targets) {
		free(pairs);
		return -ENOMEM;
	}
	/*
	 * Walk in order with the chain of enclosing prefixes on a stack: a prefix's set is what
	 * its own budgets, its enclosing prefixes' budgets and the user/node budgets add up to.
	 */
	for (size_t i = 0; i < npairs;) {
		struct prefix here = pairs[i].prefix;
		__u64 mask = global;
		int set, n;

		for (; i < npairs && pairs[i].prefix.prefixlen == here.prefixlen &&
		       memcmp(&pairs[i].prefix.addr, &here.addr, sizeof(here.addr)) == 0;
		     i++)
			if (pairs[i].budget != BUDGET_NONE)
				mask |= 1ull << pairs[i].budget;
		while (depth && !prefix_contains(&stack[depth - 1].prefix, &here.addr))
			depth--;
		if (depth)
			mask |= stack[depth - 1].mask;
		n = popcount64(mask);
		if (n > SLUICE_BUDGET_SLOTS) {
			char buf[ADDR_STRLEN];

			prefix_format(&here, buf, sizeof(buf));
			snprintf(err, len,
				 "%d budgets would apply to destinations in %s (at most %d, user and "
				 "node budgets included)",
				 n, buf, SLUICE_BUDGET_SLOTS);
			ret = -E2BIG;
			break;
		}
		set = intern_set(out, mask, masks);
		if (set < 0) {
			snprintf(err, len, "more than %d different combinations of budgets",
				 SLUICE_BUDGET_SETS - 1);
			ret = -E2BIG;
			break;
		}
		/* The depth is bounded: each stacked prefix is strictly longer than the last. */
		if (depth < BUDGET_NEST_MAX) {
			stack[depth].prefix = here;
			stack[depth++].mask = mask;
		}
		out->targets[out->ntargets++] = (struct budget_target){ here, set };
	}
	free(pairs);
	if (ret)
		compiled_budgets_free(out);
	return ret;
}

void compiled_budgets_free(struct compiled_budgets *cb)
{
	free(cb->targets);
	cb->targets = NULL;
	cb->ntargets = 0;
}

int budget_check(const struct policy *p, char *err, size_t len)
{
	struct compiled_budgets *cb = malloc(sizeof(*cb));
	int ret;

	if (!cb) {
		snprintf(err, len, "out of memory");
		return -ENOMEM;
	}
	ret = budget_compile(p, cb, err, len);
	if (ret == -ENOMEM)
		snprintf(err, len, "out of memory");
	compiled_budgets_free(cb);
	free(cb);
	return ret;
}


// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Policy text -> struct policy (parser), the reference decision, and struct policy ->
 * trie entries (compiler). No BPF here: this file is what the unit tests exercise.
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

#define POLICY_LINE_MAX 4096

static const char *const verdict_names[] = {
#define SLUICE_NAME(id, name) name,
	SLUICE_VERDICTS(SLUICE_NAME)
#undef SLUICE_NAME
};
static const char *const reason_names[] = {
#define SLUICE_NAME(id, name) name,
	SLUICE_REASONS(SLUICE_NAME)
#undef SLUICE_NAME
};
static const char *const hook_names[] = {
#define SLUICE_NAME(id, name) name,
	SLUICE_HOOKS(SLUICE_NAME)
#undef SLUICE_NAME
};

const char *verdict_name(unsigned v)
{
	return v < SLUICE_VERDICT_MAX ? verdict_names[v] : "unknown";
}

const char *reason_name(unsigned r)
{
	return r < SLUICE_REASON_MAX ? reason_names[r] : "unknown";
}

const char *hook_name(unsigned h)
{
	return h < SLUICE_HOOK_MAX ? hook_names[h] : "unknown";
}

void policy_init(struct policy *p)
{
	memset(p, 0, sizeof(*p));
	p->mode = SLUICE_MODE_ENFORCE;
	p->default_verdict = SLUICE_VERDICT_DENY;
}

void policy_free(struct policy *p)
{
	free(p->rules);
	policy_init(p);
}

int policy_add_rule(struct policy *p, __u8 action, const struct prefix *dst, const char *name,
		    unsigned line)
{
	struct policy_rule *r;

	if (action != SLUICE_VERDICT_ALLOW && action != SLUICE_VERDICT_DENY)
		return -EINVAL;
	/* Rule ids must stay clear of the reserved ids at the top of the range. */
	if (p->nrules >= SLUICE_POLICY_MAX)
		return -E2BIG;
	if (p->nrules == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 64;
		void *grown = realloc(p->rules, cap * sizeof(*p->rules));

		if (!grown)
			return -ENOMEM;
		p->rules = grown;
		p->cap = cap;
	}
	r = &p->rules[p->nrules++];
	memset(r, 0, sizeof(*r));
	r->action = action;
	r->dst = *dst;
	r->line = line;
	snprintf(r->name, sizeof(r->name), "%s", name ? name : "");
	return 0;
}

/* --- parser ----------------------------------------------------------------------------- */

struct parser {
	const char *file;     /* as given, for messages */
	const char *basename; /* for rule identities */
	unsigned line;
	bool have_mode, have_default;
	unsigned mode_line, default_line;
	char *err;
};

struct token {
	const char *text;
	unsigned col; /* 1-based */
};

#define MAX_TOKENS 8

static int fail(struct parser *ps, unsigned col, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct parser *ps, unsigned col, const char *fmt, ...)
{
	char msg[POLICY_ERROR_MAX / 2];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(ps->err, POLICY_ERROR_MAX, "%s:%u:%u: %s", ps->file, ps->line, col, msg);
	return -EINVAL;
}

/* Split a line in place into tokens; a '#' starts a comment. Returns the count or -EINVAL. */
static int tokenize(struct parser *ps, char *line, struct token *tok)
{
	int n = 0;
	char *c = line;

	for (;;) {
		while (*c == ' ' || *c == '\t')
			c++;
		if (*c == '\0' || *c == '#' || *c == '\n' || *c == '\r')
			break;
		if (n == MAX_TOKENS)
			return fail(ps, c - line + 1, "too many words in one statement");
		tok[n].text = c;
		tok[n].col = c - line + 1;
		n++;
		while (*c && *c != ' ' && *c != '\t' && *c != '#' && *c != '\n' && *c != '\r') {
			if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
				return fail(ps, c - line + 1, "unexpected character 0x%02x",
					    (unsigned char)*c);
			c++;
		}
		if (*c == '#' || *c == '\0') {
			/* A word ends where a comment starts: "deny 10.0.0.0/8# x" is fine. */
			*c = '\0';
			break;
		}
		*c++ = '\0';
	}
	return n;
}

static int parse_statement(struct parser *ps, struct token *tok, int n, struct policy *p)
{
	const char *kw = tok[0].text;

	if (strcmp(kw, "mode") == 0) {
		if (n != 2)
			return fail(ps, n < 2 ? tok[0].col : tok[2].col,
				    "expected 'mode enforce' or 'mode audit'");
		if (ps->have_mode)
			return fail(ps, tok[0].col, "mode is already set at line %u",
				    ps->mode_line);
		if (strcmp(tok[1].text, "enforce") == 0)
			p->mode = SLUICE_MODE_ENFORCE;
		else if (strcmp(tok[1].text, "audit") == 0)
			p->mode = SLUICE_MODE_AUDIT;
		else
			return fail(ps, tok[1].col, "unknown mode '%s' (expected enforce or audit)",
				    tok[1].text);
		ps->have_mode = true;
		ps->mode_line = ps->line;
		return 0;
	}
	if (strcmp(kw, "default") == 0) {
		if (n != 2)
			return fail(ps, n < 2 ? tok[0].col : tok[2].col,
				    "expected 'default allow' or 'default deny'");
		if (ps->have_default)
			return fail(ps, tok[0].col, "default is already set at line %u",
				    ps->default_line);
		if (strcmp(tok[1].text, "allow") == 0)
			p->default_verdict = SLUICE_VERDICT_ALLOW;
		else if (strcmp(tok[1].text, "deny") == 0)
			p->default_verdict = SLUICE_VERDICT_DENY;
		else
			return fail(ps, tok[1].col,
				    "unknown default '%s' (expected allow or deny)", tok[1].text);
		ps->have_default = true;
		ps->default_line = ps->line;
		return 0;
	}
	if (strcmp(kw, "allow") == 0 || strcmp(kw, "deny") == 0) {
		__u8 action = kw[0] == 'a' ? SLUICE_VERDICT_ALLOW : SLUICE_VERDICT_DENY;
		char name[POLICY_NAME_MAX], msg[128];
		struct prefix dst;
		size_t col = 0;
		int err;

		if (n < 2)
			return fail(ps, tok[0].col, "expected a destination after '%s'", kw);
		if (prefix_parse(tok[1].text, &dst, msg, sizeof(msg), &col) < 0)
			return fail(ps, tok[1].col + col, "%s: '%s'", msg, tok[1].text);
		if (n > 2)
			return fail(ps, tok[2].col,
				    "unexpected '%s': this version accepts only '%s ADDRESS[/LEN]'",
				    tok[2].text, kw);
		snprintf(name, sizeof(name), "%s:%u", ps->basename, ps->line);
		err = policy_add_rule(p, action, &dst, name, ps->line);
		if (err == -E2BIG)
			return fail(ps, tok[0].col, "too many rules (at most %u)",
				    SLUICE_POLICY_MAX);
		if (err)
			return fail(ps, tok[0].col, "%s", strerror(-err));
		return 0;
	}
	return fail(ps, tok[0].col, "unknown statement '%s' (expected mode, default, allow or deny)",
		    kw);
}

static int parse_stream(FILE *f, const char *file, struct policy *p, char *err)
{
	char path_copy[PATH_MAX];
	struct parser ps = { .file = file, .err = err };
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int ret = 0;

	snprintf(path_copy, sizeof(path_copy), "%s", file);
	ps.basename = basename(path_copy);
	policy_init(p);
	while ((len = getline(&line, &cap, f)) >= 0) {
		struct token tok[MAX_TOKENS];
		int n;

		ps.line++;
		if (len > POLICY_LINE_MAX) {
			ret = fail(&ps, POLICY_LINE_MAX, "line longer than %d bytes",
				   POLICY_LINE_MAX);
			break;
		}
		if ((size_t)len != strlen(line)) {
			ret = fail(&ps, strlen(line) + 1, "NUL byte in policy");
			break;
		}
		n = tokenize(&ps, line, tok);
		if (n < 0) {
			ret = n;
			break;
		}
		if (n == 0)
			continue;
		ret = parse_statement(&ps, tok, n, p);
		if (ret)
			break;
	}
	if (!ret && ferror(f)) {
		ret = -EIO;
		snprintf(err, POLICY_ERROR_MAX, "%s: read error", file);
	}
	free(line);
	if (ret)
		policy_free(p);
	return ret;
}

int policy_parse_file(const char *path, struct policy *p, char err[POLICY_ERROR_MAX])
{
	FILE *f = fopen(path, "re");
	int ret;

	if (!f) {
		ret = -errno;
		snprintf(err, POLICY_ERROR_MAX, "cannot open policy %s: %s", path, strerror(-ret));
		policy_init(p);
		return ret;
	}
	ret = parse_stream(f, path, p, err);
	fclose(f);
	return ret;
}

int policy_parse_text(const char *file, const char *text, struct policy *p,
		      char err[POLICY_ERROR_MAX])
{
	FILE *f = fmemopen((void *)text, strlen(text), "r");
	int ret;

	if (!f) {
		ret = -errno;
		snprintf(err, POLICY_ERROR_MAX, "%s: %s", file, strerror(-ret));
		policy_init(p);
		return ret;
	}
	ret = parse_stream(f, file, p, err);
	fclose(f);
	return ret;
}

/* --- reference decision ----------------------------------------------------------------- */

static bool prefix_is_v4(const struct prefix *p)
{
	return p->prefixlen >= 96 && addr_is_v4(&p->addr);
}

static __u8 apply_mode(const struct policy *p, __u8 verdict)
{
	return p->mode == SLUICE_MODE_AUDIT && verdict == SLUICE_VERDICT_DENY ? SLUICE_VERDICT_AUDIT
									      : verdict;
}

void policy_decide(const struct policy *p, const struct sluice_addr *dst,
		   struct sluice_policy_entry *out)
{
	const struct policy_rule *best = NULL;
	size_t best_id = 0;
	bool v4 = addr_is_v4(dst);

	for (size_t i = 0; i < p->nrules; i++) {
		const struct policy_rule *r = &p->rules[i];

		/* An IPv6 rule never matches an IPv4 packet, even ::/0. */
		if (prefix_is_v4(&r->dst) != v4 || !prefix_contains(&r->dst, dst))
			continue;
		if (best && r->dst.prefixlen < best->dst.prefixlen)
			continue;
		if (best && r->dst.prefixlen == best->dst.prefixlen &&
		    !(r->action == SLUICE_VERDICT_DENY && best->action == SLUICE_VERDICT_ALLOW))
			continue;
		best = r;
		best_id = i;
	}
	memset(out, 0, sizeof(*out));
	out->flags = p->mode == SLUICE_MODE_AUDIT ? SLUICE_POLICY_F_AUDIT : 0;
	if (best) {
		out->rule_id = best_id;
		out->verdict = apply_mode(p, best->action);
		out->reason = SLUICE_REASON_RULE;
	} else {
		out->rule_id = SLUICE_RULE_DEFAULT;
		out->verdict = apply_mode(p, p->default_verdict);
		out->reason = SLUICE_REASON_DEFAULT;
	}
}

/* --- compiler --------------------------------------------------------------------------- */

static const struct policy *sort_policy; /* qsort has no context argument */

static int cmp_rule_ids(const void *a, const void *b)
{
	const struct policy_rule *ra = &sort_policy->rules[*(const size_t *)a];
	const struct policy_rule *rb = &sort_policy->rules[*(const size_t *)b];
	int c;

	if (ra->dst.prefixlen != rb->dst.prefixlen)
		return ra->dst.prefixlen < rb->dst.prefixlen ? -1 : 1;
	c = memcmp(ra->dst.addr.a, rb->dst.addr.a, 16);
	if (c)
		return c;
	/* Same prefix: deny first (it wins), then the earliest rule. */
	if (ra->action != rb->action)
		return ra->action == SLUICE_VERDICT_DENY ? -1 : 1;
	return *(const size_t *)a < *(const size_t *)b ? -1 : 1;
}

int policy_compile(const struct policy *p, __u32 generation, struct compiled_policy *out)
{
	static const struct prefix catch_all_v6 = { .prefixlen = 0 };
	static const struct prefix catch_all_v4 = {
		.addr = { .a = { [10] = 0xff, [11] = 0xff } },
		.prefixlen = 96,
	};
	const struct prefix *catch_alls[] = { &catch_all_v6, &catch_all_v4 };
	__u8 flags = p->mode == SLUICE_MODE_AUDIT ? SLUICE_POLICY_F_AUDIT : 0;
	size_t *order, n = 0;

	memset(out, 0, sizeof(*out));
	order = malloc((p->nrules ? p->nrules : 1) * sizeof(*order));
	out->entries = calloc(p->nrules + 2, sizeof(*out->entries));
	if (!order || !out->entries) {
		free(order);
		free(out->entries);
		out->entries = NULL;
		return -ENOMEM;
	}
	for (size_t i = 0; i < p->nrules; i++)
		order[i] = i;
	sort_policy = p;
	qsort(order, p->nrules, sizeof(*order), cmp_rule_ids);

	for (size_t i = 0; i < p->nrules; i++) {
		const struct policy_rule *r = &p->rules[order[i]];
		struct compiled_entry *e;

		/* Sorted so the winner of each prefix comes first; skip the rest. */
		if (n > 0) {
			const struct compiled_entry *prev = &out->entries[n - 1];

			if (prev->key.prefixlen == r->dst.prefixlen &&
			    memcmp(prev->key.addr.a, r->dst.addr.a, 16) == 0)
				continue;
		}
		e = &out->entries[n++];
		e->key.prefixlen = r->dst.prefixlen;
		e->key.addr = r->dst.addr;
		e->value.rule_id = order[i];
		e->value.generation = generation;
		e->value.verdict = apply_mode(p, r->action);
		e->value.reason = SLUICE_REASON_RULE;
		e->value.flags = flags;
	}
	free(order);

	/*
	 * The default verdict lives at ::/0 and at ::ffff:0:0/96 (all of IPv4). The second one
	 * also keeps IPv6 rules shorter than /96 (such as ::/0) from matching IPv4 packets.
	 * A rule written for exactly that prefix takes the slot instead.
	 */
	for (size_t c = 0; c < 2; c++) {
		const struct prefix *ca = catch_alls[c];
		bool taken = false;
		struct compiled_entry *e;

		for (size_t i = 0; i < n && !taken; i++)
			taken = out->entries[i].key.prefixlen == ca->prefixlen &&
				memcmp(out->entries[i].key.addr.a, ca->addr.a, 16) == 0;
		if (taken)
			continue;
		e = &out->entries[n++];
		e->key.prefixlen = ca->prefixlen;
		e->key.addr = ca->addr;
		e->value.rule_id = SLUICE_RULE_DEFAULT;
		e->value.generation = generation;
		e->value.verdict = apply_mode(p, p->default_verdict);
		e->value.reason = SLUICE_REASON_DEFAULT;
		e->value.flags = flags;
	}
	out->n = n;
	return 0;
}

void compiled_policy_free(struct compiled_policy *cp)
{
	free(cp->entries);
	cp->entries = NULL;
	cp->n = 0;
}

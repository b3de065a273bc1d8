// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Policy text -> struct policy (parser), the reference decision, and struct policy ->
 * kernel entries (compiler). No BPF here: this file is what the unit tests and the fuzzer
 * exercise.
 */
#define _GNU_SOURCE /* sched_getcpu, pthread_attr_setaffinity_np */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <netinet/in.h>

#include "policy.h"
#include "budget.h"
#include "units.h"

#define POLICY_LINE_MAX 4096
#define TOKEN_MAX 128
#define TOKENS_MAX 160 /* a line of 4096 bytes cannot hold more tokens worth parsing */

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

/*
 * Is s the word w? Inline: the parser compares each token with a few keywords, and a libc
 * call per comparison was a twelfth of a parse.
 */
static inline bool streq(const char *s, const char *w)
{
	while (*w && *s == *w)
		s++, w++;
	return *s == *w;
}

/* --- the policy in memory ----------------------------------------------------------------- */

static const struct {
	const char *name;
	__u8 number;
} protocols[] = {
	{ "icmp", IPPROTO_ICMP }, { "tcp", IPPROTO_TCP },       { "udp", IPPROTO_UDP },
	{ "icmpv6", IPPROTO_ICMPV6 }, { "sctp", IPPROTO_SCTP },
};

bool proto_has_ports(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP;
}

static const char *proto_label(__u8 proto, char *buf, size_t len)
{
	for (size_t i = 0; i < sizeof(protocols) / sizeof(protocols[0]); i++)
		if (protocols[i].number == proto)
			return protocols[i].name;
	snprintf(buf, len, "%u", proto);
	return buf;
}

void policy_init(struct policy *p)
{
	memset(p, 0, sizeof(*p));
	p->mode = SLUICE_MODE_ENFORCE;
	p->default_verdict = SLUICE_VERDICT_DENY;
	p->essential = true;
	p->replies = true;
}

void policy_free(struct policy *p)
{
	for (size_t i = 0; i < p->nsets; i++)
		free(p->sets[i].prefixes);
	free(p->sets);
	free(p->rules);
	free(p->idents);
	free(p->matches);
	for (size_t i = 0; i < p->nbudgets; i++)
		free(p->budgets[i].prefixes);
	free(p->budgets);
	policy_init(p);
}

/* Grow *arr (of *cap elements of size) to hold need elements. */
static int grow(void **arr, size_t *cap, size_t need, size_t size)
{
	size_t n = *cap ? *cap : 16;
	void *grown;

	if (need <= *cap)
		return 0;
	while (n < need)
		n *= 2;
	grown = realloc(*arr, n * size);
	if (!grown)
		return -ENOMEM;
	*arr = grown;
	*cap = n;
	return 0;
}

static int add_match(struct policy *p, const struct l4_match *m, __u32 *index)
{
	static const struct l4_match any;

	if (p->nmatches == 0) { /* matches[0] is "any", always there */
		if (grow((void **)&p->matches, &p->mcap, 1, sizeof(*p->matches)))
			return -ENOMEM;
		p->matches[p->nmatches++] = any;
	}
	if (!m || m->nprotos == 0) {
		*index = 0;
		return 0;
	}
	if (grow((void **)&p->matches, &p->mcap, p->nmatches + 1, sizeof(*p->matches)))
		return -ENOMEM;
	p->matches[p->nmatches] = *m;
	*index = p->nmatches++;
	return 0;
}

/* Copy s (NULL: empty) into buf of size len, cut to fit; a printf per rule was a hot spot. */
static void copy_text(char *buf, size_t len, const char *s)
{
	size_t n = s ? strnlen(s, len - 1) : 0;

	memcpy(buf, s ? s : "", n);
	buf[n] = '\0';
}

int policy_add_rules(struct policy *p, __u8 action, const struct prefix *dsts, size_t n,
		     const struct l4_match *match, const char *name, const char *target,
		     unsigned line)
{
	struct policy_ident *id;
	__u32 m;

	if (action != SLUICE_VERDICT_ALLOW && action != SLUICE_VERDICT_DENY)
		return -EINVAL;
	/* Rule ids must stay clear of the reserved ids at the top of the range. */
	if (p->nrules + n > SLUICE_POLICY_MAX || p->nidents >= SLUICE_POLICY_MAX)
		return -E2BIG;
	if (add_match(p, match, &m) ||
	    grow((void **)&p->idents, &p->icap, p->nidents + 1, sizeof(*p->idents)) ||
	    grow((void **)&p->rules, &p->cap, p->nrules + n, sizeof(*p->rules)))
		return -ENOMEM;
	id = &p->idents[p->nidents];
	memset(id, 0, sizeof(*id));
	copy_text(id->name, sizeof(id->name), name);
	copy_text(id->target, sizeof(id->target), target);
	id->line = line;
	id->match = m;
	id->action = action;
	for (size_t i = 0; i < n; i++) {
		struct policy_rule *r = &p->rules[p->nrules++];

		r->dst = dsts[i];
		r->ident = p->nidents;
		r->match = m;
		r->action = action;
		r->line = line;
	}
	p->nidents++;
	return 0;
}

int policy_add_rule(struct policy *p, __u8 action, const struct prefix *dst, const char *name,
		    unsigned line)
{
	char target[ADDR_STRLEN];

	prefix_format(dst, target, sizeof(target));
	return policy_add_rules(p, action, dst, 1, NULL, name, target, line);
}

const char *policy_rule_name(const struct policy *p, const struct policy_rule *r)
{
	return r->ident < p->nidents ? p->idents[r->ident].name : "";
}

/* --- parser -------------------------------------------------------------------------------- */

struct token {
	const char *text; /* in the line, cut out with a NUL; a separator: a constant */
	unsigned col;     /* 1-based */
};

/* One file being read; includes nest. */
struct source {
	const char *path; /* as written, for messages */
	char base[POLICY_NAME_MAX]; /* names its rules: basename, or the include as written */
	char dir[PATH_MAX];
	dev_t dev;
	ino_t ino;
	unsigned line;
	const struct source *parent;
};

/*
 * A slot of the rule-name table: the identity's index + 1 (0: free) and its name's hash.
 * With the hash at hand a probe compares names only when the hashes agree: the names
 * themselves lie spread over megabytes of identities, a cache miss each.
 */
struct name_slot {
	__u32 ident1;
	__u32 hash;
};

#define DEFAULT_BASE_MAX 48 /* a default name keeps this much of its file's name */
#define LONG_BITS (8 * sizeof(unsigned long))

struct parser {
	struct policy *p;
	char *err;
	size_t bytes;       /* read so far, all files */
	bool files_allowed; /* includes may be read (not for text input) */
	/* Where each once-only statement was given, for "already set" messages. */
	unsigned mode_line, default_line, essential_line, replies_line;
	const struct source *src; /* the file being read */
	/* A set whose '{' is open across lines. */
	struct policy_set *open_set;
	unsigned open_set_line, open_set_col;
	/*
	 * Rule identities in use, so names stay unique: given names in a hash table (open
	 * addressing), default names ("BASE:LINE") as one bitmap of lines per BASE. 100 000
	 * default names in the table cost a cache miss each (a sixth of the parse); a bitmap
	 * written in line order stays in the cache.
	 */
	struct name_slot *names;
	size_t names_mask;
	struct default_names {
		char base[DEFAULT_BASE_MAX + 1];
		unsigned long *lines; /* bit L: BASE:L is in use */
		size_t nwords;
	} *defaults;
	size_t ndefaults;
	size_t src_defaults1; /* ps->src's entry in defaults + 1; 0: not looked up yet */
	size_t set_members; /* over all sets: nested sets must not multiply memory */
	/* The helper faulting in p->rules and p->idents ahead of the parser (prefault_start). */
	struct prefault {
		pthread_t thread;
		bool running;
		size_t rules, idents; /* capacities reserved: the arrays do not move below them */
		struct prefault_range {
			void *addr;
			size_t len;
		} ranges[2]; /* whole pages of p->rules and p->idents to fault in */
	} prefault;
};

/*
 * FNV-1a, then a final mix: generated names ("policy.conf:1234") differ only in their last
 * characters, and without the mix their hashes sit next to each other, so the linear probing
 * below walks long runs of occupied slots (a third of a 100 000-rule parse went there).
 */
static __u32 name_hash(const char *s)
{
	__u64 h = 0xcbf29ce484222325ull;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 0x100000001b3ull;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return (__u32)h;
}

/* The identity index using name, or -1; *hashp (if given) gets name's hash for name_add. */
static ssize_t name_find(const struct parser *ps, const char *name, __u32 *hashp)
{
	__u32 hash;

	/* No given names yet (the common case): a default name need not even be hashed. */
	if (!hashp && !ps->names)
		return -1;
	hash = name_hash(name);
	if (hashp)
		*hashp = hash;
	if (!ps->names)
		return -1;
	for (size_t h = hash & ps->names_mask;; h = (h + 1) & ps->names_mask) {
		const struct name_slot *slot = &ps->names[h];

		if (!slot->ident1)
			return -1;
		if (slot->hash == hash && strcmp(ps->p->idents[slot->ident1 - 1].name, name) == 0)
			return slot->ident1 - 1;
	}
}

static void name_put(struct name_slot *table, size_t mask, __u32 ident1, __u32 hash)
{
	size_t h = hash & mask;

	while (table[h].ident1)
		h = (h + 1) & mask;
	table[h] = (struct name_slot){ .ident1 = ident1, .hash = hash };
}

/* Index identity ident, whose name hashes to hash (name_find's). */
static int name_add(struct parser *ps, size_t ident, __u32 hash)
{
	if ((ident + 1) * 2 > ps->names_mask) {
		size_t mask = ps->names_mask ? ps->names_mask * 2 + 1 : 255;
		struct name_slot *grown = calloc(mask + 1, sizeof(*grown));

		if (!grown)
			return -ENOMEM;
		for (size_t i = 0; ps->names && i <= ps->names_mask; i++)
			if (ps->names[i].ident1)
				name_put(grown, mask, ps->names[i].ident1, ps->names[i].hash);
		free(ps->names);
		ps->names = grown;
		ps->names_mask = mask;
	}
	/* Identities number at most SLUICE_POLICY_MAX (policy_add_rules): ident + 1 fits. */
	name_put(ps->names, ps->names_mask, ident + 1, hash);
	return 0;
}

/* The entry of defaults for base (cut as default names cut it), added if new; NULL: no memory. */
static struct default_names *defaults_of(struct parser *ps, const char *base, bool add)
{
	size_t n = strnlen(base, DEFAULT_BASE_MAX);
	struct default_names *d;

	for (size_t i = 0; i < ps->ndefaults; i++)
		if (strncmp(ps->defaults[i].base, base, n) == 0 && ps->defaults[i].base[n] == '\0')
			return &ps->defaults[i];
	if (!add)
		return NULL;
	d = realloc(ps->defaults, (ps->ndefaults + 1) * sizeof(*d));
	if (!d)
		return NULL;
	ps->defaults = d;
	d = &ps->defaults[ps->ndefaults++];
	memset(d, 0, sizeof(*d));
	memcpy(d->base, base, n);
	return d;
}

static bool default_used(const struct default_names *d, unsigned line)
{
	return d && line / LONG_BITS < d->nwords &&
	       (d->lines[line / LONG_BITS] >> (line % LONG_BITS) & 1);
}

static int default_add(struct default_names *d, unsigned line)
{
	size_t w = line / LONG_BITS;

	if (w >= d->nwords) {
		size_t nwords = d->nwords ? d->nwords : 64;
		unsigned long *grown;

		while (nwords <= w)
			nwords *= 2;
		grown = realloc(d->lines, nwords * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		memset(grown + d->nwords, 0, (nwords - d->nwords) * sizeof(*grown));
		d->lines = grown;
		d->nwords = nwords;
	}
	d->lines[w] |= 1ul << (line % LONG_BITS);
	return 0;
}

/*
 * Is name, if it has the form of a default name ("BASE:LINE", as rule_default_name writes
 * it), one in use? Then *line is its line (a default name's rule is on that line).
 */
static bool default_name_used(const struct parser *ps, const char *name, unsigned *line)
{
	const char *colon = strrchr(name, ':');
	unsigned long v = 0;
	char base[DEFAULT_BASE_MAX + 1];
	size_t n;

	if (!colon || colon[1] < '1' || colon[1] > '9' || (size_t)(colon - name) > DEFAULT_BASE_MAX)
		return false;
	for (const char *c = colon + 1; *c; c++) {
		if (*c < '0' || *c > '9' || v > UINT_MAX / 10)
			return false;
		v = v * 10 + (*c - '0');
	}
	if (v > UINT_MAX)
		return false;
	n = colon - name;
	memcpy(base, name, n);
	base[n] = '\0';
	for (size_t i = 0; i < ps->ndefaults; i++) {
		/* A base cut to DEFAULT_BASE_MAX matches only names cut the same way. */
		if (strcmp(ps->defaults[i].base, base) == 0 && default_used(&ps->defaults[i], v)) {
			*line = v;
			return true;
		}
	}
	return false;
}

/*
 * Fresh memory is much of the cost of reading a large policy: every 4 KiB page of the rule
 * and identity arrays (18 MB for 100 000 rules) is a page fault, a third of the parse. So
 * for a large file a helper thread faults the pages in ahead of the parser, on another
 * core, with MADV_POPULATE_WRITE, which never changes memory contents: it does not race
 * with the parser writing there. The arrays are reserved first at the size the file
 * suggests, and the parser stops the helper before an array could move (prefault_stop).
 * Where anything fails, the parser faults the pages in itself, as it would without.
 */
#define PREFAULT_FILE_MIN (1u << 20)  /* smaller files: not worth a thread */
#define PREFAULT_SAMPLE 65536         /* bytes read to estimate the number of rules */
#define PREFAULT_BYTES_MAX (32u << 20) /* faulted in at most, whatever the estimate */
/*
 * Steps taking both arrays side by side. Small ones: madvise holds the memory map's lock
 * while it works, and with long calls the parser waited (with 64 steps it was 3 ms slower
 * one run in two).
 */
#define PREFAULT_STEPS 1024

static void *prefault_main(void *arg)
{
	const struct prefault *pf = arg;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	/* A slice of each array per step: the parser fills them side by side. */
	for (size_t step = 0; step < PREFAULT_STEPS; step++) {
		for (int i = 0; i < 2; i++) {
			const struct prefault_range *r = &pf->ranges[i];
			size_t lo = r->len / page * step / PREFAULT_STEPS * page;
			size_t hi = r->len / page * (step + 1) / PREFAULT_STEPS * page;

			if (hi > lo && madvise((char *)r->addr + lo, hi - lo, MADV_POPULATE_WRITE))
				return NULL; /* an older kernel: the parser faults pages in itself */
		}
	}
	return NULL;
}

/* The whole pages inside [addr, addr + len). */
static struct prefault_range whole_pages(void *addr, size_t len)
{
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t lo = ((uintptr_t)addr + page - 1) & ~(page - 1);
	uintptr_t hi = ((uintptr_t)addr + len) & ~(page - 1);

	return hi > lo ? (struct prefault_range){ (void *)lo, hi - lo } : (struct prefault_range){};
}

/*
 * Start the helper for the policy file fd of size bytes, for as many rules as the rule
 * lines (allow, deny) in its first PREFAULT_SAMPLE bytes suggest, PREFAULT_BYTES_MAX at
 * most: what a misleading file can make it fault in for nothing.
 */
static void prefault_start(struct parser *ps, int fd, size_t size)
{
	struct policy *p = ps->p;
	struct prefault *pf = &ps->prefault;
	size_t lines = 0, rules, per_rule = sizeof(*p->rules) + sizeof(*p->idents);
	int self = sched_getcpu();
	pthread_attr_t attr;
	cpu_set_t others;
	sigset_t all, old;
	char *sample;
	ssize_t got;

	/*
	 * The helper runs on the other CPUs: sharing the parser's, it would only take turns
	 * with it (and the scheduler, left alone, sometimes puts it there).
	 */
	if (size < PREFAULT_FILE_MIN || self < 0 || sched_getaffinity(0, sizeof(others), &others))
		return;
	CPU_CLR(self, &others);
	if (!CPU_COUNT(&others) || !(sample = malloc(PREFAULT_SAMPLE)))
		return;
	got = pread(fd, sample, PREFAULT_SAMPLE, 0);
	for (ssize_t i = 0; i < got; i++) {
		if (i && sample[i - 1] != '\n')
			continue;
		while (i < got && (sample[i] == ' ' || sample[i] == '\t'))
			i++;
		lines += i < got && (sample[i] == 'a' || sample[i] == 'd');
	}
	free(sample);
	if (got <= 0 || !lines)
		return;
	rules = size / ((size_t)got / lines);
	if (rules > PREFAULT_BYTES_MAX / per_rule)
		rules = PREFAULT_BYTES_MAX / per_rule;
	if (grow((void **)&p->rules, &p->cap, rules, sizeof(*p->rules)) ||
	    grow((void **)&p->idents, &p->icap, rules, sizeof(*p->idents)))
		return; /* what was reserved stays, for the parser */
	pf->rules = p->cap;
	pf->idents = p->icap;
	pf->ranges[0] = whole_pages(p->rules, rules * sizeof(*p->rules));
	pf->ranges[1] = whole_pages(p->idents, rules * sizeof(*p->idents));
	if (pthread_attr_init(&attr))
		return;
	/* Signals are for the program's own threads: the helper takes none. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pf->running = !pthread_attr_setaffinity_np(&attr, sizeof(others), &others) &&
		      !pthread_create(&pf->thread, &attr, prefault_main, pf);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
}

static void prefault_stop(struct parser *ps)
{
	if (ps->prefault.running)
		pthread_join(ps->prefault.thread, NULL);
	ps->prefault.running = false;
}

static void parser_free(struct parser *ps)
{
	prefault_stop(ps);
	for (size_t i = 0; i < ps->ndefaults; i++)
		free(ps->defaults[i].lines);
	free(ps->defaults);
	free(ps->names);
}

static int fail(struct parser *ps, unsigned col, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct parser *ps, unsigned col, const char *fmt, ...)
{
	char msg[POLICY_ERROR_MAX / 2];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(ps->err, POLICY_ERROR_MAX, "%s:%u:%u: %s", ps->src->path, ps->src->line, col, msg);
	return -EINVAL;
}

static bool is_separator(char c)
{
	return c == '{' || c == '}' || c == ',';
}

/* What a byte of a line is to the tokenizer. */
enum char_class {
	CH_WORD,  /* part of a word */
	CH_SPACE, /* between tokens */
	CH_END,   /* the line's end: NUL, newline, '#' */
	CH_SEP,   /* a token of its own: '{', '}', ',' */
	CH_BAD,   /* a control or non-ASCII byte */
};

/* A table rather than a chain of comparisons per byte: tokenizing was a sixth of a parse. */
static const __u8 char_classes[256] = {
	['\0'] = CH_END,   ['\n'] = CH_END,   ['#'] = CH_END,
	['\t'] = CH_SPACE, ['\r'] = CH_SPACE, [' '] = CH_SPACE,
	[','] = CH_SEP,    ['{'] = CH_SEP,    ['}'] = CH_SEP,
	[1 ... 8] = CH_BAD, [0x0b ... 0x0c] = CH_BAD, [0x0e ... 0x1f] = CH_BAD,
	[0x7f ... 0xff] = CH_BAD, /* the rest, printable ASCII, is CH_WORD (0) */
};

static enum char_class char_class(char c)
{
	return char_classes[(unsigned char)c];
}

/* A separator's token text. */
static const char *separator_text(char c)
{
	return c == '{' ? "{" : c == '}' ? "}" : ",";
}

/*
 * Split a line into tokens: words, and '{', '}', ',' on their own. '#' starts a comment.
 * Words are cut out of the line in place (a NUL after each). Returns the number of tokens
 * or -EINVAL.
 */
static int tokenize(struct parser *ps, char *line, struct token *tok)
{
	char *c = line;
	int n = 0;

	for (;;) {
		char *start;
		enum char_class next;

		while (char_class(*c) == CH_SPACE)
			c++;
		if (char_class(*c) == CH_END)
			return n;
		if (n == TOKENS_MAX)
			return fail(ps, c - line + 1, "too many words on one line");
		tok[n].col = c - line + 1;
		if (char_class(*c) == CH_SEP) {
			tok[n++].text = separator_text(*c++);
			continue;
		}
		start = c;
		while (char_class(*c) == CH_WORD) /* the line's NUL ends it */
			c++;
		/*
		 * As if judged one byte at a time: the length once a word has TOKEN_MAX
		 * characters, else the bad byte that ends it.
		 */
		next = char_class(*c);
		if (c - start > TOKEN_MAX - 1)
			return fail(ps, tok[n].col, "word longer than %d characters", TOKEN_MAX - 1);
		if (next == CH_BAD)
			return fail(ps, c - line + 1, "unexpected character 0x%02x", (unsigned char)*c);
		tok[n++].text = start;
		if (next == CH_SEP) {
			if (n == TOKENS_MAX)
				return fail(ps, c - line + 1, "too many words on one line");
			tok[n].col = c - line + 1;
			tok[n++].text = separator_text(*c);
		}
		*c++ = '\0';
		if (next == CH_END)
			return n;
	}
}

static bool valid_name(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len >= POLICY_NAME_MAX)
		return false;
	for (const char *c = s; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || *c == '_' || *c == '-' || *c == '.' || *c == ':' || *c == '/'))
			return false;
	return true;
}

static struct policy_set *find_set(struct policy *p, const char *name)
{
	for (size_t i = 0; i < p->nsets; i++)
		if (strcmp(p->sets[i].name, name) == 0)
			return &p->sets[i];
	return NULL;
}

/* "at line N" in the same file, else "at FILE:N" would need the file: lines are enough. */
static int once(struct parser *ps, unsigned *seen, const struct token *kw)
{
	if (*seen)
		return fail(ps, kw->col, "%s is already set at line %u", kw->text, *seen);
	*seen = ps->src->line;
	return 0;
}

static int parse_on_off(struct parser *ps, const struct token *tok, int n, bool *out)
{
	if (n != 2)
		return fail(ps, n < 2 ? tok[0].col : tok[2].col, "expected '%s on' or '%s off'",
			    tok[0].text, tok[0].text);
	if (streq(tok[1].text, "on"))
		*out = true;
	else if (streq(tok[1].text, "off"))
		*out = false;
	else
		return fail(ps, tok[1].col, "expected on or off, not '%s'", tok[1].text);
	return 0;
}

static int parse_prefix_token(struct parser *ps, const struct token *t, struct prefix *out)
{
	char msg[256];
	size_t col = 0;

	if (prefix_parse(t->text, out, msg, sizeof(msg), &col) < 0)
		return fail(ps, t->col + col, "%s", msg);
	return 0;
}

/* Append prefixes to a set (an item may itself be @another set, flattened). */
static int set_append(struct parser *ps, struct policy_set *set, const struct token *t)
{
	const struct prefix *src;
	struct prefix one;
	size_t n, cap = set->n;

	if (t->text[0] == '@') {
		const struct policy_set *other = find_set(ps->p, t->text + 1);

		if (!other)
			return fail(ps, t->col, "set @%s is not defined (sets must be defined before use)",
				    t->text + 1);
		if (other == set)
			return fail(ps, t->col, "set @%s cannot contain itself", set->name);
		src = other->prefixes;
		n = other->n;
	} else {
		int err = parse_prefix_token(ps, t, &one);

		if (err)
			return err;
		src = &one;
		n = 1;
	}
	if (set->n + n > POLICY_SET_MAX)
		return fail(ps, t->col, "set @%s has more than %u members", set->name, POLICY_SET_MAX);
	if (ps->set_members + n > POLICY_SET_TOTAL_MAX)
		return fail(ps, t->col, "sets hold more than %u members in all", POLICY_SET_TOTAL_MAX);
	ps->set_members += n;
	/* Exact-size growth keeps the arithmetic simple; sets are built once. */
	if (grow((void **)&set->prefixes, &cap, set->n + n, sizeof(*set->prefixes)))
		return fail(ps, t->col, "out of memory");
	memcpy(&set->prefixes[set->n], src, n * sizeof(*src));
	set->n += n;
	return 0;
}

/* Items of an open set from tok[i..n); closes it at '}'. */
static int parse_set_items(struct parser *ps, const struct token *tok, int i, int n)
{
	bool want_item = true;

	for (; i < n; i++) {
		const struct token *t = &tok[i];

		if (streq(t->text, "}")) {
			ps->open_set = NULL;
			if (i + 1 < n)
				return fail(ps, tok[i + 1].col, "unexpected '%s' after '}'",
					    tok[i + 1].text);
			return 0;
		}
		if (streq(t->text, ",")) {
			if (want_item)
				return fail(ps, t->col, "expected an address, prefix or @set before ','");
			want_item = true;
			continue;
		}
		if (streq(t->text, "{"))
			return fail(ps, t->col, "unexpected '{' inside set @%s", ps->open_set->name);
		/* Items may be separated by commas or just whitespace. */
		int err = set_append(ps, ps->open_set, t);
		if (err)
			return err;
		want_item = false;
	}
	return 0;
}

static int parse_set(struct parser *ps, const struct token *tok, int n)
{
	struct policy *p = ps->p;
	struct policy_set *set, *prev;

	if (n < 2)
		return fail(ps, tok[0].col, "expected a set name after 'set'");
	if (!valid_name(tok[1].text) || strchr(tok[1].text, '/'))
		return fail(ps, tok[1].col,
			    "invalid set name '%s' (letters, digits, '_', '-', '.', ':')",
			    tok[1].text);
	prev = find_set(p, tok[1].text);
	if (prev)
		return fail(ps, tok[1].col, "set @%s is already defined at line %u", tok[1].text,
			    prev->line);
	if (n < 3 || !streq(tok[2].text, "{"))
		return fail(ps, n < 3 ? tok[1].col + (unsigned)strlen(tok[1].text) : tok[2].col,
			    "expected '{' after 'set %s'", tok[1].text);
	set = realloc(p->sets, (p->nsets + 1) * sizeof(*p->sets));
	if (!set)
		return fail(ps, tok[0].col, "out of memory");
	p->sets = set;
	set = &p->sets[p->nsets++];
	memset(set, 0, sizeof(*set));
	snprintf(set->name, sizeof(set->name), "%.63s", tok[1].text); /* valid_name: < 64 */
	set->line = ps->src->line;
	ps->open_set = set;
	ps->open_set_line = ps->src->line;
	ps->open_set_col = tok[0].col;
	return parse_set_items(ps, tok, 3, n);
}

static int parse_proto(struct parser *ps, const struct token *t, __u8 *out)
{
	char *end;
	unsigned long v;

	for (size_t i = 0; i < sizeof(protocols) / sizeof(protocols[0]); i++) {
		if (strcmp(t->text, protocols[i].name) == 0) {
			*out = protocols[i].number;
			return 0;
		}
	}
	if (t->text[0] >= '0' && t->text[0] <= '9') {
		errno = 0;
		v = strtoul(t->text, &end, 10);
		if (*end == '\0' && !errno && v <= 255) {
			*out = v;
			return 0;
		}
		return fail(ps, t->col, "protocol number %s is out of range (0-255)", t->text);
	}
	return fail(ps, t->col,
		    "unknown protocol '%s' (expected tcp, udp, icmp, icmpv6, sctp or a number 0-255)",
		    t->text);
}

static int parse_port_number(struct parser *ps, const char *s, unsigned col, __u16 *out)
{
	char *end;
	unsigned long v;

	if (*s < '0' || *s > '9')
		return fail(ps, col, "expected a port number, not '%s'", s);
	errno = 0;
	v = strtoul(s, &end, 10);
	if (*end != '\0')
		return fail(ps, col, "expected a port number, not '%s'", s);
	if (errno || v > 65535)
		return fail(ps, col, "port %s is out of range (1-65535)", s);
	if (v == 0)
		return fail(ps, col, "port 0 is not a valid destination port (1-65535)");
	*out = v;
	return 0;
}

static int parse_port_range(struct parser *ps, const struct token *t, struct port_range *out)
{
	char lo[TOKEN_MAX];
	const char *dash = strchr(t->text, '-');
	int err;

	if (!dash)
		err = parse_port_number(ps, t->text, t->col, &out->lo), out->hi = out->lo;
	else {
		snprintf(lo, sizeof(lo), "%.*s", (int)(dash - t->text), t->text);
		err = parse_port_number(ps, lo, t->col, &out->lo);
		if (!err)
			err = parse_port_number(ps, dash + 1, t->col + (dash + 1 - t->text), &out->hi);
		if (!err && out->hi < out->lo)
			return fail(ps, t->col, "reversed port range %s: write %u-%u", t->text,
				    out->hi, out->lo);
	}
	return err;
}

/*
 * A comma-separated list starting at tok[i]: sets *end to the index after it. Elements are
 * at i, i + 2, ...; a trailing or doubled comma is an error.
 */
static int parse_list(struct parser *ps, const struct token *tok, int i, int n, const char *what,
		      int *end)
{
	for (;;) {
		if (streq(tok[i].text, ","))
			return fail(ps, tok[i].col, "expected %s, not ','", what);
		if (i + 1 < n && streq(tok[i + 1].text, ",")) {
			if (i + 2 >= n)
				return fail(ps, tok[i + 1].col, "expected %s after ','", what);
			i += 2;
			continue;
		}
		*end = i + 1;
		return 0;
	}
}

/* A rule's identity when it has no name: "BASE:LINE" (BASE cut to 48 characters). */
static void rule_default_name(char name[POLICY_NAME_MAX], const struct source *src)
{
	char digits[10];
	size_t n = strnlen(src->base, DEFAULT_BASE_MAX), k = 0;
	unsigned line = src->line;

	/* By hand: snprintf here was a tenth of the time to parse a 100 000-rule policy. */
	memcpy(name, src->base, n);
	name[n++] = ':';
	do {
		digits[k++] = '0' + line % 10;
		line /= 10;
	} while (line);
	while (k)
		name[n++] = digits[--k];
	name[n] = '\0';
}

static int parse_rule(struct parser *ps, const struct token *tok, int n)
{
	struct policy *p = ps->p;
	__u8 action = tok[0].text[0] == 'a' ? SLUICE_VERDICT_ALLOW : SLUICE_VERDICT_DENY;
	static const struct prefix any_prefixes[2] = {
		{ .addr = { .a = { [10] = 0xff, [11] = 0xff } }, .prefixlen = 96 },
		{ .prefixlen = 0 },
	};
	struct l4_match match; /* zeroed where a rule has protocols: nearly none have */
	const struct prefix *dsts;
	struct prefix one;
	size_t ndsts;
	char name[POLICY_NAME_MAX], canon[ADDR_STRLEN];
	const char *target;
	bool named = false;
	int i = 2, err;

	if (n < 2 || streq(tok[1].text, ","))
		return fail(ps, n < 2 ? tok[0].col : tok[1].col,
			    "expected a destination after '%s' (address, prefix, @set or any)",
			    tok[0].text);
	target = tok[1].text;
	if (streq(target, "any")) {
		dsts = any_prefixes;
		ndsts = 2;
	} else if (target[0] == '@') {
		const struct policy_set *set = find_set(p, target + 1);

		if (!set)
			return fail(ps, tok[1].col,
				    "set @%s is not defined (sets must be defined before use)",
				    target + 1);
		dsts = set->prefixes;
		ndsts = set->n;
	} else if (streq(target, "host")) {
		return fail(ps, tok[1].col, "host names are not supported yet");
	} else {
		err = parse_prefix_token(ps, &tok[1], &one);
		if (err)
			return err;
		dsts = &one;
		ndsts = 1;
		/* Kept canonical: "10.0.0.0/008" as written would not fit, nor read back the same. */
		if (!prefix_text_canonical(target, &one)) {
			prefix_format(&one, canon, sizeof(canon));
			target = canon;
		}
	}

	/* Optional protocol list, then (for protocols with ports) an optional port list. */
	match.nprotos = match.nports = 0;
	if (i < n && !streq(tok[i].text, "name")) {
		int end;

		memset(&match, 0, sizeof(match));
		if ((err = parse_list(ps, tok, i, n, "a protocol", &end)))
			return err;
		for (int j = i; j < end; j += 2) {
			__u8 proto = 0;

			if (match.nprotos == POLICY_PROTOS_MAX)
				return fail(ps, tok[j].col, "more than %d protocols in one rule",
					    POLICY_PROTOS_MAX);
			err = parse_proto(ps, &tok[j], &proto);
			if (err)
				return err;
			match.protos[match.nprotos++] = proto;
		}
		i = end;
	}
	if (i < n && match.nprotos && !streq(tok[i].text, "name")) {
		int end;

		if ((err = parse_list(ps, tok, i, n, "a port or port range", &end)))
			return err;

		for (int k = 0; k < match.nprotos; k++) {
			char buf[8];

			if (!proto_has_ports(match.protos[k]))
				return fail(ps, tok[i].col,
					    "ports apply only to tcp, udp and sctp; '%s' has none",
					    proto_label(match.protos[k], buf, sizeof(buf)));
		}
		for (int j = i; j < end; j += 2) {
			if (match.nports == POLICY_PORTS_MAX)
				return fail(ps, tok[j].col, "more than %d port ranges in one rule",
					    POLICY_PORTS_MAX);
			err = parse_port_range(ps, &tok[j], &match.ports[match.nports++]);
			if (err)
				return err;
		}
		i = end;
	}
	rule_default_name(name, ps->src);
	if (i < n && streq(tok[i].text, "name")) {
		if (i + 1 >= n)
			return fail(ps, tok[i].col, "expected a name after 'name'");
		if (!valid_name(tok[i + 1].text))
			return fail(ps, tok[i + 1].col,
				    "invalid rule name '%s' (1-63 of letters, digits, '_', '-', '.', ':', '/')",
				    tok[i + 1].text);
		ssize_t used = name_find(ps, tok[i + 1].text, NULL);
		unsigned line;

		if (used >= 0)
			return fail(ps, tok[i + 1].col, "name '%s' is already used at line %u",
				    tok[i + 1].text, p->idents[used].line);
		if (default_name_used(ps, tok[i + 1].text, &line))
			return fail(ps, tok[i + 1].col, "name '%s' is already used at line %u",
				    tok[i + 1].text, line);
		snprintf(name, sizeof(name), "%.63s", tok[i + 1].text); /* valid_name: < 64 */
		named = true;
		i += 2;
	}
	if (i < n)
		return fail(ps, tok[i].col, "unexpected '%s'", tok[i].text);
	/* A given name was checked above; a default one may clash with a given one. */
	__u32 hash = 0;
	ssize_t used = named ? -1 : name_find(ps, name, NULL);
	struct default_names *d = NULL;

	if (used >= 0)
		return fail(ps, tok[0].col,
			    "this rule's identity '%s' is already used at line %u: give it a name",
			    name, p->idents[used].line);
	if (named) {
		hash = name_hash(name);
	} else {
		if (!ps->src_defaults1) {
			d = defaults_of(ps, ps->src->base, true);
			if (!d)
				return fail(ps, tok[0].col, "out of memory");
			ps->src_defaults1 = d - ps->defaults + 1;
		}
		d = &ps->defaults[ps->src_defaults1 - 1];
		/* Another file of the same name (included twice under one spelling). */
		if (default_used(d, ps->src->line))
			return fail(ps, tok[0].col,
				    "this rule's identity '%s' is already used at line %u: give it a name",
				    name, ps->src->line);
	}

	/* Past the reserved capacity the arrays may move: the helper must be done with them. */
	if (ps->prefault.running &&
	    (p->nrules + ndsts > ps->prefault.rules || p->nidents + 1 > ps->prefault.idents))
		prefault_stop(ps);
	err = policy_add_rules(p, action, dsts, ndsts, &match, name, target, ps->src->line);
	if (!err && (named ? name_add(ps, p->nidents - 1, hash) : default_add(d, ps->src->line)))
		err = -ENOMEM;
	if (err == -E2BIG)
		return fail(ps, tok[0].col, "too many rules (at most %u destinations)",
			    SLUICE_POLICY_MAX);
	if (err)
		return fail(ps, tok[0].col, "%s", strerror(-err));
	return 0;
}

/*
 * budget TARGET SIZE per DURATION alert|block [name NAME]. Every budget added is checked
 * against the kernel's limits at once (budget_check), so an error points at its line.
 */
static int parse_budget(struct parser *ps, const struct token *tok, int n)
{
	static const struct prefix any_prefixes[2] = {
		{ .addr = { .a = { [10] = 0xff, [11] = 0xff } }, .prefixlen = 96 },
		{ .prefixlen = 0 },
	};
	struct policy *p = ps->p;
	struct policy_budget b = { .line = ps->src->line, .kind = SLUICE_BUDGET_DEST };
	const struct prefix *src = NULL;
	char canon[ADDR_STRLEN], msg[POLICY_ERROR_MAX / 2];
	struct prefix one;
	size_t nsrc = 0, col;
	uint64_t window, limit = 0;
	int i, err;

	if (n < 2)
		return fail(ps, tok[0].col,
			    "expected 'budget TARGET SIZE per DURATION alert|block [name NAME]'");
	snprintf(b.target, sizeof(b.target), "%.64s", tok[1].text);
	if (streq(tok[1].text, "user")) {
		b.kind = SLUICE_BUDGET_USER;
	} else if (streq(tok[1].text, "node")) {
		b.kind = SLUICE_BUDGET_NODE;
	} else if (streq(tok[1].text, "any")) {
		src = any_prefixes;
		nsrc = 2;
	} else if (tok[1].text[0] == '@') {
		const struct policy_set *set = find_set(p, tok[1].text + 1);

		if (!set)
			return fail(ps, tok[1].col,
				    "set @%s is not defined (sets must be defined before use)",
				    tok[1].text + 1);
		src = set->prefixes;
		nsrc = set->n;
	} else {
		if (streq(tok[1].text, ",") || is_separator(tok[1].text[0]))
			return fail(ps, tok[1].col,
				    "expected a budget target (address, prefix, @set, any, user or node)");
		if ((err = parse_prefix_token(ps, &tok[1], &one)))
			return err;
		prefix_format(&one, canon, sizeof(canon));
		snprintf(b.target, sizeof(b.target), "%s", canon);
		src = &one;
		nsrc = 1;
	}
	if (n < 3)
		return fail(ps, tok[1].col + strlen(tok[1].text),
			    "expected a size after the target (e.g. 20MB, 10TiB)");
	err = parse_size(tok[2].text, &limit, &col);
	b.limit = limit;
	if (err == -ERANGE)
		return fail(ps, tok[2].col, "size '%s' is more than 2^64-1 bytes", tok[2].text);
	if (err)
		return fail(ps, tok[2].col + col,
			    "invalid size '%s' (a number > 0 and B, KB, MB, GB, TB, PB, KiB, MiB, "
			    "GiB, TiB or PiB)",
			    tok[2].text);
	if (n < 4 || !streq(tok[3].text, "per"))
		return fail(ps, n < 4 ? tok[2].col + strlen(tok[2].text) : tok[3].col,
			    "expected 'per DURATION' after the size");
	if (n < 5)
		return fail(ps, tok[3].col + 3, "expected a duration after 'per' (e.g. 1h, 1d)");
	if (parse_duration(tok[4].text, &window) || window > POLICY_BUDGET_WINDOW_MAX)
		return fail(ps, tok[4].col,
			    "invalid window '%s' (1s to 8w: a number and s, m, h, d or w)",
			    tok[4].text);
	b.window_s = window;
	if (n < 6)
		return fail(ps, tok[4].col + strlen(tok[4].text), "expected alert or block");
	if (streq(tok[5].text, "block"))
		b.block = 1;
	else if (!streq(tok[5].text, "alert"))
		return fail(ps, tok[5].col, "expected alert or block, not '%s'", tok[5].text);
	i = 6;
	snprintf(b.name, sizeof(b.name), "%.48s:%u", ps->src->base, ps->src->line);
	if (i < n && streq(tok[i].text, "name")) {
		if (i + 1 >= n)
			return fail(ps, tok[i].col, "expected a name after 'name'");
		if (!valid_name(tok[i + 1].text))
			return fail(ps, tok[i + 1].col,
				    "invalid budget name '%s' (1-63 of letters, digits, '_', '-', '.', ':', '/')",
				    tok[i + 1].text);
		snprintf(b.name, sizeof(b.name), "%.63s", tok[i + 1].text);
		i += 2;
	}
	if (i < n)
		return fail(ps, tok[i].col, "unexpected '%s'", tok[i].text);
	for (size_t k = 0; k < p->nbudgets; k++)
		if (strcmp(p->budgets[k].name, b.name) == 0)
			return fail(ps, tok[0].col, "budget name '%s' is already used at line %u",
				    b.name, p->budgets[k].line);
	if (p->nbudgets == SLUICE_BUDGET_MAX)
		return fail(ps, tok[0].col, "more than %u budgets", SLUICE_BUDGET_MAX);
	if (nsrc) {
		b.prefixes = malloc(nsrc * sizeof(*b.prefixes));
		if (!b.prefixes)
			return fail(ps, tok[0].col, "out of memory");
		memcpy(b.prefixes, src, nsrc * sizeof(*src));
		b.nprefixes = nsrc;
	}
	/* Budgets are few (SLUICE_BUDGET_MAX): exact-size growth. */
	struct policy_budget *grown = realloc(p->budgets, (p->nbudgets + 1) * sizeof(*grown));

	if (!grown) {
		free(b.prefixes);
		return fail(ps, tok[0].col, "out of memory");
	}
	p->budgets = grown;
	p->budgets[p->nbudgets++] = b;
	err = budget_check(p, msg, sizeof(msg));
	if (err) {
		/* Drop it again: on error the caller frees p, which must own only what it holds. */
		free(p->budgets[--p->nbudgets].prefixes);
		return fail(ps, tok[0].col, "%s", msg);
	}
	return 0;
}

static int parse_file_at(struct parser *ps, const char *path, const struct token *at);

static int parse_statement(struct parser *ps, const struct token *tok, int n)
{
	const char *kw = tok[0].text;
	struct policy *p = ps->p;
	int err;

	/* Rules first: they are nearly every line of a large policy. */
	if (streq(kw, "allow") || streq(kw, "deny"))
		return parse_rule(ps, tok, n);
	if (streq(kw, "mode")) {
		if (n != 2)
			return fail(ps, n < 2 ? tok[0].col : tok[2].col,
				    "expected 'mode enforce' or 'mode audit'");
		if ((err = once(ps, &ps->mode_line, &tok[0])))
			return err;
		if (streq(tok[1].text, "enforce"))
			p->mode = SLUICE_MODE_ENFORCE;
		else if (streq(tok[1].text, "audit"))
			p->mode = SLUICE_MODE_AUDIT;
		else
			return fail(ps, tok[1].col, "unknown mode '%s' (expected enforce or audit)",
				    tok[1].text);
		return 0;
	}
	if (streq(kw, "default")) {
		if (n != 2)
			return fail(ps, n < 2 ? tok[0].col : tok[2].col,
				    "expected 'default allow' or 'default deny'");
		if ((err = once(ps, &ps->default_line, &tok[0])))
			return err;
		if (streq(tok[1].text, "allow"))
			p->default_verdict = SLUICE_VERDICT_ALLOW;
		else if (streq(tok[1].text, "deny"))
			p->default_verdict = SLUICE_VERDICT_DENY;
		else
			return fail(ps, tok[1].col,
				    "unknown default '%s' (expected allow or deny)", tok[1].text);
		return 0;
	}
	if (streq(kw, "essential") || streq(kw, "replies")) {
		bool essential = kw[0] == 'e';

		if ((err = parse_on_off(ps, tok, n, essential ? &p->essential : &p->replies)))
			return err;
		return once(ps, essential ? &ps->essential_line : &ps->replies_line, &tok[0]);
	}
	if (streq(kw, "set"))
		return parse_set(ps, tok, n);
	if (streq(kw, "budget"))
		return parse_budget(ps, tok, n);
	if (streq(kw, "include")) {
		char path[PATH_MAX];

		if (n != 2)
			return fail(ps, n < 2 ? tok[0].col : tok[2].col, "expected 'include PATH'");
		if (!ps->files_allowed)
			return fail(ps, tok[0].col, "include is not available here");
		if (tok[1].text[0] == '/')
			snprintf(path, sizeof(path), "%s", tok[1].text);
		else if (snprintf(path, sizeof(path), "%s/%s", ps->src->dir, tok[1].text) >=
			 (int)sizeof(path))
			return fail(ps, tok[1].col, "path too long");
		return parse_file_at(ps, path, &tok[1]);
	}
	return fail(ps, tok[0].col,
		    "unknown statement '%s' (expected mode, default, set, allow, deny, budget, "
		    "essential, replies or include)",
		    kw);
}

#define READ_CHUNK 65536 /* bytes read from the file at a time */

/* A file read in chunks: lines are cut out with memchr instead of a stdio call per byte. */
struct reader {
	FILE *f;
	size_t pos, len;
	char buf[READ_CHUNK];
};

/*
 * Read one line of at most POLICY_LINE_MAX bytes (NUL-terminated, newline dropped) and
 * point *out at it: in the reader's buffer, or copied into line where it spans two reads.
 * Returns 1 for a line, 0 at end of file, or -EINVAL (message set) for a line too long or
 * holding a NUL byte. Memory stays bounded whatever the input. Each byte is judged as if
 * read one by one: first the size limit, then end of line, a NUL byte, the line length;
 * the first byte that fails one sets the message and column.
 */
static int read_line(struct parser *ps, struct reader *r, char *line, char **out)
{
	size_t len = 0;

	*out = line;
	for (;;) {
		if (r->pos == r->len) {
			r->pos = 0;
			r->len = fread(r->buf, 1, sizeof(r->buf), r->f);
			if (r->len == 0)
				break; /* end of file (or an error: the caller checks) */
		}
		char *at = r->buf + r->pos;
		size_t avail = r->len - r->pos;
		char *nl = memchr(at, '\n', avail);
		size_t m = nl ? (size_t)(nl - at) : avail; /* bytes before the newline */
		const char *nul = memchr(at, '\0', m);
		/* POLICY_BYTES_MAX - ps->bytes more bytes are allowed (bytes never passes it). */
		size_t k_big = POLICY_BYTES_MAX - ps->bytes;
		size_t k_nul = nul ? (size_t)(nul - at) : SIZE_MAX;
		size_t k_long = POLICY_LINE_MAX - len; /* the byte that would not fit */

		if (k_big < m + (nl ? 1 : 0) && k_big <= k_nul && k_big <= k_long)
			return fail(ps, len + k_big + 1, "policy larger than %u MiB",
				    POLICY_BYTES_MAX >> 20);
		if (k_nul < m && k_nul <= k_long)
			return fail(ps, len + k_nul + 1, "NUL byte in policy");
		if (k_long < m)
			return fail(ps, len + k_long + 1, "line longer than %d bytes",
				    POLICY_LINE_MAX);
		ps->bytes += m + (nl ? 1 : 0);
		r->pos += m + (nl ? 1 : 0);
		if (nl && !len) {
			/* All of it in the chunk, the common case: used where it lies. */
			*nl = '\0';
			*out = at;
			return 1;
		}
		memcpy(line + len, at, m);
		len += m;
		if (nl) {
			line[len] = '\0';
			return 1;
		}
	}
	line[len] = '\0';
	return len ? 1 : 0;
}

static int parse_stream(struct parser *ps, FILE *f, struct source *src)
{
	char line[POLICY_LINE_MAX + 1], *text;
	struct token *tok = malloc(TOKENS_MAX * sizeof(*tok));
	struct reader *rd = malloc(sizeof(*rd));
	const struct source *outer = ps->src;
	size_t outer_defaults1 = ps->src_defaults1;
	int ret = 0, got;

	if (!tok || !rd) {
		free(tok);
		free(rd);
		snprintf(ps->err, POLICY_ERROR_MAX, "%s: out of memory", src->path);
		return -ENOMEM;
	}
	rd->f = f;
	rd->pos = rd->len = 0;
	ps->src = src;
	ps->src_defaults1 = 0;
	for (;;) {
		int n;

		src->line++; /* before reading: errors in the line itself name it */
		got = read_line(ps, rd, line, &text);
		if (got <= 0) {
			src->line -= got == 0;
			break;
		}
		n = tokenize(ps, text, tok);
		if (n < 0) {
			ret = n;
			break;
		}
		if (n == 0)
			continue;
		ret = ps->open_set ? parse_set_items(ps, tok, 0, n) : parse_statement(ps, tok, n);
		if (ret)
			break;
	}
	if (got < 0)
		ret = got;
	if (!ret && ferror(f))
		ret = fail(ps, 1, "read error");
	if (!ret && ps->open_set) {
		src->line = ps->open_set_line;
		ret = fail(ps, ps->open_set_col, "set @%s is not closed (missing '}')",
			   ps->open_set->name);
	}
	free(tok);
	free(rd);
	ps->src = outer;
	ps->src_defaults1 = outer_defaults1;
	return ret;
}

static void source_names(struct source *src, const char *path)
{
	char copy[PATH_MAX];

	snprintf(copy, sizeof(copy), "%s", path);
	snprintf(src->base, sizeof(src->base), "%s", basename(copy));
	snprintf(copy, sizeof(copy), "%s", path);
	snprintf(src->dir, sizeof(src->dir), "%s", dirname(copy));
}

/* Parse an included (or the top) file; `at` is the include's token, NULL for the top. */
static int parse_file_at(struct parser *ps, const char *path, const struct token *at)
{
	struct source src = { .path = path, .parent = ps->src };
	struct stat st;
	unsigned depth = 0;
	FILE *f = NULL;
	int fd, ret;

	/* O_NONBLOCK: a FIFO must not hang the parser before it is refused below. */
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		if (at)
			return fail(ps, at->col, "cannot include %s: %s", path, strerror(-ret));
		snprintf(ps->err, POLICY_ERROR_MAX, "cannot open policy %s: %s", path,
			 strerror(-ret));
		return ret;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0 || !(f = fdopen(fd, "r"))) {
		close(fd);
		if (at)
			return fail(ps, at->col, "cannot include %s: not a regular file", path);
		snprintf(ps->err, POLICY_ERROR_MAX, "cannot read policy %s: not a regular file", path);
		return -EINVAL;
	}
	src.dev = st.st_dev;
	src.ino = st.st_ino;
	for (const struct source *s = ps->src; s; s = s->parent, depth++) {
		if (s->dev == src.dev && s->ino == src.ino) {
			fclose(f);
			return fail(ps, at->col, "include cycle: %s is already being read", path);
		}
	}
	if (depth > POLICY_INCLUDE_DEPTH) {
		fclose(f);
		return fail(ps, at->col, "includes nested more than %d deep", POLICY_INCLUDE_DEPTH);
	}
	if (!at)
		prefault_start(ps, fd, st.st_size);
	source_names(&src, path);
	/* Rules of an included file are named after the include as written (sub/x.conf:3). */
	if (at)
		snprintf(src.base, sizeof(src.base), "%.63s", at->text);
	ret = parse_stream(ps, f, &src);
	fclose(f);
	return ret;
}

int policy_parse_file(const char *path, struct policy *p, char err[POLICY_ERROR_MAX])
{
	struct parser ps = { .p = p, .err = err, .files_allowed = true };
	int ret;

	policy_init(p);
	err[0] = '\0';
	ret = parse_file_at(&ps, path, NULL);
	parser_free(&ps);
	if (ret)
		policy_free(p);
	return ret;
}

int policy_parse_text(const char *file, const char *text, struct policy *p,
		      char err[POLICY_ERROR_MAX])
{
	struct parser ps = { .p = p, .err = err };
	struct source src = { .path = file };
	FILE *f;
	int ret;

	policy_init(p);
	err[0] = '\0';
	/* fmemopen of an empty buffer fails with EINVAL on older glibc: an empty policy is valid. */
	if (text[0] == '\0')
		return 0;
	f = fmemopen((void *)text, strlen(text), "r");
	if (!f) {
		ret = -errno;
		snprintf(err, POLICY_ERROR_MAX, "%s: %s", file, strerror(-ret));
		return ret;
	}
	source_names(&src, file);
	ret = parse_stream(&ps, f, &src);
	fclose(f);
	parser_free(&ps);
	if (ret)
		policy_free(p);
	return ret;
}

int policy_add_rule_text(struct policy *p, const char *origin, const char *text,
			 char err[POLICY_ERROR_MAX])
{
	struct parser ps = { .p = p, .err = err };
	struct source src = { .path = origin, .line = 1 };
	struct token *tok = malloc(TOKENS_MAX * sizeof(*tok));
	char line[POLICY_LINE_MAX + 1]; /* text, for tokenize to cut up */
	int n, ret;

	if (!tok)
		return -ENOMEM;
	err[0] = '\0';
	source_names(&src, origin);
	ps.src = &src;
	/* The rules already in p keep their names: a new rule may not take one. */
	for (size_t i = 0; i < p->nidents; i++)
		if (name_add(&ps, i, name_hash(p->idents[i].name))) {
			free(tok);
			parser_free(&ps);
			return -ENOMEM;
		}
	if (strlen(text) > POLICY_LINE_MAX || strchr(text, '\n'))
		ret = fail(&ps, 1, "a rule is one line of at most %d bytes", POLICY_LINE_MAX);
	else if ((n = tokenize(&ps, strcpy(line, text), tok)) < 0)
		ret = n;
	else if (n == 0 || (!streq(tok[0].text, "allow") && !streq(tok[0].text, "deny")))
		ret = fail(&ps, 1, "expected an allow or deny rule");
	else
		ret = parse_rule(&ps, tok, n);
	free(tok);
	parser_free(&ps);
	return ret;
}

/* --- reference decision -------------------------------------------------------------------- */

static bool prefix_is_v4(const struct prefix *p)
{
	return p->prefixlen >= 96 && addr_is_v4(&p->addr);
}

/* The policy-wide flags every trie entry carries (the datapath reads them from any entry). */
static __u8 policy_flags(const struct policy *p)
{
	return (p->mode == SLUICE_MODE_AUDIT ? SLUICE_POLICY_F_AUDIT : 0) |
	       (p->essential ? 0 : SLUICE_POLICY_F_NO_ESSENTIAL) |
	       (p->replies ? 0 : SLUICE_POLICY_F_NO_REPLIES);
}

static __u8 apply_mode(const struct policy *p, __u8 verdict)
{
	return p->mode == SLUICE_MODE_AUDIT && verdict == SLUICE_VERDICT_DENY ? SLUICE_VERDICT_AUDIT
									      : verdict;
}

bool l4_match_accepts(const struct l4_match *m, __u8 proto, int port)
{
	bool proto_ok = false;

	if (m->nprotos == 0)
		return true;
	for (int i = 0; i < m->nprotos; i++)
		proto_ok |= m->protos[i] == proto;
	if (!proto_ok)
		return false;
	if (m->nports == 0)
		return true;
	if (port == POLICY_PORT_NONE)
		return false;
	for (int i = 0; i < m->nports; i++)
		if (port >= m->ports[i].lo && port <= m->ports[i].hi)
			return true;
	return false;
}

/* Does rule a take precedence over rule b at the same prefix length? */
static bool outranks(const struct policy_rule *a, size_t ia, const struct policy_rule *b,
		     size_t ib)
{
	if (a->action != b->action)
		return a->action == SLUICE_VERDICT_DENY;
	return ia < ib;
}

void policy_decide(const struct policy *p, const struct sluice_addr *dst, __u8 proto, int port,
		   struct sluice_policy_entry *out)
{
	const struct policy_rule *best = NULL;
	size_t best_i = 0;
	bool v4 = addr_is_v4(dst);

	for (size_t i = 0; i < p->nrules; i++) {
		const struct policy_rule *r = &p->rules[i];

		/* An IPv6 rule never matches an IPv4 packet, even ::/0. */
		if (prefix_is_v4(&r->dst) != v4 || !prefix_contains(&r->dst, dst) ||
		    !l4_match_accepts(&p->matches[r->match], proto, port))
			continue;
		if (best && (r->dst.prefixlen < best->dst.prefixlen ||
			     (r->dst.prefixlen == best->dst.prefixlen && !outranks(r, i, best, best_i))))
			continue;
		best = r;
		best_i = i;
	}
	memset(out, 0, sizeof(*out));
	out->flags = policy_flags(p);
	if (best) {
		out->rule_id = best->ident;
		out->verdict = apply_mode(p, best->action);
		out->reason = SLUICE_REASON_RULE;
	} else {
		out->rule_id = SLUICE_RULE_DEFAULT;
		out->verdict = apply_mode(p, p->default_verdict);
		out->reason = SLUICE_REASON_DEFAULT;
	}
}

/* --- compiler ------------------------------------------------------------------------------ */

/*
 * The compiler works on distinct destination prefixes. For a packet whose longest matching
 * prefix is P, the candidate rules are exactly those written for P and for the prefixes
 * containing P (its ancestors). Ordered by precedence (longer prefix first, deny before
 * allow, earlier before later), the first rule without a protocol/port condition ends the
 * chain: it decides every packet no earlier rule matches. If P's own best rule has no
 * condition, the decision is a constant (the common case, and the only policy search the
 * datapath does); otherwise the chain becomes a port class: a small function of protocol
 * and port given by port entries, shared by every prefix with the same chain.
 */

struct outcome {
	__u32 rule_id;
	__u8 verdict, reason;
};

/* A distinct destination prefix and its rules. */
struct node {
	struct prefix pfx;
	size_t first, count; /* its rules in the sorted order, best first */
};

/* Prefix lengths 0..128: the most prefixes one address can lie in. */
#define PREFIX_LENS 129

struct compiler {
	const struct policy *p;
	struct sort_rec *keys; /* the rules' sort records, sorted by prefix, then precedence */
	/*
	 * The prefixes containing the node being compiled, shortest first, the node itself on
	 * top. The nodes come in preorder (see struct sort_rec), so these are its ancestors
	 * exactly when each was pushed after dropping those not containing it.
	 */
	struct node path[PREFIX_LENS];
	size_t depth;
	struct outcome deflt;
	/* Port classes, interned by their chain. */
	struct class_rec {
		__u32 *chain; /* rule indexes of the exceptions, then the fallback's rule + 1 */
		size_t len;
		__u64 hash;
	} *classes;
	size_t nclasses, ccap;
	size_t *class_slots;
	size_t class_mask;
	struct compiled_port_entry *ports;
	size_t nports, pcap;
};

/*
 * A rule's place in the compiler's order, as integers: the address (big-endian halves), the
 * prefix length, then precedence among rules of the same prefix (deny first, then earlier
 * first). Sorting these instead of rule indexes through a comparison that reads the rules
 * halved the compile of a 100 000-rule policy.
 *
 * Address first, then length, lists the prefixes in preorder (a prefix before the longer
 * prefixes inside it, neighbours together). The trie entries come out in the same order,
 * which the kernel inserts faster than any other: each insert walks the path the previous
 * one just warmed, and a parent never has to be slid in above children already there.
 */
struct sort_rec {
	__u64 hi, lo;
	/*
	 * Prefix length << 56 | 1 << 55 for allow | rule index << 32, and below what sorts
	 * (the index is unique) the rule's identity and whether it has a match, carried along
	 * so that the compiler's pass over the sorted rules reads them in order instead of
	 * gathering them from the rules (a cache miss per rule).
	 */
	__u64 rank;
};

#define SORT_RANK_ALLOW (1ull << 55)
#define SORT_RANK_INDEX(rank) ((size_t)((rank) >> 32 & ((1u << 23) - 1)))
#define SORT_RANK_MATCH (1ull << 31)
#define SORT_RANK_IDENT(rank) ((__u32)((rank) & ((1u << 31) - 1)))
_Static_assert(SLUICE_POLICY_MAX <= 1u << 23, "a rule index fits in 23 bits of the rank");

static __u64 be64_at(const __u8 *b)
{
	__u64 v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | b[i];
	return v;
}

static inline bool rec_before(const struct sort_rec *x, const struct sort_rec *y)
{
	if (x->hi != y->hi)
		return x->hi < y->hi;
	if (x->lo != y->lo)
		return x->lo < y->lo;
	return x->rank < y->rank;
}

#define SORT_RUN 16 /* runs sorted by insertion before the merges */

/*
 * Stable merge sort with the comparison inlined: qsort's call through a pointer per
 * comparison and its byte-wise moves of records were half of the compile.
 */
static struct sort_rec *merge_sort(struct sort_rec *a, struct sort_rec *tmp, size_t n)
{
	for (size_t lo = 0; lo < n; lo += SORT_RUN) {
		size_t hi = lo + SORT_RUN < n ? lo + SORT_RUN : n;

		for (size_t i = lo + 1; i < hi; i++) {
			struct sort_rec r = a[i];
			size_t j = i;

			for (; j > lo && rec_before(&r, &a[j - 1]); j--)
				a[j] = a[j - 1];
			a[j] = r;
		}
	}
	for (size_t width = SORT_RUN; width < n; width *= 2) {
		for (size_t lo = 0; lo < n; lo += 2 * width) {
			size_t mid = lo + width < n ? lo + width : n;
			size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
			size_t i = lo, j = mid, k = lo;

			while (i < mid && j < hi) {
				/* No branch on the comparison: its outcome is a coin toss. */
				bool right = rec_before(&a[j], &a[i]);

				tmp[k++] = a[right ? j : i];
				j += right;
				i += !right;
			}
			while (i < mid)
				tmp[k++] = a[i++];
			while (j < hi)
				tmp[k++] = a[j++];
		}
		struct sort_rec *swap = a;

		a = tmp;
		tmp = swap;
	}
	return a;
}

#define RADIX_BITS 8 /* a digit of the radix sort */
#define RADIX_BUCKETS (1u << RADIX_BITS)
#define RADIX_DIGITS (3 * 64 / RADIX_BITS) /* of a sort record's three words */
#define RADIX_SMALL 64 /* records the merge sort takes instead */

/* The sort record's three words, most significant first, as rec_before compares them. */
static __u64 rec_word(const struct sort_rec *r, unsigned w)
{
	return w == 0 ? r->hi : w == 1 ? r->lo : r->rank;
}

/* Digit d (0: the most significant) of a record. */
static unsigned rec_digit(const struct sort_rec *r, unsigned d)
{
	unsigned per_word = 64 / RADIX_BITS;

	return rec_word(r, d / per_word) >> (64 - RADIX_BITS * (d % per_word + 1)) &
	       (RADIX_BUCKETS - 1);
}

/*
 * Most-significant-digit radix sort of n records from digit d on, with tmp (n records) as
 * scratch: returns a or tmp, whichever holds the sorted records. Digits every record shares
 * are skipped (IPv4 addresses agree on their first twelve bytes); buckets of at most
 * RADIX_SMALL records go to the merge sort. Merging all 100 000 records of a large policy
 * took most of the compile; a pass or two of buckets leaves them a few records each.
 * Recursion: d grows on each level, at most RADIX_DIGITS deep.
 */
static struct sort_rec *radix_sort(struct sort_rec *a, struct sort_rec *tmp, size_t n,
				   unsigned d)
{
	unsigned per_word = 64 / RADIX_BITS;
	__u32 start[RADIX_BUCKETS + 1] = { 0 }; /* n <= SLUICE_POLICY_MAX: fits */

	if (n <= RADIX_SMALL)
		return merge_sort(a, tmp, n);
	/* The first digit on which some records differ (they all differ somewhere: the rule index). */
	for (unsigned w = d / per_word; w < 3; w++) {
		__u64 diff = 0;

		for (size_t i = 1; i < n; i++)
			diff |= rec_word(&a[i], w) ^ rec_word(&a[0], w);
		if (w > d / per_word)
			d = w * per_word;
		diff &= ~0ull >> (RADIX_BITS * (d % per_word));
		if (diff) {
			d = w * per_word + __builtin_clzll(diff) / RADIX_BITS;
			break;
		}
		if (w == 2)
			return a;
	}
	for (size_t i = 0; i < n; i++)
		start[rec_digit(&a[i], d) + 1]++;
	for (unsigned b = 1; b <= RADIX_BUCKETS; b++)
		start[b] += start[b - 1];
	{
		__u32 next[RADIX_BUCKETS];

		memcpy(next, start, sizeof(next));
		for (size_t i = 0; i < n; i++)
			tmp[next[rec_digit(&a[i], d)]++] = a[i];
	}
	/* The buckets lie in tmp now: each is sorted there, with a as its scratch. */
	for (unsigned b = 0; b < RADIX_BUCKETS && d + 1 < RADIX_DIGITS; b++) {
		size_t lo = start[b], len = start[b + 1] - lo;
		struct sort_rec *sorted;

		if (len < 2)
			continue;
		sorted = radix_sort(tmp + lo, a + lo, len, d + 1);
		if (sorted != tmp + lo)
			memcpy(tmp + lo, sorted, len * sizeof(*sorted));
	}
	return tmp;
}

/*
 * The rules' sort records in the compiler's order (see struct sort_rec) into *keys (to
 * free).
 */
static int sort_rules(const struct policy *p, struct sort_rec **keys)
{
	size_t n = p->nrules ? p->nrules : 1;
	struct sort_rec *recs = malloc(2 * n * sizeof(*recs)), *sorted;

	if (!recs)
		return -ENOMEM;
	for (size_t i = 0; i < p->nrules; i++) {
		const struct policy_rule *r = &p->rules[i];

		/* The same precedence as outranks(): deny before allow, then the earlier rule. */
		recs[i] = (struct sort_rec){
			.hi = be64_at(r->dst.addr.a),
			.lo = be64_at(r->dst.addr.a + 8),
			.rank = (__u64)r->dst.prefixlen << 56 |
				(r->action != SLUICE_VERDICT_DENY ? SORT_RANK_ALLOW : 0) |
				(__u64)i << 32 | (r->match ? SORT_RANK_MATCH : 0) | r->ident,
		};
	}
	sorted = radix_sort(recs, recs + n, p->nrules, 0);
	if (sorted != recs)
		memcpy(recs, sorted, p->nrules * sizeof(*recs));
	/* The merge's scratch half goes back before the compiler allocates its output. */
	*keys = realloc(recs, n * sizeof(*recs)) ?: recs;
	return 0;
}

static __u64 hash_bytes(const void *data, size_t len, __u64 h)
{
	const unsigned char *c = data;

	/* FNV-1a: enough to spread prefixes and chains over the tables below. */
	for (size_t i = 0; i < len; i++)
		h = (h ^ c[i]) * 0x100000001b3ull;
	return h;
}

static struct outcome rule_outcome(const struct compiler *c, size_t rule)
{
	const struct policy_rule *r = &c->p->rules[rule];

	return (struct outcome){
		.rule_id = r->ident,
		.verdict = apply_mode(c->p, r->action),
		.reason = SLUICE_REASON_RULE,
	};
}

/*
 * The chain of the node on top of c->path: its exceptions (rules with a condition, in
 * precedence order) and the rule that ends it (SIZE_MAX: the default).
 */
static int build_chain(const struct compiler *c, __u32 **chain, size_t *len, size_t *fallback)
{
	bool v4 = prefix_is_v4(&c->path[c->depth - 1].pfx);
	unsigned floor = v4 ? 96 : 0;
	size_t cap = 0;

	*chain = NULL;
	*len = 0;
	*fallback = SIZE_MAX;
	/* Longest first: the node itself, then its ancestors (an IPv4 node's stop at /96). */
	for (size_t d = c->depth; d-- > 0 && c->path[d].pfx.prefixlen >= floor;) {
		const struct node *a = &c->path[d];

		for (size_t k = 0; k < a->count; k++) {
			__u64 rank = c->keys[a->first + k].rank;
			size_t rule = SORT_RANK_INDEX(rank);

			if (!(rank & SORT_RANK_MATCH)) {
				*fallback = rule;
				return 0;
			}
			if (grow((void **)chain, &cap, *len + 1, sizeof(**chain)))
				return -ENOMEM;
			(*chain)[(*len)++] = rule;
		}
	}
	return 0;
}

static int add_port_entry(struct compiler *c, __u32 class, unsigned prefixlen, __u8 proto,
			  __u16 port, struct outcome o)
{
	struct compiled_port_entry *e;

	if (c->nports >= SLUICE_PORT_MAX)
		return -E2BIG;
	if (grow((void **)&c->ports, &c->pcap, c->nports + 1, sizeof(*c->ports)))
		return -ENOMEM;
	e = &c->ports[c->nports++];
	memset(e, 0, sizeof(*e));
	e->key.prefixlen = prefixlen;
	e->key.port_class = class;
	e->key.proto = proto;
	e->key.port[0] = port >> 8;
	e->key.port[1] = port & 0xff;
	e->value.rule_id = o.rule_id;
	e->value.verdict = o.verdict;
	e->value.reason = o.reason;
	return 0;
}

static bool same_outcome(struct outcome a, struct outcome b)
{
	return a.rule_id == b.rule_id && a.verdict == b.verdict && a.reason == b.reason;
}

/* The chain's decision for (proto, port). */
static struct outcome chain_decide(const struct compiler *c, const __u32 *chain, size_t len,
				   struct outcome fallback, __u8 proto, int port)
{
	for (size_t i = 0; i < len; i++)
		if (l4_match_accepts(&c->p->matches[c->p->rules[chain[i]].match], proto, port))
			return rule_outcome(c, chain[i]);
	return fallback;
}

/* Emit [lo, hi] as aligned power-of-two port blocks. */
static int add_port_blocks(struct compiler *c, __u32 class, __u8 proto, __u32 lo, __u32 hi,
			   struct outcome o)
{
	while (lo <= hi) {
		unsigned bits = 0;
		int err;

		/* Never a full 2^16 block: that would be the protocol's own /40 entry. */
		while (bits < 15 && (lo & ((2u << bits) - 1)) == 0 && lo + (2u << bits) - 1 <= hi)
			bits++;
		err = add_port_entry(c, class, SLUICE_PORT_PREFIX_PORT - bits, proto, lo, o);
		if (err)
			return err;
		lo += 1u << bits;
	}
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	__u32 x = *(const __u32 *)a, y = *(const __u32 *)b;

	return x < y ? -1 : x > y;
}

/* Write the port-trie entries of a new class. */
static int emit_class(struct compiler *c, __u32 class, const __u32 *chain, size_t len,
		      struct outcome fallback)
{
	__u8 seen[256] = {};
	int err;

	err = add_port_entry(c, class, SLUICE_PORT_PREFIX_CLASS, 0, 0, fallback);
	for (size_t i = 0; i < len && !err; i++) {
		const struct l4_match *m = &c->p->matches[c->p->rules[chain[i]].match];

		for (int k = 0; k < m->nprotos && !err; k++) {
			__u8 proto = m->protos[k];
			struct outcome none;
			__u32 *cuts = NULL;
			size_t ncuts = 0, cap = 0;

			if (seen[proto])
				continue;
			seen[proto] = 1;
			none = chain_decide(c, chain, len, fallback, proto, POLICY_PORT_NONE);
			if (!same_outcome(none, fallback))
				err = add_port_entry(c, class, SLUICE_PORT_PREFIX_PROTO, proto, 0, none);
			if (err || !proto_has_ports(proto))
				continue;
			/* Cut points of every range naming this protocol; constant between them. */
			for (size_t j = 0; j < len && !err; j++) {
				const struct l4_match *mj = &c->p->matches[c->p->rules[chain[j]].match];
				bool names = false;

				for (int q = 0; q < mj->nprotos; q++)
					names |= mj->protos[q] == proto;
				for (int q = 0; names && q < mj->nports && !err; q++) {
					if (grow((void **)&cuts, &cap, ncuts + 2, sizeof(*cuts))) {
						err = -ENOMEM;
						break;
					}
					cuts[ncuts++] = mj->ports[q].lo;
					cuts[ncuts++] = (__u32)mj->ports[q].hi + 1;
				}
			}
			if (ncuts) /* qsort(NULL, 0) is undefined */
				qsort(cuts, ncuts, sizeof(*cuts), cmp_u32);
			for (size_t j = 0; j + 1 < ncuts && !err; j++) {
				struct outcome o;

				if (cuts[j] == cuts[j + 1])
					continue;
				o = chain_decide(c, chain, len, fallback, proto, cuts[j]);
				if (!same_outcome(o, none))
					err = add_port_blocks(c, class, proto, cuts[j], cuts[j + 1] - 1, o);
			}
			free(cuts);
		}
	}
	return err;
}

/* The class for a chain: an existing one with the same exceptions and fallback, or new. */
static int intern_class(struct compiler *c, const __u32 *chain, size_t len, size_t fallback,
			__u32 *class)
{
	struct outcome fb = fallback == SIZE_MAX ? c->deflt : rule_outcome(c, fallback);
	__u32 *key;
	size_t klen = 2 * len + 1;
	__u64 h;
	int err;

	/*
	 * Two chains decide alike when their exceptions have the same identity, action and
	 * match in the same order and they fall back to the same outcome.
	 */
	key = calloc(klen, sizeof(*key));
	if (!key)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++) {
		const struct policy_rule *r = &c->p->rules[chain[i]];

		key[2 * i] = r->ident;
		key[2 * i + 1] = r->action;
	}
	key[2 * len] = fb.rule_id;
	h = hash_bytes(key, klen * sizeof(*key), 0xcbf29ce484222325ull);

	if (c->nclasses * 2 >= c->class_mask) {
		size_t nmask = c->class_mask ? c->class_mask * 2 + 1 : 1023;
		size_t *ns = calloc(nmask + 1, sizeof(*ns));

		if (!ns) {
			free(key);
			return -ENOMEM;
		}
		for (size_t i = 0; i < c->nclasses; i++) {
			size_t s = c->classes[i].hash & nmask;

			while (ns[s])
				s = (s + 1) & nmask;
			ns[s] = i + 1;
		}
		free(c->class_slots);
		c->class_slots = ns;
		c->class_mask = nmask;
	}
	for (size_t s = h & c->class_mask;; s = (s + 1) & c->class_mask) {
		size_t slot = c->class_slots[s];

		if (!slot) {
			c->class_slots[s] = c->nclasses + 1;
			break;
		}
		if (c->classes[slot - 1].hash == h && c->classes[slot - 1].len == klen &&
		    memcmp(c->classes[slot - 1].chain, key, klen * sizeof(*key)) == 0) {
			free(key);
			*class = slot;
			return 0;
		}
	}
	if (c->nclasses >= UINT32_MAX / 2 ||
	    grow((void **)&c->classes, &c->ccap, c->nclasses + 1, sizeof(*c->classes))) {
		free(key);
		return -ENOMEM;
	}
	c->classes[c->nclasses++] = (struct class_rec){ .chain = key, .len = klen, .hash = h };
	*class = c->nclasses; /* classes are numbered from 1; 0 means "no class" */
	err = emit_class(c, *class, chain, len, fb);
	return err;
}

static void compiler_free(struct compiler *c)
{
	for (size_t i = 0; i < c->nclasses; i++)
		free(c->classes[i].chain);
	free(c->classes);
	free(c->class_slots);
	free(c->keys);
	free(c->ports);
}

/* Write trie entry e: prefix pfx decided by o, or by port class `class` if not 0. */
static void set_entry(struct compiled_entry *e, const struct prefix *pfx, struct outcome o,
		      __u32 class, __u32 generation, __u8 flags)
{
	e->key.prefixlen = pfx->prefixlen;
	e->key.addr = pfx->addr;
	e->value.rule_id = o.rule_id;
	e->value.generation = generation;
	e->value.port_class = class;
	e->value.verdict = o.verdict;
	e->value.reason = o.reason;
	e->value.flags = flags;
}

/* The address of a sort record. */
static struct sluice_addr rec_addr(const struct sort_rec *k)
{
	struct sluice_addr a;

	for (int b = 0; b < 8; b++) {
		a.a[b] = k->hi >> (56 - 8 * b);
		a.a[8 + b] = k->lo >> (56 - 8 * b);
	}
	return a;
}

/* Is prefix x the same as y? */
static bool same_prefix(const struct prefix *x, const struct prefix *y)
{
	return x->prefixlen == y->prefixlen && memcmp(x->addr.a, y->addr.a, 16) == 0;
}

int policy_compile(const struct policy *p, __u32 generation, struct compiled_policy *out)
{
	static const struct prefix catch_alls[2] = {
		{ .prefixlen = 0 },
		{ .addr = { .a = { [10] = 0xff, [11] = 0xff } }, .prefixlen = 96 },
	};
	bool have_catch_all[2] = { false, false };
	__u8 flags = policy_flags(p);
	struct compiler c = { .p = p };
	int err;

	memset(out, 0, sizeof(*out));
	c.deflt = (struct outcome){ .rule_id = SLUICE_RULE_DEFAULT,
				    .verdict = apply_mode(p, p->default_verdict),
				    .reason = SLUICE_REASON_DEFAULT };
	err = sort_rules(p, &c.keys);
	if (err)
		goto fail;
	/* One entry per distinct prefix, at most one per rule, and the catch-alls. */
	err = -ENOMEM;
	out->entries = calloc(p->nrules + 2, sizeof(*out->entries));
	if (!out->entries)
		goto fail;

	/*
	 * One pass over the sorted rules: each run of rules with one prefix is a node, decided
	 * by its best rule when that has no condition, else by a port class built from its
	 * chain (the node's rules and its ancestors' on c.path).
	 */
	for (size_t i = 0, next; i < p->nrules; i = next) {
		const struct sort_rec *k = &c.keys[i];
		struct sluice_addr addr = rec_addr(k);
		const struct node *node;
		struct outcome o;
		__u32 class = 0;

		for (next = i + 1; next < p->nrules && c.keys[next].hi == k->hi &&
				   c.keys[next].lo == k->lo && c.keys[next].rank >> 56 == k->rank >> 56;)
			next++;
		/* Drop what does not contain the node: the rest are its ancestors. */
		while (c.depth && !prefix_contains(&c.path[c.depth - 1].pfx, &addr))
			c.depth--;
		/* At most PREFIX_LENS deep: each prefix on the path is longer than the one below. */
		c.path[c.depth] = (struct node){ .pfx = { .addr = addr, .prefixlen = k->rank >> 56 },
						 .first = i,
						 .count = next - i };
		node = &c.path[c.depth++];
		for (int a = 0; a < 2; a++)
			have_catch_all[a] |= same_prefix(&node->pfx, &catch_alls[a]);

		if (!(k->rank & SORT_RANK_MATCH)) {
			/* Constant, the common case: rule_outcome() from the sort record. */
			__u8 action = k->rank & SORT_RANK_ALLOW ? SLUICE_VERDICT_ALLOW
								: SLUICE_VERDICT_DENY;

			o = (struct outcome){
				.rule_id = SORT_RANK_IDENT(k->rank),
				.verdict = apply_mode(p, action),
				.reason = SLUICE_REASON_RULE,
			};
		} else {
			__u32 *chain;
			size_t len, fallback;

			o = c.deflt;
			err = build_chain(&c, &chain, &len, &fallback);
			if (!err && len)
				err = intern_class(&c, chain, len, fallback, &class);
			else if (!err && fallback != SIZE_MAX)
				o = rule_outcome(&c, fallback);
			free(chain);
			if (err)
				goto fail;
		}
		set_entry(&out->entries[out->n++], &node->pfx, o, class, generation, flags);
	}
	/*
	 * The default lives at ::/0 and at ::ffff:0:0/96 (all of IPv4); the second also keeps
	 * IPv6 rules shorter than /96 (such as ::/0) from matching IPv4 packets. Where no rule
	 * is written for them they come last, holding the default.
	 */
	for (int a = 0; a < 2; a++)
		if (!have_catch_all[a])
			set_entry(&out->entries[out->n++], &catch_alls[a], c.deflt, 0, generation,
				  flags);
	out->ports = c.ports;
	out->nports = c.nports;
	out->nclasses = c.nclasses;
	c.ports = NULL;
	compiler_free(&c);
	/* The parser checked the budgets against the kernel's limits: this cannot fail but for memory. */
	if (p->nbudgets) {
		char msg[POLICY_ERROR_MAX];

		out->budgets = malloc(sizeof(*out->budgets));
		err = out->budgets ? budget_compile(p, out->budgets, msg, sizeof(msg)) : -ENOMEM;
		if (err) {
			free(out->budgets);
			out->budgets = NULL;
			compiled_policy_free(out);
		}
		return err;
	}
	return 0;
fail:
	compiler_free(&c);
	compiled_policy_free(out);
	return err;
}

/* Do prefixes a and b overlap (one contains the other)? */
static bool prefixes_overlap(const struct prefix *a, const struct prefix *b)
{
	return a->prefixlen <= b->prefixlen ? prefix_contains(a, &b->addr)
					    : prefix_contains(b, &a->addr);
}

static bool entry_inside(const struct compiled_entry *e, const struct prefix *x)
{
	return e->key.prefixlen >= x->prefixlen && prefix_contains(x, &e->key.addr);
}

int policy_compile_under(const struct policy *p, const struct prefix *x, __u32 generation,
			 struct compiled_policy *out)
{
	/*
	 * Only rules overlapping x can decide an address inside x: a rule containing some
	 * address of x either contains x or lies inside it. Compiling them alone (in their
	 * order, with their identities) gives the full compile's entries inside x.
	 */
	struct policy sub = *p;
	struct compiled_policy all;
	__u32 *renumber = NULL;
	int err;

	memset(out, 0, sizeof(*out));
	sub.rules = malloc((p->nrules ? p->nrules : 1) * sizeof(*sub.rules));
	if (!sub.rules)
		return -ENOMEM;
	sub.nrules = 0;
	for (size_t i = 0; i < p->nrules; i++)
		if (prefixes_overlap(&p->rules[i].dst, x))
			sub.rules[sub.nrules++] = p->rules[i];
	err = policy_compile(&sub, generation, &all);
	free(sub.rules);
	if (err)
		return err;

	/* Keep the entries inside x, and the classes they use, numbered 1..n again. */
	err = -ENOMEM;
	renumber = calloc(all.nclasses + 1, sizeof(*renumber));
	out->entries = malloc((all.n ? all.n : 1) * sizeof(*out->entries));
	out->ports = malloc((all.nports ? all.nports : 1) * sizeof(*out->ports));
	if (!renumber || !out->entries || !out->ports)
		goto fail;
	for (size_t i = 0; i < all.n; i++) {
		struct compiled_entry e = all.entries[i];

		if (!entry_inside(&e, x))
			continue;
		if (e.value.port_class) {
			if (!renumber[e.value.port_class])
				renumber[e.value.port_class] = ++out->nclasses;
			e.value.port_class = renumber[e.value.port_class];
		}
		out->entries[out->n++] = e;
	}
	for (size_t i = 0; i < all.nports; i++) {
		struct compiled_port_entry e = all.ports[i];

		if (!renumber[e.key.port_class])
			continue;
		e.key.port_class = renumber[e.key.port_class];
		out->ports[out->nports++] = e;
	}
	err = 0;
fail:
	free(renumber);
	compiled_policy_free(&all);
	if (err)
		compiled_policy_free(out);
	return err;
}

int compiled_policy_append(struct compiled_policy *to, const struct compiled_policy *from)
{
	void *entries = realloc(to->entries, (to->n + from->n + 1) * sizeof(*to->entries));
	void *ports;

	if (!entries)
		return -ENOMEM;
	to->entries = entries;
	ports = realloc(to->ports, (to->nports + from->nports + 1) * sizeof(*to->ports));
	if (!ports)
		return -ENOMEM;
	to->ports = ports;
	for (size_t i = 0; i < from->n; i++) {
		struct compiled_entry e = from->entries[i];

		if (e.value.port_class)
			e.value.port_class += to->nclasses;
		to->entries[to->n++] = e;
	}
	for (size_t i = 0; i < from->nports; i++) {
		struct compiled_port_entry e = from->ports[i];

		e.key.port_class += to->nclasses;
		to->ports[to->nports++] = e;
	}
	to->nclasses += from->nclasses;
	return 0;
}

void compiled_policy_free(struct compiled_policy *cp)
{
	free(cp->entries);
	free(cp->ports);
	if (cp->budgets)
		compiled_budgets_free(cp->budgets);
	free(cp->budgets);
	memset(cp, 0, sizeof(*cp));
}

void compiled_decide(const struct compiled_policy *cp, const struct sluice_addr *dst, __u8 proto,
		     int port, struct sluice_policy_entry *out)
{
	const struct compiled_entry *best = NULL;
	const struct compiled_port_entry *pbest = NULL;
	unsigned maxlen;

	memset(out, 0, sizeof(*out));
	out->verdict = SLUICE_VERDICT_DENY;
	out->reason = SLUICE_REASON_NO_POLICY;
	out->rule_id = SLUICE_RULE_NONE;
	for (size_t i = 0; i < cp->n; i++) {
		struct prefix p = { .addr = cp->entries[i].key.addr,
				    .prefixlen = cp->entries[i].key.prefixlen };

		if (prefix_contains(&p, dst) && (!best || p.prefixlen > best->key.prefixlen))
			best = &cp->entries[i];
	}
	if (!best)
		return;
	*out = best->value;
	if (!best->value.port_class)
		return;
	/* As the datapath: a port-less lookup stops at the protocol byte. */
	maxlen = port == POLICY_PORT_NONE ? SLUICE_PORT_PREFIX_PROTO : SLUICE_PORT_PREFIX_PORT;
	for (size_t i = 0; i < cp->nports; i++) {
		const struct compiled_port_entry *e = &cp->ports[i];
		unsigned len = e->key.prefixlen;
		__u32 pkt = (__u32)proto << 16 | (port == POLICY_PORT_NONE ? 0 : (__u32)port);
		__u32 ent = (__u32)e->key.proto << 16 | e->key.port[0] << 8 | e->key.port[1];
		unsigned bits = len - SLUICE_PORT_PREFIX_CLASS; /* over proto + port: 0..24 */

		if (e->key.port_class != best->value.port_class || len > maxlen)
			continue;
		if (bits && (pkt >> (24 - bits)) != (ent >> (24 - bits)))
			continue;
		if (!pbest || len > pbest->key.prefixlen)
			pbest = e;
	}
	if (!pbest) {
		out->verdict = SLUICE_VERDICT_DENY;
		out->reason = SLUICE_REASON_NO_POLICY;
		out->rule_id = SLUICE_RULE_NONE;
		return;
	}
	out->verdict = pbest->value.verdict;
	out->reason = pbest->value.reason;
	out->rule_id = pbest->value.rule_id;
}

/* --- formatting ---------------------------------------------------------------------------- */

void policy_format(const struct policy *p, FILE *f)
{
	char buf[ADDR_STRLEN], pb[8];

	fprintf(f, "mode %s\ndefault %s\nessential %s\nreplies %s\n",
		p->mode == SLUICE_MODE_AUDIT ? "audit" : "enforce", verdict_name(p->default_verdict),
		p->essential ? "on" : "off", p->replies ? "on" : "off");
	for (size_t i = 0; i < p->nsets; i++) {
		/* One member per line: a set of any size stays within the parser's line limit. */
		fprintf(f, "\nset %s {\n", p->sets[i].name);
		for (size_t k = 0; k < p->sets[i].n; k++) {
			prefix_format(&p->sets[i].prefixes[k], buf, sizeof(buf));
			fprintf(f, "\t%s%s\n", buf, k + 1 < p->sets[i].n ? "," : "");
		}
		fprintf(f, "}\n");
	}
	if (p->nidents)
		fputc('\n', f);
	for (size_t i = 0; i < p->nidents; i++) {
		const struct policy_ident *id = &p->idents[i];
		const struct l4_match *m = &p->matches[id->match];

		/* fputs, not fprintf: this runs per rule, 100 000 times on every policy load. */
		fputs(verdict_name(id->action), f);
		fputc(' ', f);
		fputs(id->target, f);
		for (int k = 0; k < m->nprotos; k++)
			fprintf(f, "%s%s", k ? "," : " ", proto_label(m->protos[k], pb, sizeof(pb)));
		for (int k = 0; k < m->nports; k++) {
			fprintf(f, "%s%u", k ? "," : " ", m->ports[k].lo);
			if (m->ports[k].hi != m->ports[k].lo)
				fprintf(f, "-%u", m->ports[k].hi);
		}
		fputs(" name ", f);
		fputs(id->name, f);
		fputc('\n', f);
	}
	if (p->nbudgets)
		fputc('\n', f);
	for (size_t i = 0; i < p->nbudgets; i++) {
		const struct policy_budget *b = &p->budgets[i];
		char size[32], window[32];

		format_size(b->limit, size, sizeof(size));
		format_duration(b->window_s, window, sizeof(window));
		fprintf(f, "budget %s %s per %s %s name %s\n", b->target, size, window,
			b->block ? "block" : "alert", b->name);
	}
}

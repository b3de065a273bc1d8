/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Policies: the text a user writes (parse), the reference decision in plain C (the oracle
 * the tests hold the datapath to), and the compiled form the kernel reads (compile).
 * Pure C, no BPF: unit-tested and fuzzed on its own.
 */
#ifndef SLUICE_POLICY_H
#define SLUICE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sluice/abi.h>
#include "addr.h"

#define POLICY_NAME_MAX 64       /* a rule's identity, "name" or "FILE:LINE" */
#define POLICY_ERROR_MAX 512     /* "FILE:LINE:COL: message" */
#define POLICY_PROTOS_MAX 8      /* protocols in one rule */
#define POLICY_PORTS_MAX 32      /* port ranges in one rule */
#define POLICY_INCLUDE_DEPTH 8   /* nested includes */
#define POLICY_BYTES_MAX (64u << 20) /* all files of one policy together */
#define POLICY_SET_MAX 65536     /* prefixes in one set */
#define POLICY_SET_TOTAL_MAX (1u << 20) /* prefixes in all sets (nested sets copy members) */
#define POLICY_BUDGET_WINDOW_MAX (8u * 7 * 86400) /* longest budget window: 8 weeks */
#define POLICY_PORT_NONE (-1)    /* a packet without a known destination port */

struct port_range {
	__u16 lo, hi;
};

/* What a rule asks of a packet beyond its destination. nprotos 0: anything. */
struct l4_match {
	__u8 nprotos;
	__u8 nports; /* 0: any port (or a protocol without ports) */
	__u8 protos[POLICY_PROTOS_MAX];
	struct port_range ports[POLICY_PORTS_MAX];
};

/*
 * One destination of one written rule. A rule naming a set or `any` becomes several
 * entries sharing its identity (ident), action and match.
 */
struct policy_rule {
	struct prefix dst;
	__u32 ident; /* index into policy.idents: the rule's identity for counters */
	__u32 match; /* index into policy.matches; 0 is "any protocol, any port" */
	__u8 action; /* SLUICE_VERDICT_ALLOW or SLUICE_VERDICT_DENY */
	unsigned line;
};

/* A rule's identity: its name, where it was written. */
struct policy_ident {
	char name[POLICY_NAME_MAX];
	char target[POLICY_NAME_MAX + 1]; /* as written: CIDR, @set, any */
	unsigned line;
	__u32 match;
	__u8 action;
};

struct policy_set {
	char name[POLICY_NAME_MAX];
	struct prefix *prefixes;
	size_t n;
	unsigned line;
};

/*
 * A budget (SPEC section 4): `budget TARGET SIZE per DURATION alert|block [name NAME]`.
 * Destination budgets count per destination address inside their prefixes.
 */
struct policy_budget {
	char name[POLICY_NAME_MAX];       /* identity: name, else FILE:LINE */
	char target[POLICY_NAME_MAX + 1]; /* as written: CIDR, @set, any, user, node */
	unsigned line;
	__u8 kind;  /* enum sluice_budget_kind */
	__u8 block; /* 1: block, 0: alert */
	__u64 limit;     /* bytes */
	__u64 window_s;  /* seconds */
	struct prefix *prefixes; /* destination budgets: the target's prefixes (owned) */
	size_t nprefixes;
};

struct policy {
	enum sluice_mode mode;
	__u8 default_verdict; /* SLUICE_VERDICT_ALLOW or SLUICE_VERDICT_DENY */
	bool essential;       /* built-in essential traffic passes (default on) */
	bool replies;         /* replies to inbound connections pass (default on) */
	struct policy_rule *rules;
	size_t nrules, cap;
	struct policy_ident *idents;
	size_t nidents, icap;
	struct l4_match *matches; /* matches[0] is "any" */
	size_t nmatches, mcap;
	struct policy_set *sets;
	size_t nsets;
	struct policy_budget *budgets;
	size_t nbudgets;
};

/* An empty policy: enforce mode, default deny, essential and replies on, no rules. */
void policy_init(struct policy *p);
void policy_free(struct policy *p);
/* Append a rule for one destination with a new identity `name`, any protocol and port. */
int policy_add_rule(struct policy *p, __u8 action, const struct prefix *dst, const char *name,
		    unsigned line);
/* Append a rule for each of dsts with one new identity and the given match (NULL: any). */
int policy_add_rules(struct policy *p, __u8 action, const struct prefix *dsts, size_t n,
		     const struct l4_match *match, const char *name, const char *target,
		     unsigned line);
/* The identity of a rule entry. */
const char *policy_rule_name(const struct policy *p, const struct policy_rule *r);

/*
 * Parse a policy file (includes are read relative to it) or text (named `file` in
 * messages; includes are refused). On error returns -EINVAL (or -errno for I/O) with
 * "FILE:LINE:COL: message" in err; *p is left empty.
 */
int policy_parse_file(const char *path, struct policy *p, char err[POLICY_ERROR_MAX]);
int policy_parse_text(const char *file, const char *text, struct policy *p,
		      char err[POLICY_ERROR_MAX]);

/*
 * Parse one `allow|deny TARGET [PROTO [PORTS]] [name NAME]` line and append it to p (its
 * sets may be named). Messages say "ORIGIN:1:COL: ...".
 */
int policy_add_rule_text(struct policy *p, const char *origin, const char *text,
			 char err[POLICY_ERROR_MAX]);

/* Does a rule's match accept protocol proto and port (POLICY_PORT_NONE when unknown)? */
bool l4_match_accepts(const struct l4_match *m, __u8 proto, int port);
/* Does proto carry ports sluice can match on (TCP, UDP, SCTP)? */
bool proto_has_ports(__u8 proto);

/*
 * The reference decision for a packet to dst with protocol proto and destination port
 * (POLICY_PORT_NONE when it has none), written for clarity rather than speed: every rule
 * whose destination contains dst and whose protocol/ports match is a candidate; the
 * longest prefix wins, deny beats allow on equal prefixes (then the earliest rule),
 * otherwise the default; audit mode turns deny into audit.
 */
void policy_decide(const struct policy *p, const struct sluice_addr *dst, __u8 proto, int port,
		   struct sluice_policy_entry *out);

/* The kernel form: trie entries per distinct prefix, and port-class entries. */
struct compiled_entry {
	struct sluice_lpm_key key;
	struct sluice_policy_entry value;
};

struct compiled_port_entry {
	struct sluice_port_key key; /* class is relative: 1..nclasses, rebased on install */
	struct sluice_port_entry value;
};

struct compiled_budgets;

struct compiled_policy {
	struct compiled_entry *entries;
	size_t n;
	struct compiled_port_entry *ports;
	size_t nports;
	__u32 nclasses;
	struct compiled_budgets *budgets; /* budget.h; NULL from policy_compile_under */
};

/* Compile p for generation `generation`. Returns 0 or -errno (nothing allocated on error). */
int policy_compile(const struct policy *p, __u32 generation, struct compiled_policy *out);
void compiled_policy_free(struct compiled_policy *cp);
/*
 * Compile only the entries at or inside prefix x, exactly as policy_compile would emit them
 * (classes numbered 1..nclasses among them): what an override of x changes in the kernel.
 * Costs a pass over the rules plus a compile of those overlapping x.
 */
int policy_compile_under(const struct policy *p, const struct prefix *x, __u32 generation,
			 struct compiled_policy *out);
/* Append from's entries and classes to to (from's classes renumbered after to's). */
int compiled_policy_append(struct compiled_policy *to, const struct compiled_policy *from);
/*
 * Evaluate compiled entries in userspace the way the datapath does (longest-prefix match,
 * then the port class). Linear: for tests and fuzzing only.
 */
void compiled_decide(const struct compiled_policy *cp, const struct sluice_addr *dst, __u8 proto,
		     int port, struct sluice_policy_entry *out);

/* Write p back as policy text (sets, then rules with their identities). */
void policy_format(const struct policy *p, FILE *f);

const char *verdict_name(unsigned verdict);
const char *reason_name(unsigned reason);
const char *hook_name(unsigned hook);

#endif

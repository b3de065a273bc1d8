/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Policies: the text a user writes (parse), the reference decision in plain C (the oracle
 * the tests hold the datapath to), and the compiled form the kernel reads (compile).
 * Pure C, no BPF: unit-tested on its own.
 */
#ifndef SLUICE_POLICY_H
#define SLUICE_POLICY_H

#include <stddef.h>
#include <sluice/abi.h>
#include "addr.h"

#define POLICY_NAME_MAX 64   /* a rule's identity, "name" or "FILE:LINE" */
#define POLICY_ERROR_MAX 512 /* "FILE:LINE:COL: message" */

struct policy_rule {
	char name[POLICY_NAME_MAX];
	__u8 action; /* SLUICE_VERDICT_ALLOW or SLUICE_VERDICT_DENY */
	struct prefix dst;
	unsigned line; /* where it was written (0 for rules added by code) */
};

struct policy {
	enum sluice_mode mode;
	__u8 default_verdict; /* SLUICE_VERDICT_ALLOW or SLUICE_VERDICT_DENY */
	struct policy_rule *rules;
	size_t nrules, cap;
};

/* An empty policy: enforce mode, default deny, no rules. */
void policy_init(struct policy *p);
void policy_free(struct policy *p);
/* Append a rule; an empty name gets "FILE:LINE" style identity from the caller. */
int policy_add_rule(struct policy *p, __u8 action, const struct prefix *dst, const char *name,
		    unsigned line);

/*
 * Parse a policy file (or text, named `file` in messages). On error returns -EINVAL (or
 * -errno for I/O) with "FILE:LINE:COL: message" in err; *p is left empty.
 */
int policy_parse_file(const char *path, struct policy *p, char err[POLICY_ERROR_MAX]);
int policy_parse_text(const char *file, const char *text, struct policy *p,
		      char err[POLICY_ERROR_MAX]);

/*
 * The reference decision for destination dst, written for clarity rather than speed:
 * every rule is a candidate if it contains dst; the longest prefix wins, deny beats allow
 * on equal prefixes, otherwise the default; audit mode turns deny into audit.
 */
void policy_decide(const struct policy *p, const struct sluice_addr *dst,
		   struct sluice_policy_entry *out);

/* The kernel form: one trie entry per distinct prefix, plus the catch-alls. */
struct compiled_entry {
	struct sluice_lpm_key key;
	struct sluice_policy_entry value;
};

struct compiled_policy {
	struct compiled_entry *entries;
	size_t n;
};

/* Compile p for generation `generation`. Returns 0 or -errno (nothing allocated on error). */
int policy_compile(const struct policy *p, __u32 generation, struct compiled_policy *out);
void compiled_policy_free(struct compiled_policy *cp);

const char *verdict_name(unsigned verdict);
const char *reason_name(unsigned reason);
const char *hook_name(unsigned hook);

#endif

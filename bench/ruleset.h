/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The generated policy the benchmarks share, and the same policy in the languages of the
 * tools sluice is compared with. One seed gives the same prefixes on every machine:
 * disjoint (so longest-prefix match, nft's interval sets, ipset and first-match iptables
 * rules all decide alike), half IPv4 and half IPv6, a quarter deny, default deny.
 *
 * Writers, one per tool:
 *   sluice     a policy file;
 *   nft        a ruleset: one interval set per family and outcome, one output chain;
 *   ipset      an `ipset restore` file: hash:net sets filled beside the live ones and
 *              swapped in (the atomic way to replace a set), plus the iptables and
 *              ip6tables rules that use them (iptables-restore format);
 *   iptables   the first N IPv4 rules as N linear iptables rules (iptables-restore).
 */
#ifndef SLUICE_BENCH_RULESET_H
#define SLUICE_BENCH_RULESET_H

#include <stdbool.h>
#include <stddef.h>
#include <linux/types.h>

#include "addr.h"

/* Share of rules that deny; the rest allow (default deny). */
#define RULESET_DENY_PERCENT 25
/* The port list of a port rule, in each language. */
#define RULESET_PORTS_SLUICE "tcp 443,2811,50000-51000"
#define RULESET_PORTS_NFT "tcp dport { 443, 2811, 50000-51000 }"
#define RULESET_PORTS_IPTABLES "-p tcp -m multiport --dports 443,2811,50000:51000"
/* Prefixes a ruleset may name besides the generated ones (the hosts a benchmark talks to). */
#define RULESET_EXTRA_MAX 8

/* One of those: the destinations a benchmark sends to, and one it checks is dropped. */
struct ruleset_extra {
	struct prefix pfx;
	__u8 action; /* SLUICE_VERDICT_ALLOW or SLUICE_VERDICT_DENY */
};

struct ruleset_params {
	size_t prefixes;
	size_t port_rules; /* how many allow rules carry RULESET_PORTS_* */
	__u64 seed;
	/*
	 * Draw from private space only (IPv4 in 10.0.0.0/8, /24../32; IPv6 in fd00::/8), for
	 * rulesets loaded where traffic flows. Otherwise from all of IPv4 (/16../32) and
	 * 2000::/3, the shape of real allow/deny lists.
	 */
	bool private_space;
	/*
	 * Rules ahead of the generated ones, e.g. for the benchmark's destinations. They may
	 * overlap one another (a denied host inside an allowed /24: deny sets are checked
	 * first, longest prefix wins) but not the generated prefixes.
	 */
	struct ruleset_extra extra[RULESET_EXTRA_MAX];
	size_t nextra;
	/* Rulesets for traffic: loopback is never filtered (sluice sees only its interface). */
	bool accept_loopback;
};

struct ruleset_rule {
	struct prefix pfx;
	__u8 action; /* SLUICE_VERDICT_ALLOW or SLUICE_VERDICT_DENY */
	bool ports;  /* allow only RULESET_PORTS_* */
};

struct ruleset {
	struct ruleset_params params;
	struct ruleset_rule *rules; /* shuffled: families and lengths mixed */
	size_t n, n4;
	bool ports; /* port lists are written (false: the port rules are plain allows) */
};

/* The sets of the nft and ipset rulesets, per family: names "allow4", "deny6", ... */
enum ruleset_set { RULESET_ALLOW, RULESET_DENY, RULESET_PORTS, RULESET_SETS };
extern const char *const ruleset_set_names[RULESET_SETS];
/* The ipset sets are named with this prefix ("sb-allow4"), the nft table so. */
#define RULESET_IPSET_PREFIX "sb-"
#define RULESET_NFT_TABLE "sluice_bench"

/* The next number of a seeded generator (splitmix64), for the benchmarks' other draws. */
__u64 ruleset_rng(__u64 *state);

/* Draw the rules; ports says whether port rules keep their port list. 0 or -errno. */
int ruleset_build(const struct ruleset_params *p, bool ports, struct ruleset *rs);
void ruleset_free(struct ruleset *rs);

/* Each writer returns 0 or -errno, with a message on stderr. */
int ruleset_write_sluice(const struct ruleset *rs, const char *path);
/* elements[v6][set]: how many elements each set gets (either may be NULL). */
int ruleset_write_nft(const struct ruleset *rs, const char *path, size_t elements[2][RULESET_SETS]);
/* For `ipset -exist restore`: replaces the six sets, each one atomically (not all at once). */
int ruleset_write_ipset(const struct ruleset *rs, const char *path,
			size_t elements[2][RULESET_SETS]);
/* iptables-restore files using the ipset sets: one for IPv4, one for ip6tables. */
int ruleset_write_ipset_rules(const struct ruleset *rs, const char *path4, const char *path6);
/* The first n IPv4 rules as linear iptables rules; *written: how many there were. */
int ruleset_write_iptables_linear(const struct ruleset *rs, size_t n, const char *path,
				  size_t *written);

#endif

// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * sluice-bench-rulegen: the rulesets of the throughput benchmark (bench/throughput.sh).
 *
 * One generated policy (bench/ruleset.c) in private space (IPv4 in 10.0.0.0/8, IPv6 in
 * fd00::/8: no packet of the benchmark goes there), plus rules for the benchmark's
 * destinations (--allow, --deny), default deny, loopback never filtered; written into DIR
 * as:
 *   policy.conf                  sluice
 *   filter.nft                   nft: interval sets, output hook
 *   ipset.restore                ipset: hash:net sets
 *   iptables-ipset.rules         iptables-restore: OUTPUT rules using those sets
 *   ip6tables-ipset.rules        the same for ip6tables
 *   iptables-linear-N.rules      iptables-restore: the first N IPv4 rules, one rule each,
 *                                the destinations' rule last (one file per --linear N)
 * Prints what it wrote, one "file<TAB>entries" line per file.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "ruleset.h"

#define DEFAULT_PREFIXES 100000
#define DEFAULT_SEED 0x511ceull
#define LINEAR_MAX 8

struct options {
	const char *dir;
	struct ruleset_params params;
	size_t linear[LINEAR_MAX];
	size_t nlinear;
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: sluice-bench-rulegen [OPTIONS] DIR\n"
		"\n"
		"Write one generated policy as a sluice policy, an nft ruleset, ipset sets with\n"
		"the iptables rules that use them, and linear iptables rulesets, into DIR.\n"
		"The generated prefixes are in 10.0.0.0/8 and fd00::/8.\n"
		"\n"
		"Options:\n"
		"  --prefixes N      generated prefixes, half IPv6, a quarter deny (default %d)\n"
		"  --allow P[,P...]  prefixes to allow besides them, e.g. the benchmark's\n"
		"                    destinations\n"
		"  --deny P[,P...]   prefixes to deny besides them, e.g. a destination to check\n"
		"                    the filter with (--allow and --deny: at most %d in all)\n"
		"  --linear N[,N...] also write iptables-linear-N.rules (at most %d)\n"
		"  --seed N          seed (default %llu)\n"
		"  -h, --help        this text\n"
		"\n"
		"Example:\n"
		"  sluice-bench-rulegen --allow 198.51.100.0/24 --deny 198.51.100.200 \\\n"
		"                       --linear 1000,10000 /tmp/rules\n",
		DEFAULT_PREFIXES, RULESET_EXTRA_MAX, LINEAR_MAX, (unsigned long long)DEFAULT_SEED);
}

static bool parse_num(const char *opt, const char *s, unsigned long long min,
		      unsigned long long max, unsigned long long *out)
{
	char *end;

	errno = 0;
	if (*s < '0' || *s > '9')
		goto bad;
	*out = strtoull(s, &end, 0);
	if (errno || *end || *out < min || *out > max)
		goto bad;
	return true;
bad:
	fprintf(stderr, "rulegen: %s: expected a number from %llu to %llu, got '%s'\n", opt, min,
		max, s);
	return false;
}

static int parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "prefixes", required_argument, NULL, 'p' },
		{ "allow", required_argument, NULL, 'a' },
		{ "deny", required_argument, NULL, 'd' },
		{ "linear", required_argument, NULL, 'l' },
		{ "seed", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	unsigned long long v;
	char err[128], *save, *tok;
	size_t col;
	int opt;

	*o = (struct options){
		.params = {
			.prefixes = DEFAULT_PREFIXES,
			.seed = DEFAULT_SEED,
			.private_space = true,
			.accept_loopback = true,
		},
	};
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'p':
			if (!parse_num("--prefixes", optarg, 2, SLUICE_POLICY_MAX - 16, &v))
				return 2;
			o->params.prefixes = v;
			break;
		case 'a':
		case 'd':
			for (tok = strtok_r(optarg, ",", &save); tok;
			     tok = strtok_r(NULL, ",", &save)) {
				struct ruleset_params *p = &o->params;
				struct ruleset_extra *x = &p->extra[p->nextra];
				const char *name = opt == 'a' ? "--allow" : "--deny";

				if (p->nextra == RULESET_EXTRA_MAX) {
					fprintf(stderr, "rulegen: %s: at most %d prefixes in all\n",
						name, RULESET_EXTRA_MAX);
					return 2;
				}
				if (prefix_parse(tok, &x->pfx, err, sizeof(err), &col)) {
					fprintf(stderr, "rulegen: %s: '%s': %s\n", name, tok, err);
					return 2;
				}
				x->action = opt == 'a' ? SLUICE_VERDICT_ALLOW : SLUICE_VERDICT_DENY;
				p->nextra++;
			}
			break;
		case 'l':
			for (tok = strtok_r(optarg, ",", &save); tok;
			     tok = strtok_r(NULL, ",", &save)) {
				if (o->nlinear == LINEAR_MAX) {
					fprintf(stderr, "rulegen: --linear: at most %d sizes\n",
						LINEAR_MAX);
					return 2;
				}
				if (!parse_num("--linear", tok, 1, SLUICE_POLICY_MAX, &v))
					return 2;
				o->linear[o->nlinear++] = v;
			}
			break;
		case 's':
			if (!parse_num("--seed", optarg, 0, ULLONG_MAX, &v))
				return 2;
			o->params.seed = v;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "rulegen: expected one directory\n");
		usage(stderr);
		return 2;
	}
	o->dir = argv[optind];
	return 0;
}

static size_t total(size_t elements[2][RULESET_SETS])
{
	size_t n = 0;

	for (int f = 0; f < 2; f++)
		for (int s = 0; s < RULESET_SETS; s++)
			n += elements[f][s];
	return n;
}

static int write_all(const struct options *o, const struct ruleset *rs)
{
	char path[PATH_MAX], path6[PATH_MAX];
	size_t elements[2][RULESET_SETS], n;
	int err;

	snprintf(path, sizeof(path), "%s/policy.conf", o->dir);
	err = ruleset_write_sluice(rs, path);
	if (err)
		return err;
	printf("policy.conf\t%zu\n", rs->n + o->params.nextra);
	snprintf(path, sizeof(path), "%s/filter.nft", o->dir);
	err = ruleset_write_nft(rs, path, elements);
	if (err)
		return err;
	printf("filter.nft\t%zu\n", total(elements));
	snprintf(path, sizeof(path), "%s/ipset.restore", o->dir);
	err = ruleset_write_ipset(rs, path, elements);
	if (err)
		return err;
	printf("ipset.restore\t%zu\n", total(elements));
	snprintf(path, sizeof(path), "%s/iptables-ipset.rules", o->dir);
	snprintf(path6, sizeof(path6), "%s/ip6tables-ipset.rules", o->dir);
	err = ruleset_write_ipset_rules(rs, path, path6);
	if (err)
		return err;
	for (size_t i = 0; i < o->nlinear; i++) {
		snprintf(path, sizeof(path), "%s/iptables-linear-%zu.rules", o->dir, o->linear[i]);
		err = ruleset_write_iptables_linear(rs, o->linear[i], path, &n);
		if (err)
			return err;
		if (n < o->linear[i]) {
			fprintf(stderr, "rulegen: only %zu IPv4 prefixes for --linear %zu\n", n,
				o->linear[i]);
			return -EINVAL;
		}
		printf("iptables-linear-%zu.rules\t%zu\n", o->linear[i], n);
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct ruleset rs;
	struct options o;
	int err = parse_args(argc, argv, &o);

	if (err)
		return err;
	err = ruleset_build(&o.params, true, &rs);
	if (err == -EEXIST) {
		fprintf(stderr, "rulegen: an --allow prefix overlaps the generated ones "
				"(10.0.0.0/8, fd00::/8)\n");
		return 1;
	}
	if (!err)
		err = write_all(&o, &rs);
	ruleset_free(&rs);
	if (err) {
		fprintf(stderr, "rulegen: %s\n", strerror(-err));
		return 1;
	}
	return 0;
}

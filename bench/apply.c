// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * sluice-bench-apply: how long it takes to apply a large policy, sluice against nftables.
 *
 * One generated policy (by default 100 000 prefixes, half IPv6, 1 000 of them with a port
 * list `tcp 443,2811,50000-51000`) is written twice: as a sluice policy file and as an nft
 * ruleset holding the same prefixes in interval sets (`type ipv4_addr; flags interval` and
 * its IPv6 twin) with the same port rule. Then, interleaved, several times:
 *   sluice  a fresh process reads the file, parses, compiles and installs it into a loaded
 *           datapath (policy_parse_file, policy_compile, policy_install), like a reload;
 *   nft     `nft -f FILE` replaces the ruleset (the file starts with `flush ruleset`).
 * Both are whole processes started the same way, so wall time and peak RSS (from wait4)
 * compare like with like; sluice also reports its parse/compile/install phases.
 *
 * With --cli PATH (the sluice binary) and a CLI that has runtime overrides, each repetition
 * also times the product's own paths against a pinned datapath: `sluice policy load FILE`
 * (a whole reload, state files included) and `sluice deny ADDR` / `sluice remove ADDR` (one
 * override, in force when the command returns).
 *
 * The prefixes never overlap one another, so the longest-prefix policy and the nft sets
 * decide alike and nft accepts the interval sets as written. If the policy parser rejects
 * port rules (an older grammar), the port rules are written without ports on both sides,
 * and the output says so.
 *
 * nft runs in a network namespace private to this process (unshare(CLONE_NEWNET) at start),
 * which the kernel deletes when the process exits, however it exits: no interface and no
 * ruleset of the host is touched, and there is nothing to clean up. Likewise the pinned
 * datapath the CLI works on lives in a bpffs mounted in a mount namespace of our own. The
 * datapaths are loaded but attached nowhere. Needs root. Never part of ctest: timings do
 * not pass or fail.
 */
#define _GNU_SOURCE /* unshare, CLONE_NEWNET */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <bpf/bpf.h>

#include "addr.h"
#include "datapath.h"
#include "log.h"
#include "pins.h"
#include "policy.h"
#include "policy_kernel.h"

#define DEFAULT_PREFIXES 100000
#define DEFAULT_PORT_RULES 1000
#define DEFAULT_REPS 7
#define DEFAULT_SEED 0x511ceull
#define DEFAULT_NFT "nft"
/* Share of rules that deny; the rest allow (default deny). */
#define DENY_PERCENT 25
/* The port list of a port rule, in both languages. */
#define PORT_LIST_SLUICE "tcp 443,2811,50000-51000"
#define PORT_LIST_NFT "tcp dport { 443, 2811, 50000-51000 }"
/* Decisions read back from the kernel after the warm-up, to check what is being timed. */
#define CHECK_PROBES 500
/* The destination of the timed override (TEST-NET-3, as in the SPEC's example). */
#define OVERRIDE_ADDR "203.0.113.9"
/* The target from the issue: applying 100k prefixes. */
#define TARGET_MS 200.0
#define TARGET_RATIO 20.0

struct options {
	size_t prefixes;
	size_t port_rules;
	unsigned reps;
	__u64 seed;
	const char *out;
	const char *keep; /* keep the generated files in this directory */
	const char *nft;
	const char *cli; /* the sluice binary, for the override latency */
	bool no_nft;
	bool verbose;
};

/* --- deterministic randomness (the same policy on every machine for a seed) -------------- */

struct rng {
	__u64 state;
};

static __u64 rng_next(struct rng *r)
{
	__u64 z = (r->state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static unsigned rng_below(struct rng *r, unsigned n)
{
	return (unsigned)(rng_next(r) % n);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* --- the policy ----------------------------------------------------------------------- */

struct bench_rule {
	struct prefix pfx;
	__u8 action;
	bool ports;
};

static void mask_addr(struct sluice_addr *a, unsigned prefixlen)
{
	for (unsigned bit = prefixlen; bit < 128; bit++)
		a->a[bit / 8] &= ~(0x80 >> (bit % 8));
}

/*
 * Prefix lengths shaped like real allow/deny lists (as in sluice-bench-pktcost): IPv4 half
 * /24, the rest /16../32; IPv6 /32../64 and one in ten a single host, in 2000::/3.
 */
static void random_prefix(struct rng *r, bool v4, struct prefix *p)
{
	__u64 hi = rng_next(r), lo = rng_next(r);

	memcpy(p->addr.a, &hi, 8);
	memcpy(&p->addr.a[8], &lo, 8);
	if (v4) {
		memset(p->addr.a, 0, 10);
		p->addr.a[10] = p->addr.a[11] = 0xff;
		p->prefixlen = 96 + (rng_below(r, 2) ? 24 : 16 + rng_below(r, 17));
	} else {
		p->addr.a[0] = (p->addr.a[0] & 0x1f) | 0x20;
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
static int disjoint_prefixes(struct rng *r, bool v4, size_t n, struct prefix *out)
{
	size_t have = 0;

	while (have < n) {
		size_t kept = 0;

		for (size_t i = have; i < n; i++)
			random_prefix(r, v4, &out[i]);
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
	return 0;
}

/* Half IPv4, half IPv6, shuffled; a quarter deny; port_rules allow rules spread evenly. */
static int build_rules(const struct options *o, struct bench_rule **out)
{
	struct rng rng = { .state = o->seed };
	size_t n4 = o->prefixes / 2, n6 = o->prefixes - n4;
	struct prefix *pfx = calloc(o->prefixes ? o->prefixes : 1, sizeof(*pfx));
	struct bench_rule *rules = calloc(o->prefixes ? o->prefixes : 1, sizeof(*rules));
	size_t every;

	if (!pfx || !rules) {
		free(pfx);
		free(rules);
		return -ENOMEM;
	}
	disjoint_prefixes(&rng, true, n4, pfx);
	disjoint_prefixes(&rng, false, n6, pfx + n4);
	/* Fisher-Yates: a real list mixes families and is not sorted the compiler's way. */
	for (size_t i = o->prefixes; i > 1; i--) {
		size_t j = rng_next(&rng) % i;
		struct prefix t = pfx[i - 1];

		pfx[i - 1] = pfx[j];
		pfx[j] = t;
	}
	every = o->port_rules ? o->prefixes / o->port_rules : 0;
	for (size_t i = 0; i < o->prefixes; i++) {
		rules[i].pfx = pfx[i];
		rules[i].ports = every && i % every == 0 && i / every < o->port_rules;
		rules[i].action = !rules[i].ports && rng_below(&rng, 100) < DENY_PERCENT
					  ? SLUICE_VERDICT_DENY
					  : SLUICE_VERDICT_ALLOW;
	}
	free(pfx);
	*out = rules;
	return 0;
}

/* Does this sluice accept port rules? If not, err says why. */
static bool parser_takes_ports(char err[POLICY_ERROR_MAX])
{
	struct policy p;
	int ret = policy_parse_text("probe.conf", "allow 192.0.2.0/24 " PORT_LIST_SLUICE "\n", &p,
				    err);

	policy_free(&p);
	return ret == 0;
}

static int write_policy(const char *path, const struct options *o, const struct bench_rule *rules,
			bool ports)
{
	FILE *f = fopen(path, "w");
	char buf[ADDR_STRLEN];
	int err = 0;

	if (!f) {
		err = -errno;
		fprintf(stderr, "apply: cannot write %s: %s\n", path, strerror(-err));
		return err;
	}
	fprintf(f, "# sluice-bench-apply: %zu prefixes, seed %llu\nmode enforce\ndefault deny\n",
		o->prefixes, (unsigned long long)o->seed);
	for (size_t i = 0; i < o->prefixes; i++) {
		prefix_format(&rules[i].pfx, buf, sizeof(buf));
		fprintf(f, "%s %s%s\n", verdict_name(rules[i].action), buf,
			rules[i].ports && ports ? " " PORT_LIST_SLUICE : "");
	}
	if (fclose(f) != 0) {
		err = -errno;
		fprintf(stderr, "apply: cannot write %s: %s\n", path, strerror(-err));
	}
	return err;
}

enum nft_set { NS_ALLOW, NS_DENY, NS_PORTS, NS_MAX };
static const char *const nft_set_names[NS_MAX] = { "allow", "deny", "ports" };

static enum nft_set nft_set_of(const struct bench_rule *r, bool ports)
{
	if (r->action == SLUICE_VERDICT_DENY)
		return NS_DENY;
	return r->ports && ports ? NS_PORTS : NS_ALLOW;
}

/*
 * The same policy for nft: one interval set per family and outcome, and an output chain
 * that decides as sluice does (the prefixes are disjoint, so the order of the rules does
 * not matter; anything else is dropped, as by `default deny`).
 */
static int write_nft(const char *path, const struct options *o, const struct bench_rule *rules,
		     bool ports, size_t *elements)
{
	FILE *f = fopen(path, "w");
	char buf[ADDR_STRLEN];
	int err = 0;

	if (!f) {
		err = -errno;
		fprintf(stderr, "apply: cannot write %s: %s\n", path, strerror(-err));
		return err;
	}
	*elements = 0;
	fprintf(f, "# sluice-bench-apply: %zu prefixes, seed %llu\nflush ruleset\n"
		   "table inet sluice_bench {\n",
		o->prefixes, (unsigned long long)o->seed);
	for (int v4 = 1; v4 >= 0; v4--) {
		for (int s = 0; s < NS_MAX; s++) {
			bool first = true;

			fprintf(f, "\tset %s%d {\n\t\ttype %s; flags interval;\n", nft_set_names[s],
				v4 ? 4 : 6, v4 ? "ipv4_addr" : "ipv6_addr");
			for (size_t i = 0; i < o->prefixes; i++) {
				const struct bench_rule *r = &rules[i];

				if (addr_is_v4(&r->pfx.addr) != (bool)v4 ||
				    nft_set_of(r, ports) != (enum nft_set)s)
					continue;
				prefix_format(&r->pfx, buf, sizeof(buf));
				fprintf(f, "%s%s", first ? "\t\telements = {\n\t\t\t" : ",\n\t\t\t",
					buf);
				first = false;
				(*elements)++;
			}
			fprintf(f, "%s\t}\n", first ? "" : "\n\t\t}\n");
		}
	}
	fprintf(f, "\tchain egress {\n\t\ttype filter hook output priority filter; policy drop;\n"
		   "\t\tip daddr @deny4 drop\n\t\tip6 daddr @deny6 drop\n");
	if (ports)
		fprintf(f, "\t\tip daddr @ports4 " PORT_LIST_NFT " accept\n"
			   "\t\tip6 daddr @ports6 " PORT_LIST_NFT " accept\n");
	fprintf(f, "\t\tip daddr @allow4 accept\n\t\tip6 daddr @allow6 accept\n\t}\n}\n");
	if (fclose(f) != 0) {
		err = -errno;
		fprintf(stderr, "apply: cannot write %s: %s\n", path, strerror(-err));
	}
	return err;
}

/* --- the child that applies the policy, as a reload would ------------------------------ */

/*
 * Runs in a process of its own (this binary, re-executed), so that its peak RSS is that of
 * applying the policy and not of generating it. Prints its phases on stdout.
 */
static int child_apply(const char *path, const struct policy_maps *maps)
{
	struct compiled_policy cp = { 0 };
	char err[POLICY_ERROR_MAX];
	struct policy p;
	double t0, t1, t2, t3;
	__u32 gen;
	int ret;

	log_init(LOG_WARN);
	t0 = now_s();
	ret = policy_parse_file(path, &p, err);
	if (ret) {
		fprintf(stderr, "apply: child: %s\n", err);
		return 1;
	}
	t1 = now_s();
	ret = policy_next_generation(maps->config_fd, &gen);
	if (!ret)
		ret = policy_compile(&p, gen, &cp);
	if (ret) {
		fprintf(stderr, "apply: child: cannot compile: %s\n", strerror(-ret));
		policy_free(&p);
		return 1;
	}
	t2 = now_s();
	ret = policy_install(maps, &cp, gen);
	t3 = now_s();
	if (ret) {
		fprintf(stderr, "apply: child: cannot install: %s\n", strerror(-ret));
	} else {
		printf("%.9f %.9f %.9f %zu %zu %zu %u %u\n", t1 - t0, t2 - t1, t3 - t2, p.nrules,
		       cp.n, cp.nports, cp.nclasses, gen);
	}
	compiled_policy_free(&cp);
	policy_free(&p);
	return ret ? 1 : 0;
}

struct run {
	double wall_s;
	long maxrss_kib;
	/* sluice only */
	double parse_s, compile_s, install_s;
	size_t rules, entries, port_entries;
	unsigned classes, generation;
};

/* Start argv with stdout to out_fd (-1: /dev/null) and stderr to err_path; wait; measure. */
static int run_process(char *const argv[], int out_fd, const char *err_path, struct run *run)
{
	struct rusage ru;
	double t0 = now_s();
	pid_t pid;
	int status;

	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int err_fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);

		if (err_fd < 0 || null_fd < 0)
			_exit(126);
		dup2(null_fd, STDIN_FILENO);
		dup2(out_fd >= 0 ? out_fd : null_fd, STDOUT_FILENO);
		dup2(err_fd, STDERR_FILENO);
		execvp(argv[0], argv);
		fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	if (wait4(pid, &status, 0, &ru) < 0)
		return -errno;
	run->wall_s = now_s() - t0;
	run->maxrss_kib = ru.ru_maxrss;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		FILE *f = fopen(err_path, "r");
		char line[512];

		fprintf(stderr, "apply: %s failed (%s %d):\n", argv[0],
			WIFEXITED(status) ? "exit status" : "signal",
			WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
		while (f && fgets(line, sizeof(line), f))
			fprintf(stderr, "  %s", line);
		if (f)
			fclose(f);
		return -ECHILD;
	}
	return 0;
}

struct ctx {
	const struct options *o;
	char dir[PATH_MAX - 64];
	char policy_path[PATH_MAX], nft_path[PATH_MAX], err_path[PATH_MAX];
	char self[PATH_MAX];
	int fds[3]; /* the datapath's policy, config and ports maps, inheritable */
	/* The pinned datapath the CLI works on (with --cli). */
	bool cli;
	char bpffs[PATH_MAX - 32], pin_dir[PATH_MAX], state_dir[PATH_MAX];
};

static int run_sluice(const struct ctx *c, struct run *run)
{
	char fd_args[3][16];
	char *argv[] = { (char *)c->self, "--apply-child", (char *)c->policy_path,
			 fd_args[0],      fd_args[1],      fd_args[2],
			 NULL };
	char line[256];
	int pipefd[2], err;
	ssize_t got;

	for (int i = 0; i < 3; i++)
		snprintf(fd_args[i], sizeof(fd_args[i]), "%d", c->fds[i]);
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return -errno;
	err = run_process(argv, pipefd[1], c->err_path, run);
	close(pipefd[1]);
	got = err ? 0 : read(pipefd[0], line, sizeof(line) - 1);
	close(pipefd[0]);
	if (err)
		return err;
	line[got > 0 ? got : 0] = '\0';
	if (sscanf(line, "%lf %lf %lf %zu %zu %zu %u %u", &run->parse_s, &run->compile_s,
		   &run->install_s, &run->rules, &run->entries, &run->port_entries, &run->classes,
		   &run->generation) != 8) {
		fprintf(stderr, "apply: unexpected output from the sluice child: '%s'\n", line);
		return -EPROTO;
	}
	return 0;
}

static int run_nft(const struct ctx *c, struct run *run)
{
	char *argv[] = { (char *)c->o->nft, "-f", (char *)c->nft_path, NULL };

	return run_process(argv, -1, c->err_path, run);
}

/* sluice --pin-dir P --state-dir S ARGS..., timed. */
static int run_cli(const struct ctx *c, const char *a1, const char *a2, const char *a3,
		   struct run *run)
{
	char *argv[] = { (char *)c->o->cli, "--pin-dir", (char *)c->pin_dir, "--state-dir",
			 (char *)c->state_dir, (char *)a1, (char *)a2, (char *)a3, NULL };

	return run_process(argv, -1, c->err_path, run);
}

/* Does the CLI have runtime overrides? If not, why says why. */
static bool cli_has_overrides(const struct ctx *c, char *why, size_t len)
{
	char *argv[] = { (char *)c->o->cli, "help", "deny", NULL };
	struct run r;

	if (!c->o->cli) {
		snprintf(why, len, "no --cli given");
		return false;
	}
	if (run_process(argv, -1, c->err_path, &r) != 0) {
		snprintf(why, len, "%s has no 'deny' command", c->o->cli);
		return false;
	}
	return true;
}

/*
 * A datapath pinned in a bpffs of our own, in a mount namespace of our own: the CLI finds
 * it through --pin-dir as it would find the real one, and nothing outlives this process.
 */
static int setup_pinned(struct ctx *c, struct datapath *dp)
{
	int err;

	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		err = -errno;
		fprintf(stderr, "apply: cannot make a private mount namespace: %s\n",
			strerror(-err));
		return err;
	}
	snprintf(c->bpffs, sizeof(c->bpffs), "%s/bpffs", c->dir);
	snprintf(c->pin_dir, sizeof(c->pin_dir), "%s/sluice", c->bpffs);
	snprintf(c->state_dir, sizeof(c->state_dir), "%s/state", c->dir);
	if ((mkdir(c->bpffs, 0700) < 0 && errno != EEXIST) ||
	    mount("bpf", c->bpffs, "bpf", 0, "mode=0700") < 0) {
		err = -errno;
		fprintf(stderr, "apply: cannot mount a bpffs at %s: %s\n", c->bpffs,
			strerror(-err));
		return err;
	}
	err = pins_prepare(c->pin_dir); /* as `sluice run` does: maps/ and progs/ */
	if (!err)
		err = datapath_load(dp, c->pin_dir);
	if (err)
		fprintf(stderr, "apply: cannot load a pinned datapath at %s: %s\n", c->pin_dir,
			strerror(-err));
	return err;
}

/* The override is in force when the command returns: the trie says deny for addr. */
static int check_override(const struct datapath *dp, const char *addr_text)
{
	struct sluice_lpm_key key = { .prefixlen = 128 };
	struct sluice_policy_entry e;
	__u32 zero = 0, inner_id;
	int inner, ok;

	if (addr_parse(addr_text, &key.addr) < 0 ||
	    bpf_map_lookup_elem(dp->policy_fd, &zero, &inner_id) < 0)
		return -EINVAL;
	inner = bpf_map_get_fd_by_id(inner_id);
	if (inner < 0)
		return -errno;
	ok = bpf_map_lookup_elem(inner, &key, &e) == 0 && e.verdict == SLUICE_VERDICT_DENY &&
	     e.reason == SLUICE_REASON_RULE;
	close(inner);
	if (!ok) {
		fprintf(stderr, "apply: after 'sluice deny %s' the trie does not deny it\n",
			addr_text);
		return -EIO;
	}
	return 0;
}

/* --- checking what was installed ------------------------------------------------------- */

/*
 * Read decisions back from the kernel trie the child installed and hold them to the
 * reference decision: a benchmark of a policy that was not installed right is worthless.
 * Destinations inside a port rule's prefix have a port class (decided per port in the
 * datapath); elsewhere the trie's verdict must equal policy_decide's.
 */
static int check_installed(const struct ctx *c, const struct bench_rule *rules, bool ports,
			   __u32 generation)
{
	struct rng rng = { .state = c->o->seed ^ 0xc0ffee };
	char err[POLICY_ERROR_MAX], buf[ADDR_STRLEN];
	struct sluice_config cfg;
	struct policy p;
	__u32 zero = 0, inner_id;
	size_t wrong = 0;
	int inner, ret;

	if (bpf_map_lookup_elem(c->fds[1], &zero, &cfg) < 0 || cfg.generation != generation) {
		fprintf(stderr, "apply: the datapath is not at generation %u after the install\n",
			generation);
		return -EIO;
	}
	if (bpf_map_lookup_elem(c->fds[0], &zero, &inner_id) < 0)
		return -errno;
	inner = bpf_map_get_fd_by_id(inner_id);
	if (inner < 0)
		return -errno;
	ret = policy_parse_file(c->policy_path, &p, err);
	if (ret) {
		fprintf(stderr, "apply: %s\n", err);
		close(inner);
		return ret;
	}
	for (unsigned i = 0; i < CHECK_PROBES; i++) {
		const struct bench_rule *r = &rules[rng_next(&rng) % c->o->prefixes];
		struct sluice_lpm_key key = { .prefixlen = 128 };
		struct sluice_policy_entry got, want;
		__u64 hi = rng_next(&rng), lo = rng_next(&rng);

		/* Half inside a rule (random host bits), half anywhere. */
		memcpy(key.addr.a, &hi, 8);
		memcpy(&key.addr.a[8], &lo, 8);
		if (i % 2 == 0) {
			for (unsigned bit = 0; bit < r->pfx.prefixlen; bit++) {
				__u8 m = 0x80 >> (bit % 8), *b = &key.addr.a[bit / 8];

				*b = (__u8)((*b & ~m) | (r->pfx.addr.a[bit / 8] & m));
			}
		} else if (i % 4 == 1) {
			memset(key.addr.a, 0, 10);
			key.addr.a[10] = key.addr.a[11] = 0xff;
		}
		if (bpf_map_lookup_elem(inner, &key, &got) < 0) {
			wrong++;
			continue;
		}
		policy_decide(&p, &key.addr, IPPROTO_UDP, 9, &want); /* no port rule names UDP */
		if (i % 2 == 0 && r->ports && ports) {
			wrong += got.port_class == 0;
			continue;
		}
		if (got.port_class || got.verdict != want.verdict || got.rule_id != want.rule_id ||
		    got.reason != want.reason) {
			addr_format(&key.addr, buf, sizeof(buf));
			if (c->o->verbose)
				fprintf(stderr, "apply: %s: kernel %s rule %u, reference %s "
					"rule %u\n", buf, verdict_name(got.verdict), got.rule_id,
					verdict_name(want.verdict), want.rule_id);
			wrong++;
		}
	}
	policy_free(&p);
	close(inner);
	if (wrong) {
		fprintf(stderr, "apply: %zu of %d decisions read back from the kernel are wrong\n",
			wrong, CHECK_PROBES);
		return -EIO;
	}
	fprintf(stderr, "apply: %d decisions read back from the kernel match the reference\n",
		CHECK_PROBES);
	return 0;
}

/* --- statistics and output ------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

struct stat3 {
	double median, min, max;
};

static struct stat3 summarize(const double *v, unsigned n)
{
	double sorted[n];
	struct stat3 s;

	memcpy(sorted, v, n * sizeof(*v));
	qsort(sorted, n, sizeof(*sorted), cmp_double);
	s.min = sorted[0];
	s.max = sorted[n - 1];
	s.median = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
	return s;
}

enum metric {
	M_SLUICE_WALL,
	M_SLUICE_APPLY,
	M_SLUICE_PARSE,
	M_SLUICE_COMPILE,
	M_SLUICE_INSTALL,
	M_SLUICE_RSS,
	M_NFT_WALL,
	M_NFT_RSS,
	M_CLI_LOAD,
	M_OVERRIDE,
	M_REMOVE,
	M_MAX
};

static const struct {
	const char *name, *unit, *label;
} metrics[M_MAX] = {
	[M_SLUICE_WALL] = { "sluice_wall", "ms", "sluice: process, start to exit" },
	[M_SLUICE_APPLY] = { "sluice_apply", "ms", "sluice: parse + compile + install" },
	[M_SLUICE_PARSE] = { "sluice_parse", "ms", "  parse (read the file)" },
	[M_SLUICE_COMPILE] = { "sluice_compile", "ms", "  compile" },
	[M_SLUICE_INSTALL] = { "sluice_install", "ms", "  install (fill trie, swap)" },
	[M_SLUICE_RSS] = { "sluice_peak_rss", "MiB", "sluice: peak RSS" },
	[M_NFT_WALL] = { "nft_wall", "ms", "nft -f: process, start to exit" },
	[M_NFT_RSS] = { "nft_peak_rss", "MiB", "nft -f: peak RSS" },
	[M_CLI_LOAD] = { "cli_policy_load", "ms", "sluice policy load FILE (CLI)" },
	[M_OVERRIDE] = { "override_wall", "ms", "sluice deny ADDR (CLI)" },
	[M_REMOVE] = { "override_remove_wall", "ms", "sluice remove ADDR (CLI)" },
};

/* Which metrics this run has. */
static bool measured(int m, bool nft, bool cli)
{
	if (m == M_NFT_WALL || m == M_NFT_RSS)
		return nft;
	if (m == M_CLI_LOAD || m == M_OVERRIDE || m == M_REMOVE)
		return cli;
	return true;
}

static void print_results(FILE *f, const struct options *o, double *const v[M_MAX],
			  bool nft, bool cli)
{
	fprintf(f, "%-36s %10s %10s %10s\n", "", "median", "min", "max");
	for (int m = 0; m < M_MAX; m++) {
		struct stat3 s;

		if (!measured(m, nft, cli))
			continue;
		s = summarize(v[m], o->reps);
		fprintf(f, "%-36s %10.1f %10.1f %10.1f  %s\n", metrics[m].label, s.median, s.min,
			s.max, metrics[m].unit);
	}
}

static int write_tsv(const char *path, const struct options *o, double *const v[M_MAX],
		     bool nft, bool cli, const char *const params[][2], size_t nparams)
{
	FILE *f = fopen(path, "w");
	int err = 0;

	if (!f) {
		err = -errno;
		fprintf(stderr, "apply: cannot write %s: %s\n", path, strerror(-err));
		return err;
	}
	fprintf(f, "kind\tname\tvalue\tmin\tmax\tunit\n");
	for (size_t i = 0; i < nparams; i++)
		fprintf(f, "param\t%s\t%s\t\t\t\n", params[i][0], params[i][1]);
	for (int m = 0; m < M_MAX; m++) {
		struct stat3 s;

		if (!measured(m, nft, cli))
			continue;
		s = summarize(v[m], o->reps);
		fprintf(f, "metric\t%s\t%.3f\t%.3f\t%.3f\t%s\n", metrics[m].name, s.median, s.min,
			s.max, metrics[m].unit);
	}
	if (fclose(f) != 0) {
		err = -errno;
		fprintf(stderr, "apply: cannot write %s: %s\n", path, strerror(-err));
	}
	return err;
}

/* --- command line ---------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: sluice-bench-apply [OPTIONS]\n"
		"\n"
		"Time to apply a large policy: sluice (parse + compile + install into a loaded,\n"
		"unattached datapath, in a fresh process) against `nft -f` loading the same\n"
		"prefixes as interval sets in a private network namespace, interleaved.\n"
		"\n"
		"Options:\n"
		"  --prefixes N     prefixes in the policy, half IPv6 (default %d)\n"
		"  --port-rules N   how many of them carry '%s' (default %d)\n"
		"  --reps N         interleaved repetitions after one warm-up each (default %d)\n"
		"  --seed N         seed of the generated policy (default %llu)\n"
		"  --nft PATH       the nft binary (default %s, from PATH)\n"
		"  --no-nft         measure sluice only\n"
		"  --cli PATH       the sluice binary: also time 'sluice policy load' and one\n"
		"                   override ('sluice deny ADDR', 'sluice remove ADDR') against a\n"
		"                   pinned datapath in a private bpffs\n"
		"  --out FILE       also write the results as TSV to FILE\n"
		"  --keep DIR       write the generated policy.conf and policy.nft to DIR and\n"
		"                   keep them (default: a temporary directory, removed at exit)\n"
		"  -v, --verbose    libbpf's messages and every measurement\n"
		"  -h, --help       this text\n"
		"\n"
		"Examples:\n"
		"  sluice-bench-apply --out /tmp/apply.tsv\n"
		"  sluice-bench-apply --prefixes 1000000 --port-rules 10000 --reps 3\n",
		DEFAULT_PREFIXES, PORT_LIST_SLUICE, DEFAULT_PORT_RULES, DEFAULT_REPS,
		(unsigned long long)DEFAULT_SEED, DEFAULT_NFT);
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
	fprintf(stderr, "apply: %s: expected a number from %llu to %llu, got '%s'\n", opt, min,
		max, s);
	return false;
}

static int parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "prefixes", required_argument, NULL, 'p' },
		{ "port-rules", required_argument, NULL, 'P' },
		{ "reps", required_argument, NULL, 'r' },
		{ "seed", required_argument, NULL, 's' },
		{ "nft", required_argument, NULL, 'n' },
		{ "no-nft", no_argument, NULL, 'N' },
		{ "cli", required_argument, NULL, 'c' },
		{ "out", required_argument, NULL, 'o' },
		{ "keep", required_argument, NULL, 'k' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	unsigned long long v;
	int opt;

	*o = (struct options){
		.prefixes = DEFAULT_PREFIXES,
		.port_rules = DEFAULT_PORT_RULES,
		.reps = DEFAULT_REPS,
		.seed = DEFAULT_SEED,
		.nft = DEFAULT_NFT,
	};
	while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'p':
			/* Keep clear of the trie's capacity: the compiler adds catch-alls. */
			if (!parse_num("--prefixes", optarg, 2, SLUICE_POLICY_MAX - 16, &v))
				return 2;
			o->prefixes = v;
			break;
		case 'P':
			if (!parse_num("--port-rules", optarg, 0, SLUICE_POLICY_MAX, &v))
				return 2;
			o->port_rules = v;
			break;
		case 'r':
			if (!parse_num("--reps", optarg, 1, 1000, &v))
				return 2;
			o->reps = (unsigned)v;
			break;
		case 's':
			if (!parse_num("--seed", optarg, 0, ULLONG_MAX, &v))
				return 2;
			o->seed = v;
			break;
		case 'n':
			o->nft = optarg;
			break;
		case 'N':
			o->no_nft = true;
			break;
		case 'c':
			o->cli = optarg;
			break;
		case 'o':
			o->out = optarg;
			break;
		case 'k':
			o->keep = optarg;
			break;
		case 'v':
			o->verbose = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "apply: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (o->port_rules > o->prefixes) {
		fprintf(stderr, "apply: --port-rules %zu is more than --prefixes %zu\n",
			o->port_rules, o->prefixes);
		return 2;
	}
	return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* The hidden child mode: --apply-child FILE POLICY_FD CONFIG_FD PORTS_FD. */
static int child_main(char **argv)
{
	struct policy_maps maps;
	unsigned long long v[3];

	for (int i = 0; i < 3; i++)
		if (!parse_num("--apply-child", argv[3 + i], 0, INT_MAX, &v[i]))
			return 2;
	maps = (struct policy_maps){ (int)v[0], (int)v[1], (int)v[2] };
	return child_apply(argv[2], &maps);
}

int main(int argc, char **argv)
{
	char ports_err[POLICY_ERROR_MAX], elements_s[32], entries_s[32], port_entries_s[32];
	char classes_s[32], prefixes_s[32], port_rules_s[32], reps_s[32], seed_s[32];
	char v4_s[32], v6_s[32];
	struct datapath dp = { .skel = NULL }, pinned = { .skel = NULL };
	char no_cli[PATH_MAX + 64] = "";
	struct bench_rule *rules = NULL;
	struct options o;
	struct ctx c = { .o = &o, .fds = { -1, -1, -1 } };
	double *pool = NULL, *v[M_MAX];
	size_t elements = 0, n4 = 0;
	struct run last = { 0 };
	bool ports, loaded = false, pinned_loaded = false, mounted = false;
	int err;

	if (argc == 6 && strcmp(argv[1], "--apply-child") == 0)
		return child_main(argv);
	err = parse_args(argc, argv, &o);
	if (err)
		return err;
	log_init(o.verbose ? LOG_DEBUG : LOG_WARN);

	if (readlink("/proc/self/exe", c.self, sizeof(c.self) - 1) < 0) {
		fprintf(stderr, "apply: cannot find my own binary: %s\n", strerror(errno));
		return 1;
	}
	/* Everything below, nft included, lives in a network namespace that dies with us. */
	if (!o.no_nft && unshare(CLONE_NEWNET) < 0) {
		fprintf(stderr,
			"apply: cannot create a private network namespace: %s (root needed)\n",
			strerror(errno));
		return 1;
	}
	pool = calloc((size_t)M_MAX * o.reps, sizeof(*pool));
	if (!pool) {
		fprintf(stderr, "apply: out of memory\n");
		return 1;
	}
	for (int m = 0; m < M_MAX; m++)
		v[m] = pool + (size_t)m * o.reps;

	ports = o.port_rules == 0 || parser_takes_ports(ports_err);
	if (!ports) {
		/* Say so loudly: the numbers are then for plain prefixes only, on both sides. */
		fprintf(stderr,
			"apply: NOTE: this sluice's policy parser rejects port rules (%s);\n"
			"apply: NOTE: the %zu port rules are written WITHOUT their port list,\n"
			"apply: NOTE: for sluice and nft alike: this run measures %zu plain "
			"prefixes.\n",
			ports_err, o.port_rules, o.prefixes);
	}

	err = build_rules(&o, &rules);
	if (err)
		goto out;
	for (size_t i = 0; i < o.prefixes; i++)
		n4 += addr_is_v4(&rules[i].pfx.addr);

	if (o.keep) {
		snprintf(c.dir, sizeof(c.dir), "%s", o.keep);
		if (mkdir(c.dir, 0700) < 0 && errno != EEXIST) {
			err = -errno;
			fprintf(stderr, "apply: cannot create %s: %s\n", c.dir, strerror(-err));
			goto out;
		}
	} else {
		snprintf(c.dir, sizeof(c.dir), "/tmp/sluice-bench-apply.XXXXXX");
		if (!mkdtemp(c.dir)) {
			err = -errno;
			fprintf(stderr, "apply: cannot create a temporary directory: %s\n",
				strerror(-err));
			goto out;
		}
	}
	snprintf(c.policy_path, sizeof(c.policy_path), "%s/policy.conf", c.dir);
	snprintf(c.nft_path, sizeof(c.nft_path), "%s/policy.nft", c.dir);
	snprintf(c.err_path, sizeof(c.err_path), "%s/stderr.txt", c.dir);
	err = write_policy(c.policy_path, &o, rules, ports);
	if (!err)
		err = write_nft(c.nft_path, &o, rules, ports, &elements);
	if (err)
		goto out;

	err = datapath_load(&dp, NULL);
	if (err) {
		fprintf(stderr, "apply: cannot load the datapath: %s (root needed)\n",
			strerror(-err));
		goto out;
	}
	loaded = true;
	/* The child inherits the maps: duplicates without close-on-exec. */
	c.fds[0] = fcntl(dp.policy_fd, F_DUPFD, 3);
	c.fds[1] = fcntl(dp.config_fd, F_DUPFD, 3);
	c.fds[2] = fcntl(dp.ports_fd, F_DUPFD, 3);
	if (c.fds[0] < 0 || c.fds[1] < 0 || c.fds[2] < 0) {
		err = -errno;
		fprintf(stderr, "apply: cannot pass the maps on: %s\n", strerror(-err));
		goto out;
	}

	c.cli = cli_has_overrides(&c, no_cli, sizeof(no_cli));
	if (c.cli) {
		err = setup_pinned(&c, &pinned);
		mounted = c.bpffs[0] != '\0';
		if (err)
			goto out;
		pinned_loaded = true;
	}

	fprintf(stderr,
		"apply: %zu prefixes (%zu IPv4, %zu IPv6, disjoint), %zu port rules (%s), "
		"%u reps + 1 warm-up, seed %llu; files in %s\n",
		o.prefixes, n4, o.prefixes - n4, o.port_rules,
		ports ? PORT_LIST_SLUICE : "written without ports", o.reps,
		(unsigned long long)o.seed, c.dir);

	/* Warm-up: page cache, the loader, the first trie; then check what got installed. */
	err = run_sluice(&c, &last);
	if (!err)
		err = check_installed(&c, rules, ports, last.generation);
	if (!err && !o.no_nft)
		err = run_nft(&c, &last);
	if (!err && c.cli) {
		struct run r;

		err = run_cli(&c, "policy", "load", c.policy_path, &r);
		if (!err)
			err = run_cli(&c, "deny", OVERRIDE_ADDR, NULL, &r);
		if (!err)
			err = check_override(&pinned, OVERRIDE_ADDR);
		if (!err)
			err = run_cli(&c, "remove", OVERRIDE_ADDR, NULL, &r);
	}
	if (err)
		goto out;

	for (unsigned rep = 0; rep < o.reps; rep++) {
		struct run s = { 0 }, n = { 0 };

		/* Alternate who goes first, so that neither always follows the other. */
		if (rep % 2 == 0 || o.no_nft) {
			err = run_sluice(&c, &s);
			if (!err && !o.no_nft)
				err = run_nft(&c, &n);
		} else {
			err = run_nft(&c, &n);
			if (!err)
				err = run_sluice(&c, &s);
		}
		if (err)
			goto out;
		/* The CLI: a whole reload through the product, then one override on top. */
		if (c.cli) {
			struct run l, d, r;

			err = run_cli(&c, "policy", "load", c.policy_path, &l);
			if (!err)
				err = run_cli(&c, "deny", OVERRIDE_ADDR, NULL, &d);
			if (!err)
				err = run_cli(&c, "remove", OVERRIDE_ADDR, NULL, &r);
			if (err)
				goto out;
			v[M_CLI_LOAD][rep] = l.wall_s * 1e3;
			v[M_OVERRIDE][rep] = d.wall_s * 1e3;
			v[M_REMOVE][rep] = r.wall_s * 1e3;
		}
		v[M_SLUICE_WALL][rep] = s.wall_s * 1e3;
		v[M_SLUICE_APPLY][rep] = (s.parse_s + s.compile_s + s.install_s) * 1e3;
		v[M_SLUICE_PARSE][rep] = s.parse_s * 1e3;
		v[M_SLUICE_COMPILE][rep] = s.compile_s * 1e3;
		v[M_SLUICE_INSTALL][rep] = s.install_s * 1e3;
		v[M_SLUICE_RSS][rep] = s.maxrss_kib / 1024.0;
		v[M_NFT_WALL][rep] = n.wall_s * 1e3;
		v[M_NFT_RSS][rep] = n.maxrss_kib / 1024.0;
		last = s;
		if (o.verbose)
			fprintf(stderr,
				"apply: rep %u: sluice %.1f ms (%.1f MiB), "
				"nft %.1f ms (%.1f MiB)\n",
				rep + 1, s.wall_s * 1e3, s.maxrss_kib / 1024.0, n.wall_s * 1e3,
				n.maxrss_kib / 1024.0);
	}

	printf("policy: %zu prefixes (%zu IPv4, %zu IPv6), %zu with '%s'%s\n", o.prefixes, n4,
	       o.prefixes - n4, o.port_rules, PORT_LIST_SLUICE,
	       ports ? "" : " -- port lists NOT applied: the parser rejects them");
	printf("sluice: %zu rules -> %zu trie entries, %zu port entries in %u classes\n",
	       last.rules, last.entries, last.port_entries, last.classes);
	if (!o.no_nft)
		printf("nft: %zu interval-set elements in 6 sets, one output chain\n", elements);
	printf("%u interleaved repetitions after one warm-up each\n\n", o.reps);
	print_results(stdout, &o, v, !o.no_nft, c.cli);
	{
		struct stat3 sw = summarize(v[M_SLUICE_WALL], o.reps);
		struct stat3 sa = summarize(v[M_SLUICE_APPLY], o.reps);

		printf("\ntarget: sluice applies %zu prefixes in <= %.0f ms: %.1f ms process, "
		       "%.1f ms in-process -- %s\n",
		       o.prefixes, TARGET_MS, sw.median, sa.median,
		       sw.median <= TARGET_MS ? "met" : "NOT met");
		if (!o.no_nft) {
			struct stat3 nw = summarize(v[M_NFT_WALL], o.reps);
			struct stat3 sr = summarize(v[M_SLUICE_RSS], o.reps);
			struct stat3 nr = summarize(v[M_NFT_RSS], o.reps);

			printf("target: >= %.0fx faster than nft: nft/sluice = %.1fx "
			       "(process wall, medians), %.1fx against in-process -- %s\n",
			       TARGET_RATIO, nw.median / sw.median, nw.median / sa.median,
			       nw.median / sw.median >= TARGET_RATIO ? "met" : "NOT met");
			printf("peak RSS: sluice %.1f MiB, nft %.1f MiB (nft/sluice = %.1fx)\n",
			       sr.median, nr.median, nr.median / sr.median);
		}
	}
	if (c.cli)
		printf("single-override latency ('sluice deny %s' with this policy in force): "
		       "%.1f ms median\n",
		       OVERRIDE_ADDR, summarize(v[M_OVERRIDE], o.reps).median);
	else
		printf("single-override latency: not measured (%s)\n", no_cli);

	if (o.out) {
		snprintf(prefixes_s, sizeof(prefixes_s), "%zu", o.prefixes);
		snprintf(v4_s, sizeof(v4_s), "%zu", n4);
		snprintf(v6_s, sizeof(v6_s), "%zu", o.prefixes - n4);
		snprintf(port_rules_s, sizeof(port_rules_s), "%zu", o.port_rules);
		snprintf(entries_s, sizeof(entries_s), "%zu", last.entries);
		snprintf(port_entries_s, sizeof(port_entries_s), "%zu", last.port_entries);
		snprintf(classes_s, sizeof(classes_s), "%u", last.classes);
		snprintf(elements_s, sizeof(elements_s), "%zu", elements);
		snprintf(reps_s, sizeof(reps_s), "%u", o.reps);
		snprintf(seed_s, sizeof(seed_s), "%llu", (unsigned long long)o.seed);
		const char *const params[][2] = {
			{ "prefixes", prefixes_s },
			{ "ipv4", v4_s },
			{ "ipv6", v6_s },
			{ "port_rules", port_rules_s },
			{ "port_list", PORT_LIST_SLUICE },
			{ "ports_applied", ports ? "yes" : "no" },
			{ "ports_rejected_because", ports ? "" : ports_err },
			{ "trie_entries", entries_s },
			{ "port_entries", port_entries_s },
			{ "port_classes", classes_s },
			{ "nft_elements", o.no_nft ? "" : elements_s },
			{ "reps", reps_s },
			{ "seed", seed_s },
			{ "override", c.cli ? "measured" : no_cli },
			{ "override_addr", OVERRIDE_ADDR },
		};

		err = write_tsv(o.out, &o, v, !o.no_nft, c.cli, params,
				sizeof(params) / sizeof(params[0]));
	}
out:
	for (int i = 0; i < 3; i++)
		if (c.fds[i] >= 0)
			close(c.fds[i]);
	if (loaded)
		datapath_close(&dp);
	if (pinned_loaded)
		datapath_close(&pinned);
	/* Our bpffs goes with our mount namespace; detach it now so the removal skips it. */
	if (mounted)
		umount2(c.bpffs, MNT_DETACH);
	if (!o.keep && c.dir[0])
		nftw(c.dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
	free(rules);
	free(pool);
	return err ? 1 : 0;
}

// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * sluice-bench-apply: how long it takes to apply a large policy, sluice against nftables
 * and ipset.
 *
 * One generated policy (bench/ruleset.c; by default 100 000 prefixes, half IPv6, 1 000 of
 * them with a port list `tcp 443,2811,50000-51000`) is written three times: as a sluice
 * policy file, as an nft ruleset holding the same prefixes in interval sets (`type
 * ipv4_addr; flags interval` and its IPv6 twin) with the same port rule, and as an
 * `ipset restore` file filling hash:net sets with them. Then, interleaved, several times:
 *   sluice  a fresh process reads the file, parses, compiles and installs it into a loaded
 *           datapath (policy_parse_file, policy_compile, policy_install), like a reload;
 *   nft     `nft -f FILE` replaces the ruleset (the file starts with `flush ruleset`);
 *   ipset   `ipset -exist restore` fills a new set beside each live one and swaps it in.
 *           The iptables rules that use the sets do not change on a reload and are not
 *           part of it.
 * All are whole processes started the same way (through a small wrapper, see spawn_main),
 * so wall time and peak RSS (from wait4) compare like with like; sluice also reports its
 * parse/compile/install phases.
 *
 * With --cli PATH (the sluice binary) and a CLI that has runtime overrides, each repetition
 * also times the product's own paths against a pinned datapath: `sluice policy load FILE`
 * (a whole reload, state files included) and `sluice deny ADDR` / `sluice remove ADDR` (one
 * override, in force when the command returns). Then the overrides again with `sluice run`
 * on a veth pair of the private network namespace: with a daemon they are applied in place.
 *
 * The prefixes never overlap one another, so the longest-prefix policy and the sets
 * decide alike and nft accepts the interval sets as written. If the policy parser rejects
 * port rules (an older grammar), the port rules are written without ports everywhere,
 * and the output says so.
 *
 * nft and ipset run in a network namespace private to this process (unshare(CLONE_NEWNET)
 * at start), which the kernel deletes when the process exits, however it exits: no
 * interface, ruleset or set of the host is touched, and there is nothing to clean up.
 * Likewise the pinned datapath the CLI works on lives in a bpffs mounted in a mount
 * namespace of our own. The datapaths are loaded but attached nowhere (the daemon's veth
 * pair is in the private network namespace). Needs root. Never part of ctest: timings do
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
#include <signal.h>
#include <sys/wait.h>
#include <bpf/bpf.h>

#include "addr.h"
#include "datapath.h"
#include "log.h"
#include "pins.h"
#include "policy.h"
#include "policy_kernel.h"
#include "ruleset.h"

#define DEFAULT_PREFIXES 100000
#define DEFAULT_PORT_RULES 1000
#define DEFAULT_REPS 7
#define DEFAULT_SEED 0x511ceull
#define DEFAULT_NFT "nft"
#define DEFAULT_IPSET "ipset"
/* Decisions read back from the kernel after the warm-up, to check what is being timed. */
#define CHECK_PROBES 500
/* The destination of the timed override (TEST-NET-3, as in the SPEC's example). */
#define OVERRIDE_ADDR "203.0.113.9"
/* The target from the issue: applying 100k prefixes. */
#define TARGET_MS 200.0
#define TARGET_RATIO 20.0
#define TARGET_OVERRIDE_MS 10.0
/* The maps the child installs into: policy, grace, config, rules. */
#define CHILD_FDS 4
/* The longest command line run_process starts. */
#define SPAWN_ARGS_MAX 12

struct options {
	size_t prefixes;
	size_t port_rules;
	unsigned reps;
	__u64 seed;
	const char *out;
	const char *keep; /* keep the generated files in this directory */
	const char *nft;
	const char *ipset;
	const char *cli; /* the sluice binary, for the override latency */
	bool no_nft;
	bool no_ipset;
	bool verbose;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Does this sluice accept port rules? If not, err says why. */
static bool parser_takes_ports(char err[POLICY_ERROR_MAX])
{
	struct policy p;
	int ret = policy_parse_text("probe.conf", "allow 192.0.2.0/24 " RULESET_PORTS_SLUICE "\n",
				    &p, err);

	policy_free(&p);
	return ret == 0;
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
	struct policy_grace grace;
	struct policy p;
	double t0, t1, t2, t3;
	__u32 gen;
	int ret;

	log_init(LOG_WARN);
	t0 = now_s();
	/* As policy_apply does: the install's grace period runs while the file is parsed. */
	ret = policy_grace_begin(maps, &grace);
	if (ret) {
		fprintf(stderr, "apply: child: cannot read the config: %s\n", strerror(-ret));
		return 1;
	}
	ret = policy_parse_file(path, &p, err);
	if (ret) {
		fprintf(stderr, "apply: child: %s\n", err);
		policy_grace_end(&grace);
		return 1;
	}
	t1 = now_s();
	ret = policy_next_generation(maps->config_fd, &gen);
	if (!ret)
		ret = policy_compile(&p, gen, &cp);
	if (ret) {
		fprintf(stderr, "apply: child: cannot compile: %s\n", strerror(-ret));
		policy_free(&p);
		policy_grace_end(&grace);
		return 1;
	}
	t2 = now_s();
	ret = policy_install(maps, &cp, gen, &grace);
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

struct ctx {
	const struct options *o;
	char dir[PATH_MAX - 64];
	char policy_path[PATH_MAX], nft_path[PATH_MAX], ipset_path[PATH_MAX], err_path[PATH_MAX];
	char self[PATH_MAX];
	int fds[CHILD_FDS]; /* the datapath's maps as child_main takes them, inheritable */
	/* The pinned datapath the CLI works on (with --cli). */
	bool cli;
	char bpffs[PATH_MAX - 32], pin_dir[PATH_MAX], state_dir[PATH_MAX];
};

static bool parse_num(const char *opt, const char *s, unsigned long long min,
		      unsigned long long max, unsigned long long *out);

/*
 * The hidden wrapper mode: --spawn REPORT_FD ARGV...: run ARGV, wait, and write its wall
 * time, peak RSS and wait status to REPORT_FD. A child's ru_maxrss starts at the size of
 * the process that forked it, so a command forked straight from this benchmark (tens of
 * MiB with its policy and datapath) would report at least that; forked from this small
 * freshly executed wrapper, it reports its own peak, as under time(1).
 */
static int spawn_main(char **argv)
{
	unsigned long long fd;
	struct rusage ru;
	double t0;
	pid_t pid;
	int status;

	if (!parse_num("--spawn", argv[2], 0, INT_MAX, &fd))
		return 126;
	/* The report is ours; the command must not inherit it. */
	fcntl((int)fd, F_SETFD, FD_CLOEXEC);
	t0 = now_s();
	pid = fork();
	if (pid < 0)
		return 126;
	if (pid == 0) {
		execvp(argv[3], &argv[3]);
		fprintf(stderr, "cannot run %s: %s\n", argv[3], strerror(errno));
		_exit(127);
	}
	if (wait4(pid, &status, 0, &ru) < 0)
		return 126;
	dprintf((int)fd, "%.9f %ld %d\n", now_s() - t0, ru.ru_maxrss, status);
	return 0;
}

/*
 * Run argv through the wrapper (spawn_main) with stdout to out_fd (-1: /dev/null) and
 * stderr to the error file; wait; measure.
 */
static int run_process(const struct ctx *c, char *const argv[], int out_fd, struct run *run)
{
	char *wargv[SPAWN_ARGS_MAX + 4] = { (char *)c->self, "--spawn", NULL };
	char report_s[16], line[128] = "";
	int report[2], status = 0, err = 0;
	size_t n = 0;
	ssize_t got;
	pid_t pid;

	while (argv[n] && n < SPAWN_ARGS_MAX)
		n++;
	if (argv[n] || pipe2(report, O_CLOEXEC) < 0)
		return argv[n] ? -E2BIG : -errno;
	snprintf(report_s, sizeof(report_s), "%d", report[1]);
	wargv[2] = report_s;
	memcpy(&wargv[3], argv, (n + 1) * sizeof(*argv));
	pid = fork();
	if (pid < 0) {
		err = -errno;
		close(report[0]);
		close(report[1]);
		return err;
	}
	if (pid == 0) {
		int err_fd = open(c->err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);

		if (err_fd < 0 || null_fd < 0)
			_exit(126);
		dup2(null_fd, STDIN_FILENO);
		dup2(out_fd >= 0 ? out_fd : null_fd, STDOUT_FILENO);
		dup2(err_fd, STDERR_FILENO);
		fcntl(report[1], F_SETFD, 0); /* for the wrapper */
		execv(wargv[0], wargv);
		_exit(126);
	}
	close(report[1]);
	got = read(report[0], line, sizeof(line) - 1);
	close(report[0]);
	if (waitpid(pid, NULL, 0) < 0)
		return -errno;
	line[got > 0 ? got : 0] = '\0';
	if (sscanf(line, "%lf %ld %d", &run->wall_s, &run->maxrss_kib, &status) != 3) {
		fprintf(stderr, "apply: could not start %s (see %s)\n", argv[0], c->err_path);
		return -ECHILD;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		FILE *f = fopen(c->err_path, "r");
		char msg[512];

		fprintf(stderr, "apply: %s failed (%s %d):\n", argv[0],
			WIFEXITED(status) ? "exit status" : "signal",
			WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
		while (f && fgets(msg, sizeof(msg), f))
			fprintf(stderr, "  %s", msg);
		if (f)
			fclose(f);
		return -ECHILD;
	}
	return 0;
}

static int run_sluice(const struct ctx *c, struct run *run)
{
	char fd_args[CHILD_FDS][16];
	char *argv[] = { (char *)c->self, "--apply-child", (char *)c->policy_path,
			 fd_args[0],      fd_args[1],      fd_args[2],
			 fd_args[3],      NULL };
	char line[256];
	int pipefd[2], err;
	ssize_t got;

	for (int i = 0; i < CHILD_FDS; i++)
		snprintf(fd_args[i], sizeof(fd_args[i]), "%d", c->fds[i]);
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return -errno;
	err = run_process(c, argv, pipefd[1], run);
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

	return run_process(c, argv, -1, run);
}

/* The sets are replaced one by one, each swapped in whole (see ruleset_write_ipset). */
static int run_ipset(const struct ctx *c, struct run *run)
{
	char *argv[] = { (char *)c->o->ipset, "-exist", "-file", (char *)c->ipset_path, "restore",
			 NULL };

	return run_process(c, argv, -1, run);
}

/* After the warm-up: every set holds what the file put there. */
static int check_ipset(const struct ctx *c, size_t elements[2][RULESET_SETS])
{
	for (int v6 = 0; v6 <= 1; v6++) {
		for (int s = 0; s < RULESET_SETS; s++) {
			char cmd[PATH_MAX + 64], line[256];
			long long got = -1;
			FILE *f;

			snprintf(cmd, sizeof(cmd), "'%s' -terse list " RULESET_IPSET_PREFIX "%s%d",
				 c->o->ipset, ruleset_set_names[s], v6 ? 6 : 4);
			f = popen(cmd, "r");
			if (!f)
				return -errno;
			while (fgets(line, sizeof(line), f))
				sscanf(line, "Number of entries: %lld", &got);
			pclose(f);
			if (got != (long long)elements[v6][s]) {
				fprintf(stderr, "apply: set %s%d holds %lld entries, not %zu\n",
					ruleset_set_names[s], v6 ? 6 : 4, got,
					elements[v6][s]);
				return -EIO;
			}
		}
	}
	fprintf(stderr, "apply: the ipset sets hold every prefix\n");
	return 0;
}

/* sluice --pin-dir P --state-dir S ARGS..., timed. */
static int run_cli(const struct ctx *c, const char *a1, const char *a2, const char *a3,
		   struct run *run)
{
	char *argv[] = { (char *)c->o->cli, "--pin-dir", (char *)c->pin_dir, "--state-dir",
			 (char *)c->state_dir, (char *)a1, (char *)a2, (char *)a3, NULL };

	return run_process(c, argv, -1, run);
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
	if (run_process(c, argv, -1, &r) != 0) {
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

/* The override is in force when the command returns: the policy in force denies addr. */
static int check_override(const struct datapath *dp, const char *addr_text)
{
	const struct sluice_policy_entry *e;
	struct policy_view view;
	struct sluice_addr addr;
	int ok;

	if (addr_parse(addr_text, &addr) < 0 || policy_view_open(dp->policy_fd, dp->config_fd, &view))
		return -EINVAL;
	e = policy_view_decide(&view, &addr);
	ok = e && e->verdict == SLUICE_VERDICT_DENY && e->reason == SLUICE_REASON_RULE;
	policy_view_close(&view);
	if (!ok) {
		fprintf(stderr, "apply: after 'sluice deny %s' the policy does not deny it\n",
			addr_text);
		return -EIO;
	}
	return 0;
}

/*
 * `sluice run` on a veth pair of this process's private network namespace, with the policy
 * in force: the CLI's overrides then go to the daemon, which recompiles only what they touch.
 * Returns the daemon's pid once its control socket is there, or -errno.
 */
static pid_t start_daemon(const struct ctx *c)
{
	char *argv[] = { (char *)c->o->cli, "--pin-dir", (char *)c->pin_dir, "--state-dir",
			 (char *)c->state_dir, "run", "--iface", "bench0", "--policy",
			 (char *)c->policy_path, NULL };
	char sock[PATH_MAX];
	pid_t pid;

	/* Our own network namespace (unshare at start): nothing of the host's is touched. */
	if (system("ip link add bench0 type veth peer name bench1 && ip link set bench0 up") != 0) {
		fprintf(stderr, "apply: cannot create a veth pair in the private namespace\n");
		return -EIO;
	}
	if (snprintf(sock, sizeof(sock), "%s/control.sock", c->state_dir) >= (int)sizeof(sock))
		return -ENAMETOOLONG;
	unlink(sock);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int err_fd = open(c->err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		if (err_fd >= 0)
			dup2(err_fd, STDERR_FILENO);
		execvp(argv[0], argv);
		_exit(127);
	}
	for (int i = 0; i < 600; i++) { /* up to a minute for a large policy */
		int status;

		if (access(sock, F_OK) == 0)
			return pid;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			fprintf(stderr, "apply: sluice run exited early (see %s)\n", c->err_path);
			return -ECHILD;
		}
		usleep(100000);
	}
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	return -ETIMEDOUT;
}

static void stop_daemon(pid_t pid)
{
	if (pid > 0) {
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
	}
}

/* --- checking what was installed ------------------------------------------------------- */

/*
 * Read decisions back from the policy the child installed and hold them to the
 * reference decision: a benchmark of a policy that was not installed right is worthless.
 * Destinations inside a port rule's prefix have a port class (decided per port in the
 * datapath); elsewhere the installed verdict must equal policy_decide's.
 */
static int check_installed(const struct ctx *c, const struct ruleset *rs, __u32 generation)
{
	__u64 rng = c->o->seed ^ 0xc0ffee;
	char err[POLICY_ERROR_MAX], buf[ADDR_STRLEN];
	struct policy_view view;
	struct policy p;
	size_t wrong = 0;
	int ret;

	ret = policy_view_open(c->fds[0], c->fds[2], &view);
	if (ret || view.generation != generation) {
		fprintf(stderr, "apply: the datapath is not at generation %u after the install\n",
			generation);
		if (!ret)
			policy_view_close(&view);
		return -EIO;
	}
	ret = policy_parse_file(c->policy_path, &p, err);
	if (ret) {
		fprintf(stderr, "apply: %s\n", err);
		policy_view_close(&view);
		return ret;
	}
	for (unsigned i = 0; i < CHECK_PROBES; i++) {
		const struct ruleset_rule *r = &rs->rules[ruleset_rng(&rng) % rs->n];
		struct sluice_lpm_key key = { .prefixlen = 128 };
		struct sluice_policy_entry got, want;
		const struct sluice_policy_entry *e;
		__u64 hi = ruleset_rng(&rng), lo = ruleset_rng(&rng);

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
		e = policy_view_decide(&view, &key.addr);
		if (!e) {
			wrong++;
			continue;
		}
		got = *e;
		policy_decide(&p, &key.addr, IPPROTO_UDP, 9, &want); /* no port rule names UDP */
		if (i % 2 == 0 && r->ports && rs->ports) {
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
	policy_view_close(&view);
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
	M_IPSET_WALL,
	M_IPSET_RSS,
	M_CLI_LOAD,
	M_OVERRIDE,
	M_REMOVE,
	M_DAEMON_OVERRIDE,
	M_DAEMON_REMOVE,
	M_MAX
};

static const struct {
	const char *name, *unit, *label;
} metrics[M_MAX] = {
	[M_SLUICE_WALL] = { "sluice_wall", "ms", "sluice: process, start to exit" },
	[M_SLUICE_APPLY] = { "sluice_apply", "ms", "sluice: parse + compile + install" },
	[M_SLUICE_PARSE] = { "sluice_parse", "ms", "  parse (read the file)" },
	[M_SLUICE_COMPILE] = { "sluice_compile", "ms", "  compile" },
	[M_SLUICE_INSTALL] = { "sluice_install", "ms", "  install (fill a bank, switch)" },
	[M_SLUICE_RSS] = { "sluice_peak_rss", "MiB", "sluice: peak RSS" },
	[M_NFT_WALL] = { "nft_wall", "ms", "nft -f: process, start to exit" },
	[M_NFT_RSS] = { "nft_peak_rss", "MiB", "nft -f: peak RSS" },
	[M_IPSET_WALL] = { "ipset_wall", "ms", "ipset restore: process, start to exit" },
	[M_IPSET_RSS] = { "ipset_peak_rss", "MiB", "ipset restore: peak RSS" },
	[M_CLI_LOAD] = { "cli_policy_load", "ms", "sluice policy load FILE (CLI)" },
	[M_OVERRIDE] = { "override_wall", "ms", "sluice deny ADDR (CLI)" },
	[M_REMOVE] = { "override_remove_wall", "ms", "sluice remove ADDR (CLI)" },
	[M_DAEMON_OVERRIDE] = { "override_daemon_wall", "ms", "sluice deny ADDR (daemon running)" },
	[M_DAEMON_REMOVE] = { "override_daemon_remove_wall", "ms",
			      "sluice remove ADDR (daemon running)" },
};

/* Who takes part in this run besides sluice itself. */
struct peers {
	bool nft, ipset, cli;
};

/* Which metrics this run has. */
static bool measured(int m, const struct peers *w)
{
	if (m == M_NFT_WALL || m == M_NFT_RSS)
		return w->nft;
	if (m == M_IPSET_WALL || m == M_IPSET_RSS)
		return w->ipset;
	if (m == M_CLI_LOAD || m == M_OVERRIDE || m == M_REMOVE || m == M_DAEMON_OVERRIDE ||
	    m == M_DAEMON_REMOVE)
		return w->cli;
	return true;
}

static void print_results(FILE *f, const struct options *o, double *const v[M_MAX],
			  const struct peers *w)
{
	fprintf(f, "%-36s %10s %10s %10s\n", "", "median", "min", "max");
	for (int m = 0; m < M_MAX; m++) {
		struct stat3 s;

		if (!measured(m, w))
			continue;
		s = summarize(v[m], o->reps);
		fprintf(f, "%-36s %10.1f %10.1f %10.1f  %s\n", metrics[m].label, s.median, s.min,
			s.max, metrics[m].unit);
	}
}

static int write_tsv(const char *path, const struct options *o, double *const v[M_MAX],
		     const struct peers *w, const char *const params[][2], size_t nparams)
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

		if (!measured(m, w))
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
		"prefixes as interval sets and `ipset restore` loading them into hash:net sets,\n"
		"in a private network namespace, interleaved.\n"
		"\n"
		"Options:\n"
		"  --prefixes N     prefixes in the policy, half IPv6 (default %d)\n"
		"  --port-rules N   how many of them carry '%s' (default %d)\n"
		"  --reps N         interleaved repetitions after one warm-up each (default %d)\n"
		"  --seed N         seed of the generated policy (default %llu)\n"
		"  --nft PATH       the nft binary (default %s, from PATH)\n"
		"  --no-nft         leave nft out\n"
		"  --ipset PATH     the ipset binary (default %s, from PATH)\n"
		"  --no-ipset       leave ipset out\n"
		"  --cli PATH       the sluice binary: also time 'sluice policy load' and one\n"
		"                   override ('sluice deny ADDR', 'sluice remove ADDR') against a\n"
		"                   pinned datapath in a private bpffs\n"
		"  --out FILE       also write the results as TSV to FILE\n"
		"  --keep DIR       write the generated policy.conf, policy.nft and\n"
		"                   policy.ipset to DIR and keep them (default: a temporary\n"
		"                   directory, removed at exit)\n"
		"  -v, --verbose    libbpf's messages and every measurement\n"
		"  -h, --help       this text\n"
		"\n"
		"Examples:\n"
		"  sluice-bench-apply --out /tmp/apply.tsv\n"
		"  sluice-bench-apply --prefixes 1000000 --port-rules 10000 --reps 3\n",
		DEFAULT_PREFIXES, RULESET_PORTS_SLUICE, DEFAULT_PORT_RULES, DEFAULT_REPS,
		(unsigned long long)DEFAULT_SEED, DEFAULT_NFT, DEFAULT_IPSET);
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
		{ "ipset", required_argument, NULL, 'i' },
		{ "no-ipset", no_argument, NULL, 'I' },
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
		.ipset = DEFAULT_IPSET,
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
		case 'i':
			o->ipset = optarg;
			break;
		case 'I':
			o->no_ipset = true;
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

/* The hidden child mode: --apply-child FILE POLICY_FD GRACE_FD CONFIG_FD RULES_FD. */
static int child_main(char **argv)
{
	struct policy_maps maps;
	unsigned long long v[CHILD_FDS];

	for (int i = 0; i < CHILD_FDS; i++)
		if (!argv[3 + i] || !parse_num("--apply-child", argv[3 + i], 0, INT_MAX, &v[i]))
			return 2;
	maps = (struct policy_maps){ .policy_fd = (int)v[0], .grace_fd = (int)v[1],
				     .config_fd = (int)v[2], .rules_fd = (int)v[3] };
	return child_apply(argv[2], &maps);
}

int main(int argc, char **argv)
{
	char ports_err[POLICY_ERROR_MAX], elements_s[32], entries_s[32], port_entries_s[32];
	char classes_s[32], prefixes_s[32], port_rules_s[32], reps_s[32], seed_s[32];
	char v4_s[32], v6_s[32], ipset_elements_s[32];
	struct datapath dp = { .skel = NULL }, pinned = { .skel = NULL };
	char no_cli[PATH_MAX + 64] = "";
	struct ruleset rs = { .rules = NULL };
	struct ruleset_params rp;
	struct options o;
	struct ctx c = { .o = &o, .fds = { -1, -1, -1, -1 } };
	double *pool = NULL, *v[M_MAX];
	size_t nft_sets[2][RULESET_SETS], ipset_sets[2][RULESET_SETS], elements = 0, n4;
	size_t ipset_elements = 0;
	struct peers w;
	struct run last = { 0 };
	bool ports, loaded = false, pinned_loaded = false, mounted = false;
	int err;

	if (argc == 3 + CHILD_FDS && strcmp(argv[1], "--apply-child") == 0)
		return child_main(argv);
	if (argc > 3 && strcmp(argv[1], "--spawn") == 0)
		return spawn_main(argv);
	err = parse_args(argc, argv, &o);
	if (err)
		return err;
	log_init(o.verbose ? LOG_DEBUG : LOG_WARN);

	if (readlink("/proc/self/exe", c.self, sizeof(c.self) - 1) < 0) {
		fprintf(stderr, "apply: cannot find my own binary: %s\n", strerror(errno));
		return 1;
	}
	/*
	 * Everything below, nft, ipset and the daemon's veth pair included, lives in a network
	 * namespace that dies with us.
	 */
	if (unshare(CLONE_NEWNET) < 0) {
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
			"apply: NOTE: for sluice, nft and ipset alike: this run measures %zu plain "
			"prefixes.\n",
			ports_err, o.port_rules, o.prefixes);
	}

	rp = (struct ruleset_params){
		.prefixes = o.prefixes,
		.port_rules = o.port_rules,
		.seed = o.seed,
	};
	err = ruleset_build(&rp, ports, &rs);
	if (err)
		goto out;
	n4 = rs.n4;

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
	snprintf(c.ipset_path, sizeof(c.ipset_path), "%s/policy.ipset", c.dir);
	snprintf(c.err_path, sizeof(c.err_path), "%s/stderr.txt", c.dir);
	err = ruleset_write_sluice(&rs, c.policy_path);
	if (!err)
		err = ruleset_write_nft(&rs, c.nft_path, nft_sets);
	if (!err)
		err = ruleset_write_ipset(&rs, c.ipset_path, ipset_sets);
	if (err)
		goto out;
	for (int f = 0; f < 2; f++) {
		for (int s = 0; s < RULESET_SETS; s++) {
			elements += nft_sets[f][s];
			ipset_elements += ipset_sets[f][s];
		}
	}

	err = datapath_load(&dp, NULL);
	if (err) {
		fprintf(stderr, "apply: cannot load the datapath: %s (root needed)\n",
			strerror(-err));
		goto out;
	}
	loaded = true;
	/* The child inherits the maps: duplicates without close-on-exec. */
	c.fds[0] = fcntl(dp.policy_fd, F_DUPFD, 3);
	c.fds[1] = fcntl(dp.grace_fd, F_DUPFD, 3);
	c.fds[2] = fcntl(dp.config_fd, F_DUPFD, 3);
	c.fds[3] = fcntl(dp.rules_fd, F_DUPFD, 3);
	if (c.fds[0] < 0 || c.fds[1] < 0 || c.fds[2] < 0 || c.fds[3] < 0) {
		err = -errno;
		fprintf(stderr, "apply: cannot pass the maps on: %s\n", strerror(-err));
		goto out;
	}

	c.cli = cli_has_overrides(&c, no_cli, sizeof(no_cli));
	w = (struct peers){ .nft = !o.no_nft, .ipset = !o.no_ipset, .cli = c.cli };
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
		ports ? RULESET_PORTS_SLUICE : "written without ports", o.reps,
		(unsigned long long)o.seed, c.dir);

	/* Warm-up: page cache, the loader, the first trie; then check what got installed. */
	err = run_sluice(&c, &last);
	if (!err)
		err = check_installed(&c, &rs, last.generation);
	if (!err && w.nft)
		err = run_nft(&c, &last);
	if (!err && w.ipset)
		err = run_ipset(&c, &last);
	if (!err && w.ipset)
		err = check_ipset(&c, ipset_sets);
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
		struct run s = { 0 }, n = { 0 }, i = { 0 };

		/* Rotate who goes first, so that no one always follows the same other. */
		for (unsigned k = 0; !err && k < 3; k++) {
			switch ((rep + k) % 3) {
			case 0:
				err = run_sluice(&c, &s);
				break;
			case 1:
				err = w.nft ? run_nft(&c, &n) : 0;
				break;
			default:
				err = w.ipset ? run_ipset(&c, &i) : 0;
				break;
			}
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
		v[M_IPSET_WALL][rep] = i.wall_s * 1e3;
		v[M_IPSET_RSS][rep] = i.maxrss_kib / 1024.0;
		last = s;
		if (o.verbose)
			fprintf(stderr,
				"apply: rep %u: sluice %.1f ms (%.1f MiB), "
				"nft %.1f ms (%.1f MiB), ipset %.1f ms (%.1f MiB)\n",
				rep + 1, s.wall_s * 1e3, s.maxrss_kib / 1024.0, n.wall_s * 1e3,
				n.maxrss_kib / 1024.0, i.wall_s * 1e3, i.maxrss_kib / 1024.0);
	}

	/* Overrides through the running daemon: one warm-up pair, then the repetitions. */
	if (c.cli) {
		pid_t daemon = start_daemon(&c);
		struct run d, r;

		err = daemon < 0 ? (int)daemon : 0;
		for (unsigned rep = 0; !err && rep <= o.reps; rep++) {
			err = run_cli(&c, "deny", OVERRIDE_ADDR, NULL, &d);
			if (!err && rep == 0)
				err = check_override(&pinned, OVERRIDE_ADDR);
			if (!err)
				err = run_cli(&c, "remove", OVERRIDE_ADDR, NULL, &r);
			if (!err && rep > 0) {
				v[M_DAEMON_OVERRIDE][rep - 1] = d.wall_s * 1e3;
				v[M_DAEMON_REMOVE][rep - 1] = r.wall_s * 1e3;
			}
		}
		stop_daemon(daemon);
		if (err)
			goto out;
	}

	printf("policy: %zu prefixes (%zu IPv4, %zu IPv6), %zu with '%s'%s\n", o.prefixes, n4,
	       o.prefixes - n4, o.port_rules, RULESET_PORTS_SLUICE,
	       ports ? "" : " -- port lists NOT applied: the parser rejects them");
	printf("sluice: %zu rules -> %zu prefixes, %zu port entries in %u classes\n",
	       last.rules, last.entries, last.port_entries, last.classes);
	if (w.nft)
		printf("nft: %zu interval-set elements in 6 sets, one output chain\n", elements);
	if (w.ipset)
		printf("ipset: %zu hash:net elements in 6 sets, each filled beside the live one "
		       "and swapped in\n",
		       ipset_elements);
	printf("%u interleaved repetitions after one warm-up each\n\n", o.reps);
	print_results(stdout, &o, v, &w);
	{
		struct stat3 sw = summarize(v[M_SLUICE_WALL], o.reps);
		struct stat3 sa = summarize(v[M_SLUICE_APPLY], o.reps);

		printf("\ntarget: sluice applies %zu prefixes in <= %.0f ms: %.1f ms process, "
		       "%.1f ms in-process -- %s\n",
		       o.prefixes, TARGET_MS, sw.median, sa.median,
		       sw.median <= TARGET_MS ? "met" : "NOT met");
		if (w.ipset) {
			struct stat3 iw = summarize(v[M_IPSET_WALL], o.reps);

			printf("ipset restore/sluice = %.1fx (process wall, medians)\n",
			       iw.median / sw.median);
		}
		if (w.nft) {
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
	if (c.cli) {
		double with_daemon = summarize(v[M_DAEMON_OVERRIDE], o.reps).median;

		printf("single-override latency ('sluice deny %s' with this policy in force): "
		       "%.1f ms median with the daemon running, %.1f ms without\n",
		       OVERRIDE_ADDR, with_daemon, summarize(v[M_OVERRIDE], o.reps).median);
		printf("target: an override applies in <= %.0f ms: %.1f ms -- %s\n",
		       TARGET_OVERRIDE_MS, with_daemon,
		       with_daemon <= TARGET_OVERRIDE_MS ? "met" : "NOT met");
	}
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
		snprintf(ipset_elements_s, sizeof(ipset_elements_s), "%zu", ipset_elements);
		snprintf(reps_s, sizeof(reps_s), "%u", o.reps);
		snprintf(seed_s, sizeof(seed_s), "%llu", (unsigned long long)o.seed);
		const char *const params[][2] = {
			{ "prefixes", prefixes_s },
			{ "ipv4", v4_s },
			{ "ipv6", v6_s },
			{ "port_rules", port_rules_s },
			{ "port_list", RULESET_PORTS_SLUICE },
			{ "ports_applied", ports ? "yes" : "no" },
			{ "ports_rejected_because", ports ? "" : ports_err },
			{ "trie_entries", entries_s },
			{ "port_entries", port_entries_s },
			{ "port_classes", classes_s },
			{ "nft_elements", w.nft ? elements_s : "" },
			{ "ipset_elements", w.ipset ? ipset_elements_s : "" },
			{ "reps", reps_s },
			{ "seed", seed_s },
			{ "override", c.cli ? "measured" : no_cli },
			{ "override_addr", OVERRIDE_ADDR },
		};

		err = write_tsv(o.out, &o, v, &w, params,
				sizeof(params) / sizeof(params[0]));
	}
out:
	for (int i = 0; i < CHILD_FDS; i++)
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
	ruleset_free(&rs);
	free(pool);
	return err ? 1 : 0;
}

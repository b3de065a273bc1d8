// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * sluice run: validate everything first, then load, install the policy, attach, and wait.
 * Nothing in force changes until all input has been checked.
 */
#include <errno.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "attach.h"
#include "cli.h"
#include "datapath.h"
#include "ifslots.h"
#include "log.h"
#include "pins.h"
#include "policy.h"
#include "policy_kernel.h"
#include "policy_apply.h"
#include "state.h"

#define RUN_MAX_IFACES 64
#define POLICY_DEFAULT "/etc/sluice/policy.conf"

struct run_opts {
	const char *ifaces[RUN_MAX_IFACES];
	int nifaces;
	const char *policy_path;
	int mode; /* -1: as the policy says */
};

enum { OPT_IFACE = OPT_COMMAND_BASE, OPT_POLICY, OPT_MODE };

static const struct option run_options[] = {
	{ "iface", required_argument, NULL, OPT_IFACE },
	{ "policy", required_argument, NULL, OPT_POLICY },
	{ "mode", required_argument, NULL, OPT_MODE },
	CLI_COMMON_OPTIONS,
};

static int run_option(int opt, const char *arg, void *ctx)
{
	struct run_opts *o = ctx;

	switch (opt) {
	case OPT_IFACE:
		if (strlen(arg) == 0 || strlen(arg) >= IFNAMSIZ)
			return cli_usage_error("run", "invalid interface name '%s'", arg);
		if (o->nifaces == RUN_MAX_IFACES)
			return cli_usage_error("run", "at most %d interfaces", RUN_MAX_IFACES);
		for (int i = 0; i < o->nifaces; i++)
			if (strcmp(o->ifaces[i], arg) == 0)
				return cli_usage_error("run", "interface %s given twice", arg);
		o->ifaces[o->nifaces++] = arg;
		return 0;
	case OPT_POLICY:
		o->policy_path = arg;
		return 0;
	case OPT_MODE:
		if (strcmp(arg, "enforce") == 0)
			o->mode = SLUICE_MODE_ENFORCE;
		else if (strcmp(arg, "audit") == 0)
			o->mode = SLUICE_MODE_AUDIT;
		else
			return cli_usage_error("run", "--mode must be enforce or audit, not '%s'", arg);
		return 0;
	}
	return EXIT_USAGE;
}

static int parse_run_options(int argc, char **argv, struct run_opts *o)
{
	int ret;

	o->policy_path = POLICY_DEFAULT;
	o->mode = -1;
	ret = cli_parse_options("run", argc, argv, run_options, run_option, o);
	if (ret)
		return ret;
	if (optind < argc)
		return cli_usage_error("run", "unexpected argument '%s'", argv[optind]);
	if (o->nifaces == 0)
		return cli_usage_error("run", "at least one --iface is needed");
	return 0;
}

/* Install the policy (and overrides); on any error the policy in force stays. */
static int apply_policy(const struct datapath *dp, const char *path, int mode)
{
	struct policy_maps maps = { dp->policy_fd, dp->config_fd, dp->ports_fd };
	struct apply_result res;
	int ret = policy_apply(cli.state_dir, &maps, path, mode, &res);

	if (!ret)
		pr_info("policy %s installed: generation %u, %zu rules, %zu overrides", res.source,
			res.generation, res.rules, res.overrides);
	return ret;
}

static int attach_all(const struct datapath *dp, const struct run_opts *o)
{
	int lock = state_lock_writers(cli.state_dir), ret = 0;

	if (lock < 0)
		return lock;
	for (int i = 0; i < o->nifaces && !ret; i++) {
		enum attach_kind kind, ingress_kind;
		int slot = ifslot_assign(dp->ifaces_fd, dp->totals_fd, if_nametoindex(o->ifaces[i]));

		if (slot < 0) {
			pr_err("cannot assign counters to %s: %s", o->ifaces[i], strerror(-slot));
			ret = slot;
			break;
		}
		ret = attach_iface(cli.pin_dir, dp->egress_prog_fd, dp->ingress_prog_fd, o->ifaces[i],
				   &kind, &ingress_kind);
		if (!ret) {
			pr_info("attached to %s egress (%s)", o->ifaces[i], attach_kind_name(kind));
			pr_info("attached to %s ingress (%s)", o->ifaces[i],
				attach_kind_name(ingress_kind));
		}
	}
	close(lock);
	return ret;
}

/* When the next override expires (0: none), read again when overrides.json changes. */
static int64_t next_expiry(void)
{
	struct override_list l;
	int64_t next;

	if (overrides_load(cli.state_dir, &l, false))
		return 0;
	next = overrides_next_expiry(&l);
	overrides_free(&l);
	return next;
}

/*
 * Block until SIGTERM/SIGINT. SIGHUP re-reads the policy in force (the file given here or
 * to the last `sluice policy load`). Each second, check whether an override has expired:
 * overrides are added by other processes, so the expiry is looked up, not remembered.
 */
static void wait_for_signals(const struct datapath *dp)
{
	struct timespec tick = { .tv_sec = 1 };
	sigset_t set;
	int sig;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	for (;;) {
		int64_t expiry;

		sig = sigtimedwait(&set, NULL, &tick);
		if (sig == SIGHUP) {
			pr_info("SIGHUP: reloading the policy in force");
			if (apply_policy(dp, NULL, POLICY_MODE_KEEP))
				pr_warn("reload rejected; the policy in force is unchanged");
			continue;
		}
		if (sig == SIGTERM || sig == SIGINT)
			break;
		expiry = next_expiry();
		if (expiry && expiry <= time(NULL)) {
			pr_info("an override expired: reapplying the policy");
			if (apply_policy(dp, POLICY_IN_FORCE, POLICY_MODE_KEEP))
				pr_warn("reapplying failed; the expired override stays until it succeeds");
		}
	}
	pr_info("exiting on %s; enforcement stays in force (sluice detach removes it)",
		strsignal(sig));
}

int cmd_run(int argc, char **argv)
{
	struct run_opts o = {};
	struct datapath dp;
	int ret, daemon_lock, other_pid = 0;
	char err[POLICY_ERROR_MAX];
	struct policy check;

	ret = parse_run_options(argc, argv, &o);
	if (ret)
		return ret == -1 ? EXIT_OK : ret;
	if (cli_require_privileges("run"))
		return EXIT_FAIL;

	/* Check all input before anything in the kernel changes. */
	if (policy_parse_file(o.policy_path, &check, err)) {
		pr_err("%s", err);
		return EXIT_FAIL;
	}
	policy_free(&check);
	for (int i = 0; i < o.nifaces; i++) {
		if (!if_nametoindex(o.ifaces[i])) {
			pr_err("no such interface: %s", o.ifaces[i]);
			return EXIT_FAIL;
		}
	}

	daemon_lock = state_lock_daemon(cli.state_dir, &other_pid);
	if (daemon_lock == -EBUSY) {
		pr_err("another 'sluice run' (pid %d) is using state directory %s", other_pid,
		       cli.state_dir);
		return EXIT_FAIL;
	}
	if (daemon_lock < 0)
		return EXIT_FAIL;

	ret = pins_prepare(cli.pin_dir);
	if (!ret)
		ret = datapath_load(&dp, cli.pin_dir);
	if (ret) {
		close(daemon_lock);
		return EXIT_FAIL;
	}
	/* Policy before attach: a fresh datapath must never run without one. */
	ret = apply_policy(&dp, o.policy_path, o.mode >= 0 ? o.mode : POLICY_MODE_FILE);
	if (!ret)
		ret = attach_all(&dp, &o);
	if (ret) {
		datapath_close(&dp);
		close(daemon_lock);
		return EXIT_FAIL;
	}
	pr_info("ready: enforcing on %d interface(s)", o.nifaces);
	wait_for_signals(&dp);
	datapath_close(&dp);
	close(daemon_lock);
	return EXIT_OK;
}

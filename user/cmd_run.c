// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * sluice run: validate everything first, then load, install the policy, attach, and wait.
 * Nothing in force changes until all input has been checked.
 */
#include <errno.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "attach.h"
#include "cli.h"
#include "config.h"
#include "datapath.h"
#include "ifslots.h"
#include "log.h"
#include "pins.h"
#include "policy.h"
#include "policy_kernel.h"
#include "policy_apply.h"
#include "state.h"

/* The command line's settings, laid over the configuration file's (flags win). */
struct run_opts {
	struct daemon_config flags;
};

enum { OPT_IFACE = OPT_COMMAND_BASE, OPT_XDP, OPT_POLICY, OPT_MODE, OPT_METRICS, OPT_EVENTS };

static const struct option run_options[] = {
	{ "iface", required_argument, NULL, OPT_IFACE },
	{ "xdp", required_argument, NULL, OPT_XDP },
	{ "policy", required_argument, NULL, OPT_POLICY },
	{ "mode", required_argument, NULL, OPT_MODE },
	{ "metrics", required_argument, NULL, OPT_METRICS },
	{ "events", required_argument, NULL, OPT_EVENTS },
	CLI_COMMON_OPTIONS,
};

static const struct {
	int opt;
	enum config_key key;
	const char *flag;
} run_flags[] = {
	{ OPT_IFACE, CONFIG_INTERFACE, "--iface" },   { OPT_XDP, CONFIG_XDP, "--xdp" },
	{ OPT_POLICY, CONFIG_POLICY, "--policy" },    { OPT_MODE, CONFIG_MODE, "--mode" },
	{ OPT_METRICS, CONFIG_METRICS, "--metrics" }, { OPT_EVENTS, CONFIG_EVENTS, "--events" },
};

/* A flag's value is checked exactly as the same key in the configuration file. */
static int run_option(int opt, const char *arg, void *ctx)
{
	struct run_opts *o = ctx;
	char err[CONFIG_ERROR_MAX];

	for (size_t i = 0; i < sizeof(run_flags) / sizeof(run_flags[0]); i++) {
		if (run_flags[i].opt != opt)
			continue;
		if (config_set_flag(&o->flags, run_flags[i].key, run_flags[i].flag, arg, err))
			return cli_usage_error("run", "%s", err);
		return 0;
	}
	return EXIT_USAGE;
}

/* The configuration in force: the file (read by the option loop) with the flags over it. */
static int parse_run_options(int argc, char **argv, struct run_opts *o, struct daemon_config *cfg)
{
	int ret;

	config_init(&o->flags);
	ret = cli_parse_options("run", argc, argv, run_options, run_option, o);
	if (ret)
		return ret;
	if (optind < argc)
		return cli_usage_error("run", "unexpected argument '%s'", argv[optind]);
	*cfg = *cli.config;
	config_overlay(cfg, &o->flags);
	if (cfg->ifaces.n == 0)
		return cli_usage_error("run", "no interface to enforce on: give --iface IF, or "
					      "'interface' lines in %s",
				       cfg->file[0] ? cfg->file : CONFIG_PATH_DEFAULT);
	return 0;
}

/* The names of the interfaces present, for config_check. *names is malloc'd. */
static int interface_names(struct if_nameindex **ifs, const char ***names, size_t *n)
{
	*n = 0;
	*names = NULL;
	*ifs = if_nameindex();
	if (!*ifs)
		return -errno;
	while ((*ifs)[*n].if_index)
		(*n)++;
	*names = calloc(*n + 1, sizeof(**names));
	if (!*names) {
		if_freenameindex(*ifs);
		return -ENOMEM;
	}
	for (size_t i = 0; i < *n; i++)
		(*names)[i] = (*ifs)[i].if_name;
	return 0;
}

/* Hold the configuration against the system and parse its policy; log what is wrong. */
static int check_config(const struct daemon_config *cfg)
{
	char err[CONFIG_ERROR_MAX], perr[POLICY_ERROR_MAX];
	struct if_nameindex *ifs;
	const char **names;
	struct policy check;
	size_t n;
	int ret;

	ret = interface_names(&ifs, &names, &n);
	if (ret) {
		pr_err("cannot list interfaces: %s", strerror(-ret));
		return ret;
	}
	ret = config_check(cfg, names, n, err);
	free(names);
	if_freenameindex(ifs);
	if (ret) {
		pr_err("%s", err);
		return ret;
	}
	ret = policy_parse_file(cfg->policy.text, &check, perr);
	if (ret) {
		pr_err("%s", perr);
		return ret;
	}
	policy_free(&check);
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

/* Attach to every interface the configuration names or whose name matches a pattern. */
static int attach_all(const struct datapath *dp, const struct daemon_config *cfg, int *count)
{
	int lock = state_lock_writers(cli.state_dir), ret = 0;
	struct if_nameindex *ifs;

	*count = 0;
	if (lock < 0)
		return lock;
	ifs = if_nameindex();
	if (!ifs) {
		ret = -errno;
		pr_err("cannot list interfaces: %s", strerror(-ret));
	}
	for (struct if_nameindex *i = ifs; i && i->if_index && !ret; i++) {
		enum attach_kind kind;
		int slot;

		if (!config_match(&cfg->ifaces, i->if_name))
			continue;
		slot = ifslot_assign(dp->ifaces_fd, dp->totals_fd, i->if_index);
		if (slot < 0) {
			pr_err("cannot assign counters to %s: %s", i->if_name, strerror(-slot));
			ret = slot;
			break;
		}
		ret = attach_egress(cli.pin_dir, dp->egress_prog_fd, i->if_name, &kind);
		if (!ret) {
			pr_info("attached to %s egress (%s)", i->if_name, attach_kind_name(kind));
			(*count)++;
		}
	}
	if (ifs)
		if_freenameindex(ifs);
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

/* Say what the configuration asks for that this release does not do yet. */
static void note_unsupported(const struct daemon_config *cfg)
{
	char where[CONFIG_PATH_MAX + 32];

	for (size_t i = 0; i < cfg->xdp.n; i++)
		pr_warn("%s: xdp %s is configured, but this release has no XDP hook: forwarded "
			"traffic through it is NOT policed",
			config_where(cfg, &cfg->xdp.items[i], where, sizeof(where)),
			cfg->xdp.items[i].text);
	pr_info("metrics %s, events %s: recorded; this release serves neither yet",
		cfg->metrics.text, cfg->events.items[0].text);
}

int cmd_run(int argc, char **argv)
{
	struct daemon_config cfg;
	struct run_opts o;
	struct datapath dp;
	int ret, daemon_lock, other_pid = 0, attached;

	ret = parse_run_options(argc, argv, &o, &cfg);
	if (ret)
		return ret == -1 ? EXIT_OK : ret;
	if (cli_require_privileges("run"))
		return EXIT_FAIL;

	/* Check all input before anything in the kernel changes. */
	if (check_config(&cfg))
		return EXIT_FAIL;
	note_unsupported(&cfg);

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
	ret = apply_policy(&dp, cfg.policy.text, cfg.mode >= 0 ? cfg.mode : POLICY_MODE_FILE);
	if (!ret)
		ret = attach_all(&dp, &cfg, &attached);
	if (ret) {
		datapath_close(&dp);
		close(daemon_lock);
		return EXIT_FAIL;
	}
	pr_info("ready: enforcing on %d interface(s)", attached);
	wait_for_signals(&dp);
	datapath_close(&dp);
	close(daemon_lock);
	return EXIT_OK;
}

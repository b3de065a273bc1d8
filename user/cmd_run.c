// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * sluice run, the daemon: check the configuration and the policy, then load, install the
 * policy, attach, and serve. Nothing in force changes until all input has been checked.
 * Serving is one poll loop over three event sources: signals (SIGHUP reloads, SIGTERM and
 * SIGINT exit with enforcement left in force), rtnetlink link notifications (interfaces
 * appearing, going, renamed: user/ifaces.c), and a one-second tick (expired overrides,
 * attach retries, health).
 */
#include <errno.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/signalfd.h>
#include <linux/capability.h>

#include "attach.h"
#include "cli.h"
#include "config.h"
#include "datapath.h"
#include "health.h"
#include "ifaces.h"
#include "log.h"
#include "netlink.h"
#include "notify.h"
#include "pins.h"
#include "policy.h"
#include "policy_kernel.h"
#include "policy_apply.h"
#include "state.h"

#ifndef CAP_PERFMON
#define CAP_PERFMON 38 /* Linux 5.8; older uapi headers lack it */
#endif

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

/* What the running daemon holds. */
struct daemon {
	struct datapath dp;
	struct daemon_config cfg; /* in force: the file with the flags over it */
	const struct daemon_config *flags;
	struct iface_set ifaces;
	int sig_fd;
	int nl_fd; /* link notifications: interfaces appearing, going, renamed */
	time_t started;
	json_t *degraded; /* the conditions last logged */
	char *status;     /* status.json as last written */
};

/*
 * Assess health after anything that may change it: log each degraded condition as it
 * appears (loudly) and as it clears, and record for `sluice status` what only the daemon
 * knows (its configuration with the flags over it, attach errors). Written when changed.
 */
static void report(struct daemon *d)
{
	json_t *config = health_config_json(&d->cfg), *errors = ifaces_errors_json(&d->ifaces);
	json_t *health, *doc;
	struct attachment *att = NULL;
	char stamp[32], *text;
	size_t natt = 0;
	int err = attach_list(cli.pin_dir, &att, &natt);

	if (err)
		pr_warn("cannot list the attachments under %s: %s", cli.pin_dir, strerror(-err));
	health = health_assess(config, errors, att, natt);
	free(att);
	health_log_changes(d->degraded, json_object_get(health, "degraded"));
	json_decref(d->degraded);
	d->degraded = json_incref(json_object_get(health, "degraded"));
	json_decref(health);

	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", gmtime(&d->started));
	doc = json_pack("{s:i,s:s,s:I,s:o,s:o}", "pid", (int)getpid(), "started_at", stamp,
			"started_at_unix", (json_int_t)d->started, "config", config, "errors",
			errors);
	text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(doc);
	if (text && (!d->status || strcmp(text, d->status) != 0) &&
	    state_write_file(cli.state_dir, STATE_STATUS, text, strlen(text)) == 0) {
		free(d->status);
		d->status = text;
		text = NULL;
	}
	free(text);
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

/* A directory cannot move under a running daemon: its pins and locks are in use. */
static int same_dir(const struct daemon_config *cfg, const struct config_value *v,
		    const char *in_use, bool given, const char *key)
{
	char where[CONFIG_PATH_MAX + 32];

	if (given || strcmp(v->text, in_use) == 0)
		return 0;
	pr_err("%s: %s cannot change while sluice runs (%s in use, %s asked): restart sluice",
	       config_where(cfg, v, where, sizeof(where)), key, in_use, v->text);
	return -EBUSY;
}

/*
 * SIGHUP: read the configuration file again (the flags still lie over it) and re-apply the
 * policy: the policy in force re-read from its source, or the file's `policy` when that
 * line changed. Everything is checked first; if anything is wrong, nothing changes.
 * Interfaces then follow the new configuration.
 */
static void reload(struct daemon *d)
{
	struct daemon_config *cfg = malloc(sizeof(*cfg));
	char err[CONFIG_ERROR_MAX];
	const char *path = NULL;
	int mode = POLICY_MODE_KEEP;

	pr_info("SIGHUP: reloading the configuration and the policy");
	notify_service_manager("RELOADING=1");
	if (!cfg) {
		pr_err("reload: out of memory");
		goto rejected;
	}
	if (cli_read_config_file(cfg, err)) {
		pr_err("%s", err);
		goto rejected;
	}
	config_overlay(cfg, d->flags);
	if (cfg->ifaces.n == 0) {
		pr_err("%s: no interface line left: sluice would enforce nowhere",
		       cfg->file[0] ? cfg->file : CONFIG_PATH_DEFAULT);
		goto rejected;
	}
	if (same_dir(cfg, &cfg->pin_dir, cli.pin_dir, cli.pin_dir_given, "pin-dir") ||
	    same_dir(cfg, &cfg->state_dir, cli.state_dir, cli.state_dir_given, "state-dir") ||
	    check_config(cfg))
		goto rejected;
	if (strcmp(cfg->policy.text, d->cfg.policy.text) != 0)
		path = cfg->policy.text;
	if (cfg->mode != d->cfg.mode)
		mode = cfg->mode >= 0 ? cfg->mode : POLICY_MODE_FILE;
	if (apply_policy(&d->dp, path, mode))
		goto rejected;
	d->cfg = *cfg;
	free(cfg);
	note_unsupported(&d->cfg);
	ifaces_reconcile(&d->ifaces, &d->cfg, &d->dp, cli.pin_dir, cli.state_dir, true);
	report(d);
	pr_info("reloaded");
	notify_service_manager("READY=1\nSTATUS=reloaded");
	return;
rejected:
	free(cfg);
	pr_warn("reload rejected: the configuration and the policy in force are unchanged");
	notify_service_manager("READY=1\nSTATUS=reload rejected; the previous configuration "
			       "is in force");
}

/* Every second: expired overrides, interfaces due for another attach attempt. */
static void tick(struct daemon *d)
{
	int64_t expiry = next_expiry();

	if (expiry && expiry <= time(NULL)) {
		pr_info("an override expired: reapplying the policy");
		if (apply_policy(&d->dp, POLICY_IN_FORCE, POLICY_MODE_KEEP))
			pr_warn("reapplying failed; the expired override stays until it succeeds");
	}
	if (ifaces_retry_due(&d->ifaces, time(NULL)))
		ifaces_reconcile(&d->ifaces, &d->cfg, &d->dp, cli.pin_dir, cli.state_dir, false);
	/* An attachment can also go away behind the daemon's back (sluice detach --iface). */
	report(d);
}

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Interfaces changed: attach to what now matches, release what is gone. */
static void links_changed(struct daemon *d)
{
	int ret = nl_link_drain(d->nl_fd);

	if (ret < 0) {
		pr_err("netlink: %s", strerror(-ret));
		return;
	}
	if (ret == 0)
		return;
	ifaces_reconcile(&d->ifaces, &d->cfg, &d->dp, cli.pin_dir, cli.state_dir, false);
	report(d);
}

/*
 * Serve until SIGTERM/SIGINT: SIGHUP reloads, link notifications re-check the interfaces,
 * and once a second, tick(). Overrides are added by other processes, so their expiry is
 * looked up, not remembered.
 */
static void serve(struct daemon *d)
{
	struct pollfd pfd[] = { { .fd = d->sig_fd, .events = POLLIN },
				{ .fd = d->nl_fd, .events = POLLIN } };
	double next_tick = now_seconds() + 1;

	for (;;) {
		struct signalfd_siginfo si;
		double wait = next_tick - now_seconds();
		int n = poll(pfd, 2, wait > 0 ? (int)(wait * 1000) + 1 : 0);

		if (n < 0 && errno != EINTR) {
			pr_err("poll: %s", strerror(errno));
			sleep(1); /* keep the loop from spinning on a persistent error */
		}
		while (n > 0 && read(d->sig_fd, &si, sizeof(si)) == sizeof(si)) {
			if (si.ssi_signo == SIGHUP) {
				reload(d);
				continue;
			}
			pr_info("exiting on %s; enforcement stays in force (sluice detach removes "
				"it)",
				strsignal(si.ssi_signo));
			notify_service_manager("STOPPING=1");
			return;
		}
		if (n > 0 && (pfd[1].revents & (POLLIN | POLLERR)))
			links_changed(d);
		if (now_seconds() >= next_tick) {
			tick(d);
			next_tick = now_seconds() + 1;
		}
	}
}

/*
 * Take SIGHUP, SIGTERM and SIGINT as events from the start: a SIGHUP during start-up must
 * not kill the daemon (its default action), and a SIGTERM waits until start-up is whole.
 */
static int signals_open(void)
{
	sigset_t set;
	int fd;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -errno;
	fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int cmd_run(int argc, char **argv)
{
	static struct daemon d;
	static struct run_opts o;
	int ret, daemon_lock, other_pid = 0;

	ret = parse_run_options(argc, argv, &o, &d.cfg);
	if (ret)
		return ret == -1 ? EXIT_OK : ret;
	d.flags = &o.flags;
	if (cli_require_privileges("run"))
		return EXIT_FAIL;
	/* Without it the verifier refuses sluice's programs with a bare EPERM: say why first. */
	if (!cli_has_capability(CAP_PERFMON) && !cli_has_capability(CAP_SYS_ADMIN)) {
		pr_err("'sluice run' loads BPF programs and needs CAP_PERFMON too (the verifier "
		       "refuses them without it)");
		return EXIT_FAIL;
	}
	d.sig_fd = signals_open();
	if (d.sig_fd < 0) {
		pr_err("cannot set up signal handling: %s", strerror(-d.sig_fd));
		return EXIT_FAIL;
	}

	/* Check all input before anything in the kernel changes. */
	if (check_config(&d.cfg))
		return EXIT_FAIL;
	note_unsupported(&d.cfg);

	daemon_lock = state_lock_daemon(cli.state_dir, &other_pid);
	if (daemon_lock == -EBUSY) {
		pr_err("another 'sluice run' (pid %d) is using state directory %s", other_pid,
		       cli.state_dir);
		return EXIT_FAIL;
	}
	if (daemon_lock < 0)
		return EXIT_FAIL;

	/* Subscribed before the first look at the interfaces, so no change falls between. */
	d.nl_fd = nl_link_open();
	if (d.nl_fd < 0) {
		pr_err("cannot subscribe to link notifications: %s", strerror(-d.nl_fd));
		close(daemon_lock);
		return EXIT_FAIL;
	}
	ret = pins_prepare(cli.pin_dir);
	if (!ret)
		ret = datapath_load(&d.dp, cli.pin_dir);
	if (ret) {
		close(daemon_lock);
		return EXIT_FAIL;
	}
	/* Policy before attach: a fresh datapath must never run without one. */
	ret = apply_policy(&d.dp, d.cfg.policy.text,
			   d.cfg.mode >= 0 ? d.cfg.mode : POLICY_MODE_FILE);
	if (!ret)
		ret = ifaces_reconcile(&d.ifaces, &d.cfg, &d.dp, cli.pin_dir, cli.state_dir, true);
	if (ret) {
		datapath_close(&d.dp);
		close(daemon_lock);
		return EXIT_FAIL;
	}
	d.started = time(NULL);
	report(&d);
	pr_info("ready: enforcing on %zu interface(s)", d.ifaces.n);
	notify_service_manager("READY=1\nSTATUS=enforcing");
	serve(&d);
	datapath_close(&d.dp);
	close(daemon_lock);
	return EXIT_OK;
}

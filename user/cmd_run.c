// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * sluice run, the daemon: check the configuration and the policy, then load, install the
 * policy, attach, and serve. Nothing in force changes until all input has been checked.
 * Serving is one poll loop over its event sources: the event ring buffer and its outputs
 * (first: it must never wait long), signals (SIGHUP reloads, SIGTERM and SIGINT exit with
 * enforcement left in force), rtnetlink link notifications (interfaces appearing, going,
 * renamed: user/ifaces.c), the control socket (commands of other sluice processes), and a
 * one-second tick (expired overrides, attach retries, health, lost events). The exporter
 * serves scrapes on a thread of its own (user/metrics.c).
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
#include "attach_cgroup.h"
#include "attach_cgroup.h"
#include "cli.h"
#include "config.h"
#include "control.h"
#include "datapath.h"
#include "dest_scan.h"
#include "events.h"
#include "health.h"
#include "ifaces.h"
#include "local_addrs.h"
#include "log.h"
#include "metrics.h"
#include "netlink.h"
#include "notify.h"
#include "pins.h"
#include "policy.h"
#include "policy_kernel.h"
#include "policy_apply.h"
#include "rule_counts.h"
#include "state.h"
#include "units.h"
#include "web_config.h"

#ifndef CAP_PERFMON
#define CAP_PERFMON 38 /* Linux 5.8; older uapi headers lack it */
#endif

/* The command line: settings laid over the configuration file's (flags win), and the rest. */
struct run_opts {
	struct daemon_config flags;
	unsigned top_n;
	uint64_t event_interval_ns; /* 0: the default */
};

enum {
	OPT_IFACE = OPT_COMMAND_BASE,
	OPT_XDP,
	OPT_POLICY,
	OPT_MODE,
	OPT_METRICS,
	OPT_EVENTS,
	OPT_WEB_CONFIG,
	OPT_CONNECT_HOOKS,
	OPT_TOP,
	OPT_EVENT_INTERVAL,
};

static const struct option run_options[] = {
	{ "iface", required_argument, NULL, OPT_IFACE },
	{ "xdp", required_argument, NULL, OPT_XDP },
	{ "policy", required_argument, NULL, OPT_POLICY },
	{ "mode", required_argument, NULL, OPT_MODE },
	{ "metrics", required_argument, NULL, OPT_METRICS },
	{ "events", required_argument, NULL, OPT_EVENTS },
	{ "web-config", required_argument, NULL, OPT_WEB_CONFIG },
	{ "connect-hooks", optional_argument, NULL, OPT_CONNECT_HOOKS },
	{ "top-destinations", required_argument, NULL, OPT_TOP },
	{ "event-interval", required_argument, NULL, OPT_EVENT_INTERVAL },
	CLI_COMMON_OPTIONS,
};

/* Flags that are keys of the configuration file. */
static const struct {
	int opt;
	enum config_key key;
	const char *flag;
} run_flags[] = {
	{ OPT_IFACE, CONFIG_INTERFACE, "--iface" },   { OPT_XDP, CONFIG_XDP, "--xdp" },
	{ OPT_POLICY, CONFIG_POLICY, "--policy" },    { OPT_MODE, CONFIG_MODE, "--mode" },
	{ OPT_METRICS, CONFIG_METRICS, "--metrics" }, { OPT_EVENTS, CONFIG_EVENTS, "--events" },
	{ OPT_WEB_CONFIG, CONFIG_WEB_CONFIG, "--web-config" },
	{ OPT_CONNECT_HOOKS, CONFIG_CONNECT_HOOKS, "--connect-hooks" },
};

/* A flag's value is checked exactly as the same key in the configuration file. */
static int run_option(int opt, const char *arg, void *ctx)
{
	struct run_opts *o = ctx;
	char err[CONFIG_ERROR_MAX];

	for (size_t i = 0; i < sizeof(run_flags) / sizeof(run_flags[0]); i++) {
		if (run_flags[i].opt != opt)
			continue;
		/* --connect-hooks without a value: the root cgroup, every process on the node. */
		if (!arg && opt == OPT_CONNECT_HOOKS)
			arg = CONNECT_HOOKS_CGROUP_DEFAULT;
		if (config_set_flag(&o->flags, run_flags[i].key, run_flags[i].flag, arg, err))
			return cli_usage_error("run", "%s", err);
		return 0;
	}
	switch (opt) {
	case OPT_TOP: {
		char *end;
		unsigned long n;

		errno = 0;
		n = strtoul(arg, &end, 10);
		if (errno || *end || end == arg || arg[0] == '-' || n > METRICS_TOP_MAX)
			return cli_usage_error("run", "--top-destinations must be 0..%d, not '%s'",
					       METRICS_TOP_MAX, arg);
		o->top_n = n;
		return 0;
	}
	case OPT_EVENT_INTERVAL: {
		uint64_t secs;

		if (parse_duration(arg, &secs) || secs > 3600)
			return cli_usage_error("run", "--event-interval must be a duration from 1s "
					       "to 1h, not '%s'", arg);
		o->event_interval_ns = secs * 1000000000ull;
		return 0;
	}
	}
	return EXIT_USAGE;
}

/* Is there anything to enforce on? */
static bool has_hooks(const struct daemon_config *cfg)
{
	return cfg->ifaces.n > 0 || cfg->xdp.n > 0;
}

/* The configuration in force: the file (read by the option loop) with the flags over it. */
static int parse_run_options(int argc, char **argv, struct run_opts *o, struct daemon_config *cfg)
{
	int ret;

	config_init(&o->flags);
	o->top_n = METRICS_TOP_DEFAULT;
	ret = cli_parse_options("run", argc, argv, run_options, run_option, o);
	if (ret)
		return ret;
	if (optind < argc)
		return cli_usage_error("run", "unexpected argument '%s'", argv[optind]);
	*cfg = *cli.config;
	config_overlay(cfg, &o->flags);
	if (!has_hooks(cfg))
		return cli_usage_error("run", "nothing to enforce on: give --iface IF or --xdp IF, "
					      "or 'interface'/'xdp' lines in %s",
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
	if (cfg->connect_hooks.text[0] && connect_hooks_check_cgroup(cfg->connect_hooks.text))
		return -EINVAL;
	ret = policy_parse_file(cfg->policy.text, &check, perr);
	if (ret) {
		pr_err("%s", perr);
		return ret;
	}
	policy_free(&check);
	return 0;
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
	struct policy_maps maps;
	struct policy_live live;         /* the policy in force, for overrides applied in place */
	struct metrics_policy published; /* what scrapes report about it */
	char *names[SLUICE_RULE_COUNTERS]; /* rule names of the install in force, by rule id */
	size_t nnames;
	char *budget_names[SLUICE_BUDGET_MAX]; /* budget names of the install in force, by index */
	size_t nbudget_names;
	struct events *events;           /* NULL with --events off */
	struct events_stats event_stats;
	struct config_list event_outputs; /* as started: the outputs hold pointers into it */
	struct web_config web;           /* the exporter's TLS and basic auth, as started */
	bool subscribe_follow;           /* of the `sluice events` request being answered */
	struct daemon_config cfg;        /* in force: the file with the flags over it */
	const struct daemon_config *flags;
	struct iface_set ifaces;
	int sig_fd;
	int nl_fd; /* link notifications: interfaces appearing, going, renamed */
	int ctl_fd;
	time_t started;
	json_t *degraded; /* the conditions last logged */
	char *status;     /* status.json as last written */
};

/* Tell the exporter what is in force now (ok), or count a rejected change. */
static void publish(struct daemon *d, const struct apply_result *res, bool ok)
{
	pthread_mutex_lock(&d->published.lock);
	if (ok) {
		d->published.generation = res->generation;
		d->published.loaded_at = time(NULL);
		d->published.rules = res->rules;
		d->published.prefixes = res->prefixes;
		d->published.port_entries = res->port_entries;
	} else {
		d->published.errors++;
	}
	pthread_mutex_unlock(&d->published.lock);
}

/* The active install's epoch (SLUICE_POLICY_F_EPOCH or 0); -1 when none is installed. */
static int active_epoch(const struct daemon *d)
{
	__u32 generation;
	__u8 flags;

	if (read_policy_state(d->maps.policy_fd, d->maps.config_fd, &generation, &flags))
		return -1;
	return flags & SLUICE_POLICY_F_EPOCH;
}

/* The old half's budget crossings by the old budget names (in the packets field). */
static int read_budget_crossings(struct daemon *d, int old_epoch, struct rule_counts *old)
{
	int err = 0;

	for (size_t i = 0; i < d->nbudget_names && !err; i++)
		err = rule_counts_add(old, d->budget_names[i],
				      budget_crossed_read(d->dp.budget.crossed_fd, old_epoch, i), 0);
	return err;
}

/*
 * After a change: a full install renumbers rules and budgets and counts in the other half of
 * the per-rule counters and budget crossings, so fold the old half into the daemon's counts
 * by the old names (no packet uses it once the install returned). Then remember the names
 * now in force.
 */
static void after_change(struct daemon *d, int old_epoch, bool in_place)
{
	int now = active_epoch(d);

	if (old_epoch >= 0 && now >= 0 && now != old_epoch) {
		struct rule_counts old = {}, old_budgets = {};
		bool rules = rule_counts_read(&old, d->maps.rules_fd, old_epoch, d->names,
					      d->nnames) == 0;
		bool budgets = read_budget_crossings(d, old_epoch, &old_budgets) == 0;

		pthread_mutex_lock(&d->published.lock);
		if (rules && rule_counts_merge(&d->published.folded, &old))
			pr_warn("per-rule counts of the previous policy could not all be kept");
		if (!budgets || rule_counts_merge(&d->published.budgets_folded, &old_budgets))
			pr_warn("budget crossings of the previous policy could not all be kept");
		pthread_mutex_unlock(&d->published.lock);
		rule_counts_free(&old);
		rule_counts_free(&old_budgets);
	}
	/*
	 * Only the names that differ: an override changed in place renames one or two of
	 * 100 000 (never one of the base policy's), and copying them all again was most of
	 * that change's time in the daemon.
	 */
	size_t n = d->live.valid ? d->live.p.nidents : 0;
	size_t from = in_place && d->live.valid ? d->live.base_idents : 0;

	if (n > SLUICE_RULE_COUNTERS)
		n = SLUICE_RULE_COUNTERS;
	while (d->nnames > n)
		free(d->names[--d->nnames]);
	for (size_t i = from < d->nnames ? from : d->nnames; i < n; i++) {
		const char *name = d->live.p.idents[i].name;

		if (i < d->nnames && strcmp(d->names[i], name) == 0)
			continue;
		char *copy = strdup(name);

		if (!copy) {
			while (d->nnames > i)
				free(d->names[--d->nnames]);
			break;
		}
		if (i < d->nnames)
			free(d->names[i]);
		d->names[i] = copy;
		if (i == d->nnames)
			d->nnames++;
	}
	for (size_t i = 0; i < d->nbudget_names; i++)
		free(d->budget_names[i]);
	d->nbudget_names = 0;
	for (size_t i = 0; d->live.valid && i < d->live.p.nbudgets && i < SLUICE_BUDGET_MAX; i++) {
		d->budget_names[i] = strdup(d->live.p.budgets[i].name);
		if (!d->budget_names[i])
			break;
		d->nbudget_names++;
	}
}

/*
 * Install the policy (and overrides); on any error the policy in force stays. path: a file,
 * or NULL for the policy in force re-read from its source.
 */
static int apply_policy(struct daemon *d, const char *path, int mode, struct apply_result *res)
{
	int old_epoch = active_epoch(d);
	int ret = policy_live_load(&d->live, cli.state_dir, &d->maps, path, mode, res);

	events_policy(d->events, ret == 0, NULL);
	if (!ret)
		after_change(d, old_epoch, false);
	publish(d, res, ret == 0);
	if (!ret)
		pr_info("policy %s installed: generation %u, %zu rules, %zu overrides", res->source,
			res->generation, res->rules, res->overrides);
	return ret;
}

/* Bring the kernel to the stored overrides (a command changed them, or one expired). */
static int sync_overrides(struct daemon *d, struct apply_result *res)
{
	int old_epoch = active_epoch(d);
	int ret = policy_live_sync_overrides(&d->live, cli.state_dir, &d->maps, res);
	/* A full install (live was stale) changed everything, rule ids and names included. */
	bool changed = !ret && (res->changed || !res->in_place);

	if (changed)
		after_change(d, old_epoch, res->in_place);
	if (ret || changed) {
		publish(d, res, ret == 0);
		events_policy(d->events, ret == 0, res->in_place ? &d->live.p : NULL);
	}
	if (changed && res->in_place)
		pr_info("overrides in force as generation %u (%zu overrides, %zu prefixes changed)",
			res->generation, res->overrides, res->changed);
	return ret;
}

static json_t *handle_control(json_t *request, bool *keep, void *ctx)
{
	const char *command = json_string_value(json_object_get(request, "command"));
	struct daemon *d = ctx;
	struct apply_result res;
	int ret;

	if (command && strcmp(command, "events") == 0) {
		if (!d->events)
			return json_pack("{s:b,s:s}", "ok", 0, "error",
					 "events are off in this daemon (--events off)");
		d->subscribe_follow = json_is_true(json_object_get(request, "follow"));
		*keep = true;
		return json_pack("{s:b}", "ok", 1);
	}
	if (command && strcmp(command, "load") == 0) {
		/* sluice policy load, so the daemon keeps what it needs across the reload. */
		const char *path = json_string_value(json_object_get(request, "path"));

		if (!path || path[0] != '/')
			return json_pack("{s:b,s:s}", "ok", 0, "error", "load needs an absolute path");
		ret = apply_policy(d, path, POLICY_MODE_KEEP, &res);
		if (ret)
			return json_pack("{s:b,s:s}", "ok", 0, "error", policy_install_error(ret));
		return json_pack("{s:b,s:s,s:I,s:I,s:I,s:I}", "ok", 1, "source", res.source,
				 "generation", (json_int_t)res.generation, "rules",
				 (json_int_t)res.rules, "prefixes", (json_int_t)res.prefixes,
				 "overrides", (json_int_t)res.overrides);
	}
	if (!command || strcmp(command, "sync-overrides") != 0)
		return json_pack("{s:b,s:s}", "ok", 0, "error", "unknown command");
	ret = sync_overrides(d, &res);
	if (ret)
		return json_pack("{s:b,s:s}", "ok", 0, "error", policy_install_error(ret));
	return json_pack("{s:b,s:I,s:I,s:I}", "ok", 1, "generation", (json_int_t)res.generation,
			 "overrides", (json_int_t)res.overrides, "changed", (json_int_t)res.changed);
}

/*
 * Assess health after anything that may change it: log each degraded condition as it
 * appears (loudly) and as it clears, and record for `sluice status` what only the daemon
 * knows (its configuration with the flags over it, attach errors). Written when changed.
 */
static void report(struct daemon *d)
{
	json_t *config = health_config_json(&d->cfg), *errors = ifaces_errors_json(&d->ifaces);
	json_t *health, *doc, *connect;
	struct attachment *att = NULL;
	char stamp[32], *text;
	size_t natt = 0;
	int err = attach_list(cli.pin_dir, &att, &natt);

	if (err)
		pr_warn("cannot list the attachments under %s: %s", cli.pin_dir, strerror(-err));
	connect = connect_hooks_json(cli.pin_dir);
	health = health_assess(config, errors, att, natt, connect);
	json_decref(connect);
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

/* A setting read once at start (its socket or files are open): say a change waits. */
static void note_restart_needed(const struct daemon_config *now, const struct daemon_config *was)
{
	bool events_changed = now->events.n != was->events.n;

	for (size_t i = 0; !events_changed && i < now->events.n; i++)
		events_changed = strcmp(now->events.items[i].text, was->events.items[i].text) != 0;
	if (strcmp(now->connect_hooks.text, was->connect_hooks.text) != 0)
		pr_warn("connect-hooks: the hooks stay on %s until sluice restarts",
			was->connect_hooks.text[0] ? was->connect_hooks.text : "no cgroup");
	if (strcmp(now->web_config.text, was->web_config.text) != 0)
		pr_warn("web-config: the exporter's TLS and auth stay as started until sluice "
			"restarts");
	if (strcmp(now->metrics.text, was->metrics.text) != 0)
		pr_warn("metrics: %s stays in force until sluice restarts (%s asked)",
			was->metrics.text, now->metrics.text);
	if (events_changed)
		pr_warn("events: the outputs stay as started until sluice restarts");
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
 * SIGHUP: reopen the event files (logrotate), read the configuration file again (the flags
 * still lie over it) and re-apply the policy: the policy in force re-read from its source,
 * or the file's `policy` when that line changed. Everything is checked first; if anything
 * is wrong, nothing changes. Interfaces then follow the new configuration.
 */
static void reload(struct daemon *d)
{
	struct daemon_config *cfg = malloc(sizeof(*cfg));
	char err[CONFIG_ERROR_MAX];
	const char *path = NULL;
	int mode = POLICY_MODE_KEEP;
	struct apply_result res;

	pr_info("SIGHUP: reopening event files, reloading the configuration and the policy");
	notify_service_manager("RELOADING=1");
	events_reopen(d->events);
	if (!cfg) {
		pr_err("reload: out of memory");
		goto rejected;
	}
	if (cli_read_config_file(cfg, err)) {
		pr_err("%s", err);
		goto rejected;
	}
	config_overlay(cfg, d->flags);
	if (!has_hooks(cfg)) {
		pr_err("%s: no interface or xdp line left: sluice would enforce nowhere",
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
	if (apply_policy(d, path, mode, &res))
		goto rejected;
	note_restart_needed(cfg, &d->cfg);
	d->cfg = *cfg;
	free(cfg);
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

/*
 * Every second: expired overrides (added by other processes, so their expiry is looked up,
 * not remembered), interfaces due for another attach attempt, health, lost events.
 */
static void tick(struct daemon *d)
{
	int64_t expiry = next_expiry();
	struct apply_result res;

	events_tick(d->events);
	if (expiry && expiry <= time(NULL) && sync_overrides(d, &res))
		pr_warn("removing an expired override failed; it stays until that succeeds");
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

/* XDP's set of the node's own addresses, brought to what the interfaces hold now. */
static int sync_local_addrs(struct daemon *d)
{
	int n = local_addrs_sync(d->dp.local_addrs_fd, d->dp.local_gen_fd);

	if (n < 0 && n != -ENOSPC)
		pr_err("cannot record the node's addresses for XDP: %s", strerror(-n));
	else if (n >= 0)
		pr_debug("%d local addresses recorded for XDP", n);
	return n < 0 && n != -ENOSPC ? n : 0;
}

/* Interfaces or addresses changed: attach to what now matches, release what is gone. */
static void links_changed(struct daemon *d)
{
	int ret = nl_link_drain(d->nl_fd);

	if (ret < 0) {
		pr_err("netlink: %s", strerror(-ret));
		return;
	}
	if (ret & NL_ADDRS)
		sync_local_addrs(d);
	if (!(ret & NL_LINKS))
		return;
	ifaces_reconcile(&d->ifaces, &d->cfg, &d->dp, cli.pin_dir, cli.state_dir, false);
	report(d);
}

enum { POLL_SIGNALS, POLL_LINKS, POLL_CONTROL, POLL_EVENTS };

/* Serve until SIGTERM/SIGINT (see the header comment for what is served). */
static void serve(struct daemon *d)
{
	double next_tick = now_seconds() + 1;

	for (;;) {
		struct pollfd pfd[POLL_EVENTS + EVENTS_POLLFDS_MAX] = {
			[POLL_SIGNALS] = { .fd = d->sig_fd, .events = POLLIN },
			[POLL_LINKS] = { .fd = d->nl_fd, .events = POLLIN },
			[POLL_CONTROL] = { .fd = d->ctl_fd, .events = POLLIN },
		};
		int nev = events_pollfds(d->events, pfd + POLL_EVENTS), kept = -1;
		struct signalfd_siginfo si;
		double wait = next_tick - now_seconds();
		int n = poll(pfd, POLL_EVENTS + nev, wait > 0 ? (int)(wait * 1000) + 1 : 0);

		if (n < 0 && errno != EINTR) {
			pr_err("poll: %s", strerror(errno));
			sleep(1); /* keep the loop from spinning on a persistent error */
			continue;
		}
		/* Events first: the ring buffer is what must never wait long. */
		events_process(d->events, pfd + POLL_EVENTS, nev);
		if (pfd[POLL_CONTROL].revents & POLLIN)
			control_serve_one(d->ctl_fd, handle_control, d, &kept);
		if (kept >= 0 && events_subscribe(d->events, kept, d->subscribe_follow)) {
			pr_warn("too many 'sluice events' clients; one refused");
			close(kept);
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
		if (n > 0 && (pfd[POLL_LINKS].revents & (POLLIN | POLLERR)))
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
 * Blocked before any thread starts (the exporter's), so none of them takes these signals.
 */
static int signals_open(void)
{
	sigset_t set;
	int fd;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (pthread_sigmask(SIG_BLOCK, &set, NULL))
		return -EINVAL;
	fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* The event outputs and the exporter's address, from the configuration; checked first. */
static int runtime_settings(struct daemon *d, const struct run_opts *o, struct events_config *ev,
			    struct sockaddr_storage *maddr, socklen_t *mlen, bool *moff)
{
	d->event_outputs = d->cfg.events;
	*ev = (struct events_config){ .interval_ns = o->event_interval_ns };
	for (size_t i = 0; i < d->event_outputs.n; i++) {
		if (events_config_add(ev, d->event_outputs.items[i].text)) {
			pr_err("events: stdout, syslog, a file or off (off alone, each at most "
			       "once, at most %d): '%s'",
			       EVENTS_OUTPUTS_MAX, d->event_outputs.items[i].text);
			return -EINVAL;
		}
	}
	if (metrics_parse_addr(d->cfg.metrics.text, maddr, mlen, moff)) {
		pr_err("metrics must be ADDR:PORT, [ADDR6]:PORT or off, not '%s'",
		       d->cfg.metrics.text);
		return -EINVAL;
	}
	if (d->cfg.web_config.text[0]) {
		char err[WEB_ERROR_MAX];
		int ret = web_config_load(d->cfg.web_config.text, &d->web, err);

		if (ret) {
			pr_err("%s", err);
			return ret;
		}
	}
	return 0;
}

int cmd_run(int argc, char **argv)
{
	static struct daemon d = { .published.lock = PTHREAD_MUTEX_INITIALIZER,
				   .event_stats.lock = PTHREAD_MUTEX_INITIALIZER,
				   .ctl_fd = -1 };
	static struct run_opts o;
	struct metrics_server *metrics = NULL;
	struct metrics_scan scan = {};
	struct sockaddr_storage metrics_addr;
	socklen_t metrics_len;
	bool metrics_off;
	struct events_config ev;
	struct apply_result res;
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
	if (check_config(&d.cfg) ||
	    runtime_settings(&d, &o, &ev, &metrics_addr, &metrics_len, &metrics_off))
		return EXIT_FAIL;

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
	d.maps = datapath_policy_maps(&d.dp);
	/* Events before the policy, so its `policy` event is written too. */
	ret = events_start(&d.events, &d.dp, &ev, &d.event_stats, cli.state_dir);
	/* Policy (and XDP's own addresses) before attach: no program runs without them. */
	if (!ret)
		ret = sync_local_addrs(&d);
	if (!ret)
		ret = apply_policy(&d, d.cfg.policy.text,
				   d.cfg.mode >= 0 ? d.cfg.mode : POLICY_MODE_FILE, &res);
	if (!ret)
		ret = ifaces_reconcile(&d.ifaces, &d.cfg, &d.dp, cli.pin_dir, cli.state_dir, true);
	if (!ret && d.cfg.connect_hooks.text[0]) {
		ret = attach_connect_hooks(cli.pin_dir, d.dp.connect_prog_fds,
					   d.cfg.connect_hooks.text);
		if (!ret)
			pr_info("attached connect hooks to cgroup %s", d.cfg.connect_hooks.text);
	}
	if (!ret && (d.ctl_fd = control_listen(cli.state_dir)) < 0)
		ret = d.ctl_fd;
	if (!ret && !metrics_off) {
		struct metrics_source src = {
			.dests_fd = d.dp.dests_fd, .totals_fd = d.dp.totals_fd,
			.ifaces_fd = d.dp.ifaces_fd, .policy_fd = d.dp.policy_fd,
			.top_n = o.top_n, .config_fd = d.dp.config_fd,
			.rules_fd = d.dp.rules_fd, .state_dir = cli.state_dir,
			.policy = &d.published, .scan = &scan, .events = &d.event_stats,
			.budgets = &d.dp.budget, .users_fd = d.dp.users_fd,
		};

		/* Without the iterator (older kernels), scrapes copy every entry out instead. */
		scan.scan = dest_scan_open(d.dp.dests_fd);
		metrics = metrics_start(&metrics_addr, metrics_len, &src, &d.web);
		if (!metrics)
			ret = -EADDRNOTAVAIL;
	}
	if (!ret) {
		d.started = time(NULL);
		report(&d);
		pr_info("ready: enforcing on %zu interface(s)", d.ifaces.n);
		notify_service_manager("READY=1\nSTATUS=enforcing");
		serve(&d);
	}
	metrics_stop(metrics);
	dest_scan_close(scan.scan);
	control_close(d.ctl_fd, cli.state_dir);
	events_stop(d.events);
	web_config_free(&d.web);
	policy_live_free(&d.live);
	after_change(&d, -1, false); /* frees the names */
	rule_counts_free(&d.published.folded);
	rule_counts_free(&d.published.budgets_folded);
	rule_counts_free(&d.published.rules_shown);
	rule_counts_free(&d.published.budgets_shown);
	datapath_close(&d.dp);
	close(daemon_lock);
	return ret ? EXIT_FAIL : EXIT_OK;
}

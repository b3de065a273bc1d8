// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * sluice run: validate everything first, then load, install the policy, attach, and wait.
 * Nothing in force changes until all input has been checked.
 */
#include <errno.h>
#include <stdlib.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/signalfd.h>

#include "attach.h"
#include "cli.h"
#include "control.h"
#include "datapath.h"
#include "dest_scan.h"
#include "events.h"
#include "ifslots.h"
#include "metrics.h"
#include "output.h"
#include "rule_counts.h"
#include "log.h"
#include "pins.h"
#include "policy.h"
#include "policy_kernel.h"
#include "policy_apply.h"
#include "state.h"
#include "units.h"

#define RUN_MAX_IFACES 64
#define POLICY_DEFAULT "/etc/sluice/policy.conf"

struct run_opts {
	const char *ifaces[RUN_MAX_IFACES];
	int nifaces;
	const char *xdp_ifaces[RUN_MAX_IFACES]; /* gateway mode: XDP on these */
	int nxdp;
	const char *policy_path;
	int mode; /* -1: as the policy says */
	struct sockaddr_storage metrics_addr;
	socklen_t metrics_len;
	bool metrics_off;
	unsigned top_n;
	struct events_config events;
};

enum {
	OPT_IFACE = OPT_COMMAND_BASE,
	OPT_XDP,
	OPT_POLICY,
	OPT_MODE,
	OPT_METRICS,
	OPT_TOP,
	OPT_EVENTS,
	OPT_EVENT_INTERVAL,
};

static const struct option run_options[] = {
	{ "iface", required_argument, NULL, OPT_IFACE },
	{ "xdp", required_argument, NULL, OPT_XDP },
	{ "policy", required_argument, NULL, OPT_POLICY },
	{ "mode", required_argument, NULL, OPT_MODE },
	{ "metrics", required_argument, NULL, OPT_METRICS },
	{ "top-destinations", required_argument, NULL, OPT_TOP },
	{ "events", required_argument, NULL, OPT_EVENTS },
	{ "event-interval", required_argument, NULL, OPT_EVENT_INTERVAL },
	CLI_COMMON_OPTIONS,
};

/* Add an interface name to a list of --iface or --xdp. */
static int add_iface(const char *opt, const char **list, int *n, const char *arg)
{
	if (strlen(arg) == 0 || strlen(arg) >= IFNAMSIZ)
		return cli_usage_error("run", "invalid interface name '%s'", arg);
	if (*n == RUN_MAX_IFACES)
		return cli_usage_error("run", "at most %d interfaces with %s", RUN_MAX_IFACES, opt);
	for (int i = 0; i < *n; i++)
		if (strcmp(list[i], arg) == 0)
			return cli_usage_error("run", "%s %s given twice", opt, arg);
	list[(*n)++] = arg;
	return 0;
}

static int run_option(int opt, const char *arg, void *ctx)
{
	struct run_opts *o = ctx;

	switch (opt) {
	case OPT_IFACE:
		return add_iface("--iface", o->ifaces, &o->nifaces, arg);
	case OPT_XDP:
		return add_iface("--xdp", o->xdp_ifaces, &o->nxdp, arg);
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
	case OPT_METRICS:
		if (metrics_parse_addr(arg, &o->metrics_addr, &o->metrics_len, &o->metrics_off))
			return cli_usage_error("run", "--metrics must be ADDR:PORT, [ADDR6]:PORT or off, "
					       "not '%s'", arg);
		return 0;
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
	case OPT_EVENTS:
		if (events_config_add(&o->events, arg))
			return cli_usage_error("run", "--events takes stdout, syslog, a file or off "
					       "(off alone, each at most once, at most %d): '%s'",
					       EVENTS_OUTPUTS_MAX, arg);
		return 0;
	case OPT_EVENT_INTERVAL: {
		uint64_t secs;

		if (parse_duration(arg, &secs) || secs > 3600)
			return cli_usage_error("run", "--event-interval must be a duration from 1s "
					       "to 1h, not '%s'", arg);
		o->events.interval_ns = secs * 1000000000ull;
		return 0;
	}
	}
	return EXIT_USAGE;
}

static int parse_run_options(int argc, char **argv, struct run_opts *o)
{
	int ret;

	o->policy_path = POLICY_DEFAULT;
	o->mode = -1;
	o->top_n = METRICS_TOP_DEFAULT;
	metrics_parse_addr(METRICS_ADDR_DEFAULT, &o->metrics_addr, &o->metrics_len, &o->metrics_off);
	ret = cli_parse_options("run", argc, argv, run_options, run_option, o);
	if (ret)
		return ret;
	if (optind < argc)
		return cli_usage_error("run", "unexpected argument '%s'", argv[optind]);
	if (o->nifaces == 0 && o->nxdp == 0)
		return cli_usage_error("run", "at least one --iface or --xdp is needed");
	if (o->events.noutputs == 0 && !o->events.off)
		events_config_add(&o->events, "stdout");
	return 0;
}

/* What the daemon keeps between events. */
struct daemon {
	const struct datapath *dp;
	struct policy_maps maps;
	struct policy_live live; /* the policy in force, for overrides applied in place */
	struct metrics_policy published; /* what scrapes report about it */
	char *names[SLUICE_RULE_COUNTERS]; /* rule names of the install in force, by rule id */
	size_t nnames;
	struct events *events;           /* NULL with --events off */
	bool subscribe_follow;           /* of the `sluice events` request being answered */
};

/* Tell the exporter what is in force now (ok), or count a rejected change. */
static void publish(struct daemon *d, const struct apply_result *res, bool ok)
{
	pthread_mutex_lock(&d->published.lock);
	if (ok) {
		d->published.generation = res->generation;
		d->published.loaded_at = time(NULL);
		d->published.rules = res->rules;
		d->published.trie_entries = res->prefixes;
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

/*
 * After a change: a full install renumbers rules and counts in the other half of the
 * per-rule counters, so fold the old half into the daemon's counts by the old names (no
 * packet uses it once the install returned). Then remember the names now in force.
 */
static void after_change(struct daemon *d, int old_epoch)
{
	int now = active_epoch(d);

	if (old_epoch >= 0 && now >= 0 && now != old_epoch) {
		struct rule_counts old = {};

		if (rule_counts_read(&old, d->maps.rules_fd, old_epoch, d->names, d->nnames) == 0) {
			pthread_mutex_lock(&d->published.lock);
			if (rule_counts_merge(&d->published.folded, &old))
				pr_warn("per-rule counts of the previous policy could not all be kept");
			pthread_mutex_unlock(&d->published.lock);
		}
		rule_counts_free(&old);
	}
	for (size_t i = 0; i < d->nnames; i++)
		free(d->names[i]);
	d->nnames = 0;
	for (size_t i = 0; d->live.valid && i < d->live.p.nidents && i < SLUICE_RULE_COUNTERS; i++) {
		d->names[i] = strdup(d->live.p.idents[i].name);
		if (!d->names[i])
			break;
		d->nnames++;
	}
}

/* Install the policy (and overrides); on any error the policy in force stays. */
static int apply_policy(struct daemon *d, const char *path, int mode, struct apply_result *res)
{
	int old_epoch = active_epoch(d);
	int ret = policy_live_load(&d->live, cli.state_dir, &d->maps, path, mode, res);

	events_policy(d->events, ret == 0);
	if (!ret)
		after_change(d, old_epoch);
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

	if (!ret && res->changed)
		after_change(d, old_epoch);
	if (ret || res->changed) {
		publish(d, res, ret == 0);
		events_policy(d->events, ret == 0);
	}
	if (!ret && res->changed)
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
		ret = apply_policy(ctx, path, POLICY_MODE_KEEP, &res);
		if (ret)
			return json_pack("{s:b,s:s}", "ok", 0, "error", strerror(-ret));
		return json_pack("{s:b,s:s,s:I,s:I,s:I,s:I}", "ok", 1, "source", res.source,
				 "generation", (json_int_t)res.generation, "rules",
				 (json_int_t)res.rules, "prefixes", (json_int_t)res.prefixes,
				 "overrides", (json_int_t)res.overrides);
	}
	if (!command || strcmp(command, "sync-overrides") != 0)
		return json_pack("{s:b,s:s}", "ok", 0, "error", "unknown command");
	ret = sync_overrides(ctx, &res);
	if (ret)
		return json_pack("{s:b,s:s}", "ok", 0, "error", strerror(-ret));
	return json_pack("{s:b,s:I,s:I,s:I}", "ok", 1, "generation", (json_int_t)res.generation,
			 "overrides", (json_int_t)res.overrides, "changed", (json_int_t)res.changed);
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
	for (int i = 0; i < o->nxdp && !ret; i++) {
		enum xdp_mode mode;
		int slot = ifslot_assign(dp->ifaces_fd, dp->totals_fd,
					 if_nametoindex(o->xdp_ifaces[i]));

		if (slot < 0) {
			pr_err("cannot assign counters to %s: %s", o->xdp_ifaces[i], strerror(-slot));
			ret = slot;
			break;
		}
		ret = attach_xdp(cli.pin_dir, dp->xdp_prog_fd, o->xdp_ifaces[i], &mode);
		if (!ret)
			pr_info("attached to %s XDP (%s)", o->xdp_ifaces[i], xdp_mode_name(mode));
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

/* The signals the daemon handles: blocked in every thread, read through a signalfd. */
static void daemon_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
}

/*
 * Serve until SIGTERM/SIGINT. SIGHUP re-reads the policy in force (the file given here or to
 * the last `sluice policy load`). Commands reach the daemon on its control socket. Each
 * second, check whether an override has expired (overrides are added by other processes,
 * so the expiry is looked up, not remembered) and report the events the kernel lost. The
 * event ring buffer, its outputs and `sluice events` clients are served in the same loop,
 * never blocking (events.h).
 */
static void serve(struct daemon *d, int ctl)
{
	struct signalfd_siginfo si;
	time_t last_tick = 0;
	sigset_t set;
	int sfd, sig = 0;

	daemon_signals(&set);
	sfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (sfd < 0) {
		pr_err("cannot receive signals: %s", strerror(errno));
		return;
	}
	for (;;) {
		struct pollfd fds[2 + EVENTS_POLLFDS_MAX] = { { .fd = sfd, .events = POLLIN },
							      { .fd = ctl, .events = POLLIN } };
		int nev = events_pollfds(d->events, fds + 2), kept = -1;
		struct apply_result res;
		int64_t expiry;
		time_t now;

		if (poll(fds, 2 + nev, 1000) < 0 && errno != EINTR)
			break;
		/* Events first: the ring buffer is what must never wait long. */
		events_process(d->events, fds + 2, nev);
		if (fds[1].revents & POLLIN)
			control_serve_one(ctl, handle_control, d, &kept);
		if (kept >= 0 && events_subscribe(d->events, kept, d->subscribe_follow)) {
			pr_warn("too many 'sluice events' clients; one refused");
			close(kept);
		}
		if ((fds[0].revents & POLLIN) && read(sfd, &si, sizeof(si)) == sizeof(si)) {
			sig = si.ssi_signo;
			if (sig == SIGTERM || sig == SIGINT)
				break;
			pr_info("SIGHUP: reopening event files, reloading the policy in force");
			events_reopen(d->events);
			if (apply_policy(d, NULL, POLICY_MODE_KEEP, &res))
				pr_warn("reload rejected; the policy in force is unchanged");
		}
		now = time(NULL);
		if (now == last_tick)
			continue;
		last_tick = now;
		events_tick(d->events);
		expiry = next_expiry();
		if (expiry && expiry <= now && sync_overrides(d, &res))
			pr_warn("removing an expired override failed; it stays until that succeeds");
	}
	close(sfd);
	pr_info("exiting on %s; enforcement stays in force (sluice detach removes it)",
		strsignal(sig));
}

int cmd_run(int argc, char **argv)
{
	struct run_opts o = {};
	struct datapath dp;
	struct daemon d = { .published.lock = PTHREAD_MUTEX_INITIALIZER };
	struct events_stats event_stats = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct metrics_server *metrics = NULL;
	struct metrics_scan scan = {};
	struct apply_result res;
	sigset_t sigs;
	int ret, daemon_lock, other_pid = 0, ctl = -1;
	char err[POLICY_ERROR_MAX];
	struct policy check;

	ret = parse_run_options(argc, argv, &o);
	if (ret)
		return ret == -1 ? EXIT_OK : ret;
	if (cli_require_privileges("run"))
		return EXIT_FAIL;
	/* Before any thread starts (the exporter's), so none of them takes these signals. */
	daemon_signals(&sigs);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

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
	for (int i = 0; i < o.nxdp; i++) {
		if (!if_nametoindex(o.xdp_ifaces[i])) {
			pr_err("no such interface: %s", o.xdp_ifaces[i]);
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
	d.dp = &dp;
	d.maps = (struct policy_maps){ .policy_fd = dp.policy_fd, .config_fd = dp.config_fd,
				       .ports_fd = dp.ports_fd, .rules_fd = dp.rules_fd,
				       .budgets = &dp.budget };
	/* Events before the policy, so its `policy` event is written too. */
	ret = events_start(&d.events, &dp, &o.events, &event_stats, cli.state_dir);
	if (!ret)
		ret = apply_policy(&d, o.policy_path, o.mode >= 0 ? o.mode : POLICY_MODE_FILE, &res);
	if (!ret)
		ret = attach_all(&dp, &o);
	if (!ret && (ctl = control_listen(cli.state_dir)) < 0)
		ret = ctl;
	if (!ret && !o.metrics_off) {
		struct metrics_source src = {
			.dests_fd = dp.dests_fd, .totals_fd = dp.totals_fd, .ifaces_fd = dp.ifaces_fd,
			.policy_fd = dp.policy_fd, .ports_fd = dp.ports_fd, .top_n = o.top_n,
			.config_fd = dp.config_fd, .rules_fd = dp.rules_fd, .state_dir = cli.state_dir,
			.policy = &d.published, .scan = &scan, .events = &event_stats,
			.budgets = &dp.budget, .users_fd = dp.users_fd,
		};

		/* Without the iterator (older kernels), scrapes copy every entry out instead. */
		scan.scan = dest_scan_open(dp.dests_fd);

		metrics = metrics_start(&o.metrics_addr, o.metrics_len, &src);
		if (!metrics)
			ret = -EADDRNOTAVAIL;
	}
	if (ret) {
		metrics_stop(metrics);
		dest_scan_close(scan.scan);
		control_close(ctl, cli.state_dir);
		events_stop(d.events);
		policy_live_free(&d.live);
		datapath_close(&dp);
		close(daemon_lock);
		return EXIT_FAIL;
	}
	pr_info("ready: enforcing on %d interface(s), XDP on %d", o.nifaces, o.nxdp);
	serve(&d, ctl);
	metrics_stop(metrics);
	dest_scan_close(scan.scan);
	control_close(ctl, cli.state_dir);
	events_stop(d.events);
	policy_live_free(&d.live);
	after_change(&d, -1); /* frees the names */
	rule_counts_free(&d.published.folded);
	datapath_close(&dp);
	close(daemon_lock);
	return EXIT_OK;
}

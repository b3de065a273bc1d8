// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * sluice top: a live view of what is leaving, refreshed every interval: node rates by
 * verdict, and the destinations sending the most bytes per second with their verdicts.
 * Rates are the difference of two reads of the pinned counters, so the first view comes
 * one interval after the start. Memory: one remembered counter per destination the table
 * holds (bounded by its capacity), whatever the traffic.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>

#include "addr.h"
#include "cli.h"
#include "datapath.h"
#include "output.h"
#include "policy.h"

#define TOP_DEFAULT 20
#define INTERVAL_MAX_S 3600

enum { OPT_TOP = OPT_COMMAND_BASE, OPT_INTERVAL, OPT_ITERATIONS };

static const struct option top_options[] = {
	{ "top", required_argument, NULL, OPT_TOP },
	{ "interval", required_argument, NULL, OPT_INTERVAL },
	{ "iterations", required_argument, NULL, OPT_ITERATIONS },
	CLI_COMMON_OPTIONS,
};

struct top_opts {
	long top, interval, iterations; /* iterations 0: until interrupted */
};

static int top_option(int opt, const char *arg, void *ctx)
{
	struct top_opts *o = ctx;
	long *dst = opt == OPT_TOP ? &o->top : opt == OPT_INTERVAL ? &o->interval : &o->iterations;
	long min = opt == OPT_INTERVAL ? 1 : 0, max = opt == OPT_INTERVAL ? INTERVAL_MAX_S : 1000000;
	char *end;

	if (opt != OPT_TOP && opt != OPT_INTERVAL && opt != OPT_ITERATIONS)
		return EXIT_USAGE;
	errno = 0;
	*dst = strtol(arg, &end, 10);
	if (*arg == '\0' || *end || errno || *dst < min || *dst > max)
		return cli_usage_error("top", "--%s needs a number from %ld to %ld, not '%s'",
				       opt == OPT_TOP ? "top" : opt == OPT_INTERVAL ? "interval"
										 : "iterations",
				       min, max, arg);
	return 0;
}

/* The counters of one destination at the previous read. */
struct seen {
	struct sluice_addr addr;
	__u64 packets, bytes;
	bool used;
};

/* Open addressing, twice the destination table's capacity: never full. */
struct seen_table {
	struct seen *slots;
	size_t cap; /* a power of two */
};

static struct seen *seen_find(struct seen_table *t, const struct sluice_addr *a)
{
	size_t h = 14695981039346656037ull;

	for (int i = 0; i < 16; i++)
		h = (h ^ a->a[i]) * 1099511628211ull;
	for (size_t i = h & (t->cap - 1);; i = (i + 1) & (t->cap - 1))
		if (!t->slots[i].used || memcmp(&t->slots[i].addr, a, sizeof(*a)) == 0)
			return &t->slots[i];
}

/* One destination's activity over the interval. */
struct active {
	struct sluice_addr addr;
	__u64 packets, bytes, total_bytes;
	__u8 verdict; /* the verdict with the most packets in the interval */
};

struct sample {
	struct seen_table *now, *prev;
	struct active *active;
	size_t nactive, cap;
	bool first;
};

static int take(const struct dest_row *r, void *ctx)
{
	struct sample *s = ctx;
	struct seen *now = seen_find(s->now, &r->addr), *was = seen_find(s->prev, &r->addr);
	__u64 dp = r->packets, db = r->bytes;
	struct active *a;
	__u8 verdict = 0;

	*now = (struct seen){ .addr = r->addr, .packets = r->packets, .bytes = r->bytes, .used = 1 };
	if (s->first)
		return 0;
	if (was->used) { /* an entry evicted and made again counts from zero: no negative */
		dp = r->packets >= was->packets ? r->packets - was->packets : r->packets;
		db = r->bytes >= was->bytes ? r->bytes - was->bytes : r->bytes;
	}
	if (!dp && !db)
		return 0;
	if (s->nactive == s->cap)
		return 0; /* cannot happen: cap is the table's capacity */
	for (int v = 1; v < SLUICE_VERDICT_MAX; v++)
		if (r->stats.packets[v] > r->stats.packets[verdict])
			verdict = v;
	a = &s->active[s->nactive++];
	*a = (struct active){ .addr = r->addr, .packets = dp, .bytes = db,
			      .total_bytes = r->bytes, .verdict = verdict };
	return 0;
}

static int by_bytes_desc(const void *x, const void *y)
{
	const struct active *a = x, *b = y;

	if (a->bytes != b->bytes)
		return a->bytes > b->bytes ? -1 : 1;
	return a->packets > b->packets ? -1 : a->packets < b->packets;
}

/* Node totals by verdict, over interfaces, hooks and reasons. */
static int totals_by_verdict(int totals_fd, int ifaces_fd, struct sluice_counter out[])
{
	struct total_row *rows;
	size_t n;
	int err = read_totals(totals_fd, ifaces_fd, &rows, &n);

	memset(out, 0, SLUICE_VERDICT_MAX * sizeof(*out));
	if (err)
		return err;
	for (size_t i = 0; i < n; i++) {
		out[rows[i].verdict].packets += rows[i].sum.packets;
		out[rows[i].verdict].bytes += rows[i].sum.bytes;
	}
	free(rows);
	return 0;
}

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

/* 1.2k, 3.4M: a rate for a terminal. */
static const char *human(double v, char *buf, size_t len)
{
	static const char units[] = " kMGT";
	int u = 0;

	while (v >= 1000 && u < 4) {
		v /= 1000;
		u++;
	}
	snprintf(buf, len, u ? "%.1f%c" : "%.0f", v, units[u]);
	return buf;
}

static void show(const struct sample *s, const struct sluice_counter *was,
		 const struct sluice_counter *now, double secs, size_t top, bool tty)
{
	char a[ADDR_STRLEN], b1[16], b2[16], b3[16], stamp[32];
	time_t t = time(NULL);

	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
	if (cli.json) {
		json_t *doc = json_pack("{s:s,s:f}", "ts", stamp, "interval", secs);
		json_t *totals = json_object(), *dests = json_array();

		for (int v = 0; v < SLUICE_VERDICT_MAX; v++)
			json_object_set_new(totals, verdict_name(v),
					    json_pack("{s:f,s:f}", "packets_per_second",
						      (now[v].packets - was[v].packets) / secs,
						      "bytes_per_second",
						      (now[v].bytes - was[v].bytes) / secs));
		for (size_t i = 0; i < s->nactive && i < top; i++) {
			addr_format(&s->active[i].addr, a, sizeof(a));
			json_array_append_new(
				dests, json_pack("{s:s,s:s,s:f,s:f,s:I}", "destination", a, "verdict",
						 verdict_name(s->active[i].verdict),
						 "packets_per_second", s->active[i].packets / secs,
						 "bytes_per_second", s->active[i].bytes / secs,
						 "bytes_total", (json_int_t)s->active[i].total_bytes));
		}
		json_object_set_new(doc, "totals", totals);
		json_object_set_new(doc, "destinations", dests);
		json_object_set_new(doc, "active_destinations", json_integer(s->nactive));
		/* One document per line: a stream a pipeline can read as it comes. */
		json_dumpf(doc, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
		fputc('\n', stdout);
		fflush(stdout);
		json_decref(doc);
		return;
	}
	if (tty)
		fputs("\033[H\033[2J", stdout);
	printf("sluice top  %s  every %.0f s  (Ctrl-C quits)\n\n", stamp, secs);
	printf("%-10s %12s %12s\n", "VERDICT", "PACKETS/S", "BYTES/S");
	for (int v = 0; v < SLUICE_VERDICT_MAX; v++)
		printf("%-10s %12s %12s\n", verdict_name(v),
		       human((now[v].packets - was[v].packets) / secs, b1, sizeof(b1)),
		       human((now[v].bytes - was[v].bytes) / secs, b2, sizeof(b2)));
	printf("\n%-40s %-9s %12s %12s %12s\n", "DESTINATION", "VERDICT", "PACKETS/S", "BYTES/S",
	       "TOTAL BYTES");
	for (size_t i = 0; i < s->nactive && i < top; i++) {
		addr_format(&s->active[i].addr, a, sizeof(a));
		printf("%-40s %-9s %12s %12s %12s\n", a, verdict_name(s->active[i].verdict),
		       human(s->active[i].packets / secs, b1, sizeof(b1)),
		       human(s->active[i].bytes / secs, b2, sizeof(b2)),
		       human((double)s->active[i].total_bytes, b3, sizeof(b3)));
	}
	if (s->nactive > top)
		printf("... and %zu more destinations active\n", s->nactive - top);
	fflush(stdout);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int cmd_top(int argc, char **argv)
{
	struct top_opts o = { .top = TOP_DEFAULT, .interval = 1 };
	struct sluice_counter was[SLUICE_VERDICT_MAX], now[SLUICE_VERDICT_MAX];
	struct seen_table t[2] = {};
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	struct sample s = { .first = true };
	struct pinned_maps m;
	double last;
	int ret, shown = 0;

	ret = cli_parse_options("top", argc, argv, top_options, top_option, &o);
	if (ret)
		return ret == -1 ? EXIT_OK : ret;
	if (optind < argc)
		return cli_usage_error("top", "unexpected argument '%s'", argv[optind]);
	if (pinned_maps_open(cli.pin_dir, &m))
		return EXIT_FAIL;
	ret = bpf_obj_get_info_by_fd(m.dests_fd, &info, &len) ? -errno : 0;
	for (int i = 0; i < 2 && !ret; i++) {
		for (t[i].cap = 16; t[i].cap < 2 * (size_t)info.max_entries; t[i].cap *= 2)
			;
		t[i].slots = calloc(t[i].cap, sizeof(*t[i].slots));
		if (!t[i].slots)
			ret = -ENOMEM;
	}
	s.cap = info.max_entries;
	s.active = ret ? NULL : calloc(s.cap ? s.cap : 1, sizeof(*s.active));
	if (ret || !s.active) {
		fprintf(stderr, "sluice: error: cannot set up: %s\n", strerror(ret ? -ret : ENOMEM));
		ret = EXIT_FAIL;
		goto out;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	s.now = &t[0];
	s.prev = &t[1];
	ret = totals_by_verdict(m.totals_fd, m.ifaces_fd, was) ?:
	      each_destination(m.dests_fd, take, &s);
	last = now_s();
	while (!ret && !stop && (!o.iterations || shown < o.iterations)) {
		struct seen_table *swap;
		double secs;

		/* sleep() returns early on a signal: the loop ends then. */
		for (double until = last + o.interval; !stop && now_s() < until;)
			usleep(50000);
		if (stop)
			break;
		swap = s.prev;
		s.prev = s.now;
		s.now = swap;
		memset(s.now->slots, 0, s.now->cap * sizeof(*s.now->slots));
		s.first = false;
		s.nactive = 0;
		ret = totals_by_verdict(m.totals_fd, m.ifaces_fd, now) ?:
		      each_destination(m.dests_fd, take, &s);
		secs = now_s() - last;
		last = now_s();
		if (ret)
			break;
		qsort(s.active, s.nactive, sizeof(*s.active), by_bytes_desc);
		show(&s, was, now, secs, (size_t)o.top, isatty(STDOUT_FILENO));
		memcpy(was, now, sizeof(was));
		shown++;
	}
	if (ret) {
		fprintf(stderr, "sluice: error: cannot read the counters: %s\n", strerror(-ret));
		ret = EXIT_FAIL;
	}
out:
	free(s.active);
	free(t[0].slots);
	free(t[1].slots);
	pinned_maps_close(&m);
	return ret;
}

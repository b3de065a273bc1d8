// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* sluice budget show|reset: the budgets' usage per key, and clearing it. */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <jansson.h>

#include "addr.h"
#include "budget.h"
#include "dest_scan.h"
#include "cli.h"
#include "datapath.h"
#include "log.h"
#include "output.h"
#include "state.h"
#include "units.h"

static const struct option budget_options[] = { CLI_COMMON_OPTIONS };

static __u64 clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (__u64)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* What the key counts: a destination, a user (uid and name), or the node. */
static void key_label(const struct budget_info *b, const struct sluice_budget_usage_key *k,
		      char *buf, size_t len)
{
	if (b->kind == SLUICE_BUDGET_DEST) {
		addr_format(&k->addr, buf, len);
	} else if (b->kind == SLUICE_BUDGET_USER) {
		struct passwd *pw = getpwuid(k->uid);

		if (pw)
			snprintf(buf, len, "%s (uid %u)", pw->pw_name, k->uid);
		else
			snprintf(buf, len, "uid %u", k->uid);
	} else {
		snprintf(buf, len, "node");
	}
}

/*
 * A key's state: "expired" when its window is over (its next packet starts a new one),
 * else "blocked" or "exceeded" once the usage reached the limit, else "ok".
 */
static const char *usage_state(const struct budget_info *b, const struct sluice_budget_usage *u,
			       __u64 mono_now)
{
	if (mono_now >= u->window_end_ns)
		return "expired";
	if (u->bytes >= b->limit)
		return b->block ? "blocked" : "exceeded";
	return "ok";
}

/* What the budget commands work on; open_budgets opens all of it or nothing. */
struct budgets {
	struct pinned_maps m;
	struct budget_table t;
	struct dest_scan *scan; /* reads and clears destination budgets' usage in their entries */
};

/* The pinned maps, the destination walk, the state directory's budget table (error said). */
static int open_budgets(struct budgets *b)
{
	int err;

	if (pinned_maps_open(cli.pin_dir, &b->m))
		return -ENOENT;
	b->scan = dest_scan_open(b->m.dests_fd);
	if (!b->scan) {
		err = errno ? -errno : -EOPNOTSUPP;
		pr_err("cannot load the destination walk: %s", strerror(-err));
		pinned_maps_close(&b->m);
		return err;
	}
	err = state_read_budgets(cli.state_dir, &b->t);
	if (err) {
		pr_err("cannot read the budget table in %s: %s", cli.state_dir, strerror(-err));
		dest_scan_close(b->scan);
		pinned_maps_close(&b->m);
	}
	return err;
}

static void close_budgets(struct budgets *b)
{
	budget_table_free(&b->t);
	dest_scan_close(b->scan);
	pinned_maps_close(&b->m);
}

static int budget_show(int argc, char **argv)
{
	struct budget_usage_row *rows = NULL;
	struct budgets bs = {};
	__u64 mono = clock_ns(CLOCK_MONOTONIC_COARSE), real = clock_ns(CLOCK_REALTIME);
	__u32 generation;
	__u8 flags = 0;
	size_t n = 0;
	json_t *doc = NULL;
	int err;

	(void)argv;
	if (argc)
		return cli_usage_error("budget", "budget show takes no arguments");
	if (open_budgets(&bs))
		return EXIT_FAIL;
	read_policy_state(bs.m.policy_fd, bs.m.config_fd, &generation, &flags);
	err = budget_usage_read(bs.m.budget.usage_fd, bs.scan, &rows, &n);
	if (err) {
		pr_err("cannot read budget usage: %s", strerror(-err));
		goto out;
	}
	if (cli.json)
		doc = json_array();
	else if (bs.t.n == 0)
		printf("no budgets in the policy in force\n");
	for (size_t i = 0; i < bs.t.n; i++) {
		const struct budget_info *b = &bs.t.items[i];
		__u64 crossed = budget_crossed_read(bs.m.budget.crossed_fd,
						    flags & SLUICE_POLICY_F_EPOCH, i);
		char size[32], window[32];
		json_t *keys = NULL;

		format_size(b->limit, size, sizeof(size));
		format_duration(b->window_s, window, sizeof(window));
		if (cli.json)
			keys = json_array();
		else
			printf("%s: %s %s per %s %s, crossed %llu times\n", b->name, b->target, size,
			       window, b->block ? "block" : "alert", (unsigned long long)crossed);
		for (size_t r = 0; r < n; r++) {
			const struct budget_usage_row *row = &rows[r];
			const char *state = usage_state(b, &row->usage, mono);
			char label[128], when[32] = "-";
			time_t end;

			if (row->key.budget != b->id)
				continue;
			key_label(b, &row->key, label, sizeof(label));
			/* The kernel's window end is monotonic: shown as wall-clock time. */
			end = (time_t)((real + (row->usage.window_end_ns - mono)) / 1000000000ull);
			if (row->usage.window_end_ns > mono)
				strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&end));
			if (cli.json) {
				json_t *k = json_pack("{s:s,s:I,s:I,s:s,s:s,s:I}", "key", label,
						      "bytes", (json_int_t)row->usage.bytes,
						      "limit_bytes", (json_int_t)b->limit,
						      "window_end", when, "state", state,
						      "dropped_packets",
						      (json_int_t)row->usage.dropped);

				if (b->kind == SLUICE_BUDGET_DEST)
					json_object_set_new(k, "dst", json_string(label));
				else if (b->kind == SLUICE_BUDGET_USER)
					json_object_set_new(k, "uid", json_integer(row->key.uid));
				json_array_append_new(keys, k);
			} else {
				printf("  %-40s %14llu bytes  %5.1f%%  %-8s  window ends %s",
				       label, (unsigned long long)row->usage.bytes,
				       100.0 * (double)row->usage.bytes / (double)b->limit, state,
				       when);
				if (row->usage.dropped)
					printf("  (%llu packets dropped)",
					       (unsigned long long)row->usage.dropped);
				printf("\n");
			}
		}
		if (cli.json)
			json_array_append_new(
				doc, json_pack("{s:s,s:s,s:s,s:I,s:I,s:s,s:I,s:o}", "name", b->name,
					       "target", b->target, "kind", budget_kind_name(b->kind),
					       "limit_bytes", (json_int_t)b->limit, "window_seconds",
					       (json_int_t)b->window_s, "action",
					       b->block ? "block" : "alert", "crossed",
					       (json_int_t)crossed, "keys", keys));
	}
	if (cli.json)
		json_print(doc);
out:
	free(rows);
	close_budgets(&bs);
	return err ? EXIT_FAIL : EXIT_OK;
}

/*
 * Which usage records TARGET names: a budget (its name or its target as written), a
 * destination address, or a user (name or uid) of the user budgets. NULL target: all.
 */
struct reset_match {
	__u32 ids[SLUICE_BUDGET_MAX]; /* budgets named */
	size_t nids;
	bool by_addr, by_uid;
	struct sluice_addr addr;
	__u32 uid;
};

static int reset_match_parse(const char *target, const struct budget_table *t,
			     struct reset_match *rm)
{
	struct passwd *pw;
	char *end;

	memset(rm, 0, sizeof(*rm));
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->items[i].name, target) == 0 || strcmp(t->items[i].target, target) == 0)
			rm->ids[rm->nids++] = t->items[i].id;
	if (rm->nids)
		return 0;
	if (addr_parse(target, &rm->addr) == 0) {
		rm->by_addr = true;
		return 0;
	}
	pw = getpwnam(target);
	if (pw) {
		rm->by_uid = true;
		rm->uid = pw->pw_uid;
		return 0;
	}
	errno = 0;
	unsigned long v = strtoul(target, &end, 10);

	if (target[0] >= '0' && target[0] <= '9' && !*end && !errno && v <= UINT32_MAX) {
		rm->by_uid = true;
		rm->uid = v;
		return 0;
	}
	return -ENOENT;
}

static bool reset_matches(const struct reset_match *rm, const struct budget_table *t,
			  const struct sluice_budget_usage_key *k)
{
	const struct budget_info *b = budget_table_find(t, k->budget);

	for (size_t i = 0; i < rm->nids; i++)
		if (rm->ids[i] == k->budget)
			return true;
	if (rm->by_addr)
		return b && b->kind == SLUICE_BUDGET_DEST &&
		       memcmp(&k->addr, &rm->addr, sizeof(k->addr)) == 0;
	if (rm->by_uid)
		return b && b->kind == SLUICE_BUDGET_USER && k->uid == rm->uid;
	return false;
}

static int budget_reset(int argc, char **argv)
{
	struct budget_usage_row *rows = NULL;
	struct reset_match rm;
	struct budgets bs = {};
	size_t n = 0, cleared = 0;
	int lock, err;

	if (argc > 1)
		return cli_usage_error("budget", "budget reset takes at most one TARGET");
	if (cli_require_privileges("budget"))
		return EXIT_FAIL;
	if (open_budgets(&bs))
		return EXIT_FAIL;
	if (argc == 1 && reset_match_parse(argv[0], &bs.t, &rm)) {
		pr_err("'%s' names no budget (name or target), address or user", argv[0]);
		close_budgets(&bs);
		return EXIT_USAGE;
	}
	/* Writers are serialized: a reset never interleaves with a policy load. */
	lock = state_lock_writers(cli.state_dir);
	if (lock < 0) {
		err = lock;
		pr_err("cannot take the writers' lock: %s", strerror(-err));
		goto out;
	}
	err = budget_usage_read(bs.m.budget.usage_fd, bs.scan, &rows, &n);
	for (size_t i = 0; !err && i < n; i++) {
		int ret;

		if (argc == 1 && !reset_matches(&rm, &bs.t, &rows[i].key))
			continue;
		ret = budget_usage_clear(bs.m.budget.usage_fd, bs.scan, &rows[i]);
		if (ret < 0)
			err = ret;
		else
			cleared += ret;
	}
	close(lock);
	if (err)
		pr_err("cannot reset budget usage: %s", strerror(-err));
	else if (cli.json)
		json_print(json_pack("{s:I}", "cleared", (json_int_t)cleared));
	else
		printf("cleared %zu usage record%s\n", cleared, cleared == 1 ? "" : "s");
out:
	free(rows);
	close_budgets(&bs);
	return err ? EXIT_FAIL : EXIT_OK;
}

int cmd_budget(int argc, char **argv)
{
	const char *sub;
	int ret;

	ret = cli_parse_options("budget", argc, argv, budget_options, NULL, NULL);
	if (ret)
		return ret == -1 ? EXIT_OK : ret;
	if (optind >= argc)
		return cli_usage_error("budget", "expected show or reset");
	sub = argv[optind];
	argc -= optind + 1;
	argv += optind + 1;
	if (strncmp("show", sub, strlen(sub)) == 0)
		return budget_show(argc, argv);
	if (strncmp("reset", sub, strlen(sub)) == 0)
		return budget_reset(argc, argv);
	return cli_usage_error("budget", "unknown budget command '%s' (show, reset)", sub);
}

// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* sluice stats and sluice dest: read the pinned counters, print tables or JSON. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "addr.h"
#include "cli.h"
#include "datapath.h"
#include "log.h"
#include "output.h"
#include "policy.h"
#include "state.h"

/* The read commands take no positional arguments. */
static int parse_read_options(const char *command, int argc, char **argv,
			      const struct option *options,
			      int (*own)(int opt, const char *arg, void *ctx), void *ctx)
{
	int ret = cli_parse_options(command, argc, argv, options, own, ctx);

	if (!ret && optind < argc)
		return cli_usage_error(command, "unexpected argument '%s'", argv[optind]);
	return ret;
}

static __u32 map_capacity(int fd)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);

	return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.max_entries : 0;
}

/* Recorded reply flows (live or not yet evicted); the walk stops at the capacity. */
static __u32 flow_entries(int fd, __u32 capacity)
{
	struct sluice_flow_key key, next;
	__u32 n = 0;

	for (void *prev = NULL; n < capacity && bpf_map_get_next_key(fd, prev, &next) == 0; n++) {
		key = next;
		prev = &key;
	}
	return n;
}

/* --- sluice stats ------------------------------------------------------------------------ */

static const struct option stats_options[] = { CLI_COMMON_OPTIONS };

/* Events the datapath could not deliver since it was loaded: all types, all CPUs. */
static __u64 event_losses(int fd)
{
	int ncpus = libbpf_num_possible_cpus();
	__u64 sum = 0, *values;

	if (ncpus <= 0)
		return 0;
	values = calloc(ncpus, sizeof(*values));
	for (__u32 type = 0; values && type < SLUICE_EVENT_MAX; type++) {
		if (bpf_map_lookup_elem(fd, &type, values))
			continue;
		for (int cpu = 0; cpu < ncpus; cpu++)
			sum += values[cpu];
	}
	free(values);
	return sum;
}

int cmd_stats(int argc, char **argv)
{
	struct sluice_counter by_verdict[SLUICE_VERDICT_MAX] = {};
	struct total_row *totals = NULL;
	struct dest_row *dests = NULL;
	size_t ntotals = 0, ndests = 0;
	struct pinned_maps m;
	__u32 generation = 0;
	__u8 flags = 0;
	char ifname[32];
	int ret;

	ret = parse_read_options("stats", argc, argv, stats_options, NULL, NULL);
	if (ret)
		return ret == -1 ? EXIT_OK : ret;
	if (pinned_maps_open(cli.pin_dir, &m))
		return EXIT_FAIL;
	ret = read_totals(m.totals_fd, m.ifaces_fd, &totals, &ntotals);
	if (!ret)
		ret = read_destinations(m.dests_fd, &dests, &ndests);
	if (ret) {
		pinned_maps_close(&m);
		return EXIT_FAIL;
	}
	read_policy_state(m.policy_fd, m.config_fd, &generation, &flags);
	for (size_t i = 0; i < ntotals; i++) {
		by_verdict[totals[i].verdict].packets += totals[i].sum.packets;
		by_verdict[totals[i].verdict].bytes += totals[i].sum.bytes;
	}
	const char *mode = !generation ? "none" : (flags & SLUICE_POLICY_F_AUDIT) ? "audit" : "enforce";
	__u32 capacity = map_capacity(m.dests_fd);
	__u32 flow_capacity = map_capacity(m.flows_fd);
	__u32 flows = flow_entries(m.flows_fd, flow_capacity);
	__u64 events_lost = event_losses(m.event_lost_fd);

	if (cli.json) {
		json_t *doc = json_object(), *rows = json_array(), *verdicts = json_object();

		json_object_set_new(doc, "generation", json_integer(generation));
		json_object_set_new(doc, "mode", json_string(mode));
		for (size_t i = 0; i < ntotals; i++) {
			const struct total_row *t = &totals[i];

			json_array_append_new(
				rows, json_pack("{s:s,s:i,s:s,s:s,s:s,s:I,s:I}", "iface",
						ifname_of(t->ifindex, ifname, sizeof(ifname)),
						"ifindex", (json_int_t)t->ifindex, "hook",
						hook_name(t->hook), "verdict",
						verdict_name(t->verdict), "reason",
						reason_name(t->reason), "packets",
						(json_int_t)t->sum.packets, "bytes",
						(json_int_t)t->sum.bytes));
		}
		json_object_set_new(doc, "totals", rows);
		for (int v = 0; v < SLUICE_VERDICT_MAX; v++)
			json_object_set_new(verdicts, verdict_name(v),
					    json_pack("{s:I,s:I}", "packets",
						      (json_int_t)by_verdict[v].packets, "bytes",
						      (json_int_t)by_verdict[v].bytes));
		json_object_set_new(doc, "verdicts", verdicts);
		json_object_set_new(doc, "events_lost", json_integer((json_int_t)events_lost));
		json_object_set_new(doc, "maps",
				    json_pack("{s:{s:I,s:I},s:{s:I,s:I}}", "destinations", "entries",
					      (json_int_t)ndests, "capacity", (json_int_t)capacity,
					      "reply_flows", "entries", (json_int_t)flows, "capacity",
					      (json_int_t)flow_capacity));
		json_print(doc);
	} else {
		printf("policy generation %u, mode %s\n\n", generation, mode);
		printf("%-10s %14s %16s\n", "VERDICT", "PACKETS", "BYTES");
		for (int v = 0; v < SLUICE_VERDICT_MAX; v++)
			printf("%-10s %14llu %16llu\n", verdict_name(v),
			       (unsigned long long)by_verdict[v].packets,
			       (unsigned long long)by_verdict[v].bytes);
		printf("\n%-16s %-10s %-10s %-12s %14s %16s\n", "IFACE", "HOOK", "VERDICT",
		       "REASON", "PACKETS", "BYTES");
		for (size_t i = 0; i < ntotals; i++) {
			const struct total_row *t = &totals[i];

			printf("%-16s %-10s %-10s %-12s %14llu %16llu\n",
			       ifname_of(t->ifindex, ifname, sizeof(ifname)),
			       hook_name(t->hook), verdict_name(t->verdict),
			       reason_name(t->reason), (unsigned long long)t->sum.packets,
			       (unsigned long long)t->sum.bytes);
		}
		printf("\ndestinations tracked: %zu of %u\n", ndests, capacity);
		printf("reply flows tracked: %u of %u\n", flows, flow_capacity);
		printf("events lost (ring buffer full): %llu\n", (unsigned long long)events_lost);
	}
	free(totals);
	free(dests);
	pinned_maps_close(&m);
	return EXIT_OK;
}

/* --- sluice dest ------------------------------------------------------------------------- */

enum dest_sort { SORT_BYTES, SORT_PACKETS, SORT_DENIED };

struct dest_opts {
	long top;
	enum dest_sort sort;
};

enum { OPT_TOP = OPT_COMMAND_BASE, OPT_SORT };

static const struct option dest_options[] = {
	{ "top", required_argument, NULL, OPT_TOP },
	{ "sort", required_argument, NULL, OPT_SORT },
	CLI_COMMON_OPTIONS,
};

static int dest_option(int opt, const char *arg, void *ctx)
{
	struct dest_opts *o = ctx;
	char *end;

	switch (opt) {
	case OPT_TOP:
		errno = 0;
		o->top = strtol(arg, &end, 10);
		if (*arg == '\0' || *end || errno || o->top < 0)
			return cli_usage_error("dest", "--top needs a count >= 0, not '%s'", arg);
		return 0;
	case OPT_SORT:
		if (strcmp(arg, "bytes") == 0)
			o->sort = SORT_BYTES;
		else if (strcmp(arg, "packets") == 0)
			o->sort = SORT_PACKETS;
		else if (strcmp(arg, "denied") == 0)
			o->sort = SORT_DENIED;
		else
			return cli_usage_error("dest", "--sort must be bytes, packets or denied, not '%s'",
					       arg);
		return 0;
	}
	return EXIT_USAGE;
}

/* A destination whose decision depends on protocol/port has no single verdict. */
static const char *dest_verdict(const struct cached_decision *cd)
{
	return cd->port_class ? "by_port" : verdict_name(cd->verdict);
}

static enum dest_sort sort_key;

static __u64 sort_value(const struct dest_row *r)
{
	switch (sort_key) {
	case SORT_PACKETS:
		return r->packets;
	case SORT_DENIED:
		return r->stats.packets[SLUICE_VERDICT_DENY];
	default:
		return r->bytes;
	}
}

static int cmp_dest(const void *a, const void *b)
{
	__u64 va = sort_value(a), vb = sort_value(b);

	if (va != vb)
		return va > vb ? -1 : 1;
	/* Stable, readable order for ties: by address. */
	return memcmp(((const struct dest_row *)a)->addr.a, ((const struct dest_row *)b)->addr.a, 16);
}

int cmd_dest(int argc, char **argv)
{
	struct dest_opts o = { .top = 20, .sort = SORT_BYTES };
	struct rule_table rules;
	struct dest_row *rows;
	struct pinned_maps m;
	size_t n, shown;
	char addr[ADDR_STRLEN], rulebuf[64];
	int ret;

	ret = parse_read_options("dest", argc, argv, dest_options, dest_option, &o);
	if (ret)
		return ret == -1 ? EXIT_OK : ret;
	if (pinned_maps_open(cli.pin_dir, &m))
		return EXIT_FAIL;
	ret = read_destinations(m.dests_fd, &rows, &n);
	pinned_maps_close(&m);
	if (ret)
		return EXIT_FAIL;
	if (state_read_rules(cli.state_dir, &rules) < 0)
		pr_warn("cannot read rule names from %s; showing rule ids", cli.state_dir);

	sort_key = o.sort;
	qsort(rows, n, sizeof(*rows), cmp_dest);
	shown = o.top == 0 || (size_t)o.top > n ? n : (size_t)o.top;

	if (cli.json) {
		json_t *doc = json_array();

		for (size_t i = 0; i < shown; i++) {
			const struct dest_row *r = &rows[i];
			json_t *by = json_object();
			struct cached_decision cd;

			dest_cached_decision(&r->stats, &cd);
			for (int v = 0; v < SLUICE_VERDICT_MAX; v++) {
				if (!r->stats.packets[v] && !r->stats.bytes[v])
					continue;
				json_object_set_new(by, verdict_name(v),
						    json_pack("{s:I,s:I}", "packets",
							      (json_int_t)r->stats.packets[v], "bytes",
							      (json_int_t)r->stats.bytes[v]));
			}
			addr_format(&r->addr, addr, sizeof(addr));
			json_array_append_new(
				doc, json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:o}", "destination", addr,
					       "verdict", dest_verdict(&cd), "reason",
					       cd.port_class ? "" : reason_name(cd.reason), "rule",
					       cd.port_class ? ""
							     : rule_table_name(&rules, cd.generation,
									       cd.rule_id, rulebuf,
									       sizeof(rulebuf)),
					       "packets", (json_int_t)r->packets, "bytes",
					       (json_int_t)r->bytes, "by_verdict", by));
		}
		json_print(doc);
	} else {
		printf("%-40s %-8s %-24s %12s %14s %12s\n", "DESTINATION", "VERDICT", "RULE",
		       "PACKETS", "BYTES", "DENIED");
		for (size_t i = 0; i < shown; i++) {
			const struct dest_row *r = &rows[i];
			struct cached_decision cd;

			dest_cached_decision(&r->stats, &cd);
			addr_format(&r->addr, addr, sizeof(addr));
			printf("%-40s %-8s %-24s %12llu %14llu %12llu\n", addr, dest_verdict(&cd),
			       cd.port_class ? "(by protocol/port)"
					     : rule_table_name(&rules, cd.generation, cd.rule_id, rulebuf,
							       sizeof(rulebuf)),
			       (unsigned long long)r->packets, (unsigned long long)r->bytes,
			       (unsigned long long)r->stats.packets[SLUICE_VERDICT_DENY]);
		}
		if (shown < n)
			printf("(%zu of %zu destinations; --top 0 shows all)\n", shown, n);
	}
	rule_table_free(&rules);
	free(rows);
	return EXIT_OK;
}

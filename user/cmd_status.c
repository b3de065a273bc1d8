// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * sluice status: is the daemon alive, what is attached where (from the kernel), which
 * policy is in force, and every degraded condition. Read-only.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>

#include "attach.h"
#include "attach_cgroup.h"
#include "cli.h"
#include "datapath.h"
#include "attach_cgroup.h"
#include "health.h"
#include "log.h"
#include "output.h"
#include "pins.h"
#include "state.h"

static const struct option status_options[] = { CLI_COMMON_OPTIONS };

/* STATE_DIR/name as JSON, or NULL (missing or unreadable). */
static json_t *state_json(const char *name)
{
	char path[PATH_MAX];

	if (pin_path(path, sizeof(path), cli.state_dir, NULL, name) < 0)
		return NULL;
	return json_load_file(path, 0, NULL);
}

static json_t *daemon_json(int pid, json_t *recorded)
{
	json_t *d = json_pack("{s:b}", "running", pid > 0);

	if (pid > 0) {
		json_object_set_new(d, "pid", json_integer(pid));
		json_object_set(d, "started_at", json_object_get(recorded, "started_at"));
		json_object_set(d, "config",
				json_object_get(json_object_get(recorded, "config"), "file"));
	}
	return d;
}

static json_t *policy_json(const struct pinned_maps *m, __u8 *flags)
{
	json_t *p = state_json("policy.json"), *doc;
	__u32 generation = 0;

	*flags = 0;
	read_policy_state(m->policy_fd, m->config_fd, &generation, flags);
	doc = json_pack("{s:I}", "generation", (json_int_t)generation);
	if (p) {
		json_object_set(doc, "source", json_object_get(p, "source"));
		json_object_set(doc, "loaded_at", json_object_get(p, "loaded_at"));
		json_object_set(doc, "loaded_at_unix", json_object_get(p, "loaded_at_unix"));
		json_decref(p);
	}
	return doc;
}

static const char *str_or(json_t *v, const char *fallback)
{
	return json_is_string(v) ? json_string_value(v) : fallback;
}

static void print_human(json_t *doc)
{
	json_t *d = json_object_get(doc, "daemon"), *p = json_object_get(doc, "policy");
	json_t *rows = json_object_get(doc, "interfaces"), *bad = json_object_get(doc, "degraded");
	json_t *row, *v;
	size_t i, j;

	if (json_is_true(json_object_get(d, "running")))
		printf("daemon      running, pid %lld, since %s (config %s)\n",
		       (long long)json_integer_value(json_object_get(d, "pid")),
		       str_or(json_object_get(d, "started_at"), "?"),
		       str_or(json_object_get(d, "config"), "none"));
	else
		printf("daemon      NOT running (the pinned programs keep enforcing)\n");
	printf("mode        %s\n", str_or(json_object_get(doc, "mode"), "none"));
	printf("policy      generation %lld, loaded %s from %s\n",
	       (long long)json_integer_value(json_object_get(p, "generation")),
	       str_or(json_object_get(p, "loaded_at"), "?"),
	       str_or(json_object_get(p, "source"), "?"));
	printf("\n%-16s %-8s %-16s %-10s %-11s %8s %8s\n", "INTERFACE", "IFINDEX", "CONFIGURED",
	       "HOOK", "ATTACH", "PROG", "LINK");
	json_array_foreach(rows, i, row) {
		json_t *hooks = json_object_get(row, "hooks"), *h;
		char ifindex[16] = "-";

		if (json_is_integer(json_object_get(row, "ifindex")))
			snprintf(ifindex, sizeof(ifindex), "%lld",
				 (long long)json_integer_value(json_object_get(row, "ifindex")));
		if (json_array_size(hooks) == 0)
			printf("%-16s %-8s %-16s %-10s %-11s %8s %8s  %s\n",
			       str_or(json_object_get(row, "iface"), "?"), ifindex,
			       str_or(json_object_get(row, "configured"), "-"), "-", "-", "-", "-",
			       str_or(json_object_get(row, "error"), ""));
		json_array_foreach(hooks, j, h) {
			char link[16] = "-";

			if (json_integer_value(json_object_get(h, "link_id")))
				snprintf(link, sizeof(link), "%lld",
					 (long long)json_integer_value(json_object_get(h, "link_id")));
			printf("%-16s %-8s %-16s %-10s %-11s %8lld %8s\n",
			       j ? "" : str_or(json_object_get(row, "iface"), "?"), j ? "" : ifindex,
			       j ? "" : str_or(json_object_get(row, "configured"), "-"),
			       str_or(json_object_get(h, "hook"), "?"),
			       str_or(json_object_get(h, "attach"), "?"),
			       (long long)json_integer_value(json_object_get(h, "prog_id")), link);
		}
	}
	/* The connect hooks belong to a cgroup, not an interface: one row each. */
	json_array_foreach(json_object_get(doc, "connect_hooks"), i, row) {
		char cg[32];

		snprintf(cg, sizeof(cg), "cgroup %lld",
			 (long long)json_integer_value(json_object_get(row, "cgroup_id")));
		printf("%-16s %-8s %-16s %-10s %-11s %8lld %8lld\n", cg, "-", "-",
		       str_or(json_object_get(row, "hook"), "?"), "cgroup",
		       (long long)json_integer_value(json_object_get(row, "prog_id")),
		       (long long)json_integer_value(json_object_get(row, "link_id")));
	}
	if (json_array_size(bad) == 0) {
		printf("\nhealth      ok\n");
		return;
	}
	printf("\nhealth      DEGRADED (%zu)\n", json_array_size(bad));
	json_array_foreach(bad, i, v)
		printf("  %s\n", json_string_value(v));
}

int cmd_status(int argc, char **argv)
{
	json_t *recorded, *config, *health, *doc, *bad, *connect;
	struct attachment *att;
	struct pinned_maps m;
	size_t natt;
	int ret, pid;
	__u8 flags;

	ret = cli_parse_options("status", argc, argv, status_options, NULL, NULL);
	if (ret)
		return ret == -1 ? EXIT_OK : ret;
	if (optind < argc)
		return cli_usage_error("status", "unexpected argument '%s'", argv[optind]);
	pid = state_daemon_pid(cli.state_dir);
	if (pid == -EACCES || pid == -EPERM) {
		pr_err("cannot read %s: %s (sluice's state is readable by root only)", cli.state_dir,
		       strerror(-pid));
		return EXIT_FAIL;
	}
	if (pinned_maps_open(cli.pin_dir, &m))
		return EXIT_FAIL;
	ret = attach_list(cli.pin_dir, &att, &natt);
	if (ret) {
		pr_err("cannot list the attachments under %s: %s", cli.pin_dir, strerror(-ret));
		pinned_maps_close(&m);
		return EXIT_FAIL;
	}
	/*
	 * What is configured: the running daemon's record (the file with its flags over it);
	 * without a daemon, the last one's record, else the configuration file.
	 */
	recorded = state_json(STATE_STATUS);
	config = json_incref(json_object_get(recorded, "config"));
	if (!config && cli.config->ifaces.n)
		config = health_config_json(cli.config);
	connect = connect_hooks_json(cli.pin_dir);
	health = health_assess(config, pid > 0 ? json_object_get(recorded, "errors") : NULL, att,
			       natt, connect);
	free(att);
	bad = json_incref(json_object_get(health, "degraded"));
	if (pid <= 0)
		json_array_insert_new(bad, 0,
				      json_string("daemon not running: the pinned programs keep "
						  "enforcing, but nothing follows interfaces, SIGHUP "
						  "or expiring overrides"));

	doc = json_object();
	json_object_set_new(doc, "daemon", daemon_json(pid, recorded));
	json_object_set_new(doc, "policy", policy_json(&m, &flags));
	json_object_set_new(doc, "mode",
			    json_integer_value(json_object_get(json_object_get(doc, "policy"),
							       "generation"))
				    ? json_string(flags & SLUICE_POLICY_F_AUDIT ? "audit" : "enforce")
				    : json_null());
	json_object_set(doc, "interfaces", json_object_get(health, "interfaces"));
	json_object_set_new(doc, "connect_hooks", connect);
	json_object_set_new(doc, "degraded", bad);
	json_object_set_new(doc, "healthy", json_boolean(json_array_size(bad) == 0));
	json_decref(health);
	json_decref(config);
	json_decref(recorded);
	pinned_maps_close(&m);
	if (cli.json)
		json_print(doc);
	else {
		print_human(doc);
		json_decref(doc);
	}
	return EXIT_OK;
}

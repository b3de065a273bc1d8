// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * sluice policy check|load|show, and the runtime overrides sluice allow|deny|remove.
 * Everything that changes the policy goes through policy_apply(), as `sluice run` does.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>

#include "cli.h"
#include "datapath.h"
#include "log.h"
#include "output.h"
#include "pins.h"
#include "policy.h"
#include "control.h"
#include "policy_apply.h"
#include "policy_ranges.h"
#include "state.h"
#include "units.h"

enum { OPT_FOR = OPT_COMMAND_BASE, OPT_NAME };

static const struct option policy_options[] = { CLI_COMMON_OPTIONS };

static json_t *match_json(const struct policy *p, const struct policy_ident *id)
{
	const struct l4_match *m = &p->matches[id->match];
	json_t *protos = json_array(), *ports = json_array();

	for (int k = 0; k < m->nprotos; k++)
		json_array_append_new(protos, json_integer(m->protos[k]));
	for (int k = 0; k < m->nports; k++)
		json_array_append_new(ports, json_pack("[i,i]", m->ports[k].lo, m->ports[k].hi));
	return json_pack("{s:o,s:o}", "protocols", protos, "ports", ports);
}

/* One budget as JSON (policy check and budget show). */
static json_t *budget_json(const struct policy_budget *b)
{
	return json_pack("{s:s,s:s,s:s,s:I,s:I,s:s}", "name", b->name, "target", b->target, "kind",
			 budget_kind_name(b->kind), "limit_bytes", (json_int_t)b->limit,
			 "window_seconds", (json_int_t)b->window_s, "action",
			 b->block ? "block" : "alert");
}

static void print_summary(const char *path, const struct policy *p,
			  const struct compiled_policy *cp, long ranges)
{
	if (cli.json) {
		json_t *budgets = json_array();

		for (size_t i = 0; i < p->nbudgets; i++)
			json_array_append_new(budgets, budget_json(&p->budgets[i]));
		json_print(json_pack("{s:s,s:b,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o}", "file",
				     path, "ok", 1,
				     "mode", p->mode == SLUICE_MODE_AUDIT ? "audit" : "enforce",
				     "default", verdict_name(p->default_verdict), "rules",
				     (json_int_t)p->nidents, "destinations", (json_int_t)p->nrules,
				     "prefixes", (json_int_t)cp->n, "sets", (json_int_t)p->nsets,
				     "port_classes", (json_int_t)cp->nclasses, "port_entries",
				     (json_int_t)cp->nports, "ranges", (json_int_t)ranges,
				     "ranges_capacity", (json_int_t)SLUICE_RANGE_MAX, "budgets",
				     budgets));
		return;
	}
	printf("%s: ok\n  mode %s, default %s, essential %s, replies %s\n"
	       "  %zu rules over %zu destinations, %zu sets\n"
	       "  compiles to %zu prefixes and %u port classes (%zu port entries)\n"
	       "  fills %ld of the %u address and port ranges the datapath holds\n",
	       path, p->mode == SLUICE_MODE_AUDIT ? "audit" : "enforce",
	       verdict_name(p->default_verdict), p->essential ? "on" : "off",
	       p->replies ? "on" : "off", p->nidents, p->nrules, p->nsets, cp->n, cp->nclasses,
	       cp->nports, ranges, SLUICE_RANGE_MAX);
	printf("  %zu budgets\n", p->nbudgets);
	for (size_t i = 0; i < p->nbudgets; i++) {
		const struct policy_budget *b = &p->budgets[i];
		char size[32], window[32];

		format_size(b->limit, size, sizeof(size));
		format_duration(b->window_s, window, sizeof(window));
		printf("    %s: %s %s per %s %s\n", b->name, b->target, size, window,
		       b->block ? "block" : "alert");
	}
}

/* The ranges cp fills in a bank of the datapath, as an install would (-E2BIG: too many). */
static long bank_ranges(const struct compiled_policy *cp)
{
	size_t most = policy_bank_most(cp);
	struct sluice_policy_range *bank = calloc(most, sizeof(*bank));
	long n;

	if (!bank)
		return -ENOMEM;
	n = policy_bank_fill(cp, 0, bank, most < SLUICE_RANGE_MAX ? most : SLUICE_RANGE_MAX);
	free(bank);
	return n;
}

static int policy_check(int argc, char **argv)
{
	char err[POLICY_ERROR_MAX];
	struct compiled_policy cp;
	struct policy p;
	long ranges;
	int ret;

	if (argc != 1)
		return cli_usage_error("policy", "policy check needs one FILE");
	if (policy_parse_file(argv[0], &p, err)) {
		pr_err("%s", err);
		return EXIT_FAIL;
	}
	ret = policy_compile(&p, 1, &cp);
	if (ret) {
		pr_err("%s: cannot compile: %s", argv[0], strerror(-ret));
		policy_free(&p);
		return EXIT_FAIL;
	}
	ranges = bank_ranges(&cp);
	if (ranges < 0) {
		if (ranges == -E2BIG)
			pr_err("%s: too large: it needs more than the %u address and port ranges the "
			       "datapath holds", argv[0], SLUICE_RANGE_MAX);
		else
			pr_err("%s: cannot flatten: %s", argv[0], strerror((int)-ranges));
		compiled_policy_free(&cp);
		policy_free(&p);
		return EXIT_FAIL;
	}
	print_summary(argv[0], &p, &cp, ranges);
	compiled_policy_free(&cp);
	policy_free(&p);
	return EXIT_OK;
}

/* The pinned maps a policy is installed into; a clear error when sluice is not loaded. */
static int open_policy_maps(struct pinned_maps *m, struct policy_maps *maps)
{
	if (pinned_maps_open(cli.pin_dir, m))
		return -ENOENT;
	*maps = pinned_policy_maps(m);
	return 0;
}

/*
 * Ask the running daemon to load path (it keeps the per-rule counts of the policy it
 * replaces, and its in-memory policy for overrides). -ENOENT/-ECONNREFUSED: no daemon.
 */
static int load_through_daemon(const char *path, struct apply_result *res)
{
	char abs[PATH_MAX];
	json_t *request, *reply;
	int ret;

	memset(res, 0, sizeof(*res));
	if (!realpath(path, abs)) {
		ret = -errno;
		pr_err("cannot open policy %s: %s", path, strerror(-ret));
		return ret;
	}
	request = json_pack("{s:s,s:s}", "command", "load", "path", abs);
	ret = request ? control_request(cli.state_dir, request, &reply) : -ENOMEM;
	json_decref(request);
	if (ret == -ENOENT || ret == -ECONNREFUSED)
		return ret;
	if (ret) {
		pr_err("cannot reach the daemon: %s", strerror(-ret));
		return ret;
	}
	if (!json_is_true(json_object_get(reply, "ok"))) {
		pr_err("the daemon did not load %s: %s (see its log)", abs,
		       json_string_value(json_object_get(reply, "error")) ?: "?");
		json_decref(reply);
		return -EINVAL;
	}
	snprintf(res->source, sizeof(res->source), "%s",
		 json_string_value(json_object_get(reply, "source")) ?: abs);
	res->generation = json_integer_value(json_object_get(reply, "generation"));
	res->rules = json_integer_value(json_object_get(reply, "rules"));
	res->prefixes = json_integer_value(json_object_get(reply, "prefixes"));
	res->overrides = json_integer_value(json_object_get(reply, "overrides"));
	json_decref(reply);
	return 0;
}

/* Is there a control socket (a daemon, or one that died without removing it)? */
static bool daemon_may_listen(void)
{
	char path[PATH_MAX];

	return pin_path(path, sizeof(path), cli.state_dir, NULL, CONTROL_SOCKET) < 0 ||
	       access(path, F_OK) == 0;
}

static int policy_load(int argc, char **argv)
{
	struct apply_result res;
	struct pinned_maps m;
	struct policy_maps maps;
	int ret;

	if (argc != 1)
		return cli_usage_error("policy", "policy load needs one FILE");
	if (cli_require_privileges("policy load"))
		return EXIT_FAIL;
	/*
	 * A bad file is reported as such, loaded or not. A daemon answers only that the load
	 * failed, so where one may be listening the file is checked here first; without one,
	 * policy_apply reports it, and the file is read once (twice was a quarter of the
	 * time to load 100 000 rules).
	 */
	if (daemon_may_listen()) {
		char err[POLICY_ERROR_MAX];
		struct policy p;

		if (policy_parse_file(argv[0], &p, err)) {
			pr_err("%s", err);
			return EXIT_FAIL;
		}
		policy_free(&p);
	}
	ret = load_through_daemon(argv[0], &res);
	if (ret == -ENOENT || ret == -ECONNREFUSED) {
		/* No daemon: install it here. */
		if (open_policy_maps(&m, &maps)) /* says "sluice is not loaded: ..." */
			return EXIT_FAIL;
		ret = policy_apply(cli.state_dir, &maps, argv[0], POLICY_MODE_KEEP, &res);
		pinned_maps_close(&m);
	}
	if (ret)
		return EXIT_FAIL;
	if (cli.json)
		json_print(json_pack("{s:s,s:I,s:I,s:I}", "source", res.source, "generation",
				     (json_int_t)res.generation, "rules", (json_int_t)res.rules,
				     "overrides", (json_int_t)res.overrides));
	else
		printf("%s: in force as generation %u (%zu rules, %zu prefixes, %zu overrides)\n",
		       res.source, res.generation, res.rules, res.prefixes, res.overrides);
	return EXIT_OK;
}

static int policy_show(int argc, char **argv)
{
	char path[PATH_MAX], source[PATH_MAX], err[POLICY_ERROR_MAX], *text = NULL;
	struct override_list ovr;
	struct policy p;
	json_error_t jerr;
	json_t *meta;
	size_t len = 0;
	FILE *f;

	(void)argv;
	if (argc != 0)
		return cli_usage_error("policy", "policy show takes no arguments");
	if (pin_path(path, sizeof(path), cli.state_dir, NULL, "policy.json") < 0 ||
	    !(meta = json_load_file(path, 0, &jerr))) {
		if (access(path, F_OK) < 0 && (errno == EACCES || errno == EPERM))
			pr_err("cannot read %s: %s (sluice's state is readable by root only)",
			       cli.state_dir, strerror(errno));
		else
			pr_err("no policy has been loaded under %s (%s)", cli.state_dir,
			       access(path, F_OK) ? strerror(errno) : jerr.text);
		return EXIT_FAIL;
	}
	pin_path(path, sizeof(path), cli.state_dir, NULL, "policy.snapshot");
	f = fopen(path, "re");
	if (f) {
		char buf[4096];
		size_t n;
		FILE *mem = open_memstream(&text, &len);

		while (mem && (n = fread(buf, 1, sizeof(buf), f)) > 0)
			fwrite(buf, 1, n, mem);
		if (mem)
			fclose(mem);
		fclose(f);
	}
	if (!text || overrides_load(cli.state_dir, &ovr, true)) {
		pr_err("cannot read the policy in force from %s", cli.state_dir);
		free(text);
		json_decref(meta);
		return EXIT_FAIL;
	}
	snprintf(source, sizeof(source), "%s",
		 json_string_value(json_object_get(meta, "source")) ?: "?");
	if (cli.json) {
		json_t *doc = json_deep_copy(meta), *rules = json_array(), *sets = json_array(),
		       *ov = json_array();

		if (policy_parse_text("snapshot", text, &p, err) == 0) {
			for (size_t i = 0; i < p.nsets; i++) {
				json_t *members = json_array();
				char buf[ADDR_STRLEN];

				for (size_t k = 0; k < p.sets[i].n; k++) {
					prefix_format(&p.sets[i].prefixes[k], buf, sizeof(buf));
					json_array_append_new(members, json_string(buf));
				}
				json_array_append_new(sets, json_pack("{s:s,s:o}", "name",
								      p.sets[i].name, "members",
								      members));
			}
			for (size_t i = 0; i < p.nidents; i++) {
				json_t *r = match_json(&p, &p.idents[i]);

				json_object_set_new(r, "name", json_string(p.idents[i].name));
				json_object_set_new(r, "action",
						    json_string(verdict_name(p.idents[i].action)));
				json_object_set_new(r, "target", json_string(p.idents[i].target));
				json_array_append_new(rules, r);
			}
			json_object_set_new(doc, "mode", json_string(p.mode == SLUICE_MODE_AUDIT ? "audit" : "enforce"));
			json_object_set_new(doc, "default", json_string(verdict_name(p.default_verdict)));
			json_object_set_new(doc, "essential", json_boolean(p.essential));
			json_object_set_new(doc, "replies", json_boolean(p.replies));
			policy_free(&p);
		}
		for (size_t i = 0; i < ovr.n; i++) {
			const struct override *o = &ovr.items[i];

			json_array_append_new(ov, json_pack("{s:s,s:s,s:s,s:s,s:s,s:I}", "name", o->name,
							    "action", verdict_name(o->action), "target",
							    o->target, "protocols", o->protocols, "ports",
							    o->ports, "expires", (json_int_t)o->expires));
		}
		json_object_set_new(doc, "sets", sets);
		json_object_set_new(doc, "rules", rules);
		json_object_set_new(doc, "overrides", ov);
		json_print(doc);
	} else {
		printf("# in force: generation %lld, loaded %s from %s\n",
		       (long long)json_integer_value(json_object_get(meta, "generation")),
		       json_string_value(json_object_get(meta, "loaded_at")) ?: "?", source);
		if (json_object_get(meta, "mode_override"))
			printf("# mode forced to %s by sluice run --mode\n",
			       json_string_value(json_object_get(meta, "mode_override")));
		fputs(text, stdout);
		if (ovr.n)
			printf("\n# runtime overrides (sluice allow/deny; sluice remove)\n");
		for (size_t i = 0; i < ovr.n; i++) {
			char rule[512], when[32] = "never";
			time_t t = ovr.items[i].expires;

			if (t)
				strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
			override_rule_text(&ovr.items[i], rule, sizeof(rule));
			printf("%s   # expires %s\n", rule, when);
		}
	}
	overrides_free(&ovr);
	free(text);
	json_decref(meta);
	return EXIT_OK;
}

int cmd_policy(int argc, char **argv)
{
	static const char *const subs[] = { "check", "load", "show" };
	const char *sub;
	int ret;

	ret = cli_parse_options("policy", argc, argv, policy_options, NULL, NULL);
	if (ret)
		return ret == -1 ? EXIT_OK : ret;
	if (optind >= argc)
		return cli_usage_error("policy", "expected check, load or show");
	sub = argv[optind];
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		if (strncmp(subs[i], sub, strlen(sub)) != 0)
			continue;
		argc -= optind + 1;
		argv += optind + 1;
		if (i == 0)
			return policy_check(argc, argv);
		if (i == 1)
			return policy_load(argc, argv);
		return policy_show(argc, argv);
	}
	return cli_usage_error("policy", "unknown policy command '%s' (check, load, show)", sub);
}

/* --- overrides ---------------------------------------------------------------------------- */

struct override_opts {
	const char *command;
	uint64_t for_seconds;
	const char *name;
};

static int override_option(int opt, const char *arg, void *ctx)
{
	struct override_opts *o = ctx;

	if (opt == OPT_FOR) {
		if (parse_duration(arg, &o->for_seconds))
			return cli_usage_error(o->command,
					       "--for needs a duration such as 90s, 15m, 2h, 1d, 1w; not '%s'",
					       arg);
		return 0;
	}
	if (opt == OPT_NAME) {
		o->name = arg;
		return 0;
	}
	return EXIT_USAGE;
}

static const struct option override_options[] = {
	{ "for", required_argument, NULL, OPT_FOR },
	{ "name", required_argument, NULL, OPT_NAME },
	CLI_COMMON_OPTIONS,
};

/* Validate TARGET [PROTO [PORTS]] by parsing the rule it makes; fill o. */
static int build_override(const char *command, __u8 action, int argc, char **argv,
			  const struct override_opts *opts, struct override *o)
{
	char rule[512], err[POLICY_ERROR_MAX];
	struct prefix pfx;
	struct policy p;
	size_t col;
	int ret;

	memset(o, 0, sizeof(*o));
	if (argc < 1 || argc > 3)
		return cli_usage_error(command, "expected TARGET [PROTO [PORTS]]");
	/* A prefix, not a set: an override must mean the same under any later policy. */
	if (prefix_parse(argv[0], &pfx, err, sizeof(err), &col))
		return cli_usage_error(command, "%s", err);
	o->action = action;
	/* Canonical, so that 2001:db8:d:0::10 and 2001:db8:d::10/128 are one override. */
	if (pfx.prefixlen == 128)
		addr_format(&pfx.addr, o->target, sizeof(o->target));
	else
		prefix_format(&pfx, o->target, sizeof(o->target));
	if (snprintf(o->protocols, sizeof(o->protocols), "%s", argc > 1 ? argv[1] : "") >=
		    (int)sizeof(o->protocols) ||
	    snprintf(o->ports, sizeof(o->ports), "%s", argc > 2 ? argv[2] : "") >=
		    (int)sizeof(o->ports))
		return cli_usage_error(command, "argument too long");
	if (opts->name) {
		snprintf(o->name, sizeof(o->name), "%s", opts->name);
	} else {
		/*
		 * Derived from everything that identifies the override, so two overrides never
		 * share a name; a long one keeps its head and a hash of the whole.
		 */
		char full[512];
		unsigned long h = 5381;

		snprintf(full, sizeof(full), "override:%s:%s%s%s%s%s", verdict_name(action),
			 o->target, o->protocols[0] ? ":" : "", o->protocols, o->ports[0] ? ":" : "",
			 o->ports);
		for (const char *c = full; *c; c++)
			h = h * 33 + (unsigned char)*c;
		if (strlen(full) < sizeof(o->name))
			snprintf(o->name, sizeof(o->name), "%s", full);
		else
			snprintf(o->name, sizeof(o->name), "%.54s:%08lx", full, h & 0xffffffff);
		for (char *c = o->name; *c; c++)
			if (*c == '/' || *c == ',')
				*c = '_'; /* a derived name stays a valid rule name */
	}
	o->expires = opts->for_seconds ? (int64_t)time(NULL) + (int64_t)opts->for_seconds : 0;
	override_rule_text(o, rule, sizeof(rule));
	policy_init(&p);
	ret = policy_add_rule_text(&p, "override", rule, err);
	policy_free(&p);
	if (ret) {
		/* "override:1:COL: message": the column counts in the rule we built; drop it. */
		const char *msg = strstr(err, ": ");

		return cli_usage_error(command, "%s", msg ? msg + 2 : err);
	}
	return 0;
}

static bool same_match(const struct override *a, const struct override *b)
{
	return strcmp(a->target, b->target) == 0 && strcmp(a->protocols, b->protocols) == 0 &&
	       strcmp(a->ports, b->ports) == 0;
}

/*
 * Apply the stored overrides at once where sluice is loaded: by the running daemon, which
 * changes only the entries under the override's prefix, or else by reinstalling the policy
 * in force with them.
 */
static int apply_overrides(void)
{
	struct apply_result res;
	struct pinned_maps m;
	struct policy_maps maps;
	char source[PATH_MAX];
	json_t *reply;
	int ret;

	ret = control_call(cli.state_dir, "sync-overrides", &reply);
	if (!ret) {
		if (!json_is_true(json_object_get(reply, "ok"))) {
			pr_err("the daemon could not apply the change: %s (see its log)",
			       json_string_value(json_object_get(reply, "error")) ?: "?");
			json_decref(reply);
			return EXIT_FAIL;
		}
		pr_info("in force as generation %lld (%lld overrides)",
			(long long)json_integer_value(json_object_get(reply, "generation")),
			(long long)json_integer_value(json_object_get(reply, "overrides")));
		json_decref(reply);
		return EXIT_OK;
	}
	if (ret != -ENOENT && ret != -ECONNREFUSED)
		pr_warn("cannot reach the daemon (%s): applying the change here", strerror(-ret));
	if (policy_source(cli.state_dir, source, sizeof(source)) || open_policy_maps(&m, &maps)) {
		pr_warn("sluice is not loaded here: the change is stored and takes effect when "
			"'sluice run' starts");
		return EXIT_OK;
	}
	ret = policy_apply(cli.state_dir, &maps, POLICY_IN_FORCE, POLICY_MODE_KEEP, &res);
	pinned_maps_close(&m);
	if (ret)
		return EXIT_FAIL;
	pr_info("in force as generation %u (%zu overrides)", res.generation, res.overrides);
	return EXIT_OK;
}

static int override_command(const char *command, int argc, char **argv)
{
	struct override_opts opts = { .command = command };
	struct override_list l, before;
	struct override o;
	int ret, lock;
	bool removing = strcmp(command, "remove") == 0;

	ret = cli_parse_options(command, argc, argv, override_options, override_option, &opts);
	if (ret)
		return ret == -1 ? EXIT_OK : ret;
	if (removing && (opts.for_seconds || opts.name))
		return cli_usage_error(command, "remove takes no --for or --name");
	ret = build_override(command, command[0] == 'a' ? SLUICE_VERDICT_ALLOW : SLUICE_VERDICT_DENY,
			     argc - optind, argv + optind, &opts, &o);
	if (ret)
		return ret;
	if (cli_require_privileges(command))
		return EXIT_FAIL;
	/* The lock covers read-modify-write of the list; policy_apply takes it again. */
	lock = state_lock_writers(cli.state_dir);
	if (lock < 0)
		return EXIT_FAIL;
	ret = overrides_load(cli.state_dir, &l, true);
	if (!ret && (ret = overrides_load(cli.state_dir, &before, false)))
		overrides_free(&l);
	if (ret) {
		close(lock);
		return EXIT_FAIL;
	}
	size_t kept = 0;
	bool found = false;

	for (size_t i = 0; i < l.n; i++) {
		/* One override per target/protocols/ports: a new one replaces the old. */
		if (same_match(&l.items[i], &o)) {
			found = true;
			continue;
		}
		l.items[kept++] = l.items[i];
	}
	l.n = kept;
	if (removing && !found) {
		pr_err("no override for %s%s%s%s%s", o.target, o.protocols[0] ? " " : "", o.protocols,
		       o.ports[0] ? " " : "", o.ports);
		ret = EXIT_FAIL;
		goto out;
	}
	if (!removing) {
		for (size_t i = 0; i < l.n; i++) {
			if (strcmp(l.items[i].name, o.name) == 0) {
				pr_err("name '%s' is already used by the override for %s", o.name,
				       l.items[i].target);
				ret = EXIT_FAIL;
				goto out;
			}
		}
		if (l.n >= OVERRIDES_MAX) {
			pr_err("at most %d overrides", OVERRIDES_MAX);
			ret = EXIT_FAIL;
			goto out;
		}
		l.items[l.n++] = o; /* room: overrides_load leaves one spare */
	}
	/* Saved under the lock; applied after it (policy_apply takes it again itself). */
	ret = overrides_save(cli.state_dir, &l) ? EXIT_FAIL : EXIT_OK;
	close(lock);
	lock = -1;
	if (ret == EXIT_OK && (ret = apply_overrides()) != EXIT_OK) {
		/*
		 * Not in force (say its name clashes with a rule of the policy): put the list
		 * back, so a rejected override never blocks later changes or shows as active.
		 */
		lock = state_lock_writers(cli.state_dir);
		if (lock < 0 || overrides_save(cli.state_dir, &before))
			pr_err("cannot restore the previous overrides; check 'sluice policy show'");
		else
			pr_err("the change was not applied; the overrides are as before");
	}
out:
	overrides_free(&l);
	overrides_free(&before);
	if (lock >= 0)
		close(lock);
	return ret;
}

int cmd_allow(int argc, char **argv)
{
	return override_command("allow", argc, argv);
}

int cmd_deny(int argc, char **argv)
{
	return override_command("deny", argc, argv);
}

int cmd_remove(int argc, char **argv)
{
	return override_command("remove", argc, argv);
}

// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Health: the attachments held against the configuration, for the daemon's log and status. */
#include <fnmatch.h>
#include <stdarg.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>

#include "health.h"
#include "log.h"

static json_t *list_json(const struct config_list *l)
{
	json_t *a = json_array();

	for (size_t i = 0; i < l->n; i++)
		json_array_append_new(a, json_string(l->items[i].text));
	return a;
}

json_t *health_config_json(const struct daemon_config *cfg)
{
	return json_pack("{s:s?,s:o,s:o,s:s?,s:s,s:s,s:o,s:s?}", "file",
			 cfg->file[0] ? cfg->file : NULL, "interfaces", list_json(&cfg->ifaces), "xdp",
			 list_json(&cfg->xdp), "mode",
			 cfg->mode < 0 ? NULL : cfg->mode ? "audit" : "enforce", "policy",
			 cfg->policy.text, "metrics", cfg->metrics.text, "events",
			 list_json(&cfg->events), "connect_hooks",
			 cfg->connect_hooks.text[0] ? cfg->connect_hooks.text : NULL);
}

/* The first pattern of config's list ("interfaces", "xdp") that name matches, or NULL. */
static const char *configured_as(json_t *config, const char *list, const char *name)
{
	json_t *p;
	size_t i;

	json_array_foreach(json_object_get(config, list), i, p)
		if (fnmatch(json_string_value(p), name, 0) == 0)
			return json_string_value(p);
	return NULL;
}

static const char *error_of(json_t *errors, unsigned ifindex)
{
	json_t *e;
	size_t i;

	json_array_foreach(errors, i, e)
		if (json_integer_value(json_object_get(e, "ifindex")) == ifindex)
			return json_string_value(json_object_get(e, "error"));
	return NULL;
}

static json_t *hooks_of(const struct attachment *att, size_t natt, unsigned ifindex, bool *egress,
		        bool *xdp)
{
	json_t *hooks = json_array();

	*egress = *xdp = false;
	for (size_t i = 0; i < natt; i++) {
		if (att[i].ifindex != ifindex || att[i].stale)
			continue;
		*egress |= strcmp(att[i].hook, "tc_egress") == 0;
		*xdp |= strcmp(att[i].hook, "xdp") == 0;
		json_array_append_new(hooks,
				      json_pack("{s:s,s:s,s:I,s:I}", "hook", att[i].hook, "attach",
						attach_kind_name(att[i].kind), "prog_id",
						(json_int_t)att[i].prog_id, "link_id",
						(json_int_t)att[i].link_id));
	}
	return hooks;
}

static void degraded(json_t *list, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void degraded(json_t *list, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_array_append_new(list, json_string(msg));
}

json_t *health_assess(json_t *config, json_t *errors, const struct attachment *att, size_t natt,
		      json_t *connect_hooks)
{
	const char *cgroup = json_string_value(json_object_get(config, "connect_hooks"));
	json_t *rows = json_array(), *bad = json_array(), *p;
	struct if_nameindex *ifs = if_nameindex();
	size_t i;

	for (struct if_nameindex *it = ifs; it && it->if_index; it++) {
		const char *pattern = configured_as(config, "interfaces", it->if_name);
		const char *xdp_pattern = configured_as(config, "xdp", it->if_name);
		const char *err = error_of(errors, it->if_index);
		bool egress, xdp;
		json_t *hooks = hooks_of(att, natt, it->if_index, &egress, &xdp);
		bool missing = (pattern && !egress) || (xdp_pattern && !xdp);

		if (!pattern && !xdp_pattern && json_array_size(hooks) == 0) {
			json_decref(hooks);
			continue;
		}
		if (pattern && !egress)
			degraded(bad, "%s: configured (%s) but NOT attached: %s", it->if_name,
				 pattern, err ? err : "no tc egress program on it");
		if (xdp_pattern && !xdp)
			degraded(bad, "%s: configured for xdp (%s) but XDP is NOT attached: %s; "
				      "forwarded traffic is NOT policed",
				 it->if_name, xdp_pattern, err ? err : "no XDP program on it");
		json_array_append_new(rows, json_pack("{s:s,s:I,s:s?,s:s?,s:o,s:s?}", "iface",
						      it->if_name, "ifindex",
						      (json_int_t)it->if_index, "configured",
						      pattern, "xdp_configured", xdp_pattern,
						      "hooks", hooks, "error",
						      missing ? err : NULL));
	}
	/* What is configured but matches nothing present. */
	for (int l = 0; l < 2; l++) {
		const char *list = l ? "xdp" : "interfaces";

		json_array_foreach(json_object_get(config, list), i, p) {
			const char *pattern = json_string_value(p);
			bool found = false;

			for (struct if_nameindex *it = ifs; it && it->if_index && !found; it++)
				found = fnmatch(pattern, it->if_name, 0) == 0;
			if (found)
				continue;
			if (config_is_pattern(pattern)) {
				degraded(bad, "%spattern '%s' matches no interface", l ? "xdp " : "",
					 pattern);
				continue;
			}
			degraded(bad, "%s: configured%s, but there is no such interface", pattern,
				 l ? " for xdp" : "");
			json_array_append_new(rows, json_pack("{s:s,s:n,s:s,s:[],s:s}", "iface",
							      pattern, "ifindex",
							      l ? "xdp_configured" : "configured",
							      pattern, "hooks", "error",
							      "no such interface"));
		}
	}
	/* Four hooks (connect4/6, sendmsg4/6) on the configured cgroup, or it is degraded. */
	if (cgroup && json_array_size(connect_hooks) < 4)
		degraded(bad, "connect hooks configured on %s but %zu of 4 attached", cgroup,
			 json_array_size(connect_hooks));
	for (size_t k = 0; k < natt; k++)
		if (att[k].stale)
			degraded(bad, "pin %s_%u: interface %u is gone (stale pin)", att[k].hook,
				 att[k].ifindex, att[k].ifindex);
	if (ifs)
		if_freenameindex(ifs);
	return json_pack("{s:o,s:o}", "interfaces", rows, "degraded", bad);
}

static bool contains(json_t *list, json_t *s)
{
	json_t *v;
	size_t i;

	json_array_foreach(list, i, v)
		if (json_equal(v, s))
			return true;
	return false;
}

void health_log_changes(json_t *before, json_t *now)
{
	json_t *v;
	size_t i;

	json_array_foreach(now, i, v)
		if (!contains(before, v))
			pr_warn("DEGRADED: %s", json_string_value(v));
	json_array_foreach(before, i, v)
		if (!contains(now, v))
			pr_info("recovered: %s", json_string_value(v));
}

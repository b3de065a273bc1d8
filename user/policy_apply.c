// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* The policy in force: source + overrides -> compiled -> installed, with its state files. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>

#include "log.h"
#include "pins.h"
#include "policy_apply.h"
#include "state.h"

#define STATE_POLICY "policy.json"
#define STATE_SNAPSHOT "policy.snapshot"
#define STATE_OVERRIDES "overrides.json"

static json_t *load_state_json(const char *state_dir, const char *name, int *err)
{
	char path[PATH_MAX];
	json_error_t jerr;
	json_t *doc;

	*err = 0;
	if (pin_path(path, sizeof(path), state_dir, NULL, name) < 0) {
		*err = -ENAMETOOLONG;
		return NULL;
	}
	if (access(path, F_OK) < 0) {
		*err = errno == ENOENT ? 0 : -errno;
		return NULL;
	}
	doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!doc) {
		pr_err("cannot read %s: %s (line %d)", path, jerr.text, jerr.line);
		*err = -EINVAL;
	}
	return doc;
}

/* --- overrides ---------------------------------------------------------------------------- */

void overrides_free(struct override_list *l)
{
	free(l->items);
	l->items = NULL;
	l->n = 0;
}

static int copy_field(json_t *o, const char *key, char *dst, size_t len)
{
	const char *v = json_string_value(json_object_get(o, key));

	if (!v || strlen(v) >= len)
		return -EINVAL;
	memcpy(dst, v, strlen(v) + 1);
	return 0;
}

int overrides_load(const char *state_dir, struct override_list *l, bool drop_expired)
{
	int64_t now = time(NULL);
	json_t *doc, *item;
	size_t i;
	int err;

	l->items = NULL;
	l->n = 0;
	doc = load_state_json(state_dir, STATE_OVERRIDES, &err);
	if (!doc) {
		if (err)
			return err;
		/* No file yet: an empty list, with the spare slot callers may append into. */
		l->items = calloc(1, sizeof(*l->items));
		return l->items ? 0 : -ENOMEM;
	}
	if (!json_is_array(doc) || json_array_size(doc) > OVERRIDES_MAX) {
		json_decref(doc);
		pr_err("%s/%s: not a list of at most %d overrides", state_dir, STATE_OVERRIDES,
		       OVERRIDES_MAX);
		return -EINVAL;
	}
	l->items = calloc(json_array_size(doc) + 1, sizeof(*l->items));
	if (!l->items) {
		json_decref(doc);
		return -ENOMEM;
	}
	json_array_foreach(doc, i, item) {
		struct override *o = &l->items[l->n];
		const char *action = json_string_value(json_object_get(item, "action"));

		if (!action || (strcmp(action, "allow") && strcmp(action, "deny")) ||
		    copy_field(item, "target", o->target, sizeof(o->target)) ||
		    copy_field(item, "protocols", o->protocols, sizeof(o->protocols)) ||
		    copy_field(item, "ports", o->ports, sizeof(o->ports)) ||
		    copy_field(item, "name", o->name, sizeof(o->name)) ||
		    !json_is_integer(json_object_get(item, "expires"))) {
			pr_err("%s/%s: override %zu is malformed", state_dir, STATE_OVERRIDES, i + 1);
			json_decref(doc);
			overrides_free(l);
			return -EINVAL;
		}
		o->action = action[0] == 'a' ? SLUICE_VERDICT_ALLOW : SLUICE_VERDICT_DENY;
		o->expires = json_integer_value(json_object_get(item, "expires"));
		if (drop_expired && o->expires && o->expires <= now)
			continue;
		l->n++;
	}
	json_decref(doc);
	return 0;
}

int overrides_save(const char *state_dir, const struct override_list *l)
{
	json_t *doc = json_array();
	char *text;
	int err;

	for (size_t i = 0; i < l->n; i++) {
		const struct override *o = &l->items[i];

		json_array_append_new(doc, json_pack("{s:s,s:s,s:s,s:s,s:s,s:I}", "action",
						     verdict_name(o->action), "target", o->target,
						     "protocols", o->protocols, "ports", o->ports,
						     "name", o->name, "expires",
						     (json_int_t)o->expires));
	}
	text = json_dumps(doc, JSON_INDENT(2));
	json_decref(doc);
	if (!text)
		return -ENOMEM;
	err = state_write_file(state_dir, STATE_OVERRIDES, text, strlen(text));
	free(text);
	return err;
}

void override_rule_text(const struct override *o, char *buf, size_t len)
{
	snprintf(buf, len, "%s %s%s%s%s%s name %s", verdict_name(o->action), o->target,
		 o->protocols[0] ? " " : "", o->protocols, o->ports[0] ? " " : "", o->ports,
		 o->name);
}

int64_t overrides_next_expiry(const struct override_list *l)
{
	int64_t next = 0;

	for (size_t i = 0; i < l->n; i++)
		if (l->items[i].expires && (!next || l->items[i].expires < next))
			next = l->items[i].expires;
	return next;
}

/* --- applying ------------------------------------------------------------------------------ */

int policy_source(const char *state_dir, char *buf, size_t len)
{
	int err;
	json_t *doc = load_state_json(state_dir, STATE_POLICY, &err);
	const char *src;

	if (!doc)
		return err ? err : -ENOENT;
	src = json_string_value(json_object_get(doc, "source"));
	err = src && strlen(src) < len ? 0 : -ENOENT;
	if (!err)
		memcpy(buf, src, strlen(src) + 1);
	json_decref(doc);
	return err;
}

/* The stored mode override: -1 none. */
static int stored_mode(const char *state_dir)
{
	int err;
	json_t *doc = load_state_json(state_dir, STATE_POLICY, &err);
	const char *m = doc ? json_string_value(json_object_get(doc, "mode_override")) : NULL;
	int mode = !m ? -1 : strcmp(m, "audit") == 0 ? SLUICE_MODE_AUDIT : SLUICE_MODE_ENFORCE;

	json_decref(doc);
	return mode;
}

static int write_policy_state(const char *state_dir, const char *snapshot, size_t snap_len,
			      const char *source, __u32 generation, int mode_override)
{
	char stamp[32], *text;
	time_t now = time(NULL);
	json_t *doc;
	int err;

	err = state_write_file(state_dir, STATE_SNAPSHOT, snapshot, snap_len);
	if (err)
		return err;
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
	doc = json_pack("{s:s,s:I,s:s,s:I}", "source", source, "generation", (json_int_t)generation,
			"loaded_at", stamp, "loaded_at_unix", (json_int_t)now);
	if (mode_override >= 0)
		json_object_set_new(doc, "mode_override",
				    json_string(mode_override == SLUICE_MODE_AUDIT ? "audit"
										  : "enforce"));
	text = json_dumps(doc, JSON_INDENT(2));
	json_decref(doc);
	if (!text)
		return -ENOMEM;
	err = state_write_file(state_dir, STATE_POLICY, text, strlen(text));
	free(text);
	return err;
}

/* The policy in force as it was loaded (written by policy_format, so it parses back). */
static int parse_snapshot(const char *state_dir, struct policy *p, char err[POLICY_ERROR_MAX])
{
	char path[PATH_MAX], *text = NULL;
	size_t len = 0;
	FILE *f, *mem;
	int ret;

	if (pin_path(path, sizeof(path), state_dir, NULL, STATE_SNAPSHOT) < 0)
		return -ENAMETOOLONG;
	f = fopen(path, "re");
	if (!f) {
		ret = -errno;
		snprintf(err, POLICY_ERROR_MAX, "cannot read the policy in force (%.200s): %s", path,
			 strerror(-ret));
		return ret;
	}
	mem = open_memstream(&text, &len);
	if (mem) {
		char buf[8192];
		size_t n;

		while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
			fwrite(buf, 1, n, mem);
		fclose(mem);
	}
	fclose(f);
	if (!text)
		return -ENOMEM;
	ret = policy_parse_text(path, text, p, err);
	free(text);
	return ret;
}

int policy_apply(const char *state_dir, const struct policy_maps *maps, const char *path,
		 int mode_override, struct apply_result *res)
{
	char err[POLICY_ERROR_MAX], source[PATH_MAX], rule[512];
	struct override_list ovr = {};
	struct compiled_policy cp = {};
	char *snapshot = NULL;
	size_t snap_len = 0;
	struct policy p;
	FILE *snap;
	int ret, lock;

	memset(res, 0, sizeof(*res));
	lock = state_lock_writers(state_dir);
	if (lock < 0)
		return lock;
	if (path && path != POLICY_IN_FORCE) {
		/* Remember it absolutely: the daemon and later commands run from elsewhere. */
		if (!realpath(path, source)) {
			ret = -errno;
			pr_err("cannot open policy %s: %s", path, strerror(-ret));
			goto out_unlock;
		}
	} else if ((ret = policy_source(state_dir, source, sizeof(source)))) {
		pr_err("no policy has been loaded (sluice run --policy FILE, or sluice policy load FILE)");
		goto out_unlock;
	}
	if (mode_override == POLICY_MODE_KEEP)
		mode_override = stored_mode(state_dir);
	else if (mode_override == POLICY_MODE_FILE)
		mode_override = -1;

	if (path == POLICY_IN_FORCE)
		ret = parse_snapshot(state_dir, &p, err);
	else
		ret = policy_parse_file(path ? path : source, &p, err);
	if (ret) {
		pr_err("%s", err);
		goto out_unlock;
	}
	/* The snapshot is the file as loaded, before the mode override and the overrides. */
	snap = open_memstream(&snapshot, &snap_len);
	if (!snap) {
		ret = -errno;
		policy_free(&p);
		goto out_unlock;
	}
	policy_format(&p, snap);
	fclose(snap);
	if (mode_override >= 0)
		p.mode = mode_override;
	ret = overrides_load(state_dir, &ovr, true);
	for (size_t i = 0; !ret && i < ovr.n; i++) {
		override_rule_text(&ovr.items[i], rule, sizeof(rule));
		ret = policy_add_rule_text(&p, "override", rule, err);
		if (ret)
			pr_err("override '%s' cannot be applied: %s", rule, err);
	}
	if (!ret)
		ret = policy_next_generation(maps->config_fd, &res->generation);
	if (!ret && (ret = policy_compile(&p, res->generation, &cp)))
		pr_err("cannot compile %s: %s", source, strerror(-ret));
	/* Names first: a reader may see names for a generation not yet active, never the reverse. */
	if (!ret)
		ret = state_write_rules(state_dir, &p, res->generation);
	if (!ret)
		ret = policy_install(maps, &cp, res->generation);
	if (!ret) {
		/* In force: record what it is. A failure here is reported but changes nothing. */
		write_policy_state(state_dir, snapshot, snap_len, source, res->generation,
				   mode_override);
		overrides_save(state_dir, &ovr); /* expired ones are gone now */
		res->rules = p.nidents;
		res->destinations = p.nrules;
		res->prefixes = cp.n;
		res->sets = p.nsets;
		res->classes = cp.nclasses;
		res->overrides = ovr.n;
		snprintf(res->source, sizeof(res->source), "%s", source);
	}
	compiled_policy_free(&cp);
	overrides_free(&ovr);
	policy_free(&p);
	free(snapshot);
out_unlock:
	close(lock);
	return ret;
}

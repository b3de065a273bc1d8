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
#include <bpf/bpf.h>
#include <jansson.h>

#include "budget.h"
#include "log.h"
#include "pins.h"
#include "policy_apply.h"
#include "policy_ranges.h"
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

/* Record an in-place change's generation in policy.json (what `policy show` reports). */
static void write_generation(const char *state_dir, __u32 generation)
{
	int err;
	json_t *doc = load_state_json(state_dir, STATE_POLICY, &err);
	char *text;

	if (!doc)
		return;
	json_object_set_new(doc, "generation", json_integer(generation));
	text = json_dumps(doc, JSON_INDENT(2));
	json_decref(doc);
	if (text && state_write_file(state_dir, STATE_POLICY, text, strlen(text)))
		pr_warn("cannot record generation %u in %s/%s", generation, state_dir, STATE_POLICY);
	free(text);
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

/* Forget what live holds (it no longer describes the kernel). */
static void live_clear(struct policy_live *live)
{
	if (!live)
		return;
	if (live->valid)
		policy_free(&live->p);
	overrides_free(&live->ovr);
	free(live->ovr_ident);
	compiled_policy_free(&live->kernel);
	policy_grace_end(&live->grace[0]);
	policy_grace_end(&live->grace[1]);
	memset(live, 0, sizeof(*live));
}

/* After a switch: the older grace period gives way to one begun now. */
static void live_switched(struct policy_live *live, const struct policy_maps *maps)
{
	struct policy_grace *g = &live->grace[live->grace_older];

	policy_grace_end(g); /* begun two switches ago: over long since */
	if (policy_grace_begin(maps, g) < 0)
		memset(g, 0, sizeof(*g)); /* none: the next change waits for its own */
	live->grace_older ^= 1;
}

void policy_live_free(struct policy_live *live)
{
	live_clear(live);
}

static int apply_full(const char *state_dir, const struct policy_maps *maps, const char *path,
		      int mode_override, struct apply_result *res, struct policy_live *live)
{
	char err[POLICY_ERROR_MAX], source[PATH_MAX], rule[512];
	struct override_list ovr = {};
	struct compiled_policy cp = {};
	struct policy_grace grace;
	char *snapshot = NULL;
	size_t snap_len = 0, base_idents;
	struct policy p;
	FILE *snap;
	int ret, lock;

	memset(res, 0, sizeof(*res));
	live_clear(live); /* whatever happens, the kernel is about to move on */
	lock = state_lock_writers(state_dir);
	if (lock < 0)
		return lock;
	/* The install's wait for running programs, done while the file is read and compiled. */
	ret = policy_grace_begin(maps, &grace);
	if (ret) {
		close(lock);
		return ret;
	}
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
	base_idents = p.nidents;
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
		ret = state_write_budgets(state_dir, &p);
	if (!ret)
		ret = policy_install(maps, &cp, res->generation, &grace);
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
		res->port_entries = cp.nports;
		res->overrides = ovr.n;
		snprintf(res->source, sizeof(res->source), "%s", source);
		if (live && (live->ovr_ident = calloc(ovr.n + 1, sizeof(*live->ovr_ident)))) {
			/* Kept for in-place changes: each override added one identity, in order. */
			for (size_t i = 0; i < ovr.n; i++)
				live->ovr_ident[i] = base_idents + i;
			live->p = p;
			live->base_idents = base_idents;
			live->ovr = ovr;
			live->generation = res->generation;
			live->valid = true;
			/* The entries in order: the next change's base. */
			if (compiled_entries_sort(cp.entries, cp.n) == 0) {
				live->kernel = (struct compiled_policy){
					.entries = cp.entries, .n = cp.n, .ports = cp.ports,
					.nports = cp.nports, .nclasses = cp.nclasses
				};
				cp.entries = NULL;
				cp.n = 0;
				cp.ports = NULL;
				cp.nports = 0;
			}
			/*
			 * The install's own grace period began under the generation before this
			 * one: the one the next change needs. Kept, and a new one begun for the
			 * change after.
			 */
			policy_grace_end(&grace);
			live->grace[0] = grace;
			live->grace_older = 1;
			live_switched(live, maps); /* begins grace[1]; grace[0] is the older */
			memset(&p, 0, sizeof(p));
			memset(&ovr, 0, sizeof(ovr));
		}
	}
	compiled_policy_free(&cp);
	overrides_free(&ovr);
	policy_free(&p);
	free(snapshot);
out_unlock:
	policy_grace_end(&grace);
	close(lock);
	return ret;
}

int policy_apply(const char *state_dir, const struct policy_maps *maps, const char *path,
		 int mode_override, struct apply_result *res)
{
	return apply_full(state_dir, maps, path, mode_override, res, NULL);
}

int policy_live_load(struct policy_live *live, const char *state_dir,
		     const struct policy_maps *maps, const char *path, int mode_override,
		     struct apply_result *res)
{
	return apply_full(state_dir, maps, path, mode_override, res, live);
}

/* --- in-place changes ---------------------------------------------------------------------- */

static bool same_override(const struct override *a, const struct override *b)
{
	return a->action == b->action && a->expires == b->expires &&
	       strcmp(a->target, b->target) == 0 && strcmp(a->protocols, b->protocols) == 0 &&
	       strcmp(a->ports, b->ports) == 0 && strcmp(a->name, b->name) == 0;
}

static bool override_in(const struct override *o, const struct override_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		if (same_override(o, &l->items[i]))
			return true;
	return false;
}

/* The prefixes whose entries a change touches, one per distinct target. */
struct touched {
	struct prefix *x;
	size_t n;
};

static int touch(struct touched *t, const char *target)
{
	char msg[128];
	size_t col;
	struct prefix x;

	/* Stored targets are canonical prefixes (build_override wrote them). */
	if (prefix_parse(target, &x, msg, sizeof(msg), &col))
		return -EINVAL;
	for (size_t i = 0; i < t->n; i++)
		if (t->x[i].prefixlen == x.prefixlen && !memcmp(&t->x[i].addr, &x.addr, 16))
			return 0;
	t->x[t->n++] = x;
	return 0;
}

/* Take an override's rules out of p. Its identity stays (ids are positions) but loses its name. */
static void drop_ident(struct policy *p, __u32 ident)
{
	size_t kept = 0;

	for (size_t i = 0; i < p->nrules; i++)
		if (p->rules[i].ident != ident)
			p->rules[kept++] = p->rules[i];
	p->nrules = kept;
	p->idents[ident].name[0] = '\0'; /* free for a later override; no rule refers to it */
}

/*
 * Append override o to p as its own identity. Parsed alone and its name checked against p's
 * by a scan: policy_add_rule_text on p would index all of p's names (100k rules) each time.
 */
static int add_override(struct policy *p, const struct override *o)
{
	char rule[512], err[POLICY_ERROR_MAX];
	struct prefix *dsts = NULL;
	struct policy one;
	int ret;

	policy_init(&one);
	override_rule_text(o, rule, sizeof(rule));
	ret = policy_add_rule_text(&one, "override", rule, err);
	if (ret) {
		pr_err("override '%s' cannot be applied: %s", rule, err);
		goto out;
	}
	const struct policy_ident *id = &one.idents[0];

	for (size_t i = 0; i < p->nidents; i++) {
		if (strcmp(p->idents[i].name, id->name) == 0) {
			pr_err("override '%s' cannot be applied: name '%s' is already used by %s",
			       rule, id->name, p->idents[i].target);
			ret = -EEXIST;
			goto out;
		}
	}
	dsts = calloc(one.nrules + 1, sizeof(*dsts));
	ret = -ENOMEM;
	if (!dsts)
		goto out;
	for (size_t i = 0; i < one.nrules; i++)
		dsts[i] = one.rules[i].dst;
	ret = policy_add_rules(p, id->action, dsts, one.nrules,
			       id->match ? &one.matches[id->match] : NULL, id->name, id->target, 1);
out:
	free(dsts);
	policy_free(&one);
	return ret;
}

/*
 * Bring live->p from its overrides to those in `want`, and collect what the kernel must
 * change: for each touched prefix, the old entries at or under it (to delete those the new
 * policy no longer has) and the new ones.
 */
static int live_patch(struct policy_live *live, const char *state_dir,
		      const struct policy_maps *maps, const struct override_list *want,
		      __u32 generation, size_t *changed)
{
	struct compiled_policy all = {};
	struct touched t = { .x = calloc(live->ovr.n + want->n + 1, sizeof(*t.x)) };
	struct sluice_lpm_key *removed = NULL;
	struct compiled_policy merged;
	size_t nremoved = 0, old_idents = live->p.nidents;
	__u32 *idents = calloc(want->n + 1, sizeof(*idents));
	int ret = t.x && idents ? 0 : -ENOMEM;

	for (size_t i = 0; !ret && i < live->ovr.n; i++)
		if (!override_in(&live->ovr.items[i], want))
			ret = touch(&t, live->ovr.items[i].target);
	for (size_t i = 0; !ret && i < want->n; i++)
		if (!override_in(&want->items[i], &live->ovr))
			ret = touch(&t, want->items[i].target);
	*changed = t.n;
	if (ret || !t.n)
		goto out;

	/* The entries under each touched prefix now, to know which ones disappear. */
	for (size_t k = 0; !ret && k < t.n; k++) {
		struct compiled_policy cp;

		ret = policy_compile_under(&live->p, &t.x[k], 0, &cp);
		if (ret)
			break;
		void *grown = realloc(removed, (nremoved + cp.n + 1) * sizeof(*removed));

		if (!grown) {
			compiled_policy_free(&cp);
			ret = -ENOMEM;
			break;
		}
		removed = grown;
		for (size_t i = 0; i < cp.n; i++)
			removed[nremoved++] = cp.entries[i].key;
		compiled_policy_free(&cp);
	}
	if (ret)
		goto out;

	/* The policy with the wanted overrides: drop the gone ones, add the new ones. */
	for (size_t i = 0; i < live->ovr.n; i++)
		if (!override_in(&live->ovr.items[i], want))
			drop_ident(&live->p, live->ovr_ident[i]);
	for (size_t i = 0; !ret && i < want->n; i++) {
		bool kept = false;

		for (size_t j = 0; j < live->ovr.n && !kept; j++) {
			if (same_override(&want->items[i], &live->ovr.items[j])) {
				idents[i] = live->ovr_ident[j];
				kept = true;
			}
		}
		if (kept)
			continue;
		ret = add_override(&live->p, &want->items[i]);
		idents[i] = live->p.nidents - 1;
	}
	if (ret)
		goto out;

	/* The new entries under each touched prefix; a key written again is not removed. */
	for (size_t k = 0; !ret && k < t.n; k++) {
		struct compiled_policy cp;

		ret = policy_compile_under(&live->p, &t.x[k], generation, &cp);
		if (!ret)
			ret = compiled_policy_append(&all, &cp);
		compiled_policy_free(&cp);
	}
	if (ret)
		goto out;
	/* Names first: a reader may see names for rules not yet in force, never the reverse. */
	ret = state_append_rules(state_dir, &live->p, old_idents);
	if (!ret)
		ret = policy_patch(maps, &live->kernel, removed, nremoved, &all, generation,
				   &live->grace[live->grace_older], &merged);
	if (!ret) {
		overrides_free(&live->ovr);
		live->ovr = *want;
		live->ovr_ident = idents;
		idents = NULL;
		live->generation = generation;
		live->port_entries += all.nports;
		compiled_policy_free(&live->kernel);
		live->kernel = merged;
		live_switched(live, maps);
	}
out:
	compiled_policy_free(&all);
	free(removed);
	free(t.x);
	free(idents);
	return ret;
}

int policy_live_sync_overrides(struct policy_live *live, const char *state_dir,
			       const struct policy_maps *maps, struct apply_result *res)
{
	struct override_list want = {}, stored = {};
	struct sluice_config cfg;
	__u32 zero = 0, generation;
	size_t changed = 0;
	int ret, lock;

	memset(res, 0, sizeof(*res));
	lock = state_lock_writers(state_dir);
	if (lock < 0)
		return lock;
	/*
	 * In place only while the kernel holds what live describes (no other writer since) and
	 * the classes left behind by in-place changes stay few; else a full apply.
	 */
	if (!live->valid || !live->kernel.entries || bpf_map_lookup_elem(maps->config_fd, &zero, &cfg) < 0 ||
	    cfg.generation != live->generation || live->port_entries > SLUICE_PORT_MAX / 8)
		goto full;
	ret = overrides_load(state_dir, &want, true);
	if (!ret)
		ret = overrides_load(state_dir, &stored, false);
	if (ret)
		goto out;
	ret = policy_next_generation(maps->config_fd, &generation);
	if (!ret)
		ret = live_patch(live, state_dir, maps, &want, generation, &changed);
	if (ret) {
		/* live may be half-changed, the kernel too: reinstall everything. */
		pr_warn("in-place change failed (%s): reinstalling the policy", strerror(-ret));
		live_clear(live);
		goto full;
	}
	if (stored.n != want.n)
		overrides_save(state_dir, &live->ovr); /* expired ones are gone now */
	res->generation = live->generation;
	res->rules = live->p.nidents;
	res->overrides = live->ovr.n;
	res->changed = changed;
	res->in_place = true;
	res->prefixes = live->kernel.n;
	res->port_entries = live->kernel.nports;
	if (changed)
		write_generation(state_dir, live->generation);
	overrides_free(&stored);
	if (live->ovr.items != want.items)
		overrides_free(&want);
	close(lock);
	return 0;
full:
	overrides_free(&want);
	overrides_free(&stored);
	close(lock);
	return apply_full(state_dir, maps, POLICY_IN_FORCE, POLICY_MODE_KEEP, res, live);
out:
	overrides_free(&want);
	overrides_free(&stored);
	close(lock);
	return ret;
}

/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The policy in force: its source file, the runtime overrides (sluice allow/deny), and
 * applying the two together. Shared by `sluice run`, `sluice policy load` and the override
 * commands, so every path checks, compiles and installs the same way. State lives in the
 * state directory: policy.json (source, generation, load time, mode override),
 * policy.snapshot (the base policy as loaded), overrides.json, rules (names by id).
 */
#ifndef SLUICE_POLICY_APPLY_H
#define SLUICE_POLICY_APPLY_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include "policy.h"
#include "policy_kernel.h"

#define OVERRIDES_MAX 4096

struct override {
	__u8 action;         /* SLUICE_VERDICT_ALLOW / DENY */
	char target[64];     /* address or CIDR */
	char protocols[64];  /* as given, "" for any */
	char ports[128];     /* as given, "" for any */
	char name[POLICY_NAME_MAX];
	int64_t expires;     /* unix time, 0 = never */
};

struct override_list {
	struct override *items;
	size_t n;
};

/*
 * Load overrides.json (missing: empty). Expired ones are dropped when drop_expired. The
 * list always has room for one more item (items[n]).
 */
int overrides_load(const char *state_dir, struct override_list *l, bool drop_expired);
int overrides_save(const char *state_dir, const struct override_list *l);
void overrides_free(struct override_list *l);
/* The override as a policy rule line ("deny 203.0.113.9 tcp 443 name NAME"). */
void override_rule_text(const struct override *o, char *buf, size_t len);
/* Earliest expiry among l (0 if none expires). */
int64_t overrides_next_expiry(const struct override_list *l);

struct apply_result {
	__u32 generation;
	size_t rules, destinations, prefixes, sets, classes, overrides;
	size_t changed; /* in-place changes: prefixes rewritten (0: nothing to do) */
	bool in_place;  /* changed in place (else a full install, when anything was done) */
	size_t port_entries; /* in the policy in force, classes left by overrides included */
	char source[4096];
};

#define POLICY_IN_FORCE ((const char *)1)
#define POLICY_MODE_KEEP (-1) /* keep the stored mode override, if any */
#define POLICY_MODE_FILE (-2) /* drop any override: the file's own mode */

/*
 * Apply the policy at path plus the overrides. path NULL re-reads the source file of the
 * policy in force (SIGHUP); POLICY_IN_FORCE reuses the policy in force as it was loaded
 * (its snapshot), so an override never drags in an unloaded edit of the file. mode_override: POLICY_MODE_KEEP, POLICY_MODE_FILE, or a mode to force from
 * now on (sluice run --mode). Takes the writers' lock. On any error the policy in force and its
 * counters stay as they were, and the error has been logged.
 */
int policy_apply(const char *state_dir, const struct policy_maps *maps, const char *path,
		 int mode_override, struct apply_result *res);

/*
 * The policy in force as the daemon keeps it, so that an override recompiles only the
 * entries at and under its prefix instead of the whole policy (see
 * policy_live_sync_overrides). Valid while the kernel's generation is the one it left.
 */
struct policy_live {
	bool valid;
	struct policy p;          /* the base policy plus the overrides, as installed */
	struct override_list ovr; /* the overrides in p */
	__u32 *ovr_ident;         /* the identity in p of each override */
	size_t base_idents;       /* identities of the base policy: in place, never renamed */
	__u32 generation;         /* the generation its last change left in the kernel */
	size_t port_entries;      /* port entries added in place since the last full install */
	/* The compiled policy in force: entries in order, classes, ports. */
	struct compiled_policy kernel;
	/*
	 * Grace periods begun after each of the last two switches: the next change writes the
	 * bank the one before last retired, so it needs the older of the two, long over when
	 * changes come even a few milliseconds apart.
	 */
	struct policy_grace grace[2];
	unsigned grace_older; /* the index of the older one */
};

/* policy_apply, keeping what was installed in live (emptied first, filled on success). */
int policy_live_load(struct policy_live *live, const char *state_dir,
		     const struct policy_maps *maps, const char *path, int mode_override,
		     struct apply_result *res);
/*
 * Make the kernel's policy match the stored overrides (added, removed, expired): from live
 * when it is current (only the entries under each changed prefix are compiled again, and
 * the changed policy switched in), else by a full apply of the policy in force. Takes the
 * writers' lock. On error the policy in force is whole: the old one or the new one.
 */
int policy_live_sync_overrides(struct policy_live *live, const char *state_dir,
			       const struct policy_maps *maps, struct apply_result *res);
void policy_live_free(struct policy_live *live);

/* The source path of the policy in force, or -ENOENT. */
int policy_source(const char *state_dir, char *buf, size_t len);

#endif

/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The state directory (default /var/lib/sluice, 0700): the writers' lock, the daemon's
 * pid lock, and the rule table that names the rule ids the datapath reports.
 */
#ifndef SLUICE_STATE_H
#define SLUICE_STATE_H

#include <stddef.h>
#include <linux/types.h>
#include "policy.h"

/*
 * Serialize writers of kernel state (policy loads, attach, detach). Blocks until the
 * lock is free; returns the lock's fd (close it to release) or -errno.
 */
int state_lock_writers(const char *state_dir);
/* Claim the one-daemon-per-state-dir lock; -EBUSY (with *pid) if a daemon holds it. */
int state_lock_daemon(const char *state_dir, int *pid);

/*
 * The pid of the daemon holding state_dir's daemon lock: > 0 while it runs, 0 if none does,
 * -errno if the state cannot be read (-EACCES for a user other than root).
 */
int state_daemon_pid(const char *state_dir);

/* Write STATE_DIR/name atomically (temporary file, fsync, rename), mode 0600. */
int state_write_file(const char *state_dir, const char *name, const char *data, size_t len);
/* Record the names of p's rules for generation, atomically (write + rename, 0600). */
int state_write_rules(const char *state_dir, const struct policy *p, __u32 generation);

/*
 * Append the names of p's rules from identity `from` on: an in-place change added them, and
 * the table stays valid for the generations that follow.
 */
int state_append_rules(const char *state_dir, const struct policy *p, size_t from);

struct rule_table {
	__u32 generation;
	char **names;
	size_t n;
};
/* Load the rule table; a missing file gives an empty table (not an error). */
int state_read_rules(const char *state_dir, struct rule_table *t);
/* The identity of rule_id under generation, e.g. "policy.conf:12", "default", "#7". */
const char *rule_table_name(const struct rule_table *t, __u32 generation, __u32 rule_id,
			    char *buf, size_t len);
void rule_table_free(struct rule_table *t);
/*
 * After an in-place change (state_append_rules wrote p's new names to the file): append
 * the same names, p's identities from t->n on, instead of reading 100 000 names again.
 */
int rule_table_append(struct rule_table *t, const struct policy *p);
/* Forget the rule table (after a detach, nothing refers to it). The locks stay. */
void state_remove_rules(const char *state_dir);

#endif

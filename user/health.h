/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Health: what is enforced where, held against what the configuration asks for. The daemon
 * logs each degraded condition as it appears (and when it clears) and records what
 * `sluice status` needs in STATE_DIR/status.json; `sluice status` assesses the same way,
 * from the kernel's attachments, so the two always say the same thing.
 */
#ifndef SLUICE_HEALTH_H
#define SLUICE_HEALTH_H

#include <stddef.h>
#include <jansson.h>

#include "attach.h"
#include "config.h"

#define STATE_STATUS "status.json"

/* The configuration's interfaces as JSON: {"interfaces": [...], "xdp": [...], ...}. */
json_t *health_config_json(const struct daemon_config *cfg);

/*
 * Assess: config as from health_config_json (NULL when unknown), errors an array of
 * {"iface", "ifindex", "error"} (attach failures the daemon saw; may be NULL), att the
 * attachments (attach_list). Returns {"interfaces": [...], "degraded": [...]}, where each
 * interface present that is configured or attached, and each configured name that is
 * missing, has a row: iface, ifindex, configured (the pattern), hooks, error.
 * connect_hooks: the pinned connect-hook links (connect_hooks_json), held against the
 * configuration's connect-hooks cgroup.
 */
json_t *health_assess(json_t *config, json_t *errors, const struct attachment *att, size_t natt,
		      json_t *connect_hooks);

/* Log the degraded conditions in now that were not in before (loudly), and those cleared. */
void health_log_changes(json_t *before, json_t *now);

#endif

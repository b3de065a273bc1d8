/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The interfaces the daemon enforces on: every interface whose name the configuration
 * names or matches, attached as soon as it exists. An attachment belongs to the device
 * (its ifindex), so it follows a rename; a device that is deleted takes its attachment
 * with it, and its pins and counter slot are released; one created again under a
 * configured name is a new device and is attached anew.
 */
#ifndef SLUICE_IFACES_H
#define SLUICE_IFACES_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>
#include <linux/types.h>
#include <jansson.h>

#include "config.h"
#include "datapath.h"

#define IFACES_MAX 256          /* interfaces the daemon tracks (attached or failing) */
#define IFACES_RETRY_SECONDS 30 /* a failed attach is retried at most this often */

struct iface_state {
	__u32 ifindex;
	char name[IF_NAMESIZE];
	int err;             /* 0: attached; else why the last attach failed (-errno) */
	time_t tried;        /* when an attach was last tried */
};

struct iface_set {
	struct iface_state items[IFACES_MAX];
	size_t n;
};

/*
 * Make the attachments follow the configuration and the interfaces present: attach every
 * matching interface not attached yet (new, recreated, or failed earlier and due for a
 * retry), forget interfaces that are gone (pins removed, counter slot freed), follow
 * renames. With full (start and reload: the configuration decides), every matching
 * interface is attached again (which swaps in this build's program on an existing link),
 * attachments to interfaces that match nothing are removed, and stale pins are cleaned.
 * Returns 0, or the first attach error (each interface's is kept in the set).
 */
int ifaces_reconcile(struct iface_set *s, const struct daemon_config *cfg,
		     const struct datapath *dp, const char *pin_dir, const char *state_dir,
		     bool full);

/* The interfaces whose attach failed: [{"iface", "ifindex", "error"}], for health_assess. */
json_t *ifaces_errors_json(const struct iface_set *s);

/* Is some interface due for another attach attempt? */
bool ifaces_retry_due(const struct iface_set *s, time_t now);

#endif

/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The loaded datapath: BPF programs and the maps they share, either pinned under a pin
 * directory (so enforcement outlives the daemon, and the next start adopts the maps) or
 * private to this process (tests, benchmarks).
 */
#ifndef SLUICE_DATAPATH_H
#define SLUICE_DATAPATH_H

#include <stdbool.h>
#include <stddef.h>

#include "attach_cgroup.h"
#include "budget.h"
#include "policy_kernel.h"

struct sluice_bpf;

/* The programs come from one linked object (sluice.bpf.o), so they share every map. */
struct datapath {
	struct sluice_bpf *skel;
	int egress_prog_fd;
	int ingress_prog_fd;
	int xdp_prog_fd;
	int connect_prog_fds[CONNECT_HOOKS]; /* by enum connect_hook */
	int policy_fd; /* two banks of ranges; the generation in config_fd names the one in force */
	int grace_fd;  /* updated to wait for a grace period (policy_kernel.c) */
	int config_fd;
	int dests_fd;
	int totals_fd;
	int ifaces_fd;
	int frags_fd;
	int flows_fd;
	int rules_fd;
	int events_fd;         /* the event ring buffer */
	int event_config_fd;   /* rate limit interval, on/off */
	int event_limits_fd;   /* limiters of events without a destination */
	int event_lost_fd;     /* per-CPU losses by type (datapath writes) */
	int event_reported_fd; /* losses already reported by a daemon (daemon writes) */
	int local_addrs_fd;    /* the node's own addresses, for XDP (daemon writes) */
	int local_gen_fd;      /* their generation (daemon writes) */
	int users_fd;          /* per-uid counters */
	struct budget_maps budget;
};

/*
 * Open and load the programs. With pin_dir, maps are reused from (or pinned to)
 * PIN_DIR/maps/ and the programs are pinned to PIN_DIR/progs/. pin_dir NULL: nothing pinned.
 */
int datapath_load(struct datapath *dp, const char *pin_dir);
void datapath_close(struct datapath *dp);

/* The pinned maps alone, for read commands: -ENOENT when sluice is not loaded there. */
struct pinned_maps {
	int policy_fd, grace_fd, config_fd, dests_fd, totals_fd, ifaces_fd, flows_fd;
	int rules_fd, event_lost_fd;
	int users_fd;
	struct budget_maps budget;
};
int pinned_maps_open(const char *pin_dir, struct pinned_maps *m);
void pinned_maps_close(struct pinned_maps *m);

/* The maps a policy is installed into (policy_kernel.h), from a loaded datapath or its pins. */
struct policy_maps datapath_policy_maps(const struct datapath *dp);
struct policy_maps pinned_policy_maps(const struct pinned_maps *m);

#endif

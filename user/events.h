/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The daemon's event sink: reads the kernel's ring buffer inside the daemon's poll loop,
 * enriches each record, and writes JSON lines to the outputs (stdout, files, syslog) and to
 * the `sluice events` clients. Nothing here ever waits for a reader: every output and
 * client has a bounded queue of pending bytes, and a line that does not fit is dropped and
 * counted, so a stopped client or a full disk cannot hold up the ring buffer (and the
 * datapath never waits for anyone: a full ring buffer is a counted loss).
 */
#ifndef SLUICE_EVENTS_H
#define SLUICE_EVENTS_H

#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sluice/abi.h>

#include "datapath.h"

#define EVENTS_OUTPUTS_MAX 8
/* `sluice events` clients served at once; more are refused. */
#define EVENTS_CLIENTS_MAX 16
/* Poll slots events_pollfds may fill: the ring buffer, outputs, clients. */
#define EVENTS_POLLFDS_MAX (1 + EVENTS_OUTPUTS_MAX + EVENTS_CLIENTS_MAX)

/* `sluice run --events` values: stdout, syslog, off, or a file path. */
struct events_config {
	const char *outputs[EVENTS_OUTPUTS_MAX];
	int noutputs;
	bool off;
	uint64_t interval_ns; /* rate limit per (destination, type); 0: one second */
};

/* Add one --events value to c. Returns 0 or -EINVAL (too many, or off with others). */
int events_config_add(struct events_config *c, const char *value);

/* Counters for the exporter; written by the daemon, read by scrapes under lock. */
struct events_stats {
	pthread_mutex_t lock;
	uint64_t by_type[SLUICE_EVENT_MAX];    /* events written, by type */
	uint64_t suppressed[SLUICE_EVENT_MAX]; /* repeats the kernel held back, by type */
	uint64_t lost;                         /* events the kernel could not deliver */
	uint64_t dropped;                      /* lines a slow output or client missed */
};

struct events;
struct policy;

/*
 * Configure the kernel (interval, on/off), open the outputs and the ring buffer. Returns
 * 0 or -errno (an output that cannot be opened is an error).
 */
int events_start(struct events **out, const struct datapath *dp, const struct events_config *c,
		 struct events_stats *stats, const char *state_dir);
void events_stop(struct events *ev);

/* Fill fds with what the sink waits for; returns how many (at most EVENTS_POLLFDS_MAX). */
int events_pollfds(struct events *ev, struct pollfd *fds);
/* Act on the poll results of the fds events_pollfds filled. */
void events_process(struct events *ev, const struct pollfd *fds, int n);
/* Once a second: report the kernel's new losses as `lost` events. */
void events_tick(struct events *ev);
/* SIGHUP: reopen file outputs (logrotate moved them). */
void events_reopen(struct events *ev);
/*
 * A policy was loaded (ok) or rejected: a `policy` event; reread the rule names. in_place:
 * the policy after a change in place (names only appended, see rule_table_append), else NULL.
 */
void events_policy(struct events *ev, bool ok, const struct policy *in_place);
/*
 * Take over a control connection for `sluice events`: the recent events, then (follow)
 * every new one until the client goes away. Returns 0, or -EBUSY with too many clients
 * (the caller keeps and closes fd).
 */
int events_subscribe(struct events *ev, int fd, bool follow);

#endif

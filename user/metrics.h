/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The Prometheus exporter: /metrics in text format 0.0.4 on libmicrohttpd's own thread, so a
 * scrape never waits for (or holds up) the daemon's policy work. Everything is read from the
 * maps with batch lookups; per-destination series are the top N by bytes plus "other".
 */
#ifndef SLUICE_METRICS_H
#define SLUICE_METRICS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <linux/types.h>
#include "rule_counts.h"

#define METRICS_ADDR_DEFAULT "127.0.0.1:9753"
#define METRICS_TOP_DEFAULT 100
#define METRICS_TOP_MAX 10000

/* What the daemon publishes about the policy; written by the daemon, read by scrapes. */
struct metrics_policy {
	pthread_mutex_t lock;
	uint32_t generation;
	int64_t loaded_at; /* unix seconds of the last successful load or change */
	uint64_t rules, prefixes, port_entries;
	uint64_t errors; /* rejected loads and changes */
	struct rule_counts folded; /* counts of rules from earlier installs, by name */
	struct rule_counts budgets_folded; /* budget crossings of earlier installs (packets) */
	/* What the last scrape showed (exporter thread only): the next never shows less. */
	struct rule_counts rules_shown, budgets_shown;
};

struct dest_scan;
struct budget_maps;
struct events_stats;

/*
 * The in-kernel walk of the destination table (dest_scan.h) and its threshold: the previous
 * scrape's N-th largest byte count. Counters only grow, so every destination of the top N
 * now has at least that many bytes (unless the table evicted the previous ones: then the
 * walk finds fewer than N and is run again without a threshold).
 */
struct metrics_scan {
	struct dest_scan *scan;
	__u64 min_bytes;
};

/* The maps a scrape reads. */
struct metrics_source {
	int dests_fd, totals_fd, ifaces_fd, policy_fd, config_fd, rules_fd;
	const char *state_dir; /* the rule table names the rule counters */
	unsigned top_n;
	struct metrics_policy *policy;
	struct metrics_scan *scan; /* NULL: copy every entry out with batch lookups */
	struct events_stats *events; /* NULL: no event metrics */
	const struct budget_maps *budgets; /* NULL: no budget metrics */
	int users_fd; /* per-uid counters; 0 (unset): no user metrics (fd 0 is never a map here) */
};

/* Parse "ADDR:PORT", "[V6ADDR]:PORT" or "off" (sets *off). Returns 0 or -EINVAL. */
int metrics_parse_addr(const char *s, struct sockaddr_storage *sa, socklen_t *len, bool *off);

/* Write one scrape's text to f. Returns 0 or -errno. */
int metrics_render(const struct metrics_source *src, FILE *f);

struct metrics_server;
struct web_config;
/*
 * Serve src on sa, with TLS and basic auth as web says (NULL: plain HTTP, no auth; it must
 * outlive the server). Returns NULL (error logged) if the address cannot be bound.
 */
struct metrics_server *metrics_start(const struct sockaddr_storage *sa, socklen_t len,
				     const struct metrics_source *src, struct web_config *web);
void metrics_stop(struct metrics_server *m);

#endif

/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Events as users see them (SPEC section 5): a kernel record plus what the daemon knows
 * about it, as one JSON object (jansson does the escaping), and the one-line text form of
 * `sluice events` without --json. Pure functions: no maps, no I/O.
 */
#ifndef SLUICE_EVENT_FORMAT_H
#define SLUICE_EVENT_FORMAT_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <sluice/abi.h>

/* What the daemon found out about a record; NULL members are left out of the event. */
struct event_names {
	const char *rule;   /* the rule's identity */
	const char *budget; /* a budget event's budget identity */
	const char *iface;  /* interface name */
	const char *user;   /* user name of uid */
	const char *cgroup; /* cgroup v2 path, from the cgroup2 root */
};

const char *event_type_name(unsigned type);

/*
 * The Slurm job id in a cgroup path: the number of its first component "job_N"
 * (".../job_4242/step_0/..."). Returns 0 and sets *job, or -ENOENT.
 */
int event_job_id(const char *cgroup_path, uint64_t *job);

/* RFC 3339 in UTC with microseconds ("2024-05-01T12:00:00.123456Z"); buf of 32 bytes. */
void event_format_ts(int64_t unix_ns, char buf[32]);

/*
 * A JSON string of s, which may be anything a kernel or a user named: bytes that are not
 * valid UTF-8 become U+FFFD, so the line stays valid JSON. NULL on allocation failure.
 */
json_t *json_string_lossy(const char *s);

/* The event object of a kernel record, seen at unix_ns wall-clock time. */
json_t *event_json(const struct sluice_event *e, const struct event_names *names,
		   int64_t unix_ns);

/*
 * One line for humans from an event object (no newline). Control characters in names are
 * shown as \xNN, so a hostile name cannot drive the terminal. Returns the length.
 */
size_t event_text(json_t *ev, char *buf, size_t cap);

#endif

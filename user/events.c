// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* The daemon's event sink (events.h): ring buffer -> enrichment -> JSON lines -> outputs. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "enrich.h"
#include "event_format.h"
#include "events.h"
#include "budget.h"
#include "log.h"
#include "state.h"

/*
 * After log.h: syslog.h's LOG_INFO and LOG_DEBUG macros would rename log.h's enum. Only
 * the two constants used here are kept from it.
 */
#include <syslog.h>
static const int event_syslog_priority = LOG_NOTICE;
static const int event_syslog_facility = LOG_DAEMON;
#undef LOG_INFO
#undef LOG_DEBUG

/* Pending bytes an output or client may hold before new lines are dropped. */
#define EVENTS_QUEUE_BYTES (256u << 10)
/* Recent lines kept for `sluice events` without --follow (and the start of --follow). */
#define EVENTS_BACKLOG 256
/* Records read per ring-buffer wakeup before the loop looks at its other fds again. */
#define EVENTS_BATCH_MAX 4096
/* CPUs whose per-CPU loss counters are summed (more than any machine sluice runs on). */
#define EVENTS_CPUS_MAX 4096

enum sink_kind { SINK_STDOUT, SINK_FILE, SINK_SYSLOG, SINK_CLIENT };

/* An output or a client: a non-blocking fd and the bytes not yet written to it. */
struct sink {
	enum sink_kind kind;
	int fd;
	const char *path; /* SINK_FILE */
	char *buf;
	size_t len;
	bool close_when_flushed; /* a client without --follow: done after the backlog */
};

struct events {
	struct ring_buffer *rb;
	const struct datapath *dp;
	const char *state_dir;
	struct events_stats *stats;
	struct enrich *enrich;
	struct rule_table rules;
	struct budget_table budgets; /* a budget event's rule_id indexes it */
	struct sink outputs[EVENTS_OUTPUTS_MAX];
	int noutputs;
	struct sink clients[EVENTS_CLIENTS_MAX];
	char *backlog[EVENTS_BACKLOG];
	size_t backlog_next;
	int ncpus;
	int batch; /* records read in this wakeup */
};

int events_config_add(struct events_config *c, const char *value)
{
	if (strcmp(value, "off") == 0) {
		if (c->noutputs)
			return -EINVAL;
		c->off = true;
		return 0;
	}
	if (c->off || c->noutputs == EVENTS_OUTPUTS_MAX || !*value)
		return -EINVAL;
	for (int i = 0; i < c->noutputs; i++)
		if (strcmp(c->outputs[i], value) == 0)
			return -EINVAL;
	c->outputs[c->noutputs++] = value;
	return 0;
}

static void count(struct events *ev, unsigned type, uint64_t suppressed, uint64_t lost,
		  uint64_t dropped)
{
	pthread_mutex_lock(&ev->stats->lock);
	if (type < SLUICE_EVENT_MAX) {
		ev->stats->by_type[type]++;
		ev->stats->suppressed[type] += suppressed;
	}
	ev->stats->lost += lost;
	ev->stats->dropped += dropped;
	pthread_mutex_unlock(&ev->stats->lock);
}

/* --- sinks ------------------------------------------------------------------------------- */

static int sink_open_file(struct sink *s)
{
	int fd = open(s->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0600);

	if (fd < 0)
		return -errno;
	if (s->fd >= 0)
		close(s->fd);
	s->fd = fd;
	return 0;
}

/* Lines in buf[0..len): what dropping those bytes costs, in events. */
static uint64_t lines_in(const char *buf, size_t len)
{
	uint64_t n = 0;

	for (size_t i = 0; i < len; i++)
		n += buf[i] == '\n';
	return n;
}

/*
 * Write what the fd takes without waiting. A hard error (full disk, client gone) discards
 * the pending lines, counted as dropped; returns -errno then.
 */
static int sink_flush(struct events *ev, struct sink *s)
{
	while (s->len) {
		ssize_t n;

		if (s->kind == SINK_CLIENT)
			n = send(s->fd, s->buf, s->len, MSG_NOSIGNAL | MSG_DONTWAIT);
		else
			n = write(s->fd, s->buf, s->len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n <= 0) {
			int err = n < 0 ? -errno : -EIO;

			count(ev, SLUICE_EVENT_MAX, 0, 0, lines_in(s->buf, s->len));
			s->len = 0;
			return err;
		}
		memmove(s->buf, s->buf + n, s->len - n);
		s->len -= n;
	}
	return 0;
}

/* Queue one line (with its newline) and write what can be written now. */
static int sink_push(struct events *ev, struct sink *s, const char *line, size_t len)
{
	if (s->kind == SINK_SYSLOG) {
		/* Without the newline; syslog(3) does its own framing. */
		syslog(event_syslog_priority, "%.*s", (int)(len - 1), line);
		return 0;
	}
	if (s->len + len > EVENTS_QUEUE_BYTES) {
		count(ev, SLUICE_EVENT_MAX, 0, 0, 1);
		return 0;
	}
	memcpy(s->buf + s->len, line, len);
	s->len += len;
	return sink_flush(ev, s);
}

static void client_close(struct sink *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->len = 0;
}

/* --- one event ------------------------------------------------------------------------- */

static void backlog_add(struct events *ev, const char *line)
{
	char **slot = &ev->backlog[ev->backlog_next++ % EVENTS_BACKLOG];

	free(*slot);
	*slot = strdup(line);
}

/* Write one event object everywhere: outputs, clients, the backlog. */
static void dispatch(struct events *ev, json_t *o)
{
	char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	size_t len;

	if (!text)
		return;
	len = strlen(text);
	text[len] = '\n'; /* json_dumps' NUL becomes the newline; the copy below ends it */
	for (int i = 0; i < ev->noutputs; i++)
		sink_push(ev, &ev->outputs[i], text, len + 1);
	for (int i = 0; i < EVENTS_CLIENTS_MAX; i++) {
		struct sink *c = &ev->clients[i];

		if (c->fd >= 0 && !c->close_when_flushed && sink_push(ev, c, text, len + 1))
			client_close(c);
	}
	text[len] = '\0';
	backlog_add(ev, text);
	free(text);
}

/* CLOCK_MONOTONIC nanoseconds (the kernel's bpf_ktime_get_ns) to wall-clock time. */
static int64_t wall_ns(__u64 mono_ns)
{
	struct timespec real, mono;

	clock_gettime(CLOCK_REALTIME, &real);
	clock_gettime(CLOCK_MONOTONIC, &mono);
	return (int64_t)real.tv_sec * 1000000000 + real.tv_nsec -
	       ((int64_t)mono.tv_sec * 1000000000 + mono.tv_nsec - (int64_t)mono_ns);
}

static int on_record(void *ctx, void *data, size_t size)
{
	const struct sluice_event *e = data;
	struct events *ev = ctx;
	struct event_names names = {};
	char rulebuf[64];
	json_t *o;

	if (size < sizeof(*e))
		return 0;
	if (e->type == SLUICE_EVENT_BUDGET) {
		/* rule_id is the budget's index in its install's half (abi.h). */
		__u32 i = e->rule_id % SLUICE_BUDGET_MAX;

		if (i < ev->budgets.n) {
			names.budget = ev->budgets.items[i].name;
		} else {
			snprintf(rulebuf, sizeof(rulebuf), "#%u", i);
			names.budget = rulebuf;
		}
	} else if (e->rule_id != SLUICE_RULE_NONE) {
		names.rule = rule_table_name(&ev->rules, ev->rules.generation, e->rule_id, rulebuf,
					     sizeof(rulebuf));
	}
	names.iface = enrich_iface(ev->enrich, e->ifindex);
	if (e->flags & SLUICE_EVENT_F_SOCKET) {
		names.user = enrich_user(ev->enrich, e->uid);
		names.cgroup = enrich_cgroup(ev->enrich, e->cgroup_id);
	}
	o = event_json(e, &names, wall_ns(e->ts_ns));
	if (o) {
		dispatch(ev, o);
		json_decref(o);
	}
	count(ev, e->type, e->suppressed, 0, 0);
	/* Look at the other fds now and then, however fast records come. */
	return ++ev->batch >= EVENTS_BATCH_MAX ? -EAGAIN : 0;
}

/* An event the daemon makes itself (policy, lost). */
static json_t *daemon_event(unsigned type)
{
	struct timespec now;
	char ts[32];

	clock_gettime(CLOCK_REALTIME, &now);
	event_format_ts((int64_t)now.tv_sec * 1000000000 + now.tv_nsec, ts);
	return json_pack("{s:s,s:s}", "ts", ts, "type", event_type_name(type));
}

void events_policy(struct events *ev, bool ok, const struct policy *in_place)
{
	json_t *o;

	if (!ev)
		return;
	/* In place: the budgets are as they were and the rule names only grew. */
	if (ok && !(in_place && ev->rules.n && rule_table_append(&ev->rules, in_place) == 0)) {
		rule_table_free(&ev->rules);
		if (state_read_rules(ev->state_dir, &ev->rules))
			pr_warn("cannot read the rule names: events name rules by number");
		budget_table_free(&ev->budgets);
		if (state_read_budgets(ev->state_dir, &ev->budgets))
			pr_warn("cannot read the budget names: budget events name them by number");
	}
	o = daemon_event(SLUICE_EVENT_POLICY);
	if (!o)
		return;
	json_object_set_new(o, "reason", json_string(ok ? "loaded" : "rejected"));
	dispatch(ev, o);
	json_decref(o);
	count(ev, SLUICE_EVENT_POLICY, 0, 0, 0);
}

void events_tick(struct events *ev)
{
	__u64 values[EVENTS_CPUS_MAX];

	if (!ev)
		return;
	for (__u32 type = 0; type < SLUICE_EVENT_MAX; type++) {
		__u64 total = 0, reported = 0;
		json_t *o;

		if (bpf_map_lookup_elem(ev->dp->event_lost_fd, &type, values) ||
		    bpf_map_lookup_elem(ev->dp->event_reported_fd, &type, &reported))
			continue;
		for (int cpu = 0; cpu < ev->ncpus; cpu++)
			total += values[cpu];
		if (total <= reported)
			continue;
		/* Recorded first: a daemon started after a crash here does not report twice. */
		if (bpf_map_update_elem(ev->dp->event_reported_fd, &type, &total, BPF_ANY))
			continue;
		o = daemon_event(SLUICE_EVENT_LOST);
		if (!o)
			continue;
		/* The type of the events lost goes in `reason`. */
		json_object_set_new(o, "reason", json_string(event_type_name(type)));
		json_object_set_new(o, "count", json_integer((json_int_t)(total - reported)));
		dispatch(ev, o);
		json_decref(o);
		count(ev, SLUICE_EVENT_LOST, 0, total - reported, 0);
	}
}

/* --- the daemon's loop ------------------------------------------------------------------- */

int events_pollfds(struct events *ev, struct pollfd *fds)
{
	int n = 0;

	if (!ev)
		return 0;
	fds[n++] = (struct pollfd){ .fd = ring_buffer__epoll_fd(ev->rb), .events = POLLIN };
	for (int i = 0; i < ev->noutputs; i++)
		fds[n++] = (struct pollfd){ .fd = ev->outputs[i].len ? ev->outputs[i].fd : -1,
					    .events = POLLOUT };
	/* A client never writes after its request: readable means it hung up. */
	for (int i = 0; i < EVENTS_CLIENTS_MAX; i++)
		fds[n++] = (struct pollfd){ .fd = ev->clients[i].fd,
					    .events = POLLIN | (ev->clients[i].len ? POLLOUT : 0) };
	return n;
}

void events_process(struct events *ev, const struct pollfd *fds, int n)
{
	int k = 0;

	if (!ev || n < 1 + ev->noutputs + EVENTS_CLIENTS_MAX)
		return;
	if (fds[k++].revents & POLLIN) {
		ev->batch = 0;
		ring_buffer__consume(ev->rb);
	}
	for (int i = 0; i < ev->noutputs; i++, k++)
		if (fds[k].revents & (POLLOUT | POLLERR))
			sink_flush(ev, &ev->outputs[i]);
	for (int i = 0; i < EVENTS_CLIENTS_MAX; i++, k++) {
		struct sink *c = &ev->clients[i];

		if (c->fd < 0 || fds[k].fd != c->fd)
			continue;
		if (fds[k].revents & (POLLIN | POLLHUP | POLLERR)) {
			client_close(c);
			continue;
		}
		if ((fds[k].revents & POLLOUT) && sink_flush(ev, c))
			client_close(c);
		else if (c->close_when_flushed && c->len == 0)
			client_close(c);
	}
}

int events_subscribe(struct events *ev, int fd, bool follow)
{
	struct sink *c = NULL;

	if (!ev)
		return -ENOTCONN;
	for (int i = 0; i < EVENTS_CLIENTS_MAX && !c; i++)
		if (ev->clients[i].fd < 0)
			c = &ev->clients[i];
	if (!c)
		return -EBUSY;
	c->fd = fd;
	c->len = 0;
	c->close_when_flushed = !follow;
	for (size_t i = 0; i < EVENTS_BACKLOG; i++) {
		const char *line = ev->backlog[(ev->backlog_next + i) % EVENTS_BACKLOG];
		size_t len;

		if (!line)
			continue;
		len = strlen(line);
		if (c->len + len + 1 > EVENTS_QUEUE_BYTES)
			break;
		memcpy(c->buf + c->len, line, len);
		c->buf[c->len + len] = '\n';
		c->len += len + 1;
	}
	if (sink_flush(ev, c) || (!follow && c->len == 0))
		client_close(c);
	return 0;
}

void events_reopen(struct events *ev)
{
	if (!ev)
		return;
	for (int i = 0; i < ev->noutputs; i++) {
		struct sink *s = &ev->outputs[i];
		int err;

		if (s->kind != SINK_FILE)
			continue;
		/* Lines still pending belonged to the old file; they go to the new one. */
		err = sink_open_file(s);
		if (err)
			pr_warn("cannot reopen event file %s: %s; still writing the old one", s->path,
				strerror(-err));
	}
}

static int set_kernel_config(const struct datapath *dp, const struct events_config *c)
{
	struct sluice_event_config kc = { .interval_ns = c->interval_ns, .off = c->off };
	__u32 zero = 0;

	if (bpf_map_update_elem(dp->event_config_fd, &zero, &kc, BPF_ANY))
		return -errno;
	return 0;
}

void events_stop(struct events *ev)
{
	if (!ev)
		return;
	ring_buffer__free(ev->rb);
	for (int i = 0; i < ev->noutputs; i++) {
		struct sink *s = &ev->outputs[i];

		if (s->kind == SINK_STDOUT || s->kind == SINK_FILE)
			sink_flush(ev, s);
		if (s->kind == SINK_FILE && s->fd >= 0)
			close(s->fd);
		if (s->kind == SINK_SYSLOG)
			closelog();
		free(s->buf);
	}
	for (int i = 0; i < EVENTS_CLIENTS_MAX; i++) {
		client_close(&ev->clients[i]);
		free(ev->clients[i].buf);
	}
	for (size_t i = 0; i < EVENTS_BACKLOG; i++)
		free(ev->backlog[i]);
	rule_table_free(&ev->rules);
	budget_table_free(&ev->budgets);
	enrich_free(ev->enrich);
	free(ev);
}

static int open_output(struct sink *s, const char *value)
{
	s->fd = -1;
	if (strcmp(value, "syslog") == 0) {
		s->kind = SINK_SYSLOG;
		openlog("sluice", LOG_PID | LOG_NDELAY, event_syslog_facility);
		return 0;
	}
	s->buf = malloc(EVENTS_QUEUE_BYTES);
	if (!s->buf)
		return -ENOMEM;
	if (strcmp(value, "stdout") == 0) {
		int flags = fcntl(STDOUT_FILENO, F_GETFL);

		s->kind = SINK_STDOUT;
		s->fd = STDOUT_FILENO;
		/* A pipe to a stalled reader must not stop the daemon: queue, then drop. */
		if (flags < 0 || fcntl(STDOUT_FILENO, F_SETFL, flags | O_NONBLOCK) < 0)
			return -errno;
		return 0;
	}
	s->kind = SINK_FILE;
	s->path = value;
	return sink_open_file(s);
}

int events_start(struct events **out, const struct datapath *dp, const struct events_config *c,
		 struct events_stats *stats, const char *state_dir)
{
	struct events *ev;
	int err;

	*out = NULL;
	err = set_kernel_config(dp, c);
	if (err) {
		pr_err("cannot configure events: %s", strerror(-err));
		return err;
	}
	if (c->off)
		return 0;
	/* A reader of stdout (or of a FIFO) going away is a write error, not death. */
	signal(SIGPIPE, SIG_IGN);
	ev = calloc(1, sizeof(*ev));
	if (!ev)
		return -ENOMEM;
	ev->dp = dp;
	ev->stats = stats;
	ev->state_dir = state_dir;
	ev->ncpus = libbpf_num_possible_cpus();
	for (int i = 0; i < EVENTS_CLIENTS_MAX; i++)
		ev->clients[i] = (struct sink){ .kind = SINK_CLIENT, .fd = -1 };
	for (int i = 0; i < EVENTS_CLIENTS_MAX; i++) {
		ev->clients[i].buf = malloc(EVENTS_QUEUE_BYTES);
		if (!ev->clients[i].buf) {
			err = -ENOMEM;
			goto fail;
		}
	}
	for (int i = 0; i < c->noutputs; i++) {
		ev->noutputs++;
		err = open_output(&ev->outputs[i], c->outputs[i]);
		if (err) {
			pr_err("cannot open event output %s: %s", c->outputs[i], strerror(-err));
			goto fail;
		}
	}
	err = -ENOMEM;
	ev->enrich = enrich_new();
	if (!ev->enrich || ev->ncpus <= 0 || ev->ncpus > EVENTS_CPUS_MAX)
		goto fail;
	ev->rb = ring_buffer__new(dp->events_fd, on_record, ev, NULL);
	if (!ev->rb) {
		err = -errno;
		pr_err("cannot read the event ring buffer: %s", strerror(-err));
		goto fail;
	}
	if (state_read_rules(state_dir, &ev->rules))
		pr_warn("cannot read the rule names: events name rules by number");
	if (state_read_budgets(state_dir, &ev->budgets))
		pr_warn("cannot read the budget names: budget events name them by number");
	*out = ev;
	return 0;
fail:
	events_stop(ev);
	return err;
}

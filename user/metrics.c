// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* The Prometheus exporter: rendering the exposition text, and serving it with libmicrohttpd. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <bpf/bpf.h>
#include <microhttpd.h>

#include "dest_scan.h"
#include "event_format.h"
#include "events.h"
#include "ifslots.h"
#include "log.h"
#include "metrics.h"
#include "budget.h"
#include "users.h"
#include "output.h"
#include "policy.h"
#include "state.h"
#include "web_config.h"

/* --- rendering ----------------------------------------------------------------------------- */

/* A label value as the text format wants it: backslash, quote and newline escaped. */
static void put_label(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fputc('\\', f);
		if (*s == '\n') {
			fputs("\\n", f);
			continue;
		}
		fputc(*s, f);
	}
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Event counters, copied under the daemon's lock and written after it. */
static void render_events(struct events_stats *ev, FILE *f)
{
	struct events_stats c;

	pthread_mutex_lock(&ev->lock);
	memcpy(c.by_type, ev->by_type, sizeof(c.by_type));
	memcpy(c.suppressed, ev->suppressed, sizeof(c.suppressed));
	c.lost = ev->lost;
	c.dropped = ev->dropped;
	pthread_mutex_unlock(&ev->lock);

	family(f, "sluice_events_total", "counter", "Events written by the daemon, by type.");
	for (unsigned t = 0; t < SLUICE_EVENT_MAX; t++)
		fprintf(f, "sluice_events_total{type=\"%s\"} %llu\n", event_type_name(t),
			(unsigned long long)c.by_type[t]);
	family(f, "sluice_events_suppressed_total", "counter",
	       "Events the kernel's rate limit folded into the next event, by type.");
	for (unsigned t = 0; t < SLUICE_EVENT_LIMITED_MAX; t++)
		fprintf(f, "sluice_events_suppressed_total{type=\"%s\"} %llu\n",
			event_type_name(t), (unsigned long long)c.suppressed[t]);
	family(f, "sluice_events_lost_total", "counter",
	       "Events the kernel could not deliver (ring buffer full).");
	fprintf(f, "sluice_events_lost_total %llu\n", (unsigned long long)c.lost);
	family(f, "sluice_events_dropped_total", "counter",
	       "Event lines an output or client too slow to take them missed.");
	fprintf(f, "sluice_events_dropped_total %llu\n", (unsigned long long)c.dropped);
}

static __u32 map_capacity(int fd)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);

	return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.max_entries : 0;
}

/* The top N destinations by bytes: a min-heap on bytes, so each entry costs O(log N). */
struct top {
	struct dest_row *heap;
	size_t n, cap;
	size_t seen;
};

static void sift_down(struct top *t, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < t->n && t->heap[l].bytes < t->heap[m].bytes)
			m = l;
		if (r < t->n && t->heap[r].bytes < t->heap[m].bytes)
			m = r;
		if (m == i)
			return;
		struct dest_row tmp = t->heap[i];

		t->heap[i] = t->heap[m];
		t->heap[m] = tmp;
		i = m;
	}
}

static int top_add(const struct dest_row *row, void *ctx)
{
	struct top *t = ctx;

	t->seen++;
	if (t->n < t->cap) {
		size_t i = t->n++;

		t->heap[i] = *row;
		while (i && t->heap[(i - 1) / 2].bytes > t->heap[i].bytes) {
			struct dest_row tmp = t->heap[i];

			t->heap[i] = t->heap[(i - 1) / 2];
			t->heap[(i - 1) / 2] = tmp;
			i = (i - 1) / 2;
		}
	} else if (t->cap && row->bytes > t->heap[0].bytes) {
		t->heap[0] = *row;
		sift_down(t, 0);
	}
	return 0;
}

/* Fill top with the N destinations with the most bytes; top->seen = entries in the table. */
static int find_top(const struct metrics_source *src, struct top *top)
{
	struct metrics_scan *sc = src->scan;
	__u64 entries = 0;
	int err;

	if (!sc || !sc->scan)
		return each_destination(src->dests_fd, top_add, top);
	err = dest_scan_run(sc->scan, sc->min_bytes, top_add, top, &entries);
	if (!err && top->n < top->cap && top->n < entries && sc->min_bytes) {
		/* Fewer than N above the old threshold (evictions): everything, once. */
		top->n = 0;
		err = dest_scan_run(sc->scan, 0, top_add, top, &entries);
	}
	if (err)
		return err;
	top->seen = entries;
	sc->min_bytes = !top->cap ? UINT64_MAX : top->n == top->cap ? top->heap[0].bytes : 0;
	return 0;
}

static int cmp_bytes_desc(const void *a, const void *b)
{
	const struct dest_row *x = a, *y = b;

	return x->bytes < y->bytes ? 1 : x->bytes > y->bytes ? -1 : 0;
}

/* Per (hook, iface, verdict): the node totals summed over reasons. */
static void render_totals(FILE *f, const struct total_row *rows, size_t n, bool bytes)
{
	for (size_t i = 0; i < n; i++) {
		bool first = true;
		__u64 sum = 0;
		char ifname[32];

		/* Sum the reasons of this (ifindex, hook, verdict) once, at its first row. */
		for (size_t k = 0; k < i && first; k++)
			first = !(rows[k].ifindex == rows[i].ifindex && rows[k].hook == rows[i].hook &&
				  rows[k].verdict == rows[i].verdict);
		if (!first)
			continue;
		for (size_t k = i; k < n; k++)
			if (rows[k].ifindex == rows[i].ifindex && rows[k].hook == rows[i].hook &&
			    rows[k].verdict == rows[i].verdict)
				sum += bytes ? rows[k].sum.bytes : rows[k].sum.packets;
		fprintf(f, "sluice_%s_total{hook=\"%s\",iface=\"", bytes ? "bytes" : "packets",
			hook_name(rows[i].hook));
		put_label(f, ifname_of(rows[i].ifindex, ifname, sizeof(ifname)));
		fprintf(f, "\",verdict=\"%s\"} %llu\n", verdict_name(rows[i].verdict),
			(unsigned long long)sum);
	}
}

/*
 * Make now show at least what the last scrape showed (shown), then bring shown up to now.
 * Between a full install's switch (from then on its rules count in the kernel's other half)
 * and the daemon folding the old half in by name, a scrape reads the counts without the old
 * half: a counter that went down would read as a reset to Prometheus. Names only in shown
 * (a removed rule) keep their last value, as the folded counts keep them.
 */
static int keep_monotonic(struct rule_counts *now, struct rule_counts *shown)
{
	int err = 0;

	for (size_t i = 0; shown->slots && i <= shown->mask && !err; i++) {
		const struct rule_count *was = &shown->slots[i], *is;
		__u64 packets = 0, bytes = 0;

		if (!was->name)
			continue;
		is = rule_counts_find(now, was->name);
		if (!is || is->packets < was->packets)
			packets = was->packets - (is ? is->packets : 0);
		if (!is || is->bytes < was->bytes)
			bytes = was->bytes - (is ? is->bytes : 0);
		if (packets || bytes || !is)
			err = rule_counts_add(now, was->name, packets, bytes);
	}
	/* now >= shown everywhere: bring shown up to now, allocating only for new names. */
	for (size_t i = 0; now->slots && i <= now->mask && !err; i++) {
		const struct rule_count *is = &now->slots[i], *was;

		if (!is->name)
			continue;
		was = rule_counts_find(shown, is->name);
		err = rule_counts_add(shown, is->name, is->packets - (was ? was->packets : 0),
				      is->bytes - (was ? was->bytes : 0));
	}
	return err;
}

/*
 * Per rule: the counts folded from earlier installs plus the active install's half, named
 * by the rule table. At most SLUICE_RULE_COUNTERS rules have series of their own (abi.h).
 */
static int render_rules(const struct metrics_source *src, FILE *f)
{
	struct rule_counts all = {};
	struct rule_table names = {};
	__u32 generation;
	__u8 flags;
	int err;

	pthread_mutex_lock(&src->policy->lock);
	err = rule_counts_merge(&all, &src->policy->folded);
	pthread_mutex_unlock(&src->policy->lock);
	if (!err && read_policy_state(src->policy_fd, src->config_fd, &generation, &flags) == 0 &&
	    state_read_rules(src->state_dir, &names) == 0)
		err = rule_counts_read(&all, src->rules_fd, flags & SLUICE_POLICY_F_EPOCH,
				       names.names, names.n);
	rule_table_free(&names);
	if (!err)
		err = keep_monotonic(&all, &src->policy->rules_shown);
	for (int bytes = 0; bytes < 2 && !err; bytes++) {
		family(f, bytes ? "sluice_rule_bytes_total" : "sluice_rule_packets_total", "counter",
		       bytes ? "Bytes decided by each rule (by name: its `name`, or FILE:LINE)."
			     : "Packets decided by each rule (by name: its `name`, or FILE:LINE).");
		for (size_t i = 0; all.slots && i <= all.mask; i++) {
			if (!all.slots[i].name)
				continue;
			fprintf(f, "sluice_rule_%s_total{rule=\"", bytes ? "bytes" : "packets");
			put_label(f, all.slots[i].name);
			fprintf(f, "\"} %llu\n", (unsigned long long)(bytes ? all.slots[i].bytes
									  : all.slots[i].packets));
		}
	}
	rule_counts_free(&all);
	return err;
}

/*
 * Crossings per budget of the policy in force, by its identity (the budget table): the
 * kernel's count for the install in force plus what the daemon folded from earlier installs
 * under the same name, so a reload is no counter reset. A budget has one series, so
 * cardinality is bounded by SLUICE_BUDGET_MAX.
 */
static void render_budgets(const struct metrics_source *src, FILE *f)
{
	struct rule_counts shown = {};
	struct budget_table t;
	__u32 generation;
	__u8 flags = 0;

	family(f, "sluice_budget_exceeded_total", "counter",
	       "Budget crossings: keys (destination, user, node) whose usage reached the budget.");
	if (read_policy_state(src->policy_fd, src->config_fd, &generation, &flags) < 0 ||
	    state_read_budgets(src->state_dir, &t) < 0)
		return;
	for (size_t i = 0; i < t.n; i++) {
		__u64 n = budget_crossed_read(src->budgets->crossed_fd, flags & SLUICE_POLICY_F_EPOCH,
					      i);
		const struct rule_count *folded, *was;

		pthread_mutex_lock(&src->policy->lock);
		folded = rule_counts_find(&src->policy->budgets_folded, t.items[i].name);
		n += folded ? folded->packets : 0;
		pthread_mutex_unlock(&src->policy->lock);
		/* Never less than the last scrape (keep_monotonic says why). */
		was = rule_counts_find(&src->policy->budgets_shown, t.items[i].name);
		if (was && was->packets > n)
			n = was->packets;
		rule_counts_add(&shown, t.items[i].name, n, 0);
		fprintf(f, "sluice_budget_exceeded_total{budget=\"");
		put_label(f, t.items[i].name);
		fprintf(f, "\"} %llu\n", (unsigned long long)n);
	}
	budget_table_free(&t);
	rule_counts_free(&src->policy->budgets_shown);
	src->policy->budgets_shown = shown;
}

/*
 * Bytes per local user: the top_n users by bytes, each by name, and user="other" for the
 * rest, so the series are bounded and their sum exact.
 */
static void render_users(const struct metrics_source *src, FILE *f)
{
	struct user_row *rows = NULL;
	bool any_other = false;
	__u64 other = 0;
	size_t n = 0;

	family(f, "sluice_user_bytes_total", "counter",
	       "Bytes local users' sockets sent and sluice passed, top users by bytes + other.");
	if (users_read(src->users_fd, &rows, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		char name[64];

		if (i >= src->top_n || rows[i].other) {
			other += rows[i].stats.bytes;
			any_other = true;
			continue;
		}
		fprintf(f, "sluice_user_bytes_total{user=\"");
		put_label(f, user_name(&rows[i], name, sizeof(name)));
		fprintf(f, "\"} %llu\n", (unsigned long long)rows[i].stats.bytes);
	}
	if (any_other)
		fprintf(f, "sluice_user_bytes_total{user=\"other\"} %llu\n",
			(unsigned long long)other);
	free(rows);
}

int metrics_render(const struct metrics_source *src, FILE *f)
{
	struct top top = { .cap = src->top_n };
	struct total_row *totals = NULL;
	__u64 node_bytes[SLUICE_VERDICT_MAX] = {}, node_packets[SLUICE_VERDICT_MAX] = {};
	size_t ntotals = 0, slots = 0;
	struct metrics_policy pol;
	int err;

	top.heap = calloc(top.cap + 1, sizeof(*top.heap));
	if (!top.heap)
		return -ENOMEM;
	err = read_totals(src->totals_fd, src->ifaces_fd, &totals, &ntotals);
	if (!err)
		err = find_top(src, &top);
	if (err)
		goto out;
	pthread_mutex_lock(&src->policy->lock);
	pol = *src->policy;
	pthread_mutex_unlock(&src->policy->lock);

	family(f, "sluice_build_info", "gauge", "Build of the running sluice daemon.");
	fprintf(f, "sluice_build_info{version=\"%s\"} 1\n", SLUICE_VERSION);

	family(f, "sluice_packets_total", "counter",
	       "Packets decided, by hook, interface and verdict (GSO packets as wire packets).");
	render_totals(f, totals, ntotals, false);
	family(f, "sluice_bytes_total", "counter",
	       "Bytes decided (L2 frames as handed to the device), by hook, interface and verdict.");
	render_totals(f, totals, ntotals, true);
	family(f, "sluice_reason_packets_total", "counter",
	       "Packets by verdict and the reason for it (rule, default, truncated, ...).");
	for (size_t i = 0; i < ntotals; i++) {
		__u64 sum = 0;
		bool first = true;

		for (size_t k = 0; k < i && first; k++)
			first = !(totals[k].verdict == totals[i].verdict &&
				  totals[k].reason == totals[i].reason);
		if (!first)
			continue;
		for (size_t k = i; k < ntotals; k++)
			if (totals[k].verdict == totals[i].verdict &&
			    totals[k].reason == totals[i].reason)
				sum += totals[k].sum.packets;
		fprintf(f, "sluice_reason_packets_total{verdict=\"%s\",reason=\"%s\"} %llu\n",
			verdict_name(totals[i].verdict), reason_name(totals[i].reason),
			(unsigned long long)sum);
	}
	for (size_t i = 0; i < ntotals; i++) {
		node_bytes[totals[i].verdict] += totals[i].sum.bytes;
		node_packets[totals[i].verdict] += totals[i].sum.packets;
	}

	/*
	 * The top N by bytes, then "other": the node total minus them, so the series sum to the
	 * node total exactly (non-IP frames and evicted destinations land in "other"). When a
	 * destination enters or leaves the top N, "other" moves by its bytes: sum the series
	 * rather than take rate() of "other" alone.
	 */
	qsort(top.heap, top.n, sizeof(*top.heap), cmp_bytes_desc);
	for (int bytes = 1; bytes >= 0; bytes--) {
		const char *name = bytes ? "sluice_destination_bytes_total"
					 : "sluice_destination_packets_total";

		family(f, name, "counter",
		       bytes ? "Bytes per destination address and verdict: the top N destinations by "
			       "bytes, and destination=\"other\" for the rest."
			     : "Packets per destination address and verdict: the same top N "
			       "destinations, and destination=\"other\" for the rest.");
		for (int v = 0; v < SLUICE_VERDICT_MAX; v++) {
			__u64 rest = bytes ? node_bytes[v] : node_packets[v];
			bool any = rest != 0;

			for (size_t i = 0; i < top.n; i++) {
				const struct dest_row *r = &top.heap[i];
				__u64 val = bytes ? r->stats.bytes[v] : r->stats.packets[v];
				char addr[ADDR_STRLEN];

				if (!val)
					continue;
				any = true;
				rest = rest > val ? rest - val : 0;
				addr_format(&r->addr, addr, sizeof(addr));
				fprintf(f, "%s{destination=\"%s\",verdict=\"%s\"} %llu\n", name, addr,
					verdict_name(v), (unsigned long long)val);
			}
			if (any)
				fprintf(f, "%s{destination=\"other\",verdict=\"%s\"} %llu\n", name,
					verdict_name(v), (unsigned long long)rest);
		}
	}

	{
		__u32 slot_ifindex[SLUICE_IFSLOTS];

		if (ifslot_table_local(src->ifaces_fd, slot_ifindex) == 0)
			for (int s = 1; s < SLUICE_IFSLOTS; s++)
				slots += slot_ifindex[s] != 0;
	}
	err = render_rules(src, f);
	if (err)
		goto out;

	family(f, "sluice_map_entries", "gauge", "Entries in each BPF map sluice uses.");
	fprintf(f, "sluice_map_entries{map=\"destinations\"} %zu\n", top.seen);
	fprintf(f, "sluice_map_entries{map=\"policy\"} %llu\n", (unsigned long long)pol.prefixes);
	fprintf(f, "sluice_map_entries{map=\"ports\"} %llu\n", (unsigned long long)pol.port_entries);
	fprintf(f, "sluice_map_entries{map=\"interfaces\"} %zu\n", slots);
	family(f, "sluice_map_capacity", "gauge", "Capacity (max entries) of each BPF map.");
	fprintf(f, "sluice_map_capacity{map=\"destinations\"} %u\n", map_capacity(src->dests_fd));
	fprintf(f, "sluice_map_capacity{map=\"policy\"} %u\n", SLUICE_POLICY_MAX);
	fprintf(f, "sluice_map_capacity{map=\"ports\"} %u\n", SLUICE_PORT_MAX);
	fprintf(f, "sluice_map_capacity{map=\"interfaces\"} %u\n", SLUICE_IFSLOTS - 1);

	family(f, "sluice_policy_generation", "gauge", "Generation of the policy in force.");
	fprintf(f, "sluice_policy_generation %u\n", pol.generation);
	family(f, "sluice_policy_rules", "gauge", "Rules of the policy in force, overrides included.");
	fprintf(f, "sluice_policy_rules %llu\n", (unsigned long long)pol.rules);
	family(f, "sluice_policy_load_timestamp_seconds", "gauge",
	       "When the policy in force was loaded or last changed (unix time).");
	fprintf(f, "sluice_policy_load_timestamp_seconds %lld\n", (long long)pol.loaded_at);
	family(f, "sluice_policy_errors_total", "counter",
	       "Policy loads and changes the daemon rejected (the old policy stayed).");
	fprintf(f, "sluice_policy_errors_total %llu\n", (unsigned long long)pol.errors);
	if (src->events)
		render_events(src->events, f);
	if (src->budgets)
		render_budgets(src, f);
	if (src->users_fd > 0)
		render_users(src, f);
out:
	free(totals);
	free(top.heap);
	return err;
}

/* --- address ------------------------------------------------------------------------------- */

int metrics_parse_addr(const char *s, struct sockaddr_storage *sa, socklen_t *len, bool *off)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon;
	char *end;
	long port;
	size_t hl;

	memset(sa, 0, sizeof(*sa));
	*off = strcmp(s, "off") == 0;
	if (*off)
		return 0;
	colon = strrchr(s, ':');
	if (!colon || colon == s)
		return -EINVAL;
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (errno || *end || end == colon + 1 || port < 1 || port > 65535)
		return -EINVAL;
	hl = colon - s;
	if (s[0] == '[') {
		if (hl < 3 || s[hl - 1] != ']' || hl - 2 >= sizeof(host))
			return -EINVAL;
		memcpy(host, s + 1, hl - 2);
		host[hl - 2] = '\0';
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;

		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		*len = sizeof(*in6);
		return inet_pton(AF_INET6, host, &in6->sin6_addr) == 1 ? 0 : -EINVAL;
	}
	if (hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, hl);
	host[hl] = '\0';
	struct sockaddr_in *in4 = (struct sockaddr_in *)sa;

	in4->sin_family = AF_INET;
	in4->sin_port = htons(port);
	*len = sizeof(*in4);
	return inet_pton(AF_INET, host, &in4->sin_addr) == 1 ? 0 : -EINVAL;
}

/* --- serving ------------------------------------------------------------------------------- */

/* Limits: idle and slow clients are cut off, and no request can make us hold much memory. */
#define HTTP_CONNECTIONS_MAX 2048
#define HTTP_TIMEOUT_S 10
#define HTTP_CONNECTION_MEMORY (32 * 1024) /* request line + headers; larger gets 431 */

struct metrics_server {
	struct MHD_Daemon *mhd;
	struct metrics_source src;
	struct web_config *web; /* TLS and basic auth; NULL: plain HTTP, no auth */
};

/* With basic_auth_users configured: is the request's user and password one of them? */
static bool authorised(struct metrics_server *m, struct MHD_Connection *c)
{
	char *user, *password = NULL;
	bool ok;

	if (!m->web || m->web->nusers == 0)
		return true;
	user = MHD_basic_auth_get_username_password(c, &password);
	ok = web_auth_check(m->web, user, password);
	if (password)
		explicit_bzero(password, strlen(password));
	MHD_free(user);
	MHD_free(password);
	return ok;
}

static enum MHD_Result refuse_unauthorised(struct MHD_Connection *c)
{
	static char body[] = "unauthorized\n";
	struct MHD_Response *r = MHD_create_response_from_buffer(sizeof(body) - 1, body,
								 MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain");
	ret = MHD_queue_basic_auth_fail_response(c, "sluice", r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
			     char *body, size_t len, enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
	enum MHD_Result ret;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
			      const char *method, const char *version, const char *upload_data,
			      size_t *upload_data_size, void **con_cls)
{
	struct metrics_server *m = cls;
	char *text = NULL;
	size_t len = 0;
	FILE *f;
	int err;

	(void)version;
	(void)upload_data;
	if (*upload_data_size) {
		*upload_data_size = 0; /* a body is never wanted: drop it */
		return MHD_YES;
	}
	(void)con_cls;
	if (!authorised(m, c))
		return refuse_unauthorised(c);
	if (strcmp(url, "/metrics") != 0)
		return reply(c, MHD_HTTP_NOT_FOUND, "text/plain", "not found\n", 10,
			     MHD_RESPMEM_PERSISTENT);
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", "GET only\n", 9,
			     MHD_RESPMEM_PERSISTENT);
	f = open_memstream(&text, &len);
	if (!f)
		return MHD_NO;
	err = metrics_render(&m->src, f);
	fclose(f);
	if (err) {
		free(text);
		return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain", "scrape failed\n",
			     14, MHD_RESPMEM_PERSISTENT);
	}
	return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text, len,
		     MHD_RESPMEM_MUST_FREE);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	pr_debug("metrics: %s", msg);
}

/* TLS 1.2 and 1.3 (as Prometheus' exporters default to), or 1.3 alone. */
#define TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
#define TLS13_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3"

struct metrics_server *metrics_start(const struct sockaddr_storage *sa, socklen_t len,
				     const struct metrics_source *src, struct web_config *web)
{
	struct metrics_server *m = calloc(1, sizeof(*m));
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
	struct rlimit rl;
	char addr[INET6_ADDRSTRLEN] = "?";

	if (!m)
		return NULL;
	m->src = *src;
	m->web = web;
	/* Room for the connection limit: idle clients must not starve the scrapes. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max &&
	    rl.rlim_cur < HTTP_CONNECTIONS_MAX + 256) {
		rl.rlim_cur = rl.rlim_max < HTTP_CONNECTIONS_MAX + 256 ? rl.rlim_max
									: HTTP_CONNECTIONS_MAX + 256;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (sa->ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	(void)len;
	if (web && web->tls) {
		/* The TLS options first: MHD_OPTION_END after them when there is no TLS. */
		m->mhd = MHD_start_daemon(
			flags | MHD_USE_TLS, 0, NULL, NULL, handle, m, MHD_OPTION_HTTPS_MEM_CERT,
			web->cert_pem, MHD_OPTION_HTTPS_MEM_KEY, web->key_pem,
			MHD_OPTION_HTTPS_PRIORITIES, web->tls13_only ? TLS13_PRIORITIES : TLS_PRIORITIES,
			MHD_OPTION_SOCK_ADDR, sa, MHD_OPTION_CONNECTION_LIMIT,
			(unsigned)HTTP_CONNECTIONS_MAX, MHD_OPTION_CONNECTION_TIMEOUT,
			(unsigned)HTTP_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
			(size_t)HTTP_CONNECTION_MEMORY, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
			MHD_OPTION_END);
	} else {
		m->mhd = MHD_start_daemon(flags, 0, NULL, NULL, handle, m, MHD_OPTION_SOCK_ADDR, sa,
					  MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_CONNECTIONS_MAX,
					  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_TIMEOUT_S,
					  MHD_OPTION_CONNECTION_MEMORY_LIMIT,
					  (size_t)HTTP_CONNECTION_MEMORY, MHD_OPTION_EXTERNAL_LOGGER,
					  mhd_log, NULL, MHD_OPTION_END);
	}
	if (sa->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, addr, sizeof(addr));
	else
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, addr, sizeof(addr));
	if (!m->mhd) {
		pr_err("cannot serve metrics on %s port %u (in use, or not an address here?)", addr,
		       ntohs(((const struct sockaddr_in *)sa)->sin_port));
		free(m);
		return NULL;
	}
	pr_info("serving metrics on %s://%s%s%s:%u/metrics%s", web && web->tls ? "https" : "http",
		sa->ss_family == AF_INET6 ? "[" : "",
		addr, sa->ss_family == AF_INET6 ? "]" : "",
		ntohs(((const struct sockaddr_in *)sa)->sin_port),
		web && web->nusers ? " (basic auth)" : "");
	return m;
}

void metrics_stop(struct metrics_server *m)
{
	if (!m)
		return;
	MHD_stop_daemon(m->mhd);
	free(m);
}

// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Events as JSON objects and as text lines (event_format.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <netinet/in.h>

#include "addr.h"
#include "event_format.h"
#include "policy.h"

static const char *const event_type_names[] = {
#define SLUICE_NAME(id, name) name,
	SLUICE_EVENT_TYPES(SLUICE_NAME)
#undef SLUICE_NAME
};

const char *event_type_name(unsigned type)
{
	return type < SLUICE_EVENT_MAX ? event_type_names[type] : "unknown";
}

int event_job_id(const char *path, uint64_t *job)
{
	const char *p = path;

	while (p && *p) {
		const char *end = strchr(p, '/');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		/* "job_" and 1..19 digits: anything longer cannot be a 64-bit job id. */
		if (len > 4 && len <= 4 + 19 && strncmp(p, "job_", 4) == 0 &&
		    strspn(p + 4, "0123456789") == len - 4) {
			*job = strtoull(p + 4, NULL, 10);
			return 0;
		}
		p = end ? end + 1 : NULL;
	}
	return -ENOENT;
}

void event_format_ts(int64_t unix_ns, char buf[32])
{
	time_t secs = unix_ns / 1000000000;
	long usec = (unix_ns % 1000000000) / 1000;
	struct tm tm;

	if (unix_ns < 0 || !gmtime_r(&secs, &tm)) {
		snprintf(buf, 32, "1970-01-01T00:00:00.000000Z");
		return;
	}
	/* 19 bytes of date and time (years up to 9999), 8 of fraction and zone. */
	if (strftime(buf, 20, "%Y-%m-%dT%H:%M:%S", &tm) != 19) {
		snprintf(buf, 32, "1970-01-01T00:00:00.000000Z");
		return;
	}
	snprintf(buf + 19, 32 - 19, ".%06ldZ", usec);
}

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, no surrogates), or 0. */
static size_t utf8_seq(const unsigned char *s)
{
	size_t n;
	unsigned cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80) /* also stops at the terminating NUL */
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

json_t *json_string_lossy(const char *s)
{
	static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */
	const unsigned char *p = (const unsigned char *)s;
	size_t len = strlen(s), out = 0;
	char *buf;
	json_t *j;

	/* Each bad byte becomes 3 bytes at most. */
	buf = malloc(3 * len + 1);
	if (!buf)
		return NULL;
	while (*p) {
		size_t n = utf8_seq(p);

		if (n) {
			memcpy(buf + out, p, n);
			out += n;
			p += n;
		} else {
			memcpy(buf + out, replacement, 3);
			out += 3;
			p++;
		}
	}
	/* Valid UTF-8 now, without NUL: jansson escapes quotes, backslashes and controls. */
	j = json_stringn(buf, out);
	free(buf);
	return j;
}

static const char *proto_name(__u8 proto, char *buf, size_t len)
{
	switch (proto) {
	case IPPROTO_TCP:
		return "tcp";
	case IPPROTO_UDP:
		return "udp";
	case IPPROTO_ICMP:
		return "icmp";
	case IPPROTO_ICMPV6:
		return "icmpv6";
	case IPPROTO_SCTP:
		return "sctp";
	}
	snprintf(buf, len, "%u", proto);
	return buf;
}

/* Set key to a lossy string of s, if s is known. */
static void set_name(json_t *o, const char *key, const char *s)
{
	if (s)
		json_object_set_new(o, key, json_string_lossy(s));
}

json_t *event_json(const struct sluice_event *e, const struct event_names *names,
		   int64_t unix_ns)
{
	char ts[32], addr[INET6_ADDRSTRLEN], proto[8];
	json_t *o = json_object();
	uint64_t job;

	if (!o)
		return NULL;
	event_format_ts(unix_ns, ts);
	json_object_set_new(o, "ts", json_string(ts));
	json_object_set_new(o, "type", json_string(event_type_name(e->type)));
	json_object_set_new(o, "verdict", json_string(verdict_name(e->verdict)));
	json_object_set_new(o, "reason", json_string(reason_name(e->reason)));
	set_name(o, "rule", names->rule);
	set_name(o, "budget", names->budget);
	json_object_set_new(o, "hook", json_string(hook_name(e->hook)));
	set_name(o, "iface", names->iface);
	if (e->flags & SLUICE_EVENT_F_DST) {
		json_object_set_new(o, "proto", json_string(proto_name(e->proto, proto,
									sizeof(proto))));
		addr_format(&e->src, addr, sizeof(addr));
		json_object_set_new(o, "src", json_string(addr));
	}
	if (e->flags & SLUICE_EVENT_F_PORTS)
		json_object_set_new(o, "sport", json_integer(e->sport[0] << 8 | e->sport[1]));
	if (e->flags & SLUICE_EVENT_F_DST) {
		addr_format(&e->dst, addr, sizeof(addr));
		json_object_set_new(o, "dst", json_string(addr));
	}
	if (e->flags & SLUICE_EVENT_F_PORTS)
		json_object_set_new(o, "dport", json_integer(e->dport[0] << 8 | e->dport[1]));
	json_object_set_new(o, "bytes", json_integer((json_int_t)e->bytes));
	json_object_set_new(o, "packets", json_integer((json_int_t)e->packets));
	if (e->flags & SLUICE_EVENT_F_SOCKET) {
		json_object_set_new(o, "uid", json_integer(e->uid));
		set_name(o, "user", names->user);
		set_name(o, "cgroup", names->cgroup);
		if (names->cgroup && event_job_id(names->cgroup, &job) == 0)
			json_object_set_new(o, "job", json_integer((json_int_t)job));
	}
	if (e->type < SLUICE_EVENT_LIMITED_MAX)
		json_object_set_new(o, "suppressed", json_integer((json_int_t)e->suppressed));
	return o;
}

/* Append s to buf, control characters and DEL as \xNN. */
static void put_text(char *buf, size_t cap, size_t *len, const char *s)
{
	for (; *s && *len + 5 < cap; s++) {
		unsigned char c = *s;

		if (c < 0x20 || c == 0x7f)
			*len += snprintf(buf + *len, cap - *len, "\\x%02x", c);
		else
			buf[(*len)++] = c;
	}
	buf[*len] = '\0';
}

size_t event_text(json_t *ev, char *buf, size_t cap)
{
	static const char *const fields[] = { "rule", "budget", "iface", "user",       "uid",
					      "cgroup", "job",  "bytes", "suppressed", "count" };
	const char *dst = json_string_value(json_object_get(ev, "dst"));
	json_t *dport = json_object_get(ev, "dport");
	const char *proto = json_string_value(json_object_get(ev, "proto"));
	char num[32];
	size_t len = 0;

	if (cap == 0)
		return 0;
	buf[0] = '\0';
	put_text(buf, cap, &len, json_string_value(json_object_get(ev, "ts")) ?: "-");
	put_text(buf, cap, &len, " ");
	put_text(buf, cap, &len, json_string_value(json_object_get(ev, "type")) ?: "?");
	if (json_object_get(ev, "verdict")) {
		put_text(buf, cap, &len, " ");
		put_text(buf, cap, &len, json_string_value(json_object_get(ev, "verdict")));
		put_text(buf, cap, &len, "/");
		put_text(buf, cap, &len, json_string_value(json_object_get(ev, "reason")) ?: "?");
	} else if (json_object_get(ev, "reason")) {
		put_text(buf, cap, &len, " ");
		put_text(buf, cap, &len, json_string_value(json_object_get(ev, "reason")));
	}
	if (dst) {
		put_text(buf, cap, &len, " ");
		put_text(buf, cap, &len, strchr(dst, ':') && dport ? "[" : "");
		put_text(buf, cap, &len, dst);
		put_text(buf, cap, &len, strchr(dst, ':') && dport ? "]" : "");
		if (dport) {
			snprintf(num, sizeof(num), ":%lld", json_integer_value(dport));
			put_text(buf, cap, &len, num);
		}
		if (proto) {
			put_text(buf, cap, &len, " ");
			put_text(buf, cap, &len, proto);
		}
	}
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		json_t *v = json_object_get(ev, fields[i]);

		if (!v)
			continue;
		put_text(buf, cap, &len, " ");
		put_text(buf, cap, &len, fields[i]);
		put_text(buf, cap, &len, "=");
		if (json_is_integer(v)) {
			snprintf(num, sizeof(num), "%lld", json_integer_value(v));
			put_text(buf, cap, &len, num);
		} else {
			put_text(buf, cap, &len, json_string_value(v) ?: "?");
		}
	}
	return len;
}

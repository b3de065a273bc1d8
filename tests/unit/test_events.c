// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Events as users read them: Slurm job ids from cgroup paths, RFC 3339 timestamps, JSON
 * lines that stay valid (and round-trip) whatever bytes a name holds, and user names that
 * never hold the event loop up however slow the directory is.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>
#include <netinet/in.h>

#include "addr.h"
#include "check.h"
#include "enrich.h"
#include "event_format.h"

static void test_job_id(void)
{
	static const struct {
		const char *path;
		int ret;
		uint64_t job;
	} cases[] = {
		{ "/system.slice/slurmstepd.scope/job_4242/step_0/user/task_0", 0, 4242 },
		{ "/slurm/uid_1000/job_17/step_batch", 0, 17 },
		{ "job_5", 0, 5 },
		{ "/a/job_4242", 0, 4242 },
		{ "/a/job_1/b/job_2", 0, 1 },           /* the outermost job */
		{ "/a/job_/b", -ENOENT, 0 },             /* no digits */
		{ "/a/job_12x/b", -ENOENT, 0 },          /* not only digits */
		{ "/a/myjob_12/b", -ENOENT, 0 },         /* not the whole component */
		{ "/a/job_123456789012345678901", -ENOENT, 0 }, /* beyond 64 bits */
		{ "/user.slice/user-1000.slice", -ENOENT, 0 },
		{ "", -ENOENT, 0 },
		{ "/", -ENOENT, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t job = 0;
		int ret = event_job_id(cases[i].path, &job);

		CHECK(ret == cases[i].ret, "job id of '%s': ret %d, want %d", cases[i].path, ret,
		      cases[i].ret);
		if (ret == 0)
			CHECK_EQ_U64(job, cases[i].job, cases[i].path);
	}
}

static void test_ts(void)
{
	char ts[32];

	event_format_ts(0, ts);
	CHECK(strcmp(ts, "1970-01-01T00:00:00.000000Z") == 0, "epoch: %s", ts);
	event_format_ts(1714564800123456789LL, ts);
	CHECK(strcmp(ts, "2024-05-01T12:00:00.123456Z") == 0, "2024: %s", ts);
}

/* Dump o as a line and parse it back strictly; NULL if that fails. */
static json_t *round_trip(json_t *o)
{
	char *text = json_dumps(o, JSON_COMPACT);
	json_error_t err;
	json_t *back;

	if (!text)
		return NULL;
	CHECK(strchr(text, '\n') == NULL, "one line: %s", text);
	back = json_loads(text, JSON_REJECT_DUPLICATES, &err);
	CHECK(back != NULL, "strict parse of %s: %s", text, err.text);
	free(text);
	return back;
}

static void test_hostile_names(void)
{
	static const struct {
		const char *in, *want; /* want: the string after the round trip */
	} cases[] = {
		{ "plain", "plain" },
		{ "q\"b\\c", "q\"b\\c" },
		{ "ctl\x01\x1f\n\t", "ctl\x01\x1f\n\t" },
		{ "bad\xff", "bad\xef\xbf\xbd" },
		{ "\xc3\xa9t\xc3\xa9", "\xc3\xa9t\xc3\xa9" },    /* valid UTF-8 kept */
		{ "\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd" },      /* overlong */
		{ "\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" }, /* surrogate */
		{ "cut\xe2\x82", "cut\xef\xbf\xbd\xef\xbf\xbd" },  /* truncated sequence */
		{ "\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80" },      /* 4-byte sequence kept */
	};
	struct sluice_event e = {
		.type = SLUICE_EVENT_DENY,
		.verdict = SLUICE_VERDICT_DENY,
		.reason = SLUICE_REASON_RULE,
		.flags = SLUICE_EVENT_F_DST | SLUICE_EVENT_F_PORTS | SLUICE_EVENT_F_SOCKET,
		.proto = IPPROTO_UDP,
		.dport = { 0x27, 0x0f },
		.uid = 1000,
		.suppressed = 7,
		.packets = 1,
		.bytes = 60,
	};

	addr_parse("203.0.113.9", &e.dst);
	addr_parse("192.0.2.1", &e.src);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char cgroup[64];
		struct event_names names = { .rule = cases[i].in, .iface = cases[i].in,
					     .user = cases[i].in, .cgroup = cgroup };
		json_t *o, *back;

		snprintf(cgroup, sizeof(cgroup), "/x/job_99/%s", cases[i].in);
		o = event_json(&e, &names, 0);
		back = o ? round_trip(o) : NULL;
		CHECK(back != NULL, "case %zu", i);
		if (back) {
			const char *iface = json_string_value(json_object_get(back, "iface"));

			CHECK(iface && strcmp(iface, cases[i].want) == 0, "case %zu: iface", i);
			CHECK_EQ_U64(json_integer_value(json_object_get(back, "job")), 99, "job");
		}
		json_decref(back);
		json_decref(o);
	}
}

static void test_fields(void)
{
	struct sluice_event e = { .type = SLUICE_EVENT_DENY, .verdict = SLUICE_VERDICT_DENY,
				  .reason = SLUICE_REASON_TRUNCATED, .packets = 1, .bytes = 20 };
	struct event_names none = {};
	char text[256];
	json_t *o;

	/* A truncated frame from no socket: no addresses, ports, uid, user, cgroup or job. */
	o = event_json(&e, &none, 0);
	CHECK(o != NULL, "event");
	if (!o)
		return;
	for (const char *const *k = (const char *const[]){ "src", "dst", "sport", "dport", "proto",
							   "uid", "user", "cgroup", "job", "rule",
							   "iface", NULL };
	     *k; k++)
		CHECK(json_object_get(o, *k) == NULL, "field %s absent when unknown", *k);
	CHECK(strcmp(json_string_value(json_object_get(o, "reason")), "truncated") == 0, "reason");
	CHECK_EQ_U64(json_integer_value(json_object_get(o, "suppressed")), 0, "suppressed present");
	json_decref(o);

	/* new_destination is not rate limited: no suppressed field. */
	e.type = SLUICE_EVENT_NEW_DESTINATION;
	o = event_json(&e, &none, 0);
	CHECK(o && !json_object_get(o, "suppressed"), "new_destination has no suppressed");
	json_decref(o);

	/* Text for humans: control characters shown escaped, never raw. */
	o = json_pack("{s:s,s:s,s:s,s:s}", "ts", "2024-05-01T12:00:00.000000Z", "type", "deny",
		      "iface", "e\x1b[2Jvil", "dst", "2001:db8::1");
	json_object_set_new(o, "dport", json_integer(443));
	event_text(o, text, sizeof(text));
	CHECK(strchr(text, '\x1b') == NULL, "no raw escape: %s", text);
	CHECK(strstr(text, "iface=e\\x1b[2Jvil") != NULL, "escaped: %s", text);
	CHECK(strstr(text, "[2001:db8::1]:443") != NULL, "IPv6 with port: %s", text);
	json_decref(o);
}

/* A directory that hangs until the test lets it answer. */
static pthread_mutex_t dir_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t dir_cond = PTHREAD_COND_INITIALIZER;
static bool dir_open;

static bool hanging_lookup(uint32_t uid, char *name, size_t len)
{
	pthread_mutex_lock(&dir_lock);
	while (!dir_open)
		pthread_cond_wait(&dir_cond, &dir_lock);
	pthread_mutex_unlock(&dir_lock);
	snprintf(name, len, "user%u", uid);
	return true;
}

static bool quick_lookup(uint32_t uid, char *name, size_t len)
{
	if (uid == 4242)
		return false;
	snprintf(name, len, "quick%u", uid);
	return true;
}

/*
 * A hung directory (LDAP down) must not hang the caller: enrich_user answers without the
 * name (were it to block, this test would never end and ctest's timeout would fail it),
 * and gives the name once the directory answers.
 */
static void test_slow_directory(void)
{
	struct enrich *x;
	const char *name = NULL;

	enrich_set_user_lookup(quick_lookup);
	x = enrich_new();
	CHECK(x != NULL, "enrich_new");
	if (!x)
		return;
	CHECK(enrich_user(x, 1000) && strcmp(enrich_user(x, 1000), "quick1000") == 0,
	      "a directory that answers at once: the name with the first event");
	CHECK(enrich_user(x, 4242) == NULL, "a uid without a name: none");
	enrich_free(x);

	enrich_set_user_lookup(hanging_lookup);
	x = enrich_new();
	CHECK(enrich_user(x, 1001) == NULL, "the directory hangs: the event goes without a name");
	CHECK(enrich_user(x, 1002) == NULL, "another uid meanwhile: no wait, no name");
	CHECK(enrich_user(x, 1001) == NULL, "asked again while it hangs: still no wait");
	pthread_mutex_lock(&dir_lock);
	dir_open = true;
	pthread_cond_broadcast(&dir_cond);
	pthread_mutex_unlock(&dir_lock);
	/* The answers arrive on the lookup thread; poll for them (bounded, 10 s). */
	for (int i = 0; i < 1000 && !(name = enrich_user(x, 1002)); i++)
		usleep(10000);
	CHECK(name && strcmp(name, "user1002") == 0, "the directory answered: the name");
	name = enrich_user(x, 1001);
	CHECK(name && strcmp(name, "user1001") == 0, "and the first uid's name too");
	enrich_free(x);
	enrich_set_user_lookup(NULL);
}

int main(void)
{
	test_job_id();
	test_ts();
	test_hostile_names();
	test_fields();
	test_slow_directory();
	return check_summary();
}

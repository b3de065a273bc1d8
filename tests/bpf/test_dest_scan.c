// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The exporter's walks over the destination table (user/dest_scan.c): for a table of known
 * destinations and byte counts, each way -- bpf_for_each_map_elem in a syscall program, and
 * the map iterator -- must report exactly the destinations with at least min_bytes, each
 * once with its counters, and the number of entries; and when more qualify than the first
 * way holds (SLUICE_DEST_FOUND_MAX), the walk must still report them all (by the iterator).
 * Needs root (BPF maps and programs); no interface is touched.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>

#include <sluice/abi.h>

#include "check.h"
#include "dest_scan.h"
#include "log.h"

/* More than SLUICE_DEST_FOUND_MAX, so a walk from zero overflows the first way. */
#define TABLE_ENTRIES (2 * SLUICE_DEST_FOUND_MAX + 1000)

/* Destination i: its address and its bytes (distinct, split over two verdicts). */
static void dest_of(unsigned i, struct sluice_addr *a, struct sluice_dest_stats *st)
{
	memset(a, 0, sizeof(*a));
	a->a[0] = 0x20; /* 2001:db8::/32, documentation space */
	a->a[1] = 0x01;
	a->a[2] = 0x0d;
	a->a[3] = 0xb8;
	a->a[12] = i >> 24;
	a->a[13] = i >> 16;
	a->a[14] = i >> 8;
	a->a[15] = i;
	memset(st, 0, sizeof(*st));
	st->packets[SLUICE_VERDICT_ALLOW] = 1 + i;
	st->bytes[SLUICE_VERDICT_ALLOW] = 100 * (__u64)i;
	st->packets[SLUICE_VERDICT_DENY] = 1;
	st->bytes[SLUICE_VERDICT_DENY] = 7;
}

static __u64 bytes_of(unsigned i)
{
	return 100 * (__u64)i + 7;
}

struct seen {
	unsigned char *count; /* per destination index: how many times reported */
	size_t rows, wrong;
};

static int record(const struct dest_row *row, void *ctx)
{
	struct seen *s = ctx;
	struct sluice_addr a;
	struct sluice_dest_stats st;
	unsigned i = (unsigned)row->addr.a[12] << 24 | row->addr.a[13] << 16 |
		     row->addr.a[14] << 8 | row->addr.a[15];

	s->rows++;
	if (i >= TABLE_ENTRIES) {
		s->wrong++;
		return 0;
	}
	dest_of(i, &a, &st);
	if (memcmp(&a, &row->addr, sizeof(a)) || memcmp(&st, &row->stats, sizeof(st)) ||
	    row->bytes != bytes_of(i) || row->packets != 2 + i)
		s->wrong++;
	s->count[i]++;
	return 0;
}

/* One walk from min_bytes, checked against the table; returns whether it used the first way. */
static bool walk_and_check(struct dest_scan *scan, __u64 min_bytes, const char *what)
{
	struct seen s = { .count = calloc(TABLE_ENTRIES, 1) };
	size_t want = 0, missing = 0, twice = 0;
	__u64 entries = 0;
	int err;

	if (!s.count) {
		CHECK(0, "out of memory");
		return false;
	}
	err = dest_scan_run(scan, min_bytes, record, &s, &entries);
	CHECK(err == 0, "%s: walk failed: %s", what, strerror(-err));
	for (unsigned i = 0; i < TABLE_ENTRIES; i++) {
		bool qualifies = bytes_of(i) >= min_bytes;

		want += qualifies;
		missing += qualifies && s.count[i] == 0;
		twice += s.count[i] > 1 || (!qualifies && s.count[i]);
	}
	CHECK_EQ_U64(s.rows, want, what);
	CHECK(missing == 0 && twice == 0 && s.wrong == 0,
	      "%s: %zu missing, %zu reported wrongly or twice, %zu with wrong counters", what,
	      missing, twice, s.wrong);
	CHECK_EQ_U64(entries, TABLE_ENTRIES, what);
	free(s.count);
	return dest_scan_used_top(scan);
}

int main(void)
{
	struct sluice_addr *keys = calloc(TABLE_ENTRIES, sizeof(*keys));
	struct sluice_dest_stats *vals = calloc(TABLE_ENTRIES, sizeof(*vals));
	__u32 count = TABLE_ENTRIES;
	struct dest_scan *scan;
	int fd;

	log_init(getenv("SLUICE_TEST_VERBOSE") ? LOG_DEBUG : LOG_WARN);
	/* The datapath's table layout (LRU hash), with room to spare as in production. */
	fd = bpf_map_create(BPF_MAP_TYPE_LRU_HASH, "test_dests", sizeof(struct sluice_addr),
			    sizeof(struct sluice_dest_stats), 2 * TABLE_ENTRIES, NULL);
	if (fd < 0 || !keys || !vals) {
		fprintf(stderr, "cannot create the table: %s (root needed)\n", strerror(errno));
		return 1;
	}
	for (unsigned i = 0; i < TABLE_ENTRIES; i++)
		dest_of(i, &keys[i], &vals[i]);
	if (bpf_map_update_batch(fd, keys, vals, &count, NULL) < 0 || count != TABLE_ENTRIES) {
		fprintf(stderr, "cannot fill the table: %s\n", strerror(errno));
		return 1;
	}
	scan = dest_scan_open(fd);
	if (!scan) {
		fprintf(stderr, "cannot load the destination walks\n");
		return 1;
	}
	/* The daemon's way: few qualify, so the walk without iterator does it. */
	CHECK(walk_and_check(scan, bytes_of(TABLE_ENTRIES - 100), "top 100, default way"),
	      "a walk with 100 qualifying used bpf_for_each_map_elem");
	CHECK(walk_and_check(scan, bytes_of(TABLE_ENTRIES - SLUICE_DEST_FOUND_MAX),
			     "exactly SLUICE_DEST_FOUND_MAX qualifying, default way"),
	      "a walk with SLUICE_DEST_FOUND_MAX qualifying used bpf_for_each_map_elem");
	/* Too many for found[]: the iterator takes over and still reports every one. */
	CHECK(!walk_and_check(scan, 0, "all qualifying, default way"),
	      "a walk with more than SLUICE_DEST_FOUND_MAX qualifying fell back to the iterator");
	CHECK(!walk_and_check(scan, bytes_of(TABLE_ENTRIES - SLUICE_DEST_FOUND_MAX - 1),
			      "SLUICE_DEST_FOUND_MAX + 1 qualifying, default way"),
	      "one more than found[] holds falls back to the iterator");
	/* The iterator alone gives the same answers. */
	dest_scan_force_iterator(scan, true);
	CHECK(!walk_and_check(scan, bytes_of(TABLE_ENTRIES - 100), "top 100, iterator"),
	      "the forced iterator was used");
	walk_and_check(scan, 0, "all qualifying, iterator");
	/* Nothing qualifies. */
	dest_scan_force_iterator(scan, false);
	walk_and_check(scan, UINT64_MAX, "none qualifying, default way");
	dest_scan_close(scan);
	free(keys);
	free(vals);
	return check_summary();
}

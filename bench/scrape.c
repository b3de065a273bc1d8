// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * sluice-bench-scrape: what one Prometheus scrape costs with many tracked destinations.
 *
 * A private (unpinned) datapath is loaded for its node-total and interface maps, and a
 * destination table with the datapath's layout but room for --destinations entries (default
 * 1 000 000) is filled with that many destinations, each with a different byte count. Then
 * the exporter's renderer (metrics_render, what `GET /metrics` runs) is timed several times,
 * three ways interleaved: the daemon's (user/dest_scan.c: bpf_for_each_map_elem in a syscall
 * program, the map iterator when too many qualify), the map iterator alone, and every entry
 * copied out with batch lookups. Reported: wall time per scrape, output size (the three must
 * render the same series), and this process's peak RSS before and after the scrapes (the
 * scrape's own memory is bounded by the top-N heap and one read batch, whatever the table
 * holds). Needs root. Never part of ctest.
 */
#include <errno.h>
#include <stdbool.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <bpf/bpf.h>

#include <sluice/abi.h>

#include "datapath.h"
#include "dest_scan.h"
#include "log.h"
#include "metrics.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long peak_rss_kib(void)
{
	struct rusage ru;

	return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : -1;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Do a and b hold the same lines, in any order? */
static bool same_lines(char *a, char *b)
{
	char **la = NULL, **lb = NULL;
	size_t na = 0, nb = 0;
	bool same;

	for (char *s = strtok(a, "\n"); s; s = strtok(NULL, "\n")) {
		la = realloc(la, (na + 1) * sizeof(*la));
		la[na++] = s;
	}
	for (char *s = strtok(b, "\n"); s; s = strtok(NULL, "\n")) {
		lb = realloc(lb, (nb + 1) * sizeof(*lb));
		lb[nb++] = s;
	}
	qsort(la, na, sizeof(*la), cmp_str);
	qsort(lb, nb, sizeof(*lb), cmp_str);
	same = na == nb;
	for (size_t i = 0; same && i < na; i++)
		same = strcmp(la[i], lb[i]) == 0;
	free(la);
	free(lb);
	return same;
}

/* Fill fd with n destinations (IPv6 2001:db8::/32 space; IPv4 for every 4th) by batches. */
static int fill(int fd, unsigned n)
{
	enum { CHUNK = 8192 };
	struct sluice_addr *keys = calloc(CHUNK, sizeof(*keys));
	struct sluice_dest_stats *vals = calloc(CHUNK, sizeof(*vals));
	int err = 0;

	if (!keys || !vals) {
		err = -ENOMEM;
		goto out;
	}
	for (unsigned done = 0; done < n && !err;) {
		__u32 count = n - done < CHUNK ? n - done : CHUNK;

		for (__u32 i = 0; i < count; i++) {
			unsigned id = done + i;
			struct sluice_addr *a = &keys[i];

			memset(a, 0, sizeof(*a));
			if (id % 4 == 0) {
				a->a[10] = a->a[11] = 0xff;
				a->a[12] = 10;
			} else {
				a->a[0] = 0x20;
			a->a[1] = 0x01;
			a->a[2] = 0x0d;
			a->a[3] = 0xb8;
			}
			memcpy(&a->a[13], &id, 3);
			a->a[9] = id >> 24;
			memset(&vals[i], 0, sizeof(vals[i]));
			vals[i].packets[id % 2] = 1 + id % 1000;
			vals[i].bytes[id % 2] = 64 * (1 + (__u64)id * 7919 % 1000003);
		}
		if (bpf_map_update_batch(fd, keys, vals, &count, NULL) < 0)
			err = -errno;
		done += count;
	}
out:
	free(keys);
	free(vals);
	return err;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "destinations", required_argument, NULL, 'd' },
		{ "top", required_argument, NULL, 't' },
		{ "reps", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	unsigned n = 1000000, top = METRICS_TOP_DEFAULT, reps = 7;
	struct metrics_policy pol = { .lock = PTHREAD_MUTEX_INITIALIZER, .generation = 1 };
	struct datapath dp;
	double *t;
	size_t size = 0;
	long rss_filled, rss_after;
	int opt, dests_fd, err;

	while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		switch (opt) {
		case 'd': n = strtoul(optarg, NULL, 10); break;
		case 't': top = strtoul(optarg, NULL, 10); break;
		case 'r': reps = strtoul(optarg, NULL, 10); break;
		default:
			printf("Usage: sluice-bench-scrape [--destinations N] [--top N] [--reps N]\n"
			       "Time one /metrics scrape with N tracked destinations (default 1000000).\n");
			return opt == 'h' ? 0 : 2;
		}
	}
	if (!n || !reps || top > METRICS_TOP_MAX) {
		fprintf(stderr, "scrape: bad arguments\n");
		return 2;
	}
	log_init(LOG_WARN);
	if (datapath_load(&dp, NULL)) {
		fprintf(stderr, "scrape: cannot load the datapath (root needed)\n");
		return 1;
	}
	/* The datapath's destination table, only larger. */
	dests_fd = bpf_map_create(BPF_MAP_TYPE_LRU_HASH, "bench_dests", sizeof(struct sluice_addr),
				  sizeof(struct sluice_dest_stats), n + n / 16, NULL);
	if (dests_fd < 0 || (err = fill(dests_fd, n))) {
		fprintf(stderr, "scrape: cannot create and fill %u destinations: %s\n", n,
			strerror(errno));
		return 1;
	}
	rss_filled = peak_rss_kib();
	struct metrics_source src = { .dests_fd = dests_fd, .totals_fd = dp.totals_fd,
				      .ifaces_fd = dp.ifaces_fd, .policy_fd = dp.policy_fd,
				      .top_n = top, .policy = &pol };

	struct metrics_scan scans[3] = { {}, { .scan = dest_scan_open(dests_fd) },
					 { .scan = dest_scan_open(dests_fd) } };
	static const char *const names[3] = { "batch", "iterator", "walk" };
	char *texts[3] = {};
	double *times[3];
	bool walk_top = true;

	if (!scans[1].scan || !scans[2].scan) {
		fprintf(stderr, "scrape: the kernel refused the destination iterator\n");
		return 1;
	}
	/*
	 * Three ways of finding the top N, interleaved repetition by repetition: every entry
	 * copied out with batch lookups; the kernel map iterator alone; and what the daemon
	 * does (dest_scan_run: bpf_for_each_map_elem, the iterator when too many qualify).
	 */
	dest_scan_force_iterator(scans[1].scan, true);
	for (int way = 0; way < 3; way++)
		times[way] = calloc(reps, sizeof(double));
	for (unsigned r = 0; r <= reps; r++) { /* r == 0: warm-up */
		for (int way = 0; way < 3; way++) {
			char *text = NULL;
			FILE *f = open_memstream(&text, &size);
			double t0;

			src.scan = way ? &scans[way] : NULL;
			t0 = now_s();
			err = metrics_render(&src, f);
			fclose(f);
			if (r)
				times[way][r - 1] = (now_s() - t0) * 1e3;
			if (err) {
				fprintf(stderr, "scrape: render failed: %s\n", strerror(-err));
				return 1;
			}
			if (way == 2 && r)
				walk_top &= dest_scan_used_top(scans[2].scan);
			free(texts[way]);
			texts[way] = text;
		}
	}
	for (int way = 0; way < 3; way++) {
		t = times[way];
		qsort(t, reps, sizeof(*t), cmp_double);
		printf("scrape_%s_ms_median\t%.1f\nscrape_%s_ms_min\t%.1f\nscrape_%s_ms_max\t%.1f\n",
		       names[way], t[reps / 2], names[way], t[0], names[way], t[reps - 1]);
		free(t);
	}
	printf("walk_without_iterator\t%s\n", walk_top ? "yes" : "no");
	printf("found_max\t%d\n", SLUICE_DEST_FOUND_MAX);
	rss_after = peak_rss_kib();
	/* Same destinations and values either way (ties in bytes may come in another order). */
	/* same_lines cuts its arguments into lines in place: the second pair gets a copy. */
	char *copy = strdup(texts[1]);
	bool same = copy && same_lines(texts[0], texts[1]) && same_lines(copy, texts[2]);

	printf("same_output\t%s\n", same ? "yes" : "no");
	free(copy);
	printf("destinations\t%u\ntop_n\t%u\nreps\t%u\n", n, top, reps);
	printf("output_bytes\t%zu\n", size);
	printf("peak_rss_mib_before_scrapes\t%.1f\npeak_rss_mib_after_scrapes\t%.1f\n",
	       rss_filled / 1024.0, rss_after / 1024.0);
	dest_scan_close(scans[1].scan);
	dest_scan_close(scans[2].scan);
	for (int way = 0; way < 3; way++)
		free(texts[way]);
	datapath_close(&dp);
	return 0;
}

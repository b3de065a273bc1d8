// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* The destination-table walks: load, run a walk, read the entries it copied out. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "dest_scan.h"
#include "dests_iter.skel.h"
#include "log.h"

struct dest_scan {
	struct dests_iter *skel;
	struct bpf_link *link;
	bool top;      /* sluice_dests_top loaded: try it first */
	bool iter_only; /* dest_scan_force_iterator */
	bool used_top; /* the last walk was sluice_dests_top's */
};

/*
 * Open and load the walks for dests_fd. A kernel that refuses the syscall program (older
 * than 5.14, or without bpf_for_each_map_elem there) still gets the iterator.
 */
static struct dests_iter *load_walks(int dests_fd, bool with_top)
{
	struct dests_iter *skel = dests_iter__open();

	if (!skel)
		return NULL;
	/* The reset is a syscall program too: it comes and goes with the top walk. */
	if (bpf_map__reuse_fd(skel->maps.sluice_scan_dests, dests_fd) < 0 ||
	    (!with_top && bpf_program__set_autoload(skel->progs.sluice_dests_top, false) < 0) ||
	    (!with_top && bpf_program__set_autoload(skel->progs.sluice_budget_reset, false) < 0) ||
	    dests_iter__load(skel) < 0) {
		dests_iter__destroy(skel);
		return NULL;
	}
	return skel;
}

struct dest_scan *dest_scan_open(int dests_fd)
{
	DECLARE_LIBBPF_OPTS(bpf_iter_attach_opts, opts);
	union bpf_iter_link_info info = { .map.map_fd = dests_fd };
	struct dest_scan *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->top = true;
	s->skel = load_walks(dests_fd, true);
	if (!s->skel) {
		pr_debug("destination walk without iterator not available: %s", strerror(errno));
		s->top = false;
		s->skel = load_walks(dests_fd, false);
	}
	if (!s->skel) {
		pr_debug("destination iterator not available: %s", strerror(errno));
		free(s);
		return NULL;
	}
	opts.link_info = &info;
	opts.link_info_len = sizeof(info);
	s->link = bpf_program__attach_iter(s->skel->progs.sluice_dests_iter, &opts);
	if (!s->link) {
		pr_debug("cannot attach the destination iterator: %s", strerror(errno));
		dests_iter__destroy(s->skel);
		free(s);
		return NULL;
	}
	return s;
}

void dest_scan_close(struct dest_scan *s)
{
	if (!s)
		return;
	bpf_link__destroy(s->link);
	dests_iter__destroy(s->skel);
	free(s);
}

void dest_scan_force_iterator(struct dest_scan *s, bool on)
{
	s->iter_only = on;
}

bool dest_scan_used_top(const struct dest_scan *s)
{
	return s->used_top;
}

static int deliver(const struct sluice_dest_record *rec,
		   int (*cb)(const struct dest_row *row, void *ctx), void *ctx)
{
	struct dest_row r = { .addr = rec->addr, .stats = rec->stats };

	for (int v = 0; v < SLUICE_VERDICT_MAX; v++) {
		r.packets += r.stats.packets[v];
		r.bytes += r.stats.bytes[v];
	}
	return cb(&r, ctx);
}

int dest_scan_budget_reset(struct dest_scan *s, __u32 budget, const struct sluice_addr *addr)
{
	LIBBPF_OPTS(bpf_test_run_opts, opts);
	struct dests_iter__bss *bss = s->skel->bss;

	if (!s->top)
		return -EOPNOTSUPP; /* the kernel refused syscall programs */
	bss->reset_addr = *addr;
	bss->reset_budget = budget;
	if (bpf_prog_test_run_opts(bpf_program__fd(s->skel->progs.sluice_budget_reset), &opts) < 0)
		return -errno;
	return bss->reset_cleared ? 1 : 0;
}

/* sluice_dests_top: -ENOSPC when more than SLUICE_DEST_FOUND_MAX qualified. */
static int run_top(struct dest_scan *s, __u64 min_bytes,
		   int (*cb)(const struct dest_row *row, void *ctx), void *ctx, __u64 *entries)
{
	LIBBPF_OPTS(bpf_test_run_opts, opts);
	struct dests_iter__bss *bss = s->skel->bss;
	int err = 0;

	bss->min_bytes = min_bytes;
	bss->entries = 0;
	bss->found_n = 0;
	bss->overflow = 0;
	if (bpf_prog_test_run_opts(bpf_program__fd(s->skel->progs.sluice_dests_top), &opts) < 0)
		return -errno;
	if (bss->overflow)
		return -ENOSPC;
	for (__u64 i = 0; i < bss->found_n && i < SLUICE_DEST_FOUND_MAX && !err; i++)
		err = deliver(&bss->found[i], cb, ctx);
	*entries = bss->entries;
	return err;
}

/* sluice_dests_iter: the records stream through a read() of the iterator's fd. */
static int run_iter(struct dest_scan *s, __u64 min_bytes,
		    int (*cb)(const struct dest_row *row, void *ctx), void *ctx, __u64 *entries)
{
	enum { RECORDS = 512 };
	struct sluice_dest_record *buf = malloc(RECORDS * sizeof(*buf));
	size_t have = 0;
	int fd, err = 0;

	if (!buf)
		return -ENOMEM;
	s->skel->bss->min_bytes = min_bytes;
	s->skel->bss->entries = 0;
	fd = bpf_iter_create(bpf_link__fd(s->link));
	if (fd < 0) {
		err = -errno;
		free(buf);
		return err;
	}
	for (;;) {
		ssize_t n = read(fd, (char *)buf + have, RECORDS * sizeof(*buf) - have);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = -errno;
			break;
		}
		have += n;
		size_t whole = have / sizeof(*buf);

		for (size_t i = 0; i < whole && !err; i++)
			err = deliver(&buf[i], cb, ctx);
		/* A record split across reads waits for the rest. */
		memmove(buf, buf + whole, have - whole * sizeof(*buf));
		have -= whole * sizeof(*buf);
		if (n == 0 || err)
			break;
	}
	close(fd);
	free(buf);
	*entries = s->skel->bss->entries;
	return err;
}

int dest_scan_run(struct dest_scan *s, __u64 min_bytes,
		  int (*cb)(const struct dest_row *row, void *ctx), void *ctx, __u64 *entries)
{
	int err;

	s->used_top = false;
	if (s->top && !s->iter_only) {
		/* Nothing reached cb unless it succeeded: the iterator can start afresh. */
		err = run_top(s, min_bytes, cb, ctx, entries);
		if (err != -ENOSPC) {
			s->used_top = !err;
			return err;
		}
	}
	return run_iter(s, min_bytes, cb, ctx, entries);
}

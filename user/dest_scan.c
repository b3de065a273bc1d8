// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* The destination-table iterator: load, run a walk, read the entries it copied out. */
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
};

struct dest_scan *dest_scan_open(int dests_fd)
{
	DECLARE_LIBBPF_OPTS(bpf_iter_attach_opts, opts);
	union bpf_iter_link_info info = { .map.map_fd = dests_fd };
	struct dest_scan *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->skel = dests_iter__open_and_load();
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

/* One record as the program writes it. */
struct record {
	struct sluice_addr addr;
	struct sluice_dest_stats stats;
};

int dest_scan_run(struct dest_scan *s, __u64 min_bytes,
		  int (*cb)(const struct dest_row *row, void *ctx), void *ctx, __u64 *entries)
{
	enum { RECORDS = 512 };
	struct record *buf = malloc(RECORDS * sizeof(*buf));
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

		for (size_t i = 0; i < whole && !err; i++) {
			struct dest_row r = { .addr = buf[i].addr, .stats = buf[i].stats };

			for (int v = 0; v < SLUICE_VERDICT_MAX; v++) {
				r.packets += r.stats.packets[v];
				r.bytes += r.stats.bytes[v];
			}
			err = cb(&r, ctx);
		}
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

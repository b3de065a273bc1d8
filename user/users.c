// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Per-user counters read back from sluice_users. */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "users.h"

static int cmp_bytes_desc(const void *a, const void *b)
{
	const struct user_row *x = a, *y = b;

	if (x->stats.bytes != y->stats.bytes)
		return x->stats.bytes < y->stats.bytes ? 1 : -1;
	return (x->uid > y->uid) - (x->uid < y->uid);
}

int users_read(int users_fd, struct user_row **rows, size_t *n)
{
	int ncpus = libbpf_num_possible_cpus();
	struct sluice_user_stats *percpu;
	__u32 key, next;
	void *prev = NULL;

	*n = 0;
	*rows = NULL;
	if (ncpus <= 0)
		return ncpus < 0 ? ncpus : -EINVAL;
	percpu = calloc(ncpus, sizeof(*percpu));
	*rows = calloc(SLUICE_USER_MAX, sizeof(**rows));
	if (!percpu || !*rows) {
		free(percpu);
		return -ENOMEM;
	}
	/* Key by key: the table is small and read once per command or scrape. */
	while (*n < SLUICE_USER_MAX && bpf_map_get_next_key(users_fd, prev, &next) == 0) {
		struct user_row *r = &(*rows)[*n];

		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(users_fd, &next, percpu) < 0)
			continue; /* evicted meanwhile */
		memset(r, 0, sizeof(*r));
		r->uid = next;
		for (int c = 0; c < ncpus; c++) {
			r->stats.packets += percpu[c].packets;
			r->stats.bytes += percpu[c].bytes;
		}
		(*n)++;
	}
	free(percpu);
	qsort(*rows, *n, sizeof(**rows), cmp_bytes_desc);
	return 0;
}

const char *user_name(__u32 uid, char *buf, size_t len)
{
	struct passwd *pw = getpwuid(uid);

	if (pw)
		snprintf(buf, len, "%s", pw->pw_name);
	else
		snprintf(buf, len, "uid %u", uid);
	return buf;
}

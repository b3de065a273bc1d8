// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Per-user counters read back from sluice_users (struct sluice_user_slot). */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "users.h"

#define USER_ENTRIES (SLUICE_USER_SLOTS + 1)

static int cmp_uid(const void *a, const void *b)
{
	const struct user_row *x = a, *y = b;

	if (x->other != y->other)
		return x->other - y->other;
	return (x->uid > y->uid) - (x->uid < y->uid);
}

static int cmp_bytes_desc(const void *a, const void *b)
{
	const struct user_row *x = a, *y = b;

	if (x->stats.bytes != y->stats.bytes)
		return x->stats.bytes < y->stats.bytes ? 1 : -1;
	return cmp_uid(a, b);
}

/* The whole per-CPU array in one batch lookup: keys and values, CPU-major per key. */
static int read_slots(int fd, int ncpus, struct sluice_user_slot *values)
{
	__u32 *keys = calloc(USER_ENTRIES, sizeof(*keys)), batch, count = USER_ENTRIES;
	int err = 0;

	if (!keys)
		return -ENOMEM;
	if (bpf_map_lookup_batch(fd, NULL, &batch, keys, values, &count, NULL) < 0 &&
	    errno != ENOENT) {
		/* A kernel without batch ops for arrays: one lookup per slot instead. */
		err = 0;
		for (__u32 k = 0; k < USER_ENTRIES && !err; k++)
			if (bpf_map_lookup_elem(fd, &k, &values[(size_t)k * ncpus]) < 0)
				err = -errno;
	}
	free(keys);
	return err;
}

int users_read(int users_fd, struct user_row **rows, size_t *n)
{
	int ncpus = libbpf_num_possible_cpus();
	struct sluice_user_slot *values;
	size_t used = 0, out = 0;
	struct user_row *all;
	int err;

	*n = 0;
	*rows = NULL;
	if (ncpus <= 0)
		return ncpus < 0 ? ncpus : -EINVAL;
	values = calloc((size_t)USER_ENTRIES * ncpus, sizeof(*values));
	all = calloc((size_t)USER_ENTRIES * ncpus, sizeof(*all));
	if (!values || !all) {
		free(values);
		free(all);
		return -ENOMEM;
	}
	err = read_slots(users_fd, ncpus, values);
	for (size_t k = 0; !err && k < USER_ENTRIES; k++) {
		for (int c = 0; c < ncpus; c++) {
			const struct sluice_user_slot *s = &values[k * ncpus + c];

			if (!s->used)
				continue;
			all[used++] = (struct user_row){ .uid = s->uid,
							 .other = k == SLUICE_USER_OTHER,
							 .stats = { s->packets, s->bytes } };
		}
	}
	free(values);
	if (err) {
		free(all);
		return err;
	}
	/* One uid may hold a slot on several CPUs (a different one on each): sum them. */
	qsort(all, used, sizeof(*all), cmp_uid);
	for (size_t i = 0; i < used; i++) {
		if (out && all[out - 1].other == all[i].other &&
		    (all[i].other || all[out - 1].uid == all[i].uid)) {
			all[out - 1].stats.packets += all[i].stats.packets;
			all[out - 1].stats.bytes += all[i].stats.bytes;
			continue;
		}
		all[out++] = all[i];
	}
	qsort(all, out, sizeof(*all), cmp_bytes_desc);
	*rows = all;
	*n = out;
	return 0;
}

const char *user_name(const struct user_row *r, char *buf, size_t len)
{
	struct passwd *pw = r->other ? NULL : getpwuid(r->uid);

	if (r->other)
		snprintf(buf, len, "other");
	else if (pw)
		snprintf(buf, len, "%s", pw->pw_name);
	else
		snprintf(buf, len, "uid %u", r->uid);
	return buf;
}

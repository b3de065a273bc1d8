// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Reading maps back for the read commands: batch lookups, per-CPU sums. */
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "ifslots.h"
#include "log.h"
#include "output.h"
#include "policy_kernel.h"

#define BATCH 4096

void dest_cached_decision(const struct sluice_dest_stats *s, struct cached_decision *d)
{
	d->generation = SLUICE_CACHE_GEN(s->cache_verdict);
	d->rule_id = SLUICE_CACHE_VALUE(s->cache_rule);
	d->port_class = SLUICE_CACHE_VALUE(s->cache_class);
	d->verdict = SLUICE_CACHE_VALUE(s->cache_verdict) & 0xff;
	d->reason = SLUICE_CACHE_VALUE(s->cache_verdict) >> 8 & 0xff;
	d->flags = SLUICE_CACHE_VALUE(s->cache_verdict) >> 16 & 0xff;
}

int each_destination(int dests_fd, int (*cb)(const struct dest_row *row, void *ctx), void *ctx)
{
	struct sluice_addr *keys = calloc(BATCH, sizeof(*keys));
	struct sluice_dest_stats *vals = calloc(BATCH, sizeof(*vals));
	__u8 batch_pos[16]; /* opaque cursor; an LRU hash uses 4 bytes */
	bool first = true;
	int err = 0;

	if (!keys || !vals) {
		err = -ENOMEM;
		goto out;
	}
	for (;;) {
		__u32 got = BATCH;
		int ret = bpf_map_lookup_batch(dests_fd, first ? NULL : batch_pos, batch_pos, keys,
					       vals, &got, NULL);

		if (ret < 0 && errno != ENOENT) {
			err = -errno;
			pr_err("cannot read destinations: %s", strerror(-err));
			goto out;
		}
		first = false;
		for (__u32 i = 0; i < got && !err; i++) {
			struct dest_row r = { .addr = keys[i], .stats = vals[i] };

			for (int v = 0; v < SLUICE_VERDICT_MAX; v++) {
				r.packets += vals[i].packets[v];
				r.bytes += vals[i].bytes[v];
			}
			err = cb(&r, ctx);
		}
		if (ret < 0 || err) /* ENOENT: that was the last batch */
			break;
	}
out:
	free(keys);
	free(vals);
	return err;
}

struct row_array {
	struct dest_row *rows;
	size_t n, cap;
};

static int append_row(const struct dest_row *row, void *ctx)
{
	struct row_array *a = ctx;

	if (a->n == a->cap) {
		size_t grown = a->cap ? a->cap * 2 : BATCH;
		void *p = realloc(a->rows, grown * sizeof(*a->rows));

		if (!p)
			return -ENOMEM;
		a->rows = p;
		a->cap = grown;
	}
	a->rows[a->n++] = *row;
	return 0;
}

int read_destinations(int dests_fd, struct dest_row **rows, size_t *n)
{
	struct row_array a = {};
	int err = each_destination(dests_fd, append_row, &a);

	if (err) {
		free(a.rows);
		a.rows = NULL;
		a.n = 0;
	}
	*rows = a.rows;
	*n = a.n;
	return err;
}

int read_totals(int totals_fd, int ifaces_fd, struct total_row **rows, size_t *n)
{
	int ncpus = libbpf_num_possible_cpus();
	__u32 slot_ifindex[SLUICE_IFSLOTS], count = SLUICE_TOTALS_MAX, batch = 0;
	struct sluice_counter *vals = NULL;
	struct total_row *out = NULL;
	__u32 *keys = NULL;
	size_t used = 0;
	int err;

	*rows = NULL;
	*n = 0;
	if (ncpus < 0)
		return ncpus;
	err = ifslot_table_local(ifaces_fd, slot_ifindex);
	if (err)
		return err;
	keys = calloc(SLUICE_TOTALS_MAX, sizeof(*keys));
	vals = calloc((size_t)SLUICE_TOTALS_MAX * ncpus, sizeof(*vals));
	out = calloc(SLUICE_TOTALS_MAX, sizeof(*out));
	if (!keys || !vals || !out) {
		err = -ENOMEM;
		goto out;
	}
	/* The whole array in one syscall: every index, every CPU's copy. */
	if (bpf_map_lookup_batch(totals_fd, NULL, &batch, keys, vals, &count, NULL) < 0 &&
	    errno != ENOENT) {
		err = -errno;
		pr_err("cannot read node totals: %s", strerror(-err));
		goto out;
	}
	for (__u32 i = 0; i < count; i++) {
		__u32 index = keys[i], reason = index % SLUICE_REASON_MAX;
		__u32 verdict = index / SLUICE_REASON_MAX % SLUICE_VERDICT_MAX;
		__u32 hook = index / SLUICE_REASON_MAX / SLUICE_VERDICT_MAX % SLUICE_HOOK_MAX;
		__u32 slot = index / SLUICE_REASON_MAX / SLUICE_VERDICT_MAX / SLUICE_HOOK_MAX;
		struct total_row *r = &out[used];

		memset(r, 0, sizeof(*r));
		for (int c = 0; c < ncpus; c++) {
			r->sum.packets += vals[(size_t)i * ncpus + c].packets;
			r->sum.bytes += vals[(size_t)i * ncpus + c].bytes;
		}
		if (!r->sum.packets && !r->sum.bytes)
			continue;
		r->ifindex = slot < SLUICE_IFSLOTS ? slot_ifindex[slot] : 0;
		r->hook = hook;
		r->verdict = verdict;
		r->reason = reason;
		used++;
	}
out:
	free(keys);
	free(vals);
	if (err) {
		free(out);
		return err;
	}
	*rows = out;
	*n = used;
	return 0;
}

int read_policy_state(int policy_fd, int config_fd, __u32 *generation, __u8 *flags)
{
	struct sluice_config cfg;
	__u32 zero = 0;

	*flags = 0;
	if (bpf_map_lookup_elem(config_fd, &zero, &cfg) < 0)
		return -errno;
	*generation = cfg.generation;
	return policy_flags_in_force(policy_fd, &cfg, flags);
}

void json_print(json_t *doc)
{
	json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	putchar('\n');
	json_decref(doc);
}

const char *ifname_of(__u32 ifindex, char *buf, size_t len)
{
	char name[IF_NAMESIZE];

	if (ifindex == 0)
		snprintf(buf, len, "other");
	else if (if_indextoname(ifindex, name))
		snprintf(buf, len, "%s", name);
	else
		snprintf(buf, len, "if%u", ifindex);
	return buf;
}

// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Budgets in the kernel and the state directory: install, usage, crossings, the name table. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>

#include "budget.h"
#include "dest_scan.h"
#include "log.h"
#include "pins.h"
#include "policy.h"
#include "state.h"

#define STATE_BUDGETS "budgets"

static struct sluice_budget_target_key target_key(const struct prefix *p, __u8 epoch)
{
	struct sluice_budget_target_key k = {
		.prefixlen = SLUICE_BUDGET_PREFIX_EPOCH + p->prefixlen,
		.epoch = epoch,
		.addr = p->addr,
	};
	return k;
}

/* Remove the trie entries of one epoch. */
static int clear_targets(int fd, __u8 epoch)
{
	struct sluice_budget_target_key key, next, *doomed = NULL;
	size_t n = 0, cap = 0;
	void *prev = NULL;
	int err = 0;

	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		if (next.epoch == epoch) {
			if (n == cap) {
				size_t c = cap ? cap * 2 : 64;
				void *grown = realloc(doomed, c * sizeof(*doomed));

				if (!grown) {
					free(doomed);
					return -ENOMEM;
				}
				doomed = grown;
				cap = c;
			}
			doomed[n++] = next;
		}
		key = next;
		prev = &key;
	}
	for (size_t i = 0; i < n && !err; i++)
		if (bpf_map_delete_elem(fd, &doomed[i]) < 0 && errno != ENOENT)
			err = -errno;
	free(doomed);
	return err;
}

int budget_install(const struct budget_maps *m, const struct compiled_budgets *cb,
		   __u8 epoch_flag)
{
	__u8 epoch = epoch_flag ? 1 : 0;
	__u64 zero = 0;
	int err;

	err = clear_targets(m->targets_fd, epoch);
	for (__u32 i = 0; !err && i < SLUICE_BUDGET_MAX; i++) {
		__u32 k = epoch * SLUICE_BUDGET_MAX + i;
		struct sluice_budget none = {};

		if (bpf_map_update_elem(m->defs_fd, &k, i < cb->ndefs ? &cb->defs[i] : &none,
					BPF_ANY) < 0 ||
		    bpf_map_update_elem(m->crossed_fd, &k, &zero, BPF_ANY) < 0)
			err = -errno;
	}
	for (__u32 i = 0; !err && i < cb->nsets; i++) {
		__u32 k = epoch * SLUICE_BUDGET_SETS + i;

		if (bpf_map_update_elem(m->sets_fd, &k, &cb->sets[i], BPF_ANY) < 0)
			err = -errno;
	}
	for (size_t i = 0; !err && i < cb->ntargets; i++) {
		struct sluice_budget_target_key k = target_key(&cb->targets[i].prefix, epoch);
		struct sluice_budget_target v = { .set = cb->targets[i].set };

		if (bpf_map_update_elem(m->targets_fd, &k, &v, BPF_ANY) < 0)
			err = -errno;
	}
	if (err)
		pr_err("cannot install the budgets: %s", strerror(-err));
	return err;
}

/* --- the state directory's budget table ------------------------------------------------- */

int state_write_budgets(const char *state_dir, const struct policy *p)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	int err;

	if (!f)
		return -errno;
	/* One budget a line: id kind block limit window name target (no spaces in any). */
	for (size_t i = 0; i < p->nbudgets; i++) {
		const struct policy_budget *b = &p->budgets[i];

		fprintf(f, "%u %u %u %llu %llu %s %s\n", budget_id(b->name), b->kind, b->block,
			(unsigned long long)b->limit, (unsigned long long)b->window_s, b->name,
			b->target);
	}
	if (fclose(f) != 0) {
		free(text);
		return -ENOMEM;
	}
	err = state_write_file(state_dir, STATE_BUDGETS, text ? text : "", len);
	free(text);
	return err;
}

int state_read_budgets(const char *state_dir, struct budget_table *t)
{
	char path[PATH_MAX], line[256];
	FILE *f;
	int err = 0;

	memset(t, 0, sizeof(*t));
	if (pin_path(path, sizeof(path), state_dir, NULL, STATE_BUDGETS) < 0)
		return -ENAMETOOLONG;
	f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? 0 : -errno;
	while (!err && t->n < SLUICE_BUDGET_MAX && fgets(line, sizeof(line), f)) {
		struct budget_info b = {};
		unsigned kind, block;
		unsigned long long limit, window;
		void *grown;

		if (sscanf(line, "%u %u %u %llu %llu %63s %71s", &b.id, &kind, &block, &limit,
			   &window, b.name, b.target) != 7) {
			err = -EINVAL;
			break;
		}
		b.kind = kind;
		b.block = block;
		b.limit = limit;
		b.window_s = window;
		grown = realloc(t->items, (t->n + 1) * sizeof(*t->items));
		if (!grown) {
			err = -ENOMEM;
			break;
		}
		t->items = grown;
		t->items[t->n++] = b;
	}
	fclose(f);
	if (err)
		budget_table_free(t);
	return err;
}

void budget_table_free(struct budget_table *t)
{
	free(t->items);
	t->items = NULL;
	t->n = 0;
}

const struct budget_info *budget_table_find(const struct budget_table *t, __u32 id)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->items[i].id == id)
			return &t->items[i];
	return NULL;
}

struct usage_rows {
	struct budget_usage_row *rows;
	size_t n, cap;
};

static int usage_rows_add(struct usage_rows *r, const struct budget_usage_row *row)
{
	if (r->n == r->cap) {
		size_t c = r->cap ? r->cap * 2 : 64;
		void *grown = realloc(r->rows, c * sizeof(*r->rows));

		if (!grown)
			return -ENOMEM;
		r->rows = grown;
		r->cap = c;
	}
	r->rows[r->n++] = *row;
	return 0;
}

/* The destination budgets' usage slots of one destination entry (dest_scan_run's callback). */
static int add_dest_slots(const struct dest_row *d, void *ctx)
{
	int err = 0;

	for (int j = 0; j < SLUICE_BUDGET_SLOTS && !err; j++) {
		struct budget_usage_row row = {
			.key = { .budget = d->stats.budget[j].budget, .addr = d->addr },
			.usage = d->stats.budget[j],
			.in_dest = true,
		};

		/* A free slot, or one cleared by a reset and not charged since. */
		if (row.key.budget && row.usage.window_end_ns)
			err = usage_rows_add(ctx, &row);
	}
	return err;
}

int budget_usage_read(int usage_fd, struct dest_scan *scan, struct budget_usage_row **rows,
		      size_t *n)
{
	struct sluice_budget_usage_key key, next;
	struct usage_rows r = {};
	void *prev = NULL;
	__u64 entries;
	int err = 0;

	/* Keys one by one: the table is small (SLUICE_BUDGET_USAGE_MAX) and read rarely. */
	while (!err && r.n < SLUICE_BUDGET_USAGE_MAX &&
	       bpf_map_get_next_key(usage_fd, prev, &next) == 0) {
		struct budget_usage_row row = { .key = next };

		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(usage_fd, &next, &row.usage) == 0)
			err = usage_rows_add(&r, &row);
		/* else deleted meanwhile */
	}
	if (!err)
		err = dest_scan_run(scan, 0, add_dest_slots, &r, &entries);
	if (err) {
		free(r.rows);
		r.rows = NULL;
		r.n = 0;
	}
	*rows = r.rows;
	*n = r.n;
	return err;
}

int budget_usage_clear(int usage_fd, struct dest_scan *scan, const struct budget_usage_row *row)
{
	if (row->in_dest)
		return dest_scan_budget_reset(scan, row->key.budget, &row->key.addr);
	/* Deleting the record ends the key's window: its next packet starts a new one. */
	if (bpf_map_delete_elem(usage_fd, &row->key) == 0)
		return 1;
	return errno == ENOENT ? 0 : -errno;
}

__u64 budget_crossed_read(int crossed_fd, __u8 epoch_flag, __u32 i)
{
	__u32 k = (epoch_flag ? SLUICE_BUDGET_MAX : 0) + i;
	__u64 v = 0;

	if (i >= SLUICE_BUDGET_MAX || bpf_map_lookup_elem(crossed_fd, &k, &v) < 0)
		return 0;
	return v;
}

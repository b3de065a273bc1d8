// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Per-rule counts by name: a small bounded hash table, and reading a kernel half into it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "log.h"
#include "rule_counts.h"

void rule_counts_free(struct rule_counts *t)
{
	for (size_t i = 0; t->slots && i <= t->mask; i++)
		free(t->slots[i].name);
	free(t->slots);
	memset(t, 0, sizeof(*t));
}

static size_t hash_name(const char *s)
{
	size_t h = 0xcbf29ce484222325ull;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 0x100000001b3ull;
	return h;
}

static struct rule_count *find_slot(const struct rule_counts *t, const char *name)
{
	for (size_t h = hash_name(name) & t->mask;; h = (h + 1) & t->mask)
		if (!t->slots[h].name || strcmp(t->slots[h].name, name) == 0)
			return &t->slots[h];
}

static int grow(struct rule_counts *t)
{
	struct rule_counts bigger = { .mask = t->mask ? t->mask * 2 + 1 : 63 };

	bigger.slots = calloc(bigger.mask + 1, sizeof(*bigger.slots));
	if (!bigger.slots)
		return -ENOMEM;
	for (size_t i = 0; t->slots && i <= t->mask; i++)
		if (t->slots[i].name)
			*find_slot(&bigger, t->slots[i].name) = t->slots[i];
	bigger.n = t->n;
	free(t->slots);
	*t = bigger;
	return 0;
}

int rule_counts_add(struct rule_counts *t, const char *name, __u64 packets, __u64 bytes)
{
	struct rule_count *c;

	if ((t->n + 1) * 2 > t->mask && grow(t))
		return -ENOMEM;
	c = find_slot(t, name);
	if (!c->name) {
		if (t->n >= RULE_COUNTS_NAMES_MAX && strcmp(name, "other") != 0)
			return rule_counts_add(t, "other", packets, bytes);
		c->name = strdup(name);
		if (!c->name)
			return -ENOMEM;
		t->n++;
	}
	c->packets += packets;
	c->bytes += bytes;
	return 0;
}

const struct rule_count *rule_counts_find(const struct rule_counts *t, const char *name)
{
	const struct rule_count *c;

	if (!t->slots)
		return NULL;
	c = find_slot(t, name);
	return c->name ? c : NULL;
}

int rule_counts_merge(struct rule_counts *t, const struct rule_counts *from)
{
	int err = 0;

	for (size_t i = 0; from->slots && i <= from->mask && !err; i++)
		if (from->slots[i].name)
			err = rule_counts_add(t, from->slots[i].name, from->slots[i].packets,
					      from->slots[i].bytes);
	return err;
}

int rule_counts_read(struct rule_counts *t, int rules_fd, __u8 epoch_flag, char *const *names,
		     size_t n)
{
	int ncpus = libbpf_num_possible_cpus();
	__u32 count = SLUICE_RULE_HALF, *keys = calloc(SLUICE_RULE_HALF, sizeof(*keys));
	__u32 start = epoch_flag ? SLUICE_RULE_HALF - 1 : 0, next;
	struct sluice_counter *vals;
	int err = 0;

	if (ncpus < 0) {
		free(keys);
		return ncpus;
	}
	vals = calloc((size_t)SLUICE_RULE_HALF * ncpus, sizeof(*vals));
	if (!keys || !vals) {
		err = -ENOMEM;
		goto out;
	}
	/* One syscall for the half: a batch resumes after in_batch, so half 1 starts after H-1. */
	if (bpf_map_lookup_batch(rules_fd, epoch_flag ? &start : NULL, &next, keys, vals, &count,
				 NULL) < 0 &&
	    errno != ENOENT) {
		err = -errno;
		pr_err("cannot read per-rule counters: %s", strerror(-err));
		goto out;
	}
	for (__u32 i = 0; i < count && !err; i++) {
		__u32 slot = keys[i] - (epoch_flag ? SLUICE_RULE_HALF : 0);
		__u64 packets = 0, bytes = 0;
		const char *name;

		if (slot >= SLUICE_RULE_HALF)
			break;
		for (int c = 0; c < ncpus; c++) {
			packets += vals[(size_t)i * ncpus + c].packets;
			bytes += vals[(size_t)i * ncpus + c].bytes;
		}
		if (!packets && !bytes)
			continue;
		name = slot == SLUICE_RULE_SLOT_DEFAULT ? "default"
		       : slot < n && names[slot] && names[slot][0] ? names[slot]
								  : "other";
		err = rule_counts_add(t, name, packets, bytes);
	}
out:
	free(keys);
	free(vals);
	return err;
}

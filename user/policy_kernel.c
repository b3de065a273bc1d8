// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Atomic policy installation: classes in, trie swapped, generation bumped, classes out. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "log.h"
#include "policy_kernel.h"

/* The kernel's "operation not supported" for a map without batch ops (not in uapi errno). */
#ifndef ENOTSUPP
#define ENOTSUPP 524
#endif

int policy_next_generation(int config_fd, __u32 *generation)
{
	struct sluice_config cfg;
	__u32 zero = 0;

	if (bpf_map_lookup_elem(config_fd, &zero, &cfg) < 0)
		return -errno;
	*generation = cfg.generation + 1;
	if (*generation == 0) /* 0 means "no policy"; wrap past it */
		*generation = 1;
	return 0;
}

/* Is class inside [base, base + n)? (Unsigned arithmetic handles a range that wraps.) */
static bool class_in(__u32 class, __u32 base, __u32 n)
{
	return class - base < n;
}

/* Keys read from the port trie per batch lookup while looking for classes to remove. */
#define PORT_SCAN_CHUNK 4096

/* Append key to *keys (growing it) when its class is inside (or outside) [base, base + n). */
static int keep_if(struct sluice_port_key **keys, size_t *n, size_t *cap,
		   const struct sluice_port_key *key, __u32 base, __u32 n_classes, bool inside)
{
	if (class_in(key->port_class, base, n_classes) != inside)
		return 0;
	if (*n == *cap) {
		size_t grown = *cap ? *cap * 2 : 256;
		void *p = realloc(*keys, grown * sizeof(**keys));

		if (!p)
			return -ENOMEM;
		*keys = p;
		*cap = grown;
	}
	(*keys)[(*n)++] = *key;
	return 0;
}

/*
 * Collect the port entries whose class is inside [base, base + n) (inside = true) or
 * outside it: with batch lookups (the kernel walks the trie, PORT_SCAN_CHUNK keys per
 * syscall) where the kernel has them for LPM tries, one get_next_key per entry otherwise.
 * The walk was a syscall per entry, old and new classes alike: ≈ 24 ms at 24 000 entries.
 */
static int collect_classes(int ports_fd, __u32 base, __u32 n_classes, bool inside,
			   struct sluice_port_key **keys, size_t *n)
{
	struct sluice_port_key *chunk = calloc(PORT_SCAN_CHUNK, sizeof(*chunk));
	struct sluice_port_entry *vals = calloc(PORT_SCAN_CHUNK, sizeof(*vals));
	struct sluice_port_key cursor, key, *prev = NULL;
	size_t cap = 0;
	bool first = true;
	int err = chunk && vals ? 0 : -ENOMEM;

	*keys = NULL;
	*n = 0;
	while (!err) {
		__u32 count = PORT_SCAN_CHUNK;
		int ret = bpf_map_lookup_batch(ports_fd, first ? NULL : &cursor, &cursor, chunk,
					       vals, &count, NULL);

		if (ret < 0 && errno != ENOENT) {
			/* Unsupported before anything was read: walk key by key instead. */
			if (first && (errno == EINVAL || errno == ENOTSUPP || errno == EOPNOTSUPP))
				break;
			err = -errno;
			break;
		}
		for (__u32 i = 0; !err && i < count; i++)
			err = keep_if(keys, n, &cap, &chunk[i], base, n_classes, inside);
		first = false;
		if (ret < 0) /* ENOENT: the walk is done */
			goto out;
	}
	while (!err && bpf_map_get_next_key(ports_fd, prev, &key) == 0) {
		err = keep_if(keys, n, &cap, &key, base, n_classes, inside);
		cursor = key;
		prev = &cursor;
	}
out:
	free(chunk);
	free(vals);
	return err;
}

/*
 * Remove the port entries whose class is inside [base, base + n) (inside = true) or
 * outside it. Keys are collected first: deleting from an LPM trie while walking it
 * restarts the walk.
 */
/* Delete n keys from the port trie: in batches where the kernel has them, else one by one. */
static int delete_keys(int ports_fd, const struct sluice_port_key *keys, size_t n)
{
	size_t done = 0;
	bool batch = true;
	int err = 0;

	while (!err && done < n) {
		__u32 count = n - done;

		if (batch) {
			if (bpf_map_delete_batch(ports_fd, &keys[done], &count, NULL) == 0) {
				done += count;
				continue;
			}
			done += count; /* deleted before the failing key */
			if (errno == ENOENT) {
				done++; /* gone already: nothing to do for it */
				continue;
			}
			if (count == 0 &&
			    (errno == EINVAL || errno == ENOTSUPP || errno == EOPNOTSUPP)) {
				batch = false;
				continue;
			}
			err = -errno;
			break;
		}
		if (bpf_map_delete_elem(ports_fd, &keys[done]) < 0 && errno != ENOENT)
			err = -errno;
		done++;
	}
	return err;
}

static int remove_classes(int ports_fd, __u32 base, __u32 n_classes, bool inside)
{
	struct sluice_port_key *keys;
	size_t n;
	int err = collect_classes(ports_fd, base, n_classes, inside, &keys, &n);

	if (!err)
		err = delete_keys(ports_fd, keys, n);
	free(keys);
	return err;
}

/*
 * Write n keys/values into a map with BPF_ANY: one syscall per batch where the kernel has
 * batch updates for the map type (LPM tries on recent kernels), one per element otherwise.
 * Batch updates take no BPF_NOEXIST/BPF_EXIST (only BPF_F_LOCK), hence BPF_ANY throughout.
 */
static int fill_map(int fd, const void *keys, size_t key_size, const void *values,
		    size_t value_size, size_t n, const char *what)
{
	const size_t chunk = 16384;
	size_t done = 0;
	bool batch = true;

	while (done < n) {
		const void *k = (const char *)keys + done * key_size;
		const void *v = (const char *)values + done * value_size;

		if (batch) {
			__u32 count = n - done < chunk ? n - done : chunk;

			if (bpf_map_update_batch(fd, k, v, &count, NULL) == 0) {
				done += count;
				continue;
			}
			/* Unsupported (nothing was written): carry on one element at a time. */
			if (errno != EINVAL && errno != ENOTSUPP && errno != EOPNOTSUPP)
				break;
			batch = false;
			continue;
		}
		if (bpf_map_update_elem(fd, k, v, BPF_ANY) < 0)
			break;
		done++;
	}
	if (done < n) {
		int err = -errno;

		pr_err("cannot fill %s (entry %zu of %zu): %s", what, done + 1, n, strerror(-err));
		return err;
	}
	return 0;
}

/* Copy cp's trie entries with their classes rebased (class k becomes base + k - 1). */
static int rebased_entries(const struct compiled_policy *cp, __u32 base, __u8 epoch_flag,
			   struct sluice_lpm_key **keys, struct sluice_policy_entry **values)
{
	*keys = calloc(cp->n + 1, sizeof(**keys));
	*values = calloc(cp->n + 1, sizeof(**values));
	if (!*keys || !*values) {
		free(*keys);
		free(*values);
		return -ENOMEM;
	}
	for (size_t i = 0; i < cp->n; i++) {
		(*keys)[i] = cp->entries[i].key;
		(*values)[i] = cp->entries[i].value;
		(*values)[i].flags |= epoch_flag;
		if ((*values)[i].port_class)
			(*values)[i].port_class = base + (*values)[i].port_class - 1;
	}
	return 0;
}

/* A new fd of the trie in force, or -1 when none is installed. */
static int active_trie(const struct policy_maps *maps)
{
	__u32 zero = 0, trie_id;

	if (bpf_map_lookup_elem(maps->policy_fd, &zero, &trie_id) < 0)
		return -1;
	return bpf_map_get_fd_by_id(trie_id);
}

/* SLUICE_POLICY_F_EPOCH as the active policy has it (0 when none is installed). */
static __u8 active_epoch(const struct policy_maps *maps)
{
	struct sluice_lpm_key any = { .prefixlen = 0 };
	struct sluice_policy_entry e;
	__u8 epoch = 0;
	int fd = active_trie(maps);

	if (fd < 0)
		return 0;
	if (bpf_map_lookup_elem(fd, &any, &e) == 0)
		epoch = e.flags & SLUICE_POLICY_F_EPOCH;
	close(fd);
	return epoch;
}

/* Zero the half of the per-rule counters that epoch_flag names, before a policy uses it. */
static int zero_rule_half(int rules_fd, __u8 epoch_flag)
{
	int ncpus = libbpf_num_possible_cpus();
	__u32 *keys = calloc(SLUICE_RULE_HALF, sizeof(*keys));
	struct sluice_counter *zeros;
	int err;

	if (ncpus < 0) {
		free(keys);
		return ncpus;
	}
	zeros = calloc((size_t)SLUICE_RULE_HALF * ncpus, sizeof(*zeros));
	err = keys && zeros ? 0 : -ENOMEM;
	for (__u32 i = 0; !err && i < SLUICE_RULE_HALF; i++)
		keys[i] = (epoch_flag ? SLUICE_RULE_HALF : 0) + i;
	if (!err)
		err = fill_map(rules_fd, keys, sizeof(*keys), zeros, sizeof(*zeros) * ncpus,
			       SLUICE_RULE_HALF, "per-rule counters");
	free(keys);
	free(zeros);
	return err;
}

/* Fresh class numbers, never 0, disjoint from the classes packets may still use. */
static __u32 fresh_classes(const struct sluice_config *cfg, __u32 n)
{
	__u32 base = cfg->next_class ? cfg->next_class : 1;

	return base + n < base ? 1 : base; /* after 2^32 classes the old ones are long gone */
}

static int add_port_entries(int ports_fd, const struct compiled_policy *cp, __u32 base)
{
	struct sluice_port_key *keys = calloc(cp->nports + 1, sizeof(*keys));
	struct sluice_port_entry *values = calloc(cp->nports + 1, sizeof(*values));
	int err = -ENOMEM;

	if (keys && values) {
		for (size_t i = 0; i < cp->nports; i++) {
			keys[i] = cp->ports[i].key;
			keys[i].port_class = base + keys[i].port_class - 1;
			values[i] = cp->ports[i].value;
		}
		/* BPF_ANY also overwrites an entry a crashed install may have left. */
		err = fill_map(ports_fd, keys, sizeof(*keys), values, sizeof(*values), cp->nports,
			       "port classes");
	}
	free(keys);
	free(values);
	return err;
}

/*
 * What an install does beside filling the new trie: zero the per-rule counters' half it
 * will count in, note the port entries of the classes in force (to delete after the
 * switch), and add the new classes. None of it touches the trie, so it runs in a thread of
 * its own while the main one fills it: on a machine with a CPU to spare the ≈ 30 ms it
 * takes for 100 000 rules disappear behind the ≈ 100 ms of the fill.
 */
struct side_work {
	const struct policy_maps *maps;
	const struct compiled_policy *cp;
	__u32 base;
	__u8 epoch;
	struct sluice_port_key *old_keys; /* out: the classes outside the new range */
	size_t n_old;
	bool ports_added; /* some new port entries may be in the map */
	int err;
};

static void *side_work_run(void *arg)
{
	struct side_work *w = arg;
	const struct policy_maps *maps = w->maps;

	w->err = maps->rules_fd >= 0 ? zero_rule_half(maps->rules_fd, w->epoch) : 0;
	/*
	 * Collected before the new classes go in, so the walk does not read them too.
	 * Writers are serialized (the state lock), so nothing else adds classes meanwhile.
	 */
	if (!w->err)
		w->err = collect_classes(maps->ports_fd, w->base, w->cp->nclasses, false,
					 &w->old_keys, &w->n_old);
	if (!w->err) {
		w->ports_added = true;
		w->err = add_port_entries(maps->ports_fd, w->cp, w->base);
	}
	return NULL;
}

int policy_install(const struct policy_maps *maps, const struct compiled_policy *cp,
		   __u32 generation)
{
	LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = BPF_F_NO_PREALLOC);
	struct sluice_lpm_key *keys = NULL;
	struct sluice_policy_entry *values = NULL;
	struct side_work side = { .maps = maps, .cp = cp };
	struct sluice_config cfg;
	__u32 zero = 0;
	pthread_t thread;
	bool threaded;
	int trie_fd = -1, old_trie_fd = -1, err = 0;

	if (bpf_map_lookup_elem(maps->config_fd, &zero, &cfg) < 0)
		return -errno;
	side.base = fresh_classes(&cfg, cp->nclasses);
	/*
	 * Rule ids change meaning with this install: count in the other half of the per-rule
	 * counters, zeroed first (it last served the install before the current one).
	 */
	side.epoch = active_epoch(maps) ^ SLUICE_POLICY_F_EPOCH;
	/* The budgets of the new epoch's half, in place before any packet can read that half. */
	if (maps->budgets) {
		static const struct compiled_budgets none = { .nsets = 1 };

		err = budget_install(maps->budgets, cp->budgets ? cp->budgets : &none, side.epoch);
	} else if (cp->budgets && cp->budgets->ndefs) {
		pr_err("cannot install budgets: this caller has no budget maps");
		err = -EOPNOTSUPP;
	}
	if (err)
		return err;
	threaded = pthread_create(&thread, NULL, side_work_run, &side) == 0;
	if (!threaded)
		side_work_run(&side);

	/* Must match the inner map template in bpf/lib/maps.h, or the swap is refused. */
	trie_fd = bpf_map_create(BPF_MAP_TYPE_LPM_TRIE, "sluice_trie", sizeof(struct sluice_lpm_key),
				 sizeof(struct sluice_policy_entry), SLUICE_POLICY_MAX, &opts);
	if (trie_fd < 0) {
		err = -errno;
		pr_err("cannot create policy trie: %s", strerror(-err));
	}
	/* The compiler emits each prefix once, so BPF_ANY cannot overwrite anything. */
	if (!err)
		err = rebased_entries(cp, side.base, side.epoch, &keys, &values);
	if (!err)
		err = fill_map(trie_fd, keys, sizeof(*keys), values, sizeof(*values), cp->n,
			       "policy trie");
	free(keys);
	free(values);
	if (threaded)
		pthread_join(thread, NULL);
	if (!err && side.err) {
		err = side.err;
		pr_err("cannot prepare the port classes: %s", strerror(-err));
	}
	if (err)
		goto fail;
	/*
	 * Hold the old trie until the install is done. Once nothing refers to it the kernel
	 * frees it in a worker that walks its 100 000 nodes without yielding the CPU; on a
	 * small machine that held up the grace period the second update below waits for, by
	 * 10 to 40 ms. Freed after our last wait, it costs the install nothing.
	 */
	old_trie_fd = active_trie(maps);
	/*
	 * The switch: one update of the slot. For map-in-map updates the kernel waits for
	 * running programs (synchronize_rcu), so when this returns none uses the old trie.
	 */
	if (bpf_map_update_elem(maps->policy_fd, &zero, &trie_fd, BPF_ANY) < 0) {
		err = -errno;
		pr_err("cannot switch to the new policy: %s", strerror(-err));
		goto fail;
	}
	/* Cached per-destination decisions carry the old generation and are retaken. */
	cfg.generation = generation;
	cfg.next_class = side.base + cp->nclasses;
	if (bpf_map_update_elem(maps->config_fd, &zero, &cfg, BPF_ANY) < 0) {
		err = -errno;
		/* The new trie is in force; old classes stay so cached decisions still resolve. */
		pr_err("policy switched but generation update failed: %s", strerror(-err));
		goto out;
	}
	/*
	 * A packet that read the old generation just before the update may still resolve an
	 * old class from its cached decision. Updating the slot again waits for every such
	 * program run to finish; after it, the old classes are unreachable.
	 */
	if (bpf_map_update_elem(maps->policy_fd, &zero, &trie_fd, BPF_ANY) < 0)
		pr_warn("cannot wait for running programs: %s; keeping old port classes",
			strerror(errno));
	else if ((err = delete_keys(maps->ports_fd, side.old_keys, side.n_old)))
		pr_warn("cannot remove old port classes: %s", strerror(-err));
	err = 0; /* the new policy is in force; leftovers are removed by the next install */
	goto out;

fail:
	/* Nothing refers to the new classes yet: remove them, keep everything else. */
	if (side.ports_added)
		remove_classes(maps->ports_fd, side.base, cp->nclasses, true);
out:
	free(side.old_keys);
	if (trie_fd >= 0)
		close(trie_fd);
	if (old_trie_fd >= 0)
		close(old_trie_fd);
	return err;
}

int policy_patch(const struct policy_maps *maps, const struct compiled_policy *cp,
		 const struct sluice_lpm_key *removed, size_t nremoved, __u32 generation)
{
	struct sluice_lpm_key *keys = NULL;
	struct sluice_policy_entry *values = NULL;
	struct sluice_config cfg;
	__u32 zero = 0, trie_id, base;
	int trie_fd = -1, err;

	if (bpf_map_lookup_elem(maps->config_fd, &zero, &cfg) < 0 ||
	    bpf_map_lookup_elem(maps->policy_fd, &zero, &trie_id) < 0)
		return -errno;
	trie_fd = bpf_map_get_fd_by_id(trie_id);
	if (trie_fd < 0)
		return -errno;
	base = fresh_classes(&cfg, cp->nclasses);
	/* Classes first: an entry may refer to them as soon as it is written. */
	err = add_port_entries(maps->ports_fd, cp, base);
	if (!err)
		err = rebased_entries(cp, base, active_epoch(maps), &keys, &values);
	if (err)
		goto out;
	/*
	 * Each entry is replaced in one update, so a packet meets either its old decision or
	 * its new one; entries the change removes fall back to their parent prefix, which the
	 * change rewrote if needed. Classes the rewritten entries used stay until the next full
	 * install removes them (others may share them).
	 */
	err = fill_map(trie_fd, keys, sizeof(*keys), values, sizeof(*values), cp->n,
		       "policy trie");
	for (size_t i = 0; !err && i < nremoved; i++)
		if (bpf_map_delete_elem(trie_fd, &removed[i]) < 0 && errno != ENOENT)
			err = -errno;
	if (err) {
		pr_err("cannot change the policy in place: %s", strerror(-err));
		goto out;
	}
	/*
	 * Then the generation: a decision cached under the old one is taken again. A program
	 * that reads the new generation on its miss path reads it with a barrier before the
	 * trie (ordered_generation in bpf/lib/policy.h), so it sees the entries written above.
	 */
	cfg.generation = generation;
	cfg.next_class = base + cp->nclasses;
	if (bpf_map_update_elem(maps->config_fd, &zero, &cfg, BPF_ANY) < 0)
		err = -errno;
out:
	free(keys);
	free(values);
	close(trie_fd);
	return err;
}

// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Atomic policy installation: after a grace period, the new policy's port classes go in
 * beside the old ones and its ranges into the bank no packet is reading; then one write of
 * the generation switches every packet over. The old classes leave at the next install.
 */
#include <errno.h>
#include <pthread.h>
#include <sys/mman.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "log.h"
#include "policy_kernel.h"
#include "policy_ranges.h"

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
	if (*generation == 0) /* 0 means "no policy": wrap to 1, the bank after 2^32-1's */
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

/*
 * Remove the port entries whose class is inside [base, base + n) (inside = true) or
 * outside it. Keys are collected first: deleting from an LPM trie while walking it
 * restarts the walk.
 */
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


/* The bank of the policy in force: element 0 (count, flags); -ENOENT when none is installed. */
static int active_bank(const struct policy_maps *maps, const struct sluice_config *cfg,
		       struct sluice_policy_range *first)
{
	__u32 base = SLUICE_POLICY_BANK(cfg->generation) * SLUICE_RANGE_MAX;

	if (!cfg->generation)
		return -ENOENT;
	if (bpf_map_lookup_elem(maps->policy_fd, &base, first) < 0)
		return -errno;
	return first->start_lo ? 0 : -ENOENT;
}

/* SLUICE_POLICY_F_EPOCH as the policy in force has it (0 when none is installed). */
static __u8 active_epoch(const struct policy_maps *maps, const struct sluice_config *cfg)
{
	struct sluice_policy_range first;

	return active_bank(maps, cfg, &first) == 0 ? first.decision.flags & SLUICE_POLICY_F_EPOCH
						   : 0;
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

/* Add cp's classes to the port trie as base..base + nclasses - 1. */
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

/* --- grace periods ------------------------------------------------------------------------ */

/*
 * Wait until every program run that began before this call has ended: update the slot of
 * sluice_grace, which the kernel returns from only after a grace period (synchronize_rcu).
 */
static int wait_grace_period(int grace_fd)
{
	int inner = bpf_map_create(BPF_MAP_TYPE_ARRAY, "sluice_grace_in", sizeof(__u32),
				   sizeof(__u32), 1, NULL);
	__u32 zero = 0;
	int err = 0;

	if (inner < 0)
		return -errno;
	if (bpf_map_update_elem(grace_fd, &zero, &inner, BPF_ANY) < 0)
		err = -errno;
	close(inner);
	return err;
}

/*
 * What the grace period allows, beside reusing the other bank: the port classes outside
 * the policy in force were last reachable by packets that read an older generation, which
 * have all ended now. Removing them needs the writers' lock (a writer adds new ones).
 */
static int retire_classes(const struct policy_maps *maps, const struct sluice_config *cfg)
{
	__u32 n = cfg->next_class - cfg->first_class;

	if (!cfg->generation)
		return 0;
	return remove_classes(maps->ports_fd, cfg->first_class, n, false);
}

static void *grace_run(void *arg)
{
	struct policy_grace *g = arg;

	g->err = wait_grace_period(g->maps.grace_fd);
	if (!g->err && g->retire)
		g->err = retire_classes(&g->maps, &g->cfg);
	return NULL;
}

int policy_grace_begin(const struct policy_maps *maps, struct policy_grace *g, bool retire)
{
	__u32 zero = 0;

	memset(g, 0, sizeof(*g));
	g->maps = *maps;
	g->maps.budgets = NULL; /* not used; the caller's may not outlive the wait */
	g->retire = retire;
	if (bpf_map_lookup_elem(maps->config_fd, &zero, &g->cfg) < 0)
		return -errno;
	if (pthread_create(&g->thread, NULL, grace_run, g) != 0) {
		grace_run(g); /* no thread: wait here */
		g->done = true;
		return 0;
	}
	g->running = true;
	return 0;
}

void policy_grace_end(struct policy_grace *g)
{
	if (g->running)
		pthread_join(g->thread, NULL);
	g->running = false;
	g->done = true;
}

/* The generation before g (0 before the first). */
static __u32 previous_generation(__u32 g)
{
	return g == 1 ? UINT32_MAX : g - 1;
}

/*
 * Make sure a grace period has passed since the bank the next generation writes left
 * service (the switch to the generation before the one in force, cfg), and with retire,
 * that the classes of the policies before cfg's are gone: by g's wait if it began after
 * that switch, else by one here. Retiring needs g begun under cfg's policy itself (the
 * classes of the one before may still be in use).
 */
static int ensure_grace(const struct policy_maps *maps, const struct sluice_config *cfg,
			struct policy_grace *g, bool retire)
{
	int err;

	if (g && (g->running || g->done)) {
		bool current = g->cfg.generation == cfg->generation &&
			       g->cfg.next_class == cfg->next_class;
		bool before = g->cfg.generation == previous_generation(cfg->generation) &&
			      cfg->generation != 0;

		if (current || (before && !retire)) {
			policy_grace_end(g);
			if (!g->err && (!retire || g->retire))
				return 0;
			if (!g->err)
				return retire_classes(maps, cfg);
		}
	}
	err = wait_grace_period(maps->grace_fd);
	if (!err && retire)
		err = retire_classes(maps, cfg);
	return err;
}

/* --- the switch ----------------------------------------------------------------------------- */

#define BANK_BYTES ((size_t)SLUICE_RANGE_MAX * sizeof(struct sluice_policy_range))

/*
 * Map the first `ranges` elements of a bank (rounded up to whole pages): mapping the whole
 * map would make the kernel set up page tables for both banks (32 MiB) on every install.
 */
static void *map_bank(int policy_fd, __u32 generation, size_t ranges, int prot, size_t *len)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t bytes = (ranges < SLUICE_RANGE_MAX ? ranges : SLUICE_RANGE_MAX) *
		       sizeof(struct sluice_policy_range);

	*len = (bytes + page - 1) / page * page;
	return mmap(NULL, *len, prot, MAP_SHARED, policy_fd,
		    (off_t)SLUICE_POLICY_BANK(generation) * BANK_BYTES);
}

/*
 * Write entries (classes and flags as the kernel will see them) into generation's bank
 * through an mmap of the policy map. The bank must be out of service (a grace period since).
 */
static int fill_bank(const struct policy_maps *maps, const struct compiled_entry *entries,
		     size_t n, __u32 generation)
{
	/* Each prefix opens a range and closes one; 3 more for the catch-alls' edges. */
	size_t len, most = 2 * n + 3;
	void *mem;
	long ret;
	int err = 0;

	mem = map_bank(maps->policy_fd, generation, most, PROT_READ | PROT_WRITE, &len);
	if (mem == MAP_FAILED) {
		err = -errno;
		pr_err("cannot map the policy map: %s", strerror(-err));
		return err;
	}
	ret = policy_flatten(entries, n, mem, len / sizeof(struct sluice_policy_range));
	if (ret < 0) {
		err = (int)ret;
		if (err == -E2BIG)
			pr_err("the policy needs more than %u address ranges", SLUICE_RANGE_MAX);
		else
			pr_err("cannot flatten the policy: %s", strerror(-err));
	}
	/* The ranges are visible to every CPU before the generation that names them. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	munmap(mem, len);
	return err;
}

/* The switch: the generation that names the filled bank, in one update of the config. */
static int switch_to(const struct policy_maps *maps, __u32 generation, __u32 first_class,
		     __u32 next_class)
{
	struct sluice_config cfg = {
		.generation = generation,
		.next_class = next_class,
		.first_class = first_class,
	};
	__u32 zero = 0;
	int err = 0;

	if (bpf_map_update_elem(maps->config_fd, &zero, &cfg, BPF_ANY) < 0) {
		err = -errno;
		pr_err("cannot switch to the new policy: %s", strerror(-err));
	}
	return err;
}

/* Adding the new port classes, in a thread while the bank is filled: ≈ 1 us an entry. */
struct port_work {
	const struct policy_maps *maps;
	const struct compiled_policy *cp;
	__u32 base;
	int err;
};

static void *port_work_run(void *arg)
{
	struct port_work *w = arg;

	w->err = add_port_entries(w->maps->ports_fd, w->cp, w->base);
	return NULL;
}

int policy_install(const struct policy_maps *maps, const struct compiled_policy *cp,
		   __u32 generation, struct policy_grace *grace)
{
	struct compiled_entry *entries = NULL;
	struct port_work ports = { 0 };
	struct sluice_config cfg;
	__u32 zero = 0, base;
	pthread_t thread;
	bool threaded;
	__u8 epoch;
	int err;

	if (bpf_map_lookup_elem(maps->config_fd, &zero, &cfg) < 0)
		return -errno;
	if (generation != (cfg.generation == UINT32_MAX ? 1 : cfg.generation + 1))
		return -EINVAL; /* not the next generation: its bank may be in use */
	err = ensure_grace(maps, &cfg, grace, true);
	if (err) {
		pr_err("cannot wait for running programs: %s", strerror(-err));
		return err;
	}
	base = fresh_classes(&cfg, cp->nclasses);
	/*
	 * Rule ids change meaning with this install: count in the other half of the per-rule
	 * counters, zeroed first (it last served the install before the current one).
	 */
	epoch = active_epoch(maps, &cfg) ^ SLUICE_POLICY_F_EPOCH;
	/* The budgets of the new epoch's half, in place before any packet can read that half. */
	if (maps->budgets) {
		static const struct compiled_budgets none = { .nsets = 1 };

		err = budget_install(maps->budgets, cp->budgets ? cp->budgets : &none, epoch);
	} else if (cp->budgets && cp->budgets->ndefs) {
		pr_err("cannot install budgets: this caller has no budget maps");
		err = -EOPNOTSUPP;
	}
	if (!err && maps->rules_fd >= 0)
		err = zero_rule_half(maps->rules_fd, epoch);
	if (err)
		return err;
	ports.maps = maps;
	ports.cp = cp;
	ports.base = base;
	threaded = pthread_create(&thread, NULL, port_work_run, &ports) == 0;
	if (!threaded)
		port_work_run(&ports);
	entries = malloc((cp->n ? cp->n : 1) * sizeof(*entries));
	err = entries ? 0 : -ENOMEM;
	if (!err) {
		memcpy(entries, cp->entries, cp->n * sizeof(*entries));
		compiled_entries_rebase(entries, cp->n, base, epoch);
		err = fill_bank(maps, entries, cp->n, generation);
	}
	free(entries);
	if (threaded)
		pthread_join(thread, NULL);
	if (!err && (err = ports.err))
		pr_err("cannot add the port classes: %s", strerror(-err));
	/* The classes go in before the switch: a range may name them as soon as it is done. */
	if (!err)
		err = switch_to(maps, generation, base, base + cp->nclasses);
	if (err) /* nothing refers to the new classes: remove them */
		remove_classes(maps->ports_fd, base, cp->nclasses, true);
	return err;
}

void compiled_entries_rebase(struct compiled_entry *entries, size_t n, __u32 class_base,
			     __u8 epoch_flag)
{
	for (size_t i = 0; i < n; i++) {
		entries[i].value.flags |= epoch_flag;
		if (entries[i].value.port_class)
			entries[i].value.port_class = class_base + entries[i].value.port_class - 1;
	}
}

int policy_installed_entries(const struct policy_maps *maps, struct compiled_policy *cp)
{
	struct sluice_config cfg;
	__u32 zero = 0;

	if (bpf_map_lookup_elem(maps->config_fd, &zero, &cfg) < 0)
		return -errno;
	compiled_entries_rebase(cp->entries, cp->n, cfg.first_class, active_epoch(maps, &cfg));
	return 0;
}

static int key_cmp(const void *a, const void *b)
{
	return lpm_key_order(a, b);
}

int policy_patch(const struct policy_maps *maps, const struct compiled_entry *live, size_t nlive,
		 const struct sluice_lpm_key *removed, size_t nremoved,
		 const struct compiled_policy *added, __u32 generation, struct policy_grace *grace,
		 struct compiled_entry **merged, size_t *nmerged)
{
	struct compiled_entry *out = NULL, *add = NULL;
	struct sluice_lpm_key *gone = NULL;
	struct sluice_config cfg;
	__u32 zero = 0, base;
	size_t n = 0, i, j, k;
	int err;

	*merged = NULL;
	*nmerged = 0;
	if (bpf_map_lookup_elem(maps->config_fd, &zero, &cfg) < 0)
		return -errno;
	if (generation != (cfg.generation == UINT32_MAX ? 1 : cfg.generation + 1))
		return -EINVAL; /* not the next generation: its bank may be in use */
	err = ensure_grace(maps, &cfg, grace, false);
	if (err)
		return err;
	base = fresh_classes(&cfg, added->nclasses);
	/* Classes first: a range may refer to them as soon as the switch is done. */
	err = add_port_entries(maps->ports_fd, added, base);
	if (err)
		return err;
	out = malloc((nlive + added->n + 1) * sizeof(*out));
	add = malloc((added->n + 1) * sizeof(*add));
	gone = malloc((nremoved + 1) * sizeof(*gone));
	if (!out || !add || !gone) {
		err = -ENOMEM;
		goto out;
	}
	memcpy(add, added->entries, added->n * sizeof(*add));
	compiled_entries_rebase(add, added->n, base, active_epoch(maps, &cfg));
	compiled_entries_sort(add, added->n);
	memcpy(gone, removed, nremoved * sizeof(*gone));
	if (nremoved > 1)
		qsort(gone, nremoved, sizeof(*gone), key_cmp);
	/*
	 * One ordered merge: the live entries (kept in order) without the removed keys and
	 * without those the change writes again, with the change's entries in their places.
	 * The classes the replaced entries used stay until the next full install retires them.
	 */
	for (i = 0, j = 0, k = 0; i < nlive || j < added->n;) {
		int c = i == nlive ? 1 : j == added->n ? -1 : lpm_key_order(&live[i].key, &add[j].key);

		if (c > 0) {
			out[n++] = add[j++];
			continue;
		}
		if (c == 0) { /* written again */
			i++;
			continue;
		}
		while (k < nremoved && lpm_key_order(&gone[k], &live[i].key) < 0)
			k++;
		if (k < nremoved && lpm_key_order(&gone[k], &live[i].key) == 0) {
			i++;
			continue;
		}
		out[n++] = live[i++];
	}
	err = fill_bank(maps, out, n, generation);
	if (!err)
		err = switch_to(maps, generation, cfg.first_class, base + added->nclasses);
out:
	free(add);
	free(gone);
	if (err) {
		free(out);
		return err;
	}
	*merged = out;
	*nmerged = n;
	return 0;
}

int policy_view_open(int policy_fd, int config_fd, struct policy_view *v)
{
	struct sluice_config cfg;
	__u32 zero = 0;
	int err;

	memset(v, 0, sizeof(*v));
	if (bpf_map_lookup_elem(config_fd, &zero, &cfg) < 0)
		return -errno;
	if (!cfg.generation)
		return -ENOENT;
	v->mem = map_bank(policy_fd, cfg.generation, SLUICE_RANGE_MAX, PROT_READ, &v->len);
	if (v->mem == MAP_FAILED) {
		err = -errno;
		v->mem = NULL;
		return err;
	}
	v->generation = cfg.generation;
	v->bank = v->mem;
	v->nranges = v->bank[0].start_lo;
	if (!v->nranges || v->nranges > SLUICE_RANGE_MAX) {
		policy_view_close(v);
		return -ENOENT;
	}
	return 0;
}

void policy_view_close(struct policy_view *v)
{
	if (v->mem)
		munmap(v->mem, v->len);
	memset(v, 0, sizeof(*v));
}

const struct sluice_policy_entry *policy_view_decide(const struct policy_view *v,
						     const struct sluice_addr *dst)
{
	return policy_ranges_decide(v->bank, v->nranges, dst);
}

// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Atomic policy installation: once a grace period has passed since the bank the next
 * generation uses left service, the new policy's address and port ranges are written into
 * it, and one write of the generation switches every packet over.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "log.h"
#include "policy_kernel.h"
#include "policy_ranges.h"

static __u32 generation_after(__u32 g)
{
	return g == UINT32_MAX ? 1 : g + 1; /* 0 means "no policy": wrap to 1, the bank after */
}

static __u32 generation_before(__u32 g)
{
	return g == 1 ? UINT32_MAX : g - 1;
}

const char *policy_install_error(int err)
{
	if (err == -E2BIG)
		return "it needs more address and port ranges than a bank of the datapath holds";
	return strerror(-err);
}

int policy_next_generation(int config_fd, __u32 *generation)
{
	struct sluice_config cfg;
	__u32 zero = 0;

	if (bpf_map_lookup_elem(config_fd, &zero, &cfg) < 0)
		return -errno;
	*generation = generation_after(cfg.generation);
	return 0;
}

int policy_flags_in_force(int policy_fd, const struct sluice_config *cfg, __u8 *flags)
{
	__u32 base = SLUICE_POLICY_BANK(cfg->generation) * SLUICE_RANGE_MAX;
	struct sluice_policy_range first;

	*flags = 0;
	if (!cfg->generation)
		return -ENOENT;
	if (bpf_map_lookup_elem(policy_fd, &base, &first) < 0)
		return -errno;
	if (!first.start_lo)
		return -ENOENT;
	/* Every address range of a policy carries its flags: those of the bank's first. */
	*flags = first.decision.flags;
	return 0;
}

/* SLUICE_POLICY_F_EPOCH as the policy in force has it (0 when none is installed). */
static __u8 active_epoch(const struct policy_maps *maps, const struct sluice_config *cfg)
{
	__u8 flags;

	policy_flags_in_force(maps->policy_fd, cfg, &flags);
	return flags & SLUICE_POLICY_F_EPOCH;
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
	if (!err) {
		__u32 count = SLUICE_RULE_HALF;

		/* One syscall: arrays have batch updates on every kernel sluice runs on (5.15+). */
		if (bpf_map_update_batch(rules_fd, keys, zeros, &count, NULL) < 0) {
			err = -errno;
			pr_err("cannot zero the per-rule counters: %s", strerror(-err));
		}
	}
	free(keys);
	free(zeros);
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

static void *grace_run(void *arg)
{
	struct policy_grace *g = arg;

	g->err = wait_grace_period(g->grace_fd);
	return NULL;
}

int policy_grace_begin(const struct policy_maps *maps, struct policy_grace *g)
{
	struct sluice_config cfg;
	__u32 zero = 0;

	memset(g, 0, sizeof(*g));
	g->grace_fd = maps->grace_fd;
	if (bpf_map_lookup_elem(maps->config_fd, &zero, &cfg) < 0)
		return -errno;
	g->generation = cfg.generation;
	g->begun = true;
	if (pthread_create(&g->thread, NULL, grace_run, g) != 0)
		grace_run(g); /* no thread: wait here */
	else
		g->running = true;
	return 0;
}

void policy_grace_end(struct policy_grace *g)
{
	if (g->running)
		pthread_join(g->thread, NULL);
	g->running = false;
}

/*
 * Make sure a grace period has passed since the bank the next generation writes left
 * service: the switch to the generation before the one in force (cfg). g's wait does if it
 * began after that switch (under that generation or the one in force), else one here.
 */
static int ensure_grace(const struct policy_maps *maps, const struct sluice_config *cfg,
			struct policy_grace *g)
{
	if (g && g->begun && cfg->generation &&
	    (g->generation == cfg->generation ||
	     g->generation == generation_before(cfg->generation))) {
		policy_grace_end(g);
		if (!g->err)
			return 0;
	}
	return wait_grace_period(maps->grace_fd);
}

/* --- the switch ----------------------------------------------------------------------------- */

#define BANK_BYTES ((size_t)SLUICE_RANGE_MAX * sizeof(struct sluice_policy_range))

/*
 * Map the first `ranges` elements of a bank (rounded up to whole pages): mapping the whole
 * map would make the kernel set up page tables for every bank on every install.
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
 * Write cp, counting in the per-rule counters' half `epoch` names, into generation's bank
 * through an mmap. The bank must be out of service (a grace period since). Returns the
 * number of ranges written.
 */
static long fill_bank(const struct policy_maps *maps, const struct compiled_policy *cp,
		      __u8 epoch, __u32 generation)
{
	struct sluice_policy_range *bank;
	size_t len;
	long ret;

	bank = map_bank(maps->policy_fd, generation, policy_bank_most(cp), PROT_READ | PROT_WRITE,
			&len);
	if (bank == MAP_FAILED) {
		ret = -errno;
		pr_err("cannot map the policy map: %s", strerror((int)-ret));
		return ret;
	}
	ret = policy_bank_fill(cp, epoch, bank, len / sizeof(*bank));
	if (ret == -E2BIG)
		pr_err("the policy needs more than the %u ranges of a bank", SLUICE_RANGE_MAX);
	else if (ret < 0)
		pr_err("cannot flatten the policy: %s", strerror((int)-ret));
	/* The ranges are visible to every CPU before the generation that names them. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	munmap(bank, len);
	return ret;
}

/* The switch: the generation that names the filled bank, in one update of the config. */
static int switch_to(const struct policy_maps *maps, __u32 generation)
{
	struct sluice_config cfg = { .generation = generation };
	__u32 zero = 0;
	int err = 0;

	if (bpf_map_update_elem(maps->config_fd, &zero, &cfg, BPF_ANY) < 0) {
		err = -errno;
		pr_err("cannot switch to the new policy: %s", strerror(-err));
	}
	return err;
}

int policy_install(const struct policy_maps *maps, const struct compiled_policy *cp,
		   __u32 generation, struct policy_grace *grace)
{
	struct sluice_config cfg;
	__u32 zero = 0;
	__u8 epoch;
	long ranges;
	int err;

	if (bpf_map_lookup_elem(maps->config_fd, &zero, &cfg) < 0)
		return -errno;
	if (generation != generation_after(cfg.generation))
		return -EINVAL; /* not the next generation: its bank may be in use */
	err = ensure_grace(maps, &cfg, grace);
	if (err) {
		pr_err("cannot wait for running programs: %s", strerror(-err));
		return err;
	}
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
	ranges = fill_bank(maps, cp, epoch, generation);
	return ranges < 0 ? (int)ranges : switch_to(maps, generation);
}

static int key_cmp(const void *a, const void *b)
{
	return lpm_key_order(a, b);
}

int policy_patch(const struct policy_maps *maps, const struct compiled_policy *live,
		 const struct sluice_lpm_key *removed, size_t nremoved,
		 const struct compiled_policy *added, __u32 generation, struct policy_grace *grace,
		 struct compiled_policy *merged)
{
	/* The change's classes numbered after the live ones (those stay until a full install). */
	struct compiled_policy add = { .nclasses = live->nclasses };
	struct compiled_port_entry *ports = NULL;
	struct compiled_entry *out = NULL;
	struct sluice_lpm_key *gone = NULL;
	struct sluice_config cfg;
	__u32 zero = 0;
	size_t n = 0, i, j, k;
	long ranges;
	int err;

	memset(merged, 0, sizeof(*merged));
	if (bpf_map_lookup_elem(maps->config_fd, &zero, &cfg) < 0)
		return -errno;
	if (generation != generation_after(cfg.generation))
		return -EINVAL; /* not the next generation: its bank may be in use */
	err = ensure_grace(maps, &cfg, grace);
	if (err)
		return err;
	out = malloc((live->n + added->n + 1) * sizeof(*out));
	gone = malloc((nremoved + 1) * sizeof(*gone));
	ports = malloc((live->nports + added->nports + 1) * sizeof(*ports));
	err = out && gone && ports ? compiled_policy_append(&add, added) : -ENOMEM;
	if (!err)
		err = compiled_entries_sort(add.entries, add.n);
	if (err)
		goto out;
	memcpy(ports, live->ports, live->nports * sizeof(*ports));
	memcpy(ports + live->nports, add.ports, add.nports * sizeof(*ports));
	memcpy(gone, removed, nremoved * sizeof(*gone));
	if (nremoved > 1)
		qsort(gone, nremoved, sizeof(*gone), key_cmp);
	/*
	 * One ordered merge: the live entries (kept in order) without the removed keys and
	 * without those the change writes again, with the change's entries in their places.
	 */
	for (i = 0, j = 0, k = 0; i < live->n || j < add.n;) {
		int c = i == live->n ? 1
			: j == add.n ? -1
				      : lpm_key_order(&live->entries[i].key, &add.entries[j].key);

		if (c > 0) {
			out[n++] = add.entries[j++];
			continue;
		}
		if (c == 0) { /* written again */
			i++;
			continue;
		}
		while (k < nremoved && lpm_key_order(&gone[k], &live->entries[i].key) < 0)
			k++;
		if (k < nremoved && lpm_key_order(&gone[k], &live->entries[i].key) == 0) {
			i++;
			continue;
		}
		out[n++] = live->entries[i++];
	}
	*merged = (struct compiled_policy){ .entries = out, .n = n, .ports = ports,
					    .nports = live->nports + add.nports,
					    .nclasses = add.nclasses };
	ranges = fill_bank(maps, merged, active_epoch(maps, &cfg), generation);
	err = ranges < 0 ? (int)ranges : switch_to(maps, generation);
out:
	compiled_policy_free(&add);
	free(gone);
	if (err) {
		free(out);
		free(ports);
		memset(merged, 0, sizeof(*merged));
	}
	return err;
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
	v->ports = v->bank + v->bank[0].start_hi;
	v->nports = v->bank[0].start_hi < SLUICE_RANGE_MAX ? v->ports[0].start_lo : 0;
	if (!v->nranges || v->nranges > SLUICE_RANGE_MAX || !v->nports ||
	    v->bank[0].start_hi + v->nports > SLUICE_RANGE_MAX) {
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

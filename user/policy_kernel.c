// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Atomic policy installation: build a new trie, swap it in, move the generation on. */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>

#include "log.h"
#include "policy_kernel.h"

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

int policy_install(int policy_fd, int config_fd, const struct compiled_policy *cp,
		   __u32 generation)
{
	LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = BPF_F_NO_PREALLOC);
	struct sluice_config cfg = { .generation = generation };
	__u32 zero = 0;
	int trie_fd, err = 0;

	/* Must match the inner map template in bpf/lib/maps.h, or the swap is refused. */
	trie_fd = bpf_map_create(BPF_MAP_TYPE_LPM_TRIE, "sluice_trie", sizeof(struct sluice_lpm_key),
				 sizeof(struct sluice_policy_entry), SLUICE_POLICY_MAX, &opts);
	if (trie_fd < 0) {
		err = -errno;
		pr_err("cannot create policy trie: %s", strerror(-err));
		return err;
	}
	for (size_t i = 0; i < cp->n; i++) {
		const struct compiled_entry *e = &cp->entries[i];

		if (bpf_map_update_elem(trie_fd, &e->key, &e->value, BPF_NOEXIST) < 0) {
			err = -errno;
			pr_err("cannot fill policy trie (entry %zu of %zu): %s", i + 1, cp->n,
			       strerror(-err));
			goto out;
		}
	}
	/* The switch: one update of the slot. Packets in flight finish on the old trie. */
	if (bpf_map_update_elem(policy_fd, &zero, &trie_fd, BPF_ANY) < 0) {
		err = -errno;
		pr_err("cannot switch to the new policy: %s", strerror(-err));
		goto out;
	}
	/* Cached per-destination decisions carry the old generation and are retaken. */
	if (bpf_map_update_elem(config_fd, &zero, &cfg, BPF_ANY) < 0) {
		err = -errno;
		/*
		 * The new trie is in force already; stale cache entries keep the old verdicts
		 * for destinations seen before. Report it: the caller must not claim success.
		 */
		pr_err("policy switched but generation update failed: %s", strerror(-err));
	}
out:
	/* The outer map holds its own reference; the kernel frees the old trie after RCU. */
	close(trie_fd);
	return err;
}

// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * A map iterator over the destination table, for the exporter: the walk happens in the
 * kernel and only destinations with at least min_bytes (all verdicts) are copied out, so a
 * scrape of a million-entry table moves a few hundred entries instead of a million.
 * Not a hook: run on demand by userspace (user/dest_scan.c), never attached to traffic.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <sluice/abi.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/*
 * The iterator context, as the kernel defines it (include/linux/bpf.h, bpf_iter.h); only the
 * fields read here. preserve_access_index lets libbpf relocate them against the kernel's BTF.
 */
struct seq_file;
struct bpf_iter_meta {
	struct seq_file *seq;
} __attribute__((preserve_access_index));
struct bpf_iter__bpf_map_elem {
	struct bpf_iter_meta *meta;
	void *key;
	void *value;
} __attribute__((preserve_access_index));

/* Set by userspace before each walk (the previous scrape's N-th largest byte count). */
__u64 min_bytes;
/* Entries seen by the last walk; userspace zeroes it before each. */
__u64 entries;

SEC("iter/bpf_map_elem")
int sluice_dests_iter(struct bpf_iter__bpf_map_elem *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct sluice_addr *key = ctx->key;
	struct sluice_dest_stats *val = ctx->value;
	__u64 bytes = 0;

	if (!key || !val) /* the walk's end */
		return 0;
	entries++; /* one walk at a time (one reader of the iterator fd): plain add */
	for (int v = 0; v < SLUICE_VERDICT_MAX; v++)
		bytes += val->bytes[v];
	if (bytes < min_bytes)
		return 0;
	bpf_seq_write(seq, key, sizeof(*key));
	bpf_seq_write(seq, val, sizeof(*val));
	return 0;
}

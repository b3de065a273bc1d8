// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The exporter's walks over the destination table: the kernel visits every entry and copies
 * out only destinations with at least min_bytes (all verdicts), so a scrape of a
 * million-entry table moves a few hundred entries instead of a million. Two ways, run on
 * demand by userspace (user/dest_scan.c), never attached to traffic:
 *   sluice_dests_top   bpf_for_each_map_elem from a syscall program (BPF_PROG_TEST_RUN),
 *                      into found[] (at most SLUICE_DEST_FOUND_MAX); about twice as fast
 *   sluice_dests_iter  a map iterator, streaming through a seq_file: no limit on how many
 *                      qualify, used when found[] overflows or the first is refused
 * And one write: sluice_budget_reset clears a destination budget's usage in an entry in
 * place, with atomics, where a rewrite of the whole entry from userspace would undo what
 * packets added to its counters meanwhile.
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

/* The destination table the syscall program walks; userspace points it at the real one. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__type(key, struct sluice_addr);
	__type(value, struct sluice_dest_stats);
} sluice_scan_dests SEC(".maps");

/* Set by userspace before each walk (the previous scrape's N-th largest byte count). */
__u64 min_bytes;
/* Entries seen by the last walk; userspace zeroes it before each. */
__u64 entries;
/* sluice_dests_top's output: found_n records in found[]; overflow set when more qualified. */
__u64 found_n;
__u32 overflow;
struct sluice_dest_record found[SLUICE_DEST_FOUND_MAX];

static __u64 total_bytes(const struct sluice_dest_stats *val)
{
	__u64 bytes = 0;

	for (int v = 0; v < SLUICE_VERDICT_MAX; v++)
		bytes += val->bytes[v];
	return bytes;
}

SEC("iter/bpf_map_elem")
int sluice_dests_iter(struct bpf_iter__bpf_map_elem *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct sluice_addr *key = ctx->key;
	struct sluice_dest_stats *val = ctx->value;

	if (!key || !val) /* the walk's end */
		return 0;
	entries++; /* one walk at a time (one reader of the iterator fd): plain add */
	if (total_bytes(val) < min_bytes)
		return 0;
	/*
	 * A record that does not fit the read's buffer is dropped whole and the entry shown
	 * again on the next read: count it then, not twice.
	 */
	if (bpf_seq_write(seq, key, sizeof(*key)) || bpf_seq_write(seq, val, sizeof(*val)))
		entries--;
	return 0;
}

/* Per entry of bpf_for_each_map_elem: 0 goes on, 1 stops the walk. */
static long keep_heavy(void *map, struct sluice_addr *key, struct sluice_dest_stats *val,
		       void *ctx)
{
	__u64 i = found_n;

	(void)map;
	(void)ctx;
	entries++; /* one walk at a time (dest_scan is not for concurrent use): plain add */
	if (total_bytes(val) < min_bytes)
		return 0;
	if (i >= SLUICE_DEST_FOUND_MAX) { /* also bounds the index for the verifier */
		overflow = 1;
		return 1;
	}
	found[i].addr = *key;
	__builtin_memcpy(&found[i].stats, val, sizeof(*val));
	found_n = i + 1;
	return 0;
}

/*
 * The same selection as sluice_dests_iter, in one helper call: per entry a callback, with no
 * seq_file and program-run steps between entries. About 120 ns an entry against 230 ns for
 * the iterator on the benchmark VM (docs/performance.md, "Scrape cost at a million
 * destinations"). The walk is one stretch in the kernel (≈ 0.12 s at a million entries, on
 * the exporter's thread; packets are handled on their own paths meanwhile).
 */
SEC("syscall")
int sluice_dests_top(void *ctx)
{
	(void)ctx;
	bpf_for_each_map_elem(&sluice_scan_dests, keep_heavy, NULL, 0);
	return 0;
}

/* sluice_budget_reset's arguments (set by userspace) and result. */
struct sluice_addr reset_addr;
__u32 reset_budget;
__u32 reset_cleared;

/*
 * Clear budget reset_budget's usage in reset_addr's entry: its window ends, so the
 * destination's next packet starts a new one from zero, and a block lifts at once.
 */
SEC("syscall")
int sluice_budget_reset(void *ctx)
{
	struct sluice_dest_stats *e = bpf_map_lookup_elem(&sluice_scan_dests, &reset_addr);

	(void)ctx;
	reset_cleared = 0;
	if (!e)
		return 0;
	for (int j = 0; j < SLUICE_BUDGET_SLOTS; j++) {
		if (e->budget[j].budget != reset_budget)
			continue;
		__sync_lock_test_and_set(&e->budget[j].window_end_ns, 0);
		__sync_lock_test_and_set(&e->budget[j].bytes, 0);
		__sync_lock_test_and_set(&e->budget[j].dropped, 0);
		reset_cleared++;
	}
	return 0;
}

// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Benchmark baselines: the cheapest tc and XDP programs there are. Their BPF_PROG_TEST_RUN
 * durations are the harness's own cost (entering the program, the timer reads), which the
 * other contenders of the same hook are measured against.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tc")
int bench_noop(struct __sk_buff *skb)
{
	(void)skb;
	return TC_ACT_UNSPEC;
}

/* The same baseline for XDP: sluice's XDP program is measured against this one. */
SEC("xdp")
int bench_noop_xdp(struct xdp_md *ctx)
{
	(void)ctx;
	return XDP_PASS;
}

// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Benchmark baseline: the cheapest tc program there is. Its BPF_PROG_TEST_RUN duration is
 * the harness's own cost (entering the program, the timer reads), which the other
 * contenders are measured against.
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

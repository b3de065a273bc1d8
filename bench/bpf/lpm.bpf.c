// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Benchmark baseline: the "plain LPM program" an admin would write by hand. Parse Ethernet
 * and the IPv4/IPv6 destination, one lookup in a longest-prefix trie, drop or pass on the
 * value. No VLANs, no counters, no cache, no events: it bounds from below what any
 * destination filter built on an LPM trie can cost. The trie has sluice's key layout and
 * capacity so the two are compared on the same data.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <sluice/abi.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Prefix -> 1 (drop) or 0 (pass). Filled by the benchmark from sluice's compiled policy. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, SLUICE_POLICY_MAX);
	__type(key, struct sluice_lpm_key);
	__type(value, __u32);
} bench_lpm SEC(".maps");

SEC("tc")
int bench_lpm_egress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct sluice_lpm_key key = { .prefixlen = 128 };
	__u32 *drop;

	if ((void *)(eth + 1) > data_end)
		return TC_ACT_UNSPEC;

	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = (void *)(eth + 1);

		if ((void *)(iph + 1) > data_end)
			return TC_ACT_SHOT;
		/* IPv4 as ::ffff:a.b.c.d, the layout sluice's trie uses. */
		key.addr.a[10] = 0xff;
		key.addr.a[11] = 0xff;
		__builtin_memcpy(&key.addr.a[12], &iph->daddr, 4);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6h = (void *)(eth + 1);

		if ((void *)(ip6h + 1) > data_end)
			return TC_ACT_SHOT;
		__builtin_memcpy(key.addr.a, &ip6h->daddr, 16);
	} else {
		return TC_ACT_UNSPEC;
	}

	drop = bpf_map_lookup_elem(&bench_lpm, &key);
	return drop && *drop ? TC_ACT_SHOT : TC_ACT_UNSPEC;
}

// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * tc ingress: record connections initiated from outside, so that tc egress lets their
 * replies pass. It never drops or counts: it only writes sluice_flows. Linked into one
 * object with tc_egress.bpf.c, so both programs share every map.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "lib/parse.h"
#include "lib/flow.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tc")
int sluice_tc_ingress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct packet_info pi = {};

	/* A packet the parser cannot read starts or refreshes nothing; egress decides it. */
	if (parse_packet(data, data_end, skb->len, skb->gso_size != 0, &pi) == 0 &&
	    pi.frag != PKT_FRAG_LATER)
		flow_inbound(skb, data, data_end, &pi);
	return TC_ACT_UNSPEC;
}

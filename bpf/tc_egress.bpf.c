// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * tc egress: decide and count every packet the host sends on an attached interface.
 * Attached with tcx where the kernel has it, clsact otherwise; the program is the same.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "lib/parse.h"
#include "lib/verdict.h"
#include "lib/count.h"
#include "lib/events.h"
#include "lib/budget.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tc")
int sluice_tc_egress(struct __sk_buff *skb)
{
	struct sluice_dest_stats *entry = NULL;
	struct packet_info pi = {};
	struct decision d = {};
	__u64 packets = 1, bytes = skb->len;
	int ret;

#ifdef SLUICE_UPGRADE_PROBE
	/*
	 * Only in the upgrade test's "next release" build (CMakeLists.txt: sluice-next): one
	 * extra instruction, so its program differs from this one (another tag) and the test
	 * can watch one replace the other on the same link.
	 */
	asm volatile("r0 = %[probe]" ::[probe] "i"(SLUICE_UPGRADE_PROBE) : "r0");
#endif
	ret = parse_packet(skb, &pi);
	if (ret < 0) {
		decide_unparsed(-ret, &d);
	} else if (ret == PARSE_NON_IP) {
		decide_non_ip(pi.l3_proto, &d);
	} else {
		/* A GSO super-packet leaves as gso_segs wire packets, each with its own headers. */
		if (skb->gso_segs > 1) {
			packets = skb->gso_segs;
			bytes += (packets - 1) * gso_header_len(skb, &pi);
		}
		entry = decide_ip(skb, &pi, &d, dest_entry(&pi));
		budgets_charge(skb, &pi, &d, entry, packets, bytes);
	}

	count_destination(entry, d.verdict, packets, bytes);
	count_total(skb->ifindex, SLUICE_HOOK_TC_EGRESS, d.verdict, d.reason, packets, bytes);
	count_rule(d.rule_id, d.flags, packets, bytes);
	count_user(skb, d.verdict, packets, bytes);

	/* Only denied, audited and first-contact packets pay for events. */
	if (d.new_dest || decision_denied(&d)) {
		struct event_packet ep = {
			.pi = &pi,
			.d = &d,
			.packets = packets,
			.bytes = bytes,
			.hook = SLUICE_HOOK_TC_EGRESS,
			.ip = ret == 0,
		};

		events_packet(skb, &ep, entry);
	}

	/*
	 * TC_ACT_SHOT is the only drop tcx knows: it maps every code other than PASS, DROP
	 * and REDIRECT (TC_ACT_STOLEN included) to "next program", which would let the packet
	 * through. The sender's sendmsg() then fails with ENOBUFS (documented). TC_ACT_UNSPEC
	 * lets later programs on the interface (tcx chain or clsact) run too.
	 */
	return d.verdict == SLUICE_VERDICT_DENY ? TC_ACT_SHOT : TC_ACT_UNSPEC;
}

// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * XDP on a gateway's inside interface: decide and count every packet that arrives there to
 * be forwarded, before the stack touches it, with the same library and the same maps as tc
 * egress (linked into one object with it). Packets addressed to the gateway itself are not
 * policed here: what the node sends is tc egress's job, what it receives is nobody's.
 */
#define SLUICE_CTX_XDP
#include "lib/ctx.h"

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "lib/parse.h"
#include "lib/verdict.h"
#include "lib/count.h"
#include "lib/events.h"
#include "lib/budget.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Address families of struct bpf_fib_lookup (linux/socket.h is not a uapi header). */
#define AF_INET 2
#define AF_INET6 10

/*
 * Would the stack deliver this packet to the node rather than forward it? The kernel's own
 * routing answers: a local, broadcast or multicast destination is "not forwarded", and so
 * is every packet when forwarding is off on the interface or no route exists (the stack
 * would deliver or drop it, never send it on). Anything else, a failed lookup included, is
 * policed.
 */
static __always_inline int for_the_node(struct xdp_md *ctx, const struct packet_info *pi)
{
	struct bpf_fib_lookup fib = {
		.ifindex = ctx->ingress_ifindex,
		.l4_protocol = pi->l4_proto,
	};
	long rc;

	/*
	 * Multicast and the limited broadcast are never routed as unicast (the FIB would match
	 * them to a default route): the node takes them in. Multicast routing is not policed.
	 */
	if (pi->dst.a[0] == 0xff)
		return 1; /* IPv6 multicast */
	if (pi->l3_proto == ETH_P_IP && ((pi->dst.a[12] & 0xf0) == 0xe0 ||
					 (pi->dst.a[12] == 0xff && pi->dst.a[13] == 0xff &&
					  pi->dst.a[14] == 0xff && pi->dst.a[15] == 0xff)))
		return 1; /* IPv4 multicast, 255.255.255.255 */
	if (pi->l3_proto == ETH_P_IP) {
		fib.family = AF_INET;
		__builtin_memcpy(&fib.ipv4_src, &pi->src.a[12], 4);
		__builtin_memcpy(&fib.ipv4_dst, &pi->dst.a[12], 4);
	} else {
		fib.family = AF_INET6;
		__builtin_memcpy(fib.ipv6_src, pi->src.a, 16);
		__builtin_memcpy(fib.ipv6_dst, pi->dst.a, 16);
	}
	if (pi_has_port(pi)) {
		__builtin_memcpy(&fib.sport, &pi->l4[0], 2);
		__builtin_memcpy(&fib.dport, &pi->l4[2], 2);
	}
	/* tot_len stays 0: no MTU verdict, which is the stack's business. */
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	return rc == BPF_FIB_LKUP_RET_NOT_FWDED || rc == BPF_FIB_LKUP_RET_FWD_DISABLED;
}

SEC("xdp")
int sluice_xdp(struct xdp_md *ctx)
{
	struct sluice_dest_stats *entry = NULL;
	struct packet_info pi = {};
	struct decision d = {};
	__u64 bytes = ctx_frame_len(ctx);
	int ret;

	ret = parse_packet(ctx, &pi);
	if (ret < 0) {
		decide_unparsed(-ret, &d);
	} else if (ret == PARSE_NON_IP) {
		decide_non_ip(pi.l3_proto, &d);
	} else {
		if (for_the_node(ctx, &pi))
			return XDP_PASS; /* neither policed nor counted: see the header comment */
		entry = decide_ip(ctx, &pi, &d);
		budgets_charge(ctx, &pi, &d, 1, bytes);
	}

	count_destination(entry, d.verdict, 1, bytes);
	count_total(ctx->ingress_ifindex, SLUICE_HOOK_XDP, d.verdict, d.reason, 1, bytes);
	count_rule(d.rule_id, d.flags, 1, bytes);

	/* Only denied, audited and first-contact packets pay for events. */
	if (d.new_dest || decision_denied(&d)) {
		struct event_packet ep = {
			.pi = &pi,
			.d = &d,
			.packets = 1,
			.bytes = bytes,
			.hook = SLUICE_HOOK_XDP,
			.ip = ret == 0,
		};

		events_packet(ctx, &ep, entry);
	}
	return d.verdict == SLUICE_VERDICT_DENY ? XDP_DROP : XDP_PASS;
}

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

/*
 * Is the destination in sluice_local_addrs? The answer is cached in the destination's entry
 * with the set's generation, so a known destination pays a compare instead of a hash lookup
 * (about 15 ns) until the set changes. Like the policy cache (policy.h), the miss path reads
 * the generation with a full barrier before the lookup, and tags the answer with it: an
 * answer taken across a change carries the old generation and is taken again.
 */
static __always_inline int is_local_address(const struct packet_info *pi,
					    struct sluice_dest_stats *entry)
{
	__u32 zero = 0, generation;
	__u32 *current = bpf_map_lookup_elem(&sluice_local_gen, &zero);
	int local;

	if (current && entry) {
		__u64 cached = READ_ONCE_U64(entry->cache_local);

		if (SLUICE_CACHE_GEN(cached) == *current && (cached & SLUICE_LOCAL_KNOWN))
			return cached & SLUICE_LOCAL_YES;
	}
	if (!current || !*current || !entry) /* never synced, or nowhere to keep the answer */
		return bpf_map_lookup_elem(&sluice_local_addrs, &pi->dst) != NULL;
	generation = read_ordered(current);
	local = bpf_map_lookup_elem(&sluice_local_addrs, &pi->dst) != NULL;
	WRITE_ONCE_U64(entry->cache_local, SLUICE_CACHE_WORD(generation, SLUICE_LOCAL_KNOWN | local));
	return local;
}

/*
 * Would the stack deliver this packet to the node rather than forward it? Multicast, the
 * limited broadcast and IPv6 link-local destinations are never forwarded; the node's own
 * addresses and its subnet broadcast addresses are in sluice_local_addrs, which the daemon
 * keeps in step with rtnetlink. Anything else is policed: a packet the stack would drop
 * for want of a route is counted (and maybe denied) here first, which changes nothing on
 * the wire. The kernel's FIB lookup gave the same answer for 100-270 ns.
 */
static __always_inline int for_the_node(const struct packet_info *pi,
					struct sluice_dest_stats *entry)
{
	if (pi->dst.a[0] == 0xff || (pi->dst.a[0] == 0xfe && (pi->dst.a[1] & 0xc0) == 0x80))
		return 1; /* IPv6 multicast, link-local */
	if (pi->l3_proto == ETH_P_IP && ((pi->dst.a[12] & 0xf0) == 0xe0 ||
					 (pi->dst.a[12] == 0xff && pi->dst.a[13] == 0xff &&
					  pi->dst.a[14] == 0xff && pi->dst.a[15] == 0xff)))
		return 1; /* IPv4 multicast, 255.255.255.255 */
	return is_local_address(pi, entry);
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
		entry = dest_entry(&pi);
		if (for_the_node(&pi, entry))
			return XDP_PASS; /* neither policed nor counted: see the header comment */
		entry = decide_ip(ctx, &pi, &d, entry);
		budgets_charge(ctx, &pi, &d, entry, 1, bytes);
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

// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Connect-time fail-fast: cgroup connect4/connect6/sendmsg4/sendmsg6 decide a socket call's
 * destination with the same library and maps as tc egress (linked into one object with it),
 * so a denied destination makes connect() or sendmsg() fail with EPERM at once instead of
 * the first packet vanishing at tc egress. tc egress stays the backstop for everything the
 * hooks do not see (docs/design.md, "Which hook sees what").
 *
 * The call becomes the packet it is about to send: destination address, protocol and port
 * from the call, the socket's bound address and port as the source, and goes through
 * decide_ip like a packet whose headers parsed. Essential traffic, the policy's mode and
 * replies to recorded inbound flows come out as they will at tc egress.
 */
#define SLUICE_CTX_SOCK_ADDR
#include "lib/ctx.h"

#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "lib/parse.h"
#include "lib/verdict.h"
#include "lib/count.h"
#include "lib/events.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Socket-call return values of cgroup sock_addr programs. */
#define SOCK_REFUSE 0 /* the call fails with EPERM */
#define SOCK_PROCEED 1

/* Echo request types: what a ping socket sends. */
#define ICMP_ECHO 8
#define ICMPV6_ECHO_REQUEST 128

/* addr is ::ffff:0.0.0.0/104 or 127.0.0.0/8 mapped, or :: or ::1: the node talking to itself. */
static __always_inline int is_local_only(const struct sluice_addr *addr, int v4)
{
	int i;

	if (v4)
		return addr->a[12] == 127 ||
		       (addr->a[12] | addr->a[13] | addr->a[14] | addr->a[15]) == 0;
	/* Bounded by the address size; unrolled by clang. */
	for (i = 0; i < 15; i++)
		if (addr->a[i])
			return 0;
	return addr->a[15] <= 1;
}

/* Is the source (as the socket or the call gives it) unspecified? */
static __always_inline int src_unknown(const struct packet_info *pi)
{
	if (pi->l3_proto == ETH_P_IP)
		return (pi->src.a[12] | pi->src.a[13] | pi->src.a[14] | pi->src.a[15]) == 0;
	return is_local_only(&pi->src, 0) && pi->src.a[15] == 0;
}

static __always_inline void addr_from_ip4(struct sluice_addr *a, __u32 ip4)
{
	a->a[10] = 0xff;
	a->a[11] = 0xff;
	__builtin_memcpy(&a->a[12], &ip4, 4);
}

/*
 * Decide and count one call whose destination and source addresses are in pi; the ports and
 * protocol come from the socket and the call. Returns SOCK_REFUSE or SOCK_PROCEED.
 */
static __always_inline int decide_call(struct bpf_sock_addr *ctx, struct packet_info *pi)
{
	struct sluice_dest_stats *entry;
	struct bpf_sock *sk = ctx->sk;
	struct decision d = {};
	__u16 sport, dport;
	int v4 = pi->dst.a[10] == 0xff && pi->dst.a[11] == 0xff;

	/* An IPv4-mapped IPv6 destination is an IPv4 one: the same bytes, the same ranges. */
	for (int i = 0; i < 10; i++)
		if (pi->dst.a[i])
			v4 = 0;
	/* Loopback never leaves the node: tc egress on an interface never sees it either. */
	if (is_local_only(&pi->dst, v4))
		return SOCK_PROCEED;
	/* The verifier wants the check; these hooks always have a socket. */
	if (!sk)
		return SOCK_PROCEED;

	pi->l3_proto = v4 ? ETH_P_IP : ETH_P_IPV6;
	pi->l4_proto = ctx->protocol;
	if (proto_has_ports(pi->l4_proto)) {
		sport = sk->src_port; /* host order; 0 when not bound yet */
		dport = bpf_ntohs((__u16)ctx->user_port);
		pi->l4[0] = sport >> 8;
		pi->l4[1] = sport & 0xff;
		pi->l4[2] = dport >> 8;
		pi->l4[3] = dport & 0xff;
		pi->has_l4 = 1;
	} else if (pi->l4_proto == IPPROTO_ICMP || pi->l4_proto == IPPROTO_ICMPV6) {
		pi->l4[0] = pi->l4_proto == IPPROTO_ICMP ? ICMP_ECHO : ICMPV6_ECHO_REQUEST;
		pi->has_l4 = 1;
	}
	/* A wildcard-bound UDP socket: find the local address of the flow it may answer. */
	if (src_unknown(pi))
		flow_local_of(pi);

	entry = decide_ip(ctx, pi, &d, dest_entry(pi));

	/*
	 * Every decided call counts in the node totals under hook=connect. Only a refused call
	 * counts per destination and per rule: it never becomes a packet, while an allowed
	 * call's packets are counted at tc egress, and counting the call too would add to them.
	 */
	count_total(0, SLUICE_HOOK_CONNECT, d.verdict, d.reason, 1, 0);
	if (d.verdict == SLUICE_VERDICT_DENY) {
		count_destination(entry, d.verdict, 1, 0);
		count_rule(d.rule_id, d.flags, 1, 0);
	}
	if (d.new_dest || decision_denied(&d)) {
		struct event_packet ep = {
			.pi = pi,
			.d = &d,
			.packets = 1,
			.bytes = 0,
			.hook = SLUICE_HOOK_CONNECT,
			.ip = 1,
		};

		events_packet(ctx, &ep, entry);
	}
	/* Audit mode never refuses: the decision is AUDIT, not DENY. */
	return d.verdict == SLUICE_VERDICT_DENY ? SOCK_REFUSE : SOCK_PROCEED;
}

/* The IPv4 hooks: the socket's bound address (src_ip4) is the source if set. */
static __always_inline int decide_call4(struct bpf_sock_addr *ctx, __u32 src_ip4)
{
	struct packet_info pi = {};

	addr_from_ip4(&pi.dst, ctx->user_ip4);
	addr_from_ip4(&pi.src, src_ip4);
	return decide_call(ctx, &pi);
}

/* The IPv6 hooks. A v4-mapped destination keeps its mapped form: decided as IPv4. */
static __always_inline int decide_call6(struct bpf_sock_addr *ctx, const __u32 *src_ip6)
{
	struct packet_info pi = {};
	__u32 dst[4];

	/* The context allows 4-byte loads of user_ip6 only: copy it word by word. */
	dst[0] = ctx->user_ip6[0];
	dst[1] = ctx->user_ip6[1];
	dst[2] = ctx->user_ip6[2];
	dst[3] = ctx->user_ip6[3];
	__builtin_memcpy(pi.dst.a, dst, 16);
	__builtin_memcpy(pi.src.a, src_ip6, 16);
	return decide_call(ctx, &pi);
}

SEC("cgroup/connect4")
int sluice_connect4(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;

	return decide_call4(ctx, sk ? sk->src_ip4 : 0);
}

SEC("cgroup/sendmsg4")
int sluice_sendmsg4(struct bpf_sock_addr *ctx)
{
	/* The source the call asks for (IP_PKTINFO), else the socket's bound address. */
	return decide_call4(ctx, ctx->msg_src_ip4);
}

SEC("cgroup/connect6")
int sluice_connect6(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	__u32 src[4] = {};

	if (sk) {
		src[0] = sk->src_ip6[0];
		src[1] = sk->src_ip6[1];
		src[2] = sk->src_ip6[2];
		src[3] = sk->src_ip6[3];
	}
	return decide_call6(ctx, src);
}

SEC("cgroup/sendmsg6")
int sluice_sendmsg6(struct bpf_sock_addr *ctx)
{
	__u32 src[4];

	src[0] = ctx->msg_src_ip6[0];
	src[1] = ctx->msg_src_ip6[1];
	src[2] = ctx->msg_src_ip6[2];
	src[3] = ctx->msg_src_ip6[3];
	return decide_call6(ctx, src);
}

/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The thin context layer that lets one policy library serve tc and XDP. Include from bpf/
 * entry files, before any other bpf/lib header. The libraries take `struct ctx_buff *` and
 * touch the context only through the helpers below; an entry file that defines
 * SLUICE_CTX_XDP before including this gets the XDP flavour (struct xdp_md), one that defines
 * SLUICE_CTX_SOCK_ADDR the connect-time flavour (struct bpf_sock_addr: a socket call, no
 * packet bytes at all), any other the tc flavour (struct __sk_buff). Each entry file is
 * compiled on its own, so one object can hold several flavours of the same inline functions.
 */
#ifndef SLUICE_BPF_CTX_H
#define SLUICE_BPF_CTX_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#ifdef SLUICE_CTX_XDP

#define ctx_buff xdp_md

/*
 * The frame is the linear buffer: the program is not loaded with BPF_F_XDP_HAS_FRAGS, so
 * the kernel hands it whole frames (and refuses an MTU the buffer cannot hold).
 */
static __always_inline __u32 ctx_frame_len(const struct xdp_md *ctx)
{
	return ctx->data_end - ctx->data;
}

/* A frame arriving at XDP is one wire packet: there is no GSO here. */
static __always_inline int ctx_is_gso(const struct xdp_md *ctx)
{
	(void)ctx;
	return 0;
}

/* The interface the frame arrived on. */
static __always_inline __u32 ctx_ifindex(const struct xdp_md *ctx)
{
	return ctx->ingress_ifindex;
}

/*
 * The local socket that sent the frame, for attribution: none at XDP, where every frame
 * arrives from the wire to be forwarded.
 */
#define ctx_has_socket(ctx) 0
#define ctx_socket_uid(ctx) 0
#define ctx_socket_cgroup(ctx) 0

/* Copy len bytes at offset off of the frame (bpf_xdp_load_bytes: Linux >= 5.18). */
static __always_inline int ctx_load(struct xdp_md *ctx, __u32 off, void *to, __u32 len)
{
	return bpf_xdp_load_bytes(ctx, off, to, len);
}

#elif defined(SLUICE_CTX_SOCK_ADDR)

#define ctx_buff bpf_sock_addr

/*
 * connect() and sendmsg() are decided before any packet exists: there are no bytes to read,
 * no interface yet, and the caller is the process itself. The packet helpers below say
 * "nothing here" so the shared headers compile; the connect hooks never parse.
 */
static __always_inline __u32 ctx_frame_len(const struct bpf_sock_addr *ctx)
{
	(void)ctx;
	return 0;
}

static __always_inline int ctx_is_gso(const struct bpf_sock_addr *ctx)
{
	(void)ctx;
	return 0;
}

/* No interface is chosen at connect time: the counters' "other" slot. */
static __always_inline __u32 ctx_ifindex(const struct bpf_sock_addr *ctx)
{
	(void)ctx;
	return 0;
}

/* The calling process owns the socket: attribute to its uid and cgroup. */
#define ctx_has_socket(ctx) 1
#define ctx_socket_uid(ctx) ((__u32)bpf_get_current_uid_gid())
#define ctx_socket_cgroup(ctx) bpf_get_current_cgroup_id()

static __always_inline int ctx_load(struct bpf_sock_addr *ctx, __u32 off, void *to, __u32 len)
{
	(void)ctx, (void)off, (void)to, (void)len;
	return -1;
}

static __always_inline void *ctx_data(const struct bpf_sock_addr *ctx)
{
	(void)ctx;
	return NULL;
}

static __always_inline void *ctx_data_end(const struct bpf_sock_addr *ctx)
{
	(void)ctx;
	return NULL;
}

#else /* tc */

#define ctx_buff __sk_buff

/* skb->len: data_end may end earlier, in a non-linear skb. */
static __always_inline __u32 ctx_frame_len(const struct __sk_buff *ctx)
{
	return ctx->len;
}

/* A GSO super-packet: its IP length describes the whole super-packet, not this frame. */
static __always_inline int ctx_is_gso(const struct __sk_buff *ctx)
{
	return ctx->gso_size != 0;
}

/* The interface the frame leaves (egress) or arrived on (ingress). */
static __always_inline __u32 ctx_ifindex(const struct __sk_buff *ctx)
{
	return ctx->ifindex;
}

/*
 * Does a local socket own the frame? A full socket is a local sender; a forwarded packet
 * has none, and a time-wait or request socket has no owner to report (the uid helper would
 * say "overflow uid").
 */
static __always_inline int ctx_has_socket(struct __sk_buff *ctx)
{
	struct bpf_sock *sk = ctx->sk;

	/*
	 * What bpf_sk_fullsock() tests, without the helper call (it was a third of what
	 * per-user counting cost per packet): a full socket is any but these two states, and
	 * the state is readable on every kind of socket.
	 */
	return sk && sk->state != BPF_TCP_TIME_WAIT && sk->state != BPF_TCP_NEW_SYN_RECV;
}

#define ctx_socket_uid(ctx) bpf_get_socket_uid(ctx)
#define ctx_socket_cgroup(ctx) bpf_skb_cgroup_id(ctx)

/* Copy len bytes at offset off of the frame, wherever they are (a non-linear skb's pages). */
static __always_inline int ctx_load(struct __sk_buff *ctx, __u32 off, void *to, __u32 len)
{
	return bpf_skb_load_bytes(ctx, off, to, len);
}

#endif /* SLUICE_CTX_XDP, SLUICE_CTX_SOCK_ADDR */

#ifndef SLUICE_CTX_SOCK_ADDR
static __always_inline void *ctx_data(const struct ctx_buff *ctx)
{
	return (void *)(long)ctx->data;
}

static __always_inline void *ctx_data_end(const struct ctx_buff *ctx)
{
	return (void *)(long)ctx->data_end;
}
#endif

#endif /* SLUICE_BPF_CTX_H */

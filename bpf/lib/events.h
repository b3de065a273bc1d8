/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Events: deny, audit and new_destination records into the sluice_events ring buffer, rate
 * limited per (destination, type). Include from bpf/ entry files after policy.h. Only
 * denied, audited and first-contact packets get here: an allowed packet to a known
 * destination does no event work at all.
 *
 * Accounting, so that emitted + suppressed + lost equals what the kernel decided: every
 * packet that reaches a limiter is either emitted (one ring-buffer record), held back (one
 * more in the limiter's suppressed count, which the next record of that key carries), or
 * lost (the ring buffer was full: counted per CPU in sluice_event_lost, and the suppressed
 * count it would have carried goes back to the limiter for the next record).
 */
#ifndef SLUICE_BPF_EVENTS_H
#define SLUICE_BPF_EVENTS_H

#include "maps.h"
#include "parse.h"
#include "policy.h"

/* A record the ring buffer had no room for. */
static __always_inline void event_lost(__u32 type)
{
	__u64 *lost = bpf_map_lookup_elem(&sluice_event_lost, &type);

	/* Per-CPU value: this CPU's copy is ours alone. */
	if (lost)
		*lost += 1;
}

/*
 * May this packet emit an event for the limiter (last, suppressed)? Returns 1 with the
 * repeats to report in *report, or 0 when the packet was held back (and counted). Two CPUs
 * past the interval at once race on last: the compare-and-swap lets exactly one emit.
 */
static __always_inline int event_limit(__u64 *last, __u64 *suppressed, __u64 now, __u64 interval,
				       __u64 *report)
{
	__u64 prev = READ_ONCE_U64(*last);

	/* prev 0: never emitted (the clock is never 0 once the system is up). */
	if (prev && now - prev < interval) {
		__sync_fetch_and_add(suppressed, 1);
		return 0;
	}
	if (__sync_val_compare_and_swap(last, prev, now) != prev) {
		__sync_fetch_and_add(suppressed, 1);
		return 0;
	}
	*report = __sync_lock_test_and_set(suppressed, 0);
	return 1;
}

struct event_packet {
	const struct packet_info *pi;
	const struct decision *d;
	__u64 now; /* bpf_ktime_get_coarse_ns, for the limiters */
	__u64 packets, bytes;
	__u8 hook;
	__u8 ip; /* pi holds an IP packet's addresses */
};

/*
 * Write one record (ip: pi holds an IP packet's addresses). On a full ring buffer the loss is counted and the repeats it would
 * have reported go back to their limiter (suppressed NULL: none).
 */
static __always_inline void event_emit(struct ctx_buff *ctx, const struct packet_info *pi,
				       const struct decision *d, __u64 packets, __u64 bytes,
				       __u8 hook, __u8 ip, __u8 type, __u64 report,
				       __u64 *suppressed)
{
	struct sluice_event *e;

	e = bpf_ringbuf_reserve(&sluice_events, sizeof(*e), 0);
	if (!e) {
		event_lost(type);
		if (report && suppressed)
			__sync_fetch_and_add(suppressed, report);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns(); /* the precise clock only for what is emitted */
	e->suppressed = report;
	e->packets = packets;
	e->bytes = bytes;
	e->rule_id = d->rule_id;
	e->ifindex = ctx_ifindex(ctx);
	e->type = type;
	e->verdict = d->verdict;
	e->reason = d->reason;
	e->hook = hook;
	if (ip) {
		e->src = pi->src;
		e->dst = pi->dst;
		e->proto = pi->l4_proto;
		e->flags |= SLUICE_EVENT_F_DST;
		if (pi_has_port(pi)) {
			e->sport[0] = pi->l4[0];
			e->sport[1] = pi->l4[1];
			e->dport[0] = pi->l4[2];
			e->dport[1] = pi->l4[3];
			e->flags |= SLUICE_EVENT_F_PORTS;
		}
	}
	if (ctx_has_socket(ctx)) {
		e->uid = ctx_socket_uid(ctx);
		e->cgroup_id = ctx_socket_cgroup(ctx);
		e->flags |= SLUICE_EVENT_F_SOCKET;
	}
	bpf_ringbuf_submit(e, 0);
}

/* event_emit for a packet described by ep (the form events_packet works with). */
static __always_inline void event_send(struct ctx_buff *ctx, const struct event_packet *ep,
				       __u8 type, __u64 report, __u64 *suppressed)
{
	event_emit(ctx, ep->pi, ep->d, ep->packets, ep->bytes, ep->hook, ep->ip, type, report,
		   suppressed);
}

/*
 * The events of one decided packet: new_destination when it created its destination's
 * entry, deny or audit when it was denied. entry is the destination's (NULL when the
 * packet has none): its limiters key the rate limit by destination.
 */
static __always_inline void events_packet(struct ctx_buff *ctx, const struct event_packet *ep,
					  struct sluice_dest_stats *entry)
{
	const struct sluice_event_config *cfg;
	struct event_packet p = *ep;
	__u64 interval, report = 0;
	__u64 *last, *suppressed;
	__u32 zero = 0, type;

	cfg = bpf_map_lookup_elem(&sluice_event_config, &zero);
	if (!cfg || cfg->off)
		return;
	interval = cfg->interval_ns ? cfg->interval_ns : SLUICE_EVENT_INTERVAL_DEFAULT_NS;
	/*
	 * The coarse clock (one tick, a few ms, of resolution) is plenty for a limit of one
	 * per second, and costs a fraction of the precise one on every denied packet.
	 */
	p.now = bpf_ktime_get_coarse_ns();

	/* Once per entry by construction: no limiter needed. */
	if (p.d->new_dest)
		event_send(ctx, &p, SLUICE_EVENT_NEW_DESTINATION, 0, NULL);
	if (!decision_denied(p.d))
		return;
	type = p.d->verdict == SLUICE_VERDICT_DENY ? SLUICE_EVENT_DENY : SLUICE_EVENT_AUDIT;
	if (entry) {
		last = &entry->event_last_ns[type];
		suppressed = &entry->event_suppressed[type];
	} else {
		__u32 index = SLUICE_EVENT_LIMIT_INDEX(type, p.d->reason);
		struct sluice_event_limit *lim;

		if (p.d->reason >= SLUICE_REASON_MAX)
			return;
		lim = bpf_map_lookup_elem(&sluice_event_limits, &index);
		if (!lim)
			return;
		last = &lim->last_ns;
		suppressed = &lim->suppressed;
	}
	if (event_limit(last, suppressed, p.now, interval, &report))
		event_send(ctx, &p, type, report, suppressed);
}

#endif /* SLUICE_BPF_EVENTS_H */

/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Fragments: a fragmented datagram is decided as a whole. The first fragment is decided
 * like any packet and its decision recorded; later fragments follow it, and orphans (no
 * record: the first was never seen here, or its record was evicted) are decided by the
 * destination alone. Include from bpf/ entry files after policy.h.
 */
#ifndef SLUICE_BPF_FRAG_H
#define SLUICE_BPF_FRAG_H

#include "maps.h"
#include "parse.h"
#include "policy.h"

static __always_inline void frag_key(const struct packet_info *pi, struct sluice_frag_key *k)
{
	k->src = pi->src;
	k->dst = pi->dst;
	k->id = pi->frag_id;
	k->proto = pi->frag_proto;
}

/* A first fragment: its later fragments get this decision. */
static __always_inline void frag_record(const struct packet_info *pi, const struct decision *d)
{
	struct sluice_frag_entry e = {
		.rule_id = d->rule_id,
		.verdict = d->verdict,
		.reason = d->reason,
	};
	struct sluice_frag_key k = {};

	frag_key(pi, &k);
	/* A full LRU evicts the oldest record; the update cannot fail for want of room. */
	bpf_map_update_elem(&sluice_frags, &k, &e, BPF_ANY);
}

/*
 * A later fragment. d holds the destination's decision for a packet without a port (a
 * port class was looked up at /40: rules without port restriction). With a record, the
 * first fragment's decision replaces it; an orphan keeps it, and a deny says `fragment`.
 */
static __always_inline void frag_follow(const struct packet_info *pi, struct decision *d)
{
	struct sluice_frag_key k = {};
	struct sluice_frag_entry *e;

	frag_key(pi, &k);
	e = bpf_map_lookup_elem(&sluice_frags, &k);
	if (e) {
		d->rule_id = e->rule_id;
		d->verdict = e->verdict;
		d->reason = e->reason;
		return;
	}
	if (decision_denied(d))
		d->reason = SLUICE_REASON_FRAGMENT;
}

#endif /* SLUICE_BPF_FRAG_H */

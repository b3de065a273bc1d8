// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Randomized differential test of the tc egress program: 1,000,000 frames made by mutating
 * valid ones — bit flips, truncation at every length, header splices between IPv4, IPv6,
 * extension headers, fragments, ICMP errors and VLAN tags — under random policies, each
 * run through the real program with BPF_PROG_TEST_RUN and through the packet-level
 * reference decision (user/packet_oracle.c). Every run must succeed and give the oracle's
 * verdict (the return code) and reason (the node-total counter that moved, by the oracle's
 * packets and bytes); per-destination counters are compared at the end of every round.
 *
 * State the decision depends on is kept in step on both sides: each round clears the
 * destination, fragment and flow tables and installs a fresh policy; the fragment table is
 * cleared again whenever the model holds FRAG_CLEAR_AT records (far below the kernel map's
 * capacity, so the LRU never evicts); the test writes the flow table itself (as the ingress
 * program would) and rewrites a flow after every packet of it, so an egress FIN or RST
 * cannot start a linger that ends while the test runs.
 *
 * Seeded and reproducible: the seed is printed; SLUICE_SEED overrides it.
 *
 * Not covered here: an offloaded VLAN tag (skb metadata). BPF_PROG_TEST_RUN refuses a
 * context with the vlan fields set; the contract makes such a tag invisible to the program
 * anyway, and the in-band tags it would otherwise be are covered.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>

#include "addr.h"
#include "check.h"
#include "datapath.h"
#include "frame.h"
#include "log.h"
#include "packet_oracle.h"
#include "policy.h"
#include "policy_kernel.h"

#define ROUNDS 25
#define PACKETS_PER_ROUND 40000 /* runs; well below the destination table's capacity */
#define BATCH 4096              /* frames generated and decided before they are run */
#define FRAG_CLEAR_AT 1024      /* fragment records before both tables are cleared */
#define DEST_POOL 192
#define FLOW_POOL 24
#define RULES_MAX 40
#define REPORT_MAX 16 /* disagreements printed in full (the first of each kind) */
#define PIECES_MAX 32
#define RUN_FRAME_MAX 3000 /* BPF_PROG_TEST_RUN takes one page minus head and tail room */

#define V(x) SLUICE_VERDICT_##x
#define R(x) SLUICE_REASON_##x

/* --- random numbers: splitmix64, reproducible from the seed ----------------------------- */

static __u64 rng_state;

static __u64 rnd64(void)
{
	__u64 z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static unsigned rnd(unsigned n)
{
	return n ? rnd64() % n : 0;
}

static bool chance(unsigned percent)
{
	return rnd(100) < percent;
}

/* --- the datapath under test ------------------------------------------------------------ */

static struct datapath dp;
static struct policy_maps pmaps;
static int frags_fd = -1, flows_fd = -1;
static int ncpus;

/* --- pools: addresses, ports and flows that the policy and the packets share ------------ */

static struct sluice_addr dests[DEST_POOL];
static unsigned ndests;
static const __u16 port_pool[] = { 22, 53, 67, 68, 443, 546, 547, 2811, 9999, 40000, 65535 };

struct flow_rec {
	struct oracle_flow_key key;
	bool live;
	struct sluice_flow_key kkey;
	struct sluice_flow kval;
};
static struct flow_rec flows[FLOW_POOL];

static const char *node_v4 = "192.0.2.1";
static const char *node_v6 = "2001:db8:1::1";

static __u16 pick_port(void)
{
	return chance(85) ? port_pool[rnd(sizeof(port_pool) / sizeof(port_pool[0]))]
			  : 1 + rnd(65535);
}

/* A random prefix in the documentation ranges, often inside one already chosen. */
static struct prefix random_prefix(bool v4, const struct policy *p)
{
	struct prefix pre = {};

	if (p->nrules && chance(60)) {
		pre.addr = p->rules[rnd(p->nrules)].dst.addr;
		if (addr_is_v4(&pre.addr) != v4)
			memset(&pre.addr, 0, sizeof(pre.addr));
	}
	if (v4 && !addr_is_v4(&pre.addr)) {
		static const __u8 bases[][3] = { { 192, 0, 2 }, { 198, 51, 100 }, { 203, 0, 113 } };
		const __u8 *b = bases[rnd(3)];

		addr_parse("0.0.0.0", &pre.addr);
		memcpy(&pre.addr.a[12], b, 3);
	} else if (!v4 && pre.addr.a[0] != 0x20) {
		addr_parse("2001:db8::", &pre.addr);
		pre.addr.a[5] = rnd(4); /* 2001:db8:0..3:: */
	}
	if (v4) {
		for (int i = 15 - rnd(2); i < 16; i++)
			pre.addr.a[i] = rnd(256);
		pre.prefixlen = 96 + (chance(5) ? rnd(17) : 16 + rnd(17));
	} else {
		for (int i = 6 + rnd(10); i < 16; i++)
			pre.addr.a[i] = rnd(4) ? rnd(256) : 0;
		pre.prefixlen = chance(5) ? rnd(33) : 32 + rnd(97);
	}
	for (unsigned bit = pre.prefixlen; bit < 128; bit++)
		pre.addr.a[bit / 8] &= ~(0x80 >> (bit % 8));
	return pre;
}

static void random_match(struct l4_match *m)
{
	static const __u8 protos[] = { IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, IPPROTO_ICMPV6,
				       IPPROTO_SCTP };

	memset(m, 0, sizeof(*m));
	if (chance(50))
		return;
	m->nprotos = 1 + rnd(2);
	for (int i = 0; i < m->nprotos; i++)
		m->protos[i] = protos[rnd(5)];
	for (int i = 0; i < m->nprotos; i++)
		if (!proto_has_ports(m->protos[i]) || chance(33))
			return;
	m->nports = 1 + rnd(3);
	for (int i = 0; i < m->nports; i++) {
		__u16 x = pick_port(), y = chance(70) ? x : pick_port();

		m->ports[i] = (struct port_range){ x < y ? x : y, x < y ? y : x };
	}
}

static void random_policy(struct policy *p)
{
	unsigned n = 5 + rnd(RULES_MAX - 4);

	policy_init(p);
	p->mode = chance(20) ? SLUICE_MODE_AUDIT : SLUICE_MODE_ENFORCE;
	p->default_verdict = chance(50) ? V(ALLOW) : V(DENY);
	p->essential = !chance(25);
	p->replies = !chance(25);
	for (unsigned i = 0; i < n; i++) {
		struct prefix pre = random_prefix(chance(50), p);
		struct l4_match m;
		char name[16], target[ADDR_STRLEN];

		random_match(&m);
		snprintf(name, sizeof(name), "r%u", i);
		prefix_format(&pre, target, sizeof(target));
		if (policy_add_rules(p, chance(50) ? V(ALLOW) : V(DENY), &pre, 1, &m, name, target, i))
			CHECK(0, "cannot add a rule");
	}
}

/* Destinations: inside and around every rule prefix, plus broadcast and multicast. */
static void fill_dests(const struct policy *p)
{
	static const char *const special[] = { "255.255.255.255", "ff02::1:2", "ff02::1:ff00:1",
					       "192.0.2.2", "2001:db8:1::2" };

	ndests = 0;
	for (unsigned i = 0; i < sizeof(special) / sizeof(special[0]); i++)
		addr_parse(special[i], &dests[ndests++]);
	while (ndests < DEST_POOL) {
		struct sluice_addr a;

		if (p->nrules && chance(80)) {
			const struct prefix *pre = &p->rules[rnd(p->nrules)].dst;

			a = pre->addr;
			for (unsigned bit = pre->prefixlen; bit < 128; bit++)
				if (chance(bit >= 120 ? 50 : 3))
					a.a[bit / 8] |= 0x80 >> (bit % 8);
		} else {
			a = random_prefix(chance(50), p).addr;
			a.a[15] |= 1;
		}
		dests[ndests++] = a;
	}
}

static struct sluice_addr node_addr(bool v6)
{
	struct sluice_addr a;

	addr_parse(v6 ? node_v6 : node_v4, &a);
	return a;
}

/* Inbound flows as ingress would record them: the node's address and a pool destination. */
static void fill_flows(void)
{
	struct timespec ts;
	__u64 mono;

	/* The datapath's coarse clock is CLOCK_MONOTONIC at tick resolution. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	mono = (__u64)ts.tv_sec * 1000000000ull + ts.tv_nsec;
	for (unsigned i = 0; i < FLOW_POOL; i++) {
		struct flow_rec *f = &flows[i];
		bool v6;

		do
			f->key.remote = dests[rnd(ndests)];
		while (addr_is_v4(&f->key.remote) == chance(50) && chance(90));
		v6 = !addr_is_v4(&f->key.remote);
		f->key.local = node_addr(v6);
		f->key.proto = chance(50) ? IPPROTO_TCP : IPPROTO_UDP;
		f->key.local_port = pick_port();
		f->key.remote_port = pick_port();
		f->live = !chance(25);

		memset(&f->kkey, 0, sizeof(f->kkey));
		f->kkey.local = f->key.local;
		f->kkey.remote = f->key.remote;
		f->kkey.local_port[0] = f->key.local_port >> 8;
		f->kkey.local_port[1] = f->key.local_port;
		f->kkey.remote_port[0] = f->key.remote_port >> 8;
		f->kkey.remote_port[1] = f->key.remote_port;
		f->kkey.proto = f->key.proto;
		memset(&f->kval, 0, sizeof(f->kval));
		if (f->live) {
			f->kval.expires_ns = mono + 3600ull * 1000000000ull;
		} else {
			/* Expired a minute ago, half of them after a FIN/RST linger. */
			f->kval.expires_ns = mono - 60ull * 1000000000ull;
			f->kval.closing = chance(50);
		}
	}
}

/* --- building frames: pieces that splices can cut between -------------------------------- */

enum space { SP_NONE, SP_ETHERTYPE, SP_IPPROTO };

/* One header of a frame: where it starts, what it is, and where it names what follows. */
struct piece {
	unsigned off;
	unsigned type;      /* its ethertype (SP_ETHERTYPE) or IP protocol (SP_IPPROTO) */
	enum space space;   /* the name space of `type`; SP_NONE: payload, quoted data */
	unsigned next_off;  /* 0: names nothing */
	enum space next_space;
	bool ip_len;        /* an IP header whose length field a fix-up may set */
};

struct tmpl {
	struct frame f;
	struct piece pc[PIECES_MAX];
	unsigned npc;
	unsigned gso_segs;
};

static void piece(struct tmpl *t, unsigned type, enum space space, unsigned next_rel,
		  enum space next_space)
{
	struct piece *p;

	if (t->npc == PIECES_MAX)
		return;
	p = &t->pc[t->npc++];
	p->off = t->f.len;
	p->type = type;
	p->space = space;
	p->next_off = next_space != SP_NONE ? t->f.len + next_rel : 0;
	p->next_space = next_space;
	p->ip_len = type == ETH_P_IP || type == ETH_P_IPV6;
}

static void gen_l2(struct tmpl *t, unsigned ethertype)
{
	unsigned tags = chance(70) ? 0 : chance(50) ? 1 : chance(70) ? 2 : 3;
	unsigned tpid = chance(50) ? ETH_P_8021Q : ETH_P_8021AD;

	piece(t, 0, SP_NONE, 12, SP_ETHERTYPE);
	fr_eth(&t->f, tags ? tpid : ethertype);
	for (unsigned i = 0; i < tags; i++) {
		unsigned next = i + 1 < tags ? ETH_P_8021Q : ethertype;

		piece(t, tpid, SP_ETHERTYPE, 2, SP_ETHERTYPE);
		fr_u16(&t->f, 100 + i);
		fr_u16(&t->f, next);
		tpid = next;
	}
}

static const char *addr_str(const struct sluice_addr *a, char *buf)
{
	addr_format(a, buf, ADDR_STRLEN);
	return buf;
}

/* Where the outermost IP header's length is, to set once the frame is complete. */
static void fix_ip_len(struct tmpl *t)
{
	for (unsigned i = 0; i < t->npc; i++) {
		if (t->pc[i].ip_len) {
			size_t l3 = t->pc[i].off, l = t->f.len - l3;

			if (t->pc[i].type == ETH_P_IP) {
				t->f.b[l3 + 2] = l >> 8;
				t->f.b[l3 + 3] = l;
			} else {
				l = l >= 40 ? l - 40 : 0;
				t->f.b[l3 + 4] = l >> 8;
				t->f.b[l3 + 5] = l;
			}
			return;
		}
	}
}

static __u8 pick_l4(bool v6)
{
	unsigned r = rnd(100);

	if (r < 32)
		return IPPROTO_TCP;
	if (r < 62)
		return IPPROTO_UDP;
	if (r < 80)
		return v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP;
	if (r < 85)
		return IPPROTO_SCTP;
	if (r < 88)
		return v6 ? IPPROTO_ICMP : IPPROTO_ICMPV6;
	if (r < 93)
		return (const __u8[]){ 135, 139, 140, 253, 254 }[rnd(5)];
	return rnd(256);
}

static void gen_ip(struct tmpl *t, bool v6, const struct sluice_addr *src,
		   const struct sluice_addr *dst, __u8 proto, bool inner);

/* A transport header (and for ICMP errors, the quoted packet). */
static void gen_l4(struct tmpl *t, bool v6, __u8 proto, unsigned sport, unsigned dport,
		   bool inner)
{
	static const __u8 tcp_flags[] = { FR_SYN, FR_SYN | FR_ACK, FR_ACK, FR_FIN | FR_ACK,
					  FR_RST, FR_RST | FR_ACK, 0x18 };

	piece(t, proto, SP_IPPROTO, 0, SP_NONE);
	if (proto == IPPROTO_TCP) {
		fr_tcp_opts(&t->f, sport, dport, tcp_flags[rnd(7)], chance(70) ? 0 : rnd(4));
	} else if (proto == IPPROTO_UDP) {
		fr_udp(&t->f, sport, dport, 0);
	} else if (proto == IPPROTO_SCTP) {
		fr_udp(&t->f, sport, dport, 0);
		fr_pad(&t->f, 4); /* SCTP's common header is 12 bytes, ports first */
	} else if ((proto == IPPROTO_ICMP && !v6) || (proto == IPPROTO_ICMPV6 && v6)) {
		static const __u8 t4[] = { 3, 3, 11, 12, 8, 0, 5, 4 };
		static const __u8 t6[] = { 1, 2, 3, 4, 128, 129, 133, 134, 135, 136, 137,
					   130, 131, 132, 143, 138 };
		__u8 type = v6 ? t6[rnd(sizeof(t6))] : t4[rnd(sizeof(t4))];
		bool error = v6 ? type <= 4 : type == 3 || type == 11 || type == 12;

		fr_icmp(&t->f, type, rnd(4));
		if (error && !inner) {
			/* The quoted packet: often one of an inbound flow, from remote to node. */
			struct sluice_addr qs = dests[rnd(ndests)], qd = node_addr(v6);
			__u8 qp = chance(80) ? (chance(50) ? IPPROTO_TCP : IPPROTO_UDP) : pick_l4(v6);
			unsigned qsport = pick_port(), qdport = pick_port();

			if (chance(50)) {
				const struct flow_rec *fl = &flows[rnd(FLOW_POOL)];

				qs = fl->key.remote;
				qd = fl->key.local;
				qp = fl->key.proto;
				qsport = fl->key.remote_port;
				qdport = fl->key.local_port;
			}
			if (addr_is_v4(&qs) == v6) {
				qs = node_addr(v6); /* a neighbour of the node, same family */
				qs.a[15] ^= 0x40;
			}
			if (addr_is_v4(&qd) == v6)
				qd = node_addr(v6);
			gen_ip(t, v6, &qs, &qd, qp, true);
			gen_l4(t, v6, qp, qsport, qdport, true);
		}
	} else {
		fr_pad(&t->f, 8);
	}
}

/* An IPv4 or IPv6 header, for IPv6 with a chain of extension headers; ends at L4. */
static void gen_ip(struct tmpl *t, bool v6, const struct sluice_addr *src,
		   const struct sluice_addr *dst, __u8 proto, bool inner)
{
	char s[ADDR_STRLEN], d[ADDR_STRLEN];
	unsigned id = 1 + rnd(6);
	bool later = false;

	if (!v6) {
		unsigned frag = 0, r = rnd(100);

		if (!inner && r < 10)
			frag = FR_MF; /* first */
		else if (!inner && r < 18)
			frag = FR_MF | (1 + rnd(200)); /* middle */
		else if (!inner && r < 26)
			frag = 1 + rnd(200); /* last */
		piece(t, ETH_P_IP, SP_ETHERTYPE, 9, SP_IPPROTO);
		fr_ipv4_opts(&t->f, addr_str(src, s), addr_str(dst, d), proto, frag, id,
			     chance(80) ? 0 : rnd(11));
		later = (frag & 0x1fff) != 0;
	} else {
		static const __u8 walked[] = { 0, 43, 44, 60, 51, 60, 43 };
		unsigned n = chance(55) ? 0 : chance(70) ? 1 + rnd(3) : 4 + rnd(6);
		__u8 types[12];

		for (unsigned i = 0; i < n; i++) {
			types[i] = walked[rnd(sizeof(walked))];
			if (types[i] == 0 && i > 0 && chance(80))
				types[i] = 60; /* hop-by-hop mostly first */
		}
		if (n && chance(40))
			types[0] = 0;
		piece(t, ETH_P_IPV6, SP_ETHERTYPE, 6, SP_IPPROTO);
		fr_ipv6(&t->f, addr_str(src, s), addr_str(dst, d), n ? types[0] : proto);
		for (unsigned i = 0; i < n && !later; i++) {
			__u8 next = i + 1 < n ? types[i + 1] : proto;

			piece(t, types[i], SP_IPPROTO, 0, SP_IPPROTO);
			if (types[i] == 44) {
				unsigned r = rnd(100);
				unsigned offset = r < 45 ? 0 : 8 * (1 + rnd(400));

				fr_frag6(&t->f, next, offset, r < 45 ? !chance(10) : chance(50),
					 0x10000 + id);
				later = offset != 0;
			} else if (types[i] == 51) {
				fr_ext(&t->f, 51, next, 12 + 4 * rnd(4));
			} else {
				fr_ext(&t->f, types[i], next, 8 * (1 + (chance(80) ? 0 : rnd(4))));
			}
		}
	}
	if (later) {
		/* A later fragment: the middle of a datagram, no transport header. */
		piece(t, 0, SP_NONE, 0, SP_NONE);
		fr_pad(&t->f, 8 * (1 + rnd(12)));
	}
}

/* A valid frame of some kind, with its pieces recorded. */
static void gen_template(struct tmpl *t)
{
	unsigned r = rnd(100);
	bool v6 = chance(50);
	struct sluice_addr src = node_addr(v6), dst;
	unsigned sport = pick_port(), dport = pick_port();
	__u8 proto;

	fr_init(&t->f);
	t->npc = 0;
	t->gso_segs = 0;
	if (r < 4) {
		gen_l2(t, chance(50) ? ETH_P_ARP : chance(50) ? 0x88cc : 0x600 + rnd(0xf000));
		piece(t, 0, SP_NONE, 0, SP_NONE);
		fr_pad(&t->f, 28 + rnd(32));
		return;
	}
	do
		dst = dests[rnd(ndests)];
	while (addr_is_v4(&dst) == v6 && chance(95));
	v6 = !addr_is_v4(&dst);
	src = node_addr(v6);
	proto = pick_l4(v6);
	if (r < 14) {
		/* A packet of a recorded inbound flow, as the node answers it. */
		const struct flow_rec *fl = &flows[rnd(FLOW_POOL)];

		dst = fl->key.remote;
		v6 = !addr_is_v4(&dst);
		src = fl->key.local;
		proto = fl->key.proto;
		sport = fl->key.local_port;
		dport = fl->key.remote_port;
	} else if (r < 19) {
		/* DHCP client traffic. */
		proto = IPPROTO_UDP;
		sport = v6 ? 546 : 68;
		dport = v6 ? 547 : 67;
	}
	gen_l2(t, v6 ? ETH_P_IPV6 : ETH_P_IP);
	gen_ip(t, v6, &src, &dst, proto, false);
	if (t->pc[t->npc - 1].space != SP_NONE)
		gen_l4(t, v6, proto, sport, dport, false);
	if (chance(60)) {
		piece(t, 0, SP_NONE, 0, SP_NONE);
		fr_pad(&t->f, chance(90) ? rnd(64) : rnd(1400));
	}
	/* Quoted packets carry their own length: set it where there is one. */
	for (unsigned i = 1; i < t->npc; i++) {
		if (t->pc[i].ip_len) {
			size_t l3 = t->pc[i].off, l = t->f.len - l3;

			if (t->pc[i].type == ETH_P_IP)
				t->f.b[l3 + 2] = l >> 8, t->f.b[l3 + 3] = l;
			else
				t->f.b[l3 + 4] = (l - 40) >> 8, t->f.b[l3 + 5] = l - 40;
		}
	}
	fix_ip_len(t);
	if (chance(8) && (proto == IPPROTO_TCP || proto == IPPROTO_UDP))
		t->gso_segs = 2 + rnd(44);
}

/* --- mutations -------------------------------------------------------------------------- */

static void flip_bits(struct tmpl *t)
{
	unsigned n = 1 + rnd(3);

	for (unsigned i = 0; i < n && t->f.len; i++) {
		/* Mostly in the headers, where the decisions are. */
		size_t limit = chance(75) && t->f.len > 96 ? 96 : t->f.len;
		size_t pos = rnd(limit);

		t->f.b[pos] ^= 1u << rnd(8);
	}
}

/* Join a's headers up to one of its pieces with b's from one of its pieces. */
static void splice(struct tmpl *out, const struct tmpl *a, const struct tmpl *b)
{
	unsigned i = 1 + rnd(a->npc > 1 ? a->npc - 1 : 1), j = rnd(b->npc);
	size_t cut_a, cut_b, tail;

	if (i >= a->npc)
		i = a->npc - 1;
	cut_a = a->pc[i].off;
	cut_b = b->pc[j].off;
	tail = b->f.len - cut_b;
	if (cut_a + tail > RUN_FRAME_MAX)
		tail = RUN_FRAME_MAX - cut_a;
	*out = *a;
	memcpy(out->f.b + cut_a, b->f.b + cut_b, tail);
	out->f.len = cut_a + tail;
	out->npc = i;
	for (unsigned k = j; k < b->npc && out->npc < PIECES_MAX; k++) {
		struct piece p = b->pc[k];

		p.off = p.off - cut_b + cut_a;
		if (p.next_off)
			p.next_off = p.next_off - cut_b + cut_a;
		if (p.off >= out->f.len)
			break;
		out->pc[out->npc++] = p;
	}
	/* Mostly make the seam consistent: the header before names the one after. */
	if (chance(70) && i > 0) {
		const struct piece *prev = &a->pc[i - 1];

		if (prev->next_off && prev->next_space == b->pc[j].space) {
			if (prev->next_space == SP_ETHERTYPE) {
				out->f.b[prev->next_off] = b->pc[j].type >> 8;
				out->f.b[prev->next_off + 1] = b->pc[j].type;
			} else {
				out->f.b[prev->next_off] = b->pc[j].type;
			}
		}
	}
	if (chance(75))
		fix_ip_len(out);
	out->gso_segs = chance(50) ? a->gso_segs : b->gso_segs;
}

/* --- kernel state ----------------------------------------------------------------------- */

static void clear_map(int fd, size_t key_size)
{
	__u8 key[64], next[64];

	if (fd < 0 || key_size > sizeof(key))
		return;
	while (bpf_map_get_next_key(fd, NULL, next) == 0) {
		memcpy(key, next, key_size);
		if (bpf_map_delete_elem(fd, key))
			break;
	}
}

static int write_flow(const struct flow_rec *f)
{
	if (flows_fd < 0)
		return -ENOENT;
	return bpf_map_update_elem(flows_fd, &f->kkey, &f->kval, BPF_ANY);
}

/* Node totals of the program's hook on the "other" interface slot (test runs have none). */
struct totals {
	struct sluice_counter c[SLUICE_VERDICT_MAX][SLUICE_REASON_MAX];
};

static int read_total(__u8 verdict, __u8 reason, struct sluice_counter *out)
{
	__u32 index = SLUICE_TOTALS_INDEX(SLUICE_IFSLOT_OTHER, SLUICE_HOOK_TC_EGRESS, verdict, reason);
	struct sluice_counter percpu[ncpus];

	memset(out, 0, sizeof(*out));
	if (bpf_map_lookup_elem(dp.totals_fd, &index, percpu))
		return -errno;
	for (int i = 0; i < ncpus; i++) {
		out->packets += percpu[i].packets;
		out->bytes += percpu[i].bytes;
	}
	return 0;
}

static void read_all_totals(struct totals *t)
{
	for (unsigned v = 0; v < SLUICE_VERDICT_MAX; v++)
		for (unsigned r = 0; r < SLUICE_REASON_MAX; r++)
			read_total(v, r, &t->c[v][r]);
}

/* --- the expected per-destination counters ---------------------------------------------- */

struct dest_count {
	struct sluice_addr addr;
	bool used;
	__u64 packets[SLUICE_VERDICT_MAX], bytes[SLUICE_VERDICT_MAX];
};

#define DEST_TABLE (1u << 17) /* open addressing, > 2 x PACKETS_PER_ROUND */
static struct dest_count *dest_table;
static size_t dest_used;

static struct dest_count *dest_slot(const struct sluice_addr *a)
{
	__u64 h = 1469598103934665603ull;

	for (int i = 0; i < 16; i++)
		h = (h ^ a->a[i]) * 1099511628211ull;
	for (size_t i = h & (DEST_TABLE - 1);; i = (i + 1) & (DEST_TABLE - 1)) {
		struct dest_count *d = &dest_table[i];

		if (!d->used) {
			d->used = true;
			d->addr = *a;
			dest_used++;
			return d;
		}
		if (!memcmp(&d->addr, a, sizeof(*a)))
			return d;
	}
}

/* --- running and comparing -------------------------------------------------------------- */

struct item {
	struct tmpl t;
	struct oracle_result want;
	const char *how; /* how the frame was made */
};

static unsigned long long runs, disagreements, run_errors, refused, reported;
static const struct policy *cur_policy; /* printed with the first disagreements */

/* Disagreements by kind: (wanted verdict, reason) -> (actual verdict, reason). */
#define KIND_NONE SLUICE_VERDICT_MAX /* no counter moved */
static unsigned long long kinds[SLUICE_VERDICT_MAX][SLUICE_REASON_MAX][SLUICE_VERDICT_MAX + 1]
			       [SLUICE_REASON_MAX];

static void print_kinds(void)
{
	for (int shown = 0; shown < 12; shown++) {
		unsigned long long best = 0;
		unsigned bw = 0, br = 0, bv = 0, bg = 0;

		for (unsigned w = 0; w < SLUICE_VERDICT_MAX; w++)
			for (unsigned r = 0; r < SLUICE_REASON_MAX; r++)
				for (unsigned v = 0; v <= SLUICE_VERDICT_MAX; v++)
					for (unsigned g = 0; g < SLUICE_REASON_MAX; g++)
						if (kinds[w][r][v][g] > best) {
							best = kinds[w][r][v][g];
							bw = w, br = r, bv = v, bg = g;
						}
		if (!best)
			return;
		fprintf(stderr, "  %10llu x want %s/%s, got %s/%s\n", best, verdict_name(bw),
			reason_name(br), bv == KIND_NONE ? "nothing" : verdict_name(bv),
			bv == KIND_NONE ? "-" : reason_name(bg));
		kinds[bw][br][bv][bg] = 0;
	}
}
static double run_seconds;
static unsigned long long coverage[SLUICE_VERDICT_MAX][SLUICE_REASON_MAX]; /* runs, by oracle */

static bool runner_refuses(const struct frame *f)
{
	unsigned type;

	/* The kernel's test runner needs Ethernet, and an IP header behind an IP ethertype. */
	if (f->len < ETH_HLEN)
		return true;
	type = (unsigned)f->b[12] << 8 | f->b[13];
	return (type == ETH_P_IP && f->len < ETH_HLEN + 20) ||
	       (type == ETH_P_IPV6 && f->len < ETH_HLEN + 40);
}

static void hexdump(const struct frame *f)
{
	for (size_t i = 0; i < f->len; i++)
		fprintf(stderr, "%02x%s", f->b[i], (i + 1) % 32 == 0 || i + 1 == f->len ? "\n" : "");
}

static void report(const struct item *it, int retval, const char *actual)
{
	char dst[ADDR_STRLEN] = "-";

	if (reported++ >= REPORT_MAX)
		return;
	if (it->want.has_dst)
		addr_format(&it->want.dst, dst, sizeof(dst));
	fprintf(stderr,
		"disagreement #%llu (%s, %zu bytes, gso_segs %u, dst %s):\n"
		"  want %s/%s (rule %u, %llu packets, %llu bytes), return %d\n"
		"  got  %s, return %d\n",
		reported, it->how, it->t.f.len, it->t.gso_segs, dst, verdict_name(it->want.verdict),
		reason_name(it->want.reason), it->want.rule_id,
		(unsigned long long)it->want.packets, (unsigned long long)it->want.bytes,
		it->want.verdict == V(DENY) ? TC_ACT_SHOT : TC_ACT_UNSPEC, actual, retval);
	hexdump(&it->t.f);
	if (reported <= 3 && cur_policy) {
		fprintf(stderr, "  under the policy:\n");
		policy_format(cur_policy, stderr);
	}
}

static const struct flow_rec *flow_of(const struct oracle_result *r)
{
	if (!r->flow_key_valid)
		return NULL;
	for (unsigned i = 0; i < FLOW_POOL; i++)
		if (!memcmp(&flows[i].key.local, &r->flow_key.local, 16) &&
		    !memcmp(&flows[i].key.remote, &r->flow_key.remote, 16) &&
		    flows[i].key.local_port == r->flow_key.local_port &&
		    flows[i].key.remote_port == r->flow_key.remote_port &&
		    flows[i].key.proto == r->flow_key.proto)
			return &flows[i];
	return NULL;
}

static void run_batch(struct item *items, size_t n, struct totals *shadow)
{
	struct timespec t0, t1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (size_t i = 0; i < n; i++) {
		struct item *it = &items[i];
		struct __sk_buff ctx = { .gso_segs = it->t.gso_segs, .gso_size = 1000 };
		LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = it->t.f.b,
			    .data_size_in = it->t.f.len, .repeat = 1);
		struct sluice_counter got, *want = &shadow->c[it->want.verdict][it->want.reason];
		const struct flow_rec *fl;
		int err, want_ret = it->want.verdict == V(DENY) ? TC_ACT_SHOT : TC_ACT_UNSPEC;

		if (it->t.gso_segs > 1) {
			opts.ctx_in = &ctx;
			opts.ctx_size_in = sizeof(ctx);
		}
		err = bpf_prog_test_run_opts(dp.egress_prog_fd, &opts);
		runs++;
		coverage[it->want.verdict][it->want.reason]++;
		if (err) {
			char msg[64];

			snprintf(msg, sizeof(msg), "BPF_PROG_TEST_RUN failed: %s", strerror(-err));
			run_errors++;
			report(it, 0, msg);
			continue;
		}
		fl = flow_of(&it->want);
		if (fl)
			write_flow(fl); /* undo whatever a FIN or RST started */
		want->packets += it->want.packets;
		want->bytes += it->want.bytes;
		read_total(it->want.verdict, it->want.reason, &got);
		if ((int)opts.retval == want_ret && got.packets == want->packets &&
		    got.bytes == want->bytes)
			continue;

		/* Find the counter that did move, then take the kernel's totals as the baseline. */
		struct totals now;
		char actual[160] = "no counter moved";
		unsigned got_v = KIND_NONE, got_r = 0;

		disagreements++;
		read_all_totals(&now);
		want->packets -= it->want.packets;
		want->bytes -= it->want.bytes;
		for (unsigned v = 0; v < SLUICE_VERDICT_MAX; v++) {
			for (unsigned r = 0; r < SLUICE_REASON_MAX; r++) {
				__u64 dp_ = now.c[v][r].packets - shadow->c[v][r].packets;
				__u64 db = now.c[v][r].bytes - shadow->c[v][r].bytes;

				if (!dp_ && !db)
					continue;
				snprintf(actual, sizeof(actual), "%s/%s (%llu packets, %llu bytes)",
					 verdict_name(v), reason_name(r), (unsigned long long)dp_,
					 (unsigned long long)db);
				got_v = v;
				got_r = r;
			}
		}
		/* The first frame of each kind of disagreement is printed in full. */
		if (kinds[it->want.verdict][it->want.reason][got_v][got_r]++ == 0)
			report(it, (int)opts.retval, actual);
		*shadow = now;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	run_seconds += (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
}

/* Per destination: what the kernel counted equals what the oracle attributed. */
static void check_dests(unsigned round)
{
	struct sluice_addr key, next;
	struct sluice_dest_stats st;
	unsigned long long bad = 0, kernel_only = 0, seen = 0;
	void *prev = NULL;

	while (bpf_map_get_next_key(dp.dests_fd, prev, &next) == 0) {
		struct dest_count *d;
		bool same;

		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(dp.dests_fd, &key, &st))
			continue;
		d = dest_slot(&key);
		same = true;
		for (unsigned v = 0; v < SLUICE_VERDICT_MAX; v++)
			same &= st.packets[v] == d->packets[v] && st.bytes[v] == d->bytes[v];
		if (!same && bad++ < 3) {
			char a[ADDR_STRLEN];

			addr_format(&key, a, sizeof(a));
			fprintf(stderr, "round %u: destination %s: kernel", round, a);
			for (unsigned v = 0; v < SLUICE_VERDICT_MAX; v++)
				fprintf(stderr, " %s %llu/%llu", verdict_name(v),
					(unsigned long long)st.packets[v],
					(unsigned long long)st.bytes[v]);
			fprintf(stderr, "; oracle");
			for (unsigned v = 0; v < SLUICE_VERDICT_MAX; v++)
				fprintf(stderr, " %s %llu/%llu", verdict_name(v),
					(unsigned long long)d->packets[v],
					(unsigned long long)d->bytes[v]);
			fputc('\n', stderr);
		}
		seen++;
	}
	/* Destinations the oracle counted that the kernel has no entry for. */
	for (size_t i = 0; i < DEST_TABLE; i++) {
		struct dest_count *d = &dest_table[i];
		__u64 any = 0;

		if (!d->used)
			continue;
		for (unsigned v = 0; v < SLUICE_VERDICT_MAX; v++)
			any |= d->packets[v];
		if (any && bpf_map_lookup_elem(dp.dests_fd, &d->addr, &st) != 0)
			kernel_only++;
	}
	CHECK(bad == 0 && kernel_only == 0,
	      "round %u: %llu of %llu destinations counted differently, %llu missing in the kernel",
	      round, bad, seen, kernel_only);
}

static void new_round(struct policy *p, unsigned round)
{
	struct compiled_policy cp;
	__u32 gen;

	random_policy(p);
	fill_dests(p);
	clear_map(dp.dests_fd, sizeof(struct sluice_addr));
	clear_map(frags_fd, sizeof(struct sluice_frag_key));
	clear_map(flows_fd, sizeof(struct sluice_flow_key));
	fill_flows();
	for (unsigned i = 0; i < FLOW_POOL; i++)
		if (flows_fd >= 0)
			write_flow(&flows[i]);
	memset(dest_table, 0, DEST_TABLE * sizeof(*dest_table));
	dest_used = 0;
	if (policy_next_generation(dp.config_fd, &gen) || policy_compile(p, gen, &cp)) {
		CHECK(0, "round %u: cannot compile the random policy", round);
		return;
	}
	CHECK(policy_install(&pmaps, &cp, gen, NULL) == 0, "round %u: cannot install the policy", round);
	compiled_policy_free(&cp);
}

/* One frame to test: a template, mutated one way or another. */
static const char *make_frame(struct tmpl *out, struct tmpl *pending, unsigned *pending_cut)
{
	struct tmpl a, b;
	unsigned r;

	/* A template being cut at every length, longest first. */
	if (*pending_cut) {
		*out = *pending;
		out->f.len = --(*pending_cut);
		return "truncated";
	}
	gen_template(&a);
	r = rnd(100);
	if (r < 10) {
		*out = a;
		return "valid";
	}
	if (r < 11) {
		/* Every length from the whole frame down to nothing, over the next frames. */
		*pending = a;
		*pending_cut = a.f.len;
		*out = a;
		return "valid";
	}
	if (r < 55) {
		*out = a;
		flip_bits(out);
		return "bit flips";
	}
	gen_template(&b);
	splice(out, &a, &b);
	if (r < 85)
		return "splice";
	flip_bits(out);
	return "splice + bit flips";
}

int main(void)
{
	const char *seed_env = getenv("SLUICE_SEED");
	__u64 seed = seed_env ? strtoull(seed_env, NULL, 0) : 0x5e1cef00d;
	struct oracle_state st;
	struct item *items;
	struct tmpl pending;
	unsigned pending_cut = 0;
	struct totals shadow, final;

	log_init(getenv("SLUICE_TEST_VERBOSE") ? LOG_DEBUG : LOG_WARN);
	printf("seed %#llx (set SLUICE_SEED to reproduce or vary)\n", (unsigned long long)seed);
	rng_state = seed;
	ncpus = libbpf_num_possible_cpus();
	if (ncpus <= 0 || datapath_load(&dp, NULL)) {
		fprintf(stderr, "cannot load the datapath (root needed)\n");
		return 1;
	}
	pmaps = datapath_policy_maps(&dp);
	pmaps.budgets = NULL; /* installs without budgets */
	frags_fd = dp.frags_fd;
	flows_fd = dp.flows_fd;
	CHECK(frags_fd >= 0, "the program has no sluice_frags map");
	CHECK(flows_fd >= 0, "the program has no sluice_flows map");
	items = calloc(BATCH, sizeof(*items));
	dest_table = calloc(DEST_TABLE, sizeof(*dest_table));
	if (!items || !dest_table)
		return 1;
	oracle_state_init(&st);
	read_all_totals(&shadow);

	for (unsigned round = 0; round < ROUNDS; round++) {
		struct policy p;
		unsigned made = 0;

		new_round(&p, round);
		cur_policy = &p;
		oracle_frags_clear(&st);
		oracle_flows_clear(&st);
		for (unsigned i = 0; i < FLOW_POOL; i++)
			oracle_flow_add(&st, &flows[i].key, flows[i].live);
		pending_cut = 0;
		while (made < PACKETS_PER_ROUND) {
			size_t n = 0;

			/* Batch set-up: frames made and decided by the oracle first, then run. */
			if (st.nfrags >= FRAG_CLEAR_AT) {
				oracle_frags_clear(&st);
				clear_map(frags_fd, sizeof(struct sluice_frag_key));
			}
			while (n < BATCH && made < PACKETS_PER_ROUND &&
			       st.nfrags < FRAG_CLEAR_AT) {
				struct item *it = &items[n];
				struct oracle_skb skb = {};

				it->how = make_frame(&it->t, &pending, &pending_cut);
				if (runner_refuses(&it->t.f)) {
					refused++; /* not a run: does not count toward the million */
					continue;
				}
				skb.gso_segs = it->t.gso_segs;
				if (oracle_decide(&p, &st, it->t.f.b, it->t.f.len, &skb, &it->want)) {
					CHECK(0, "oracle out of memory");
					return 1;
				}
				if (it->want.has_dst) {
					struct dest_count *d = dest_slot(&it->want.dst);

					d->packets[it->want.verdict] += it->want.packets;
					d->bytes[it->want.verdict] += it->want.bytes;
				}
				n++;
				made++;
			}
			run_batch(items, n, &shadow);
		}
		check_dests(round);
		cur_policy = NULL;
		policy_free(&p);
	}

	/* Nothing was counted anywhere the oracle did not expect. */
	read_all_totals(&final);
	CHECK(memcmp(&final, &shadow, sizeof(final)) == 0,
	      "node totals differ from the oracle's after the last round");
	printf("%llu frames: %llu run through the program (%.1f s, %.2f us each), %llu refused "
	       "by the test runner before the program (too short for their ethertype)\n",
	       runs + refused, runs, run_seconds, runs ? run_seconds * 1e6 / runs : 0.0, refused);
	CHECK(runs >= 1000000, "%llu frames run, want at least 1000000", runs);
	/* The frames reach every outcome, often: otherwise the generator has gone blind. */
	printf("runs by expected verdict/reason:");
	for (unsigned v = 0; v < SLUICE_VERDICT_MAX; v++)
		for (unsigned r = 0; r < SLUICE_REASON_MAX; r++)
			if (coverage[v][r])
				printf(" %s/%s %llu", verdict_name(v), reason_name(r), coverage[v][r]);
	printf("\n");
	for (unsigned r = 0; r < SLUICE_REASON_MAX; r++) {
		unsigned long long n = 0;

		for (unsigned v = 0; v < SLUICE_VERDICT_MAX; v++)
			n += coverage[v][r];
		/* Budget drops depend on traffic volume, not packet shape: test_tc_egress's. */
		CHECK(r == SLUICE_REASON_NO_POLICY || r == SLUICE_REASON_BUDGET || n >= 1000,
		      "only %llu runs with reason %s", n, reason_name(r));
	}
	for (unsigned v = 0; v < SLUICE_VERDICT_MAX; v++) {
		unsigned long long n = 0;

		for (unsigned r = 0; r < SLUICE_REASON_MAX; r++)
			n += coverage[v][r];
		CHECK(n >= 1000, "only %llu runs with verdict %s", n, verdict_name(v));
	}
	CHECK(run_errors == 0, "%llu runs returned an error", run_errors);
	CHECK(disagreements == 0, "%llu of %llu runs disagree with the oracle", disagreements, runs);
	if (disagreements) {
		fprintf(stderr, "disagreements by kind (most frequent first):\n");
		print_kinds();
	}
	oracle_state_free(&st);
	free(items);
	free(dest_table);
	datapath_close(&dp);
	return check_summary();
}

// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * sluice-bench-pktcost: what sluice's tc egress program costs per packet, against a no-op
 * tc program (the harness's own cost) and a plain one-lookup LPM program (the least any
 * destination filter on an LPM trie can cost), for policies of growing size; and what
 * sluice's XDP program (gateway mode) costs against a no-op XDP program, in the same run.
 * XDP decides only packets the node forwards, so the benchmark runs in a network namespace
 * of its own made a router (forwarding on, default routes out of a veth pair).
 *
 * Everything runs through BPF_PROG_TEST_RUN on crafted frames: no interface is touched.
 * Two workloads:
 *   hot     one destination, one test run with a large repeat count (all caches warm);
 *   spread  tens of thousands of distinct destinations, one test run each, cycled several
 *           times, averaging the kernel's per-run duration (the destination table and
 *           the trie no longer fit in the CPU caches, as on a busy DTN).
 * Contenders are interleaved (noop lpm sluice xdp-noop xdp noop ...) so that drift in the
 * machine (frequency, a neighbour VM) spreads over all of them instead of biasing one.
 *
 * Prints a table and writes the same numbers as TSV (--out). Needs root (or CAP_BPF +
 * CAP_NET_ADMIN). Never part of ctest: timings do not pass or fail.
 */
#define _GNU_SOURCE /* sched_setaffinity, CPU_SET, unshare */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "addr.h"
#include "datapath.h"
#include "local_addrs.h"
#include "log.h"
#include "policy.h"
#include "policy_kernel.h"
#include "lpm.skel.h"
#include "noop.skel.h"

/* The kernel's internal ENOTSUPP, which leaks to userspace from some map operations. */
#define ENOTSUPP_KERNEL 524

#define DEFAULT_PREFIXES "10,1000,10000,100000,250000"
#define DEFAULT_REPS 7
#define DEFAULT_HOT_REPEAT 1000000
#define DEFAULT_SPREAD_DESTS 65536
#define DEFAULT_SPREAD_PASSES 5
#define DEFAULT_SEED 0x511ceull

/* The compiler adds up to two catch-all entries; keep the rules clear of the trie's capacity. */
#define MAX_PREFIXES (SLUICE_POLICY_MAX - 16)
#define MAX_PREFIX_COUNTS 32

/* Share of spread destinations drawn inside a rule's prefix; the rest hit the default. */
#define SPREAD_INSIDE_PERCENT 90
/* Share of rules that deny; the rest allow (default deny, so the catch-alls deny too). */
#define DENY_PERCENT 25

/* Frame layout: Ethernet + IP + UDP + a small payload (60 bytes for IPv4, 80 for IPv6). */
#define PAYLOAD_LEN 18
#define FRAME_MAX (ETH_HLEN + sizeof(struct ipv6hdr) + sizeof(struct udphdr) + PAYLOAD_LEN)

enum workload { WL_HOT, WL_SPREAD, WL_MAX };
static const char *const workload_names[WL_MAX] = { "hot", "spread" };

/*
 * budget: sluice again (its own datapath, same policy) plus `budget any 1PB per 1w alert`,
 * so every packet is charged to one budget that never crosses: the cost of budgets.
 */
enum contender { C_NOOP, C_LPM, C_SLUICE, C_BUDGET, C_XDP_NOOP, C_XDP, C_MAX };
static const char *const contender_names[C_MAX] = { "noop", "lpm", "sluice", "budget",
						    "xdp-noop", "xdp" };

/* The no-op program of the contender's own hook: the cost it is measured against. */
static int baseline_of(int c)
{
	return c >= C_XDP_NOOP ? C_XDP_NOOP : C_NOOP;
}

struct options {
	size_t prefix_counts[MAX_PREFIX_COUNTS];
	size_t nprefix_counts;
	unsigned reps;
	__u32 hot_repeat;
	size_t spread_dests;
	unsigned spread_passes;
	__u64 seed;
	const char *out;
	const char *sluice_obj; /* NULL: the tc_egress program built into libsluice */
	int cpu;                /* -1: do not pin */
	bool verbose;
};

/* ns/packet of every repetition, per prefix count, workload and contender. */
struct sample_set {
	double *ns; /* [reps] */
};

struct result {
	size_t prefixes;
	size_t trie_entries;
	size_t dests;
	struct sample_set s[WL_MAX][C_MAX];
};

/* --- deterministic randomness --------------------------------------------------------- */

/* splitmix64: tiny, fast, and the same sequence on every machine for a given seed. */
struct rng {
	__u64 state;
};

static __u64 rng_next(struct rng *r)
{
	__u64 z = (r->state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static unsigned rng_below(struct rng *r, unsigned n)
{
	return (unsigned)(rng_next(r) % n);
}

/* --- prefixes and destinations ------------------------------------------------------- */

/* Clear the bits of a beyond prefixlen (over the 128-bit mapped address). */
static void mask_addr(struct sluice_addr *a, unsigned prefixlen)
{
	for (unsigned i = 0; i < 16; i++) {
		unsigned lo = i * 8;

		if (prefixlen >= lo + 8)
			continue;
		a->a[i] &= prefixlen <= lo ? 0 : (__u8)(0xff << (8 - (prefixlen - lo)));
	}
}

/*
 * Unicast space only (first octet 1..223, not 127): a gateway's XDP program leaves
 * multicast, broadcast and loopback to the stack, and the contenders must all decide the
 * same destinations.
 */
static void random_v4(struct rng *r, struct sluice_addr *a)
{
	__u32 v = (__u32)rng_next(r);

	memset(a->a, 0, 10);
	a->a[10] = a->a[11] = 0xff;
	memcpy(&a->a[12], &v, 4);
	a->a[12] = (__u8)(a->a[12] % 222 + 1); /* 1..222 */
	if (a->a[12] >= 127)
		a->a[12]++; /* 1..126, 128..223 */
}

/* Global unicast space (2000::/3), so no rule lands in the IPv4-mapped block by accident. */
static void random_v6(struct rng *r, struct sluice_addr *a)
{
	__u64 hi = rng_next(r), lo = rng_next(r);

	memcpy(a->a, &hi, 8);
	memcpy(&a->a[8], &lo, 8);
	a->a[0] = (a->a[0] & 0x1f) | 0x20;
}

/*
 * Prefix lengths shaped like real allow/deny lists: IPv4 mostly /24 (the smallest block
 * routed on the Internet) with the rest spread over /16../32; IPv6 /32../64 (sites and
 * subnets) plus some single hosts (/128).
 */
static void random_prefix(struct rng *r, bool v4, struct prefix *p)
{
	if (v4) {
		unsigned len = rng_below(r, 2) ? 24 : 16 + rng_below(r, 17);

		random_v4(r, &p->addr);
		p->prefixlen = 96 + len;
	} else {
		random_v6(r, &p->addr);
		p->prefixlen = rng_below(r, 10) == 0 ? 128 : 32 + rng_below(r, 33);
	}
	mask_addr(&p->addr, p->prefixlen);
}

/* A random address inside p. */
static void random_inside(struct rng *r, const struct prefix *p, struct sluice_addr *out)
{
	struct sluice_addr host;

	if (addr_is_v4(&p->addr))
		random_v4(r, &host);
	else
		random_v6(r, &host);
	for (unsigned i = 0; i < 16; i++) {
		unsigned lo = i * 8;
		__u8 net_mask;

		if (p->prefixlen >= lo + 8)
			net_mask = 0xff;
		else if (p->prefixlen <= lo)
			net_mask = 0;
		else
			net_mask = (__u8)(0xff << (8 - (p->prefixlen - lo)));
		out->a[i] = (p->addr.a[i] & net_mask) | (host.a[i] & ~net_mask);
	}
}

static int build_policy(struct rng *r, size_t nprefixes, struct policy *p)
{
	policy_init(p);
	for (size_t i = 0; i < nprefixes; i++) {
		struct prefix pfx;
		char name[32];
		__u8 action;
		int err;

		/* Alternate families: exactly half IPv4, half IPv6. */
		random_prefix(r, i % 2 == 0, &pfx);
		action = rng_below(r, 100) < DENY_PERCENT ? SLUICE_VERDICT_DENY
							  : SLUICE_VERDICT_ALLOW;
		snprintf(name, sizeof(name), "bench%zu", i);
		err = policy_add_rule(p, action, &pfx, name, 0);
		if (err)
			return err;
	}
	return 0;
}

/* An open-addressing set of addresses, only to make the spread destinations distinct. */
struct addr_set {
	struct sluice_addr *slots;
	bool *used;
	size_t mask;
};

static int addr_set_init(struct addr_set *s, size_t n)
{
	size_t cap = 1;

	while (cap < 2 * n)
		cap <<= 1;
	s->slots = calloc(cap, sizeof(*s->slots));
	s->used = calloc(cap, sizeof(*s->used));
	s->mask = cap - 1;
	return s->slots && s->used ? 0 : -ENOMEM;
}

static void addr_set_free(struct addr_set *s)
{
	free(s->slots);
	free(s->used);
}

/* Insert a; false if it was there already. */
static bool addr_set_add(struct addr_set *s, const struct sluice_addr *a)
{
	__u64 h = 0xcbf29ce484222325ull;
	size_t i;

	for (unsigned k = 0; k < 16; k++)
		h = (h ^ a->a[k]) * 0x100000001b3ull;
	for (i = h & s->mask; s->used[i]; i = (i + 1) & s->mask)
		if (memcmp(&s->slots[i], a, sizeof(*a)) == 0)
			return false;
	s->used[i] = true;
	s->slots[i] = *a;
	return true;
}

/*
 * n distinct destinations: most inside a random rule's prefix (decided by a rule), some
 * anywhere (decided by the default). dests[0] is always inside a rule: it is the hot one.
 */
static int build_dests(struct rng *r, const struct policy *p, size_t n, struct sluice_addr *dests)
{
	struct addr_set seen;
	unsigned misses = 0;
	int err;

	err = addr_set_init(&seen, n);
	if (err) {
		addr_set_free(&seen);
		return err;
	}
	for (size_t i = 0; i < n;) {
		struct sluice_addr a;

		/*
		 * A small policy may not hold n distinct addresses (a handful of /32s); after a
		 * run of duplicates draw from the whole space instead, which always terminates.
		 */
		if (p->nrules && misses < 64 &&
		    (i == 0 || rng_below(r, 100) < SPREAD_INSIDE_PERCENT))
			random_inside(r, &p->rules[rng_below(r, p->nrules)].dst, &a);
		else if (rng_below(r, 2))
			random_v4(r, &a);
		else
			random_v6(r, &a);
		if (!addr_set_add(&seen, &a)) {
			misses++;
			continue;
		}
		misses = 0;
		dests[i++] = a;
	}
	addr_set_free(&seen);
	return 0;
}

/* --- frames ------------------------------------------------------------------------- */

static __u16 ip_checksum(const void *hdr, size_t len)
{
	const __u8 *b = hdr;
	__u32 sum = 0;

	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (__u32)(b[i] << 8 | b[i + 1]);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons((__u16)~sum);
}

/* Ethernet + IPv4/IPv6 + UDP to dst, as a host would send it. Returns the frame length. */
static __u32 build_frame(const struct sluice_addr *dst, __u8 *buf)
{
	static const __u8 dmac[ETH_ALEN] = { 0x02, 0, 0, 0, 0, 0x02 };
	static const __u8 smac[ETH_ALEN] = { 0x02, 0, 0, 0, 0, 0x01 };
	struct ethhdr *eth = (struct ethhdr *)buf;
	struct udphdr *udp;
	__u32 len;

	memset(buf, 0, FRAME_MAX);
	memcpy(eth->h_dest, dmac, ETH_ALEN);
	memcpy(eth->h_source, smac, ETH_ALEN);
	if (addr_is_v4(dst)) {
		struct iphdr *iph = (struct iphdr *)(eth + 1);

		eth->h_proto = htons(ETH_P_IP);
		iph->version = 4;
		iph->ihl = 5;
		iph->ttl = 64;
		iph->protocol = IPPROTO_UDP;
		iph->tot_len = htons(sizeof(*iph) + sizeof(*udp) + PAYLOAD_LEN);
		iph->saddr = htonl(0xc0000201); /* 192.0.2.1 */
		memcpy(&iph->daddr, &dst->a[12], 4);
		iph->check = ip_checksum(iph, sizeof(*iph));
		udp = (struct udphdr *)(iph + 1);
	} else {
		struct ipv6hdr *ip6h = (struct ipv6hdr *)(eth + 1);

		eth->h_proto = htons(ETH_P_IPV6);
		ip6h->version = 6;
		ip6h->hop_limit = 64;
		ip6h->nexthdr = IPPROTO_UDP;
		ip6h->payload_len = htons(sizeof(*udp) + PAYLOAD_LEN);
		inet_pton(AF_INET6, "2001:db8::1", &ip6h->saddr);
		memcpy(&ip6h->daddr, dst->a, 16);
		udp = (struct udphdr *)(ip6h + 1);
	}
	udp->source = htons(40000);
	udp->dest = htons(443);
	udp->len = htons(sizeof(*udp) + PAYLOAD_LEN);
	/* UDP checksum 0 ("none") is legal for IPv4; nothing here verifies it for IPv6. */
	len = (__u32)((__u8 *)(udp + 1) - buf) + PAYLOAD_LEN;
	return len;
}

/* --- sluice under test ---------------------------------------------------------- */

/*
 * sluice as the daemon loads it (datapath_load, no pins), or, with --sluice-obj, another
 * build of tc_egress.bpf.o: a changed datapath can be measured against the same baselines
 * before it is committed.
 */
struct sluice_dp {
	struct datapath dp; /* when loaded through datapath_load */
	struct bpf_object *obj; /* when loaded from --sluice-obj */
	bool loaded;
	int prog_fd, policy_fd, grace_fd, config_fd, dests_fd;
	int xdp_fd; /* -1 for a --sluice-obj without the XDP program */
	int rules_fd; /* -1 for an older --sluice-obj without per-rule counters */
};

static int map_fd_by_name(struct bpf_object *obj, const char *name)
{
	struct bpf_map *map = bpf_object__find_map_by_name(obj, name);

	if (!map) {
		fprintf(stderr, "pktcost: --sluice-obj: no map %s in the object\n", name);
		return -ENOENT;
	}
	return bpf_map__fd(map);
}

/* The maps to install a policy into; budgets only for a datapath loaded by datapath_load. */
static struct policy_maps sluice_dp_policy_maps(const struct sluice_dp *s)
{
	return (struct policy_maps){ .policy_fd = s->policy_fd, .grace_fd = s->grace_fd,
				     .config_fd = s->config_fd, .rules_fd = s->rules_fd,
				     .budgets = s->loaded ? &s->dp.budget : NULL };
}

static int sluice_dp_load(struct sluice_dp *s, const char *obj_path)
{
	struct bpf_program *prog;
	int err;

	memset(s, 0, sizeof(*s));
	if (!obj_path) {
		err = datapath_load(&s->dp, NULL);
		if (err)
			return err;
		s->loaded = true;
		/* As the daemon does at start: XDP tells the node's own addresses by this set. */
		err = local_addrs_sync(s->dp.local_addrs_fd, s->dp.local_gen_fd);
		if (err < 0) {
			fprintf(stderr, "pktcost: cannot sync the local addresses: %s\n",
				strerror(-err));
			datapath_close(&s->dp);
			return err;
		}
		s->prog_fd = s->dp.egress_prog_fd;
		s->xdp_fd = s->dp.xdp_prog_fd;
		s->policy_fd = s->dp.policy_fd;
		s->grace_fd = s->dp.grace_fd;
		s->config_fd = s->dp.config_fd;
		s->dests_fd = s->dp.dests_fd;
		s->rules_fd = s->dp.rules_fd;
		return 0;
	}
	s->obj = bpf_object__open_file(obj_path, NULL);
	if (!s->obj) {
		err = -errno;
		fprintf(stderr, "pktcost: cannot open %s: %s\n", obj_path, strerror(-err));
		return err;
	}
	err = bpf_object__load(s->obj);
	if (err) {
		fprintf(stderr, "pktcost: cannot load %s: %s (-v shows the verifier log)\n",
			obj_path, strerror(-err));
		goto fail;
	}
	prog = bpf_object__find_program_by_name(s->obj, "sluice_tc_egress");
	if (!prog) {
		fprintf(stderr, "pktcost: --sluice-obj: no program sluice_tc_egress in %s\n",
			obj_path);
		err = -ENOENT;
		goto fail;
	}
	s->prog_fd = bpf_program__fd(prog);
	prog = bpf_object__find_program_by_name(s->obj, "sluice_xdp");
	s->xdp_fd = prog ? bpf_program__fd(prog) : -1;
	s->policy_fd = map_fd_by_name(s->obj, "sluice_policy");
	s->grace_fd = map_fd_by_name(s->obj, "sluice_grace");
	s->config_fd = map_fd_by_name(s->obj, "sluice_config");
	s->rules_fd = bpf_object__find_map_by_name(s->obj, "sluice_rules")
			      ? map_fd_by_name(s->obj, "sluice_rules")
			      : -1;
	s->dests_fd = map_fd_by_name(s->obj, "sluice_dests");
	if (s->policy_fd < 0 || s->grace_fd < 0 || s->config_fd < 0 || s->dests_fd < 0) {
		err = -ENOENT;
		goto fail;
	}
	return 0;
fail:
	bpf_object__close(s->obj);
	s->obj = NULL;
	return err;
}

static void sluice_dp_close(struct sluice_dp *s)
{
	if (s->loaded)
		datapath_close(&s->dp);
	bpf_object__close(s->obj);
	memset(s, 0, sizeof(*s));
}

/* --- running ------------------------------------------------------------------------- */

static int test_run(int prog_fd, const void *frame, __u32 len, __u32 repeat, __u32 *duration,
		    __u32 *retval)
{
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame, .data_size_in = len,
		    .repeat = repeat);
	int err;

	err = bpf_prog_test_run_opts(prog_fd, &opts);
	if (err < 0) {
		err = -errno;
		fprintf(stderr, "pktcost: BPF_PROG_TEST_RUN failed: %s\n", strerror(-err));
		return err;
	}
	*duration = opts.duration;
	if (retval)
		*retval = opts.retval;
	return 0;
}

/* The kernel's average ns per run over repeat runs on the one hot frame. */
static int run_hot(int prog_fd, const __u8 *frame, __u32 len, __u32 repeat, double *ns)
{
	__u32 duration = 0;
	int err;

	err = test_run(prog_fd, frame, len, repeat, &duration, NULL);
	if (err)
		return err;
	*ns = duration;
	return 0;
}

/*
 * One test run per destination, `passes` times round. With repeat=1 the kernel's duration
 * is one program run plus one clock read, truncated to whole ns; averaging tens of
 * thousands of them gives sub-ns resolution, and the no-op baseline carries the same
 * clock read and truncation, so differences against it are the programs' own cost.
 * retvals (optional, one per destination) records what the program decided on pass 0.
 */
static int run_spread(int prog_fd, const struct sluice_addr *dests, size_t n, unsigned passes,
		      double *ns, __u32 *retvals)
{
	__u8 frame[FRAME_MAX];
	__u64 total = 0;

	for (unsigned pass = 0; pass < passes; pass++) {
		for (size_t i = 0; i < n; i++) {
			__u32 len = build_frame(&dests[i], frame), duration = 0, retval = 0;
			int err;

			err = test_run(prog_fd, frame, len, 1, &duration, &retval);
			if (err)
				return err;
			total += duration;
			if (retvals && pass == 0)
				retvals[i] = retval;
		}
	}
	*ns = (double)total / ((double)n * passes);
	return 0;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Fill the plain program's trie from sluice's compiled policy: same prefixes, same verdicts. */
static int fill_lpm(int map_fd, const struct compiled_policy *cp)
{
	/* Batches keep a million-entry fill to seconds; the trie is all this program knows. */
	const size_t chunk = 65536;
	struct sluice_lpm_key *keys;
	__u32 *values;
	bool batch = true;
	int err = 0;

	keys = calloc(chunk, sizeof(*keys));
	values = calloc(chunk, sizeof(*values));
	if (!keys || !values) {
		err = -ENOMEM;
		goto out;
	}
	for (size_t base = 0; base < cp->n; base += chunk) {
		__u32 count = (__u32)(cp->n - base < chunk ? cp->n - base : chunk);

		for (__u32 i = 0; i < count; i++) {
			keys[i] = cp->entries[base + i].key;
			values[i] = cp->entries[base + i].value.verdict == SLUICE_VERDICT_DENY;
		}
		if (batch) {
			__u32 done = count;

			if (bpf_map_update_batch(map_fd, keys, values, &done, NULL) == 0)
				continue;
			err = -errno;
			/* Kernels without batch ops on LPM tries refuse before touching it. */
			if (done != 0 ||
			    (err != -EINVAL && err != -EOPNOTSUPP && err != -ENOTSUPP_KERNEL)) {
				fprintf(stderr, "pktcost: cannot fill the LPM trie: %s\n",
					strerror(-err));
				goto out;
			}
			batch = false;
			err = 0;
		}
		for (__u32 i = 0; i < count; i++) {
			if (bpf_map_update_elem(map_fd, &keys[i], &values[i], BPF_ANY) < 0) {
				err = -errno;
				fprintf(stderr, "pktcost: cannot fill the LPM trie: %s\n",
					strerror(-err));
				goto out;
			}
		}
	}
out:
	free(keys);
	free(values);
	return err;
}

static size_t count_entries(int map_fd, size_t key_size)
{
	__u8 key[64], next[64];
	size_t n = 0;
	void *prev = NULL;

	if (key_size > sizeof(key))
		return 0;
	while (bpf_map_get_next_key(map_fd, prev, next) == 0) {
		memcpy(key, next, key_size);
		prev = key;
		n++;
	}
	return n;
}

/*
 * Whether a tc verdict drops the packet. sluice consumes denied packets (TC_ACT_STOLEN) while
 * the plain program shoots them (TC_ACT_SHOT); what matters here is drop versus pass.
 */
static bool drops(__u32 retval)
{
	return retval == TC_ACT_SHOT || retval == TC_ACT_STOLEN;
}

static bool passes(__u32 retval)
{
	return retval == (__u32)TC_ACT_UNSPEC || retval == TC_ACT_OK;
}

/* XDP's codes overlap tc's (XDP_PASS is TC_ACT_SHOT): read them apart. */
static bool xdp_drops(__u32 retval)
{
	return retval == XDP_DROP;
}

/*
 * Cross-check what the contenders decided on the warm-up pass: sluice against the plain
 * program (same trie data) and sluice's XDP program on every destination, and against the
 * reference decision (policy_decide, linear in the rules) on a sample. xdp_ret NULL: no XDP
 * program to check. A benchmark of a wrong program is
 * worthless, so disagreement is reported loudly and fails the run (after the numbers are
 * written); it is not a test. Returns the number of disagreements.
 */
static size_t check_decisions(const struct policy *p, const struct sluice_addr *dests, size_t n,
			      const __u32 *lpm_ret, const __u32 *sluice_ret, const __u32 *xdp_ret)
{
	size_t mismatch = 0, oracle_bad = 0, odd = 0, dropped = 0, xdp_mismatch = 0;
	size_t sample = n < 256 ? n : 256;
	char buf[ADDR_STRLEN];

	for (size_t i = 0; i < n; i++) {
		dropped += drops(sluice_ret[i]);
		if (!drops(sluice_ret[i]) && !passes(sluice_ret[i]) && odd++ < 5) {
			addr_format(&dests[i], buf, sizeof(buf));
			fprintf(stderr, "pktcost: UNEXPECTED tc verdict %d from sluice for %s\n",
				(int)sluice_ret[i], buf);
		}
		if (drops(lpm_ret[i]) != drops(sluice_ret[i]) && mismatch++ < 5) {
			addr_format(&dests[i], buf, sizeof(buf));
			fprintf(stderr, "pktcost: MISMATCH %s: lpm %d sluice %d\n", buf,
				(int)lpm_ret[i], (int)sluice_ret[i]);
		}
		if (xdp_ret && xdp_drops(xdp_ret[i]) != drops(sluice_ret[i]) && xdp_mismatch++ < 5) {
			addr_format(&dests[i], buf, sizeof(buf));
			fprintf(stderr, "pktcost: MISMATCH %s: xdp %d sluice tc %d\n", buf,
				(int)xdp_ret[i], (int)sluice_ret[i]);
		}
	}
	for (size_t k = 0; k < sample; k++) {
		size_t i = k * (n / sample);
		struct sluice_policy_entry want;

		policy_decide(p, &dests[i], IPPROTO_UDP, 443, &want); /* the frames are UDP to 443 */
		if (drops(sluice_ret[i]) != (want.verdict == SLUICE_VERDICT_DENY) &&
		    oracle_bad++ < 5) {
			addr_format(&dests[i], buf, sizeof(buf));
			fprintf(stderr, "pktcost: WRONG %s: sluice %d, reference %s\n", buf,
				(int)sluice_ret[i], verdict_name(want.verdict));
		}
	}
	fprintf(stderr,
		"pktcost:   decisions: %zu/%zu dropped; sluice vs lpm mismatches: %zu; "
		"xdp vs tc mismatches: %zu; sluice vs reference (%zu sampled): %zu wrong; "
		"unexpected tc verdicts: %zu\n",
		dropped, n, mismatch, xdp_mismatch, sample, oracle_bad, odd);
	return mismatch + oracle_bad + odd + xdp_mismatch;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void summarize(const double *ns, unsigned n, double *median, double *min, double *max)
{
	double sorted[n];

	memcpy(sorted, ns, n * sizeof(*ns));
	qsort(sorted, n, sizeof(*sorted), cmp_double);
	*min = sorted[0];
	*max = sorted[n - 1];
	*median = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

/* Everything for one policy size: build, load, warm, measure interleaved. */
/*
 * The budget contender: a datapath of its own with pol plus one budget on every destination
 * (any, alert, too large to cross). Always this build's datapath, so that with --sluice-obj
 * OLD the same run compares an older build without budgets against this one with them.
 */
static int load_budget_contender(const struct options *o, struct policy *pol,
				 struct sluice_dp *bdp, struct compiled_policy *bcp)
{
	static const struct prefix any[2] = {
		{ .addr = { .a = { [10] = 0xff, [11] = 0xff } }, .prefixlen = 96 },
		{ .prefixlen = 0 },
	};
	struct policy_budget *grown;
	__u32 gen;
	int err;

	(void)o;
	grown = realloc(pol->budgets, (pol->nbudgets + 1) * sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	pol->budgets = grown;
	grown[pol->nbudgets] = (struct policy_budget){ .name = "bench", .target = "any",
						       .kind = SLUICE_BUDGET_DEST,
						       .limit = 1000000000000000ull,
						       .window_s = 7 * 86400 };
	grown[pol->nbudgets].prefixes = malloc(sizeof(any));
	if (!grown[pol->nbudgets].prefixes)
		return -ENOMEM;
	memcpy(grown[pol->nbudgets].prefixes, any, sizeof(any));
	grown[pol->nbudgets++].nprefixes = 2;
	err = sluice_dp_load(bdp, NULL);
	if (!err)
		err = policy_next_generation(bdp->config_fd, &gen);
	if (!err)
		err = policy_compile(pol, gen, bcp);
	if (!err)
	if (!err) {
		struct policy_maps maps = sluice_dp_policy_maps(bdp);

		err = policy_install(&maps, bcp, gen, NULL);
	}
	if (err)
		fprintf(stderr, "pktcost: cannot set up the budget contender: %s\n",
			strerror(-err));
	else
		fprintf(stderr, "pktcost:   budget: the same policy plus one budget installed\n");
	return err;
}

static int bench_one(const struct options *o, int noop_fd, int noop_xdp_fd, size_t nprefixes,
		     struct result *res, size_t *wrong)
{
	struct rng rng = { .state = o->seed ^ (nprefixes * 0x9e3779b97f4a7c15ull) };
	struct compiled_policy cp = { 0 };
	struct sluice_addr *dests = NULL;
	__u32 *lpm_ret = NULL, *sluice_ret = NULL, *xdp_ret = NULL;
	struct sluice_dp dp = { .obj = NULL }, bdp = { .obj = NULL };
	struct compiled_policy bcp = { 0 };
	struct lpm *lpm = NULL;
	struct policy pol;
	__u8 hot_frame[FRAME_MAX];
	__u32 hot_len, gen;
	int fds[C_MAX], err;
	double t;

	policy_init(&pol);
	res->prefixes = nprefixes;
	res->dests = o->spread_dests;

	fprintf(stderr, "pktcost: %zu prefixes: generating policy and %zu destinations\n",
		nprefixes, o->spread_dests);
	err = build_policy(&rng, nprefixes, &pol);
	if (err)
		goto out;
	dests = calloc(o->spread_dests, sizeof(*dests));
	lpm_ret = calloc(o->spread_dests, sizeof(*lpm_ret));
	sluice_ret = calloc(o->spread_dests, sizeof(*sluice_ret));
	xdp_ret = calloc(o->spread_dests, sizeof(*xdp_ret));
	if (!dests || !lpm_ret || !sluice_ret || !xdp_ret) {
		err = -ENOMEM;
		goto out;
	}
	err = build_dests(&rng, &pol, o->spread_dests, dests);
	if (err)
		goto out;
	hot_len = build_frame(&dests[0], hot_frame);
	{
		char buf[ADDR_STRLEN];

		addr_format(&dests[0], buf, sizeof(buf));
		fprintf(stderr, "pktcost:   hot destination: %s\n", buf);
	}

	/* A fresh datapath per size: an empty destination table, as after a daemon start. */
	err = sluice_dp_load(&dp, o->sluice_obj);
	if (err)
		goto out;
	err = policy_next_generation(dp.config_fd, &gen);
	if (err)
		goto out;
	t = now_s();
	err = policy_compile(&pol, gen, &cp);
	if (err) {
		fprintf(stderr, "pktcost: cannot compile the policy: %s\n", strerror(-err));
		goto out;
	}
	res->trie_entries = cp.n;
	fprintf(stderr, "pktcost:   compiled %zu rules into %zu trie entries in %.2f s\n",
		pol.nrules, cp.n, now_s() - t);
	t = now_s();
	struct policy_maps maps = sluice_dp_policy_maps(&dp);

	maps.budgets = NULL; /* the contender below measures budgets */
	err = policy_install(&maps, &cp, gen, NULL);
	if (err)
		goto out;
	fprintf(stderr, "pktcost:   sluice: policy installed in %.2f s\n", now_s() - t);
	err = load_budget_contender(o, &pol, &bdp, &bcp);
	if (err)
		goto out;

	lpm = lpm__open_and_load();
	if (!lpm) {
		err = -errno;
		fprintf(stderr, "pktcost: cannot load the LPM program: %s\n", strerror(-err));
		goto out;
	}
	t = now_s();
	err = fill_lpm(bpf_map__fd(lpm->maps.bench_lpm), &cp);
	if (err)
		goto out;
	fprintf(stderr, "pktcost:   lpm: trie filled in %.2f s\n", now_s() - t);

	fds[C_NOOP] = noop_fd;
	fds[C_LPM] = bpf_program__fd(lpm->progs.bench_lpm_egress);
	fds[C_SLUICE] = dp.prog_fd;
	fds[C_XDP_NOOP] = dp.xdp_fd >= 0 ? noop_xdp_fd : -1;
	fds[C_XDP] = dp.xdp_fd;
	fds[C_BUDGET] = bdp.prog_fd;

	/*
	 * Warm-up: one spread pass each populates sluice's destination table (steady state on
	 * a node is a table that already knows its destinations) and faults in the tries;
	 * the decisions it records are checked before anything is timed.
	 */
	for (int c = 0; c < C_MAX; c++) {
		double ignored;
		__u32 *ret = c == C_LPM ? lpm_ret : c == C_SLUICE ? sluice_ret : c == C_XDP ? xdp_ret
											  : NULL;

		if (fds[c] < 0)
			continue;
		err = run_spread(fds[c], dests, o->spread_dests, 1, &ignored, ret);
		if (!err)
			err = run_hot(fds[c], hot_frame, hot_len, 10000, &ignored);
		if (err)
			goto out;
	}
	*wrong += check_decisions(&pol, dests, o->spread_dests, lpm_ret, sluice_ret,
				  fds[C_XDP] >= 0 ? xdp_ret : NULL);
	fprintf(stderr, "pktcost:   sluice destination table after warm-up: %zu entries\n",
		count_entries(dp.dests_fd, sizeof(struct sluice_addr)));

	/* Interleaved: every repetition runs every workload on every contender in turn. */
	for (unsigned rep = 0; rep < o->reps; rep++) {
		for (int w = 0; w < WL_MAX; w++) {
			for (int c = 0; c < C_MAX; c++) {
				double *ns = &res->s[w][c].ns[rep];

				if (fds[c] < 0) {
					*ns = NAN; /* a --sluice-obj without XDP */
					continue;
				}
				err = w == WL_HOT ? run_hot(fds[c], hot_frame, hot_len,
							    o->hot_repeat, ns)
						  : run_spread(fds[c], dests, o->spread_dests,
							       o->spread_passes, ns, NULL);
				if (err)
					goto out;
				if (o->verbose)
					fprintf(stderr, "pktcost:   rep %u %s %s: %.2f ns\n",
						rep + 1, workload_names[w], contender_names[c],
						*ns);
			}
		}
	}
	/* Evidence that the steady state held: LRU evictions would show as a smaller table. */
	fprintf(stderr, "pktcost:   sluice destination table after measuring: %zu entries\n",
		count_entries(dp.dests_fd, sizeof(struct sluice_addr)));
out:
	lpm__destroy(lpm);
	sluice_dp_close(&dp);
	sluice_dp_close(&bdp);
	compiled_policy_free(&cp);
	compiled_policy_free(&bcp);
	policy_free(&pol);
	free(dests);
	free(lpm_ret);
	free(sluice_ret);
	free(xdp_ret);
	return err;
}

/* --- output -------------------------------------------------------------------------- */

struct row {
	double median, min, max, minus_noop, ratio_noop, ratio_lpm;
};

static struct row make_row(const struct options *o, const struct result *r, int w, int c)
{
	double noop_med, lpm_med, lo, hi;
	struct row row;

	summarize(r->s[w][c].ns, o->reps, &row.median, &row.min, &row.max);
	summarize(r->s[w][baseline_of(c)].ns, o->reps, &noop_med, &lo, &hi);
	summarize(r->s[w][C_LPM].ns, o->reps, &lpm_med, &lo, &hi);
	row.minus_noop = row.median - noop_med;
	row.ratio_noop = noop_med > 0 ? row.median / noop_med : NAN;
	/* The plain LPM program is a tc program: XDP rows are compared with their own no-op. */
	row.ratio_lpm = lpm_med > 0 && baseline_of(c) == C_NOOP ? row.median / lpm_med : NAN;
	return row;
}

static void print_table(FILE *f, const struct options *o, const struct result *res, size_t n)
{
	for (int w = 0; w < WL_MAX; w++) {
		fprintf(f, "\n%s workload (%s)\n", workload_names[w],
			w == WL_HOT ? "one destination, repeat per run" :
				      "distinct destinations, one run each");
		fprintf(f, "%10s %8s %10s %10s %10s %10s %8s %8s\n", "prefixes", "program",
			"median ns", "min ns", "max ns", "-noop ns", "x noop", "x lpm");
		for (size_t i = 0; i < n; i++) {
			for (int c = 0; c < C_MAX; c++) {
				struct row r = make_row(o, &res[i], w, c);

				fprintf(f, "%10zu %8s %10.1f %10.1f %10.1f %10.1f %8.2f %8.2f\n",
					res[i].prefixes, contender_names[c], r.median, r.min,
					r.max, r.minus_noop, r.ratio_noop, r.ratio_lpm);
			}
		}
	}
}

static int write_tsv(const char *path, const struct options *o, const struct result *res,
		     size_t n)
{
	FILE *f = fopen(path, "w");
	int err = 0;

	if (!f) {
		err = -errno;
		fprintf(stderr, "pktcost: cannot write %s: %s\n", path, strerror(-err));
		return err;
	}
	fprintf(f, "workload\tprefixes\ttrie_entries\tdests\trepeat\tpasses\treps\tprogram\t"
		   "median_ns\tmin_ns\tmax_ns\tminus_noop_ns\tratio_noop\tratio_lpm\n");
	for (int w = 0; w < WL_MAX; w++) {
		for (size_t i = 0; i < n; i++) {
			for (int c = 0; c < C_MAX; c++) {
				struct row r = make_row(o, &res[i], w, c);

				fprintf(f,
					"%s\t%zu\t%zu\t%zu\t%u\t%u\t%u\t%s\t"
					"%.2f\t%.2f\t%.2f\t%.2f\t%.3f\t%.3f\n",
					workload_names[w], res[i].prefixes, res[i].trie_entries,
					w == WL_HOT ? (size_t)1 : res[i].dests,
					w == WL_HOT ? o->hot_repeat : 1,
					w == WL_HOT ? 1 : o->spread_passes, o->reps,
					contender_names[c], r.median, r.min, r.max, r.minus_noop,
					r.ratio_noop, r.ratio_lpm);
			}
		}
	}
	if (fclose(f) != 0) {
		err = -errno;
		fprintf(stderr, "pktcost: cannot write %s: %s\n", path, strerror(-err));
	}
	return err;
}

/* --- the namespace ------------------------------------------------------------------- */

/*
 * XDP polices what the node forwards (bpf_fib_lookup on the arriving interface): make this
 * process's own network namespace a router, with default routes out of a veth pair (the
 * kernel may lack the dummy driver). Nothing outside the namespace is touched, and it goes
 * away with the process. BPF_PROG_TEST_RUN of XDP arrives on the namespace's loopback.
 */
static int gateway_namespace(void)
{
	static const char *const steps[] = {
		"ip link set lo up",
		"ip link add sl-bench0 type veth peer name sl-bench0p",
		"ip link set sl-bench0p up",
		"ip link set sl-bench0 up",
		"ip addr add 192.0.2.254/24 dev sl-bench0",
		"ip addr add 2001:db8:1::fe/64 dev sl-bench0 nodad",
		"ip route add default dev sl-bench0",
		"ip -6 route add default dev sl-bench0",
		"sysctl -qw net.ipv4.conf.all.forwarding=1 net.ipv6.conf.all.forwarding=1",
	};

	if (unshare(CLONE_NEWNET) < 0) {
		fprintf(stderr, "pktcost: cannot create a network namespace: %s (root needed)\n",
			strerror(errno));
		return -1;
	}
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		if (system(steps[i]) != 0) {
			fprintf(stderr, "pktcost: failed: %s\n", steps[i]);
			return -1;
		}
	}
	return 0;
}

/* --- command line -------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: sluice-bench-pktcost [OPTIONS]\n"
		"\n"
		"Per-packet cost of sluice's tc egress program against a no-op tc program and a\n"
		"plain one-lookup LPM program, and of sluice's XDP program against a no-op XDP\n"
		"program, via BPF_PROG_TEST_RUN (no interface of the host is touched: the run\n"
		"is in a network namespace of its own, made a router for XDP's route lookup).\n"
		"\n"
		"Options:\n"
		"  --prefixes LIST     policy sizes, comma-separated (default %s)\n"
		"  --reps N            interleaved repetitions per measurement (default %d)\n"
		"  --hot-repeat N      runs per hot measurement (default %d)\n"
		"  --spread-dests N    distinct destinations in the spread workload (default %d)\n"
		"  --spread-passes N   passes over them per spread measurement (default %d)\n"
		"  --seed N            seed for prefixes and destinations (default %llu)\n"
		"  --cpu N             pin to CPU N (default: the last online one; -1: do not pin)\n"
		"  --out FILE          also write the results as TSV to FILE\n"
		"  --sluice-obj FILE   measure this build of tc_egress.bpf.o instead of the one\n"
		"                      built into libsluice (to try a datapath change)\n"
		"  -v, --verbose       print every measurement and libbpf's messages\n"
		"  -h, --help          this text\n"
		"\n"
		"Examples:\n"
		"  sluice-bench-pktcost --prefixes 10,100000 --out /tmp/pktcost.tsv\n"
		"  sluice-bench-pktcost --prefixes 250000 --reps 9 --spread-passes 5\n",
		DEFAULT_PREFIXES, DEFAULT_REPS, DEFAULT_HOT_REPEAT, DEFAULT_SPREAD_DESTS,
		DEFAULT_SPREAD_PASSES, (unsigned long long)DEFAULT_SEED);
}

/* Parse an unsigned number in [min, max]; false (with a message) if it is not one. */
static bool parse_num(const char *opt, const char *s, unsigned long long min,
		      unsigned long long max, unsigned long long *out)
{
	char *end;

	errno = 0;
	if (*s < '0' || *s > '9')
		goto bad;
	*out = strtoull(s, &end, 0);
	if (errno || *end || *out < min || *out > max)
		goto bad;
	return true;
bad:
	fprintf(stderr, "pktcost: %s: expected a number from %llu to %llu, got '%s'\n", opt, min,
		max, s);
	return false;
}

static bool parse_prefix_list(const char *s, struct options *o)
{
	char *copy = strdup(s), *save = NULL, *tok;
	bool ok = copy != NULL;

	o->nprefix_counts = 0;
	for (tok = ok ? strtok_r(copy, ",", &save) : NULL; tok && ok;
	     tok = strtok_r(NULL, ",", &save)) {
		unsigned long long v;

		if (o->nprefix_counts == MAX_PREFIX_COUNTS) {
			fprintf(stderr, "pktcost: --prefixes: at most %d sizes\n",
				MAX_PREFIX_COUNTS);
			ok = false;
		} else if (!parse_num("--prefixes", tok, 1, MAX_PREFIXES, &v)) {
			ok = false;
		} else {
			o->prefix_counts[o->nprefix_counts++] = v;
		}
	}
	if (ok && o->nprefix_counts == 0) {
		fprintf(stderr, "pktcost: --prefixes: empty list\n");
		ok = false;
	}
	free(copy);
	return ok;
}

static int parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "prefixes", required_argument, NULL, 'p' },
		{ "reps", required_argument, NULL, 'r' },
		{ "hot-repeat", required_argument, NULL, 'R' },
		{ "spread-dests", required_argument, NULL, 'd' },
		{ "spread-passes", required_argument, NULL, 'P' },
		{ "seed", required_argument, NULL, 's' },
		{ "cpu", required_argument, NULL, 'c' },
		{ "out", required_argument, NULL, 'o' },
		{ "sluice-obj", required_argument, NULL, 'O' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	unsigned long long v;
	int opt;

	*o = (struct options){
		.reps = DEFAULT_REPS,
		.hot_repeat = DEFAULT_HOT_REPEAT,
		.spread_dests = DEFAULT_SPREAD_DESTS,
		.spread_passes = DEFAULT_SPREAD_PASSES,
		.seed = DEFAULT_SEED,
		.cpu = (int)sysconf(_SC_NPROCESSORS_ONLN) - 1,
	};
	parse_prefix_list(DEFAULT_PREFIXES, o);

	while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'p':
			if (!parse_prefix_list(optarg, o))
				return 2;
			break;
		case 'r':
			if (!parse_num("--reps", optarg, 1, 1000, &v))
				return 2;
			o->reps = (unsigned)v;
			break;
		case 'R':
			if (!parse_num("--hot-repeat", optarg, 1, UINT32_MAX, &v))
				return 2;
			o->hot_repeat = (__u32)v;
			break;
		case 'd':
			/* The LRU holds SLUICE_DEST_MAX; more would measure eviction instead. */
			if (!parse_num("--spread-dests", optarg, 1, SLUICE_DEST_MAX, &v))
				return 2;
			o->spread_dests = v;
			break;
		case 'P':
			if (!parse_num("--spread-passes", optarg, 1, 1000, &v))
				return 2;
			o->spread_passes = (unsigned)v;
			break;
		case 's':
			if (!parse_num("--seed", optarg, 0, ULLONG_MAX, &v))
				return 2;
			o->seed = v;
			break;
		case 'c':
			if (strcmp(optarg, "-1") == 0) {
				o->cpu = -1;
				break;
			}
			if (!parse_num("--cpu", optarg, 0, CPU_SETSIZE - 1, &v))
				return 2;
			o->cpu = (int)v;
			break;
		case 'o':
			o->out = optarg;
			break;
		case 'O':
			o->sluice_obj = optarg;
			break;
		case 'v':
			o->verbose = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "pktcost: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct result *res = NULL;
	struct noop *noop = NULL;
	struct options o;
	double *pool = NULL;
	size_t done = 0, wrong = 0;
	int err;

	err = parse_args(argc, argv, &o);
	if (err)
		return err;
	log_init(o.verbose ? LOG_DEBUG : LOG_WARN);

	/*
	 * One CPU for every run: the destination table is an LRU with per-CPU free lists and the
	 * caches are per core, so hopping CPUs between runs would blur what is measured.
	 */
	if (o.cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(o.cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set) < 0) {
			fprintf(stderr, "pktcost: cannot pin to CPU %d: %s\n", o.cpu,
				strerror(errno));
			return 1;
		}
	}

	if (gateway_namespace())
		return 1;

	res = calloc(o.nprefix_counts, sizeof(*res));
	pool = calloc(o.nprefix_counts * WL_MAX * C_MAX * o.reps, sizeof(*pool));
	if (!res || !pool) {
		fprintf(stderr, "pktcost: out of memory\n");
		err = 1;
		goto out;
	}
	for (size_t i = 0; i < o.nprefix_counts; i++)
		for (int w = 0; w < WL_MAX; w++)
			for (int c = 0; c < C_MAX; c++)
				res[i].s[w][c].ns = pool + ((i * WL_MAX + w) * C_MAX + c) * o.reps;

	noop = noop__open_and_load();
	if (!noop) {
		fprintf(stderr, "pktcost: cannot load the no-op program: %s (root needed)\n",
			strerror(errno));
		err = 1;
		goto out;
	}

	fprintf(stderr,
		"pktcost: reps %u, hot repeat %u, spread %zu destinations x %u passes, "
		"seed %llu, cpu %d\n",
		o.reps, o.hot_repeat, o.spread_dests, o.spread_passes,
		(unsigned long long)o.seed, o.cpu);
	for (; done < o.nprefix_counts; done++) {
		err = bench_one(&o, bpf_program__fd(noop->progs.bench_noop),
				bpf_program__fd(noop->progs.bench_noop_xdp), o.prefix_counts[done],
				&res[done], &wrong);
		if (err) {
			err = 1;
			goto out;
		}
	}

	print_table(stdout, &o, res, done);
	if (o.out && write_tsv(o.out, &o, res, done) < 0)
		err = 1;
	if (wrong) {
		fprintf(stderr, "pktcost: %zu wrong or disagreeing decisions (see above): "
				"these numbers measure a datapath that is not deciding correctly\n",
			wrong);
		err = 1;
	}
out:
	noop__destroy(noop);
	free(pool);
	free(res);
	return err;
}

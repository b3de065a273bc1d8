// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Syncing sluice_local_addrs with the interfaces' addresses (local_addrs.h). */
#include <errno.h>
#include <ifaddrs.h>
#include <stdlib.h>
#include <string.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <bpf/bpf.h>
#include <sluice/abi.h>

#include "local_addrs.h"
#include "log.h"

struct addr_set {
	struct sluice_addr a[SLUICE_LOCAL_ADDRS_MAX];
	size_t n;
	bool full;
	struct sluice_addr gone[SLUICE_LOCAL_ADDRS_MAX]; /* in the map, no longer local */
	size_t ngone;
};

static int cmp_addr(const void *x, const void *y)
{
	return memcmp(x, y, sizeof(struct sluice_addr));
}

/* Add sa (IPv4 as ::ffff:a.b.c.d, as the datapath keys it); others are ignored. */
static void add(struct addr_set *set, const struct sockaddr *sa)
{
	struct sluice_addr k = {};

	if (!sa)
		return;
	if (sa->sa_family == AF_INET) {
		k.a[10] = k.a[11] = 0xff;
		memcpy(&k.a[12], &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		memcpy(k.a, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	} else {
		return;
	}
	if (set->n == SLUICE_LOCAL_ADDRS_MAX) {
		set->full = true;
		return;
	}
	set->a[set->n++] = k;
}

/*
 * An IPv4 subnet's broadcast addresses reach the node too: the one configured (brd), and
 * the one the kernel routes as broadcast whatever was configured (prefix | ~mask, for
 * prefixes shorter than /31).
 */
static void add_broadcasts(struct addr_set *set, const struct ifaddrs *i)
{
	const struct sockaddr_in *addr = (const struct sockaddr_in *)i->ifa_addr;
	const struct sockaddr_in *mask = (const struct sockaddr_in *)i->ifa_netmask;

	if ((i->ifa_flags & IFF_BROADCAST) && i->ifa_broadaddr)
		add(set, i->ifa_broadaddr);
	if (mask && mask->sin_family == AF_INET && ntohl(mask->sin_addr.s_addr) < 0xfffffffe) {
		struct sockaddr_in brd = *addr;

		brd.sin_addr.s_addr = addr->sin_addr.s_addr | ~mask->sin_addr.s_addr;
		add(set, (const struct sockaddr *)&brd);
	}
}

static bool in_set(const struct addr_set *set, const struct sluice_addr *k)
{
	return bsearch(k, set->a, set->n, sizeof(*k), cmp_addr) != NULL;
}

/*
 * Move the set's generation on after a change (never to 0, which means "never synced"):
 * XDP's cached answers (cache_local in the destination entries) carry the old one and are
 * taken again. Unchanged, a generation is set only if there was none.
 */
static int bump_generation(int gen_fd, bool changed)
{
	__u32 zero = 0, gen = 0;

	if (bpf_map_lookup_elem(gen_fd, &zero, &gen) < 0)
		return -errno;
	if (!changed && gen)
		return 0;
	gen = gen + 1 ? gen + 1 : 1;
	return bpf_map_update_elem(gen_fd, &zero, &gen, BPF_ANY) < 0 ? -errno : 0;
}

int local_addrs_sync(int map_fd, int gen_fd)
{
	struct addr_set *set = calloc(1, sizeof(*set));
	struct sluice_addr key, next;
	struct ifaddrs *ifs;
	bool first = true, changed = false;
	__u8 one = 1;
	int err = 0;

	if (!set)
		return -ENOMEM;
	if (getifaddrs(&ifs) < 0) {
		err = -errno;
		free(set);
		return err;
	}
	for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
		add(set, i->ifa_addr);
		if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET)
			add_broadcasts(set, i);
	}
	freeifaddrs(ifs);
	qsort(set->a, set->n, sizeof(set->a[0]), cmp_addr);

	/* What the map holds that is no longer local; deleted after the walk, not during it. */
	for (unsigned steps = 0; steps < SLUICE_LOCAL_ADDRS_MAX; steps++) {
		if (bpf_map_get_next_key(map_fd, first ? NULL : &key, &next) < 0)
			break;
		first = false;
		if (!in_set(set, &next))
			set->gone[set->ngone++] = next;
		key = next;
	}
	for (size_t i = 0; i < set->ngone; i++)
		changed |= bpf_map_delete_elem(map_fd, &set->gone[i]) == 0;
	for (size_t i = 0; i < set->n && !err; i++) {
		if (bpf_map_update_elem(map_fd, &set->a[i], &one, BPF_NOEXIST) == 0)
			changed = true;
		else if (errno != EEXIST)
			err = -errno;
	}
	/* After the set's changes, never before: an answer cached meanwhile is retired too. */
	if (!err)
		err = bump_generation(gen_fd, changed);
	if (!err && set->full) {
		pr_warn("more than %d local addresses: XDP polices packets to the others as if "
			"they were forwarded", SLUICE_LOCAL_ADDRS_MAX);
		err = -ENOSPC;
	}
	if (!err)
		err = (int)set->n;
	free(set);
	return err;
}

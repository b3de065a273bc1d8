// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Interface slot bookkeeping in the sluice_ifaces array. */
#include <errno.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "ifslots.h"
#include "log.h"

int ifslot_table(int ifaces_fd, __u32 slot_ifindex[SLUICE_IFSLOTS])
{
	const __u32 chunk = 8192;
	struct sluice_iface *vals = calloc(chunk, sizeof(*vals));
	__u32 *keys = calloc(chunk, sizeof(*keys));
	__u32 batch = 0;
	bool first = true;
	int err = 0;

	memset(slot_ifindex, 0, SLUICE_IFSLOTS * sizeof(*slot_ifindex));
	if (!vals || !keys) {
		err = -ENOMEM;
		goto out;
	}
	/* One syscall per 8192 interfaces instead of one per interface. */
	for (;;) {
		__u32 n = chunk;
		int ret = bpf_map_lookup_batch(ifaces_fd, first ? NULL : &batch, &batch, keys, vals,
					       &n, NULL);

		if (ret < 0 && errno != ENOENT) {
			err = -errno;
			break;
		}
		first = false;
		for (__u32 i = 0; i < n; i++)
			if (vals[i].slot && vals[i].slot < SLUICE_IFSLOTS)
				slot_ifindex[vals[i].slot] = keys[i];
		if (ret < 0)
			break;
	}
out:
	free(vals);
	free(keys);
	return err;
}

int ifslot_table_local(int ifaces_fd, __u32 slot_ifindex[SLUICE_IFSLOTS])
{
	struct if_nameindex *ifs = if_nameindex();

	memset(slot_ifindex, 0, SLUICE_IFSLOTS * sizeof(*slot_ifindex));
	if (!ifs)
		return -errno;
	for (struct if_nameindex *i = ifs; i->if_index; i++) {
		struct sluice_iface iface;
		__u32 ifindex = i->if_index;

		if (ifindex < SLUICE_IFINDEX_MAX &&
		    bpf_map_lookup_elem(ifaces_fd, &ifindex, &iface) == 0 && iface.slot &&
		    iface.slot < SLUICE_IFSLOTS)
			slot_ifindex[iface.slot] = ifindex;
	}
	if_freenameindex(ifs);
	return 0;
}

static int zero_slot_totals(int totals_fd, __u32 slot)
{
	int ncpus = libbpf_num_possible_cpus();
	struct sluice_counter *zeros;
	int err = 0;

	if (ncpus < 0)
		return ncpus;
	zeros = calloc(ncpus, sizeof(*zeros));
	if (!zeros)
		return -ENOMEM;
	for (__u32 h = 0; h < SLUICE_HOOK_MAX && !err; h++)
		for (__u32 v = 0; v < SLUICE_VERDICT_MAX && !err; v++)
			for (__u32 r = 0; r < SLUICE_REASON_MAX && !err; r++) {
				__u32 index = SLUICE_TOTALS_INDEX(slot, h, v, r);

				if (bpf_map_update_elem(totals_fd, &index, zeros, BPF_ANY) < 0)
					err = -errno;
			}
	free(zeros);
	return err;
}

int ifslot_assign(int ifaces_fd, int totals_fd, __u32 ifindex)
{
	__u32 table[SLUICE_IFSLOTS];
	struct sluice_iface iface;
	int err;

	if (ifindex >= SLUICE_IFINDEX_MAX) {
		pr_warn("interface index %u is beyond sluice's per-interface counters (%u); its "
			"totals are counted under 'other'",
			ifindex, SLUICE_IFINDEX_MAX);
		return SLUICE_IFSLOT_OTHER;
	}
	if (bpf_map_lookup_elem(ifaces_fd, &ifindex, &iface) < 0)
		return -errno;
	if (iface.slot)
		return iface.slot;
	err = ifslot_table(ifaces_fd, table);
	if (err)
		return err;
	for (__u32 slot = 1; slot < SLUICE_IFSLOTS; slot++) {
		if (table[slot])
			continue;
		/* A reused slot must not hand a previous interface's totals to this one. */
		err = zero_slot_totals(totals_fd, slot);
		if (err)
			return err;
		iface.slot = slot;
		if (bpf_map_update_elem(ifaces_fd, &ifindex, &iface, BPF_ANY) < 0)
			return -errno;
		return slot;
	}
	pr_warn("more than %u interfaces: totals of interface %u are counted under 'other'",
		SLUICE_IFSLOTS - 1, ifindex);
	return SLUICE_IFSLOT_OTHER;
}

int ifslot_release(int ifaces_fd, __u32 ifindex)
{
	struct sluice_iface none = { .slot = 0 };

	if (ifindex >= SLUICE_IFINDEX_MAX)
		return 0;
	return bpf_map_update_elem(ifaces_fd, &ifindex, &none, BPF_ANY) < 0 ? -errno : 0;
}

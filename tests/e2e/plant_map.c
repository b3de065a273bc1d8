// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * plant_map PATH ENTRIES: pin at PATH a budget-set map as the previous sluice version laid it
 * out: the same type, key, value size and capacity as this build's sluice_budget_sets, but
 * its value struct ends in pad[3] where this build has a `block` flag. Only the maps' BTF can
 * tell the two apart: the upgrade test checks that sluice refuses to adopt it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>

int main(int argc, char **argv)
{
	struct btf *btf;
	int u8, u32, budget, pad, set, fd;

	if (argc != 3) {
		fprintf(stderr, "usage: plant_map PATH ENTRIES\n");
		return 2;
	}
	btf = btf__new_empty();
	if (!btf)
		return 1;
	u8 = btf__add_int(btf, "__u8", 1, 0);
	u32 = btf__add_int(btf, "__u32", 4, 0);
	budget = btf__add_array(btf, u32, u8, 4);
	pad = btf__add_array(btf, u32, u8, 3);
	set = btf__add_struct(btf, "sluice_budget_set", 8);
	if (u8 < 0 || u32 < 0 || budget < 0 || pad < 0 || set < 0 ||
	    btf__add_field(btf, "n", u8, 0, 0) || btf__add_field(btf, "budget", budget, 8, 0) ||
	    btf__add_field(btf, "pad", pad, 40, 0) || btf__load_into_kernel(btf)) {
		fprintf(stderr, "plant_map: cannot build the BTF: %s\n", strerror(errno));
		return 1;
	}
	LIBBPF_OPTS(bpf_map_create_opts, opts, .btf_fd = btf__fd(btf), .btf_key_type_id = u32,
		    .btf_value_type_id = set);
	fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "sluice_budget_s", 4, 8, atoi(argv[2]), &opts);
	if (fd < 0 || bpf_obj_pin(fd, argv[1])) {
		fprintf(stderr, "plant_map: cannot create and pin %s: %s\n", argv[1],
			strerror(errno));
		return 1;
	}
	return 0;
}

/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Comparing the memory layout of two BTF types: how the daemon tells a pinned map written by
 * another sluice version from one it can adopt, when their sizes agree but a field changed
 * meaning (a renamed, moved or retyped member).
 */
#ifndef SLUICE_BTF_LAYOUT_H
#define SLUICE_BTF_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <linux/types.h>

struct btf;

/*
 * Do type a_id of a and type b_id of b lay memory out the same way: same kinds and sizes,
 * the same member names at the same offsets, the same array lengths and integer encodings,
 * through typedefs and qualifiers? If not, the first difference is described in why
 * (e.g. "struct sluice_budget_set: member 'pad' at byte 5 is 'block' here").
 */
bool btf_same_layout(const struct btf *a, __u32 a_id, const struct btf *b, __u32 b_id, char *why,
		     size_t len);

#endif

// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Comparing the memory layout of two BTF types (btf_layout.h). */
#include <stdio.h>
#include <string.h>
#include <bpf/btf.h>

#include "btf_layout.h"

/* Nesting followed at most: map keys and values are a few levels deep. */
#define LAYOUT_DEPTH_MAX 16

/* The type under typedefs and qualifiers (they change no byte). */
static const struct btf_type *bare(const struct btf *btf, __u32 *id)
{
	const struct btf_type *t = btf__type_by_id(btf, *id);

	for (int i = 0; t && i < LAYOUT_DEPTH_MAX; i++) {
		if (!btf_is_typedef(t) && !btf_is_mod(t))
			return t;
		*id = t->type;
		t = btf__type_by_id(btf, *id);
	}
	return NULL;
}

static const char *type_name(const struct btf *btf, const struct btf_type *t)
{
	const char *name = btf__name_by_offset(btf, t->name_off);

	return name && *name ? name : "(anonymous)";
}

static bool same(const struct btf *a, __u32 a_id, const struct btf *b, __u32 b_id, int depth,
		 char *why, size_t len)
{
	const struct btf_type *ta = bare(a, &a_id), *tb = bare(b, &b_id);

	if (!ta || !tb || depth > LAYOUT_DEPTH_MAX) {
		snprintf(why, len, "a type too deep or missing");
		return false;
	}
	if (btf_kind(ta) != btf_kind(tb)) {
		snprintf(why, len, "%s is another kind of type here", type_name(a, ta));
		return false;
	}
	switch (btf_kind(ta)) {
	case BTF_KIND_INT:
		if (ta->size != tb->size || btf_int_encoding(ta) != btf_int_encoding(tb) ||
		    btf_int_bits(ta) != btf_int_bits(tb) || btf_int_offset(ta) != btf_int_offset(tb)) {
			snprintf(why, len, "integer %s differs", type_name(a, ta));
			return false;
		}
		return true;
	case BTF_KIND_ENUM:
	case BTF_KIND_ENUM64:
	case BTF_KIND_PTR:
	case BTF_KIND_FWD:
		if (!btf_is_ptr(ta) && !btf_is_fwd(ta) && ta->size != tb->size) {
			snprintf(why, len, "enum %s has another size", type_name(a, ta));
			return false;
		}
		return true;
	case BTF_KIND_ARRAY: {
		const struct btf_array *aa = btf_array(ta), *ab = btf_array(tb);

		if (aa->nelems != ab->nelems) {
			snprintf(why, len, "an array of %u elements has %u here", aa->nelems,
				 ab->nelems);
			return false;
		}
		return same(a, aa->type, b, ab->type, depth + 1, why, len);
	}
	case BTF_KIND_STRUCT:
	case BTF_KIND_UNION: {
		const struct btf_member *ma = btf_members(ta), *mb = btf_members(tb);
		__u16 n = btf_vlen(ta);

		if (ta->size != tb->size) {
			snprintf(why, len, "%s is %u bytes, %u here", type_name(a, ta), ta->size,
				 tb->size);
			return false;
		}
		for (__u16 i = 0; i < n || i < btf_vlen(tb); i++) {
			const char *na, *nb;

			if (i >= n || i >= btf_vlen(tb)) {
				snprintf(why, len, "%s has %u members, %u here", type_name(a, ta), n,
					 btf_vlen(tb));
				return false;
			}
			na = btf__name_by_offset(a, ma[i].name_off);
			nb = btf__name_by_offset(b, mb[i].name_off);
			if (strcmp(na ? na : "", nb ? nb : "") != 0 ||
			    btf_member_bit_offset(ta, i) != btf_member_bit_offset(tb, i) ||
			    btf_member_bitfield_size(ta, i) != btf_member_bitfield_size(tb, i)) {
				snprintf(why, len, "%s: member '%s' at byte %u is '%s' at byte %u here",
					 type_name(a, ta), na, btf_member_bit_offset(ta, i) / 8, nb,
					 btf_member_bit_offset(tb, i) / 8);
				return false;
			}
			if (!same(a, ma[i].type, b, mb[i].type, depth + 1, why, len))
				return false;
		}
		return true;
	}
	default:
		return true; /* kinds a map key or value does not hold (functions, sections) */
	}
}

bool btf_same_layout(const struct btf *a, __u32 a_id, const struct btf *b, __u32 b_id, char *why,
		     size_t len)
{
	return same(a, a_id, b, b_id, 0, why, len);
}

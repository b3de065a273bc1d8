/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Addresses and prefixes in sluice's one form: IPv6, with IPv4 mapped (::ffff:a.b.c.d). */
#ifndef SLUICE_ADDR_H
#define SLUICE_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sluice/abi.h>

/* Long enough for any prefix addr_format_prefix writes. */
#define ADDR_STRLEN 64

struct prefix {
	struct sluice_addr addr; /* host bits beyond prefixlen are zero */
	unsigned prefixlen;      /* over the mapped address: IPv4 /N is 96+N */
};

bool addr_is_v4(const struct sluice_addr *a);
/*
 * Parse "ADDR" or "ADDR/LEN" (IPv4 or IPv6). Host bits set beyond LEN are an error, as are
 * IPv6 spellings of IPv4-mapped space (write the IPv4 form). Returns 0, or -EINVAL with a
 * message in err and the offending column (0-based) in *errcol.
 */
int prefix_parse(const char *s, struct prefix *out, char *err, size_t errlen, size_t *errcol);
/*
 * Is s, which prefix_parse read into p, already exactly what prefix_format writes for p?
 * Cheaper than formatting p to find out.
 */
bool prefix_text_canonical(const char *s, const struct prefix *p);
/* True if addr lies inside p. */
bool prefix_contains(const struct prefix *p, const struct sluice_addr *addr);
/* "192.0.2.1", "2001:db8::1" (IPv4 shown in IPv4 form). */
void addr_format(const struct sluice_addr *a, char *buf, size_t len);
/* "192.0.2.0/24", "2001:db8::/32". */
void prefix_format(const struct prefix *p, char *buf, size_t len);
/* Parse a plain address (no prefix length) into the mapped form. */
int addr_parse(const char *s, struct sluice_addr *out);

#endif

// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Address and prefix parsing and formatting in the mapped-IPv6 form the datapath uses. */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"

static const __u8 v4_mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

bool addr_is_v4(const struct sluice_addr *a)
{
	return memcmp(a->a, v4_mapped_prefix, sizeof(v4_mapped_prefix)) == 0;
}

static void set_error(char *err, size_t errlen, size_t *errcol, size_t col, const char *msg)
{
	if (err)
		snprintf(err, errlen, "%s", msg);
	if (errcol)
		*errcol = col;
}

/* Each byte's value as a hexadecimal digit (either case) + 1, or 0: no branch per digit. */
static const __u8 hex_values1[256] = {
	['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7, ['7'] = 8,
	['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15,
	['f'] = 16, ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
};

/* A decimal digit's value, or -1. */
static int dec_digit(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : -1;
}

/* A hexadecimal digit's value (either case), or -1. */
static int hex_digit(char c)
{
	return hex_values1[(unsigned char)c] - 1;
}

/*
 * [s, end) as a dotted quad, exactly the inputs glibc's inet_pton(AF_INET) takes: four
 * decimal octets of at most 255 without leading zeros. By hand, as is parse_v6: inet_pton
 * needs a NUL-terminated copy and tries IPv4 before IPv6, a fifth of the time to parse a
 * 100 000-rule policy. The unit tests hold both to inet_pton.
 */
static bool parse_v4(const char *s, const char *end, __u8 out[4])
{
	for (int i = 0; i < 4; i++) {
		const char *start;
		unsigned v = 0;

		if (i && (s == end || *s++ != '.'))
			return false;
		start = s;
		/* Three digits at most: a fourth is refused below or at the next '.'. */
		while (s < end && s - start < 3 && dec_digit(*s) >= 0)
			v = v * 10 + dec_digit(*s++);
		if (s == start || v > 255 || (*start == '0' && s - start > 1))
			return false;
		out[i] = v;
	}
	return s == end;
}

#define V6_GROUP_DIGITS 4 /* hex digits in one group of an IPv6 address */

/*
 * [s, end) as an IPv6 address, exactly the inputs glibc's inet_pton(AF_INET6) takes:
 * groups of one to four hex digits separated by ':', at most one "::" standing for at
 * least one zero group, optionally ending in a dotted quad that fills the last two groups.
 */
static bool parse_v6(const char *s, const char *end, __u8 out[16])
{
	__u8 b[16] = { 0 };
	int n = 0, gap = -1; /* bytes written; where "::" stands (-1: nowhere) */

	if (s < end && *s == ':') {
		if (end - s < 2 || s[1] != ':')
			return false;
		s += 2;
		gap = 0;
	}
	while (s < end || gap < 0) {
		const char *group = s;
		unsigned v = 0;

		while (s < end && s - group < V6_GROUP_DIGITS && hex_digit(*s) >= 0)
			v = v << 4 | hex_digit(*s++);
		if (s < end && *s == '.') {
			/* The dotted quad runs from the group's start to the end. */
			if (n + 4 > 16 || !parse_v4(group, end, b + n))
				return false;
			n += 4;
			break;
		}
		if (s == group || n + 2 > 16)
			return false;
		b[n++] = v >> 8;
		b[n++] = v & 0xff;
		if (s == end)
			break;
		if (*s++ != ':' || s == end)
			return false; /* not a separator, or a ':' ending the address */
		if (*s == ':') {
			if (gap >= 0)
				return false;
			gap = n;
			s++;
		}
	}
	if (gap >= 0) {
		if (n == 16)
			return false; /* "::" must stand for at least one group */
		memmove(b + 16 - (n - gap), b + gap, n - gap);
		memset(b + gap, 0, 16 - n);
	} else if (n != 16) {
		return false;
	}
	memcpy(out, b, 16);
	return true;
}

/* Parse a bare address [s, end); returns 4 or 6 for the family, or 0 if it is neither. */
static int parse_family(const char *s, const char *end, struct sluice_addr *out)
{
	__u8 v4[4];

	if (parse_v4(s, end, v4)) {
		memcpy(out->a, v4_mapped_prefix, sizeof(v4_mapped_prefix));
		memcpy(&out->a[12], v4, sizeof(v4));
		return 4;
	}
	if (parse_v6(s, end, out->a))
		return 6;
	return 0;
}

int addr_parse(const char *s, struct sluice_addr *out)
{
	return parse_family(s, s + strlen(s), out) ? 0 : -EINVAL;
}

/* Big-endian 64-bit word i (0 or 1) of an address. */
static __u64 addr_word(const struct sluice_addr *a, int i)
{
	__u64 v;

	memcpy(&v, &a->a[8 * i], sizeof(v));
	return be64toh(v);
}

/* Are bits of a beyond the first len set? Word by word: this runs for every prefix read. */
static bool host_bits_set(const struct sluice_addr *a, unsigned len)
{
	__u64 hi = len >= 64 ? 0 : ~0ull >> len;
	__u64 lo = len <= 64 ? ~0ull : len >= 128 ? 0 : ~0ull >> (len - 64);

	return (addr_word(a, 0) & hi) || (addr_word(a, 1) & lo);
}

int prefix_parse(const char *s, struct prefix *out, char *err, size_t errlen, size_t *errcol)
{
	char msg[256];
	const char *slash = strchr(s, '/');
	size_t addr_len = slash ? (size_t)(slash - s) : strlen(s);
	unsigned max_len, len;
	int family;

	/* Messages quote the input (bounded: a token is at most a few dozen characters). */
	family = addr_len == 0 || addr_len > INET6_ADDRSTRLEN ? 0
							     : parse_family(s, s + addr_len, &out->addr);
	if (!family) {
		snprintf(msg, sizeof(msg), "'%.64s' is not an IPv4 or IPv6 address", s);
		set_error(err, errlen, errcol, 0, msg);
		return -EINVAL;
	}
	if (family == 6 && addr_is_v4(&out->addr)) {
		char v4[INET_ADDRSTRLEN];

		inet_ntop(AF_INET, &out->addr.a[12], v4, sizeof(v4));
		snprintf(msg, sizeof(msg), "IPv4-mapped address '%.*s': write %s instead",
			 (int)addr_len, s, v4);
		set_error(err, errlen, errcol, 0, msg);
		return -EINVAL;
	}
	max_len = family == 4 ? 32 : 128;
	len = max_len;
	if (slash) {
		const char *c = slash + 1;

		/* Decimal digits only, as many as written (leading zeros too), at most max_len. */
		len = *c ? 0 : max_len + 1;
		for (; *c && len <= max_len; c++)
			len = dec_digit(*c) < 0 ? max_len + 1 : len * 10 + dec_digit(*c);
		if (len > max_len) {
			snprintf(msg, sizeof(msg), "prefix length in '%.64s' must be 0..%u", s, max_len);
			set_error(err, errlen, errcol, addr_len + 1, msg);
			return -EINVAL;
		}
	}
	out->prefixlen = family == 4 ? 96 + len : len;

	/* Host bits set is almost always a typo (10.0.0.1/8): say so, and what was meant. */
	if (host_bits_set(&out->addr, out->prefixlen)) {
		struct prefix fixed = *out;
		char want[ADDR_STRLEN];

		for (unsigned b = fixed.prefixlen; b < 128; b++)
			fixed.addr.a[b / 8] &= ~(0x80 >> (b % 8));
		prefix_format(&fixed, want, sizeof(want));
		snprintf(msg, sizeof(msg), "'%.64s' has host bits set: did you mean %s?", s, want);
		set_error(err, errlen, errcol, 0, msg);
		return -EINVAL;
	}
	return 0;
}

/*
 * Where format_v6 puts "::" for a: *best is the first of the longest runs of two or more
 * zero groups (-1: none), *best_len its length. w gets the groups.
 */
static void v6_zero_run(const __u8 *b, unsigned w[8], int *best, int *best_len)
{
	int cur = -1, cur_len = 0;

	*best = -1;
	*best_len = 0;
	for (int i = 0; i < 8; i++) {
		w[i] = (unsigned)b[2 * i] << 8 | b[2 * i + 1];
		if (w[i] == 0) {
			if (cur < 0)
				cur = i, cur_len = 0;
			cur_len++;
			if (cur_len > *best_len)
				*best = cur, *best_len = cur_len;
		} else {
			cur = -1;
		}
	}
	if (*best_len < 2)
		*best = -1;
}

bool prefix_text_canonical(const char *s, const struct prefix *p)
{
	const char *slash = strchr(s, '/'), *c = s;
	int best, best_len, groups = 0, gap = -1;
	unsigned w[8];

	/* The length written, without leading zeros (prefix_parse checked its digits). */
	if (!slash || (slash[1] == '0' && slash[2] != '\0'))
		return false;
	/* IPv4 as inet_pton takes it has no leading zeros: what format_v4 writes. */
	if (addr_is_v4(&p->addr))
		return true;
	v6_zero_run(p->addr.a, w, &best, &best_len);
	if (best == 0 && (best_len == 6 || (best_len == 5 && w[5] == 0xffff)))
		return false; /* format_v6 writes these with a dotted quad */
	if (*c == ':') { /* "::" first */
		gap = 0;
		c += 2;
	}
	while (c < slash) {
		const char *group = c;

		for (; c < slash && hex_digit(*c) >= 0; c++)
			if (*c >= 'A' && *c <= 'F')
				return false;
		if ((c - group > 1 && *group == '0') || *c == '.')
			return false; /* a leading zero, or a dotted quad */
		groups++;
		if (c++ == slash)
			break;
		if (*c == ':') {
			gap = groups;
			c++;
		}
	}
	return best < 0 ? gap < 0 : gap == best && 8 - groups == best_len;
}

/* By whole words: an in-place override scans 100 000 rules with this, twice. */
bool prefix_contains(const struct prefix *p, const struct sluice_addr *addr)
{
	unsigned len = p->prefixlen;
	__u64 hi = addr_word(&p->addr, 0) ^ addr_word(addr, 0);

	if (len <= 64)
		return len == 0 || (hi >> (64 - len)) == 0;
	return hi == 0 && ((addr_word(&p->addr, 1) ^ addr_word(addr, 1)) >> (128 - len)) == 0;
}

/* "d.d.d.d" at out; returns the end. */
static char *format_v4(const __u8 *b, char *out)
{
	for (int i = 0; i < 4; i++) {
		unsigned v = b[i];

		if (i)
			*out++ = '.';
		if (v >= 100)
			*out++ = '0' + v / 100;
		if (v >= 10)
			*out++ = '0' + v / 10 % 10;
		*out++ = '0' + v % 10;
	}
	return out;
}

/*
 * IPv6 text exactly as glibc's inet_ntop writes it (RFC 5952: lower-case hex, the longest
 * run of two or more zero groups as "::", the first of equal runs; ::a.b.c.d and
 * ::ffff:a.b.c.d for the IPv4-compatible and -mapped forms). By hand: inet_ntop's sprintf
 * per group was a sixth of the time to parse a 100 000-rule policy.
 */
static char *format_v6(const __u8 *b, char *out)
{
	static const char hex[] = "0123456789abcdef";
	int best, best_len;
	unsigned w[8];

	v6_zero_run(b, w, &best, &best_len);
	for (int i = 0; i < 8; i++) {
		if (best >= 0 && i >= best && i < best + best_len) {
			if (i == best)
				*out++ = ':';
			continue;
		}
		if (i)
			*out++ = ':';
		if (i == 6 && best == 0 && (best_len == 6 || (best_len == 5 && w[5] == 0xffff)))
			return format_v4(b + 12, out);
		for (int shift = 12; shift >= 0; shift -= 4)
			if (w[i] >> shift || shift == 0)
				*out++ = hex[w[i] >> shift & 0xf];
	}
	if (best >= 0 && best + best_len == 8)
		*out++ = ':';
	return out;
}

void addr_format(const struct sluice_addr *a, char *buf, size_t len)
{
	char text[ADDR_STRLEN], *end;

	end = addr_is_v4(a) ? format_v4(&a->a[12], text) : format_v6(a->a, text);
	*end = '\0';
	if ((size_t)(end - text) < len)
		memcpy(buf, text, end - text + 1);
	else if (len)
		snprintf(buf, len, "?");
}

void prefix_format(const struct prefix *p, char *buf, size_t len)
{
	char text[ADDR_STRLEN + 4], *end;
	bool v4 = addr_is_v4(&p->addr);
	unsigned plen = v4 && p->prefixlen >= 96 ? p->prefixlen - 96 : p->prefixlen;

	end = v4 ? format_v4(&p->addr.a[12], text) : format_v6(p->addr.a, text);
	*end++ = '/';
	if (plen >= 100)
		*end++ = '0' + plen / 100;
	if (plen >= 10)
		*end++ = '0' + plen / 10 % 10;
	*end++ = '0' + plen % 10;
	*end = '\0';
	if (len) { /* cut to fit, as snprintf would */
		size_t n = (size_t)(end - text) < len ? (size_t)(end - text) : len - 1;

		memcpy(buf, text, n);
		buf[n] = '\0';
	}
}

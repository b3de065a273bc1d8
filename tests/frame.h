/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Writing frames header by header, in wire order: fr_mac, then VLAN tags and an ethertype,
 * then IPv4 or IPv6 with extension headers, then a transport header and payload. Each call
 * appends; fr_done fills in the outer IP length. Unlike packets.h (a frame from a short
 * description), this builds any sequence of headers, including nonsensical ones: the
 * randomized tests splice headers of different packets together with it.
 */
#ifndef SLUICE_TEST_FRAME_H
#define SLUICE_TEST_FRAME_H

#include <arpa/inet.h>
#include <stdbool.h>
#include <string.h>
#include <linux/types.h>

#define FRAME_MAX 4096

struct frame {
	__u8 b[FRAME_MAX];
	size_t len;
	size_t l3;      /* offset of the outermost IP header */
	int l3_version; /* 4, 6, or 0 before one is written */
};

static inline void fr_init(struct frame *f)
{
	memset(f, 0, sizeof(*f));
}

static inline __u8 *fr_put(struct frame *f, size_t n)
{
	__u8 *p = f->b + f->len;

	if (f->len + n > FRAME_MAX)
		n = 0, p = f->b + FRAME_MAX; /* overflow: callers size frames well below it */
	memset(p, 0, n);
	f->len += n;
	return p;
}

static inline void fr_u16(struct frame *f, unsigned v)
{
	__u8 *p = fr_put(f, 2);

	p[0] = v >> 8;
	p[1] = v;
}

static inline void fr_bytes(struct frame *f, const void *data, size_t n)
{
	memcpy(fr_put(f, n), data, n);
}

/* Destination and source MAC addresses; an ethertype (or tags) must follow. */
static inline void fr_mac(struct frame *f)
{
	fr_bytes(f, "\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01", 12);
}

/* An in-band VLAN tag: its TPID and a TCI; the encapsulated ethertype follows. */
static inline void fr_tag(struct frame *f, unsigned tpid, unsigned vid)
{
	fr_u16(f, tpid);
	fr_u16(f, vid);
}

/* Ethernet (MACs + ethertype) in one call, for untagged frames. */
static inline void fr_eth(struct frame *f, unsigned ethertype)
{
	fr_mac(f);
	fr_u16(f, ethertype);
}

static inline void fr_ipv4_opts(struct frame *f, const char *src, const char *dst, __u8 proto,
				unsigned frag_field, unsigned id, unsigned option_words)
{
	__u8 *h;

	if (!f->l3_version) {
		f->l3 = f->len;
		f->l3_version = 4;
	}
	h = fr_put(f, 20 + 4 * option_words);
	h[0] = 0x40 | (5 + option_words);
	h[4] = id >> 8;
	h[5] = id;
	h[6] = frag_field >> 8;
	h[7] = frag_field;
	h[8] = 64;
	h[9] = proto;
	inet_pton(AF_INET, src, h + 12);
	inet_pton(AF_INET, dst, h + 16);
	for (unsigned i = 0; i < 4 * option_words; i++)
		h[20 + i] = 1; /* NOP */
	h[2] = (20 + 4 * option_words) >> 8; /* until fr_done: the header alone */
	h[3] = 20 + 4 * option_words;
}

/* IPv4 frag_field: flags and offset as on the wire (0x2000 = MF, low 13 bits = offset/8). */
#define FR_MF 0x2000

static inline void fr_ipv4(struct frame *f, const char *src, const char *dst, __u8 proto)
{
	fr_ipv4_opts(f, src, dst, proto, 0, 0x1234, 0);
}

static inline void fr_ipv6(struct frame *f, const char *src, const char *dst, __u8 nexthdr)
{
	__u8 *h;

	if (!f->l3_version) {
		f->l3 = f->len;
		f->l3_version = 6;
	}
	h = fr_put(f, 40);
	h[0] = 0x60;
	h[6] = nexthdr;
	h[7] = 64;
	inet_pton(AF_INET6, src, h + 8);
	inet_pton(AF_INET6, dst, h + 24);
}

/*
 * An IPv6 extension header of `bytes` bytes (hop-by-hop, routing, destination options: a
 * multiple of 8; AH, type 51: a multiple of 4, at least 12) naming `next` as what follows.
 */
static inline void fr_ext(struct frame *f, __u8 type, __u8 next, unsigned bytes)
{
	__u8 *h = fr_put(f, bytes);

	h[0] = next;
	h[1] = type == 51 ? bytes / 4 - 2 : bytes / 8 - 1;
	if (type == 43)
		h[2] = 4; /* routing type 4 (segment routing); segments left 0 */
}

/* An IPv6 fragment header: offset in bytes (a multiple of 8), more fragments, id. */
static inline void fr_frag6(struct frame *f, __u8 next, unsigned offset, bool more, __u32 id)
{
	__u8 *h = fr_put(f, 8);

	h[0] = next;
	h[2] = offset >> 8;
	h[3] = (offset & 0xf8) | (more ? 1 : 0);
	h[4] = id >> 24;
	h[5] = id >> 16;
	h[6] = id >> 8;
	h[7] = id;
}

#define FR_SYN 0x02
#define FR_RST 0x04
#define FR_ACK 0x10
#define FR_FIN 0x01

/* A TCP header with `option_words` 32-bit words of NOP options. */
static inline void fr_tcp_opts(struct frame *f, unsigned sport, unsigned dport, __u8 flags,
			       unsigned option_words)
{
	__u8 *h = fr_put(f, 20 + 4 * option_words);

	h[0] = sport >> 8;
	h[1] = sport;
	h[2] = dport >> 8;
	h[3] = dport;
	h[12] = (5 + option_words) << 4;
	h[13] = flags;
	h[14] = 0xff; /* window */
	for (unsigned i = 0; i < 4 * option_words; i++)
		h[20 + i] = 1;
}

static inline void fr_tcp(struct frame *f, unsigned sport, unsigned dport, __u8 flags)
{
	fr_tcp_opts(f, sport, dport, flags, 0);
}

static inline void fr_udp(struct frame *f, unsigned sport, unsigned dport, unsigned payload)
{
	__u8 *h = fr_put(f, 8);

	h[0] = sport >> 8;
	h[1] = sport;
	h[2] = dport >> 8;
	h[3] = dport;
	h[4] = (8 + payload) >> 8;
	h[5] = 8 + payload;
}

/* An ICMP or ICMPv6 header (8 bytes); for errors the quoted packet follows. */
static inline void fr_icmp(struct frame *f, __u8 type, __u8 code)
{
	__u8 *h = fr_put(f, 8);

	h[0] = type;
	h[1] = code;
}

/* n bytes of payload. */
static inline void fr_pad(struct frame *f, size_t n)
{
	__u8 *p = fr_put(f, n);

	for (size_t i = 0; i < n; i++)
		p[i] = 0xa5 ^ i;
}

/* Set the outer IP header's length to the frame's end (IPv4 total, IPv6 payload length). */
static inline void fr_done(struct frame *f)
{
	size_t l = f->len - f->l3;

	if (f->l3_version == 4) {
		f->b[f->l3 + 2] = l >> 8;
		f->b[f->l3 + 3] = l;
	} else if (f->l3_version == 6) {
		l -= 40;
		f->b[f->l3 + 4] = l >> 8;
		f->b[f->l3 + 5] = l;
	}
}

#endif

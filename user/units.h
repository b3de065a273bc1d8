/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Parsing the units admins write: durations (30s, 15m, 2h, 1d, 1w), sizes (20MB, 10TiB). */
#ifndef SLUICE_UNITS_H
#define SLUICE_UNITS_H

#include <stddef.h>
#include <stdint.h>

/* "90s", "15m", "2h", "1d", "1w" -> seconds (> 0, at most ~100 years). 0 or -EINVAL. */
int parse_duration(const char *s, uint64_t *seconds);

/*
 * "512B", "20MB" (10^6), "10TiB" (2^40): a number (> 0) and a unit, B, KB..PB in steps of
 * 1000, KiB..PiB in steps of 1024 (case as written). 0, or -EINVAL (bad form, with the
 * 0-based column of the problem in *errcol) or -ERANGE (more than 2^64-1 bytes).
 */
int parse_size(const char *s, uint64_t *bytes, size_t *errcol);
/* Write seconds in the largest unit that divides it ("1h", "90s", "2w"). */
void format_duration(uint64_t seconds, char *buf, size_t len);
/* Write bytes in the largest unit that divides it ("20MB", "10TiB", "1500B"). */
void format_size(uint64_t bytes, char *buf, size_t len);

#endif

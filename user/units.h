/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Parsing the units admins write: durations (30s, 15m, 2h, 1d, 1w). */
#ifndef SLUICE_UNITS_H
#define SLUICE_UNITS_H

#include <stdint.h>

/* "90s", "15m", "2h", "1d", "1w" -> seconds (> 0, at most ~100 years). 0 or -EINVAL. */
int parse_duration(const char *s, uint64_t *seconds);

#endif

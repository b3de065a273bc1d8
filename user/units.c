// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Durations as admins write them. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "units.h"

#define DURATION_MAX (100ull * 365 * 86400) /* beyond this a number is a typo */

int parse_duration(const char *s, uint64_t *seconds)
{
	static const struct {
		char suffix;
		uint64_t factor;
	} units[] = { { 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 }, { 'w', 604800 } };
	char *end;
	unsigned long long v;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || v == 0 || end[0] == '\0' || end[1] != '\0')
		return -EINVAL;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (*end != units[i].suffix)
			continue;
		if (v > DURATION_MAX / units[i].factor)
			return -EINVAL;
		*seconds = v * units[i].factor;
		return 0;
	}
	return -EINVAL;
}

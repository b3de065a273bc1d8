// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Durations as admins write them. */
#include <errno.h>
#include <stdio.h>
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

static const struct {
	const char *suffix;
	uint64_t factor;
} size_units[] = {
	/* Largest first: format_size takes the first that divides. */
	{ "PiB", 1ull << 50 }, { "PB", 1000000000000000ull }, { "TiB", 1ull << 40 },
	{ "TB", 1000000000000ull }, { "GiB", 1ull << 30 },   { "GB", 1000000000ull },
	{ "MiB", 1ull << 20 },  { "MB", 1000000ull },         { "KiB", 1ull << 10 },
	{ "KB", 1000ull },      { "B", 1 },
};

int parse_size(const char *s, uint64_t *bytes, size_t *errcol)
{
	const char *c = s;
	uint64_t v = 0;

	*errcol = 0;
	if (*c < '0' || *c > '9')
		return -EINVAL;
	for (; *c >= '0' && *c <= '9'; c++) {
		if (v > (UINT64_MAX - (uint64_t)(*c - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*c - '0');
	}
	*errcol = c - s;
	if (v == 0)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(size_units) / sizeof(size_units[0]); i++) {
		if (strcmp(c, size_units[i].suffix) != 0)
			continue;
		if (v > UINT64_MAX / size_units[i].factor)
			return -ERANGE;
		*bytes = v * size_units[i].factor;
		return 0;
	}
	return -EINVAL;
}

void format_size(uint64_t bytes, char *buf, size_t len)
{
	for (size_t i = 0; i < sizeof(size_units) / sizeof(size_units[0]); i++) {
		if (bytes && bytes % size_units[i].factor == 0) {
			snprintf(buf, len, "%llu%s",
				 (unsigned long long)(bytes / size_units[i].factor),
				 size_units[i].suffix);
			return;
		}
	}
	snprintf(buf, len, "%lluB", (unsigned long long)bytes);
}

void format_duration(uint64_t seconds, char *buf, size_t len)
{
	static const struct {
		char suffix;
		uint64_t factor;
	} units[] = { { 'w', 604800 }, { 'd', 86400 }, { 'h', 3600 }, { 'm', 60 } };

	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (seconds && seconds % units[i].factor == 0) {
			snprintf(buf, len, "%llu%c", (unsigned long long)(seconds / units[i].factor),
				 units[i].suffix);
			return;
		}
	}
	snprintf(buf, len, "%llus", (unsigned long long)seconds);
}

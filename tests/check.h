/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * A minimal test harness for the C test tiers: CHECK records a failure with its location
 * and carries on; check_summary prints "N passed, N failed" and gives the exit status.
 */
#ifndef SLUICE_TEST_CHECK_H
#define SLUICE_TEST_CHECK_H

#include <stdio.h>

static unsigned checks_passed, checks_failed;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (cond) {                                                                        \
			checks_passed++;                                                           \
		} else {                                                                           \
			checks_failed++;                                                           \
			fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);   \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
		}                                                                                  \
	} while (0)

#define CHECK_EQ_U64(actual, expected, what)                                                       \
	CHECK((unsigned long long)(actual) == (unsigned long long)(expected),                      \
	      "%s: got %llu, want %llu", what, (unsigned long long)(actual),                      \
	      (unsigned long long)(expected))

static inline int check_summary(void)
{
	printf("%u passed, %u failed\n", checks_passed, checks_failed);
	return checks_failed ? 1 : 0;
}

#endif

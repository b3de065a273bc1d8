/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Force-included (-include) into every file of the fuzz target, and only there: the policy
 * code's fopen/open/openat become calls into the harness, which refuses them all. Text
 * policies refuse `include` by themselves today; this keeps it that way for the fuzzer
 * whatever the parser comes to do, because an `include` the fuzzer writes must never read
 * a file of the machine (/dev/stdin would hang the run, /dev/zero eat memory, /proc make
 * results depend on the host).
 *
 * The system headers come first so that their declarations are seen unrenamed; the macros
 * apply to the code that follows, i.e. the calls in user/.
 */
#ifndef SLUICE_FUZZ_SANDBOX_H
#define SLUICE_FUZZ_SANDBOX_H

/* Before any system header, as the files that define it do (user/policy.c). */
#define _GNU_SOURCE

#include <fcntl.h>
#include <stdio.h>

FILE *fuzz_fopen(const char *path, const char *mode);
int fuzz_open(const char *path, int flags, ...);
int fuzz_openat(int dirfd, const char *path, int flags, ...);

#define fopen(...) fuzz_fopen(__VA_ARGS__)
#define open(...) fuzz_open(__VA_ARGS__)
#define openat(...) fuzz_openat(__VA_ARGS__)

#endif

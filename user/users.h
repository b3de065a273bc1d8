/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Per-user counters read back: `sluice users` and the sluice_user_bytes_total metric. */
#ifndef SLUICE_USERS_H
#define SLUICE_USERS_H

#include <stdbool.h>
#include <stddef.h>
#include <linux/types.h>
#include <sluice/abi.h>

struct user_row {
	__u32 uid;
	bool other; /* uids that found no slot of their own (SLUICE_USER_OTHER), summed */
	struct {
		__u64 packets, bytes;
	} stats;
};

/*
 * Every uid's counters, summed over CPUs and slots (one batch lookup of the per-CPU slot
 * array), sorted by bytes, largest first; the "other" row, if any, among them.
 */
int users_read(int users_fd, struct user_row **rows, size_t *n);
/* The user name of uid ("other" for the other row), or "uid N" when it has none. */
const char *user_name(const struct user_row *r, char *buf, size_t len);

#endif

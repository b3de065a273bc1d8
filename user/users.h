/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Per-user counters read back: `sluice users` and the sluice_user_bytes_total metric. */
#ifndef SLUICE_USERS_H
#define SLUICE_USERS_H

#include <stddef.h>
#include <linux/types.h>
#include <sluice/abi.h>

struct user_row {
	__u32 uid;
	struct sluice_user_stats stats;
};

/* Every uid's counters (at most SLUICE_USER_MAX), sorted by bytes, largest first. */
int users_read(int users_fd, struct user_row **rows, size_t *n);
/* The user name of uid, or "uid N" when it has none; buf of at least 32 bytes. */
const char *user_name(__u32 uid, char *buf, size_t len);

#endif

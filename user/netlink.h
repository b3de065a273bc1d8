/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * rtnetlink notifications: how the daemon learns, without polling, that an interface
 * appeared, went away, was renamed or changed state in its network namespace, and that an
 * address came or went (XDP's set of the node's own addresses).
 */
#ifndef SLUICE_NETLINK_H
#define SLUICE_NETLINK_H

/* What a drain saw change. */
enum { NL_LINKS = 1, NL_ADDRS = 2 };

/* A socket subscribed to link and address notifications, non-blocking. fd or -errno. */
int nl_link_open(void);
/*
 * Read every queued notification. Returns NL_LINKS and/or NL_ADDRS for what happened (both
 * when notifications were lost: the queue overflowed, the caller must look at everything
 * again); 0 when nothing did; -errno on error.
 */
int nl_link_drain(int fd);

#endif

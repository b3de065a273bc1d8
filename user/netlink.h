/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * rtnetlink link notifications: how the daemon learns, without polling, that an interface
 * appeared, went away, was renamed or changed state in its network namespace.
 */
#ifndef SLUICE_NETLINK_H
#define SLUICE_NETLINK_H

/* A socket subscribed to link notifications (RTMGRP_LINK), non-blocking. fd or -errno. */
int nl_link_open(void);
/*
 * Read every queued notification. Returns 1 when something about links happened, or when
 * notifications were lost (the queue overflowed: the caller must look at everything
 * again); 0 when nothing did; -errno on error.
 */
int nl_link_drain(int fd);

#endif

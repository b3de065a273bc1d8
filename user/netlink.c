// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* rtnetlink link and address notifications: interface hotplug, the node's addresses. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include "log.h"
#include "netlink.h"

#define NL_RECV_BUF 32768   /* one read takes many notifications */
#define NL_SOCK_RCVBUF (1 << 20) /* room for a burst (a container host creating veths) */
#define NL_DRAIN_MAX 1024   /* reads per drain: the loop must come back to signals */

int nl_link_open(void)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK,
				  .nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR };
	int fd, size = NL_SOCK_RCVBUF, err;

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0)
		return -errno;
	/* Best effort: a larger queue makes an overflow (and a full rescan) rarer. */
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static const char *link_name(struct nlmsghdr *h)
{
	struct ifinfomsg *ifi = NLMSG_DATA(h);
	int len = h->nlmsg_len - NLMSG_LENGTH(sizeof(*ifi));

	for (struct rtattr *a = IFLA_RTA(ifi); len > 0 && RTA_OK(a, len); a = RTA_NEXT(a, len))
		if (a->rta_type == IFLA_IFNAME)
			return RTA_DATA(a);
	return "?";
}

int nl_link_drain(int fd)
{
	char buf[NL_RECV_BUF] __attribute__((aligned(NLMSG_ALIGNTO)));
	int changed = 0;

	for (int reads = 0; reads < NL_DRAIN_MAX; reads++) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return changed;
			if (errno == EINTR)
				continue;
			if (errno == ENOBUFS) {
				/* Notifications were dropped: only a full look tells what changed. */
				pr_warn("netlink: notifications lost; rescanning interfaces and addresses");
				changed = NL_LINKS | NL_ADDRS;
				continue;
			}
			return -errno;
		}
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
		     h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_type == RTM_NEWADDR || h->nlmsg_type == RTM_DELADDR) {
				changed |= NL_ADDRS;
				continue;
			}
			if (h->nlmsg_type != RTM_NEWLINK && h->nlmsg_type != RTM_DELLINK)
				continue;
			if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifinfomsg)))
				continue;
			pr_debug("netlink: %s %s (ifindex %d)",
				 h->nlmsg_type == RTM_NEWLINK ? "link" : "link gone", link_name(h),
				 ((struct ifinfomsg *)NLMSG_DATA(h))->ifi_index);
			changed |= NL_LINKS;
		}
	}
	/* Still more queued: the caller comes back after serving signals. */
	return changed;
}

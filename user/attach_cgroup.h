/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The connect-time hooks on a cgroup v2: connect4, connect6, sendmsg4 and sendmsg6 links,
 * pinned under PIN_DIR/links as NAME_CGROUPID (the cgroup's id, its inode number), so they
 * outlive the daemon like the tc and XDP links. Re-attaching to a cgroup that has pinned
 * links swaps the programs on them, with no window in which the cgroup is unhooked.
 */
#ifndef SLUICE_ATTACH_CGROUP_H
#define SLUICE_ATTACH_CGROUP_H

#include <stdbool.h>
#include <jansson.h>

/* The cgroup v2 root: production attaches there, so every process on the node is covered. */
#define CONNECT_HOOKS_CGROUP_DEFAULT "/sys/fs/cgroup"

enum connect_hook {
	CONNECT_HOOK_CONNECT4,
	CONNECT_HOOK_CONNECT6,
	CONNECT_HOOK_SENDMSG4,
	CONNECT_HOOK_SENDMSG6,
	CONNECT_HOOKS
};

/* Is path a directory of a cgroup v2 hierarchy? 0, or -errno with the reason printed. */
int connect_hooks_check_cgroup(const char *path);
/* Attach (or re-attach) the four programs, prog_fds indexed by enum connect_hook. */
int attach_connect_hooks(const char *pin_dir, const int prog_fds[CONNECT_HOOKS],
			 const char *cgroup_path);
/* Is name a connect-hook link pin (NAME_CGROUPID)? For detaching everything. */
bool is_connect_link_pin(const char *name);
/* The pinned connect-hook links: [{"hook", "cgroup_id", "link_id", "prog_id"}]. */
json_t *connect_hooks_json(const char *pin_dir);

#endif

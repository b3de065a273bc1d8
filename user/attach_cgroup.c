// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* The connect-time hooks' cgroup links (pinned), next to attach.c's tc and XDP links. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <bpf/bpf.h>
#include <linux/magic.h>
#include <sluice/abi.h>

#include "attach.h"
#include "attach_cgroup.h"
#include "log.h"
#include "pins.h"

/* Where each hook attaches, and the name of its program pin and link pins. */
static const struct {
	const char *name;
	enum bpf_attach_type type;
} hooks[CONNECT_HOOKS] = {
	[CONNECT_HOOK_CONNECT4] = { SLUICE_PIN_PROG_CONNECT4, BPF_CGROUP_INET4_CONNECT },
	[CONNECT_HOOK_CONNECT6] = { SLUICE_PIN_PROG_CONNECT6, BPF_CGROUP_INET6_CONNECT },
	[CONNECT_HOOK_SENDMSG4] = { SLUICE_PIN_PROG_SENDMSG4, BPF_CGROUP_UDP4_SENDMSG },
	[CONNECT_HOOK_SENDMSG6] = { SLUICE_PIN_PROG_SENDMSG6, BPF_CGROUP_UDP6_SENDMSG },
};

int connect_hooks_check_cgroup(const char *path)
{
	struct statfs fs;
	struct stat st;

	if (stat(path, &st) < 0 || statfs(path, &fs) < 0) {
		int err = -errno;

		pr_err("cannot use cgroup %s: %s", path, strerror(-err));
		return err;
	}
	if (!S_ISDIR(st.st_mode) || fs.f_type != CGROUP2_SUPER_MAGIC) {
		pr_err("cannot use cgroup %s: not a cgroup v2 directory", path);
		return -ENOTDIR;
	}
	return 0;
}

/* NAME_CGROUPID: the id survives renames of the path, and bpffs reserves dots. */
static int cgroup_link_pin(char *buf, size_t len, const char *pin_dir, enum connect_hook h,
			   unsigned long long cgroup_id)
{
	char name[48];

	snprintf(name, sizeof(name), "%s_%llu", hooks[h].name, cgroup_id);
	return pin_path(buf, len, pin_dir, SLUICE_PIN_LINKS, name);
}

static int attach_one(const char *pin_dir, int prog_fd, int cgroup_fd, const char *cgroup_path,
		      unsigned long long cgroup_id, enum connect_hook h)
{
	char path[PATH_MAX];
	int link_fd, err;

	if (cgroup_link_pin(path, sizeof(path), pin_dir, h, cgroup_id) < 0)
		return -ENAMETOOLONG;

	if (attach_adopt_link(path, prog_fd) == 0)
		return 0;

	link_fd = bpf_link_create(prog_fd, cgroup_fd, hooks[h].type, NULL);
	if (link_fd < 0) {
		err = link_fd; /* libbpf >= 1.0 returns -errno */
		pr_err("cannot attach %s to cgroup %s: %s", hooks[h].name, cgroup_path,
		       strerror(-err));
		return err;
	}
	if (bpf_obj_pin(link_fd, path) < 0) {
		err = -errno;
		pr_err("cannot pin link for %s on cgroup %s at %s: %s", hooks[h].name, cgroup_path,
		       path, strerror(-err));
		close(link_fd); /* the only reference: closing detaches */
		return err;
	}
	close(link_fd);
	return 0;
}

int attach_connect_hooks(const char *pin_dir, const int prog_fds[CONNECT_HOOKS],
			 const char *cgroup_path)
{
	struct stat st;
	int cgroup_fd, err = 0;

	err = connect_hooks_check_cgroup(cgroup_path);
	if (err)
		return err;
	cgroup_fd = open(cgroup_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cgroup_fd < 0 || fstat(cgroup_fd, &st) < 0) {
		err = -errno;
		pr_err("cannot open cgroup %s: %s", cgroup_path, strerror(-err));
		if (cgroup_fd >= 0)
			close(cgroup_fd);
		return err;
	}
	/* The links hold the cgroup: the descriptor is needed only to create them. */
	for (int h = 0; h < CONNECT_HOOKS && !err; h++)
		err = attach_one(pin_dir, prog_fds[h], cgroup_fd, cgroup_path,
				 (unsigned long long)st.st_ino, h);
	close(cgroup_fd);
	return err;
}

bool is_connect_link_pin(const char *name)
{
	for (int h = 0; h < CONNECT_HOOKS; h++) {
		size_t len = strlen(hooks[h].name);

		if (strncmp(name, hooks[h].name, len) == 0 && name[len] == '_')
			return true;
	}
	return false;
}

json_t *connect_hooks_json(const char *pin_dir)
{
	json_t *hooks_json = json_array();
	char dir[PATH_MAX], path[PATH_MAX];
	struct dirent *de;
	DIR *d;

	if (pin_path(dir, sizeof(dir), pin_dir, SLUICE_PIN_LINKS, NULL) < 0)
		return hooks_json;
	d = opendir(dir);
	while (d && (de = readdir(d))) {
		struct bpf_link_info info = {};
		__u32 len = sizeof(info);
		const char *us = strrchr(de->d_name, '_');
		int fd;

		if (!is_connect_link_pin(de->d_name) || !us ||
		    pin_path(path, sizeof(path), dir, NULL, de->d_name) < 0)
			continue;
		fd = bpf_obj_get(path);
		if (fd < 0)
			continue;
		if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0)
			json_array_append_new(
				hooks_json,
				json_pack("{s:s%,s:I,s:I,s:I}", "hook", de->d_name,
					  (size_t)(us - de->d_name), "cgroup_id",
					  (json_int_t)strtoull(us + 1, NULL, 10), "link_id",
					  (json_int_t)info.id, "prog_id", (json_int_t)info.prog_id));
		close(fd);
	}
	if (d)
		closedir(d);
	return hooks_json;
}

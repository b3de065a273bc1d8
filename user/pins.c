// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* The pin directory: bpffs checks, layout, removal. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <linux/magic.h>
#include <sluice/abi.h>

#include "log.h"
#include "pins.h"

static const char *const pin_subdirs[] = { SLUICE_PIN_LINKS, SLUICE_PIN_PROGS, SLUICE_PIN_MAPS };

int pin_path(char *buf, size_t len, const char *pin_dir, const char *sub, const char *name)
{
	int n = snprintf(buf, len, "%s%s%s%s%s", pin_dir, sub ? "/" : "", sub ? sub : "",
			 name ? "/" : "", name ? name : "");

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int mkdir_p(const char *path)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* Is the nearest existing ancestor of path (or path itself) on a bpffs? */
static int on_bpffs(const char *path, char *existing, size_t len)
{
	struct statfs st;

	snprintf(existing, len, "%s", path);
	while (statfs(existing, &st) < 0) {
		char *slash;

		if (errno != ENOENT)
			return -errno;
		slash = strrchr(existing, '/');
		if (!slash || slash == existing) {
			snprintf(existing, len, "/");
			if (statfs(existing, &st) < 0)
				return -errno;
			break;
		}
		*slash = '\0';
	}
	return st.f_type == BPF_FS_MAGIC;
}

int pins_prepare(const char *pin_dir)
{
	char existing[PATH_MAX], path[PATH_MAX];
	int ret;

	ret = on_bpffs(pin_dir, existing, sizeof(existing));
	if (ret < 0) {
		pr_err("cannot check pin directory %s: %s", pin_dir, strerror(-ret));
		return ret;
	}
	if (!ret) {
		/* As bpftool does: the standard location gets a bpffs when it has none. */
		if (strncmp(pin_dir, "/sys/fs/bpf/", 12) != 0 || strcmp(existing, "/sys/fs/bpf") != 0) {
			pr_err("pin directory %s is not on a bpf filesystem (mount -t bpf bpf DIR)",
			       pin_dir);
			return -EINVAL;
		}
		if (mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700") < 0) {
			ret = -errno;
			pr_err("cannot mount bpffs on /sys/fs/bpf: %s", strerror(-ret));
			return ret;
		}
	}
	for (size_t i = 0; i < sizeof(pin_subdirs) / sizeof(pin_subdirs[0]); i++) {
		if (pin_path(path, sizeof(path), pin_dir, pin_subdirs[i], NULL) < 0)
			return -ENAMETOOLONG;
		ret = mkdir_p(path);
		if (ret < 0) {
			pr_err("cannot create %s: %s", path, strerror(-ret));
			return ret;
		}
	}
	/* Pins are readable by whoever can traverse the directory: keep it root's alone. */
	if (chmod(pin_dir, 0700) < 0) {
		ret = -errno;
		pr_err("cannot restrict %s: %s", pin_dir, strerror(-ret));
		return ret;
	}
	return 0;
}

int pins_remove_all(const char *pin_dir)
{
	char dir[PATH_MAX], path[PATH_MAX];
	int err = 0;

	for (size_t i = 0; i < sizeof(pin_subdirs) / sizeof(pin_subdirs[0]); i++) {
		struct dirent *de;
		DIR *d;

		if (pin_path(dir, sizeof(dir), pin_dir, pin_subdirs[i], NULL) < 0)
			return -ENAMETOOLONG;
		d = opendir(dir);
		if (!d) {
			if (errno != ENOENT && !err)
				err = -errno;
			continue;
		}
		while ((de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			if (pin_path(path, sizeof(path), dir, NULL, de->d_name) < 0 ||
			    unlink(path) < 0) {
				if (!err)
					err = -errno;
				pr_err("cannot remove pin %s: %s", path, strerror(errno));
			}
		}
		closedir(d);
		if (rmdir(dir) < 0 && errno != ENOENT && !err)
			err = -errno;
	}
	if (rmdir(pin_dir) < 0 && errno != ENOENT && !err) {
		err = -errno;
		pr_err("cannot remove %s: %s", pin_dir, strerror(-err));
	}
	return err;
}

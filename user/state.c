// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* The state directory: locks and the rule-name table. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "pins.h"
#include "state.h"

#define STATE_LOCK "lock"
#define STATE_DAEMON "daemon.pid"
#define STATE_RULES "rules"

static int open_in_state(const char *state_dir, const char *name, int flags)
{
	char path[PATH_MAX];
	int fd, err;

	err = mkdir_p(state_dir);
	if (err) {
		pr_err("cannot create state directory %s: %s", state_dir, strerror(-err));
		return err;
	}
	if (pin_path(path, sizeof(path), state_dir, NULL, name) < 0)
		return -ENAMETOOLONG;
	fd = open(path, flags | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		err = -errno;
		pr_err("cannot open %s: %s", path, strerror(-err));
		return err;
	}
	return fd;
}

int state_lock_writers(const char *state_dir)
{
	int fd = open_in_state(state_dir, STATE_LOCK, O_RDWR | O_CREAT);

	if (fd < 0)
		return fd;
	if (flock(fd, LOCK_EX) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

int state_lock_daemon(const char *state_dir, int *pid)
{
	char buf[32];
	int fd = open_in_state(state_dir, STATE_DAEMON, O_RDWR | O_CREAT);
	ssize_t n;

	if (fd < 0)
		return fd;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int err = errno == EWOULDBLOCK ? -EBUSY : -errno;

		n = pread(fd, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = '\0';
		*pid = atoi(buf);
		close(fd);
		return err;
	}
	n = snprintf(buf, sizeof(buf), "%d\n", getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, n, 0) != n) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd; /* held until the daemon exits */
}

/*
 * A flock cannot be tested without taking it (which would make a daemon starting at that
 * moment fail), so read /proc/locks instead: the lock on daemon.pid's inode held by the pid
 * the file names means that daemon is alive.
 */
int state_daemon_pid(const char *state_dir)
{
	char path[PATH_MAX], buf[32], line[256];
	struct stat st;
	int fd, pid, found = 0;
	ssize_t n;
	FILE *f;

	if (pin_path(path, sizeof(path), state_dir, NULL, STATE_DAEMON) < 0)
		return -ENAMETOOLONG;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return -errno;
	}
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	pid = atoi(buf);
	if (pid <= 0)
		return 0;
	f = fopen("/proc/locks", "re");
	if (!f)
		return -errno;
	/* "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5678 0 EOF"; waiters have "->" and are skipped. */
	while (!found && fgets(line, sizeof(line), f)) {
		unsigned maj, min;
		unsigned long long ino;
		int holder;

		if (sscanf(line, "%*d: FLOCK %*s %*s %d %x:%x:%llu", &holder, &maj, &min, &ino) == 4 &&
		    holder == pid && ino == (unsigned long long)st.st_ino)
			found = 1;
	}
	fclose(f);
	return found ? pid : 0;
}

/*
 * Write a state file atomically (temporary file, fsync, rename, fsync of the directory),
 * mode 0600: once this returns, the new content survives a crash, not just the old or new.
 */
int state_write_file(const char *state_dir, const char *name, const char *data,
			    size_t len)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	int fd, err = 0;

	err = mkdir_p(state_dir);
	if (err)
		return err;
	if (pin_path(path, sizeof(path), state_dir, NULL, name) < 0 ||
	    snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	for (size_t off = 0; off < len && !err;) {
		ssize_t w = write(fd, data + off, len - off);

		if (w < 0)
			err = -errno;
		else
			off += w;
	}
	if (!err && fsync(fd) < 0)
		err = -errno;
	if (close(fd) < 0 && !err)
		err = -errno;
	if (!err && rename(tmp, path) < 0)
		err = -errno;
	if (!err) {
		/* The rename is durable only once the directory is. */
		int dir = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (dir < 0 || fsync(dir) < 0)
			err = -errno;
		if (dir >= 0)
			close(dir);
		if (err) {
			pr_err("cannot write %s: %s", path, strerror(-err));
			return err; /* written and renamed, not known to be durable */
		}
	}
	if (err) {
		unlink(tmp);
		pr_err("cannot write %s: %s", path, strerror(-err));
	}
	return err;
}

int state_write_rules(const char *state_dir, const struct policy *p, __u32 generation)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	int err;

	if (!f)
		return -errno;
	fprintf(f, "generation %u\n", generation);
	for (size_t i = 0; i < p->nidents; i++) { /* per rule on every load: no printf */
		fputs(p->idents[i].name, f);
		fputc('\n', f);
	}
	if (fclose(f) != 0) {
		free(text);
		return -ENOMEM;
	}
	err = state_write_file(state_dir, STATE_RULES, text, len);
	free(text);
	return err;
}

int state_append_rules(const char *state_dir, const struct policy *p, size_t from)
{
	char path[PATH_MAX];
	FILE *f;
	int err = 0;

	if (from >= p->nidents)
		return 0;
	if (pin_path(path, sizeof(path), state_dir, NULL, STATE_RULES) < 0)
		return -ENAMETOOLONG;
	f = fopen(path, "ae");
	if (!f)
		return -errno;
	for (size_t i = from; i < p->nidents; i++)
		fprintf(f, "%s\n", p->idents[i].name);
	if (fclose(f) != 0)
		err = -errno;
	return err;
}

int state_read_rules(const char *state_dir, struct rule_table *t)
{
	char path[PATH_MAX], *line = NULL;
	size_t cap = 0, alloc = 0;
	ssize_t len;
	FILE *f;

	memset(t, 0, sizeof(*t));
	if (pin_path(path, sizeof(path), state_dir, NULL, STATE_RULES) < 0)
		return -ENAMETOOLONG;
	f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? 0 : -errno;
	if (fscanf(f, "generation %u\n", &t->generation) != 1) {
		fclose(f);
		return -EINVAL;
	}
	while ((len = getline(&line, &cap, f)) > 0) {
		if (line[len - 1] == '\n')
			line[len - 1] = '\0';
		if (t->n == alloc) {
			size_t grown = alloc ? alloc * 2 : 64;
			char **names = realloc(t->names, grown * sizeof(*names));

			if (!names)
				break;
			t->names = names;
			alloc = grown;
		}
		t->names[t->n] = strdup(line);
		if (!t->names[t->n])
			break;
		t->n++;
	}
	free(line);
	fclose(f);
	return 0;
}

const char *rule_table_name(const struct rule_table *t, __u32 generation, __u32 rule_id,
			    char *buf, size_t len)
{
	if (rule_id == SLUICE_RULE_DEFAULT)
		return "default";
	if (rule_id == SLUICE_RULE_NONE)
		return "";
	/* Names are only appended until the next full install writes a new table. */
	if (generation >= t->generation && rule_id < t->n)
		return t->names[rule_id];
	snprintf(buf, len, "#%u@%u", rule_id, generation);
	return buf;
}

int rule_table_append(struct rule_table *t, const struct policy *p)
{
	char **names;

	if (t->n > p->nidents)
		return -EINVAL; /* not the table p's names were appended to */
	if (t->n == p->nidents)
		return 0;
	names = realloc(t->names, p->nidents * sizeof(*names));
	if (!names)
		return -ENOMEM;
	t->names = names;
	for (; t->n < p->nidents; t->n++) {
		t->names[t->n] = strdup(p->idents[t->n].name);
		if (!t->names[t->n])
			return -ENOMEM;
	}
	return 0;
}

void rule_table_free(struct rule_table *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->names[i]);
	free(t->names);
	memset(t, 0, sizeof(*t));
}

void state_remove_rules(const char *state_dir)
{
	char path[PATH_MAX];

	if (pin_path(path, sizeof(path), state_dir, NULL, STATE_RULES) == 0)
		unlink(path);
}

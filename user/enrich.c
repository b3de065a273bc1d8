// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Bounded, expiring caches of user, cgroup and interface names (enrich.h). */
#define _GNU_SOURCE /* open_by_handle_at, struct file_handle */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <pthread.h>
#include <signal.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/mount.h>

#include "enrich.h"
#include "log.h"

/* Entries per cache (direct-mapped: a key lives in slot key % size). */
#define ENRICH_USERS 256
#define ENRICH_CGROUPS 256
#define ENRICH_IFACES 64
/* Seconds a name is trusted; a miss (unknown name) is remembered as long. */
#define ENRICH_TTL 60
/* Bytes of a user name we keep; longer ones are cut. */
#define ENRICH_USER_MAX 64
/* The kernfs file handle type: an 8-byte cgroup id (the kernel's FILEID_KERNFS). */
#define FILEID_KERNFS 0xfe
/*
 * User names come from NSS, which on a cluster is often LDAP or SSSD: a lookup can hang for
 * seconds when the directory is slow, and the event loop must never wait that long (the
 * ring buffer fills, events are lost). Lookups run on a thread of their own; the loop waits
 * at most this long for a new uid's answer, and only when no other lookup is in flight.
 * Until the answer comes, events carry the uid without a name.
 */
#define USER_LOOKUP_WAIT_MS 50
#define USER_QUEUE_MAX 64 /* uids waiting for a lookup, and answers waiting to be read */

struct slot {
	uint64_t key;
	time_t at; /* 0: empty */
	bool known;
};

struct user_answer {
	uint32_t uid;
	bool known;
	char name[ENRICH_USER_MAX];
};

/* The lookup thread and what it shares with the event loop, under lock. */
struct resolver {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t work, answered;
	uint32_t queue[USER_QUEUE_MAX];
	size_t nqueue;
	struct user_answer answers[USER_QUEUE_MAX];
	size_t nanswers;
	bool busy;   /* a lookup is running */
	bool stop;   /* enrich_free: finish */
	bool orphan; /* enrich_free left while a lookup hung: the thread frees this itself */
};

struct enrich {
	struct slot user_slot[ENRICH_USERS];
	char user[ENRICH_USERS][ENRICH_USER_MAX];
	struct slot cg_slot[ENRICH_CGROUPS];
	char *cgroup[ENRICH_CGROUPS]; /* PATH_MAX each */
	struct slot if_slot[ENRICH_IFACES];
	char iface[ENRICH_IFACES][IF_NAMESIZE];
	int cg_mount_fd;             /* a directory on the cgroup2 mount, -1 if none */
	char cg_mountpoint[PATH_MAX]; /* where readlink shows that mount */
	char cg_root[PATH_MAX];      /* the mount's root inside the hierarchy ("" for "/") */
	struct resolver *resolver;   /* NULL: lookups inline (the thread could not start) */
};

/* Look key up in a cache; returns the slot and whether it holds key, fresh. */
static struct slot *cache_slot(struct slot *slots, size_t n, uint64_t key, time_t now, bool *hit)
{
	struct slot *s = &slots[key % n];

	*hit = s->at && s->key == key && now - s->at < ENRICH_TTL;
	return s;
}

/*
 * Find the cgroup2 mount in a mountinfo file: "ID PARENT DEV ROOT MOUNTPOINT OPTS... -
 * FSTYPE ...". Returns 0 with root and mountpoint filled.
 */
static int find_cgroup2(const char *mountinfo, char *root, char *mountpoint)
{
	char line[2 * PATH_MAX], r[PATH_MAX], mp[PATH_MAX];
	FILE *f = fopen(mountinfo, "re");
	int ret = -ENOENT;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		char *sep = strstr(line, " - ");

		if (!sep || strncmp(sep, " - cgroup2 ", 11) != 0)
			continue;
		if (sscanf(line, "%*s %*s %*s %4095s %4095s", r, mp) != 2)
			continue;
		strcpy(root, strcmp(r, "/") == 0 ? "" : r);
		strcpy(mountpoint, mp);
		ret = 0;
		break;
	}
	fclose(f);
	return ret;
}

/*
 * A private, detached mount of the cgroup2 hierarchy (fsopen/fsmount: attached nowhere, so
 * no namespace sees a change). It works where no path reaches the hierarchy: `ip netns
 * exec` gives its command a fresh /sys without the cgroup mount. Readlink of a cgroup
 * opened through it shows the path from the hierarchy's root. Returns a directory fd.
 */
static int open_cgroup2_detached(void)
{
	int fs, mnt, fd = -1;

	fs = syscall(SYS_fsopen, "cgroup2", FSOPEN_CLOEXEC);
	if (fs < 0)
		return -errno;
	if (syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0) {
		mnt = syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, 0);
		if (mnt >= 0) {
			/* open_by_handle_at wants a real fd, not the O_PATH one fsmount gives. */
			fd = openat(mnt, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			close(mnt);
		}
	}
	if (fd < 0)
		fd = -errno;
	close(fs);
	return fd;
}

/* The cgroup2 hierarchy: detached (above), or else the mount in our mountinfo. */
static void open_cgroup_mount(struct enrich *x)
{
	char mp[PATH_MAX];

	x->cg_mount_fd = open_cgroup2_detached();
	if (x->cg_mount_fd >= 0)
		return; /* readlink shows paths from the root: no mount point, no root to add */
	if (find_cgroup2("/proc/self/mountinfo", x->cg_root, mp) == 0) {
		x->cg_mount_fd = open(mp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		snprintf(x->cg_mountpoint, sizeof(x->cg_mountpoint), "%s", mp);
	}
	if (x->cg_mount_fd < 0)
		pr_warn("no cgroup2 hierarchy found: events will carry no cgroup paths");
}

static bool nss_lookup(uint32_t uid, char *name, size_t len)
{
	struct passwd pw, *res = NULL;
	char buf[4096];

	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) != 0 || !res)
		return false;
	snprintf(name, len, "%s", pw.pw_name);
	return true;
}

static enrich_user_lookup_fn user_lookup = nss_lookup;

void enrich_set_user_lookup(enrich_user_lookup_fn fn)
{
	user_lookup = fn ? fn : nss_lookup;
}

static void *resolve_users(void *arg)
{
	struct resolver *r = arg;

	pthread_mutex_lock(&r->lock);
	for (;;) {
		struct user_answer a = {};

		while (!r->stop && r->nqueue == 0)
			pthread_cond_wait(&r->work, &r->lock);
		if (r->stop)
			break;
		a.uid = r->queue[0];
		memmove(r->queue, r->queue + 1, --r->nqueue * sizeof(r->queue[0]));
		r->busy = true;
		pthread_mutex_unlock(&r->lock);
		a.known = user_lookup(a.uid, a.name, sizeof(a.name));
		pthread_mutex_lock(&r->lock);
		r->busy = false;
		if (r->nanswers < USER_QUEUE_MAX)
			r->answers[r->nanswers++] = a;
		pthread_cond_broadcast(&r->answered);
	}
	if (r->orphan) {
		pthread_mutex_unlock(&r->lock);
		free(r);
		return NULL;
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

static struct resolver *resolver_start(void)
{
	struct resolver *r = calloc(1, sizeof(*r));
	sigset_t all, old;
	int err;

	if (!r)
		return NULL;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->work, NULL);
	pthread_cond_init(&r->answered, NULL);
	/* The daemon takes its signals through a signalfd: this thread must never take one. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&r->thread, NULL, resolve_users, r);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		pr_warn("cannot start the user-name lookup thread (%s): looking names up inline",
			strerror(err));
		free(r);
		return NULL;
	}
	return r;
}

/* Stop the thread; one stuck in a lookup is left to finish and free itself. */
static void resolver_stop(struct resolver *r)
{
	bool stuck;

	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->stop = true;
	stuck = r->busy;
	r->orphan = stuck;
	pthread_cond_signal(&r->work);
	pthread_mutex_unlock(&r->lock);
	if (stuck) {
		pthread_detach(r->thread);
		return;
	}
	pthread_join(r->thread, NULL);
	free(r);
}

static void remember_user(struct enrich *x, const struct user_answer *a, time_t now)
{
	struct slot *s = &x->user_slot[a->uid % ENRICH_USERS];

	s->key = a->uid;
	s->at = now;
	s->known = a->known;
	if (a->known)
		snprintf(x->user[s - x->user_slot], ENRICH_USER_MAX, "%s", a->name);
}

/* Move the thread's answers into the cache. Called with r->lock held. */
static void take_answers(struct enrich *x, struct resolver *r, time_t now)
{
	for (size_t i = 0; i < r->nanswers; i++)
		remember_user(x, &r->answers[i], now);
	r->nanswers = 0;
}

static bool answered(const struct resolver *r, uint32_t uid)
{
	for (size_t i = 0; i < r->nanswers; i++)
		if (r->answers[i].uid == uid)
			return true;
	return false;
}

/*
 * Ask the thread for uid. Wait for the answer (at most USER_LOOKUP_WAIT_MS) only when the
 * thread had nothing else to do: a slow directory then costs the loop one short wait, not
 * one per uid.
 */
static void lookup_user(struct enrich *x, struct resolver *r, uint32_t uid, time_t now)
{
	struct timespec deadline;
	bool idle;

	pthread_mutex_lock(&r->lock);
	idle = !r->busy && r->nqueue == 0;
	if (r->nqueue == USER_QUEUE_MAX) {
		pthread_mutex_unlock(&r->lock);
		return; /* the slot stays pending: asked again once it expires */
	}
	r->queue[r->nqueue++] = uid;
	pthread_cond_signal(&r->work);
	if (idle) {
		clock_gettime(CLOCK_REALTIME, &deadline);
		deadline.tv_nsec += USER_LOOKUP_WAIT_MS * 1000000L;
		if (deadline.tv_nsec >= 1000000000L) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000L;
		}
		while (!answered(r, uid) &&
		       pthread_cond_timedwait(&r->answered, &r->lock, &deadline) == 0)
			;
	}
	take_answers(x, r, now);
	pthread_mutex_unlock(&r->lock);
}

struct enrich *enrich_new(void)
{
	struct enrich *x = calloc(1, sizeof(*x));

	if (!x)
		return NULL;
	for (size_t i = 0; i < ENRICH_CGROUPS; i++) {
		x->cgroup[i] = malloc(PATH_MAX);
		if (!x->cgroup[i]) {
			enrich_free(x);
			return NULL;
		}
	}
	open_cgroup_mount(x);
	x->resolver = resolver_start();
	return x;
}

void enrich_free(struct enrich *x)
{
	if (!x)
		return;
	resolver_stop(x->resolver);
	for (size_t i = 0; i < ENRICH_CGROUPS; i++)
		free(x->cgroup[i]);
	if (x->cg_mount_fd >= 0)
		close(x->cg_mount_fd);
	free(x);
}

const char *enrich_user(struct enrich *x, uint32_t uid)
{
	time_t now = time(NULL);
	struct resolver *r = x->resolver;
	bool hit;
	struct slot *s;

	if (r) {
		pthread_mutex_lock(&r->lock);
		take_answers(x, r, now);
		pthread_mutex_unlock(&r->lock);
	}
	s = cache_slot(x->user_slot, ENRICH_USERS, uid, now, &hit);
	if (!hit) {
		s->key = uid;
		s->at = now;
		s->known = false; /* until the lookup answers */
		if (r) {
			lookup_user(x, r, uid, now);
		} else {
			struct user_answer a = { .uid = uid };

			a.known = user_lookup(uid, a.name, sizeof(a.name));
			remember_user(x, &a, now);
		}
	}
	return s->key == uid && s->known ? x->user[s - x->user_slot] : NULL;
}

/* The path of cgroup id under the cgroup2 root: open it by handle, read the fd's link. */
static int cgroup_path(struct enrich *x, uint64_t id, char *out)
{
	struct {
		struct file_handle fh;
		uint64_t id;
	} h = { .fh = { .handle_bytes = sizeof(uint64_t), .handle_type = FILEID_KERNFS } };
	char link[64], path[PATH_MAX];
	size_t mplen = strlen(x->cg_mountpoint);
	ssize_t n;
	int fd;

	if (x->cg_mount_fd < 0)
		return -ENOENT;
	memcpy(h.fh.f_handle, &id, sizeof(id));
	fd = open_by_handle_at(x->cg_mount_fd, &h.fh, O_PATH | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	close(fd);
	if (n < 0)
		return -errno;
	path[n] = '\0';
	if (strncmp(path, x->cg_mountpoint, mplen) != 0 || (path[mplen] && path[mplen] != '/'))
		return -ENOENT;
	if (snprintf(out, PATH_MAX, "%s%s", x->cg_root, path[mplen] ? path + mplen : "/") >=
	    PATH_MAX)
		return -ENAMETOOLONG;
	return 0;
}

const char *enrich_cgroup(struct enrich *x, uint64_t id)
{
	time_t now = time(NULL);
	bool hit;
	struct slot *s = cache_slot(x->cg_slot, ENRICH_CGROUPS, id, now, &hit);
	char *path = x->cgroup[s - x->cg_slot];

	if (hit)
		return s->known ? path : NULL;
	s->key = id;
	s->at = now;
	s->known = cgroup_path(x, id, path) == 0;
	return s->known ? path : NULL;
}

const char *enrich_iface(struct enrich *x, uint32_t ifindex)
{
	time_t now = time(NULL);
	bool hit;
	struct slot *s = cache_slot(x->if_slot, ENRICH_IFACES, ifindex, now, &hit);
	char *name = x->iface[s - x->if_slot];

	if (hit)
		return s->known ? name : NULL;
	s->key = ifindex;
	s->at = now;
	s->known = ifindex && if_indextoname(ifindex, name) != NULL;
	return s->known ? name : NULL;
}

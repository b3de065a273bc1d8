// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* The daemon's control socket: a JSON line in, a JSON line out, root (the daemon's uid) only. */
#define _GNU_SOURCE /* struct ucred */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control.h"
#include "log.h"
#include "pins.h"

/* A client that stops mid-request or mid-reply holds the daemon at most this long. */
#define CONTROL_TIMEOUT_MS 2000
/* A command waits this long for the daemon's answer (a full reinstall of a large policy). */
#define CONTROL_REPLY_TIMEOUT_MS 120000

static int socket_address(const char *state_dir, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (pin_path(sa->sun_path, sizeof(sa->sun_path), state_dir, NULL, CONTROL_SOCKET) < 0)
		return -ENAMETOOLONG;
	return 0;
}

int control_listen(const char *state_dir)
{
	struct sockaddr_un sa;
	mode_t old_mask;
	int fd, err;

	err = socket_address(state_dir, &sa);
	if (err) {
		pr_err("control socket path under %s is too long", state_dir);
		return err;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* Only the daemon (holding the daemon lock) gets here: a leftover socket is stale. */
	unlink(sa.sun_path);
	old_mask = umask(0077);
	err = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
	umask(old_mask);
	if (!err && listen(fd, 16) < 0)
		err = -errno;
	if (err) {
		pr_err("cannot listen on %s: %s", sa.sun_path, strerror(-err));
		close(fd);
		return err;
	}
	return fd;
}

void control_close(int fd, const char *state_dir)
{
	struct sockaddr_un sa;

	if (fd < 0)
		return;
	close(fd);
	if (!socket_address(state_dir, &sa))
		unlink(sa.sun_path);
}

/* Wait until fd is ready for events; -ETIMEDOUT after timeout_ms. */
static int wait_ready(int fd, short events, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	int n = poll(&p, 1, timeout_ms);

	return n > 0 ? 0 : n == 0 ? -ETIMEDOUT : -errno;
}

/* Read one line (without its newline) of at most CONTROL_REQUEST_MAX bytes. */
static int read_line(int fd, char *buf, size_t cap, int timeout_ms)
{
	size_t len = 0;

	for (;;) {
		ssize_t n;
		int err = wait_ready(fd, POLLIN, timeout_ms);

		if (err)
			return err;
		n = read(fd, buf + len, cap - 1 - len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EPIPE;
		len += n;
		buf[len] = '\0';
		char *nl = memchr(buf, '\n', len);

		if (nl) {
			*nl = '\0';
			return 0;
		}
		if (len == cap - 1)
			return -EMSGSIZE;
	}
}

static int write_all(int fd, const char *s, size_t len)
{
	while (len) {
		ssize_t n;
		int err = wait_ready(fd, POLLOUT, CONTROL_TIMEOUT_MS);

		if (err)
			return err;
		n = send(fd, s, len, MSG_NOSIGNAL);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return -errno;
		s += n;
		len -= n;
	}
	return 0;
}

static int send_json(int fd, json_t *doc)
{
	char *text = json_dumps(doc, JSON_COMPACT);
	int err;

	if (!text)
		return -ENOMEM;
	err = write_all(fd, text, strlen(text));
	if (!err)
		err = write_all(fd, "\n", 1);
	free(text);
	return err;
}

int control_serve_one(int lfd, json_t *(*handler)(json_t *request, bool *keep, void *ctx),
		      void *ctx, int *kept_fd)
{
	bool keep = false;
	char buf[CONTROL_REQUEST_MAX];
	struct ucred cred;
	socklen_t len = sizeof(cred);
	json_t *request = NULL, *reply;
	json_error_t jerr;
	int fd, err;

	*kept_fd = -1;
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	/* The socket is 0600 already; the peer check keeps it so if the mode is ever changed. */
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.uid != geteuid()) {
		reply = json_pack("{s:b,s:s}", "ok", 0, "error", "permission denied");
		goto answer;
	}
	err = read_line(fd, buf, sizeof(buf), CONTROL_TIMEOUT_MS);
	if (!err)
		request = json_loads(buf, JSON_REJECT_DUPLICATES, &jerr);
	if (!request || !json_is_object(request))
		reply = json_pack("{s:b,s:s}", "ok", 0, "error", "malformed request");
	else
		reply = handler(request, &keep, ctx);
answer:
	err = reply ? send_json(fd, reply) : 0;
	json_decref(reply);
	json_decref(request);
	if (keep && !err)
		*kept_fd = fd;
	else
		close(fd);
	return 0;
}

int control_open(const char *state_dir, json_t *request, json_t **reply)
{
	char buf[CONTROL_REQUEST_MAX];
	struct sockaddr_un sa;
	json_error_t jerr;
	int fd, err;

	*reply = NULL;
	err = socket_address(state_dir, &sa);
	if (err)
		return err;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		err = -errno;
	if (!err)
		err = send_json(fd, request);
	/* One byte at a time: what follows the reply line is the caller's to read. */
	for (size_t len = 0; !err; len++) {
		ssize_t n = len < sizeof(buf) - 1 ? read(fd, buf + len, 1) : -1;

		if (n < 0 && errno == EINTR) {
			len--;
			continue;
		}
		if (n <= 0) {
			err = n < 0 && len < sizeof(buf) - 1 ? -errno : -EPROTO;
			break;
		}
		if (buf[len] == '\n') {
			buf[len] = '\0';
			break;
		}
	}
	if (!err) {
		*reply = json_loads(buf, 0, &jerr);
		if (!*reply)
			err = -EPROTO;
	}
	if (err) {
		close(fd);
		return err;
	}
	return fd;
}

int control_request(const char *state_dir, json_t *request, json_t **reply)
{
	char buf[CONTROL_REQUEST_MAX];
	struct sockaddr_un sa;
	json_error_t jerr;
	int fd, err;

	*reply = NULL;
	err = socket_address(state_dir, &sa);
	if (err)
		return err;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	err = send_json(fd, request);
	if (!err)
		err = read_line(fd, buf, sizeof(buf), CONTROL_REPLY_TIMEOUT_MS);
	close(fd);
	if (err)
		return err;
	*reply = json_loads(buf, 0, &jerr);
	return *reply ? 0 : -EPROTO;
}

int control_call(const char *state_dir, const char *command, json_t **reply)
{
	json_t *request = json_pack("{s:s}", "command", command);
	int err = request ? control_request(state_dir, request, reply) : -ENOMEM;

	json_decref(request);
	return err;
}

/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The daemon's control socket (STATE_DIR/control.sock, 0600): one JSON request line per
 * connection, one JSON reply line. Lets commands ask the running daemon to act with what it
 * keeps in memory (an override applied in place instead of a whole policy reinstall).
 */
#ifndef SLUICE_CONTROL_H
#define SLUICE_CONTROL_H

#include <stdbool.h>
#include <jansson.h>

#define CONTROL_SOCKET "control.sock"
#define CONTROL_REQUEST_MAX 4096 /* bytes of one request line */

/* Create the listening socket (replacing a stale one). Returns the fd or -errno. */
int control_listen(const char *state_dir);
void control_close(int fd, const char *state_dir);

/*
 * Accept one connection on lfd and answer it: handler gets the request object and returns
 * the reply (a new reference). Requests from other users than the daemon's are refused.
 * A handler that sets *keep wants the connection for a stream (`sluice events`): after the
 * reply, its fd (non-blocking) is handed back in *kept_fd, else *kept_fd is -1.
 */
int control_serve_one(int lfd, json_t *(*handler)(json_t *request, bool *keep, void *ctx),
		      void *ctx, int *kept_fd);

/*
 * Send {"command": command} to the daemon of state_dir and wait for its reply (a new
 * reference in *reply). -ENOENT or -ECONNREFUSED: no daemon is listening.
 */
int control_call(const char *state_dir, const char *command, json_t **reply);
/* The same with a whole request object (its "command" and arguments); request is not freed. */
int control_request(const char *state_dir, json_t *request, json_t **reply);

/*
 * Send request to the daemon of state_dir and read its reply line; the connection stays
 * open for what follows (a stream). Returns the fd, or -errno (-EPROTO: a bad reply).
 */
int control_open(const char *state_dir, json_t *request, json_t **reply);

#endif

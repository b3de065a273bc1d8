/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The exporter's web configuration: TLS and basic auth, read from a file in the format of
 * Prometheus' exporter web configuration (exporter-toolkit), so a site's existing files
 * and habits carry over:
 *
 *   tls_server_config:
 *     cert_file: /etc/sluice/tls/cert.pem
 *     key_file: /etc/sluice/tls/key.pem
 *     min_version: TLS12            # or TLS13
 *   basic_auth_users:
 *     prometheus: $2y$10$...        # bcrypt
 *
 * Keys sluice does not implement (client certificates, cipher lists, HTTP headers) are
 * refused with FILE:LINE:COL, never ignored: a security setting must not silently vanish.
 */
#ifndef SLUICE_WEB_CONFIG_H
#define SLUICE_WEB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#define WEB_USERS_MAX 64
#define WEB_USER_MAX 128      /* bytes of a user name */
#define WEB_PASSWORD_MAX 256  /* bytes of a password a client may send */
#define WEB_PEM_MAX (1 << 20) /* a certificate chain or key file */
#define WEB_ERROR_MAX 1280

struct web_user {
	char name[WEB_USER_MAX];
	char hash[64];                   /* bcrypt: $2a$, $2b$ or $2y$, 60 characters */
	char verified[WEB_PASSWORD_MAX]; /* the password last checked good, to skip bcrypt */
	bool has_verified;
};

struct web_config {
	bool tls;
	char *cert_pem, *key_pem; /* the files' contents (malloc'd) */
	bool tls13_only;
	struct web_user users[WEB_USERS_MAX];
	size_t nusers;
};

/* Read path into wc (zeroed first). err: "FILE:LINE:COL: message" or "FILE: message". */
int web_config_load(const char *path, struct web_config *wc, char err[WEB_ERROR_MAX]);
void web_config_free(struct web_config *wc);

/*
 * Are user and password one of the configured users' (bcrypt)? A good password is
 * remembered per user, so a scraper's every-second requests cost one bcrypt, not one each.
 * Not thread-safe: the exporter calls it from its one serving thread.
 */
bool web_auth_check(struct web_config *wc, const char *user, const char *password);

#endif

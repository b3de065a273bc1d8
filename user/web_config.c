// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* The exporter's web configuration (TLS, basic auth): parsing with libyaml, bcrypt checks. */
#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <yaml.h>

#include "web_config.h"

#define WEB_CONFIG_BYTES_MAX (64 * 1024) /* a web configuration is a few lines */

struct wparse {
	const char *path;
	char *err;
	yaml_document_t doc;
};

static int fail_at(struct wparse *p, const yaml_node_t *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail_at(struct wparse *p, const yaml_node_t *n, const char *fmt, ...)
{
	char msg[WEB_ERROR_MAX / 2];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(p->err, WEB_ERROR_MAX, "%s:%zu:%zu: %s", p->path, n->start_mark.line + 1,
		 n->start_mark.column + 1, msg);
	return -EINVAL;
}

static const char *scalar(const yaml_node_t *n)
{
	return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* Read a whole file of at most max bytes; *out is malloc'd and terminated. */
static int read_file(const char *path, size_t max, char **out, struct stat *st)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), err = 0;
	ssize_t n = 0;
	char *buf;

	*out = NULL;
	if (fd < 0)
		return -errno;
	if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
		err = S_ISREG(st->st_mode) ? -errno : -EINVAL;
		close(fd);
		return err;
	}
	if ((size_t)st->st_size > max) {
		close(fd);
		return -EFBIG;
	}
	buf = malloc(st->st_size + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while (n < st->st_size) {
		ssize_t r = read(fd, buf + n, st->st_size - n);

		if (r <= 0) {
			err = r < 0 ? -errno : -EIO;
			break;
		}
		n += r;
	}
	close(fd);
	if (err) {
		free(buf);
		return err;
	}
	buf[n] = '\0';
	*out = buf;
	return 0;
}

/* A PEM file named by key at node n: read, of the expected kind, and (a key) private. */
static int load_pem(struct wparse *p, const yaml_node_t *n, const char *key, const char *marker,
		    bool secret, char **out)
{
	const char *path = scalar(n);
	struct stat st;
	int err;

	if (!path || !path[0])
		return fail_at(p, n, "%s: expected a file path", key);
	err = read_file(path, WEB_PEM_MAX, out, &st);
	if (err)
		return fail_at(p, n, "%s: cannot read %s: %s", key, path,
			       err == -EFBIG ? "larger than 1 MiB" : strerror(-err));
	if (!strstr(*out, marker))
		return fail_at(p, n, "%s: %s holds no %s", key, path, marker);
	if (secret && (st.st_mode & 0077))
		return fail_at(p, n, "%s: %s is readable by others (mode %04o): a private key "
			       "must be 0600 or 0400", key, path, st.st_mode & 07777);
	return 0;
}

static int parse_tls(struct wparse *p, yaml_node_t *map, struct web_config *wc)
{
	yaml_node_t *cert = NULL, *key = NULL;

	if (map->type != YAML_MAPPING_NODE)
		return fail_at(p, map, "tls_server_config: expected keys (cert_file, key_file)");
	for (yaml_node_pair_t *pair = map->data.mapping.pairs.start;
	     pair < map->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = yaml_document_get_node(&p->doc, pair->key);
		yaml_node_t *v = yaml_document_get_node(&p->doc, pair->value);
		const char *name = scalar(k);

		if (!name)
			return fail_at(p, k, "tls_server_config: expected a key name");
		if (strcmp(name, "cert_file") == 0) {
			cert = v;
		} else if (strcmp(name, "key_file") == 0) {
			key = v;
		} else if (strcmp(name, "min_version") == 0) {
			const char *ver = scalar(v);

			if (ver && strcmp(ver, "TLS13") == 0)
				wc->tls13_only = true;
			else if (!ver || strcmp(ver, "TLS12") != 0)
				return fail_at(p, v, "min_version must be TLS12 or TLS13");
		} else {
			return fail_at(p, k, "tls_server_config: '%s' is not supported by sluice "
				       "(cert_file, key_file, min_version)", name);
		}
	}
	if (!cert || !key)
		return fail_at(p, map, "tls_server_config needs both cert_file and key_file");
	wc->tls = true;
	if (load_pem(p, cert, "cert_file", "-----BEGIN CERTIFICATE-----", false, &wc->cert_pem))
		return -EINVAL;
	return load_pem(p, key, "key_file", "PRIVATE KEY-----", true, &wc->key_pem);
}

/* $2a$, $2b$ or $2y$, a two-digit cost, 53 characters of bcrypt's base64. */
static bool is_bcrypt(const char *h)
{
	if (strlen(h) != 60 || h[0] != '$' || h[1] != '2' || !strchr("aby", h[2]) || h[3] != '$' ||
	    h[4] < '0' || h[4] > '3' || h[5] < '0' || h[5] > '9' || h[6] != '$')
		return false;
	return strspn(h + 7, "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") ==
	       53;
}

static int parse_users(struct wparse *p, yaml_node_t *map, struct web_config *wc)
{
	if (map->type != YAML_MAPPING_NODE)
		return fail_at(p, map, "basic_auth_users: expected 'user: bcrypt-hash' lines");
	for (yaml_node_pair_t *pair = map->data.mapping.pairs.start;
	     pair < map->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = yaml_document_get_node(&p->doc, pair->key);
		yaml_node_t *v = yaml_document_get_node(&p->doc, pair->value);
		const char *user = scalar(k), *hash = scalar(v);
		struct web_user *u;

		if (!user || !user[0] || strlen(user) >= WEB_USER_MAX || strchr(user, ':'))
			return fail_at(p, k, "basic_auth_users: a user name is 1..%d bytes, no ':'",
				       WEB_USER_MAX - 1);
		if (!hash || !is_bcrypt(hash))
			return fail_at(p, v, "basic_auth_users: %s: expected a bcrypt hash ($2y$...)",
				       user);
		for (size_t i = 0; i < wc->nusers; i++)
			if (strcmp(wc->users[i].name, user) == 0)
				return fail_at(p, k, "basic_auth_users: %s is given twice", user);
		if (wc->nusers == WEB_USERS_MAX)
			return fail_at(p, k, "basic_auth_users: at most %d users", WEB_USERS_MAX);
		u = &wc->users[wc->nusers++];
		snprintf(u->name, sizeof(u->name), "%s", user);
		snprintf(u->hash, sizeof(u->hash), "%s", hash);
	}
	if (wc->nusers == 0)
		return fail_at(p, map, "basic_auth_users: no user (remove the key for no auth)");
	return 0;
}

static int parse_root(struct wparse *p, struct web_config *wc)
{
	yaml_node_t *root = yaml_document_get_root_node(&p->doc);

	if (!root || root->type != YAML_MAPPING_NODE) {
		snprintf(p->err, WEB_ERROR_MAX, "%s: expected tls_server_config and/or "
			 "basic_auth_users", p->path);
		return -EINVAL;
	}
	for (yaml_node_pair_t *pair = root->data.mapping.pairs.start;
	     pair < root->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = yaml_document_get_node(&p->doc, pair->key);
		yaml_node_t *v = yaml_document_get_node(&p->doc, pair->value);
		const char *name = scalar(k);
		int err;

		if (name && strcmp(name, "tls_server_config") == 0)
			err = wc->tls ? fail_at(p, k, "tls_server_config is given twice")
				      : parse_tls(p, v, wc);
		else if (name && strcmp(name, "basic_auth_users") == 0)
			err = wc->nusers ? fail_at(p, k, "basic_auth_users is given twice")
					 : parse_users(p, v, wc);
		else
			err = fail_at(p, k, "'%s' is not supported by sluice (tls_server_config, "
				      "basic_auth_users)", name ? name : "?");
		if (err)
			return err;
	}
	return 0;
}

int web_config_load(const char *path, struct web_config *wc, char err[WEB_ERROR_MAX])
{
	struct wparse p = { .path = path, .err = err };
	yaml_parser_t parser;
	struct stat st;
	char *text;
	int ret;

	memset(wc, 0, sizeof(*wc));
	ret = read_file(path, WEB_CONFIG_BYTES_MAX, &text, &st);
	if (ret) {
		snprintf(err, WEB_ERROR_MAX, "cannot read web configuration %s: %s", path,
			 ret == -EFBIG ? "larger than 64 KiB" : strerror(-ret));
		return ret;
	}
	if (!yaml_parser_initialize(&parser)) {
		free(text);
		snprintf(err, WEB_ERROR_MAX, "%s: cannot start the YAML parser", path);
		return -ENOMEM;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
	if (!yaml_parser_load(&parser, &p.doc)) {
		snprintf(err, WEB_ERROR_MAX, "%s:%zu:%zu: %s", path, parser.problem_mark.line + 1,
			 parser.problem_mark.column + 1,
			 parser.problem ? parser.problem : "not YAML");
		ret = -EINVAL;
	} else {
		ret = parse_root(&p, wc);
		yaml_document_delete(&p.doc);
	}
	yaml_parser_delete(&parser);
	free(text);
	if (ret)
		web_config_free(wc);
	return ret;
}

void web_config_free(struct web_config *wc)
{
	free(wc->cert_pem);
	if (wc->key_pem)
		explicit_bzero(wc->key_pem, strlen(wc->key_pem));
	free(wc->key_pem);
	explicit_bzero(wc, sizeof(*wc));
}

/* Compare without an early exit, so the time taken says nothing about where they differ. */
static bool same_secret(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned char diff = la != lb;

	for (size_t i = 0; i < la && i < lb; i++)
		diff |= (unsigned char)(a[i] ^ b[i]);
	return diff == 0;
}

bool web_auth_check(struct web_config *wc, const char *user, const char *password)
{
	static struct crypt_data cd; /* 32 KiB: not on the stack; one serving thread */
	struct web_user *u = NULL;
	const char *h;

	if (!user || !password || strlen(password) >= WEB_PASSWORD_MAX)
		return false;
	for (size_t i = 0; i < wc->nusers && !u; i++)
		if (strcmp(wc->users[i].name, user) == 0)
			u = &wc->users[i];
	if (!u)
		return false;
	if (u->has_verified && same_secret(u->verified, password))
		return true;
	h = crypt_rn(password, u->hash, &cd, sizeof(cd));
	if (!h || !same_secret(h, u->hash))
		return false;
	snprintf(u->verified, sizeof(u->verified), "%s", password);
	u->has_verified = true;
	return true;
}

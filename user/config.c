// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* The daemon's configuration file: parsing, flags laid over it, checks against the system. */
#include <arpa/inet.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sluice/abi.h>

#include "config.h"

#define CONFIG_TOKENS_MAX (2 * CONFIG_IFACES_MAX + 2) /* key, items and the commas between */

static const struct {
	const char *name;
	bool list; /* may repeat, and takes several values */
} keys[CONFIG_KEY_MAX] = {
	[CONFIG_INTERFACE] = { "interface", true },
	[CONFIG_XDP] = { "xdp", true },
	[CONFIG_MODE] = { "mode", false },
	[CONFIG_POLICY] = { "policy", false },
	[CONFIG_METRICS] = { "metrics", false },
	[CONFIG_EVENTS] = { "events", true },
	[CONFIG_PIN_DIR] = { "pin-dir", false },
	[CONFIG_STATE_DIR] = { "state-dir", false },
	[CONFIG_WEB_CONFIG] = { "web-config", false },
	[CONFIG_CONNECT_HOOKS] = { "connect-hooks", false },
};

const char *config_key_name(enum config_key key)
{
	return key < CONFIG_KEY_MAX ? keys[key].name : "?";
}

struct token {
	const char *text; /* not terminated: len bytes */
	size_t len;
	unsigned col; /* 1-based */
};

/* Where the values being read come from: a line of a file, or a flag. */
struct reader {
	const char *path; /* NULL for a flag */
	const char *origin;
	unsigned line;
	char *err;
	unsigned key_line[CONFIG_KEY_MAX]; /* where a once-only key was set */
};

static int fail(const struct reader *r, unsigned col, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(const struct reader *r, unsigned col, const char *fmt, ...)
{
	char msg[CONFIG_ERROR_MAX / 2];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (r->path)
		snprintf(r->err, CONFIG_ERROR_MAX, "%s:%u:%u: %s", r->path, r->line, col, msg);
	else
		snprintf(r->err, CONFIG_ERROR_MAX, "%s: %s", r->origin, msg);
	return -EINVAL;
}

void config_init(struct daemon_config *c)
{
	memset(c, 0, sizeof(*c));
	c->mode = -1;
	snprintf(c->policy.text, sizeof(c->policy.text), "%s", CONFIG_POLICY_DEFAULT);
	snprintf(c->metrics.text, sizeof(c->metrics.text), "%s", CONFIG_METRICS_DEFAULT);
	snprintf(c->pin_dir.text, sizeof(c->pin_dir.text), "%s", SLUICE_PIN_DIR_DEFAULT);
	snprintf(c->state_dir.text, sizeof(c->state_dir.text), "%s", SLUICE_STATE_DIR_DEFAULT);
	snprintf(c->events.items[0].text, sizeof(c->events.items[0].text), "%s",
		 CONFIG_EVENTS_DEFAULT);
	c->events.n = 1;
	c->policy.origin = c->metrics.origin = c->pin_dir.origin = c->state_dir.origin =
		c->events.items[0].origin = c->mode_at.origin = c->web_config.origin =
		c->connect_hooks.origin = "default";
}

/* Split a line into words and ','. '#' starts a comment. Returns the count or -EINVAL. */
static int tokenize(const struct reader *r, const char *line, struct token *tok)
{
	const char *c = line;
	int n = 0;

	for (;;) {
		while (*c == ' ' || *c == '\t' || *c == '\r')
			c++;
		if (*c == '\0' || *c == '\n' || *c == '#')
			return n;
		if (n == CONFIG_TOKENS_MAX)
			return fail(r, c - line + 1, "too many values on one line");
		tok[n].text = c;
		tok[n].col = c - line + 1;
		if (*c == ',') {
			tok[n++].len = 1;
			c++;
			continue;
		}
		while (*c && *c != ' ' && *c != '\t' && *c != '\r' && *c != '\n' && *c != '#' &&
		       *c != ',') {
			if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
				return fail(r, c - line + 1, "unexpected character 0x%02x",
					    (unsigned char)*c);
			c++;
		}
		tok[n].len = c - tok[n].text;
		n++;
	}
}

static bool tok_is(const struct token *t, const char *s)
{
	return t->len == strlen(s) && strncmp(t->text, s, t->len) == 0;
}

/* Copy a token into a value, recording where it was written. */
static int take(const struct reader *r, const struct token *t, struct config_value *v)
{
	if (t->len >= sizeof(v->text))
		return fail(r, t->col, "value longer than %zu characters", sizeof(v->text) - 1);
	memcpy(v->text, t->text, t->len);
	v->text[t->len] = '\0';
	v->line = r->path ? r->line : 0;
	v->col = t->col;
	v->origin = r->path ? NULL : r->origin;
	return 0;
}

bool config_is_pattern(const char *text)
{
	return strpbrk(text, "*?[") != NULL;
}

/* The kernel's rule for interface names (dev_valid_name), patterns allowed. */
static int check_ifname(const struct reader *r, const struct config_value *v)
{
	const char *s = v->text;

	if (strlen(s) >= IFNAMSIZ)
		return fail(r, v->col, "interface name '%s' is longer than %d characters", s,
			    IFNAMSIZ - 1);
	if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0 || strpbrk(s, "/:"))
		return fail(r, v->col, "'%s' is not a valid interface name", s);
	return 0;
}

static int check_absolute(const struct reader *r, const struct config_value *v, const char *key)
{
	if (v->text[0] != '/')
		return fail(r, v->col, "%s needs an absolute path, not '%s'", key, v->text);
	return 0;
}

/* ADDR:PORT with a numeric IPv4 address or [IPv6]:PORT; host names are not resolved. */
static int check_listen_address(const struct reader *r, const struct config_value *v)
{
	char host[INET6_ADDRSTRLEN + 2], addr[16];
	const char *s = v->text, *port;
	size_t hostlen;
	int family = AF_INET;
	char *end;
	long p;

	if (strcmp(s, "off") == 0)
		return 0;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (!close || close[1] != ':')
			goto bad;
		family = AF_INET6;
		s++;
		hostlen = close - s;
		port = close + 2;
	} else {
		port = strrchr(s, ':');
		if (!port)
			goto bad;
		hostlen = port - s;
		port++;
	}
	if (hostlen == 0 || hostlen >= sizeof(host))
		goto bad;
	memcpy(host, s, hostlen);
	host[hostlen] = '\0';
	if (inet_pton(family, host, addr) != 1)
		goto bad;
	if (*port < '0' || *port > '9')
		goto bad;
	errno = 0;
	p = strtol(port, &end, 10);
	if (*end || errno || p < 1 || p > 65535)
		return fail(r, v->col + (port - v->text), "port '%s' is out of range (1-65535)",
			    port);
	return 0;
bad:
	return fail(r, v->col,
		    "bad address '%s': expected IPV4:PORT, [IPV6]:PORT (numeric) or off",
		    v->text);
}

static int check_event_output(const struct reader *r, const struct config_value *v)
{
	if (strcmp(v->text, "stdout") == 0 || strcmp(v->text, "syslog") == 0 ||
	    strcmp(v->text, "off") == 0 || v->text[0] == '/')
		return 0;
	return fail(r, v->col,
		    "unknown event output '%s' (expected stdout, syslog, off or an absolute "
		    "file path)",
		    v->text);
}

/* Append the items of a list line (a, b, c or a b c) to list, checking each. */
static int add_list(struct reader *r, enum config_key key, const struct token *tok, int n,
		    struct config_list *list)
{
	bool after_comma = false;
	int err;

	for (int i = 1; i < n; i++) {
		struct config_value v;

		if (tok_is(&tok[i], ",")) {
			if (i == 1 || after_comma)
				return fail(r, tok[i].col, "expected a value before ','");
			after_comma = true;
			continue;
		}
		after_comma = false;
		err = take(r, &tok[i], &v);
		if (err)
			return err;
		if (key == CONFIG_EVENTS)
			err = check_event_output(r, &v);
		else
			err = check_ifname(r, &v);
		if (err)
			return err;
		for (size_t j = 0; j < list->n; j++) {
			const struct config_value *o = &list->items[j];

			if (strcmp(o->text, v.text) != 0)
				continue;
			if (o->line)
				return fail(r, v.col, "%s '%s' is already listed at line %u",
					    keys[key].name, v.text, o->line);
			return fail(r, v.col, "%s '%s' is given twice", keys[key].name, v.text);
		}
		if (list->n == (key == CONFIG_EVENTS ? CONFIG_EVENTS_MAX : CONFIG_IFACES_MAX))
			return fail(r, v.col, "more than %d %s values",
				    key == CONFIG_EVENTS ? CONFIG_EVENTS_MAX : CONFIG_IFACES_MAX,
				    keys[key].name);
		list->items[list->n++] = v;
	}
	if (after_comma)
		return fail(r, tok[n - 1].col, "expected a value after ','");
	if (key == CONFIG_EVENTS && list->n > 1)
		for (size_t j = 0; j < list->n; j++)
			if (strcmp(list->items[j].text, "off") == 0)
				return fail(r, list->items[j].col,
					    "events off cannot be combined with other outputs");
	return 0;
}

/* Edit distance of a and b, counted up to limit + 1 (keys are short). */
static size_t edit_distance(const char *a, const char *b, size_t limit)
{
	size_t la = strlen(a), lb = strlen(b), row[64], prev, best;

	if (la >= sizeof(row) || lb >= sizeof(row))
		return limit + 1;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		prev = row[0];
		row[0] = i;
		best = row[0];
		for (size_t j = 1; j <= lb; j++) {
			size_t sub = prev + (a[i - 1] != b[j - 1]), cur = row[j];

			row[j] = sub;
			if (row[j - 1] + 1 < row[j])
				row[j] = row[j - 1] + 1;
			if (cur + 1 < row[j])
				row[j] = cur + 1;
			prev = cur;
			if (row[j] < best)
				best = row[j];
		}
		if (best > limit)
			return limit + 1;
	}
	return row[lb];
}

static int unknown_key(const struct reader *r, const struct token *t)
{
	char word[64];
	size_t len = t->len < sizeof(word) ? t->len : sizeof(word) - 1;

	memcpy(word, t->text, len);
	word[len] = '\0';
	/* A plural, a truncation or a slip of the finger: name the key meant. */
	for (int k = 0; k < CONFIG_KEY_MAX; k++) {
		size_t kl = strlen(keys[k].name);

		if ((len > 1 && strncmp(word, keys[k].name, len) == 0) ||
		    (len > kl && strncmp(word, keys[k].name, kl) == 0) ||
		    (len > 3 && edit_distance(word, keys[k].name, 2) <= 2))
			return fail(r, t->col, "unknown key '%s' (did you mean '%s'?)", word,
				    keys[k].name);
	}
	return fail(r, t->col,
		    "unknown key '%s' (expected interface, xdp, mode, policy, metrics, events, "
		    "pin-dir, state-dir, web-config or connect-hooks)",
		    word);
}

/* One `key value...` statement, from a file line or a flag. */
static int set_key(struct reader *r, struct daemon_config *c, enum config_key key,
		   const struct token *tok, int n)
{
	struct config_value *single = NULL;
	int err;

	if (n < 2)
		return fail(r, tok[0].col + tok[0].len, "expected a value after '%s'",
			    keys[key].name);
	if (!keys[key].list) {
		if (r->key_line[key] && r->path)
			return fail(r, tok[0].col, "%s is already set at line %u", keys[key].name,
				    r->key_line[key]);
		if (r->key_line[key])
			return fail(r, tok[0].col, "given twice");
		if (n > 2)
			return fail(r, tok[2].col, "%s takes one value; unexpected '%.*s'",
				    keys[key].name, (int)tok[2].len, tok[2].text);
		r->key_line[key] = r->path ? r->line : 1;
	}
	/* A list key given again adds to the list; the defaults are replaced, not extended. */
	if (!(c->set & (1u << key))) {
		if (key == CONFIG_INTERFACE)
			c->ifaces.n = 0;
		else if (key == CONFIG_XDP)
			c->xdp.n = 0;
		else if (key == CONFIG_EVENTS)
			c->events.n = 0;
	}
	switch (key) {
	case CONFIG_INTERFACE:
		err = add_list(r, key, tok, n, &c->ifaces);
		break;
	case CONFIG_XDP:
		err = add_list(r, key, tok, n, &c->xdp);
		break;
	case CONFIG_EVENTS:
		err = add_list(r, key, tok, n, &c->events);
		break;
	case CONFIG_MODE:
		err = take(r, &tok[1], &c->mode_at);
		if (err)
			break;
		if (strcmp(c->mode_at.text, "enforce") == 0)
			c->mode = SLUICE_MODE_ENFORCE;
		else if (strcmp(c->mode_at.text, "audit") == 0)
			c->mode = SLUICE_MODE_AUDIT;
		else
			err = fail(r, tok[1].col, "mode must be enforce or audit, not '%s'",
				   c->mode_at.text);
		break;
	case CONFIG_POLICY:
	case CONFIG_PIN_DIR:
	case CONFIG_STATE_DIR:
	case CONFIG_WEB_CONFIG:
		single = key == CONFIG_POLICY	  ? &c->policy
		       : key == CONFIG_PIN_DIR	  ? &c->pin_dir
		       : key == CONFIG_STATE_DIR ? &c->state_dir
						  : &c->web_config;
		err = take(r, &tok[1], single);
		/* A flag's relative file path is the shell's: resolved from the working directory. */
		if (!err && (r->path || (key != CONFIG_POLICY && key != CONFIG_WEB_CONFIG)))
			err = check_absolute(r, single, keys[key].name);
		break;
	case CONFIG_CONNECT_HOOKS:
		/* A cgroup v2 directory, or off; config_check holds it against the system. */
		err = take(r, &tok[1], &c->connect_hooks);
		if (!err && strcmp(c->connect_hooks.text, "off") == 0)
			c->connect_hooks.text[0] = '\0';
		else if (!err)
			err = check_absolute(r, &c->connect_hooks, keys[key].name);
		break;
	case CONFIG_METRICS:
		err = take(r, &tok[1], &c->metrics);
		if (!err)
			err = check_listen_address(r, &c->metrics);
		break;
	default:
		err = -EINVAL;
	}
	if (!err)
		c->set |= 1u << key;
	return err;
}

static int parse_line(struct reader *r, struct daemon_config *c, const char *line)
{
	struct token tok[CONFIG_TOKENS_MAX];
	int n = tokenize(r, line, tok);

	if (n <= 0)
		return n;
	if (tok_is(&tok[0], ","))
		return fail(r, tok[0].col, "expected a key, not ','");
	for (int k = 0; k < CONFIG_KEY_MAX; k++)
		if (tok_is(&tok[0], keys[k].name))
			return set_key(r, c, k, tok, n);
	return unknown_key(r, &tok[0]);
}

int config_parse_text(const char *path, const char *text, struct daemon_config *c,
		      char err[CONFIG_ERROR_MAX])
{
	struct reader r = { .path = path, .err = err };
	char line[CONFIG_LINE_MAX + 1];
	const char *p = text;
	int ret = 0;

	config_init(c);
	snprintf(c->file, sizeof(c->file), "%s", path);
	while (*p && !ret) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);

		r.line++;
		if (len > CONFIG_LINE_MAX)
			return fail(&r, CONFIG_LINE_MAX + 1, "line longer than %d characters",
				    CONFIG_LINE_MAX);
		memcpy(line, p, len);
		line[len] = '\0';
		if (memchr(p, '\0', len))
			return fail(&r, strlen(line) + 1, "unexpected character 0x00");
		ret = parse_line(&r, c, line);
		p += len + (nl ? 1 : 0);
	}
	return ret;
}

int config_parse_file(const char *path, struct daemon_config *c, char err[CONFIG_ERROR_MAX])
{
	char *text;
	size_t len;
	FILE *f;
	int ret;

	config_init(c);
	f = fopen(path, "re");
	if (!f) {
		ret = -errno;
		snprintf(err, CONFIG_ERROR_MAX, "cannot read configuration %s: %s", path,
			 strerror(-ret));
		return ret;
	}
	text = malloc(CONFIG_BYTES_MAX + 1);
	if (!text) {
		fclose(f);
		return -ENOMEM;
	}
	len = fread(text, 1, CONFIG_BYTES_MAX + 1, f);
	ret = ferror(f) ? -EIO : 0;
	fclose(f);
	if (!ret && len > CONFIG_BYTES_MAX)
		ret = -EFBIG;
	if (ret) {
		snprintf(err, CONFIG_ERROR_MAX, "cannot read configuration %s: %s", path,
			 ret == -EFBIG ? "larger than 1 MiB" : strerror(-ret));
		free(text);
		return ret;
	}
	text[len] = '\0';
	/* A NUL inside the file would end the text early: name it instead. */
	if (strlen(text) != len) {
		struct reader r = { .path = path, .err = err, .line = 1 };
		const char *nul = text + strlen(text);

		for (const char *q = text; q < nul; q++)
			r.line += *q == '\n';
		free(text);
		return fail(&r, 1, "unexpected character 0x00");
	}
	ret = config_parse_text(path, text, c, err);
	free(text);
	return ret;
}

int config_set_flag(struct daemon_config *c, enum config_key key, const char *origin,
		    const char *value, char err[CONFIG_ERROR_MAX])
{
	struct reader r = { .origin = origin, .err = err };
	struct token tok[CONFIG_TOKENS_MAX];
	char line[CONFIG_LINE_MAX + 1];
	int n;

	/* The flag's value reads as the rest of a `key value` line. */
	if (strlen(value) > CONFIG_LINE_MAX - 32)
		return fail(&r, 1, "value longer than %d characters", CONFIG_LINE_MAX - 32);
	snprintf(line, sizeof(line), "%s %s", keys[key].name, value);
	n = tokenize(&r, line, tok);
	if (n < 0)
		return n;
	if (n < 2)
		return fail(&r, 1, "needs a value");
	if (!keys[key].list && (c->set & (1u << key)))
		return fail(&r, 1, "given twice");
	return set_key(&r, c, key, tok, n);
}

void config_overlay(struct daemon_config *file, const struct daemon_config *flags)
{
	if (flags->set & (1u << CONFIG_INTERFACE))
		file->ifaces = flags->ifaces;
	if (flags->set & (1u << CONFIG_XDP))
		file->xdp = flags->xdp;
	if (flags->set & (1u << CONFIG_MODE)) {
		file->mode = flags->mode;
		file->mode_at = flags->mode_at;
	}
	if (flags->set & (1u << CONFIG_POLICY))
		file->policy = flags->policy;
	if (flags->set & (1u << CONFIG_METRICS))
		file->metrics = flags->metrics;
	if (flags->set & (1u << CONFIG_EVENTS))
		file->events = flags->events;
	if (flags->set & (1u << CONFIG_PIN_DIR))
		file->pin_dir = flags->pin_dir;
	if (flags->set & (1u << CONFIG_STATE_DIR))
		file->state_dir = flags->state_dir;
	if (flags->set & (1u << CONFIG_WEB_CONFIG))
		file->web_config = flags->web_config;
	if (flags->set & (1u << CONFIG_CONNECT_HOOKS))
		file->connect_hooks = flags->connect_hooks;
	file->set |= flags->set;
}

const char *config_where(const struct daemon_config *c, const struct config_value *v, char *buf,
			 size_t len)
{
	if (v->line)
		snprintf(buf, len, "%s:%u:%u", c->file, v->line, v->col);
	else
		snprintf(buf, len, "%s", v->origin ? v->origin : "default");
	return buf;
}

const struct config_value *config_match(const struct config_list *list, const char *name)
{
	for (size_t i = 0; i < list->n; i++)
		if (fnmatch(list->items[i].text, name, 0) == 0)
			return &list->items[i];
	return NULL;
}

static int check_list(const struct daemon_config *c, const struct config_list *list,
		      const char *const *ifnames, size_t n, char err[CONFIG_ERROR_MAX])
{
	char where[CONFIG_PATH_MAX + 32];

	for (size_t i = 0; i < list->n; i++) {
		const struct config_value *v = &list->items[i];
		bool found = false;

		for (size_t j = 0; j < n && !found; j++)
			found = fnmatch(v->text, ifnames[j], 0) == 0;
		if (found)
			continue;
		config_where(c, v, where, sizeof(where));
		if (config_is_pattern(v->text))
			snprintf(err, CONFIG_ERROR_MAX, "%s: pattern '%s' matches no interface",
				 where, v->text);
		else
			snprintf(err, CONFIG_ERROR_MAX, "%s: no such interface: %s", where, v->text);
		return -ENODEV;
	}
	return 0;
}

int config_check(const struct daemon_config *c, const char *const *ifnames, size_t n,
		 char err[CONFIG_ERROR_MAX])
{
	char where[CONFIG_PATH_MAX + 32];
	int ret;

	if (access(c->policy.text, R_OK) < 0) {
		ret = -errno;
		config_where(c, &c->policy, where, sizeof(where));
		snprintf(err, CONFIG_ERROR_MAX, "%s: cannot read policy %s: %s", where,
			 c->policy.text, strerror(-ret));
		return ret;
	}
	ret = check_list(c, &c->ifaces, ifnames, n, err);
	if (!ret)
		ret = check_list(c, &c->xdp, ifnames, n, err);
	return ret;
}

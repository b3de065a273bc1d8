/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The daemon's configuration: SLUICE_CONFDIR/sluice.conf (or --config FILE) with the command
 * line laid over it (a flag replaces the file's value for its key). The file reads like a
 * policy: one `key value...` per line, `#` comments. config_parse_*() checks the form of
 * every value; config_check() then holds it against the system (the policy file is there,
 * every interface and pattern names something), so `sluice run` refuses a configuration
 * before anything in the kernel changes. Errors are "FILE:LINE:COL: message", or
 * "--flag: message" for a value given on the command line.
 */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>

#ifndef SLUICE_CONFDIR
#define SLUICE_CONFDIR "/etc/sluice"
#endif
#define CONFIG_PATH_DEFAULT SLUICE_CONFDIR "/sluice.conf"
#define CONFIG_POLICY_DEFAULT SLUICE_CONFDIR "/policy.conf"
#define CONFIG_METRICS_DEFAULT "127.0.0.1:9753"
#define CONFIG_EVENTS_DEFAULT "stdout"

#define CONFIG_IFACES_MAX 64 /* interface names and patterns (each of interface, xdp) */
#define CONFIG_EVENTS_MAX 4  /* event outputs */
#define CONFIG_PATH_MAX 1024 /* a path or an address written in the file */
#define CONFIG_LINE_MAX 4096
#define CONFIG_BYTES_MAX (1u << 20) /* a configuration is a page, not a data file */
#define CONFIG_ERROR_MAX 2560       /* "FILE:LINE:COL: message" */

/* The keys, in the order `sluice run --help` and the example file give them. */
enum config_key {
	CONFIG_INTERFACE,
	CONFIG_XDP,
	CONFIG_MODE,
	CONFIG_POLICY,
	CONFIG_METRICS,
	CONFIG_EVENTS,
	CONFIG_PIN_DIR,
	CONFIG_STATE_DIR,
	CONFIG_WEB_CONFIG,
	CONFIG_CONNECT_HOOKS,
	CONFIG_KEY_MAX,
};

/* One value and where it was written: line 0 means the command line (origin) or a default. */
struct config_value {
	char text[CONFIG_PATH_MAX];
	unsigned line, col;
	const char *origin; /* "--iface", ... or "default" when line is 0 */
};

struct config_list {
	struct config_value items[CONFIG_IFACES_MAX];
	size_t n;
};

struct daemon_config {
	char file[CONFIG_PATH_MAX]; /* the file read, "" when none */
	unsigned set;               /* keys given (1 << enum config_key) */
	struct config_list ifaces;  /* names and fnmatch(3) patterns */
	struct config_list xdp;     /* gateway mode: XDP on these (names and patterns) */
	int mode;                   /* -1: as the policy says; else SLUICE_MODE_* */
	struct config_value mode_at;
	struct config_value policy, metrics, pin_dir, state_dir;
	struct config_value web_config; /* TLS and basic auth of the exporter; "" when none */
	struct config_value connect_hooks; /* the cgroup of the connect-time hooks; "" when off */
	struct config_list events; /* "stdout", "syslog", "off" or an absolute file path */
};

const char *config_key_name(enum config_key key);

/* Defaults for every key (no interfaces). */
void config_init(struct daemon_config *c);
/* Read a configuration file over the defaults. err holds "FILE:LINE:COL: message". */
int config_parse_file(const char *path, struct daemon_config *c, char err[CONFIG_ERROR_MAX]);
/* The same for text in memory; path names it in messages. */
int config_parse_text(const char *path, const char *text, struct daemon_config *c,
		      char err[CONFIG_ERROR_MAX]);
/*
 * Set key from a command-line flag (origin, e.g. "--iface"): the value is checked as a line
 * of the file would be. A list key may be given several times.
 */
int config_set_flag(struct daemon_config *c, enum config_key key, const char *origin,
		    const char *value, char err[CONFIG_ERROR_MAX]);
/* Lay flags over file: every key set in flags replaces file's value for it. */
void config_overlay(struct daemon_config *file, const struct daemon_config *flags);

/*
 * Hold c against the system: the policy file can be read, every interface name exists and
 * every pattern matches at least one of ifnames (the interfaces present, n of them).
 */
int config_check(const struct daemon_config *c, const char *const *ifnames, size_t n,
		 char err[CONFIG_ERROR_MAX]);

/* Does name match a pattern of list? The first pattern it matches, or NULL. */
const struct config_value *config_match(const struct config_list *list, const char *name);
/* Is this interface entry a pattern (has * ? or [) rather than a name? */
bool config_is_pattern(const char *text);
/* "FILE:LINE:COL" of a value, or its origin ("--iface", "default"). */
const char *config_where(const struct daemon_config *c, const struct config_value *v, char *buf,
			 size_t len);

#endif

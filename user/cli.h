/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* What every command shares: global options, option parsing, privileges, exit codes. */
#ifndef SLUICE_CLI_H
#define SLUICE_CLI_H

#include <getopt.h>
#include <stdbool.h>

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

#include "config.h"

struct cli {
	const char *pin_dir;
	const char *state_dir;
	bool pin_dir_given, state_dir_given; /* by a flag: the configuration file's stay unused */
	const char *config_path;             /* --config, or NULL for the default file */
	const struct daemon_config *config;  /* the file as read (defaults if there is none) */
	bool json;
};
extern struct cli cli;

/* Options every command takes; a command's own table ends with CLI_COMMON_OPTIONS. */
enum {
	OPT_PIN_DIR = 0x100,
	OPT_STATE_DIR,
	OPT_JSON,
	OPT_CONFIG,
	OPT_HELP = 'h',
	OPT_VERBOSE = 'v',
	OPT_COMMAND_BASE = 0x200, /* commands number their own long options from here */
};
#define CLI_COMMON_OPTIONS                                                                         \
	{ "pin-dir", required_argument, NULL, OPT_PIN_DIR },                                       \
		{ "state-dir", required_argument, NULL, OPT_STATE_DIR },                           \
		{ "config", required_argument, NULL, OPT_CONFIG },                                 \
		{ "json", no_argument, NULL, OPT_JSON }, { "help", no_argument, NULL, OPT_HELP },  \
		{ "verbose", no_argument, NULL, OPT_VERBOSE },                                     \
	{                                                                                          \
		NULL, 0, NULL, 0                                                                   \
	}
#define CLI_COMMON_SHORT "hv"

/*
 * Handle a common option inside a command's getopt loop (argv and options are the loop's,
 * to name a bad option precisely). Returns 1 if handled, 0 if the option is the
 * command's own, -1 after printing --help (exit 0), -2 after a usage error (exit 2).
 */
int cli_common_option(const char *command, int opt, const char *arg, char *const argv[],
		      const struct option *options);

/*
 * Run a command's getopt loop: common options handled, the command's own passed to own()
 * (may be NULL). Positional arguments are left at argv[optind..]. Then read the
 * configuration file (cli.config), whose pin-dir and state-dir apply unless given as flags.
 * Returns 0, -1 after --help, or an exit status.
 */
int cli_parse_options(const char *command, int argc, char **argv, const struct option *options,
		      int (*own)(int opt, const char *arg, void *ctx), void *ctx);
/* Read the configuration file again (--config FILE, or the default file if present). */
int cli_read_config_file(struct daemon_config *c, char err[CONFIG_ERROR_MAX]);
/* Print a usage error about command to stderr; returns EXIT_USAGE. */
int cli_usage_error(const char *command, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print the help of command (usage, description, examples). */
void cli_print_help(const char *command);
/* Is capability cap (CAP_*) in the process's effective set? */
bool cli_has_capability(int cap);
/* Fail with a clear message unless the process may change kernel state. */
int cli_require_privileges(const char *command);

int cmd_run(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_dest(int argc, char **argv);
int cmd_top(int argc, char **argv);
int cmd_events(int argc, char **argv);
int cmd_detach(int argc, char **argv);
int cmd_policy(int argc, char **argv);
int cmd_allow(int argc, char **argv);
int cmd_deny(int argc, char **argv);
int cmd_remove(int argc, char **argv);
int cmd_budget(int argc, char **argv);
int cmd_users(int argc, char **argv);

#endif

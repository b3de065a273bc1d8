// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * sluice: the one binary. Dispatches `sluice COMMAND ...` (unambiguous prefixes accepted)
 * and holds the command table, which is the one source of the CLI's documentation.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <jansson.h>
#include <linux/capability.h>
#include <sluice/abi.h>

#include "cli.h"
#include "config.h"
#include "log.h"

#ifndef CAP_BPF
#define CAP_BPF 39 /* Linux 5.8; older uapi headers lack it */
#endif

struct cli cli = {
	.pin_dir = SLUICE_PIN_DIR_DEFAULT,
	.state_dir = SLUICE_STATE_DIR_DEFAULT,
};

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *usage;
	const char *summary;
	const char *details; /* options and examples */
};

static int cmd_help(int argc, char **argv);
static int cmd_version(int argc, char **argv);

static const struct command commands[] = {
	{
		"run",
		cmd_run,
		"sluice run [--config FILE] [--iface IF]... [--xdp IF]... [--connect-hooks[=CGROUP]]\n"
		"           [--policy FILE] [--mode enforce|audit] [--metrics ADDR:PORT|off]\n"
		"           [--web-config FILE] [--top-destinations N]\n"
		"           [--events stdout|FILE|syslog|off]... [--event-interval DURATION]",
		"Load the policy, attach to the interfaces, and stay in the foreground.",
		"Reads the configuration file (" CONFIG_PATH_DEFAULT " when present, or\n"
		"--config FILE; see examples/sluice.conf), lays the flags over it (a flag replaces\n"
		"the file's value for its key), and checks everything before it changes anything:\n"
		"the policy must compile, every interface name must exist and every pattern must\n"
		"match an interface. Then it loads the BPF programs (adopting maps already\n"
		"pinned), installs the policy atomically, attaches tc egress and ingress to every\n"
		"matching interface (tcx, or clsact on kernels without tcx) and XDP to every --xdp\n"
		"interface, follows interfaces that come, go and are renamed, and waits. SIGHUP\n"
		"re-reads the configuration and the policy in force (or the file's new 'policy');\n"
		"if either is bad, nothing changes and the error is logged. SIGTERM/SIGINT exit and\n"
		"leave enforcement in force: programs, maps and links stay pinned until\n"
		"'sluice detach'.\n"
		"\n"
		"  --config FILE     configuration file (default " CONFIG_PATH_DEFAULT ")\n"
		"  --iface IF        interface name or pattern (eth*, ib[01]) to enforce on: what\n"
		"                    the node sends (repeatable; replaces the file's 'interface')\n"
		"  --xdp IF          gateway mode: decide packets arriving on IF to be forwarded\n"
		"                    (repeatable; native XDP where the driver has it, else\n"
		"                    generic; packets for the node itself are not policed there).\n"
		"                    At least one --iface or --xdp, here or in the file.\n"
		"  --connect-hooks[=CGROUP]  also decide at connect()/sendmsg() time for the\n"
		"                    processes in CGROUP (cgroup v2 path, default /sys/fs/cgroup:\n"
		"                    every process): a denied destination fails at once with\n"
		"                    EPERM instead of a silent drop. Counted as hook=connect\n"
		"                    (one per call, 0 bytes); tc egress stays the backstop.\n"
		"  --policy FILE     policy file (default " CONFIG_POLICY_DEFAULT ")\n"
		"  --mode MODE       override the policy's mode: enforce or audit\n"
		"  --metrics ADDR:PORT  serve Prometheus metrics at http://ADDR:PORT/metrics\n"
		"                    (default 127.0.0.1:9753; [::1]:PORT for IPv6; off: none)\n"
		"  --web-config FILE TLS and basic auth for the exporter, in the format of\n"
		"                    Prometheus' exporter web configuration (tls_server_config:\n"
		"                    cert_file, key_file, min_version; basic_auth_users: bcrypt)\n"
		"  --top-destinations N  per-destination series for the N destinations with the\n"
		"                    most bytes, the rest summed as destination=\"other\" (default 100)\n"
		"  --events OUT      write events as JSON lines to stdout (the default), a FILE\n"
		"                    (reopened on SIGHUP, for logrotate) or syslog; repeatable\n"
		"                    for several at once; off: the kernel emits none\n"
		"  --event-interval DURATION  at most one deny/audit event per destination per\n"
		"                    DURATION (default 1s); repeats are counted as 'suppressed'\n"
		"\n"
		"EXAMPLES\n"
		"  sluice run\n"
		"  sluice run --config /etc/sluice/dtn.conf\n"
		"  sluice run --iface eth0 --policy /etc/sluice/policy.conf\n"
		"  sluice run --iface 'eth*' --iface ib0 --mode audit\n"
		"  sluice run --iface eth0 --events /var/log/sluice/events.json --events syslog\n"
		"  sluice run --iface eth0 --xdp ib0   # a gateway routing ib0's nodes out via eth0\n"
		"  sluice run --iface eth0 --connect-hooks   # login node: tools fail fast\n",
	},
	{
		"status",
		cmd_status,
		"sluice status [--json]",
		"Show whether the daemon runs, what is attached where, the policy, and what is wrong.",
		"Reads the kernel's attachments (program and link ids per interface and hook), the\n"
		"policy in force (generation, load time, mode) and the daemon's pid lock, and holds\n"
		"them against the configuration (the running daemon's, flags included). Every\n"
		"degraded condition is listed: daemon not running, a configured interface missing\n"
		"or not attached, a pattern matching nothing, a stale pin. The exit status is 0\n"
		"whenever status could be read; test health with --json: .healthy.\n"
		"\n"
		"EXAMPLES\n"
		"  sluice status\n"
		"  sluice status --json | jq -e .healthy\n"
		"  sluice status --json | jq '.interfaces[] | {iface, hooks}'\n",
	},
	{
		"policy",
		cmd_policy,
		"sluice policy check FILE | load FILE | show [--json]",
		"Check a policy file, load it atomically, or show the policy in force.",
		"  check FILE        parse and compile; print a summary, or FILE:LINE:COL: message\n"
		"                    and exit 1. Changes nothing.\n"
		"  load FILE         replace the policy in force, atomically (every packet is decided\n"
		"                    by the old or the new policy), with or without a running daemon.\n"
		"                    A bad file changes nothing. Overrides stay. Loading the same\n"
		"                    file again is harmless.\n"
		"  show              the policy in force: its source, generation, rules and overrides\n"
		"\n"
		"EXAMPLES\n"
		"  sluice policy check /etc/sluice/policy.conf\n"
		"  sluice policy load /etc/sluice/policy.conf\n"
		"  sluice policy show --json | jq '.overrides'\n",
	},
	{
		"allow",
		cmd_allow,
		"sluice allow TARGET [PROTO [PORTS]] [--for DURATION] [--name NAME]",
		"Add a runtime allow rule (an override), in force at once.",
		"TARGET is an address or CIDR; PROTO a list such as tcp or udp,tcp; PORTS a list\n"
		"such as 443,50000-51000. Overrides join the policy under its usual rules (longest\n"
		"prefix wins, deny beats allow on equal prefixes), persist across restarts and\n"
		"policy loads, and are listed by 'sluice policy show'. An override for the same\n"
		"TARGET/PROTO/PORTS replaces the previous one.\n"
		"\n"
		"  --for DURATION    expire after 90s, 15m, 2h, 1d or 1w (the daemon removes it)\n"
		"  --name NAME       the rule's identity in counters (default override:allow:TARGET)\n"
		"\n"
		"EXAMPLES\n"
		"  sluice allow 198.51.100.0/24 tcp 443 --for 2h\n"
		"  sluice allow 2001:db8:100::/48 --name partner-b\n",
	},
	{
		"deny",
		cmd_deny,
		"sluice deny TARGET [PROTO [PORTS]] [--for DURATION] [--name NAME]",
		"Add a runtime deny rule (an override), in force at once.",
		"As 'sluice allow'; see 'sluice help allow'.\n"
		"\n"
		"EXAMPLES\n"
		"  sluice deny 203.0.113.9\n"
		"  sluice deny 192.0.2.0/24 udp 53 --for 30m\n",
	},
	{
		"remove",
		cmd_remove,
		"sluice remove TARGET [PROTO [PORTS]]",
		"Remove the override for TARGET [PROTO [PORTS]], at once.",
		"EXAMPLES\n"
		"  sluice remove 203.0.113.9\n"
		"  sluice remove 198.51.100.0/24 tcp 443\n",
	},
	{
		"stats",
		cmd_stats,
		"sluice stats [--json]",
		"Show node totals by interface, verdict and reason, and map use.",
		"EXAMPLES\n"
		"  sluice stats\n"
		"  sluice stats --json | jq '.verdicts.deny.packets'\n",
	},
	{
		"dest",
		cmd_dest,
		"sluice dest [--top N] [--sort bytes|packets|denied] [--json]",
		"Show per-destination counters and the verdict each destination gets.",
		"  --top N           show the N first destinations (default 20; 0 = all)\n"
		"  --sort KEY        bytes (default), packets, or denied (denied packets)\n"
		"\n"
		"EXAMPLES\n"
		"  sluice dest --top 10\n"
		"  sluice dest --sort denied --json\n",
	},
	{
		"top",
		cmd_top,
		"sluice top [--interval SECONDS] [--top N] [--iterations N] [--json]",
		"A live view: node rates by verdict and the busiest destinations, refreshed.",
		"Reads the pinned counters every interval and shows what changed: packets and\n"
		"bytes per second by verdict for the node, and the destinations sending the\n"
		"most bytes per second with the verdict most of their packets got. The first\n"
		"view comes one interval after the start. Works with or without the daemon.\n"
		"\n"
		"  --interval SECONDS  refresh every SECONDS (default 1)\n"
		"  --top N           destinations shown (default 20)\n"
		"  --iterations N    stop after N views (default: until Ctrl-C)\n"
		"  --json            one JSON document per view, one per line\n"
		"\n"
		"EXAMPLES\n"
		"  sluice top\n"
		"  sluice top --interval 5 --top 50\n"
		"  sluice top --json --iterations 1 | jq '.destinations[0]'\n",
	},
	{
		"events",
		cmd_events,
		"sluice events [--follow] [--json]",
		"Show the running daemon's recent events; --follow keeps streaming new ones.",
		"Events (deny, audit, new_destination, policy, lost) come from the daemon over\n"
		"its control socket (root only). Denies and audits are rate limited in the kernel\n"
		"per destination; 'suppressed' counts the repeats folded into an event. A client\n"
		"that reads too slowly misses lines (counted in sluice_events_dropped_total);\n"
		"it never slows the daemon.\n"
		"\n"
		"  --follow          keep the connection and print events as they happen\n"
		"  --json            one JSON object per line, fields as the event outputs\n"
		"\n"
		"EXAMPLES\n"
		"  sluice events\n"
		"  sluice events --follow --json | jq 'select(.type == \"deny\")'\n",
	},
	{
		"users",
		cmd_users,
		"sluice users [--json]",
		"Show the packets and bytes each local user (socket owner) sent, largest first.",
		"Counts what the node's own sockets sent and sluice let through, by the uid\n"
		"owning the socket (forwarded traffic has no local user).\n"
		"\n"
		"EXAMPLES\n"
		"  sluice users\n"
		"  sluice users --json | jq '.[] | select(.user == \"alice\") | .bytes'\n",
	},
	{
		"budget",
		cmd_budget,
		"sluice budget show [--json] | sluice budget reset [TARGET]",
		"Show each budget's usage per destination/user, or clear it.",
		"show lists every budget of the policy in force, how often it was crossed, and\n"
		"each key (destination, user or node) it counts: bytes in the current window,\n"
		"share of the limit, state (ok, exceeded, blocked, expired) and window end.\n"
		"reset clears usage and lifts blocks: all of it, or what TARGET names: a budget\n"
		"(its name or target as written), a destination address, or a user (name/uid).\n"
		"Works with or without a running daemon.\n"
		"\n"
		"EXAMPLES\n"
		"  sluice budget show\n"
		"  sluice budget reset 198.51.100.7\n"
		"  sluice budget reset partners-daily\n",
	},
	{
		"detach",
		cmd_detach,
		"sluice detach --all | --iface IF",
		"Remove sluice from interfaces; --all also removes every pin.",
		"  --iface IF        detach every program from one interface (repeatable)\n"
		"  --all             detach everywhere (interfaces and the --connect-hooks\n"
		"                    cgroup) and remove programs, maps and pins\n"
		"\n"
		"EXAMPLES\n"
		"  sluice detach --iface eth1\n"
		"  sluice detach --all\n",
	},
	{ "help", cmd_help, "sluice help [COMMAND] | help --man",
	  "Show help for sluice or for COMMAND; --man prints this manual page as roff.",
	  "EXAMPLES\n"
	  "  sluice help policy\n"
	  "  sluice help --man | man -l -\n" },
	{ "version", cmd_version, "sluice version", "Show the version.", "" },
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const char common_help[] =
	"COMMON OPTIONS (every command)\n"
	"  --pin-dir DIR     BPF pin directory (default " SLUICE_PIN_DIR_DEFAULT ")\n"
	"  --state-dir DIR   state directory (default " SLUICE_STATE_DIR_DEFAULT ")\n"
	"  --config FILE     configuration file (default " CONFIG_PATH_DEFAULT ", if present);\n"
	"                    its pin-dir and state-dir apply to every command\n"
	"  --json            machine-readable output (read commands; errors too)\n"
	"  -v, --verbose     debug output, including libbpf's\n"
	"  -h, --help        this help\n"
	"\n"
	"Exit status: 0 ok, 1 failure, 2 usage error.\n";

/* Exact name, or an unambiguous prefix. NULL with *ambiguous set when it is ambiguous. */
static const struct command *find_command(const char *name, bool *ambiguous)
{
	const struct command *found = NULL;
	size_t len = strlen(name);

	*ambiguous = false;
	for (size_t i = 0; i < NCOMMANDS; i++) {
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
		if (len && strncmp(commands[i].name, name, len) == 0) {
			if (found)
				*ambiguous = true;
			found = &commands[i];
		}
	}
	return *ambiguous ? NULL : found;
}

static void print_overview(FILE *f)
{
	fprintf(f, "Usage: sluice [COMMON OPTIONS] COMMAND [ARGS]\n\n"
		   "sluice: eBPF egress enforcement and accounting.\n\nCOMMANDS\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\n%s\nRun 'sluice help COMMAND' for a command's options and examples.\n",
		common_help);
}

void cli_print_help(const char *name)
{
	bool ambiguous;
	const struct command *c = find_command(name, &ambiguous);

	if (!c) {
		print_overview(stdout);
		return;
	}
	printf("Usage: %s\n\n%s\n\n%s%s%s", c->usage, c->summary, c->details,
	       c->details[0] ? "\n" : "", common_help);
}

int cli_usage_error(const char *command, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pr_err("%s", msg);
	fprintf(stderr, "Try 'sluice help%s%s'.\n", command[0] ? " " : "", command);
	return EXIT_USAGE;
}

/* getopt's own messages are off (opterr = 0): say what was wrong in sluice's format. */
static void bad_option(const char *command, char *const argv[], const struct option *options)
{
	const char *word = optind > 0 ? argv[optind - 1] : "";

	if (optopt && !(word[0] == '-' && word[1] == '-')) {
		cli_usage_error(command, "unknown option '-%c' (or it needs a value)", optopt);
		return;
	}
	for (const struct option *o = options; o->name; o++) {
		size_t len = strlen(o->name);

		if (strncmp(word, "--", 2) == 0 && strncmp(word + 2, o->name, len) == 0 &&
		    (word[2 + len] == '\0' || word[2 + len] == '=')) {
			if (o->has_arg == required_argument)
				cli_usage_error(command, "option '--%s' needs a value", o->name);
			else
				cli_usage_error(command, "option '--%s' takes no value", o->name);
			return;
		}
	}
	cli_usage_error(command, "unknown option '%s'", word);
}

int cli_common_option(const char *command, int opt, const char *arg, char *const argv[],
		      const struct option *options)
{
	switch (opt) {
	case OPT_PIN_DIR:
		if (arg[0] != '/')
			return cli_usage_error(command, "--pin-dir needs an absolute path"), -2;
		cli.pin_dir = arg;
		cli.pin_dir_given = true;
		return 1;
	case OPT_STATE_DIR:
		if (arg[0] != '/')
			return cli_usage_error(command, "--state-dir needs an absolute path"), -2;
		cli.state_dir = arg;
		cli.state_dir_given = true;
		return 1;
	case OPT_CONFIG:
		cli.config_path = arg;
		return 1;
	case OPT_JSON:
		cli.json = true;
		return 1;
	case OPT_VERBOSE:
		log_init(LOG_DEBUG);
		return 1;
	case OPT_HELP:
		cli_print_help(command);
		return -1;
	case '?':
		bad_option(command, argv, options);
		return -2;
	default:
		return 0;
	}
}

static struct daemon_config file_config;

int cli_read_config_file(struct daemon_config *c, char err[CONFIG_ERROR_MAX])
{
	const char *path = cli.config_path ? cli.config_path : CONFIG_PATH_DEFAULT;

	if (!cli.config_path && access(path, F_OK) < 0 && errno == ENOENT) {
		config_init(c);
		return 0;
	}
	return config_parse_file(path, c, err);
}

/*
 * Read the configuration file: every command takes its pin-dir and state-dir (flags win),
 * `sluice run` the rest. A broken default file stops only `sluice run`; other commands warn
 * and use the default directories, so `sluice detach` works whatever the file says.
 */
static int read_config(const char *command)
{
	bool strict = cli.config_path || strcmp(command, "run") == 0;
	char err[CONFIG_ERROR_MAX];

	cli.config = &file_config;
	if (cli_read_config_file(&file_config, err)) {
		if (strict) {
			pr_err("%s", err);
			return EXIT_FAIL;
		}
		pr_warn("%s (configuration ignored)", err);
		config_init(&file_config);
		return 0;
	}
	if (!cli.pin_dir_given)
		cli.pin_dir = file_config.pin_dir.text;
	if (!cli.state_dir_given)
		cli.state_dir = file_config.state_dir.text;
	return 0;
}

int cli_parse_options(const char *command, int argc, char **argv, const struct option *options,
		      int (*own)(int opt, const char *arg, void *ctx), void *ctx)
{
	int opt, ret;

	while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORT, options, NULL)) != -1) {
		ret = cli_common_option(command, opt, optarg, argv, options);
		if (ret == -1)
			return -1;
		if (ret < 0)
			return EXIT_USAGE;
		if (ret == 0 && (!own || (ret = own(opt, optarg, ctx))))
			return ret ? ret : EXIT_USAGE;
	}
	return read_config(command);
}

bool cli_has_capability(int cap)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2] = {};

	if (cap < 0 || cap >= 64 || syscall(SYS_capget, &hdr, data) < 0)
		return false;
	return data[cap / 32].effective & (1u << (cap % 32));
}

int cli_require_privileges(const char *command)
{
	bool bpf = cli_has_capability(CAP_BPF) || cli_has_capability(CAP_SYS_ADMIN);

	if (!bpf || !cli_has_capability(CAP_NET_ADMIN)) {
		pr_err("'sluice %s' changes kernel state and needs root (CAP_BPF and CAP_NET_ADMIN)",
		       command);
		return -EPERM;
	}
	return 0;
}

/* Text as roff: backslashes escaped, dashes literal, no line taken for a request. */
static void roff_text(FILE *f, const char *text)
{
	bool line_start = true;

	for (const char *c = text; *c; c++) {
		if (line_start && (*c == '.' || *c == '\''))
			fputs("\\&", f);
		if (*c == '\\')
			fputs("\\e", f);
		else if (*c == '-')
			fputs("\\-", f);
		else
			fputc(*c, f);
		line_start = *c == '\n';
	}
	if (!line_start)
		fputc('\n', f);
}

/* The manual page, sluice(8), from the same command table as --help. */
static void print_man(FILE *f)
{
	fprintf(f, ".TH SLUICE 8 \"\" \"sluice %s\" \"System Administration\"\n", SLUICE_VERSION);
	fputs(".SH NAME\nsluice \\- eBPF egress enforcement and accounting\n.SH SYNOPSIS\n.nf\n", f);
	roff_text(f, "sluice [COMMON OPTIONS] COMMAND [ARGS]");
	fputs(".fi\n.SH DESCRIPTION\n", f);
	roff_text(f, "sluice decides every outbound packet by its destination in the kernel (tc "
		     "egress, XDP on a gateway, optionally at connect time), counts packets and "
		     "bytes per destination, and drops what the policy forbids. Programs, maps and "
		     "links are pinned, so enforcement stays when the daemon exits, crashes or is "
		     "upgraded. Unambiguous prefixes of commands are accepted.");
	fputs(".SH COMMANDS\n", f);
	for (size_t i = 0; i < NCOMMANDS; i++) {
		fprintf(f, ".SS %s\n.nf\n", commands[i].name);
		roff_text(f, commands[i].usage);
		fputs(".fi\n.PP\n", f);
		roff_text(f, commands[i].summary);
		if (commands[i].details[0]) {
			fputs(".PP\n.nf\n", f);
			roff_text(f, commands[i].details);
			fputs(".fi\n", f);
		}
	}
	fputs(".SH OPTIONS\n.nf\n", f);
	roff_text(f, common_help);
	fputs(".fi\n.SH FILES\n.TP\n", f);
	roff_text(f, CONFIG_PATH_DEFAULT);
	roff_text(f, "the daemon's configuration (examples/sluice.conf)");
	fputs(".TP\n", f);
	roff_text(f, CONFIG_POLICY_DEFAULT);
	roff_text(f, "the policy");
	fputs(".TP\n", f);
	roff_text(f, SLUICE_PIN_DIR_DEFAULT);
	roff_text(f, "pinned programs, maps and links (0700)");
	fputs(".TP\n", f);
	roff_text(f, SLUICE_STATE_DIR_DEFAULT);
	roff_text(f, "state: the policy in force, overrides, locks, the control socket (0700)");
	fputs(".SH EXIT STATUS\n0 success, 1 failure, 2 usage error.\n", f);
	fputs(".SH SEE ALSO\n.BR bpftool (8),\n.BR nft (8),\n.BR tc (8)\n", f);
}

static int cmd_help(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--man") == 0) {
		print_man(stdout);
		return EXIT_OK;
	}
	if (argc > 1)
		cli_print_help(argv[1]);
	else
		print_overview(stdout);
	return EXIT_OK;
}

static int cmd_version(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	printf("sluice %s\n", SLUICE_VERSION);
	return EXIT_OK;
}

static const struct option global_options[] = { CLI_COMMON_OPTIONS };

int main(int argc, char **argv)
{
	const struct command *c;
	bool ambiguous;
	int opt, ret;

	log_init(LOG_INFO);
	opterr = 0;
	/* Common options may come before the command too: sluice --pin-dir X stats. */
	while ((opt = getopt_long(argc, argv, "+" CLI_COMMON_SHORT, global_options, NULL)) != -1) {
		ret = cli_common_option("", opt, optarg, argv, global_options);
		if (ret == -1)
			return EXIT_OK;
		if (ret < 0)
			return EXIT_USAGE;
	}
	if (optind >= argc) {
		print_overview(stderr);
		return EXIT_USAGE;
	}
	c = find_command(argv[optind], &ambiguous);
	if (!c) {
		pr_err("%s command '%s'", ambiguous ? "ambiguous" : "unknown", argv[optind]);
		fprintf(stderr, "Try 'sluice help'.\n");
		return EXIT_USAGE;
	}
	argc -= optind;
	argv += optind;
	/* 0, not 1: glibc re-initialises getopt only then, dropping the "+" of the global parse. */
	optind = 0;
	ret = c->run(argc, argv);
	if (ret == EXIT_FAIL && cli.json) {
		json_t *err = json_pack("{s:s}", "error", log_last_error());

		json_dumpf(err, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(err);
	}
	return ret;
}

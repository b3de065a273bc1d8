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
		"sluice run [--iface IF]... [--xdp IF]... [--policy FILE] [--mode enforce|audit]\n"
		"           [--metrics ADDR:PORT|off] [--top-destinations N]\n"
		"           [--events stdout|FILE|syslog|off]... [--event-interval DURATION]",
		"Load the policy, attach to the interfaces, and stay in the foreground.",
		"Loads the BPF programs (adopting maps already pinned), installs the policy\n"
		"atomically, attaches tc egress to every --iface (tcx, or clsact on kernels\n"
		"without tcx) and XDP to every --xdp interface, and waits. SIGHUP\n"
		"re-reads the policy (a bad one is rejected and the old stays). SIGTERM/SIGINT exit and leave enforcement in force: programs,\n"
		"maps and links stay pinned until 'sluice detach'.\n"
		"\n"
		"  --iface IF        interface to enforce on: what the node sends (repeatable)\n"
		"  --xdp IF          gateway mode: decide packets arriving on IF to be forwarded\n"
		"                    (repeatable; native XDP where the driver has it, else\n"
		"                    generic; packets for the node itself are not policed there).\n"
		"                    At least one --iface or --xdp.\n"
		"  --policy FILE     policy file (default /etc/sluice/policy.conf)\n"
		"  --mode MODE       override the policy's mode: enforce or audit\n"
		"  --metrics ADDR:PORT  serve Prometheus metrics at http://ADDR:PORT/metrics\n"
		"                    (default 127.0.0.1:9753; [::1]:PORT for IPv6; off: none)\n"
		"  --top-destinations N  per-destination series for the N destinations with the\n"
		"                    most bytes, the rest summed as destination=\"other\" (default 100)\n"
		"  --events OUT      write events as JSON lines to stdout (the default), a FILE\n"
		"                    (reopened on SIGHUP, for logrotate) or syslog; repeatable\n"
		"                    for several at once; off: the kernel emits none\n"
		"  --event-interval DURATION  at most one deny/audit event per destination per\n"
		"                    DURATION (default 1s); repeats are counted as 'suppressed'\n"
		"\n"
		"EXAMPLES\n"
		"  sluice run --iface eth0 --policy /etc/sluice/policy.conf\n"
		"  sluice run --iface eth0 --iface ib0 --mode audit\n"
		"  sluice run --iface eth0 --events /var/log/sluice/events.json --events syslog\n"
		"  sluice run --iface eth0 --xdp ib0   # a gateway routing ib0's nodes out via eth0\n",
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
		"  --all             detach everywhere and remove programs, maps and pins\n"
		"\n"
		"EXAMPLES\n"
		"  sluice detach --iface eth1\n"
		"  sluice detach --all\n",
	},
	{ "help", cmd_help, "sluice help [COMMAND]", "Show help for sluice or for COMMAND.", "" },
	{ "version", cmd_version, "sluice version", "Show the version.", "" },
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const char common_help[] =
	"COMMON OPTIONS (every command)\n"
	"  --pin-dir DIR     BPF pin directory (default " SLUICE_PIN_DIR_DEFAULT ")\n"
	"  --state-dir DIR   state directory (default " SLUICE_STATE_DIR_DEFAULT ")\n"
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
		return 1;
	case OPT_STATE_DIR:
		if (arg[0] != '/')
			return cli_usage_error(command, "--state-dir needs an absolute path"), -2;
		cli.state_dir = arg;
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
	return 0;
}

int cli_require_privileges(const char *command)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2] = {};
	bool bpf, net_admin;

	if (syscall(SYS_capget, &hdr, data) < 0) {
		pr_err("cannot read process capabilities: %s", strerror(errno));
		return -errno;
	}
#define HAS_CAP(cap) (data[(cap) / 32].effective & (1u << ((cap) % 32)))
	bpf = HAS_CAP(CAP_BPF) || HAS_CAP(CAP_SYS_ADMIN);
	net_admin = HAS_CAP(CAP_NET_ADMIN);
#undef HAS_CAP
	if (!bpf || !net_admin) {
		pr_err("'sluice %s' changes kernel state and needs root (CAP_BPF and CAP_NET_ADMIN)",
		       command);
		return -EPERM;
	}
	return 0;
}

static int cmd_help(int argc, char **argv)
{
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

// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* sluice detach: lift enforcement from interfaces, or remove sluice entirely. */
#include <errno.h>
#include <net/if.h>
#include <string.h>
#include <unistd.h>

#include "attach.h"
#include "cli.h"
#include "datapath.h"
#include "ifslots.h"
#include "log.h"
#include "pins.h"
#include "state.h"

#define DETACH_MAX_IFACES 64

enum { OPT_IFACE = OPT_COMMAND_BASE, OPT_ALL };

static const struct option detach_options[] = {
	{ "iface", required_argument, NULL, OPT_IFACE },
	{ "all", no_argument, NULL, OPT_ALL },
	CLI_COMMON_OPTIONS,
};

struct detach_opts {
	const char *ifaces[DETACH_MAX_IFACES];
	int nifaces;
	bool all;
};

static int detach_option(int opt, const char *arg, void *ctx)
{
	struct detach_opts *o = ctx;

	if (opt == OPT_ALL) {
		o->all = true;
		return 0;
	}
	if (opt != OPT_IFACE)
		return EXIT_USAGE;
	if (strlen(arg) == 0 || strlen(arg) >= IFNAMSIZ)
		return cli_usage_error("detach", "invalid interface name '%s'", arg);
	if (o->nifaces == DETACH_MAX_IFACES)
		return cli_usage_error("detach", "at most %d interfaces", DETACH_MAX_IFACES);
	o->ifaces[o->nifaces++] = arg;
	return 0;
}

int cmd_detach(int argc, char **argv)
{
	struct detach_opts o = {};
	const char **ifaces = o.ifaces;
	int ret, lock, failed = 0;

	ret = cli_parse_options("detach", argc, argv, detach_options, detach_option, &o);
	if (ret)
		return ret == -1 ? EXIT_OK : ret;
	int nifaces = o.nifaces;
	bool all = o.all;
	if (optind < argc)
		return cli_usage_error("detach", "unexpected argument '%s'", argv[optind]);
	if (all == (nifaces > 0))
		return cli_usage_error("detach", "give either --all or --iface IF");
	if (cli_require_privileges("detach"))
		return EXIT_FAIL;

	lock = state_lock_writers(cli.state_dir);
	if (lock < 0)
		return EXIT_FAIL;
	if (all) {
		if (access(cli.pin_dir, F_OK) < 0) {
			pr_err("sluice is not loaded: nothing pinned under %s", cli.pin_dir);
			close(lock);
			return EXIT_FAIL;
		}
		failed = detach_all(cli.pin_dir) != 0;
		if (pins_remove_all(cli.pin_dir))
			failed = 1;
		if (!failed) {
			state_remove_rules(cli.state_dir);
			pr_info("detached everywhere; all pins under %s removed", cli.pin_dir);
		}
	} else {
		struct pinned_maps m;
		bool have_maps = pinned_maps_open(cli.pin_dir, &m) == 0;

		for (int i = 0; i < nifaces; i++) {
			unsigned ifindex = if_nametoindex(ifaces[i]);

			if (detach_iface(cli.pin_dir, ifaces[i])) {
				failed = 1;
				continue;
			}
			/* Its counter slot goes back to the pool for the next interface. */
			if (have_maps)
				ifslot_release(m.ifaces_fd, ifindex);
			pr_info("detached from %s", ifaces[i]);
		}
		if (have_maps)
			pinned_maps_close(&m);
	}
	close(lock);
	return failed ? EXIT_FAIL : EXIT_OK;
}

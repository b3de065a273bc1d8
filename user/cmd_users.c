// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* sluice users: bytes and packets each local user sent, largest first. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "cli.h"
#include "datapath.h"
#include "log.h"
#include "output.h"
#include "users.h"

static const struct option users_options[] = { CLI_COMMON_OPTIONS };

int cmd_users(int argc, char **argv)
{
	struct user_row *rows = NULL;
	struct pinned_maps m;
	json_t *doc = NULL;
	size_t n = 0;
	int ret;

	ret = cli_parse_options("users", argc, argv, users_options, NULL, NULL);
	if (ret)
		return ret == -1 ? EXIT_OK : ret;
	if (optind < argc)
		return cli_usage_error("users", "unexpected '%s'", argv[optind]);
	if (pinned_maps_open(cli.pin_dir, &m))
		return EXIT_FAIL;
	ret = users_read(m.users_fd, &rows, &n);
	pinned_maps_close(&m);
	if (ret) {
		pr_err("cannot read the per-user counters: %s", strerror(-ret));
		free(rows);
		return EXIT_FAIL;
	}
	if (cli.json)
		doc = json_array();
	else
		printf("%-10s %-24s %14s %16s\n", "UID", "USER", "PACKETS", "BYTES");
	for (size_t i = 0; i < n; i++) {
		char name[64], uidbuf[16];

		user_name(&rows[i], name, sizeof(name));
		if (cli.json)
			json_array_append_new(doc, json_pack("{s:o,s:s,s:I,s:I}", "uid",
							     rows[i].other ? json_null()
									   : json_integer(rows[i].uid),
							     "user", name,
							     "packets",
							     (json_int_t)rows[i].stats.packets, "bytes",
							     (json_int_t)rows[i].stats.bytes));
		else
			printf("%-10s %-24s %14llu %16llu\n",
			       rows[i].other ? "-" : (snprintf(uidbuf, sizeof(uidbuf), "%u", rows[i].uid), uidbuf),
			       name,
			       (unsigned long long)rows[i].stats.packets,
			       (unsigned long long)rows[i].stats.bytes);
	}
	if (cli.json)
		json_print(doc);
	free(rows);
	return EXIT_OK;
}

// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * sluice events: the running daemon's recent events, and with --follow every new one, read
 * from its control socket. JSON lines with --json, one text line per event otherwise.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>

#include "cli.h"
#include "control.h"
#include "event_format.h"
#include "log.h"

/* Longest text line printed for one event. */
#define EVENT_TEXT_MAX 8192

enum { OPT_FOLLOW = OPT_COMMAND_BASE };

static const struct option events_options[] = {
	{ "follow", no_argument, NULL, OPT_FOLLOW },
	CLI_COMMON_OPTIONS,
};

static int events_option(int opt, const char *arg, void *ctx)
{
	(void)arg;
	if (opt != OPT_FOLLOW)
		return EXIT_USAGE;
	*(bool *)ctx = true;
	return 0;
}

/* Print one line from the daemon: as it came (--json) or as text. */
static void print_event(const char *line)
{
	char text[EVENT_TEXT_MAX];
	json_error_t jerr;
	json_t *ev;

	if (cli.json) {
		printf("%s\n", line);
		return;
	}
	ev = json_loads(line, 0, &jerr);
	if (!ev)
		return;
	event_text(ev, text, sizeof(text));
	printf("%s\n", text);
	json_decref(ev);
}

int cmd_events(int argc, char **argv)
{
	bool follow = false;
	json_t *request, *reply = NULL;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	FILE *in;
	int ret, fd;

	ret = cli_parse_options("events", argc, argv, events_options, events_option, &follow);
	if (ret)
		return ret == -1 ? EXIT_OK : ret;
	if (optind < argc)
		return cli_usage_error("events", "unexpected argument '%s'", argv[optind]);

	request = json_pack("{s:s,s:b}", "command", "events", "follow", follow);
	fd = request ? control_open(cli.state_dir, request, &reply) : -ENOMEM;
	json_decref(request);
	if (fd == -ENOENT || fd == -ECONNREFUSED) {
		pr_err("no sluice daemon is running for state directory %s", cli.state_dir);
		return EXIT_FAIL;
	}
	if (fd < 0) {
		pr_err("cannot reach the daemon: %s", strerror(-fd));
		return EXIT_FAIL;
	}
	if (!json_is_true(json_object_get(reply, "ok"))) {
		pr_err("the daemon refused: %s",
		       json_string_value(json_object_get(reply, "error")) ?: "no reason given");
		json_decref(reply);
		close(fd);
		return EXIT_FAIL;
	}
	json_decref(reply);
	in = fdopen(fd, "r");
	if (!in) {
		close(fd);
		return EXIT_FAIL;
	}
	/* Each event as it comes, also when stdout is a pipe. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((len = getline(&line, &cap, in)) > 0) {
		if (line[len - 1] == '\n')
			line[len - 1] = '\0';
		print_event(line);
	}
	free(line);
	fclose(in);
	return EXIT_OK;
}

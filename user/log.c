// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* The leveled logger: sluice's messages and libbpf's, to stderr. */
#include <stdarg.h>
#include <stdio.h>
#include <bpf/libbpf.h>

#include "log.h"

static enum log_level current = LOG_INFO;
static char last_error[512];

static const char *const prefixes[] = {
	[LOG_ERROR] = "sluice: error: ",
	[LOG_WARN] = "sluice: warning: ",
	[LOG_INFO] = "sluice: ",
	[LOG_DEBUG] = "sluice: debug: ",
};

static int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	/*
	 * libbpf reports even expected conditions (an incompatible pin, a verifier log) at
	 * WARN; sluice says what failed in its own words and shows libbpf's only with -v.
	 */
	(void)level;
	if (current < LOG_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

void log_init(enum log_level level)
{
	current = level;
	libbpf_set_print(libbpf_log);
}

enum log_level log_level(void)
{
	return current;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	if (level == LOG_ERROR) {
		va_start(ap, fmt);
		vsnprintf(last_error, sizeof(last_error), fmt, ap);
		va_end(ap);
	}
	if (level > current)
		return;
	fputs(prefixes[level], stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

const char *log_last_error(void)
{
	return last_error;
}

/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* One leveled logger for sluice and for libbpf's own output (quiet unless -v). */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_init(enum log_level level); /* also routes libbpf's messages through log_msg */
enum log_level log_level(void);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The last error message logged, for JSON-mode error objects. */
const char *log_last_error(void);

#define pr_err(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define pr_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define pr_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define pr_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif

/* SPDX-License-Identifier: MIT */
/*
 * log - one line per event on stderr, prefixed with its level.
 *
 * The level is a file-scope setting made once before the loop runs (and on
 * SIGHUP). Messages are lower-case, name their object and say what happens
 * next. Never log private keys.
 */
#ifndef WGPUNCH_LOG_H
#define WGPUNCH_LOG_H

#include <stdbool.h>

enum log_level {
	LOG_LEVEL_ERR = 0,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
bool log_enabled(enum log_level level);

/* "error", "warn", "info", "debug" (also "warning", "err"). Returns 0 or -EINVAL. */
int log_parse_level(const char *s, enum log_level *out);
const char *log_level_name(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends ": strerror(-err)" and returns err, so callers can `return log_..._errno(r, ...)`. */
int log_msg_errno(enum log_level level, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_err(...) log_msg(LOG_LEVEL_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)                                         \
	do {                                                   \
		if (log_enabled(LOG_LEVEL_DEBUG))              \
			log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__); \
	} while (0)
#define log_err_errno(err, ...) log_msg_errno(LOG_LEVEL_ERR, (err), __VA_ARGS__)
#define log_warn_errno(err, ...) log_msg_errno(LOG_LEVEL_WARN, (err), __VA_ARGS__)
#define log_info_errno(err, ...) log_msg_errno(LOG_LEVEL_INFO, (err), __VA_ARGS__)

#endif

/* SPDX-License-Identifier: MIT */
/*
 * log - one line per event on stderr, prefixed with its level.
 *
 * On a terminal or a file the prefix is the level word ("warn: ..."). When
 * stderr is the systemd journal (JOURNAL_STREAM names stderr's device:inode,
 * sd-daemon(3)'s convention), the prefix is the syslog priority instead
 * ("<4>..."): journald strips it and files the line at that priority, so
 * `journalctl -p warning` works, and the level word would only repeat it.
 * journald adds the time either way; we never print one.
 *
 * The level and the stream kind are file-scope settings made once before the
 * loop runs (and the level on SIGHUP). Messages are lower-case, name their
 * object and say what happens next. Never log private keys.
 */
#ifndef WGPUNCH_LOG_H
#define WGPUNCH_LOG_H

#include <stdbool.h>
#include <stdint.h>

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

/*
 * Whether stderr is the journal: read from JOURNAL_STREAM and fstat(stderr)
 * on the first line logged, or now by log_detect_stream() (after stderr was
 * redirected, say). Returns what it found.
 */
bool log_detect_stream(void);
bool log_to_journal(void);

/* The syslog priority journald files a level under: 3 (err), 4, 6, 7 (debug). */
int log_level_priority(enum log_level level);

/*
 * Rate limit for a message that can repeat per packet or per pair: at most
 * `burst` lines per `interval_ms`; the rest are counted, and the next line
 * that passes ends with " (suppressed N similar lines)". The state lives in
 * the object the message is about (a pair, a session, a socket: one per call
 * site and object), never in a static (STYLE.md section 5). All zero means
 * the defaults (LOG_LIMIT_BURST lines per LOG_LIMIT_INTERVAL_MS), so a calloc'd
 * owner needs no set-up; log_limit_init() sets others. Time is any monotonic
 * clock in milliseconds, normally uv_now(loop) (log_now_ms() reads
 * CLOCK_MONOTONIC). A count is reported with the next line that passes: a
 * burst that stops for good leaves its last count unsaid.
 */
struct log_limit {
	uint64_t interval_ms;    /* 0: LOG_LIMIT_INTERVAL_MS */
	unsigned int burst;      /* 0: LOG_LIMIT_BURST */
	uint64_t window_start;   /* ms; the window is [start, start + interval) */
	unsigned int passed;     /* lines let through in this window */
	unsigned int suppressed; /* dropped since the last line that passed */
	bool started;
};

#define LOG_LIMIT_INTERVAL_MS 10000u
#define LOG_LIMIT_BURST 5u

void log_limit_init(struct log_limit *rl, uint64_t interval_ms, unsigned int burst);

/*
 * The decision alone: true if a line may be written at now_ms, and then
 * *suppressed holds how many were dropped before it (and is reset).
 */
bool log_limit_pass(struct log_limit *rl, uint64_t now_ms, unsigned int *suppressed);

uint64_t log_now_ms(void);

/* log_msg() through a rate limit; a disabled level neither passes nor counts. */
void log_msg_limited(struct log_limit *rl, uint64_t now_ms, enum log_level level, const char *fmt,
		     ...) __attribute__((format(printf, 4, 5)));

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

/* `log_warn_limited(&pair->drop_log, uv_now(loop), "pair %s: ...", ...)` */
#define log_err_limited(rl, now, ...) log_msg_limited((rl), (now), LOG_LEVEL_ERR, __VA_ARGS__)
#define log_warn_limited(rl, now, ...) log_msg_limited((rl), (now), LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info_limited(rl, now, ...) log_msg_limited((rl), (now), LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug_limited(rl, now, ...) log_msg_limited((rl), (now), LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif

/* SPDX-License-Identifier: MIT */
/*
 * log - "LEVEL: message" lines on stderr.
 *
 * Each line is formatted into one buffer and written with one fwrite(), so
 * stderr (unbuffered) gets it in a single write(2): lines from several
 * processes sharing one journal or terminal never interleave mid-line.
 */
#include "wgpunch/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Long enough for any message we write; longer ones are cut and marked. */
#define LOG_LINE_MAX 2048

/* Set once before the loop runs and on SIGHUP (STYLE.md section 5). */
static enum log_level log_level = LOG_LEVEL_INFO;

static const char *const log_names[] = {
	[LOG_LEVEL_ERR] = "error",
	[LOG_LEVEL_WARN] = "warn",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_DEBUG] = "debug",
};

void log_set_level(enum log_level level)
{
	if (level > LOG_LEVEL_DEBUG)
		level = LOG_LEVEL_DEBUG;
	log_level = level;
}

enum log_level log_get_level(void)
{
	return log_level;
}

bool log_enabled(enum log_level level)
{
	return level <= log_level;
}

int log_parse_level(const char *s, enum log_level *out)
{
	static const struct {
		const char *name;
		enum log_level level;
	} names[] = {
		{ "error", LOG_LEVEL_ERR }, { "err", LOG_LEVEL_ERR },
		{ "warn", LOG_LEVEL_WARN }, { "warning", LOG_LEVEL_WARN },
		{ "info", LOG_LEVEL_INFO }, { "debug", LOG_LEVEL_DEBUG },
	};

	if (!s)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcasecmp(s, names[i].name) == 0) {
			*out = names[i].level;
			return 0;
		}
	}
	return -EINVAL;
}

const char *log_level_name(enum log_level level)
{
	if (level > LOG_LEVEL_DEBUG)
		return "debug";
	return log_names[level];
}

/*
 * One event is one line: control characters (a newline in a peer-supplied
 * string, say) become '?', so nothing a peer sends can forge a log line.
 */
static void log_sanitize(char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f)
			s[i] = '?';
	}
}

/* Appends to line[*len] within cap; false once something had to be cut. */
static bool log_append(char *line, size_t cap, size_t *len, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static bool log_vappend(char *line, size_t cap, size_t *len, const char *fmt, va_list ap)
	__attribute__((format(printf, 4, 0)));

static bool log_vappend(char *line, size_t cap, size_t *len, const char *fmt, va_list ap)
{
	int n = vsnprintf(line + *len, cap - *len, fmt, ap);

	if (n < 0)
		return false;
	if ((size_t)n >= cap - *len) {
		*len = cap - 1;
		return false;
	}
	*len += (size_t)n;
	return true;
}

static bool log_append(char *line, size_t cap, size_t *len, const char *fmt, ...)
{
	va_list ap;
	bool ok;

	va_start(ap, fmt);
	ok = log_vappend(line, cap, len, fmt, ap);
	va_end(ap);
	return ok;
}

static void log_write(enum log_level level, const char *suffix, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

static void log_write(enum log_level level, const char *suffix, const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX];
	size_t cap = sizeof(line) - 1; /* keeps room for the final '\n' */
	size_t len = 0, start;
	bool whole;

	log_append(line, cap, &len, "%s: ", log_level_name(level));
	start = len;
	whole = log_vappend(line, cap, &len, fmt, ap);
	if (whole && suffix)
		whole = log_append(line, cap, &len, ": %s", suffix);
	if (!whole) /* cut: say so rather than end mid-word silently */
		memcpy(line + len - 3, "...", 3);
	log_sanitize(line + start, len - start);
	line[len++] = '\n';
	fwrite(line, 1, len, stderr);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	log_write(level, NULL, fmt, ap);
	va_end(ap);
}

int log_msg_errno(enum log_level level, int err, const char *fmt, ...)
{
	va_list ap;

	if (!log_enabled(level))
		return err;
	va_start(ap, fmt);
	log_write(level, strerror(err < 0 ? -err : err), fmt, ap);
	va_end(ap);
	return err;
}

/* SPDX-License-Identifier: MIT */
/*
 * log - "LEVEL: message" lines on stderr, "<PRIORITY>message" to the journal.
 *
 * Each line is formatted into one buffer and written with one fwrite(), so
 * stderr (unbuffered) gets it in a single write(2): lines from several
 * processes sharing one journal or terminal never interleave mid-line.
 */
#include "wgpunch/log.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Long enough for any message we write; longer ones are cut and marked. */
#define LOG_LINE_MAX 2048

/* Set once before the loop runs and on SIGHUP (STYLE.md section 5). */
static enum log_level log_level = LOG_LEVEL_INFO;
/* -1 until the first line (or log_detect_stream()); then whether stderr is the journal. */
static int log_journal = -1;

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

int log_level_priority(enum log_level level)
{
	/* syslog(3)'s LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG; we have no notice level. */
	static const int prio[] = {
		[LOG_LEVEL_ERR] = 3,
		[LOG_LEVEL_WARN] = 4,
		[LOG_LEVEL_INFO] = 6,
		[LOG_LEVEL_DEBUG] = 7,
	};

	if (level > LOG_LEVEL_DEBUG)
		return 7;
	return prio[level];
}

/*
 * systemd sets JOURNAL_STREAM=DEV:INODE (decimal) for a service whose stderr
 * is a journal stream. Only trust it if stderr still is that very socket: a
 * child of the service that redirected stderr to a file or a terminal
 * inherits the variable but must keep the plain format.
 */
bool log_detect_stream(void)
{
	const char *env = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	char *end;

	log_journal = 0;
	if (!env || !*env)
		return false;
	errno = 0;
	dev = strtoull(env, &end, 10);
	if (errno || end == env || *end != ':')
		return false;
	env = end + 1;
	ino = strtoull(env, &end, 10);
	if (errno || end == env || *end)
		return false;
	if (fstat(STDERR_FILENO, &st) < 0)
		return false;
	log_journal = (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
	return log_journal;
}

bool log_to_journal(void)
{
	if (log_journal < 0)
		log_detect_stream();
	return log_journal > 0;
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

/* suffix: ": strerror" or NULL; suppressed: a rate limit's count of dropped lines, or 0. */
static void log_write(enum log_level level, const char *suffix, unsigned int suppressed,
		      const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));

static void log_write(enum log_level level, const char *suffix, unsigned int suppressed,
		      const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX];
	size_t cap = sizeof(line) - 1; /* keeps room for the final '\n' */
	size_t len = 0, start;
	bool whole;

	if (log_to_journal())
		log_append(line, cap, &len, "<%d>", log_level_priority(level));
	else
		log_append(line, cap, &len, "%s: ", log_level_name(level));
	start = len;
	whole = log_vappend(line, cap, &len, fmt, ap);
	if (whole && suffix)
		whole = log_append(line, cap, &len, ": %s", suffix);
	if (whole && suppressed)
		whole = log_append(line, cap, &len, " (suppressed %u similar line%s)", suppressed,
				   suppressed == 1 ? "" : "s");
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
	log_write(level, NULL, 0, fmt, ap);
	va_end(ap);
}

int log_msg_errno(enum log_level level, int err, const char *fmt, ...)
{
	va_list ap;

	if (!log_enabled(level))
		return err;
	va_start(ap, fmt);
	log_write(level, strerror(err < 0 ? -err : err), 0, fmt, ap);
	va_end(ap);
	return err;
}

void log_limit_init(struct log_limit *rl, uint64_t interval_ms, unsigned int burst)
{
	*rl = (struct log_limit){ .interval_ms = interval_ms, .burst = burst };
}

bool log_limit_pass(struct log_limit *rl, uint64_t now_ms, unsigned int *suppressed)
{
	/* All zero (a calloc'd owner) means the defaults. */
	uint64_t interval = rl->interval_ms ? rl->interval_ms : LOG_LIMIT_INTERVAL_MS;
	unsigned int burst = rl->burst ? rl->burst : LOG_LIMIT_BURST;

	/* A window starts with the first line after the previous one ended. */
	if (!rl->started || now_ms < rl->window_start || now_ms - rl->window_start >= interval) {
		rl->started = true;
		rl->window_start = now_ms;
		rl->passed = 0;
	}
	if (rl->passed >= burst) {
		if (rl->suppressed < UINT_MAX)
			rl->suppressed++;
		return false;
	}
	rl->passed++;
	*suppressed = rl->suppressed;
	rl->suppressed = 0;
	return true;
}

uint64_t log_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void log_msg_limited(struct log_limit *rl, uint64_t now_ms, enum log_level level, const char *fmt,
		     ...)
{
	unsigned int suppressed;
	va_list ap;

	if (!log_enabled(level) || !log_limit_pass(rl, now_ms, &suppressed))
		return;
	va_start(ap, fmt);
	log_write(level, NULL, suppressed, fmt, ap);
	va_end(ap);
}

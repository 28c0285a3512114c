// SPDX-License-Identifier: MIT
/*
 * metrics - the Prometheus text format of the counter tables and gauges, and
 * the textfile-collector file it is kept in (see metrics.h).
 *
 * The format (0.0.4): per metric family a `# HELP name text` line (backslash
 * and newline escaped), a `# TYPE name counter|gauge` line, then its samples
 * `name{label="value"} number`, every line ending in '\n'. A family appears
 * once, its HELP and TYPE before its samples: node_exporter refuses a file that
 * breaks that, and it would drop every metric of the file, not only the bad one.
 */
#include "wgpunch/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wgpunch/log.h"

#define METRICS_PREFIX "wgpunch_"

/* ---- the renderer ---- */

void metrics_buf_init(struct metrics_buf *b)
{
	memset(b, 0, sizeof(*b));
}

void metrics_buf_free(struct metrics_buf *b)
{
	free(b->p);
	metrics_buf_init(b);
}

static bool buf_reserve(struct metrics_buf *b, size_t more)
{
	size_t cap;
	char *p;

	if (b->oom)
		return false;
	if (b->len + more + 1 <= b->cap)
		return true;
	cap = b->cap ? b->cap : 1024;
	while (cap < b->len + more + 1)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p) {
		b->oom = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

static void buf_mem(struct metrics_buf *b, const char *s, size_t n)
{
	if (!buf_reserve(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void buf_str(struct metrics_buf *b, const char *s)
{
	buf_mem(b, s, strlen(s));
}

static void buf_printf(struct metrics_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void buf_printf(struct metrics_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->oom = true;
		return;
	}
	if (!buf_reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* HELP text escapes backslash and newline; label values also the double quote. */
static void buf_escaped(struct metrics_buf *b, const char *s, bool quote)
{
	for (; *s; s++) {
		if (*s == '\\')
			buf_str(b, "\\\\");
		else if (*s == '\n')
			buf_str(b, "\\n");
		else if (quote && *s == '"')
			buf_str(b, "\\\"");
		else
			buf_mem(b, s, 1);
	}
}

static void family(struct metrics_buf *b, const char *name, const char *suffix, const char *help,
		   const char *type)
{
	buf_str(b, "# HELP " METRICS_PREFIX);
	buf_str(b, name);
	buf_str(b, suffix);
	buf_str(b, " ");
	buf_escaped(b, help, false);
	buf_printf(b, "\n# TYPE " METRICS_PREFIX "%s%s %s\n", name, suffix, type);
}

void metrics_add_counters(struct metrics_buf *b, const struct counter_table *t, const void *base)
{
	static const char strip[] = "_counters";
	size_t glen = strlen(t->group), i;
	char *name;

	if (glen > sizeof(strip) - 1 && strcmp(t->group + glen - (sizeof(strip) - 1), strip) == 0)
		glen -= sizeof(strip) - 1;
	for (i = 0; i < t->n; i++) {
		const struct counter_def *d = &t->defs[i];

		if (asprintf(&name, "%.*s_%s", (int)glen, t->group, d->name) < 0) {
			b->oom = true;
			return;
		}
		family(b, name, "_total", d->help, "counter");
		buf_printf(b, METRICS_PREFIX "%s_total %" PRIu64 "\n", name,
			   counter_value(base, d));
		free(name);
	}
}

void metrics_gauge_begin(struct metrics_buf *b, const char *name, const char *help)
{
	family(b, name, "", help, "gauge");
}

void metrics_gauge_sample(struct metrics_buf *b, const char *name, const char *label,
			  const char *value, double v)
{
	buf_str(b, METRICS_PREFIX);
	buf_str(b, name);
	if (label) {
		buf_printf(b, "{%s=\"", label);
		buf_escaped(b, value, true);
		buf_str(b, "\"}");
	}
	/* Whole numbers as such (the gauges are counts); %.17g round-trips anything else. */
	if (v >= -9007199254740992.0 && v <= 9007199254740992.0 && (double)(int64_t)v == v)
		buf_printf(b, " %" PRId64 "\n", (int64_t)v);
	else
		buf_printf(b, " %.17g\n", v);
}

void metrics_gauge(struct metrics_buf *b, const char *name, const char *help, double v)
{
	metrics_gauge_begin(b, name, help);
	metrics_gauge_sample(b, name, NULL, NULL, v);
}

/* ---- the file ---- */

int metrics_write_atomic(const char *path, const char *text, size_t len)
{
	const char *slash = strrchr(path, '/');
	char *tmp = NULL;
	size_t off = 0;
	int fd, r = 0;

	/* A dot name without .prom: the collector reads only *.prom, never a half-written file. */
	if (asprintf(&tmp, "%.*s.%s.XXXXXX", slash ? (int)(slash - path + 1) : 0, path,
		     slash ? slash + 1 : path) < 0)
		return -ENOMEM;
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		free(tmp);
		return r;
	}
	/* mkostemp makes it 0600; the collector often runs as another user. */
	if (fchmod(fd, 0644) < 0)
		r = -errno;
	while (r == 0 && off < len) {
		ssize_t n = write(fd, text + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			r = -errno;
		else
			off += (size_t)n;
	}
	/* Without it a crash after the rename could leave an empty file in place of the old. */
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0)
		unlink(tmp);
	free(tmp);
	return r;
}

struct metrics_file {
	uv_timer_t timer;
	char *path;
	metrics_render_cb render;
	void *arg;
	bool failing;            /* the last write failed */
	uint64_t fail_log_ms;    /* when the last failure was logged */
	uint64_t fails_unlogged; /* failures since then */
};

static uint64_t mono_ms(void)
{
	return uv_hrtime() / 1000000u;
}

int metrics_file_write_now(struct metrics_file *m)
{
	struct metrics_buf b;
	uint64_t now = mono_ms();
	int r;

	metrics_buf_init(&b);
	m->render(m->arg, &b);
	r = b.oom ? -ENOMEM : metrics_write_atomic(m->path, b.p ? b.p : "", b.len);
	metrics_buf_free(&b);
	if (r < 0) {
		if (!m->failing || now - m->fail_log_ms >= METRICS_FAIL_LOG_MS) {
			if (m->fails_unlogged)
				log_warn_errno(r,
					       "cannot write the metrics file %s (%" PRIu64
					       " more failures since the last message)",
					       m->path, m->fails_unlogged);
			else
				log_warn_errno(r, "cannot write the metrics file %s", m->path);
			m->fail_log_ms = now;
			m->fails_unlogged = 0;
		} else {
			m->fails_unlogged++;
		}
		m->failing = true;
		return r;
	}
	if (m->failing)
		log_info("metrics file %s written again", m->path);
	m->failing = false;
	m->fails_unlogged = 0;
	return 0;
}

static void metrics_on_timer(uv_timer_t *t)
{
	metrics_file_write_now(t->data);
}

int metrics_file_start(uv_loop_t *loop, const char *path, metrics_render_cb render, void *arg,
		       struct metrics_file **out)
{
	struct metrics_file *m;

	*out = NULL;
	if (!path)
		return 0;
	m = calloc(1, sizeof(*m));
	if (m)
		m->path = strdup(path);
	if (!m || !m->path) {
		free(m);
		return log_err_errno(-ENOMEM, "cannot start the metrics file %s", path);
	}
	m->render = render;
	m->arg = arg;
	uv_timer_init(loop, &m->timer);
	m->timer.data = m;
	/* The first write waits for one period: at once, the agent has nothing to show yet. */
	uv_timer_start(&m->timer, metrics_on_timer, METRICS_PERIOD_MS, METRICS_PERIOD_MS);
	*out = m;
	return 0;
}

static void metrics_on_closed(uv_handle_t *h)
{
	struct metrics_file *m = h->data;

	free(m->path);
	free(m);
}

void metrics_file_stop(struct metrics_file *m)
{
	if (!m)
		return;
	metrics_file_write_now(m);
	uv_timer_stop(&m->timer);
	uv_close((uv_handle_t *)&m->timer, metrics_on_closed);
}

const char *metrics_file_path(const struct metrics_file *m)
{
	return m->path;
}

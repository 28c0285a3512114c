/* SPDX-License-Identifier: MIT */
/*
 * metrics - the Prometheus text exposition format (version 0.0.4) of the status counters and
 * a few gauges, and the file the agent keeps it in (`metrics_file`), for node_exporter's
 * textfile collector: no HTTP server of our own.
 *
 * The renderer is pure: it appends text to a growing buffer. Counters come from the same
 * tables as the status document (counters.h), so a counter shows up in both under one name:
 * `wgpunch_<group>_<name>_total`, where <group> is the table's struct name without
 * "_counters" (link_counters.rx_datagrams -> wgpunch_link_rx_datagrams_total), with the
 * table's help text as HELP.
 *
 * The file writer owns one uv_timer: every METRICS_PERIOD_MS it asks its owner to render and
 * writes the text atomically (a temporary file in the same folder, fsync, rename), and once
 * more when stopped. A failed write is logged (at most once a minute while it keeps failing)
 * and tried again next period; it never stops the agent.
 */
#ifndef WGPUNCH_METRICS_H
#define WGPUNCH_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "wgpunch/counters.h"

#define METRICS_PERIOD_MS 5000
#define METRICS_FAIL_LOG_MS 60000 /* one log line a minute while writes keep failing */

/* ---- the renderer (pure) ---- */

struct metrics_buf {
	char *p; /* NUL-terminated when len > 0 */
	size_t len, cap;
	bool oom; /* an append failed: the text is incomplete and must not be written */
};

void metrics_buf_init(struct metrics_buf *b);
void metrics_buf_free(struct metrics_buf *b);

/* Every counter of t, read from the struct at base: HELP, TYPE counter, one sample each. */
void metrics_add_counters(struct metrics_buf *b, const struct counter_table *t, const void *base);

/*
 * A gauge family `wgpunch_<name>` without labels, or with one label: metrics_gauge_begin()
 * writes HELP and TYPE, then metrics_gauge_sample() one sample per label value (label NULL:
 * none). Every family must be begun once, before its samples.
 */
void metrics_gauge_begin(struct metrics_buf *b, const char *name, const char *help);
void metrics_gauge_sample(struct metrics_buf *b, const char *name, const char *label,
			  const char *value, double v);
/* begin + one unlabelled sample */
void metrics_gauge(struct metrics_buf *b, const char *name, const char *help, double v);

/* ---- the file (libuv) ---- */

/* Appends the whole document to b; called from the timer and from metrics_file_stop(). */
typedef void (*metrics_render_cb)(void *arg, struct metrics_buf *b);

struct metrics_file;

/* Starts writing to path (copied) every METRICS_PERIOD_MS (the first one period from now). 0, or
 * -ENOMEM (logged). path NULL: *out = NULL and 0 (no metrics). */
int metrics_file_start(uv_loop_t *loop, const char *path, metrics_render_cb render, void *arg,
		       struct metrics_file **out);
/* Renders and writes once more (the owner must still be alive), then closes the timer; the
 * writer frees itself once libuv is done and never calls back. NULL: nothing. */
void metrics_file_stop(struct metrics_file *m);
/* Writes once now, outside the period: 0 or -errno (logged, rate-limited). */
int metrics_file_write_now(struct metrics_file *m);
const char *metrics_file_path(const struct metrics_file *m);

/* The atomic write itself: path's folder gets a temporary file, which is fsynced and renamed
 * over path. 0 or -errno; nothing is left behind on failure. */
int metrics_write_atomic(const char *path, const char *text, size_t len);

#endif

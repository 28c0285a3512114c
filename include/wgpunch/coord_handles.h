/* SPDX-License-Identifier: MIT */
/*
 * coord_handles - every libuv handle the coordinator owns, in one list.
 *
 * A module embeds a struct coord_handle where it would embed a uv_udp_t or
 * uv_timer_t, and initialises it through this list, so the list is the one
 * place that knows what is open: start adds to it, reload asks each handle
 * whether it can stay (a socket whose address left the config cannot), and
 * shutdown closes them all and reports once the last close callback ran.
 * Nobody counts handles by hand. A handle may also close on its own before
 * shutdown (a relay port torn down, later): it leaves the list in its close
 * callback like the others.
 *
 * The handle's .data stays the owning module's; the list finds its entry from
 * the handle (the entry contains it).
 */
#ifndef WGPUNCH_COORD_HANDLES_H
#define WGPUNCH_COORD_HANDLES_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "wgpunch/config.h"

struct coord_handle;

struct coord_handle_ops {
	const char *what; /* for logs: "socket", "sweep timer" */
	/* Can this handle stay as it is under conf? 0, or -EAGAIN when only a restart applies
	 * conf. NULL: always. Must not change anything: all are asked before any is applied. */
	int (*reload_check)(const struct coord_handle *h, const struct config *conf);
};

struct coord_handle {
	union {
		uv_handle_t handle;
		uv_udp_t udp;
		uv_timer_t timer;
	} uv;
	const struct coord_handle_ops *ops;
	void *owner; /* for ops: the module the handle belongs to */
	struct coord_handles *list;
	struct coord_handle *prev, *next;
};

struct coord_handles {
	struct coord_handle *head;
	size_t n; /* in the list: open, or closing with the close callback still due */
	bool closing;
	void (*on_closed)(void *arg); /* after coord_handles_close_all()'s last close callback */
	void *arg;
};

void coord_handles_init(struct coord_handles *l, void (*on_closed)(void *arg), void *arg);

/* uv_udp_init() / uv_timer_init() on h, then h joins l. h->uv.*.data is set to owner. These
 * cannot fail on Linux (libuv only fails them for bad flags), so every handle of a module is
 * in the list before its first fallible step, and coord_handles_close_all() closes them all. */
void coord_handles_add_udp(struct coord_handles *l, uv_loop_t *loop, struct coord_handle *h,
			   const struct coord_handle_ops *ops, void *owner);
void coord_handles_add_timer(struct coord_handles *l, uv_loop_t *loop, struct coord_handle *h,
			     const struct coord_handle_ops *ops, void *owner);

/* 0 when every handle can stay under conf, else the first refusal (-EAGAIN). */
int coord_handles_reload_check(const struct coord_handles *l, const struct config *conf);

/* Closes every handle. on_closed runs (once, from the loop) after the last close callback;
 * when the list is already empty it runs before this returns. Idempotent. */
void coord_handles_close_all(struct coord_handles *l);

static inline bool coord_handles_closing(const struct coord_handles *l)
{
	return l->closing;
}

#endif

/* SPDX-License-Identifier: MIT */
/*
 * ctx - the process: one libuv loop, the signals, the running role and its
 * control socket. main() owns the one struct ctx; everything else gets it
 * through handle->data or an argument.
 */
#ifndef WGPUNCH_CTX_H
#define WGPUNCH_CTX_H

#include <stdbool.h>
#include <uv.h>

#include "wgpunch/config.h"
#include "wgpunch/control.h"

struct node;
struct coord;

struct ctx {
	uv_loop_t loop;
	struct config *conf; /* SIGHUP swaps in a new one */
	uv_signal_t sigint, sigterm, sighup;
	uv_timer_t shutdown_timer; /* bounds how long a shutdown may take */
	struct node *node;
	struct coord *coord;
	struct control control;
	int exit_code;
	bool stopping;
	bool timed_out; /* the shutdown did not drain in time */
};

/*
 * Loads nothing: conf is already validated. Claims the control socket, starts
 * the role, runs the loop until SIGINT/SIGTERM or a fatal error, and shuts
 * down cleanly (the socket file removed, every handle closed). SIGHUP
 * re-reads conf->path. Returns the process exit code: 0 after a signal, 1
 * after a start-up failure or a fatal error. Takes ownership of conf.
 */
int ctx_run(struct config *conf);

#endif

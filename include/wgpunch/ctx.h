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
	struct node *node;
	struct coord *coord;
	struct control control;
	int exit_code;
	bool stopping;
};

/* Loads nothing: conf is already validated. Starts the role and the control
 * socket, runs the loop until SIGINT/SIGTERM or a fatal error, shuts down
 * cleanly. Returns the process exit code; takes ownership of conf. */
int ctx_run(struct config *conf);

#endif

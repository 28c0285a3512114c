/* SPDX-License-Identifier: MIT */
/*
 * control - the control socket (a Unix stream socket) and its client.
 *
 * A client connects and writes one request line; the agent answers with
 * one JSON document and closes. Requests: "status".
 */
#ifndef WGPUNCH_CONTROL_H
#define WGPUNCH_CONTROL_H

#include <cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <uv.h>

/* A request line, its newline included, fits this (longer ones are dropped). */
#define CONTROL_MAX_REQUEST 128

enum control_request {
	CONTROL_REQ_MORE = 0, /* no whole line yet: read on */
	CONTROL_REQ_STATUS,
	CONTROL_REQ_UNKNOWN, /* a whole line that names no request: answered with an error */
	CONTROL_REQ_DROP,    /* too long without a newline, or EOF before any byte */
};

/*
 * Frames and names the request in the len bytes a client has sent so far (eof: it will
 * send no more). The line ends at the first '\n' (a '\r' before it is dropped) or at EOF.
 * Pure, so the server's only decoder of outside input can be fuzzed.
 */
enum control_request control_parse_request(const char *buf, size_t len, bool eof);

/* Builds the status document; the control module frees it. */
typedef cJSON *(*control_status_fn)(void *arg);

struct control_server;

/*
 * A handle on one listening socket. All of its state lives in the heap and
 * is released by libuv's close callbacks, so a struct control may be copied,
 * and reused by control_start() as soon as control_stop() returns.
 */
struct control {
	struct control_server *srv; /* NULL when not listening */
};

/*
 * Creates the socket's folder if needed and listens. A socket file that
 * nobody answers on (left by a killed agent) is replaced; one that answers
 * gives -EADDRINUSE. 0 or -errno (logged). fn is called for every "status"
 * request, on the loop.
 */
int control_start(struct control *ctl, uv_loop_t *loop, const char *path, control_status_fn fn,
		  void *arg);
/* Stops listening and unlinks the socket; open client connections are closed.
 * Does nothing when ctl is not listening. fn is never called after this. */
void control_stop(struct control *ctl);

/* The socket's path while listening, else NULL. */
const char *control_path(const struct control *ctl);

/* Client side (not on a loop): sends "status", returns the reply (malloc'd), or NULL with
 * -errno in *err. Connecting, sending and each read time out after a few seconds. */
char *control_query(const char *path, int *err);

/* Renders a status document as the human table of `wgpunch status`. */
void control_print_table(const cJSON *status, FILE *out);

#endif

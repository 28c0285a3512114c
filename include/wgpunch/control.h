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

/* Builds the status document; the control module frees it. */
typedef cJSON *(*control_status_fn)(void *arg);

struct control_client;

struct control {
	uv_pipe_t server;
	bool listening;
	char *path;
	control_status_fn status;
	void *arg;
	unsigned int clients;
	struct control_client *client_list; /* open connections, closed by control_stop() */
};

/* Creates the socket's folder if needed and listens. 0 or -errno (logged). */
int control_start(struct control *ctl, uv_loop_t *loop, const char *path, control_status_fn fn,
		  void *arg);
/* Stops listening and unlinks the socket; open client connections are closed. */
void control_stop(struct control *ctl);

/* Client side (not on a loop): sends "status", returns the reply (malloc'd) or NULL with -errno in *err. */
char *control_query(const char *path, int *err);

/* Renders a status document as the human table of `wgpunch status`. */
void control_print_table(const cJSON *status, FILE *out);

#endif

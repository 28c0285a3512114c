/* SPDX-License-Identifier: MIT */
/*
 * node - the node role: resolves the peers of one WireGuard interface.
 *
 * Keeps a Noise session with every configured coordinator, probes the NAT
 * mapping of the WireGuard port, registers the interface's peers, and writes
 * each resolved peer's endpoint and persistent keepalive into the interface.
 * A path is judged by WireGuard's own latest-handshake time.
 */
#ifndef WGPUNCH_NODE_H
#define WGPUNCH_NODE_H

#include <cJSON.h>
#include <uv.h>

#include "wgpunch/config.h"

struct node;

/* Called once when the node cannot go on (e.g. the interface cannot be read
 * at start-up); err is -errno and the cause has been logged. */
typedef void (*node_fatal_cb)(void *arg, int err);

/*
 * Starts the node on loop. conf must stay valid until node_stop() or the
 * next node_reload(). Failures detected synchronously are logged and
 * returned as -errno (fatal is then never called).
 */
int node_start(uv_loop_t *loop, const struct config *conf, node_fatal_cb fatal, void *arg,
	       struct node **out);

/* Applies a new config in place where it can (coordinators, keepalive,
 * relay); 0, or -EAGAIN when the role must be restarted (interface,
 * backend changed). The old config may be freed after this returns 0. */
int node_reload(struct node *n, const struct config *conf);

/* Closes every handle; memory is released in the close callbacks, so the
 * caller runs the loop until it is drained. */
void node_stop(struct node *n);

/* Status for the control socket: see docs/status-json.md. Caller owns it. */
cJSON *node_status(struct node *n);

#endif

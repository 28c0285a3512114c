/* SPDX-License-Identifier: MIT */
/*
 * node_session - the Noise session of a node_coord, node side
 * (docs/rendezvous.md section 1): HS_INIT with its retries and backoff,
 * HS_RESP and the transport keys, re-key every 120 s, DATA sent and received
 * (replay window, the previous session kept for DATA in flight) and
 * SESSION_UNKNOWN.
 *
 * It sits between node_coord.c (the socket below: node_coord_send() out,
 * node_session_on_datagram() in) and node_rdv.c (the steps above:
 * node_session_send() out, node_rdv_on_msg() in; node_rdv_session_up() and
 * node_rdv_session_down() as the session comes and goes).
 */
#ifndef WGPUNCH_NODE_SESSION_H
#define WGPUNCH_NODE_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "wgpunch/addr.h"
#include "wgpunch/node_coord.h"
#include "wgpunch/proto.h"

/* Backoffs at their first values, for a new node_coord. */
void node_session_init(struct node_coord *c);
/* A new handshake, retried from the first, quick interval on. Nothing leaves without the
 * device's key and the coordinator's address; the device read and the resolver call this
 * again when they complete. */
void node_session_begin(struct node_coord *c);
/* The device is known (or its key changed): handshake now if resolved. */
void node_session_device_ready(struct node_coord *c);
/* The session is gone (why: for the log): its keys are dropped and every step it carried
 * stops. The caller decides when the next handshake starts. */
void node_session_down(struct node_coord *c, const char *why);
/* REGISTER_ACK came: the session demonstrably works, so the SESSION_UNKNOWN backoff starts
 * over. */
void node_session_confirmed(struct node_coord *c);
/* Encrypts one inner message into DATA under the current session and sends it to `to`.
 * 0, -ENOTCONN without a session, or -errno. */
int node_session_send(struct node_coord *c, const struct proto_msg *m, const struct addr *to);
/* One datagram from the session socket (len bytes of c->rxbuf, not truncated). */
void node_session_on_datagram(struct node_coord *c, const uint8_t *buf, size_t len);

#endif

/* SPDX-License-Identifier: MIT */
/*
 * node_rdv - the rendezvous steps a node_coord's session carries, node side
 * (docs/rendezvous.md sections 2 to 4): REGISTER with its retries and the
 * 20 s refresh, probe rounds and the mapping they report, the filter echo,
 * PUNCH handed up to the node (node_on_punch()) and PUNCH_ACK sent twice.
 *
 * Every step needs the session up (node_session.c) and stops when it goes
 * down; the calls below do nothing on a session that is not up or a
 * node_coord that is closing.
 */
#ifndef WGPUNCH_NODE_RDV_H
#define WGPUNCH_NODE_RDV_H

#include <stdbool.h>
#include <stdint.h>

#include "wgpunch/node_coord.h"
#include "wgpunch/proto.h"

/* The session is up (new or re-keyed): REGISTER and probe at once, refresh every 20 s. */
void node_rdv_session_up(struct node_coord *c);
/* The session is down: every pending step and its timer stops. */
void node_rdv_session_down(struct node_coord *c);
/* One authentic inner message from the coordinator. */
void node_rdv_on_msg(struct node_coord *c, const struct proto_msg *m);

/* Peers, LAN addresses or port changed: REGISTER and probe again now (when up). */
void node_rdv_register_now(struct node_coord *c, bool probe);
/* Local addresses or links changed: a new uplink is a new mapping, so probe now (when up). */
void node_rdv_probe_now(struct node_coord *c);
/* A peer has no path and no PUNCH came: the next REGISTER asks for one (flag RESYNC); with
 * now, that REGISTER leaves at once rather than with the next refresh. */
void node_rdv_resync(struct node_coord *c, bool now);
/* The endpoint of a PUNCH with flag ACK is written: tell the coordinator (twice). */
void node_rdv_send_punch_ack(struct node_coord *c, uint32_t attempt);
/* "endpoint-independent", "endpoint-dependent" or "unknown" (both mappings needed). */
const char *node_rdv_mapping_type(const struct node_coord *c);

#endif

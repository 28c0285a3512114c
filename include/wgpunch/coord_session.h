/* SPDX-License-Identifier: MIT */
/*
 * coord_session - the coordinator's side of established sessions: DATA both
 * ways (transport keys, replay window, NAT rebinding on P), the messages a
 * node sends inside it (REGISTER and PUNCH_ACK on P, FILTER_ECHO on P + 1),
 * PROBE on P and P + 1 (rendezvous.md section 2), and SESSION_UNKNOWN for an
 * index we do not know. What fails a check is dropped and counted.
 */
#ifndef WGPUNCH_COORD_SESSION_H
#define WGPUNCH_COORD_SESSION_H

#include <stdint.h>

struct addr;
struct coord;
struct coord_sock;
struct proto_msg;
struct proto_outer;
struct reg_node;

/* DATA{m} to n's session address, from port P of its listen address; nothing
 * while n has no session. */
void coord_session_send(struct coord *c, struct reg_node *n, const struct proto_msg *m);

/* DATA `o` (decoded from buf, the whole datagram) from `from`, received on s. */
void coord_session_on_data(struct coord *c, struct coord_sock *s, const struct addr *from,
			   const uint8_t *buf, const struct proto_outer *o);

/* PROBE `o` (decoded from buf) from `from`, received on s: answered with MAPPING. */
void coord_session_on_probe(struct coord *c, struct coord_sock *s, const struct addr *from,
			    const uint8_t *buf, const struct proto_outer *o);

#endif

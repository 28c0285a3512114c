/* SPDX-License-Identifier: MIT */
/*
 * coord_punch - when the coordinator punches and how (rendezvous.md section
 * 4): readiness, consent, and the ordered punch that coord_pair decides,
 * with the timer that tells the second side when the first side's PUNCH_ACK
 * is late.
 */
#ifndef WGPUNCH_COORD_PUNCH_H
#define WGPUNCH_COORD_PUNCH_H

#include <stdbool.h>
#include <stdint.h>

struct coord;
struct reg_node;

/* Section 4.2: in session, registered, mapping[0] known and the filter test over. */
bool coord_punch_ready(const struct reg_node *n);

/* Call after anything readiness depends on changed; punches when section 4.4 says so.
 * was_ready: coord_punch_ready(n) before the change; changed: what section 4.4 counts
 * as a change (mapping[0], REGISTER content, RESYNC). */
void coord_punch_after_change(struct coord *c, struct reg_node *n, bool was_ready, bool changed);

/* PUNCH_ACK {attempt} from n: releases the second side of that attempt. */
void coord_punch_on_ack(struct coord *c, struct reg_node *n, uint32_t attempt);

#endif

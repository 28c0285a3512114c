/* SPDX-License-Identifier: MIT */
/*
 * punch - when the coordinator punches and how (rendezvous.md section 4):
 * a ready node's change punches every ready peer that consents, in the order
 * coord_pair decides, with the timer that tells the second side when the
 * first side's PUNCH_ACK is late.
 *
 * It owns the table of pending attempts (coord_pair) and its timer. It asks
 * the directory (readiness, consent, lookups) and sends through the
 * transport; nothing it calls calls it back. Counters: punch_counters_table.
 */
#ifndef WGPUNCH_PUNCH_H
#define WGPUNCH_PUNCH_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "wgpunch/coord_handles.h"
#include "wgpunch/coord_pair.h"
#include "wgpunch/counters.h"

#define PUNCH_PENDING_MAX 16384 /* attempts waiting for a PUNCH_ACK */
/*
 * Finding 5: what one node's changes (mapping, REGISTER, RESYNC) may cost. Each pair punched
 * because of node n takes a token of n's bucket (GCRA, 8 bytes in the entry): a burst of
 * PUNCH_NODE_BURST pairs (a node coming up with that many peers), then PUNCH_NODE_PER_S a
 * second; pairs beyond are dropped and counted (the node's RESYNC asks again). And at most
 * PUNCH_PENDING_PER_NODE attempts it caused wait for an ack at once, so no node, and no group
 * below PUNCH_PENDING_MAX / PUNCH_PENDING_PER_NODE colluding keys, fills the table that keeps
 * everybody's punches ordered.
 */
#define PUNCH_NODE_BURST 128
#define PUNCH_NODE_PER_S 8
#define PUNCH_PENDING_PER_NODE 128
#define PUNCH_SUMMARY_MS 10000 /* one info line about punches per this, with counts */

#define PUNCH_COUNTERS(X)                                                                  \
	X(ack_unknown, "PUNCH_ACK for no pending attempt of that node")                    \
	X(punch_pairs, "pairs punched")                                                    \
	X(punch_unordered, "pairs told both at once: the pending table was full")          \
	X(punch_released, "second PUNCHes sent after an ack or a timeout")                 \
	X(punch_limited, "pairs not punched: the causing node's re-punch budget is spent") \
	X(punch_deferred, "pairs not punched: the causing node has its quota of pending attempts")

struct punch_counters {
	PUNCH_COUNTERS(COUNTER_FIELD)
};
COUNTER_TABLE_DECLARE(punch_counters);

struct dir;
struct reg_node;
struct transport;

struct punch {
	uv_loop_t *loop;
	struct transport *t;
	struct dir *dir;
	struct coord_pair_table pending;
	struct coord_handle timer; /* timer.uv.timer: the next attempt's ack deadline */
	/* Per slot of the pending table (an attempt's low 16 bits): whether its first side
	 * caused it, so the cause's n_pending is given back on release. */
	uint8_t cause_first[PUNCH_PENDING_MAX];
	uint64_t summary_ms;                     /* the last summary line */
	uint64_t summary_pairs, summary_limited; /* since then */
	struct punch_counters ctr;
};

/* Adds the timer to handles, sizes the attempt table and routes PUNCH_ACK (P) to itself.
 * 0 or -ENOMEM. */
int punch_init(struct punch *p, uv_loop_t *loop, struct coord_handles *handles, struct transport *t,
	       struct dir *dir);
/* Frees the table; only after handles closed the timer. */
void punch_destroy(struct punch *p);

/* Whether n may cause one more punch at now_ms; takes its token if so. Pure (for tests). */
bool punch_node_allow(struct reg_node *n, uint64_t now_ms);

/* Call after anything readiness depends on changed; punches when section 4.4 says so.
 * was_ready: dir_ready(n) before the change; changed: what section 4.4 counts as a change
 * (mapping[0], REGISTER content, RESYNC). */
void punch_after_change(struct punch *p, struct reg_node *n, bool was_ready, bool changed);

#endif

/* SPDX-License-Identifier: MIT */
/*
 * coord_pair - the ordered punch (rendezvous.md section 4), pure: which side
 * of a pair is told first, the two PUNCH messages, and a bounded table of
 * attempts waiting for the first side's PUNCH_ACK. Time is passed in; no
 * I/O, no logging. coord_punch.c owns the timer, coord.c the sockets.
 *
 * Why an order: a router without an inbound filter ("poisonable") keeps a
 * peer's packet that arrives before its host has sent one, and then remaps
 * the host's own flow. So the poisonable side's packet must leave first;
 * PUNCH_ACK tells us it has, and only then is the other side told.
 */
#ifndef WGPUNCH_COORD_PAIR_H
#define WGPUNCH_COORD_PAIR_H

#include <stdbool.h>
#include <stdint.h>

#include "wgpunch/key.h"
#include "wgpunch/proto.h"
#include "wgpunch/registry.h"

/* How long the second side waits for the first side's PUNCH_ACK. */
#define COORD_PAIR_ACK_TIMEOUT_MS 500
/* Attempt ids carry the slot in their low 16 bits. */
#define COORD_PAIR_MAX_CAP 65536u

/* Why the first side of a pair goes first: the order's own reason, for the log. */
enum coord_pair_why {
	COORD_PAIR_WHY_CAUSED = 0,      /* neither side is poisonable: the side that caused it */
	COORD_PAIR_WHY_POISONABLE,      /* first is the only poisonable side */
	COORD_PAIR_WHY_BOTH_POISONABLE, /* no order helps both: the side that caused it */
};

/*
 * true when the side that caused the punch goes first: unless the other side
 * is the only poisonable one. Arguments are enum proto_filter values (a test
 * that is pending or timed out counts as UNKNOWN, which is treated as SAFE).
 * *why (if not NULL) gets the reason.
 */
bool coord_pair_cause_first(uint8_t filter_cause, uint8_t filter_other, enum coord_pair_why *why);

/* "first caused it", "first is the only poisonable side", "both poisonable, first caused it" */
const char *coord_pair_why_text(enum coord_pair_why why);

/* The filter value the order uses for n: its result once the test is done, else UNKNOWN. */
uint8_t coord_pair_filter_of(const struct reg_node *n);

/* PUNCH about `about` (its key, mapping[0], LAN candidates) with attempt and flags. */
void coord_pair_punch_about(const struct reg_node *about, uint32_t attempt, uint8_t flags,
			    struct proto_punch *out);

/* One slot of the table. attempt == 0 means the slot is free. */
struct coord_pair_pending {
	uint32_t attempt;
	uint32_t prev, next; /* age-ordered list of used slots, or the free list (next only) */
	uint16_t gen;        /* bumped on every use, so a stale ack cannot match a new attempt */
	uint64_t deadline_ms;
	uint8_t first_key[KEY_LEN];
	uint8_t second_key[KEY_LEN];
};

/*
 * Every attempt gets the same timeout, so insertion order is deadline order:
 * the list head always expires next. Add, ack and expire are O(1).
 */
struct coord_pair_table {
	struct coord_pair_pending *slots;
	uint32_t cap, n;
	uint32_t head, tail; /* oldest and newest used slot */
	uint32_t free_head;
};

/* cap in 1..COORD_PAIR_MAX_CAP. 0 or -EINVAL / -ENOMEM. */
int coord_pair_table_init(struct coord_pair_table *t, uint32_t cap);
void coord_pair_table_destroy(struct coord_pair_table *t);

/*
 * What to do for one pair. to_first always goes out now. to_second goes out
 * now as well when second_now (the table was full: no ordering, which is no
 * worse than not punching), else when coord_pair_ack() or coord_pair_expire()
 * releases the attempt (the caller then rebuilds it from the registry, so it
 * carries first's current mapping).
 */
struct coord_pair_plan {
	const struct reg_node *first, *second;
	enum coord_pair_why why;      /* why first goes first */
	uint32_t attempt;             /* 0 when second_now */
	struct proto_punch to_first;  /* about second; PROTO_PUNCH_F_ACK unless second_now */
	struct proto_punch to_second; /* about first; no flags */
	bool second_now;
};

/* Decides the order of the pair (cause, other), builds both PUNCH messages and
 * records the attempt (deadline now_ms + COORD_PAIR_ACK_TIMEOUT_MS). */
void coord_pair_start(struct coord_pair_table *t, const struct reg_node *cause,
		      const struct reg_node *other, uint64_t now_ms, struct coord_pair_plan *out);

/* A released attempt: tell second about first now (if both are still there and consent). */
struct coord_pair_release {
	uint32_t attempt;
	uint8_t first_key[KEY_LEN];
	uint8_t second_key[KEY_LEN];
};

/* PUNCH_ACK {attempt} from the node with key from_key. true (and *out) when it
 * matched a pending attempt whose first side is from_key; the slot is freed. */
bool coord_pair_ack(struct coord_pair_table *t, uint32_t attempt, const uint8_t from_key[KEY_LEN],
		    struct coord_pair_release *out);
/* Pops the oldest attempt when its deadline is at or before now_ms. Call until false. */
bool coord_pair_expire(struct coord_pair_table *t, uint64_t now_ms, struct coord_pair_release *out);
/* The next deadline, or -1 when nothing is pending. */
int64_t coord_pair_next_deadline(const struct coord_pair_table *t);

#endif

/* SPDX-License-Identifier: MIT */
/*
 * paths - the peer table of the node's WireGuard interface, pure: one
 * node_peer path machine (node_peer.h) per device peer, the PUNCHes of every
 * link merged into it, and the WireGuard writes that carry out what the
 * machines decide. No I/O and no clock reads: the shell (paths_shell.c) reads
 * and writes the device and passes the monotonic time in.
 *
 * Several links (coordinators, address families) may punch the same pair.
 * One pair punched by two links is one attempt: a PUNCH from another link
 * than the one that opened the attempt under way, with the same candidates,
 * changes nothing and is only acked. A PUNCH from the same link restarts the
 * attempt as it always did (the coordinator saw something change), and so does
 * one with other candidates. A link that goes down owns no attempt any more.
 */
#ifndef WGPUNCH_PATHS_H
#define WGPUNCH_PATHS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wgpunch/counters.h"
#include "wgpunch/node_peer.h"
#include "wgpunch/proto.h"

/* How often the device is read without a path attempt open: what it notices (new peers,
 * port, addresses when rtnetlink is unavailable) is seen within this. */
#define PATHS_POLL_SLOW_MS 5000
#define PATHS_POLL_FAST_MS 250 /* ... and while an attempt is open */

#define PATHS_COUNTERS(X)                                                           \
	X(punches, "PUNCH messages received, from every link")                      \
	X(punches_ignored, "PUNCHes for a key that is not a peer of the interface") \
	X(punches_merged, "PUNCHes for an attempt another link opened: acked only") \
	X(punches_on_relay, "PUNCHes for a peer on a working relay: acked only")    \
	X(relays, "RELAY messages for a peer of the interface")                     \
	X(upgrades_tried, "direct paths tried from the relay (on a PUNCH)")
struct paths_counters {
	PATHS_COUNTERS(COUNTER_FIELD)
};
COUNTER_TABLE_DECLARE(paths_counters);

/* One write of a peer's settings on the device (the shell turns it into the backend's
 * update): the engine's output. */
#define PATHS_W_ENDPOINT 0x1
#define PATHS_W_KEEPALIVE 0x2
struct paths_write {
	uint8_t public_key[KEY_LEN];
	unsigned int flags; /* PATHS_W_* */
	struct addr endpoint;
	uint16_t keepalive_s;
};

struct paths_peer {
	struct node_peer m;
	unsigned int link_id;     /* the link whose PUNCH opened the attempt; 0 = none */
	unsigned int punch_link; /* the link of the last PUNCH (its coordinator relays); 0 = none */
	unsigned int relay_link; /* the link of the last RELAY; 0 = none */
	struct proto_punch punch; /* that PUNCH, to recognise the same one from another link */
};

struct paths {
	struct paths_peer *peers; /* one per device peer, in the device's order */
	size_t n;
	struct paths_counters counters;
};

/* What to do with a PUNCH. */
enum paths_verdict {
	PATHS_IGNORED = 0, /* not a peer (or no device yet): nothing, not even an ack */
	PATHS_MERGED,      /* the same attempt, opened by another link: ack only */
	PATHS_RUN,         /* act holds the machine's action */
};

void paths_init(struct paths *ps);
void paths_free(struct paths *ps);

/* Rebuilds the table for the device's peer keys (in the device's order), keeping each known
 * peer's state. 1 when the set of keys changed, 0 when not, -ENOMEM (the old table is kept). */
int paths_sync(struct paths *ps, const uint8_t (*keys)[KEY_LEN], size_t n, uint64_t now_ms);
struct paths_peer *paths_find(struct paths *ps, const uint8_t key[KEY_LEN]);

/* A PUNCH from link link_id (nonzero). With PATHS_RUN, *act and *out are set. */
enum paths_verdict paths_on_punch(struct paths *ps, unsigned int link_id,
				  const struct proto_punch *punch,
				  const struct node_peer_self *self,
				  const struct node_peer_obs *obs, uint64_t now_ms,
				  struct paths_peer **out, enum node_peer_action *act);
/* A RELAY from link link_id: the peer (NULL: not ours) and the machine's action in *act. */
struct paths_peer *paths_on_relay(struct paths *ps, unsigned int link_id,
				  const struct proto_relay *relay, uint32_t rnd,
				  const struct node_peer_obs *obs, uint64_t now_ms,
				  enum node_peer_action *act);
/* The link went down: the attempts it opened are nobody's now. */
void paths_link_down(struct paths *ps, unsigned int link_id);

/* The WireGuard writes for a WRITE, WRITE_QUIET, KICK or UP_KEEPALIVE action on p, with the
 * configured keepalive: keepalive 0 then endpoint + keepalive (the kick), or endpoint with
 * keepalive 0 (quiet), or keepalive 0 then keepalive. Returns how many of u[2] it filled. */
size_t paths_updates(const struct paths_peer *p, enum node_peer_action act, uint16_t keepalive_s,
		     struct paths_write u[2]);

/* Delay until the next device read: fast while an attempt is open, at a deferred kick. */
uint64_t paths_poll_delay(const struct paths *ps, uint64_t now_ms);
/* The first time a peer wants a RESYNC; UINT64_MAX when none. */
uint64_t paths_resync_due(const struct paths *ps);
/* Marks every peer that wants one as asked. Returns true when any did; *early: at least one
 * is still below the refresh period, so the REGISTER should leave now. */
bool paths_resync(struct paths *ps, uint64_t now_ms, bool *early);

/* The peer part of a REGISTER: fingerprints and the page fields. */
void paths_fill_register(const struct paths *ps, struct proto_register *reg);

#endif

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
	X(upgrades_tried, "direct paths tried from the relay (on a PUNCH)")         \
	X(upgrades_asked, "PUNCHes asked (RESYNC) by the upgrade timer of a relayed peer")
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

/* REGISTER pages a node sends at most: PATHS_MAX_PAGES x PROTO_MAX_PEERS peers (25,600)
 * are registered; peers past that are not (logged by the shell). */
#define PATHS_MAX_PAGES 256

struct paths {
	struct paths_peer *peers; /* one per device peer, in the device's order */
	size_t n;
	/* Open addressing by key: slot holds index + 1 (0 = empty); cap is a power of two
	 * above 2n. Rebuilt by paths_sync(), so lookups and syncs stay linear in the peers
	 * (thousands of them on a large interface). */
	uint32_t *slot;
	size_t cap;
	/* key_fingerprint() of every peer, sorted: REGISTER's pages are slices of it, so the
	 * coordinator can put them together in order. Rebuilt by paths_sync(). */
	uint64_t *fps;
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
struct paths_peer *paths_find(const struct paths *ps, const uint8_t key[KEY_LEN]);

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

/*
 * Why a peer is not connected, in words a person can act on (status, metrics), decided from
 * what the engine already has plus the links' state. The names are stable (the status JSON's
 * "reason", docs/status-json.md); the texts are for people and may change.
 */
enum paths_reason {
	PATHS_REASON_NONE = 0,       /* connected: no reason */
	PATHS_REASON_ATTEMPT,        /* an attempt is running */
	PATHS_REASON_NO_COORDINATOR, /* no coordinator session is up */
	PATHS_REASON_WAITING,        /* new, no PUNCH yet, within PATHS_FIRST_PUNCH_MS */
	PATHS_REASON_PEER_UNKNOWN,   /* no PUNCH comes: not registered, or does not list us */
	PATHS_REASON_NO_HANDSHAKE,   /* every candidate written, WireGuard completed no handshake */
	PATHS_REASON_RELAY_OFF,      /* ... and our NAT maps per destination; relay = no */
	PATHS_REASON_NO_RELAY,       /* ... and our NAT maps per destination; no relay offered */
	PATHS_REASON_PATH_LOST,      /* a working path went stale */
};
#define PATHS_REASON_COUNT (PATHS_REASON_PATH_LOST + 1)

/*
 * A PUNCH follows a REGISTER, a RESYNC or the peer's arrival within a round trip when the
 * coordinator has both sides, but the RESYNC flag may ride on the 20 s refresh: so no PUNCH
 * this long after asking means the coordinators do not have the pair. A new peer gets
 * PATHS_FIRST_PUNCH_MS (the filter test and the first RESYNCs fit) before it is called unknown.
 */
#define PATHS_UNANSWERED_MS (NODE_PEER_RESYNC_MS + 10000)
#define PATHS_FIRST_PUNCH_MS 10000

/* What the links know, for paths_explain(). */
struct paths_links_view {
	size_t n_up;          /* links with a session up */
	bool per_destination; /* a link up found our mapping endpoint-dependent */
	bool relay;           /* `relay = yes` */
};

struct paths_explain {
	enum paths_reason reason;
	uint64_t since_ms;                 /* ATTEMPT: since the PUNCH that opened it */
	const struct node_peer_cand *cand; /* ATTEMPT: the one being tried; NO_HANDSHAKE, RELAY_*:
					    * the last tried; PATH_LOST: the one that worked */
	unsigned int cand_no, n_cands;     /* cand is number cand_no (from 1) of n_cands */
};

/* Fills *out for p (out->reason is also returned). */
enum paths_reason paths_explain(const struct paths_peer *p, const struct paths_links_view *links,
				uint64_t now_ms, struct paths_explain *out);
/* "connected" for NONE is never shown: a connected peer has no reason. */
const char *paths_reason_name(enum paths_reason r);
const char *paths_reason_text(enum paths_reason r);

/* The peer part of a REGISTER: fingerprints and the page fields. */
/* Fills page reg->page (set by the caller; 0 with a single page) and reg->n_pages. */
void paths_fill_register(const struct paths *ps, struct proto_register *reg);

#endif

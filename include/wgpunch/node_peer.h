/* SPDX-License-Identifier: MIT */
/*
 * node_peer - the path state machine of one WireGuard peer, pure.
 *
 * The node feeds it PUNCH messages and observations of the device (the
 * peer's endpoint, keepalive and WireGuard's latest-handshake, which is wall
 * clock) together with the monotonic time in ms, and carries out the action
 * returned. No I/O, no clock reads: tests drive it with a fake clock.
 *
 * A path is judged only by WireGuard's latest-handshake changing: a
 * handshake newer than the one seen before the endpoint was written means
 * the candidate works. WireGuard retries an initiation only every 5 s
 * (REKEY_TIMEOUT), so a candidate gets NODE_PEER_ATTEMPT_MS before the next.
 */
#ifndef WGPUNCH_NODE_PEER_H
#define WGPUNCH_NODE_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wgpunch/addr.h"
#include "wgpunch/key.h"
#include "wgpunch/proto.h"

#define NODE_PEER_ATTEMPT_MS 6000 /* > REKEY_TIMEOUT (5 s): one retried initiation fits */
#define NODE_PEER_FRESH_S 135     /* a handshake this recent means the path works */
#define NODE_PEER_STALE_S 180     /* REJECT_AFTER_TIME: with keepalive on, the path is gone */
/*
 * No path and no PUNCH: ask for one (REGISTER with RESYNC) after NODE_PEER_RESYNC_FIRST_MS,
 * then after twice as long each time up to NODE_PEER_RESYNC_MAX_MS. A PUNCH is sent once and
 * can be lost; without a path the peer waits for nothing else. A working path starts it
 * over (a PUNCH that fails does not: a failing pair is not punched in a loop). Past NODE_PEER_RESYNC_MS (the refresh period) the flag rides on a refresh.
 * The backoff goes on past the refresh period because a RESYNC makes the coordinator punch
 * every mutual pair of the node again: a peer that is simply absent (not running wgpunch, not
 * listing us) would otherwise cost that on every refresh, forever. A peer that arrives later
 * is pushed (its registration punches the pair), and its own fresh backoff asks again if that
 * PUNCH is lost.
 */
/* A PUNCH for the path in use nudges (NODE_PEER_NUDGE) at most this often. */
#define NODE_PEER_NUDGE_EVERY_MS 5000
#define NODE_PEER_RESYNC_FIRST_MS 2000
#define NODE_PEER_RESYNC_MS 20000
#define NODE_PEER_RESYNC_MAX_MS 320000
#define NODE_PEER_MAX_CAND (PROTO_MAX_LAN + 1) /* LAN ones, one IPv6, the IPv4 mapping */
/*
 * The second side of a pair (a PUNCH without the ACK flag) waits this long, plus up to
 * NODE_PEER_KICK_JITTER_MS, before its kick when the first side's initiation reaches its
 * WireGuard directly (a LAN candidate, or no NAT in front of us). Kicking at once there makes
 * the two initiations cross: each side answers the other's and drops the answer to its own,
 * and WireGuard's retry comes 5 s later. On a LAN the initiation needs well under a
 * millisecond; the wait only costs time when the first side's packet does not arrive.
 */
#define NODE_PEER_KICK_WAIT_MS 150
/*
 * On the relay, a PUNCH tries the direct path again (relay -> direct upgrade), at the earliest
 * NODE_PEER_UPGRADE_FIRST_MS after the RELAY came, then in slots each twice as far from the one
 * before up to NODE_PEER_UPGRADE_MAX_MS. The session exists, so no new handshake proves the direct
 * candidate: WireGuard's roaming does. It moves the endpoint to wherever the peer's authentic
 * packets come from, so bytes received while the endpoint stays on the direct candidate came
 * direct; the endpoint moving back (to the relay) or no bytes within NODE_PEER_UPGRADE_MS
 * means it failed, and the relay endpoint is written again.
 */
#define NODE_PEER_UPGRADE_FIRST_MS 30000
#define NODE_PEER_UPGRADE_MAX_MS 600000
#define NODE_PEER_UPGRADE_MS 3000
/*
 * The tries' times are slots counted from the RELAY (both sides get theirs at the same moment,
 * within a round trip): 30 s, then 60 s later, 120 s later and so on, whether a try happened in
 * a slot or not, so the two sides keep the same schedule even when one of them missed a try. A
 * PUNCH up to NODE_PEER_UPGRADE_EARLY_MS before our slot counts as in it: the other side's
 * slot may have come a little earlier, and its RESYNC brought the PUNCH.
 *
 * The upgrade timer: a relay the coordinator gave on request (a direct attempt failed, for a
 * reason the coordinator cannot see) asks for a PUNCH itself when its slot comes, with
 * REGISTER's RESYNC flag: the coordinator punches the pair's two sides in its usual order, so
 * both try the direct path at once. A slot whose PUNCH did not come within
 * NODE_PEER_UPGRADE_MISS_MS of asking is skipped. A relay given at once (the coordinator saw
 * that no direct path can work) has no timer: the coordinator punches again when what it saw
 * changes (a mapping), and a PUNCH in a slot tries then.
 */
#define NODE_PEER_UPGRADE_EARLY_MS 2000
#define NODE_PEER_UPGRADE_MISS_MS 10000
#define NODE_PEER_KICK_JITTER_MS 100

enum node_path {
	NODE_PATH_NONE = 0,
	NODE_PATH_LAN,
	NODE_PATH_DIRECT,
	NODE_PATH_IPV6,
	NODE_PATH_RELAY,
};

enum node_peer_state {
	NODE_PEER_IDLE = 0, /* never punched, no path seen */
	NODE_PEER_TRYING,   /* an endpoint was written; waiting for a handshake */
	NODE_PEER_UP,       /* a handshake proved the path */
	NODE_PEER_FAILED,   /* every candidate failed, or the path went stale */
};

enum node_peer_action {
	NODE_PEER_NOTHING = 0,
	NODE_PEER_WRITE, /* write keepalive 0, then candidate_addr + keepalive (the kick) */
	/* write candidate_addr with keepalive 0 (no kick); read the device at node_peer_kick_due() */
	NODE_PEER_WRITE_QUIET,
	NODE_PEER_KICK,   /* write keepalive 0, then keepalive N: the deferred kick */
	NODE_PEER_UP_NOW, /* the path came up: log it */
	/* the path came up while a deferred kick waited: log it and write keepalive N (WireGuard
	 * sends a keepalive over the new session, no initiation) */
	NODE_PEER_UP_KEEPALIVE,
	NODE_PEER_GIVE_UP, /* no candidate worked: path none; a RESYNC may ask again */
	/* a PUNCH for the path in use: keep the endpoint, but write keepalive 0, then N, so
	 * WireGuard sends a keepalive to the peer at once (see node_peer_on_punch) */
	NODE_PEER_NUDGE,
	NODE_PEER_DOWN,    /* a working path went stale: path none, ask for RESYNC */
};

struct node_peer_cand {
	struct addr addr;
	enum node_path path;
};

/* What the node knows of itself when a PUNCH comes. */
struct node_peer_self {
	struct addr mapping;      /* public mapping via the PUNCH's coordinator; unset: unknown */
	const struct addr *local; /* this host's own addresses (node_lan; ports ignored) */
	size_t n_local;
	uint32_t rnd; /* random bits: the deferred kick's jitter */
};

/* What the node last read from the device for this peer, plus the wall clock. */
struct node_peer_obs {
	struct addr endpoint; /* unset: none */
	uint16_t keepalive_s;
	int64_t handshake_s; /* wall clock; 0 = never */
	int64_t handshake_ns;
	int64_t wall_now_s; /* wall clock when observed */
	uint64_t rx_bytes;  /* WireGuard's received bytes: authenticated packets only */
};

struct node_peer {
	uint8_t key[KEY_LEN];
	struct node_peer_cand cands[NODE_PEER_MAX_CAND];
	uint8_t n_cands, cur;
	int64_t base_s, base_ns; /* latest-handshake before the current write */
	uint64_t base_rx;        /* rx_bytes before the current write */
	int64_t seen_s, seen_ns; /* latest-handshake last observed */
	uint64_t deadline_ms;    /* monotonic: give up on the current candidate */
	uint64_t kick_ms;        /* monotonic: the deferred kick is due; 0 = none waiting */
	uint64_t last_punch_ms;  /* monotonic: last PUNCH, or creation */
	uint64_t nudge_ms; /* when a PUNCH last made us send a keepalive (NODE_PEER_NUDGE); 0 = never */
	uint64_t resync_ms;      /* monotonic: last RESYNC asked, or creation */
	uint32_t resync_wait_ms; /* from the later of the two above to the next RESYNC */
	enum node_path path;
	enum node_peer_state state;
	bool stale; /* FAILED because a working path went stale, not because no candidate worked */
	struct addr relay; /* our relay endpoint for this peer; unset: none */
	uint64_t upgrade_after_ms; /* monotonic: the current slot; no upgrade try before */
	uint32_t upgrade_wait_ms;  /* from the current slot to the next */
	uint64_t upgrade_asked_ms; /* the timer asked for the current slot's PUNCH; 0 = not */
	bool upgrade_timer;        /* the relay came on request: ask for PUNCHes in the slots */
	bool upgrading;            /* a direct candidate is being tried from the relay */
	bool rx_based;             /* upgrading: rx_base was read after the write */
	bool relay_done;           /* the upgrade worked: the relay can be given back (once) */
	uint64_t rx_base;
};

void node_peer_init(struct node_peer *p, const uint8_t key[KEY_LEN], uint64_t now_ms);

/*
 * A PUNCH for this peer. self->mapping is our public mapping as seen by the
 * coordinator that sent it. Builds the candidates (node_peer_candidates())
 * and returns for the first:
 * - NODE_PEER_WRITE_QUIET when we are the second side (no ACK flag) and the
 *   first side's initiation reaches our WireGuard directly: the candidate is
 *   a LAN or IPv6 address, or our mapping's IP is one of our own (no NAT). The kick
 *   is due NODE_PEER_KICK_WAIT_MS (+ jitter from self->rnd) later, and only
 *   happens if no handshake came meanwhile (see node_peer_on_poll());
 * - NODE_PEER_WRITE otherwise (the first side, or a side whose NAT drops the
 *   first side's packet: kick at once);
 * - NODE_PEER_NOTHING when WireGuard already uses one of them with a
 *   handshake newer than NODE_PEER_FRESH_S (or there is no candidate at all);
 *   NODE_PEER_UP_KEEPALIVE instead when a deferred kick was still waiting.
 */
enum node_peer_action node_peer_on_punch(struct node_peer *p, const struct proto_punch *punch,
					 const struct node_peer_self *self,
					 const struct node_peer_obs *obs, uint64_t now_ms);

/*
 * A RELAY for this peer: the one candidate is the relay endpoint (path relay). Returns
 * NODE_PEER_WRITE (kick through the relay), NODE_PEER_WRITE_QUIET when second (the other
 * side initiates; the kick is due NODE_PEER_KICK_WAIT_MS + jitter from rnd later unless its
 * handshake came), or NODE_PEER_NOTHING when WireGuard already uses it with a fresh
 * handshake, or a direct path works.
 */
enum node_peer_action node_peer_on_relay(struct node_peer *p, const struct addr *relay, bool second,
					 uint32_t rnd, const struct node_peer_obs *obs,
					 uint64_t now_ms);
/*
 * A PUNCH for a peer on the relay: NODE_PEER_WRITE with the direct candidate when an upgrade
 * try is due (see NODE_PEER_UPGRADE_FIRST_MS), else NODE_PEER_NOTHING (acked only).
 */
enum node_peer_action node_peer_upgrade(struct node_peer *p, const struct proto_punch *punch,
					const struct node_peer_self *self,
					const struct node_peer_obs *obs, uint64_t now_ms);
/*
 * The upgrade timer (see NODE_PEER_UPGRADE_EARLY_MS): the monotonic time at which this peer, up
 * on a relay given on request, wants a PUNCH for a try at the direct path; UINT64_MAX when it
 * wants none (no relay, a relay given at once, a try under way, or this slot asked already).
 */
uint64_t node_peer_upgrade_due(const struct node_peer *p);

/*
 * Pure: the candidates of a PUNCH, in the order both sides try them (each gets
 * NODE_PEER_ATTEMPT_MS, and both sides get their PUNCH at about the same moment, so the same
 * order keeps them on the same kind of path at the same time):
 *   1. LAN: when the peer's public IP is our mapping's (behind the same NAT), its LAN IPv4 and
 *      unique local IPv6 addresses;
 *   2. IPv6: when both sides have a global IPv6 address (ours in self->local), one: the peer's
 *      public mapping if it is IPv6, else the first global IPv6 address of its list;
 *   3. direct: the peer's public IPv4 mapping.
 * The relay is last; it comes as RELAY, not in a PUNCH. Returns how many are in out.
 */
uint8_t node_peer_candidates(const struct proto_punch *punch, const struct node_peer_self *self,
			     struct node_peer_cand out[NODE_PEER_MAX_CAND]);

/* No NAT in front of us: mapping's IP is one of local[] (ports ignored). */
bool node_peer_no_nat(const struct addr *mapping, const struct addr *local, size_t n_local);

/*
 * A fresh observation of the device. keepalive_on: the node writes a
 * persistent keepalive, so a handshake older than NODE_PEER_STALE_S means
 * the path is gone. Returns NODE_PEER_WRITE when moving on to the next
 * candidate (see node_peer_candidate()). While a deferred kick waits: a new
 * handshake returns NODE_PEER_UP_KEEPALIVE; none by node_peer_kick_due()
 * returns NODE_PEER_KICK, and the candidate's NODE_PEER_ATTEMPT_MS starts then.
 */
enum node_peer_action node_peer_on_poll(struct node_peer *p, const struct node_peer_obs *obs,
					uint64_t now_ms, bool keepalive_on);

/* The candidate to write (valid after NODE_PEER_WRITE); NULL when none. */
const struct node_peer_cand *node_peer_candidate(const struct node_peer *p);

/* An attempt is open: the device should be read often. */
bool node_peer_attempt_open(const struct node_peer *p);

/* The monotonic time of the deferred kick: read the device then. UINT64_MAX when none waits. */
uint64_t node_peer_kick_due(const struct node_peer *p);

/*
 * The monotonic time at which this peer wants a RESYNC: no path, no attempt open, and no
 * PUNCH or RESYNC for resync_wait_ms; or its upgrade slot (node_peer_upgrade_due()).
 * UINT64_MAX when it wants none.
 */
uint64_t node_peer_resync_due(const struct node_peer *p);
bool node_peer_wants_resync(const struct node_peer *p, uint64_t now_ms);
/* A REGISTER with RESYNC was sent for it: the next one waits twice as long (capped); for an
 * upgrade slot, the slot is asked (its PUNCH is awaited for NODE_PEER_UPGRADE_MISS_MS). */
void node_peer_resync_asked(struct node_peer *p, uint64_t now_ms);

/* "none", "lan", "direct", "ipv6", "relay" */
const char *node_path_name(enum node_path path);

#endif

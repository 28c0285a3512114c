/* SPDX-License-Identifier: MIT */
/*
 * coord_hs - the coordinator's handshakes (rendezvous.md section 1): the
 * flood protection every HS_INIT passes first, then the Noise IK responder.
 */
#ifndef WGPUNCH_COORD_HS_H
#define WGPUNCH_COORD_HS_H

#include <stdint.h>

#include "wgpunch/addr.h"

/*
 * Handshake flood protection. Every HS_INIT costs four X25519 operations
 * (about 0.2 ms) before the coordinator knows whether its sender is real,
 * so HS_INIT passes two cheap checks first; what fails one is dropped and
 * counted (hs_rate_limited, hs_over_budget). Nodes retry with backoff and
 * keep their old session meanwhile, so dropping is safe.
 *
 *  - Per source: a token bucket (GCRA) per source IP, IPv6 by its /64 (one
 *    site's hosts share it, as hosts behind one NAT share an IPv4 address).
 *    COORD_HS_SOURCE_BURST lets 128 hosts behind one NAT that restart
 *    together all through at once; after that COORD_HS_SOURCE_PER_S a
 *    second. Sources map to COORD_HS_SLOTS slots by a keyed hash (SipHash,
 *    random key), with no eviction: sources that collide share a bucket,
 *    which an attacker cannot aim at without the key. Constant memory, O(1).
 *  - Global: COORD_HS_GLOBAL_PER_S handshakes a second in all (burst: one
 *    second's worth), about half a core; this is what holds against floods
 *    from many (spoofed) sources, and keeps the loop free for live sessions.
 *
 * Pure: time is passed in.
 */
#define COORD_HS_SLOTS 8192
#define COORD_HS_SOURCE_BURST 128
#define COORD_HS_SOURCE_PER_S 50
#define COORD_HS_GLOBAL_PER_S 2500
#define COORD_HS_HASH_KEY_LEN 16

enum coord_hs_verdict {
	COORD_HS_ALLOW = 0,
	COORD_HS_SOURCE_LIMITED, /* this source's bucket is empty */
	COORD_HS_OVER_BUDGET,    /* the global budget is spent (the source is not charged) */
};

struct coord_hs_limit {
	uint8_t hash_key[COORD_HS_HASH_KEY_LEN];
	uint64_t global_tat_us; /* GCRA: the theoretical arrival time of the next one */
	uint64_t source_tat_us[COORD_HS_SLOTS];
};

/* key: random, so that nobody can choose sources that share a slot. */
void coord_hs_limit_init(struct coord_hs_limit *l, const uint8_t key[COORD_HS_HASH_KEY_LEN]);
/* Decides about one HS_INIT from `from` at now_ms (monotonic) and charges it if allowed. */
enum coord_hs_verdict coord_hs_limit_check(struct coord_hs_limit *l, const struct addr *from,
					   uint64_t now_ms);

struct coord;
struct coord_sock;
struct proto_outer;

/*
 * HS_INIT `o` from `from`, received on port P of s. Past the flood protection
 * and the Noise checks (authentic, authorised key, timestamp newer than the
 * last accepted), it answers HS_RESP; the new session replaces the node's old
 * one, its entry (mapping, filter, peers) stays, and a new session address
 * starts a filter test. What fails a check is dropped and counted.
 */
void coord_hs_on_init(struct coord *c, struct coord_sock *s, const struct addr *from,
		      const struct proto_outer *o);

#endif

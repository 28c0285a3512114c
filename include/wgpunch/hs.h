/* SPDX-License-Identifier: MIT */
/*
 * hs - the coordinator's handshakes (rendezvous.md section 1): the flood
 * protection every HS_INIT passes first, then the Noise IK responder.
 *
 * It owns the limiter and the "over budget" warning's clock. A handshake that
 * passes creates or finds the node in the directory, installs the session
 * through the transport, answers HS_RESP through it, and hands the new session
 * address to the filter test. Issue 7's cheap checks (a MAC1 that proves the
 * sender knows our key, a cookie that proves its address under load) go in
 * hs_on_init() before the limiter charges anything. Counters: hs_counters_table.
 */
#ifndef WGPUNCH_HS_H
#define WGPUNCH_HS_H

#include <stdint.h>
#include <uv.h>

#include "wgpunch/addr.h"
#include "wgpunch/config.h"
#include "wgpunch/counters.h"

/*
 * Handshake flood protection. Every HS_INIT costs four X25519 operations
 * (about 0.2 ms) before the coordinator knows whether its sender is real,
 * so HS_INIT passes two cheap checks first; what fails one is dropped and
 * counted (hs_rate_limited, hs_over_budget). Nodes retry with backoff and
 * keep their old session meanwhile, so dropping is safe.
 *
 *  - Per source: a token bucket (GCRA) per source IP, IPv6 by its /64 (one
 *    site's hosts share it, as hosts behind one NAT share an IPv4 address).
 *    HS_SOURCE_BURST lets 128 hosts behind one NAT that restart together all
 *    through at once; after that HS_SOURCE_PER_S a second. Sources map to
 *    HS_SLOTS slots by a keyed hash (SipHash, random key), with no eviction:
 *    sources that collide share a bucket, which an attacker cannot aim at
 *    without the key. Constant memory, O(1).
 *  - Global: HS_GLOBAL_PER_S handshakes a second in all (burst: one second's
 *    worth), about half a core; this is what holds against floods from many
 *    (spoofed) sources, and keeps the loop free for live sessions.
 *
 * Pure: time is passed in.
 */
#define HS_SLOTS 8192
#define HS_SOURCE_BURST 128
#define HS_SOURCE_PER_S 50
#define HS_GLOBAL_PER_S 2500
#define HS_HASH_KEY_LEN 16

enum hs_verdict {
	HS_ALLOW = 0,
	HS_SOURCE_LIMITED, /* this source's bucket is empty */
	HS_OVER_BUDGET,    /* the global budget is spent (the source is not charged) */
};

struct hs_limit {
	uint8_t hash_key[HS_HASH_KEY_LEN];
	uint64_t global_tat_us; /* GCRA: the theoretical arrival time of the next one */
	uint64_t source_tat_us[HS_SLOTS];
};

/* key: random, so that nobody can choose sources that share a slot. */
void hs_limit_init(struct hs_limit *l, const uint8_t key[HS_HASH_KEY_LEN]);
/* Decides about one HS_INIT from `from` at now_ms (monotonic) and charges it if allowed. */
enum hs_verdict hs_limit_check(struct hs_limit *l, const struct addr *from, uint64_t now_ms);

#define HS_COUNTERS(X)                                                   \
	X(hs_accepted, "handshakes answered: a new session")             \
	X(hs_bad, "Noise message 1 failed to authenticate")              \
	X(hs_unauthorized, "key not in authorized_keys")                 \
	X(hs_replayed, "timestamp not later than the last accepted one") \
	X(hs_full, "registry at max_nodes: new node refused")            \
	X(hs_failed, "local failure (memory, index)")                    \
	X(hs_rate_limited, "dropped unread: its source sent too many")   \
	X(hs_over_budget, "dropped unread: the global handshake budget is spent")

struct hs_counters {
	HS_COUNTERS(COUNTER_FIELD)
};
COUNTER_TABLE_DECLARE(hs_counters);

struct dir;
struct filter;
struct transport;

struct hs {
	uv_loop_t *loop;
	const struct config *conf;
	struct transport *t;
	struct dir *dir;
	struct filter *filter;
	uint64_t budget_warned_ms; /* the last "over budget" warning (0 = never) */
	struct hs_limit limit;
	struct hs_counters ctr;
};

/* Keys the limiter at random and routes HS_INIT (P only) to itself. */
void hs_init(struct hs *h, uv_loop_t *loop, const struct config *conf, struct transport *t,
	     struct dir *dir, struct filter *filter);
/* The private key and authorized_keys of conf from now on (the key itself cannot change). */
void hs_reload(struct hs *h, const struct config *conf);

#endif

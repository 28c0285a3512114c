/* SPDX-License-Identifier: MIT */
/*
 * hs - the coordinator's handshakes (rendezvous.md section 1): the flood
 * protection every HS_INIT passes first, then the Noise IK responder.
 *
 * It owns the limiter and the "over budget" warning's clock. A handshake that
 * passes creates or finds the node in the directory, installs the session
 * through the transport, answers HS_RESP through it, and hands the new session
 * address to the filter test. Counters: hs_counters_table (and the budget's,
 * hs_budget_counters_table).
 */
#ifndef WGPUNCH_HS_H
#define WGPUNCH_HS_H

#include <stdint.h>
#include <uv.h>

#include "wgpunch/addr.h"
#include "wgpunch/config.h"
#include "wgpunch/cookie.h"
#include "wgpunch/counters.h"
#include "wgpunch/hs_budget.h"
#include "wgpunch/ratelimit.h"
#include "wgpunch/session.h"
#include "wgpunch/ts_table.h"

/*
 * Handshake flood protection, in the order every HS_INIT meets it (rendezvous.md section 1):
 *
 *  1. mac1 (cookie.h): the sender knows our public key. Bad mac1: dropped, counted, no answer,
 *     no state, nothing charged: one BLAKE2b, no X25519.
 *  2. mac2 proves the source receives at its address. Without it, from a source address and
 *     listen address that no session uses (transport_may_hold_session()), step 5's answer
 *     is certain before Noise is read: a cookie reply (within the cookie budget), no X25519.
 *     So a new node's first HS_INIT, every node's after a restart and a forged flood cost a
 *     BLAKE2b and a cookie, and only a rekey from the session's own address is read unproven.
 *     With mac2, the source's prefix is
 *     charged (ratelimit.h: HS_SOURCE_PER_S a second, burst HS_SOURCE_BURST, IPv6 by /64), so a
 *     forged flood with a victim's address can never spend the victim's bucket.
 *  3. The global budget (hs_budget.h), sized at start from the measured cost of one responder
 *     handshake and the operator's handshake_cpu: process, answer a cookie reply (under load,
 *     unproven), or drop.
 *  4. Noise, authorized_keys, the timestamp against ts_table (survives registry expiry).
 *     Noise is read in two steps: e, es and the static key s (one X25519), then ss and the
 *     timestamp (the second). Without mac2 and with no timestamp known for s, step 5's
 *     answer is already certain, so the second step is skipped: a new node's (or, after a
 *     restart, every node's) first HS_INIT costs one X25519, not two.
 *  5. Without mac2, a handshake that would create state or move it (no registry entry, no
 *     known timestamp, another source than the session's) gets a cookie reply instead: the
 *     registry only holds senders that showed they receive at their address.
 * A cookie reply (64 bytes) is always smaller than the HS_INIT (148) it answers.
 */
#define HS_SOURCE_BURST 128 /* 128 hosts behind one NAT restarting together */
#define HS_SOURCE_PER_S 50
#define HS_SOURCE_SLOTS 65536 /* prefixes the per-source table tracks (24 B each) */
#define HS_MEASURE_RESPONDER_N 20
#define HS_MEASURE_COOKIE_N 200

/* The per-source limiter's shape, as hs_init() sets it up (for tests). */
void hs_source_params(struct ratelimit_params *p);

#define HS_COUNTERS(X)                                                                           \
	X(hs_accepted, "handshakes answered: a new session")                                     \
	X(hs_bad, "Noise message 1 failed to authenticate")                                      \
	X(hs_unauthorized, "key not in authorized_keys")                                         \
	X(hs_replayed, "timestamp not later than the last accepted one")                         \
	X(hs_full, "registry at max_nodes: new node refused")                                    \
	X(hs_failed, "local failure (memory, index)")                                            \
	X(hs_bad_mac1, "dropped unread: mac1 wrong (sender does not know our key)")              \
	X(hs_rate_limited, "dropped unread: its proven source sent too many")                    \
	X(hs_over_budget, "dropped unread: the global handshake budget is spent")                \
	X(hs_cookie_sent, "cookie replies sent")                                                 \
	X(hs_cookie_required, "would create or move state without mac2: a cookie reply instead") \
	X(hs_cookie_unread, "of those, from an address with no session: cookie before any X25519")

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
	uint64_t budget_warned_ms;           /* the last "over budget" warning (0 = never) */
	uint64_t hs_cost_ns, cookie_cost_ns; /* measured at start */
	struct session_responder resp;       /* the Noise state every handshake starts from */
	struct cookie_responder cookie;
	struct ratelimit source; /* proven sources only */
	struct hs_budget budget;
	struct ts_table ts; /* last TAI64N per key, apart from the registry */
	/* The next cookie reply's nonce: 16 random bytes drawn at start and a 64-bit counter.
	 * XChaCha20's nonce must only be unique under the reply key (from our public key), and a
	 * counter needs no getrandom() system call per reply: under a flood those were 6 % of the
	 * coordinator's time. */
	uint8_t cookie_nonce[COOKIE_NONCE_LEN];
	struct hs_counters ctr;
};

/*
 * Measures the handshake and cookie costs (a few ms; logged at info), sizes the budget from
 * conf's handshake_cpu, keys the tables at random and routes HS_INIT (P only) to itself.
 * 0, or -ENOMEM / -errno (nothing left allocated).
 */
int hs_init(struct hs *h, uv_loop_t *loop, const struct config *conf, struct transport *t,
	    struct dir *dir, struct filter *filter);
/* Frees the tables and wipes the cookie secrets. */
void hs_destroy(struct hs *h);
/* The private key, authorized_keys and handshake_cpu of conf from now on (the key itself
 * cannot change; the budget is sized again from the costs measured at start). */
void hs_reload(struct hs *h, const struct config *conf);

#endif

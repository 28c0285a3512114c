/* SPDX-License-Identifier: MIT */
/*
 * ratelimit - a token bucket, and a bounded table of token buckets per source prefix.
 *
 * Pure: no clock reads (now_ms is passed in and must be monotonic; its origin does not
 * matter, only differences count), no I/O, no logging. ratelimit_init() allocates the table
 * once; ratelimit_allow() and the bucket functions never allocate.
 *
 * Integer arithmetic only: a bucket counts milli-tokens, and every elapsed millisecond adds
 * exactly rate_per_s of them, so a rate never drifts (no floating point, no rounding that
 * accumulates). A clock that goes backwards adds nothing and is otherwise ignored.
 */
#ifndef WGPUNCH_RATELIMIT_H
#define WGPUNCH_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wgpunch/addr.h"
#include "wgpunch/counters.h"

/* ---- one token bucket ---- */

/* The shape shared by many buckets (kept apart so a table entry stays small). */
struct bucket_rate {
	uint32_t rate_per_s; /* tokens added per second; 0: never refills */
	uint32_t burst;      /* capacity in tokens, >= 1 */
};

struct bucket {
	uint64_t level_mt; /* milli-tokens, <= burst * 1000 */
	uint64_t last_ms;  /* when level_mt was last brought up to date */
};

/* A full bucket at now_ms (a new source has not used anything yet). */
void bucket_init(struct bucket *b, const struct bucket_rate *r, uint64_t now_ms);
/* Adds what accrued since the last update. Idempotent for one now_ms. */
void bucket_refill(struct bucket *b, const struct bucket_rate *r, uint64_t now_ms);
/* Refills, then takes one token if there is one: true when taken. */
bool bucket_take(struct bucket *b, const struct bucket_rate *r, uint64_t now_ms);
/* Whole tokens available at now_ms (refills first). */
uint64_t bucket_tokens(struct bucket *b, const struct bucket_rate *r, uint64_t now_ms);

/* ---- a table of buckets, one per source prefix ---- */

/*
 * Sources are grouped by prefix, because one party controls a whole prefix: an IPv6 host
 * usually has a /64, and rotating through its addresses must not give it a fresh bucket each
 * time. IPv4 defaults to /32 (the hosts behind one NAT share it). An IPv4-mapped IPv6
 * address counts as the IPv4 address. The port is never part of the key.
 *
 * Layout: 8-way set-associative. An entry's set is chosen by SipHash-2-4 (crypto_shorthash)
 * of (family, masked prefix) under a random key given at init, so nobody without the key can
 * choose sources that meet in one set; the full 64-bit hash is the entry's tag.
 *
 * Replacement, on a miss in a full set: the entry whose bucket is fullest (after refill)
 * leaves, oldest update first on ties, and the newcomer *inherits that level* instead of
 * starting full. Why:
 *  - A full bucket carries no information (a new source would start full anyway), so while
 *    the set holds an idle source, the table behaves as if it were unbounded.
 *  - Churn mints no tokens: an attacker who makes its own busy entries leave (to come back
 *    with a full bucket) gets at most the level of the fullest entry in the set, never more
 *    than the source it displaced had.
 *  - A busy source (a drained bucket, e.g. a NAT with many nodes behind it) is replaced only
 *    when every other entry of its set is even more drained. Without the key an attacker
 *    must keep about the whole table drained to achieve that: capacity distinct prefixes,
 *    each sending at least rate_per_s a second. And a busy source that is replaced comes back
 *    with the fullest level of its set, so it loses at most what that set had left.
 * Memory never grows: capacity entries (rounded up to a power of two, at least 8) of
 * RATELIMIT_ENTRY_BYTES each, allocated by ratelimit_init(); ratelimit_memory() says how much.
 */
#define RATELIMIT_WAYS 8
#define RATELIMIT_KEY_LEN 16     /* crypto_shorthash_KEYBYTES */
#define RATELIMIT_ENTRY_BYTES 24 /* tag + bucket; checked at compile time */
#define RATELIMIT_MAX_CAPACITY (1u << 24)

#define RATELIMIT_COUNTERS(X)                                                                    \
	X(rl_allowed, "checks that took a token from their source's bucket")                     \
	X(rl_limited, "checks refused because their source's bucket was empty")                  \
	X(rl_new_sources, "sources given an empty slot of the table")                            \
	X(rl_replaced_idle, "sources that replaced a source whose bucket was full (idle)")       \
	X(rl_replaced_busy, "sources that replaced one whose bucket was not full: the table is " \
			    "under pressure")
struct ratelimit_counters {
	RATELIMIT_COUNTERS(COUNTER_FIELD)
};
COUNTER_TABLE_DECLARE(ratelimit_counters);

struct ratelimit_params {
	struct bucket_rate rate; /* per source prefix */
	uint8_t v4_prefix;       /* 1..32; default 32 */
	uint8_t v6_prefix;       /* 1..128; default 64 */
};

struct ratelimit_entry;

struct ratelimit {
	struct ratelimit_entry *e; /* sets * RATELIMIT_WAYS entries */
	size_t sets;               /* a power of two */
	struct ratelimit_params p;
	uint8_t key[RATELIMIT_KEY_LEN];
	struct ratelimit_counters ctr;
};

/* The defaults above with this rate. */
void ratelimit_params_default(struct ratelimit_params *p, uint32_t rate_per_s, uint32_t burst);

/*
 * Allocates room for at least capacity sources (1 to RATELIMIT_MAX_CAPACITY). key: random,
 * from the caller (randombytes_buf). Returns 0, -EINVAL (parameters) or -ENOMEM; on error
 * nothing is allocated.
 */
int ratelimit_init(struct ratelimit *rl, size_t capacity, const struct ratelimit_params *p,
		   const uint8_t key[RATELIMIT_KEY_LEN]);
/* Frees the table; rl may be zeroed or already destroyed. */
void ratelimit_destroy(struct ratelimit *rl);

/*
 * Takes one token from the bucket of src's prefix at now_ms: true when allowed. A source not
 * in the table is entered (see the replacement policy above). An unset address or one of
 * another family is refused. O(RATELIMIT_WAYS), no allocation.
 */
bool ratelimit_allow(struct ratelimit *rl, const struct addr *src, uint64_t now_ms);
/* Whole tokens src's prefix has at now_ms, without changing anything; a source not in the
 * table has a full bucket. For tests and status. */
uint64_t ratelimit_peek(const struct ratelimit *rl, const struct addr *src, uint64_t now_ms);

size_t ratelimit_capacity(const struct ratelimit *rl);
/* Bytes allocated by ratelimit_init() (the struct itself aside). */
size_t ratelimit_memory(const struct ratelimit *rl);

#endif

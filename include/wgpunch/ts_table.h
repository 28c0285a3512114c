/* SPDX-License-Identifier: MIT */
/*
 * ts_table - the last accepted handshake timestamp (TAI64N) per node key, apart from the
 * registry, so a captured HS_INIT cannot be replayed once the node's registry entry expired.
 * Pure: no clock reads, no I/O, no logging. It allocates at init and when it grows.
 *
 * Keyed by key_fingerprint() (64 bits, as the registry's peer lists): two keys share a
 * timestamp only if their fingerprints collide, which takes about 2^64 key generations to aim
 * at one victim's key.
 *
 * Layout: 8-way set-associative with two choices: the two sets a fingerprint may live in are
 * chosen by SipHash (crypto_shorthash) of it under a random key given at init, and a new
 * key goes to the emptier one. The fingerprint itself is keyed with a public
 * constant, so without this second key anyone could grind keys into a victim's set.
 * TS_TABLE_ENTRY_BYTES per entry. The table starts at TS_TABLE_START_SETS sets and doubles
 * once half full, up to the capacity given at init (rounded up to a power of two, at least
 * 8): memory follows the keys there are.
 *
 * When both sets are full, the entry of the two committed longest ago leaves (commit order, not time: the
 * table never needs a clock; a 32-bit order that wraps, so "longest ago" is exact among
 * entries committed within 2^31 commits of each other). Its key then reads as TS_UNKNOWN. To push out one given key,
 * without the SipHash key, takes about as many accepted handshakes under other keys as the
 * table holds, each fully authenticated (and, if the caller follows the rule below, from a
 * proven source). Size the table above max_nodes so that evictions do not happen in normal
 * operation.
 *
 * Intended use, on the coordinator, after the Noise message 1 authenticated and before any
 * state is created:
 *   - TS_REPLAY: refuse (the timestamp is not later than the last one accepted).
 *   - TS_NEWER: accept, then ts_table_commit().
 *   - TS_UNKNOWN (never seen, evicted, or the coordinator restarted: the table starts empty):
 *     accept only if the HS_INIT carried a valid mac2 (cookie.h). A replayed HS_INIT then
 *     needs a cookie for its original source address made from a live cookie secret (at
 *     most 2 x 120 s; a restart draws a new secret). An off-path attacker cannot get one; an
 *     on-path observer who receives at the node's address can, and could so replay a
 *     captured HS_INIT for an unknown key, which replaces the node's session until the node
 *     handshakes again. Answer TS_UNKNOWN without mac2 with a cookie reply.
 */
#ifndef WGPUNCH_TS_TABLE_H
#define WGPUNCH_TS_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TS_TABLE_TS_LEN 12  /* TAI64N */
#define TS_TABLE_KEY_LEN 16 /* crypto_shorthash_KEYBYTES */
#define TS_TABLE_WAYS 8
#define TS_TABLE_ENTRY_BYTES 24
#define TS_TABLE_START_SETS 128 /* 1,024 entries, 24 kB */
#define TS_TABLE_MAX_CAPACITY (1u << 26)

enum ts_verdict {
	TS_UNKNOWN = 0, /* no timestamp for this key: require a mac2 proof */
	TS_NEWER,       /* later than the last accepted one */
	TS_REPLAY,      /* equal or earlier: refuse */
};

struct ts_entry;

struct ts_table {
	struct ts_entry *e;
	size_t sets;     /* a power of two */
	size_t max_sets; /* what the table may grow to */
	size_t count;
	uint32_t seq; /* commit counter: the replacement order */
	uint64_t evicted;
	uint8_t key[TS_TABLE_KEY_LEN];
};

/* capacity (the most it grows to) 1 to TS_TABLE_MAX_CAPACITY; key random. 0, -EINVAL or
 * -ENOMEM. */
int ts_table_init(struct ts_table *t, size_t capacity, const uint8_t key[TS_TABLE_KEY_LEN]);
void ts_table_destroy(struct ts_table *t);

/* Compares ts (TAI64N, as session_tai64n_after()) with fp's last accepted one. No change. */
enum ts_verdict ts_table_check(const struct ts_table *t, uint64_t fp,
			       const uint8_t ts[TS_TABLE_TS_LEN]);
/* Whether fp has a timestamp at all: ts_table_check() is TS_UNKNOWN exactly when not. */
bool ts_table_known(const struct ts_table *t, uint64_t fp);
/* fp's last accepted timestamp into out; false (out untouched) when there is none. */
bool ts_table_get(const struct ts_table *t, uint64_t fp, uint8_t out[TS_TABLE_TS_LEN]);
/*
 * Records ts as fp's last accepted timestamp; call it only for a handshake accepted (after
 * Noise authenticated it). Never moves a timestamp back: an earlier ts leaves the later one.
 * May evict (see above).
 */
void ts_table_commit(struct ts_table *t, uint64_t fp, const uint8_t ts[TS_TABLE_TS_LEN]);

size_t ts_table_count(const struct ts_table *t);
size_t ts_table_capacity(const struct ts_table *t);     /* now */
size_t ts_table_max_capacity(const struct ts_table *t); /* at most */
/* Entries pushed out so far (a gauge of whether the table is too small). */
uint64_t ts_table_evicted(const struct ts_table *t);
size_t ts_table_memory(const struct ts_table *t);

#endif

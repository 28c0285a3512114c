/* SPDX-License-Identifier: MIT */
/*
 * addr_hint - which source addresses may hold a session, so that the coordinator can answer
 * an unproven HS_INIT from anywhere else with a cookie reply before any X25519. Pure: time is
 * passed in, no I/O, no logging; it allocates at init and when a generation starts.
 *
 * Why: an unproven HS_INIT is processed only to serve a rekey from the address the node's
 * session already uses (hs.c, step 5). From every other address the answer is a cookie reply
 * whatever the message says, so reading it (the first X25519) is waste: a sixth of a new
 * node's handshake cost, and all of what a forged flood costs.
 *
 * A one-hash Bloom filter (a bit a hashed address) in two generations: bits are set in the
 * current one, both are asked, and every period_ms the older one is dropped and a new one
 * started, sized at ADDR_HINT_BITS_PER_ADDR bits for each address the period saw (a byte a
 * node, about 12 % false positives in each). A fleet that outgrows the current generation
 * within a period gets a larger one at once, the two old ones merged (so nothing is lost;
 * until the merged one is dropped, strangers read "maybe" more often). The caller adds an address when a
 * session starts or moves there and on each authenticated refresh from it, at least once a
 * period: a live session is then always in one of the two.
 *   - A false positive (a collision, a session gone) costs what every HS_INIT cost before:
 *     the first X25519, then the cookie reply.
 *   - A false negative (a session silent for two periods) costs its node a round trip: its
 *     rekey gets a cookie reply and is proven on the second try. Never a refusal.
 * The bit index is SipHash (crypto_shorthash) under a random key, so a sender cannot aim its
 * address at a bit of a victim's.
 */
#ifndef WGPUNCH_ADDR_HINT_H
#define WGPUNCH_ADDR_HINT_H

#include <stdbool.h>
#include <stdint.h>

#include "wgpunch/registry.h"

#define ADDR_HINT_KEY_LEN 16 /* crypto_shorthash_KEYBYTES */
#define ADDR_HINT_BITS_PER_ADDR 8
#define ADDR_HINT_MIN_BITS (1u << 13) /* 1 kB a generation */
#define ADDR_HINT_MAX_BITS (1u << 31)

struct addr_hint {
	uint64_t *bits[2];    /* bits[cur] is being filled; the other is the period before */
	uint32_t mask[2];     /* bit count - 1 */
	uint32_t set[2];      /* bits set in each: sizes the next generation */
	uint32_t seen_period; /* bits newly set this period: about the addresses it saw */
	uint8_t cur;
	bool grew_early; /* this period started a generation early: see hint_rotate() */
	uint32_t period_ms;
	uint64_t started_ms; /* when bits[cur] started */
	uint8_t key[ADDR_HINT_KEY_LEN];
};

/* Both generations at ADDR_HINT_MIN_BITS. 0, -EINVAL (period 0) or -ENOMEM. */
int addr_hint_init(struct addr_hint *h, const uint8_t key[ADDR_HINT_KEY_LEN], uint32_t period_ms,
		   uint64_t now_ms);
void addr_hint_destroy(struct addr_hint *h);

/*
 * A session answers at a (its listen socket: sock). Starts a new generation first when
 * period_ms has passed; when the new one cannot be allocated the current one goes on, which
 * only adds false positives.
 */
void addr_hint_add(struct addr_hint *h, const struct reg_addr *a, uint8_t sock, uint64_t now_ms);

/* False: no session was added at a in this period or the one before. */
bool addr_hint_maybe(const struct addr_hint *h, const struct reg_addr *a, uint8_t sock);

/* Bytes allocated (both generations). */
uint64_t addr_hint_bytes(const struct addr_hint *h);

#endif

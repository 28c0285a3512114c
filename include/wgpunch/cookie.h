/* SPDX-License-Identifier: MIT */
/*
 * cookie - proof before work: MAC1, MAC2 and the cookie reply, as WireGuard's (whitepaper
 * section 5.4.4 to 5.4.7), with wgpunch's own labels so the keys can never be confused with
 * WireGuard's. Pure given keys, randomness and time: no I/O, no clock reads, no allocation.
 *
 * A message protected this way ends in mac1 (16) then mac2 (16):
 *
 *	| message ... | mac1 | mac2 |
 *	mac1 = BLAKE2b-128(key = mac1_key, bytes before mac1)
 *	mac2 = BLAKE2b-128(key = cookie, bytes before mac2), or 16 zero bytes without a cookie
 *	mac1_key   = BLAKE2b-256("wgpunch mac1 v2" || coordinator static public key)
 *	cookie_key = BLAKE2b-256("wgpunch cookie v2" || coordinator static public key)
 *	cookie     = BLAKE2b-128(key = secret, family (1: 4 or 6) || ip (4 or 16) || port (2, BE))
 *
 * (BLAKE2b-n(key = k, m) is keyed BLAKE2b, RFC 7693, libsodium crypto_generichash; the labels
 * are ASCII without NUL.) mac1 shows the sender knows the coordinator's public key, for one
 * BLAKE2b and before any X25519. mac2 shows the sender receives datagrams at its source
 * address: only a recipient of the cookie reply sent there knows the cookie.
 *
 * The responder's secret is 32 random bytes replaced every COOKIE_ROTATE_MS; the previous one
 * is kept, so a cookie works for at least COOKIE_ROTATE_MS after it was made and is refused
 * once its secret is 2 * COOKIE_ROTATE_MS old (checked with now_ms, whether or not the caller
 * rotated since). An IPv4-mapped IPv6 source counts as its IPv4 address.
 *
 * The cookie reply body (COOKIE_REPLY_BODY_LEN, 56 bytes) is
 *	nonce (24, random) || XChaCha20-Poly1305(key = cookie_key, nonce, plaintext = cookie,
 *	                                         associated data = the mac1 being answered) (32)
 * Binding it to mac1 means only a reply to a message the initiator actually sent opens, and
 * only once: the initiator forgets that mac1 when a reply opened.
 */
#ifndef WGPUNCH_COOKIE_H
#define WGPUNCH_COOKIE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wgpunch/addr.h"

#define COOKIE_MAC_LEN 16
#define COOKIE_MACS_LEN (2 * COOKIE_MAC_LEN) /* what a protected message ends with */
#define COOKIE_LEN 16
#define COOKIE_SECRET_LEN 32
#define COOKIE_NONCE_LEN 24
#define COOKIE_REPLY_BODY_LEN (COOKIE_NONCE_LEN + COOKIE_LEN + 16) /* 56 */
#define COOKIE_ROTATE_MS 120000u
/* The initiator stops using a cookie this long before COOKIE_ROTATE_MS after it arrived, so
 * one in flight while the secret turns still arrives inside the cookie's lifetime. */
#define COOKIE_MARGIN_MS 10000u

#define COOKIE_MAC1_LABEL "wgpunch mac1 v2"
#define COOKIE_COOKIE_LABEL "wgpunch cookie v2"

/* Derived from the coordinator's static public key; both sides hold one. */
struct cookie_keys {
	uint8_t mac1_key[32];
	uint8_t cookie_key[32];
};

void cookie_keys_init(struct cookie_keys *k, const uint8_t coord_pub[32]);

/* ---- the low-level MACs, over msg[0..len) ---- */

void cookie_mac1(const struct cookie_keys *k, const uint8_t *msg, size_t len,
		 uint8_t mac[COOKIE_MAC_LEN]);
/* Constant-time comparison. */
bool cookie_mac1_ok(const struct cookie_keys *k, const uint8_t *msg, size_t len,
		    const uint8_t mac[COOKIE_MAC_LEN]);
void cookie_mac2(const uint8_t cookie[COOKIE_LEN], const uint8_t *msg, size_t len,
		 uint8_t mac[COOKIE_MAC_LEN]);

/* ---- responder (coordinator) ---- */

struct cookie_responder {
	struct cookie_keys keys;
	uint8_t secret[2][COOKIE_SECRET_LEN]; /* [cur] and the one before */
	uint64_t born_ms[2];                  /* when each was installed */
	bool have[2];
	unsigned cur; /* 0 or 1 */
};

/* rnd: COOKIE_SECRET_LEN fresh random bytes for the first secret. */
void cookie_responder_init(struct cookie_responder *r, const uint8_t coord_pub[32],
			   const uint8_t rnd[COOKIE_SECRET_LEN], uint64_t now_ms);
/* true when the current secret is COOKIE_ROTATE_MS old: draw random bytes and rotate. */
bool cookie_responder_due(const struct cookie_responder *r, uint64_t now_ms);
/* Installs rnd as the current secret; the current one becomes the previous one. */
void cookie_responder_rotate(struct cookie_responder *r, const uint8_t rnd[COOKIE_SECRET_LEN],
			     uint64_t now_ms);
/* Wipes the secrets. */
void cookie_responder_wipe(struct cookie_responder *r);

enum cookie_verdict {
	COOKIE_BAD_MAC1 = 0, /* drop, answer nothing */
	COOKIE_MAC1_ONLY,    /* knows the key; the source is not proven (no or wrong mac2) */
	COOKIE_MAC2_OK,      /* knows the key and receives at src */
};

/*
 * Checks a whole protected message (msg[0..len), len > COOKIE_MACS_LEN) that arrived from
 * src: mac1 first, and mac2 only if mac1 is good. All-zero mac2 (no cookie) costs nothing
 * more; otherwise mac2 is compared (constant time) with the cookies of src under each secret
 * still valid at now_ms.
 */
enum cookie_verdict cookie_check(const struct cookie_responder *r, const uint8_t *msg, size_t len,
				 const struct addr *src, uint64_t now_ms);

/*
 * The cookie reply body for the message whose mac1 is given, sent from src. nonce:
 * COOKIE_NONCE_LEN bytes never used before under this coordinator key (random, or a random
 * prefix and a counter). Returns COOKIE_REPLY_BODY_LEN, -EAFNOSUPPORT (src
 * neither IPv4 nor IPv6) or -ESTALE when the secret is due for rotation (rotate first: a
 * cookie made from an overdue secret would live shorter than promised).
 */
int cookie_reply_make(const struct cookie_responder *r, const uint8_t mac1[COOKIE_MAC_LEN],
		      const struct addr *src, const uint8_t nonce[COOKIE_NONCE_LEN],
		      uint64_t now_ms, uint8_t out[COOKIE_REPLY_BODY_LEN]);

/* The cookie of src at now_ms from the current secret (for tests and the benchmark). */
int cookie_make(const struct cookie_responder *r, const struct addr *src, uint64_t now_ms,
		uint8_t cookie[COOKIE_LEN]);

/* ---- initiator (node) ---- */

struct cookie_initiator {
	struct cookie_keys keys;
	uint8_t cookie[COOKIE_LEN];
	uint64_t cookie_rx_ms; /* when it arrived */
	bool have_cookie;
	uint8_t last_mac1[COOKIE_MAC_LEN]; /* of the last message sent, until a reply opens */
	bool have_mac1;
};

void cookie_initiator_init(struct cookie_initiator *ci, const uint8_t coord_pub[32]);
/*
 * Fills the last COOKIE_MACS_LEN bytes of msg[0..len) (len > COOKIE_MACS_LEN): mac1, and
 * mac2 from the cookie when it is younger than COOKIE_ROTATE_MS - COOKIE_MARGIN_MS, else
 * zeros. Remembers mac1 for the reply. Returns 0 or -EINVAL (too short).
 */
int cookie_initiator_sign(struct cookie_initiator *ci, uint8_t *msg, size_t len, uint64_t now_ms);
/*
 * Opens a cookie reply body (len must be COOKIE_REPLY_BODY_LEN) against the mac1 of the last
 * message signed; on success stores the cookie (received at now_ms) and forgets that mac1, so
 * the same reply cannot be used twice. Returns 0, or -EBADMSG (wrong length, no message
 * waiting for a reply, or it does not authenticate; the state is then unchanged).
 */
int cookie_initiator_open_reply(struct cookie_initiator *ci, const uint8_t *body, size_t len,
				uint64_t now_ms);
/* true when a cookie usable for mac2 is held at now_ms. */
bool cookie_initiator_has_cookie(const struct cookie_initiator *ci, uint64_t now_ms);

#endif

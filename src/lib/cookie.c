// SPDX-License-Identifier: MIT
/*
 * cookie - MAC1, MAC2 and the cookie reply (construction in the header).
 */
#include "wgpunch/cookie.h"

#include <errno.h>
#include <string.h>

#include <sodium.h>

_Static_assert(COOKIE_NONCE_LEN == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, "nonce");
_Static_assert(COOKIE_REPLY_BODY_LEN ==
		       COOKIE_NONCE_LEN + COOKIE_LEN + crypto_aead_xchacha20poly1305_ietf_ABYTES,
	       "reply body");

static void label_key(uint8_t out[32], const char *label, const uint8_t pub[32])
{
	crypto_generichash_blake2b_state st;

	crypto_generichash_blake2b_init(&st, NULL, 0, 32);
	crypto_generichash_blake2b_update(&st, (const uint8_t *)label, strlen(label));
	crypto_generichash_blake2b_update(&st, pub, 32);
	crypto_generichash_blake2b_final(&st, out, 32);
	sodium_memzero(&st, sizeof(st));
}

void cookie_keys_init(struct cookie_keys *k, const uint8_t coord_pub[32])
{
	label_key(k->mac1_key, COOKIE_MAC1_LABEL, coord_pub);
	label_key(k->cookie_key, COOKIE_COOKIE_LABEL, coord_pub);
}

void cookie_mac1(const struct cookie_keys *k, const uint8_t *msg, size_t len,
		 uint8_t mac[COOKIE_MAC_LEN])
{
	crypto_generichash_blake2b(mac, COOKIE_MAC_LEN, msg, len, k->mac1_key, sizeof(k->mac1_key));
}

bool cookie_mac1_ok(const struct cookie_keys *k, const uint8_t *msg, size_t len,
		    const uint8_t mac[COOKIE_MAC_LEN])
{
	uint8_t want[COOKIE_MAC_LEN];

	cookie_mac1(k, msg, len, want);
	return sodium_memcmp(want, mac, COOKIE_MAC_LEN) == 0;
}

void cookie_mac2(const uint8_t cookie[COOKIE_LEN], const uint8_t *msg, size_t len,
		 uint8_t mac[COOKIE_MAC_LEN])
{
	crypto_generichash_blake2b(mac, COOKIE_MAC_LEN, msg, len, cookie, COOKIE_LEN);
}

/* ---- responder ---- */

void cookie_responder_init(struct cookie_responder *r, const uint8_t coord_pub[32],
			   const uint8_t rnd[COOKIE_SECRET_LEN], uint64_t now_ms)
{
	memset(r, 0, sizeof(*r));
	cookie_keys_init(&r->keys, coord_pub);
	cookie_responder_rotate(r, rnd, now_ms);
}

static uint64_t age_ms(uint64_t born_ms, uint64_t now_ms)
{
	return now_ms > born_ms ? now_ms - born_ms : 0;
}

bool cookie_responder_due(const struct cookie_responder *r, uint64_t now_ms)
{
	return !r->have[r->cur] || age_ms(r->born_ms[r->cur], now_ms) >= COOKIE_ROTATE_MS;
}

void cookie_responder_rotate(struct cookie_responder *r, const uint8_t rnd[COOKIE_SECRET_LEN],
			     uint64_t now_ms)
{
	r->cur ^= 1;
	memcpy(r->secret[r->cur], rnd, COOKIE_SECRET_LEN);
	r->born_ms[r->cur] = now_ms;
	r->have[r->cur] = true;
}

void cookie_responder_wipe(struct cookie_responder *r)
{
	sodium_memzero(r, sizeof(*r));
}

/* A secret's cookies are good until it is two rotation periods old. */
static bool secret_valid(const struct cookie_responder *r, unsigned i, uint64_t now_ms)
{
	return r->have[i] && age_ms(r->born_ms[i], now_ms) < 2 * (uint64_t)COOKIE_ROTATE_MS;
}

/* The bytes a cookie covers: family, ip, port. Returns their length, or 0 for no IP. */
static size_t addr_bytes(const struct addr *a, uint8_t out[1 + 16 + 2])
{
	size_t n;

	if (addr_family(a) == AF_INET6 && !IN6_IS_ADDR_V4MAPPED(&a->in6.sin6_addr)) {
		out[0] = 6;
		memcpy(out + 1, a->in6.sin6_addr.s6_addr, 16);
		n = 17;
	} else if (addr_family(a) == AF_INET6) {
		out[0] = 4;
		memcpy(out + 1, a->in6.sin6_addr.s6_addr + 12, 4);
		n = 5;
	} else if (addr_family(a) == AF_INET) {
		out[0] = 4;
		memcpy(out + 1, &a->in4.sin_addr, 4);
		n = 5;
	} else {
		return 0;
	}
	out[n] = (uint8_t)(addr_port(a) >> 8);
	out[n + 1] = (uint8_t)addr_port(a);
	return n + 2;
}

static int cookie_from_secret(const uint8_t secret[COOKIE_SECRET_LEN], const struct addr *src,
			      uint8_t cookie[COOKIE_LEN])
{
	uint8_t in[1 + 16 + 2];
	size_t n = addr_bytes(src, in);

	if (!n)
		return -EAFNOSUPPORT;
	crypto_generichash_blake2b(cookie, COOKIE_LEN, in, n, secret, COOKIE_SECRET_LEN);
	return 0;
}

int cookie_make(const struct cookie_responder *r, const struct addr *src, uint64_t now_ms,
		uint8_t cookie[COOKIE_LEN])
{
	if (cookie_responder_due(r, now_ms))
		return -ESTALE;
	return cookie_from_secret(r->secret[r->cur], src, cookie);
}

enum cookie_verdict cookie_check(const struct cookie_responder *r, const uint8_t *msg, size_t len,
				 const struct addr *src, uint64_t now_ms)
{
	const uint8_t *mac1, *mac2;
	uint8_t cookie[COOKIE_LEN], want[COOKIE_MAC_LEN];
	bool ok = false;

	if (len <= COOKIE_MACS_LEN)
		return COOKIE_BAD_MAC1;
	mac1 = msg + len - COOKIE_MACS_LEN;
	mac2 = mac1 + COOKIE_MAC_LEN;
	if (!cookie_mac1_ok(&r->keys, msg, len - COOKIE_MACS_LEN, mac1))
		return COOKIE_BAD_MAC1;
	/* Whether mac2 is zero is public (it is on the wire): no need for constant time. */
	if (sodium_is_zero(mac2, COOKIE_MAC_LEN))
		return COOKIE_MAC1_ONLY;
	for (unsigned i = 0; i < 2; i++) {
		if (!secret_valid(r, i, now_ms) ||
		    cookie_from_secret(r->secret[i], src, cookie) < 0)
			continue;
		cookie_mac2(cookie, msg, len - COOKIE_MAC_LEN, want);
		if (sodium_memcmp(want, mac2, COOKIE_MAC_LEN) == 0)
			ok = true;
	}
	sodium_memzero(cookie, sizeof(cookie));
	return ok ? COOKIE_MAC2_OK : COOKIE_MAC1_ONLY;
}

int cookie_reply_make(const struct cookie_responder *r, const uint8_t mac1[COOKIE_MAC_LEN],
		      const struct addr *src, const uint8_t nonce[COOKIE_NONCE_LEN],
		      uint64_t now_ms, uint8_t out[COOKIE_REPLY_BODY_LEN])
{
	uint8_t cookie[COOKIE_LEN];
	int e = cookie_make(r, src, now_ms, cookie);

	if (e < 0)
		return e;
	memcpy(out, nonce, COOKIE_NONCE_LEN);
	crypto_aead_xchacha20poly1305_ietf_encrypt(out + COOKIE_NONCE_LEN, NULL, cookie, COOKIE_LEN,
						   mac1, COOKIE_MAC_LEN, NULL, nonce,
						   r->keys.cookie_key);
	sodium_memzero(cookie, sizeof(cookie));
	return COOKIE_REPLY_BODY_LEN;
}

/* ---- initiator ---- */

void cookie_initiator_init(struct cookie_initiator *ci, const uint8_t coord_pub[32])
{
	memset(ci, 0, sizeof(*ci));
	cookie_keys_init(&ci->keys, coord_pub);
}

bool cookie_initiator_has_cookie(const struct cookie_initiator *ci, uint64_t now_ms)
{
	return ci->have_cookie &&
	       age_ms(ci->cookie_rx_ms, now_ms) < COOKIE_ROTATE_MS - COOKIE_MARGIN_MS;
}

int cookie_initiator_sign(struct cookie_initiator *ci, uint8_t *msg, size_t len, uint64_t now_ms)
{
	uint8_t *mac1, *mac2;

	if (len <= COOKIE_MACS_LEN)
		return -EINVAL;
	mac1 = msg + len - COOKIE_MACS_LEN;
	mac2 = mac1 + COOKIE_MAC_LEN;
	cookie_mac1(&ci->keys, msg, len - COOKIE_MACS_LEN, mac1);
	memcpy(ci->last_mac1, mac1, COOKIE_MAC_LEN);
	ci->have_mac1 = true;
	if (cookie_initiator_has_cookie(ci, now_ms))
		cookie_mac2(ci->cookie, msg, len - COOKIE_MAC_LEN, mac2);
	else
		memset(mac2, 0, COOKIE_MAC_LEN);
	return 0;
}

int cookie_initiator_open_reply(struct cookie_initiator *ci, const uint8_t *body, size_t len,
				uint64_t now_ms)
{
	uint8_t cookie[COOKIE_LEN];

	if (len != COOKIE_REPLY_BODY_LEN || !ci->have_mac1)
		return -EBADMSG;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(
		    cookie, NULL, NULL, body + COOKIE_NONCE_LEN, len - COOKIE_NONCE_LEN,
		    ci->last_mac1, COOKIE_MAC_LEN, body, ci->keys.cookie_key) != 0)
		return -EBADMSG;
	memcpy(ci->cookie, cookie, COOKIE_LEN);
	ci->cookie_rx_ms = now_ms;
	ci->have_cookie = true;
	ci->have_mac1 = false;
	sodium_memzero(cookie, sizeof(cookie));
	return 0;
}

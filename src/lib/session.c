/* SPDX-License-Identifier: MIT */
/*
 * session - Noise_IK_25519_ChaChaPoly_BLAKE2b (Noise spec rev. 34) on
 * libsodium, plus wgpunch's transport helpers: replay window, TAI64N and the
 * probe MAC.
 *
 * Handshake calls work on a copy of the HandshakeState and store it back
 * only on success: a forged or corrupted message leaves hs as it was, so the
 * genuine message can still be read after it (an attacker who only sees
 * indexes cannot break a handshake in progress by injecting garbage).
 */
#include "wgpunch/session.h"

#include <errno.h>
#include <string.h>

#include <sodium.h>

#define NOISE_PROTOCOL_NAME "Noise_IK_25519_ChaChaPoly_BLAKE2b"
#define BLAKE2B_BLOCK_LEN 128
#define DH_LEN 32

/* Labels for keys wgpunch derives beyond Noise; versioned like the prologue. */
#define PROBE_KEY_LABEL "wgpunch probe key v1"

/* ---- HASH, HMAC, HKDF ---- */

static void hash2(uint8_t out[SESSION_HASH_LEN], const uint8_t *a, size_t a_len, const uint8_t *b,
		  size_t b_len)
{
	crypto_generichash_blake2b_state st;

	crypto_generichash_blake2b_init(&st, NULL, 0, SESSION_HASH_LEN);
	crypto_generichash_blake2b_update(&st, a, a_len);
	if (b_len)
		crypto_generichash_blake2b_update(&st, b, b_len);
	crypto_generichash_blake2b_final(&st, out, SESSION_HASH_LEN);
	sodium_memzero(&st, sizeof(st));
}

/*
 * HMAC (RFC 2104) over BLAKE2b-512 with its 128-byte block, as Noise
 * requires. libsodium's keyed BLAKE2b is a different construction, so it
 * cannot stand in here: the vectors would not match.
 */
static void hmac_blake2b(uint8_t out[SESSION_HASH_LEN], const uint8_t *key, size_t key_len,
			 const uint8_t *data, size_t data_len)
{
	uint8_t k[BLAKE2B_BLOCK_LEN] = { 0 };
	uint8_t pad[BLAKE2B_BLOCK_LEN];
	uint8_t inner[SESSION_HASH_LEN];
	crypto_generichash_blake2b_state st;
	size_t i;

	if (key_len > BLAKE2B_BLOCK_LEN)
		crypto_generichash_blake2b(k, SESSION_HASH_LEN, key, key_len, NULL, 0);
	else
		memcpy(k, key, key_len);

	for (i = 0; i < sizeof(pad); i++)
		pad[i] = k[i] ^ 0x36;
	crypto_generichash_blake2b_init(&st, NULL, 0, SESSION_HASH_LEN);
	crypto_generichash_blake2b_update(&st, pad, sizeof(pad));
	if (data_len)
		crypto_generichash_blake2b_update(&st, data, data_len);
	crypto_generichash_blake2b_final(&st, inner, sizeof(inner));

	for (i = 0; i < sizeof(pad); i++)
		pad[i] = k[i] ^ 0x5c;
	crypto_generichash_blake2b_init(&st, NULL, 0, SESSION_HASH_LEN);
	crypto_generichash_blake2b_update(&st, pad, sizeof(pad));
	crypto_generichash_blake2b_update(&st, inner, sizeof(inner));
	crypto_generichash_blake2b_final(&st, out, SESSION_HASH_LEN);

	sodium_memzero(k, sizeof(k));
	sodium_memzero(pad, sizeof(pad));
	sodium_memzero(inner, sizeof(inner));
	sodium_memzero(&st, sizeof(st));
}

/* HKDF as Noise section 4.3 defines it, with two outputs (all IK needs). */
static void hkdf2(uint8_t out1[SESSION_HASH_LEN], uint8_t out2[SESSION_HASH_LEN],
		  const uint8_t ck[SESSION_HASH_LEN], const uint8_t *ikm, size_t ikm_len)
{
	uint8_t temp_key[SESSION_HASH_LEN];
	uint8_t buf[SESSION_HASH_LEN + 1];

	hmac_blake2b(temp_key, ck, SESSION_HASH_LEN, ikm, ikm_len);
	buf[0] = 0x01;
	hmac_blake2b(out1, temp_key, sizeof(temp_key), buf, 1);
	memcpy(buf, out1, SESSION_HASH_LEN);
	buf[SESSION_HASH_LEN] = 0x02;
	hmac_blake2b(out2, temp_key, sizeof(temp_key), buf, sizeof(buf));

	sodium_memzero(temp_key, sizeof(temp_key));
	sodium_memzero(buf, sizeof(buf));
}

/* ---- CipherState / SymmetricState ---- */

static void noise_nonce(uint8_t nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES], uint64_t n)
{
	int i;

	/* Noise ChaChaPoly: 32 zero bits, then the counter little-endian. */
	memset(nonce, 0, 4);
	for (i = 0; i < 8; i++)
		nonce[4 + i] = (uint8_t)(n >> (8 * i));
}

size_t session_encrypt(const uint8_t key[SESSION_KEY_LEN], uint64_t nonce, const uint8_t *ad,
		       size_t ad_len, const uint8_t *pt, size_t len, uint8_t *out)
{
	uint8_t npub[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];
	unsigned long long clen = 0;

	noise_nonce(npub, nonce);
	crypto_aead_chacha20poly1305_ietf_encrypt(out, &clen, pt, len, ad, ad_len, NULL, npub, key);
	return (size_t)clen;
}

ssize_t session_decrypt(const uint8_t key[SESSION_KEY_LEN], uint64_t nonce, const uint8_t *ad,
			size_t ad_len, const uint8_t *ct, size_t len, uint8_t *out)
{
	uint8_t npub[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];
	size_t mlen;

	if (len < SESSION_TAG_LEN)
		return -EBADMSG;
	mlen = len - SESSION_TAG_LEN;
	noise_nonce(npub, nonce);
	/* Detached: the tag is checked before anything is written to out. */
	if (crypto_aead_chacha20poly1305_ietf_decrypt_detached(out, NULL, ct, mlen, ct + mlen, ad,
							       ad_len, npub, key) != 0)
		return -EBADMSG;
	return (ssize_t)mlen;
}

static void mix_hash(struct session_hs *hs, const uint8_t *data, size_t len)
{
	hash2(hs->h, hs->h, sizeof(hs->h), data, len);
}

static void mix_key(struct session_hs *hs, const uint8_t *ikm, size_t ikm_len)
{
	uint8_t temp_k[SESSION_HASH_LEN];

	hkdf2(hs->ck, temp_k, hs->ck, ikm, ikm_len);
	/* HASHLEN 64: truncate temp_k to the 32-byte cipher key. */
	memcpy(hs->k, temp_k, SESSION_KEY_LEN);
	hs->has_k = true;
	hs->n = 0;
	sodium_memzero(temp_k, sizeof(temp_k));
}

/* out must hold len (+ SESSION_TAG_LEN once a key is set). Returns the bytes written. */
static ssize_t encrypt_and_hash(struct session_hs *hs, const uint8_t *pt, size_t len, uint8_t *out)
{
	size_t clen = len;

	if (hs->has_k) {
		/* n = 2^64 - 1 is reserved by the spec; a handshake never gets near it. */
		if (hs->n == UINT64_MAX)
			return -EOVERFLOW;
		clen = session_encrypt(hs->k, hs->n, hs->h, sizeof(hs->h), pt, len, out);
		hs->n++;
	} else if (len) {
		memmove(out, pt, len);
	}
	mix_hash(hs, out, clen);
	return (ssize_t)clen;
}

static ssize_t decrypt_and_hash(struct session_hs *hs, const uint8_t *ct, size_t len, uint8_t *out)
{
	ssize_t plen = (ssize_t)len;

	if (hs->has_k) {
		if (hs->n == UINT64_MAX)
			return -EOVERFLOW;
		plen = session_decrypt(hs->k, hs->n, hs->h, sizeof(hs->h), ct, len, out);
		if (plen < 0)
			return plen;
		hs->n++;
	} else if (len) {
		memmove(out, ct, len);
	}
	/* h covers the ciphertext, which is still intact: out never overlaps ct here. */
	mix_hash(hs, ct, len);
	return plen;
}

/* DH and MixKey(DH(priv, pub)); refuses an all-zero result (a low-order point). */
static int mix_dh(struct session_hs *hs, const uint8_t priv[32], const uint8_t pub[32])
{
	uint8_t shared[DH_LEN];
	int r = 0;

	if (crypto_scalarmult(shared, priv, pub) != 0 || sodium_is_zero(shared, sizeof(shared)))
		r = -EBADMSG;
	else
		mix_key(hs, shared, sizeof(shared));
	sodium_memzero(shared, sizeof(shared));
	return r;
}

/* ---- HandshakeState ---- */

int session_hs_init(struct session_hs *hs, bool initiator, const uint8_t *prologue,
		    size_t prologue_len, const uint8_t s_priv[32], const uint8_t *rs)
{
	static const char name[] = NOISE_PROTOCOL_NAME;

	sodium_memzero(hs, sizeof(*hs));
	if (!s_priv || (initiator && !rs) || (prologue_len && !prologue))
		return -EINVAL;
	if (sodium_init() < 0)
		return -EIO;
	hs->initiator = initiator;
	memcpy(hs->s_priv, s_priv, 32);
	if (crypto_scalarmult_base(hs->s_pub, hs->s_priv) != 0)
		goto fail;

	/* InitializeSymmetric: the name fits in HASHLEN, so h = name padded with zeros. */
	memcpy(hs->h, name, sizeof(name) - 1);
	memcpy(hs->ck, hs->h, sizeof(hs->ck));
	mix_hash(hs, prologue, prologue_len);

	/* IK pre-message "<- s": both sides hash the responder's static key. */
	if (initiator) {
		if (sodium_is_zero(rs, 32))
			goto fail;
		memcpy(hs->rs, rs, 32);
		mix_hash(hs, hs->rs, 32);
	} else {
		mix_hash(hs, hs->s_pub, 32);
	}
	return 0;
fail:
	sodium_memzero(hs, sizeof(*hs));
	return -EINVAL;
}

int session_responder_init(struct session_responder *r, const uint8_t *prologue,
			   size_t prologue_len, const uint8_t s_priv[32])
{
	struct session_hs hs;
	int e = session_hs_init(&hs, false, prologue, prologue_len, s_priv, NULL);

	sodium_memzero(r, sizeof(*r));
	if (e == 0) {
		memcpy(r->s_priv, hs.s_priv, sizeof(r->s_priv));
		memcpy(r->s_pub, hs.s_pub, sizeof(r->s_pub));
		memcpy(r->ck, hs.ck, sizeof(r->ck));
		memcpy(r->h, hs.h, sizeof(r->h));
	}
	sodium_memzero(&hs, sizeof(hs));
	return e;
}

void session_hs_init_responder(struct session_hs *hs, const struct session_responder *r)
{
	sodium_memzero(hs, sizeof(*hs));
	hs->initiator = false;
	memcpy(hs->s_priv, r->s_priv, sizeof(hs->s_priv));
	memcpy(hs->s_pub, r->s_pub, sizeof(hs->s_pub));
	memcpy(hs->ck, r->ck, sizeof(hs->ck));
	memcpy(hs->h, r->h, sizeof(hs->h));
}

void session_responder_wipe(struct session_responder *r)
{
	sodium_memzero(r, sizeof(*r));
}

/* Store the work copy back on success, wipe it either way. */
static ssize_t hs_finish(struct session_hs *hs, struct session_hs *tmp, ssize_t r)
{
	if (r >= 0)
		memcpy(hs, tmp, sizeof(*hs));
	sodium_memzero(tmp, sizeof(*tmp));
	return r;
}

/* The "e" token: take the ephemeral key, send its public half, hash it. */
static int write_e(struct session_hs *t, const uint8_t e_priv[32], uint8_t *out)
{
	memcpy(t->e_priv, e_priv, 32);
	if (crypto_scalarmult_base(t->e_pub, t->e_priv) != 0)
		return -EINVAL;
	memcpy(out, t->e_pub, 32);
	mix_hash(t, t->e_pub, 32);
	return 0;
}

ssize_t session_hs_write_msg1(struct session_hs *hs, const uint8_t e_priv[32],
			      const uint8_t *payload, size_t payload_len, uint8_t *out, size_t cap)
{
	struct session_hs t;
	size_t need = 32 + (32 + SESSION_TAG_LEN) + payload_len + SESSION_TAG_LEN;
	ssize_t r;
	size_t off = 0;

	if (!hs->initiator || !e_priv || (payload_len && !payload))
		return -EINVAL;
	if (payload_len > SIZE_MAX / 2 || cap < need)
		return -ENOSPC;
	memcpy(&t, hs, sizeof(t));

	/* -> e */
	r = write_e(&t, e_priv, out);
	if (r < 0)
		goto out;
	off += 32;
	/* es */
	r = mix_dh(&t, t.e_priv, t.rs);
	if (r < 0)
		goto out;
	/* s */
	r = encrypt_and_hash(&t, t.s_pub, 32, out + off);
	if (r < 0)
		goto out;
	off += (size_t)r;
	/* ss */
	r = mix_dh(&t, t.s_priv, t.rs);
	if (r < 0)
		goto out;
	/* payload */
	r = encrypt_and_hash(&t, payload, payload_len, out + off);
	if (r < 0)
		goto out;
	off += (size_t)r;
	r = (ssize_t)off;
out:
	if (r < 0)
		sodium_memzero(out, need);
	return hs_finish(hs, &t, r);
}

/* The fixed part of message 1 before its payload: e, the encrypted s and their tags. */
#define MSG1_FIXED (32 + 32 + SESSION_TAG_LEN + SESSION_TAG_LEN)

int session_hs_read_msg1_static(struct session_hs *hs, const uint8_t *msg, size_t len)
{
	struct session_hs t;
	uint8_t rs_ct[32 + SESSION_TAG_LEN];
	ssize_t r;

	if (hs->initiator || hs->n || !sodium_is_zero(hs->re, 32))
		return -EINVAL; /* only on a fresh responder state */
	if (!msg || len < MSG1_FIXED)
		return -EBADMSG;
	memcpy(&t, hs, sizeof(t));

	/* -> e */
	memcpy(t.re, msg, 32);
	mix_hash(&t, t.re, 32);
	/* es (responder side: DH(s, re)) */
	r = mix_dh(&t, t.s_priv, t.re);
	if (r < 0)
		goto out;
	/* s */
	memcpy(rs_ct, msg + 32, sizeof(rs_ct));
	r = decrypt_and_hash(&t, rs_ct, sizeof(rs_ct), t.rs);
out:
	return (int)hs_finish(hs, &t, r < 0 ? r : 0);
}

ssize_t session_hs_read_msg1_payload(struct session_hs *hs, const uint8_t *msg, size_t len,
				     uint8_t *payload, size_t payload_cap)
{
	struct session_hs t;
	size_t plen;
	ssize_t r;

	if (hs->initiator || !hs->has_k || sodium_is_zero(hs->rs, 32))
		return -EINVAL; /* session_hs_read_msg1_static() first */
	if (!msg || len < MSG1_FIXED)
		return -EBADMSG;
	plen = len - MSG1_FIXED;
	if (payload_cap < plen || (plen && !payload))
		return -ENOSPC;
	memcpy(&t, hs, sizeof(t));

	/* ss */
	r = mix_dh(&t, t.s_priv, t.rs);
	if (r < 0)
		goto out;
	/* payload */
	r = decrypt_and_hash(&t, msg + 32 + 32 + SESSION_TAG_LEN, plen + SESSION_TAG_LEN, payload);
out:
	if (r < 0 && payload_cap && payload)
		sodium_memzero(payload, plen);
	return hs_finish(hs, &t, r);
}

ssize_t session_hs_read_msg1(struct session_hs *hs, const uint8_t *msg, size_t len,
			     uint8_t *payload, size_t payload_cap)
{
	struct session_hs t;
	ssize_t r;

	if (hs->initiator)
		return -EINVAL;
	if (!msg || len < MSG1_FIXED)
		return -EBADMSG;
	if (payload_cap < len - MSG1_FIXED || (len > MSG1_FIXED && !payload))
		return -ENOSPC;
	/* On a copy, so that a failure in either half leaves hs as it was. */
	memcpy(&t, hs, sizeof(t));
	r = session_hs_read_msg1_static(&t, msg, len);
	if (r == 0)
		r = session_hs_read_msg1_payload(&t, msg, len, payload, payload_cap);
	return hs_finish(hs, &t, r);
}

ssize_t session_hs_write_msg2(struct session_hs *hs, const uint8_t e_priv[32],
			      const uint8_t *payload, size_t payload_len, uint8_t *out, size_t cap)
{
	struct session_hs t;
	size_t need = 32 + payload_len + SESSION_TAG_LEN;
	ssize_t r;

	if (hs->initiator || !e_priv || (payload_len && !payload))
		return -EINVAL;
	/* Message 1 must have been read: it sets re and the key. */
	if (!hs->has_k || sodium_is_zero(hs->re, 32))
		return -EINVAL;
	if (payload_len > SIZE_MAX / 2 || cap < need)
		return -ENOSPC;
	memcpy(&t, hs, sizeof(t));

	/* <- e */
	r = write_e(&t, e_priv, out);
	if (r < 0)
		goto out;
	/* ee */
	r = mix_dh(&t, t.e_priv, t.re);
	if (r < 0)
		goto out;
	/* se (responder side: DH(e, rs)) */
	r = mix_dh(&t, t.e_priv, t.rs);
	if (r < 0)
		goto out;
	/* payload */
	r = encrypt_and_hash(&t, payload, payload_len, out + 32);
	if (r < 0)
		goto out;
	r += 32;
out:
	if (r < 0)
		sodium_memzero(out, need);
	return hs_finish(hs, &t, r);
}

ssize_t session_hs_read_msg2(struct session_hs *hs, const uint8_t *msg, size_t len,
			     uint8_t *payload, size_t payload_cap)
{
	struct session_hs t;
	size_t plen;
	ssize_t r;

	if (!hs->initiator)
		return -EINVAL;
	/* Message 1 must have been written. */
	if (!hs->has_k || sodium_is_zero(hs->e_pub, 32))
		return -EINVAL;
	if (!msg || len < 32 + SESSION_TAG_LEN)
		return -EBADMSG;
	plen = len - (32 + SESSION_TAG_LEN);
	if (payload_cap < plen || (plen && !payload))
		return -ENOSPC;
	memcpy(&t, hs, sizeof(t));

	/* <- e */
	memcpy(t.re, msg, 32);
	mix_hash(&t, t.re, 32);
	/* ee */
	r = mix_dh(&t, t.e_priv, t.re);
	if (r < 0)
		goto out;
	/* se (initiator side: DH(s, re)) */
	r = mix_dh(&t, t.s_priv, t.re);
	if (r < 0)
		goto out;
	/* payload */
	r = decrypt_and_hash(&t, msg + 32, plen + SESSION_TAG_LEN, payload);
out:
	if (r < 0 && payload_cap && payload)
		sodium_memzero(payload, plen);
	return hs_finish(hs, &t, r);
}

void session_hs_split(struct session_hs *hs, struct session_keys *out)
{
	uint8_t k1[SESSION_HASH_LEN], k2[SESSION_HASH_LEN];

	hkdf2(k1, k2, hs->ck, NULL, 0);
	/* The initiator sends with the first key, the responder with the second. */
	memcpy(out->send, hs->initiator ? k1 : k2, SESSION_KEY_LEN);
	memcpy(out->recv, hs->initiator ? k2 : k1, SESSION_KEY_LEN);
	memcpy(out->hash, hs->h, SESSION_HASH_LEN);
	sodium_memzero(k1, sizeof(k1));
	sodium_memzero(k2, sizeof(k2));
	sodium_memzero(hs, sizeof(*hs));
}

/* ---- replay window ---- */

/*
 * bitmap bit (c % SESSION_REPLAY_WINDOW) records counter c for the
 * SESSION_REPLAY_WINDOW counters below top; bits of counters at or above top
 * are always clear.
 */
static bool replay_bit(const struct session_replay *r, uint64_t c)
{
	unsigned int i = (unsigned int)(c % SESSION_REPLAY_WINDOW);

	return r->bitmap[i / 64] >> (i % 64) & 1;
}

bool session_replay_check(const struct session_replay *r, uint64_t counter)
{
	/* Noise never uses 2^64 - 1, and top = counter + 1 must not wrap. */
	if (counter == UINT64_MAX)
		return false;
	if (counter >= r->top)
		return true;
	if (r->top - counter > SESSION_REPLAY_WINDOW)
		return false; /* too old to tell */
	return !replay_bit(r, counter);
}

void session_replay_commit(struct session_replay *r, uint64_t counter)
{
	unsigned int i;

	if (counter == UINT64_MAX)
		return;
	if (counter >= r->top) {
		uint64_t shift = counter - r->top + 1;

		if (shift >= SESSION_REPLAY_WINDOW) {
			memset(r->bitmap, 0, sizeof(r->bitmap));
		} else {
			/* Counters top .. counter enter the window unseen. */
			for (uint64_t c = r->top; c <= counter; c++) {
				i = (unsigned int)(c % SESSION_REPLAY_WINDOW);
				r->bitmap[i / 64] &= ~(UINT64_C(1) << (i % 64));
			}
		}
		r->top = counter + 1;
	} else if (r->top - counter > SESSION_REPLAY_WINDOW) {
		return;
	}
	i = (unsigned int)(counter % SESSION_REPLAY_WINDOW);
	r->bitmap[i / 64] |= UINT64_C(1) << (i % 64);
}

/* ---- TAI64N ---- */

void session_tai64n(uint8_t out[12], int64_t unix_s, uint32_t ns)
{
	/* TAI64 label: 2^62 + seconds (leap seconds ignored, as WireGuard does). */
	uint64_t secs = (UINT64_C(1) << 62) + (uint64_t)unix_s;
	int i;

	for (i = 0; i < 8; i++)
		out[i] = (uint8_t)(secs >> (56 - 8 * i));
	for (i = 0; i < 4; i++)
		out[8 + i] = (uint8_t)(ns >> (24 - 8 * i));
}

bool session_tai64n_after(const uint8_t a[12], const uint8_t b[12])
{
	/* Big-endian fields in order: byte order is time order. Neither is secret. */
	return memcmp(a, b, 12) > 0;
}

/* ---- probe MAC ---- */

void session_probe_key_from_hash(const uint8_t hash[SESSION_HASH_LEN], uint8_t out[SESSION_KEY_LEN])
{
	static const char label[] = PROBE_KEY_LABEL;

	/* Keyed BLAKE2b-256 of a label under the handshake hash: both sides hold h,
	 * nobody else does, and the label keeps it apart from any other use of h. */
	crypto_generichash_blake2b(out, SESSION_KEY_LEN, (const uint8_t *)label, sizeof(label) - 1,
				   hash, SESSION_HASH_LEN);
}

void session_probe_key(const struct session_keys *k, uint8_t out[SESSION_KEY_LEN])
{
	session_probe_key_from_hash(k->hash, out);
}

void session_probe_mac(const uint8_t key[SESSION_KEY_LEN], const uint8_t *msg, size_t len,
		       uint8_t mac[16])
{
	crypto_generichash_blake2b(mac, 16, msg, len, key, SESSION_KEY_LEN);
}

bool session_probe_mac_ok(const uint8_t key[SESSION_KEY_LEN], const uint8_t *msg, size_t len,
			  const uint8_t mac[16])
{
	uint8_t want[16];
	bool ok;

	session_probe_mac(key, msg, len, want);
	ok = sodium_memcmp(want, mac, sizeof(want)) == 0;
	sodium_memzero(want, sizeof(want));
	return ok;
}

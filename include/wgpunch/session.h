/* SPDX-License-Identifier: MIT */
/*
 * session - Noise_IK_25519_ChaChaPoly_BLAKE2b and the transport crypto of a
 * wgpunch session, with libsodium. Pure given keys, randomness and time: no
 * I/O, no clock reads, no allocation.
 *
 * The generic Noise part (session_hs_*) follows the Noise spec rev. 34 and is
 * checked against the published vectors. The wgpunch part fixes the
 * prologue, the handshake payload (a TAI64N timestamp, as WireGuard does),
 * explicit 64-bit nonces with a sliding replay window, and the probe MAC.
 */
#ifndef WGPUNCH_SESSION_H
#define WGPUNCH_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SESSION_KEY_LEN 32
#define SESSION_HASH_LEN 64
#define SESSION_TAG_LEN 16
/* Names wgpunch and its protocol version, so these keys can never be mistaken
 * for WireGuard's own handshake (which uses another prologue and pattern). */
#define SESSION_PROLOGUE "wgpunch protocol v2"

/* Noise HandshakeState for the IK pattern. */
struct session_hs {
	bool initiator;
	uint8_t ck[SESSION_HASH_LEN];
	uint8_t h[SESSION_HASH_LEN];
	uint8_t k[SESSION_KEY_LEN];
	bool has_k;
	uint64_t n;
	uint8_t s_priv[32], s_pub[32]; /* local static */
	uint8_t e_priv[32], e_pub[32]; /* local ephemeral */
	uint8_t rs[32]; /* remote static (known to the initiator; learnt by the responder) */
	uint8_t re[32]; /* remote ephemeral */
};

/* Result of a finished handshake (Noise Split()). */
struct session_keys {
	uint8_t send[SESSION_KEY_LEN];
	uint8_t recv[SESSION_KEY_LEN];
	uint8_t hash[SESSION_HASH_LEN]; /* handshake hash h, for channel binding */
};

/*
 * Initialise for IK. rs is the responder's static public key (initiator
 * only; NULL for the responder). s_priv is the local static private key.
 * Returns 0 or -EINVAL.
 */
int session_hs_init(struct session_hs *hs, bool initiator, const uint8_t *prologue,
		    size_t prologue_len, const uint8_t s_priv[32], const uint8_t *rs);

/*
 * What every responder handshake of one static key starts from: the static public key
 * (a fixed-base X25519) and the symmetric state after the prologue and the "<- s"
 * pre-message (two hashes). Computed once per key instead of once per handshake.
 */
struct session_responder {
	uint8_t s_priv[32], s_pub[32];
	uint8_t ck[SESSION_HASH_LEN], h[SESSION_HASH_LEN];
};

/* 0, or -EINVAL (no key, or a prologue length without one) / -EIO. */
int session_responder_init(struct session_responder *r, const uint8_t *prologue,
			   size_t prologue_len, const uint8_t s_priv[32]);
/* hs as session_hs_init(hs, false, prologue, prologue_len, s_priv, NULL) leaves it. */
void session_hs_init_responder(struct session_hs *hs, const struct session_responder *r);
void session_responder_wipe(struct session_responder *r);

/* -> e, es, s, ss, payload. e_priv is the ephemeral private key (random in
 * production, fixed in tests). Returns the message length or -errno. */
ssize_t session_hs_write_msg1(struct session_hs *hs, const uint8_t e_priv[32],
			      const uint8_t *payload, size_t payload_len, uint8_t *out, size_t cap);
/* Responder: reads message 1; on success hs->rs holds the initiator's static key.
 * Returns the payload length or -EBADMSG (authentication failed) / -errno. */
ssize_t session_hs_read_msg1(struct session_hs *hs, const uint8_t *msg, size_t len,
			     uint8_t *payload, size_t payload_cap);
/*
 * The same in two steps, so that a responder can decide from the initiator's static key
 * alone (who it is, whether it is known) before the second X25519: _static() reads e, es
 * and s (one X25519; hs->rs set, nothing authenticated but the encrypted s) on a fresh
 * responder state, _payload() then ss and the payload, with the results of
 * session_hs_read_msg1(). On failure hs is unchanged.
 */
int session_hs_read_msg1_static(struct session_hs *hs, const uint8_t *msg, size_t len);
ssize_t session_hs_read_msg1_payload(struct session_hs *hs, const uint8_t *msg, size_t len,
				     uint8_t *payload, size_t payload_cap);
/* <- e, ee, se, payload. */
ssize_t session_hs_write_msg2(struct session_hs *hs, const uint8_t e_priv[32],
			      const uint8_t *payload, size_t payload_len, uint8_t *out, size_t cap);
ssize_t session_hs_read_msg2(struct session_hs *hs, const uint8_t *msg, size_t len,
			     uint8_t *payload, size_t payload_cap);
/* After message 2: the transport keys for this side. Wipes hs. */
void session_hs_split(struct session_hs *hs, struct session_keys *out);

/*
 * Transport AEAD: ChaCha20-Poly1305 (IETF) with the Noise nonce layout
 * (4 zero bytes, then the 64-bit counter little-endian). out must have room
 * for len + SESSION_TAG_LEN. decrypt returns the plaintext length or -EBADMSG.
 */
size_t session_encrypt(const uint8_t key[SESSION_KEY_LEN], uint64_t nonce, const uint8_t *ad,
		       size_t ad_len, const uint8_t *pt, size_t len, uint8_t *out);
ssize_t session_decrypt(const uint8_t key[SESSION_KEY_LEN], uint64_t nonce, const uint8_t *ad,
			size_t ad_len, const uint8_t *ct, size_t len, uint8_t *out);

/*
 * Sliding replay window over transport counters. Control traffic is
 * low-rate, so 128 counters of reordering suffice and keep the coordinator's
 * per-node state small (WireGuard's data path uses 2048).
 * Check before decrypting; commit only after the AEAD verified, so forged
 * packets cannot move the window.
 */
#define SESSION_REPLAY_WINDOW 128
struct session_replay {
	uint64_t top; /* highest accepted counter + 1; 0 = none yet */
	uint64_t bitmap[SESSION_REPLAY_WINDOW / 64];
};
bool session_replay_check(const struct session_replay *r, uint64_t counter);
void session_replay_commit(struct session_replay *r, uint64_t counter);

/* TAI64N of a wall-clock time (seconds and nanoseconds since the Unix epoch). */
void session_tai64n(uint8_t out[12], int64_t unix_s, uint32_t ns);
/* true when a is later than b (both TAI64N, compared as big-endian bytes). */
bool session_tai64n_after(const uint8_t a[12], const uint8_t b[12]);

/*
 * The probe MAC. Probes leave the node's raw socket in the clear, so they
 * carry a MAC under a key derived from the session: nobody without the
 * session can make the coordinator record a mapping for someone else.
 */
void session_probe_key(const struct session_keys *k, uint8_t out[SESSION_KEY_LEN]);
/* The probe key for the peer side: both derive the same key from hash. */
void session_probe_key_from_hash(const uint8_t hash[SESSION_HASH_LEN],
				 uint8_t out[SESSION_KEY_LEN]);
void session_probe_mac(const uint8_t key[SESSION_KEY_LEN], const uint8_t *msg, size_t len,
		       uint8_t mac[16]);
bool session_probe_mac_ok(const uint8_t key[SESSION_KEY_LEN], const uint8_t *msg, size_t len,
			  const uint8_t mac[16]);

#endif

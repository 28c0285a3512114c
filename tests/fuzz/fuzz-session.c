/* SPDX-License-Identifier: MIT */
/*
 * fuzz-session - feeds each input, with fixed keys, to the responder as
 * message 1, to an initiator waiting for message 2, to transport decryption
 * (first 8 bytes: the nonce, big-endian) and to the probe MAC check (the
 * first 16 bytes, then the MAC), and drives the replay window against a
 * simple reference model. The only inputs that may be accepted are the
 * genuine messages made with the same keys; anything else accepted is forged.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "wgpunch/session.h"
#include "fuzz.h"


static const uint8_t prologue[] = SESSION_PROLOGUE;

static struct {
	bool ready;
	uint8_t i_priv[32], r_priv[32], r_pub[32], ie[32], re[32];
	struct session_hs init_after_msg1; /* initiator waiting for message 2 */
	uint8_t msg1[128], msg2[64];
	size_t msg1_len, msg2_len;
	struct session_keys ik; /* initiator's keys */
	uint8_t data_ct[64];    /* genuine transport message, nonce 5 */
	size_t data_ct_len;
	uint8_t probe_key[SESSION_KEY_LEN];
} fx;

static void fixture_init(void)
{
	struct session_hs ihs, rhs;
	struct session_keys rk;
	uint8_t ts[12];
	ssize_t n;

	FUZZ_ASSERT(sodium_init() >= 0);
	memset(fx.i_priv, 0x11, 32);
	memset(fx.r_priv, 0x22, 32);
	memset(fx.ie, 0x33, 32);
	memset(fx.re, 0x44, 32);
	FUZZ_ASSERT(crypto_scalarmult_base(fx.r_pub, fx.r_priv) == 0);

	FUZZ_ASSERT(session_hs_init(&ihs, true, prologue, sizeof(prologue) - 1, fx.i_priv,
				    fx.r_pub) == 0);
	session_tai64n(ts, 1700000000, 0);
	n = session_hs_write_msg1(&ihs, fx.ie, ts, sizeof(ts), fx.msg1, sizeof(fx.msg1));
	FUZZ_ASSERT(n > 0);
	fx.msg1_len = (size_t)n;
	fx.init_after_msg1 = ihs;

	FUZZ_ASSERT(session_hs_init(&rhs, false, prologue, sizeof(prologue) - 1, fx.r_priv, NULL) ==
		    0);
	FUZZ_ASSERT(session_hs_read_msg1(&rhs, fx.msg1, fx.msg1_len, ts, sizeof(ts)) == 12);
	n = session_hs_write_msg2(&rhs, fx.re, NULL, 0, fx.msg2, sizeof(fx.msg2));
	FUZZ_ASSERT(n > 0);
	fx.msg2_len = (size_t)n;
	FUZZ_ASSERT(session_hs_read_msg2(&ihs, fx.msg2, fx.msg2_len, NULL, 0) == 0);
	session_hs_split(&ihs, &fx.ik);
	session_hs_split(&rhs, &rk);

	/* nonce 5 big-endian, then the ciphertext of "ping" from the responder */
	memset(fx.data_ct, 0, 8);
	fx.data_ct[7] = 5;
	fx.data_ct_len = 8 + session_encrypt(rk.send, 5, NULL, 0, (const uint8_t *)"ping", 4,
					     fx.data_ct + 8);
	session_probe_key(&fx.ik, fx.probe_key);
	fx.ready = true;
}

static bool is(const uint8_t *data, size_t size, const uint8_t *want, size_t want_len)
{
	return size == want_len && memcmp(data, want, size) == 0;
}

static void fuzz_handshake(const uint8_t *data, size_t size)
{
	uint8_t payload[2048];
	struct session_hs hs;
	ssize_t r;

	FUZZ_ASSERT(session_hs_init(&hs, false, prologue, sizeof(prologue) - 1, fx.r_priv, NULL) ==
		    0);
	r = session_hs_read_msg1(&hs, data, size, payload, sizeof(payload));
	FUZZ_ASSERT(r < 0 || is(data, size, fx.msg1, fx.msg1_len));
	FUZZ_ASSERT(r >= 0 || r == -EBADMSG || r == -ENOSPC);

	hs = fx.init_after_msg1;
	r = session_hs_read_msg2(&hs, data, size, payload, sizeof(payload));
	FUZZ_ASSERT(r < 0 || is(data, size, fx.msg2, fx.msg2_len));
	/* a refused message 2 leaves the state usable for the genuine one */
	if (r < 0)
		FUZZ_ASSERT(session_hs_read_msg2(&hs, fx.msg2, fx.msg2_len, NULL, 0) == 0);
}

static void fuzz_transport(const uint8_t *data, size_t size)
{
	uint8_t pt[2048];
	uint64_t nonce = 0;
	ssize_t r;
	int i;

	if (size >= 8 && size - 8 <= sizeof(pt)) {
		for (i = 0; i < 8; i++)
			nonce = nonce << 8 | data[i];
		r = session_decrypt(fx.ik.recv, nonce, NULL, 0, data + 8, size - 8, pt);
		FUZZ_ASSERT(r < 0 || is(data, size, fx.data_ct, fx.data_ct_len));
	}
	if (size >= 32) {
		uint8_t mac[16];

		/* a MAC that verifies must be the one we would compute */
		session_probe_mac(fx.probe_key, data, 16, mac);
		FUZZ_ASSERT(session_probe_mac_ok(fx.probe_key, data, 16, data + 16) ==
			    (memcmp(mac, data + 16, 16) == 0));
	}
}

/*
 * Replay window against a model that remembers every accepted counter:
 * fresh means never accepted and not more than the window below the top.
 */
#define MODEL_MAX 512
static void fuzz_replay(const uint8_t *data, size_t size)
{
	struct session_replay r;
	uint64_t seen[MODEL_MAX], top = 0;
	size_t n_seen = 0, i, j;

	memset(&r, 0, sizeof(r));
	for (i = 0; i + 2 <= size && n_seen < MODEL_MAX; i += 2) {
		uint8_t op = data[i], v = data[i + 1];
		uint64_t c;
		bool want, dup = false;

		switch (op & 3) {
		case 0:
			c = top + v; /* ahead */
			break;
		case 1:
			c = top - 1 - v; /* behind (wraps to huge values while empty) */
			break;
		case 2:
			c = top + ((uint64_t)v << 32); /* far jump */
			break;
		default:
			c = UINT64_MAX - v; /* near the end of the counter space */
			break;
		}
		for (j = 0; j < n_seen; j++)
			dup |= seen[j] == c;
		want = c != UINT64_MAX && !dup && (c >= top || top - c <= SESSION_REPLAY_WINDOW);
		FUZZ_ASSERT(session_replay_check(&r, c) == want);
		if (want && (op & 4)) {
			/* op bit 2: the AEAD verified, commit */
			session_replay_commit(&r, c);
			seen[n_seen++] = c;
			if (c >= top)
				top = c + 1;
			FUZZ_ASSERT(!session_replay_check(&r, c));
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!fx.ready)
		fixture_init();
	fuzz_handshake(data, size);
	fuzz_transport(data, size);
	fuzz_replay(data, size);
	return 0;
}

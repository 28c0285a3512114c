/* SPDX-License-Identifier: MIT */
/*
 * test-session - the Noise IK handshake against the published vectors, and
 * the wgpunch additions: replay window, TAI64N, probe MAC.
 */
#include "wgpunch/session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "wgpunch/proto.h"

#include "../tap.h"

#define VECTORS_FILE TEST_DATA_DIR "/vectors/noise_ik_25519_chachapoly_blake2b.json"
#define MAX_BLOB 512

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long len;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)len + 1);
		if (buf && fread(buf, 1, (size_t)len, f) == (size_t)len) {
			buf[len] = '\0';
		} else {
			free(buf);
			buf = NULL;
		}
	}
	fclose(f);
	return buf;
}

/* Decodes the hex string field name of o into out; returns its length or -1. */
static int hex_field(const cJSON *o, const char *name, uint8_t *out, size_t cap)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);
	size_t len;

	if (!cJSON_IsString(f))
		return -1;
	if (sodium_hex2bin(out, cap, f->valuestring, strlen(f->valuestring), NULL, &len, NULL) != 0)
		return -1;
	return (int)len;
}

static cJSON *load_vectors(void)
{
	char *text = read_file(VECTORS_FILE);
	cJSON *root;

	if (!text) {
		printf("# cannot read %s\n", VECTORS_FILE);
		return NULL;
	}
	root = cJSON_Parse(text);
	free(text);
	return root;
}

/* Runs one cacophony-format vector through both sides; returns the number of failed checks. */
static void run_vector(const cJSON *v, int index)
{
	uint8_t iprol[MAX_BLOB], rprol[MAX_BLOB], is[32], ie[32], irs[32], rs[32], re[32];
	uint8_t want_hash[SESSION_HASH_LEN], pub[32];
	int iprol_len, rprol_len, hash_len;
	struct session_hs ihs, rhs, rhs_plain;
	struct session_responder resp;
	struct session_keys ik, rk;
	const cJSON *msgs, *m;
	uint64_t inonce = 0, rnonce = 0;
	int i = 0;

	printf("# vector %d\n", index);
	iprol_len = hex_field(v, "init_prologue", iprol, sizeof(iprol));
	rprol_len = hex_field(v, "resp_prologue", rprol, sizeof(rprol));
	CHECK(iprol_len >= 0 && rprol_len >= 0);
	CHECK_EQ_INT(hex_field(v, "init_static", is, sizeof(is)), 32);
	CHECK_EQ_INT(hex_field(v, "init_ephemeral", ie, sizeof(ie)), 32);
	CHECK_EQ_INT(hex_field(v, "init_remote_static", irs, sizeof(irs)), 32);
	CHECK_EQ_INT(hex_field(v, "resp_static", rs, sizeof(rs)), 32);
	CHECK_EQ_INT(hex_field(v, "resp_ephemeral", re, sizeof(re)), 32);
	hash_len = hex_field(v, "handshake_hash", want_hash, sizeof(want_hash));
	msgs = cJSON_GetObjectItemCaseSensitive(v, "messages");
	CHECK(cJSON_IsArray(msgs) && cJSON_GetArraySize(msgs) >= 2);
	if (!tap_current_ok)
		return;

	CHECK_EQ_INT(session_hs_init(&ihs, true, iprol, (size_t)iprol_len, is, irs), 0);
	/* The responder starts from the per-key state the coordinator computes once; it must be
	 * exactly what session_hs_init() makes, and the vector then runs through it. */
	CHECK_EQ_INT(session_hs_init(&rhs_plain, false, rprol, (size_t)rprol_len, rs, NULL), 0);
	CHECK_EQ_INT(session_responder_init(&resp, rprol, (size_t)rprol_len, rs), 0);
	session_hs_init_responder(&rhs, &resp);
	CHECK(memcmp(&rhs, &rhs_plain, sizeof(rhs)) == 0);
	session_responder_wipe(&resp);

	cJSON_ArrayForEach(m, msgs)
	{
		uint8_t payload[MAX_BLOB], want_ct[MAX_BLOB], ct[MAX_BLOB], pt[MAX_BLOB];
		int plen = hex_field(m, "payload", payload, sizeof(payload));
		int clen = hex_field(m, "ciphertext", want_ct, sizeof(want_ct));
		ssize_t n, p;

		CHECK(plen >= 0 && clen >= 0);
		if (plen < 0 || clen < 0)
			return;
		if (i == 0) {
			n = session_hs_write_msg1(&ihs, ie, payload, (size_t)plen, ct, sizeof(ct));
			p = session_hs_read_msg1(&rhs, ct, n > 0 ? (size_t)n : 0, pt, sizeof(pt));
			/* The responder learnt the initiator's static key. */
			crypto_scalarmult_base(pub, is);
			CHECK(memcmp(rhs.rs, pub, 32) == 0);
		} else if (i == 1) {
			n = session_hs_write_msg2(&rhs, re, payload, (size_t)plen, ct, sizeof(ct));
			p = session_hs_read_msg2(&ihs, ct, n > 0 ? (size_t)n : 0, pt, sizeof(pt));
			session_hs_split(&ihs, &ik);
			session_hs_split(&rhs, &rk);
			CHECK(memcmp(ik.send, rk.recv, SESSION_KEY_LEN) == 0);
			CHECK(memcmp(ik.recv, rk.send, SESSION_KEY_LEN) == 0);
			CHECK(memcmp(ik.hash, rk.hash, SESSION_HASH_LEN) == 0);
			if (hash_len >= 0) {
				CHECK_EQ_INT(hash_len, SESSION_HASH_LEN);
				CHECK(memcmp(ik.hash, want_hash, SESSION_HASH_LEN) == 0);
			}
			/* split wiped the handshake state */
			CHECK(sodium_is_zero((const uint8_t *)&ihs, sizeof(ihs)));
		} else if (i % 2 == 0) {
			/* transport, initiator -> responder */
			n = (ssize_t)session_encrypt(ik.send, inonce, NULL, 0, payload,
						     (size_t)plen, ct);
			p = session_decrypt(rk.recv, inonce, NULL, 0, ct, (size_t)n, pt);
			inonce++;
		} else {
			n = (ssize_t)session_encrypt(rk.send, rnonce, NULL, 0, payload,
						     (size_t)plen, ct);
			p = session_decrypt(ik.recv, rnonce, NULL, 0, ct, (size_t)n, pt);
			rnonce++;
		}
		CHECK_EQ_INT(n, clen);
		CHECK(n == clen && memcmp(ct, want_ct, (size_t)clen) == 0);
		if (n != clen || memcmp(ct, want_ct, (size_t)clen) != 0)
			printf("# vector %d message %d differs\n", index, i);
		CHECK_EQ_INT(p, plen);
		CHECK(p == plen && memcmp(pt, payload, (size_t)plen) == 0);
		i++;
	}
	/* Both vectors carry transport messages in both directions. */
	CHECK(inonce >= 1 && rnonce >= 1);
}

static void test_session_noise_vectors(void)
{
	cJSON *root = load_vectors();
	const cJSON *vs, *v;
	int n = 0;

	CHECK(root != NULL); /* a missing vectors file is a failure, not a skip */
	if (!root)
		return;
	vs = cJSON_GetObjectItemCaseSensitive(root, "vectors");
	CHECK(cJSON_IsArray(vs));
	cJSON_ArrayForEach(v, vs)
	{
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(v, "protocol_name");

		CHECK(cJSON_IsString(name) &&
		      strcmp(name->valuestring, "Noise_IK_25519_ChaChaPoly_BLAKE2b") == 0);
		run_vector(v, n);
		n++;
	}
	CHECK(n >= 2);
	cJSON_Delete(root);
}

/* ---- handshakes with our own keys ---- */

struct pair {
	uint8_t i_priv[32], i_pub[32], r_priv[32], r_pub[32], ie[32], re[32];
	struct session_hs ihs, rhs;
	uint8_t msg1[256], msg2[256];
	size_t msg1_len, msg2_len;
};

static void fill(uint8_t *p, size_t n, uint8_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed + i * 7);
}

static void pair_init(struct pair *p)
{
	static const uint8_t prologue[] = SESSION_PROLOGUE;
	uint8_t ts[PROTO_TIMESTAMP_LEN];
	ssize_t n;

	memset(p, 0, sizeof(*p));
	fill(p->i_priv, 32, 1);
	fill(p->r_priv, 32, 2);
	fill(p->ie, 32, 3);
	fill(p->re, 32, 4);
	crypto_scalarmult_base(p->i_pub, p->i_priv);
	crypto_scalarmult_base(p->r_pub, p->r_priv);
	CHECK_EQ_INT(
		session_hs_init(&p->ihs, true, prologue, sizeof(prologue) - 1, p->i_priv, p->r_pub),
		0);
	CHECK_EQ_INT(
		session_hs_init(&p->rhs, false, prologue, sizeof(prologue) - 1, p->r_priv, NULL),
		0);
	session_tai64n(ts, 1700000000, 123456789);
	n = session_hs_write_msg1(&p->ihs, p->ie, ts, sizeof(ts), p->msg1, sizeof(p->msg1));
	/* The wire format reserves exactly these sizes. */
	CHECK_EQ_INT(n, PROTO_HS_INIT_NOISE_LEN);
	p->msg1_len = n > 0 ? (size_t)n : 0;
}

static void pair_msg2(struct pair *p)
{
	ssize_t n = session_hs_write_msg2(&p->rhs, p->re, NULL, 0, p->msg2, sizeof(p->msg2));

	CHECK_EQ_INT(n, PROTO_HS_RESP_NOISE_LEN);
	p->msg2_len = n > 0 ? (size_t)n : 0;
}

static void test_session_handshake_with_timestamp(void)
{
	struct pair p;
	uint8_t ts[PROTO_TIMESTAMP_LEN], got[PROTO_TIMESTAMP_LEN];
	struct session_keys ik, rk;
	uint8_t ct[64], pt[64];
	ssize_t n;

	pair_init(&p);
	CHECK_EQ_INT(session_hs_read_msg1(&p.rhs, p.msg1, p.msg1_len, got, sizeof(got)),
		     PROTO_TIMESTAMP_LEN);
	session_tai64n(ts, 1700000000, 123456789);
	CHECK(memcmp(got, ts, sizeof(ts)) == 0);
	CHECK(memcmp(p.rhs.rs, p.i_pub, 32) == 0);
	pair_msg2(&p);
	CHECK_EQ_INT(session_hs_read_msg2(&p.ihs, p.msg2, p.msg2_len, NULL, 0), 0);
	session_hs_split(&p.ihs, &ik);
	session_hs_split(&p.rhs, &rk);
	CHECK(memcmp(ik.send, rk.recv, SESSION_KEY_LEN) == 0);
	CHECK(memcmp(ik.recv, rk.send, SESSION_KEY_LEN) == 0);
	CHECK(memcmp(ik.send, ik.recv, SESSION_KEY_LEN) != 0);

	/* Transport with associated data: AD, nonce and key all matter. */
	n = (ssize_t)session_encrypt(ik.send, 7, (const uint8_t *)"hdr", 3,
				     (const uint8_t *)"hello", 5, ct);
	CHECK_EQ_INT(n, 5 + SESSION_TAG_LEN);
	CHECK_EQ_INT(session_decrypt(rk.recv, 7, (const uint8_t *)"hdr", 3, ct, (size_t)n, pt), 5);
	CHECK(memcmp(pt, "hello", 5) == 0);
	CHECK_EQ_INT(session_decrypt(rk.recv, 8, (const uint8_t *)"hdr", 3, ct, (size_t)n, pt),
		     -EBADMSG);
	CHECK_EQ_INT(session_decrypt(rk.recv, 7, (const uint8_t *)"hdR", 3, ct, (size_t)n, pt),
		     -EBADMSG);
	CHECK_EQ_INT(session_decrypt(rk.send, 7, (const uint8_t *)"hdr", 3, ct, (size_t)n, pt),
		     -EBADMSG);
	ct[0] ^= 1;
	CHECK_EQ_INT(session_decrypt(rk.recv, 7, (const uint8_t *)"hdr", 3, ct, (size_t)n, pt),
		     -EBADMSG);
	CHECK_EQ_INT(session_decrypt(rk.recv, 7, NULL, 0, ct, SESSION_TAG_LEN - 1, pt), -EBADMSG);
}

static void test_session_tampered_msg1_refused(void)
{
	struct pair p;
	uint8_t pt[64];
	size_t i;
	int refused = 0;

	pair_init(&p);
	for (i = 0; i < p.msg1_len; i++) {
		p.msg1[i] ^= 0x20;
		if (session_hs_read_msg1(&p.rhs, p.msg1, p.msg1_len, pt, sizeof(pt)) == -EBADMSG)
			refused++;
		p.msg1[i] ^= 0x20;
	}
	CHECK_EQ_INT(refused, p.msg1_len);
	/* truncated and extended */
	CHECK_EQ_INT(session_hs_read_msg1(&p.rhs, p.msg1, p.msg1_len - 1, pt, sizeof(pt)),
		     -EBADMSG);
	CHECK_EQ_INT(session_hs_read_msg1(&p.rhs, p.msg1, 95, pt, sizeof(pt)), -EBADMSG);
	CHECK_EQ_INT(session_hs_read_msg1(&p.rhs, p.msg1, p.msg1_len + 1, pt, sizeof(pt)),
		     -EBADMSG);
	/* Failures left the state alone: the genuine message still reads. */
	CHECK_EQ_INT(session_hs_read_msg1(&p.rhs, p.msg1, p.msg1_len, pt, sizeof(pt)),
		     PROTO_TIMESTAMP_LEN);
}

static void test_session_tampered_msg2_refused(void)
{
	struct pair p;
	uint8_t pt[64];
	size_t i;
	int refused = 0;

	pair_init(&p);
	CHECK_EQ_INT(session_hs_read_msg1(&p.rhs, p.msg1, p.msg1_len, pt, sizeof(pt)),
		     PROTO_TIMESTAMP_LEN);
	pair_msg2(&p);
	for (i = 0; i < p.msg2_len; i++) {
		p.msg2[i] ^= 0x01;
		if (session_hs_read_msg2(&p.ihs, p.msg2, p.msg2_len, pt, sizeof(pt)) == -EBADMSG)
			refused++;
		p.msg2[i] ^= 0x01;
	}
	CHECK_EQ_INT(refused, p.msg2_len);
	CHECK_EQ_INT(session_hs_read_msg2(&p.ihs, p.msg2, p.msg2_len - 1, pt, sizeof(pt)),
		     -EBADMSG);
	CHECK_EQ_INT(session_hs_read_msg2(&p.ihs, p.msg2, 10, pt, sizeof(pt)), -EBADMSG);
	CHECK_EQ_INT(session_hs_read_msg2(&p.ihs, p.msg2, p.msg2_len, pt, sizeof(pt)), 0);
}

static void test_session_wrong_responder_key_refused(void)
{
	static const uint8_t prologue[] = SESSION_PROLOGUE;
	struct pair p;
	uint8_t other_priv[32], other_pub[32], pt[64];
	struct session_hs ihs;
	uint8_t msg1[256];
	ssize_t n;

	pair_init(&p);
	fill(other_priv, 32, 9);
	crypto_scalarmult_base(other_pub, other_priv);
	/* The initiator believes the responder is "other". */
	CHECK_EQ_INT(
		session_hs_init(&ihs, true, prologue, sizeof(prologue) - 1, p.i_priv, other_pub),
		0);
	n = session_hs_write_msg1(&ihs, p.ie, NULL, 0, msg1, sizeof(msg1));
	CHECK(n > 0);
	CHECK_EQ_INT(session_hs_read_msg1(&p.rhs, msg1, n > 0 ? (size_t)n : 0, pt, sizeof(pt)),
		     -EBADMSG);

	/* Another prologue fails too. */
	CHECK_EQ_INT(session_hs_init(&ihs, true, (const uint8_t *)"other", 5, p.i_priv, p.r_pub),
		     0);
	n = session_hs_write_msg1(&ihs, p.ie, NULL, 0, msg1, sizeof(msg1));
	CHECK(n > 0);
	CHECK_EQ_INT(session_hs_read_msg1(&p.rhs, msg1, n > 0 ? (size_t)n : 0, pt, sizeof(pt)),
		     -EBADMSG);

	/* A message 2 from a responder with another static key fails at the initiator. */
	{
		struct session_hs rhs2;
		uint8_t msg2[64];

		CHECK_EQ_INT(session_hs_init(&ihs, true, prologue, sizeof(prologue) - 1, p.i_priv,
					     other_pub),
			     0);
		CHECK_EQ_INT(session_hs_init(&rhs2, false, prologue, sizeof(prologue) - 1,
					     other_priv, NULL),
			     0);
		n = session_hs_write_msg1(&ihs, p.ie, NULL, 0, msg1, sizeof(msg1));
		CHECK_EQ_INT(session_hs_read_msg1(&rhs2, msg1, (size_t)n, NULL, 0), 0);
		/* A message 2 from a responder with another static key (p.rhs, answering
		 * its own handshake) is refused; the genuine one is accepted after it. */
		CHECK_EQ_INT(session_hs_read_msg1(&p.rhs, p.msg1, p.msg1_len, pt, sizeof(pt)),
			     PROTO_TIMESTAMP_LEN);
		pair_msg2(&p);
		CHECK_EQ_INT(session_hs_read_msg2(&ihs, p.msg2, p.msg2_len, NULL, 0), -EBADMSG);
		n = session_hs_write_msg2(&rhs2, p.re, NULL, 0, msg2, sizeof(msg2));
		CHECK_EQ_INT(session_hs_read_msg2(&ihs, msg2, (size_t)n, NULL, 0), 0);
	}
}

static void test_session_zero_dh_refused(void)
{
	static const uint8_t prologue[] = SESSION_PROLOGUE;
	/* u = 0 and u = 1 are low-order points: X25519 with them gives all zeros. */
	uint8_t zero[32] = { 0 }, one[32] = { 1 };
	struct pair p;
	struct session_hs ihs;
	uint8_t msg1[256], pt[64];

	pair_init(&p);
	CHECK_EQ_INT(session_hs_init(&ihs, true, prologue, sizeof(prologue) - 1, p.i_priv, zero),
		     -EINVAL);
	CHECK_EQ_INT(session_hs_init(&ihs, true, prologue, sizeof(prologue) - 1, p.i_priv, one), 0);
	CHECK(session_hs_write_msg1(&ihs, p.ie, NULL, 0, msg1, sizeof(msg1)) < 0);

	/* A message 1 whose ephemeral is a low-order point is refused. */
	memcpy(msg1, p.msg1, p.msg1_len);
	memcpy(msg1, one, 32);
	CHECK_EQ_INT(session_hs_read_msg1(&p.rhs, msg1, p.msg1_len, pt, sizeof(pt)), -EBADMSG);
	memcpy(msg1, zero, 32);
	CHECK_EQ_INT(session_hs_read_msg1(&p.rhs, msg1, p.msg1_len, pt, sizeof(pt)), -EBADMSG);
}

static void test_session_small_buffers_and_roles(void)
{
	struct pair p;
	uint8_t out[256], pt[64];

	pair_init(&p);
	/* write msg1: payload 12 needs 108 bytes */
	{
		struct session_hs ihs = p.ihs;
		static const uint8_t prologue[] = SESSION_PROLOGUE;

		CHECK_EQ_INT(session_hs_init(&ihs, true, prologue, sizeof(prologue) - 1, p.i_priv,
					     p.r_pub),
			     0);
		CHECK_EQ_INT(session_hs_write_msg1(&ihs, p.ie, pt, 12, out, 107), -ENOSPC);
		CHECK_EQ_INT(session_hs_write_msg1(&ihs, p.ie, pt, 12, out, 108), 108);
	}
	/* payload buffer too small */
	CHECK_EQ_INT(session_hs_read_msg1(&p.rhs, p.msg1, p.msg1_len, pt, 11), -ENOSPC);
	/* wrong role */
	CHECK_EQ_INT(session_hs_read_msg1(&p.ihs, p.msg1, p.msg1_len, pt, sizeof(pt)), -EINVAL);
	CHECK_EQ_INT(session_hs_write_msg1(&p.rhs, p.ie, NULL, 0, out, sizeof(out)), -EINVAL);
	/* msg2 before msg1 was read */
	CHECK_EQ_INT(session_hs_write_msg2(&p.rhs, p.re, NULL, 0, out, sizeof(out)), -EINVAL);
	CHECK_EQ_INT(session_hs_read_msg1(&p.rhs, p.msg1, p.msg1_len, pt, 12), 12);
	CHECK_EQ_INT(session_hs_write_msg2(&p.rhs, p.re, NULL, 0, out, 47), -ENOSPC);
	CHECK_EQ_INT(session_hs_init(&p.ihs, true, NULL, 0, p.i_priv, NULL), -EINVAL);
}

/* ---- replay window ---- */

static bool replay_accept(struct session_replay *r, uint64_t c)
{
	if (!session_replay_check(r, c))
		return false;
	session_replay_commit(r, c);
	return true;
}

static void test_session_replay_in_order(void)
{
	struct session_replay r = { 0 };
	uint64_t c;
	int ok = 0;

	for (c = 0; c < 1000; c++)
		ok += replay_accept(&r, c);
	CHECK_EQ_INT(ok, 1000);
	for (c = 0; c < 1000; c++)
		CHECK(!session_replay_check(&r, c));
	CHECK(session_replay_check(&r, 1000));
}

static void test_session_replay_out_of_order_and_duplicates(void)
{
	struct session_replay r = { 0 };

	CHECK(replay_accept(&r, 5));
	CHECK(replay_accept(&r, 2));
	CHECK(replay_accept(&r, 0));
	CHECK(!replay_accept(&r, 2));
	CHECK(!replay_accept(&r, 5));
	CHECK(replay_accept(&r, 4));
	CHECK(replay_accept(&r, 3));
	CHECK(replay_accept(&r, 1));
	CHECK(!replay_accept(&r, 0));
	/* check alone does not commit: forged packets cannot move the window */
	CHECK(session_replay_check(&r, 6));
	CHECK(session_replay_check(&r, 6));
	CHECK(session_replay_check(&r, 500));
	CHECK(replay_accept(&r, 6));

	/* jump by exactly the window: counters just inside still work once */
	CHECK(replay_accept(&r, 200));
	CHECK(replay_accept(&r, 200 - SESSION_REPLAY_WINDOW + 1));
	CHECK(!replay_accept(&r, 200 - SESSION_REPLAY_WINDOW + 1));
	CHECK(!replay_accept(&r, 200 - SESSION_REPLAY_WINDOW)); /* too old */
	CHECK(replay_accept(&r, 150));
	CHECK(replay_accept(&r, 199));
	CHECK(!replay_accept(&r, 199));
	/* moving the window must clear the slots that new counters reuse */
	CHECK(replay_accept(&r, 201));
	CHECK(replay_accept(&r, 300));
	CHECK(replay_accept(&r, 150 + SESSION_REPLAY_WINDOW)); /* 150's slot */
	CHECK(!replay_accept(&r, 150 + SESSION_REPLAY_WINDOW));
	CHECK(replay_accept(&r, 200 + SESSION_REPLAY_WINDOW));
	CHECK(!replay_accept(&r, 200));
	CHECK(!replay_accept(&r, 150));
}

static void test_session_replay_too_old_and_far_jump(void)
{
	struct session_replay r = { 0 };
	uint64_t far = UINT64_C(1) << 40;

	CHECK(replay_accept(&r, 10));
	CHECK(replay_accept(&r, far));
	/* everything before the new window is refused, inside it is fresh */
	CHECK(!replay_accept(&r, 10));
	CHECK(!replay_accept(&r, 11));
	CHECK(!replay_accept(&r, far - SESSION_REPLAY_WINDOW));
	CHECK(replay_accept(&r, far - SESSION_REPLAY_WINDOW + 1));
	CHECK(replay_accept(&r, far - 1));
	CHECK(!replay_accept(&r, far));
	CHECK(replay_accept(&r, far + 1));
	/* the reserved nonce 2^64 - 1 is never accepted */
	CHECK(!session_replay_check(&r, UINT64_MAX));
	session_replay_commit(&r, UINT64_MAX);
	CHECK(replay_accept(&r, UINT64_MAX - 1));
	CHECK(!replay_accept(&r, UINT64_MAX - 1));
	CHECK(!replay_accept(&r, far + 1));
	/* committing a too-old counter is harmless */
	session_replay_commit(&r, 3);
	CHECK(session_replay_check(&r, UINT64_MAX - 2));
}

/* ---- TAI64N ---- */

static void test_session_tai64n_encoding_and_order(void)
{
	static const uint8_t epoch[12] = { 0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
	static const uint8_t t1[12] = { 0x40, 0,    0,    0,    0x65, 0x53,
					0xf1, 0x00, 0x07, 0x5b, 0xcd, 0x15 };
	uint8_t a[12], b[12];

	session_tai64n(a, 0, 0);
	CHECK(memcmp(a, epoch, 12) == 0);
	/* 1700000000 = 0x6553f100, 123456789 ns = 0x075bcd15 */
	session_tai64n(a, 1700000000, 123456789);
	CHECK(memcmp(a, t1, 12) == 0);

	session_tai64n(a, 1700000000, 2);
	session_tai64n(b, 1700000000, 1);
	CHECK(session_tai64n_after(a, b));
	CHECK(!session_tai64n_after(b, a));
	CHECK(!session_tai64n_after(a, a));
	/* a later second wins over more nanoseconds */
	session_tai64n(a, 1700000001, 0);
	session_tai64n(b, 1700000000, 999999999);
	CHECK(session_tai64n_after(a, b));
	CHECK(!session_tai64n_after(b, a));
	/* byte carries across the seconds field */
	session_tai64n(a, 256, 0);
	session_tai64n(b, 255, 999999999);
	CHECK(session_tai64n_after(a, b));
	/* times before 1970 still order below */
	session_tai64n(a, -1, 0);
	session_tai64n(b, 0, 0);
	CHECK(session_tai64n_after(b, a));
}

/* ---- probe MAC ---- */

static void test_session_probe_mac(void)
{
	struct pair p;
	struct session_keys ik, rk;
	uint8_t key_i[SESSION_KEY_LEN], key_r[SESSION_KEY_LEN], other[SESSION_KEY_LEN];
	uint8_t msg[16], mac[16], hash[SESSION_HASH_LEN];

	pair_init(&p);
	CHECK_EQ_INT(session_hs_read_msg1(&p.rhs, p.msg1, p.msg1_len, NULL, 0), -ENOSPC);
	CHECK_EQ_INT(session_hs_read_msg1(&p.rhs, p.msg1, p.msg1_len, msg, 12), 12);
	pair_msg2(&p);
	CHECK_EQ_INT(session_hs_read_msg2(&p.ihs, p.msg2, p.msg2_len, NULL, 0), 0);
	session_hs_split(&p.ihs, &ik);
	session_hs_split(&p.rhs, &rk);

	session_probe_key(&ik, key_i);
	session_probe_key_from_hash(rk.hash, key_r);
	CHECK(memcmp(key_i, key_r, SESSION_KEY_LEN) == 0);
	/* not one of the transport keys */
	CHECK(memcmp(key_i, ik.send, SESSION_KEY_LEN) != 0);
	CHECK(memcmp(key_i, ik.recv, SESSION_KEY_LEN) != 0);

	fill(msg, sizeof(msg), 0x42);
	session_probe_mac(key_i, msg, sizeof(msg), mac);
	CHECK(session_probe_mac_ok(key_r, msg, sizeof(msg), mac));
	CHECK(!sodium_is_zero(mac, sizeof(mac)));
	/* any change to message, MAC or key is refused */
	msg[15] ^= 0x80;
	CHECK(!session_probe_mac_ok(key_r, msg, sizeof(msg), mac));
	msg[15] ^= 0x80;
	CHECK(!session_probe_mac_ok(key_r, msg, sizeof(msg) - 1, mac));
	mac[0] ^= 1;
	CHECK(!session_probe_mac_ok(key_r, msg, sizeof(msg), mac));
	mac[0] ^= 1;
	memcpy(hash, rk.hash, sizeof(hash));
	hash[63] ^= 1;
	session_probe_key_from_hash(hash, other);
	CHECK(memcmp(other, key_r, SESSION_KEY_LEN) != 0);
	CHECK(!session_probe_mac_ok(other, msg, sizeof(msg), mac));
	CHECK(session_probe_mac_ok(key_r, msg, sizeof(msg), mac));
}

/* Message 1 read in two steps gives what one read gives, and a forged payload fails only
 * in the second step (the first learns the claimed static key, nothing more). */
static void test_session_read_msg1_in_two_steps(void)
{
	uint8_t i_priv[32], r_priv[32], r_pub[32], e[32], msg[256], pt[32], ts[12] = { 1, 2, 3 };
	struct session_responder resp;
	struct session_hs ihs, whole, split;
	ssize_t len;

	randombytes_buf(i_priv, sizeof(i_priv));
	randombytes_buf(r_priv, sizeof(r_priv));
	randombytes_buf(e, sizeof(e));
	CHECK_EQ_INT(crypto_scalarmult_base(r_pub, r_priv), 0);
	CHECK_EQ_INT(session_hs_init(&ihs, true, (const uint8_t *)"p", 1, i_priv, r_pub), 0);
	len = session_hs_write_msg1(&ihs, e, ts, sizeof(ts), msg, sizeof(msg));
	CHECK(len > 0);
	if (len <= 0)
		return;
	CHECK_EQ_INT(session_responder_init(&resp, (const uint8_t *)"p", 1, r_priv), 0);
	session_hs_init_responder(&whole, &resp);
	session_hs_init_responder(&split, &resp);
	CHECK_EQ_INT(session_hs_read_msg1(&whole, msg, (size_t)len, pt, sizeof(pt)), 12);
	CHECK_EQ_INT(session_hs_read_msg1_static(&split, msg, (size_t)len), 0);
	CHECK(memcmp(split.rs, ihs.s_pub, 32) == 0);
	CHECK_EQ_INT(session_hs_read_msg1_payload(&split, msg, (size_t)len, pt, sizeof(pt)), 12);
	CHECK(memcmp(pt, ts, sizeof(ts)) == 0);
	CHECK(memcmp(&split, &whole, sizeof(split)) == 0);
	/* A flipped payload byte: the static key still reads, the payload does not, and the
	 * state stays as the first step left it. */
	msg[len - 1] ^= 1;
	session_hs_init_responder(&split, &resp);
	CHECK_EQ_INT(session_hs_read_msg1_static(&split, msg, (size_t)len), 0);
	memcpy(&whole, &split, sizeof(whole));
	CHECK_EQ_INT(session_hs_read_msg1_payload(&split, msg, (size_t)len, pt, sizeof(pt)),
		     -EBADMSG);
	CHECK(memcmp(&split, &whole, sizeof(split)) == 0);
	/* The payload step needs the static step first; the static step a fresh state. */
	session_hs_init_responder(&split, &resp);
	CHECK_EQ_INT(session_hs_read_msg1_payload(&split, msg, (size_t)len, pt, sizeof(pt)),
		     -EINVAL);
	CHECK_EQ_INT(session_hs_read_msg1_static(&whole, msg, (size_t)len), -EINVAL);
	session_responder_wipe(&resp);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	TAP_RUN(test_session_noise_vectors);
	TAP_RUN(test_session_handshake_with_timestamp);
	TAP_RUN(test_session_tampered_msg1_refused);
	TAP_RUN(test_session_tampered_msg2_refused);
	TAP_RUN(test_session_wrong_responder_key_refused);
	TAP_RUN(test_session_zero_dh_refused);
	TAP_RUN(test_session_small_buffers_and_roles);
	TAP_RUN(test_session_replay_in_order);
	TAP_RUN(test_session_replay_out_of_order_and_duplicates);
	TAP_RUN(test_session_replay_too_old_and_far_jump);
	TAP_RUN(test_session_tai64n_encoding_and_order);
	TAP_RUN(test_session_probe_mac);
	TAP_RUN(test_session_read_msg1_in_two_steps);
	return tap_done();
}

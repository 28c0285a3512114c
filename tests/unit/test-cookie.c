/* SPDX-License-Identifier: MIT */
/*
 * test-cookie - MAC1, MAC2 and the cookie reply, and the attacks they must stop: a sender
 * without the coordinator's key, a forged source, an old cookie, a tampered reply.
 */
#include "wgpunch/cookie.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "../tap.h"

/* An HS_INIT of version 2: 116 bytes of header, index and Noise, then mac1 and mac2. */
#define MSG_LEN (116 + COOKIE_MACS_LEN)

static uint8_t coord_pub[32], other_pub[32];

static struct addr v4(uint32_t ip, uint16_t port)
{
	struct addr a;

	memset(&a, 0, sizeof(a));
	a.in4.sin_family = AF_INET;
	a.in4.sin_addr.s_addr = htonl(ip);
	a.in4.sin_port = htons(port);
	return a;
}

static struct addr v6(const char *ip, uint16_t port)
{
	struct addr a;

	memset(&a, 0, sizeof(a));
	a.in6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, ip, &a.in6.sin6_addr);
	a.in6.sin6_port = htons(port);
	return a;
}

static void fill_msg(uint8_t msg[MSG_LEN], uint8_t seed)
{
	for (size_t i = 0; i < MSG_LEN; i++)
		msg[i] = (uint8_t)(seed + i * 7);
}

static void secret(uint8_t s[COOKIE_SECRET_LEN], uint8_t v)
{
	memset(s, v, COOKIE_SECRET_LEN);
}

/* Initiator and responder go through the cookie exchange once; returns the reply's result. */
static int exchange(struct cookie_initiator *ci, const struct cookie_responder *r,
		    const struct addr *src, uint64_t now_ms)
{
	uint8_t msg[MSG_LEN], nonce[COOKIE_NONCE_LEN], body[COOKIE_REPLY_BODY_LEN];

	fill_msg(msg, 1);
	randombytes_buf(nonce, sizeof(nonce));
	cookie_initiator_sign(ci, msg, sizeof(msg), now_ms);
	if (cookie_reply_make(r, msg + MSG_LEN - COOKIE_MACS_LEN, src, nonce, now_ms, body) !=
	    COOKIE_REPLY_BODY_LEN)
		return -1;
	return cookie_initiator_open_reply(ci, body, sizeof(body), now_ms);
}

/* The labels and constructions are the documented ones, computed here independently. */
static void test_cookie_keys_and_mac1_as_documented(void)
{
	struct cookie_keys k;
	uint8_t in[15 + 32], in2[17 + 32], want[32], msg[MSG_LEN], mac[16];

	cookie_keys_init(&k, coord_pub);
	memcpy(in, "wgpunch mac1 v2", 15);
	memcpy(in + 15, coord_pub, 32);
	crypto_generichash_blake2b(want, 32, in, sizeof(in), NULL, 0);
	CHECK(memcmp(k.mac1_key, want, 32) == 0);
	memcpy(in2, "wgpunch cookie v2", 17);
	memcpy(in2 + 17, coord_pub, 32);
	crypto_generichash_blake2b(want, 32, in2, sizeof(in2), NULL, 0);
	CHECK(memcmp(k.cookie_key, want, 32) == 0);

	fill_msg(msg, 9);
	cookie_mac1(&k, msg, 116, mac);
	crypto_generichash_blake2b(want, 16, msg, 116, k.mac1_key, 32);
	CHECK(memcmp(mac, want, 16) == 0);
	CHECK(cookie_mac1_ok(&k, msg, 116, mac));
	mac[15] ^= 1;
	CHECK(!cookie_mac1_ok(&k, msg, 116, mac));
	/* The sizes the wire proposal relies on: the reply is smaller than what it answers. */
	CHECK(4 + 4 + COOKIE_REPLY_BODY_LEN < MSG_LEN);
	CHECK_EQ_INT(MSG_LEN, 148);
}

static void test_cookie_full_exchange(void)
{
	struct cookie_responder r;
	struct cookie_initiator ci;
	struct addr src = v4(0xcb007101, 40000);
	uint8_t s[COOKIE_SECRET_LEN], msg[MSG_LEN], zero[16] = { 0 };

	secret(s, 1);
	cookie_responder_init(&r, coord_pub, s, 5000);
	cookie_initiator_init(&ci, coord_pub);
	fill_msg(msg, 3);
	CHECK_EQ_INT(cookie_initiator_sign(&ci, msg, sizeof(msg), 5000), 0);
	CHECK(memcmp(msg + MSG_LEN - 16, zero, 16) == 0); /* no cookie yet: mac2 is zeros */
	CHECK_EQ_INT(cookie_check(&r, msg, sizeof(msg), &src, 5000), COOKIE_MAC1_ONLY);
	CHECK_EQ_INT(exchange(&ci, &r, &src, 5010), 0);
	CHECK(cookie_initiator_has_cookie(&ci, 5020));
	fill_msg(msg, 4);
	cookie_initiator_sign(&ci, msg, sizeof(msg), 5020);
	CHECK_EQ_INT(cookie_check(&r, msg, sizeof(msg), &src, 5030), COOKIE_MAC2_OK);
	CHECK_EQ_INT(cookie_initiator_sign(&ci, msg, COOKIE_MACS_LEN, 0), -EINVAL);
	CHECK_EQ_INT(cookie_check(&r, msg, COOKIE_MACS_LEN, &src, 0), COOKIE_BAD_MAC1);
	cookie_responder_wipe(&r);
}

/* Attack: junk without the coordinator's key, or with another coordinator's. */
static void test_cookie_mac1_refuses_junk(void)
{
	struct cookie_responder r;
	struct cookie_initiator ci, wrong;
	struct addr src = v4(0xcb007101, 40000);
	uint8_t s[COOKIE_SECRET_LEN], msg[MSG_LEN];

	secret(s, 2);
	cookie_responder_init(&r, coord_pub, s, 0);
	cookie_initiator_init(&ci, coord_pub);
	cookie_initiator_init(&wrong, other_pub);
	fill_msg(msg, 5);
	CHECK_EQ_INT(cookie_check(&r, msg, sizeof(msg), &src, 0), COOKIE_BAD_MAC1);
	cookie_initiator_sign(&wrong, msg, sizeof(msg), 0);
	CHECK_EQ_INT(cookie_check(&r, msg, sizeof(msg), &src, 0), COOKIE_BAD_MAC1);
	/* Every byte before mac1 is covered. */
	for (size_t i = 0; i < MSG_LEN - 16; i++) {
		cookie_initiator_sign(&ci, msg, sizeof(msg), 0);
		msg[i] ^= 0x80;
		CHECK(cookie_check(&r, msg, sizeof(msg), &src, 0) == COOKIE_BAD_MAC1);
	}
	cookie_responder_wipe(&r);
}

/* Attack: a forged source. A cookie works only for the address and port it was sent to. */
static void test_cookie_forged_source(void)
{
	struct cookie_responder r;
	struct cookie_initiator ci;
	struct addr src = v4(0xcb007101, 40000);
	struct addr others[] = { v4(0xcb007102, 40000), v4(0xcb007101, 40001),
				 v6("2001:db8::cb00:7101", 40000),
				 v6("::ffff:203.0.113.2", 40000) };
	struct addr mapped = v6("::ffff:203.0.113.1", 40000), none;
	uint8_t s[COOKIE_SECRET_LEN], msg[MSG_LEN], nonce[COOKIE_NONCE_LEN] = { 0 };
	uint8_t body[COOKIE_REPLY_BODY_LEN];

	memset(&none, 0, sizeof(none));
	secret(s, 3);
	cookie_responder_init(&r, coord_pub, s, 0);
	cookie_initiator_init(&ci, coord_pub);
	CHECK_EQ_INT(exchange(&ci, &r, &src, 0), 0);
	fill_msg(msg, 6);
	cookie_initiator_sign(&ci, msg, sizeof(msg), 10);
	CHECK_EQ_INT(cookie_check(&r, msg, sizeof(msg), &src, 10), COOKIE_MAC2_OK);
	for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
		CHECK(cookie_check(&r, msg, sizeof(msg), &others[i], 10) == COOKIE_MAC1_ONLY);
	/* The same IPv4 host through a dual-stack socket. */
	CHECK_EQ_INT(cookie_check(&r, msg, sizeof(msg), &mapped, 10), COOKIE_MAC2_OK);
	CHECK_EQ_INT(cookie_check(&r, msg, sizeof(msg), &none, 10), COOKIE_MAC1_ONLY);
	CHECK_EQ_INT(cookie_reply_make(&r, msg, &none, nonce, 10, body), -EAFNOSUPPORT);
	/* A message altered after signing, even with mac1 redone (the key is public), fails
	 * mac2: it covers the message and mac1. */
	msg[20] ^= 1;
	cookie_mac1(&r.keys, msg, MSG_LEN - 32, msg + MSG_LEN - 32);
	CHECK_EQ_INT(cookie_check(&r, msg, sizeof(msg), &src, 10), COOKIE_MAC1_ONLY);
	cookie_responder_wipe(&r);
}

/* Attack: an old cookie. It survives one rotation, not two, and not 2 x 120 s however the
 * responder rotates. */
static void test_cookie_replay_after_rotations(void)
{
	struct cookie_responder r;
	struct cookie_initiator ci;
	struct addr src = v6("2001:db8:5::1", 51820);
	uint8_t s[COOKIE_SECRET_LEN], msg[MSG_LEN] = { 0 }, cookie[COOKIE_LEN];
	uint8_t nonce[COOKIE_NONCE_LEN] = { 0 }, body[COOKIE_REPLY_BODY_LEN];
	const uint64_t t0 = 1000;

	secret(s, 4);
	cookie_responder_init(&r, coord_pub, s, t0);
	cookie_initiator_init(&ci, coord_pub);
	CHECK(!cookie_responder_due(&r, t0 + COOKIE_ROTATE_MS - 1));
	CHECK(cookie_responder_due(&r, t0 + COOKIE_ROTATE_MS));
	CHECK_EQ_INT(exchange(&ci, &r, &src, t0 + COOKIE_ROTATE_MS - 1), 0);
	CHECK_EQ_INT(cookie_reply_make(&r, msg, &src, nonce, t0 + COOKIE_ROTATE_MS, body), -ESTALE);
	CHECK_EQ_INT(cookie_make(&r, &src, t0 + COOKIE_ROTATE_MS, cookie), -ESTALE);
	fill_msg(msg, 7);
	cookie_initiator_sign(&ci, msg, sizeof(msg), t0 + COOKIE_ROTATE_MS - 1);

	secret(s, 5);
	cookie_responder_rotate(&r, s, t0 + COOKIE_ROTATE_MS);
	CHECK_EQ_INT(cookie_check(&r, msg, sizeof(msg), &src, t0 + COOKIE_ROTATE_MS),
		     COOKIE_MAC2_OK);
	/* At least COOKIE_ROTATE_MS after it was made. */
	CHECK_EQ_INT(cookie_check(&r, msg, sizeof(msg), &src, t0 + 2 * COOKIE_ROTATE_MS - 1),
		     COOKIE_MAC2_OK);
	/* Without a second rotation the first secret still dies at twice the period. */
	CHECK_EQ_INT(cookie_check(&r, msg, sizeof(msg), &src, t0 + 2 * COOKIE_ROTATE_MS),
		     COOKIE_MAC1_ONLY);
	/* After a second rotation, at any time: refused. */
	secret(s, 6);
	cookie_responder_rotate(&r, s, t0 + COOKIE_ROTATE_MS + 5);
	CHECK_EQ_INT(cookie_check(&r, msg, sizeof(msg), &src, t0 + COOKIE_ROTATE_MS + 5),
		     COOKIE_MAC1_ONLY);
	cookie_responder_wipe(&r);
}

/* The initiator stops using a cookie before the responder could refuse it. */
static void test_cookie_initiator_expiry(void)
{
	struct cookie_responder r;
	struct cookie_initiator ci;
	struct addr src = v4(0xc6120001, 1);
	uint8_t s[COOKIE_SECRET_LEN], msg[MSG_LEN], zero[16] = { 0 };
	const uint64_t rx = 77;

	secret(s, 7);
	cookie_responder_init(&r, coord_pub, s, rx);
	cookie_initiator_init(&ci, coord_pub);
	CHECK(!cookie_initiator_has_cookie(&ci, rx));
	CHECK_EQ_INT(exchange(&ci, &r, &src, rx), 0);
	CHECK(cookie_initiator_has_cookie(&ci, rx + COOKIE_ROTATE_MS - COOKIE_MARGIN_MS - 1));
	CHECK(!cookie_initiator_has_cookie(&ci, rx + COOKIE_ROTATE_MS - COOKIE_MARGIN_MS));
	fill_msg(msg, 8);
	cookie_initiator_sign(&ci, msg, sizeof(msg), rx + COOKIE_ROTATE_MS);
	CHECK(memcmp(msg + MSG_LEN - 16, zero, 16) == 0);
	cookie_responder_wipe(&r);
}

/* Attack: a tampered or misdirected cookie reply never installs a cookie. */
static void test_cookie_tampered_reply(void)
{
	struct cookie_responder r, other;
	struct cookie_initiator ci;
	struct addr src = v4(0xcb007109, 9);
	uint8_t s[COOKIE_SECRET_LEN], msg[MSG_LEN], msg2[MSG_LEN], nonce[COOKIE_NONCE_LEN];
	uint8_t body[COOKIE_REPLY_BODY_LEN], bad[COOKIE_REPLY_BODY_LEN];

	secret(s, 8);
	cookie_responder_init(&r, coord_pub, s, 0);
	cookie_responder_init(&other, other_pub, s, 0);
	cookie_initiator_init(&ci, coord_pub);
	randombytes_buf(nonce, sizeof(nonce));
	/* No message sent yet: nothing to answer. */
	fill_msg(msg, 10);
	cookie_mac1(&r.keys, msg, MSG_LEN - 32, msg + MSG_LEN - 32);
	cookie_reply_make(&r, msg + MSG_LEN - 32, &src, nonce, 0, body);
	CHECK_EQ_INT(cookie_initiator_open_reply(&ci, body, sizeof(body), 0), -EBADMSG);

	cookie_initiator_sign(&ci, msg, sizeof(msg), 0);
	CHECK_EQ_INT(cookie_reply_make(&r, msg + MSG_LEN - 32, &src, nonce, 0, body),
		     COOKIE_REPLY_BODY_LEN);
	for (size_t i = 0; i < sizeof(body); i++) {
		memcpy(bad, body, sizeof(bad));
		bad[i] ^= 0x01;
		CHECK(cookie_initiator_open_reply(&ci, bad, sizeof(bad), 0) == -EBADMSG);
	}
	CHECK_EQ_INT(cookie_initiator_open_reply(&ci, body, sizeof(body) - 1, 0), -EBADMSG);
	CHECK(!cookie_initiator_has_cookie(&ci, 0));
	/* From another coordinator (another key), or for another message (another mac1). */
	cookie_reply_make(&other, msg + MSG_LEN - 32, &src, nonce, 0, bad);
	CHECK_EQ_INT(cookie_initiator_open_reply(&ci, bad, sizeof(bad), 0), -EBADMSG);
	fill_msg(msg2, 11);
	cookie_mac1(&r.keys, msg2, MSG_LEN - 32, msg2 + MSG_LEN - 32);
	cookie_reply_make(&r, msg2 + MSG_LEN - 32, &src, nonce, 0, bad);
	CHECK_EQ_INT(cookie_initiator_open_reply(&ci, bad, sizeof(bad), 0), -EBADMSG);
	CHECK(!cookie_initiator_has_cookie(&ci, 0));
	/* The genuine one still opens after all that, and only once. */
	CHECK_EQ_INT(cookie_initiator_open_reply(&ci, body, sizeof(body), 0), 0);
	CHECK(cookie_initiator_has_cookie(&ci, 0));
	CHECK_EQ_INT(cookie_initiator_open_reply(&ci, body, sizeof(body), 5), -EBADMSG);
	CHECK_EQ_INT(ci.cookie_rx_ms, 0); /* a replayed reply does not make the cookie younger */
	cookie_responder_wipe(&r);
	cookie_responder_wipe(&other);
}

/* Only differences of now_ms matter: the same story at a far origin gives the same answers. */
static void test_cookie_origin_irrelevant(void)
{
	const uint64_t origins[] = { 0, (uint64_t)1 << 40, (uint64_t)1 << 62 };

	for (size_t o = 0; o < sizeof(origins) / sizeof(origins[0]); o++) {
		const uint64_t t = origins[o];
		struct cookie_responder r;
		struct cookie_initiator ci;
		struct addr src = v4(0xcb007101, 2);
		uint8_t s[COOKIE_SECRET_LEN], msg[MSG_LEN];

		secret(s, 9);
		cookie_responder_init(&r, coord_pub, s, t);
		cookie_initiator_init(&ci, coord_pub);
		CHECK_EQ_INT(exchange(&ci, &r, &src, t + 1), 0);
		fill_msg(msg, 12);
		cookie_initiator_sign(&ci, msg, sizeof(msg), t + 2);
		CHECK_EQ_INT(cookie_check(&r, msg, sizeof(msg), &src, t + 3), COOKIE_MAC2_OK);
		CHECK_EQ_INT(cookie_check(&r, msg, sizeof(msg), &src, t + 2 * COOKIE_ROTATE_MS),
			     COOKIE_MAC1_ONLY);
		cookie_responder_wipe(&r);
	}
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	memset(coord_pub, 0xc0, sizeof(coord_pub));
	memset(other_pub, 0x0c, sizeof(other_pub));
	TAP_RUN(test_cookie_keys_and_mac1_as_documented);
	TAP_RUN(test_cookie_full_exchange);
	TAP_RUN(test_cookie_mac1_refuses_junk);
	TAP_RUN(test_cookie_forged_source);
	TAP_RUN(test_cookie_replay_after_rotations);
	TAP_RUN(test_cookie_initiator_expiry);
	TAP_RUN(test_cookie_tampered_reply);
	TAP_RUN(test_cookie_origin_irrelevant);
	return tap_done();
}

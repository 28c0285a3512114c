/* SPDX-License-Identifier: MIT */
/*
 * test-hs-budget - the handshake budget from measured costs, the load decision, and a
 * simulated flood: 100,000 junk HS_INITs a second (good mac1, from forged sources, or with the
 * victim's own source address) never keep a node that follows the cookie protocol out for
 * more than 2 s.
 */
#include "wgpunch/hs_budget.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "wgpunch/cookie.h"
#include "wgpunch/ratelimit.h"

#include "../tap.h"

#define MSG_LEN (116 + COOKIE_MACS_LEN)

static void params(struct hs_budget_params *p, uint64_t hs_ns, uint64_t cookie_ns)
{
	struct hs_budget_input in;

	hs_budget_input_default(&in, hs_ns, cookie_ns);
	CHECK_EQ_INT(hs_budget_params_from_input(p, &in), 0);
}

static void test_hs_budget_params_follow_cost(void)
{
	struct hs_budget_input in;
	struct hs_budget_params p;

	/* 200 us a handshake on half a core: today's constant 2,500 a second. */
	hs_budget_input_default(&in, 200000, 2000);
	CHECK_EQ_INT(hs_budget_params_from_input(&p, &in), 0);
	CHECK_EQ_INT(p.all.rate_per_s, 2500);
	CHECK_EQ_INT(p.all.burst, 2500);
	CHECK_EQ_INT(p.reserve, 1875);
	CHECK_EQ_INT(p.cookie.rate_per_s, 125000);
	CHECK_EQ_INT(p.hold_ms, 1000);
	/* A machine four times faster gets four times the budget. */
	in.hs_cost_ns = 50000;
	CHECK_EQ_INT(hs_budget_params_from_input(&p, &in), 0);
	CHECK_EQ_INT(p.all.rate_per_s, 10000);
	in.burst_ms = 250;
	CHECK_EQ_INT(hs_budget_params_from_input(&p, &in), 0);
	CHECK_EQ_INT(p.all.burst, 2500);
	/* Absurdly slow: still one a second, never zero. */
	in.hs_cost_ns = 10ull * 1000 * 1000 * 1000;
	CHECK_EQ_INT(hs_budget_params_from_input(&p, &in), 0);
	CHECK_EQ_INT(p.all.rate_per_s, 1);
	CHECK_EQ_INT(p.all.burst, 1);
	/* Refused inputs. */
	hs_budget_input_default(&in, 0, 1);
	CHECK_EQ_INT(hs_budget_params_from_input(&p, &in), -EINVAL);
	hs_budget_input_default(&in, 1, 1);
	in.cpu_permille = 1001;
	CHECK_EQ_INT(hs_budget_params_from_input(&p, &in), -EINVAL);
	hs_budget_input_default(&in, 1, 1);
	in.burst_ms = 0;
	CHECK_EQ_INT(hs_budget_params_from_input(&p, &in), -EINVAL);
}

/* Unproven handshakes take only the top of the burst; then the coordinator is under load. */
static void test_hs_budget_unproven_take_only_the_top(void)
{
	struct hs_budget_params p;
	struct hs_budget b;
	int processed = 0, cookies = 0;

	params(&p, 200000, 2000); /* 2500/s, reserve 1875 */
	hs_budget_init(&b, &p, 0);
	CHECK(!hs_budget_under_load(&b, 0));
	for (int i = 0; i < 5000; i++) {
		enum hs_action a = hs_budget_decide(&b, false, 0);

		processed += a == HS_PROCESS;
		cookies += a == HS_SEND_COOKIE;
	}
	CHECK_EQ_INT(processed, 2500 - 1875);
	CHECK_EQ_INT(cookies, 5000 - processed);
	CHECK(hs_budget_under_load(&b, 0));
	CHECK(hs_budget_under_load(&b, 999));
	CHECK_EQ_INT(b.ctr.hs_load_episodes, 1);
	/* The reserve is there for proven handshakes, all of it. */
	for (int i = 0; i < 1875; i++)
		CHECK(hs_budget_decide(&b, true, 0) == HS_PROCESS);
	CHECK_EQ_INT(hs_budget_decide(&b, true, 0), HS_DROP);
	CHECK_EQ_INT(b.ctr.hs_dropped_budget, 1);
	/* The load ends hold_ms after the last sign of pressure; a full bucket then serves
	 * unproven handshakes directly again. */
	CHECK(hs_budget_under_load(&b, 999));
	CHECK(!hs_budget_under_load(&b, 1000));
	CHECK_EQ_INT(hs_budget_decide(&b, false, 1000), HS_PROCESS);
}

/* Cookie replies have a budget of their own; beyond it unproven handshakes are dropped. */
static void test_hs_budget_cookie_budget(void)
{
	struct hs_budget_params p;
	struct hs_budget b;
	int cookies = 0, dropped = 0;

	params(&p, 200000, 2000000); /* 125 cookie replies a second */
	CHECK_EQ_INT(p.cookie.rate_per_s, 125);
	hs_budget_init(&b, &p, 0);
	for (int i = 0; i < 2000; i++) {
		enum hs_action a = hs_budget_decide(&b, false, 0);

		cookies += a == HS_SEND_COOKIE;
		dropped += a == HS_DROP;
	}
	CHECK_EQ_INT(cookies, 125);
	CHECK_EQ_INT(dropped, 2000 - 625 - 125);
	CHECK_EQ_INT(b.ctr.hs_dropped_cookie_budget, dropped);
	CHECK_EQ_INT(hs_budget_decide(&b, false, 8), HS_SEND_COOKIE); /* 8 ms: one more */
	/* A cookie reply decided after Noise draws from the same budget. */
	CHECK(!hs_budget_take_cookie(&b, 8));
	CHECK(hs_budget_take_cookie(&b, 16));
	CHECK_EQ_INT(b.ctr.hs_cookie_replies, 127);
}

/* Only differences of now_ms matter: the same traffic at any origin gets the same answers. */
static void test_hs_budget_origin_irrelevant(void)
{
	const uint64_t origins[] = { 0, 987654321, (uint64_t)1 << 62 };
	struct hs_budget_params p;
	uint64_t first = 0;

	params(&p, 200000, 200000); /* 2,500 handshakes and 1,250 cookie replies a second */
	for (size_t o = 0; o < sizeof(origins) / sizeof(origins[0]); o++) {
		struct hs_budget b;
		uint64_t pattern = 0;

		hs_budget_init(&b, &p, origins[o]);
		for (uint64_t i = 0; i < 30000; i++)
			pattern =
				pattern * 3 + hs_budget_decide(&b, i % 7 == 0, origins[o] + i / 10);
		if (o == 0)
			first = pattern;
		CHECK(pattern == first);
		CHECK(b.ctr.hs_load_episodes >= 1);
	}
}

/* ---- the flood simulation ---- */

struct sim {
	struct cookie_responder r;
	struct ratelimit per_source;
	struct hs_budget b;
	struct cookie_initiator ci;
	struct addr legit_src;
	uint64_t send_at_ms;   /* when the node sends its next HS_INIT; UINT64_MAX: waits */
	uint64_t sent_ms;      /* when it sent the one in flight */
	uint64_t arrive_at_ms; /* when that reaches the coordinator; UINT64_MAX: none */
	uint8_t msg[116 + COOKIE_MACS_LEN];
	uint64_t reply_at_ms; /* when a cookie reply reaches the node; UINT64_MAX: none */
	uint8_t reply[COOKIE_REPLY_BODY_LEN];
	uint64_t processed_at_ms; /* UINT64_MAX until the node's handshake is processed */
};

#define ONE_WAY_MS 15    /* half the round trip */
#define HS_RETRY_MS 1000 /* the node's retry after silence (node_session.c) */
#define JUNK_PER_MS 100  /* 100,000 a second */

static struct addr v4(uint32_t ip, uint16_t port)
{
	struct addr a;

	memset(&a, 0, sizeof(a));
	a.in4.sin_family = AF_INET;
	a.in4.sin_addr.s_addr = htonl(ip);
	a.in4.sin_port = htons(port);
	return a;
}

/* What the coordinator does with one HS_INIT, as the integration is meant to do it. */
static enum hs_action coord_on_hs_init(struct sim *s, const uint8_t *msg, const struct addr *src,
				       uint64_t now, uint8_t reply[COOKIE_REPLY_BODY_LEN])
{
	uint8_t rnd[COOKIE_SECRET_LEN], nonce[COOKIE_NONCE_LEN];
	enum cookie_verdict v;
	enum hs_action a;

	if (cookie_responder_due(&s->r, now)) {
		randombytes_buf(rnd, sizeof(rnd));
		cookie_responder_rotate(&s->r, rnd, now);
	}
	v = cookie_check(&s->r, msg, MSG_LEN, src, now);
	if (v == COOKIE_BAD_MAC1)
		return HS_DROP;
	/* Only a proven source is charged: a forged one cannot spend a victim's bucket. */
	if (v == COOKIE_MAC2_OK && !ratelimit_allow(&s->per_source, src, now))
		return HS_DROP;
	a = hs_budget_decide(&s->b, v == COOKIE_MAC2_OK, now);
	if (a == HS_SEND_COOKIE && reply) {
		randombytes_buf(nonce, sizeof(nonce));
		if (cookie_reply_make(&s->r, msg + MSG_LEN - COOKIE_MACS_LEN, src, nonce, now,
				      reply) != COOKIE_REPLY_BODY_LEN)
			return HS_DROP;
	}
	return a;
}

/* The node's and the coordinator's events about the node's handshake at time t. */
static void legit_events(struct sim *s, uint64_t t)
{
	if (s->reply_at_ms == t) {
		s->reply_at_ms = UINT64_MAX;
		/* A cookie reply that opens: send again at once, now with mac2. */
		s->send_at_ms =
			cookie_initiator_open_reply(&s->ci, s->reply, sizeof(s->reply), t) == 0
				? t
				: s->sent_ms + HS_RETRY_MS;
	}
	if (s->send_at_ms == t) {
		randombytes_buf(s->msg, MSG_LEN - COOKIE_MACS_LEN); /* a fresh HS_INIT each time */
		cookie_initiator_sign(&s->ci, s->msg, sizeof(s->msg), t);
		s->sent_ms = t;
		s->arrive_at_ms = t + ONE_WAY_MS;
		s->send_at_ms = UINT64_MAX;
	}
	if (s->arrive_at_ms == t) {
		s->arrive_at_ms = UINT64_MAX;
		switch (coord_on_hs_init(s, s->msg, &s->legit_src, t, s->reply)) {
		case HS_PROCESS:
			s->processed_at_ms = t;
			break;
		case HS_SEND_COOKIE:
			s->reply_at_ms = t + ONE_WAY_MS;
			break;
		case HS_DROP:
			s->send_at_ms = s->sent_ms + HS_RETRY_MS; /* silence: the node retries */
			break;
		}
	}
}

/*
 * Runs the flood from t = 0 for 2.5 s; the node starts at node_start_ms, at a position
 * `slot` among each millisecond's junk. targeted: the junk carries the node's own source
 * address (and a random mac2), and goes through the real checks.
 */
static uint64_t simulate(uint64_t node_start_ms, unsigned slot, bool targeted,
			 const struct hs_budget_params *p, uint64_t *junk_processed)
{
	static const uint8_t coord_pub[32] = { 1, 2, 3 };
	uint8_t key[RATELIMIT_KEY_LEN], rnd[COOKIE_SECRET_LEN], junk[MSG_LEN];
	struct ratelimit_params rp;
	struct cookie_keys k;
	struct sim s;

	memset(&s, 0, sizeof(s));
	randombytes_buf(key, sizeof(key));
	randombytes_buf(rnd, sizeof(rnd));
	cookie_responder_init(&s.r, coord_pub, rnd, 0);
	cookie_initiator_init(&s.ci, coord_pub);
	cookie_keys_init(&k, coord_pub);
	ratelimit_params_default(&rp, 20, 128);
	CHECK_EQ_INT(ratelimit_init(&s.per_source, 4096, &rp, key), 0);
	hs_budget_init(&s.b, p, 0);
	s.legit_src = v4(0xcb007101, 51820);
	s.send_at_ms = node_start_ms;
	s.arrive_at_ms = UINT64_MAX;
	s.reply_at_ms = UINT64_MAX;
	s.processed_at_ms = UINT64_MAX;

	for (uint64_t t = 0; t < 2500 && s.processed_at_ms == UINT64_MAX; t++) {
		for (unsigned j = 0; j <= JUNK_PER_MS; j++) {
			if (j == slot) {
				/* The node's events land at this position of the millisecond. */
				legit_events(&s, t);
				continue;
			}
			if (targeted) {
				randombytes_buf(junk, sizeof(junk));
				cookie_mac1(&k, junk, MSG_LEN - COOKIE_MACS_LEN,
					    junk + MSG_LEN - COOKIE_MACS_LEN);
				coord_on_hs_init(&s, junk, &s.legit_src, t, NULL);
			} else {
				/* Random forged sources: they can only be unproven. */
				hs_budget_decide(&s.b, false, t);
			}
		}
	}
	*junk_processed = s.b.ctr.hs_processed_unproven;
	cookie_responder_wipe(&s.r);
	ratelimit_destroy(&s.per_source);
	return s.processed_at_ms;
}

/*
 * Attack: 100,000 mac1-valid junk HS_INITs a second from random forged sources. The node,
 * whenever it starts during the flood and wherever its datagram falls among the junk, is
 * processed within 2 s of starting (one cookie round trip, in fact), and the junk gets no
 * more than the top of the burst once per hold period.
 */
static void test_hs_budget_junk_cannot_starve_proven(void)
{
	static const uint64_t starts[] = { 0, 1, 7, 100, 999, 1000, 1001, 1500 };
	struct hs_budget_params p;
	uint64_t worst = 0, junk, junk_max = 0;

	params(&p, 150000, 1500); /* 3,333 handshakes and 166,666 cookie replies a second */
	for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]); i++) {
		for (unsigned slot = 0; slot <= JUNK_PER_MS; slot += 25) {
			uint64_t at = simulate(starts[i], slot, false, &p, &junk);

			CHECK(at != UINT64_MAX);
			if (at != UINT64_MAX && at - starts[i] > worst)
				worst = at - starts[i];
			CHECK(junk <= (uint64_t)(p.all.burst - p.reserve) * 3 + 3333 / 10);
			junk_max = junk > junk_max ? junk : junk_max;
		}
	}
	CHECK(worst <= 2000);
	printf("# worst time to a processed handshake under 100k junk/s: %llu ms; "
	       "junk processed at most %llu (the burst's top is %u, once a hold period)\n",
	       (unsigned long long)worst, (unsigned long long)junk_max, p.all.burst - p.reserve);
}

/*
 * Attack: the flood carries the victim's own source address (an off-path attacker cannot
 * get its cookie, so its mac2 is junk). Nothing is charged to the victim's source, and the
 * victim is still processed within 2 s.
 */
static void test_hs_budget_targeted_flood(void)
{
	struct hs_budget_params p;
	uint64_t at, junk;

	params(&p, 150000, 1500);
	at = simulate(200, 50, true, &p, &junk);
	CHECK(at != UINT64_MAX);
	CHECK(at <= 200 + 2000);
	printf("# targeted flood: processed after %llu ms\n", (unsigned long long)(at - 200));
}

/* Proven handshakes from one source that does receive (a key holder flooding from its own
 * address) stop at its per-source bucket and leave the budget for others. */
static void test_hs_budget_proven_flooder_is_per_source(void)
{
	static const uint8_t coord_pub[32] = { 9 };
	struct hs_budget_params p;
	struct ratelimit_params rp;
	struct sim s;
	struct addr flooder = v4(0xc6336401, 4000);
	uint8_t key[RATELIMIT_KEY_LEN] = { 0 }, rnd[COOKIE_SECRET_LEN] = { 0 }, msg[MSG_LEN];
	uint8_t body[COOKIE_REPLY_BODY_LEN], nonce[COOKIE_NONCE_LEN] = { 0 };
	struct cookie_initiator fci;
	int processed = 0;

	memset(&s, 0, sizeof(s));
	params(&p, 150000, 1500);
	cookie_responder_init(&s.r, coord_pub, rnd, 0);
	ratelimit_params_default(&rp, 20, 128);
	CHECK_EQ_INT(ratelimit_init(&s.per_source, 64, &rp, key), 0);
	hs_budget_init(&s.b, &p, 0);
	cookie_initiator_init(&fci, coord_pub);
	memset(msg, 0x5a, sizeof(msg));
	cookie_initiator_sign(&fci, msg, sizeof(msg), 0);
	cookie_reply_make(&s.r, msg + MSG_LEN - COOKIE_MACS_LEN, &flooder, nonce, 0, body);
	CHECK_EQ_INT(cookie_initiator_open_reply(&fci, body, sizeof(body), 0), 0);
	cookie_initiator_sign(&fci, msg, sizeof(msg), 0);
	for (uint64_t t = 0; t < 1000; t++)
		for (int i = 0; i < 10; i++) /* 10,000 a second, all with a good mac2 */
			processed += coord_on_hs_init(&s, msg, &flooder, t, NULL) == HS_PROCESS;
	CHECK(processed <= 128 + 20);
	/* The rest of the budget is still there for another proven source. */
	CHECK(bucket_tokens(&s.b.all, &s.b.p.all, 1000) > 3000);
	cookie_responder_wipe(&s.r);
	ratelimit_destroy(&s.per_source);
}

/* ---- measuring ---- */

static uint64_t fake_clock(void *arg)
{
	uint64_t *t = arg;

	return *t;
}

static void fake_work(void *arg)
{
	uint64_t *t = arg;
	static unsigned calls;

	/* 100 ns a call, except one slow batch (the machine was busy): the median ignores it. */
	*t += ++calls <= 20 ? 5000 : 100;
}

static void test_hs_budget_measure(void)
{
	uint64_t t = 0, ns = 0;

	CHECK_EQ_INT(hs_budget_measure(fake_work, &t, 100, fake_clock, &t, &ns), 0);
	CHECK_EQ_INT(ns, 100);
	CHECK_EQ_INT(hs_budget_measure(fake_work, &t, 4, fake_clock, &t, &ns), -EINVAL);
	/* The real ones work and give plausible numbers (not a benchmark: see tests/bench). */
	CHECK_EQ_INT(hs_budget_measure_responder(10, fake_clock, &t, &ns), 0);
	CHECK_EQ_INT(ns, 1); /* the fake clock stands still: at least 1 ns */
	CHECK_EQ_INT(hs_budget_measure_cookie(10, fake_clock, &t, &ns), 0);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	TAP_RUN(test_hs_budget_params_follow_cost);
	TAP_RUN(test_hs_budget_unproven_take_only_the_top);
	TAP_RUN(test_hs_budget_cookie_budget);
	TAP_RUN(test_hs_budget_origin_irrelevant);
	TAP_RUN(test_hs_budget_junk_cannot_starve_proven);
	TAP_RUN(test_hs_budget_targeted_flood);
	TAP_RUN(test_hs_budget_proven_flooder_is_per_source);
	TAP_RUN(test_hs_budget_measure);
	return tap_done();
}

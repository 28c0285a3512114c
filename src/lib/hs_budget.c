// SPDX-License-Identifier: MIT
/*
 * hs_budget - the handshake budget from measured costs, and the per-HS_INIT decision
 * (policy in the header).
 */
#include "wgpunch/hs_budget.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "wgpunch/cookie.h"
#include "wgpunch/proto.h"
#include "wgpunch/session.h"

#define X(name, help) COUNTER_DEF(hs_budget_counters, name, help)
COUNTER_TABLE_DEFINE(hs_budget_counters, HS_BUDGET_COUNTERS(X));
#undef X

#define MEASURE_BATCHES 5

void hs_budget_input_default(struct hs_budget_input *in, uint64_t hs_cost_ns,
			     uint64_t cookie_cost_ns)
{
	memset(in, 0, sizeof(*in));
	in->hs_cost_ns = hs_cost_ns;
	in->cookie_cost_ns = cookie_cost_ns;
	in->cpu_permille = 500;
	in->cookie_cpu_permille = 250;
	in->unproven_permille = 250;
	in->burst_ms = 1000;
	in->hold_ms = 1000;
}

/* permille of a core spent on jobs of cost_ns each: jobs a second, clamped to [1, 2^32). */
static uint32_t rate_of(uint32_t permille, uint64_t cost_ns)
{
	uint64_t r = (uint64_t)permille * 1000000u / cost_ns;

	if (r < 1)
		return 1;
	return r > UINT32_MAX ? UINT32_MAX : (uint32_t)r;
}

static uint32_t burst_of(uint32_t rate, uint32_t burst_ms)
{
	uint64_t b = (uint64_t)rate * burst_ms / 1000;

	if (b < 1)
		return 1;
	return b > UINT32_MAX ? UINT32_MAX : (uint32_t)b;
}

int hs_budget_params_from_input(struct hs_budget_params *p, const struct hs_budget_input *in)
{
	memset(p, 0, sizeof(*p));
	if (!in->hs_cost_ns || !in->cookie_cost_ns || !in->cpu_permille ||
	    in->cpu_permille > 1000 || !in->cookie_cpu_permille || in->cookie_cpu_permille > 1000 ||
	    in->unproven_permille > 1000 || !in->burst_ms)
		return -EINVAL;
	p->all.rate_per_s = rate_of(in->cpu_permille, in->hs_cost_ns);
	p->all.burst = burst_of(p->all.rate_per_s, in->burst_ms);
	p->reserve = (uint32_t)((uint64_t)p->all.burst * (1000 - in->unproven_permille) / 1000);
	p->cookie.rate_per_s = rate_of(in->cookie_cpu_permille, in->cookie_cost_ns);
	p->cookie.burst = burst_of(p->cookie.rate_per_s, in->burst_ms);
	p->hold_ms = in->hold_ms;
	return 0;
}

void hs_budget_init(struct hs_budget *b, const struct hs_budget_params *p, uint64_t now_ms)
{
	memset(b, 0, sizeof(*b));
	b->p = *p;
	bucket_init(&b->all, &b->p.all, now_ms);
	bucket_init(&b->cookie, &b->p.cookie, now_ms);
}

bool hs_budget_under_load(const struct hs_budget *b, uint64_t now_ms)
{
	return b->loaded && now_ms < b->load_until_ms;
}

static void set_load(struct hs_budget *b, uint64_t now_ms)
{
	if (!hs_budget_under_load(b, now_ms))
		b->ctr.hs_load_episodes++;
	b->loaded = true;
	b->load_until_ms = now_ms + b->p.hold_ms;
}

bool hs_budget_take_cookie(struct hs_budget *b, uint64_t now_ms)
{
	if (bucket_take(&b->cookie, &b->p.cookie, now_ms)) {
		b->ctr.hs_cookie_replies++;
		return true;
	}
	b->ctr.hs_dropped_cookie_budget++;
	return false;
}

enum hs_action hs_budget_decide(struct hs_budget *b, bool mac2_valid, uint64_t now_ms)
{
	if (mac2_valid) {
		if (bucket_take(&b->all, &b->p.all, now_ms)) {
			b->ctr.hs_processed_proven++;
			return HS_PROCESS;
		}
		set_load(b, now_ms);
		b->ctr.hs_dropped_budget++;
		return HS_DROP;
	}
	if (!hs_budget_under_load(b, now_ms)) {
		if (bucket_tokens(&b->all, &b->p.all, now_ms) > b->p.reserve &&
		    bucket_take(&b->all, &b->p.all, now_ms)) {
			b->ctr.hs_processed_unproven++;
			return HS_PROCESS;
		}
		set_load(b, now_ms);
	}
	return hs_budget_take_cookie(b, now_ms) ? HS_SEND_COOKIE : HS_DROP;
}

/* ---- measuring ---- */

int hs_budget_measure(void (*work)(void *), void *work_arg, unsigned n, hs_budget_clock_fn clock,
		      void *clock_arg, uint64_t *ns)
{
	uint64_t per[MEASURE_BATCHES], t;
	unsigned per_batch = n / MEASURE_BATCHES;

	if (!work || !clock || n < MEASURE_BATCHES)
		return -EINVAL;
	for (unsigned i = 0; i < MEASURE_BATCHES; i++) {
		uint64_t t0 = clock(clock_arg), t1;

		for (unsigned j = 0; j < per_batch; j++)
			work(work_arg);
		t1 = clock(clock_arg);
		per[i] = (t1 > t0 ? t1 - t0 : 0) / per_batch;
	}
	/* Insertion sort of five, then the middle one. */
	for (unsigned i = 1; i < MEASURE_BATCHES; i++)
		for (unsigned j = i; j > 0 && per[j - 1] > per[j]; j--) {
			t = per[j];
			per[j] = per[j - 1];
			per[j - 1] = t;
		}
	*ns = per[MEASURE_BATCHES / 2] ? per[MEASURE_BATCHES / 2] : 1;
	return 0;
}

/* Fixed test keys: the cost does not depend on the key, and the helper needs no randomness. */
struct responder_job {
	uint8_t coord_priv[32];
	struct session_responder resp;
	uint8_t e_priv[32];
	uint8_t msg1[PROTO_HS_INIT_NOISE_LEN];
	int err;
};

static void responder_once(void *arg)
{
	struct responder_job *j = arg;
	uint8_t ts[PROTO_TIMESTAMP_LEN], msg2[PROTO_HS_RESP_NOISE_LEN];
	struct session_keys keys;
	struct session_hs hs;

	/* As hs.c does it: from the responder state computed once per coordinator key. */
	session_hs_init_responder(&hs, &j->resp);
	if (session_hs_read_msg1(&hs, j->msg1, sizeof(j->msg1), ts, sizeof(ts)) != sizeof(ts) ||
	    session_hs_write_msg2(&hs, j->e_priv, NULL, 0, msg2, sizeof(msg2)) != sizeof(msg2))
		j->err = -EPROTO;
	else
		session_hs_split(&hs, &keys);
	sodium_memzero(&hs, sizeof(hs));
	sodium_memzero(&keys, sizeof(keys));
}

int hs_budget_measure_responder(unsigned n, hs_budget_clock_fn clock, void *clock_arg, uint64_t *ns)
{
	uint8_t node_priv[32], node_e[32], coord_pub[32], ts[PROTO_TIMESTAMP_LEN];
	struct responder_job j;
	struct session_hs hs;
	int e;

	memset(&j, 0, sizeof(j));
	memset(j.coord_priv, 0x11, sizeof(j.coord_priv));
	memset(j.e_priv, 0x22, sizeof(j.e_priv));
	memset(node_priv, 0x33, sizeof(node_priv));
	memset(node_e, 0x44, sizeof(node_e));
	session_tai64n(ts, 1700000000, 0);
	if (crypto_scalarmult_base(coord_pub, j.coord_priv) != 0 ||
	    session_responder_init(&j.resp, (const uint8_t *)SESSION_PROLOGUE,
				   strlen(SESSION_PROLOGUE), j.coord_priv) < 0)
		return -EINVAL;
	e = session_hs_init(&hs, true, (const uint8_t *)SESSION_PROLOGUE, strlen(SESSION_PROLOGUE),
			    node_priv, coord_pub);
	if (e == 0 && session_hs_write_msg1(&hs, node_e, ts, sizeof(ts), j.msg1, sizeof(j.msg1)) !=
			      (ssize_t)sizeof(j.msg1))
		e = -EPROTO;
	sodium_memzero(&hs, sizeof(hs));
	if (e == 0)
		e = hs_budget_measure(responder_once, &j, n, clock, clock_arg, ns);
	if (e == 0)
		e = j.err;
	sodium_memzero(&j, sizeof(j));
	return e;
}

struct cookie_job {
	struct cookie_responder r;
	struct addr src;
	uint8_t msg[PROTO_HS_INIT_NOISE_LEN + 8 + COOKIE_MACS_LEN];
	int err;
};

static void cookie_once(void *arg)
{
	struct cookie_job *j = arg;
	uint8_t nonce[COOKIE_NONCE_LEN] = { 0 }, reply[COOKIE_REPLY_BODY_LEN];

	if (cookie_check(&j->r, j->msg, sizeof(j->msg), &j->src, 0) != COOKIE_MAC1_ONLY ||
	    cookie_reply_make(&j->r, j->msg + sizeof(j->msg) - COOKIE_MACS_LEN, &j->src, nonce, 0,
			      reply) != COOKIE_REPLY_BODY_LEN)
		j->err = -EPROTO;
}

int hs_budget_measure_cookie(unsigned n, hs_budget_clock_fn clock, void *clock_arg, uint64_t *ns)
{
	uint8_t pub[32], secret[COOKIE_SECRET_LEN];
	struct cookie_initiator ci;
	struct cookie_job j;
	int e;

	memset(&j, 0, sizeof(j));
	memset(pub, 0x55, sizeof(pub));
	memset(secret, 0x66, sizeof(secret));
	memset(j.msg, 0x77, sizeof(j.msg));
	j.src.in4.sin_family = AF_INET;
	j.src.in4.sin_port = htons(51820);
	j.src.in4.sin_addr.s_addr = htonl(0xcb007101); /* 203.0.113.1 */
	cookie_responder_init(&j.r, pub, secret, 0);
	cookie_initiator_init(&ci, pub);
	cookie_initiator_sign(&ci, j.msg, sizeof(j.msg), 0);
	e = hs_budget_measure(cookie_once, &j, n, clock, clock_arg, ns);
	if (e == 0)
		e = j.err;
	cookie_responder_wipe(&j.r);
	return e;
}

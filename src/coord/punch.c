// SPDX-License-Identifier: MIT
/*
 * punch - readiness, consent and the ordered punch (rendezvous.md section
 * 4); coord_pair decides the order, this file carries it out.
 */
#include "wgpunch/punch.h"

#include <stddef.h>

#include "wgpunch/dir.h"
#include "wgpunch/key.h"
#include "wgpunch/log.h"
#include "wgpunch/proto.h"
#include "wgpunch/registry.h"
#include "wgpunch/transport.h"

#define X(name, help) COUNTER_DEF(punch_counters, name, help)
COUNTER_TABLE_DEFINE(punch_counters, PUNCH_COUNTERS(X));
#undef X

static void punch_on_timer(uv_timer_t *t);

static void punch_arm_timer(struct punch *p)
{
	uv_timer_t *timer = &p->timer.uv.timer;
	int64_t next = coord_pair_next_deadline(&p->pending);
	uint64_t now = uv_now(p->loop);

	if (uv_is_closing((uv_handle_t *)timer))
		return;
	if (next < 0)
		uv_timer_stop(timer);
	else
		uv_timer_start(timer, punch_on_timer,
			       (uint64_t)next > now ? (uint64_t)next - now : 0, 0);
}

static void punch_send(struct punch *p, struct reg_node *to, const struct proto_punch *pp)
{
	struct proto_msg m = { .type = PROTO_MSG_PUNCH };

	m.punch = *pp;
	transport_send_msg(p->t, to, &m);
}

bool punch_node_allow(struct reg_node *n, uint64_t now_ms)
{
	const uint64_t interval = 1000 / PUNCH_NODE_PER_S;
	uint64_t t = n->punch_tat_ms > now_ms ? n->punch_tat_ms : now_ms;

	/* GCRA: tat is when the bucket would be full again. */
	if (t - now_ms > (uint64_t)(PUNCH_NODE_BURST - 1) * interval)
		return false;
	n->punch_tat_ms = t + interval;
	return true;
}

/* One line per pair would be one per pair an attacker makes: pairs are logged at debug
 * level, and a counted summary at info at most every PUNCH_SUMMARY_MS. */
static void punch_summary(struct punch *p, uint64_t now)
{
	if (now - p->summary_ms < PUNCH_SUMMARY_MS || !(p->summary_pairs || p->summary_limited))
		return;
	log_info("punched %llu pairs in %llu s (%llu not punched: re-punch limits); %u pending",
		 (unsigned long long)p->summary_pairs,
		 (unsigned long long)((now - p->summary_ms) / 1000),
		 (unsigned long long)p->summary_limited, p->pending.n);
	p->summary_ms = now;
	p->summary_pairs = p->summary_limited = 0;
}

static void punch_pair(struct punch *p, struct reg_node *cause, struct reg_node *other)
{
	struct coord_pair_plan plan;
	struct reg_node *first, *second;
	char k1[KEY_SHORT_LEN], k2[KEY_SHORT_LEN];
	uint64_t now = uv_now(p->loop);

	if (cause->n_pending >= PUNCH_PENDING_PER_NODE) {
		p->ctr.punch_deferred++;
		p->summary_limited++;
		punch_summary(p, now);
		return;
	}
	if (!punch_node_allow(cause, now)) {
		p->ctr.punch_limited++;
		p->summary_limited++;
		punch_summary(p, now);
		return;
	}
	coord_pair_start(&p->pending, cause, other, now, &plan);
	first = plan.first == cause ? cause : other;
	second = first == cause ? other : cause;
	p->ctr.punch_pairs++;
	p->summary_pairs++;
	/* The reason comes with the decision (coord_pair), so the log cannot drift from it. */
	if (plan.second_now)
		log_debug("punch %s and %s both at once: attempt table full",
			  key_short(first->key, k1), key_short(second->key, k2));
	else
		log_debug("punch %s first, then %s (%s)", key_short(first->key, k1),
			  key_short(second->key, k2), coord_pair_why_text(plan.why));
	punch_send(p, first, &plan.to_first);
	if (plan.second_now) {
		p->ctr.punch_unordered++;
		punch_send(p, second, &plan.to_second);
	} else {
		p->cause_first[(plan.attempt & 0xffffu) % PUNCH_PENDING_MAX] = first == cause;
		cause->n_pending++;
		punch_arm_timer(p);
	}
	punch_summary(p, now);
}

/* An attempt left the table: its cause may start another. */
static void punch_give_back(struct punch *p, const struct coord_pair_release *rel)
{
	bool cf = p->cause_first[(rel->attempt & 0xffffu) % PUNCH_PENDING_MAX];
	struct reg_node *cause = dir_find(p->dir, cf ? rel->first_key : rel->second_key);

	/* An entry that left and came back started again at 0. */
	if (cause && cause->n_pending)
		cause->n_pending--;
}

/* A ready node's event: punch every ready peer that consents (both list each other). */
static void punch_all(struct punch *p, struct reg_node *a)
{
	for (size_t i = 0; i < a->n_peers; i++) {
		struct reg_node *b = NULL;

		/* Nearly always one entry per fingerprint; a collision needs ~2^64 keys. */
		while ((b = dir_find_fp(p->dir, registry_peers(a)[i], b))) {
			if (b != a && dir_ready(b) && registry_lists(b, a->fp))
				punch_pair(p, a, b);
		}
	}
}

void punch_after_change(struct punch *p, struct reg_node *n, bool was_ready, bool changed)
{
	if (dir_ready(n) && (!was_ready || changed))
		punch_all(p, n);
}

static void punch_release(struct punch *p, const struct coord_pair_release *rel)
{
	struct reg_node *first = dir_find(p->dir, rel->first_key);
	struct reg_node *second = dir_find(p->dir, rel->second_key);
	struct proto_punch pp;

	punch_give_back(p, rel);
	/* Consent is checked again: either side may have changed its list since. */
	if (!first || !second || !dir_ready(first) || !second->local_idx ||
	    !dir_consent(first, second))
		return;
	coord_pair_punch_about(first, rel->attempt, 0, &pp);
	p->ctr.punch_released++;
	punch_send(p, second, &pp);
}

static void punch_on_timer(uv_timer_t *t)
{
	struct punch *p = t->data;
	struct coord_pair_release rel;

	while (coord_pair_expire(&p->pending, uv_now(p->loop), &rel)) {
		log_debug("punch attempt %08x: no ack in %u ms, telling the second side",
			  rel.attempt, COORD_PAIR_ACK_TIMEOUT_MS);
		punch_release(p, &rel);
	}
	punch_arm_timer(p);
}

/* PUNCH_ACK {attempt} inside n's session: releases the second side of that attempt. */
static void punch_on_ack(void *arg, const struct transport_rx *rx)
{
	struct punch *p = arg;
	struct coord_pair_release rel;

	if (!coord_pair_ack(&p->pending, rx->msg->punch_ack.attempt, rx->node->key, &rel)) {
		p->ctr.ack_unknown++;
		return;
	}
	punch_release(p, &rel);
	punch_arm_timer(p);
}

static const struct coord_handle_ops punch_timer_ops = { .what = "punch ack timer" };

int punch_init(struct punch *p, uv_loop_t *loop, struct coord_handles *handles, struct transport *t,
	       struct dir *dir)
{
	p->loop = loop;
	p->t = t;
	p->dir = dir;
	p->summary_ms = uv_now(loop);
	coord_handles_add_timer(handles, loop, &p->timer, &punch_timer_ops, p);
	transport_route_msg(t, PROTO_MSG_PUNCH_ACK, TRANSPORT_ROLE_BIT(TRANSPORT_MAIN),
			    punch_on_ack, p);
	return coord_pair_table_init(&p->pending, PUNCH_PENDING_MAX);
}

void punch_destroy(struct punch *p)
{
	coord_pair_table_destroy(&p->pending);
}

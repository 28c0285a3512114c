// SPDX-License-Identifier: MIT
/*
 * coord_punch - readiness, consent and the ordered punch (rendezvous.md
 * section 4); coord_pair decides the order, this file carries it out.
 */
#include "wgpunch/coord_punch.h"

#include <stddef.h>

#include "wgpunch/coord_internal.h"
#include "wgpunch/coord_pair.h"
#include "wgpunch/coord_session.h"
#include "wgpunch/key.h"
#include "wgpunch/log.h"
#include "wgpunch/proto.h"
#include "wgpunch/registry.h"

bool coord_punch_ready(const struct reg_node *n)
{
	return n->local_idx && n->registered && n->mapping[0].family &&
	       n->filter_state == REG_FILTER_DONE;
}

static void coord_on_punch_timer(uv_timer_t *t);

static void coord_arm_punch_timer(struct coord *c)
{
	int64_t next = coord_pair_next_deadline(&c->pending);
	uint64_t now = uv_now(c->loop);

	if (c->stopping)
		return;
	if (next < 0)
		uv_timer_stop(&c->punch_timer);
	else
		uv_timer_start(&c->punch_timer, coord_on_punch_timer,
			       (uint64_t)next > now ? (uint64_t)next - now : 0, 0);
}

static void coord_send_punch(struct coord *c, struct reg_node *to, const struct proto_punch *p)
{
	struct proto_msg m = { .type = PROTO_MSG_PUNCH };

	m.punch = *p;
	coord_session_send(c, to, &m);
}

static bool coord_consent(const struct reg_node *a, const struct reg_node *b)
{
	return registry_lists(a, b->fp) && registry_lists(b, a->fp);
}

static void coord_punch_pair(struct coord *c, struct reg_node *cause, struct reg_node *other)
{
	struct coord_pair_plan plan;
	struct reg_node *first, *second;
	char k1[KEY_SHORT_LEN], k2[KEY_SHORT_LEN];

	coord_pair_start(&c->pending, cause, other, uv_now(c->loop), &plan);
	first = plan.first == cause ? cause : other;
	second = first == cause ? other : cause;
	c->ctr.punch_pairs++;
	/* The reason comes with the decision (coord_pair), so the log cannot drift from it. */
	if (plan.second_now)
		log_info("punch %s and %s both at once: attempt table full",
			 key_short(first->key, k1), key_short(second->key, k2));
	else
		log_info("punch %s first, then %s (%s)", key_short(first->key, k1),
			 key_short(second->key, k2), coord_pair_why_text(plan.why));
	coord_send_punch(c, first, &plan.to_first);
	if (plan.second_now) {
		c->ctr.punch_unordered++;
		coord_send_punch(c, second, &plan.to_second);
	} else {
		coord_arm_punch_timer(c);
	}
}

/* A ready node's event: punch every ready peer that consents (both list each other). */
static void coord_punch_all(struct coord *c, struct reg_node *a)
{
	for (size_t i = 0; i < a->n_peers; i++) {
		struct reg_node *b = NULL;

		/* Nearly always one entry per fingerprint; a collision needs ~2^64 keys. */
		while ((b = registry_find_fp(&c->reg, a->peers[i], b))) {
			if (b != a && coord_punch_ready(b) && registry_lists(b, a->fp))
				coord_punch_pair(c, a, b);
		}
	}
}

void coord_punch_after_change(struct coord *c, struct reg_node *n, bool was_ready, bool changed)
{
	if (coord_punch_ready(n) && (!was_ready || changed))
		coord_punch_all(c, n);
}

static void coord_release(struct coord *c, const struct coord_pair_release *rel)
{
	struct reg_node *first = registry_find(&c->reg, rel->first_key);
	struct reg_node *second = registry_find(&c->reg, rel->second_key);
	struct proto_punch p;

	/* Consent is checked again: either side may have changed its list since. */
	if (!first || !second || !coord_punch_ready(first) || !second->local_idx ||
	    !coord_consent(first, second))
		return;
	coord_pair_punch_about(first, rel->attempt, 0, &p);
	c->ctr.punch_released++;
	coord_send_punch(c, second, &p);
}

static void coord_on_punch_timer(uv_timer_t *t)
{
	struct coord *c = t->data;
	struct coord_pair_release rel;

	while (coord_pair_expire(&c->pending, uv_now(c->loop), &rel)) {
		log_debug("punch attempt %08x: no ack in %u ms, telling the second side",
			  rel.attempt, COORD_PAIR_ACK_TIMEOUT_MS);
		coord_release(c, &rel);
	}
	coord_arm_punch_timer(c);
}

void coord_punch_on_ack(struct coord *c, struct reg_node *n, uint32_t attempt)
{
	struct coord_pair_release rel;

	if (!coord_pair_ack(&c->pending, attempt, n->key, &rel)) {
		c->ctr.ack_unknown++;
		return;
	}
	coord_release(c, &rel);
	coord_arm_punch_timer(c);
}

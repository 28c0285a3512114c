// SPDX-License-Identifier: MIT
/*
 * coord_filter - the filter test (rendezvous.md section 3).
 */
#include "wgpunch/coord_filter.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <sodium.h>

#include "wgpunch/addr.h"
#include "wgpunch/coord_internal.h"
#include "wgpunch/coord_punch.h"
#include "wgpunch/coord_session.h"
#include "wgpunch/key.h"
#include "wgpunch/log.h"
#include "wgpunch/proto.h"
#include "wgpunch/registry.h"

#define COORD_FILTER_TIMEOUT_MS 2000

static void coord_on_filter_timer(uv_timer_t *t);

static void coord_arm_filter_timer(struct coord *c)
{
	uint64_t now = uv_now(c->loop);

	if (c->stopping)
		return;
	if (!c->filter_head)
		uv_timer_stop(&c->filter_timer);
	else
		uv_timer_start(&c->filter_timer, coord_on_filter_timer,
			       c->filter_head->filter_deadline_ms > now
				       ? c->filter_head->filter_deadline_ms - now
				       : 0,
			       0);
}

static void coord_filter_unlink(struct coord *c, struct reg_node *n)
{
	if (n->filter_state != REG_FILTER_PENDING)
		return;
	if (n->filter_prev)
		n->filter_prev->filter_next = n->filter_next;
	else
		c->filter_head = n->filter_next;
	if (n->filter_next)
		n->filter_next->filter_prev = n->filter_prev;
	else
		c->filter_tail = n->filter_prev;
	n->filter_prev = n->filter_next = NULL;
	c->n_filter--;
}

static void coord_filter_start(struct coord *c, struct reg_node *n)
{
	struct proto_msg m = { .type = PROTO_MSG_FILTER_GO };
	uint8_t poison[PROTO_POISON_LEN], out[32];
	struct proto_outer o = { .type = PROTO_POISON, .body = poison, .body_len = sizeof(poison) };
	struct addr to;
	ssize_t len;

	coord_filter_unlink(c, n);
	n->filter_addr = n->session_addr;
	n->filter_state = REG_FILTER_PENDING;
	randombytes_buf(&n->filter_nonce, sizeof(n->filter_nonce));
	n->filter_deadline_ms = uv_now(c->loop) + COORD_FILTER_TIMEOUT_MS;
	n->filter_prev = c->filter_tail;
	n->filter_next = NULL;
	if (c->filter_tail)
		c->filter_tail->filter_next = n;
	else
		c->filter_head = n;
	c->filter_tail = n;
	c->n_filter++;
	c->ctr.filter_tests++;

	/* POISON from P + 1 first, so it reaches the node's router before the echo leaves. */
	randombytes_buf(poison, sizeof(poison));
	len = proto_encode_outer(out, sizeof(out), &o);
	registry_addr_unpack(&to, &n->session_addr);
	if (len > 0)
		coord_send(c, coord_sock_of(c, n->sock, 1), &to, out, (size_t)len);
	m.filter_go.nonce = n->filter_nonce;
	coord_session_send(c, n, &m);
	coord_arm_filter_timer(c);
}

static void coord_filter_finish(struct coord *c, struct reg_node *n, uint8_t result)
{
	struct proto_msg m = { .type = PROTO_MSG_FILTER_RESULT };
	bool was_ready = coord_punch_ready(n);
	char k[KEY_SHORT_LEN];

	coord_filter_unlink(c, n);
	n->filter_state = REG_FILTER_DONE;
	n->filter = result;
	log_debug("node %s: filter %s", key_short(n->key, k), proto_filter_name(result));
	m.filter_result.filter = result;
	coord_session_send(c, n, &m);
	coord_arm_filter_timer(c);
	coord_punch_after_change(c, n, was_ready, false);
}

static void coord_on_filter_timer(uv_timer_t *t)
{
	struct coord *c = t->data;
	uint64_t now = uv_now(c->loop);

	while (c->filter_head && c->filter_head->filter_deadline_ms <= now) {
		c->ctr.filter_timeouts++;
		coord_filter_finish(c, c->filter_head, PROTO_FILTER_UNKNOWN);
	}
	coord_arm_filter_timer(c);
}

/*
 * The result of an echo that came from src. A router that kept our POISON owns the tuple, so
 * masquerade had to give the node's flow to P + 1 another source port: POISONABLE. But a router
 * with endpoint-dependent mapping gives that flow a new port anyway, poison or not, so there a
 * new port says nothing: UNKNOWN. The two probe mappings show such a router; while they are
 * not both known, the echo alone decides.
 */
uint8_t coord_filter_judge(const struct reg_node *n, const struct reg_addr *src)
{
	if (registry_addr_equal(src, &n->filter_addr))
		return PROTO_FILTER_SAFE;
	if (n->mapping[0].family && n->mapping[1].family &&
	    !registry_addr_equal(&n->mapping[0], &n->mapping[1]))
		return PROTO_FILTER_UNKNOWN;
	return PROTO_FILTER_POISONABLE;
}

void coord_filter_on_echo(struct coord *c, struct reg_node *n, const struct addr *from,
			  uint64_t nonce)
{
	struct reg_addr src;

	if (n->filter_state != REG_FILTER_PENDING || nonce != n->filter_nonce) {
		coord_drop(&c->ctr.echo_unexpected, from, "filter echo with no test pending");
		return;
	}
	registry_addr_pack(&src, from);
	coord_filter_finish(c, n, coord_filter_judge(n, &src));
}

void coord_filter_set_session_addr(struct coord *c, struct reg_node *n, const struct coord_sock *s,
				   const struct addr *from)
{
	registry_addr_pack(&n->session_addr, from);
	n->sock = s->listen_idx;
	if (n->filter_state == REG_FILTER_NONE ||
	    !registry_addr_equal(&n->filter_addr, &n->session_addr))
		coord_filter_start(c, n);
}

void coord_filter_cancel(struct coord *c, struct reg_node *n)
{
	coord_filter_unlink(c, n);
	coord_arm_filter_timer(c);
}

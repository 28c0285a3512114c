// SPDX-License-Identifier: MIT
/*
 * filter - the filter test (rendezvous.md section 3).
 */
#include "wgpunch/filter.h"

#include <stddef.h>
#include <stdlib.h>
#include <sys/types.h>

#include <sodium.h>

#include "wgpunch/addr.h"
#include "wgpunch/dir.h"
#include "wgpunch/key.h"
#include "wgpunch/log.h"
#include "wgpunch/proto.h"
#include "wgpunch/punch.h"
#include "wgpunch/registry.h"
#include "wgpunch/relay.h"
#include "wgpunch/transport.h"

#define X(name, help) COUNTER_DEF(filter_counters, name, help)
COUNTER_TABLE_DEFINE(filter_counters, FILTER_COUNTERS(X));
#undef X

/* A pending test: allocated when it starts, freed when it ends, so an entry without one
 * (nearly all of them) does not carry these 40 bytes. */
struct filter_test {
	struct reg_node *node;
	struct filter_test *prev, *next;
	uint64_t nonce;       /* FILTER_GO nonce the echo must carry */
	uint64_t deadline_ms; /* when it times out */
	struct reg_addr addr; /* the session address it runs for: an echo from there is SAFE */
};

static void filter_on_timer(uv_timer_t *t);

static void filter_arm_timer(struct filter *f)
{
	uv_timer_t *timer = &f->timer.uv.timer;
	uint64_t now = uv_now(f->loop);

	if (uv_is_closing((uv_handle_t *)timer))
		return;
	if (!f->head)
		uv_timer_stop(timer);
	else
		uv_timer_start(timer, filter_on_timer,
			       f->head->deadline_ms > now ? f->head->deadline_ms - now : 0, 0);
}

static void filter_unlink(struct filter *f, struct reg_node *n)
{
	struct filter_test *t = n->filter_test;

	if (n->filter_state != REG_FILTER_PENDING || !t)
		return;
	if (t->prev)
		t->prev->next = t->next;
	else
		f->head = t->next;
	if (t->next)
		t->next->prev = t->prev;
	else
		f->tail = t->prev;
	free(t);
	n->filter_test = NULL;
	f->n_pending--;
}

static void filter_start(struct filter *f, struct reg_node *n)
{
	struct proto_msg m = { .type = PROTO_MSG_FILTER_GO };
	uint8_t poison[PROTO_POISON_LEN], out[32];
	struct proto_outer o = { .type = PROTO_POISON, .body = poison, .body_len = sizeof(poison) };
	struct transport_sock_id from = { .listen = n->sock, .role = TRANSPORT_PROBE };
	struct filter_test *t;
	struct addr to;
	ssize_t len;

	filter_unlink(f, n);
	t = calloc(1, sizeof(*t));
	if (!t) {
		/* untested for now: its next handshake tries again */
		log_warn("no memory for a filter test");
		return;
	}
	t->addr = n->session_addr;
	n->filter_addr_hash = registry_addr_hash(&n->session_addr);
	n->filter_state = REG_FILTER_PENDING;
	n->filter_test = t;
	t->node = n;
	randombytes_buf(&t->nonce, sizeof(t->nonce));
	t->deadline_ms = uv_now(f->loop) + FILTER_TIMEOUT_MS;
	t->prev = f->tail;
	if (f->tail)
		f->tail->next = t;
	else
		f->head = t;
	f->tail = t;
	f->n_pending++;
	f->ctr.filter_tests++;

	/* POISON from P + 1 first, so it reaches the node's router before the echo leaves. */
	randombytes_buf(poison, sizeof(poison));
	len = proto_encode_outer(out, sizeof(out), &o);
	registry_addr_unpack(&to, &n->session_addr);
	if (len > 0)
		transport_send(f->t, from, &to, out, (size_t)len);
	m.filter_go.nonce = t->nonce;
	transport_send_msg(f->t, n, &m);
	filter_arm_timer(f);
}

static void filter_finish(struct filter *f, struct reg_node *n, uint8_t result)
{
	struct proto_msg m = { .type = PROTO_MSG_FILTER_RESULT };
	bool was_ready = dir_ready(n);
	char k[KEY_SHORT_LEN];

	filter_unlink(f, n);
	n->filter_state = REG_FILTER_DONE;
	n->filter = result;
	log_debug("node %s: filter %s", key_short(n->key, k), proto_filter_name(result));
	m.filter_result.filter = result;
	transport_send_msg(f->t, n, &m);
	filter_arm_timer(f);
	/* The relay first, as coord.c does for the directory's changes: a node with its RELAY
	 * acks the PUNCH and spends no WireGuard initiation on a direct candidate. */
	relay_after_change(f->relay, n, was_ready, false);
	punch_after_change(f->punch, n, was_ready, false);
}

static void filter_on_timer(uv_timer_t *t)
{
	struct filter *f = t->data;
	uint64_t now = uv_now(f->loop);

	while (f->head && f->head->deadline_ms <= now) {
		f->ctr.filter_timeouts++;
		filter_finish(f, f->head->node, PROTO_FILTER_UNKNOWN);
	}
	filter_arm_timer(f);
}

/*
 * The result of an echo that came from src. A router that kept our POISON owns the tuple, so
 * masquerade had to give the node's flow to P + 1 another source port: POISONABLE. But a router
 * with endpoint-dependent mapping gives that flow a new port anyway, poison or not, so there a
 * new port says nothing: UNKNOWN. The two probe mappings show such a router; while they are
 * not both known, the echo alone decides.
 */
uint8_t filter_judge(const struct reg_node *n, const struct reg_addr *tested,
		     const struct reg_addr *src)
{
	if (registry_addr_equal(src, tested))
		return PROTO_FILTER_SAFE;
	if (n->mapping[0].family && n->mapping[1].family &&
	    !registry_addr_equal(&n->mapping[0], &n->mapping[1]))
		return PROTO_FILTER_UNKNOWN;
	return PROTO_FILTER_POISONABLE;
}

/* FILTER_ECHO {nonce}, inside n's session, on P + 1. */
static void filter_on_echo(void *arg, const struct transport_rx *rx)
{
	struct filter *f = arg;
	struct reg_node *n = rx->node;
	struct reg_addr src;

	if (n->filter_state != REG_FILTER_PENDING || !n->filter_test ||
	    rx->msg->filter_echo.nonce != n->filter_test->nonce) {
		transport_drop(&f->ctr.echo_unexpected, rx->from,
			       "filter echo with no test pending");
		return;
	}
	registry_addr_pack(&src, rx->from);
	filter_finish(f, n, filter_judge(n, &n->filter_test->addr, &src));
}

void filter_on_session_addr(struct filter *f, struct reg_node *n)
{
	if (n->filter_state == REG_FILTER_NONE ||
	    n->filter_addr_hash != registry_addr_hash(&n->session_addr))
		filter_start(f, n);
}

void filter_on_mappings(struct filter *f, struct reg_node *n)
{
	struct proto_msg m = { .type = PROTO_MSG_FILTER_RESULT };

	if (n->filter_state != REG_FILTER_DONE || n->filter != PROTO_FILTER_POISONABLE ||
	    !n->mapping[0].family || !n->mapping[1].family ||
	    registry_addr_equal(&n->mapping[0], &n->mapping[1]))
		return;
	f->ctr.filter_rejudged++;
	n->filter = PROTO_FILTER_UNKNOWN;
	m.filter_result.filter = PROTO_FILTER_UNKNOWN;
	transport_send_msg(f->t, n, &m);
}

void filter_cancel(struct filter *f, struct reg_node *n)
{
	filter_unlink(f, n);
	filter_arm_timer(f);
}

static const struct coord_handle_ops filter_timer_ops = { .what = "filter test timer" };

void filter_init(struct filter *f, uv_loop_t *loop, struct coord_handles *handles,
		 struct transport *t, struct punch *punch, struct relay *relay)
{
	f->loop = loop;
	f->t = t;
	f->punch = punch;
	f->relay = relay;
	f->head = f->tail = NULL;
	f->n_pending = 0;
	coord_handles_add_timer(handles, loop, &f->timer, &filter_timer_ops, f);
	transport_route_msg(t, PROTO_MSG_FILTER_ECHO, TRANSPORT_ROLE_BIT(TRANSPORT_PROBE),
			    filter_on_echo, f);
}

// SPDX-License-Identifier: MIT
/*
 * node_session - the node's Noise session with one coordinator: docs/rendezvous.md
 * section 1, node side (the initiator). The previous session's keys are kept
 * after a re-key, so DATA in flight under them still counts.
 */
#include "wgpunch/node_session.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>
#include <time.h>

#include "wgpunch/log.h"
#include "wgpunch/node_rdv.h"
#include "wgpunch/wg.h"

#define HS_RETRY_FIRST_MS 1000
#define HS_FAST_TRIES 3 /* sent HS_RETRY_FIRST_MS apart before the backoff doubles */
#define HS_RETRY_MAX_MS 30000
#define HS_TRIES_BEFORE_RESOLVE 3
#define UNKNOWN_BACKOFF_FIRST_MS 1000
#define REKEY_MS 120000

static void coord_on_hs_timer(uv_timer_t *t);

void node_session_init(struct node_coord *c)
{
	c->hs_backoff_ms = HS_RETRY_FIRST_MS;
	c->unknown_backoff_ms = UNKNOWN_BACKOFF_FIRST_MS;
}

void node_session_confirmed(struct node_coord *c)
{
	/* The session demonstrably works: SESSION_UNKNOWN backoff starts over. */
	c->unknown_backoff_ms = UNKNOWN_BACKOFF_FIRST_MS;
}

void node_session_down(struct node_coord *c, const char *why)
{
	char a[ADDR_STRLEN];

	if (c->state == NODE_COORD_UP)
		log_info("session with coordinator %s down (%s), handshaking again",
			 node_coord_name(c, a), why);
	c->state = addr_is_set(&c->addr) ? NODE_COORD_HANDSHAKING : NODE_COORD_RESOLVING;
	c->cur.valid = false;
	c->prev.valid = false;
	uv_timer_stop(&c->rekey_timer);
	node_rdv_session_down(c);
}

/* ---- sending ---- */

/* Encrypts one inner message into DATA under the current session and sends it to `to`. */
int node_session_send(struct node_coord *c, const struct proto_msg *m, const struct addr *to)
{
	uint8_t pt[PROTO_MAX_DATAGRAM], buf[PROTO_MAX_DATAGRAM];
	size_t pre = proto_outer_prefix_len(PROTO_DATA);
	struct proto_outer o = { .type = PROTO_DATA };
	ssize_t pl, n;

	if (c->state != NODE_COORD_UP || !c->cur.valid)
		return -ENOTCONN;
	pl = proto_encode_msg(pt, sizeof(pt) - PROTO_TAG_LEN, m);
	if (pl < 0)
		return (int)pl;
	o.receiver_idx = c->cur.remote_idx;
	o.counter = c->cur.send_ctr++;
	o.body = pt; /* placeholder of the right length; the ciphertext replaces it */
	o.body_len = (size_t)pl + PROTO_TAG_LEN;
	n = proto_encode_outer(buf, sizeof(buf), &o);
	if (n < 0)
		return (int)n;
	/* The outer prefix is the associated data, so nobody can move a DATA to another index. */
	session_encrypt(c->cur.keys.send, o.counter, buf, pre, pt, (size_t)pl, buf + pre);
	sodium_memzero(pt, sizeof(pt));
	return node_coord_send(c, to, buf, (size_t)n);
}

/* ---- handshake ---- */

static void coord_hs_send(struct node_coord *c)
{
	const struct wg_device *dev = node_device(c->node);
	uint8_t e[32], ts[PROTO_TIMESTAMP_LEN], noise[PROTO_HS_INIT_NOISE_LEN], buf[256];
	struct proto_outer o = { .type = PROTO_HS_INIT };
	struct timespec now;
	ssize_t n;

	if (!dev || !dev->has_private_key || !c->sock || !addr_is_set(&c->addr))
		return;
	/* Our static key is the WireGuard key: the coordinator learns which identity this is. */
	if (session_hs_init(&c->hs, true, (const uint8_t *)SESSION_PROLOGUE,
			    strlen(SESSION_PROLOGUE), dev->private_key, c->public_key) < 0)
		return;
	randombytes_buf(e, sizeof(e));
	clock_gettime(CLOCK_REALTIME, &now);
	session_tai64n(ts, now.tv_sec, (uint32_t)now.tv_nsec);
	n = session_hs_write_msg1(&c->hs, e, ts, sizeof(ts), noise, sizeof(noise));
	sodium_memzero(e, sizeof(e));
	if (n != PROTO_HS_INIT_NOISE_LEN)
		return;
	do
		randombytes_buf(&c->hs_idx, sizeof(c->hs_idx));
	while ((c->cur.valid && c->hs_idx == c->cur.local_idx) ||
	       (c->prev.valid && c->hs_idx == c->prev.local_idx));
	o.sender_idx = c->hs_idx;
	o.body = noise;
	o.body_len = sizeof(noise);
	n = proto_encode_outer(buf, sizeof(buf), &o);
	if (n < 0)
		return;
	c->hs_pending = true;
	if (node_coord_send(c, &c->addr, buf, (size_t)n) == 0)
		node_counters(c->node)->handshakes_sent++;
	log_debug("HS_INIT to coordinator %s:%u (index %08x)", c->host, c->port, c->hs_idx);
}

static void coord_hs_attempt(struct node_coord *c)
{
	/* Without the device's key or an address there is nothing to send yet; the device
	 * read and the resolver start the handshake when they complete. */
	if (!node_device(c->node) || !c->sock)
		return;
	coord_hs_send(c);
	c->hs_tries++;
	/* Still no answer: the name may point elsewhere now. */
	if (c->hs_tries > HS_TRIES_BEFORE_RESOLVE && !c->host_is_literal && !c->gai_pending)
		node_coord_resolve(c);
	uv_timer_start(&c->hs_timer, coord_on_hs_timer, node_coord_jitter(c->hs_backoff_ms), 0);
	/* A few quick retries first: on a lossy path the first tries are the likely losses;
	 * a coordinator that is down is then asked less and less often. */
	if (c->hs_tries >= HS_FAST_TRIES)
		c->hs_backoff_ms = node_coord_doubled(c->hs_backoff_ms, HS_RETRY_MAX_MS);
}

void node_session_begin(struct node_coord *c)
{
	if (c->stopping)
		return;
	c->hs_backoff_ms = HS_RETRY_FIRST_MS;
	c->hs_tries = 0;
	if (c->state != NODE_COORD_UP)
		c->state = addr_is_set(&c->addr) ? NODE_COORD_HANDSHAKING : NODE_COORD_RESOLVING;
	coord_hs_attempt(c);
}

static void coord_on_hs_timer(uv_timer_t *t)
{
	coord_hs_attempt(t->data);
}

static void coord_on_rekey_timer(uv_timer_t *t)
{
	node_session_begin(t->data);
}

void node_session_device_ready(struct node_coord *c)
{
	if (c->stopping || !c->sock)
		return;
	node_session_begin(c);
}

static void coord_on_hs_resp(struct node_coord *c, const struct proto_outer *o)
{
	struct node_counters *cnt = node_counters(c->node);
	struct session_keys keys;
	char a[ADDR_STRLEN];
	bool was_up = c->state == NODE_COORD_UP;

	if (!c->hs_pending || o->receiver_idx != c->hs_idx) {
		cnt->rx_bad_index++;
		return;
	}
	if (session_hs_read_msg2(&c->hs, o->body, o->body_len, NULL, 0) != 0) {
		cnt->rx_bad_auth++;
		log_debug("HS_RESP from coordinator %s:%u failed to authenticate", c->host,
			  c->port);
		return;
	}
	session_hs_split(&c->hs, &keys);
	c->hs_pending = false;
	uv_timer_stop(&c->hs_timer);

	/* Keep the previous session a while: DATA already in flight under it still counts. */
	c->prev = c->cur;
	memset(&c->cur, 0, sizeof(c->cur));
	c->cur.valid = true;
	c->cur.local_idx = c->hs_idx;
	c->cur.remote_idx = o->sender_idx;
	c->cur.keys = keys;
	session_probe_key(&keys, c->probe_key);
	sodium_memzero(&keys, sizeof(keys));

	c->state = NODE_COORD_UP;
	if (!was_up) {
		cnt->sessions_up++;
		log_info("session with coordinator %s up", node_coord_name(c, a));
	} else {
		log_debug("session with coordinator %s re-keyed", node_coord_name(c, a));
	}
	uv_timer_start(&c->rekey_timer, coord_on_rekey_timer, REKEY_MS, 0);
	node_rdv_session_up(c);
}

static void coord_on_session_unknown(struct node_coord *c, const struct proto_outer *o)
{
	struct node_counters *cnt = node_counters(c->node);
	uint64_t delay;

	cnt->rx_session_unknown++;
	/*
	 * It names the index our DATA carried, the coordinator's index of our current session.
	 * Unauthenticated: it may only ever cost us a handshake, and only for that session.
	 */
	if (!c->cur.valid || o->receiver_idx != c->cur.remote_idx || c->hs_pending) {
		cnt->rx_unexpected++;
		return;
	}
	node_session_down(c, "coordinator does not know the session");
	delay = randombytes_uniform(c->unknown_backoff_ms + 1);
	c->unknown_backoff_ms = node_coord_doubled(c->unknown_backoff_ms, HS_RETRY_MAX_MS);
	c->hs_backoff_ms = HS_RETRY_FIRST_MS;
	c->hs_tries = 0;
	uv_timer_start(&c->hs_timer, coord_on_hs_timer, delay, 0);
}

/* ---- receiving ---- */

static void coord_on_data(struct node_coord *c, const uint8_t *buf, const struct proto_outer *o)
{
	struct node_counters *cnt = node_counters(c->node);
	struct node_coord_keys *k = NULL;
	uint8_t pt[PROTO_MAX_DATAGRAM];
	struct proto_msg m;
	ssize_t n;

	if (c->cur.valid && o->receiver_idx == c->cur.local_idx)
		k = &c->cur;
	else if (c->prev.valid && o->receiver_idx == c->prev.local_idx)
		k = &c->prev;
	if (!k) {
		cnt->rx_bad_index++;
		return;
	}
	if (!session_replay_check(&k->replay, o->counter)) {
		cnt->rx_replay++;
		return;
	}
	n = session_decrypt(k->keys.recv, o->counter, buf, proto_outer_prefix_len(PROTO_DATA),
			    o->body, o->body_len, pt);
	if (n < 0) {
		cnt->rx_bad_auth++;
		return;
	}
	session_replay_commit(&k->replay, o->counter);
	c->last_rx_ms = node_now_ms();
	if (proto_decode_msg(pt, (size_t)n, &m) < 0) {
		cnt->rx_bad_decode++;
		return;
	}
	log_debug("message type %u from coordinator %s:%u", m.type, c->host, c->port);
	node_rdv_on_msg(c, &m);
}

void node_session_on_datagram(struct node_coord *c, const uint8_t *buf, size_t len)
{
	struct node_counters *cnt = node_counters(c->node);
	struct proto_outer o;

	if (proto_decode_outer(buf, len, &o) < 0) {
		cnt->rx_bad_decode++;
		return;
	}
	switch (o.type) {
	case PROTO_HS_RESP:
		coord_on_hs_resp(c, &o);
		break;
	case PROTO_DATA:
		coord_on_data(c, buf, &o);
		break;
	case PROTO_SESSION_UNKNOWN:
		coord_on_session_unknown(c, &o);
		break;
	case PROTO_POISON:
		/* The filter test's poison reached us: our router passed it on. Nothing to do. */
		cnt->rx_poison++;
		break;
	default:
		cnt->rx_unexpected++;
		break;
	}
}

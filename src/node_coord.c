// SPDX-License-Identifier: MIT
/*
 * node_coord - the node's session with one coordinator: docs/rendezvous.md
 * sections 1 to 4, node side.
 *
 * Everything is driven by events where it can be: the session comes up ->
 * REGISTER and probes at once; FILTER_GO -> echo at once; PUNCH -> the node
 * writes the endpoint and acks when the write completes. Timers only retry
 * and refresh. All of them run on the monotonic clock.
 *
 * Any datagram can be lost, and a step that waits for the 20 s refresh after
 * a loss makes the node's readiness wait with it. So every step the node
 * starts is repeated until it is answered, on a short timer with backoff and
 * jitter, a bounded number of times: HS_INIT (HS_RESP), REGISTER
 * (REGISTER_ACK), a probe round (both MAPPINGs), the filter echo
 * (FILTER_RESULT). PUNCH_ACK has no answer: it is sent twice.
 */
#include "wgpunch/node_coord.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "wgpunch/log.h"
#include "wgpunch/prober.h"
#include "wgpunch/wg.h"

#define HS_RETRY_FIRST_MS 1000
#define HS_FAST_TRIES 3 /* sent HS_RETRY_FIRST_MS apart before the backoff doubles */
#define HS_RETRY_MAX_MS 30000
#define HS_TRIES_BEFORE_RESOLVE 3
#define UNKNOWN_BACKOFF_FIRST_MS 1000
#define REFRESH_MS 20000
#define REKEY_MS 120000
#define REGISTER_RETRY_FIRST_MS 1000
#define REGISTER_RETRY_MAX_MS 2000
#define REGISTER_TRIES 4 /* retransmissions before the session is judged dead */
#define REGISTER_TRIES_ALIVE 8 /* ... or before waiting for the refresh, while DATA comes in */
#define PROBE_RETRY_FIRST_MS 500
#define PROBE_RETRY_MAX_MS 4000
#define PROBE_TRIES 6 /* rounds after the first; about 15 s, then the refresh takes over */
#define ECHO_RETRY_FIRST_MS 250 /* doubling: 0.25, 0.75, 1.75 s, inside the 2 s of the test */
#define ECHO_TRIES 3
#define ACK_REPEAT_MS 100
#define RESOLVE_EVERY_MS (5 * 60 * 1000)
#define RESOLVE_RETRY_MS 5000

struct send_req {
	uv_udp_send_t req;
	size_t len;
	uint8_t data[];
};

static void coord_hs_begin(struct node_coord *c);
static void coord_resolve(struct node_coord *c);
static void coord_on_hs_timer(uv_timer_t *t);
static void coord_on_reg_timer(uv_timer_t *t);
static void coord_on_probe_timer(uv_timer_t *t);
static void coord_on_echo_timer(uv_timer_t *t);
static void coord_on_ack_timer(uv_timer_t *t);
static void coord_on_resolve_timer(uv_timer_t *t);

const char *node_coord_state_name(enum node_coord_state s)
{
	switch (s) {
	case NODE_COORD_RESOLVING:
		return "resolving";
	case NODE_COORD_HANDSHAKING:
		return "handshaking";
	case NODE_COORD_UP:
		return "up";
	}
	return "unknown";
}

const char *node_coord_mapping_type(const struct node_coord *c)
{
	switch (c->nat_type) {
	case 1:
		return "endpoint-independent";
	case 2:
		return "endpoint-dependent";
	default:
		return "unknown";
	}
}

/* +-25 %: nodes behind one NAT restart together and would retry in lockstep. */
static uint64_t jitter(uint64_t ms)
{
	return ms - ms / 4 + randombytes_uniform((uint32_t)(ms / 2 + 1));
}

static uint32_t doubled(uint32_t ms, uint32_t max_ms)
{
	return ms * 2 > max_ms ? max_ms : ms * 2;
}

static const char *coord_name(const struct node_coord *c, char buf[ADDR_STRLEN])
{
	if (addr_is_set(&c->addr))
		return addr_format(&c->addr, buf);
	snprintf(buf, ADDR_STRLEN, "%s:%u", c->host, c->port);
	return buf;
}

/* ---- lifetime ---- */

static void coord_release(struct node_coord *c)
{
	struct node *n = c->node;

	if (--c->closing == 0 && c->stopping) {
		free(c->host);
		sodium_memzero(c, sizeof(*c));
		free(c);
		node_coord_closed(n);
	}
}

static void coord_on_handle_closed(uv_handle_t *h)
{
	coord_release(h->data);
}

static void coord_on_sock_closed(uv_handle_t *h)
{
	struct node_coord_sock *s = h->data;
	struct node_coord *c = s->c;

	free(s);
	coord_release(c);
}

static void coord_close_sock(struct node_coord *c)
{
	if (!c->sock)
		return;
	c->closing++;
	uv_close((uv_handle_t *)&c->sock->udp, coord_on_sock_closed);
	c->sock = NULL;
}

void node_coord_close(struct node_coord *c)
{
	uv_timer_t *timers[] = { &c->hs_timer,	  &c->refresh_timer, &c->rekey_timer,
				 &c->reg_timer,	  &c->resolve_timer, &c->probe_timer,
				 &c->echo_timer, &c->ack_timer };
	size_t i;

	if (c->stopping)
		return;
	c->stopping = true;
	c->closing++; /* held until every close below is queued */
	if (c->gai_pending) {
		c->closing++; /* its callback fires (cancelled or not) and releases */
		uv_cancel((uv_req_t *)&c->gai);
	}
	coord_close_sock(c);
	for (i = 0; i < sizeof(timers) / sizeof(timers[0]); i++) {
		c->closing++;
		uv_close((uv_handle_t *)timers[i], coord_on_handle_closed);
	}
	coord_release(c);
}

/* ---- sending ---- */

static void coord_on_sent(uv_udp_send_t *req, int status)
{
	/* UV_ECANCELED: the socket is closing; c may be gone, touch nothing. */
	free(req->data);
}

static int coord_send_raw(struct node_coord *c, const struct addr *to, const uint8_t *buf,
			  size_t len)
{
	struct node_counters *cnt = node_counters(c->node);
	struct send_req *sr;
	uv_buf_t b;
	int r;

	if (!c->sock || addr_family(to) != c->sock->family)
		return -ENOTCONN;
	sr = malloc(sizeof(*sr) + len);
	if (!sr)
		return -ENOMEM;
	sr->len = len;
	memcpy(sr->data, buf, len);
	sr->req.data = sr;
	b = uv_buf_init((char *)sr->data, (unsigned int)len);
	r = uv_udp_send(&sr->req, &c->sock->udp, &b, 1, &to->sa, coord_on_sent);
	if (r < 0) {
		free(sr);
		cnt->tx_errors++;
		log_debug("send to coordinator %s:%u failed: %s", c->host, c->port, uv_strerror(r));
		return r;
	}
	cnt->tx_packets++;
	return 0;
}

/* Encrypts one inner message into DATA under the current session and sends it to `to`. */
static int coord_send_msg(struct node_coord *c, const struct proto_msg *m, const struct addr *to)
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
	return coord_send_raw(c, to, buf, (size_t)n);
}

static void coord_send_probes(struct node_coord *c)
{
	struct node_counters *cnt = node_counters(c->node);
	size_t pre = proto_outer_prefix_len(PROTO_PROBE);
	unsigned int idx;

	for (idx = 0; idx < 2; idx++) {
		uint8_t buf[64], mac[PROTO_PROBE_MAC_LEN] = { 0 };
		struct proto_outer o = { .type = PROTO_PROBE };
		struct addr dst = c->addr;
		char a[ADDR_STRLEN];
		ssize_t n;
		int r;

		addr_set_port(&dst, (uint16_t)(c->port + idx));
		o.receiver_idx = c->cur.remote_idx;
		o.counter = ++c->probe_seq;
		o.body = mac;
		o.body_len = sizeof(mac);
		n = proto_encode_outer(buf, sizeof(buf), &o);
		if (n < 0)
			return;
		session_probe_mac(c->probe_key, buf, pre, buf + pre);
		r = prober_send(node_prober(c->node), &dst, buf, (size_t)n);
		if (r < 0) {
			cnt->probe_errors++;
			log_debug("probe to %s failed: %s", addr_format(&dst, a), strerror(-r));
			continue;
		}
		cnt->probes_sent++;
		log_debug("probe %llu to %s", (unsigned long long)o.counter, addr_format(&dst, a));
	}
}

/*
 * A series of probe rounds: the first now, then again while no round of this series has
 * come back whole (both MAPPINGs), so one lost probe or MAPPING costs half a second rather
 * than a refresh period.
 */
static void coord_probe_start(struct node_coord *c)
{
	c->probe_first_seq = c->probe_seq + 1;
	c->probe_backoff_ms = PROBE_RETRY_FIRST_MS;
	c->probe_tries = 0;
	coord_send_probes(c);
	uv_timer_start(&c->probe_timer, coord_on_probe_timer, jitter(c->probe_backoff_ms), 0);
}

static void coord_on_probe_timer(uv_timer_t *t)
{
	struct node_coord *c = t->data;

	if (!c->probe_first_seq || c->state != NODE_COORD_UP)
		return;
	if (c->probe_tries >= PROBE_TRIES) {
		log_debug("no complete MAPPING round from coordinator %s:%u after %u rounds, "
			  "probing again with the next refresh",
			  c->host, c->port, c->probe_tries + 1);
		c->probe_first_seq = 0;
		return;
	}
	c->probe_tries++;
	c->probe_backoff_ms = doubled(c->probe_backoff_ms, PROBE_RETRY_MAX_MS);
	coord_send_probes(c);
	uv_timer_start(&c->probe_timer, coord_on_probe_timer, jitter(c->probe_backoff_ms), 0);
}

void node_coord_probe_now(struct node_coord *c)
{
	if (c->stopping || c->state != NODE_COORD_UP)
		return;
	coord_probe_start(c);
}

/* ---- REGISTER ---- */

static void coord_send_register(struct node_coord *c)
{
	int r = coord_send_msg(c, &c->reg, &c->addr);

	if (r < 0) {
		log_debug("REGISTER to coordinator %s:%u not sent: %s", c->host, c->port,
			  strerror(-r));
		return;
	}
	node_counters(c->node)->registers_sent++;
	log_debug("REGISTER %u to coordinator %s:%u (try %u): %u LAN addresses, %u peers%s",
		  c->reg.reg.seq, c->host, c->port, c->reg_tries + 1, c->reg.reg.n_lan,
		  c->reg.reg.n_peers, c->reg.reg.flags & PROTO_REG_F_RESYNC ? ", RESYNC" : "");
}

void node_coord_register_now(struct node_coord *c, bool probe)
{
	if (c->stopping || c->state != NODE_COORD_UP)
		return;
	memset(&c->reg, 0, sizeof(c->reg));
	c->reg.type = PROTO_MSG_REGISTER;
	node_fill_register(c->node, &c->reg.reg);
	if (c->resync_wanted)
		c->reg.reg.flags |= PROTO_REG_F_RESYNC;
	c->resync_wanted = false;
	c->reg.reg.seq = ++c->reg_seq;
	c->reg_pending = true;
	c->reg_tries = 0;
	c->reg_backoff_ms = REGISTER_RETRY_FIRST_MS;
	c->reg_sent_ms = node_now_ms();
	coord_send_register(c);
	uv_timer_start(&c->reg_timer, coord_on_reg_timer, jitter(c->reg_backoff_ms), 0);
	if (probe)
		coord_probe_start(c);
}

void node_coord_resync(struct node_coord *c, bool now)
{
	if (c->stopping)
		return;
	/* Kept until a REGISTER can carry it, also across a new session. */
	c->resync_wanted = true;
	if (now)
		node_coord_register_now(c, false);
}

static void coord_session_down(struct node_coord *c, const char *why)
{
	char a[ADDR_STRLEN];

	if (c->state == NODE_COORD_UP)
		log_info("session with coordinator %s down (%s), handshaking again",
			 coord_name(c, a), why);
	c->state = addr_is_set(&c->addr) ? NODE_COORD_HANDSHAKING : NODE_COORD_RESOLVING;
	c->cur.valid = false;
	c->prev.valid = false;
	c->reg_pending = false;
	c->probe_first_seq = 0;
	c->echo_pending = false;
	c->n_ack_repeat = 0; /* they would not decrypt under the next session */
	uv_timer_stop(&c->refresh_timer);
	uv_timer_stop(&c->rekey_timer);
	uv_timer_stop(&c->reg_timer);
	uv_timer_stop(&c->probe_timer);
	uv_timer_stop(&c->echo_timer);
	uv_timer_stop(&c->ack_timer);
}

static void coord_on_reg_timer(uv_timer_t *t)
{
	struct node_coord *c = t->data;
	bool alive;

	if (!c->reg_pending)
		return;
	/* Authentic DATA since the first send: the session works and only acks were lost (a
	 * PUNCH may well have come), so a new handshake would only cost time. */
	alive = c->last_rx_ms >= c->reg_sent_ms;
	if (c->reg_tries < (alive ? REGISTER_TRIES_ALIVE : REGISTER_TRIES)) {
		c->reg_tries++;
		c->reg_backoff_ms = doubled(c->reg_backoff_ms, REGISTER_RETRY_MAX_MS);
		coord_send_register(c);
		uv_timer_start(&c->reg_timer, coord_on_reg_timer, jitter(c->reg_backoff_ms), 0);
		return;
	}
	if (alive) {
		c->reg_pending = false; /* the refresh sends a new one */
		return;
	}
	coord_session_down(c, "REGISTER unanswered");
	coord_hs_begin(c);
}

static void coord_on_refresh_timer(uv_timer_t *t)
{
	/* Also keeps the session socket's NAT mapping alive (UDP timeouts can be 30 s). */
	node_coord_register_now(t->data, true);
}

static void coord_send_punch_ack(struct node_coord *c, uint32_t attempt)
{
	struct proto_msg m = { .type = PROTO_MSG_PUNCH_ACK };
	int r;

	m.punch_ack.attempt = attempt;
	r = coord_send_msg(c, &m, &c->addr);
	if (r < 0)
		log_debug("PUNCH_ACK %u to coordinator %s:%u not sent: %s", attempt, c->host,
			  c->port, strerror(-r));
}

/*
 * Nothing answers a PUNCH_ACK, so it is not retried until answered but sent twice: a lost
 * one would hold the second side's PUNCH back for the coordinator's 500 ms. The coordinator
 * ignores the copy (it counts it as an ack for no pending attempt).
 */
void node_coord_send_punch_ack(struct node_coord *c, uint32_t attempt)
{
	if (c->stopping)
		return;
	coord_send_punch_ack(c, attempt);
	if (c->n_ack_repeat < sizeof(c->ack_repeat) / sizeof(c->ack_repeat[0]))
		c->ack_repeat[c->n_ack_repeat++] = attempt;
	else
		coord_send_punch_ack(c, attempt); /* many punches at once: repeat it right away */
	if (!uv_is_active((uv_handle_t *)&c->ack_timer))
		uv_timer_start(&c->ack_timer, coord_on_ack_timer, ACK_REPEAT_MS, 0);
}

static void coord_on_ack_timer(uv_timer_t *t)
{
	struct node_coord *c = t->data;
	unsigned int i;

	for (i = 0; i < c->n_ack_repeat; i++)
		coord_send_punch_ack(c, c->ack_repeat[i]);
	c->n_ack_repeat = 0;
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
	if (coord_send_raw(c, &c->addr, buf, (size_t)n) == 0)
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
		coord_resolve(c);
	uv_timer_start(&c->hs_timer, coord_on_hs_timer, jitter(c->hs_backoff_ms), 0);
	/* A few quick retries first: on a lossy path the first tries are the likely losses;
	 * a coordinator that is down is then asked less and less often. */
	if (c->hs_tries >= HS_FAST_TRIES)
		c->hs_backoff_ms = doubled(c->hs_backoff_ms, HS_RETRY_MAX_MS);
}

static void coord_hs_begin(struct node_coord *c)
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
	coord_hs_begin(t->data);
}

void node_coord_device_ready(struct node_coord *c)
{
	if (c->stopping || !c->sock)
		return;
	coord_hs_begin(c);
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
		log_info("session with coordinator %s up", coord_name(c, a));
	} else {
		log_debug("session with coordinator %s re-keyed", coord_name(c, a));
	}
	uv_timer_start(&c->refresh_timer, coord_on_refresh_timer, REFRESH_MS, REFRESH_MS);
	uv_timer_start(&c->rekey_timer, coord_on_rekey_timer, REKEY_MS, 0);
	/* No timer in the way: the sooner the coordinator knows us, the sooner the punch. */
	node_coord_register_now(c, true);
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
	coord_session_down(c, "coordinator does not know the session");
	delay = randombytes_uniform(c->unknown_backoff_ms + 1);
	c->unknown_backoff_ms = doubled(c->unknown_backoff_ms, HS_RETRY_MAX_MS);
	c->hs_backoff_ms = HS_RETRY_FIRST_MS;
	c->hs_tries = 0;
	uv_timer_start(&c->hs_timer, coord_on_hs_timer, delay, 0);
}

/* ---- filter echo ---- */

static void coord_send_echo(struct node_coord *c)
{
	struct proto_msg echo = { .type = PROTO_MSG_FILTER_ECHO };
	struct addr to = c->addr;
	char a[ADDR_STRLEN];
	int r;

	/* From the session socket to P + 1, and nothing else ever goes that way. A copy takes
	 * the same way through our NAT as the first, so it tells the coordinator the same. */
	echo.filter_echo.nonce = c->echo_nonce;
	addr_set_port(&to, (uint16_t)(c->port + 1));
	r = coord_send_msg(c, &echo, &to);
	if (r < 0)
		log_debug("FILTER_ECHO to %s not sent: %s", addr_format(&to, a), strerror(-r));
}

static void coord_on_echo_timer(uv_timer_t *t)
{
	struct node_coord *c = t->data;

	if (!c->echo_pending || c->state != NODE_COORD_UP)
		return;
	if (c->echo_tries >= ECHO_TRIES) {
		/* The coordinator's test has timed out by now (filter unknown, taken as safe). */
		c->echo_pending = false;
		return;
	}
	c->echo_tries++;
	coord_send_echo(c);
	uv_timer_start(&c->echo_timer, coord_on_echo_timer,
		       jitter((uint64_t)ECHO_RETRY_FIRST_MS << c->echo_tries), 0);
}

/* ---- DATA ---- */

static void coord_on_msg(struct node_coord *c, const struct proto_msg *m)
{
	struct node_counters *cnt = node_counters(c->node);
	char a[ADDR_STRLEN], b[ADDR_STRLEN];
	unsigned int i;

	switch (m->type) {
	case PROTO_MSG_REGISTER_ACK:
		if (!c->reg_pending || m->reg_ack.seq != c->reg.reg.seq) {
			cnt->rx_unexpected++;
			return;
		}
		c->reg_pending = false;
		uv_timer_stop(&c->reg_timer);
		/* The session demonstrably works: SESSION_UNKNOWN backoff starts over. */
		c->unknown_backoff_ms = UNKNOWN_BACKOFF_FIRST_MS;
		return;
	case PROTO_MSG_MAPPING: {
		uint8_t old_type = c->nat_type;

		i = m->mapping.port_index;
		if (i > 1 || m->mapping.probe_seq < c->mapping_seq[i]) {
			cnt->rx_unexpected++;
			return;
		}
		c->mapping_seq[i] = m->mapping.probe_seq;
		c->mapping[i] = m->mapping.observed;
		if (c->mapping_seq[1] != c->mapping_seq[0] + 1)
			return; /* the round is not complete */
		if (c->probe_first_seq && c->mapping_seq[0] >= c->probe_first_seq) {
			c->probe_first_seq = 0; /* this series is answered */
			uv_timer_stop(&c->probe_timer);
		}
		c->nat_type = addr_equal(&c->mapping[0], &c->mapping[1]) ? 1 : 2;
		if (c->nat_type != old_type || !addr_equal(&c->round_mapping, &c->mapping[0]))
			log_info("public mapping of the WireGuard port via coordinator %s: %s (%s)",
				 coord_name(c, a), addr_format(&c->mapping[0], b),
				 node_coord_mapping_type(c));
		c->round_mapping = c->mapping[0];
		return;
	}
	case PROTO_MSG_FILTER_GO:
		c->echo_nonce = m->filter_go.nonce;
		c->echo_pending = true;
		c->echo_tries = 0;
		coord_send_echo(c);
		uv_timer_start(&c->echo_timer, coord_on_echo_timer, jitter(ECHO_RETRY_FIRST_MS), 0);
		return;
	case PROTO_MSG_FILTER_RESULT:
		c->echo_pending = false;
		uv_timer_stop(&c->echo_timer);
		if (m->filter_result.filter != c->filter)
			log_info("NAT filter via coordinator %s: %s", coord_name(c, a),
				 proto_filter_name(m->filter_result.filter));
		c->filter = m->filter_result.filter;
		return;
	case PROTO_MSG_PUNCH:
		node_on_punch(c->node, c, &m->punch);
		return;
	default:
		cnt->rx_unexpected++;
		return;
	}
}

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
	coord_on_msg(c, &m);
}

static void coord_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct node_coord_sock *s = h->data;

	*buf = uv_buf_init((char *)s->c->rxbuf, sizeof(s->c->rxbuf));
}

static void coord_on_recv(uv_udp_t *u, ssize_t nread, const uv_buf_t *buf,
			  const struct sockaddr *from, unsigned flags)
{
	struct node_coord_sock *s = u->data;
	struct node_coord *c = s->c;
	struct node_counters *cnt;
	struct proto_outer o;

	if (c->stopping || s != c->sock || nread == 0 || !from)
		return;
	cnt = node_counters(c->node);
	if (nread < 0) {
		log_debug("receive from coordinator %s:%u: %s", c->host, c->port,
			  uv_strerror((int)nread));
		return;
	}
	cnt->rx_packets++;
	if (flags & UV_UDP_PARTIAL ||
	    proto_decode_outer((const uint8_t *)buf->base, (size_t)nread, &o) < 0) {
		cnt->rx_bad_decode++;
		return;
	}
	switch (o.type) {
	case PROTO_HS_RESP:
		coord_on_hs_resp(c, &o);
		break;
	case PROTO_DATA:
		coord_on_data(c, (const uint8_t *)buf->base, &o);
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

/* ---- resolution and the socket ---- */

void node_coord_set_fwmark(struct node_coord *c, uint32_t fwmark)
{
	uv_os_fd_t fd;

	if (!c->sock || uv_fileno((uv_handle_t *)&c->sock->udp, &fd) < 0)
		return;
	if (setsockopt(fd, SOL_SOCKET, SO_MARK, &fwmark, sizeof(fwmark)) < 0 && fwmark)
		log_warn("cannot set fwmark 0x%x on the session socket for coordinator %s:%u: %s",
			 fwmark, c->host, c->port, strerror(errno));
}

static int coord_open_sock(struct node_coord *c, int family)
{
	struct node_coord_sock *s = calloc(1, sizeof(*s));
	const struct wg_device *dev = node_device(c->node);
	struct addr any = { 0 };
	int r;

	if (!s)
		return -ENOMEM;
	r = uv_udp_init_ex(c->loop, &s->udp, (unsigned int)family);
	if (r < 0) {
		free(s);
		return r;
	}
	s->c = c;
	s->family = family;
	s->udp.data = s;
	c->sock = s;
	any.sa.sa_family = (sa_family_t)family;
	r = uv_udp_bind(&s->udp, &any.sa, 0);
	if (r == 0)
		r = uv_udp_recv_start(&s->udp, coord_alloc, coord_on_recv);
	if (r < 0) {
		coord_close_sock(c);
		return r;
	}
	if (dev && dev->fwmark)
		node_coord_set_fwmark(c, dev->fwmark);
	return 0;
}

/* A new address for the coordinator (first resolution, or the name moved). */
static void coord_set_addr(struct node_coord *c, const struct addr *a)
{
	char buf[ADDR_STRLEN];
	int r;

	if (addr_equal(&c->addr, a) && c->sock)
		return;
	if (addr_is_set(&c->addr))
		log_info("coordinator %s:%u moved to %s", c->host, c->port, addr_format(a, buf));
	else
		log_debug("coordinator %s:%u is %s", c->host, c->port, addr_format(a, buf));
	coord_session_down(c, "address changed");
	c->addr = *a;
	memset(c->mapping, 0, sizeof(c->mapping));
	memset(c->mapping_seq, 0, sizeof(c->mapping_seq));
	c->nat_type = 0;
	if (!c->sock || c->sock->family != addr_family(a)) {
		coord_close_sock(c);
		r = coord_open_sock(c, addr_family(a));
		if (r < 0) {
			log_warn("cannot open a socket for coordinator %s: %s, retrying",
				 addr_format(a, buf), uv_strerror(r));
			memset(&c->addr, 0, sizeof(c->addr));
			c->state = NODE_COORD_RESOLVING;
			uv_timer_start(&c->resolve_timer, coord_on_resolve_timer, RESOLVE_RETRY_MS,
				       0);
			return;
		}
	}
	c->state = NODE_COORD_HANDSHAKING;
	coord_hs_begin(c);
}

static void coord_on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct node_coord *c = req->data;
	struct addrinfo *ai, *pick = NULL;
	struct addr a = { 0 };

	c->gai_pending = false;
	if (c->stopping) {
		uv_freeaddrinfo(res);
		coord_release(c);
		return;
	}
	/* Probes are IPv4 only for now, so an IPv4 address is the more useful one. */
	for (ai = status == 0 ? res : NULL; ai; ai = ai->ai_next) {
		if (ai->ai_family == AF_INET) {
			pick = ai;
			break;
		}
		if (!pick && ai->ai_family == AF_INET6)
			pick = ai;
	}
	if (!pick || addr_from_sockaddr(&a, pick->ai_addr, pick->ai_addrlen) < 0) {
		uv_freeaddrinfo(res);
		log_warn("cannot resolve coordinator %s: %s, retrying in %u s", c->host,
			 status < 0 ? uv_strerror(status) : "no address", RESOLVE_RETRY_MS / 1000);
		uv_timer_start(&c->resolve_timer, coord_on_resolve_timer, RESOLVE_RETRY_MS, 0);
		return;
	}
	uv_freeaddrinfo(res);
	addr_set_port(&a, c->port);
	uv_timer_start(&c->resolve_timer, coord_on_resolve_timer, RESOLVE_EVERY_MS, 0);
	coord_set_addr(c, &a);
}

static void coord_resolve(struct node_coord *c)
{
	struct addrinfo hints = { .ai_socktype = SOCK_DGRAM, .ai_family = AF_UNSPEC };
	int r;

	if (c->gai_pending || c->stopping)
		return;
	c->gai.data = c;
	r = uv_getaddrinfo(c->loop, &c->gai, coord_on_resolved, c->host, NULL, &hints);
	if (r < 0) {
		log_warn("cannot resolve coordinator %s: %s, retrying in %u s", c->host,
			 uv_strerror(r), RESOLVE_RETRY_MS / 1000);
		uv_timer_start(&c->resolve_timer, coord_on_resolve_timer, RESOLVE_RETRY_MS, 0);
		return;
	}
	c->gai_pending = true;
}

static void coord_on_resolve_timer(uv_timer_t *t)
{
	struct node_coord *c = t->data;

	if (!c->host_is_literal)
		coord_resolve(c);
}

static bool parse_literal(const char *host, uint16_t port, struct addr *a)
{
	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET, host, &a->in4.sin_addr) == 1) {
		a->in4.sin_family = AF_INET;
	} else if (inet_pton(AF_INET6, host, &a->in6.sin6_addr) == 1) {
		a->in6.sin6_family = AF_INET6;
	} else {
		return false;
	}
	addr_set_port(a, port);
	return true;
}

bool node_coord_same_conf(const struct node_coord *c, const struct config_coordinator *cc)
{
	return c->port == cc->port && strcmp(c->host, cc->host) == 0 &&
	       memcmp(c->public_key, cc->public_key, KEY_LEN) == 0;
}

int node_coord_start(struct node *n, uv_loop_t *loop, const struct config_coordinator *cc,
		     unsigned int id, struct node_coord **out)
{
	struct node_coord *c = calloc(1, sizeof(*c));
	uv_timer_t *timers[8];
	struct addr a;
	size_t i;

	if (!c)
		return -ENOMEM;
	c->host = strdup(cc->host);
	if (!c->host) {
		free(c);
		return -ENOMEM;
	}
	c->node = n;
	c->loop = loop;
	c->id = id;
	c->port = cc->port;
	memcpy(c->public_key, cc->public_key, KEY_LEN);
	c->hs_backoff_ms = HS_RETRY_FIRST_MS;
	c->unknown_backoff_ms = UNKNOWN_BACKOFF_FIRST_MS;
	c->state = NODE_COORD_RESOLVING;

	timers[0] = &c->hs_timer;
	timers[1] = &c->refresh_timer;
	timers[2] = &c->rekey_timer;
	timers[3] = &c->reg_timer;
	timers[4] = &c->resolve_timer;
	timers[5] = &c->probe_timer;
	timers[6] = &c->echo_timer;
	timers[7] = &c->ack_timer;
	for (i = 0; i < 8; i++) {
		uv_timer_init(loop, timers[i]); /* cannot fail for a valid loop */
		timers[i]->data = c;
	}
	*out = c;

	/* A literal needs no resolver round trip: the handshake can leave at once. */
	c->host_is_literal = parse_literal(c->host, c->port, &a);
	if (c->host_is_literal)
		coord_set_addr(c, &a);
	else
		coord_resolve(c);
	return 0;
}

cJSON *node_coord_status(const struct node_coord *c, uint64_t now_ms)
{
	cJSON *o = cJSON_CreateObject();
	char buf[ADDR_STRLEN], key[KEY_B64_LEN + 1];

	if (!o)
		return NULL;
	key_to_base64(key, c->public_key);
	cJSON_AddStringToObject(o, "host", c->host);
	cJSON_AddNumberToObject(o, "port", c->port);
	if (addr_is_set(&c->addr))
		cJSON_AddStringToObject(o, "address", addr_format(&c->addr, buf));
	else
		cJSON_AddNullToObject(o, "address");
	cJSON_AddStringToObject(o, "public_key", key);
	cJSON_AddStringToObject(o, "state", node_coord_state_name(c->state));
	if (c->last_rx_ms)
		cJSON_AddNumberToObject(o, "last_rx_s_ago",
					(double)((now_ms - c->last_rx_ms) / 1000));
	else
		cJSON_AddNullToObject(o, "last_rx_s_ago");
	if (addr_is_set(&c->mapping[0]))
		cJSON_AddStringToObject(o, "mapping", addr_format(&c->mapping[0], buf));
	else
		cJSON_AddNullToObject(o, "mapping");
	cJSON_AddStringToObject(o, "mapping_type", node_coord_mapping_type(c));
	cJSON_AddStringToObject(o, "filter", proto_filter_name(c->filter));
	return o;
}

// SPDX-License-Identifier: MIT
/*
 * link: the node's coordinator link engine, driven with a fake clock, fake
 * randomness and a fake coordinator that speaks the real protocol (the
 * responder side of session.c, and proto.c), without sockets.
 */
#include "wgpunch/link.h"

#include <sodium.h>
#include <string.h>

#include "../tap.h"

#define PORT 51900
#define WALL0 1700000000

static uint8_t node_priv[32], node_pub[32], coord_priv[32], coord_pub[32];
static uint64_t rng_state;

static void fake_random(void *arg, void *buf, size_t len)
{
	uint8_t *b = buf;
	size_t i;

	for (i = 0; i < len; i++) {
		rng_state ^= rng_state << 13;
		rng_state ^= rng_state >> 7;
		rng_state ^= rng_state << 17;
		b[i] = (uint8_t)rng_state;
	}
}

static unsigned int fills;

static uint16_t fake_pages; /* 0: a filler that knows nothing of pages */

static void fake_fill(void *arg, struct proto_register *reg)
{
	fills++;
	reg->wg_port = 51820;
	reg->n_peers = 1;
	reg->peers[0] = 0x1234 + reg->page;
	reg->n_pages = fake_pages;
}

/* The test's world: the engine, the clock, the last actions. */
struct world {
	struct link l;
	struct link_env env;
	uint64_t now;
	int64_t wall_s;
	struct link_actions out;
};

static struct addr coord_addr(uint16_t port)
{
	struct addr a;

	addr_parse(&a, "203.0.113.5:51900", false);
	addr_set_port(&a, port);
	return a;
}

static void ev(struct world *w, struct link_event e)
{
	w->env.wall_s = w->wall_s + (int64_t)(w->now / 1000);
	link_on_event(&w->l, &e, &w->env, w->now, &w->out);
}

/* Runs the clock to the armed timer and fires it. */
static void fire(struct world *w)
{
	CHECK(w->out.timer_at != 0);
	if (w->out.timer_at > w->now)
		w->now = w->out.timer_at;
	ev(w, (struct link_event){ .type = LINK_EV_TIMER });
}

/* Fires one timer of the engine (others due by then fire too, as in the shell). */
static void fire_t(struct world *w, enum link_timer t)
{
	CHECK(w->l.timers[t] != 0);
	if (w->l.timers[t] > w->now)
		w->now = w->l.timers[t];
	ev(w, (struct link_event){ .type = LINK_EV_TIMER });
}

static void world_init(struct world *w, bool literal)
{
	struct addr a = coord_addr(PORT);

	memset(w, 0, sizeof(*w));
	rng_state = 0x9e3779b97f4a7c15ull;
	w->now = 1000000; /* the monotonic clock does not start at 0 */
	w->wall_s = WALL0;
	w->env.private_key = node_priv;
	w->env.random = fake_random;
	w->env.fill_register = fake_fill;
	link_init(&w->l, PORT, coord_pub, literal ? &a : NULL);
}

/* ---- the fake coordinator ---- */

struct coord {
	struct session_hs hs;
	struct session_keys keys;
	uint32_t idx, node_idx;
	uint64_t send_ctr;
	uint8_t last_ts[12];
	bool up;
};

static uint32_t next_coord_idx = 0x100;

/* Answers an HS_INIT; returns the HS_RESP's length in out. */
static size_t coord_answer(struct coord *c, const struct link_send *s, uint8_t *out, size_t cap)
{
	struct proto_outer o, r = { .type = PROTO_HS_RESP };
	uint8_t ts[12], e[32], noise[PROTO_HS_RESP_NOISE_LEN];
	ssize_t n;

	CHECK(proto_decode_outer(s->buf, s->len, &o) == 0);
	CHECK_EQ_INT(o.type, PROTO_HS_INIT);
	CHECK(session_hs_init(&c->hs, false, (const uint8_t *)SESSION_PROLOGUE,
			      strlen(SESSION_PROLOGUE), coord_priv, NULL) == 0);
	CHECK_EQ_INT(session_hs_read_msg1(&c->hs, o.body, o.body_len, ts, sizeof(ts)), 12);
	CHECK(memcmp(c->hs.rs, node_pub, 32) == 0); /* the node's identity is its WireGuard key */
	memcpy(c->last_ts, ts, 12);
	randombytes_buf(e, sizeof(e));
	CHECK_EQ_INT(session_hs_write_msg2(&c->hs, e, NULL, 0, noise, sizeof(noise)),
		     (ssize_t)sizeof(noise));
	session_hs_split(&c->hs, &c->keys);
	c->idx = next_coord_idx++;
	c->node_idx = o.sender_idx;
	c->send_ctr = 0;
	c->up = true;
	r.sender_idx = c->idx;
	r.receiver_idx = o.sender_idx;
	r.body = noise;
	r.body_len = sizeof(noise);
	n = proto_encode_outer(out, cap, &r);
	CHECK(n > 0);
	return (size_t)n;
}

static void deliver(struct world *w, const uint8_t *buf, size_t len)
{
	ev(w, (struct link_event){ .type = LINK_EV_DATAGRAM, .buf = buf, .len = len });
}

/* The coordinator answers the HS_INIT in w->out.sends[i]. */
static void handshake(struct world *w, struct coord *c, size_t i)
{
	uint8_t buf[256];
	size_t n;
	struct link_send s;

	CHECK(i < w->out.n_sends);
	s = w->out.sends[i];
	n = coord_answer(c, &s, buf, sizeof(buf));
	deliver(w, buf, n);
}

/* Sends one inner message from the coordinator under its session. */
static void coord_send(struct world *w, struct coord *c, const struct proto_msg *m)
{
	uint8_t pt[PROTO_MAX_DATAGRAM], buf[PROTO_MAX_DATAGRAM];
	struct proto_outer o = { .type = PROTO_DATA };
	size_t pre = proto_outer_prefix_len(PROTO_DATA);
	ssize_t pl, n;

	struct proto_msg copy = *m;

	/* A coordinator always says where the REGISTER came from; tests that do not care get
	 * the node's session mapping of the test bed. */
	if (copy.type == PROTO_MSG_REGISTER_ACK && !addr_is_set(&copy.reg_ack.observed))
		addr_parse(&copy.reg_ack.observed, "198.51.100.50:40000", false);
	pl = proto_encode_msg(pt, sizeof(pt) - PROTO_TAG_LEN, &copy);
	CHECK(pl > 0);
	if (pl <= 0)
		return;
	o.receiver_idx = c->node_idx;
	o.counter = c->send_ctr++;
	o.body = pt;
	o.body_len = (size_t)pl + PROTO_TAG_LEN;
	n = proto_encode_outer(buf, sizeof(buf), &o);
	CHECK(n > 0);
	session_encrypt(c->keys.send, o.counter, buf, pre, pt, (size_t)pl, buf + pre);
	deliver(w, buf, (size_t)n);
}

/* Decrypts a DATA the node sent; returns false when it is not one for c. */
static bool coord_read(const struct coord *c, const struct link_send *s, struct proto_msg *m)
{
	uint8_t pt[PROTO_MAX_DATAGRAM];
	struct proto_outer o;
	ssize_t n;

	if (s->via != LINK_VIA_SOCKET || proto_decode_outer(s->buf, s->len, &o) < 0 ||
	    o.type != PROTO_DATA || o.receiver_idx != c->idx)
		return false;
	n = session_decrypt(c->keys.recv, o.counter, s->buf, proto_outer_prefix_len(PROTO_DATA),
			    o.body, o.body_len, pt);
	return n >= 0 && proto_decode_msg(pt, (size_t)n, m) == 0;
}

static uint8_t outer_type(const struct link_send *s)
{
	return s->len > 1 ? s->buf[1] : 0;
}

/* Finds the n-th send of inner type t to c in the last actions; -1 when none. */
static int find_msg(const struct world *w, const struct coord *c, uint8_t t, struct proto_msg *m)
{
	size_t i;

	for (i = 0; i < w->out.n_sends; i++)
		if (coord_read(c, &w->out.sends[i], m) && m->type == t)
			return (int)i;
	return -1;
}

static int find_type(const struct world *w, uint8_t outer)
{
	size_t i;

	for (i = 0; i < w->out.n_sends; i++)
		if (outer_type(&w->out.sends[i]) == outer)
			return (int)i;
	return -1;
}

static int count_type(const struct world *w, uint8_t outer)
{
	int n = 0;
	size_t i;

	for (i = 0; i < w->out.n_sends; i++)
		n += outer_type(&w->out.sends[i]) == outer;
	return n;
}

/* Fires the next timer and has the coordinator ack any REGISTER it carried. */
static void pump(struct world *w, struct coord *c)
{
	struct proto_msg m, ack = { .type = PROTO_MSG_REGISTER_ACK };
	struct link_actions saved;

	fire(w);
	if (find_msg(w, c, PROTO_MSG_REGISTER, &m) >= 0) {
		saved = w->out;
		ack.reg_ack.seq = m.reg.seq;
		coord_send(w, c, &ack);
		saved.timer_at = w->out.timer_at;
		w->out = saved;
	}
}

/* A world whose session is up and registered, probes answered. */
static void up_world(struct world *w, struct coord *c)
{
	struct proto_msg m, ack = { .type = PROTO_MSG_REGISTER_ACK };

	world_init(w, true);
	ev(w, (struct link_event){ .type = LINK_EV_START });
	handshake(w, c, 0);
	CHECK(find_msg(w, c, PROTO_MSG_REGISTER, &m) >= 0);
	ack.reg_ack.seq = m.reg.seq;
	ack.reg_ack.refresh_s = 20;
	coord_send(w, c, &ack);
}

/* ---- tests ---- */

static void test_link_handshake(void)
{
	struct world w;
	struct coord c = { 0 };
	struct proto_msg m;
	uint64_t t0;

	world_init(&w, true);
	ev(&w, (struct link_event){ .type = LINK_EV_START });
	CHECK_EQ_INT(w.l.state, LINK_HANDSHAKING);
	CHECK_EQ_INT(w.out.n_sends, 1);
	CHECK_EQ_INT(w.out.sends[0].via, LINK_VIA_SOCKET);
	CHECK(addr_equal(&w.out.sends[0].to, &w.l.literal));
	CHECK_EQ_INT(outer_type(&w.out.sends[0]), PROTO_HS_INIT);
	CHECK(!w.out.resolve); /* a literal needs no lookup */
	/* the first retry after 1 s +-25 % */
	t0 = w.now;
	CHECK(w.out.timer_at >= t0 + 750 && w.out.timer_at <= t0 + 1250);
	CHECK_EQ_INT(w.l.counters.handshakes_sent, 1);

	handshake(&w, &c, 0);
	CHECK_EQ_INT(w.l.state, LINK_UP);
	CHECK(w.out.reports & LINK_R_UP);
	CHECK_EQ_INT(w.l.counters.sessions_up, 1);
	/* REGISTER at once, and a probe round: P and P + 1 from the WireGuard port */
	CHECK_EQ_INT(w.out.n_sends, 3);
	CHECK(find_msg(&w, &c, PROTO_MSG_REGISTER, &m) == 0);
	CHECK_EQ_INT(m.reg.wg_port, 51820);
	CHECK_EQ_INT(m.reg.n_peers, 1);
	CHECK_EQ_INT(w.out.sends[1].via, LINK_VIA_PROBER);
	CHECK_EQ_INT(w.out.sends[2].via, LINK_VIA_PROBER);
	CHECK_EQ_INT(addr_port(&w.out.sends[1].to), PORT);
	CHECK_EQ_INT(addr_port(&w.out.sends[2].to), PORT + 1);
	CHECK_EQ_INT(outer_type(&w.out.sends[1]), PROTO_PROBE);
	CHECK_EQ_INT(w.l.counters.registers_sent, 1);
	/* The TAI64N came from the injected wall clock. */
	{
		uint8_t ts[12];

		session_tai64n(ts, w.env.wall_s, 0);
		CHECK(memcmp(c.last_ts, ts, 8) == 0);
	}
	link_clear(&w.l);
}

static void test_link_no_key_no_handshake(void)
{
	struct world w;

	world_init(&w, true);
	w.env.private_key = NULL;
	ev(&w, (struct link_event){ .type = LINK_EV_START });
	CHECK_EQ_INT(w.out.n_sends, 0);
	CHECK_EQ_INT(w.out.timer_at, 0);
	w.env.private_key = node_priv;
	ev(&w, (struct link_event){ .type = LINK_EV_IDENTITY });
	CHECK_EQ_INT(count_type(&w, PROTO_HS_INIT), 1);
}

static void test_link_lost_hs_resp(void)
{
	struct world w;
	struct coord c = { 0 }, stale = { 0 };
	uint64_t prev, gap[6];
	struct link_send first;
	uint8_t buf[256];
	size_t n;
	int i;

	world_init(&w, true);
	ev(&w, (struct link_event){ .type = LINK_EV_START });
	first = w.out.sends[0];
	for (i = 0; i < 6; i++) {
		prev = w.now;
		fire(&w);
		gap[i] = w.now - prev;
		CHECK_EQ_INT(count_type(&w, PROTO_HS_INIT), 1);
	}
	/* three quick retries 1 s apart, then 2, 4, 8 s ... (+-25 %) */
	CHECK(gap[0] >= 750 && gap[0] <= 1250);
	CHECK(gap[1] >= 750 && gap[1] <= 1250);
	CHECK(gap[2] >= 750 && gap[2] <= 1250);
	CHECK(gap[3] >= 1500 && gap[3] <= 2500);
	CHECK(gap[4] >= 3000 && gap[4] <= 5000);
	CHECK(gap[5] >= 6000 && gap[5] <= 10000);
	CHECK_EQ_INT(w.l.counters.handshakes_sent, 7);
	CHECK_EQ_INT(w.l.state, LINK_HANDSHAKING);

	/* An answer to an earlier HS_INIT names an index that is no longer pending. */
	n = coord_answer(&stale, &first, buf, sizeof(buf));
	deliver(&w, buf, n);
	CHECK_EQ_INT(w.l.counters.rx_bad_index, 1);
	CHECK_EQ_INT(w.l.state, LINK_HANDSHAKING);

	/* The backoff is capped at 30 s. */
	for (i = 0; i < 6; i++) {
		prev = w.now;
		fire(&w);
	}
	CHECK(w.now - prev <= 30000 * 5 / 4);
	CHECK(w.now - prev >= 30000 * 3 / 4);

	handshake(&w, &c, 0);
	CHECK_EQ_INT(w.l.state, LINK_UP);
}

/*
 * A coordinator with a long receive queue (a flood it cannot keep up with) answers an HS_INIT
 * after our retry timer fired and sent the next one. That answer still counts: the session is
 * up with it, and the newer attempt stays pending as a rekey, whose answer replaces the
 * session when the coordinator sends it (it then replaced its side too). One attempt back
 * only: two retries later, the answer is stale.
 */
static void test_link_late_hs_resp_after_retry(void)
{
	struct world w;
	struct coord c1 = { 0 }, c2 = { 0 };
	struct link_send first, second;
	uint8_t buf1[256], buf2[256];
	size_t n1, n2;

	world_init(&w, true);
	ev(&w, (struct link_event){ .type = LINK_EV_START });
	first = w.out.sends[0];
	fire(&w); /* the retry: a new HS_INIT, another index */
	CHECK_EQ_INT(outer_type(&w.out.sends[0]), PROTO_HS_INIT);
	second = w.out.sends[0];
	n1 = coord_answer(&c1, &first, buf1, sizeof(buf1));
	n2 = coord_answer(&c2, &second, buf2, sizeof(buf2));
	CHECK(c1.node_idx != c2.node_idx);

	deliver(&w, buf1, n1); /* the first attempt's, late */
	CHECK_EQ_INT(w.l.counters.rx_bad_index, 0);
	CHECK_EQ_INT(w.l.state, LINK_UP);
	CHECK(w.out.reports & LINK_R_UP);
	CHECK_EQ_INT(w.l.cur.local_idx, c1.node_idx);
	CHECK_EQ_INT(w.l.cur.remote_idx, c1.idx);
	CHECK(w.l.hs_pending);
	CHECK(!w.l.hs_prev_pending);

	deliver(&w, buf2, n2); /* then the newer one's: it replaces the session */
	CHECK_EQ_INT(w.l.counters.rx_bad_index, 0);
	CHECK(w.out.reports & LINK_R_REKEYED);
	CHECK_EQ_INT(w.l.cur.local_idx, c2.node_idx);
	CHECK_EQ_INT(w.l.cur.remote_idx, c2.idx);
	CHECK(!w.l.hs_pending);
	CHECK_EQ_INT(w.l.counters.sessions_up, 1);

	/* Two retries back: stale. */
	world_init(&w, true);
	ev(&w, (struct link_event){ .type = LINK_EV_START });
	first = w.out.sends[0];
	fire(&w);
	fire(&w);
	n1 = coord_answer(&c1, &first, buf1, sizeof(buf1));
	deliver(&w, buf1, n1);
	CHECK_EQ_INT(w.l.counters.rx_bad_index, 1);
	CHECK_EQ_INT(w.l.state, LINK_HANDSHAKING);
	link_clear(&w.l);
}

static void test_link_register_retries_then_new_handshake(void)
{
	struct world w;
	struct coord c = { 0 }, c2 = { 0 };
	struct proto_msg m;
	uint32_t seq;
	int i, regs = 0;

	world_init(&w, true);
	ev(&w, (struct link_event){ .type = LINK_EV_START });
	handshake(&w, &c, 0);
	CHECK(find_msg(&w, &c, PROTO_MSG_REGISTER, &m) >= 0);
	seq = m.reg.seq;
	/* Nothing comes back: REGISTER is sent again four times (1, 2, 2, 2 s) ... */
	for (i = 0; i < 20 && w.l.state == LINK_UP; i++) {
		fire(&w);
		if (find_msg(&w, &c, PROTO_MSG_REGISTER, &m) >= 0) {
			CHECK_EQ_INT(m.reg.seq, seq); /* the same REGISTER, retransmitted */
			regs++;
		}
	}
	CHECK_EQ_INT(regs, LINK_REGISTER_TRIES);
	/* ... then the session is judged dead and a new handshake leaves at once. */
	CHECK_EQ_INT(w.l.state, LINK_HANDSHAKING);
	CHECK(w.out.reports & LINK_R_DOWN);
	CHECK(strcmp(w.out.down_why, "REGISTER unanswered") == 0);
	CHECK_EQ_INT(count_type(&w, PROTO_HS_INIT), 1);
	handshake(&w, &c2, (size_t)find_type(&w, PROTO_HS_INIT));
	CHECK_EQ_INT(w.l.state, LINK_UP);
	CHECK(find_msg(&w, &c2, PROTO_MSG_REGISTER, &m) >= 0);
	CHECK(m.reg.seq > seq);
}

static void test_link_register_alive_no_new_handshake(void)
{
	struct world w;
	struct coord c = { 0 };
	struct proto_msg m, fr = { .type = PROTO_MSG_FILTER_RESULT };
	int i, regs = 0;

	world_init(&w, true);
	ev(&w, (struct link_event){ .type = LINK_EV_START });
	handshake(&w, &c, 0);
	/* DATA comes (only the acks get lost): the session works. */
	fr.filter_result.filter = PROTO_FILTER_SAFE;
	coord_send(&w, &c, &fr);
	for (i = 0; i < 40; i++) {
		fire_t(&w, LINK_T_REG);
		if (find_msg(&w, &c, PROTO_MSG_REGISTER, &m) >= 0)
			regs++;
		if (w.l.timers[LINK_T_REG] == 0)
			break;
	}
	CHECK_EQ_INT(regs, LINK_REGISTER_TRIES_ALIVE);
	CHECK_EQ_INT(w.l.state, LINK_UP);
	CHECK(!w.l.reg_pending); /* the refresh sends the next */
}

static void test_link_session_unknown(void)
{
	struct world w;
	struct coord c = { 0 };
	struct proto_outer o = { .type = PROTO_SESSION_UNKNOWN };
	uint8_t buf[64];
	ssize_t n;
	uint64_t t;

	up_world(&w, &c);
	/* One naming another index is not ours to act on. */
	o.receiver_idx = c.idx + 1000;
	n = proto_encode_outer(buf, sizeof(buf), &o);
	deliver(&w, buf, (size_t)n);
	CHECK_EQ_INT(w.l.state, LINK_UP);
	CHECK_EQ_INT(w.l.counters.rx_session_unknown, 1);
	CHECK_EQ_INT(w.l.counters.rx_unexpected, 1);

	o.receiver_idx = c.idx;
	n = proto_encode_outer(buf, sizeof(buf), &o);
	t = w.now;
	deliver(&w, buf, (size_t)n);
	CHECK_EQ_INT(w.l.state, LINK_HANDSHAKING);
	CHECK(w.out.reports & LINK_R_DOWN);
	CHECK_EQ_INT(w.out.n_sends, 0);
	/* The new handshake waits a random part of the backoff (1 s at first) ... */
	CHECK(w.l.timers[LINK_T_HS] >= t && w.l.timers[LINK_T_HS] <= t + 1000);
	CHECK_EQ_INT(w.l.timers[LINK_T_REFRESH], 0);
	fire(&w);
	CHECK_EQ_INT(count_type(&w, PROTO_HS_INIT), 1);
	/* ... which doubles for the next one, until a REGISTER_ACK shows the session works. */
	CHECK_EQ_INT(w.l.unknown_backoff_ms, 2000);
	{
		struct coord c2 = { 0 };
		struct proto_msg m, ack = { .type = PROTO_MSG_REGISTER_ACK };

		handshake(&w, &c2, 0);
		CHECK(find_msg(&w, &c2, PROTO_MSG_REGISTER, &m) >= 0);
		ack.reg_ack.seq = m.reg.seq;
		coord_send(&w, &c2, &ack);
		CHECK_EQ_INT(w.l.unknown_backoff_ms, LINK_UNKNOWN_BACKOFF_FIRST_MS);
	}
}

/* The coordinator's REGISTER_ACK sets the re-key interval, within bounds, from the session's
 * start; and the observed session address is kept. */
static void test_link_rekey_interval_from_coordinator(void)
{
	struct world w;
	struct coord c = { 0 };
	struct proto_msg m, ack = { .type = PROTO_MSG_REGISTER_ACK };
	uint64_t up_at;

	up_world(&w, &c);
	up_at = w.l.session_up_ms;
	CHECK_EQ_INT(w.l.timers[LINK_T_REKEY], up_at + LINK_REKEY_MS);
	w.l.reg_pending = false;
	w.now += 1000;
	link_on_event(&w.l, &(struct link_event){ .type = LINK_EV_REGISTER }, &w.env, w.now,
		      &w.out);
	CHECK(find_msg(&w, &c, PROTO_MSG_REGISTER, &m) >= 0);
	ack.reg_ack.seq = m.reg.seq;
	ack.reg_ack.refresh_s = 20;
	ack.reg_ack.rekey_s = 900;
	CHECK_EQ_INT(addr_parse(&ack.reg_ack.observed, "198.51.100.77:40000", false), 0);
	coord_send(&w, &c, &ack);
	CHECK_EQ_INT(w.l.rekey_ms, 900000);
	CHECK_EQ_INT(w.l.timers[LINK_T_REKEY], up_at + 900000);
	CHECK(addr_equal(&w.l.observed, &ack.reg_ack.observed));

	/* Out of bounds: clamped, not obeyed. */
	link_on_event(&w.l, &(struct link_event){ .type = LINK_EV_REGISTER }, &w.env, w.now,
		      &w.out);
	CHECK(find_msg(&w, &c, PROTO_MSG_REGISTER, &m) >= 0);
	ack.reg_ack.seq = m.reg.seq;
	ack.reg_ack.rekey_s = 1;
	coord_send(&w, &c, &ack);
	CHECK_EQ_INT(w.l.rekey_ms, LINK_REKEY_MIN_S * 1000);
}

static void test_link_rekey(void)
{
	struct world w;
	struct coord c = { 0 }, c2 = { 0 };
	struct proto_msg fr = { .type = PROTO_MSG_FILTER_RESULT };
	int i;

	up_world(&w, &c);
	CHECK_EQ_INT(w.l.timers[LINK_T_REKEY], w.now + LINK_REKEY_MS);
	/* Refreshes come every 20 s until the re-key at 120 s. */
	for (i = 0; i < 50 && count_type(&w, PROTO_HS_INIT) == 0; i++)
		pump(&w, &c);
	CHECK_EQ_INT(count_type(&w, PROTO_HS_INIT), 1);
	CHECK_EQ_INT(w.l.state, LINK_UP); /* the old session carries on meanwhile */
	handshake(&w, &c2, (size_t)find_type(&w, PROTO_HS_INIT));
	CHECK(w.out.reports & LINK_R_REKEYED);
	CHECK(!(w.out.reports & LINK_R_UP));
	CHECK_EQ_INT(w.l.counters.sessions_up, 1);
	/* DATA still in flight under the previous session counts. */
	fr.filter_result.filter = PROTO_FILTER_POISONABLE;
	coord_send(&w, &c, &fr);
	CHECK_EQ_INT(w.l.filter, PROTO_FILTER_POISONABLE);
	CHECK_EQ_INT(w.l.counters.rx_bad_index, 0);
	/* A replayed copy does not. */
	c.send_ctr--;
	coord_send(&w, &c, &fr);
	CHECK_EQ_INT(w.l.counters.rx_replay, 1);
}

static void mapping(struct world *w, struct coord *c, uint64_t seq, uint8_t idx, const char *obs)
{
	struct proto_msg m = { .type = PROTO_MSG_MAPPING };

	m.mapping.probe_seq = seq;
	m.mapping.port_index = idx;
	addr_parse(&m.mapping.observed, obs, false);
	coord_send(w, c, &m);
}

static void test_link_mapping_rounds(void)
{
	struct world w;
	struct coord c = { 0 };
	int i, probes = 0;

	up_world(&w, &c);
	CHECK_EQ_INT(w.l.probe_seq, 2);
	/* Only the P mapping of the round comes back: no verdict, and the round goes again. */
	mapping(&w, &c, 1, 0, "198.51.100.7:40000");
	CHECK(!(w.out.reports & LINK_R_MAPPING));
	CHECK_EQ_INT(w.l.nat_type, 0);
	CHECK(strcmp(link_mapping_type(&w.l), "unknown") == 0);
	fire_t(&w, LINK_T_PROBE); /* the probe timer: 500 ms +-25 % */
	CHECK_EQ_INT(count_type(&w, PROTO_PROBE), 2);
	CHECK_EQ_INT(w.l.probe_seq, 4);
	/* Both of the second round: endpoint-independent, the series is answered. */
	mapping(&w, &c, 3, 0, "198.51.100.7:40000");
	mapping(&w, &c, 4, 1, "198.51.100.7:40000");
	CHECK(w.out.reports & LINK_R_MAPPING);
	CHECK_EQ_INT(w.l.nat_type, 1);
	CHECK(strcmp(link_mapping_type(&w.l), "endpoint-independent") == 0);
	CHECK_EQ_INT(w.l.timers[LINK_T_PROBE], 0);
	/* An older MAPPING is not believed. */
	mapping(&w, &c, 2, 1, "198.51.100.9:1");
	CHECK_EQ_INT(w.l.counters.rx_unexpected, 1);
	/* A local change probes again; a different P + 1 port means endpoint-dependent. */
	ev(&w, (struct link_event){ .type = LINK_EV_PROBE });
	CHECK_EQ_INT(count_type(&w, PROTO_PROBE), 2);
	mapping(&w, &c, 5, 0, "198.51.100.7:40000");
	mapping(&w, &c, 6, 1, "198.51.100.7:40001");
	CHECK_EQ_INT(w.l.nat_type, 2);
	CHECK(w.out.reports & LINK_R_MAPPING);

	/* A series nobody answers stops after LINK_PROBE_TRIES more rounds (the REGISTERs of
	 * the refreshes meanwhile are acked). */
	ev(&w, (struct link_event){ .type = LINK_EV_PROBE });
	CHECK_EQ_INT(count_type(&w, PROTO_PROBE), 2);
	for (i = 0; i < 20; i++) {
		struct proto_msg m, ack = { .type = PROTO_MSG_REGISTER_ACK };
		unsigned int rep;

		fire(&w);
		probes += count_type(&w, PROTO_PROBE);
		rep = w.out.reports;
		if (find_msg(&w, &c, PROTO_MSG_REGISTER, &m) >= 0) {
			ack.reg_ack.seq = m.reg.seq;
			coord_send(&w, &c, &ack);
		}
		if (rep & LINK_R_PROBES_GIVEN_UP)
			break;
	}
	CHECK_EQ_INT(probes, 2 * LINK_PROBE_TRIES);
	CHECK_EQ_INT(w.l.probe_first_seq, 0);
}

/* The prober sends with LINK_VIA_PROBER; index of the first such send to an IPv6 address. */
static int find_probe6(const struct world *w)
{
	for (size_t i = 0; i < w->out.n_sends; i++)
		if (w->out.sends[i].via == LINK_VIA_PROBER &&
		    addr_family(&w->out.sends[i].to) == AF_INET6)
			return (int)i;
	return -1;
}

/*
 * Beside an IPv4 session, the coordinator's IPv6 address takes one probe toward P after each
 * complete IPv4 round (never with it: one sequence per purpose on the coordinator), and its
 * MAPPING is the IPv6 mapping, not part of the IPv4 rounds. A lost one is sent again with the
 * refresh.
 */
static void test_link_ipv6_probe_beside_ipv4(void)
{
	struct world w;
	struct coord c = { 0 };
	struct addr six;
	int i;

	world_init(&w, false);
	addr_parse(&six, "[2001:db8:ff::1]:51900", false);
	ev(&w, (struct link_event){ .type = LINK_EV_START });
	ev(&w,
	   (struct link_event){ .type = LINK_EV_RESOLVED, .addr = coord_addr(PORT), .addr6 = six });
	CHECK(addr_equal(&w.l.addr6, &six));
	handshake(&w, &c, 0);
	CHECK_EQ_INT(w.l.state, LINK_UP);
	CHECK_EQ_INT(count_type(&w, PROTO_PROBE), 2); /* the IPv4 round only */
	CHECK_EQ_INT(find_probe6(&w), -1);
	mapping(&w, &c, 1, 0, "198.51.100.7:40000");
	CHECK_EQ_INT(find_probe6(&w), -1); /* the round is not complete yet */
	mapping(&w, &c, 2, 1, "198.51.100.7:40000");
	i = find_probe6(&w);
	CHECK(i >= 0);
	if (i < 0)
		return;
	CHECK_EQ_INT(addr_port(&w.out.sends[i].to), PORT);
	CHECK_EQ_INT(w.out.sends[i].buf[1], PROTO_PROBE);
	CHECK_EQ_INT(w.l.probe_seq, 3);
	CHECK_EQ_INT(w.l.nat_type, 1);
	/* Its MAPPING: the IPv6 mapping; the IPv4 mappings stay. */
	mapping(&w, &c, 3, 0, "[2001:db8:a::2]:51820");
	CHECK(w.out.reports & LINK_R_MAPPING6);
	CHECK(!(w.out.reports & LINK_R_MAPPING));
	CHECK(strcmp(addr_format(&w.l.mapping6, (char[ADDR_STRLEN]){ 0 }),
		     "[2001:db8:a::2]:51820") == 0);
	CHECK(strcmp(addr_format(&w.l.mapping[0], (char[ADDR_STRLEN]){ 0 }),
		     "198.51.100.7:40000") == 0);
	CHECK_EQ_INT(w.l.mapping_seq[0], 1);
	/* Only toward P, and not older than the last one. */
	mapping(&w, &c, 3, 1, "[2001:db8:a::2]:51820");
	CHECK_EQ_INT(w.l.counters.rx_unexpected, 1);
	mapping(&w, &c, 2, 0, "[2001:db8:a::3]:51820");
	CHECK_EQ_INT(w.l.counters.rx_unexpected, 2);

	/* The IPv6 address goes (the name lost it): no mapping6, and no more IPv6 probes. */
	ev(&w, (struct link_event){ .type = LINK_EV_RESOLVED, .addr = coord_addr(PORT) });
	CHECK(!addr_is_set(&w.l.addr6));
	CHECK(!addr_is_set(&w.l.mapping6));
	/* It comes back: one probe at once (the session is up), then with each refresh until
	 * its MAPPING comes. */
	ev(&w,
	   (struct link_event){ .type = LINK_EV_RESOLVED, .addr = coord_addr(PORT), .addr6 = six });
	CHECK(find_probe6(&w) >= 0);
	fire_t(&w, LINK_T_REFRESH);
	CHECK(find_probe6(&w) >= 0);
}

/* An IPv6 coordinator address as the session's: no separate IPv6 probe, the rounds go there. */
static void test_link_ipv6_session(void)
{
	struct world w;
	struct coord c = { 0 };
	struct addr six;

	world_init(&w, false);
	addr_parse(&six, "[2001:db8:ff::1]:51900", false);
	ev(&w, (struct link_event){ .type = LINK_EV_START });
	/* An IPv6 addr6 beside an IPv6 session means nothing. */
	ev(&w, (struct link_event){ .type = LINK_EV_RESOLVED, .addr = six, .addr6 = six });
	CHECK(!addr_is_set(&w.l.addr6));
	CHECK_EQ_INT(count_type(&w, PROTO_HS_INIT), 1);
	CHECK(addr_equal(&w.out.sends[0].to, &six));
	handshake(&w, &c, 0);
	CHECK_EQ_INT(w.l.state, LINK_UP);
	CHECK_EQ_INT(count_type(&w, PROTO_PROBE), 2);
	mapping(&w, &c, 1, 0, "[2001:db8:a::2]:51820");
	mapping(&w, &c, 2, 1, "[2001:db8:a::2]:51820");
	CHECK(w.out.reports & LINK_R_MAPPING);
	CHECK_EQ_INT(w.l.nat_type, 1);
	CHECK_EQ_INT(find_probe6(&w), -1);
}

static void test_link_filter_echo(void)
{
	struct world w;
	struct coord c = { 0 };
	struct proto_msg go = { .type = PROTO_MSG_FILTER_GO }, m;
	struct proto_msg res = { .type = PROTO_MSG_FILTER_RESULT };
	int i, echoes;

	up_world(&w, &c);
	go.filter_go.nonce = 0xabcdef;
	coord_send(&w, &c, &go);
	i = find_msg(&w, &c, PROTO_MSG_FILTER_ECHO, &m);
	CHECK(i >= 0);
	CHECK_EQ_INT(m.filter_echo.nonce, 0xabcdef);
	/* From the session socket to P + 1. */
	CHECK_EQ_INT(w.out.sends[i].via, LINK_VIA_SOCKET);
	CHECK_EQ_INT(addr_port(&w.out.sends[i].to), PORT + 1);
	/* No result: the echo is repeated (0.25 s, then doubling) ... */
	fire_t(&w, LINK_T_ECHO);
	CHECK(find_msg(&w, &c, PROTO_MSG_FILTER_ECHO, &m) >= 0);
	/* ... until FILTER_RESULT comes. */
	res.filter_result.filter = PROTO_FILTER_SAFE;
	coord_send(&w, &c, &res);
	CHECK(w.out.reports & LINK_R_FILTER);
	CHECK_EQ_INT(w.l.filter, PROTO_FILTER_SAFE);
	CHECK(!w.l.echo_pending);
	CHECK_EQ_INT(w.l.timers[LINK_T_ECHO], 0);

	/* Unanswered: three repeats, then the coordinator's test is over anyway. */
	coord_send(&w, &c, &go);
	echoes = 1;
	for (i = 0; i < 10 && w.l.timers[LINK_T_ECHO]; i++) {
		w.now = w.l.timers[LINK_T_ECHO];
		ev(&w, (struct link_event){ .type = LINK_EV_TIMER });
		echoes += find_msg(&w, &c, PROTO_MSG_FILTER_ECHO, &m) >= 0;
	}
	CHECK_EQ_INT(echoes, 1 + LINK_ECHO_TRIES);
}

static void test_link_punch_delivery(void)
{
	struct world w;
	struct coord c = { 0 };
	struct proto_msg p = { .type = PROTO_MSG_PUNCH }, m;
	uint64_t t;

	up_world(&w, &c);
	p.punch.attempt = 77;
	p.punch.flags = PROTO_PUNCH_F_ACK;
	memset(p.punch.peer_key, 9, KEY_LEN);
	addr_parse(&p.punch.peer_public, "198.51.100.20:40000", false);
	p.punch.n_lan = 1;
	addr_parse(&p.punch.lan[0], "198.18.0.10:51820", false);
	coord_send(&w, &c, &p);
	CHECK(w.out.reports & LINK_R_PUNCH);
	CHECK_EQ_INT(w.out.punch.attempt, 77);
	CHECK_EQ_INT(w.out.punch.n_lan, 1);
	CHECK(addr_equal(&w.out.punch.peer_public, &p.punch.peer_public));
	CHECK_EQ_INT(w.out.n_sends, 0); /* the ack waits for the endpoint write */

	t = w.now;
	ev(&w, (struct link_event){ .type = LINK_EV_PUNCH_DONE, .attempt = 77 });
	CHECK(find_msg(&w, &c, PROTO_MSG_PUNCH_ACK, &m) >= 0);
	CHECK_EQ_INT(m.punch_ack.attempt, 77);
	/* sent once more 100 ms later, nothing answers it */
	CHECK_EQ_INT(w.l.timers[LINK_T_ACK], t + LINK_ACK_REPEAT_MS);
	fire_t(&w, LINK_T_ACK);
	CHECK(find_msg(&w, &c, PROTO_MSG_PUNCH_ACK, &m) >= 0);
	CHECK_EQ_INT(m.punch_ack.attempt, 77);
	CHECK_EQ_INT(w.l.n_ack_repeat, 0);

	/* Many at once: the repeats beyond LINK_ACK_REPEAT_MAX go out right away. */
	for (t = 0; t < LINK_ACK_REPEAT_MAX; t++) {
		ev(&w,
		   (struct link_event){ .type = LINK_EV_PUNCH_DONE, .attempt = 100 + (uint32_t)t });
		CHECK_EQ_INT(w.out.n_sends, 1);
	}
	ev(&w, (struct link_event){ .type = LINK_EV_PUNCH_DONE, .attempt = 200 });
	CHECK_EQ_INT(w.out.n_sends, 2);
	fire_t(&w, LINK_T_ACK);
	CHECK_EQ_INT(w.out.n_sends, LINK_ACK_REPEAT_MAX);
	/* PUNCH_ACK needs the session: none leaves once it is down. */
	ev(&w, (struct link_event){ .type = LINK_EV_SOCKET_FAILED });
	ev(&w, (struct link_event){ .type = LINK_EV_PUNCH_DONE, .attempt = 300 });
	CHECK_EQ_INT(w.out.n_sends, 0);
}

static void test_link_resync(void)
{
	struct world w;
	struct coord c = { 0 };
	struct proto_msg m;

	up_world(&w, &c);
	ev(&w, (struct link_event){ .type = LINK_EV_RESYNC, .flag = false });
	CHECK_EQ_INT(w.out.n_sends, 0); /* the next REGISTER carries it */
	ev(&w, (struct link_event){ .type = LINK_EV_RESYNC, .flag = true });
	CHECK(find_msg(&w, &c, PROTO_MSG_REGISTER, &m) >= 0);
	CHECK(m.reg.flags & PROTO_REG_F_RESYNC);
	CHECK_EQ_INT(count_type(&w, PROTO_PROBE), 0);
	ev(&w, (struct link_event){ .type = LINK_EV_REGISTER, .flag = true });
	CHECK(find_msg(&w, &c, PROTO_MSG_REGISTER, &m) >= 0);
	CHECK(!(m.reg.flags & PROTO_REG_F_RESYNC));
	CHECK_EQ_INT(count_type(&w, PROTO_PROBE), 2);
}

static void test_link_dns_backoff(void)
{
	struct world w;
	uint64_t prev, gap;
	uint64_t expect = LINK_RESOLVE_RETRY_FIRST_MS;
	int i;

	world_init(&w, false);
	ev(&w, (struct link_event){ .type = LINK_EV_START });
	CHECK(w.out.resolve);
	CHECK_EQ_INT(w.out.n_sends, 0);
	CHECK_EQ_INT(w.l.state, LINK_RESOLVING);
	for (i = 0; i < 10; i++) {
		ev(&w, (struct link_event){ .type = LINK_EV_RESOLVE_FAILED });
		CHECK(w.out.reports & LINK_R_RESOLVE_RETRY);
		prev = w.now;
		fire(&w);
		gap = w.now - prev;
		/* 5 s, 10 s, 20 s ... up to 5 min, each +-25 % */
		CHECK(gap >= expect * 3 / 4 && gap <= expect * 5 / 4);
		CHECK(w.out.resolve);
		expect = expect * 2 > LINK_RESOLVE_RETRY_MAX_MS ? LINK_RESOLVE_RETRY_MAX_MS
								: expect * 2;
	}
	CHECK_EQ_INT(w.l.resolve_backoff_ms, LINK_RESOLVE_RETRY_MAX_MS);
	/* A lookup that works starts the backoff over and handshakes at once. */
	ev(&w, (struct link_event){ .type = LINK_EV_RESOLVED, .addr = coord_addr(PORT) });
	CHECK_EQ_INT(w.l.resolve_backoff_ms, LINK_RESOLVE_RETRY_FIRST_MS);
	CHECK_EQ_INT(count_type(&w, PROTO_HS_INIT), 1);
	CHECK_EQ_INT(w.l.timers[LINK_T_RESOLVE], w.now + LINK_RESOLVE_EVERY_MS);
	/* A lookup already under way is not asked for twice (4 unanswered HS_INITs ask one). */
	for (i = 0; i < 6; i++)
		fire(&w);
	CHECK(w.l.resolving);
	/* A socket that cannot be opened: resolving again, with the backoff. */
	ev(&w, (struct link_event){ .type = LINK_EV_SOCKET_FAILED });
	CHECK_EQ_INT(w.l.state, LINK_RESOLVING);
	CHECK(!addr_is_set(&w.l.addr));
	CHECK(w.out.reports & LINK_R_RESOLVE_RETRY);
}

/* The coordinator's address changed: the session goes and a handshake starts there. */
static void test_link_moved(void)
{
	struct world w;
	struct coord c = { 0 };
	struct addr other;

	world_init(&w, false);
	ev(&w, (struct link_event){ .type = LINK_EV_START });
	ev(&w, (struct link_event){ .type = LINK_EV_RESOLVED, .addr = coord_addr(PORT) });
	handshake(&w, &c, 0);
	CHECK_EQ_INT(w.l.state, LINK_UP);
	ev(&w, (struct link_event){ .type = LINK_EV_RESOLVED, .addr = coord_addr(PORT) });
	CHECK_EQ_INT(w.l.state, LINK_UP); /* the same address changes nothing */
	CHECK_EQ_INT(w.out.n_sends, 0);
	addr_parse(&other, "203.0.113.6:51900", false);
	ev(&w, (struct link_event){ .type = LINK_EV_RESOLVED, .addr = other });
	CHECK(w.out.reports & LINK_R_MOVED);
	CHECK(w.out.reports & LINK_R_DOWN);
	CHECK_EQ_INT(w.l.state, LINK_HANDSHAKING);
	CHECK_EQ_INT(count_type(&w, PROTO_HS_INIT), 1);
	CHECK(addr_equal(&w.out.sends[0].to, &other));
}

/* The engine runs on now_ms only: the same run with the wall clock an hour back (or a day
 * ahead) part way through decides the same sends at the same times. */
static void run_trace(int64_t jump, uint64_t trace[64], size_t sends[64])
{
	struct world w;
	struct coord c = { 0 };
	int i;

	up_world(&w, &c);
	for (i = 0; i < 64; i++) {
		if (i == 10)
			w.wall_s += jump;
		pump(&w, &c);
		trace[i] = w.out.timer_at;
		sends[i] = w.out.n_sends;
	}
}

static void test_link_wall_clock_jump(void)
{
	uint64_t t0[64], t1[64], t2[64];
	size_t s0[64], s1[64], s2[64];

	run_trace(0, t0, s0);
	run_trace(-3600, t1, s1);
	run_trace(86400, t2, s2);
	CHECK(memcmp(t0, t1, sizeof(t0)) == 0);
	CHECK(memcmp(t0, t2, sizeof(t0)) == 0);
	CHECK(memcmp(s0, s1, sizeof(s0)) == 0);
	CHECK(memcmp(s0, s2, sizeof(s0)) == 0);
}

static void test_link_garbage(void)
{
	struct world w;
	struct coord c = { 0 };
	uint8_t junk[40] = { PROTO_VERSION, PROTO_DATA };
	uint8_t poison[PROTO_HDR_LEN + PROTO_POISON_LEN] = { PROTO_VERSION, PROTO_POISON };

	up_world(&w, &c);
	deliver(&w, junk, 3);
	CHECK_EQ_INT(w.l.counters.rx_bad_decode, 1);
	ev(&w, (struct link_event){
		       .type = LINK_EV_DATAGRAM, .buf = junk, .len = 40, .truncated = true });
	CHECK_EQ_INT(w.l.counters.rx_bad_decode, 2);
	deliver(&w, poison, sizeof(poison));
	CHECK_EQ_INT(w.l.counters.rx_poison, 1);
	CHECK_EQ_INT(w.l.state, LINK_UP);
	CHECK_EQ_INT(w.out.n_sends, 0);
}

/* An up world whose first probe round is answered, re-keying only after an hour. */
static void quiet_world(struct world *w, struct coord *c)
{
	struct proto_msg m, ack = { .type = PROTO_MSG_REGISTER_ACK };

	up_world(w, c);
	mapping(w, c, 1, 0, "198.51.100.50:51820");
	mapping(w, c, 2, 1, "198.51.100.50:51820");
	CHECK_EQ_INT(w->l.timers[LINK_T_PROBE], 0);
	ev(w, (struct link_event){ .type = LINK_EV_REGISTER });
	CHECK(find_msg(w, c, PROTO_MSG_REGISTER, &m) >= 0);
	ack.reg_ack.seq = m.reg.seq;
	ack.reg_ack.rekey_s = 3600;
	coord_send(w, c, &ack);
	CHECK_EQ_INT(w->l.rekey_ms, 3600000);
}

/* Issue 9's cost bound: an idle node sends one datagram per refresh to a coordinator. */
static void test_link_idle_sends_one_datagram_per_refresh(void)
{
	struct world w;
	struct coord c = { 0 };
	uint64_t start;
	int sends = 0, i;

	quiet_world(&w, &c);
	start = w.now;
	for (i = 0; i < 1000 && w.now < start + 600000; i++) {
		pump(&w, &c);
		sends += (int)w.out.n_sends;
		CHECK_EQ_INT(count_type(&w, PROTO_PROBE), 0);
		CHECK_EQ_INT(count_type(&w, PROTO_HS_INIT), 0);
	}
	/* 600 s from the last REGISTER: 30 refreshes, the last one at the end. */
	CHECK_EQ_INT(sends, 30);
}

/* Traffic in the tunnels makes the refresh frequent, so a rebinding shows within seconds;
 * idle again, it goes back to the slow pace. */
static void test_link_active_refresh(void)
{
	struct world w;
	struct coord c = { 0 };
	uint64_t t0;

	quiet_world(&w, &c);
	CHECK(w.l.timers[LINK_T_REFRESH] >= w.now + LINK_REFRESH_MS - 1000);
	ev(&w, (struct link_event){ .type = LINK_EV_ACTIVITY, .flag = true });
	CHECK_EQ_INT(w.l.timers[LINK_T_REFRESH], w.now + LINK_REFRESH_ACTIVE_MS);
	t0 = w.now;
	pump(&w, &c);
	CHECK_EQ_INT(w.now, t0 + LINK_REFRESH_ACTIVE_MS);
	CHECK_EQ_INT(w.l.timers[LINK_T_REFRESH], w.now + LINK_REFRESH_ACTIVE_MS);
	ev(&w, (struct link_event){ .type = LINK_EV_ACTIVITY, .flag = false });
	pump(&w, &c);
	CHECK_EQ_INT(w.l.timers[LINK_T_REFRESH], w.now + LINK_REFRESH_MS);
}

/* The coordinator's refresh_s: a shorter one is followed at once (it forgets an entry after
 * 3 x refresh_s), a longer one is not (the refresh also keeps the NAT mapping alive), and
 * none is below the busy pace. */
static void test_link_follows_refresh_s(void)
{
	static const uint16_t said[] = { 10, 600, 1 };
	static const uint32_t want[] = { 10000, LINK_REFRESH_MS, LINK_REFRESH_ACTIVE_MS };
	struct world w;
	struct coord c = { 0 };
	struct proto_msg m, ack = { .type = PROTO_MSG_REGISTER_ACK };

	quiet_world(&w, &c);
	CHECK(w.l.timers[LINK_T_REFRESH] > w.now + 10000);
	for (size_t i = 0; i < sizeof(said) / sizeof(said[0]); i++) {
		ev(&w, (struct link_event){ .type = LINK_EV_REGISTER });
		CHECK(find_msg(&w, &c, PROTO_MSG_REGISTER, &m) >= 0);
		ack.reg_ack.seq = m.reg.seq;
		ack.reg_ack.refresh_s = said[i];
		coord_send(&w, &c, &ack);
		CHECK_EQ_INT(w.l.refresh_ms, want[i]);
		if (i == 0) {
			/* A shorter period pulls the next refresh in, and stays. */
			CHECK_EQ_INT(w.l.timers[LINK_T_REFRESH], w.now + 10000);
			pump(&w, &c);
			CHECK_EQ_INT(w.l.timers[LINK_T_REFRESH], w.now + 10000);
		}
	}
}

/* A REGISTER_ACK that shows a new session address (NAT rebinding) and an ADDR_CHECK both
 * start a probe round at once. */
static void test_link_rebinding_probes_at_once(void)
{
	struct world w;
	struct coord c = { 0 };
	struct proto_msg m, ack = { .type = PROTO_MSG_REGISTER_ACK };
	struct proto_msg chk = { .type = PROTO_MSG_ADDR_CHECK };

	quiet_world(&w, &c);
	ev(&w, (struct link_event){ .type = LINK_EV_REGISTER });
	CHECK_EQ_INT(count_type(&w, PROTO_PROBE), 0);
	CHECK(find_msg(&w, &c, PROTO_MSG_REGISTER, &m) >= 0);
	ack.reg_ack.seq = m.reg.seq;
	addr_parse(&ack.reg_ack.observed, "198.51.100.60:41000", false);
	coord_send(&w, &c, &ack);
	CHECK(w.out.reports & LINK_R_REBOUND);
	CHECK_EQ_INT(w.l.counters.rebinds, 1);
	CHECK_EQ_INT(count_type(&w, PROTO_PROBE), 2);

	chk.addr_check.nonce = 0x1122334455667788;
	coord_send(&w, &c, &chk);
	CHECK(find_msg(&w, &c, PROTO_MSG_ADDR_ECHO, &m) >= 0);
	CHECK(m.addr_check.nonce == 0x1122334455667788);
	CHECK_EQ_INT(count_type(&w, PROTO_PROBE), 2);
	CHECK_EQ_INT(w.l.counters.addr_checks, 1);
}

/* A large interface registers in pages, a batch per event; every page must be acked, and a
 * retransmission sends only the pages still unanswered. */
static void test_link_register_pages(void)
{
	struct world w;
	struct coord c = { 0 };
	struct proto_msg m, ack = { .type = PROTO_MSG_REGISTER_ACK };
	uint32_t seqs[20];
	int got = 0, i;
	size_t k;

	quiet_world(&w, &c);
	fake_pages = 20;
	ev(&w, (struct link_event){ .type = LINK_EV_REGISTER });
	for (i = 0; i < 10 && got < 20; i++) {
		for (k = 0; k < w.out.n_sends; k++) {
			struct link_actions one = w.out;

			one.n_sends = 1;
			one.sends[0] = w.out.sends[k];
			if (!coord_read(&c, &one.sends[0], &m) || m.type != PROTO_MSG_REGISTER)
				continue;
			CHECK_EQ_INT(m.reg.n_pages, 20);
			CHECK_EQ_INT(m.reg.page, got);
			CHECK(m.reg.peers[0] == 0x1234u + m.reg.page);
			CHECK(got == 0 || !(m.reg.flags & PROTO_REG_F_RESYNC));
			seqs[got++] = m.reg.seq;
		}
		CHECK(w.out.n_sends <= LINK_PAGES_PER_BATCH);
		if (got < 20)
			fire_t(&w, LINK_T_PAGES);
	}
	CHECK_EQ_INT(got, 20);
	for (i = 1; i < 20; i++)
		CHECK_EQ_INT(seqs[i], seqs[0] + (uint32_t)i);
	/* All but page 7 answered: still pending, and the retry sends page 7 alone. */
	for (i = 0; i < 20; i++) {
		if (i == 7)
			continue;
		ack.reg_ack.seq = seqs[i];
		coord_send(&w, &c, &ack);
	}
	CHECK(w.l.reg_pending);
	fire_t(&w, LINK_T_REG);
	CHECK(find_msg(&w, &c, PROTO_MSG_REGISTER, &m) >= 0);
	CHECK_EQ_INT(m.reg.page, 7);
	CHECK_EQ_INT(count_type(&w, PROTO_DATA), 1);
	ack.reg_ack.seq = seqs[7];
	coord_send(&w, &c, &ack);
	CHECK(!w.l.reg_pending);
	/* An ack outside the REGISTER's pages is not believed. */
	ack.reg_ack.seq = seqs[19] + 1;
	coord_send(&w, &c, &ack);
	CHECK_EQ_INT(w.l.counters.rx_unexpected, 1);
	fake_pages = 0;
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	randombytes_buf(node_priv, 32);
	randombytes_buf(coord_priv, 32);
	crypto_scalarmult_base(node_pub, node_priv);
	crypto_scalarmult_base(coord_pub, coord_priv);

	TAP_RUN(test_link_handshake);
	TAP_RUN(test_link_no_key_no_handshake);
	TAP_RUN(test_link_lost_hs_resp);
	TAP_RUN(test_link_late_hs_resp_after_retry);
	TAP_RUN(test_link_register_retries_then_new_handshake);
	TAP_RUN(test_link_register_alive_no_new_handshake);
	TAP_RUN(test_link_session_unknown);
	TAP_RUN(test_link_rekey);
	TAP_RUN(test_link_rekey_interval_from_coordinator);
	TAP_RUN(test_link_idle_sends_one_datagram_per_refresh);
	TAP_RUN(test_link_active_refresh);
	TAP_RUN(test_link_follows_refresh_s);
	TAP_RUN(test_link_rebinding_probes_at_once);
	TAP_RUN(test_link_register_pages);
	TAP_RUN(test_link_mapping_rounds);
	TAP_RUN(test_link_ipv6_probe_beside_ipv4);
	TAP_RUN(test_link_ipv6_session);
	TAP_RUN(test_link_filter_echo);
	TAP_RUN(test_link_punch_delivery);
	TAP_RUN(test_link_resync);
	TAP_RUN(test_link_dns_backoff);
	TAP_RUN(test_link_moved);
	TAP_RUN(test_link_wall_clock_jump);
	TAP_RUN(test_link_garbage);
	return tap_done();
}

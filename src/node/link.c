// SPDX-License-Identifier: MIT
/*
 * link - the node's link with one coordinator as a pure engine: the Noise
 * initiator (docs/rendezvous.md section 1) and the rendezvous steps its
 * session carries (sections 2 to 4). See link.h for the contract; the shell
 * (link_shell.c) owns the socket, the timer and the resolver.
 */
#include "wgpunch/link.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

#define X(name, help) COUNTER_DEF(link_counters, name, help)
COUNTER_TABLE_DEFINE(link_counters, LINK_COUNTERS(X));
#undef X

/* One call's context: the actions being filled and what the caller gave. */
struct run {
	struct link *l;
	const struct link_env *env;
	uint64_t now;
	struct link_actions *out;
};

static uint32_t rnd32(struct run *r)
{
	uint32_t v = 0;

	r->env->random(r->env->arg, &v, sizeof(v));
	return v;
}

uint64_t link_jitter(uint64_t ms, uint32_t rnd)
{
	return ms - ms / 4 + rnd % (uint32_t)(ms / 2 + 1);
}

static uint32_t doubled(uint32_t ms, uint32_t max_ms)
{
	return ms * 2 > max_ms ? max_ms : ms * 2;
}

static void arm(struct run *r, enum link_timer t, uint64_t delay_ms)
{
	r->l->timers[t] = r->now + delay_ms;
	if (r->l->timers[t] == 0)
		r->l->timers[t] = 1; /* 0 means off */
}

static void arm_jittered(struct run *r, enum link_timer t, uint64_t ms)
{
	arm(r, t, link_jitter(ms, rnd32(r)));
}

static void disarm(struct run *r, enum link_timer t)
{
	r->l->timers[t] = 0;
}

const char *link_state_name(enum link_state s)
{
	switch (s) {
	case LINK_RESOLVING:
		return "resolving";
	case LINK_HANDSHAKING:
		return "handshaking";
	case LINK_UP:
		return "up";
	}
	return "unknown";
}

const char *link_mapping_type(const struct link *l)
{
	switch (l->nat_type) {
	case 1:
		return "endpoint-independent";
	case 2:
		return "endpoint-dependent";
	default:
		return "unknown";
	}
}

void link_init(struct link *l, uint16_t port, const uint8_t public_key[KEY_LEN],
	       const struct addr *literal)
{
	memset(l, 0, sizeof(*l));
	l->port = port;
	memcpy(l->public_key, public_key, KEY_LEN);
	cookie_initiator_init(&l->cookie, public_key);
	if (literal) {
		l->host_is_literal = true;
		l->literal = *literal;
	}
	l->state = LINK_RESOLVING;
	l->hs_backoff_ms = LINK_HS_RETRY_FIRST_MS;
	l->unknown_backoff_ms = LINK_UNKNOWN_BACKOFF_FIRST_MS;
	l->resolve_backoff_ms = LINK_RESOLVE_RETRY_FIRST_MS;
	l->rekey_ms = LINK_REKEY_MS;
	l->refresh_ms = LINK_REFRESH_MS;
}

void link_clear(struct link *l)
{
	sodium_memzero(l, sizeof(*l));
}

/* ---- sending ---- */

static struct link_send *out_slot(struct run *r)
{
	struct link_actions *o = r->out;

	if (o->n_sends == LINK_MAX_SENDS)
		return NULL; /* cannot happen with the steps below; dropped like a loss */
	return &o->sends[o->n_sends];
}

static struct addr coord_port(const struct link *l, unsigned int idx)
{
	struct addr a = l->addr;

	addr_set_port(&a, (uint16_t)(l->port + idx));
	return a;
}

/* Encrypts one inner message into DATA under the current session, to P + idx.
 * 0, -ENOTCONN without a session, or -errno. */
static int send_msg(struct run *r, const struct proto_msg *m, unsigned int idx)
{
	struct link *l = r->l;
	uint8_t pt[PROTO_MAX_DATAGRAM];
	size_t pre = proto_outer_prefix_len(PROTO_DATA);
	struct proto_outer o = { .type = PROTO_DATA };
	struct link_send *s;
	ssize_t pl, n;

	if (l->state != LINK_UP || !l->cur.valid)
		return -ENOTCONN;
	s = out_slot(r);
	if (!s)
		return -ENOBUFS;
	pl = proto_encode_msg(pt, sizeof(pt) - PROTO_TAG_LEN, m);
	if (pl < 0)
		return (int)pl;
	o.receiver_idx = l->cur.remote_idx;
	o.counter = l->cur.send_ctr++;
	o.body = pt; /* placeholder of the right length; the ciphertext replaces it */
	o.body_len = (size_t)pl + PROTO_TAG_LEN;
	n = proto_encode_outer(s->buf, sizeof(s->buf), &o);
	if (n < 0)
		return (int)n;
	/* The outer prefix is the associated data, so nobody can move a DATA to another index. */
	session_encrypt(l->cur.keys.send, o.counter, s->buf, pre, pt, (size_t)pl, s->buf + pre);
	sodium_memzero(pt, sizeof(pt));
	s->via = LINK_VIA_SOCKET;
	s->msg = m->type;
	s->to = coord_port(l, idx);
	s->len = (size_t)n;
	r->out->n_sends++;
	return 0;
}

/* ---- the session ---- */

static void rdv_session_up(struct run *r, bool fresh);
static void rdv_session_down(struct run *r);

static void session_down(struct run *r, const char *why)
{
	struct link *l = r->l;

	if (l->state == LINK_UP) {
		r->out->reports |= LINK_R_DOWN;
		r->out->down_why = why;
	}
	l->state = addr_is_set(&l->addr) ? LINK_HANDSHAKING : LINK_RESOLVING;
	l->cur.valid = false;
	l->prev.valid = false;
	disarm(r, LINK_T_REKEY);
	rdv_session_down(r);
}

static void ask_resolve(struct run *r)
{
	if (r->l->host_is_literal || r->l->resolving)
		return;
	r->l->resolving = true;
	r->out->resolve = true;
}

static void hs_send(struct run *r)
{
	struct link *l = r->l;
	uint8_t e[32], ts[PROTO_TIMESTAMP_LEN], noise[PROTO_HS_INIT_NOISE_LEN];
	struct proto_outer o = { .type = PROTO_HS_INIT };
	struct link_send *s = out_slot(r);
	ssize_t n;

	if (!s || !r->env->private_key || !addr_is_set(&l->addr))
		return;
	/* A retry: the last attempt's answer may still come (it is kept until the next one). */
	l->hs_prev_pending = l->hs_pending;
	if (l->hs_pending) {
		l->hs_prev = l->hs;
		l->hs_prev_idx = l->hs_idx;
	}
	/* Our static key is the WireGuard key: the coordinator learns which identity this is. */
	if (session_hs_init(&l->hs, true, (const uint8_t *)SESSION_PROLOGUE,
			    strlen(SESSION_PROLOGUE), r->env->private_key, l->public_key) < 0)
		return;
	r->env->random(r->env->arg, e, sizeof(e));
	session_tai64n(ts, r->env->wall_s, r->env->wall_ns);
	n = session_hs_write_msg1(&l->hs, e, ts, sizeof(ts), noise, sizeof(noise));
	sodium_memzero(e, sizeof(e));
	if (n != PROTO_HS_INIT_NOISE_LEN)
		return;
	do
		l->hs_idx = rnd32(r);
	while ((l->cur.valid && l->hs_idx == l->cur.local_idx) ||
	       (l->prev.valid && l->hs_idx == l->prev.local_idx) ||
	       (l->hs_prev_pending && l->hs_idx == l->hs_prev_idx));
	o.sender_idx = l->hs_idx;
	o.body = noise;
	o.body_len = sizeof(noise);
	n = proto_encode_outer(s->buf, sizeof(s->buf), &o);
	/* mac1 always; mac2 too while we hold a cookie the coordinator gave this address. */
	if (n < 0 || cookie_initiator_sign(&l->cookie, s->buf, (size_t)n, r->now) < 0)
		return;
	l->hs_pending = true;
	s->via = LINK_VIA_SOCKET;
	s->msg = 0;
	s->to = l->addr;
	s->len = (size_t)n;
	r->out->n_sends++;
	l->counters.handshakes_sent++;
}

static void hs_attempt(struct run *r)
{
	struct link *l = r->l;

	/* Without the device's key or an address there is nothing to send yet; the device
	 * read and the resolver start the handshake when they complete. */
	if (!r->env->private_key || !addr_is_set(&l->addr))
		return;
	hs_send(r);
	l->hs_tries++;
	/* Still no answer: the name may point elsewhere now. */
	if (l->hs_tries > LINK_HS_TRIES_BEFORE_RESOLVE)
		ask_resolve(r);
	arm_jittered(r, LINK_T_HS, l->hs_backoff_ms);
	/* A few quick retries first: on a lossy path the first tries are the likely losses;
	 * a coordinator that is down is then asked less and less often. */
	if (l->hs_tries >= LINK_HS_FAST_TRIES)
		l->hs_backoff_ms = doubled(l->hs_backoff_ms, LINK_HS_RETRY_MAX_MS);
}

/* A new handshake, retried from the first, quick interval on. */
static void session_begin(struct run *r)
{
	struct link *l = r->l;

	l->hs_backoff_ms = LINK_HS_RETRY_FIRST_MS;
	l->hs_tries = 0;
	if (l->state != LINK_UP)
		l->state = addr_is_set(&l->addr) ? LINK_HANDSHAKING : LINK_RESOLVING;
	hs_attempt(r);
}

static void on_hs_resp(struct run *r, const struct proto_outer *o)
{
	struct link *l = r->l;
	struct session_keys keys;
	bool was_up = l->state == LINK_UP;
	bool latest = l->hs_pending && o->receiver_idx == l->hs_idx;
	struct session_hs *hs = latest ? &l->hs : &l->hs_prev;
	uint32_t idx = latest ? l->hs_idx : l->hs_prev_idx;

	if (!latest && !(l->hs_prev_pending && o->receiver_idx == l->hs_prev_idx)) {
		l->counters.rx_bad_index++;
		return;
	}
	if (session_hs_read_msg2(hs, o->body, o->body_len, NULL, 0) != 0) {
		l->counters.rx_bad_auth++;
		return;
	}
	session_hs_split(hs, &keys);
	l->hs_prev_pending = false;
	sodium_memzero(&l->hs_prev, sizeof(l->hs_prev));
	/* The answer to the attempt before: the newer one stays pending as a rekey does, so that
	 * its answer, if the coordinator sends one (it then replaced this session), is taken
	 * too, and its retry timer runs on. */
	if (latest) {
		l->hs_pending = false;
		disarm(r, LINK_T_HS);
	}

	/* Keep the previous session a while: DATA already in flight under it still counts. */
	l->prev = l->cur;
	memset(&l->cur, 0, sizeof(l->cur));
	l->cur.valid = true;
	l->cur.local_idx = idx;
	l->cur.remote_idx = o->sender_idx;
	l->cur.keys = keys;
	session_probe_key(&keys, l->probe_key);
	sodium_memzero(&keys, sizeof(keys));

	l->state = LINK_UP;
	if (!was_up) {
		l->counters.sessions_up++;
		r->out->reports |= LINK_R_UP;
	} else {
		r->out->reports |= LINK_R_REKEYED;
	}
	l->session_up_ms = r->now;
	arm(r, LINK_T_REKEY, l->rekey_ms);
	rdv_session_up(r, !was_up);
}

static void on_session_unknown(struct run *r, const struct proto_outer *o)
{
	struct link *l = r->l;
	uint64_t delay;

	l->counters.rx_session_unknown++;
	/*
	 * It names the index our DATA carried, the coordinator's index of our current session.
	 * Unauthenticated: it may only ever cost us a handshake, and only for that session.
	 */
	if (!l->cur.valid || o->receiver_idx != l->cur.remote_idx || l->hs_pending) {
		l->counters.rx_unexpected++;
		return;
	}
	session_down(r, "coordinator does not know the session");
	delay = rnd32(r) % (l->unknown_backoff_ms + 1);
	l->unknown_backoff_ms = doubled(l->unknown_backoff_ms, LINK_HS_RETRY_MAX_MS);
	l->hs_backoff_ms = LINK_HS_RETRY_FIRST_MS;
	l->hs_tries = 0;
	arm(r, LINK_T_HS, delay);
}

static void rdv_on_msg(struct run *r, const struct proto_msg *m);

static void on_data(struct run *r, const uint8_t *buf, const struct proto_outer *o)
{
	struct link *l = r->l;
	struct link_keys *k = NULL;
	uint8_t pt[PROTO_MAX_DATAGRAM];
	struct proto_msg m;
	ssize_t n;

	if (l->cur.valid && o->receiver_idx == l->cur.local_idx)
		k = &l->cur;
	else if (l->prev.valid && o->receiver_idx == l->prev.local_idx)
		k = &l->prev;
	if (!k) {
		l->counters.rx_bad_index++;
		return;
	}
	if (!session_replay_check(&k->replay, o->counter)) {
		l->counters.rx_replay++;
		return;
	}
	n = session_decrypt(k->keys.recv, o->counter, buf, proto_outer_prefix_len(PROTO_DATA),
			    o->body, o->body_len, pt);
	if (n < 0) {
		l->counters.rx_bad_auth++;
		return;
	}
	session_replay_commit(&k->replay, o->counter);
	l->last_rx_ms = r->now;
	if (proto_decode_msg(pt, (size_t)n, &m) < 0) {
		l->counters.rx_bad_decode++;
		return;
	}
	rdv_on_msg(r, &m);
}

/*
 * The coordinator is under load, or does not know our key yet, and wants proof that we
 * receive at our address: a cookie to put into mac2. The reply opens only against the mac1 of
 * the HS_INIT we sent last, and only once, so a forged or replayed reply changes nothing and
 * cannot make us send more than one HS_INIT per HS_INIT of ours.
 */
static void on_cookie_reply(struct run *r, const struct proto_outer *o)
{
	struct link *l = r->l;

	if (!l->hs_pending || o->receiver_idx != l->hs_idx ||
	    cookie_initiator_open_reply(&l->cookie, o->body, o->body_len, r->now) < 0) {
		l->counters.rx_cookie_bad++;
		return;
	}
	l->counters.rx_cookie++;
	/* A new HS_INIT at once (new ephemeral, new timestamp), now with mac2; the retry
	 * timer of the handshake stays as it is. */
	hs_send(r);
}

static void on_datagram(struct run *r, const uint8_t *buf, size_t len, bool truncated)
{
	struct link *l = r->l;
	struct proto_outer o;

	l->counters.rx_packets++;
	if (truncated || proto_decode_outer(buf, len, &o) < 0) {
		l->counters.rx_bad_decode++;
		return;
	}
	switch (o.type) {
	case PROTO_HS_RESP:
		on_hs_resp(r, &o);
		break;
	case PROTO_DATA:
		on_data(r, buf, &o);
		break;
	case PROTO_SESSION_UNKNOWN:
		on_session_unknown(r, &o);
		break;
	case PROTO_COOKIE_REPLY:
		on_cookie_reply(r, &o);
		break;
	case PROTO_POISON:
		/* The filter test's poison reached us: our router passed it on. Nothing to do. */
		l->counters.rx_poison++;
		break;
	default:
		l->counters.rx_unexpected++;
		break;
	}
}

/* ---- probes ---- */

/*
 * One PROBE from the WireGuard port (the prober) to `to`, MAC'd under the session's probe key.
 * The MAC covers where it goes and why: replayed to another port it fails. The sequence
 * number is shared by every purpose and only grows, so it is above whatever the coordinator
 * accepted for each. 0, or -ENOSPC / -EINVAL.
 */
static int send_probe(struct run *r, const struct addr *to, uint8_t purpose)
{
	struct link *l = r->l;
	size_t pre = proto_outer_prefix_len(PROTO_PROBE);
	uint8_t mac[PROTO_PROBE_MAC_LEN] = { 0 };
	struct proto_outer o = { .type = PROTO_PROBE };
	struct link_send *s = out_slot(r);
	ssize_t n;

	if (!s)
		return -ENOSPC;
	o.receiver_idx = l->cur.remote_idx;
	o.counter = ++l->probe_seq;
	o.dst_port = addr_port(to);
	o.purpose = purpose;
	o.body = mac;
	o.body_len = sizeof(mac);
	n = proto_encode_outer(s->buf, sizeof(s->buf), &o);
	if (n < 0)
		return (int)n;
	session_probe_mac(l->probe_key, s->buf, pre, s->buf + pre);
	s->via = LINK_VIA_PROBER;
	s->msg = 0;
	s->to = *to;
	s->len = (size_t)n;
	r->out->n_sends++;
	return 0;
}

static void send_probes(struct run *r)
{
	struct addr p = coord_port(r->l, 0), p1 = coord_port(r->l, 1);

	if (send_probe(r, &p, PROTO_PROBE_MAP_P) == 0)
		send_probe(r, &p1, PROTO_PROBE_MAP_P1);
}

/*
 * One probe to the coordinator's IPv6 address, toward P, beside an IPv4 session. It goes after
 * an IPv4 round has come back whole, never with it: the coordinator keeps one sequence number
 * per purpose, so an IPv6 probe overtaking the IPv4 one to P would get the IPv4 one refused.
 */
static void send_probe6(struct run *r)
{
	struct addr p6 = r->l->addr6;

	if (!addr_is_set(&p6) || !r->l->cur.valid)
		return;
	addr_set_port(&p6, r->l->port);
	send_probe(r, &p6, PROTO_PROBE_MAP_P);
}

/* 0.0.0.0 or ::: the coordinator listens on every address. */
static bool addr_is_wildcard(const struct addr *a)
{
	static const struct in6_addr any6 = IN6ADDR_ANY_INIT;

	if (a->sa.sa_family == AF_INET)
		return a->in4.sin_addr.s_addr == 0;
	return a->sa.sa_family == AF_INET6 && memcmp(&a->in6.sin6_addr, &any6, sizeof(any6)) == 0;
}

/* Relay-bind probes to our relay port `to` (PROTOCOL.md 2.4, relay.md section 2). */
static void send_relay_binds(struct run *r, const struct addr *to)
{
	if (!r->l->cur.valid)
		return;
	for (unsigned int i = 0; i < LINK_RELAY_BINDS; i++)
		if (send_probe(r, to, PROTO_PROBE_RELAY) < 0)
			return;
}

/*
 * A series of probe rounds: the first now, then again while no round of this series has
 * come back whole (both MAPPINGs), so one lost probe or MAPPING costs half a second rather
 * than a refresh period.
 */
static void probe_start(struct run *r)
{
	struct link *l = r->l;

	l->probe_first_seq = l->probe_seq + 1;
	l->probe_backoff_ms = LINK_PROBE_RETRY_FIRST_MS;
	l->probe_tries = 0;
	send_probes(r);
	arm_jittered(r, LINK_T_PROBE, l->probe_backoff_ms);
}

static void on_probe_timer(struct run *r)
{
	struct link *l = r->l;

	if (!l->probe_first_seq || l->state != LINK_UP)
		return;
	if (l->probe_tries >= LINK_PROBE_TRIES) {
		r->out->reports |= LINK_R_PROBES_GIVEN_UP;
		l->probe_first_seq = 0;
		return;
	}
	l->probe_tries++;
	l->probe_backoff_ms = doubled(l->probe_backoff_ms, LINK_PROBE_RETRY_MAX_MS);
	send_probes(r);
	arm_jittered(r, LINK_T_PROBE, l->probe_backoff_ms);
}

/* ---- REGISTER ---- */

static bool page_acked(const struct link *l, uint16_t p)
{
	return l->reg_acked[p / 8] & (1u << (p % 8));
}

/*
 * Sends the pages of the current REGISTER not yet acked, from reg_next on, a batch at a time
 * (the actions hold LINK_MAX_SENDS datagrams); the rest go out on LINK_T_PAGES, at once. Page
 * 0 is the saved l->reg, so a retransmission is byte for byte what was sent; later pages are
 * filled again (the same slice of the sorted peer list).
 */
static void send_register(struct run *r)
{
	struct link *l = r->l;
	unsigned int sent = 0;

	for (; l->reg_next < l->reg_pages; l->reg_next++) {
		struct proto_msg page;
		uint16_t p = l->reg_next;

		if (page_acked(l, p))
			continue;
		if (sent == LINK_PAGES_PER_BATCH) {
			arm(r, LINK_T_PAGES, 0);
			return;
		}
		if (p == 0) {
			page = l->reg;
		} else {
			memset(&page, 0, sizeof(page));
			page.type = PROTO_MSG_REGISTER;
			page.reg.page = p;
			r->env->fill_register(r->env->arg, &page.reg);
			page.reg.page = p;
			page.reg.n_pages = l->reg_pages;
			page.reg.flags = 0; /* RESYNC rides on page 0 */
			page.reg.seq = l->reg.reg.seq + p;
		}
		if (send_msg(r, &page, 0) == 0)
			l->counters.registers_sent++;
		sent++;
	}
	disarm(r, LINK_T_PAGES);
}

static void register_retransmit(struct run *r)
{
	r->l->reg_next = 0;
	send_register(r);
}

static void register_now(struct run *r, bool probe)
{
	struct link *l = r->l;

	if (l->state != LINK_UP)
		return;
	memset(&l->reg, 0, sizeof(l->reg));
	l->reg.type = PROTO_MSG_REGISTER;
	r->env->fill_register(r->env->arg, &l->reg.reg);
	l->reg.reg.page = 0;
	if (!l->reg.reg.n_pages) /* a filler that knows nothing of pages sends one */
		l->reg.reg.n_pages = 1;
	if (l->reg.reg.n_pages > LINK_MAX_PAGES)
		l->reg.reg.n_pages = LINK_MAX_PAGES;
	if (l->resync_wanted)
		l->reg.reg.flags |= PROTO_REG_F_RESYNC;
	l->resync_wanted = false;
	l->reg_pages = l->reg.reg.n_pages;
	l->reg_next = 0;
	memset(l->reg_acked, 0, sizeof(l->reg_acked));
	l->reg.reg.seq = l->reg_seq + 1;
	l->reg_seq += l->reg_pages;
	l->reg_pending = true;
	l->reg_tries = 0;
	l->reg_backoff_ms = LINK_REGISTER_RETRY_FIRST_MS;
	l->reg_sent_ms = r->now;
	send_register(r);
	arm_jittered(r, LINK_T_REG, l->reg_backoff_ms);
	if (probe)
		probe_start(r);
}

static void on_reg_timer(struct run *r)
{
	struct link *l = r->l;
	bool alive;

	if (!l->reg_pending)
		return;
	/* Authentic DATA since the first send: the session works and only acks were lost (a
	 * PUNCH may well have come), so a new handshake would only cost time. */
	alive = l->last_rx_ms >= l->reg_sent_ms;
	if (l->reg_tries < (alive ? LINK_REGISTER_TRIES_ALIVE : LINK_REGISTER_TRIES)) {
		l->reg_tries++;
		l->reg_backoff_ms = doubled(l->reg_backoff_ms, LINK_REGISTER_RETRY_MAX_MS);
		register_retransmit(r);
		arm_jittered(r, LINK_T_REG, l->reg_backoff_ms);
		return;
	}
	if (alive) {
		l->reg_pending = false; /* the refresh sends a new one */
		return;
	}
	session_down(r, "REGISTER unanswered");
	session_begin(r);
}

/* The refresh period: the coordinator's refresh_s (never longer than LINK_REFRESH_MS, which
 * keeps the session socket's NAT mapping alive), or the short one while tunnels are busy. */
static uint32_t refresh_period(const struct link *l)
{
	return l->active && l->refresh_ms > LINK_REFRESH_ACTIVE_MS ? LINK_REFRESH_ACTIVE_MS
								   : l->refresh_ms;
}

/* fresh: a new session, not a re-key. A re-key keeps the coordinator's entry (mapping,
 * filter, peers): its REGISTER confirms the new keys and stands for the next refresh, and
 * there is nothing new to probe. */
static void rdv_session_up(struct run *r, bool fresh)
{
	struct link *l = r->l;

	arm(r, LINK_T_REFRESH, refresh_period(l));
	/* No timer in the way: the sooner the coordinator knows us, the sooner the punch. */
	register_now(r, fresh);
}

static void rdv_session_down(struct run *r)
{
	struct link *l = r->l;

	l->reg_pending = false;
	l->probe_first_seq = 0;
	l->echo_pending = false;
	l->n_ack_repeat = 0; /* they would not decrypt under the next session */
	disarm(r, LINK_T_REFRESH);
	disarm(r, LINK_T_REG);
	disarm(r, LINK_T_PROBE);
	disarm(r, LINK_T_ECHO);
	disarm(r, LINK_T_ACK);
	disarm(r, LINK_T_PAGES);
}

/* ---- PUNCH_ACK ---- */

static void send_punch_ack(struct run *r, uint32_t attempt)
{
	struct proto_msg m = { .type = PROTO_MSG_PUNCH_ACK };

	m.punch_ack.attempt = attempt;
	send_msg(r, &m, 0);
}

/*
 * Nothing answers a PUNCH_ACK, so it is not retried until answered but sent twice: a lost
 * one would hold the second side's PUNCH back for the coordinator's 500 ms. The coordinator
 * ignores the copy (it counts it as an ack for no pending attempt).
 */
static void punch_done(struct run *r, uint32_t attempt)
{
	struct link *l = r->l;

	send_punch_ack(r, attempt);
	if (l->n_ack_repeat < LINK_ACK_REPEAT_MAX)
		l->ack_repeat[l->n_ack_repeat++] = attempt;
	else
		send_punch_ack(r, attempt); /* many punches at once: repeat it right away */
	if (!l->timers[LINK_T_ACK])
		arm(r, LINK_T_ACK, LINK_ACK_REPEAT_MS);
}

static void on_ack_timer(struct run *r)
{
	struct link *l = r->l;
	unsigned int i;

	for (i = 0; i < l->n_ack_repeat; i++)
		send_punch_ack(r, l->ack_repeat[i]);
	l->n_ack_repeat = 0;
}

/* ---- filter echo ---- */

static void send_echo(struct run *r)
{
	struct proto_msg echo = { .type = PROTO_MSG_FILTER_ECHO };

	/* From the session socket to P + 1, and nothing else ever goes that way. A copy takes
	 * the same way through our NAT as the first, so it tells the coordinator the same. */
	echo.filter_echo.nonce = r->l->echo_nonce;
	send_msg(r, &echo, 1);
}

static void on_echo_timer(struct run *r)
{
	struct link *l = r->l;

	if (!l->echo_pending || l->state != LINK_UP)
		return;
	if (l->echo_tries >= LINK_ECHO_TRIES) {
		/* The coordinator's test has timed out by now (filter unknown, taken as safe). */
		l->echo_pending = false;
		return;
	}
	l->echo_tries++;
	send_echo(r);
	arm_jittered(r, LINK_T_ECHO, (uint64_t)LINK_ECHO_RETRY_FIRST_MS << l->echo_tries);
}

/* ---- messages from the coordinator ---- */

static void on_mapping(struct run *r, const struct proto_mapping *mp)
{
	struct link *l = r->l;
	uint8_t old_type = l->nat_type;
	unsigned int i = mp->port_index;

	if (i > 1 || mp->probe_seq < l->mapping_seq[i]) {
		l->counters.rx_unexpected++;
		return;
	}
	l->mapping_seq[i] = mp->probe_seq;
	l->mapping[i] = mp->observed;
	if (l->mapping_seq[1] != l->mapping_seq[0] + 1)
		return; /* the round is not complete */
	if (l->probe_first_seq && l->mapping_seq[0] >= l->probe_first_seq) {
		l->probe_first_seq = 0; /* this series is answered */
		disarm(r, LINK_T_PROBE);
	}
	l->nat_type = addr_equal(&l->mapping[0], &l->mapping[1]) ? 1 : 2;
	if (l->nat_type != old_type || !addr_equal(&l->round_mapping, &l->mapping[0]))
		r->out->reports |= LINK_R_MAPPING;
	l->round_mapping = l->mapping[0];
	send_probe6(r);
}

/* A MAPPING for the probe to addr6: the IPv6 mapping, outside the IPv4 rounds. */
static void on_mapping6(struct run *r, const struct proto_mapping *mp)
{
	struct link *l = r->l;

	if (mp->port_index != 0 || mp->probe_seq < l->mapping6_seq) {
		l->counters.rx_unexpected++;
		return;
	}
	l->mapping6_seq = mp->probe_seq;
	if (!addr_equal(&l->mapping6, &mp->observed))
		r->out->reports |= LINK_R_MAPPING6;
	l->mapping6 = mp->observed;
}

static void rdv_on_msg(struct run *r, const struct proto_msg *m)
{
	struct link *l = r->l;

	switch (m->type) {
	case PROTO_MSG_REGISTER_ACK:
		/* Page p of the pending REGISTER has seq reg.reg.seq + p. */
		if (!l->reg_pending || m->reg_ack.seq - l->reg.reg.seq >= l->reg_pages) {
			l->counters.rx_unexpected++;
			return;
		}
		{
			uint16_t p = (uint16_t)(m->reg_ack.seq - l->reg.reg.seq);
			uint16_t i;

			l->reg_acked[p / 8] |= (uint8_t)(1u << (p % 8));
			for (i = 0; i < l->reg_pages && page_acked(l, i); i++)
				;
			if (i < l->reg_pages)
				return; /* more pages to be answered */
		}
		l->reg_pending = false;
		disarm(r, LINK_T_REG);
		disarm(r, LINK_T_PAGES);
		if (addr_is_set(&l->observed) && !addr_equal(&l->observed, &m->reg_ack.observed)) {
			/* The NAT gave us a new address or port: the WireGuard port's mapping has
			 * most likely moved with it. Learn it now; the coordinator re-punches our
			 * pairs when it sees the new mapping. */
			l->counters.rebinds++;
			r->out->reports |= LINK_R_REBOUND;
			probe_start(r);
		}
		l->observed = m->reg_ack.observed;
		if (m->reg_ack.refresh_s) {
			/* The coordinator forgets an entry after 3 x refresh_s: register at least
			 * that often, and never less often than the NAT keepalive needs; nor more
			 * often than a busy node does, whatever a coordinator says. */
			uint32_t ms = m->reg_ack.refresh_s * 1000u;

			ms = ms > LINK_REFRESH_MS ? LINK_REFRESH_MS : ms;
			ms = ms < LINK_REFRESH_ACTIVE_MS ? LINK_REFRESH_ACTIVE_MS : ms;
			if (ms != l->refresh_ms) {
				l->refresh_ms = ms;
				if (l->timers[LINK_T_REFRESH] > r->now + refresh_period(l))
					arm(r, LINK_T_REFRESH, refresh_period(l));
			}
		}
		if (m->reg_ack.rekey_s) {
			/* The operator sizes re-keying to the fleet; a bound keeps a mistyped
			 * value from pinning the session for good or re-keying in a loop. */
			uint32_t s = m->reg_ack.rekey_s;

			s = s < LINK_REKEY_MIN_S ? LINK_REKEY_MIN_S : s;
			s = s > LINK_REKEY_MAX_S ? LINK_REKEY_MAX_S : s;
			if (s * 1000u != l->rekey_ms) {
				l->rekey_ms = s * 1000u;
				l->timers[LINK_T_REKEY] = l->session_up_ms + l->rekey_ms;
				if (l->timers[LINK_T_REKEY] <= r->now)
					arm(r, LINK_T_REKEY, 1);
			}
		}
		/* The session demonstrably works: the SESSION_UNKNOWN backoff starts over. */
		l->unknown_backoff_ms = LINK_UNKNOWN_BACKOFF_FIRST_MS;
		return;
	case PROTO_MSG_MAPPING:
		if (addr_family(&m->mapping.observed) != addr_family(&l->addr))
			on_mapping6(r, &m->mapping);
		else
			on_mapping(r, &m->mapping);
		return;
	case PROTO_MSG_FILTER_GO:
		l->echo_nonce = m->filter_go.nonce;
		l->echo_pending = true;
		l->echo_tries = 0;
		send_echo(r);
		arm_jittered(r, LINK_T_ECHO, LINK_ECHO_RETRY_FIRST_MS);
		return;
	case PROTO_MSG_FILTER_RESULT:
		l->echo_pending = false;
		disarm(r, LINK_T_ECHO);
		if (m->filter_result.filter != l->filter)
			r->out->reports |= LINK_R_FILTER;
		l->filter = m->filter_result.filter;
		return;
	case PROTO_MSG_PUNCH:
		r->out->punch = m->punch;
		r->out->reports |= LINK_R_PUNCH;
		return;
	case PROTO_MSG_RELAY:
		r->out->relay = m->relay;
		/* A wildcard listen address on the coordinator: the relay is where we reach it. */
		if (addr_is_wildcard(&r->out->relay.relay)) {
			uint16_t port = addr_port(&r->out->relay.relay);

			r->out->relay.relay = l->addr;
			addr_set_port(&r->out->relay.relay, port);
		}
		r->out->reports |= LINK_R_RELAY;
		return;
	case PROTO_MSG_ADDR_CHECK: {
		/* Our DATA came from a new address (a NAT rebinding): the coordinator moves the
		 * session there once this echo, sent from the same socket, arrives from it. */
		struct proto_msg echo = { .type = PROTO_MSG_ADDR_ECHO };

		echo.addr_check.nonce = m->addr_check.nonce;
		if (send_msg(r, &echo, 0) == 0)
			l->counters.addr_checks++;
		/* The session moved, so the WireGuard port's mapping probably did too: probe
		 * now rather than at the next REGISTER_ACK. */
		probe_start(r);
		return;
	}
	default:
		l->counters.rx_unexpected++;
		return;
	}
}

/* ---- resolution ---- */

static void resolve_failed(struct run *r)
{
	struct link *l = r->l;

	r->out->reports |= LINK_R_RESOLVE_RETRY;
	r->out->resolve_retry_ms = link_jitter(l->resolve_backoff_ms, rnd32(r));
	arm(r, LINK_T_RESOLVE, r->out->resolve_retry_ms);
	l->resolve_backoff_ms = doubled(l->resolve_backoff_ms, LINK_RESOLVE_RETRY_MAX_MS);
}

/* A new address for the coordinator (first resolution, or the name moved). */
static void set_addr(struct run *r, const struct addr *a)
{
	struct link *l = r->l;

	if (addr_equal(&l->addr, a))
		return;
	if (addr_is_set(&l->addr))
		r->out->reports |= LINK_R_MOVED;
	session_down(r, "address changed");
	l->addr = *a;
	memset(l->mapping, 0, sizeof(l->mapping));
	memset(l->mapping_seq, 0, sizeof(l->mapping_seq));
	memset(&l->mapping6, 0, sizeof(l->mapping6));
	l->nat_type = 0;
	l->state = LINK_HANDSHAKING;
	session_begin(r);
}

/* The coordinator's IPv6 address for probes beside an IPv4 session (a6 unset: none). */
static void set_addr6(struct run *r, const struct addr *a6)
{
	struct link *l = r->l;
	struct addr none = { 0 };

	if (addr_family(&l->addr) != AF_INET || addr_family(a6) != AF_INET6)
		a6 = &none;
	if (addr_equal(&l->addr6, a6))
		return;
	l->addr6 = *a6;
	memset(&l->mapping6, 0, sizeof(l->mapping6));
	if (l->state == LINK_UP)
		send_probe6(r);
}

static void on_resolved(struct run *r, const struct addr *a, const struct addr *a6)
{
	struct link *l = r->l;

	l->resolving = false;
	l->resolve_backoff_ms = LINK_RESOLVE_RETRY_FIRST_MS;
	if (!l->host_is_literal)
		arm(r, LINK_T_RESOLVE, LINK_RESOLVE_EVERY_MS);
	set_addr(r, a);
	set_addr6(r, a6);
}

static void on_socket_failed(struct run *r)
{
	struct link *l = r->l;

	l->resolving = false;
	session_down(r, "no socket");
	memset(&l->addr, 0, sizeof(l->addr));
	memset(&l->addr6, 0, sizeof(l->addr6));
	memset(l->mapping, 0, sizeof(l->mapping));
	memset(l->mapping_seq, 0, sizeof(l->mapping_seq));
	memset(&l->mapping6, 0, sizeof(l->mapping6));
	l->nat_type = 0;
	l->state = LINK_RESOLVING;
	disarm(r, LINK_T_HS);
	resolve_failed(r);
}

/* ---- the timer ---- */

static void on_timer(struct run *r)
{
	struct link *l = r->l;
	enum link_timer t;

	for (t = 0; t < LINK_T_COUNT; t++) {
		if (!l->timers[t] || l->timers[t] > r->now)
			continue;
		l->timers[t] = 0;
		switch (t) {
		case LINK_T_RESOLVE:
			if (l->host_is_literal)
				break;
			ask_resolve(r);
			break;
		case LINK_T_HS:
			hs_attempt(r);
			break;
		case LINK_T_REKEY:
			session_begin(r);
			break;
		case LINK_T_REG:
			on_reg_timer(r);
			break;
		case LINK_T_PAGES:
			if (l->reg_pending)
				send_register(r);
			break;
		case LINK_T_REFRESH:
			/* Also keeps the session socket's NAT mapping alive (UDP timeouts can be
			 * 30 s). Armed again first: register_now() does not touch it. Probes only
			 * when something says the mapping may have moved (a new session, a new
			 * session address, local changes) or a RESYNC wants a punch: an idle node
			 * sends this one datagram per refresh. */
			arm(r, LINK_T_REFRESH, refresh_period(l));
			register_now(r, l->resync_wanted);
			/* A lost IPv6 probe (or its MAPPING) is tried again here, not with
			 * the IPv4 rounds' backoff: the IPv6 mapping is an extra candidate. */
			if (!addr_is_set(&l->mapping6) && !l->probe_first_seq)
				send_probe6(r);
			break;
		case LINK_T_PROBE:
			on_probe_timer(r);
			break;
		case LINK_T_ECHO:
			on_echo_timer(r);
			break;
		case LINK_T_ACK:
			on_ack_timer(r);
			break;
		case LINK_T_COUNT:
			break;
		}
	}
}

void link_on_event(struct link *l, const struct link_event *ev, const struct link_env *env,
		   uint64_t now_ms, struct link_actions *out)
{
	struct run r = { .l = l, .env = env, .now = now_ms, .out = out };
	enum link_timer t;

	out->n_sends = 0;
	out->resolve = false;
	out->reports = 0;
	out->down_why = NULL;
	out->resolve_retry_ms = 0;

	switch (ev->type) {
	case LINK_EV_START:
		if (l->host_is_literal)
			/* A literal needs no resolver round trip: the handshake can leave at once. */
			on_resolved(&r, &l->literal, &(struct addr){ 0 });
		else
			ask_resolve(&r);
		break;
	case LINK_EV_RESOLVED:
		on_resolved(&r, &ev->addr, &ev->addr6);
		break;
	case LINK_EV_RESOLVE_FAILED:
		l->resolving = false;
		resolve_failed(&r);
		break;
	case LINK_EV_SOCKET_FAILED:
		on_socket_failed(&r);
		break;
	case LINK_EV_DATAGRAM:
		on_datagram(&r, ev->buf, ev->len, ev->truncated);
		break;
	case LINK_EV_TIMER:
		on_timer(&r);
		break;
	case LINK_EV_IDENTITY:
		if (addr_is_set(&l->addr))
			session_begin(&r);
		break;
	case LINK_EV_REGISTER:
		register_now(&r, ev->flag);
		break;
	case LINK_EV_PROBE:
		if (l->state == LINK_UP)
			probe_start(&r);
		break;
	case LINK_EV_RESYNC:
		/* Kept until a REGISTER can carry it, also across a new session. */
		l->resync_wanted = true;
		if (ev->flag)
			register_now(&r, false);
		break;
	case LINK_EV_PUNCH_DONE:
		punch_done(&r, ev->attempt);
		break;
	case LINK_EV_ACTIVITY:
		l->active = ev->flag;
		/* Becoming active pulls the next refresh in; becoming idle lets it run out. */
		if (l->active && l->state == LINK_UP &&
		    l->timers[LINK_T_REFRESH] > now_ms + LINK_REFRESH_ACTIVE_MS)
			arm(&r, LINK_T_REFRESH, LINK_REFRESH_ACTIVE_MS);
		break;
	case LINK_EV_RELAY_BIND:
		send_relay_binds(&r, &ev->addr);
		break;
	case LINK_EV_RELAY_REQUEST: {
		struct proto_msg m = { .type = PROTO_MSG_RELAY_REQUEST };

		memcpy(m.relay_request.peer_key, ev->peer_key, KEY_LEN);
		if (send_msg(&r, &m, 0) == 0)
			l->counters.relay_requests++;
		break;
	}
	case LINK_EV_RELAY_CLOSE: {
		struct proto_msg m = { .type = PROTO_MSG_RELAY_CLOSE };

		memcpy(m.relay_close.peer_key, ev->peer_key, KEY_LEN);
		m.relay_close.reason = ev->reason;
		if (send_msg(&r, &m, 0) == 0)
			l->counters.relay_closes++;
		break;
	}
	}

	out->timer_at = 0;
	for (t = 0; t < LINK_T_COUNT; t++)
		if (l->timers[t] && (!out->timer_at || l->timers[t] < out->timer_at))
			out->timer_at = l->timers[t];
}

// SPDX-License-Identifier: MIT
/*
 * coord - the coordinator role (docs/rendezvous.md, coordinator side).
 *
 * One libuv loop, no threads. Every listen address is bound at port P (the
 * session: handshakes, DATA, probes) and P + 1 (probes, the filter echo, and
 * the source of the filter test's POISON). Everything a peer sends is
 * checked before it changes state; whatever fails a check is dropped,
 * counted by reason and logged at debug level only.
 */
#include "wgpunch/coord.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "wgpunch/addr.h"
#include "wgpunch/coord_pair.h"
#include "wgpunch/key.h"
#include "wgpunch/log.h"
#include "wgpunch/proto.h"
#include "wgpunch/registry.h"
#include "wgpunch/session.h"

#define COORD_REFRESH_S 20                           /* REGISTER_ACK refresh_s */
#define COORD_EXPIRE_MS (3 * COORD_REFRESH_S * 1000) /* not refreshed for 3 x refresh_s */
#define COORD_SWEEP_MS 1000
#define COORD_SWEEP_MAX 4096 /* expiries per sweep: bounded work per tick */
#define COORD_FILTER_TIMEOUT_MS 2000
#define COORD_UNKNOWN_PER_S 1000 /* SESSION_UNKNOWN replies a second, all sources together */
#define COORD_PENDING_PUNCHES 16384
#define COORD_MAX_LISTEN 64
/* Larger than any valid datagram, so a longer one shows up as UV_UDP_PARTIAL. */
#define COORD_RXBUF (PROTO_MAX_DATAGRAM + 256)

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Every reason a datagram is dropped, and what was done; shown in the status. */
#define COORD_COUNTERS(X)                                                        \
	X(rx_datagrams)  /* every datagram received */                           \
	X(rx_malformed)  /* bad outer message, or truncated */                   \
	X(rx_unexpected) /* a type or port this side never receives */           \
	X(hs_accepted)                                                           \
	X(hs_bad)          /* Noise message 1 failed to authenticate */          \
	X(hs_unauthorized) /* key not in authorized_keys */                      \
	X(hs_replayed)     /* timestamp not later than the last accepted one */  \
	X(hs_full)         /* registry at max_nodes: new node refused */         \
	X(hs_failed)       /* local failure (memory, index) */                   \
	X(hs_rate_limited) /* its source sent too many: not even read */         \
	X(hs_over_budget)  /* global handshake budget spent: not even read */    \
	X(unknown_index)   /* DATA or PROBE for an index we do not know */       \
	X(session_unknown_sent)                                                  \
	X(session_unknown_limited) /* not answered: rate limit */                \
	X(data_replayed)                                                         \
	X(data_bad_auth)   /* AEAD failed */                                     \
	X(data_malformed)  /* authentic, but the inner message did not decode */ \
	X(data_unexpected) /* authentic, but not a message for this port */      \
	X(probe_accepted)                                                        \
	X(probe_bad_mac)                                                         \
	X(probe_replayed)                                                        \
	X(register_accepted)                                                     \
	X(register_failed) /* out of memory storing it */                        \
	X(echo_unexpected) /* no test pending, or wrong nonce */                 \
	X(ack_unknown)     /* PUNCH_ACK for no pending attempt of that node */   \
	X(filter_tests)                                                          \
	X(filter_timeouts)                                                       \
	X(punch_pairs)                                                           \
	X(punch_unordered) /* pending table full: both told at once */           \
	X(punch_released)  /* second PUNCH sent after an ack or timeout */       \
	X(nodes_expired)                                                         \
	X(nodes_dropped) /* no longer authorised after a reload */               \
	X(tx_datagrams)                                                          \
	X(tx_errors)

struct coord_counters {
#define X(name) uint64_t name;
	COORD_COUNTERS(X)
#undef X
};

struct coord_sock {
	uv_udp_t udp; /* .data is the struct coord, like every other handle */
	struct addr bound;
	uint8_t listen_idx;
	uint8_t port_idx; /* 0: P, 1: P + 1 */
};

struct coord {
	uv_loop_t *loop;
	const struct config *conf;
	struct registry reg;
	struct coord_pair_table pending;
	struct coord_sock *socks; /* socks[2 * listen_idx + port_idx] */
	size_t n_socks;
	uv_timer_t sweep_timer, punch_timer, filter_timer;
	/* Pending filter tests, oldest first: all share one timeout, so the head expires next. */
	struct reg_node *filter_head, *filter_tail;
	uint32_t n_filter;
	uint32_t unknown_tokens;
	uint64_t unknown_refill_ms;
	uint64_t budget_warned_ms; /* the last "over budget" warning (0 = never) */
	struct coord_hs_limit hs_limit;
	unsigned int open_handles; /* initialised handles whose close callback is still due */
	bool stopping;
	struct coord_counters ctr;
	uint8_t rxbuf[COORD_RXBUF]; /* one loop, one read at a time */
};

struct send_req {
	uv_udp_send_t req;
	size_t len;
	uint8_t data[];
};

static const char *coord_fmt(const struct addr *a, char buf[ADDR_STRLEN])
{
	return addr_format(a, buf);
}

static void coord_drop(uint64_t *counter, const struct addr *from, const char *why)
{
	char b[ADDR_STRLEN];

	(*counter)++;
	log_debug("dropped a datagram from %s: %s", coord_fmt(from, b), why);
}

static struct coord_sock *coord_sock_of(struct coord *c, uint8_t listen_idx, uint8_t port_idx)
{
	return &c->socks[2 * (size_t)listen_idx + port_idx];
}

static bool coord_ready(const struct reg_node *n)
{
	return n->local_idx && n->registered && n->mapping[0].family &&
	       n->filter_state == REG_FILTER_DONE;
}

/* ---- sending ---- */

static void coord_on_sent(uv_udp_send_t *req, int status)
{
	struct send_req *s = container_of(req, struct send_req, req);

	/* UV_ECANCELED: the socket is closing and the coordinator may be going; touch nothing. */
	if (status < 0 && status != UV_ECANCELED) {
		struct coord *c = req->handle->data;

		c->ctr.tx_errors++;
		log_debug("send failed: %s", uv_strerror(status));
	}
	free(s);
}

static void coord_send(struct coord *c, struct coord_sock *s, const struct addr *to,
		       const uint8_t *buf, size_t len)
{
	struct send_req *r;
	uv_buf_t b;
	int e;

	if (c->stopping)
		return;
	r = malloc(sizeof(*r) + len);
	if (!r) {
		c->ctr.tx_errors++;
		return;
	}
	r->len = len;
	memcpy(r->data, buf, len);
	b = uv_buf_init((char *)r->data, (unsigned int)len);
	e = uv_udp_send(&r->req, &s->udp, &b, 1, &to->sa, coord_on_sent);
	if (e < 0) {
		char a[ADDR_STRLEN];

		free(r);
		c->ctr.tx_errors++;
		log_debug("send to %s failed: %s", coord_fmt(to, a), uv_strerror(e));
		return;
	}
	c->ctr.tx_datagrams++;
}

/* DATA{m} to n's session address, from port P of its listen address. */
static void coord_send_msg(struct coord *c, struct reg_node *n, const struct proto_msg *m)
{
	size_t pre = proto_outer_prefix_len(PROTO_DATA);
	uint8_t pt[PROTO_MAX_DATAGRAM], out[PROTO_MAX_DATAGRAM];
	struct proto_outer o;
	struct addr to;
	ssize_t pl, len;

	if (!n->local_idx)
		return;
	pl = proto_encode_msg(pt, sizeof(pt) - pre - PROTO_TAG_LEN, m);
	if (pl < 0) {
		log_debug("cannot encode message type %u: %s", m->type, strerror((int)-pl));
		return;
	}
	/* The outer encoder copies pt as a placeholder body; the AEAD then
	 * overwrites it with the ciphertext, with the finished prefix as AD. */
	memset(&o, 0, sizeof(o));
	o.type = PROTO_DATA;
	o.receiver_idx = n->remote_idx;
	o.counter = n->send_counter;
	o.body = pt;
	o.body_len = (size_t)pl + PROTO_TAG_LEN;
	len = proto_encode_outer(out, sizeof(out), &o);
	if (len < 0)
		return;
	session_encrypt(n->send_key, n->send_counter, out, pre, pt, (size_t)pl, out + pre);
	n->send_counter++;
	registry_addr_unpack(&to, &n->session_addr);
	coord_send(c, coord_sock_of(c, n->sock, 0), &to, out, (size_t)len);
}

static bool coord_unknown_allowed(struct coord *c)
{
	uint64_t now = uv_now(c->loop);
	uint64_t add = (now - c->unknown_refill_ms) * COORD_UNKNOWN_PER_S / 1000;

	if (add) {
		c->unknown_tokens = (uint32_t)(c->unknown_tokens + add > COORD_UNKNOWN_PER_S
						       ? COORD_UNKNOWN_PER_S
						       : c->unknown_tokens + add);
		c->unknown_refill_ms = now;
	}
	if (!c->unknown_tokens)
		return false;
	c->unknown_tokens--;
	return true;
}

/* ---- handshake flood protection (pure; coord.h) ---- */

/*
 * GCRA, a token bucket kept as one number: tat is when the bucket would be
 * full again. One more is allowed while that lies at most (burst - 1)
 * intervals ahead. *tat is only advanced by the caller (on allow), so a
 * handshake the other check refuses is not charged here.
 */
static bool gcra_allows(uint64_t tat_us, uint64_t now_us, uint64_t interval_us, uint64_t burst,
			uint64_t *next_us)
{
	uint64_t t = tat_us > now_us ? tat_us : now_us;

	if (t - now_us > (burst - 1) * interval_us)
		return false;
	*next_us = t + interval_us;
	return true;
}

void coord_hs_limit_init(struct coord_hs_limit *l, const uint8_t key[COORD_HS_HASH_KEY_LEN])
{
	memset(l, 0, sizeof(*l));
	memcpy(l->hash_key, key, COORD_HS_HASH_KEY_LEN);
}

/* The source's slot: its IPv4 address, or the /64 of its IPv6 address. */
static size_t coord_hs_slot(const struct coord_hs_limit *l, const struct addr *from)
{
	uint8_t in[1 + 8] = { 0 }, h[crypto_shorthash_BYTES];
	size_t len;
	uint64_t v = 0;

	if (addr_family(from) == AF_INET6 && !IN6_IS_ADDR_V4MAPPED(&from->in6.sin6_addr)) {
		in[0] = 6;
		memcpy(in + 1, from->in6.sin6_addr.s6_addr, 8);
		len = 9;
	} else if (addr_family(from) == AF_INET6) {
		in[0] = 4; /* the IPv4 host, whichever socket it came through */
		memcpy(in + 1, from->in6.sin6_addr.s6_addr + 12, 4);
		len = 5;
	} else {
		in[0] = 4;
		memcpy(in + 1, &from->in4.sin_addr, 4);
		len = 5;
	}
	crypto_shorthash(h, in, len, l->hash_key);
	for (size_t i = 0; i < sizeof(h); i++)
		v = v << 8 | h[i];
	return (size_t)(v % COORD_HS_SLOTS);
}

enum coord_hs_verdict coord_hs_limit_check(struct coord_hs_limit *l, const struct addr *from,
					   uint64_t now_ms)
{
	uint64_t now_us = now_ms * 1000, *src = &l->source_tat_us[coord_hs_slot(l, from)];
	uint64_t src_next, global_next;

	/* The source first: one loud source must not spend the budget of all. */
	if (!gcra_allows(*src, now_us, 1000000 / COORD_HS_SOURCE_PER_S, COORD_HS_SOURCE_BURST,
			 &src_next))
		return COORD_HS_SOURCE_LIMITED;
	if (!gcra_allows(l->global_tat_us, now_us, 1000000 / COORD_HS_GLOBAL_PER_S,
			 COORD_HS_GLOBAL_PER_S, &global_next))
		return COORD_HS_OVER_BUDGET;
	*src = src_next;
	l->global_tat_us = global_next;
	return COORD_HS_ALLOW;
}

/* Both before any X25519 work; what is dropped is counted, and logged at debug level. */
static bool coord_hs_allowed(struct coord *c, const struct addr *from)
{
	uint64_t now = uv_now(c->loop);

	switch (coord_hs_limit_check(&c->hs_limit, from, now)) {
	case COORD_HS_ALLOW:
		return true;
	case COORD_HS_SOURCE_LIMITED:
		coord_drop(&c->ctr.hs_rate_limited, from, "too many handshakes from its source");
		return false;
	case COORD_HS_OVER_BUDGET:
		break;
	}
	coord_drop(&c->ctr.hs_over_budget, from, "handshake budget spent");
	/* The operator should know: a flood, or more nodes re-keying than one core serves. */
	if (!c->budget_warned_ms || now - c->budget_warned_ms >= 60000) {
		c->budget_warned_ms = now;
		log_warn("more than %d handshakes a second: dropping the excess (%llu so far), "
			 "nodes retry",
			 COORD_HS_GLOBAL_PER_S, (unsigned long long)c->ctr.hs_over_budget);
	}
	return false;
}

/* Unauthenticated, so it can only ever cause a re-handshake; rate-limited in all. */
static void coord_send_unknown(struct coord *c, struct coord_sock *s, const struct addr *to,
			       uint32_t idx)
{
	struct proto_outer o = { .type = PROTO_SESSION_UNKNOWN, .receiver_idx = idx };
	uint8_t out[16];
	ssize_t len;

	c->ctr.unknown_index++;
	if (!coord_unknown_allowed(c)) {
		c->ctr.session_unknown_limited++;
		return;
	}
	len = proto_encode_outer(out, sizeof(out), &o);
	if (len < 0)
		return;
	c->ctr.session_unknown_sent++;
	coord_send(c, s, to, out, (size_t)len);
}

/* ---- timers ---- */

static void coord_on_punch_timer(uv_timer_t *t);
static void coord_on_filter_timer(uv_timer_t *t);

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

/* ---- the ordered punch (section 4) ---- */

static void coord_send_punch(struct coord *c, struct reg_node *to, const struct proto_punch *p)
{
	struct proto_msg m = { .type = PROTO_MSG_PUNCH };

	m.punch = *p;
	coord_send_msg(c, to, &m);
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
	const char *why;

	coord_pair_start(&c->pending, cause, other, uv_now(c->loop), &plan);
	first = plan.first == cause ? cause : other;
	second = first == cause ? other : cause;
	c->ctr.punch_pairs++;
	if (plan.second_now)
		why = "both at once: attempt table full";
	else if (coord_pair_filter_of(first) == PROTO_FILTER_POISONABLE)
		why = "first is poisonable";
	else
		why = "first caused it";
	log_info("punch %s first, then %s (%s)", key_short(first->key, k1),
		 key_short(second->key, k2), why);
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
			if (b != a && coord_ready(b) && registry_lists(b, a->fp))
				coord_punch_pair(c, a, b);
		}
	}
}

/* Call after anything readiness depends on changed; punches when section 4.4 says so. */
static void coord_after_change(struct coord *c, struct reg_node *n, bool was_ready, bool changed)
{
	if (coord_ready(n) && (!was_ready || changed))
		coord_punch_all(c, n);
}

static void coord_release(struct coord *c, const struct coord_pair_release *rel)
{
	struct reg_node *first = registry_find(&c->reg, rel->first_key);
	struct reg_node *second = registry_find(&c->reg, rel->second_key);
	struct proto_punch p;

	/* Consent is checked again: either side may have changed its list since. */
	if (!first || !second || !coord_ready(first) || !second->local_idx ||
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

static void coord_on_punch_ack(struct coord *c, struct reg_node *n, uint32_t attempt)
{
	struct coord_pair_release rel;

	if (!coord_pair_ack(&c->pending, attempt, n->key, &rel)) {
		c->ctr.ack_unknown++;
		return;
	}
	coord_release(c, &rel);
	coord_arm_punch_timer(c);
}

/* ---- filter test (section 3) ---- */

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
	coord_send_msg(c, n, &m);
	coord_arm_filter_timer(c);
}

static void coord_filter_finish(struct coord *c, struct reg_node *n, uint8_t result)
{
	struct proto_msg m = { .type = PROTO_MSG_FILTER_RESULT };
	bool was_ready = coord_ready(n);
	char k[KEY_SHORT_LEN];

	coord_filter_unlink(c, n);
	n->filter_state = REG_FILTER_DONE;
	n->filter = result;
	log_debug("node %s: filter %s", key_short(n->key, k), proto_filter_name(result));
	m.filter_result.filter = result;
	coord_send_msg(c, n, &m);
	coord_arm_filter_timer(c);
	coord_after_change(c, n, was_ready, false);
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

static void coord_on_echo(struct coord *c, struct reg_node *n, const struct addr *from,
			  uint64_t nonce)
{
	struct reg_addr src;

	if (n->filter_state != REG_FILTER_PENDING || nonce != n->filter_nonce) {
		coord_drop(&c->ctr.echo_unexpected, from, "filter echo with no test pending");
		return;
	}
	/* A router that kept our POISON owns the tuple, so masquerade had to
	 * give the node's flow to P + 1 another source port. */
	registry_addr_pack(&src, from);
	coord_filter_finish(c, n,
			    registry_addr_equal(&src, &n->filter_addr) ? PROTO_FILTER_SAFE
								       : PROTO_FILTER_POISONABLE);
}

/* The session address is where replies go; a new one (also after NAT rebinding) is tested. */
static void coord_set_session_addr(struct coord *c, struct reg_node *n, const struct coord_sock *s,
				   const struct addr *from)
{
	registry_addr_pack(&n->session_addr, from);
	n->sock = s->listen_idx;
	if (n->filter_state == REG_FILTER_NONE ||
	    !registry_addr_equal(&n->filter_addr, &n->session_addr))
		coord_filter_start(c, n);
}

/* ---- nodes ---- */

static void coord_forget(struct coord *c, struct reg_node *n)
{
	coord_filter_unlink(c, n);
	registry_remove(&c->reg, n);
	coord_arm_filter_timer(c);
}

static void coord_on_sweep(uv_timer_t *t)
{
	struct coord *c = t->data;
	uint64_t now = uv_now(c->loop);
	struct reg_node *n;
	char k[KEY_SHORT_LEN];

	for (int i = 0; i < COORD_SWEEP_MAX; i++) {
		n = registry_expired(&c->reg, now, COORD_EXPIRE_MS);
		if (!n)
			break;
		log_info("node %s expired: no refresh for %u s", key_short(n->key, k),
			 COORD_EXPIRE_MS / 1000);
		c->ctr.nodes_expired++;
		coord_forget(c, n);
	}
}

static void coord_on_register(struct coord *c, struct reg_node *n, const struct proto_register *reg)
{
	struct proto_msg ack = { .type = PROTO_MSG_REGISTER_ACK };
	bool was_ready = coord_ready(n), changed;
	int rp, rl;

	rp = registry_set_peers(n, reg->peers, reg->n_peers);
	rl = registry_set_lan(n, reg->lan, reg->n_lan);
	if (rp < 0 || rl < 0) {
		/* No ack: the node sends it again in 1 s. */
		c->ctr.register_failed++;
		return;
	}
	changed = rp > 0 || rl > 0 || n->wg_port != reg->wg_port;
	n->wg_port = reg->wg_port;
	n->reg_flags = reg->flags;
	c->ctr.register_accepted++;
	if (!n->registered) {
		char k[KEY_SHORT_LEN], a[ADDR_STRLEN];
		struct addr sa;

		n->registered = true;
		registry_addr_unpack(&sa, &n->session_addr);
		log_info("node %s registered from %s with %u peers", key_short(n->key, k),
			 coord_fmt(&sa, a), n->n_peers);
	}
	ack.reg_ack.seq = reg->seq;
	ack.reg_ack.refresh_s = COORD_REFRESH_S;
	coord_send_msg(c, n, &ack);
	coord_after_change(c, n, was_ready, changed || (reg->flags & PROTO_REG_F_RESYNC));
}

/* ---- receive path ---- */

static void coord_on_hs_init(struct coord *c, struct coord_sock *s, const struct addr *from,
			     const struct proto_outer *o)
{
	uint8_t ts[PROTO_TIMESTAMP_LEN], e_priv[32], noise[PROTO_HS_RESP_NOISE_LEN], out[128];
	struct proto_outer resp = { .type = PROTO_HS_RESP };
	struct session_keys keys;
	struct session_hs hs;
	struct reg_node *n;
	bool created = false;
	ssize_t r;

	if (!coord_hs_allowed(c, from))
		return;
	if (session_hs_init(&hs, false, (const uint8_t *)SESSION_PROLOGUE, strlen(SESSION_PROLOGUE),
			    c->conf->coord.private_key, NULL) < 0) {
		c->ctr.hs_failed++;
		goto out;
	}
	r = session_hs_read_msg1(&hs, o->body, o->body_len, ts, sizeof(ts));
	if (r != PROTO_TIMESTAMP_LEN) {
		coord_drop(&c->ctr.hs_bad, from, "handshake does not authenticate");
		goto out;
	}
	if (!config_key_authorized(c->conf, hs.rs)) {
		coord_drop(&c->ctr.hs_unauthorized, from, "handshake from a key not authorised");
		goto out;
	}
	n = registry_find(&c->reg, hs.rs);
	if (n && !session_tai64n_after(ts, n->hs_timestamp)) {
		coord_drop(&c->ctr.hs_replayed, from, "handshake timestamp not newer (replay)");
		goto out;
	}
	if (!n) {
		int e = registry_add(&c->reg, hs.rs, uv_now(c->loop), &n);

		if (e < 0) {
			coord_drop(e == -ENOSPC ? &c->ctr.hs_full : &c->ctr.hs_failed, from,
				   e == -ENOSPC ? "registry full" : "cannot add node");
			goto out;
		}
		created = true;
	}
	randombytes_buf(e_priv, sizeof(e_priv));
	r = session_hs_write_msg2(&hs, e_priv, NULL, 0, noise, sizeof(noise));
	if (r != PROTO_HS_RESP_NOISE_LEN || registry_assign_index(&c->reg, n, NULL, NULL) < 0) {
		c->ctr.hs_failed++;
		if (created)
			registry_remove(&c->reg, n);
		goto out;
	}
	session_hs_split(&hs, &keys);

	/* The new session replaces the old one; the entry (mapping, filter, peers) stays. */
	memcpy(n->hs_timestamp, ts, sizeof(ts));
	n->remote_idx = o->sender_idx;
	n->send_counter = 0;
	memcpy(n->send_key, keys.send, SESSION_KEY_LEN);
	memcpy(n->recv_key, keys.recv, SESSION_KEY_LEN);
	session_probe_key(&keys, n->probe_key);
	memset(&n->replay, 0, sizeof(n->replay));
	n->probe_seq[0] = n->probe_seq[1] = 0;
	registry_touch(&c->reg, n, uv_now(c->loop));
	c->ctr.hs_accepted++;

	resp.sender_idx = n->local_idx;
	resp.receiver_idx = o->sender_idx;
	resp.body = noise;
	resp.body_len = sizeof(noise);
	r = proto_encode_outer(out, sizeof(out), &resp);
	if (r > 0)
		coord_send(c, s, from, out, (size_t)r);
	if (log_enabled(LOG_LEVEL_DEBUG)) {
		char k[KEY_SHORT_LEN], a[ADDR_STRLEN];

		log_debug("session with %s from %s, index %08x", key_short(n->key, k),
			  coord_fmt(from, a), n->local_idx);
	}
	/* After HS_RESP, so the node has the keys when FILTER_GO arrives. */
	coord_set_session_addr(c, n, s, from);
out:
	sodium_memzero(&hs, sizeof(hs));
	sodium_memzero(&keys, sizeof(keys));
	sodium_memzero(e_priv, sizeof(e_priv));
}

static void coord_on_data(struct coord *c, struct coord_sock *s, const struct addr *from,
			  const uint8_t *buf, const struct proto_outer *o)
{
	size_t pre = proto_outer_prefix_len(PROTO_DATA);
	uint8_t pt[PROTO_MAX_DATAGRAM];
	struct reg_node *n = registry_find_index(&c->reg, o->receiver_idx);
	struct reg_addr src;
	struct proto_msg m;
	ssize_t pl;

	if (!n) {
		coord_send_unknown(c, s, from, o->receiver_idx);
		return;
	}
	if (!session_replay_check(&n->replay, o->counter)) {
		coord_drop(&c->ctr.data_replayed, from, "DATA counter replayed");
		return;
	}
	pl = session_decrypt(n->recv_key, o->counter, buf, pre, o->body, o->body_len, pt);
	if (pl < 0) {
		coord_drop(&c->ctr.data_bad_auth, from, "DATA does not authenticate");
		return;
	}
	session_replay_commit(&n->replay, o->counter);
	registry_touch(&c->reg, n, uv_now(c->loop));

	/* NAT rebinding: follow the node, but only on P; P + 1 sees the remapped echo. */
	registry_addr_pack(&src, from);
	if (s->port_idx == 0 &&
	    (!registry_addr_equal(&src, &n->session_addr) || n->sock != s->listen_idx)) {
		char k[KEY_SHORT_LEN], a[ADDR_STRLEN];

		log_debug("node %s moved to %s", key_short(n->key, k), coord_fmt(from, a));
		coord_set_session_addr(c, n, s, from);
	}

	if (proto_decode_msg(pt, (size_t)pl, &m) < 0) {
		coord_drop(&c->ctr.data_malformed, from, "inner message does not decode");
		return;
	}
	if (s->port_idx == 1) {
		if (m.type == PROTO_MSG_FILTER_ECHO)
			coord_on_echo(c, n, from, m.filter_echo.nonce);
		else
			coord_drop(&c->ctr.data_unexpected, from,
				   "message other than echo on P + 1");
		return;
	}
	switch (m.type) {
	case PROTO_MSG_REGISTER:
		coord_on_register(c, n, &m.reg);
		break;
	case PROTO_MSG_PUNCH_ACK:
		coord_on_punch_ack(c, n, m.punch_ack.attempt);
		break;
	default:
		coord_drop(&c->ctr.data_unexpected, from, "message a node does not send on P");
		break;
	}
}

static void coord_on_probe(struct coord *c, struct coord_sock *s, const struct addr *from,
			   const uint8_t *buf, const struct proto_outer *o)
{
	struct reg_node *n = registry_find_index(&c->reg, o->receiver_idx);
	struct proto_msg m = { .type = PROTO_MSG_MAPPING };
	uint8_t pi = s->port_idx;
	struct reg_addr src;
	bool was_ready, changed;

	if (!n) {
		coord_send_unknown(c, s, from, o->receiver_idx);
		return;
	}
	if (!session_probe_mac_ok(n->probe_key, buf, proto_outer_prefix_len(PROTO_PROBE),
				  o->body)) {
		coord_drop(&c->ctr.probe_bad_mac, from, "probe MAC does not verify");
		return;
	}
	if (o->counter <= n->probe_seq[pi]) {
		coord_drop(&c->ctr.probe_replayed, from, "probe sequence not above the last");
		return;
	}
	c->ctr.probe_accepted++;
	was_ready = coord_ready(n);
	n->probe_seq[pi] = o->counter;
	registry_addr_pack(&src, from);
	changed = !registry_addr_equal(&src, &n->mapping[pi]);
	n->mapping[pi] = src;
	if (changed && log_enabled(LOG_LEVEL_DEBUG)) {
		char k[KEY_SHORT_LEN], a[ADDR_STRLEN];

		log_debug("node %s: mapping[%u] is %s", key_short(n->key, k), pi,
			  coord_fmt(from, a));
	}
	m.mapping.probe_seq = o->counter;
	m.mapping.port_index = pi;
	m.mapping.observed = *from;
	coord_send_msg(c, n, &m);
	if (pi == 0)
		coord_after_change(c, n, was_ready, changed);
}

static void coord_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct coord *c = h->data;

	buf->base = (char *)c->rxbuf;
	buf->len = sizeof(c->rxbuf);
}

static void coord_on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
			  const struct sockaddr *sa, unsigned int flags)
{
	struct coord_sock *s = container_of(h, struct coord_sock, udp);
	struct coord *c = h->data;
	const uint8_t *p = (const uint8_t *)buf->base;
	struct proto_outer o;
	struct addr from;
	socklen_t sl;

	if (nread < 0) {
		/* ICMP errors and the like: nothing to do, keep reading. */
		log_debug("receive error: %s", uv_strerror((int)nread));
		return;
	}
	if (!sa)
		return;
	sl = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	if (addr_from_sockaddr(&from, sa, sl) < 0)
		return;
	c->ctr.rx_datagrams++;
	if (flags & UV_UDP_PARTIAL) {
		coord_drop(&c->ctr.rx_malformed, &from, "truncated");
		return;
	}
	if (proto_decode_outer(p, (size_t)nread, &o) < 0) {
		coord_drop(&c->ctr.rx_malformed, &from, "not a wgpunch message");
		return;
	}
	switch (o.type) {
	case PROTO_HS_INIT:
		if (s->port_idx == 0)
			coord_on_hs_init(c, s, &from, &o);
		else
			coord_drop(&c->ctr.rx_unexpected, &from, "handshake on P + 1");
		break;
	case PROTO_DATA:
		coord_on_data(c, s, &from, p, &o);
		break;
	case PROTO_PROBE:
		coord_on_probe(c, s, &from, p, &o);
		break;
	default:
		coord_drop(&c->ctr.rx_unexpected, &from,
			   "message type a coordinator never receives");
		break;
	}
}

/* ---- lifetime ---- */

static void coord_free(struct coord *c)
{
	registry_destroy(&c->reg);
	coord_pair_table_destroy(&c->pending);
	free(c->socks);
	free(c);
}

static void coord_on_closed(uv_handle_t *h)
{
	struct coord *c = h->data;

	if (--c->open_handles == 0)
		coord_free(c);
}

void coord_stop(struct coord *c)
{
	if (!c || c->stopping)
		return;
	c->stopping = true;
	uv_close((uv_handle_t *)&c->sweep_timer, coord_on_closed);
	uv_close((uv_handle_t *)&c->punch_timer, coord_on_closed);
	uv_close((uv_handle_t *)&c->filter_timer, coord_on_closed);
	for (size_t i = 0; i < c->n_socks; i++)
		uv_close((uv_handle_t *)&c->socks[i].udp, coord_on_closed);
}

static int coord_bind(struct coord *c, struct coord_sock *s)
{
	char a[ADDR_STRLEN];
	int r;

	r = uv_udp_bind(&s->udp, &s->bound.sa,
			addr_family(&s->bound) == AF_INET6 ? UV_UDP_IPV6ONLY : 0);
	if (r < 0)
		return log_err_errno(r, "cannot bind %s", coord_fmt(&s->bound, a));
	r = uv_udp_recv_start(&s->udp, coord_on_alloc, coord_on_recv);
	if (r < 0)
		return log_err_errno(r, "cannot receive on %s", coord_fmt(&s->bound, a));
	return 0;
}

int coord_start(uv_loop_t *loop, const struct config *conf, struct coord **out)
{
	const struct config_coordinator_role *cr = &conf->coord;
	uint8_t hs_key[COORD_HS_HASH_KEY_LEN];
	struct coord *c;
	char k[KEY_SHORT_LEN];
	int r;

	*out = NULL;
	if (cr->n_listen == 0 || cr->n_listen > COORD_MAX_LISTEN)
		return log_err_errno(-EINVAL, "coordinator needs 1 to %d listen addresses",
				     COORD_MAX_LISTEN);
	c = calloc(1, sizeof(*c));
	if (!c)
		return log_err_errno(-ENOMEM, "cannot start the coordinator");
	c->loop = loop;
	c->conf = conf;
	c->n_socks = 2 * cr->n_listen;
	c->socks = calloc(c->n_socks, sizeof(*c->socks));
	r = c->socks ? registry_init(&c->reg,
				     cr->max_nodes ? cr->max_nodes : CONFIG_DEFAULT_MAX_NODES)
		     : -ENOMEM;
	if (r == 0)
		r = coord_pair_table_init(&c->pending, COORD_PENDING_PUNCHES);
	if (r < 0) {
		coord_free(c);
		return log_err_errno(r, "cannot start the coordinator");
	}
	c->unknown_tokens = COORD_UNKNOWN_PER_S;
	c->unknown_refill_ms = uv_now(loop);
	randombytes_buf(hs_key, sizeof(hs_key));
	coord_hs_limit_init(&c->hs_limit, hs_key);
	sodium_memzero(hs_key, sizeof(hs_key));

	/* Every handle is initialised before anything can fail, so coord_stop() closes all. */
	uv_timer_init(loop, &c->sweep_timer);
	uv_timer_init(loop, &c->punch_timer);
	uv_timer_init(loop, &c->filter_timer);
	c->sweep_timer.data = c->punch_timer.data = c->filter_timer.data = c;
	c->open_handles = 3;
	for (size_t i = 0; i < c->n_socks; i++) {
		struct coord_sock *s = &c->socks[i];

		uv_udp_init(loop, &s->udp);
		s->udp.data = c;
		c->open_handles++;
		s->listen_idx = (uint8_t)(i / 2);
		s->port_idx = (uint8_t)(i % 2);
		s->bound = cr->listen[i / 2];
	}

	for (size_t i = 0; i < c->n_socks; i++) {
		struct coord_sock *s = &c->socks[i];
		char a[ADDR_STRLEN];

		if (s->port_idx == 1) {
			if (addr_port(&s->bound) == UINT16_MAX) {
				r = log_err_errno(-EINVAL, "listen %s: port + 1 does not exist",
						  coord_fmt(&s->bound, a));
				goto fail;
			}
			addr_set_port(&s->bound, addr_port(&s->bound) + 1);
		}
		r = coord_bind(c, s);
		if (r < 0)
			goto fail;
	}
	uv_timer_start(&c->sweep_timer, coord_on_sweep, COORD_SWEEP_MS, COORD_SWEEP_MS);

	for (size_t i = 0; i < cr->n_listen; i++) {
		char a[ADDR_STRLEN];

		log_info("coordinator %s listening on %s and port %u", key_short(cr->public_key, k),
			 coord_fmt(&cr->listen[i], a), addr_port(&cr->listen[i]) + 1u);
	}
	*out = c;
	return 0;
fail:
	/* The handles close on the loop; the last close callback frees c. */
	coord_stop(c);
	return r;
}

int coord_reload(struct coord *c, const struct config *conf)
{
	const struct config_coordinator_role *a = &c->conf->coord, *b = &conf->coord;
	struct reg_node *n, *next;
	char k[KEY_SHORT_LEN];
	int r;

	if (a->n_listen != b->n_listen ||
	    sodium_memcmp(a->private_key, b->private_key, KEY_LEN) != 0)
		return -EAGAIN;
	for (size_t i = 0; i < a->n_listen; i++)
		if (!addr_equal(&a->listen[i], &b->listen[i]))
			return -EAGAIN;
	r = registry_set_max_nodes(&c->reg, b->max_nodes ? b->max_nodes : CONFIG_DEFAULT_MAX_NODES);
	if (r < 0)
		return r;
	c->conf = conf;
	/* Linear in the nodes, but a reload is rare and not on any packet's path. */
	for (n = registry_first(&c->reg); n; n = next) {
		next = n->lru_next;
		if (config_key_authorized(conf, n->key))
			continue;
		log_info("node %s is no longer authorised: dropped", key_short(n->key, k));
		c->ctr.nodes_dropped++;
		coord_forget(c, n);
	}
	return 0;
}

cJSON *coord_status(struct coord *c)
{
	const struct config_coordinator_role *cr = &c->conf->coord;
	cJSON *st = cJSON_CreateObject(), *listen, *ctr;
	char b64[KEY_B64_LEN + 1];

	if (!st)
		return NULL;
	key_to_base64(b64, cr->public_key);
	cJSON_AddStringToObject(st, "role", "coordinator");
	cJSON_AddStringToObject(st, "public_key", b64);
	listen = cJSON_AddArrayToObject(st, "listen");
	for (size_t i = 0; listen && i < cr->n_listen; i++) {
		cJSON *l = cJSON_CreateObject();
		char a[ADDR_STRLEN];
		struct addr p1 = cr->listen[i];

		if (!l)
			break;
		cJSON_AddStringToObject(l, "address", coord_fmt(&cr->listen[i], a));
		addr_set_port(&p1, addr_port(&p1) + 1);
		cJSON_AddStringToObject(l, "probe_address", coord_fmt(&p1, a));
		cJSON_AddItemToArray(listen, l);
	}
	cJSON_AddNumberToObject(st, "nodes", c->reg.n_nodes);
	cJSON_AddNumberToObject(st, "max_nodes", c->reg.max_nodes);
	cJSON_AddNumberToObject(st, "sessions", c->reg.n_sessions);
	cJSON_AddNumberToObject(st, "pending_punches", c->pending.n);
	cJSON_AddNumberToObject(st, "pending_filter_tests", c->n_filter);
	ctr = cJSON_AddObjectToObject(st, "counters");
#define X(name)  \
	if (ctr) \
		cJSON_AddNumberToObject(ctr, #name, (double)c->ctr.name);
	COORD_COUNTERS(X)
#undef X
	return st;
}

// SPDX-License-Identifier: MIT
/*
 * coord_session - the coordinator's side of established sessions: DATA in
 * and out, the messages inside it, PROBE, and SESSION_UNKNOWN.
 */
#include "wgpunch/coord_session.h"

#include <stddef.h>
#include <string.h>
#include <sys/types.h>

#include "wgpunch/addr.h"
#include "wgpunch/coord_filter.h"
#include "wgpunch/coord_internal.h"
#include "wgpunch/coord_punch.h"
#include "wgpunch/key.h"
#include "wgpunch/log.h"
#include "wgpunch/proto.h"
#include "wgpunch/registry.h"
#include "wgpunch/session.h"

void coord_session_send(struct coord *c, struct reg_node *n, const struct proto_msg *m)
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

static void coord_on_register(struct coord *c, struct reg_node *n, const struct proto_register *reg)
{
	struct proto_msg ack = { .type = PROTO_MSG_REGISTER_ACK };
	bool was_ready = coord_punch_ready(n), changed;
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
			 addr_format(&sa, a), n->n_peers);
	}
	ack.reg_ack.seq = reg->seq;
	ack.reg_ack.refresh_s = COORD_REFRESH_S;
	coord_session_send(c, n, &ack);
	coord_punch_after_change(c, n, was_ready, changed || (reg->flags & PROTO_REG_F_RESYNC));
}

void coord_session_on_data(struct coord *c, struct coord_sock *s, const struct addr *from,
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

		log_debug("node %s moved to %s", key_short(n->key, k), addr_format(from, a));
		coord_filter_set_session_addr(c, n, s, from);
	}

	if (proto_decode_msg(pt, (size_t)pl, &m) < 0) {
		coord_drop(&c->ctr.data_malformed, from, "inner message does not decode");
		return;
	}
	if (s->port_idx == 1) {
		if (m.type == PROTO_MSG_FILTER_ECHO)
			coord_filter_on_echo(c, n, from, m.filter_echo.nonce);
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
		coord_punch_on_ack(c, n, m.punch_ack.attempt);
		break;
	default:
		coord_drop(&c->ctr.data_unexpected, from, "message a node does not send on P");
		break;
	}
}

void coord_session_on_probe(struct coord *c, struct coord_sock *s, const struct addr *from,
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
	was_ready = coord_punch_ready(n);
	n->probe_seq[pi] = o->counter;
	registry_addr_pack(&src, from);
	changed = !registry_addr_equal(&src, &n->mapping[pi]);
	n->mapping[pi] = src;
	if (changed && log_enabled(LOG_LEVEL_DEBUG)) {
		char k[KEY_SHORT_LEN], a[ADDR_STRLEN];

		log_debug("node %s: mapping[%u] is %s", key_short(n->key, k), pi,
			  addr_format(from, a));
	}
	m.mapping.probe_seq = o->counter;
	m.mapping.port_index = pi;
	m.mapping.observed = *from;
	coord_session_send(c, n, &m);
	if (pi == 0)
		coord_punch_after_change(c, n, was_ready, changed);
}

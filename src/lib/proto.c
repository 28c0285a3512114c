/* SPDX-License-Identifier: MIT */
/*
 * proto - wgpunch's wire format. docs/PROTOCOL.md is the byte-level
 * description; this file must agree with it.
 *
 * Decoding goes through a read cursor whose error sticks: a short read sets
 * bad and returns zeros, and the caller checks bad once at the end. Every
 * field that could be written two ways (reserved bytes, flags, enum values,
 * counts, trailing bytes) is refused unless it is in the one form the encoder
 * writes, so decode then encode reproduces the input exactly.
 */
#include "wgpunch/proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#define ADDR4_WIRE_LEN (1 + 4 + 2)
#define ADDR6_WIRE_LEN (1 + 16 + 2)

#define REG_FLAGS_KNOWN (PROTO_REG_F_RESYNC | PROTO_REG_F_NO_RELAY)
#define PUNCH_FLAGS_KNOWN (PROTO_PUNCH_F_ACK)
#define RELAY_FLAGS_KNOWN (PROTO_RELAY_F_AT_ONCE | PROTO_RELAY_F_SECOND)

/* ---- read cursor ---- */

struct rd {
	const uint8_t *p;
	size_t left;
	bool bad;
};

static const uint8_t *rd_take(struct rd *r, size_t n)
{
	const uint8_t *p;

	if (r->bad || r->left < n) {
		r->bad = true; /* later reads fail too; the caller checks r->bad once */
		return NULL;
	}
	p = r->p;
	r->p += n;
	r->left -= n;
	return p;
}

static uint8_t rd_u8(struct rd *r)
{
	const uint8_t *p = rd_take(r, 1);

	return p ? p[0] : 0;
}

static uint16_t rd_be16(struct rd *r)
{
	const uint8_t *p = rd_take(r, 2);

	return p ? (uint16_t)(p[0] << 8 | p[1]) : 0;
}

static uint32_t rd_be32(struct rd *r)
{
	const uint8_t *p = rd_take(r, 4);

	return p ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3] : 0;
}

static uint64_t rd_be64(struct rd *r)
{
	uint64_t hi = rd_be32(r);

	return hi << 32 | rd_be32(r);
}

static void rd_bytes(struct rd *r, void *dst, size_t n)
{
	const uint8_t *p = rd_take(r, n);

	if (p)
		memcpy(dst, p, n);
	else
		memset(dst, 0, n);
}

/* A check that failed on otherwise well-formed bytes also makes the message bad. */
static void rd_require(struct rd *r, bool ok)
{
	if (!ok)
		r->bad = true;
}

static void rd_addr(struct rd *r, struct addr *a)
{
	uint8_t family = rd_u8(r);

	memset(a, 0, sizeof(*a));
	if (family == 4) {
		a->in4.sin_family = AF_INET;
		rd_bytes(r, &a->in4.sin_addr, 4);
		a->in4.sin_port = htons(rd_be16(r));
	} else if (family == 6) {
		a->in6.sin6_family = AF_INET6;
		rd_bytes(r, &a->in6.sin6_addr, 16);
		a->in6.sin6_port = htons(rd_be16(r));
	} else {
		r->bad = true;
	}
	if (r->bad)
		memset(a, 0, sizeof(*a));
}

/* ---- write cursor ---- */

struct wr {
	uint8_t *p;
	size_t left;
	size_t len;
	bool bad; /* out of room: the encoder returns -ENOSPC */
};

static uint8_t *wr_take(struct wr *w, size_t n)
{
	uint8_t *p;

	if (w->bad || w->left < n) {
		w->bad = true;
		return NULL;
	}
	p = w->p;
	w->p += n;
	w->left -= n;
	w->len += n;
	return p;
}

static void wr_u8(struct wr *w, uint8_t v)
{
	uint8_t *p = wr_take(w, 1);

	if (p)
		p[0] = v;
}

static void wr_be16(struct wr *w, uint16_t v)
{
	uint8_t *p = wr_take(w, 2);

	if (p) {
		p[0] = (uint8_t)(v >> 8);
		p[1] = (uint8_t)v;
	}
}

static void wr_be32(struct wr *w, uint32_t v)
{
	wr_be16(w, (uint16_t)(v >> 16));
	wr_be16(w, (uint16_t)v);
}

static void wr_be64(struct wr *w, uint64_t v)
{
	wr_be32(w, (uint32_t)(v >> 32));
	wr_be32(w, (uint32_t)v);
}

static void wr_bytes(struct wr *w, const void *src, size_t n)
{
	uint8_t *p = wr_take(w, n);

	if (p && n)
		memcpy(p, src, n);
}

static bool addr_encodable(const struct addr *a)
{
	return a->sa.sa_family == AF_INET || a->sa.sa_family == AF_INET6;
}

/* Only the address and port travel: IPv6 flow info and scope id do not. */
static void wr_addr(struct wr *w, const struct addr *a)
{
	if (a->sa.sa_family == AF_INET) {
		wr_u8(w, 4);
		wr_bytes(w, &a->in4.sin_addr, 4);
		wr_be16(w, ntohs(a->in4.sin_port));
	} else {
		wr_u8(w, 6);
		wr_bytes(w, &a->in6.sin6_addr, 16);
		wr_be16(w, ntohs(a->in6.sin6_port));
	}
}

static ssize_t wr_result(const struct wr *w)
{
	return w->bad ? -ENOSPC : (ssize_t)w->len;
}

ssize_t proto_encode_addr(uint8_t *buf, size_t cap, const struct addr *a)
{
	struct wr w = { .p = buf, .left = cap };

	if (!addr_encodable(a))
		return -EINVAL;
	wr_addr(&w, a);
	return wr_result(&w);
}

/* ---- outer messages ---- */

size_t proto_outer_prefix_len(uint8_t type)
{
	switch (type) {
	case PROTO_HS_INIT:
		return PROTO_HDR_LEN + 4;
	case PROTO_HS_RESP:
		return PROTO_HDR_LEN + 4 + 4;
	case PROTO_DATA:
		return PROTO_HDR_LEN + 4 + 8;
	case PROTO_PROBE:
		return PROTO_HDR_LEN + 4 + 8 + 2 + 1 + 1;
	case PROTO_SESSION_UNKNOWN:
	case PROTO_COOKIE_REPLY:
		return PROTO_HDR_LEN + 4;
	case PROTO_POISON:
		return PROTO_HDR_LEN;
	default:
		return 0;
	}
}

/* Whether body_len is the one (or in the range) the type allows. */
static bool outer_body_len_ok(uint8_t type, size_t body_len)
{
	switch (type) {
	case PROTO_HS_INIT:
		return body_len == PROTO_HS_INIT_NOISE_LEN + 2 * PROTO_MAC_LEN;
	case PROTO_HS_RESP:
		return body_len == PROTO_HS_RESP_NOISE_LEN;
	case PROTO_DATA:
		return body_len >= PROTO_TAG_LEN &&
		       body_len <= PROTO_MAX_DATAGRAM - proto_outer_prefix_len(PROTO_DATA);
	case PROTO_PROBE:
		return body_len == PROTO_PROBE_MAC_LEN;
	case PROTO_SESSION_UNKNOWN:
		return body_len == 0;
	case PROTO_POISON:
		return body_len == PROTO_POISON_LEN;
	case PROTO_COOKIE_REPLY:
		return body_len == PROTO_COOKIE_BODY_LEN;
	default:
		return false;
	}
}

int proto_decode_outer(const uint8_t *buf, size_t len, struct proto_outer *out)
{
	struct rd r = { .p = buf, .left = len };
	uint8_t version, type;
	uint16_t reserved;

	memset(out, 0, sizeof(*out));
	version = rd_u8(&r);
	type = rd_u8(&r);
	reserved = rd_be16(&r);
	rd_require(&r,
		   version == PROTO_VERSION && reserved == 0 && proto_outer_prefix_len(type) != 0);
	if (r.bad)
		return -EBADMSG;

	switch (type) {
	case PROTO_HS_INIT:
		out->sender_idx = rd_be32(&r);
		break;
	case PROTO_HS_RESP:
		out->sender_idx = rd_be32(&r);
		out->receiver_idx = rd_be32(&r);
		break;
	case PROTO_DATA:
		out->receiver_idx = rd_be32(&r);
		out->counter = rd_be64(&r);
		break;
	case PROTO_PROBE:
		out->receiver_idx = rd_be32(&r);
		out->counter = rd_be64(&r);
		out->dst_port = rd_be16(&r);
		out->purpose = rd_u8(&r);
		reserved = rd_u8(&r);
		rd_require(&r, out->purpose < PROTO_PROBE_PURPOSES && reserved == 0);
		break;
	case PROTO_SESSION_UNKNOWN:
	case PROTO_COOKIE_REPLY:
		out->receiver_idx = rd_be32(&r);
		break;
	case PROTO_POISON:
		break;
	}
	if (r.bad || !outer_body_len_ok(type, r.left)) {
		memset(out, 0, sizeof(*out));
		return -EBADMSG;
	}
	out->type = type;
	out->body = r.left ? r.p : NULL;
	out->body_len = r.left;
	if (type == PROTO_HS_INIT) {
		/* The MACs are not Noise: the body is the Noise message alone. */
		out->body_len = PROTO_HS_INIT_NOISE_LEN;
		out->macs = r.p + PROTO_HS_INIT_NOISE_LEN;
	}
	return 0;
}

ssize_t proto_encode_outer(uint8_t *buf, size_t cap, const struct proto_outer *m)
{
	static const uint8_t no_macs[2 * PROTO_MAC_LEN];
	struct wr w = { .p = buf, .left = cap };
	size_t body_len = m->body_len;

	if (m->type == PROTO_HS_INIT)
		body_len += 2 * PROTO_MAC_LEN;
	if (!outer_body_len_ok(m->type, body_len) || (m->body_len && !m->body) ||
	    (m->type == PROTO_PROBE && m->purpose >= PROTO_PROBE_PURPOSES))
		return -EINVAL;

	wr_u8(&w, PROTO_VERSION);
	wr_u8(&w, m->type);
	wr_be16(&w, 0);
	switch (m->type) {
	case PROTO_HS_INIT:
		wr_be32(&w, m->sender_idx);
		break;
	case PROTO_HS_RESP:
		wr_be32(&w, m->sender_idx);
		wr_be32(&w, m->receiver_idx);
		break;
	case PROTO_DATA:
		wr_be32(&w, m->receiver_idx);
		wr_be64(&w, m->counter);
		break;
	case PROTO_PROBE:
		wr_be32(&w, m->receiver_idx);
		wr_be64(&w, m->counter);
		wr_be16(&w, m->dst_port);
		wr_u8(&w, m->purpose);
		wr_u8(&w, 0);
		break;
	case PROTO_SESSION_UNKNOWN:
	case PROTO_COOKIE_REPLY:
		wr_be32(&w, m->receiver_idx);
		break;
	case PROTO_POISON:
		break;
	}
	wr_bytes(&w, m->body, m->body_len);
	if (m->type == PROTO_HS_INIT)
		wr_bytes(&w, m->macs ? m->macs : no_macs, sizeof(no_macs));
	return wr_result(&w);
}

/* ---- inner messages ---- */

int proto_decode_msg(const uint8_t *buf, size_t len, struct proto_msg *out)
{
	struct rd r = { .p = buf, .left = len };
	unsigned int i;

	memset(out, 0, sizeof(*out));
	out->type = rd_u8(&r);
	switch (out->type) {
	case PROTO_MSG_REGISTER: {
		struct proto_register *m = &out->reg;

		m->seq = rd_be32(&r);
		m->wg_port = rd_be16(&r);
		m->flags = rd_u8(&r);
		rd_require(&r, !(m->flags & ~REG_FLAGS_KNOWN));
		m->page = rd_be16(&r);
		m->n_pages = rd_be16(&r);
		rd_require(&r, m->page < m->n_pages);
		m->n_lan = rd_u8(&r);
		rd_require(&r, m->n_lan <= PROTO_MAX_LAN);
		for (i = 0; i < m->n_lan && !r.bad; i++)
			rd_addr(&r, &m->lan[i]);
		m->n_peers = rd_be16(&r);
		rd_require(&r, m->n_peers <= PROTO_MAX_PEERS);
		for (i = 0; i < m->n_peers && !r.bad; i++)
			m->peers[i] = rd_be64(&r);
		break;
	}
	case PROTO_MSG_REGISTER_ACK:
		out->reg_ack.seq = rd_be32(&r);
		out->reg_ack.refresh_s = rd_be16(&r);
		out->reg_ack.rekey_s = rd_be16(&r);
		rd_addr(&r, &out->reg_ack.observed);
		break;
	case PROTO_MSG_MAPPING:
		out->mapping.probe_seq = rd_be64(&r);
		out->mapping.port_index = rd_u8(&r);
		rd_require(&r, out->mapping.port_index <= 1);
		rd_addr(&r, &out->mapping.observed);
		break;
	case PROTO_MSG_FILTER_GO:
		out->filter_go.nonce = rd_be64(&r);
		break;
	case PROTO_MSG_FILTER_ECHO:
		out->filter_echo.nonce = rd_be64(&r);
		break;
	case PROTO_MSG_FILTER_RESULT:
		out->filter_result.filter = rd_u8(&r);
		rd_require(&r, out->filter_result.filter <= PROTO_FILTER_POISONABLE);
		break;
	case PROTO_MSG_PUNCH: {
		struct proto_punch *m = &out->punch;

		m->attempt = rd_be32(&r);
		rd_bytes(&r, m->peer_key, KEY_LEN);
		m->flags = rd_u8(&r);
		rd_require(&r, !(m->flags & ~PUNCH_FLAGS_KNOWN));
		rd_addr(&r, &m->peer_public);
		m->n_lan = rd_u8(&r);
		rd_require(&r, m->n_lan <= PROTO_MAX_LAN);
		for (i = 0; i < m->n_lan && !r.bad; i++)
			rd_addr(&r, &m->lan[i]);
		break;
	}
	case PROTO_MSG_PUNCH_ACK:
		out->punch_ack.attempt = rd_be32(&r);
		break;
	case PROTO_MSG_ADDR_CHECK:
	case PROTO_MSG_ADDR_ECHO:
		out->addr_check.nonce = rd_be64(&r);
		break;
	case PROTO_MSG_RELAY:
		out->relay.attempt = rd_be32(&r);
		rd_bytes(&r, out->relay.peer_key, KEY_LEN);
		out->relay.flags = rd_u8(&r);
		rd_require(&r, !(out->relay.flags & ~RELAY_FLAGS_KNOWN));
		rd_addr(&r, &out->relay.relay);
		break;
	case PROTO_MSG_RELAY_REQUEST:
		rd_bytes(&r, out->relay_request.peer_key, KEY_LEN);
		break;
	case PROTO_MSG_RELAY_CLOSE:
		rd_bytes(&r, out->relay_close.peer_key, KEY_LEN);
		out->relay_close.reason = rd_u8(&r);
		rd_require(&r, out->relay_close.reason <= PROTO_RELAY_CLOSE_GONE);
		break;
	default:
		r.bad = true; /* unknown type, or an empty message */
		break;
	}
	/* Trailing bytes would make two encodings of one message. */
	if (r.bad || r.left != 0) {
		memset(out, 0, sizeof(*out));
		return -EBADMSG;
	}
	return 0;
}

/* What the decoder would refuse, the encoder refuses too (with -EINVAL). */
static bool msg_valid(const struct proto_msg *m)
{
	unsigned int i;

	switch (m->type) {
	case PROTO_MSG_REGISTER:
		if (m->reg.flags & ~REG_FLAGS_KNOWN || m->reg.n_lan > PROTO_MAX_LAN ||
		    m->reg.n_peers > PROTO_MAX_PEERS || m->reg.page >= m->reg.n_pages)
			return false;
		for (i = 0; i < m->reg.n_lan; i++)
			if (!addr_encodable(&m->reg.lan[i]))
				return false;
		return true;
	case PROTO_MSG_MAPPING:
		return m->mapping.port_index <= 1 && addr_encodable(&m->mapping.observed);
	case PROTO_MSG_FILTER_RESULT:
		return m->filter_result.filter <= PROTO_FILTER_POISONABLE;
	case PROTO_MSG_PUNCH:
		if (m->punch.flags & ~PUNCH_FLAGS_KNOWN || m->punch.n_lan > PROTO_MAX_LAN ||
		    !addr_encodable(&m->punch.peer_public))
			return false;
		for (i = 0; i < m->punch.n_lan; i++)
			if (!addr_encodable(&m->punch.lan[i]))
				return false;
		return true;
	case PROTO_MSG_REGISTER_ACK:
		return addr_encodable(&m->reg_ack.observed);
	case PROTO_MSG_RELAY:
		return !(m->relay.flags & ~RELAY_FLAGS_KNOWN) && addr_encodable(&m->relay.relay);
	case PROTO_MSG_RELAY_CLOSE:
		return m->relay_close.reason <= PROTO_RELAY_CLOSE_GONE;
	case PROTO_MSG_RELAY_REQUEST:
	case PROTO_MSG_FILTER_GO:
	case PROTO_MSG_FILTER_ECHO:
	case PROTO_MSG_PUNCH_ACK:
	case PROTO_MSG_ADDR_CHECK:
	case PROTO_MSG_ADDR_ECHO:
		return true;
	default:
		return false;
	}
}

ssize_t proto_encode_msg(uint8_t *buf, size_t cap, const struct proto_msg *m)
{
	struct wr w = { .p = buf, .left = cap };
	unsigned int i;

	if (!msg_valid(m))
		return -EINVAL;

	wr_u8(&w, m->type);
	switch (m->type) {
	case PROTO_MSG_REGISTER:
		wr_be32(&w, m->reg.seq);
		wr_be16(&w, m->reg.wg_port);
		wr_u8(&w, m->reg.flags);
		wr_be16(&w, m->reg.page);
		wr_be16(&w, m->reg.n_pages);
		wr_u8(&w, m->reg.n_lan);
		for (i = 0; i < m->reg.n_lan; i++)
			wr_addr(&w, &m->reg.lan[i]);
		wr_be16(&w, m->reg.n_peers);
		for (i = 0; i < m->reg.n_peers; i++)
			wr_be64(&w, m->reg.peers[i]);
		break;
	case PROTO_MSG_REGISTER_ACK:
		wr_be32(&w, m->reg_ack.seq);
		wr_be16(&w, m->reg_ack.refresh_s);
		wr_be16(&w, m->reg_ack.rekey_s);
		wr_addr(&w, &m->reg_ack.observed);
		break;
	case PROTO_MSG_MAPPING:
		wr_be64(&w, m->mapping.probe_seq);
		wr_u8(&w, m->mapping.port_index);
		wr_addr(&w, &m->mapping.observed);
		break;
	case PROTO_MSG_FILTER_GO:
		wr_be64(&w, m->filter_go.nonce);
		break;
	case PROTO_MSG_FILTER_ECHO:
		wr_be64(&w, m->filter_echo.nonce);
		break;
	case PROTO_MSG_FILTER_RESULT:
		wr_u8(&w, m->filter_result.filter);
		break;
	case PROTO_MSG_PUNCH:
		wr_be32(&w, m->punch.attempt);
		wr_bytes(&w, m->punch.peer_key, KEY_LEN);
		wr_u8(&w, m->punch.flags);
		wr_addr(&w, &m->punch.peer_public);
		wr_u8(&w, m->punch.n_lan);
		for (i = 0; i < m->punch.n_lan; i++)
			wr_addr(&w, &m->punch.lan[i]);
		break;
	case PROTO_MSG_PUNCH_ACK:
		wr_be32(&w, m->punch_ack.attempt);
		break;
	case PROTO_MSG_ADDR_CHECK:
	case PROTO_MSG_ADDR_ECHO:
		wr_be64(&w, m->addr_check.nonce);
		break;
	case PROTO_MSG_RELAY:
		wr_be32(&w, m->relay.attempt);
		wr_bytes(&w, m->relay.peer_key, KEY_LEN);
		wr_u8(&w, m->relay.flags);
		wr_addr(&w, &m->relay.relay);
		break;
	case PROTO_MSG_RELAY_REQUEST:
		wr_bytes(&w, m->relay_request.peer_key, KEY_LEN);
		break;
	case PROTO_MSG_RELAY_CLOSE:
		wr_bytes(&w, m->relay_close.peer_key, KEY_LEN);
		wr_u8(&w, m->relay_close.reason);
		break;
	}
	return wr_result(&w);
}

const char *proto_filter_name(uint8_t filter)
{
	switch (filter) {
	case PROTO_FILTER_SAFE:
		return "safe";
	case PROTO_FILTER_POISONABLE:
		return "poisonable";
	default:
		return "unknown";
	}
}

// SPDX-License-Identifier: MIT
/*
 * coord - the coordinator role (docs/rendezvous.md, coordinator side).
 *
 * One libuv loop, no threads. Every listen address is bound at port P (the
 * session: handshakes, DATA, probes) and P + 1 (probes, the filter echo, and
 * the source of the filter test's POISON). Everything a peer sends is
 * checked before it changes state; whatever fails a check is dropped,
 * counted by reason and logged at debug level only.
 *
 * This file: the lifetime, the sockets (sending, and the receive dispatch by
 * outer type and port), expiry, reload and status. The other pieces are
 * listed in coord_internal.h.
 */
#include "wgpunch/coord.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "wgpunch/addr.h"
#include "wgpunch/coord_filter.h"
#include "wgpunch/coord_hs.h"
#include "wgpunch/coord_internal.h"
#include "wgpunch/coord_pair.h"
#include "wgpunch/coord_session.h"
#include "wgpunch/key.h"
#include "wgpunch/log.h"
#include "wgpunch/proto.h"
#include "wgpunch/registry.h"

#define COORD_SWEEP_MS 1000
#define COORD_SWEEP_MAX 4096 /* expiries per sweep: bounded work per tick */
#define COORD_PENDING_PUNCHES 16384
#define COORD_MAX_LISTEN 64

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

struct send_req {
	uv_udp_send_t req;
	size_t len;
	uint8_t data[];
};

void coord_drop(uint64_t *counter, const struct addr *from, const char *why)
{
	char b[ADDR_STRLEN];

	(*counter)++;
	log_debug("dropped a datagram from %s: %s", addr_format(from, b), why);
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

void coord_send(struct coord *c, struct coord_sock *s, const struct addr *to, const uint8_t *buf,
		size_t len)
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
		log_debug("send to %s failed: %s", addr_format(to, a), uv_strerror(e));
		return;
	}
	c->ctr.tx_datagrams++;
}

/* ---- nodes ---- */

static void coord_forget(struct coord *c, struct reg_node *n)
{
	coord_filter_cancel(c, n);
	registry_remove(&c->reg, n);
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

/* ---- receive path ---- */

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
			coord_hs_on_init(c, s, &from, &o);
		else
			coord_drop(&c->ctr.rx_unexpected, &from, "handshake on P + 1");
		break;
	case PROTO_DATA:
		coord_session_on_data(c, s, &from, p, &o);
		break;
	case PROTO_PROBE:
		coord_session_on_probe(c, s, &from, p, &o);
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
		return log_err_errno(r, "cannot bind %s", addr_format(&s->bound, a));
	r = uv_udp_recv_start(&s->udp, coord_on_alloc, coord_on_recv);
	if (r < 0)
		return log_err_errno(r, "cannot receive on %s", addr_format(&s->bound, a));
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
						  addr_format(&s->bound, a));
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
			 addr_format(&cr->listen[i], a), addr_port(&cr->listen[i]) + 1u);
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
		cJSON_AddStringToObject(l, "address", addr_format(&cr->listen[i], a));
		addr_set_port(&p1, addr_port(&p1) + 1);
		cJSON_AddStringToObject(l, "probe_address", addr_format(&p1, a));
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

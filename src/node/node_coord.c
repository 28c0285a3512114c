// SPDX-License-Identifier: MIT
/*
 * node_coord - the node's link with one coordinator: the object and its
 * lifetime, resolving the host, the session socket (datagrams out, and in to
 * node_session.c) and status. The session and the steps it carries are in
 * node_session.c and node_rdv.c.
 */
#include "wgpunch/node_coord.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "wgpunch/log.h"
#include "wgpunch/node_rdv.h"
#include "wgpunch/node_session.h"
#include "wgpunch/wg.h"

#define RESOLVE_EVERY_MS (5 * 60 * 1000)
#define RESOLVE_RETRY_MS 5000

struct send_req {
	uv_udp_send_t req;
	size_t len;
	uint8_t data[];
};

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

/* +-25 %: nodes behind one NAT restart together and would retry in lockstep. */
uint64_t node_coord_jitter(uint64_t ms)
{
	return ms - ms / 4 + randombytes_uniform((uint32_t)(ms / 2 + 1));
}

uint32_t node_coord_doubled(uint32_t ms, uint32_t max_ms)
{
	return ms * 2 > max_ms ? max_ms : ms * 2;
}

const char *node_coord_name(const struct node_coord *c, char buf[ADDR_STRLEN])
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
	uv_timer_t *timers[] = { &c->hs_timer,   &c->refresh_timer, &c->rekey_timer,
				 &c->reg_timer,  &c->resolve_timer, &c->probe_timer,
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

int node_coord_send(struct node_coord *c, const struct addr *to, const uint8_t *buf, size_t len)
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

/* ---- receiving ---- */

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

	if (c->stopping || s != c->sock || nread == 0 || !from)
		return;
	cnt = node_counters(c->node);
	if (nread < 0) {
		log_debug("receive from coordinator %s:%u: %s", c->host, c->port,
			  uv_strerror((int)nread));
		return;
	}
	cnt->rx_packets++;
	if (flags & UV_UDP_PARTIAL) {
		cnt->rx_bad_decode++;
		return;
	}
	node_session_on_datagram(c, (const uint8_t *)buf->base, (size_t)nread);
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
	node_session_down(c, "address changed");
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
	node_session_begin(c);
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

void node_coord_resolve(struct node_coord *c)
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
		node_coord_resolve(c);
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
	node_session_init(c);
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
		node_coord_resolve(c);
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
	cJSON_AddStringToObject(o, "mapping_type", node_rdv_mapping_type(c));
	cJSON_AddStringToObject(o, "filter", proto_filter_name(c->filter));
	return o;
}

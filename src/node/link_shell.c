// SPDX-License-Identifier: MIT
/*
 * link_shell - the socket, timer and resolver of one link, carrying out what
 * the pure engine (link.c) decides, and the log lines of what it reports.
 */
#include "wgpunch/link_shell.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "wgpunch/log.h"

#define X(name, help) COUNTER_DEF(link_shell_counters, name, help)
COUNTER_TABLE_DEFINE(link_shell_counters, LINK_SHELL_COUNTERS(X));
#undef X

struct send_req {
	uv_udp_send_t req;
	size_t len;
	uint8_t data[];
};

struct shell_sock {
	uv_udp_t udp;
	struct link_shell *s;
	int family;
};

struct link_shell {
	uv_loop_t *loop;
	struct link_shell_ops ops;
	unsigned int id; /* unique within the node; survives reloads */
	char *host;
	uint16_t port;
	uint32_t fwmark;
	uint8_t private_key[KEY_LEN];
	bool has_key;

	struct link link; /* the engine: only link_on_event() writes it */
	struct link_actions out;
	struct link_shell_counters counters;

	/* The handles: the socket (replaced when the family changes), the timer, the lookup.
	 * closing counts what libuv has not given back yet. */
	struct shell_sock *sock; /* NULL until resolved */
	uv_timer_t timer;
	uv_getaddrinfo_t gai;
	bool gai_pending;
	const char *resolve_err; /* why the last lookup failed, for the log */
	unsigned int closing;
	bool stopping;

	uint8_t rxbuf[2048];
};

static uint64_t now_ms(void)
{
	return uv_hrtime() / 1000000u;
}

static const char *shell_name(const struct link_shell *s, char buf[ADDR_STRLEN])
{
	if (addr_is_set(&s->link.addr))
		return addr_format(&s->link.addr, buf);
	snprintf(buf, ADDR_STRLEN, "%s:%u", s->host, s->port);
	return buf;
}

/* ---- lifetime ---- */

static void shell_release(struct link_shell *s)
{
	struct link_shell_ops ops = s->ops;

	if (--s->closing == 0 && s->stopping) {
		free(s->host);
		link_clear(&s->link);
		sodium_memzero(s, sizeof(*s));
		free(s);
		ops.closed(ops.arg);
	}
}

static void shell_on_handle_closed(uv_handle_t *h)
{
	shell_release(h->data);
}

static void shell_on_sock_closed(uv_handle_t *h)
{
	struct shell_sock *k = h->data;
	struct link_shell *s = k->s;

	free(k);
	shell_release(s);
}

static void shell_close_sock(struct link_shell *s)
{
	if (!s->sock)
		return;
	s->closing++;
	uv_close((uv_handle_t *)&s->sock->udp, shell_on_sock_closed);
	s->sock = NULL;
}

void link_shell_close(struct link_shell *s)
{
	if (s->stopping)
		return;
	s->stopping = true;
	s->closing++; /* held until every close below is queued */
	if (s->gai_pending) {
		s->closing++; /* its callback fires (cancelled or not) and releases */
		uv_cancel((uv_req_t *)&s->gai);
	}
	shell_close_sock(s);
	s->closing++;
	uv_close((uv_handle_t *)&s->timer, shell_on_handle_closed);
	shell_release(s);
}

/* ---- carrying out the engine's actions ---- */

static void shell_on_sent(uv_udp_send_t *req, int status)
{
	/* UV_ECANCELED: the socket is closing; s may be gone, touch nothing. */
	free(req->data);
}

/* For the debug log: what a send carries. */
static const char *send_name(const struct link_send *snd)
{
	static const char *const msg[] = {
		[PROTO_MSG_REGISTER] = "REGISTER",
		[PROTO_MSG_FILTER_ECHO] = "FILTER_ECHO",
		[PROTO_MSG_PUNCH_ACK] = "PUNCH_ACK",
	};

	if (snd->len > 1 && snd->buf[1] == PROTO_HS_INIT)
		return "HS_INIT";
	if (snd->len > 1 && snd->buf[1] == PROTO_PROBE)
		return "probe";
	if (snd->msg < sizeof(msg) / sizeof(msg[0]) && msg[snd->msg])
		return msg[snd->msg];
	return "DATA";
}

static void shell_send(struct link_shell *s, const struct link_send *snd)
{
	struct send_req *sr;
	char a[ADDR_STRLEN];
	uv_buf_t b;
	int r;

	if (snd->via == LINK_VIA_PROBER) {
		r = prober_send(s->ops.prober, &snd->to, snd->buf, snd->len);
		if (r < 0) {
			s->counters.probe_errors++;
			log_debug("probe to %s failed: %s", addr_format(&snd->to, a), strerror(-r));
			return;
		}
		s->counters.probes_sent++;
		log_debug("probe to %s", addr_format(&snd->to, a));
		return;
	}
	if (!s->sock || addr_family(&snd->to) != s->sock->family)
		return;
	sr = malloc(sizeof(*sr) + snd->len);
	if (!sr)
		return;
	sr->len = snd->len;
	memcpy(sr->data, snd->buf, snd->len);
	sr->req.data = sr;
	b = uv_buf_init((char *)sr->data, (unsigned int)snd->len);
	r = uv_udp_send(&sr->req, &s->sock->udp, &b, 1, &snd->to.sa, shell_on_sent);
	if (r < 0) {
		free(sr);
		s->counters.tx_errors++;
		log_debug("send to coordinator %s:%u failed: %s", s->host, s->port, uv_strerror(r));
		return;
	}
	s->counters.tx_packets++;
	log_debug("%s to coordinator %s", send_name(snd), addr_format(&snd->to, a));
}

static void shell_random(void *arg, void *buf, size_t len)
{
	randombytes_buf(buf, len);
}

static void shell_fill_register(void *arg, struct proto_register *reg)
{
	struct link_shell *s = arg;

	s->ops.fill_register(s->ops.arg, reg);
}

static void shell_resolve(struct link_shell *s);
static void shell_on_timer(uv_timer_t *t);

/* Logs what the engine reported; called after the actions, so a callback may feed the
 * engine again. */
static void shell_report(struct link_shell *s, unsigned int rep, const char *why, uint64_t retry_ms,
			 const struct proto_punch *punch)
{
	const struct link *l = &s->link;
	char a[ADDR_STRLEN], b[ADDR_STRLEN];

	if (rep & LINK_R_MOVED)
		log_info("coordinator %s:%u moved to %s", s->host, s->port,
			 addr_format(&l->addr, a));
	if (rep & LINK_R_DOWN) {
		log_info("session with coordinator %s down (%s), handshaking again",
			 shell_name(s, a), why);
		s->ops.on_session(s->ops.arg, s, false);
	}
	if (rep & LINK_R_RESOLVE_RETRY)
		log_warn("cannot resolve coordinator %s: %s, retrying in %.1f s", s->host,
			 s->resolve_err ? s->resolve_err : "no socket", (double)retry_ms / 1000);
	if (rep & LINK_R_UP) {
		log_info("session with coordinator %s up", shell_name(s, a));
		s->ops.on_session(s->ops.arg, s, true);
	}
	if (rep & LINK_R_REKEYED)
		log_debug("session with coordinator %s re-keyed", shell_name(s, a));
	if (rep & LINK_R_MAPPING)
		log_info("public mapping of the WireGuard port via coordinator %s: %s (%s)",
			 shell_name(s, a), addr_format(&l->mapping[0], b), link_mapping_type(l));
	if (rep & LINK_R_MAPPING6)
		log_info("IPv6 mapping of the WireGuard port via coordinator %s: %s",
			 shell_name(s, a), addr_format(&l->mapping6, b));
	if (rep & LINK_R_FILTER)
		log_info("NAT filter via coordinator %s: %s", shell_name(s, a),
			 proto_filter_name(l->filter));
	if (rep & LINK_R_PROBES_GIVEN_UP)
		log_debug("no complete MAPPING round from coordinator %s:%u, probing again with "
			  "the next refresh",
			  s->host, s->port);
	if (rep & LINK_R_PUNCH)
		s->ops.on_punch(s->ops.arg, s, punch);
}

/* One event into the engine, and what it returns carried out. */
static void shell_run(struct link_shell *s, const struct link_event *ev)
{
	struct proto_relay relay;
	struct link_env env = {
		.private_key = s->has_key ? s->private_key : NULL,
		.random = shell_random,
		.fill_register = shell_fill_register,
		.arg = s,
	};
	struct link_actions *o = &s->out;
	struct proto_punch punch;
	struct timespec wall;
	/* The loop's clock, which the timer runs on: a timer that fires finds its deadline
	 * reached. */
	uint64_t now = uv_now(s->loop), retry;
	unsigned int rep;
	const char *why;
	size_t i;

	if (s->stopping)
		return;
	clock_gettime(CLOCK_REALTIME, &wall);
	env.wall_s = wall.tv_sec;
	env.wall_ns = (uint32_t)wall.tv_nsec;
	link_on_event(&s->link, ev, &env, now, o);

	for (i = 0; i < o->n_sends; i++)
		shell_send(s, &o->sends[i]);
	if (o->timer_at)
		uv_timer_start(&s->timer, shell_on_timer, o->timer_at > now ? o->timer_at - now : 0,
			       0);
	else
		uv_timer_stop(&s->timer);
	/* A callback below may run the engine again and overwrite o: take what is needed. */
	rep = o->reports;
	why = o->down_why;
	retry = o->resolve_retry_ms;
	if (rep & LINK_R_PUNCH)
		punch = o->punch;
	if (rep & LINK_R_RELAY)
		relay = o->relay;
	if (o->resolve)
		shell_resolve(s);
	shell_report(s, rep, why, retry, &punch);
	if (rep & LINK_R_RELAY)
		s->ops.on_relay(s->ops.arg, s, &relay);
}

static void shell_on_timer(uv_timer_t *t)
{
	shell_run(t->data, &(struct link_event){ .type = LINK_EV_TIMER });
}

/* ---- receiving ---- */

static void shell_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct shell_sock *k = h->data;

	*buf = uv_buf_init((char *)k->s->rxbuf, sizeof(k->s->rxbuf));
}

static void shell_on_recv(uv_udp_t *u, ssize_t nread, const uv_buf_t *buf,
			  const struct sockaddr *from, unsigned flags)
{
	struct shell_sock *k = u->data;
	struct link_shell *s = k->s;
	struct link_event ev = { .type = LINK_EV_DATAGRAM };

	if (s->stopping || k != s->sock || nread == 0 || !from)
		return;
	if (nread < 0) {
		log_debug("receive from coordinator %s:%u: %s", s->host, s->port,
			  uv_strerror((int)nread));
		return;
	}
	ev.buf = (const uint8_t *)buf->base;
	ev.len = (size_t)nread;
	ev.truncated = flags & UV_UDP_PARTIAL;
	shell_run(s, &ev);
}

/* ---- resolution and the socket ---- */

void link_shell_set_fwmark(struct link_shell *s, uint32_t fwmark)
{
	uv_os_fd_t fd;

	s->fwmark = fwmark;
	if (!s->sock || uv_fileno((uv_handle_t *)&s->sock->udp, &fd) < 0)
		return;
	if (setsockopt(fd, SOL_SOCKET, SO_MARK, &fwmark, sizeof(fwmark)) < 0 && fwmark)
		log_warn("cannot set fwmark 0x%x on the session socket for coordinator %s:%u: %s",
			 fwmark, s->host, s->port, strerror(errno));
}

static int shell_open_sock(struct link_shell *s, int family)
{
	struct shell_sock *k = calloc(1, sizeof(*k));
	struct addr any = { 0 };
	int r;

	if (!k)
		return -ENOMEM;
	r = uv_udp_init_ex(s->loop, &k->udp, (unsigned int)family);
	if (r < 0) {
		free(k);
		return r;
	}
	k->s = s;
	k->family = family;
	k->udp.data = k;
	s->sock = k;
	any.sa.sa_family = (sa_family_t)family;
	r = uv_udp_bind(&k->udp, &any.sa, 0);
	if (r == 0)
		r = uv_udp_recv_start(&k->udp, shell_alloc, shell_on_recv);
	if (r < 0) {
		shell_close_sock(s);
		return r;
	}
	if (s->fwmark)
		link_shell_set_fwmark(s, s->fwmark);
	return 0;
}

/* An address for the coordinator: a socket of its family first, then the engine. a6: its
 * IPv6 address beside an IPv4 a, for probes only (NULL: none). */
static void shell_use_addr(struct link_shell *s, const struct addr *a, const struct addr *a6)
{
	struct link_event ev = { .type = LINK_EV_RESOLVED };
	char buf[ADDR_STRLEN];
	int r;

	if (!addr_is_set(&s->link.addr))
		log_debug("coordinator %s:%u is %s", s->host, s->port, addr_format(a, buf));
	if (!s->sock || s->sock->family != addr_family(a)) {
		shell_close_sock(s);
		r = shell_open_sock(s, addr_family(a));
		if (r < 0) {
			log_warn("cannot open a socket for coordinator %s: %s", addr_format(a, buf),
				 uv_strerror(r));
			s->resolve_err = NULL;
			shell_run(s, &(struct link_event){ .type = LINK_EV_SOCKET_FAILED });
			return;
		}
	}
	ev.addr = *a;
	if (a6)
		ev.addr6 = *a6;
	shell_run(s, &ev);
}

/* Whether this host has a route to a (with our fwmark): connect() on UDP asks the routing
 * table and sends nothing. An IPv6-only host has none to an IPv4 coordinator address. */
static bool shell_routable(const struct link_shell *s, const struct addr *a)
{
	int fd = socket(addr_family(a), SOCK_DGRAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		return false;
	if (s->fwmark)
		(void)setsockopt(fd, SOL_SOCKET, SO_MARK, &s->fwmark, sizeof(s->fwmark));
	ok = connect(fd, &a->sa, addr_len(a)) == 0;
	close(fd);
	return ok;
}

static void shell_on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct link_shell *s = req->data;
	struct addrinfo *ai;
	struct addr a4 = { 0 }, a6 = { 0 }, *pick;

	s->gai_pending = false;
	if (s->stopping) {
		uv_freeaddrinfo(res);
		shell_release(s);
		return;
	}
	/* The first address of each family. */
	for (ai = status == 0 ? res : NULL; ai; ai = ai->ai_next) {
		struct addr *slot = ai->ai_family == AF_INET ? &a4 : &a6;

		if ((ai->ai_family == AF_INET || ai->ai_family == AF_INET6) && !addr_is_set(slot) &&
		    addr_from_sockaddr(slot, ai->ai_addr, ai->ai_addrlen) < 0)
			memset(slot, 0, sizeof(*slot));
	}
	uv_freeaddrinfo(res);
	if (!addr_is_set(&a4) && !addr_is_set(&a6)) {
		s->resolve_err = status < 0 ? uv_strerror(status) : "no address";
		shell_run(s, &(struct link_event){ .type = LINK_EV_RESOLVE_FAILED });
		return;
	}
	addr_set_port(&a4, s->port);
	addr_set_port(&a6, s->port);
	/* The session over IPv4 where this host can reach it (its NAT is what the filter test
	 * and the relay reason about); the IPv6 address then only takes the probe that tells
	 * the coordinator our IPv6 mapping. An IPv6-only host has its session over IPv6. */
	if (addr_is_set(&a4) && (shell_routable(s, &a4) || !addr_is_set(&a6))) {
		pick = &a4;
		if (addr_is_set(&a6) && !shell_routable(s, &a6))
			memset(&a6, 0, sizeof(a6));
	} else {
		pick = &a6;
	}
	shell_use_addr(s, pick, pick == &a4 && addr_is_set(&a6) ? &a6 : NULL);
}

static void shell_resolve(struct link_shell *s)
{
	struct addrinfo hints = { .ai_socktype = SOCK_DGRAM, .ai_family = AF_UNSPEC };
	int r;

	if (s->gai_pending || s->stopping)
		return;
	s->gai.data = s;
	r = uv_getaddrinfo(s->loop, &s->gai, shell_on_resolved, s->host, NULL, &hints);
	if (r < 0) {
		s->resolve_err = uv_strerror(r);
		shell_run(s, &(struct link_event){ .type = LINK_EV_RESOLVE_FAILED });
		return;
	}
	s->gai_pending = true;
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

/* ---- the node's calls ---- */

int link_shell_start(uv_loop_t *loop, const struct config_coordinator *cc, unsigned int id,
		     const uint8_t *private_key, uint32_t fwmark, const struct link_shell_ops *ops,
		     struct link_shell **out)
{
	struct link_shell *s = calloc(1, sizeof(*s));
	struct addr a;
	bool literal;

	if (!s)
		return -ENOMEM;
	s->host = strdup(cc->host);
	if (!s->host) {
		free(s);
		return -ENOMEM;
	}
	s->loop = loop;
	s->ops = *ops;
	s->id = id;
	s->port = cc->port;
	s->fwmark = fwmark;
	if (private_key) {
		memcpy(s->private_key, private_key, KEY_LEN);
		s->has_key = true;
	}
	uv_timer_init(loop, &s->timer); /* cannot fail for a valid loop */
	s->timer.data = s;
	*out = s;

	literal = parse_literal(s->host, s->port, &a);
	link_init(&s->link, s->port, cc->public_key, literal ? &a : NULL);
	if (literal)
		shell_use_addr(s, &a, NULL);
	else
		shell_run(s, &(struct link_event){ .type = LINK_EV_START });
	return 0;
}

void link_shell_set_identity(struct link_shell *s, const uint8_t private_key[KEY_LEN])
{
	memcpy(s->private_key, private_key, KEY_LEN);
	s->has_key = true;
	shell_run(s, &(struct link_event){ .type = LINK_EV_IDENTITY });
}

void link_shell_register(struct link_shell *s, bool probe)
{
	shell_run(s, &(struct link_event){ .type = LINK_EV_REGISTER, .flag = probe });
}

void link_shell_probe(struct link_shell *s)
{
	shell_run(s, &(struct link_event){ .type = LINK_EV_PROBE });
}

void link_shell_activity(struct link_shell *s, bool active)
{
	if (s->link.active != active)
		shell_run(s, &(struct link_event){ .type = LINK_EV_ACTIVITY, .flag = active });
}

void link_shell_resync(struct link_shell *s, bool now)
{
	shell_run(s, &(struct link_event){ .type = LINK_EV_RESYNC, .flag = now });
}

void link_shell_punch_done(struct link_shell *s, uint32_t attempt)
{
	shell_run(s, &(struct link_event){ .type = LINK_EV_PUNCH_DONE, .attempt = attempt });
}

void link_shell_relay_bind(struct link_shell *s, const struct addr *relay)
{
	shell_run(s, &(struct link_event){ .type = LINK_EV_RELAY_BIND, .addr = *relay });
}

void link_shell_relay_request(struct link_shell *s, const uint8_t peer_key[KEY_LEN])
{
	shell_run(s, &(struct link_event){ .type = LINK_EV_RELAY_REQUEST, .peer_key = peer_key });
}

void link_shell_relay_close(struct link_shell *s, const uint8_t peer_key[KEY_LEN], uint8_t reason)
{
	shell_run(s, &(struct link_event){
			     .type = LINK_EV_RELAY_CLOSE, .peer_key = peer_key, .reason = reason });
}

unsigned int link_shell_id(const struct link_shell *s)
{
	return s->id;
}

bool link_shell_same_conf(const struct link_shell *s, const struct config_coordinator *cc)
{
	return s->port == cc->port && strcmp(s->host, cc->host) == 0 &&
	       memcmp(s->link.public_key, cc->public_key, KEY_LEN) == 0;
}

const struct link *link_shell_link(const struct link_shell *s)
{
	return &s->link;
}

const struct link_shell_counters *link_shell_counters(const struct link_shell *s)
{
	return &s->counters;
}

cJSON *link_shell_status(const struct link_shell *s)
{
	const struct link *l = &s->link;
	cJSON *o = cJSON_CreateObject();
	char buf[ADDR_STRLEN], key[KEY_B64_LEN + 1];

	if (!o)
		return NULL;
	key_to_base64(key, l->public_key);
	cJSON_AddStringToObject(o, "host", s->host);
	cJSON_AddNumberToObject(o, "port", s->port);
	if (addr_is_set(&l->addr))
		cJSON_AddStringToObject(o, "address", addr_format(&l->addr, buf));
	else
		cJSON_AddNullToObject(o, "address");
	cJSON_AddStringToObject(o, "public_key", key);
	cJSON_AddStringToObject(o, "state", link_state_name(l->state));
	if (l->last_rx_ms)
		cJSON_AddNumberToObject(o, "last_rx_s_ago",
					(double)((now_ms() - l->last_rx_ms) / 1000));
	else
		cJSON_AddNullToObject(o, "last_rx_s_ago");
	if (addr_is_set(&l->mapping[0]))
		cJSON_AddStringToObject(o, "mapping", addr_format(&l->mapping[0], buf));
	else
		cJSON_AddNullToObject(o, "mapping");
	cJSON_AddStringToObject(o, "mapping_type", link_mapping_type(l));
	cJSON_AddStringToObject(o, "filter", proto_filter_name(l->filter));
	if (addr_is_set(&l->mapping6))
		cJSON_AddStringToObject(o, "ipv6_mapping", addr_format(&l->mapping6, buf));
	else
		cJSON_AddNullToObject(o, "ipv6_mapping");
	return o;
}

// SPDX-License-Identifier: MIT
/*
 * transport - the coordinator's sockets, session framing and dispatch
 * (docs/rendezvous.md sections 1 and 2 for what is framed here).
 */
#include "wgpunch/transport.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <sodium.h>

#include "wgpunch/key.h"
#include "wgpunch/log.h"
#include "wgpunch/registry.h"
#include "wgpunch/session.h"
#include "wgpunch/udp_batch.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define X(name, help) COUNTER_DEF(transport_counters, name, help)
COUNTER_TABLE_DEFINE(transport_counters, TRANSPORT_COUNTERS(X));
#undef X

/*
 * Everything a batch needs, allocated once with the transport: reading and answering a
 * datagram allocates nothing. Replies made while a read batch is handled wait in tx and go
 * out with one sendmmsg per run of one socket when the batch is done (or the queue fills).
 */
struct transport_batch {
	struct mmsghdr rx[TRANSPORT_BATCH];
	struct iovec rxiov[TRANSPORT_BATCH];
	struct addr src[TRANSPORT_BATCH];
	union {
		char buf[UDP_BATCH_CTL_SPACE];
		struct cmsghdr align;
	} ctl[TRANSPORT_BATCH];
	uint8_t rxdata[TRANSPORT_BATCH][TRANSPORT_RXBUF];
	unsigned int ntx;
	struct mmsghdr tx[TRANSPORT_TXBATCH];
	struct iovec txiov[TRANSPORT_TXBATCH];
	struct addr dst[TRANSPORT_TXBATCH];
	struct transport_sock *txsock[TRANSPORT_TXBATCH];
	uint8_t txdata[TRANSPORT_TXBATCH][PROTO_MAX_DATAGRAM];
};

void transport_drop(uint64_t *counter, const struct addr *from, const char *why)
{
	char b[ADDR_STRLEN];

	(*counter)++;
	log_debug("dropped a datagram from %s: %s", addr_format(from, b), why);
}

struct transport_sock *transport_sock(struct transport *t, struct transport_sock_id id)
{
	if (id.listen >= t->n_listen || id.role >= TRANSPORT_LISTEN_ROLES)
		return NULL;
	return &t->listen[id.listen].sock[id.role];
}

/* ---- sending: transport_tx() is the one place a datagram leaves ---- */

static int transport_fd(const struct transport_sock *s)
{
	uv_os_fd_t fd;

	if (uv_is_closing(&s->h.uv.handle) || uv_fileno(&s->h.uv.handle, &fd) < 0)
		return -1;
	return fd;
}

static void transport_tx_failed(struct transport *t, int e)
{
	/* a full socket buffer drops the datagram, as a router would: waiting stalls the loop */
	if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS)
		t->ctr.tx_eagain++;
	else
		t->ctr.tx_errors++;
	log_debug("send failed: %s", strerror(e));
}

/* Sends tx[first..first+n) (all from one socket), retrying what the kernel did not take. */
static void transport_flush_run(struct transport *t, unsigned int first, unsigned int n)
{
	struct transport_batch *b = t->batch;
	int fd = transport_fd(b->txsock[first]);
	unsigned int sent = 0, tries = 0;

	if (fd < 0)
		return; /* the socket is closing, and the coordinator with it */
	while (sent < n && tries++ < n + 4) {
		int r = sendmmsg(fd, b->tx + first + sent, n - sent, MSG_DONTWAIT);

		t->ctr.tx_batches++;
		if (r > 0) {
			t->ctr.tx_datagrams += (unsigned int)r;
			sent += (unsigned int)r;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		transport_tx_failed(t, r < 0 ? errno : EIO);
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
			t->ctr.tx_eagain += n - sent - 1; /* the rest would meet the same buffer */
			return;
		}
		sent++; /* skip the one the kernel refuses (an ICMP error, a bad address) */
	}
}

/* Sends what the read batch queued. */
static void transport_flush(struct transport *t)
{
	struct transport_batch *b = t->batch;
	unsigned int i = 0;

	while (i < b->ntx) {
		unsigned int k = 1;

		while (i + k < b->ntx && b->txsock[i + k] == b->txsock[i])
			k++;
		transport_flush_run(t, i, k);
		i += k;
	}
	b->ntx = 0;
}

static void transport_tx(struct transport *t, struct transport_sock *s, const struct addr *to,
			 const uint8_t *buf, size_t len)
{
	struct transport_batch *b = t->batch;
	unsigned int i;
	int fd;

	if (len > PROTO_MAX_DATAGRAM) {
		t->ctr.tx_errors++;
		return;
	}
	if (!t->in_batch) {
		/* a timer's send, or transport_input() called directly: one datagram now */
		fd = transport_fd(s);
		if (fd < 0)
			return;
		if (sendto(fd, buf, len, MSG_DONTWAIT, &to->sa, addr_len(to)) < 0) {
			transport_tx_failed(t, errno);
			return;
		}
		t->ctr.tx_datagrams++;
		return;
	}
	if (b->ntx == TRANSPORT_TXBATCH)
		transport_flush(t);
	i = b->ntx++;
	memcpy(b->txdata[i], buf, len);
	b->dst[i] = *to;
	b->txsock[i] = s;
	b->txiov[i].iov_len = len;
	b->tx[i].msg_hdr.msg_namelen = addr_len(to);
}

void transport_send(struct transport *t, struct transport_sock_id id, const struct addr *to,
		    const uint8_t *buf, size_t len)
{
	struct transport_sock *s = transport_sock(t, id);

	if (!s || coord_handles_closing(t->handles))
		return;
	transport_tx(t, s, to, buf, len);
}

/* DATA{m} under n's session to `to` from P of listen address `listen`; its length, or 0. */
static size_t transport_send_msg_to(struct transport *t, struct reg_node *n,
				    const struct proto_msg *m, uint8_t listen,
				    const struct addr *to, size_t max_len)
{
	size_t pre = proto_outer_prefix_len(PROTO_DATA);
	uint8_t pt[PROTO_MAX_DATAGRAM], out[PROTO_MAX_DATAGRAM];
	struct transport_sock_id id = { .listen = listen, .role = TRANSPORT_MAIN };
	struct proto_outer o;
	ssize_t pl, len;

	if (!n->local_idx)
		return 0;
	pl = proto_encode_msg(pt, sizeof(pt) - pre - PROTO_TAG_LEN, m);
	if (pl < 0) {
		log_debug("cannot encode message type %u: %s", m->type, strerror((int)-pl));
		return 0;
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
	if (len < 0 || (size_t)len > max_len)
		return 0;
	session_encrypt(n->send_key, n->send_counter, out, pre, pt, (size_t)pl, out + pre);
	n->send_counter++;
	transport_send(t, id, to, out, (size_t)len);
	return (size_t)len;
}

void transport_send_msg(struct transport *t, struct reg_node *n, const struct proto_msg *m)
{
	struct addr to;

	registry_addr_unpack(&to, &n->session_addr);
	transport_send_msg_to(t, n, m, n->sock, &to, PROTO_MAX_DATAGRAM);
}

/* ---- sessions ---- */

void transport_session_install(struct transport *t, struct reg_node *n,
			       const struct session_keys *keys, uint32_t remote_idx,
			       struct transport_sock_id id, const struct addr *from)
{
	n->remote_idx = remote_idx;
	n->send_counter = 0;
	memcpy(n->send_key, keys->send, SESSION_KEY_LEN);
	memcpy(n->recv_key, keys->recv, SESSION_KEY_LEN);
	session_probe_key(keys, n->probe_key);
	memset(&n->replay, 0, sizeof(n->replay));
	memset(n->probe_seq, 0, sizeof(n->probe_seq));
	n->addr_check_ms = 0;
	registry_addr_pack(&n->session_addr, from);
	n->sock = id.listen;
	addr_hint_add(&t->hint, &n->session_addr, n->sock, uv_now(t->loop));
}

bool transport_may_hold_session(const struct transport *t, const struct transport_rx *rx)
{
	struct reg_addr src;

	registry_addr_pack(&src, rx->from);
	return addr_hint_maybe(&t->hint, &src, rx->sock->id.listen);
}

static bool transport_unknown_allowed(struct transport *t)
{
	uint64_t now = uv_now(t->loop);
	uint64_t add = (now - t->unknown_refill_ms) * TRANSPORT_UNKNOWN_PER_S / 1000;

	if (add) {
		t->unknown_tokens = (uint32_t)(t->unknown_tokens + add > TRANSPORT_UNKNOWN_PER_S
						       ? TRANSPORT_UNKNOWN_PER_S
						       : t->unknown_tokens + add);
		t->unknown_refill_ms = now;
	}
	if (!t->unknown_tokens)
		return false;
	t->unknown_tokens--;
	return true;
}

/* Unauthenticated, so it can only ever cause a re-handshake; rate-limited in all. */
static void transport_send_unknown(struct transport *t, const struct transport_sock *s,
				   const struct addr *to, uint32_t idx)
{
	struct proto_outer o = { .type = PROTO_SESSION_UNKNOWN, .receiver_idx = idx };
	uint8_t out[16];
	ssize_t len;

	t->ctr.unknown_index++;
	if (!transport_unknown_allowed(t)) {
		t->ctr.session_unknown_limited++;
		return;
	}
	len = proto_encode_outer(out, sizeof(out), &o);
	if (len < 0)
		return;
	t->ctr.session_unknown_sent++;
	transport_send(t, s->id, to, out, (size_t)len);
}

/*
 * The ADDR_CHECK nonce for n's check sent at `sent_ms` to `to` (listen address `listen`): a
 * keyed hash, so the check needs no state beyond its time, and an echo proves the node read
 * a datagram sent to exactly that address.
 */
static uint64_t transport_addr_nonce(const struct transport *t, const struct reg_node *n,
				     const struct reg_addr *to, uint8_t listen, uint64_t sent_ms)
{
	uint8_t in[4 + 16 + 2 + 1 + 1 + 8], h[crypto_shorthash_BYTES];
	uint64_t v = 0;

	memcpy(in, &n->local_idx, 4);
	memcpy(in + 4, to->ip, 16);
	memcpy(in + 20, &to->port, 2);
	in[22] = to->family;
	in[23] = listen;
	memcpy(in + 24, &sent_ms, 8);
	crypto_shorthash(h, in, sizeof(in), t->addr_key);
	for (size_t i = 0; i < sizeof(h); i++)
		v = v << 8 | h[i];
	return v;
}

/*
 * Authentic DATA on P from another address than n's session address: a NAT rebinding, or a
 * captured datagram sent on from a forged source. The session moves only when the node
 * echoes the nonce sent there (transport_on_addr_echo). At most one check outstanding per
 * node and one per TRANSPORT_ADDR_CHECK_MS, never larger than the DATA that caused it.
 */
static void transport_addr_check(struct transport *t, struct reg_node *n,
				 const struct transport_rx *rx, const struct reg_addr *src)
{
	uint64_t now = uv_now(t->loop);
	struct proto_msg m = { .type = PROTO_MSG_ADDR_CHECK };

	if (n->addr_check_ms && now - n->addr_check_ms < TRANSPORT_ADDR_CHECK_MS) {
		t->ctr.addr_check_limited++;
		return;
	}
	m.addr_check.nonce = transport_addr_nonce(t, n, src, rx->sock->id.listen, now);
	if (!transport_send_msg_to(t, n, &m, rx->sock->id.listen, rx->from, rx->len)) {
		t->ctr.addr_check_limited++;
		return;
	}
	n->addr_check_ms = now;
	t->ctr.addr_check_sent++;
	if (log_enabled(LOG_LEVEL_DEBUG)) {
		char k[KEY_SHORT_LEN], a[ADDR_STRLEN];

		log_debug("node %s heard from %s: checking the address", key_short(n->key, k),
			  addr_format(rx->from, a));
	}
}

/* ADDR_ECHO, authentic, from rx->from: moves n there if it answers the outstanding check. */
static void transport_on_addr_echo(struct transport *t, struct reg_node *n,
				   const struct transport_rx *rx, const struct reg_addr *src,
				   uint64_t nonce)
{
	uint64_t now = uv_now(t->loop);
	uint8_t listen = rx->sock->id.listen;
	char k[KEY_SHORT_LEN], a[ADDR_STRLEN];

	if (!n->addr_check_ms || now - n->addr_check_ms > TRANSPORT_ADDR_CHECK_TTL_MS ||
	    nonce != transport_addr_nonce(t, n, src, listen, n->addr_check_ms)) {
		transport_drop(&t->ctr.addr_echo_bad, rx->from,
			       "ADDR_ECHO answers no check sent to its source");
		return;
	}
	n->addr_check_ms = 0;
	t->ctr.addr_moved++;
	log_debug("node %s moved to %s", key_short(n->key, k), addr_format(rx->from, a));
	n->session_addr = *src;
	n->sock = listen;
	addr_hint_add(&t->hint, src, listen, now);
	t->sessions.moved(t->sessions.arg, n);
}

static void transport_on_data(struct transport *t, struct transport_rx *rx)
{
	size_t pre = proto_outer_prefix_len(PROTO_DATA);
	const struct proto_outer *o = rx->outer;
	uint8_t pt[PROTO_MAX_DATAGRAM];
	struct reg_node *n = t->sessions.find(t->sessions.arg, o->receiver_idx);
	const struct transport_route *d;
	struct reg_addr src;
	struct proto_msg m;
	bool elsewhere;
	ssize_t pl;

	if (!n) {
		transport_send_unknown(t, rx->sock, rx->from, o->receiver_idx);
		return;
	}
	if (!session_replay_check(&n->replay, o->counter)) {
		transport_drop(&t->ctr.data_replayed, rx->from, "DATA counter replayed");
		return;
	}
	pl = session_decrypt(n->recv_key, o->counter, rx->buf, pre, o->body, o->body_len, pt);
	if (pl < 0) {
		transport_drop(&t->ctr.data_bad_auth, rx->from, "DATA does not authenticate");
		return;
	}
	session_replay_commit(&n->replay, o->counter);
	t->sessions.seen(t->sessions.arg, n);

	if (proto_decode_msg(pt, (size_t)pl, &m) < 0) {
		transport_drop(&t->ctr.data_malformed, rx->from, "inner message does not decode");
		return;
	}
	/* NAT rebinding: follow the node, but only on P (P + 1 sees the remapped echo), and only
	 * once it proved it receives at the new address. */
	registry_addr_pack(&src, rx->from);
	elsewhere =
		rx->sock->id.role == TRANSPORT_MAIN &&
		(!registry_addr_equal(&src, &n->session_addr) || n->sock != rx->sock->id.listen);
	/* The transport's own, on P only (elsewhere: dropped as unexpected below). From the
	 * session address itself it is a late copy of an echo that already moved it. */
	if (m.type == PROTO_MSG_ADDR_ECHO && rx->sock->id.role == TRANSPORT_MAIN) {
		if (elsewhere)
			transport_on_addr_echo(t, n, rx, &src, m.addr_check.nonce);
		return;
	}
	if (elsewhere)
		transport_addr_check(t, n, rx, &src);
	else if (rx->sock->id.role == TRANSPORT_MAIN)
		addr_hint_add(&t->hint, &src, n->sock, uv_now(t->loop));

	d = m.type < TRANSPORT_MSG_TYPES ? &t->msg[m.type] : NULL;
	if (!d || !d->fn || !(d->roles & TRANSPORT_ROLE_BIT(rx->sock->id.role))) {
		transport_drop(&t->ctr.data_unexpected, rx->from,
			       "message a node does not send on this port");
		return;
	}
	rx->node = n;
	rx->msg = &m;
	d->fn(d->arg, rx);
}

/* The purpose a probe must carry on a socket of this role. */
static int transport_probe_purpose(uint8_t role)
{
	switch (role) {
	case TRANSPORT_MAIN:
		return PROTO_PROBE_MAP_P;
	case TRANSPORT_PROBE:
		return PROTO_PROBE_MAP_P1;
	}
	return -1; /* relay purposes go to the relay's own sockets (issue 8) */
}

/*
 * A PROBE's sender: meant for this very socket (dst_port is its port, the purpose its role's),
 * its session's MAC over all of that, and a sequence above the last one accepted for that
 * purpose. So a probe captured on its way to P + 1 and replayed to P fails (finding 1).
 * An unknown index gets no SESSION_UNKNOWN: the node cannot read it on its WireGuard port.
 */
static struct reg_node *transport_check_probe(struct transport *t, const struct transport_rx *rx)
{
	const struct proto_outer *o = rx->outer;
	struct reg_node *n;
	uint8_t role = rx->sock->id.role;

	if (o->purpose != transport_probe_purpose(role) ||
	    o->dst_port != addr_port(&rx->sock->bound)) {
		transport_drop(&t->ctr.probe_wrong_port, rx->from,
			       "probe meant for another port or purpose");
		return NULL;
	}
	n = t->sessions.find(t->sessions.arg, o->receiver_idx);
	if (!n) {
		transport_drop(&t->ctr.unknown_index, rx->from, "probe for an unknown index");
		return NULL;
	}
	if (!session_probe_mac_ok(n->probe_key, rx->buf, proto_outer_prefix_len(PROTO_PROBE),
				  o->body)) {
		transport_drop(&t->ctr.probe_bad_mac, rx->from, "probe MAC does not verify");
		return NULL;
	}
	if (o->counter <= n->probe_seq[o->purpose]) {
		transport_drop(&t->ctr.probe_replayed, rx->from,
			       "probe sequence not above the last");
		return NULL;
	}
	n->probe_seq[o->purpose] = o->counter;
	return n;
}

void transport_input(struct transport *t, const struct transport_sock *s, const struct addr *from,
		     const uint8_t *buf, size_t len, bool truncated)
{
	struct transport_rx rx = { .sock = s, .from = from, .buf = buf, .len = len };
	const struct transport_route *d;
	struct proto_outer o;

	t->ctr.rx_datagrams++;
	if (truncated) {
		transport_drop(&t->ctr.rx_malformed, from, "truncated");
		return;
	}
	if (proto_decode_outer(buf, len, &o) < 0) {
		transport_drop(&t->ctr.rx_malformed, from, "not a wgpunch message");
		return;
	}
	rx.outer = &o;
	if (o.type == PROTO_DATA) {
		transport_on_data(t, &rx);
		return;
	}
	d = o.type < TRANSPORT_OUTER_TYPES ? &t->outer[o.type] : NULL;
	if (!d || !d->fn) {
		transport_drop(&t->ctr.rx_unexpected, from,
			       "message type a coordinator never receives");
		return;
	}
	if (!(d->roles & TRANSPORT_ROLE_BIT(s->id.role))) {
		transport_drop(&t->ctr.rx_unexpected, from, "message type not for this port");
		return;
	}
	if (o.type == PROTO_PROBE) {
		rx.node = transport_check_probe(t, &rx);
		if (!rx.node)
			return;
	}
	d->fn(d->arg, &rx);
}

void transport_route_outer(struct transport *t, uint8_t type, unsigned int roles,
			   transport_handler_fn fn, void *arg)
{
	/* DATA is the transport's own; its inner messages go through transport_route_msg(). */
	if (type >= TRANSPORT_OUTER_TYPES || type == PROTO_DATA)
		return;
	t->outer[type] = (struct transport_route){ .fn = fn, .arg = arg, .roles = roles };
}

void transport_route_msg(struct transport *t, uint8_t type, unsigned int roles,
			 transport_handler_fn fn, void *arg)
{
	if (type >= TRANSPORT_MSG_TYPES)
		return;
	t->msg[type] = (struct transport_route){ .fn = fn, .arg = arg, .roles = roles };
}

/*
 * ---- receiving: recvmmsg, woken by libuv ----
 *
 * The libuv handle stays the socket's owner (bind, close, the handle list), but it never
 * reads: the alloc callback hands it no buffer, which libuv documents as making the receive
 * callback report UV_ENOBUFS without reading. That callback is the socket being readable,
 * and the datagrams are read here in batches of TRANSPORT_BATCH, at most
 * TRANSPORT_BATCHES_PER_EVENT of them a wake-up so that one busy socket cannot starve the
 * loop's timers and other sockets (epoll is level-triggered: what is left wakes us again).
 */

static void transport_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	buf->base = NULL;
	buf->len = 0;
}

/* One recvmmsg batch from s, handled; the datagrams read, or -1 when there were none. */
static int transport_read_batch(struct transport *t, struct transport_sock *s)
{
	struct transport_batch *b = t->batch;
	int fd = transport_fd(s), n;

	if (fd < 0)
		return -1;
	for (int i = 0; i < TRANSPORT_BATCH; i++) {
		b->rx[i].msg_hdr.msg_namelen = sizeof(b->src[i]);
		b->rx[i].msg_hdr.msg_controllen = sizeof(b->ctl[i].buf);
		b->rx[i].msg_hdr.msg_flags = 0;
	}
	n = recvmmsg(fd, b->rx, TRANSPORT_BATCH, MSG_DONTWAIT, NULL);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return -1;
		/* ICMP errors for earlier sends and the like: consumed, read on next time */
		t->ctr.rx_errors++;
		log_debug("receive error: %s", strerror(errno));
		return errno == EINTR ? 0 : -1;
	}
	t->ctr.rx_batches++;
	t->in_batch = true;
	for (int i = 0; i < n && !coord_handles_closing(t->handles); i++) {
		struct msghdr *h = &b->rx[i].msg_hdr;
		struct addr *from = &b->src[i];

		t->ctr.rx_kernel_drops += udp_rxq_ovfl(h, &s->rxq_ovfl);
		if (h->msg_namelen < sizeof(sa_family_t) ||
		    (from->sa.sa_family != AF_INET && from->sa.sa_family != AF_INET6))
			continue;
		transport_input(t, s, from, b->rxdata[i], b->rx[i].msg_len,
				h->msg_flags & MSG_TRUNC);
	}
	t->in_batch = false;
	if (coord_handles_closing(t->handles))
		b->ntx = 0;
	else
		transport_flush(t);
	return n;
}

static void transport_on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
			      const struct sockaddr *sa, unsigned int flags)
{
	struct coord_handle *ch = container_of(h, struct coord_handle, uv.udp);
	struct transport_sock *s = container_of(ch, struct transport_sock, h);

	(void)buf;
	(void)sa;
	(void)flags;
	if (nread != UV_ENOBUFS) {
		log_debug("receive error: %s", uv_strerror((int)nread));
		return;
	}
	for (int i = 0; i < TRANSPORT_BATCHES_PER_EVENT; i++) {
		int n = transport_read_batch(s->t, s);

		if (n < 0 || (n > 0 && n < TRANSPORT_BATCH))
			break; /* drained (or closing); 0 was an error consumed: read again */
	}
}

/* ---- lifetime ---- */

/* A listen socket stays only while its listen address is still configured, unchanged. */
static int transport_sock_reload_check(const struct coord_handle *h, const struct config *conf)
{
	const struct transport_sock *s = container_of(h, struct transport_sock, h);
	const struct transport *t = s->t;

	if (conf->coord.n_listen != t->n_listen || s->id.listen >= conf->coord.n_listen)
		return -EAGAIN;
	/* bound is the listen address itself on P, and port + 1 on P + 1. */
	struct addr want = conf->coord.listen[s->id.listen];

	if (s->id.role == TRANSPORT_PROBE)
		addr_set_port(&want, (uint16_t)(addr_port(&want) + 1));
	return addr_equal(&want, &s->bound) ? 0 : -EAGAIN;
}

static const struct coord_handle_ops transport_sock_ops = {
	.what = "listen socket",
	.reload_check = transport_sock_reload_check,
};

/* The parts of the headers that never change, filled once. */
static void transport_batch_init(struct transport_batch *b)
{
	for (int i = 0; i < TRANSPORT_BATCH; i++) {
		b->rxiov[i].iov_base = b->rxdata[i];
		b->rxiov[i].iov_len = sizeof(b->rxdata[i]);
		b->rx[i].msg_hdr.msg_iov = &b->rxiov[i];
		b->rx[i].msg_hdr.msg_iovlen = 1;
		b->rx[i].msg_hdr.msg_name = &b->src[i];
		b->rx[i].msg_hdr.msg_control = b->ctl[i].buf;
	}
	for (int i = 0; i < TRANSPORT_TXBATCH; i++) {
		b->txiov[i].iov_base = b->txdata[i];
		b->tx[i].msg_hdr.msg_iov = &b->txiov[i];
		b->tx[i].msg_hdr.msg_iovlen = 1;
		b->tx[i].msg_hdr.msg_name = &b->dst[i];
	}
}

int transport_init(struct transport *t, uv_loop_t *loop, struct coord_handles *handles,
		   const struct config_coordinator_role *cr, const struct transport_sessions *s)
{
	memset(t, 0, sizeof(*t));
	t->loop = loop;
	t->handles = handles;
	t->sessions = *s;
	t->unknown_tokens = TRANSPORT_UNKNOWN_PER_S;
	randombytes_buf(t->addr_key, sizeof(t->addr_key));
	t->unknown_refill_ms = uv_now(loop);
	{
		uint8_t k[ADDR_HINT_KEY_LEN];

		randombytes_buf(k, sizeof(k));
		if (addr_hint_init(&t->hint, k, TRANSPORT_HINT_PERIOD_MS, uv_now(loop)) < 0)
			return log_err_errno(-ENOMEM, "cannot start the coordinator");
		sodium_memzero(k, sizeof(k));
	}
	if (cr->n_listen == 0 || cr->n_listen > TRANSPORT_MAX_LISTEN)
		return log_err_errno(-EINVAL, "coordinator needs 1 to %d listen addresses",
				     TRANSPORT_MAX_LISTEN);
	t->listen = calloc(cr->n_listen, sizeof(*t->listen));
	t->batch = calloc(1, sizeof(*t->batch)); /* zeroed: no control data, no flags */
	if (!t->listen || !t->batch)
		return log_err_errno(-ENOMEM, "cannot start the coordinator");
	transport_batch_init(t->batch);
	t->n_listen = cr->n_listen;
	for (size_t i = 0; i < t->n_listen; i++) {
		for (uint8_t role = 0; role < TRANSPORT_LISTEN_ROLES; role++) {
			struct transport_sock *sk = &t->listen[i].sock[role];

			coord_handles_add_udp(handles, loop, &sk->h, &transport_sock_ops, t);
			sk->t = t;
			sk->id = (struct transport_sock_id){ .listen = (uint8_t)i, .role = role };
			sk->bound = cr->listen[i];
		}
	}
	return 0;
}

static int transport_bind_one(struct transport_sock *s)
{
	char a[ADDR_STRLEN];
	int r, rcv = 0, snd = 0;
	uv_os_fd_t fd;

	if (s->id.role == TRANSPORT_PROBE) {
		if (addr_port(&s->bound) == UINT16_MAX)
			return log_err_errno(-EINVAL, "listen %s: port + 1 does not exist",
					     addr_format(&s->bound, a));
		addr_set_port(&s->bound, (uint16_t)(addr_port(&s->bound) + 1));
	}
	r = uv_udp_bind(&s->h.uv.udp, &s->bound.sa,
			addr_family(&s->bound) == AF_INET6 ? UV_UDP_IPV6ONLY : 0);
	if (r < 0)
		return log_err_errno(r, "cannot bind %s", addr_format(&s->bound, a));
	r = uv_fileno(&s->h.uv.handle, &fd);
	if (r < 0)
		return log_err_errno(r, "no socket for %s", addr_format(&s->bound, a));
	r = udp_rxq_ovfl_enable(fd);
	if (r < 0)
		return log_err_errno(r, "cannot count drops on %s", addr_format(&s->bound, a));
	udp_sockbuf_set(fd, TRANSPORT_SOCKBUF, &rcv, &snd);
	/* Linux reports twice what it reserves (the other half is its bookkeeping) */
	log_info("listening on %s, socket buffers %d kB receive, %d kB send",
		 addr_format(&s->bound, a), rcv / 2048, snd / 2048);
	r = uv_udp_recv_start(&s->h.uv.udp, transport_on_alloc, transport_on_recv);
	if (r < 0)
		return log_err_errno(r, "cannot receive on %s", addr_format(&s->bound, a));
	return 0;
}

int transport_bind(struct transport *t)
{
	/* In order, P before P + 1, as the addresses are listed. */
	for (size_t i = 0; i < t->n_listen; i++) {
		for (uint8_t role = 0; role < TRANSPORT_LISTEN_ROLES; role++) {
			int r = transport_bind_one(&t->listen[i].sock[role]);

			if (r < 0)
				return r;
		}
	}
	return 0;
}

void transport_destroy(struct transport *t)
{
	addr_hint_destroy(&t->hint);
	free(t->listen);
	free(t->batch);
	t->listen = NULL;
	t->batch = NULL;
	t->n_listen = 0;
}

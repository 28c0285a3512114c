// SPDX-License-Identifier: MIT
/*
 * relay_fwd - relay ports' sockets, read and written in batches; decisions are relay_table's.
 * The contract is in the header; docs/relay.md has the design and the numbers.
 */
#include "wgpunch/relay_fwd.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wgpunch/udp_batch.h"

#define X(name, help) COUNTER_DEF(relay_fwd_counters, name, help)
COUNTER_TABLE_DEFINE(relay_fwd_counters, RELAY_FWD_COUNTERS(X));
#undef X

#define SOCK_V4 0
#define SOCK_V6 1

/* Everything one batch needs, allocated once: nothing on the forwarding path allocates. */
struct relay_fwd_batch {
	struct mmsghdr rx[RELAY_FWD_BATCH];
	struct iovec rxiov[RELAY_FWD_BATCH];
	struct addr src[RELAY_FWD_BATCH]; /* recvmmsg writes the source straight into these */
	union {
		char buf[CMSG_SPACE(sizeof(uint32_t))];
		struct cmsghdr align;
	} ctl[RELAY_FWD_BATCH];
	struct mmsghdr tx[RELAY_FWD_BATCH];
	struct iovec txiov[RELAY_FWD_BATCH];
	/* the same datagrams as GSO runs: gso[i] holds gso_seg[i] of them, from tx[gso_first[i]] */
	struct mmsghdr gso[RELAY_FWD_BATCH];
	union {
		char buf[CMSG_SPACE(sizeof(uint16_t))];
		struct cmsghdr align;
	} gsoctl[RELAY_FWD_BATCH];
	uint8_t gso_seg[RELAY_FWD_BATCH], gso_first[RELAY_FWD_BATCH];
	uint8_t data[RELAY_FWD_BATCH][RTAB_MAX_DATAGRAM];
};

static void relay_fwd_on_idle_timer(uv_timer_t *t);

static int sock_index(int family)
{
	return family == AF_INET6 ? SOCK_V6 : SOCK_V4;
}

static struct relay_fwd_port *port_get(const struct relay_fwd *f, uint16_t port)
{
	const struct rtab_limits *l = &f->table->lim;

	if (!f->ports || port < l->port_min || port > l->port_max)
		return NULL; /* closed, or not a relay port */
	return f->ports[port - l->port_min];
}

int relay_fwd_init(struct relay_fwd *f, uv_loop_t *loop, struct rtab *table,
		   const struct addr *listen, size_t n, relay_fwd_control_cb on_control,
		   void (*on_idle)(struct relay_fwd *f, uint32_t relay, void *data), void *data)
{
	memset(f, 0, sizeof(*f));
	if (n == 0 || n > 2)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		int fam = addr_family(&listen[i]);

		if (fam != AF_INET && fam != AF_INET6)
			return -EINVAL;
		if (i == 1 && fam == addr_family(&listen[0]))
			return -EINVAL; /* one address per family: a port has one socket each */
		f->listen[i] = listen[i];
	}
	f->nlisten = n;
	f->loop = loop;
	f->table = table;
	f->on_control = on_control;
	f->on_idle = on_idle;
	f->data = data;
	f->ports = calloc(table->nports, sizeof(*f->ports));
	f->batch = malloc(sizeof(*f->batch));
	if (!f->ports || !f->batch) {
		free(f->ports);
		free(f->batch);
		return -ENOMEM;
	}
	struct relay_fwd_batch *b = f->batch;

	/* the parts of the headers that never change are filled once */
	memset(b, 0, offsetof(struct relay_fwd_batch, data));
	for (int i = 0; i < RELAY_FWD_BATCH; i++) {
		b->rxiov[i].iov_base = b->data[i];
		b->rxiov[i].iov_len = sizeof(b->data[i]);
		b->rx[i].msg_hdr.msg_iov = &b->rxiov[i];
		b->rx[i].msg_hdr.msg_iovlen = 1;
		b->rx[i].msg_hdr.msg_name = &b->src[i];
		b->rx[i].msg_hdr.msg_control = b->ctl[i].buf;
		b->tx[i].msg_hdr.msg_iov = &b->txiov[i];
		b->tx[i].msg_hdr.msg_iovlen = 1;
	}
	uv_timer_init(loop, &f->idle_timer);
	f->idle_timer.data = f;
	if (table->lim.idle_timeout_s) {
		uv_timer_start(&f->idle_timer, relay_fwd_on_idle_timer, RELAY_FWD_IDLE_CHECK_MS,
			       RELAY_FWD_IDLE_CHECK_MS);
		/* the relay sockets, not this timer, are what keeps a loop alive */
		uv_unref((uv_handle_t *)&f->idle_timer);
	}
	return 0;
}

/* ---- sending ---- */

static bool is_icmp_error(int e)
{
	/* what the kernel reports on a UDP socket after an ICMP error for an earlier datagram */
	return e == ECONNREFUSED || e == EHOSTUNREACH || e == ENETUNREACH || e == EHOSTDOWN ||
	       e == ENETDOWN || e == EPROTO || e == EMSGSIZE;
}

/*
 * ICMP errors (port unreachable: a node's mapping is gone) reach an unconnected UDP socket
 * only with IP_RECVERR, as entries in its error queue. A non-empty error queue keeps the fd
 * in EPOLLERR, so it is drained here, bounded, whenever one may be there; each entry counts.
 */
static void drain_errqueue(struct relay_fwd *f, int fd)
{
	uint8_t buf[64];
	char ctl[256];

	for (int i = 0; i < RELAY_FWD_BATCH; i++) {
		struct iovec iov = { buf, sizeof(buf) };
		struct msghdr m = { .msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = ctl,
				    .msg_controllen = sizeof(ctl) };

		if (recvmsg(fd, &m, MSG_ERRQUEUE | MSG_DONTWAIT) < 0)
			return;
		f->counters.icmp_errors++;
	}
}

/*
 * Sends msgs[0..n-1] from fd, seg[i] datagrams each (seg NULL: one each); every loop turn
 * sends some, skips one, or is one of a bounded number of retries after a consumed ICMP
 * error, so it cannot spin. A multi-segment (GSO) message the kernel refuses is resent one
 * datagram at a time from b->tx, starting at first[i].
 */
static void send_all(struct relay_fwd *f, int fd, struct mmsghdr *msgs, const uint8_t *seg,
		     const uint8_t *first, unsigned n)
{
	unsigned sent = 0, retries = 0;

	while (sent < n) {
		int r = sendmmsg(fd, msgs + sent, n - sent, MSG_DONTWAIT);

		f->counters.tx_batches++;
		if (r > 0) {
			if ((unsigned)r < n - sent)
				f->counters.tx_partial++;
			for (unsigned i = sent; i < sent + (unsigned)r; i++)
				f->counters.tx_datagrams += seg ? seg[i] : 1;
			sent += (unsigned)r;
			continue;
		}
		int e = r < 0 ? errno : EIO;
		unsigned k = seg ? seg[sent] : 1;

		if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS) {
			/* a full socket buffer: drop the rest, as a router would, and do not wait */
			for (unsigned i = sent; i < n; i++)
				f->counters.tx_eagain += seg ? seg[i] : 1;
			return;
		}
		if ((e == EINTR || is_icmp_error(e)) && e != EMSGSIZE && retries++ < 4) {
			/* the error was an earlier datagram's (ICMP) and is consumed: try again */
			if (e != EINTR)
				drain_errqueue(f, fd);
			continue;
		}
		if (k > 1) {
			/* EIO: the route's device cannot checksum for GSO, which will not change;
			 * otherwise (EINVAL, EMSGSIZE) this run is too big for the path's MTU */
			if (e == EIO || e == EOPNOTSUPP || e == ENOPROTOOPT)
				f->gso_off = true;
			f->counters.tx_gso_fallback++;
			send_all(f, fd, f->batch->tx + first[sent], NULL, NULL, k);
			sent++;
			continue;
		}
		f->counters.tx_errors++;
		sent++; /* skip the datagram the kernel refuses */
	}
}

/*
 * Sends tx[0..n-1] (all to one destination: a batch comes from one port, so one relay side)
 * from fd. Runs of equal-length datagrams go as one UDP GSO message (UDP_SEGMENT): the
 * kernel then routes and builds one packet per run instead of one per datagram, which on the
 * benchmark is most of the forwarder's time. Unequal lengths fall back to one message each.
 */
static void flush(struct relay_fwd *f, int fd, unsigned n)
{
	struct relay_fwd_batch *b = f->batch;
	unsigned m = 0;

	if (f->gso_off || n < 2) {
		send_all(f, fd, b->tx, NULL, NULL, n);
		return;
	}
	for (unsigned i = 0; i < n;) {
		size_t len = b->txiov[i].iov_len;
		unsigned k = 1;

		while (i + k < n && b->txiov[i + k].iov_len == len &&
		       (k + 1) * len <= RELAY_FWD_GSO_BYTES)
			k++;
		struct msghdr *h = &b->gso[m].msg_hdr;

		h->msg_name = b->tx[i].msg_hdr.msg_name;
		h->msg_namelen = b->tx[i].msg_hdr.msg_namelen;
		h->msg_iov = &b->txiov[i];
		h->msg_iovlen = k;
		if (k > 1) {
			struct cmsghdr *c = &b->gsoctl[m].align;
			uint16_t seg = (uint16_t)len;

			h->msg_control = b->gsoctl[m].buf;
			h->msg_controllen = sizeof(b->gsoctl[m].buf);
			c->cmsg_level = SOL_UDP;
			c->cmsg_type = UDP_SEGMENT;
			c->cmsg_len = CMSG_LEN(sizeof(seg));
			memcpy(CMSG_DATA(c), &seg, sizeof(seg));
			f->counters.tx_gso_messages++;
		} else {
			h->msg_control = NULL;
			h->msg_controllen = 0;
		}
		b->gso_seg[m] = (uint8_t)k;
		b->gso_first[m] = (uint8_t)i;
		m++;
		i += k;
	}
	send_all(f, fd, b->gso, b->gso_seg, b->gso_first, m);
}

int relay_fwd_send(struct relay_fwd *f, uint16_t port, const struct addr *dst, const void *buf,
		   size_t len)
{
	struct relay_fwd_port *p = port_get(f, port);

	if (!p || p->closing)
		return -ENOENT;
	int fd = p->sock[sock_index(addr_family(dst))].fd;

	if (fd < 0)
		return -EAFNOSUPPORT;
	if (sendto(fd, buf, len, MSG_DONTWAIT, &dst->sa, addr_len(dst)) < 0)
		return -errno;
	return 0;
}

/* ---- receiving ---- */

/* One recvmmsg batch from s; returns the datagrams read, 0 when none, -1 to stop reading. */
static int read_batch(struct relay_fwd *f, struct relay_fwd_sock *s)
{
	struct relay_fwd_batch *b = f->batch;
	struct relay_fwd_port *p = s->owner;
	uint16_t port = p->port;

	for (int i = 0; i < RELAY_FWD_BATCH; i++) {
		b->rx[i].msg_hdr.msg_namelen = sizeof(b->src[i]);
		b->rx[i].msg_hdr.msg_controllen = sizeof(b->ctl[i].buf);
		b->rx[i].msg_hdr.msg_flags = 0;
	}
	int n = recvmmsg(s->fd, b->rx, RELAY_FWD_BATCH, MSG_DONTWAIT, NULL);

	if (n < 0) {
		int e = errno;

		if (e == EAGAIN || e == EWOULDBLOCK)
			return -1;
		if (e == EINTR)
			return 0;
		if (is_icmp_error(e)) {
			/* an ICMP error for a datagram we forwarded (its mapping is gone); the
			 * call consumed it, so reading again makes progress */
			drain_errqueue(f, s->fd);
			return 0;
		}
		f->counters.rx_errors++;
		return -1;
	}
	f->counters.rx_batches++;
	f->counters.rx_datagrams += (unsigned)n;

	uint64_t now_ms = uv_now(f->loop);
	unsigned ntx = 0;
	int out_fd = -1;

	for (int i = 0; i < n; i++) {
		struct msghdr *h = &b->rx[i].msg_hdr;
		size_t len = b->rx[i].msg_len;

		f->counters.rx_kernel_drops += udp_rxq_ovfl(h, &s->rxq_ovfl);
		if (h->msg_flags & MSG_TRUNC) {
			f->counters.rx_truncated++;
			continue;
		}
		if (!rtab_is_wireguard(b->data[i], len)) {
			f->counters.rx_control++;
			if (!f->on_control)
				continue;
			if (ntx) { /* the handler may rebind or tear down: send what was decided */
				flush(f, out_fd, ntx);
				ntx = 0;
			}
			f->on_control(f, port, &b->src[i], b->data[i], len, f->data);
			if (port_get(f, port) != p || p->closing)
				return -1; /* the handler closed this port (or the forwarder) */
			continue;
		}
		struct rtab_fwd fw;

		if (rtab_forward(f->table, port, &b->src[i], len, now_ms, &fw) != RTAB_FORWARD) {
			f->counters.dropped++;
			continue;
		}
		struct relay_fwd_port *op = port_get(f, fw.out_port);
		int fd = op && !op->closing ? op->sock[sock_index(addr_family(fw.dst))].fd : -1;

		if (fd < 0) {
			f->counters.tx_no_socket++;
			continue;
		}
		if (fd != out_fd && ntx) {
			flush(f, out_fd, ntx);
			ntx = 0;
		}
		out_fd = fd;
		struct msghdr *o = &b->tx[ntx].msg_hdr;

		b->txiov[ntx].iov_base = b->data[i];
		b->txiov[ntx].iov_len = len;
		o->msg_name = (void *)&fw.dst->sa;
		o->msg_namelen = addr_len(fw.dst);
		ntx++;
	}
	if (ntx)
		flush(f, out_fd, ntx);
	return n;
}

static void relay_fwd_on_readable(uv_poll_t *h, int status, int events)
{
	struct relay_fwd_sock *s = h->data;
	struct relay_fwd *f = s->owner->fwd;

	if (status < 0) {
		/*
		 * libuv reports EPOLLERR as UV_EBADF and stops the handle. Here it means a
		 * pending socket error (an ICMP error, IP_RECVERR): clear it, drain the error
		 * queue that keeps EPOLLERR up, and watch the socket again.
		 */
		int err = 0;
		socklen_t l = sizeof(err);

		if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0 ||
		    (err && !is_icmp_error(err)))
			f->counters.rx_errors++;
		drain_errqueue(f, s->fd);
		if (uv_poll_start(h, UV_READABLE, relay_fwd_on_readable) < 0) {
			f->counters.rx_errors++;
			return;
		}
	}
	for (int i = 0; i < RELAY_FWD_BATCHES_PER_EVENT; i++) {
		int n = read_batch(f, s);

		if (n < 0 && i == 0 && s->fd >= 0)
			drain_errqueue(f, s->fd); /* woken with nothing to read: EPOLLERR */
		if (n < 0 || (n > 0 && n < RELAY_FWD_BATCH))
			break; /* drained (or closed); n == 0 was an error consumed: read again */
	}
}

/* ---- opening and closing ports ---- */

static void relay_fwd_on_closed(uv_handle_t *h)
{
	struct relay_fwd_sock *s = h->data;
	struct relay_fwd_port *p = s->owner;

	if (--p->closing == 0)
		free(p);
}

static int open_sock(struct relay_fwd *f, const struct addr *listen, uint16_t port)
{
	int fam = addr_family(listen);
	int fd = socket(fam, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1, r;

	if (fd < 0)
		return -errno;
	if (fam == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) /* [::] and 0.0.0.0 */
		goto fail;
	r = udp_rxq_ovfl_enable(fd);
	if (r < 0) {
		close(fd);
		return r;
	}
	if (fam == AF_INET ? setsockopt(fd, IPPROTO_IP, IP_RECVERR, &one, sizeof(one))
			   : setsockopt(fd, IPPROTO_IPV6, IPV6_RECVERR, &one, sizeof(one)))
		goto fail;
	udp_sockbuf_set(fd, RELAY_FWD_SOCKBUF, &f->rcvbuf, &f->sndbuf);

	struct addr a = *listen;

	addr_set_port(&a, port);
	if (bind(fd, &a.sa, addr_len(&a)) < 0)
		goto fail;
	return fd;
fail:
	r = -errno;
	close(fd);
	return r;
}

/* Closes p's sockets: uv_close() on a poll handle takes the fd out of epoll at once, so the fd
 * is closed now and the port can be bound again before the close callbacks run. */
static void close_port(struct relay_fwd *f, struct relay_fwd_port *p)
{
	f->ports[p->port - f->table->lim.port_min] = NULL;
	p->closing = 1; /* held until the loop below has started every close */
	for (int i = 0; i < 2; i++) {
		struct relay_fwd_sock *s = &p->sock[i];

		if (s->fd < 0)
			continue;
		p->closing++;
		uv_close((uv_handle_t *)&s->poll, relay_fwd_on_closed);
		close(s->fd);
		s->fd = -1;
	}
	if (--p->closing == 0)
		free(p);
}

static int open_port(struct relay_fwd *f, uint16_t port)
{
	if (port_get(f, port))
		return -EEXIST;
	struct relay_fwd_port *p = calloc(1, sizeof(*p));
	int r = 0;

	if (!p)
		return -ENOMEM;
	p->fwd = f;
	p->port = port;
	p->sock[0].fd = p->sock[1].fd = -1;
	f->ports[port - f->table->lim.port_min] = p;
	for (size_t i = 0; i < f->nlisten; i++) {
		struct relay_fwd_sock *s = &p->sock[sock_index(addr_family(&f->listen[i]))];
		int fd = open_sock(f, &f->listen[i], port);

		if (fd < 0) {
			r = fd;
			break;
		}
		s->owner = p;
		s->family = addr_family(&f->listen[i]);
		s->poll.data = s;
		r = uv_poll_init(f->loop, &s->poll, fd);
		if (r < 0) {
			close(fd);
			break;
		}
		s->fd = fd;
		r = uv_poll_start(&s->poll, UV_READABLE, relay_fwd_on_readable);
		if (r < 0)
			break;
	}
	if (r < 0)
		close_port(f, p);
	return r;
}

int relay_fwd_open(struct relay_fwd *f, uint32_t id)
{
	const struct rtab_relay *rel = rtab_get(f->table, id);

	if (!rel)
		return -ENOENT;
	int r = open_port(f, rel->side[0].port);

	if (r < 0)
		return r;
	r = open_port(f, rel->side[1].port);
	if (r < 0) {
		close_port(f, port_get(f, rel->side[0].port));
		return r;
	}
	return 0;
}

static void close_relay_ports(struct relay_fwd *f, const struct rtab_relay *rel)
{
	for (int s = 0; s < 2; s++) {
		struct relay_fwd_port *p = port_get(f, rel->side[s].port);

		if (p)
			close_port(f, p);
	}
}

void relay_fwd_teardown(struct relay_fwd *f, uint32_t id)
{
	const struct rtab_relay *rel = rtab_get(f->table, id);

	if (!rel)
		return;
	close_relay_ports(f, rel);
	rtab_free(f->table, id);
}

static void relay_fwd_on_idle_timer(uv_timer_t *t)
{
	struct relay_fwd *f = t->data;
	uint32_t id;

	/* bounded: each round frees one relay */
	while (rtab_expire(f->table, uv_now(f->loop), &id, NULL) == 0) {
		relay_fwd_teardown(f, id);
		if (f->on_idle)
			f->on_idle(f, id, f->data);
	}
}

void relay_fwd_close(struct relay_fwd *f)
{
	if (!f->ports)
		return;
	for (uint32_t i = 0; i < f->table->nports; i++)
		if (f->ports[i])
			close_port(f, f->ports[i]);
	uv_close((uv_handle_t *)&f->idle_timer, NULL);
	free(f->ports);
	free(f->batch);
	f->ports = NULL;
	f->batch = NULL;
}

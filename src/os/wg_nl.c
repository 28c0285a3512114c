// SPDX-License-Identifier: MIT
/*
 * wg_nl - kernel WireGuard over generic netlink: pure message building and
 * parsing first, then a thin I/O layer (a uv_poll_t on a non-blocking libmnl
 * socket) that runs one request at a time.
 */
#include "wgpunch/wg_nl.h"

#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/wireguard.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "wgpunch/log.h"

/* ---------------------------------------------------------------- building */

static struct nlmsghdr *put_genl_header(void *buf, size_t cap, uint16_t type, uint16_t flags,
					uint32_t seq, uint8_t cmd, uint8_t version)
{
	struct nlmsghdr *nlh;
	struct genlmsghdr *g;

	if (cap < MNL_NLMSG_HDRLEN + MNL_ALIGN(sizeof(*g)))
		return NULL;
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = flags;
	nlh->nlmsg_seq = seq;
	g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->cmd = cmd;
	g->version = version;
	return nlh;
}

int wg_nl_build_get_family(void *buf, size_t cap, uint32_t seq)
{
	struct nlmsghdr *nlh = put_genl_header(buf, cap, GENL_ID_CTRL, NLM_F_REQUEST | NLM_F_ACK,
					       seq, CTRL_CMD_GETFAMILY, 1);

	if (!nlh || !mnl_attr_put_strz_check(nlh, cap, CTRL_ATTR_FAMILY_NAME, WG_GENL_NAME))
		return -ENOSPC;
	return (int)nlh->nlmsg_len;
}

int wg_nl_build_get(void *buf, size_t cap, uint16_t family, uint32_t seq, const char *ifname)
{
	struct nlmsghdr *nlh = put_genl_header(buf, cap, family, NLM_F_REQUEST | NLM_F_DUMP, seq,
					       WG_CMD_GET_DEVICE, WG_GENL_VERSION);

	if (!nlh || !mnl_attr_put_strz_check(nlh, cap, WGDEVICE_A_IFNAME, ifname))
		return -ENOSPC;
	return (int)nlh->nlmsg_len;
}

/* One peer nest; false when it does not fit (the caller cancels the nest). */
static bool put_peer(struct nlmsghdr *nlh, size_t cap, const struct wg_peer_update *u)
{
	if (!mnl_attr_put_check(nlh, cap, WGPEER_A_PUBLIC_KEY, KEY_LEN, u->public_key) ||
	    !mnl_attr_put_u32_check(nlh, cap, WGPEER_A_FLAGS, WGPEER_F_UPDATE_ONLY))
		return false;
	/* Endpoint first: the kernel then sends the keepalive that turning on
	 * persistent keepalive triggers to the new endpoint. */
	if ((u->flags & WG_UPDATE_ENDPOINT) &&
	    !mnl_attr_put_check(nlh, cap, WGPEER_A_ENDPOINT, addr_len(&u->endpoint),
				&u->endpoint.sa))
		return false;
	if ((u->flags & WG_UPDATE_KEEPALIVE) &&
	    !mnl_attr_put_u16_check(nlh, cap, WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL,
				    u->keepalive_s))
		return false;
	return true;
}

int wg_nl_build_set(void *buf, size_t cap, uint16_t family, uint32_t seq, const char *ifname,
		    const struct wg_peer_update *updates, size_t n, size_t *done)
{
	struct nlmsghdr *nlh;
	struct nlattr *peers;
	size_t i;

	*done = 0;
	if (n == 0)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		int fam = addr_family(&updates[i].endpoint);

		if ((updates[i].flags & WG_UPDATE_ENDPOINT) && fam != AF_INET && fam != AF_INET6)
			return -EINVAL;
	}
	nlh = put_genl_header(buf, cap, family, NLM_F_REQUEST | NLM_F_ACK, seq, WG_CMD_SET_DEVICE,
			      WG_GENL_VERSION);
	if (!nlh || !mnl_attr_put_strz_check(nlh, cap, WGDEVICE_A_IFNAME, ifname))
		return -ENOSPC;
	peers = mnl_attr_nest_start_check(nlh, cap, WGDEVICE_A_PEERS);
	if (!peers)
		return -ENOSPC;
	for (i = 0; i < n; i++) {
		struct nlattr *peer = mnl_attr_nest_start_check(nlh, cap, 0);

		if (!peer || !put_peer(nlh, cap, &updates[i])) {
			/* Close the nests here; the rest goes in the next message. */
			if (peer)
				mnl_attr_nest_cancel(nlh, peer);
			break;
		}
		mnl_attr_nest_end(nlh, peer);
	}
	if (i == 0)
		return -ENOSPC;
	mnl_attr_nest_end(nlh, peers);
	*done = i;
	return (int)nlh->nlmsg_len;
}

/* ---------------------------------------------------------------- parsing */

typedef int (*attr_fn)(const struct nlattr *a, void *data);

/*
 * Walks the attributes in [p, p + len). Unlike mnl_attr_parse(), which stops
 * silently at a truncated attribute, a truncated one is -EBADMSG.
 */
static int walk_attrs(const void *p, size_t len, attr_fn fn, void *data)
{
	size_t off = 0;

	while (off < len) {
		const struct nlattr *a = (const struct nlattr *)((const uint8_t *)p + off);
		int r;

		if (len - off < sizeof(*a) || a->nla_len < sizeof(*a) || a->nla_len > len - off)
			return -EBADMSG;
		r = fn(a, data);
		if (r < 0)
			return r;
		off += MNL_ALIGN(a->nla_len); /* the last attribute's padding may be absent */
	}
	return 0;
}

static int walk_nested(const struct nlattr *a, attr_fn fn, void *data)
{
	return walk_attrs(mnl_attr_get_payload(a), mnl_attr_get_payload_len(a), fn, data);
}

/* The payload of a fixed-size attribute, or NULL when its length is wrong. */
static const void *fixed(const struct nlattr *a, size_t len)
{
	return mnl_attr_get_payload_len(a) == len ? mnl_attr_get_payload(a) : NULL;
}

static int get_u16(const struct nlattr *a, uint16_t *v)
{
	const void *p = fixed(a, sizeof(*v));

	if (!p)
		return -EBADMSG;
	memcpy(v, p, sizeof(*v));
	return 0;
}

static int get_u32(const struct nlattr *a, uint32_t *v)
{
	const void *p = fixed(a, sizeof(*v));

	if (!p)
		return -EBADMSG;
	memcpy(v, p, sizeof(*v));
	return 0;
}

static int get_u64(const struct nlattr *a, uint64_t *v)
{
	const void *p = fixed(a, sizeof(*v));

	if (!p)
		return -EBADMSG;
	memcpy(v, p, sizeof(*v));
	return 0;
}

static int get_key(const struct nlattr *a, uint8_t key[KEY_LEN])
{
	const void *p = fixed(a, KEY_LEN);

	if (!p)
		return -EBADMSG;
	memcpy(key, p, KEY_LEN);
	return 0;
}

static const void *genl_attrs(const struct nlmsghdr *nlh, uint8_t cmd, size_t *len)
{
	const struct genlmsghdr *g;
	size_t payload;

	if (nlh->nlmsg_len < MNL_NLMSG_HDRLEN)
		return NULL;
	payload = nlh->nlmsg_len - MNL_NLMSG_HDRLEN;
	if (payload < MNL_ALIGN(sizeof(*g)))
		return NULL;
	g = mnl_nlmsg_get_payload(nlh);
	if (g->cmd != cmd)
		return NULL;
	*len = payload - MNL_ALIGN(sizeof(*g));
	return (const uint8_t *)g + MNL_ALIGN(sizeof(*g));
}

static int family_attr(const struct nlattr *a, void *data)
{
	if (mnl_attr_get_type(a) == CTRL_ATTR_FAMILY_ID)
		return get_u16(a, data);
	return 0;
}

int wg_nl_parse_family(const struct nlmsghdr *nlh, uint16_t *family)
{
	size_t len;
	const void *attrs = genl_attrs(nlh, CTRL_CMD_NEWFAMILY, &len);
	uint16_t id = 0;
	int r;

	if (!attrs)
		return -EBADMSG;
	r = walk_attrs(attrs, len, family_attr, &id);
	if (r < 0)
		return r;
	if (id == 0)
		return -EBADMSG;
	*family = id;
	return 0;
}

struct allowed_ip_parse {
	uint16_t family;
	const struct nlattr *ip;
	const struct nlattr *cidr;
};

static int allowed_ip_attr(const struct nlattr *a, void *data)
{
	struct allowed_ip_parse *p = data;

	switch (mnl_attr_get_type(a)) {
	case WGALLOWEDIP_A_FAMILY:
		return get_u16(a, &p->family);
	case WGALLOWEDIP_A_IPADDR:
		p->ip = a;
		break;
	case WGALLOWEDIP_A_CIDR_MASK:
		p->cidr = a;
		break;
	}
	return 0;
}

static int allowed_ip(const struct nlattr *a, void *data)
{
	struct wg_peer *peer = data;
	struct allowed_ip_parse p = { 0 };
	struct wg_allowed_ip *ip;
	size_t ip_len, max_cidr;
	int r = walk_nested(a, allowed_ip_attr, &p);

	if (r < 0)
		return r;
	if (p.family == AF_INET) {
		ip_len = sizeof(struct in_addr);
		max_cidr = 32;
	} else if (p.family == AF_INET6) {
		ip_len = sizeof(struct in6_addr);
		max_cidr = 128;
	} else {
		return 0; /* a family we do not know: skip it */
	}
	if (!p.ip || !p.cidr || !fixed(p.ip, ip_len) || !fixed(p.cidr, 1) ||
	    mnl_attr_get_u8(p.cidr) > max_cidr)
		return -EBADMSG;
	ip = wg_peer_add_allowed_ip(peer);
	if (!ip)
		return -ENOMEM;
	ip->family = p.family;
	memcpy(p.family == AF_INET ? (void *)&ip->ip4 : (void *)&ip->ip6,
	       mnl_attr_get_payload(p.ip), ip_len);
	ip->cidr = mnl_attr_get_u8(p.cidr);
	return 0;
}

static int endpoint_attr(const struct nlattr *a, struct addr *ep)
{
	size_t len = mnl_attr_get_payload_len(a);
	sa_family_t fam;

	if (len < sizeof(fam))
		return -EBADMSG;
	memcpy(&fam, mnl_attr_get_payload(a), sizeof(fam));
	if ((fam == AF_INET && len != sizeof(ep->in4)) ||
	    (fam == AF_INET6 && len != sizeof(ep->in6)))
		return -EBADMSG;
	if (fam != AF_INET && fam != AF_INET6)
		return 0;
	memset(ep, 0, sizeof(*ep));
	memcpy(ep, mnl_attr_get_payload(a), len);
	return 0;
}

static int peer_attr(const struct nlattr *a, void *data)
{
	struct wg_peer *peer = data;
	uint8_t ts[16];

	switch (mnl_attr_get_type(a)) {
	case WGPEER_A_PUBLIC_KEY:
		return get_key(a, peer->public_key);
	case WGPEER_A_ENDPOINT:
		return endpoint_attr(a, &peer->endpoint);
	case WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL:
		return get_u16(a, &peer->keepalive_s);
	case WGPEER_A_LAST_HANDSHAKE_TIME: {
		/* struct __kernel_timespec: two 64-bit fields whatever the arch. */
		int64_t sec, nsec;

		if (!fixed(a, sizeof(ts)))
			return -EBADMSG;
		memcpy(ts, mnl_attr_get_payload(a), sizeof(ts));
		memcpy(&sec, ts, sizeof(sec));
		memcpy(&nsec, ts + 8, sizeof(nsec));
		peer->last_handshake_s = sec;
		peer->last_handshake_ns = nsec;
		return 0;
	}
	case WGPEER_A_RX_BYTES:
		return get_u64(a, &peer->rx_bytes);
	case WGPEER_A_TX_BYTES:
		return get_u64(a, &peer->tx_bytes);
	case WGPEER_A_ALLOWEDIPS:
		return walk_nested(a, allowed_ip, peer);
	}
	return 0; /* preshared key, protocol version, anything newer */
}

struct key_find {
	uint8_t key[KEY_LEN];
	bool found;
};

static int find_public_key(const struct nlattr *a, void *data)
{
	struct key_find *f = data;

	if (mnl_attr_get_type(a) != WGPEER_A_PUBLIC_KEY)
		return 0;
	f->found = true;
	return get_key(a, f->key);
}

static int peer(const struct nlattr *a, void *data)
{
	struct wg_device *dev = data;
	struct key_find f = { .found = false };
	struct wg_peer *p;
	int r;

	/* The key decides whether this nest continues the last peer, so find it first. */
	r = walk_nested(a, find_public_key, &f);
	if (r < 0)
		return r;
	if (!f.found)
		return -EBADMSG;
	if (dev->n_peers && !memcmp(dev->peers[dev->n_peers - 1].public_key, f.key, KEY_LEN)) {
		p = &dev->peers[dev->n_peers - 1];
	} else {
		p = wg_device_add_peer(dev);
		if (!p)
			return -ENOMEM;
	}
	return walk_nested(a, peer_attr, p);
}

static int device_attr(const struct nlattr *a, void *data)
{
	struct wg_device *dev = data;
	size_t len;
	int r;

	switch (mnl_attr_get_type(a)) {
	case WGDEVICE_A_IFNAME:
		len = mnl_attr_get_payload_len(a);
		if (len >= sizeof(dev->ifname))
			len = sizeof(dev->ifname) - 1;
		memcpy(dev->ifname, mnl_attr_get_payload(a), len);
		dev->ifname[len] = '\0';
		return 0;
	case WGDEVICE_A_PRIVATE_KEY:
		r = get_key(a, dev->private_key);
		dev->has_private_key = r == 0;
		return r;
	case WGDEVICE_A_PUBLIC_KEY:
		return get_key(a, dev->public_key);
	case WGDEVICE_A_LISTEN_PORT:
		return get_u16(a, &dev->listen_port);
	case WGDEVICE_A_FWMARK:
		return get_u32(a, &dev->fwmark);
	case WGDEVICE_A_PEERS:
		return walk_nested(a, peer, dev);
	}
	return 0;
}

int wg_nl_parse_device(const struct nlmsghdr *nlh, struct wg_device *dev)
{
	size_t len;
	const void *attrs = genl_attrs(nlh, WG_CMD_GET_DEVICE, &len);

	if (!attrs)
		return -EBADMSG;
	return walk_attrs(attrs, len, device_attr, dev);
}

int wg_nl_walk(const void *buf, size_t len, uint32_t seq, wg_nl_msg_fn fn, void *data, bool *intr)
{
	size_t off = 0, next;

	/* Not mnl_nlmsg_ok()/mnl_nlmsg_next(): they compare lengths as int, so a length
	 * of 2^31 or more passes the check and then never advances. */
	for (; off < len; off = next) {
		const struct nlmsghdr *nlh = (const void *)((const uint8_t *)buf + off);
		size_t payload;

		if (len - off < MNL_NLMSG_HDRLEN || nlh->nlmsg_len < MNL_NLMSG_HDRLEN ||
		    nlh->nlmsg_len > len - off)
			return -EBADMSG;
		next = off + MNL_ALIGN(nlh->nlmsg_len); /* may pass len: the last one's padding */
		payload = nlh->nlmsg_len - MNL_NLMSG_HDRLEN;

		if (nlh->nlmsg_seq != seq)
			continue;
		if (nlh->nlmsg_flags & NLM_F_DUMP_INTR)
			*intr = true;
		if (nlh->nlmsg_type == NLMSG_ERROR) {
			const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);

			if (payload < sizeof(*e))
				return -EBADMSG;
			/* error 0 is the ACK; a positive one is not an errno */
			return e->error <= 0 ? e->error : -EPROTO;
		}
		if (nlh->nlmsg_type == NLMSG_DONE) {
			int err = 0;

			/* A dump that failed part-way says so in DONE's payload. */
			if (payload >= sizeof(err))
				memcpy(&err, mnl_nlmsg_get_payload(nlh), sizeof(err));
			return err < 0 ? err : 0;
		}
		if (nlh->nlmsg_type == NLMSG_OVERRUN)
			return -ENOBUFS;
		if (nlh->nlmsg_type < NLMSG_MIN_TYPE)
			continue; /* NLMSG_NOOP */
		int r = fn(nlh, data);
		if (r < 0)
			return r;
	}
	return WG_NL_MORE;
}

/* ---------------------------------------------------------------- I/O */

/* A dump restarted this often because peers kept changing gives -EAGAIN. */
#define WG_NL_MAX_DUMP_RESTARTS 8

enum nl_step { NL_IDLE, NL_RESOLVE, NL_DUMP, NL_SET };

/*
 * One netlink socket and its poll handle. A request that is abandoned (its
 * deadline passed) takes its socket with it: io->sock is then NULL until
 * the next request opens a new one. A socket being closed no longer points
 * at io, so io may go first.
 */
struct nl_sock {
	uv_poll_t poll;
	struct mnl_socket *nl;
	struct wg_nl_io *io; /* NULL once abandoned */
};

struct wg_nl_io {
	char ifname[CONFIG_IFNAMSIZ];
	uv_loop_t *loop;
	struct nl_sock *sock;
	uint16_t family; /* 0 until resolved */
	uint32_t seq;
	enum nl_step step;
	bool want_set; /* the request is a set (a get otherwise) */
	bool intr;
	unsigned int restarts;
	wg_io_cb cb;
	void *cb_arg;
	struct wg_device *dev;
	const struct wg_peer_update *updates;
	size_t n, pos, in_flight;
	void (*closed)(void *arg);
	void *closed_arg;
	size_t tx_len;
	uint8_t tx[WG_NL_REQ_SIZE];
	uint8_t rx[WG_NL_RX_SIZE];
};

static void nl_on_poll(uv_poll_t *h, int status, int events);

static void nl_finish(struct wg_nl_io *io, int status)
{
	struct wg_device *dev = io->dev;

	io->dev = NULL;
	io->step = NL_IDLE;
	uv_poll_stop(&io->sock->poll);
	if (status < 0) {
		wg_device_free(dev);
		dev = NULL;
	}
	/* Last: cb may close io (it is freed only in the close callback). */
	io->cb(io->cb_arg, status, dev);
}

/* Sends io->tx; a full socket buffer waits for UV_WRITABLE. */
static int nl_send(struct wg_nl_io *io)
{
	ssize_t r = mnl_socket_sendto(io->sock->nl, io->tx, io->tx_len);

	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS))
		return uv_poll_start(&io->sock->poll, UV_READABLE | UV_WRITABLE, nl_on_poll);
	if (r < 0)
		return -errno;
	io->tx_len = 0;
	return uv_poll_start(&io->sock->poll, UV_READABLE, nl_on_poll);
}

static int nl_build(struct wg_nl_io *io, enum nl_step step)
{
	int len;

	io->seq++;
	io->step = step;
	switch (step) {
	case NL_RESOLVE:
		len = wg_nl_build_get_family(io->tx, sizeof(io->tx), io->seq);
		break;
	case NL_DUMP:
		wg_device_free(io->dev);
		io->dev = calloc(1, sizeof(*io->dev));
		if (!io->dev)
			return -ENOMEM;
		io->intr = false;
		len = wg_nl_build_get(io->tx, sizeof(io->tx), io->family, io->seq, io->ifname);
		break;
	case NL_SET:
		len = wg_nl_build_set(io->tx, sizeof(io->tx), io->family, io->seq, io->ifname,
				      io->updates + io->pos, io->n - io->pos, &io->in_flight);
		break;
	default:
		return -EINVAL;
	}
	if (len < 0)
		return len;
	io->tx_len = (size_t)len;
	return nl_send(io);
}

/* The first step of a request: resolve the family once, then the request itself. */
static int nl_start(struct wg_nl_io *io)
{
	if (!io->family)
		return nl_build(io, NL_RESOLVE);
	return nl_build(io, io->want_set ? NL_SET : NL_DUMP);
}

static int nl_on_msg(const struct nlmsghdr *nlh, void *data)
{
	struct wg_nl_io *io = data;

	if (io->step == NL_RESOLVE && nlh->nlmsg_type == GENL_ID_CTRL)
		return wg_nl_parse_family(nlh, &io->family);
	if (io->step == NL_DUMP && io->family && nlh->nlmsg_type == io->family)
		return wg_nl_parse_device(nlh, io->dev);
	return 0;
}

/* The current step ended well: go on to the next one, or finish. */
static int nl_step_done(struct wg_nl_io *io, bool *finished)
{
	*finished = false;
	switch (io->step) {
	case NL_RESOLVE:
		if (!io->family)
			return -EPROTO;
		return nl_build(io, io->want_set ? NL_SET : NL_DUMP);
	case NL_DUMP:
		if (!io->intr) {
			*finished = true;
			return 0;
		}
		/* NLM_F_DUMP_INTR: peers changed while the kernel was dumping, so
		 * the parts may disagree; wireguard-tools reads again too. */
		if (++io->restarts > WG_NL_MAX_DUMP_RESTARTS)
			return -EAGAIN;
		return nl_build(io, NL_DUMP);
	case NL_SET:
		io->pos += io->in_flight;
		if (io->pos >= io->n) {
			*finished = true;
			return 0;
		}
		return nl_build(io, NL_SET);
	default:
		return -EINVAL;
	}
}

static void nl_on_poll(uv_poll_t *h, int status, int events)
{
	struct nl_sock *sock = h->data;
	struct wg_nl_io *io = sock->io;
	bool finished = false;
	int r;

	if (!io || io->step == NL_IDLE) {
		uv_poll_stop(h);
		return;
	}
	r = status;
	if (r == 0 && (events & UV_WRITABLE) && io->tx_len)
		r = nl_send(io);
	if (r < 0 || !(events & UV_READABLE))
		goto out;
	/* Bounded so one busy socket cannot starve the loop; level-triggered poll comes back. */
	for (unsigned int i = 0; i < 64; i++) {
		ssize_t n = mnl_socket_recvfrom(sock->nl, io->rx, sizeof(io->rx));

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0) {
			r = -errno; /* ENOSPC: a truncated datagram; ENOBUFS: replies were lost */
			goto out;
		}
		r = wg_nl_walk(io->rx, (size_t)n, io->seq, nl_on_msg, io, &io->intr);
		if (r == WG_NL_MORE)
			continue;
		if (r == 0)
			r = nl_step_done(io, &finished);
		if (r < 0 || finished)
			goto out;
	}
	return;
out:
	if (r < 0 || finished)
		nl_finish(io, r);
}

static void nl_io_free(struct wg_nl_io *io)
{
	void (*closed)(void *) = io->closed;
	void *arg = io->closed_arg;

	wg_device_free(io->dev);
	free(io);
	if (closed)
		closed(arg);
}

static void nl_sock_on_closed(uv_handle_t *h)
{
	struct nl_sock *sock = h->data;
	struct wg_nl_io *io = sock->io;

	/* The fd outlives the poll handle: libuv must stop watching it first. */
	mnl_socket_close(sock->nl);
	free(sock);
	if (io)
		nl_io_free(io); /* wg_nl_io_close() was waiting for its socket */
}

/* Non-blocking; the poll handle is initialised but not started. */
static int nl_sock_open(struct wg_nl_io *io)
{
	struct nl_sock *sock = calloc(1, sizeof(*sock));
	int r;

	if (!sock)
		return -ENOMEM;
	sock->nl = mnl_socket_open2(NETLINK_GENERIC, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (!sock->nl) {
		r = -errno;
		free(sock);
		return r;
	}
	if (mnl_socket_bind(sock->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		r = -errno;
		goto fail;
	}
	r = uv_poll_init(io->loop, &sock->poll, mnl_socket_get_fd(sock->nl));
	if (r < 0)
		goto fail;
	sock->poll.data = sock;
	sock->io = io;
	io->sock = sock;
	return 0;
fail:
	mnl_socket_close(sock->nl);
	free(sock);
	return r;
}

/* Lets go of io's socket; it is freed once libuv has closed its poll handle. */
static void nl_sock_abandon(struct wg_nl_io *io)
{
	struct nl_sock *sock = io->sock;

	io->sock = NULL;
	sock->io = NULL;
	uv_close((uv_handle_t *)&sock->poll, nl_sock_on_closed);
}

int wg_nl_io_open(uv_loop_t *loop, const char *ifname, struct wg_nl_io **out)
{
	struct wg_nl_io *io;
	int r;

	if (strlen(ifname) >= sizeof(io->ifname))
		return -EINVAL;
	io = calloc(1, sizeof(*io));
	if (!io)
		return -ENOMEM;
	snprintf(io->ifname, sizeof(io->ifname), "%s", ifname);
	io->loop = loop;
	/* Opened now, so that start-up fails here when netlink is not there at all. */
	r = nl_sock_open(io);
	if (r < 0) {
		free(io);
		return r;
	}
	io->seq = (uint32_t)time(NULL);
	*out = io;
	return 0;
}

static int nl_request(struct wg_nl_io *io, bool want_set, wg_io_cb cb, void *arg)
{
	int r;

	if (io->step != NL_IDLE)
		return -EBUSY;
	if (!io->sock) {
		r = nl_sock_open(io); /* the last request was abandoned with its socket */
		if (r < 0)
			return r;
	}
	io->want_set = want_set;
	io->cb = cb;
	io->cb_arg = arg;
	io->restarts = 0;
	r = nl_start(io);
	if (r < 0) {
		wg_device_free(io->dev);
		io->dev = NULL;
		io->step = NL_IDLE;
		uv_poll_stop(&io->sock->poll);
	}
	return r;
}

int wg_nl_io_get(struct wg_nl_io *io, wg_io_cb cb, void *arg)
{
	return nl_request(io, false, cb, arg);
}

int wg_nl_io_set(struct wg_nl_io *io, const struct wg_peer_update *updates, size_t n, wg_io_cb cb,
		 void *arg)
{
	if (n == 0)
		return -EINVAL;
	io->updates = updates;
	io->n = n;
	io->pos = 0;
	io->in_flight = 0;
	return nl_request(io, true, cb, arg);
}

void wg_nl_io_abort(struct wg_nl_io *io)
{
	if (io->step == NL_IDLE)
		return;
	io->step = NL_IDLE;
	io->tx_len = 0;
	wg_device_free(io->dev);
	io->dev = NULL;
	nl_sock_abandon(io);
}

void wg_nl_io_close(struct wg_nl_io *io, void (*closed)(void *arg), void *arg)
{
	io->step = NL_IDLE;
	io->closed = closed;
	io->closed_arg = arg;
	if (io->sock)
		uv_close((uv_handle_t *)&io->sock->poll, nl_sock_on_closed); /* frees io after */
	else
		nl_io_free(io);
}

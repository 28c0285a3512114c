// SPDX-License-Identifier: MIT
/*
 * wg_uapi - userspace WireGuard through the cross-platform UAPI socket: the
 * pure text parser and formatter first, then one uv_pipe_t per request.
 */
#include "wgpunch/wg_uapi.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

/* ---------------------------------------------------------------- parsing */

/* Values we parse are short; a longer one for a known key is malformed. */
#define VALUE_MAX 128

static int hex_nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int parse_hex_key(const char *v, uint8_t key[KEY_LEN])
{
	if (strlen(v) != 2 * KEY_LEN)
		return -EBADMSG;
	for (size_t i = 0; i < KEY_LEN; i++) {
		int hi = hex_nibble(v[2 * i]), lo = hex_nibble(v[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -EBADMSG;
		key[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

/* Decimal digits only (strtoull would take signs, spaces and hex). */
static int parse_u64(const char *v, uint64_t max, uint64_t *out)
{
	uint64_t n = 0;

	if (!*v)
		return -EBADMSG;
	for (; *v; v++) {
		if (*v < '0' || *v > '9')
			return -EBADMSG;
		if (n > (max - (uint64_t)(*v - '0')) / 10)
			return -EBADMSG;
		n = n * 10 + (uint64_t)(*v - '0');
	}
	*out = n;
	return 0;
}

/*
 * "203.0.113.1:51820" or "[2001:db8::1]:51820"; wireguard-go adds "%zone"
 * to link-local IPv6 addresses, which we keep only when it is numeric.
 */
static int parse_endpoint(const char *v, struct addr *a)
{
	char host[INET6_ADDRSTRLEN + 16];
	const char *port_s, *end;
	bool v6 = *v == '[';
	uint64_t port, scope = 0;
	char *zone;

	memset(a, 0, sizeof(*a));
	if (v6) {
		v++;
		end = strchr(v, ']');
		if (!end || end[1] != ':')
			return -EBADMSG;
		port_s = end + 2;
	} else {
		end = strrchr(v, ':');
		if (!end)
			return -EBADMSG;
		port_s = end + 1;
	}
	if (end == v || (size_t)(end - v) >= sizeof(host) ||
	    parse_u64(port_s, UINT16_MAX, &port) < 0)
		return -EBADMSG;
	memcpy(host, v, (size_t)(end - v));
	host[end - v] = '\0';
	zone = strchr(host, '%');
	if (zone) {
		*zone++ = '\0';
		if (!v6 || parse_u64(zone, UINT32_MAX, &scope) < 0)
			scope = 0;
	}
	if (v6 && inet_pton(AF_INET6, host, &a->in6.sin6_addr) == 1) {
		a->in6.sin6_family = AF_INET6;
		a->in6.sin6_port = htons((uint16_t)port);
		a->in6.sin6_scope_id = (uint32_t)scope;
		return 0;
	}
	if (!v6 && !zone && inet_pton(AF_INET, host, &a->in4.sin_addr) == 1) {
		a->in4.sin_family = AF_INET;
		a->in4.sin_port = htons((uint16_t)port);
		return 0;
	}
	memset(a, 0, sizeof(*a));
	return -EBADMSG;
}

static int parse_allowed_ip(const char *v, struct wg_peer *p)
{
	char ip[INET6_ADDRSTRLEN];
	const char *slash = strchr(v, '/');
	struct wg_allowed_ip *a;
	struct in6_addr buf;
	uint64_t cidr;
	int family;

	if (!slash || (size_t)(slash - v) >= sizeof(ip))
		return -EBADMSG;
	memcpy(ip, v, (size_t)(slash - v));
	ip[slash - v] = '\0';
	if (inet_pton(AF_INET, ip, &buf) == 1)
		family = AF_INET;
	else if (inet_pton(AF_INET6, ip, &buf) == 1)
		family = AF_INET6;
	else
		return -EBADMSG;
	if (parse_u64(slash + 1, family == AF_INET ? 32 : 128, &cidr) < 0)
		return -EBADMSG;
	a = wg_peer_add_allowed_ip(p);
	if (!a)
		return -ENOMEM;
	a->family = family;
	if (family == AF_INET)
		memcpy(&a->ip4, &buf, sizeof(a->ip4));
	else
		a->ip6 = buf;
	a->cidr = (uint8_t)cidr;
	return 0;
}

/* errno=N: wireguard-go writes the negative code, the protocol text a positive one. */
static int parse_errno_value(const char *v, int *err)
{
	uint64_t n = 0;

	if (*v == '-')
		v++;
	if (parse_u64(v, 4095, &n) < 0)
		return -EBADMSG;
	*err = -(int)n;
	return 0;
}

static int parse_peer_line(const char *key, const char *v, struct wg_peer *p)
{
	uint64_t n = 0;
	int r;

	if (!strcmp(key, "endpoint"))
		return parse_endpoint(v, &p->endpoint);
	if (!strcmp(key, "persistent_keepalive_interval")) {
		r = parse_u64(v, UINT16_MAX, &n);
		p->keepalive_s = (uint16_t)n;
		return r;
	}
	if (!strcmp(key, "last_handshake_time_sec")) {
		r = parse_u64(v, INT64_MAX, &n);
		p->last_handshake_s = (int64_t)n;
		return r;
	}
	if (!strcmp(key, "last_handshake_time_nsec")) {
		r = parse_u64(v, 999999999, &n);
		p->last_handshake_ns = (int64_t)n;
		return r;
	}
	if (!strcmp(key, "rx_bytes"))
		return parse_u64(v, UINT64_MAX, &p->rx_bytes);
	if (!strcmp(key, "tx_bytes"))
		return parse_u64(v, UINT64_MAX, &p->tx_bytes);
	if (!strcmp(key, "allowed_ip"))
		return parse_allowed_ip(v, p);
	return 0; /* preshared_key, protocol_version, anything newer */
}

static int parse_device_line(const char *key, const char *v, struct wg_device *dev)
{
	uint64_t n = 0;
	int r;

	if (!strcmp(key, "private_key")) {
		r = parse_hex_key(v, dev->private_key);
		if (r < 0)
			return r;
		/* The UAPI has no public_key line for the device: derive it, as wg(8) does. */
		dev->has_private_key = !key_is_zero(dev->private_key);
		if (!dev->has_private_key ||
		    key_public_from_private(dev->public_key, dev->private_key) < 0)
			memset(dev->public_key, 0, KEY_LEN);
		return 0;
	}
	if (!strcmp(key, "listen_port")) {
		r = parse_u64(v, UINT16_MAX, &n);
		dev->listen_port = (uint16_t)n;
		return r;
	}
	if (!strcmp(key, "fwmark")) {
		r = parse_u64(v, UINT32_MAX, &n);
		dev->fwmark = (uint32_t)n;
		return r;
	}
	return 0;
}

/* Parser state: lines before the first public_key= are the device's, then a peer's. */
struct line_ctx {
	struct wg_device *dev; /* NULL: only errno matters */
	struct wg_peer *peer;
	bool seen_errno;
	int err;
};

static int parse_line(struct line_ctx *c, const char *line, size_t len)
{
	char key[48], v[VALUE_MAX + 1];
	const char *eq = memchr(line, '=', len);
	size_t klen, vlen;

	if (!eq)
		return -EBADMSG;
	klen = (size_t)(eq - line);
	vlen = len - klen - 1;
	if (klen == 0 || klen >= sizeof(key))
		return klen == 0 ? -EBADMSG : 0; /* an unknown long key: skip */
	memcpy(key, line, klen);
	key[klen] = '\0';
	if (vlen > VALUE_MAX || memchr(eq + 1, '\0', vlen))
		return !strcmp(key, "errno") || !strcmp(key, "public_key") ? -EBADMSG : 0;
	memcpy(v, eq + 1, vlen);
	v[vlen] = '\0';

	if (!strcmp(key, "errno")) {
		c->seen_errno = true;
		return parse_errno_value(v, &c->err);
	}
	if (!c->dev)
		return 0;
	if (!strcmp(key, "public_key")) {
		struct wg_peer *p = wg_device_add_peer(c->dev);

		if (!p)
			return -ENOMEM;
		c->peer = p;
		return parse_hex_key(v, p->public_key);
	}
	if (c->peer)
		return parse_peer_line(key, v, c->peer);
	return parse_device_line(key, v, c->dev);
}

static int parse_reply(const char *text, size_t len, struct line_ctx *c)
{
	size_t off = 0;

	while (off < len && !c->seen_errno) {
		const char *nl = memchr(text + off, '\n', len - off);
		size_t line_len = nl ? (size_t)(nl - (text + off)) : len - off;
		int r;

		if (line_len == 0)
			break; /* the blank line ends the reply */
		r = parse_line(c, text + off, line_len);
		if (r < 0)
			return r;
		off += line_len + 1;
	}
	if (!c->seen_errno)
		return -EBADMSG;
	return c->err;
}

int wg_uapi_parse_get(const char *text, size_t len, struct wg_device *dev)
{
	struct line_ctx c = { .dev = dev };

	return parse_reply(text, len, &c);
}

int wg_uapi_parse_errno(const char *text, size_t len)
{
	struct line_ctx c = { .dev = NULL };

	return parse_reply(text, len, &c);
}

size_t wg_uapi_reply_len(const char *buf, size_t len)
{
	if (len >= 1 && buf[0] == '\n')
		return 1;
	for (size_t i = 0; i + 1 < len; i++) {
		if (buf[i] == '\n' && buf[i + 1] == '\n')
			return i + 2;
	}
	return 0;
}

/* ---------------------------------------------------------------- formatting */

struct out {
	char *buf;
	size_t cap, len;
	bool full;
};

static void __attribute__((format(printf, 2, 3))) out_printf(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->full)
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= o->cap - o->len) {
		o->full = true;
		return;
	}
	o->len += (size_t)n;
}

static void out_hex_key(struct out *o, const char *name, const uint8_t key[KEY_LEN])
{
	char hex[2 * KEY_LEN + 1];

	for (size_t i = 0; i < KEY_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", key[i]);
	out_printf(o, "%s=%s\n", name, hex);
}

static int out_endpoint(struct out *o, const struct addr *a)
{
	char ip[INET6_ADDRSTRLEN];

	if (addr_family(a) == AF_INET) {
		inet_ntop(AF_INET, &a->in4.sin_addr, ip, sizeof(ip));
		out_printf(o, "endpoint=%s:%u\n", ip, ntohs(a->in4.sin_port));
	} else if (addr_family(a) == AF_INET6) {
		inet_ntop(AF_INET6, &a->in6.sin6_addr, ip, sizeof(ip));
		out_printf(o, "endpoint=[%s]:%u\n", ip, ntohs(a->in6.sin6_port));
	} else {
		return -EINVAL;
	}
	return 0;
}

int wg_uapi_format_set(const struct wg_peer_update *updates, size_t n, bool update_only, char *buf,
		       size_t cap)
{
	struct out o = { .buf = buf, .cap = cap };

	if (cap == 0)
		return -ENOSPC;
	out_printf(&o, "set=1\n");
	for (size_t i = 0; i < n; i++) {
		const struct wg_peer_update *u = &updates[i];

		out_hex_key(&o, "public_key", u->public_key);
		if (update_only)
			out_printf(&o, "update_only=true\n");
		if ((u->flags & WG_UPDATE_ENDPOINT) && out_endpoint(&o, &u->endpoint) < 0)
			return -EINVAL;
		if (u->flags & WG_UPDATE_KEEPALIVE)
			out_printf(&o, "persistent_keepalive_interval=%u\n", u->keepalive_s);
	}
	out_printf(&o, "\n");
	return o.full || o.len > INT32_MAX ? -ENOSPC : (int)o.len;
}

int wg_uapi_socket_path(const char *ifname, char *buf, size_t cap)
{
	int n = snprintf(buf, cap, "%s/%s.sock", WG_UAPI_DIR, ifname);

	if (n < 0 || (size_t)n >= cap || (size_t)n >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return -ENAMETOOLONG;
	return 0;
}

/* ---------------------------------------------------------------- I/O */

enum uapi_step { UAPI_IDLE, UAPI_GET, UAPI_SET, UAPI_SET_RETRY };

struct uapi_conn {
	uv_pipe_t pipe;
	uv_connect_t connect;
	uv_write_t write;
	struct wg_uapi_io *io; /* NULL once the request is over or abandoned */
	char *tx;
	size_t tx_len;
	char *rx;
	size_t rx_len, rx_cap, scanned;
};

struct wg_uapi_io {
	uv_loop_t *loop;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct uapi_conn *conn;
	enum uapi_step step;
	wg_io_cb cb;
	void *cb_arg;
	const struct wg_peer_update *updates;
	size_t n;
};

static void uapi_on_conn_closed(uv_handle_t *h)
{
	struct uapi_conn *c = h->data;

	free(c->tx);
	free(c->rx);
	free(c);
}

/* Each request gets its own connection, closed once its reply is in. */
static void uapi_conn_end(struct uapi_conn *c)
{
	if (c->io)
		c->io->conn = NULL;
	c->io = NULL;
	if (!uv_is_closing((uv_handle_t *)&c->pipe))
		uv_close((uv_handle_t *)&c->pipe, uapi_on_conn_closed);
}

static void uapi_finish(struct wg_uapi_io *io, int status, struct wg_device *dev)
{
	io->step = UAPI_IDLE;
	io->cb(io->cb_arg, status, dev); /* last: cb may close io */
}

static int uapi_send(struct wg_uapi_io *io, char *text, size_t len);

static void uapi_on_reply(struct wg_uapi_io *io, const char *text, size_t len)
{
	struct wg_device *dev;
	int r;

	if (io->step == UAPI_GET) {
		dev = calloc(1, sizeof(*dev));
		if (!dev) {
			uapi_finish(io, -ENOMEM, NULL);
			return;
		}
		r = wg_uapi_parse_get(text, len, dev);
		if (r < 0) {
			wg_device_free(dev);
			dev = NULL;
		}
		uapi_finish(io, r, dev);
		return;
	}
	r = wg_uapi_parse_errno(text, len);
	if ((r == -EINVAL || r == -EPROTO) && io->step == UAPI_SET) {
		/* boringtun does not know update_only and refuses the whole set;
		 * wg.c only passes peers that exist, so without it nothing is created
		 * (short of a peer removed in between). */
		int cap = (int)(io->n * WG_UAPI_SET_PEER_MAX + 16);
		char *buf = malloc((size_t)cap);
		int len2;

		if (!buf) {
			uapi_finish(io, -ENOMEM, NULL);
			return;
		}
		len2 = wg_uapi_format_set(io->updates, io->n, false, buf, (size_t)cap);
		if (len2 < 0) {
			free(buf);
			uapi_finish(io, len2, NULL);
			return;
		}
		io->step = UAPI_SET_RETRY;
		r = uapi_send(io, buf, (size_t)len2);
		if (r == 0)
			return;
	}
	uapi_finish(io, r, NULL);
}

static void uapi_conn_fail(struct uapi_conn *c, int status)
{
	struct wg_uapi_io *io = c->io;

	uapi_conn_end(c);
	if (io)
		uapi_finish(io, status, NULL);
}

static void uapi_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct uapi_conn *c = h->data;

	if (c->rx_cap - c->rx_len < 4096 && c->rx_cap < WG_UAPI_REPLY_MAX) {
		size_t cap = c->rx_cap ? 2 * c->rx_cap : 65536;
		char *p = realloc(c->rx, cap);

		if (p) {
			c->rx = p;
			c->rx_cap = cap;
		}
	}
	/* A zero-length buffer makes libuv report UV_ENOBUFS: the reply is too long. */
	*buf = uv_buf_init(c->rx + c->rx_len, (unsigned int)(c->rx_cap - c->rx_len));
}

static void uapi_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct uapi_conn *c = s->data;
	struct wg_uapi_io *io = c->io;
	size_t end;

	if (!io)
		return;
	if (nread == UV_ENOBUFS) {
		uapi_conn_fail(c, -EMSGSIZE);
		return;
	}
	if (nread == UV_EOF) {
		/* closed before the blank line */
		uapi_conn_fail(c, -ECONNRESET);
		return;
	}
	if (nread < 0) {
		uapi_conn_fail(c, (int)nread);
		return;
	}
	if (nread == 0)
		return; /* EAGAIN: nothing was read */
	c->rx_len += (size_t)nread;
	/* The reply ends at its first blank line; look only at the new bytes (and the one
	 * before them), so a long reply read in many pieces is scanned once. */
	if (c->rx[0] == '\n') {
		end = 1;
	} else {
		for (end = 0; c->scanned + 1 < c->rx_len; c->scanned++) {
			if (c->rx[c->scanned] == '\n' && c->rx[c->scanned + 1] == '\n') {
				end = c->scanned + 2;
				break;
			}
		}
		if (!end)
			return;
	}
	uv_read_stop(s);
	/* The reply text stays valid: the connection is freed in its close callback. */
	uapi_conn_end(c);
	uapi_on_reply(io, c->rx, end);
}

static void uapi_on_write(uv_write_t *req, int status)
{
	struct uapi_conn *c = req->data;

	if (c->io && status < 0)
		uapi_conn_fail(c, status);
}

static void uapi_on_connect(uv_connect_t *req, int status)
{
	struct uapi_conn *c = req->data;
	uv_buf_t b = uv_buf_init(c->tx, (unsigned int)c->tx_len);
	int r;

	if (!c->io)
		return;
	if (status < 0) {
		uapi_conn_fail(c, status);
		return;
	}
	c->write.data = c;
	r = uv_write(&c->write, (uv_stream_t *)&c->pipe, &b, 1, uapi_on_write);
	if (r == 0)
		r = uv_read_start((uv_stream_t *)&c->pipe, uapi_on_alloc, uapi_on_read);
	if (r < 0)
		uapi_conn_fail(c, r);
}

/* Takes text (freed with the connection). 0, or -errno and nothing was started. */
static int uapi_send(struct wg_uapi_io *io, char *text, size_t len)
{
	struct uapi_conn *c = calloc(1, sizeof(*c));
	int r;

	if (!c) {
		free(text);
		return -ENOMEM;
	}
	c->tx = text;
	c->tx_len = len;
	r = uv_pipe_init(io->loop, &c->pipe, 0);
	if (r < 0) {
		free(text);
		free(c);
		return r;
	}
	c->pipe.data = c;
	c->connect.data = c;
	c->io = io;
	io->conn = c;
	/* Errors (no socket: ENOENT, nobody listening: ECONNREFUSED) come through the callback. */
	uv_pipe_connect(&c->connect, &c->pipe, io->path, uapi_on_connect);
	return 0;
}

int wg_uapi_io_open(uv_loop_t *loop, const char *path, struct wg_uapi_io **out)
{
	struct wg_uapi_io *io;

	if (strlen(path) >= sizeof(io->path))
		return -ENAMETOOLONG;
	io = calloc(1, sizeof(*io));
	if (!io)
		return -ENOMEM;
	memcpy(io->path, path, strlen(path) + 1);
	io->loop = loop;
	*out = io;
	return 0;
}

int wg_uapi_io_get(struct wg_uapi_io *io, wg_io_cb cb, void *arg)
{
	static const char get[] = "get=1\n\n";
	char *text;
	int r;

	if (io->step != UAPI_IDLE)
		return -EBUSY;
	text = strdup(get);
	if (!text)
		return -ENOMEM;
	io->cb = cb;
	io->cb_arg = arg;
	io->step = UAPI_GET;
	r = uapi_send(io, text, sizeof(get) - 1);
	if (r < 0)
		io->step = UAPI_IDLE;
	return r;
}

int wg_uapi_io_set(struct wg_uapi_io *io, const struct wg_peer_update *updates, size_t n,
		   wg_io_cb cb, void *arg)
{
	size_t cap = n * WG_UAPI_SET_PEER_MAX + 16;
	char *text;
	int len, r;

	if (io->step != UAPI_IDLE)
		return -EBUSY;
	if (n == 0 || n > INT32_MAX / WG_UAPI_SET_PEER_MAX)
		return -EINVAL;
	text = malloc(cap);
	if (!text)
		return -ENOMEM;
	len = wg_uapi_format_set(updates, n, true, text, cap);
	if (len < 0) {
		free(text);
		return len;
	}
	io->updates = updates;
	io->n = n;
	io->cb = cb;
	io->cb_arg = arg;
	io->step = UAPI_SET;
	r = uapi_send(io, text, (size_t)len);
	if (r < 0)
		io->step = UAPI_IDLE;
	return r;
}

void wg_uapi_io_abort(struct wg_uapi_io *io)
{
	/* The connection's callbacks (connect, write, read) see c->io == NULL from now
	 * on and touch nothing; the close callback frees it. */
	if (io->conn)
		uapi_conn_end(io->conn);
	io->step = UAPI_IDLE;
	io->updates = NULL;
	io->n = 0;
}

void wg_uapi_io_close(struct wg_uapi_io *io, void (*closed)(void *arg), void *arg)
{
	if (io->conn)
		uapi_conn_end(io->conn);
	free(io);
	if (closed)
		closed(arg);
}

/* SPDX-License-Identifier: MIT */
/*
 * The UAPI text parser and formatter, and the I/O layer against a fake UAPI
 * server on a temporary socket (one that answers like wireguard-go, and one
 * that refuses update_only like boringtun).
 */
#include "wgpunch/wg_uapi.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tap.h"

/* As wireguard-go answers get=1 (keys in hex, one allowed_ip line each). */
static const char get_reply[] =
	"private_key=e84b5a6d2717c1003a13b431570353dbaca9146cf150c5f8575680feba52027a\n"
	"listen_port=51820\n"
	"fwmark=81\n"
	"public_key=b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33\n"
	"preshared_key=0000000000000000000000000000000000000000000000000000000000000000\n"
	"protocol_version=1\n"
	"endpoint=203.0.113.9:51820\n"
	"last_handshake_time_sec=1700000001\n"
	"last_handshake_time_nsec=42\n"
	"tx_bytes=38333\n"
	"rx_bytes=2224\n"
	"persistent_keepalive_interval=25\n"
	"future_key=whatever it is\n"
	"allowed_ip=198.18.0.0/15\n"
	"allowed_ip=2001:db8::/32\n"
	"public_key=58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceb7e19321376\n"
	"endpoint=[2001:db8::9]:51000\n"
	"last_handshake_time_sec=0\n"
	"last_handshake_time_nsec=0\n"
	"persistent_keepalive_interval=0\n"
	"public_key=662e14fd594556f522604703340351258903b64f35553763f19426ab2a515c58\n"
	"errno=0\n"
	"\n";

static void hex_key(uint8_t key[KEY_LEN], const char *hex)
{
	for (int i = 0; i < KEY_LEN; i++)
		sscanf(hex + 2 * i, "%2hhx", &key[i]);
}

static void test_wg_uapi_parse_get_device(void)
{
	struct wg_device *dev = calloc(1, sizeof(*dev));
	uint8_t key[KEY_LEN], pub[KEY_LEN];
	const struct wg_peer *p;
	char ip[INET6_ADDRSTRLEN];

	CHECK_EQ_INT(wg_uapi_parse_get(get_reply, sizeof(get_reply) - 1, dev), 0);
	CHECK(dev->has_private_key);
	hex_key(key, "e84b5a6d2717c1003a13b431570353dbaca9146cf150c5f8575680feba52027a");
	CHECK(!memcmp(dev->private_key, key, KEY_LEN));
	/* No public_key line for the device: derived like wg(8) does. */
	CHECK_EQ_INT(key_public_from_private(pub, key), 0);
	CHECK(!memcmp(dev->public_key, pub, KEY_LEN));
	CHECK_EQ_INT(dev->listen_port, 51820);
	CHECK_EQ_INT(dev->fwmark, 81);
	CHECK_EQ_INT(dev->n_peers, 3);
	if (dev->n_peers != 3)
		goto out;
	p = &dev->peers[0];
	hex_key(key, "b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33");
	CHECK(!memcmp(p->public_key, key, KEY_LEN));
	CHECK_EQ_INT(addr_family(&p->endpoint), AF_INET);
	CHECK_EQ_INT(addr_port(&p->endpoint), 51820);
	inet_ntop(AF_INET, &p->endpoint.in4.sin_addr, ip, sizeof(ip));
	CHECK(!strcmp(ip, "203.0.113.9"));
	CHECK_EQ_INT(p->last_handshake_s, 1700000001);
	CHECK_EQ_INT(p->last_handshake_ns, 42);
	CHECK_EQ_INT(p->tx_bytes, 38333);
	CHECK_EQ_INT(p->rx_bytes, 2224);
	CHECK_EQ_INT(p->keepalive_s, 25);
	CHECK_EQ_INT(p->n_allowed_ips, 2);
	if (p->n_allowed_ips == 2) {
		CHECK_EQ_INT(p->allowed_ips[0].family, AF_INET);
		CHECK_EQ_INT(p->allowed_ips[0].cidr, 15);
		CHECK_EQ_INT(p->allowed_ips[1].family, AF_INET6);
		CHECK_EQ_INT(p->allowed_ips[1].cidr, 32);
		inet_ntop(AF_INET6, &p->allowed_ips[1].ip6, ip, sizeof(ip));
		CHECK(!strcmp(ip, "2001:db8::"));
	}
	p = &dev->peers[1];
	CHECK_EQ_INT(addr_family(&p->endpoint), AF_INET6);
	CHECK_EQ_INT(addr_port(&p->endpoint), 51000);
	CHECK_EQ_INT(p->keepalive_s, 0);
	CHECK_EQ_INT(p->n_allowed_ips, 0);
	p = &dev->peers[2];
	CHECK(!addr_is_set(&p->endpoint));
	hex_key(key, "662e14fd594556f522604703340351258903b64f35553763f19426ab2a515c58");
	CHECK(wg_device_find_peer(dev, key) == p);
out:
	wg_device_free(dev);
}

static int parse(const char *text)
{
	struct wg_device *dev = calloc(1, sizeof(*dev));
	int r = wg_uapi_parse_get(text, strlen(text), dev);

	wg_device_free(dev);
	return r;
}

static void test_wg_uapi_parse_errno(void)
{
	/* wireguard-go writes the negative code; the protocol text shows positive ones. */
	CHECK_EQ_INT(parse("errno=-22\n\n"), -EINVAL);
	CHECK_EQ_INT(parse("errno=2\n\n"), -ENOENT);
	CHECK_EQ_INT(parse("listen_port=1\nerrno=0\n\n"), 0);
	CHECK_EQ_INT(wg_uapi_parse_errno("errno=0\n\n", 9), 0);
	CHECK_EQ_INT(wg_uapi_parse_errno("errno=22\n\n", 10), -EINVAL);
	CHECK_EQ_INT(wg_uapi_parse_errno("\n", 1), -EBADMSG);
}

static void test_wg_uapi_parse_refuses_malformed(void)
{
	static const char *const bad[] = {
		"listen_port=51820\n\n", /* no errno line */
		"listen_port=51820\n",
		"listen_port\nerrno=0\n\n",
		"listen_port=65536\nerrno=0\n\n",
		"listen_port=-1\nerrno=0\n\n",
		"listen_port= 1\nerrno=0\n\n",
		"private_key=e84b\nerrno=0\n\n",
		"public_key="
		"zz5996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33\nerrno=0\n\n",
		"public_key=b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33\n"
		"endpoint=203.0.113.9\nerrno=0\n\n",
		"public_key=b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33\n"
		"endpoint=2001:db8::1:51820\nerrno=0\n\n", /* v6 without brackets */
		"public_key=b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33\n"
		"endpoint=[203.0.113.9]:1\nerrno=0\n\n",
		"public_key=b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33\n"
		"allowed_ip=198.18.0.0/33\nerrno=0\n\n",
		"public_key=b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33\n"
		"allowed_ip=198.18.0.0\nerrno=0\n\n",
		"public_key=b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33\n"
		"rx_bytes=18446744073709551616\nerrno=0\n\n",
		"errno=x\n\n",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = parse(bad[i]);

		if (r != -EBADMSG)
			printf("# bad[%zu] gave %d\n", i, r);
		CHECK_EQ_INT(r, -EBADMSG);
	}
	/* Unknown keys are skipped, even long ones. */
	CHECK_EQ_INT(parse("a_key_from_the_future_that_is_quite_long_indeed_yes=1\nerrno=0\n\n"),
		     0);
}

static void make_updates(struct wg_peer_update u[2])
{
	memset(u, 0, 2 * sizeof(*u));
	hex_key(u[0].public_key,
		"b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33");
	u[0].flags = WG_UPDATE_ENDPOINT | WG_UPDATE_KEEPALIVE;
	u[0].endpoint.in4.sin_family = AF_INET;
	u[0].endpoint.in4.sin_port = htons(51820);
	inet_pton(AF_INET, "203.0.113.9", &u[0].endpoint.in4.sin_addr);
	u[0].keepalive_s = 25;
	hex_key(u[1].public_key,
		"58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceb7e19321376");
	u[1].flags = WG_UPDATE_ENDPOINT;
	u[1].endpoint.in6.sin6_family = AF_INET6;
	u[1].endpoint.in6.sin6_port = htons(51000);
	inet_pton(AF_INET6, "2001:db8::9", &u[1].endpoint.in6.sin6_addr);
}

static const char set_text[] =
	"set=1\n"
	"public_key=b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33\n"
	"update_only=true\n"
	"endpoint=203.0.113.9:51820\n"
	"persistent_keepalive_interval=25\n"
	"public_key=58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceb7e19321376\n"
	"update_only=true\n"
	"endpoint=[2001:db8::9]:51000\n"
	"\n";

static void test_wg_uapi_format_set(void)
{
	struct wg_peer_update u[2];
	char buf[1024];
	int len;

	make_updates(u);
	len = wg_uapi_format_set(u, 2, true, buf, sizeof(buf));
	CHECK_EQ_INT(len, sizeof(set_text) - 1);
	CHECK(len > 0 && !memcmp(buf, set_text, (size_t)len));
	CHECK(len <= 2 * WG_UAPI_SET_PEER_MAX);

	len = wg_uapi_format_set(u, 2, false, buf, sizeof(buf));
	CHECK(len > 0);
	buf[len > 0 ? len : 0] = '\0';
	CHECK(!strstr(buf, "update_only"));
	CHECK(strstr(buf, "endpoint=203.0.113.9:51820\npersistent_keepalive_interval=25\n"));

	CHECK_EQ_INT(wg_uapi_format_set(u, 2, true, buf, 100), -ENOSPC);
	CHECK_EQ_INT(wg_uapi_format_set(u, 2, true, buf, sizeof(set_text) - 1), -ENOSPC);
	memset(&u[1].endpoint, 0, sizeof(u[1].endpoint));
	CHECK_EQ_INT(wg_uapi_format_set(u, 2, true, buf, sizeof(buf)), -EINVAL);
}

static void test_wg_uapi_reply_len(void)
{
	CHECK_EQ_INT(wg_uapi_reply_len("errno=0\n", 8), 0);
	CHECK_EQ_INT(wg_uapi_reply_len("errno=0\n\n", 9), 9);
	CHECK_EQ_INT(wg_uapi_reply_len("a=1\nerrno=0\n\nrest", 17), 13);
	CHECK_EQ_INT(wg_uapi_reply_len("\n", 1), 1);
	CHECK_EQ_INT(wg_uapi_reply_len("", 0), 0);
}

/* ---------------------------------------------------------------- I/O against a fake server */

struct fake {
	uv_loop_t *loop;
	uv_pipe_t server;
	bool refuse_update_only; /* like boringtun */
	int silent;              /* this many requests are read and never answered */
	int requests;
	int hangups; /* connections the client closed (EOF seen) */
	char last_set[4096];
};

struct fake_conn {
	uv_pipe_t pipe;
	struct fake *f;
	char rx[4096];
	size_t rx_len;
};

struct fake_write {
	uv_write_t req;
	char data[];
};

static void fake_on_closed(uv_handle_t *h)
{
	free(h->data);
}

static void fake_on_write(uv_write_t *req, int status)
{
	free(req);
}

/* Replies in two pieces, so the client must put the reply together. */
static void fake_send(struct fake_conn *c, const char *text)
{
	size_t len = strlen(text), half = len / 2;

	for (int i = 0; i < 2; i++) {
		size_t off = i ? half : 0, n = i ? len - half : half;
		struct fake_write *w = malloc(sizeof(*w) + n);
		uv_buf_t b = uv_buf_init(w->data, (unsigned int)n);

		memcpy(w->data, text + off, n);
		uv_write(&w->req, (uv_stream_t *)&c->pipe, &b, 1, fake_on_write);
	}
}

static void fake_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct fake_conn *c = h->data;

	*buf = uv_buf_init(c->rx + c->rx_len, (unsigned int)(sizeof(c->rx) - c->rx_len - 1));
}

static void fake_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct fake_conn *c = s->data;
	struct fake *f = c->f;

	if (nread < 0) {
		if (nread == UV_EOF)
			f->hangups++;
		uv_close((uv_handle_t *)s, fake_on_closed);
		return;
	}
	c->rx_len += (size_t)nread;
	c->rx[c->rx_len] = '\0';
	if (!wg_uapi_reply_len(c->rx, c->rx_len) && strcmp(c->rx, "get=1\n\n"))
		return;
	f->requests++;
	if (f->silent > 0) {
		/* A userspace WireGuard that is stuck: the connection stays open, silent. */
		f->silent--;
		c->rx_len = 0;
		return;
	}
	if (!strcmp(c->rx, "get=1\n\n")) {
		fake_send(c, get_reply);
	} else {
		snprintf(f->last_set, sizeof(f->last_set), "%s", c->rx);
		fake_send(c, f->refuse_update_only && strstr(c->rx, "update_only=")
				     ? "errno=22\n\n"
				     : "errno=0\n\n");
	}
	c->rx_len = 0;
}

static void fake_on_connection(uv_stream_t *server, int status)
{
	struct fake *f = server->data;
	struct fake_conn *c = calloc(1, sizeof(*c));

	c->f = f;
	uv_pipe_init(f->loop, &c->pipe, 0);
	c->pipe.data = c;
	if (uv_accept(server, (uv_stream_t *)&c->pipe) == 0)
		uv_read_start((uv_stream_t *)&c->pipe, fake_on_alloc, fake_on_read);
	else
		uv_close((uv_handle_t *)&c->pipe, fake_on_closed);
}

struct result {
	int calls;
	int status;
	struct wg_device *dev;
	struct wg_uapi_io *io;
	struct fake *f;
};

static void on_done(void *arg, int status, struct wg_device *dev)
{
	struct result *res = arg;

	res->calls++;
	res->status = status;
	res->dev = dev;
	uv_close((uv_handle_t *)&res->f->server, NULL);
}

/* Closes what is left: fake connections (their data is theirs to free), not the server. */
static void on_walk_close(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, h == arg ? NULL : fake_on_closed);
}

/* Runs one request against a fake server; the loop must end with every handle closed. */
static void run_fake(bool refuse_update_only, bool do_set, struct result *res, struct fake *f)
{
	char path[] = "/tmp/wgpunch-test-uapi-XXXXXX";
	char sock[128];
	uv_loop_t loop;
	struct wg_peer_update u[2];
	int r;

	CHECK(mkdtemp(path) != NULL);
	snprintf(sock, sizeof(sock), "%s/wgt0.sock", path);
	uv_loop_init(&loop);
	memset(f, 0, sizeof(*f));
	f->loop = &loop;
	f->refuse_update_only = refuse_update_only;
	uv_pipe_init(&loop, &f->server, 0);
	f->server.data = f;
	CHECK_EQ_INT(uv_pipe_bind(&f->server, sock), 0);
	CHECK_EQ_INT(uv_listen((uv_stream_t *)&f->server, 4, fake_on_connection), 0);
	res->f = f;
	CHECK_EQ_INT(wg_uapi_io_open(&loop, sock, &res->io), 0);
	make_updates(u);
	r = do_set ? wg_uapi_io_set(res->io, u, 2, on_done, res)
		   : wg_uapi_io_get(res->io, on_done, res);
	CHECK_EQ_INT(r, 0);
	CHECK_EQ_INT(res->calls, 0); /* never from inside the call */
	uv_run(&loop, UV_RUN_DEFAULT);
	wg_uapi_io_close(res->io, NULL, NULL);
	uv_walk(&loop, on_walk_close, &f->server);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK_EQ_INT(uv_loop_close(&loop), 0);
	unlink(sock);
	rmdir(path);
}

static void test_wg_uapi_io_get(void)
{
	struct result res = { 0 };
	struct fake f;

	run_fake(false, false, &res, &f);
	CHECK_EQ_INT(res.calls, 1);
	CHECK_EQ_INT(res.status, 0);
	CHECK(res.dev && res.dev->n_peers == 3 && res.dev->listen_port == 51820);
	wg_device_free(res.dev);
}

static void test_wg_uapi_io_set_with_update_only(void)
{
	struct result res = { 0 };
	struct fake f;

	run_fake(false, true, &res, &f);
	CHECK_EQ_INT(res.calls, 1);
	CHECK_EQ_INT(res.status, 0);
	CHECK_EQ_INT(f.requests, 1);
	CHECK(!strcmp(f.last_set, set_text));
}

static void test_wg_uapi_io_set_retries_without_update_only(void)
{
	struct result res = { 0 };
	struct fake f;

	run_fake(true, true, &res, &f);
	CHECK_EQ_INT(res.calls, 1);
	CHECK_EQ_INT(res.status, 0);
	CHECK_EQ_INT(f.requests, 2); /* refused, then again without update_only */
	CHECK(!strstr(f.last_set, "update_only"));
	CHECK(strstr(f.last_set, "endpoint=[2001:db8::9]:51000\n"));
}

static void test_wg_uapi_io_no_socket(void)
{
	uv_loop_t loop;
	struct wg_uapi_io *io;
	struct result res = { 0 };
	struct fake f = { 0 };

	uv_loop_init(&loop);
	uv_pipe_init(&loop, &f.server, 0); /* on_done closes it */
	res.f = &f;
	CHECK_EQ_INT(wg_uapi_io_open(&loop, "/tmp/wgpunch-test-no-such-dir/x.sock", &io), 0);
	CHECK_EQ_INT(wg_uapi_io_get(io, on_done, &res), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK_EQ_INT(res.calls, 1);
	CHECK_EQ_INT(res.status, -ENOENT);
	CHECK(res.dev == NULL);
	wg_uapi_io_close(io, NULL, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

/* ---------------------------------------------------------------- wg.c deadline */

struct wg_run {
	struct fake f;
	uv_loop_t loop;
	uv_timer_t watchdog;
	char dir[64], sock[128];
	struct wg *wg;
	uint64_t start_ns;
	int order; /* callbacks seen so far */
	struct wg_run_req {
		struct wg_run *w; /* the callback's arg is &r[i] */
		int calls, status, seq;
		uint64_t elapsed_ms;
		size_t n_peers;
	} r[3];
};

static void wg_run_on_watchdog(uv_timer_t *t)
{
	struct wg_run *w = t->data;

	printf("# watchdog fired\n");
	wg_close(w->wg);
	w->wg = NULL;
	if (!uv_is_closing((uv_handle_t *)&w->f.server))
		uv_close((uv_handle_t *)&w->f.server, NULL);
}

static void wg_run_note(struct wg_run_req *req, int status)
{
	req->calls++;
	req->status = status;
	req->seq = ++req->w->order;
	req->elapsed_ms = (uv_hrtime() - req->w->start_ns) / 1000000u;
}

static void wg_run_on_get(struct wg *wg, int status, struct wg_device *dev, void *arg)
{
	struct wg_run_req *req = arg;
	struct wg_run *w = req->w;

	wg_run_note(req, status);
	req->n_peers = dev ? dev->n_peers : 0;
	wg_device_free(dev);
	if (req == &w->r[2]) {
		/* The last one: everything is over. */
		wg_close(wg);
		w->wg = NULL;
		uv_timer_stop(&w->watchdog);
		uv_close((uv_handle_t *)&w->f.server, NULL);
	}
}

static void wg_run_on_set(struct wg *wg, int status, void *arg)
{
	wg_run_note(arg, status);
}

/* A fake server that answers after its first `silent` requests, and a struct wg on it. */
static int wg_run_start(struct wg_run *w, int silent)
{
	char err[256];
	int r;

	memset(w, 0, sizeof(*w));
	for (int i = 0; i < 3; i++)
		w->r[i].w = w;
	snprintf(w->dir, sizeof(w->dir), "/tmp/wgpunch-test-uapi-XXXXXX");
	CHECK(mkdtemp(w->dir) != NULL);
	snprintf(w->sock, sizeof(w->sock), "%s/wgt0.sock", w->dir);
	uv_loop_init(&w->loop);
	w->f.loop = &w->loop;
	w->f.silent = silent;
	uv_pipe_init(&w->loop, &w->f.server, 0);
	w->f.server.data = &w->f;
	CHECK_EQ_INT(uv_pipe_bind(&w->f.server, w->sock), 0);
	CHECK_EQ_INT(uv_listen((uv_stream_t *)&w->f.server, 4, fake_on_connection), 0);
	uv_timer_init(&w->loop, &w->watchdog);
	w->watchdog.data = w;
	uv_timer_start(&w->watchdog, wg_run_on_watchdog, 3000, 0);
	r = wg_open_uapi_path(&w->loop, "wgt0", w->sock, &w->wg, err, sizeof(err));
	CHECK_EQ_INT(r, 0);
	if (r < 0)
		printf("# %s\n", err);
	else
		CHECK_EQ_INT(wg_backend_of(w->wg), WG_BACKEND_USERSPACE);
	w->start_ns = uv_hrtime();
	return r;
}

/* Runs until every handle is closed; the loop must then close cleanly. */
static void wg_run_finish(struct wg_run *w)
{
	uv_run(&w->loop, UV_RUN_DEFAULT);
	wg_close(w->wg);
	if (!uv_is_closing((uv_handle_t *)&w->watchdog))
		uv_close((uv_handle_t *)&w->watchdog, NULL);
	uv_walk(&w->loop, on_walk_close, &w->f.server);
	uv_run(&w->loop, UV_RUN_DEFAULT);
	CHECK_EQ_INT(uv_loop_close(&w->loop), 0);
	unlink(w->sock);
	rmdir(w->dir);
}

static void test_wg_uapi_request_times_out_and_queue_goes_on(void)
{
	struct wg_peer_update u[2];
	struct wg_run w;

	if (wg_run_start(&w, 1) < 0)
		goto out;
	wg_set_timeout_ms(w.wg, 100);
	make_updates(u);
	/* A get the server never answers, then a set and a get that it does answer. */
	CHECK_EQ_INT(wg_get_device(w.wg, wg_run_on_get, &w.r[0]), 0);
	CHECK_EQ_INT(wg_set_peers(w.wg, u, 2, wg_run_on_set, &w.r[1]), 0);
	CHECK_EQ_INT(wg_get_device(w.wg, wg_run_on_get, &w.r[2]), 0);
out:
	wg_run_finish(&w);
	CHECK_EQ_INT(w.r[0].calls, 1);
	CHECK_EQ_INT(w.r[0].status, -ETIMEDOUT);
	CHECK_EQ_INT(w.r[0].seq, 1);
	printf("# timed out after %llu ms\n", (unsigned long long)w.r[0].elapsed_ms);
	/* libuv times from the loop's cached clock, which may lag the real one by a millisecond:
	 * a CI run saw 99 ms. */
	CHECK(w.r[0].elapsed_ms >= 99 && w.r[0].elapsed_ms < 1000);
	/* The set reads the device, then writes: two more requests, both answered. */
	CHECK_EQ_INT(w.r[1].calls, 1);
	CHECK_EQ_INT(w.r[1].status, 0);
	CHECK_EQ_INT(w.r[1].seq, 2);
	CHECK(!strcmp(w.f.last_set, set_text));
	CHECK_EQ_INT(w.r[2].calls, 1);
	CHECK_EQ_INT(w.r[2].status, 0);
	CHECK_EQ_INT(w.r[2].seq, 3);
	CHECK_EQ_INT(w.r[2].n_peers, 3);
	CHECK_EQ_INT(w.f.requests, 4);
	/* The client hung up the connection of the request it abandoned. */
	CHECK(w.f.hangups >= 1);
}

/* At 50 ms: closes wg while its request hangs. At 300 ms (past its deadline): ends the run. */
static void wg_run_on_close_timer(uv_timer_t *t)
{
	struct wg_run *w = t->data;

	if (w->wg) {
		wg_close(w->wg);
		w->wg = NULL;
		uv_close((uv_handle_t *)&w->f.server, NULL);
		uv_timer_start(t, wg_run_on_close_timer, 250, 0);
		return;
	}
	uv_timer_stop(&w->watchdog);
	uv_close((uv_handle_t *)t, NULL);
}

static void test_wg_uapi_no_callback_after_close(void)
{
	uv_timer_t closer;
	struct wg_run w;

	if (wg_run_start(&w, 1) < 0)
		goto out;
	wg_set_timeout_ms(w.wg, 100);
	CHECK_EQ_INT(wg_get_device(w.wg, wg_run_on_get, &w.r[0]), 0);
	uv_timer_init(&w.loop, &closer);
	closer.data = &w;
	uv_timer_start(&closer, wg_run_on_close_timer, 50, 0);
out:
	wg_run_finish(&w);
	CHECK_EQ_INT(w.r[0].calls, 0);
	CHECK_EQ_INT(w.f.requests, 1);
}

int main(void)
{
	TAP_RUN(test_wg_uapi_parse_get_device);
	TAP_RUN(test_wg_uapi_parse_errno);
	TAP_RUN(test_wg_uapi_parse_refuses_malformed);
	TAP_RUN(test_wg_uapi_format_set);
	TAP_RUN(test_wg_uapi_reply_len);
	TAP_RUN(test_wg_uapi_io_get);
	TAP_RUN(test_wg_uapi_io_set_with_update_only);
	TAP_RUN(test_wg_uapi_io_set_retries_without_update_only);
	TAP_RUN(test_wg_uapi_io_no_socket);
	TAP_RUN(test_wg_uapi_request_times_out_and_queue_goes_on);
	TAP_RUN(test_wg_uapi_no_callback_after_close);
	return tap_done();
}

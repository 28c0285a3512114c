// SPDX-License-Identifier: MIT
/*
 * test-coord - the coordinator: the pure punch order and attempt table
 * (fake clock), then a real coordinator on a uv loop on 127.0.0.1 driven by
 * test clients built from session and proto directly.
 */
#include "wgpunch/coord.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "wgpunch/coord_pair.h"
#include "wgpunch/filter.h"
#include "wgpunch/hs.h"
#include "wgpunch/key.h"
#include "wgpunch/log.h"
#include "wgpunch/proto.h"
#include "wgpunch/registry.h"
#include "wgpunch/session.h"

#include "../tap.h"

static void make_addr(struct addr *a, const char *ip, uint16_t port)
{
	memset(a, 0, sizeof(*a));
	a->in4.sin_family = AF_INET;
	inet_pton(AF_INET, ip, &a->in4.sin_addr);
	a->in4.sin_port = htons(port);
}

/* ================= coord_pair: pure, fake clock ================= */

static struct reg_node *pair_node(struct registry *r, uint8_t id, uint8_t filter_state,
				  uint8_t filter, const char *public_ip)
{
	uint8_t key[KEY_LEN] = { 0 };
	struct reg_node *n = NULL;
	struct addr a;

	key[0] = id;
	if (registry_add(r, key, 0, &n) < 0)
		return NULL;
	n->filter_state = filter_state;
	n->filter = filter;
	make_addr(&a, public_ip, 40000 + id);
	registry_addr_pack(&n->mapping[0], &a);
	return n;
}

static void test_coord_pair_order_all_filters(void)
{
	static const uint8_t f[] = { PROTO_FILTER_UNKNOWN, PROTO_FILTER_SAFE,
				     PROTO_FILTER_POISONABLE };
	struct coord_pair_table t;
	struct registry r;

	CHECK_EQ_INT(registry_init(&r, 64), 0);
	CHECK_EQ_INT(coord_pair_table_init(&t, 64), 0);
	for (size_t i = 0; i < 3; i++) {
		for (size_t j = 0; j < 3; j++) {
			bool cause_p = f[i] == PROTO_FILTER_POISONABLE;
			bool other_p = f[j] == PROTO_FILTER_POISONABLE;
			bool want_cause = !(other_p && !cause_p);
			enum coord_pair_why want_why = COORD_PAIR_WHY_CAUSED;
			enum coord_pair_why why = (enum coord_pair_why)99;
			struct reg_node *a = pair_node(&r, (uint8_t)(10 * i + j + 1),
						       REG_FILTER_DONE, f[i], "203.0.113.1");
			struct reg_node *b = pair_node(&r, (uint8_t)(10 * i + j + 100),
						       REG_FILTER_DONE, f[j], "198.51.100.1");
			struct coord_pair_plan p;

			if (cause_p != other_p)
				want_why = COORD_PAIR_WHY_POISONABLE;
			else if (cause_p)
				want_why = COORD_PAIR_WHY_BOTH_POISONABLE;
			CHECK(coord_pair_cause_first(f[i], f[j], &why) == want_cause);
			CHECK_EQ_INT(why, want_why);
			CHECK(coord_pair_cause_first(f[i], f[j], NULL) == want_cause);
			coord_pair_start(&t, a, b, 0, &p);
			/* The plan carries the decision's own reason, for the log. */
			CHECK_EQ_INT(p.why, want_why);
			CHECK(p.first == (want_cause ? a : b));
			CHECK(p.second == (want_cause ? b : a));
			CHECK(!memcmp(p.to_first.peer_key, p.second->key, KEY_LEN));
			CHECK(!memcmp(p.to_second.peer_key, p.first->key, KEY_LEN));
		}
	}
	/* A test still pending counts as unknown: the poisonable result is not known yet. */
	struct reg_node *a = pair_node(&r, 200, REG_FILTER_DONE, PROTO_FILTER_SAFE, "203.0.113.2");
	struct reg_node *b =
		pair_node(&r, 201, REG_FILTER_PENDING, PROTO_FILTER_POISONABLE, "203.0.113.3");
	struct coord_pair_plan p;

	coord_pair_start(&t, a, b, 0, &p);
	CHECK(p.first == a);
	CHECK_EQ_INT(p.why, COORD_PAIR_WHY_CAUSED);
	CHECK_EQ_INT(coord_pair_filter_of(b), PROTO_FILTER_UNKNOWN);
	/* The texts name the reasons; "first is poisonable" is never said of two poisonable sides. */
	CHECK(!strcmp(coord_pair_why_text(COORD_PAIR_WHY_CAUSED), "first caused it"));
	CHECK(!strcmp(coord_pair_why_text(COORD_PAIR_WHY_POISONABLE),
		      "first is the only poisonable side"));
	CHECK(!strcmp(coord_pair_why_text(COORD_PAIR_WHY_BOTH_POISONABLE),
		      "both poisonable, first caused it"));
	coord_pair_table_destroy(&t);
	registry_destroy(&r);
}

static void test_coord_pair_ack_releases_second(void)
{
	struct coord_pair_table t;
	struct registry r;
	struct coord_pair_plan p;
	struct coord_pair_release rel;
	struct addr lan[2], got;

	CHECK_EQ_INT(registry_init(&r, 8), 0);
	CHECK_EQ_INT(coord_pair_table_init(&t, 4), 0);
	struct reg_node *a = pair_node(&r, 1, REG_FILTER_DONE, PROTO_FILTER_SAFE, "203.0.113.1");
	struct reg_node *b = pair_node(&r, 2, REG_FILTER_DONE, PROTO_FILTER_SAFE, "198.51.100.2");

	make_addr(&lan[0], "198.18.0.2", 51820);
	make_addr(&lan[1], "198.18.1.2", 51820);
	registry_set_lan(b, lan, 2);

	coord_pair_start(&t, a, b, 1000, &p);
	CHECK(p.first == a && !p.second_now);
	CHECK(p.attempt != 0);
	CHECK_EQ_INT(p.to_first.attempt, p.attempt);
	CHECK_EQ_INT(p.to_first.flags, PROTO_PUNCH_F_ACK);
	CHECK_EQ_INT(p.to_second.flags, 0);
	registry_addr_unpack(&got, &b->mapping[0]);
	CHECK(addr_equal(&p.to_first.peer_public, &got));
	CHECK_EQ_INT(p.to_first.n_lan, 2);
	CHECK(addr_equal(&p.to_first.lan[1], &lan[1]));
	CHECK_EQ_INT(p.to_second.n_lan, 0);
	CHECK_EQ_INT(coord_pair_next_deadline(&t), 1000 + COORD_PAIR_ACK_TIMEOUT_MS);

	/* Only first's ack of this attempt releases it. */
	CHECK(!coord_pair_ack(&t, p.attempt, b->key, &rel));
	CHECK(!coord_pair_ack(&t, p.attempt ^ 0x10000, a->key, &rel));
	CHECK(!coord_pair_ack(&t, 0, a->key, &rel));
	CHECK(!coord_pair_expire(&t, 1499, &rel));
	CHECK(coord_pair_ack(&t, p.attempt, a->key, &rel));
	CHECK_EQ_INT(rel.attempt, p.attempt);
	CHECK(!memcmp(rel.first_key, a->key, KEY_LEN));
	CHECK(!memcmp(rel.second_key, b->key, KEY_LEN));
	CHECK(!coord_pair_ack(&t, p.attempt, a->key, &rel)); /* once only */
	CHECK_EQ_INT(coord_pair_next_deadline(&t), -1);
	CHECK(!coord_pair_expire(&t, 99999, &rel));
	CHECK_EQ_INT(t.n, 0);
	coord_pair_table_destroy(&t);
	registry_destroy(&r);
}

static void test_coord_pair_timeout_releases_after_500ms(void)
{
	struct coord_pair_table t;
	struct registry r;
	struct coord_pair_plan p1, p2, p3;
	struct coord_pair_release rel;

	CHECK_EQ_INT(registry_init(&r, 8), 0);
	CHECK_EQ_INT(coord_pair_table_init(&t, 8), 0);
	struct reg_node *a = pair_node(&r, 1, REG_FILTER_DONE, PROTO_FILTER_SAFE, "203.0.113.1");
	struct reg_node *b = pair_node(&r, 2, REG_FILTER_DONE, PROTO_FILTER_SAFE, "203.0.113.2");
	struct reg_node *c = pair_node(&r, 3, REG_FILTER_DONE, PROTO_FILTER_SAFE, "203.0.113.3");

	coord_pair_start(&t, a, b, 1000, &p1);
	coord_pair_start(&t, c, a, 1100, &p2);
	coord_pair_start(&t, b, c, 1200, &p3);
	/* The middle one is acked: the others still expire in order. */
	CHECK(coord_pair_ack(&t, p2.attempt, c->key, &rel));
	CHECK(!coord_pair_expire(&t, 1499, &rel));
	CHECK(coord_pair_expire(&t, 1500, &rel));
	CHECK_EQ_INT(rel.attempt, p1.attempt);
	CHECK(!memcmp(rel.second_key, b->key, KEY_LEN));
	CHECK(!coord_pair_expire(&t, 1500, &rel));
	CHECK_EQ_INT(coord_pair_next_deadline(&t), 1700);
	CHECK(coord_pair_expire(&t, 5000, &rel));
	CHECK_EQ_INT(rel.attempt, p3.attempt);
	CHECK(!coord_pair_expire(&t, 5000, &rel));
	/* An expired attempt can no longer be acked. */
	CHECK(!coord_pair_ack(&t, p1.attempt, a->key, &rel));
	coord_pair_table_destroy(&t);
	registry_destroy(&r);
}

static void test_coord_pair_full_table_sends_both(void)
{
	struct coord_pair_table t;
	struct registry r;
	struct coord_pair_plan p1, p2, p3, p4;
	struct coord_pair_release rel;

	CHECK_EQ_INT(registry_init(&r, 8), 0);
	CHECK_EQ_INT(coord_pair_table_init(&t, 2), 0);
	CHECK_EQ_INT(coord_pair_table_init(&(struct coord_pair_table){ 0 }, 0), -EINVAL);
	struct reg_node *a = pair_node(&r, 1, REG_FILTER_DONE, PROTO_FILTER_SAFE, "203.0.113.1");
	struct reg_node *b =
		pair_node(&r, 2, REG_FILTER_DONE, PROTO_FILTER_POISONABLE, "203.0.113.2");

	coord_pair_start(&t, a, b, 0, &p1);
	coord_pair_start(&t, a, b, 0, &p2);
	coord_pair_start(&t, a, b, 0, &p3);
	CHECK(!p1.second_now && !p2.second_now);
	CHECK(p1.attempt != p2.attempt);
	CHECK(p3.second_now);
	CHECK_EQ_INT(p3.attempt, 0);
	CHECK_EQ_INT(p3.to_first.flags, 0); /* nobody waits for an ack */
	CHECK(p3.first == b);               /* the order is still the right one */
	CHECK(!memcmp(p3.to_second.peer_key, b->key, KEY_LEN));
	/* A slot freed by an ack is reused under a new attempt id; the old id is stale. */
	CHECK(coord_pair_ack(&t, p1.attempt, b->key, &rel));
	coord_pair_start(&t, a, b, 0, &p4);
	CHECK(!p4.second_now);
	CHECK((p4.attempt & 0xffff) == (p1.attempt & 0xffff));
	CHECK(p4.attempt != p1.attempt);
	CHECK(!coord_pair_ack(&t, p1.attempt, b->key, &rel));
	CHECK(coord_pair_ack(&t, p4.attempt, b->key, &rel));
	coord_pair_table_destroy(&t);
	registry_destroy(&r);
}

/* ================= a real coordinator on 127.0.0.1 ================= */

#define WATCHDOG_MS 20000
#define MAX_AUTH 4
#define QUEUE_LEN 32

struct harness {
	uv_loop_t loop;
	uv_timer_t watchdog;
	bool timed_out;
	struct config conf;
	struct addr listen;
	uint16_t port;
	uint8_t auth[MAX_AUTH][KEY_LEN];
	struct coord *coord;
};

struct client {
	int fd;    /* session socket */
	int wg_fd; /* stands in for the WireGuard port: probes leave from it */
	struct addr addr, wg_addr;
	uint8_t priv[KEY_LEN], pub[KEY_LEN];
	uint32_t my_idx, coord_idx;
	uint8_t send_key[SESSION_KEY_LEN], recv_key[SESSION_KEY_LEN], probe_key[SESSION_KEY_LEN];
	uint64_t send_ctr;
	struct session_replay replay;
	int64_t ts_s;
	unsigned int poisons;
	unsigned int unknowns; /* SESSION_UNKNOWN seen on the session socket */
	struct proto_msg queue[QUEUE_LEN];
	size_t queued;
};

static void harness_on_watchdog(uv_timer_t *t)
{
	struct harness *h = t->data;

	h->timed_out = true;
	printf("# watchdog fired\n");
}

/* ip: a loopback address (127.0.0.2 is a second source for the coordinator). */
static int bind_udp_at(const char *ip, uint16_t port, struct addr *out)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	socklen_t sl = sizeof(sin);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	inet_pton(AF_INET, ip, &sin.sin_addr);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &sl) < 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	if (out)
		addr_from_sockaddr(out, (struct sockaddr *)&sin, sl);
	return fd;
}

static int bind_udp(uint16_t port, struct addr *out)
{
	return bind_udp_at("127.0.0.1", port, out);
}

/* A free port P whose P + 1 is free too (config refuses port 0). */
static uint16_t pick_ports(void)
{
	for (int i = 0; i < 100; i++) {
		struct addr a;
		int fd = bind_udp(0, &a), fd2;
		uint16_t p = addr_port(&a);

		if (fd < 0)
			continue;
		fd2 = p < UINT16_MAX ? bind_udp((uint16_t)(p + 1), NULL) : -1;
		close(fd);
		if (fd2 >= 0) {
			close(fd2);
			return p;
		}
	}
	return 0;
}

static int cmp_key(const void *a, const void *b)
{
	return memcmp(a, b, KEY_LEN);
}

/* keys: NULL = any key may register; else only those n. */
static int harness_start(struct harness *h, const uint8_t (*keys)[KEY_LEN], size_t n)
{
	int r;

	memset(h, 0, sizeof(*h));
	uv_loop_init(&h->loop);
	uv_timer_init(&h->loop, &h->watchdog);
	h->watchdog.data = h;
	uv_timer_start(&h->watchdog, harness_on_watchdog, WATCHDOG_MS, 0);

	h->port = pick_ports();
	make_addr(&h->listen, "127.0.0.1", h->port);
	h->conf.role = CONFIG_ROLE_COORDINATOR;
	h->conf.log_level = LOG_LEVEL_INFO;
	h->conf.coord.listen = &h->listen;
	h->conf.coord.n_listen = 1;
	key_generate_private(h->conf.coord.private_key);
	key_public_from_private(h->conf.coord.public_key, h->conf.coord.private_key);
	h->conf.coord.max_nodes = 1000;
	if (keys) {
		memcpy(h->auth, keys, n * KEY_LEN);
		qsort(h->auth, n, KEY_LEN, cmp_key);
		h->conf.coord.authorized_keys_file = (char *)"test-authorized-keys";
		h->conf.coord.authorized_keys = h->auth;
		h->conf.coord.n_authorized_keys = n;
	}
	r = coord_start(&h->loop, &h->conf, &h->coord);
	CHECK_EQ_INT(r, 0);
	return r;
}

/* Stops the coordinator; every handle closes and the loop closes cleanly. */
static void harness_stop(struct harness *h)
{
	if (h->coord)
		coord_stop(h->coord);
	h->coord = NULL;
	uv_close((uv_handle_t *)&h->watchdog, NULL);
	CHECK_EQ_INT(uv_run(&h->loop, UV_RUN_DEFAULT), 0);
	CHECK_EQ_INT(uv_loop_close(&h->loop), 0);
}

/* Runs the loop until fd is readable (true) or ms pass (false). */
static bool pump_until_readable(struct harness *h, int fd, int ms)
{
	uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000u;

	while (!h->timed_out) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		uv_run(&h->loop, UV_RUN_NOWAIT);
		if (fd >= 0 && poll(&p, 1, 1) > 0)
			return true;
		if (fd < 0)
			usleep(1000);
		if (uv_hrtime() >= end)
			return false;
	}
	return false;
}

static void pump(struct harness *h, int ms)
{
	pump_until_readable(h, -1, ms);
}

static void send_to_port(int fd, uint16_t port, const uint8_t *buf, size_t len)
{
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(port) };

	to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (sendto(fd, buf, len, 0, (struct sockaddr *)&to, sizeof(to)) < 0)
		printf("# sendto: %s\n", strerror(errno));
}

static double counter(struct harness *h, const char *name)
{
	cJSON *st = coord_status(h->coord);
	cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(st, "counters"), name);
	double d = cJSON_IsNumber(v) ? v->valuedouble : -1;

	cJSON_Delete(st);
	return d;
}

static double status_num(struct harness *h, const char *name)
{
	cJSON *st = coord_status(h->coord);
	cJSON *v = cJSON_GetObjectItem(st, name);
	double d = cJSON_IsNumber(v) ? v->valuedouble : -1;

	cJSON_Delete(st);
	return d;
}

static void client_init_at(struct client *cl, const char *ip)
{
	memset(cl, 0, sizeof(*cl));
	cl->fd = bind_udp_at(ip, 0, &cl->addr);
	cl->wg_fd = bind_udp_at(ip, 0, &cl->wg_addr);
	key_generate_private(cl->priv);
	key_public_from_private(cl->pub, cl->priv);
	cl->ts_s = (int64_t)time(NULL);
}

static void client_init(struct client *cl)
{
	client_init_at(cl, "127.0.0.1");
}

static void client_close(struct client *cl)
{
	close(cl->fd);
	close(cl->wg_fd);
}

/* HS_INIT into out; hs keeps the initiator state for reading HS_RESP. */
static size_t client_build_hs_init(struct harness *h, struct client *cl, struct session_hs *hs,
				   uint8_t *out, size_t cap)
{
	uint8_t ts[PROTO_TIMESTAMP_LEN], e_priv[32], noise[PROTO_HS_INIT_NOISE_LEN];
	struct proto_outer o = { .type = PROTO_HS_INIT };
	ssize_t r;

	session_hs_init(hs, true, (const uint8_t *)SESSION_PROLOGUE, strlen(SESSION_PROLOGUE),
			cl->priv, h->conf.coord.public_key);
	session_tai64n(ts, ++cl->ts_s, 0);
	randombytes_buf(e_priv, sizeof(e_priv));
	r = session_hs_write_msg1(hs, e_priv, ts, sizeof(ts), noise, sizeof(noise));
	CHECK_EQ_INT(r, PROTO_HS_INIT_NOISE_LEN);
	cl->my_idx = randombytes_random() | 1;
	o.sender_idx = cl->my_idx;
	o.body = noise;
	o.body_len = sizeof(noise);
	r = proto_encode_outer(out, cap, &o);
	CHECK(r > 0);
	return r > 0 ? (size_t)r : 0;
}

/* Waits for a datagram on fd; returns its length or -ETIMEDOUT. */
static ssize_t recv_dgram(struct harness *h, int fd, uint8_t *buf, size_t cap, int ms,
			  struct addr *from)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	ssize_t n;

	if (!pump_until_readable(h, fd, ms))
		return -ETIMEDOUT;
	n = recvfrom(fd, buf, cap, 0, (struct sockaddr *)&ss, &sl);
	if (n < 0)
		return -errno;
	if (from)
		addr_from_sockaddr(from, (struct sockaddr *)&ss, sl);
	return n;
}

/* Reads HS_RESP for the HS_INIT just sent and installs the session. 0 or -errno. */
static int client_finish_hs(struct harness *h, struct client *cl, struct session_hs *hs, int ms)
{
	uint8_t buf[PROTO_MAX_DATAGRAM];
	uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000u;
	struct session_keys keys;
	struct proto_outer o;

	while (uv_hrtime() < end) {
		ssize_t n = recv_dgram(h, cl->fd, buf, sizeof(buf),
				       (int)((end - uv_hrtime()) / 1000000u) + 1, NULL);

		if (n < 0)
			return (int)n;
		if (proto_decode_outer(buf, (size_t)n, &o) < 0 || o.type != PROTO_HS_RESP)
			continue;
		if (o.receiver_idx != cl->my_idx)
			continue;
		if (session_hs_read_msg2(hs, o.body, o.body_len, NULL, 0) != 0)
			return -EBADMSG;
		session_hs_split(hs, &keys);
		memcpy(cl->send_key, keys.send, SESSION_KEY_LEN);
		memcpy(cl->recv_key, keys.recv, SESSION_KEY_LEN);
		session_probe_key(&keys, cl->probe_key);
		cl->coord_idx = o.sender_idx;
		cl->send_ctr = 0;
		memset(&cl->replay, 0, sizeof(cl->replay));
		cl->queued = 0;
		return 0;
	}
	return -ETIMEDOUT;
}

static int client_handshake(struct harness *h, struct client *cl)
{
	struct session_hs hs;
	uint8_t buf[256];
	size_t len = client_build_hs_init(h, cl, &hs, buf, sizeof(buf));

	send_to_port(cl->fd, h->port, buf, len);
	return client_finish_hs(h, cl, &hs, 1000);
}

/* DATA{m} from fd to port; the datagram is left in out (for replays). */
static size_t client_send(struct harness *h, struct client *cl, int fd, uint16_t port,
			  const struct proto_msg *m, uint8_t *out, size_t cap)
{
	uint8_t pt[PROTO_MAX_DATAGRAM];
	size_t pre = proto_outer_prefix_len(PROTO_DATA);
	ssize_t pl = proto_encode_msg(pt, sizeof(pt) - 32, m), len;
	struct proto_outer o = { .type = PROTO_DATA };

	CHECK(pl > 0);
	if (pl <= 0)
		return 0;
	o.receiver_idx = cl->coord_idx;
	o.counter = cl->send_ctr;
	o.body = pt;
	o.body_len = (size_t)pl + PROTO_TAG_LEN;
	len = proto_encode_outer(out, cap, &o);
	CHECK(len > 0);
	if (len <= 0)
		return 0;
	session_encrypt(cl->send_key, cl->send_ctr++, out, pre, pt, (size_t)pl, out + pre);
	send_to_port(fd, port, out, (size_t)len);
	return (size_t)len;
}

static void client_msg(struct harness *h, struct client *cl, const struct proto_msg *m)
{
	uint8_t out[PROTO_MAX_DATAGRAM];

	client_send(h, cl, cl->fd, h->port, m, out, sizeof(out));
}

/* Receives what arrives on the session socket for up to ms, queueing inner messages. */
static void client_poll(struct harness *h, struct client *cl, int ms)
{
	uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000u;
	uint8_t buf[PROTO_MAX_DATAGRAM], pt[PROTO_MAX_DATAGRAM];
	struct proto_outer o;

	do {
		uint64_t now = uv_hrtime();
		int left = now < end ? (int)((end - now) / 1000000u) : 0;
		ssize_t n = recv_dgram(h, cl->fd, buf, sizeof(buf), left, NULL);
		ssize_t pl;

		if (n < 0)
			return;
		if (proto_decode_outer(buf, (size_t)n, &o) < 0)
			continue;
		if (o.type == PROTO_POISON) {
			cl->poisons++;
			continue;
		}
		if (o.type == PROTO_SESSION_UNKNOWN) {
			cl->unknowns++;
			continue;
		}
		if (o.type != PROTO_DATA || o.receiver_idx != cl->my_idx ||
		    !session_replay_check(&cl->replay, o.counter))
			continue;
		pl = session_decrypt(cl->recv_key, o.counter, buf,
				     proto_outer_prefix_len(PROTO_DATA), o.body, o.body_len, pt);
		if (pl < 0)
			continue;
		session_replay_commit(&cl->replay, o.counter);
		if (cl->queued < QUEUE_LEN &&
		    proto_decode_msg(pt, (size_t)pl, &cl->queue[cl->queued]) == 0)
			cl->queued++;
		/* Return as soon as something arrived; callers loop. */
		return;
	} while (!h->timed_out && uv_hrtime() < end);
}

/* Takes the first queued message of type, waiting up to ms. 0 or -ETIMEDOUT. */
static int client_take(struct harness *h, struct client *cl, uint8_t type, int ms,
		       struct proto_msg *out)
{
	uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000u;

	for (;;) {
		for (size_t i = 0; i < cl->queued; i++) {
			if (cl->queue[i].type != type)
				continue;
			if (out)
				*out = cl->queue[i];
			memmove(&cl->queue[i], &cl->queue[i + 1],
				(cl->queued - i - 1) * sizeof(cl->queue[0]));
			cl->queued--;
			return 0;
		}
		uint64_t now = uv_hrtime();

		if (now >= end || h->timed_out)
			return -ETIMEDOUT;
		client_poll(h, cl, (int)((end - now) / 1000000u) + 1);
	}
}

static void client_probe(struct harness *h, struct client *cl, int fd, uint16_t port, uint64_t seq,
			 bool forge)
{
	uint8_t mac[PROTO_PROBE_MAC_LEN] = { 0 }, out[64];
	struct proto_outer o = { .type = PROTO_PROBE, .body = mac, .body_len = sizeof(mac) };
	size_t pre = proto_outer_prefix_len(PROTO_PROBE);
	ssize_t len;

	o.receiver_idx = cl->coord_idx;
	o.counter = seq;
	len = proto_encode_outer(out, sizeof(out), &o);
	CHECK(len > 0);
	if (len <= 0)
		return;
	session_probe_mac(cl->probe_key, out, pre, out + pre);
	if (forge)
		out[pre] ^= 1;
	send_to_port(fd, port, out, (size_t)len);
}

/* Answers FILTER_GO: echo_fd is where the echo leaves (the session socket for a
 * clean router; another socket models a router that kept the poison); -1: no echo. */
static int client_filter(struct harness *h, struct client *cl, int echo_fd, uint8_t *result)
{
	struct proto_msg go, echo = { .type = PROTO_MSG_FILTER_ECHO }, res;
	uint8_t out[PROTO_MAX_DATAGRAM];

	if (client_take(h, cl, PROTO_MSG_FILTER_GO, 1000, &go) < 0)
		return -ETIMEDOUT;
	if (echo_fd >= 0) {
		echo.filter_echo.nonce = go.filter_go.nonce;
		client_send(h, cl, echo_fd, (uint16_t)(h->port + 1), &echo, out, sizeof(out));
	}
	if (client_take(h, cl, PROTO_MSG_FILTER_RESULT, 3000, &res) < 0)
		return -ETIMEDOUT;
	*result = res.filter_result.filter;
	return 0;
}

static int client_register(struct harness *h, struct client *cl, const uint64_t *peers,
			   size_t n_peers, const struct addr *lan, size_t n_lan, uint8_t flags)
{
	static uint32_t seq = 100;
	struct proto_msg m = { .type = PROTO_MSG_REGISTER }, ack;

	m.reg.seq = ++seq;
	m.reg.wg_port = addr_port(&cl->wg_addr);
	m.reg.flags = flags;
	m.reg.n_peers = (uint16_t)n_peers;
	if (n_peers)
		memcpy(m.reg.peers, peers, n_peers * sizeof(*peers));
	m.reg.n_lan = (uint8_t)n_lan;
	for (size_t i = 0; i < n_lan; i++)
		m.reg.lan[i] = lan[i];
	client_msg(h, cl, &m);
	if (client_take(h, cl, PROTO_MSG_REGISTER_ACK, 1000, &ack) < 0)
		return -ETIMEDOUT;
	CHECK_EQ_INT(ack.reg_ack.seq, m.reg.seq);
	CHECK_EQ_INT(ack.reg_ack.refresh_s, 20);
	return 0;
}

/* Handshake, filter test, REGISTER, probe on P: the node is ready after this. */
static int client_make_ready(struct harness *h, struct client *cl, const uint64_t *peers,
			     size_t n_peers, int echo_fd, uint8_t want_filter)
{
	struct proto_msg map;
	uint8_t f = 0xff;

	if (client_handshake(h, cl) < 0 || client_filter(h, cl, echo_fd, &f) < 0)
		return -ETIMEDOUT;
	CHECK_EQ_INT(f, want_filter);
	if (client_register(h, cl, peers, n_peers, NULL, 0, 0) < 0)
		return -ETIMEDOUT;
	client_probe(h, cl, cl->wg_fd, h->port, 1, false);
	if (client_take(h, cl, PROTO_MSG_MAPPING, 1000, &map) < 0)
		return -ETIMEDOUT;
	CHECK(addr_equal(&map.mapping.observed, &cl->wg_addr));
	return 0;
}

static void test_coord_handshake_and_register(void)
{
	struct harness h;
	struct client cl;
	uint8_t out[PROTO_MAX_DATAGRAM];
	struct proto_msg m = { .type = PROTO_MSG_REGISTER };
	size_t len;

	if (harness_start(&h, NULL, 0) < 0)
		goto out;
	client_init(&cl);
	CHECK_EQ_INT(client_handshake(&h, &cl), 0);
	CHECK(cl.coord_idx != 0);
	CHECK_EQ_INT(status_num(&h, "nodes"), 1);
	CHECK_EQ_INT(status_num(&h, "sessions"), 1);
	CHECK_EQ_INT(counter(&h, "hs_accepted"), 1);

	m.reg.seq = 42;
	m.reg.wg_port = 51820;
	len = client_send(&h, &cl, cl.fd, h.port, &m, out, sizeof(out));
	struct proto_msg ack;

	CHECK_EQ_INT(client_take(&h, &cl, PROTO_MSG_REGISTER_ACK, 1000, &ack), 0);
	CHECK_EQ_INT(ack.reg_ack.seq, 42);
	CHECK_EQ_INT(ack.reg_ack.refresh_s, 20);
	/* The filter test ran on the new session address: POISON, then FILTER_GO. */
	CHECK_EQ_INT(client_take(&h, &cl, PROTO_MSG_FILTER_GO, 1000, NULL), 0);
	CHECK(cl.poisons >= 1);

	/* The same DATA again is a replay: no second ack. */
	send_to_port(cl.fd, h.port, out, len);
	CHECK(client_take(&h, &cl, PROTO_MSG_REGISTER_ACK, 300, NULL) < 0);
	CHECK_EQ_INT(counter(&h, "data_replayed"), 1);
	/* A flipped ciphertext bit does not authenticate. */
	out[len - 1] ^= 0x80;
	out[12] ^= 0x01; /* a fresh counter, so the replay check passes */
	send_to_port(cl.fd, h.port, out, len);
	pump(&h, 100);
	CHECK_EQ_INT(counter(&h, "data_bad_auth"), 1);

	/* A re-key keeps the entry and swaps the keys. */
	uint32_t old_idx = cl.coord_idx;

	CHECK_EQ_INT(client_handshake(&h, &cl), 0);
	CHECK(cl.coord_idx != old_idx);
	CHECK_EQ_INT(status_num(&h, "nodes"), 1);
	CHECK_EQ_INT(status_num(&h, "sessions"), 1);
	m.reg.seq = 43;
	client_msg(&h, &cl, &m);
	CHECK_EQ_INT(client_take(&h, &cl, PROTO_MSG_REGISTER_ACK, 1000, &ack), 0);
	CHECK_EQ_INT(ack.reg_ack.seq, 43);
	client_close(&cl);
out:
	harness_stop(&h);
}

static void test_coord_probe_mapping(void)
{
	struct harness h;
	struct client cl;
	struct proto_msg map;
	int other;
	struct addr other_addr;

	if (harness_start(&h, NULL, 0) < 0)
		goto out;
	client_init(&cl);
	other = bind_udp(0, &other_addr);
	CHECK_EQ_INT(client_handshake(&h, &cl), 0);

	client_probe(&h, &cl, cl.wg_fd, h.port, 1, false);
	CHECK_EQ_INT(client_take(&h, &cl, PROTO_MSG_MAPPING, 1000, &map), 0);
	CHECK_EQ_INT(map.mapping.port_index, 0);
	CHECK_EQ_INT(map.mapping.probe_seq, 1);
	CHECK(addr_equal(&map.mapping.observed, &cl.wg_addr));

	/* P + 1 keeps its own sequence. */
	client_probe(&h, &cl, cl.wg_fd, (uint16_t)(h.port + 1), 1, false);
	CHECK_EQ_INT(client_take(&h, &cl, PROTO_MSG_MAPPING, 1000, &map), 0);
	CHECK_EQ_INT(map.mapping.port_index, 1);
	CHECK(addr_equal(&map.mapping.observed, &cl.wg_addr));

	/* A replayed sequence number, and a forged MAC from elsewhere: no mapping. */
	client_probe(&h, &cl, other, h.port, 1, false);
	client_probe(&h, &cl, other, h.port, 2, true);
	CHECK(client_take(&h, &cl, PROTO_MSG_MAPPING, 300, NULL) < 0);
	CHECK_EQ_INT(counter(&h, "probe_replayed"), 1);
	CHECK_EQ_INT(counter(&h, "probe_bad_mac"), 1);
	CHECK_EQ_INT(counter(&h, "probe_accepted"), 2);

	/* The next genuine probe still reports the real mapping. */
	client_probe(&h, &cl, cl.wg_fd, h.port, 2, false);
	CHECK_EQ_INT(client_take(&h, &cl, PROTO_MSG_MAPPING, 1000, &map), 0);
	CHECK_EQ_INT(map.mapping.probe_seq, 2);
	CHECK(addr_equal(&map.mapping.observed, &cl.wg_addr));

	/* A probe for an index nobody has is answered with SESSION_UNKNOWN to its source. */
	uint8_t buf[64];
	struct proto_outer o;

	cl.coord_idx ^= 0x5a5a5a5a;
	client_probe(&h, &cl, other, h.port, 3, false);
	ssize_t n = recv_dgram(&h, other, buf, sizeof(buf), 1000, NULL);

	CHECK(n > 0 && proto_decode_outer(buf, (size_t)n, &o) == 0);
	CHECK_EQ_INT(o.type, PROTO_SESSION_UNKNOWN);
	CHECK_EQ_INT(o.receiver_idx, cl.coord_idx);
	close(other);
	client_close(&cl);
out:
	harness_stop(&h);
}

static void test_coord_filter_results(void)
{
	struct harness h;
	struct client safe, poisoned, silent;
	uint8_t f = 0xff;
	uint64_t t0;

	if (harness_start(&h, NULL, 0) < 0)
		goto out;
	client_init(&safe);
	client_init(&poisoned);
	client_init(&silent);

	CHECK_EQ_INT(client_handshake(&h, &safe), 0);
	CHECK_EQ_INT(client_filter(&h, &safe, safe.fd, &f), 0);
	CHECK_EQ_INT(f, PROTO_FILTER_SAFE);
	CHECK(safe.poisons == 1);

	/* The echo leaves from another port: what a router that kept the poison does. */
	CHECK_EQ_INT(client_handshake(&h, &poisoned), 0);
	CHECK_EQ_INT(client_filter(&h, &poisoned, poisoned.wg_fd, &f), 0);
	CHECK_EQ_INT(f, PROTO_FILTER_POISONABLE);

	/* No echo: UNKNOWN after 2 s. */
	CHECK_EQ_INT(client_handshake(&h, &silent), 0);
	t0 = uv_hrtime();
	CHECK_EQ_INT(client_filter(&h, &silent, -1, &f), 0);
	CHECK_EQ_INT(f, PROTO_FILTER_UNKNOWN);
	CHECK((uv_hrtime() - t0) / 1000000u >= 1900);
	CHECK_EQ_INT(counter(&h, "filter_timeouts"), 1);

	/* A re-key from the same address runs no new test; a stray echo is refused. */
	struct proto_msg echo = { .type = PROTO_MSG_FILTER_ECHO };
	uint8_t out[PROTO_MAX_DATAGRAM];

	CHECK_EQ_INT(client_handshake(&h, &safe), 0);
	CHECK(client_take(&h, &safe, PROTO_MSG_FILTER_GO, 300, NULL) < 0);
	client_send(&h, &safe, safe.fd, (uint16_t)(h.port + 1), &echo, out, sizeof(out));
	CHECK(client_take(&h, &safe, PROTO_MSG_FILTER_RESULT, 300, NULL) < 0);
	CHECK_EQ_INT(counter(&h, "echo_unexpected"), 1);
	client_close(&safe);
	client_close(&poisoned);
	client_close(&silent);
out:
	harness_stop(&h);
}

static void test_coord_filter_judge_endpoint_dependent_is_unknown(void)
{
	struct registry r;
	struct reg_node *n = NULL;
	uint8_t key[KEY_LEN] = { 7 };
	struct reg_addr session, other, m0, m1;
	struct addr a;

	CHECK_EQ_INT(registry_init(&r, 8), 0);
	CHECK_EQ_INT(registry_add(&r, key, 0, &n), 0);
	if (!n)
		goto out;
	make_addr(&a, "198.51.100.10", 40000);
	registry_addr_pack(&session, &a);
	make_addr(&a, "198.51.100.10", 40001);
	registry_addr_pack(&other, &a);
	make_addr(&a, "198.51.100.10", 51820);
	registry_addr_pack(&m0, &a);
	make_addr(&a, "198.51.100.10", 61999);
	registry_addr_pack(&m1, &a);
	n->filter_addr = session;

	/* Mappings not known yet: the echo alone decides. */
	CHECK_EQ_INT(filter_judge(n, &session), PROTO_FILTER_SAFE);
	CHECK_EQ_INT(filter_judge(n, &other), PROTO_FILTER_POISONABLE);
	/* Only one mapping known: still the echo. */
	n->mapping[0] = m0;
	CHECK_EQ_INT(filter_judge(n, &other), PROTO_FILTER_POISONABLE);
	/* Endpoint-independent mapping: a new port means the router kept the POISON. */
	n->mapping[1] = m0;
	CHECK_EQ_INT(filter_judge(n, &other), PROTO_FILTER_POISONABLE);
	CHECK_EQ_INT(filter_judge(n, &session), PROTO_FILTER_SAFE);
	/* Endpoint-dependent mapping: the new port says nothing about the filter. */
	n->mapping[1] = m1;
	CHECK_EQ_INT(filter_judge(n, &other), PROTO_FILTER_UNKNOWN);
	/* An echo from the tested address is still a clear SAFE. */
	CHECK_EQ_INT(filter_judge(n, &session), PROTO_FILTER_SAFE);
out:
	registry_destroy(&r);
}

/* A node whose probes to P and P + 1 leave from different ports (a symmetric router) and
 * whose echo leaves from a new port too: UNKNOWN, not POISONABLE. The same echo from a node
 * with one mapping for both probes is POISONABLE. */
static void test_coord_filter_unknown_when_mapping_endpoint_dependent(void)
{
	struct harness h;
	struct client sym, cone;
	struct proto_msg map;
	struct addr sym_p1_addr;
	int sym_p1, echo_fd;
	uint8_t f = 0xff;

	if (harness_start(&h, NULL, 0) < 0)
		goto out;
	client_init(&sym);
	client_init(&cone);
	sym_p1 = bind_udp(0, &sym_p1_addr);
	echo_fd = bind_udp(0, NULL);

	CHECK_EQ_INT(client_handshake(&h, &sym), 0);
	client_probe(&h, &sym, sym.wg_fd, h.port, 1, false);
	client_probe(&h, &sym, sym_p1, (uint16_t)(h.port + 1), 1, false);
	CHECK_EQ_INT(client_take(&h, &sym, PROTO_MSG_MAPPING, 1000, &map), 0);
	CHECK_EQ_INT(client_take(&h, &sym, PROTO_MSG_MAPPING, 1000, &map), 0);
	CHECK_EQ_INT(client_filter(&h, &sym, echo_fd, &f), 0);
	CHECK_EQ_INT(f, PROTO_FILTER_UNKNOWN);
	/* Decided at once from the echo, not by the 2 s timeout. */
	CHECK_EQ_INT(counter(&h, "filter_timeouts"), 0);

	CHECK_EQ_INT(client_handshake(&h, &cone), 0);
	client_probe(&h, &cone, cone.wg_fd, h.port, 1, false);
	client_probe(&h, &cone, cone.wg_fd, (uint16_t)(h.port + 1), 1, false);
	CHECK_EQ_INT(client_take(&h, &cone, PROTO_MSG_MAPPING, 1000, &map), 0);
	CHECK_EQ_INT(client_take(&h, &cone, PROTO_MSG_MAPPING, 1000, &map), 0);
	CHECK_EQ_INT(client_filter(&h, &cone, echo_fd, &f), 0);
	CHECK_EQ_INT(f, PROTO_FILTER_POISONABLE);
	close(sym_p1);
	close(echo_fd);
	client_close(&sym);
	client_close(&cone);
out:
	harness_stop(&h);
}

static void test_coord_pair_punch_order_and_ack(void)
{
	struct harness h;
	struct client a, b;
	struct proto_msg pa, pb;
	struct addr lan;
	int other;

	if (harness_start(&h, NULL, 0) < 0)
		goto out;
	client_init(&a);
	client_init(&b);
	other = bind_udp(0, NULL);
	uint64_t fa = key_fingerprint(a.pub), fb = key_fingerprint(b.pub);

	CHECK_EQ_INT(client_make_ready(&h, &a, &fb, 1, a.fd, PROTO_FILTER_SAFE), 0);
	make_addr(&lan, "198.18.0.10", addr_port(&a.wg_addr));
	CHECK_EQ_INT(client_register(&h, &a, &fb, 1, &lan, 1, 0), 0);
	/* A forged probe for A from elsewhere must not move A's mapping. */
	client_probe(&h, &a, other, h.port, 2, true);
	pump(&h, 50);
	CHECK(client_take(&h, &a, PROTO_MSG_PUNCH, 100, NULL) < 0); /* B not there yet */

	/* B becomes ready last (its probe is the event): both safe, so B goes first. */
	CHECK_EQ_INT(client_make_ready(&h, &b, &fa, 1, b.fd, PROTO_FILTER_SAFE), 0);
	CHECK_EQ_INT(client_take(&h, &b, PROTO_MSG_PUNCH, 1000, &pb), 0);
	CHECK_EQ_INT(pb.punch.flags, PROTO_PUNCH_F_ACK);
	CHECK(!memcmp(pb.punch.peer_key, a.pub, KEY_LEN));
	CHECK(addr_equal(&pb.punch.peer_public, &a.wg_addr));
	CHECK_EQ_INT(pb.punch.n_lan, 1);
	CHECK(addr_equal(&pb.punch.lan[0], &lan));
	/* A hears nothing until B acks. */
	CHECK(client_take(&h, &a, PROTO_MSG_PUNCH, 250, NULL) < 0);
	CHECK_EQ_INT(status_num(&h, "pending_punches"), 1);

	struct proto_msg ack = { .type = PROTO_MSG_PUNCH_ACK };

	ack.punch_ack.attempt = pb.punch.attempt;
	client_msg(&h, &b, &ack);
	CHECK_EQ_INT(client_take(&h, &a, PROTO_MSG_PUNCH, 200, &pa), 0);
	CHECK_EQ_INT(pa.punch.flags, 0);
	CHECK_EQ_INT(pa.punch.attempt, pb.punch.attempt);
	CHECK(!memcmp(pa.punch.peer_key, b.pub, KEY_LEN));
	CHECK(addr_equal(&pa.punch.peer_public, &b.wg_addr));
	CHECK_EQ_INT(pa.punch.n_lan, 0);
	CHECK_EQ_INT(status_num(&h, "pending_punches"), 0);
	CHECK_EQ_INT(counter(&h, "punch_released"), 1);

	/* RESYNC from A punches the pair again, A first now (A caused it). */
	CHECK_EQ_INT(client_register(&h, &a, &fb, 1, &lan, 1, PROTO_REG_F_RESYNC), 0);
	CHECK_EQ_INT(client_take(&h, &a, PROTO_MSG_PUNCH, 1000, &pa), 0);
	CHECK_EQ_INT(pa.punch.flags, PROTO_PUNCH_F_ACK);
	/* An unchanged REGISTER without RESYNC punches nothing. */
	CHECK_EQ_INT(client_register(&h, &b, &fa, 1, NULL, 0, 0), 0);
	CHECK(client_take(&h, &a, PROTO_MSG_PUNCH, 200, NULL) < 0);
	CHECK_EQ_INT(counter(&h, "punch_pairs"), 2);
	close(other);
	client_close(&a);
	client_close(&b);
out:
	harness_stop(&h);
}

static void test_coord_pair_poisonable_first_and_timeout(void)
{
	struct harness h;
	struct client a, b;
	struct proto_msg pa, pb;
	uint64_t t0;

	if (harness_start(&h, NULL, 0) < 0)
		goto out;
	client_init(&a);
	client_init(&b);
	uint64_t fa = key_fingerprint(a.pub), fb = key_fingerprint(b.pub);

	CHECK_EQ_INT(client_make_ready(&h, &a, &fb, 1, a.wg_fd, PROTO_FILTER_POISONABLE), 0);
	CHECK_EQ_INT(client_make_ready(&h, &b, &fa, 1, b.fd, PROTO_FILTER_SAFE), 0);
	/* B caused it, but A is the only poisonable side: A first. */
	CHECK_EQ_INT(client_take(&h, &a, PROTO_MSG_PUNCH, 1000, &pa), 0);
	t0 = uv_hrtime();
	CHECK_EQ_INT(pa.punch.flags, PROTO_PUNCH_F_ACK);
	CHECK(!memcmp(pa.punch.peer_key, b.pub, KEY_LEN));
	/* B's own ack of A's attempt does not release it. */
	struct proto_msg ack = { .type = PROTO_MSG_PUNCH_ACK };

	ack.punch_ack.attempt = pa.punch.attempt;
	client_msg(&h, &b, &ack);
	CHECK(client_take(&h, &b, PROTO_MSG_PUNCH, 300, NULL) < 0);
	CHECK_EQ_INT(counter(&h, "ack_unknown"), 1);
	/* A never acks: B is told after 500 ms. */
	CHECK_EQ_INT(client_take(&h, &b, PROTO_MSG_PUNCH, 1000, &pb), 0);
	uint64_t waited_ms = (uv_hrtime() - t0) / 1000000u;

	printf("# second PUNCH after %llu ms without an ack\n", (unsigned long long)waited_ms);
	CHECK(waited_ms >= 450 && waited_ms < 1000);
	CHECK_EQ_INT(pb.punch.flags, 0);
	CHECK(!memcmp(pb.punch.peer_key, a.pub, KEY_LEN));
	CHECK(addr_equal(&pb.punch.peer_public, &a.wg_addr));
	/* A's late ack is for nothing now. */
	client_msg(&h, &a, &ack);
	pump(&h, 50);
	CHECK_EQ_INT(counter(&h, "ack_unknown"), 2);
	client_close(&a);
	client_close(&b);
out:
	harness_stop(&h);
}

static void test_coord_no_consent_no_punch(void)
{
	struct harness h;
	struct client a, b, c;

	if (harness_start(&h, NULL, 0) < 0)
		goto out;
	client_init(&a);
	client_init(&b);
	client_init(&c);
	uint64_t fa = key_fingerprint(a.pub), fb = key_fingerprint(b.pub);
	uint64_t fc = key_fingerprint(c.pub);
	uint64_t b_lists[2] = { fc, 12345 };

	/* A lists B, but B lists only C and an unknown key; C lists nobody. */
	CHECK_EQ_INT(client_make_ready(&h, &a, &fb, 1, a.fd, PROTO_FILTER_SAFE), 0);
	CHECK_EQ_INT(client_make_ready(&h, &c, NULL, 0, c.fd, PROTO_FILTER_SAFE), 0);
	CHECK_EQ_INT(client_make_ready(&h, &b, b_lists, 2, b.fd, PROTO_FILTER_SAFE), 0);
	CHECK_EQ_INT(client_register(&h, &a, &fb, 1, NULL, 0, PROTO_REG_F_RESYNC), 0);
	CHECK(client_take(&h, &a, PROTO_MSG_PUNCH, 300, NULL) < 0);
	CHECK(client_take(&h, &b, PROTO_MSG_PUNCH, 300, NULL) < 0);
	CHECK(client_take(&h, &c, PROTO_MSG_PUNCH, 300, NULL) < 0);
	CHECK_EQ_INT(counter(&h, "punch_pairs"), 0);
	/* Once B lists A too, they are a pair. */
	uint64_t both[2] = { fc, fa };

	CHECK_EQ_INT(client_register(&h, &b, both, 2, NULL, 0, 0), 0);
	CHECK_EQ_INT(client_take(&h, &b, PROTO_MSG_PUNCH, 1000, NULL), 0);
	CHECK_EQ_INT(counter(&h, "punch_pairs"), 1);
	client_close(&a);
	client_close(&b);
	client_close(&c);
out:
	harness_stop(&h);
}

static void test_coord_unauthorized_key_refused(void)
{
	struct harness h;
	struct client good, bad;
	uint8_t keys[2][KEY_LEN];

	client_init(&good);
	client_init(&bad);
	memcpy(keys[0], good.pub, KEY_LEN);
	memset(keys[1], 0x77, KEY_LEN);
	if (harness_start(&h, (const uint8_t(*)[KEY_LEN])keys, 2) < 0)
		goto out;
	CHECK_EQ_INT(client_handshake(&h, &bad), -ETIMEDOUT);
	CHECK_EQ_INT(counter(&h, "hs_unauthorized"), 1);
	CHECK_EQ_INT(status_num(&h, "nodes"), 0);
	CHECK_EQ_INT(client_handshake(&h, &good), 0);
	CHECK_EQ_INT(status_num(&h, "nodes"), 1);
out:
	client_close(&good);
	client_close(&bad);
	harness_stop(&h);
}

static void test_coord_replayed_hs_init_refused(void)
{
	struct harness h;
	struct client cl;
	struct session_hs hs, hs2;
	uint8_t buf[256];
	size_t len;

	if (harness_start(&h, NULL, 0) < 0)
		goto out;
	client_init(&cl);
	len = client_build_hs_init(&h, &cl, &hs, buf, sizeof(buf));
	hs2 = hs;
	send_to_port(cl.fd, h.port, buf, len);
	CHECK_EQ_INT(client_finish_hs(&h, &cl, &hs, 1000), 0);
	uint32_t idx = cl.coord_idx;

	/* The same message again, even from another address: refused. */
	send_to_port(cl.wg_fd, h.port, buf, len);
	send_to_port(cl.fd, h.port, buf, len);
	CHECK_EQ_INT(client_finish_hs(&h, &cl, &hs2, 300), -ETIMEDOUT);
	CHECK_EQ_INT(counter(&h, "hs_replayed"), 2);
	CHECK_EQ_INT(counter(&h, "hs_accepted"), 1);
	/* The session it would have replaced still works. */
	cl.coord_idx = idx;
	CHECK_EQ_INT(client_register(&h, &cl, NULL, 0, NULL, 0, 0), 0);
	/* A handshake on P + 1 is not served. */
	len = client_build_hs_init(&h, &cl, &hs, buf, sizeof(buf));
	send_to_port(cl.fd, (uint16_t)(h.port + 1), buf, len);
	CHECK_EQ_INT(client_finish_hs(&h, &cl, &hs, 300), -ETIMEDOUT);
	CHECK_EQ_INT(counter(&h, "rx_unexpected"), 1);
	client_close(&cl);
out:
	harness_stop(&h);
}

static void test_coord_session_unknown(void)
{
	struct harness h;
	struct client cl;
	struct proto_msg m = { .type = PROTO_MSG_PUNCH_ACK };
	uint8_t out[PROTO_MAX_DATAGRAM], buf[64];
	struct proto_outer o;

	if (harness_start(&h, NULL, 0) < 0)
		goto out;
	client_init(&cl);
	cl.coord_idx = 0xdeadbeef; /* no session at all */
	client_send(&h, &cl, cl.fd, h.port, &m, out, sizeof(out));
	ssize_t n = recv_dgram(&h, cl.fd, buf, sizeof(buf), 1000, NULL);

	CHECK(n > 0 && proto_decode_outer(buf, (size_t)n, &o) == 0);
	CHECK_EQ_INT(o.type, PROTO_SESSION_UNKNOWN);
	CHECK_EQ_INT(o.receiver_idx, 0xdeadbeef);
	CHECK_EQ_INT(counter(&h, "session_unknown_sent"), 1);
	client_close(&cl);
out:
	harness_stop(&h);
}

/* A few thousand random datagrams, some shaped like ours: the coordinator
 * stays up, counts them, and a handshake still works afterwards. */
static void test_coord_survives_random_datagrams(void)
{
	struct harness h;
	struct client cl, noise;
	uint8_t buf[1400];

	if (harness_start(&h, NULL, 0) < 0)
		goto out;
	client_init(&cl);
	/* Another source: its 1000 handshakes hit its own rate limit, not cl's. */
	client_init_at(&noise, "127.0.0.2");
	CHECK_EQ_INT(client_handshake(&h, &cl), 0);
	for (int i = 0; i < 4000 && !h.timed_out; i++) {
		size_t len = randombytes_uniform(sizeof(buf)) + 1;

		randombytes_buf(buf, len);
		switch (i % 4) {
		case 0: /* anything */
			break;
		case 1: /* a valid header, any type and body */
			buf[0] = PROTO_VERSION;
			buf[1] = (uint8_t)randombytes_uniform(8);
			buf[2] = buf[3] = 0;
			break;
		case 2: /* DATA or PROBE for the live session, with garbage after the prefix */
			buf[0] = PROTO_VERSION;
			buf[1] = i % 8 == 2 ? PROTO_DATA : PROTO_PROBE;
			buf[2] = buf[3] = 0;
			buf[4] = (uint8_t)(cl.coord_idx >> 24);
			buf[5] = (uint8_t)(cl.coord_idx >> 16);
			buf[6] = (uint8_t)(cl.coord_idx >> 8);
			buf[7] = (uint8_t)cl.coord_idx;
			if (buf[1] == PROTO_PROBE)
				len = 32;
			else if (len < 32)
				len = 32;
			break;
		case 3: /* a well-formed HS_INIT that does not authenticate */
			buf[0] = PROTO_VERSION;
			buf[1] = PROTO_HS_INIT;
			buf[2] = buf[3] = 0;
			len = 8 + PROTO_HS_INIT_NOISE_LEN;
			break;
		}
		/* Handshakes go to P (P + 1 does not serve them); the rest to both. */
		send_to_port(noise.fd, (uint16_t)(h.port + (i % 4 == 3 ? 0 : (i >> 2) & 1)), buf,
			     len);
		if (i % 64 == 0)
			pump(&h, 2);
	}
	pump(&h, 300);
	printf("# received %.0f, malformed %.0f, bad handshakes %.0f, bad DATA %.0f, bad probe MAC "
	       "%.0f\n",
	       counter(&h, "rx_datagrams"), counter(&h, "rx_malformed"), counter(&h, "hs_bad"),
	       counter(&h, "data_bad_auth"), counter(&h, "probe_bad_mac"));
	CHECK(counter(&h, "rx_datagrams") > 2000);
	CHECK(counter(&h, "rx_malformed") > 500);
	CHECK(counter(&h, "hs_bad") > 100);
	CHECK(counter(&h, "hs_rate_limited") > 0);
	CHECK(counter(&h, "data_bad_auth") + counter(&h, "probe_bad_mac") > 100);
	CHECK_EQ_INT(counter(&h, "hs_accepted"), 1);
	CHECK_EQ_INT(status_num(&h, "nodes"), 1);

	/* Still serving: the old session and a new handshake both work. */
	CHECK_EQ_INT(client_register(&h, &cl, NULL, 0, NULL, 0, 0), 0);
	struct client late;

	client_init(&late);
	CHECK_EQ_INT(client_handshake(&h, &late), 0);
	CHECK_EQ_INT(client_register(&h, &late, NULL, 0, NULL, 0, 0), 0);
	client_close(&late);
	client_close(&cl);
	client_close(&noise);
out:
	harness_stop(&h);
}

/* ================= handshake flood protection ================= */

static const uint8_t hs_test_key[HS_HASH_KEY_LEN] = { 1, 2,  3,  4,  5,  6,  7,  8,
						      9, 10, 11, 12, 13, 14, 15, 16 };

/* Up to n HS_INITs from a at now_ms; how many were allowed. */
static int hs_allow_n(struct hs_limit *l, const struct addr *a, uint64_t now_ms, int n,
		      enum hs_verdict *last)
{
	int allowed = 0;

	for (int i = 0; i < n; i++) {
		*last = hs_limit_check(l, a, now_ms);
		allowed += *last == HS_ALLOW;
	}
	return allowed;
}

static void test_coord_hs_limit_source_burst_and_refill(void)
{
	static struct hs_limit l; /* 64 KiB: not on the stack */
	const uint64_t t0 = 123456, interval_ms = 1000 / HS_SOURCE_PER_S;
	enum hs_verdict v;
	struct addr a, a2, b;

	hs_limit_init(&l, hs_test_key);
	make_addr(&a, "203.0.113.7", 51900);
	make_addr(&a2, "203.0.113.7", 40000); /* the same host (or NAT), another port */
	make_addr(&b, "198.51.100.7", 51900);

	CHECK_EQ_INT(hs_allow_n(&l, &a, t0, HS_SOURCE_BURST + 10, &v), HS_SOURCE_BURST);
	CHECK_EQ_INT(v, HS_SOURCE_LIMITED);
	CHECK_EQ_INT(hs_limit_check(&l, &a2, t0), HS_SOURCE_LIMITED);
	/* Another source has its own bucket. */
	CHECK_EQ_INT(hs_allow_n(&l, &b, t0, 5, &v), 5);
	/* Refused ones were not charged: one interval later, exactly one more. */
	CHECK_EQ_INT(hs_limit_check(&l, &a, t0 + interval_ms - 1), HS_SOURCE_LIMITED);
	CHECK_EQ_INT(hs_allow_n(&l, &a2, t0 + interval_ms, 3, &v), 1);
	/* Ten intervals on, ten more. */
	CHECK_EQ_INT(hs_allow_n(&l, &a, t0 + 11 * interval_ms, 20, &v), 10);
	/* Idle for a whole burst's worth of time: the full burst again, no more. */
	CHECK_EQ_INT(hs_allow_n(&l, &a, t0 + 11 * interval_ms + HS_SOURCE_BURST * interval_ms,
				HS_SOURCE_BURST + 10, &v),
		     HS_SOURCE_BURST);
	CHECK_EQ_INT(hs_limit_check(&l, &b, t0 + 100000), HS_ALLOW);
}

static void test_coord_hs_limit_ipv6_by_prefix(void)
{
	static struct hs_limit l;
	struct addr a, same64, other64;
	enum hs_verdict v;

	hs_limit_init(&l, hs_test_key);
	memset(&a, 0, sizeof(a));
	a.in6.sin6_family = AF_INET6;
	a.in6.sin6_port = htons(51820);
	same64 = other64 = a;
	inet_pton(AF_INET6, "2001:db8:1:2::1", &a.in6.sin6_addr);
	inet_pton(AF_INET6, "2001:db8:1:2:ffff::99", &same64.in6.sin6_addr);
	inet_pton(AF_INET6, "2001:db8:1:3::1", &other64.in6.sin6_addr);

	CHECK_EQ_INT(hs_allow_n(&l, &a, 1000, HS_SOURCE_BURST, &v), HS_SOURCE_BURST);
	/* A host can pick any address in its /64: the prefix is the source. */
	CHECK_EQ_INT(hs_limit_check(&l, &same64, 1000), HS_SOURCE_LIMITED);
	CHECK_EQ_INT(hs_limit_check(&l, &other64, 1000), HS_ALLOW);
}

static void test_coord_hs_limit_global_budget(void)
{
	static struct hs_limit l;
	const uint64_t t0 = 5000;
	int allowed = 0, over = 0;
	struct addr a;
	char ip[32];

	hs_limit_init(&l, hs_test_key);
	/* A flood from many sources (spoofed ones, say): each sends a few at once. */
	for (int i = 0; i < 2 * HS_GLOBAL_PER_S; i++) {
		snprintf(ip, sizeof(ip), "198.18.%d.%d", i / 250, 1 + i % 250);
		make_addr(&a, ip, 1024);
		for (int k = 0; k < 2; k++) {
			enum hs_verdict v = hs_limit_check(&l, &a, t0);

			allowed += v == HS_ALLOW;
			over += v == HS_OVER_BUDGET;
		}
	}
	CHECK_EQ_INT(allowed, HS_GLOBAL_PER_S);
	CHECK_EQ_INT(over, 3 * HS_GLOBAL_PER_S);
	/* Half a second later, half the budget has come back. */
	allowed = 0;
	for (int i = 0; i < HS_GLOBAL_PER_S; i++) {
		struct addr b;

		snprintf(ip, sizeof(ip), "203.0.113.%d", 1 + i % 250);
		make_addr(&b, ip, 1024);
		allowed += hs_limit_check(&l, &b, t0 + 500) == HS_ALLOW;
	}
	CHECK_EQ_INT(allowed, HS_GLOBAL_PER_S / 2);
	/* The last source was refused for the budget, not charged: its full burst now. */
	enum hs_verdict v;

	CHECK_EQ_INT(hs_allow_n(&l, &a, t0 + 1000, HS_SOURCE_BURST + 1, &v), HS_SOURCE_BURST);
	CHECK_EQ_INT(v, HS_SOURCE_LIMITED);
}

/*
 * hosts nodes behind one public IP start at once (within 100 ms) and retry as
 * a node does (1 s, doubling, +-25 % jitter). Returns when the last got through (ms).
 */
static uint64_t hs_limit_nat_restart(int hosts)
{
	static struct hs_limit l;
	uint64_t next[1024], backoff[1024], last_ok = 0, rnd = 0x9e3779b97f4a7c15u;
	bool done[1024] = { false };
	int left = hosts;
	struct addr nat;

	hs_limit_init(&l, hs_test_key);
	make_addr(&nat, "203.0.113.50", 0);
	for (int i = 0; i < hosts; i++) {
		rnd = rnd * 6364136223846793005u + 1442695040888963407u;
		next[i] = 10000 + (rnd >> 33) % 100;
		backoff[i] = 1000;
	}
	for (uint64_t now = 10000; left && now < 70000; now++) {
		for (int i = 0; i < hosts; i++) {
			if (done[i] || next[i] != now)
				continue;
			addr_set_port(&nat, (uint16_t)(20000 + i));
			if (hs_limit_check(&l, &nat, now) == HS_ALLOW) {
				done[i] = true;
				left--;
				last_ok = now - 10000;
				continue;
			}
			rnd = rnd * 6364136223846793005u + 1442695040888963407u;
			next[i] = now + backoff[i] * 3 / 4 + (rnd >> 33) % (backoff[i] / 2 + 1);
			if (backoff[i] < 30000)
				backoff[i] *= 2;
		}
	}
	return left ? UINT64_MAX : last_ok;
}

static void test_coord_hs_limit_many_hosts_behind_one_nat(void)
{
	uint64_t t64 = hs_limit_nat_restart(64), t256 = hs_limit_nat_restart(256),
		 t1024 = hs_limit_nat_restart(1024);

	printf("# all through after: 64 hosts %llu ms, 256 hosts %llu ms, 1024 hosts %llu ms\n",
	       (unsigned long long)t64, (unsigned long long)t256, (unsigned long long)t1024);
	CHECK(t64 < 200);   /* the burst covers them: no retry at all */
	CHECK(t256 < 5000); /* a few retries */
	CHECK(t1024 < 60000);
}

/* HS_INITs seen by the coordinator, whatever became of them. */
static double hs_seen(struct harness *h)
{
	return counter(h, "hs_accepted") + counter(h, "hs_bad") + counter(h, "hs_rate_limited") +
	       counter(h, "hs_over_budget");
}

/* n well-formed HS_INITs with a random Noise part (each costs the coordinator an X25519
 * if it gets that far), in chunks the socket buffer holds; waits until each is counted. */
static void hs_flood(struct harness *h, int fd, int n)
{
	uint8_t buf[8 + PROTO_HS_INIT_NOISE_LEN];

	for (int sent = 0; sent < n && !h->timed_out;) {
		int chunk = n - sent < 32 ? n - sent : 32;
		double want = hs_seen(h) + chunk;

		for (int i = 0; i < chunk; i++) {
			randombytes_buf(buf, sizeof(buf));
			buf[0] = PROTO_VERSION;
			buf[1] = PROTO_HS_INIT;
			buf[2] = buf[3] = 0;
			send_to_port(fd, h->port, buf, sizeof(buf));
		}
		sent += chunk;
		for (int ms = 0; ms < 2000 && hs_seen(h) < want; ms++)
			pump(h, 1);
	}
}

static void test_coord_hs_rate_limit_per_source(void)
{
	const int extra = 64;
	struct harness h;
	struct client a, b;
	struct session_hs hs;
	uint8_t buf[256];
	uint64_t t0, elapsed_ms;
	double refill, bad, limited;
	bool refused = false;

	if (harness_start(&h, NULL, 0) < 0)
		goto out;
	client_init(&a);                 /* 127.0.0.1, like the flood */
	client_init_at(&b, "127.0.0.2"); /* another source */

	/* From 127.0.0.1, another port than a's session socket: the IP is what counts. */
	t0 = uv_hrtime();
	hs_flood(&h, a.wg_fd, HS_SOURCE_BURST + extra);
	elapsed_ms = (uv_hrtime() - t0) / 1000000u;
	refill = (double)(elapsed_ms * HS_SOURCE_PER_S / 1000 + 1);
	bad = counter(&h, "hs_bad");
	limited = counter(&h, "hs_rate_limited");
	printf("# %d in %llu ms: %.0f read (and refused), %.0f dropped unread\n",
	       HS_SOURCE_BURST + extra, (unsigned long long)elapsed_ms, bad, limited);
	CHECK_EQ_INT(bad + limited, HS_SOURCE_BURST + extra);
	CHECK(bad >= HS_SOURCE_BURST);
	CHECK(bad <= HS_SOURCE_BURST + refill);
	CHECK(limited > 0);
	CHECK_EQ_INT(counter(&h, "hs_over_budget"), 0);

	/* A real node at that IP is refused while the bucket is empty. A token may come
	 * back (one each 1000 / HS_SOURCE_PER_S ms) just before it: a few tries. */
	for (int i = 0; i < 3 && !refused; i++) {
		size_t len;

		hs_flood(&h, a.wg_fd, 8);
		len = client_build_hs_init(&h, &a, &hs, buf, sizeof(buf));
		send_to_port(a.fd, h.port, buf, len);
		refused = client_finish_hs(&h, &a, &hs, 200) == -ETIMEDOUT;
	}
	CHECK(refused);
	CHECK(counter(&h, "hs_rate_limited") > limited);

	/* Another source still gets through at once. */
	CHECK_EQ_INT(client_handshake(&h, &b), 0);
	/* After the refill, the first source works again. */
	pump(&h, 3 * 1000 / HS_SOURCE_PER_S);
	CHECK_EQ_INT(client_handshake(&h, &a), 0);
	CHECK_EQ_INT(client_register(&h, &a, NULL, 0, NULL, 0, 0), 0);
	CHECK_EQ_INT(counter(&h, "hs_accepted"), (refused ? 2 : 3));
	CHECK_EQ_INT(status_num(&h, "nodes"), 2);
	client_close(&a);
	client_close(&b);
out:
	harness_stop(&h);
}

static void test_coord_reload_and_status(void)
{
	struct harness h;
	struct client a, b;
	struct config next;
	struct addr other_listen;
	uint8_t keys[1][KEY_LEN];
	cJSON *st;
	char b64[KEY_B64_LEN + 1];

	if (harness_start(&h, NULL, 0) < 0)
		goto out;
	client_init(&a);
	client_init(&b);
	CHECK_EQ_INT(client_handshake(&h, &a), 0);
	CHECK_EQ_INT(client_handshake(&h, &b), 0);
	CHECK_EQ_INT(status_num(&h, "nodes"), 2);

	st = coord_status(h.coord);
	key_to_base64(b64, h.conf.coord.public_key);
	CHECK(cJSON_IsString(cJSON_GetObjectItem(st, "role")) &&
	      !strcmp(cJSON_GetObjectItem(st, "role")->valuestring, "coordinator"));
	CHECK(cJSON_IsString(cJSON_GetObjectItem(st, "public_key")) &&
	      !strcmp(cJSON_GetObjectItem(st, "public_key")->valuestring, b64));
	cJSON *l0 = cJSON_GetArrayItem(cJSON_GetObjectItem(st, "listen"), 0);
	char want[ADDR_STRLEN];

	snprintf(want, sizeof(want), "127.0.0.1:%u", h.port + 1u);
	CHECK(cJSON_IsString(cJSON_GetObjectItem(l0, "probe_address")) &&
	      !strcmp(cJSON_GetObjectItem(l0, "probe_address")->valuestring, want));
	CHECK(cJSON_IsNumber(
		cJSON_GetObjectItem(cJSON_GetObjectItem(st, "counters"), "rx_malformed")));
	cJSON_Delete(st);

	/* Only A stays authorised: B is dropped at once, and its session is gone. */
	next = h.conf;
	memcpy(keys[0], a.pub, KEY_LEN);
	next.coord.authorized_keys_file = (char *)"reloaded";
	next.coord.authorized_keys = keys;
	next.coord.n_authorized_keys = 1;
	CHECK_EQ_INT(coord_reload(h.coord, &next), 0);
	CHECK_EQ_INT(status_num(&h, "nodes"), 1);
	CHECK_EQ_INT(counter(&h, "nodes_dropped"), 1);
	struct proto_msg m = { .type = PROTO_MSG_PUNCH_ACK };

	client_msg(&h, &b, &m);
	for (int i = 0; i < 50 && !b.unknowns; i++)
		client_poll(&h, &b, 20);
	CHECK_EQ_INT(b.unknowns, 1);
	CHECK_EQ_INT(client_register(&h, &a, NULL, 0, NULL, 0, 0), 0);

	/* Other listen addresses or another key need a restart. */
	struct config moved = next;

	make_addr(&other_listen, "127.0.0.1", (uint16_t)(h.port ^ 1));
	moved.coord.listen = &other_listen;
	CHECK_EQ_INT(coord_reload(h.coord, &moved), -EAGAIN);
	moved = next;
	moved.coord.private_key[5] ^= 1;
	CHECK_EQ_INT(coord_reload(h.coord, &moved), -EAGAIN);
	client_close(&a);
	client_close(&b);
	/* The reloaded config must outlive the coordinator: stop before it goes. */
	harness_stop(&h);
	return;
out:
	harness_stop(&h);
}

static void test_coord_bind_failure_cleans_up(void)
{
	uv_loop_t loop;
	struct config conf;
	struct addr listen;
	struct coord *c = (struct coord *)&conf; /* must be reset to NULL */
	uint16_t p = pick_ports();
	int blocker = bind_udp((uint16_t)(p + 1), NULL); /* P + 1 taken */

	memset(&conf, 0, sizeof(conf));
	make_addr(&listen, "127.0.0.1", p);
	conf.role = CONFIG_ROLE_COORDINATOR;
	conf.coord.listen = &listen;
	conf.coord.n_listen = 1;
	key_generate_private(conf.coord.private_key);
	key_public_from_private(conf.coord.public_key, conf.coord.private_key);
	uv_loop_init(&loop);
	CHECK(blocker >= 0);
	CHECK_EQ_INT(coord_start(&loop, &conf, &c), UV_EADDRINUSE);
	CHECK(c == NULL);
	CHECK_EQ_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
	CHECK_EQ_INT(uv_loop_close(&loop), 0);
	close(blocker);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	log_set_level(getenv("WGPUNCH_TEST_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARN);
	TAP_RUN(test_coord_pair_order_all_filters);
	TAP_RUN(test_coord_pair_ack_releases_second);
	TAP_RUN(test_coord_pair_timeout_releases_after_500ms);
	TAP_RUN(test_coord_pair_full_table_sends_both);
	TAP_RUN(test_coord_handshake_and_register);
	TAP_RUN(test_coord_probe_mapping);
	TAP_RUN(test_coord_filter_results);
	TAP_RUN(test_coord_filter_judge_endpoint_dependent_is_unknown);
	TAP_RUN(test_coord_filter_unknown_when_mapping_endpoint_dependent);
	TAP_RUN(test_coord_pair_punch_order_and_ack);
	TAP_RUN(test_coord_pair_poisonable_first_and_timeout);
	TAP_RUN(test_coord_no_consent_no_punch);
	TAP_RUN(test_coord_unauthorized_key_refused);
	TAP_RUN(test_coord_replayed_hs_init_refused);
	TAP_RUN(test_coord_session_unknown);
	TAP_RUN(test_coord_survives_random_datagrams);
	TAP_RUN(test_coord_hs_limit_source_burst_and_refill);
	TAP_RUN(test_coord_hs_limit_ipv6_by_prefix);
	TAP_RUN(test_coord_hs_limit_global_budget);
	TAP_RUN(test_coord_hs_limit_many_hosts_behind_one_nat);
	TAP_RUN(test_coord_hs_rate_limit_per_source);
	TAP_RUN(test_coord_reload_and_status);
	TAP_RUN(test_coord_bind_failure_cleans_up);
	return tap_done();
}

/* SPDX-License-Identifier: MIT */
/*
 * loadgen - plays many nodes against a real coordinator on loopback, speaking
 * docs/PROTOCOL.md through the project's own lib modules (session, cookie, proto, key), and
 * measures what the coordinator does. tests/bench/coord-bench.sh runs every mode and prints
 * the table; `loadgen --selftest` runs the same node code against an in-process responder
 * made of the lib modules (a meson test, no timing involved).
 *
 *	loadgen --mode M --coord "CMD" --port P --pub KEY [options]
 *
 * The coordinator is started by loadgen from CMD (through /bin/sh, e.g. `taskset -c 0
 * wgpunch -c FILE`), dies with it (PR_SET_PDEATHSIG) and is stopped by PID at the end, so a
 * restart (mode restart) is loadgen's own doing. Nodes are logical: node i has its own key
 * pair (derived from a seed, so runs are reproducible), the 8 other nodes of its group of 9
 * as mutual peers, and a UDP socket: socket i % S, bound to its own address 127.a.b.c (Linux
 * routes all of 127/8 to lo), so per-source limits see S hosts. With S = nodes every node
 * has its own source address:port, as in a fleet.
 *
 * Modes (each bounded by --time seconds and by its counts):
 *   sessions  new sessions a second: Noise message 1 is built for every node before the
 *             window (the node's own X25519 would otherwise be the bound, on the other core);
 *             in the window HS_INITs are signed (mac1, mac2), sent with --window outstanding,
 *             cookie replies followed; every HS_RESP is checked after the window.
 *   register  steady-state REGISTER (8 peers) round trips a second, --window outstanding
 *   probe     PROBE -> MAPPING round trips a second, --window outstanding
 *   latency   REGISTER at --rate a second, paced: p50, p99, lost
 *   memory    coordinator RSS before and with --nodes registered: bytes a node
 *   restart   --nodes registered, the coordinator restarted: seconds until all are again
 * Every mode prints `result NAME VALUE` lines and a human summary on stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "wgpunch/addr.h"
#include "wgpunch/cookie.h"
#include "wgpunch/key.h"
#include "wgpunch/proto.h"
#include "wgpunch/session.h"

#define GROUP 9 /* a node and its 8 mutual peers */
#define TIMEOUT_NS 1000000000ull
#define RX_BATCH 32
/* Handshakes and REGISTERs outstanding while a fleet is brought up. The coordinator's
 * receive buffer (32 MiB asked, issue 10) holds far more; 256 keeps a lost datagram's 1 s
 * timeout from holding up a large part of the window, so bringing a fleet up measures the
 * coordinator's handshake rate rather than this window. */
#define SETUP_WINDOW 256
/* A registered node refreshes this often (the coordinator's refresh_s is 20 s and it forgets
 * a node after 60 s), as a real one does, so long runs keep their fleet. */
#define REFRESH_NS (15 * 1000000000ull)
#define REFRESH_SCAN 256 /* nodes looked at per loop turn */

enum node_state { N_IDLE = 0, N_HS_SENT, N_HS_DONE_LATER, N_UP };
enum req_kind { R_NONE = 0, R_REGISTER, R_PROBE };

/* A handshake in flight: its initiator state, the HS_INIT, and (mode sessions) the HS_RESP
 * kept to be checked after the window. Allocated only while it exists. */
struct pending {
	struct session_hs hs;
	uint8_t init[PROTO_HS_INIT_LEN];
	uint8_t resp[PROTO_HS_RESP_NOISE_LEN];
	uint32_t resp_idx;
	bool built;
};

struct node {
	uint8_t priv[KEY_LEN], pub[KEY_LEN];
	uint64_t fp;
	struct pending *p;
	uint8_t send_key[SESSION_KEY_LEN], recv_key[SESSION_KEY_LEN], probe_key[SESSION_KEY_LEN];
	struct session_replay replay;
	uint64_t send_ctr, probe_seq;
	uint64_t ts_ns; /* last TAI64N used, as Unix ns: strictly increasing */
	uint64_t sent_ns;
	uint64_t reg_ns; /* when the last REGISTER_ACK came */
	uint32_t my_idx, coord_idx, sock, seq;
	uint8_t mac1[COOKIE_MAC_LEN];
	uint8_t state, req;
	uint8_t misses; /* REGISTERs unanswered in a row */
	bool have_mac1, registered;
};

struct lsock {
	int fd;
	struct addr addr;
	uint8_t cookie[COOKIE_LEN];
	uint64_t cookie_rx_ms;
	bool have_cookie;
};

struct stats {
	uint64_t hs_sent, hs_ok, hs_bad, hs_retry, cookies, cookie_bad;
	uint64_t reg_acks, mappings, lost, punches, filter_go, filter_result, addr_checks;
	uint64_t unknowns, poisons, data_bad, stray;
};

struct lg;
typedef void (*send_fn)(struct lg *g, uint32_t sock, uint16_t port, const uint8_t *buf, size_t len);

struct lg {
	struct node *nodes;
	uint32_t n_nodes;
	struct lsock *socks;
	uint32_t n_socks;
	uint8_t coord_pub[KEY_LEN];
	struct cookie_keys ck;
	uint16_t port;
	uint32_t idx_salt;
	send_fn send;
	void *send_arg;
	int ep;
	struct stats st;
	bool defer_resp;    /* mode sessions: keep HS_RESP, check after the window */
	bool auto_register; /* a session up sends REGISTER at once */
	uint32_t inflight;  /* handshakes and requests outstanding */
	uint32_t *lat_us;   /* latency samples */
	size_t n_lat, cap_lat;
	uint64_t base_ns; /* subtracted from the monotonic clock for now_ms */
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ms(const struct lg *g)
{
	return (mono_ns() - g->base_ns) / 1000000u + 1;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

/* ---- nodes and their keys ---- */

static void node_keys(struct node *n, const uint8_t seed[32], uint32_t i)
{
	uint8_t in[36];

	memcpy(in, seed, 32);
	in[32] = (uint8_t)(i >> 24);
	in[33] = (uint8_t)(i >> 16);
	in[34] = (uint8_t)(i >> 8);
	in[35] = (uint8_t)i;
	crypto_generichash(n->priv, KEY_LEN, in, sizeof(in), NULL, 0);
	/* Clamped as `wg genkey` does. */
	n->priv[0] &= 248;
	n->priv[31] = (n->priv[31] & 127) | 64;
	if (key_public_from_private(n->pub, n->priv) < 0) {
		fprintf(stderr, "loadgen: degenerate key for node %u\n", i);
		exit(1);
	}
	n->fp = key_fingerprint(n->pub);
}

static void lg_init(struct lg *g, uint32_t n_nodes, uint32_t n_socks, const uint8_t pub[KEY_LEN],
		    uint16_t port, const uint8_t seed[32])
{
	memset(g, 0, sizeof(*g));
	g->n_nodes = n_nodes;
	g->n_socks = n_socks;
	g->nodes = calloc(n_nodes, sizeof(*g->nodes));
	g->socks = calloc(n_socks, sizeof(*g->socks));
	if (!g->nodes || !g->socks)
		die("calloc");
	memcpy(g->coord_pub, pub, KEY_LEN);
	cookie_keys_init(&g->ck, pub);
	g->port = port;
	g->idx_salt = randombytes_random() & 0xff000000u;
	g->base_ns = mono_ns();
	g->ep = -1;
	for (uint32_t i = 0; i < n_nodes; i++) {
		struct node *n = &g->nodes[i];

		node_keys(n, seed, i);
		n->sock = i % n_socks;
		/* Our index for the session: the node number under a salt, never 0. */
		n->my_idx = (i + 1) ^ g->idx_salt;
	}
}

static void lg_free(struct lg *g)
{
	for (uint32_t i = 0; i < g->n_nodes; i++)
		free(g->nodes[i].p);
	for (uint32_t s = 0; g->ep >= 0 && s < g->n_socks; s++)
		close(g->socks[s].fd);
	if (g->ep >= 0)
		close(g->ep);
	free(g->nodes);
	free(g->socks);
	free(g->lat_us);
	sodium_memzero(g, sizeof(*g));
}

static struct node *node_by_idx(struct lg *g, uint32_t idx)
{
	uint32_t i = (idx ^ g->idx_salt) - 1;

	if (i >= g->n_nodes || g->nodes[i].my_idx != idx)
		return NULL;
	return &g->nodes[i];
}

/* SESSION_UNKNOWN names the coordinator's index: the nodes on that socket are i = s mod S. */
static struct node *node_by_coord_idx(struct lg *g, uint32_t sock, uint32_t idx)
{
	for (uint32_t i = sock; i < g->n_nodes; i += g->n_socks)
		if (g->nodes[i].state == N_UP && g->nodes[i].coord_idx == idx)
			return &g->nodes[i];
	return NULL;
}

/* The peers of node i: the other members of its group of GROUP (the last group may be short). */
static uint16_t node_peers(const struct lg *g, uint32_t i, uint64_t *fps)
{
	uint32_t lo = i / GROUP * GROUP, hi = lo + GROUP < g->n_nodes ? lo + GROUP : g->n_nodes;
	uint16_t k = 0;

	for (uint32_t j = lo; j < hi; j++)
		if (j != i)
			fps[k++] = g->nodes[j].fp;
	return k;
}

static void lat_add(struct lg *g, uint64_t ns)
{
	if (g->n_lat == g->cap_lat) {
		size_t cap = g->cap_lat ? g->cap_lat * 2 : 65536;
		uint32_t *p = realloc(g->lat_us, cap * sizeof(*p));

		if (!p)
			die("realloc");
		g->lat_us = p;
		g->cap_lat = cap;
	}
	g->lat_us[g->n_lat++] = (uint32_t)(ns / 1000u);
}

/* ---- what a node sends ---- */

/* A new HS_INIT (new ephemeral, new timestamp) into n->p->init, not yet signed. */
static void hs_build(struct lg *g, struct node *n)
{
	uint8_t ts[PROTO_TIMESTAMP_LEN], e_priv[32], noise[PROTO_HS_INIT_NOISE_LEN];
	struct proto_outer o = { .type = PROTO_HS_INIT };
	uint64_t w = wall_ns();
	ssize_t r;

	if (!n->p) {
		n->p = malloc(sizeof(*n->p));
		if (!n->p)
			die("malloc");
	}
	if (w <= n->ts_ns)
		w = n->ts_ns + 1;
	n->ts_ns = w;
	session_tai64n(ts, (int64_t)(w / 1000000000u), (uint32_t)(w % 1000000000u));
	session_hs_init(&n->p->hs, true, (const uint8_t *)SESSION_PROLOGUE,
			strlen(SESSION_PROLOGUE), n->priv, g->coord_pub);
	randombytes_buf(e_priv, sizeof(e_priv));
	r = session_hs_write_msg1(&n->p->hs, e_priv, ts, sizeof(ts), noise, sizeof(noise));
	sodium_memzero(e_priv, sizeof(e_priv));
	o.sender_idx = n->my_idx;
	o.body = noise;
	o.body_len = sizeof(noise);
	if (r != PROTO_HS_INIT_NOISE_LEN ||
	    proto_encode_outer(n->p->init, sizeof(n->p->init), &o) != PROTO_HS_INIT_LEN) {
		fprintf(stderr, "loadgen: cannot build HS_INIT\n");
		exit(1);
	}
	n->p->built = true;
}

/* Signs (mac1, and mac2 under the socket's cookie when it has a fresh one) and sends. */
static void hs_send(struct lg *g, struct node *n)
{
	struct lsock *s = &g->socks[n->sock];
	struct cookie_initiator ci;
	uint64_t ms = now_ms(g);

	cookie_initiator_init(&ci, g->coord_pub);
	if (s->have_cookie) {
		memcpy(ci.cookie, s->cookie, COOKIE_LEN);
		ci.cookie_rx_ms = s->cookie_rx_ms;
		ci.have_cookie = true;
	}
	cookie_initiator_sign(&ci, n->p->init, sizeof(n->p->init), ms);
	memcpy(n->mac1, ci.last_mac1, COOKIE_MAC_LEN);
	n->have_mac1 = true;
	n->p->built = false; /* a sent HS_INIT is never sent again */
	n->state = N_HS_SENT;
	n->sent_ns = mono_ns();
	g->st.hs_sent++;
	g->send(g, n->sock, g->port, n->p->init, sizeof(n->p->init));
}

/* A handshake from an idle node: one more outstanding until HS_RESP or the timeout. */
static void hs_start(struct lg *g, struct node *n)
{
	if (!n->p || !n->p->built)
		hs_build(g, n);
	hs_send(g, n);
	g->inflight++;
}

/* DATA{m} from the node's socket to port. */
static void send_msg(struct lg *g, struct node *n, uint16_t port, const struct proto_msg *m)
{
	size_t pre = proto_outer_prefix_len(PROTO_DATA);
	uint8_t pt[PROTO_MAX_DATAGRAM], out[PROTO_MAX_DATAGRAM];
	struct proto_outer o = { .type = PROTO_DATA };
	ssize_t pl = proto_encode_msg(pt, sizeof(pt) - pre - PROTO_TAG_LEN, m), len;

	if (pl < 0) {
		fprintf(stderr, "loadgen: cannot encode message %u\n", m->type);
		exit(1);
	}
	o.receiver_idx = n->coord_idx;
	o.counter = n->send_ctr;
	o.body = pt;
	o.body_len = (size_t)pl + PROTO_TAG_LEN;
	len = proto_encode_outer(out, sizeof(out), &o);
	if (len < 0)
		exit(1);
	session_encrypt(n->send_key, n->send_ctr++, out, pre, pt, (size_t)pl, out + pre);
	g->send(g, n->sock, port, out, (size_t)len);
}

static void send_register(struct lg *g, struct node *n)
{
	struct proto_msg m = { .type = PROTO_MSG_REGISTER };

	m.reg.seq = ++n->seq;
	m.reg.wg_port = addr_port(&g->socks[n->sock].addr);
	m.reg.n_pages = 1;
	m.reg.n_peers = node_peers(g, (uint32_t)(n - g->nodes), m.reg.peers);
	n->req = R_REGISTER;
	n->sent_ns = mono_ns();
	g->inflight++;
	send_msg(g, n, g->port, &m);
}

/* A PROBE toward P, from the node's socket (which stands for its WireGuard port too). */
static void send_probe(struct lg *g, struct node *n)
{
	uint8_t mac[PROTO_PROBE_MAC_LEN] = { 0 }, out[64];
	struct proto_outer o = { .type = PROTO_PROBE, .body = mac, .body_len = sizeof(mac) };
	size_t pre = proto_outer_prefix_len(PROTO_PROBE);
	ssize_t len;

	o.receiver_idx = n->coord_idx;
	o.counter = ++n->probe_seq;
	o.dst_port = g->port;
	o.purpose = PROTO_PROBE_MAP_P;
	len = proto_encode_outer(out, sizeof(out), &o);
	if (len < 0)
		exit(1);
	session_probe_mac(n->probe_key, out, pre, out + pre);
	n->req = R_PROBE;
	n->sent_ns = mono_ns();
	g->inflight++;
	g->send(g, n->sock, g->port, out, (size_t)len);
}

/* ---- what a node receives ---- */

static void session_up(struct lg *g, struct node *n, const struct proto_outer *resp_or_null,
		       const uint8_t *noise, uint32_t coord_idx)
{
	struct session_keys keys;

	(void)resp_or_null;
	if (session_hs_read_msg2(&n->p->hs, noise, PROTO_HS_RESP_NOISE_LEN, NULL, 0) != 0) {
		g->st.hs_bad++;
		n->state = N_IDLE;
		return;
	}
	session_hs_split(&n->p->hs, &keys);
	memcpy(n->send_key, keys.send, SESSION_KEY_LEN);
	memcpy(n->recv_key, keys.recv, SESSION_KEY_LEN);
	session_probe_key(&keys, n->probe_key);
	sodium_memzero(&keys, sizeof(keys));
	free(n->p);
	n->p = NULL;
	n->coord_idx = coord_idx;
	n->send_ctr = 0;
	n->probe_seq = 0;
	memset(&n->replay, 0, sizeof(n->replay));
	n->state = N_UP;
	n->registered = false;
	n->misses = 0;
	if (n->req != R_NONE) { /* a REGISTER of the old session: it will not be answered */
		n->req = R_NONE;
		g->inflight--;
	}
	g->st.hs_ok++;
	if (g->auto_register)
		send_register(g, n);
}

static void on_hs_resp(struct lg *g, const struct proto_outer *o)
{
	struct node *n = node_by_idx(g, o->receiver_idx);

	if (!n || n->state != N_HS_SENT || !n->p) {
		g->st.stray++;
		return;
	}
	n->have_mac1 = false;
	g->inflight--;
	if (g->defer_resp) {
		memcpy(n->p->resp, o->body, PROTO_HS_RESP_NOISE_LEN);
		n->p->resp_idx = o->sender_idx;
		n->state = N_HS_DONE_LATER;
		g->st.hs_ok++;
		return;
	}
	session_up(g, n, o, o->body, o->sender_idx);
}

static void on_cookie_reply(struct lg *g, const struct proto_outer *o)
{
	struct node *n = node_by_idx(g, o->receiver_idx);
	struct cookie_initiator ci;
	uint64_t ms = now_ms(g);
	struct lsock *s;

	if (!n || n->state != N_HS_SENT || !n->have_mac1) {
		g->st.stray++;
		return;
	}
	cookie_initiator_init(&ci, g->coord_pub);
	memcpy(ci.last_mac1, n->mac1, COOKIE_MAC_LEN);
	ci.have_mac1 = true;
	if (cookie_initiator_open_reply(&ci, o->body, o->body_len, ms) < 0) {
		g->st.cookie_bad++;
		return;
	}
	n->have_mac1 = false;
	s = &g->socks[n->sock];
	memcpy(s->cookie, ci.cookie, COOKIE_LEN);
	s->cookie_rx_ms = ci.cookie_rx_ms;
	s->have_cookie = true;
	g->st.cookies++;
	/* A new HS_INIT at once, now with mac2 (PROTOCOL.md section 5.2). */
	hs_build(g, n);
	hs_send(g, n);
}

static void req_done(struct lg *g, struct node *n)
{
	lat_add(g, mono_ns() - n->sent_ns);
	n->req = R_NONE;
	g->inflight--;
}

static void on_msg(struct lg *g, struct node *n, const struct proto_msg *m)
{
	struct proto_msg r;

	switch (m->type) {
	case PROTO_MSG_REGISTER_ACK:
		if (n->req == R_REGISTER && m->reg_ack.seq == n->seq) {
			n->registered = true;
			n->misses = 0;
			n->reg_ns = mono_ns();
			g->st.reg_acks++;
			req_done(g, n);
		}
		break;
	case PROTO_MSG_MAPPING:
		if (n->req == R_PROBE && m->mapping.probe_seq == n->probe_seq) {
			g->st.mappings++;
			req_done(g, n);
		}
		break;
	case PROTO_MSG_FILTER_GO:
		/* Echo from the session socket to P + 1: this node's "router" kept no poison. */
		g->st.filter_go++;
		r.type = PROTO_MSG_FILTER_ECHO;
		r.filter_echo.nonce = m->filter_go.nonce;
		send_msg(g, n, (uint16_t)(g->port + 1), &r);
		break;
	case PROTO_MSG_FILTER_RESULT:
		g->st.filter_result++;
		break;
	case PROTO_MSG_PUNCH:
		g->st.punches++;
		if (m->punch.flags & PROTO_PUNCH_F_ACK) {
			r.type = PROTO_MSG_PUNCH_ACK;
			r.punch_ack.attempt = m->punch.attempt;
			send_msg(g, n, g->port, &r);
		}
		break;
	case PROTO_MSG_ADDR_CHECK:
		g->st.addr_checks++;
		r.type = PROTO_MSG_ADDR_ECHO;
		r.addr_check.nonce = m->addr_check.nonce;
		send_msg(g, n, g->port, &r);
		break;
	default:
		g->st.stray++;
	}
}

static void on_data(struct lg *g, const uint8_t *buf, const struct proto_outer *o)
{
	struct node *n = node_by_idx(g, o->receiver_idx);
	uint8_t pt[PROTO_MAX_DATAGRAM];
	struct proto_msg m;
	ssize_t pl;

	if (!n || n->state != N_UP || !session_replay_check(&n->replay, o->counter)) {
		g->st.stray++;
		return;
	}
	pl = session_decrypt(n->recv_key, o->counter, buf, proto_outer_prefix_len(PROTO_DATA),
			     o->body, o->body_len, pt);
	if (pl < 0 || proto_decode_msg(pt, (size_t)pl, &m) < 0) {
		g->st.data_bad++;
		return;
	}
	session_replay_commit(&n->replay, o->counter);
	on_msg(g, n, &m);
}

/* The coordinator forgot the session (a restart): handshake again. */
static void on_unknown(struct lg *g, uint32_t sock, const struct proto_outer *o)
{
	struct node *n = node_by_coord_idx(g, sock, o->receiver_idx);

	g->st.unknowns++;
	if (!n)
		return;
	if (n->req != R_NONE) {
		n->req = R_NONE;
		g->inflight--;
	}
	n->state = N_IDLE;
	n->registered = false;
}

static void lg_input(struct lg *g, uint32_t sock, const uint8_t *buf, size_t len)
{
	struct proto_outer o;

	if (proto_decode_outer(buf, len, &o) < 0) {
		g->st.stray++;
		return;
	}
	switch (o.type) {
	case PROTO_HS_RESP:
		on_hs_resp(g, &o);
		break;
	case PROTO_COOKIE_REPLY:
		on_cookie_reply(g, &o);
		break;
	case PROTO_DATA:
		on_data(g, buf, &o);
		break;
	case PROTO_SESSION_UNKNOWN:
		on_unknown(g, sock, &o);
		break;
	case PROTO_POISON:
		g->st.poisons++;
		break;
	default:
		g->st.stray++;
	}
}

/* Checks the HS_RESPs kept by mode sessions: every one must authenticate. */
static void finish_deferred(struct lg *g)
{
	bool saved = g->auto_register;

	g->auto_register = false;
	g->st.hs_ok = 0;
	for (uint32_t i = 0; i < g->n_nodes; i++) {
		struct node *n = &g->nodes[i];

		if (n->state == N_HS_DONE_LATER)
			session_up(g, n, NULL, n->p->resp, n->p->resp_idx);
	}
	g->auto_register = saved;
}

/* ---- the network: one socket per source address, epoll over all ---- */

static void net_send(struct lg *g, uint32_t sock, uint16_t port, const uint8_t *buf, size_t len)
{
	struct sockaddr_in to = { .sin_family = AF_INET,
				  .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

	/* A full socket buffer on our side: the coordinator never saw it; it times out. */
	(void)sendto(g->socks[sock].fd, buf, len, 0, (struct sockaddr *)&to, sizeof(to));
}

/* As many sockets as asked, or as the hard limit on open files allows (nodes then share
 * source address:port, i % S, and the coordinator tells them apart by key and index). */
static void net_open(struct lg *g)
{
	struct rlimit rl = { .rlim_cur = g->n_socks + 64u, .rlim_max = g->n_socks + 64u };
	struct rlimit cur;

	if (getrlimit(RLIMIT_NOFILE, &cur) < 0)
		die("getrlimit");
	if (cur.rlim_max > rl.rlim_max)
		rl.rlim_max = cur.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
		rl.rlim_cur = rl.rlim_max = cur.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur < 128)
			die("setrlimit(RLIMIT_NOFILE)");
		g->n_socks = (uint32_t)(rl.rlim_cur - 64);
		for (uint32_t i = 0; i < g->n_nodes; i++)
			g->nodes[i].sock = i % g->n_socks;
		fprintf(stderr, "loadgen: open files limited to %llu: %u sockets\n",
			(unsigned long long)rl.rlim_cur, g->n_socks);
	}
	g->ep = epoll_create1(EPOLL_CLOEXEC);
	if (g->ep < 0)
		die("epoll_create1");
	for (uint32_t s = 0; s < g->n_socks; s++) {
		/* 127.1.0.1 and up: never 127.0.0.x, where the coordinator listens. */
		uint32_t host = (127u << 24) + (1u << 16) + s + 1;
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(host) };
		socklen_t sl = sizeof(sa);
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = s };
		int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

		if (fd < 0)
			die("socket");
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			die("bind 127.1.x.y");
		if (getsockname(fd, (struct sockaddr *)&sa, &sl) < 0)
			die("getsockname");
		addr_from_sockaddr(&g->socks[s].addr, (struct sockaddr *)&sa, sl);
		if (epoll_ctl(g->ep, EPOLL_CTL_ADD, fd, &ev) < 0)
			die("epoll_ctl");
		g->socks[s].fd = fd;
	}
	g->send = net_send;
}

/* Receives for up to timeout_ms; returns how many datagrams were handled. */
static int net_poll(struct lg *g, int timeout_ms)
{
	static uint8_t bufs[RX_BATCH][PROTO_MAX_DATAGRAM + 64];
	struct epoll_event ev[256];
	struct mmsghdr mm[RX_BATCH];
	struct iovec iov[RX_BATCH];
	int got = 0, ne = epoll_wait(g->ep, ev, 256, timeout_ms);

	for (int e = 0; e < ne; e++) {
		uint32_t s = ev[e].data.u32;
		int r;

		for (int k = 0; k < RX_BATCH; k++) {
			iov[k] = (struct iovec){ .iov_base = bufs[k], .iov_len = sizeof(bufs[k]) };
			mm[k].msg_hdr = (struct msghdr){ .msg_iov = &iov[k], .msg_iovlen = 1 };
		}
		r = recvmmsg(g->socks[s].fd, mm, RX_BATCH, MSG_DONTWAIT, NULL);
		for (int k = 0; k < r; k++)
			lg_input(g, s, bufs[k], mm[k].msg_len);
		if (r > 0)
			got += r;
	}
	return got;
}

/* ---- the coordinator process ---- */

struct coord {
	pid_t pid;
	const char *cmd;
};

static bool port_bound(uint16_t port)
{
	char line[256], want[16];
	FILE *f = fopen("/proc/net/udp", "r");
	bool found = false;

	if (!f)
		return false;
	snprintf(want, sizeof(want), ":%04X ", port);
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, want) && strstr(line, "0100007F:");
	fclose(f);
	return found;
}

static void coord_start(struct coord *c, uint16_t port)
{
	uint64_t end = mono_ns() + 10 * 1000000000ull;

	c->pid = fork();
	if (c->pid < 0)
		die("fork");
	if (c->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		execl("/bin/sh", "sh", "-c", c->cmd, (char *)NULL);
		_exit(127);
	}
	while (!port_bound(port)) {
		int st;

		if (waitpid(c->pid, &st, WNOHANG) == c->pid) {
			fprintf(stderr, "loadgen: the coordinator exited at start\n");
			exit(1);
		}
		if (mono_ns() > end) {
			fprintf(stderr, "loadgen: the coordinator never bound port %u\n", port);
			kill(c->pid, SIGKILL);
			exit(1);
		}
		usleep(10000);
	}
	fprintf(stderr, "loadgen: coordinator pid %d\n", (int)c->pid);
}

static void coord_stop(struct coord *c)
{
	/* Room for a state_file to be written (a second or two at a million nodes). */
	uint64_t end = mono_ns() + 30 * 1000000000ull;
	int st;

	if (c->pid <= 0)
		return;
	kill(c->pid, SIGTERM);
	while (waitpid(c->pid, &st, WNOHANG) != c->pid) {
		if (mono_ns() > end) {
			kill(c->pid, SIGKILL);
			waitpid(c->pid, &st, 0);
			break;
		}
		usleep(10000);
	}
	c->pid = 0;
}

static long proc_rss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* utime + stime of pid, in ns. */
static uint64_t proc_cpu_ns(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut = 0, stt = 0;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	p = strrchr(buf, ')');
	if (!p ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &stt) != 2)
		return 0;
	return (ut + stt) * (1000000000ull / (unsigned long long)sysconf(_SC_CLK_TCK));
}

/* Datagrams the kernel dropped for a full receive buffer, in this network namespace. */
static uint64_t udp_rcvbuf_errors(void)
{
	char names[1024], vals[1024];
	uint64_t v = 0;
	FILE *f = fopen("/proc/net/snmp", "r");

	if (!f)
		return 0;
	while (fgets(names, sizeof(names), f)) {
		if (strncmp(names, "Udp:", 4) || !fgets(vals, sizeof(vals), f))
			continue;
		char *sn, *sv, *tn = strtok_r(names, " \n", &sn), *tv = strtok_r(vals, " \n", &sv);

		while (tn && tv) {
			if (!strcmp(tn, "RcvbufErrors"))
				v = strtoull(tv, NULL, 10);
			tn = strtok_r(NULL, " \n", &sn);
			tv = strtok_r(NULL, " \n", &sv);
		}
		break;
	}
	fclose(f);
	return v;
}

/* ---- driving many nodes ---- */

/* Requests (and handshakes) outstanding longer than TIMEOUT_NS are lost: count and free them. */
static void expire(struct lg *g, uint64_t now)
{
	for (uint32_t i = 0; i < g->n_nodes; i++) {
		struct node *n = &g->nodes[i];

		if (now - n->sent_ns < TIMEOUT_NS)
			continue;
		if (n->state == N_HS_SENT) {
			n->state = N_IDLE;
			n->have_mac1 = false;
			g->st.hs_retry++;
			g->inflight--;
		} else if (n->req != R_NONE) {
			n->misses += n->req == R_REGISTER;
			n->req = R_NONE;
			g->st.lost++;
			g->inflight--;
		}
	}
}

/* Sends the REGISTERs that are due, looking at REFRESH_SCAN nodes from a cursor. */
static void refresh(struct lg *g, uint64_t now)
{
	static uint32_t cursor;

	for (uint32_t k = 0; k < REFRESH_SCAN && k < g->n_nodes; k++) {
		struct node *n = &g->nodes[cursor];

		cursor = (cursor + 1) % g->n_nodes;
		if (n->state == N_UP && n->registered && n->req == R_NONE &&
		    now - n->reg_ns > REFRESH_NS)
			send_register(g, n);
	}
}

/*
 * Brings nodes [0, count) to "registered": handshakes with at most window outstanding, then
 * REGISTER (8 peers). Returns the number registered when all are, or the deadline passed.
 */
static uint32_t establish(struct lg *g, uint32_t count, uint32_t window, uint64_t deadline)
{
	uint32_t cursor = 0, done = 0;
	uint64_t last_expire = mono_ns();

	g->auto_register = true;
	while (mono_ns() < deadline) {
		uint64_t now = mono_ns();

		for (uint32_t k = 0; k < count && g->inflight < window; k++) {
			struct node *n = &g->nodes[cursor];

			cursor = (cursor + 1) % count;
			if (n->state == N_UP && !n->registered && n->req == R_NONE &&
			    n->misses >= 2)
				n->state = N_IDLE; /* the session seems gone: a new one */
			if (n->state == N_IDLE)
				hs_start(g, n);
			else if (n->state == N_UP && !n->registered && n->req == R_NONE)
				send_register(g, n);
		}
		refresh(g, now);
		net_poll(g, 1);
		if (now - last_expire > 100000000ull) {
			last_expire = now;
			expire(g, now);
			done = 0;
			for (uint32_t i = 0; i < count; i++)
				done += g->nodes[i].registered;
			if (done == count)
				break;
		}
	}
	g->auto_register = false;
	done = 0;
	for (uint32_t i = 0; i < count; i++)
		done += g->nodes[i].registered;
	return done;
}

/* Waits for what is outstanding (at most 1.2 s), so the next phase starts clean. */
static void drain(struct lg *g)
{
	uint64_t end = mono_ns() + TIMEOUT_NS + 200000000ull;

	while (g->inflight && mono_ns() < end)
		net_poll(g, 5);
	expire(g, mono_ns() + TIMEOUT_NS);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static uint32_t pct(struct lg *g, double p)
{
	if (!g->n_lat)
		return 0;
	qsort(g->lat_us, g->n_lat, sizeof(*g->lat_us), cmp_u32);
	size_t k = (size_t)(p * (double)(g->n_lat - 1) + 0.5);

	return g->lat_us[k];
}

/* ---- options ---- */

struct opts {
	const char *mode, *coord_cmd;
	uint8_t pub[KEY_LEN];
	uint16_t port;
	uint32_t nodes, socks, window, rate;
	double time_s, setup_s; /* each mode's window; bringing the fleet up (and back) */
	int cpu;
	bool selftest;
};

static void result(const char *name, double v)
{
	printf("result %s %.1f\n", name, v);
	fflush(stdout);
}

static void print_stats(const struct lg *g)
{
	const struct stats *s = &g->st;

	fprintf(stderr,
		"loadgen: hs sent %" PRIu64 " ok %" PRIu64 " bad %" PRIu64 " retried %" PRIu64
		", cookies %" PRIu64 " (bad %" PRIu64 "), acks %" PRIu64 ", mappings %" PRIu64
		", lost %" PRIu64 ", punches %" PRIu64 ", filter go %" PRIu64 "/result %" PRIu64
		", addr checks %" PRIu64 ", unknown %" PRIu64 ", stray %" PRIu64 "\n",
		s->hs_sent, s->hs_ok, s->hs_bad, s->hs_retry, s->cookies, s->cookie_bad,
		s->reg_acks, s->mappings, s->lost, s->punches, s->filter_go, s->filter_result,
		s->addr_checks, s->unknowns, s->stray);
}

/* Round trips (REGISTER or PROBE) with a window, for time_s. */
static void mode_window(struct lg *g, struct coord *c, const struct opts *o, enum req_kind kind,
			uint32_t window)
{
	uint64_t start, end, cpu0, lost0 = g->st.lost, last_expire, kdrop0 = udp_rcvbuf_errors();
	uint64_t done0 = kind == R_REGISTER ? g->st.reg_acks : g->st.mappings, done;
	uint32_t cursor = 0;
	double secs;

	g->n_lat = 0;
	cpu0 = proc_cpu_ns(c->pid);
	start = last_expire = mono_ns();
	end = start + (uint64_t)(o->time_s * 1e9);
	while (mono_ns() < end) {
		uint64_t now = mono_ns();

		for (uint32_t k = 0; k < g->n_nodes && g->inflight < window; k++) {
			struct node *n = &g->nodes[cursor];

			cursor = (cursor + 1) % g->n_nodes;
			if (n->state != N_UP || n->req != R_NONE)
				continue;
			if (kind == R_REGISTER)
				send_register(g, n);
			else
				send_probe(g, n);
		}
		refresh(g, now);
		net_poll(g, 0);
		if (now - last_expire > 200000000ull) {
			last_expire = now;
			expire(g, now);
		}
	}
	secs = (double)(mono_ns() - start) / 1e9;
	done = (kind == R_REGISTER ? g->st.reg_acks : g->st.mappings) - done0;
	uint64_t cpu = proc_cpu_ns(c->pid) - cpu0;

	drain(g);
	const char *what = kind == R_REGISTER ? "register" : "probe";
	char name[80];

	snprintf(name, sizeof(name), "%s_w%u_per_s", what, window);
	result(name, (double)done / secs);
	snprintf(name, sizeof(name), "%s_w%u_coord_us", what, window);
	result(name, done ? (double)cpu / 1000.0 / (double)done : 0);
	snprintf(name, sizeof(name), "%s_w%u_p99_us", what, window);
	result(name, pct(g, 0.99));
	snprintf(name, sizeof(name), "%s_w%u_lost", what, window);
	result(name, (double)(g->st.lost - lost0));
	snprintf(name, sizeof(name), "%s_w%u_kernel_drops", what, window);
	result(name, (double)(udp_rcvbuf_errors() - kdrop0));
}

static void mode_latency(struct lg *g, struct coord *c, const struct opts *o, uint32_t rate)
{
	uint64_t start = mono_ns(), end = start + (uint64_t)(o->time_s * 1e9), next = start;
	uint64_t interval = 1000000000ull / rate, sent = 0, lost0 = g->st.lost, last_expire;
	uint64_t kdrop0 = udp_rcvbuf_errors(), acks0 = g->st.reg_acks;
	uint64_t cpu0 = proc_cpu_ns(c->pid);
	uint32_t cursor = 0;
	char name[80];

	g->n_lat = 0;
	last_expire = start;
	while (mono_ns() < end) {
		uint64_t now = mono_ns();

		/* Every send that is due (at most a window's worth in one go). */
		for (int burst = 0; next <= now && burst < 1024; burst++) {
			struct node *n = NULL;

			for (uint32_t k = 0; k < g->n_nodes; k++) {
				struct node *m = &g->nodes[cursor];

				cursor = (cursor + 1) % g->n_nodes;
				if (m->state == N_UP && m->req == R_NONE) {
					n = m;
					break;
				}
			}
			next += interval;
			if (!n) {
				g->st.lost++; /* every node busy: counted as lost, never silent */
				continue;
			}
			send_register(g, n);
			sent++;
		}
		refresh(g, now);
		net_poll(g, 0);
		if (now - last_expire > 200000000ull) {
			last_expire = now;
			expire(g, now);
		}
	}
	uint64_t cpu = proc_cpu_ns(c->pid) - cpu0;

	drain(g);
#define R(fmt, v)                                                     \
	do {                                                          \
		snprintf(name, sizeof(name), "latency%u_" fmt, rate); \
		result(name, (v));                                    \
	} while (0)
	R("sent_per_s", (double)sent / o->time_s);
	R("p50_us", pct(g, 0.50));
	R("p99_us", pct(g, 0.99));
	R("answered", (double)(g->st.reg_acks - acks0));
	R("lost_pct", sent ? 100.0 * (double)(g->st.lost - lost0) / (double)sent : 0);
	R("kernel_drops", (double)(udp_rcvbuf_errors() - kdrop0));
	R("coord_cpu_pct", 100.0 * (double)cpu / (o->time_s * 1e9));
#undef R
}

static void mode_sessions(struct lg *g, struct coord *c, const struct opts *o)
{
	uint64_t t0 = mono_ns(), start, end, cpu0, last_expire;
	uint32_t cursor = 0;
	double secs;

	/* Message 1 for every node before the window: the node's X25519 is not what we
	 * measure, and it would bound the rate on our one core. */
	for (uint32_t i = 0; i < g->n_nodes; i++)
		hs_build(g, &g->nodes[i]);
	fprintf(stderr, "loadgen: %u HS_INITs built in %.1f s\n", g->n_nodes,
		(double)(mono_ns() - t0) / 1e9);
	g->defer_resp = true;
	cpu0 = proc_cpu_ns(c->pid);
	start = last_expire = mono_ns();
	end = start + (uint64_t)(o->time_s * 1e9);
	while (mono_ns() < end && (cursor < g->n_nodes || g->inflight)) {
		uint64_t now = mono_ns();

		while (g->inflight < o->window && cursor < g->n_nodes)
			hs_start(g, &g->nodes[cursor++]);
		net_poll(g, 0);
		if (now - last_expire > 100000000ull) {
			last_expire = now;
			expire(g, now);
		}
	}
	secs = (double)(mono_ns() - start) / 1e9;
	uint64_t ok = g->st.hs_ok, cpu = proc_cpu_ns(c->pid) - cpu0;

	drain(g);
	finish_deferred(g);
	result("sessions_per_s", (double)ok / secs);
	result("sessions_coord_us", ok ? (double)cpu / 1000.0 / (double)ok : 0);
	result("sessions_verified", (double)g->st.hs_ok);
	result("sessions_bad", (double)g->st.hs_bad);
	result("sessions_cookies", (double)g->st.cookies);
	if (cursor >= g->n_nodes)
		fprintf(stderr,
			"loadgen: ran out of nodes before the window ended: raise --nodes\n");
}

static int run(const struct opts *o)
{
	struct lg g;
	struct coord c = { .cmd = o->coord_cmd };
	uint8_t seed[32];
	int rc = 0;

	if (o->cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(o->cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set) < 0)
			die("sched_setaffinity");
	}
	randombytes_buf(seed, sizeof(seed));
	uint64_t t0 = mono_ns();

	lg_init(&g, o->nodes, o->socks ? o->socks : o->nodes, o->pub, o->port, seed);
	net_open(&g);
	fprintf(stderr, "loadgen: %u nodes on %u sockets ready in %.1f s\n", g.n_nodes, g.n_socks,
		(double)(mono_ns() - t0) / 1e9);
	coord_start(&c, o->port);
	uint64_t deadline = mono_ns() + (uint64_t)(o->setup_s * 1e9);

	if (!strcmp(o->mode, "sessions")) {
		mode_sessions(&g, &c, o);
		goto out;
	}
	long rss0 = proc_rss_kb(c.pid);
	uint64_t e0 = mono_ns();
	uint64_t kd0 = udp_rcvbuf_errors();
	uint32_t reg = establish(&g, g.n_nodes, SETUP_WINDOW, deadline);
	double est_s = (double)(mono_ns() - e0) / 1e9;

	drain(&g);
	fprintf(stderr, "loadgen: %u of %u registered in %.1f s\n", reg, g.n_nodes, est_s);
	result("registered", reg);
	result("establish_s", est_s);
	result("establish_kernel_drops", (double)(udp_rcvbuf_errors() - kd0));
	/* Short of all (the handshake budget is what it is): the modes run on those that are,
	 * and the exit status says so. */
	if (reg != g.n_nodes)
		rc = 1;
	if (!reg)
		goto out;
	/* The modes after it, in order, on the same registered fleet. */
	char *list = strdup(o->mode), *save = NULL;

	for (char *m = strtok_r(list, ",", &save); m && rc < 2; m = strtok_r(NULL, ",", &save)) {
		char *arg = strchr(m, ':');
		uint32_t v = arg ? (uint32_t)strtoul(arg + 1, NULL, 10) : 0;

		if (arg)
			*arg = 0;
		fprintf(stderr, "loadgen: mode %s %u\n", m, v);
		if (!strcmp(m, "register") || !strcmp(m, "probe")) {
			mode_window(&g, &c, o, m[0] == 'r' ? R_REGISTER : R_PROBE,
				    v ? v : o->window);
		} else if (!strcmp(m, "latency")) {
			mode_latency(&g, &c, o, v ? v : o->rate);
		} else if (!strcmp(m, "memory")) {
			/* Let the coordinator settle (filter tests finish, punches answered). */
			uint64_t end = mono_ns() + 2500000000ull;

			while (mono_ns() < end) {
				refresh(&g, mono_ns());
				net_poll(&g, 10);
			}
			long rss1 = proc_rss_kb(c.pid);

			result("rss_base_kb", rss0);
			result("rss_kb", rss1);
			result("bytes_per_node", (double)(rss1 - rss0) * 1024.0 / (double)reg);
		} else if (!strcmp(m, "restart")) {
			coord_stop(&c);
			coord_start(&c, o->port);
			uint64_t r0 = mono_ns();

			/* Every node refreshes at once, the worst case: its REGISTER gets
			 * SESSION_UNKNOWN (rate-limited by the coordinator) or no answer, and
			 * after two misses it handshakes again. */
			for (uint32_t i = 0; i < g.n_nodes; i++)
				g.nodes[i].registered = false;
			kd0 = udp_rcvbuf_errors();
			uint64_t hs0 = g.st.hs_ok;

			reg = establish(&g, g.n_nodes, SETUP_WINDOW,
					mono_ns() + (uint64_t)(o->setup_s * 1e9));
			result("restart_kernel_drops", (double)(udp_rcvbuf_errors() - kd0));
			result("restart_handshakes", (double)(g.st.hs_ok - hs0));
			result("restart_registered", reg);
			result("restart_s", (double)(mono_ns() - r0) / 1e9);
			if (reg != g.n_nodes)
				rc = 1;
			drain(&g);
		} else {
			fprintf(stderr, "loadgen: unknown mode '%s'\n", m);
			rc = 2;
		}
	}
	free(list);
out:
	print_stats(&g);
	coord_stop(&c);
	lg_free(&g);
	return rc;
}

/* ---- selftest: the same node code against an in-process responder from lib modules ---- */

#define ST_NODES 30 /* 3 full groups and one of 3 */
#define ST_SOCKS 10 /* so nodes share sockets, as they do when S < nodes */
#define ST_QUEUE 4096

struct st_sess {
	uint8_t key[KEY_LEN];
	uint8_t last_ts[PROTO_TIMESTAMP_LEN];
	uint8_t send[SESSION_KEY_LEN], recv[SESSION_KEY_LEN], probe[SESSION_KEY_LEN];
	struct session_replay replay;
	uint64_t send_ctr, probe_seq, filter_nonce;
	uint64_t peers[PROTO_MAX_PEERS];
	uint32_t node_idx, sock;
	uint16_t n_peers;
	bool known, up, filter_done;
	unsigned registers;
};

struct st_dgram {
	uint32_t sock;
	uint16_t len;
	bool to_node;
	uint16_t port;
	uint8_t buf[PROTO_MAX_DATAGRAM];
};

struct st {
	uint8_t priv[KEY_LEN], pub[KEY_LEN];
	struct cookie_responder cr;
	struct st_sess s[ST_NODES];
	struct st_dgram *q;
	size_t head, tail;
	unsigned failures, cookie_replies, bad_mac1, unknown_sent;
	uint64_t now_ms;
};

static void st_fail(struct st *t, const char *why)
{
	t->failures++;
	printf("# selftest: %s\n", why);
}

static void st_push(struct st *t, bool to_node, uint32_t sock, uint16_t port, const uint8_t *buf,
		    size_t len)
{
	struct st_dgram *d;

	if (t->tail - t->head >= ST_QUEUE) {
		st_fail(t, "queue overflow");
		return;
	}
	d = &t->q[t->tail++ % ST_QUEUE];
	d->to_node = to_node;
	d->sock = sock;
	d->port = port;
	d->len = (uint16_t)len;
	memcpy(d->buf, buf, len);
}

static void st_send(struct lg *g, uint32_t sock, uint16_t port, const uint8_t *buf, size_t len)
{
	st_push(g->send_arg, false, sock, port, buf, len);
}

static struct st_sess *st_by_idx(struct st *t, uint32_t idx)
{
	return idx >= 1 && idx <= ST_NODES && t->s[idx - 1].up ? &t->s[idx - 1] : NULL;
}

static void st_reply_msg(struct st *t, struct st_sess *s, const struct proto_msg *m)
{
	size_t pre = proto_outer_prefix_len(PROTO_DATA);
	uint8_t pt[PROTO_MAX_DATAGRAM], out[PROTO_MAX_DATAGRAM];
	struct proto_outer o = { .type = PROTO_DATA };
	ssize_t pl = proto_encode_msg(pt, sizeof(pt) - 64, m), len;

	o.receiver_idx = s->node_idx;
	o.counter = s->send_ctr;
	o.body = pt;
	o.body_len = (size_t)pl + PROTO_TAG_LEN;
	len = proto_encode_outer(out, sizeof(out), &o);
	if (pl < 0 || len < 0) {
		st_fail(t, "responder cannot encode");
		return;
	}
	session_encrypt(s->send, s->send_ctr++, out, pre, pt, (size_t)pl, out + pre);
	st_push(t, true, s->sock, 0, out, (size_t)len);
}

/* The responder side of docs/PROTOCOL.md, as the coordinator does it after v2: mac1 first,
 * Noise, then a cookie reply for a key with no accepted timestamp and no mac2 proof. */
static void st_hs_init(struct st *t, struct lg *g, const struct st_dgram *d,
		       const struct proto_outer *o)
{
	uint8_t ts[PROTO_TIMESTAMP_LEN], e_priv[32], noise[PROTO_HS_RESP_NOISE_LEN], out[128];
	struct proto_outer resp = { .type = PROTO_HS_RESP };
	enum cookie_verdict v =
		cookie_check(&t->cr, d->buf, d->len, &g->socks[d->sock].addr, t->now_ms);
	struct session_keys keys;
	struct session_hs hs;
	struct st_sess *s = NULL;
	ssize_t r;

	if (v == COOKIE_BAD_MAC1) {
		t->bad_mac1++;
		return;
	}
	session_hs_init(&hs, false, (const uint8_t *)SESSION_PROLOGUE, strlen(SESSION_PROLOGUE),
			t->priv, NULL);
	if (session_hs_read_msg1(&hs, o->body, o->body_len, ts, sizeof(ts)) != sizeof(ts)) {
		st_fail(t, "HS_INIT does not authenticate");
		return;
	}
	for (int i = 0; i < ST_NODES; i++)
		if (!memcmp(g->nodes[i].pub, hs.rs, KEY_LEN))
			s = &t->s[i];
	if (!s) {
		st_fail(t, "HS_INIT from a key that is no node's");
		return;
	}
	if (!s->known && v != COOKIE_MAC2_OK) {
		uint8_t body[COOKIE_REPLY_BODY_LEN], nonce[COOKIE_NONCE_LEN];
		struct proto_outer c = { .type = PROTO_COOKIE_REPLY,
					 .receiver_idx = o->sender_idx,
					 .body = body,
					 .body_len = sizeof(body) };

		randombytes_buf(nonce, sizeof(nonce));
		if (cookie_reply_make(&t->cr, o->macs, &g->socks[d->sock].addr, nonce, t->now_ms,
				      body) < 0 ||
		    (r = proto_encode_outer(out, sizeof(out), &c)) < 0) {
			st_fail(t, "cannot make a cookie reply");
			return;
		}
		t->cookie_replies++;
		st_push(t, true, d->sock, 0, out, (size_t)r);
		return;
	}
	if (s->known && !session_tai64n_after(ts, s->last_ts)) {
		st_fail(t, "HS_INIT timestamp not newer");
		return;
	}
	randombytes_buf(e_priv, sizeof(e_priv));
	if (session_hs_write_msg2(&hs, e_priv, NULL, 0, noise, sizeof(noise)) != sizeof(noise)) {
		st_fail(t, "cannot write message 2");
		return;
	}
	session_hs_split(&hs, &keys);
	memcpy(s->last_ts, ts, sizeof(ts));
	memcpy(s->send, keys.send, SESSION_KEY_LEN);
	memcpy(s->recv, keys.recv, SESSION_KEY_LEN);
	session_probe_key(&keys, s->probe);
	memset(&s->replay, 0, sizeof(s->replay));
	s->send_ctr = s->probe_seq = 0;
	s->node_idx = o->sender_idx;
	s->sock = d->sock;
	s->known = s->up = true;
	resp.sender_idx = (uint32_t)(s - t->s) + 1;
	resp.receiver_idx = o->sender_idx;
	resp.body = noise;
	resp.body_len = sizeof(noise);
	r = proto_encode_outer(out, sizeof(out), &resp);
	if (r > 0)
		st_push(t, true, d->sock, 0, out, (size_t)r);
}

static void st_data(struct st *t, struct lg *g, const struct st_dgram *d,
		    const struct proto_outer *o)
{
	struct st_sess *s = st_by_idx(t, o->receiver_idx);
	uint8_t pt[PROTO_MAX_DATAGRAM];
	struct proto_msg m, r;
	ssize_t pl;

	if (!s) {
		struct proto_outer u = { .type = PROTO_SESSION_UNKNOWN,
					 .receiver_idx = o->receiver_idx };
		uint8_t out[16];
		ssize_t len = proto_encode_outer(out, sizeof(out), &u);

		t->unknown_sent++;
		if (len > 0)
			st_push(t, true, d->sock, 0, out, (size_t)len);
		return;
	}
	if (!session_replay_check(&s->replay, o->counter)) {
		st_fail(t, "DATA counter replayed");
		return;
	}
	pl = session_decrypt(s->recv, o->counter, d->buf, proto_outer_prefix_len(PROTO_DATA),
			     o->body, o->body_len, pt);
	if (pl < 0 || proto_decode_msg(pt, (size_t)pl, &m) < 0) {
		st_fail(t, "DATA does not authenticate or decode");
		return;
	}
	session_replay_commit(&s->replay, o->counter);
	if (d->sock != s->sock)
		st_fail(t, "DATA from another socket than the session's");
	if (m.type == PROTO_MSG_REGISTER && d->port == g->port) {
		if (m.reg.page != 0 || m.reg.n_pages != 1)
			st_fail(t, "REGISTER not one page");
		s->n_peers = m.reg.n_peers;
		memcpy(s->peers, m.reg.peers, m.reg.n_peers * sizeof(uint64_t));
		s->registers++;
		r.type = PROTO_MSG_REGISTER_ACK;
		r.reg_ack.seq = m.reg.seq;
		r.reg_ack.refresh_s = 20;
		r.reg_ack.rekey_s = 0;
		r.reg_ack.observed = g->socks[d->sock].addr;
		st_reply_msg(t, s, &r);
		if (!s->filter_done) {
			r.type = PROTO_MSG_FILTER_GO;
			randombytes_buf(&s->filter_nonce, sizeof(s->filter_nonce));
			r.filter_go.nonce = s->filter_nonce;
			st_reply_msg(t, s, &r);
		}
	} else if (m.type == PROTO_MSG_FILTER_ECHO && d->port == g->port + 1) {
		if (m.filter_echo.nonce != s->filter_nonce)
			st_fail(t, "FILTER_ECHO with the wrong nonce");
		s->filter_done = true;
	} else {
		st_fail(t, "unexpected inner message or port");
	}
}

static void st_probe(struct st *t, struct lg *g, const struct st_dgram *d,
		     const struct proto_outer *o)
{
	struct st_sess *s = st_by_idx(t, o->receiver_idx);
	struct proto_msg r = { .type = PROTO_MSG_MAPPING };

	if (!s ||
	    !session_probe_mac_ok(s->probe, d->buf, proto_outer_prefix_len(PROTO_PROBE), o->body)) {
		st_fail(t, "PROBE MAC does not verify");
		return;
	}
	if (o->counter <= s->probe_seq || o->dst_port != g->port ||
	    o->purpose != PROTO_PROBE_MAP_P) {
		st_fail(t, "PROBE sequence, port or purpose wrong");
		return;
	}
	s->probe_seq = o->counter;
	r.mapping.probe_seq = o->counter;
	r.mapping.port_index = 0;
	r.mapping.observed = g->socks[d->sock].addr;
	st_reply_msg(t, s, &r);
}

static void st_pump(struct st *t, struct lg *g)
{
	for (unsigned guard = 0; t->head != t->tail && guard < 1000000; guard++) {
		struct st_dgram *d = &t->q[t->head++ % ST_QUEUE];
		struct proto_outer o;

		if (d->to_node) {
			lg_input(g, d->sock, d->buf, d->len);
			continue;
		}
		if (proto_decode_outer(d->buf, d->len, &o) < 0) {
			st_fail(t, "node sent what does not decode");
			continue;
		}
		if (o.type == PROTO_HS_INIT && d->port == g->port)
			st_hs_init(t, g, d, &o);
		else if (o.type == PROTO_DATA)
			st_data(t, g, d, &o);
		else if (o.type == PROTO_PROBE && d->port == g->port)
			st_probe(t, g, d, &o);
		else
			st_fail(t, "unexpected outer message or port");
	}
}

static void st_check(struct st *t, bool ok, const char *what, int *n)
{
	printf("%s %d - %s\n", ok ? "ok" : "not ok", ++*n, what);
	if (!ok)
		t->failures++;
}

/* Every node registered, with its group's other members, and each of them lists it back. */
static bool st_mutual(struct st *t, struct lg *g)
{
	for (int i = 0; i < ST_NODES; i++) {
		uint16_t want =
			(uint16_t)((i / GROUP * GROUP + GROUP <= ST_NODES ? GROUP
									  : ST_NODES % GROUP) -
				   1);

		if (!t->s[i].registers || t->s[i].n_peers != want)
			return false;
		for (int k = 0; k < t->s[i].n_peers; k++) {
			int j, found = 0;

			for (j = 0; j < ST_NODES; j++)
				if (g->nodes[j].fp == t->s[i].peers[k] && j / GROUP == i / GROUP &&
				    j != i)
					break;
			if (j == ST_NODES)
				return false;
			for (int l = 0; l < t->s[j].n_peers; l++)
				found |= t->s[j].peers[l] == g->nodes[i].fp;
			if (!found)
				return false;
		}
	}
	return true;
}

static int selftest(void)
{
	struct st *t = calloc(1, sizeof(*t));
	uint8_t seed[32] = { 1 }, rnd[COOKIE_SECRET_LEN];
	struct lg g;
	int n = 0;
	bool all;

	if (!t || !(t->q = calloc(ST_QUEUE, sizeof(*t->q))))
		die("calloc");
	printf("TAP version 13\n1..9\n");
	key_generate_private(t->priv);
	key_public_from_private(t->pub, t->priv);
	randombytes_buf(rnd, sizeof(rnd));
	t->now_ms = 1;
	cookie_responder_init(&t->cr, t->pub, rnd, t->now_ms);
	lg_init(&g, ST_NODES, ST_SOCKS, t->pub, 51900, seed);
	g.send = st_send;
	g.send_arg = t;
	for (uint32_t s = 0; s < ST_SOCKS; s++) {
		struct sockaddr_in sa = { .sin_family = AF_INET,
					  .sin_port = htons(40000 + s),
					  .sin_addr.s_addr =
						  htonl((127u << 24) + (1u << 16) + s + 1) };

		addr_from_sockaddr(&g.socks[s].addr, (struct sockaddr *)&sa, sizeof(sa));
	}

	/* Handshakes and REGISTER for all, as establish() drives them over the network. */
	g.auto_register = true;
	for (uint32_t i = 0; i < ST_NODES; i++) {
		hs_start(&g, &g.nodes[i]);
		st_pump(t, &g);
	}
	all = true;
	for (uint32_t i = 0; i < ST_NODES; i++)
		all &= g.nodes[i].state == N_UP && g.nodes[i].registered;
	st_check(t, all && g.st.hs_ok == ST_NODES && !g.st.hs_bad,
		 "every node has a session and is registered", &n);
	st_check(t, t->cookie_replies == ST_SOCKS && g.st.cookies == ST_SOCKS && !t->bad_mac1,
		 "mac1 always good; one cookie reply per source address, then mac2 proves it", &n);
	st_check(t, st_mutual(t, &g), "8 peers each, and every peer lists the node back", &n);
	all = true;
	for (int i = 0; i < ST_NODES; i++)
		all &= t->s[i].filter_done;
	st_check(t, all && g.st.filter_go == ST_NODES, "FILTER_GO answered by FILTER_ECHO on P + 1",
		 &n);

	/* Round trips as modes register and probe make them. */
	uint64_t acks0 = g.st.reg_acks;

	for (int round = 0; round < 3; round++)
		for (uint32_t i = 0; i < ST_NODES; i++) {
			send_register(&g, &g.nodes[i]);
			st_pump(t, &g);
			send_probe(&g, &g.nodes[i]);
			st_pump(t, &g);
		}
	st_check(t,
		 g.st.reg_acks - acks0 == 3 * ST_NODES && g.st.mappings == 3 * ST_NODES &&
			 g.inflight == 0 && g.n_lat == 3 * ST_NODES * 2 + ST_NODES,
		 "REGISTER_ACK and MAPPING match every request", &n);

	/* A restart: the responder forgets sessions and timestamps, and draws a new secret. */
	for (int i = 0; i < ST_NODES; i++)
		t->s[i].known = t->s[i].up = false;
	randombytes_buf(rnd, sizeof(rnd));
	cookie_responder_init(&t->cr, t->pub, rnd, ++t->now_ms);
	for (uint32_t i = 0; i < ST_NODES; i++) {
		g.nodes[i].registered = false;
		send_register(&g, &g.nodes[i]);
	}
	st_pump(t, &g);
	st_check(t, t->unknown_sent == ST_NODES && g.st.unknowns == ST_NODES && g.inflight == 0,
		 "SESSION_UNKNOWN after a restart finds its node", &n);
	uint64_t hs0 = g.st.hs_ok;

	g.auto_register = true;
	for (uint32_t i = 0; i < ST_NODES; i++)
		if (g.nodes[i].state == N_IDLE) {
			hs_start(&g, &g.nodes[i]);
			st_pump(t, &g);
		}
	all = true;
	for (uint32_t i = 0; i < ST_NODES; i++)
		all &= g.nodes[i].registered && t->s[i].registers >= 5;
	st_check(t, all && g.st.hs_ok - hs0 == ST_NODES,
		 "every node is registered again after the restart", &n);
	/* The old cookie's secret is gone: a stale mac2 is just "unproven", so a new reply. */
	st_check(t, t->cookie_replies == 2 * ST_SOCKS, "a new cookie after the restart", &n);

	/* Mode sessions: HS_RESPs kept and checked after the window. */
	struct lg g2;

	lg_init(&g2, ST_NODES, ST_SOCKS, t->pub, 51900, (uint8_t[32]){ 2 });
	g2.send = st_send;
	g2.send_arg = t;
	memcpy(g2.socks, g.socks, ST_SOCKS * sizeof(*g.socks));
	for (int i = 0; i < ST_NODES; i++)
		t->s[i].known = t->s[i].up = false;
	g2.defer_resp = true;
	for (uint32_t i = 0; i < ST_NODES; i++)
		hs_build(&g2, &g2.nodes[i]);
	for (uint32_t i = 0; i < ST_NODES; i++) {
		hs_start(&g2, &g2.nodes[i]);
		st_pump(t, &g2);
	}
	/* The responder's table now holds g2's sessions under g's node numbers: only the
	 * client side is checked here. */
	finish_deferred(&g2);
	all = g2.st.hs_ok == ST_NODES && !g2.st.hs_bad;
	for (uint32_t i = 0; i < ST_NODES; i++)
		all &= g2.nodes[i].state == N_UP;
	st_check(t, all, "deferred HS_RESPs all authenticate after the window", &n);
	n = t->failures ? 1 : 0;
	lg_free(&g);
	lg_free(&g2);
	free(t->q);
	free(t);
	return n;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: loadgen --selftest\n"
		"       loadgen --mode sessions|register|probe|latency|memory|restart --coord CMD\n"
		"               --port P --pub KEY [--nodes N] [--sockets S] [--window W]\n"
		"               [--rate R] [--time SECONDS] [--setup-time SECONDS] [--cpu N]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "selftest", no_argument, NULL, 'S' },
		{ "mode", required_argument, NULL, 'm' },
		{ "coord", required_argument, NULL, 'c' },
		{ "port", required_argument, NULL, 'p' },
		{ "pub", required_argument, NULL, 'k' },
		{ "nodes", required_argument, NULL, 'n' },
		{ "sockets", required_argument, NULL, 's' },
		{ "window", required_argument, NULL, 'w' },
		{ "rate", required_argument, NULL, 'r' },
		{ "time", required_argument, NULL, 't' },
		{ "cpu", required_argument, NULL, 'C' },
		{ "setup-time", required_argument, NULL, 'T' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = {
		.nodes = 1000, .window = 64, .rate = 20000, .time_s = 3, .setup_s = 120, .cpu = -1
	};
	bool have_pub = false;
	int c;

	if (sodium_init() < 0)
		return 1;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'S':
			o.selftest = true;
			break;
		case 'm':
			o.mode = optarg;
			break;
		case 'c':
			o.coord_cmd = optarg;
			break;
		case 'p':
			o.port = (uint16_t)strtoul(optarg, NULL, 10);
			break;
		case 'k':
			if (key_from_base64(o.pub, optarg) < 0)
				usage();
			have_pub = true;
			break;
		case 'n':
			o.nodes = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 's':
			o.socks = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'w':
			o.window = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'r':
			o.rate = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 't':
			o.time_s = strtod(optarg, NULL);
			break;
		case 'C':
			o.cpu = (int)strtol(optarg, NULL, 10);
			break;
		case 'T':
			o.setup_s = strtod(optarg, NULL);
			break;
		default:
			usage();
		}
	}
	if (o.selftest)
		return selftest();
	if (!o.mode || !o.coord_cmd || !o.port || !have_pub || !o.nodes || !o.window || !o.rate ||
	    o.time_s <= 0 || o.time_s > 120 || o.setup_s <= 0 || o.setup_s > 1800 ||
	    o.nodes > 4000000 || (o.socks > o.nodes))
		usage();
	if (o.socks == 0 && o.nodes > 200000)
		o.socks = 200000;
	return run(&o);
}

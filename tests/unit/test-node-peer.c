// SPDX-License-Identifier: MIT
/*
 * node_peer: the per-peer path state machine, driven with a fake monotonic
 * clock and fake device observations.
 */
#include "wgpunch/node_peer.h"

#include <arpa/inet.h>
#include <string.h>

#include "../tap.h"

#define WALL0 1700000000 /* an arbitrary wall-clock second */

static struct addr ip(const char *s, uint16_t port)
{
	struct addr a;

	memset(&a, 0, sizeof(a));
	if (strchr(s, ':')) {
		a.in6.sin6_family = AF_INET6;
		a.in6.sin6_port = htons(port);
		inet_pton(AF_INET6, s, &a.in6.sin6_addr);
	} else {
		a.in4.sin_family = AF_INET;
		a.in4.sin_port = htons(port);
		inet_pton(AF_INET, s, &a.in4.sin_addr);
	}
	return a;
}

static const uint8_t key[KEY_LEN] = { 1, 2, 3, 4 };

/* What the node knows of itself: only its mapping (no local addresses, rnd 0). */
#define SELF(m) (&(struct node_peer_self){ .mapping = (m) })

/* A peer behind 198.51.100.20 with two LAN addresses. */
static struct proto_punch punch_for(const char *pub)
{
	struct proto_punch m;

	memset(&m, 0, sizeof(m));
	m.attempt = 7;
	memcpy(m.peer_key, key, KEY_LEN);
	m.flags = PROTO_PUNCH_F_ACK;
	m.peer_public = ip(pub, 40000);
	m.n_lan = 2;
	m.lan[0] = ip("198.18.0.10", 51820);
	m.lan[1] = ip("198.18.1.10", 51820);
	return m;
}

static struct node_peer_obs obs(const struct addr *ep, int64_t hs_s, int64_t wall)
{
	struct node_peer_obs o;

	memset(&o, 0, sizeof(o));
	if (ep)
		o.endpoint = *ep;
	o.keepalive_s = 25;
	o.handshake_s = hs_s;
	o.handshake_ns = hs_s ? 500 : 0;
	o.wall_now_s = wall;
	return o;
}

static void test_node_peer_public_only_when_other_nat(void)
{
	struct node_peer p;
	struct proto_punch m = punch_for("198.51.100.20");
	struct addr own = ip("203.0.113.5", 51820);
	struct node_peer_obs o = obs(NULL, 0, WALL0);
	const struct node_peer_cand *c;

	node_peer_init(&p, key, 1000);
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, SELF(own), &o, 1000), NODE_PEER_WRITE);
	CHECK_EQ_INT(p.n_cands, 1);
	c = node_peer_candidate(&p);
	CHECK(c && addr_equal(&c->addr, &m.peer_public));
	CHECK(c && c->path == NODE_PATH_DIRECT);
	CHECK(node_peer_attempt_open(&p));
}

static void test_node_peer_lan_first_behind_same_nat(void)
{
	struct node_peer p;
	struct proto_punch m = punch_for("198.51.100.20");
	struct addr own = ip("198.51.100.20", 51820); /* same public IP, another port */
	struct node_peer_obs o = obs(NULL, 0, WALL0);

	node_peer_init(&p, key, 0);
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, SELF(own), &o, 0), NODE_PEER_WRITE);
	CHECK_EQ_INT(p.n_cands, 3);
	CHECK(addr_equal(&p.cands[0].addr, &m.lan[0]) && p.cands[0].path == NODE_PATH_LAN);
	CHECK(addr_equal(&p.cands[1].addr, &m.lan[1]) && p.cands[1].path == NODE_PATH_LAN);
	CHECK(addr_equal(&p.cands[2].addr, &m.peer_public) && p.cands[2].path == NODE_PATH_DIRECT);
	CHECK_EQ_INT(p.cur, 0);
}

static void test_node_peer_new_handshake_means_up(void)
{
	struct node_peer p;
	struct proto_punch m = punch_for("198.51.100.20");
	struct addr own = ip("203.0.113.5", 51820);
	struct node_peer_obs o = obs(NULL, WALL0 - 500, WALL0); /* an old handshake */

	node_peer_init(&p, key, 0);
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, SELF(own), &o, 0), NODE_PEER_WRITE);
	/* Same handshake time seen again: still trying. */
	o = obs(&m.peer_public, WALL0 - 500, WALL0 + 1);
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, 250, true), NODE_PEER_NOTHING);
	CHECK_EQ_INT(p.state, NODE_PEER_TRYING);
	CHECK_EQ_INT(p.path, NODE_PATH_NONE);
	/* A handshake newer than the baseline: up, direct. */
	o = obs(&m.peer_public, WALL0 + 1, WALL0 + 1);
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, 500, true), NODE_PEER_UP_NOW);
	CHECK_EQ_INT(p.state, NODE_PEER_UP);
	CHECK_EQ_INT(p.path, NODE_PATH_DIRECT);
	CHECK(!node_peer_attempt_open(&p));
	CHECK(!node_peer_wants_resync(&p, 100000));
	/* Further polls with the path alive change nothing. */
	o = obs(&m.peer_public, WALL0 + 100, WALL0 + 130);
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, 130000, true), NODE_PEER_NOTHING);
	CHECK_EQ_INT(p.path, NODE_PATH_DIRECT);
}

static void test_node_peer_nanoseconds_count_as_newer(void)
{
	struct node_peer p;
	struct proto_punch m = punch_for("198.51.100.20");
	struct addr own = ip("203.0.113.5", 51820);
	struct node_peer_obs o = obs(NULL, WALL0, WALL0);

	node_peer_init(&p, key, 0);
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, SELF(own), &o, 0), NODE_PEER_WRITE);
	o.handshake_ns += 1;
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, 250, true), NODE_PEER_UP_NOW);
}

static void test_node_peer_next_candidate_after_6s_then_none(void)
{
	struct node_peer p;
	struct proto_punch m = punch_for("198.51.100.20");
	struct addr own = ip("198.51.100.20", 51820);
	struct node_peer_obs o = obs(NULL, 0, WALL0);
	const struct node_peer_cand *c;
	uint64_t t = 10000;

	node_peer_init(&p, key, 0);
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, SELF(own), &o, t), NODE_PEER_WRITE);
	/* Just before the deadline nothing happens. */
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, t + NODE_PEER_ATTEMPT_MS - 1, true),
		     NODE_PEER_NOTHING);
	CHECK_EQ_INT(p.cur, 0);
	t += NODE_PEER_ATTEMPT_MS;
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, t, true), NODE_PEER_WRITE);
	c = node_peer_candidate(&p);
	CHECK(c && addr_equal(&c->addr, &m.lan[1]));
	t += NODE_PEER_ATTEMPT_MS;
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, t, true), NODE_PEER_WRITE);
	c = node_peer_candidate(&p);
	CHECK(c && addr_equal(&c->addr, &m.peer_public));
	/* The last one fails too: path none, no more attempts. */
	t += NODE_PEER_ATTEMPT_MS;
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, t, true), NODE_PEER_GIVE_UP);
	CHECK_EQ_INT(p.path, NODE_PATH_NONE);
	CHECK_EQ_INT(p.state, NODE_PEER_FAILED);
	CHECK(!node_peer_attempt_open(&p));
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, t + 60000, true), NODE_PEER_NOTHING);
	/* No RESYNC while an attempt was open; once it failed, the PUNCH is long enough ago. */
	CHECK(node_peer_wants_resync(&p, t));
	CHECK_EQ_INT(node_peer_resync_due(&p), 10000 + NODE_PEER_RESYNC_FIRST_MS);
}

static void test_node_peer_resync_backs_off_and_starts_over_when_up(void)
{
	struct node_peer p;
	struct proto_punch m = punch_for("198.51.100.20");
	struct addr own = ip("203.0.113.5", 51820);
	struct node_peer_obs o = obs(NULL, 0, WALL0);
	uint64_t t = 1000;

	/* A new peer with no PUNCH (the PUNCH was lost) asks after 2 s ... */
	node_peer_init(&p, key, t);
	CHECK(!node_peer_wants_resync(&p, t + NODE_PEER_RESYNC_FIRST_MS - 1));
	CHECK(node_peer_wants_resync(&p, t + NODE_PEER_RESYNC_FIRST_MS));
	t += NODE_PEER_RESYNC_FIRST_MS;
	node_peer_resync_asked(&p, t);
	/* ... then after twice as long each time, past the refresh period (a peer that is simply
	 * absent must not make the coordinator re-punch every pair at every refresh), up to
	 * NODE_PEER_RESYNC_MAX_MS and no further. */
	for (uint32_t wait = 4000; wait <= NODE_PEER_RESYNC_MAX_MS; wait *= 2) {
		CHECK_EQ_INT(node_peer_resync_due(&p), t + wait);
		t += wait;
		node_peer_resync_asked(&p, t);
	}
	CHECK_EQ_INT(node_peer_resync_due(&p), t + NODE_PEER_RESYNC_MAX_MS);
	t += NODE_PEER_RESYNC_MAX_MS;
	node_peer_resync_asked(&p, t);
	CHECK_EQ_INT(node_peer_resync_due(&p), t + NODE_PEER_RESYNC_MAX_MS);

	/* A PUNCH opens an attempt: nothing to ask while it runs. */
	t += 1000;
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, SELF(own), &o, t), NODE_PEER_WRITE);
	CHECK_EQ_INT(node_peer_resync_due(&p), UINT64_MAX);
	CHECK(!node_peer_wants_resync(&p, t + 100000));
	/* It fails: the backoff goes on from the PUNCH (a failing pair is not punched in a loop). */
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, t + NODE_PEER_ATTEMPT_MS, true), NODE_PEER_GIVE_UP);
	CHECK_EQ_INT(node_peer_resync_due(&p), t + NODE_PEER_RESYNC_MAX_MS);

	/* The next PUNCH works; when that path is lost again, the first ask comes after 2 s. */
	t += 30000;
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, SELF(own), &o, t), NODE_PEER_WRITE);
	o = obs(&m.peer_public, WALL0 + 40, WALL0 + 40);
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, t + 500, true), NODE_PEER_UP_NOW);
	CHECK_EQ_INT(node_peer_resync_due(&p), UINT64_MAX);
	o = obs(&m.peer_public, WALL0 + 40, WALL0 + 40 + NODE_PEER_STALE_S + 1);
	t += 500 + (NODE_PEER_STALE_S + 1) * 1000;
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, t, true), NODE_PEER_DOWN);
	CHECK(node_peer_wants_resync(&p, t));
	node_peer_resync_asked(&p, t);
	CHECK_EQ_INT(node_peer_resync_due(&p), t + 2 * NODE_PEER_RESYNC_FIRST_MS);
}

static void test_node_peer_second_candidate_comes_up(void)
{
	struct node_peer p;
	struct proto_punch m = punch_for("198.51.100.20");
	struct addr own = ip("198.51.100.20", 51820);
	struct node_peer_obs o = obs(NULL, 0, WALL0);

	node_peer_init(&p, key, 0);
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, SELF(own), &o, 0), NODE_PEER_WRITE);
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, NODE_PEER_ATTEMPT_MS, true), NODE_PEER_WRITE);
	o = obs(&m.lan[1], WALL0 + 7, WALL0 + 7);
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, NODE_PEER_ATTEMPT_MS + 1000, true),
		     NODE_PEER_UP_NOW);
	CHECK_EQ_INT(p.path, NODE_PATH_LAN);
}

static void test_node_peer_punch_for_working_endpoint_writes_nothing(void)
{
	struct node_peer p;
	struct proto_punch m = punch_for("198.51.100.20");
	struct addr own = ip("203.0.113.5", 51820);
	struct addr moved = ip("198.51.100.20", 40001);
	struct node_peer_obs o;

	node_peer_init(&p, key, 0);
	/* WireGuard uses the public mapping and shook hands 134 s ago: leave the endpoint
	 * alone, only nudge WireGuard into sending from here (our NAT may have rebound). */
	o = obs(&m.peer_public, WALL0 - 134, WALL0);
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, SELF(own), &o, 0), NODE_PEER_NUDGE);
	CHECK_EQ_INT(p.state, NODE_PEER_UP);
	CHECK_EQ_INT(p.path, NODE_PATH_DIRECT);
	CHECK(!node_peer_attempt_open(&p));
	/* A repeated PUNCH right after nudges no more; one later does again. */
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, SELF(own), &o, 1000), NODE_PEER_NOTHING);
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, SELF(own), &o, 1000 + NODE_PEER_NUDGE_EVERY_MS),
		     NODE_PEER_NUDGE);

	/* 135 s ago is not fresh: write again. */
	node_peer_init(&p, key, 0);
	o = obs(&m.peer_public, WALL0 - 135, WALL0);
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, SELF(own), &o, 0), NODE_PEER_WRITE);

	/* Fresh handshake, but with another endpoint (the mapping moved): write. */
	node_peer_init(&p, key, 0);
	o = obs(&moved, WALL0 - 10, WALL0);
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, SELF(own), &o, 0), NODE_PEER_WRITE);
	CHECK(addr_equal(&node_peer_candidate(&p)->addr, &m.peer_public));
}

static void test_node_peer_stale_handshake_means_down_and_resync(void)
{
	struct node_peer p;
	struct proto_punch m = punch_for("198.51.100.20");
	struct addr own = ip("203.0.113.5", 51820);
	struct node_peer_obs o = obs(NULL, 0, WALL0);

	node_peer_init(&p, key, 0);
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, SELF(own), &o, 0), NODE_PEER_WRITE);
	o = obs(&m.peer_public, WALL0 + 1, WALL0 + 1);
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, 1000, true), NODE_PEER_UP_NOW);
	/* 180 s without a new handshake is still fine ... */
	o = obs(&m.peer_public, WALL0 + 1, WALL0 + 181);
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, 181000, true), NODE_PEER_NOTHING);
	/* ... unless keepalive is off, when silence means nothing ... */
	o = obs(&m.peer_public, WALL0 + 1, WALL0 + 182);
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, 182000, false), NODE_PEER_NOTHING);
	CHECK_EQ_INT(p.path, NODE_PATH_DIRECT);
	/* ... but with keepalive on, 181 s of silence: path none, ask for a PUNCH. */
	o = obs(&m.peer_public, WALL0 + 1, WALL0 + 182);
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, 182000, true), NODE_PEER_DOWN);
	CHECK_EQ_INT(p.path, NODE_PATH_NONE);
	CHECK(node_peer_wants_resync(&p, 182000));
	/* A later handshake (the peer came back on its own): up again. */
	o = obs(&m.peer_public, WALL0 + 300, WALL0 + 300);
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, 300000, true), NODE_PEER_UP_NOW);
	CHECK_EQ_INT(p.path, NODE_PATH_DIRECT);
	CHECK(!node_peer_wants_resync(&p, 300000));
}

static void test_node_peer_adopts_working_path_at_start(void)
{
	struct node_peer p;
	struct addr ep = ip("198.51.100.20", 40000);
	struct node_peer_obs o;

	node_peer_init(&p, key, 0);
	o = obs(NULL, 0, WALL0);
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, 0, true), NODE_PEER_NOTHING);
	CHECK_EQ_INT(p.path, NODE_PATH_NONE);
	o = obs(&ep, WALL0 - 30, WALL0);
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, 250, true), NODE_PEER_UP_NOW);
	CHECK_EQ_INT(p.path, NODE_PATH_DIRECT);
}

static void test_node_peer_ipv6_and_no_candidate(void)
{
	struct node_peer p;
	struct proto_punch m = punch_for("2001:db8::20");
	struct addr own = ip("203.0.113.5", 51820);
	struct addr local[] = { ip("203.0.113.5", 0), ip("2001:db8:5::5", 0) };
	struct node_peer_self self = { .mapping = own, .local = local, .n_local = 2 };
	struct node_peer_obs o = obs(NULL, 0, WALL0);

	node_peer_init(&p, key, 0);
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, &self, &o, 0), NODE_PEER_WRITE);
	CHECK_EQ_INT(p.n_cands, 1);
	CHECK_EQ_INT(p.cands[0].path, NODE_PATH_IPV6);
	/* IPv6 needs a global IPv6 address on our side too: without one, nothing to try. */
	node_peer_init(&p, key, 0);
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, SELF(own), &o, 0), NODE_PEER_NOTHING);
	CHECK_EQ_INT(p.n_cands, 0);

	memset(&m.peer_public, 0, sizeof(m.peer_public));
	node_peer_init(&p, key, 0);
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, SELF(own), &o, 0), NODE_PEER_NOTHING);
	CHECK(node_peer_candidate(&p) == NULL);
	CHECK(!node_peer_attempt_open(&p));
}

/*
 * Two hosts behind one NAT: the second side (PUNCH without ACK) of a LAN candidate writes the
 * endpoint without the kick, since the first side's initiation comes straight over the LAN;
 * kicking too would cross it. No handshake by the due time: kick then.
 */
static void test_node_peer_second_side_lan_kicks_late(void)
{
	struct node_peer p;
	struct proto_punch m = punch_for("198.51.100.20");
	struct addr own = ip("198.51.100.20", 51820);
	struct node_peer_self self = { .mapping = own, .rnd = 0 };
	struct node_peer_obs o = obs(NULL, 0, WALL0);
	uint64_t t = 5000, due;

	m.flags = 0;
	node_peer_init(&p, key, 0);
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, &self, &o, t), NODE_PEER_WRITE_QUIET);
	CHECK(addr_equal(&node_peer_candidate(&p)->addr, &m.lan[0]));
	CHECK(node_peer_attempt_open(&p));
	due = node_peer_kick_due(&p);
	CHECK_EQ_INT(due, t + NODE_PEER_KICK_WAIT_MS);
	/* Before it is due: wait (the device shows the endpoint, keepalive 0, no handshake). */
	o = obs(&m.lan[0], 0, WALL0);
	o.keepalive_s = 0;
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, due - 1, true), NODE_PEER_NOTHING);
	/* Due, and no handshake came: kick now, once. */
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, due, true), NODE_PEER_KICK);
	CHECK_EQ_INT(node_peer_kick_due(&p), UINT64_MAX);
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, due + 250, true), NODE_PEER_NOTHING);
	/* The candidate's 6 s run from the kick, so WireGuard's 5 s retry still fits. */
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, due + NODE_PEER_ATTEMPT_MS - 1, true),
		     NODE_PEER_NOTHING);
	CHECK_EQ_INT(p.cur, 0);
	/* The next candidate (not from a PUNCH: no order to rely on) is kicked at once. */
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, due + NODE_PEER_ATTEMPT_MS, true), NODE_PEER_WRITE);
	CHECK_EQ_INT(p.cur, 1);
	CHECK_EQ_INT(node_peer_kick_due(&p), UINT64_MAX);
}

/* The first side's initiation arrives during the wait: no kick, only the keepalive. */
static void test_node_peer_second_side_lan_handshake_skips_kick(void)
{
	struct node_peer p;
	struct proto_punch m = punch_for("198.51.100.20");
	struct addr own = ip("198.51.100.20", 51820);
	struct node_peer_self self = { .mapping = own, .rnd = 1000 };
	struct node_peer_obs o = obs(NULL, WALL0 - 500, WALL0);
	uint64_t due;

	m.flags = 0;
	node_peer_init(&p, key, 0);
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, &self, &o, 0), NODE_PEER_WRITE_QUIET);
	due = node_peer_kick_due(&p);
	/* rnd adds jitter within NODE_PEER_KICK_JITTER_MS. */
	CHECK_EQ_INT(due, NODE_PEER_KICK_WAIT_MS + 1000 % (NODE_PEER_KICK_JITTER_MS + 1));
	o = obs(&m.lan[0], WALL0 + 1, WALL0 + 1);
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, 20, true), NODE_PEER_UP_KEEPALIVE);
	CHECK_EQ_INT(p.state, NODE_PEER_UP);
	CHECK_EQ_INT(p.path, NODE_PATH_LAN);
	CHECK_EQ_INT(node_peer_kick_due(&p), UINT64_MAX);
	/* Past the old due time: nothing more (no kick after all). */
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, due + 1, true), NODE_PEER_NOTHING);

	/* The largest jitter stays in range. */
	self.rnd = UINT32_MAX;
	node_peer_init(&p, key, 0);
	o = obs(NULL, 0, WALL0);
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, &self, &o, 0), NODE_PEER_WRITE_QUIET);
	CHECK(node_peer_kick_due(&p) >= NODE_PEER_KICK_WAIT_MS);
	CHECK(node_peer_kick_due(&p) <= NODE_PEER_KICK_WAIT_MS + NODE_PEER_KICK_JITTER_MS);
}

/* A PUNCH that finds the handshake done while our kick waits: up, keepalive owed. */
static void test_node_peer_punch_during_kick_wait(void)
{
	struct node_peer p;
	struct proto_punch m = punch_for("198.51.100.20");
	struct addr own = ip("198.51.100.20", 51820);
	struct node_peer_self self = { .mapping = own };
	struct node_peer_obs o = obs(NULL, 0, WALL0);

	m.flags = 0;
	node_peer_init(&p, key, 0);
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, &self, &o, 0), NODE_PEER_WRITE_QUIET);
	o = obs(&m.lan[0], WALL0 + 1, WALL0 + 1);
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, &self, &o, 50), NODE_PEER_UP_KEEPALIVE);
	CHECK_EQ_INT(p.path, NODE_PATH_LAN);
	CHECK_EQ_INT(node_peer_kick_due(&p), UINT64_MAX);
	/* Once up with the keepalive written, the same PUNCH again writes nothing. */
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, &self, &o, 100), NODE_PEER_NOTHING);

	/* A PUNCH that makes us the first side while the kick waits: kick at once, no wait. */
	node_peer_init(&p, key, 0);
	o = obs(NULL, 0, WALL0);
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, &self, &o, 0), NODE_PEER_WRITE_QUIET);
	m.flags = PROTO_PUNCH_F_ACK;
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, &self, &o, 50), NODE_PEER_WRITE);
	CHECK_EQ_INT(node_peer_kick_due(&p), UINT64_MAX);
}

/*
 * Who kicks at once: the first side always; the second side when its NAT drops the first
 * side's packet (a public candidate behind a NAT: the usual case, where the second side's
 * packet is the one that gets through). Without a NAT the first side's packet arrives: wait.
 */
static void test_node_peer_second_side_kicks_at_once_behind_nat(void)
{
	struct node_peer p;
	struct proto_punch m = punch_for("198.51.100.20");
	struct addr local[2] = { ip("203.0.113.5", 51820), ip("198.51.100.30", 51820) };
	struct node_peer_self self = { .local = local, .n_local = 2 };
	struct node_peer_obs o = obs(NULL, 0, WALL0);

	/* First side, LAN candidate: at once. */
	node_peer_init(&p, key, 0);
	self.mapping = ip("198.51.100.20", 51820);
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, &self, &o, 0), NODE_PEER_WRITE);
	CHECK_EQ_INT(p.cands[p.cur].path, NODE_PATH_LAN);
	CHECK_EQ_INT(node_peer_kick_due(&p), UINT64_MAX);

	/* Second side behind a NAT (mapping not ours), public candidate: at once. */
	m.flags = 0;
	node_peer_init(&p, key, 0);
	self.mapping = ip("198.51.100.40", 51820);
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, &self, &o, 0), NODE_PEER_WRITE);
	CHECK_EQ_INT(p.cands[p.cur].path, NODE_PATH_DIRECT);

	/* Second side with no NAT (our mapping's IP is ours; the port does not matter): wait. */
	node_peer_init(&p, key, 0);
	self.mapping = ip("198.51.100.30", 40000);
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, &self, &o, 0), NODE_PEER_WRITE_QUIET);
	CHECK_EQ_INT(p.cands[p.cur].path, NODE_PATH_DIRECT);

	/* The same as the first side: at once. */
	m.flags = PROTO_PUNCH_F_ACK;
	node_peer_init(&p, key, 0);
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, &self, &o, 0), NODE_PEER_WRITE);

	CHECK(node_peer_no_nat(&local[1], local, 2));
	CHECK(!node_peer_no_nat(&(struct addr){ 0 }, local, 2));
	CHECK(!node_peer_no_nat(&self.mapping, local, 0));
	self.mapping = ip("198.51.100.31", 51820);
	CHECK(!node_peer_no_nat(&self.mapping, local, 2));
}

static void test_node_peer_relay(void)
{
	struct node_peer p;
	struct proto_punch m = punch_for("198.51.100.20");
	struct addr own = ip("203.0.113.5", 51820), relay = ip("198.51.100.1", 52000);
	struct node_peer_obs o = obs(NULL, 0, WALL0);

	/* A direct attempt under way, then RELAY: the relay is the one candidate, kicked. */
	node_peer_init(&p, key, 0);
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, SELF(own), &o, 0), NODE_PEER_WRITE);
	CHECK_EQ_INT(node_peer_on_relay(&p, &relay, false, 0, &o, 100), NODE_PEER_WRITE);
	CHECK(addr_equal(&node_peer_candidate(&p)->addr, &relay));
	CHECK_EQ_INT(node_peer_candidate(&p)->path, NODE_PATH_RELAY);
	/* The handshake comes through the relay: path relay, however it came. */
	o = obs(&relay, WALL0 + 1, WALL0 + 1);
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, 400, true), NODE_PEER_UP_NOW);
	CHECK_EQ_INT(p.path, NODE_PATH_RELAY);
	/* The same RELAY again with the relay working: nothing to write. */
	CHECK_EQ_INT(node_peer_on_relay(&p, &relay, false, 0, &o, 500), NODE_PEER_NOTHING);
	CHECK_EQ_INT(p.path, NODE_PATH_RELAY);
	/* Stale: down, and the relay is forgotten (the next PUNCH or RELAY starts over). */
	o = obs(&relay, WALL0 + 1, WALL0 + 1 + NODE_PEER_STALE_S + 1);
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, 200000, true), NODE_PEER_DOWN);
	CHECK(!addr_is_set(&p.relay));

	/* The second side of a relay writes quietly and kicks only if no handshake came. */
	node_peer_init(&p, key, 0);
	o = obs(NULL, 0, WALL0);
	CHECK_EQ_INT(node_peer_on_relay(&p, &relay, true, 7, &o, 1000), NODE_PEER_WRITE_QUIET);
	CHECK_EQ_INT(node_peer_kick_due(&p), 1000 + NODE_PEER_KICK_WAIT_MS + 7);
	o = obs(&relay, 0, WALL0);
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, 1100, true), NODE_PEER_NOTHING);
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, 1000 + NODE_PEER_KICK_WAIT_MS + 7, true),
		     NODE_PEER_KICK);

	/* A relay whose handshake never comes (bind probes lost): given up after its 6 s, and
	 * forgotten, so the node asks again. */
	node_peer_init(&p, key, 0);
	o = obs(NULL, 0, WALL0);
	CHECK_EQ_INT(node_peer_on_relay(&p, &relay, false, 0, &o, 0), NODE_PEER_WRITE);
	o = obs(&relay, 0, WALL0 + 6);
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, NODE_PEER_ATTEMPT_MS, true), NODE_PEER_GIVE_UP);
	CHECK(!addr_is_set(&p.relay));

	/* A direct path that works is not given up for a RELAY. */
	node_peer_init(&p, key, 0);
	o = obs(NULL, 0, WALL0);
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, SELF(own), &o, 0), NODE_PEER_WRITE);
	o = obs(&m.peer_public, WALL0 + 1, WALL0 + 1);
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, 300, true), NODE_PEER_UP_NOW);
	CHECK_EQ_INT(node_peer_on_relay(&p, &relay, false, 0, &o, 400), NODE_PEER_NOTHING);
	CHECK_EQ_INT(p.path, NODE_PATH_DIRECT);
	CHECK(!addr_is_set(&p.relay));
}

static void test_node_peer_relay_upgrade(void)
{
	struct node_peer p;
	struct proto_punch m = punch_for("198.51.100.20");
	struct addr own = ip("203.0.113.5", 51820), relay = ip("198.51.100.1", 52000);
	struct node_peer_obs o = obs(NULL, 0, WALL0);
	uint64_t t;

	/* Up on the relay at 400 ms. */
	node_peer_init(&p, key, 0);
	CHECK_EQ_INT(node_peer_on_relay(&p, &relay, false, 0, &o, 0), NODE_PEER_WRITE);
	o = obs(&relay, WALL0 + 1, WALL0 + 1);
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, 400, true), NODE_PEER_UP_NOW);
	/* A PUNCH before the first try is due: nothing. */
	CHECK_EQ_INT(node_peer_upgrade(&p, &m, SELF(own), &o, 1000), NODE_PEER_NOTHING);
	CHECK_EQ_INT(p.path, NODE_PATH_RELAY);

	/* Due: the direct candidate is written; WireGuard roams back to the relay: failed, the
	 * relay endpoint again, and the next try waits twice as long. */
	t = NODE_PEER_UPGRADE_FIRST_MS;
	o.rx_bytes = 1000;
	CHECK_EQ_INT(node_peer_upgrade(&p, &m, SELF(own), &o, t), NODE_PEER_WRITE);
	CHECK_EQ_INT(node_peer_candidate(&p)->path, NODE_PATH_DIRECT);
	o.endpoint = m.peer_public;
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, t + 250, true), NODE_PEER_NOTHING);
	o.endpoint = relay;
	o.rx_bytes = 1100;
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, t + 500, true), NODE_PEER_WRITE);
	CHECK(addr_equal(&node_peer_candidate(&p)->addr, &relay));
	CHECK_EQ_INT(p.state, NODE_PEER_UP);
	CHECK_EQ_INT(p.path, NODE_PATH_RELAY);
	CHECK_EQ_INT(node_peer_upgrade(&p, &m, SELF(own), &o, t + 500 + t), NODE_PEER_NOTHING);

	/* Next try: nothing arrives within NODE_PEER_UPGRADE_MS: failed too. */
	t = t + 500 + 2 * NODE_PEER_UPGRADE_FIRST_MS;
	o.endpoint = relay;
	CHECK_EQ_INT(node_peer_upgrade(&p, &m, SELF(own), &o, t), NODE_PEER_WRITE);
	o.endpoint = m.peer_public;
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, t + NODE_PEER_UPGRADE_MS, true), NODE_PEER_WRITE);
	CHECK_EQ_INT(p.path, NODE_PATH_RELAY);

	/* Next: bytes arrive while the endpoint stays direct: up direct, a keepalive for the
	 * other side, and the relay can be given back. */
	t = t + NODE_PEER_UPGRADE_MS + 4 * NODE_PEER_UPGRADE_FIRST_MS;
	o.endpoint = relay; /* the fallback's write */
	CHECK_EQ_INT(node_peer_upgrade(&p, &m, SELF(own), &o, t), NODE_PEER_WRITE);
	o.endpoint = m.peer_public;
	o.rx_bytes += 32;
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, t + 250, true), NODE_PEER_UP_KEEPALIVE);
	CHECK_EQ_INT(p.path, NODE_PATH_DIRECT);
	CHECK(p.relay_done);
	/* Should WireGuard roam back to the relay later, the path says so. */
	o.endpoint = relay;
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, t + 500, true), NODE_PEER_NOTHING);
	CHECK_EQ_INT(p.path, NODE_PATH_RELAY);
}

/* The slots go on from the RELAY, capped, whatever time the failure comes at. */
static void test_node_peer_upgrade_slots_capped(void)
{
	struct node_peer p;
	struct proto_punch m = punch_for("198.51.100.20");
	struct addr own = ip("203.0.113.5", 51820), relay = ip("198.51.100.1", 52000);
	struct node_peer_obs o = obs(NULL, 0, WALL0);
	uint64_t t = 10ull * 3600 * 1000; /* ten hours on: no PUNCH came since */

	node_peer_init(&p, key, 0);
	CHECK_EQ_INT(node_peer_on_relay(&p, &relay, false, 0, &o, 0), NODE_PEER_WRITE);
	o = obs(&relay, WALL0 + 1, WALL0 + 1);
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, 400, true), NODE_PEER_UP_NOW);
	/* Just before the slot, within the early margin: tried. */
	CHECK_EQ_INT(node_peer_upgrade(&p, &m, SELF(own), &o,
				       NODE_PEER_UPGRADE_FIRST_MS - NODE_PEER_UPGRADE_EARLY_MS),
		     NODE_PEER_WRITE);
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, t, true), NODE_PEER_WRITE); /* nothing came */
	CHECK_EQ_INT(p.upgrade_wait_ms, NODE_PEER_UPGRADE_MAX_MS);
	CHECK(p.upgrade_after_ms > t && p.upgrade_after_ms <= t + NODE_PEER_UPGRADE_MAX_MS);
	/* On the grid of slots: 30 s, then 60, 120, 240, 480 s apart, then 600 s. */
	CHECK_EQ_INT((p.upgrade_after_ms - 930000) % NODE_PEER_UPGRADE_MAX_MS, 0);
	/* No timer without upgrade_timer (the node's paths turn it on for a relay on request). */
	CHECK_EQ_INT(node_peer_upgrade_due(&p), UINT64_MAX);
	p.upgrade_timer = true;
	CHECK_EQ_INT(node_peer_upgrade_due(&p), p.upgrade_after_ms);
	CHECK_EQ_INT(node_peer_resync_due(&p), p.upgrade_after_ms);
	node_peer_resync_asked(&p, p.upgrade_after_ms);
	CHECK_EQ_INT(node_peer_upgrade_due(&p), UINT64_MAX);
}

static void test_node_peer_path_names(void)
{
	CHECK(strcmp(node_path_name(NODE_PATH_NONE), "none") == 0);
	CHECK(strcmp(node_path_name(NODE_PATH_LAN), "lan") == 0);
	CHECK(strcmp(node_path_name(NODE_PATH_DIRECT), "direct") == 0);
	CHECK(strcmp(node_path_name(NODE_PATH_IPV6), "ipv6") == 0);
	CHECK(strcmp(node_path_name(NODE_PATH_RELAY), "relay") == 0);
}

/* The peer's NAT rebound under a live session: the PUNCH's new candidate is written, and the
 * session moves there without a new handshake. Packets from the peer arriving at the
 * candidate prove it; packets arriving elsewhere do not. */
static void test_node_peer_live_session_moves_to_candidate(void)
{
	struct node_peer p;
	struct proto_punch m = punch_for("198.51.100.30");
	struct addr own = ip("203.0.113.5", 51820);
	struct addr old = ip("198.51.100.20", 51820), elsewhere = ip("198.51.100.40", 51820);
	struct node_peer_obs o;

	node_peer_init(&p, key, 0);
	o = obs(&old, WALL0 - 10, WALL0);
	o.rx_bytes = 1000;
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, SELF(own), &o, 0), NODE_PEER_WRITE);
	/* Written: same handshake, nothing new received yet. */
	o = obs(&m.peer_public, WALL0 - 10, WALL0);
	o.rx_bytes = 1000;
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, 250, true), NODE_PEER_NOTHING);
	/* WireGuard roamed to a third address: not this candidate's doing. */
	o = obs(&elsewhere, WALL0 - 10, WALL0);
	o.rx_bytes = 1200;
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, 500, true), NODE_PEER_NOTHING);
	CHECK_EQ_INT(p.state, NODE_PEER_TRYING);
	/* The peer's packets arrive at the candidate: up, with the old handshake. */
	o = obs(&m.peer_public, WALL0 - 10, WALL0 + 1);
	o.rx_bytes = 1300;
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, 750, true), NODE_PEER_UP_NOW);
	CHECK_EQ_INT(p.state, NODE_PEER_UP);
	CHECK_EQ_INT(p.path, NODE_PATH_DIRECT);
}

/*
 * The order of issue 8 / rendezvous.md 4.6: LAN (same public IP), one IPv6 when both sides
 * have it (the coordinator's IPv6 mapping, first in the list, before registered ones), the
 * public IPv4 mapping. Unique local IPv6 counts as LAN; global IPv6 never does.
 */
static void test_node_peer_candidate_order(void)
{
	struct addr own = ip("198.51.100.20", 51820);
	struct addr local[] = { ip("203.0.113.5", 0), ip("2001:db8:5::5", 0) };
	struct node_peer_self self = { .mapping = own, .local = local, .n_local = 2 };
	struct node_peer_cand c[NODE_PEER_MAX_CAND];
	struct proto_punch m = punch_for("198.51.100.20");
	uint8_t n;

	m.n_lan = 5;
	m.lan[0] = ip("2001:db8:a::99", 51820); /* the coordinator's IPv6 mapping */
	m.lan[1] = ip("203.0.113.10", 51820);
	m.lan[2] = ip("fd00::10", 51820);
	m.lan[3] = ip("2001:db8:a::10", 51820); /* registered */
	m.lan[4] = ip("2001:db8:a::99", 51820); /* the same again: once */
	n = node_peer_candidates(&m, &self, c);
	CHECK_EQ_INT(n, 4);
	CHECK(addr_equal(&c[0].addr, &m.lan[1]) && c[0].path == NODE_PATH_LAN);
	CHECK(addr_equal(&c[1].addr, &m.lan[2]) && c[1].path == NODE_PATH_LAN);
	CHECK(addr_equal(&c[2].addr, &m.lan[0]) && c[2].path == NODE_PATH_IPV6);
	CHECK(addr_equal(&c[3].addr, &m.peer_public) && c[3].path == NODE_PATH_DIRECT);

	/* Behind another NAT: no LAN; IPv6 then IPv4. */
	self.mapping = ip("198.51.100.99", 51820);
	n = node_peer_candidates(&m, &self, c);
	CHECK_EQ_INT(n, 2);
	CHECK_EQ_INT(c[0].path, NODE_PATH_IPV6);
	CHECK_EQ_INT(c[1].path, NODE_PATH_DIRECT);

	/* We have no global IPv6: IPv4 only (the other side, whose list lacks ours, agrees). */
	self.n_local = 1;
	n = node_peer_candidates(&m, &self, c);
	CHECK_EQ_INT(n, 1);
	CHECK_EQ_INT(c[0].path, NODE_PATH_DIRECT);

	/* An IPv6-only peer (session over IPv6): its public mapping is the IPv6 candidate, even
	 * with registered addresses after it; no IPv4 candidate. */
	self.n_local = 2;
	self.mapping = ip("2001:db8:5::5", 51820);
	m = punch_for("2001:db8:b::2");
	m.n_lan = 1;
	m.lan[0] = ip("2001:db8:b::3", 51820);
	n = node_peer_candidates(&m, &self, c);
	CHECK_EQ_INT(n, 1);
	CHECK(addr_equal(&c[0].addr, &m.peer_public) && c[0].path == NODE_PATH_IPV6);
}

/* The second side of an IPv6 candidate writes without the kick: no NAT drops the first
 * side's initiation (a stateful firewall may, and then the kick comes a moment later). */
static void test_node_peer_ipv6_second_side_waits(void)
{
	struct addr local[] = { ip("203.0.113.5", 0), ip("2001:db8:5::5", 0) };
	struct node_peer_self self = { .mapping = ip("198.51.100.99", 51820),
				       .local = local,
				       .n_local = 2 };
	struct proto_punch m = punch_for("198.51.100.20");
	struct node_peer_obs o = obs(NULL, 0, WALL0);
	struct node_peer p;

	m.flags = 0;
	m.n_lan = 1;
	m.lan[0] = ip("2001:db8:a::10", 51820);
	node_peer_init(&p, key, 0);
	CHECK_EQ_INT(node_peer_on_punch(&p, &m, &self, &o, 1000), NODE_PEER_WRITE_QUIET);
	CHECK_EQ_INT(node_peer_candidate(&p)->path, NODE_PATH_IPV6);
	CHECK_EQ_INT(node_peer_kick_due(&p), 1000 + NODE_PEER_KICK_WAIT_MS);
	o.endpoint = m.lan[0];
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, 1000 + NODE_PEER_KICK_WAIT_MS, true),
		     NODE_PEER_KICK);
	/* No handshake within the attempt: on to the IPv4 mapping, kicked at once. */
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, 1000 + NODE_PEER_KICK_WAIT_MS + NODE_PEER_ATTEMPT_MS,
				       true),
		     NODE_PEER_WRITE);
	CHECK_EQ_INT(node_peer_candidate(&p)->path, NODE_PATH_DIRECT);
	/* Up on IPv6 later (WireGuard roamed there): the path says so. */
	o = obs(&m.lan[0], WALL0, WALL0 + 1);
	CHECK_EQ_INT(node_peer_on_poll(&p, &o, 20000, true), NODE_PEER_UP_NOW);
	CHECK_EQ_INT(p.path, NODE_PATH_IPV6);
}

int main(void)
{
	TAP_RUN(test_node_peer_candidate_order);
	TAP_RUN(test_node_peer_ipv6_second_side_waits);
	TAP_RUN(test_node_peer_public_only_when_other_nat);
	TAP_RUN(test_node_peer_live_session_moves_to_candidate);
	TAP_RUN(test_node_peer_lan_first_behind_same_nat);
	TAP_RUN(test_node_peer_new_handshake_means_up);
	TAP_RUN(test_node_peer_nanoseconds_count_as_newer);
	TAP_RUN(test_node_peer_next_candidate_after_6s_then_none);
	TAP_RUN(test_node_peer_resync_backs_off_and_starts_over_when_up);
	TAP_RUN(test_node_peer_second_candidate_comes_up);
	TAP_RUN(test_node_peer_punch_for_working_endpoint_writes_nothing);
	TAP_RUN(test_node_peer_stale_handshake_means_down_and_resync);
	TAP_RUN(test_node_peer_adopts_working_path_at_start);
	TAP_RUN(test_node_peer_ipv6_and_no_candidate);
	TAP_RUN(test_node_peer_second_side_lan_kicks_late);
	TAP_RUN(test_node_peer_second_side_lan_handshake_skips_kick);
	TAP_RUN(test_node_peer_punch_during_kick_wait);
	TAP_RUN(test_node_peer_second_side_kicks_at_once_behind_nat);
	TAP_RUN(test_node_peer_relay);
	TAP_RUN(test_node_peer_relay_upgrade);
	TAP_RUN(test_node_peer_upgrade_slots_capped);
	TAP_RUN(test_node_peer_path_names);
	return tap_done();
}

// SPDX-License-Identifier: MIT
/*
 * paths: the peer table and PUNCHes merged from several links, with a fake
 * monotonic clock and fake device observations.
 */
#include "wgpunch/paths.h"

#include <string.h>

#include "../tap.h"

#define WALL0 1700000000
#define LINK_A 1
#define LINK_B 2

static const uint8_t key1[KEY_LEN] = { 1 }, key2[KEY_LEN] = { 2 };

static struct addr ip(const char *s)
{
	struct addr a;

	addr_parse(&a, s, false);
	return a;
}

static struct proto_punch punch_for(const uint8_t key[KEY_LEN], const char *pub, uint32_t attempt)
{
	struct proto_punch m;

	memset(&m, 0, sizeof(m));
	m.attempt = attempt;
	memcpy(m.peer_key, key, KEY_LEN);
	m.flags = PROTO_PUNCH_F_ACK;
	m.peer_public = ip(pub);
	m.n_lan = 1;
	m.lan[0] = ip("198.18.0.10:51820");
	return m;
}

/* Our mapping as some coordinator saw it: behind a NAT (not one of our addresses). */
static const struct node_peer_self *self(void)
{
	static struct node_peer_self s;

	s.mapping = ip("198.51.100.1:40000");
	return &s;
}

static struct node_peer_obs obs_none(void)
{
	struct node_peer_obs o;

	memset(&o, 0, sizeof(o));
	o.wall_now_s = WALL0;
	return o;
}

static void table(struct paths *ps, uint64_t now)
{
	uint8_t keys[2][KEY_LEN];

	memcpy(keys[0], key1, KEY_LEN);
	memcpy(keys[1], key2, KEY_LEN);
	paths_init(ps);
	CHECK_EQ_INT(paths_sync(ps, (const uint8_t(*)[KEY_LEN])keys, 2, now), 1);
}

static void test_paths_sync_keeps_state(void)
{
	struct paths ps;
	uint8_t peers[2][KEY_LEN];
	struct proto_punch p = punch_for(key1, "198.51.100.20:40000", 1);
	struct node_peer_obs o = obs_none();
	struct paths_peer *pp;
	enum node_peer_action act;

	table(&ps, 1000);
	CHECK_EQ_INT(paths_on_punch(&ps, LINK_A, &p, self(), &o, 1000, &pp, &act), PATHS_RUN);
	CHECK_EQ_INT(act, NODE_PEER_WRITE);
	/* The same keys again: no change, the attempt survives. */
	memcpy(peers[0], key2, KEY_LEN);
	memcpy(peers[1], key1, KEY_LEN);
	CHECK_EQ_INT(paths_sync(&ps, (const uint8_t(*)[KEY_LEN])peers, 2, 2000), 0);
	pp = paths_find(&ps, key1);
	CHECK(pp != NULL);
	CHECK_EQ_INT(pp->m.state, NODE_PEER_TRYING);
	CHECK_EQ_INT(pp->link_id, LINK_A);
	/* One gone: changed. */
	CHECK_EQ_INT(paths_sync(&ps, (const uint8_t(*)[KEY_LEN])peers, 1, 3000), 1);
	CHECK(paths_find(&ps, key1) == NULL);
	paths_free(&ps);
}

static void test_paths_unknown_peer(void)
{
	struct paths ps;
	uint8_t other[KEY_LEN] = { 7 };
	struct proto_punch p = punch_for(other, "198.51.100.20:40000", 1);
	struct node_peer_obs o = obs_none();
	struct paths_peer *pp;
	enum node_peer_action act;

	table(&ps, 1000);
	CHECK_EQ_INT(paths_on_punch(&ps, LINK_A, &p, self(), &o, 1000, &pp, &act), PATHS_IGNORED);
	CHECK_EQ_INT(ps.counters.punches, 1);
	CHECK_EQ_INT(ps.counters.punches_ignored, 1);
	paths_free(&ps);
	/* An empty table (the device not read yet) ignores everything. */
	paths_init(&ps);
	CHECK_EQ_INT(paths_on_punch(&ps, LINK_A, &p, self(), &o, 1000, &pp, &act), PATHS_IGNORED);
	paths_free(&ps);
}

/* Two coordinators punch the same pair: one attempt, the second PUNCH is only acked. */
static void test_paths_two_links_same_punch(void)
{
	struct paths ps;
	struct proto_punch pa = punch_for(key1, "198.51.100.20:40000", 1);
	struct proto_punch pb = punch_for(key1, "198.51.100.20:40000", 900);
	struct node_peer_obs o = obs_none();
	struct paths_peer *pp;
	enum node_peer_action act;
	uint64_t deadline;

	table(&ps, 1000);
	CHECK_EQ_INT(paths_on_punch(&ps, LINK_A, &pa, self(), &o, 1000, &pp, &act), PATHS_RUN);
	CHECK_EQ_INT(act, NODE_PEER_WRITE);
	deadline = pp->m.deadline_ms;
	act = NODE_PEER_NOTHING;
	CHECK_EQ_INT(paths_on_punch(&ps, LINK_B, &pb, self(), &o, 1100, &pp, &act), PATHS_MERGED);
	CHECK_EQ_INT(act, NODE_PEER_NOTHING);
	/* the attempt was not reset: same deadline, same owner */
	CHECK_EQ_INT(pp->m.deadline_ms, deadline);
	CHECK_EQ_INT(pp->link_id, LINK_A);
	CHECK_EQ_INT(ps.counters.punches, 2);
	CHECK_EQ_INT(ps.counters.punches_merged, 1);
	/* the other peer is its own pair */
	pb = punch_for(key2, "198.51.100.30:40000", 901);
	CHECK_EQ_INT(paths_on_punch(&ps, LINK_B, &pb, self(), &o, 1100, &pp, &act), PATHS_RUN);
	CHECK_EQ_INT(act, NODE_PEER_WRITE);
	paths_free(&ps);
}

/* A PUNCH while an attempt is open: from the same link, or with new candidates, it starts
 * over, as it always did (the coordinator saw the mapping move). */
static void test_paths_punch_while_attempt_open(void)
{
	struct paths ps;
	struct proto_punch p1 = punch_for(key1, "198.51.100.20:40000", 1);
	struct proto_punch p2 = punch_for(key1, "198.51.100.20:40000", 2);
	struct proto_punch moved = punch_for(key1, "198.51.100.20:40123", 3);
	struct node_peer_obs o = obs_none();
	struct paths_peer *pp;
	enum node_peer_action act;

	table(&ps, 1000);
	CHECK_EQ_INT(paths_on_punch(&ps, LINK_A, &p1, self(), &o, 1000, &pp, &act), PATHS_RUN);
	CHECK_EQ_INT(pp->m.deadline_ms, 1000 + NODE_PEER_ATTEMPT_MS);
	CHECK_EQ_INT(paths_on_punch(&ps, LINK_A, &p2, self(), &o, 2000, &pp, &act), PATHS_RUN);
	CHECK_EQ_INT(act, NODE_PEER_WRITE);
	CHECK_EQ_INT(pp->m.deadline_ms, 2000 + NODE_PEER_ATTEMPT_MS);
	/* Another link with other candidates is news, not a copy. */
	CHECK_EQ_INT(paths_on_punch(&ps, LINK_B, &moved, self(), &o, 3000, &pp, &act), PATHS_RUN);
	CHECK_EQ_INT(act, NODE_PEER_WRITE);
	CHECK_EQ_INT(pp->link_id, LINK_B);
	CHECK(addr_equal(&node_peer_candidate(&pp->m)->addr, &moved.peer_public));
	CHECK_EQ_INT(ps.counters.punches_merged, 0);
	/* Once the attempt is over (given up), a copy from the other link is a new attempt. */
	{
		struct node_peer_obs later = obs_none();
		int i;

		for (i = 0; i < 4 && pp->m.state == NODE_PEER_TRYING; i++)
			node_peer_on_poll(&pp->m, &later, 3000 + (uint64_t)(i + 1) * 7000, true);
		CHECK(!node_peer_attempt_open(&pp->m));
		CHECK_EQ_INT(paths_on_punch(&ps, LINK_A, &moved, self(), &o, 40000, &pp, &act),
			     PATHS_RUN);
		CHECK_EQ_INT(act, NODE_PEER_WRITE);
	}
	paths_free(&ps);
}

/* A link that goes down owns no attempt: the other link's PUNCH is then carried out. */
static void test_paths_link_down(void)
{
	struct paths ps;
	struct proto_punch pa = punch_for(key1, "198.51.100.20:40000", 1);
	struct proto_punch pb = punch_for(key1, "198.51.100.20:40000", 900);
	struct node_peer_obs o = obs_none();
	struct paths_peer *pp;
	enum node_peer_action act;

	table(&ps, 1000);
	CHECK_EQ_INT(paths_on_punch(&ps, LINK_A, &pa, self(), &o, 1000, &pp, &act), PATHS_RUN);
	paths_link_down(&ps, LINK_B); /* not the owner: nothing changes */
	CHECK_EQ_INT(pp->link_id, LINK_A);
	paths_link_down(&ps, LINK_A);
	CHECK_EQ_INT(pp->link_id, 0);
	CHECK_EQ_INT(paths_on_punch(&ps, LINK_B, &pb, self(), &o, 1500, &pp, &act), PATHS_RUN);
	CHECK_EQ_INT(act, NODE_PEER_WRITE);
	CHECK_EQ_INT(pp->link_id, LINK_B);
	CHECK_EQ_INT(pp->m.deadline_ms, 1500 + NODE_PEER_ATTEMPT_MS);
	paths_free(&ps);
}

static void test_paths_updates(void)
{
	struct paths ps;
	struct proto_punch p = punch_for(key1, "198.51.100.20:40000", 1);
	struct node_peer_obs o = obs_none();
	struct paths_write u[2];
	struct paths_peer *pp;
	enum node_peer_action act;

	table(&ps, 1000);
	paths_on_punch(&ps, LINK_A, &p, self(), &o, 1000, &pp, &act);
	/* the kick: keepalive 0, then endpoint + keepalive */
	CHECK_EQ_INT(paths_updates(pp, NODE_PEER_WRITE, 25, u), 2);
	CHECK_EQ_INT(u[0].flags, PATHS_W_KEEPALIVE);
	CHECK_EQ_INT(u[0].keepalive_s, 0);
	CHECK_EQ_INT(u[1].flags, PATHS_W_ENDPOINT | PATHS_W_KEEPALIVE);
	CHECK(addr_equal(&u[1].endpoint, &p.peer_public));
	CHECK_EQ_INT(u[1].keepalive_s, 25);
	CHECK(memcmp(u[1].public_key, key1, KEY_LEN) == 0);
	/* quiet: endpoint with keepalive 0 */
	CHECK_EQ_INT(paths_updates(pp, NODE_PEER_WRITE_QUIET, 25, u), 1);
	CHECK_EQ_INT(u[0].keepalive_s, 0);
	CHECK_EQ_INT(u[0].flags, PATHS_W_ENDPOINT | PATHS_W_KEEPALIVE);
	/* the deferred kick: keepalive 0 then N */
	CHECK_EQ_INT(paths_updates(pp, NODE_PEER_KICK, 25, u), 2);
	CHECK_EQ_INT(u[1].flags, PATHS_W_KEEPALIVE);
	CHECK_EQ_INT(u[1].keepalive_s, 25);
	CHECK_EQ_INT(paths_updates(pp, NODE_PEER_GIVE_UP, 25, u), 0);
	paths_free(&ps);
}

static void test_paths_poll_and_resync(void)
{
	struct paths ps;
	struct proto_punch p = punch_for(key1, "198.51.100.20:40000", 1);
	struct node_peer_obs o = obs_none();
	struct proto_register reg;
	struct paths_peer *pp;
	enum node_peer_action act;
	bool early;

	table(&ps, 1000);
	CHECK_EQ_INT(paths_poll_delay(&ps, 1000), PATHS_POLL_SLOW_MS);
	/* Peers without a path want a PUNCH after 2 s. */
	CHECK_EQ_INT(paths_resync_due(&ps), 1000 + NODE_PEER_RESYNC_FIRST_MS);
	CHECK(!paths_resync(&ps, 2000, &early));
	CHECK(paths_resync(&ps, 3000, &early));
	CHECK(early);
	CHECK_EQ_INT(paths_resync_due(&ps), 3000 + 2 * NODE_PEER_RESYNC_FIRST_MS);
	paths_on_punch(&ps, LINK_A, &p, self(), &o, 3500, &pp, &act);
	CHECK_EQ_INT(paths_poll_delay(&ps, 3500), PATHS_POLL_FAST_MS);

	memset(&reg, 0, sizeof(reg));
	paths_fill_register(&ps, &reg);
	CHECK_EQ_INT(reg.n_peers, 2);
	CHECK(reg.peers[0] == key_fingerprint(key1));
	CHECK(reg.page == 0 && reg.n_pages == 1); /* two peers fit one page */
	paths_free(&ps);
}

/* The engine reads no clock: a wall-clock jump in the observations that leaves WireGuard's
 * handshake time as it was changes no monotonic deadline. */
static void test_paths_wall_clock_jump(void)
{
	struct paths a, b;
	struct proto_punch p = punch_for(key1, "198.51.100.20:40000", 1);
	struct node_peer_obs o = obs_none(), jumped = obs_none();
	struct paths_peer *pa, *pb;
	enum node_peer_action act_a, act_b;

	table(&a, 1000);
	table(&b, 1000);
	jumped.wall_now_s -= 3600;
	paths_on_punch(&a, LINK_A, &p, self(), &o, 1000, &pa, &act_a);
	paths_on_punch(&b, LINK_A, &p, self(), &jumped, 1000, &pb, &act_b);
	CHECK_EQ_INT(act_a, act_b);
	CHECK_EQ_INT(pa->m.deadline_ms, pb->m.deadline_ms);
	CHECK_EQ_INT(paths_poll_delay(&a, 1200), paths_poll_delay(&b, 1200));
	CHECK_EQ_INT(paths_resync_due(&a), paths_resync_due(&b));
	paths_free(&a);
	paths_free(&b);
}

/* A large interface: every peer is registered, in sorted pages of PROTO_MAX_PEERS, and a
 * peer is found among thousands (the table keeps an index; see bench-peers for the cost). */
static void test_paths_large_interface_pages(void)
{
	enum { N = 250 };
	static uint8_t keys[N][KEY_LEN];
	struct proto_register reg;
	uint64_t seen[N], prev = 0;
	struct paths ps;
	size_t i, got = 0;
	uint16_t page;

	for (i = 0; i < N; i++) {
		memset(keys[i], 0, KEY_LEN);
		keys[i][0] = (uint8_t)i;
		keys[i][1] = (uint8_t)(i >> 8);
		keys[i][31] = 0x5a;
	}
	paths_init(&ps);
	CHECK_EQ_INT(paths_sync(&ps, (const uint8_t(*)[KEY_LEN])keys, N, 1000), 1);
	for (page = 0; page < 3; page++) {
		memset(&reg, 0, sizeof(reg));
		reg.page = page;
		paths_fill_register(&ps, &reg);
		CHECK_EQ_INT(reg.n_pages, 3);
		CHECK_EQ_INT(reg.page, page);
		CHECK_EQ_INT(reg.n_peers, page < 2 ? PROTO_MAX_PEERS : N - 2 * PROTO_MAX_PEERS);
		for (i = 0; i < reg.n_peers && got < N; i++) {
			/* sorted across pages, so the coordinator can put them together */
			CHECK(got == 0 || reg.peers[i] > prev);
			prev = reg.peers[i];
			seen[got++] = reg.peers[i];
		}
	}
	CHECK_EQ_INT(got, N);
	for (i = 0; i < N; i++) {
		size_t j;
		bool in = false;

		for (j = 0; j < got && !in; j++)
			in = seen[j] == key_fingerprint(keys[i]);
		CHECK(in);
		CHECK(paths_find(&ps, keys[i]) == &ps.peers[i]);
	}
	/* Peers removed in the middle: the rest keep their state and are still found. */
	ps.peers[200].m.path = NODE_PATH_DIRECT;
	CHECK_EQ_INT(paths_sync(&ps, (const uint8_t(*)[KEY_LEN])keys + 100, N - 100, 2000), 1);
	CHECK(paths_find(&ps, keys[200]) == &ps.peers[100]);
	CHECK_EQ_INT(ps.peers[100].m.path, NODE_PATH_DIRECT);
	CHECK(paths_find(&ps, keys[50]) == NULL);
	paths_free(&ps);
}

/* ---- reasons ---- */

static const struct paths_links_view links_up = { .n_up = 1 };
static const struct paths_links_view links_down = { .n_up = 0 };

static enum paths_reason why(const struct paths_peer *p, const struct paths_links_view *v,
			     uint64_t now)
{
	struct paths_explain ex;

	return paths_explain(p, v, now, &ex);
}

/* key1 punched at t, then its only candidate's time runs out without a handshake. */
static struct paths_peer *gave_up(struct paths *ps, uint64_t t)
{
	struct proto_punch p = punch_for(key1, "198.51.100.20:40000", 1);
	struct node_peer_obs o = obs_none();
	struct paths_peer *pp;
	enum node_peer_action act;

	paths_on_punch(ps, LINK_A, &p, self(), &o, t, &pp, &act);
	CHECK_EQ_INT(node_peer_on_poll(&pp->m, &o, t + NODE_PEER_ATTEMPT_MS, true),
		     NODE_PEER_GIVE_UP);
	return pp;
}

static void test_reason_no_coordinator(void)
{
	struct paths ps;
	struct paths_peer *pp;

	table(&ps, 1000);
	CHECK_EQ_INT(why(&ps.peers[0], &links_down, 1000), PATHS_REASON_NO_COORDINATOR);
	CHECK_EQ_INT(why(&ps.peers[0], &links_down, 100000), PATHS_REASON_NO_COORDINATOR);
	/* Failed, then the sessions went down: the coordinators are what to fix first. */
	pp = gave_up(&ps, 2000);
	CHECK_EQ_INT(why(pp, &links_down, 9000), PATHS_REASON_NO_COORDINATOR);
	CHECK(strcmp(paths_reason_name(PATHS_REASON_NO_COORDINATOR), "no_coordinator") == 0);
	CHECK(strcmp(paths_reason_text(PATHS_REASON_NO_COORDINATOR),
		     "no coordinator session is up") == 0);
	paths_free(&ps);
}

static void test_reason_peer_not_at_coordinator(void)
{
	struct paths ps;
	struct paths_explain ex;
	struct paths_peer *pp;
	bool early;

	table(&ps, 1000);
	/* New: the coordinator has not had the time to punch yet. */
	CHECK_EQ_INT(why(&ps.peers[0], &links_up, 1000 + PATHS_FIRST_PUNCH_MS - 1),
		     PATHS_REASON_WAITING);
	CHECK_EQ_INT(paths_explain(&ps.peers[0], &links_up, 1000 + PATHS_FIRST_PUNCH_MS, &ex),
		     PATHS_REASON_PEER_UNKNOWN);
	CHECK(ex.cand == NULL);
	CHECK(strcmp(paths_reason_name(ex.reason), "peer_not_at_coordinator") == 0);
	/* The text says both possibilities, and that the node cannot tell them apart. */
	CHECK(strstr(paths_reason_text(ex.reason), "not registered") != NULL);
	CHECK(strstr(paths_reason_text(ex.reason), "does not list this node") != NULL);
	CHECK(strstr(paths_reason_text(ex.reason), "cannot tell which") != NULL);

	/* Punched once and failed; a RESYNC asked afterwards gets no answer: gone since. */
	pp = gave_up(&ps, 20000);
	CHECK(paths_resync(&ps, 20000 + NODE_PEER_ATTEMPT_MS + NODE_PEER_RESYNC_FIRST_MS, &early));
	CHECK_EQ_INT(why(pp, &links_up, 20000 + PATHS_UNANSWERED_MS - 1),
		     PATHS_REASON_NO_HANDSHAKE);
	CHECK_EQ_INT(why(pp, &links_up, 20000 + PATHS_UNANSWERED_MS), PATHS_REASON_PEER_UNKNOWN);
	paths_free(&ps);
}

static void test_reason_attempt_running(void)
{
	struct paths ps;
	struct proto_punch p = punch_for(key1, "198.51.100.20:40000", 1);
	struct node_peer_obs o = obs_none();
	struct paths_explain ex;
	struct paths_peer *pp;
	enum node_peer_action act;
	char buf[ADDR_STRLEN];

	table(&ps, 1000);
	paths_on_punch(&ps, LINK_A, &p, self(), &o, 2000, &pp, &act);
	CHECK_EQ_INT(paths_explain(pp, &links_up, 5000, &ex), PATHS_REASON_ATTEMPT);
	CHECK_EQ_INT(ex.since_ms, 3000);
	CHECK(ex.cand != NULL);
	CHECK_EQ_INT(ex.cand_no, 1);
	CHECK_EQ_INT(ex.n_cands, 1);
	CHECK(ex.cand && strcmp(addr_format(&ex.cand->addr, buf), "198.51.100.20:40000") == 0);
	CHECK(ex.cand && ex.cand->path == NODE_PATH_DIRECT);
	/* An attempt under way is what is happening, sessions or not. */
	CHECK_EQ_INT(why(pp, &links_down, 5000), PATHS_REASON_ATTEMPT);
	CHECK(strcmp(paths_reason_name(PATHS_REASON_ATTEMPT), "attempt_running") == 0);
	paths_free(&ps);
}

static void test_reason_no_handshake_and_relay(void)
{
	const struct paths_links_view per_dest_off = { .n_up = 1, .per_destination = true };
	const struct paths_links_view per_dest_on = { .n_up = 1,
						      .per_destination = true,
						      .relay = true };
	struct paths ps;
	struct paths_explain ex;
	struct paths_peer *pp;

	table(&ps, 1000);
	pp = gave_up(&ps, 2000);
	CHECK_EQ_INT(paths_explain(pp, &links_up, 9000, &ex), PATHS_REASON_NO_HANDSHAKE);
	CHECK(ex.cand != NULL); /* the last one tried */
	CHECK_EQ_INT(ex.n_cands, 1);
	CHECK(strcmp(paths_reason_name(ex.reason), "no_handshake") == 0);
	/* Our NAT maps per destination: a relay would be needed, and the text says which. */
	CHECK_EQ_INT(why(pp, &per_dest_off, 9000), PATHS_REASON_RELAY_OFF);
	CHECK(strcmp(paths_reason_name(PATHS_REASON_RELAY_OFF), "per_destination_relay_off") == 0);
	CHECK(strstr(paths_reason_text(PATHS_REASON_RELAY_OFF), "relay = no") != NULL);
	CHECK_EQ_INT(why(pp, &per_dest_on, 9000), PATHS_REASON_NO_RELAY);
	CHECK(strcmp(paths_reason_name(PATHS_REASON_NO_RELAY), "per_destination_no_relay") == 0);
	CHECK(strstr(paths_reason_text(PATHS_REASON_NO_RELAY), "no relay was offered") !=
	      NULL);
	paths_free(&ps);
}

static void test_reason_connected_then_lost(void)
{
	struct paths ps;
	struct proto_punch p = punch_for(key1, "198.51.100.20:40000", 1);
	struct node_peer_obs o = obs_none();
	struct paths_explain ex;
	struct paths_peer *pp;
	enum node_peer_action act;

	table(&ps, 1000);
	paths_on_punch(&ps, LINK_A, &p, self(), &o, 2000, &pp, &act);
	o.endpoint = p.peer_public;
	o.keepalive_s = 25;
	o.handshake_s = WALL0;
	CHECK_EQ_INT(node_peer_on_poll(&pp->m, &o, 2500, true), NODE_PEER_UP_NOW);
	/* Connected: no reason, even with every session down. */
	CHECK_EQ_INT(paths_explain(pp, &links_up, 3000, &ex), PATHS_REASON_NONE);
	CHECK(ex.cand == NULL);
	CHECK_EQ_INT(why(pp, &links_down, 3000), PATHS_REASON_NONE);
	/* No handshake for longer than REJECT_AFTER_TIME: the path went stale. */
	o.wall_now_s = WALL0 + NODE_PEER_STALE_S + 1;
	CHECK_EQ_INT(node_peer_on_poll(&pp->m, &o, 200000, true), NODE_PEER_DOWN);
	CHECK_EQ_INT(why(pp, &links_up, 200000), PATHS_REASON_PATH_LOST);
	CHECK(strcmp(paths_reason_name(PATHS_REASON_PATH_LOST), "path_lost") == 0);
	/* A new PUNCH starts an attempt: that is the reason now, not the lost path. */
	paths_on_punch(&ps, LINK_A, &p, self(), &o, 201000, &pp, &act);
	CHECK_EQ_INT(why(pp, &links_up, 201000), PATHS_REASON_ATTEMPT);
	paths_free(&ps);
}

/* Every reason has a distinct stable name and a text. */
static void test_reason_names(void)
{
	for (int i = 0; i < PATHS_REASON_COUNT; i++) {
		CHECK(strcmp(paths_reason_name((enum paths_reason)i), "unknown") != 0);
		CHECK(strcmp(paths_reason_text((enum paths_reason)i), "unknown") != 0);
		for (int j = 0; j < i; j++)
			CHECK(strcmp(paths_reason_name((enum paths_reason)i),
				     paths_reason_name((enum paths_reason)j)) != 0);
	}
}

/* A table with key1 only: what one side of a relayed pair has. */
static void table1(struct paths *ps, uint64_t now)
{
	paths_init(ps);
	CHECK_EQ_INT(paths_sync(ps, &key1, 1, now), 1);
}

static struct proto_relay relay_msg(uint8_t flags)
{
	struct proto_relay r;

	memset(&r, 0, sizeof(r));
	r.attempt = 9;
	memcpy(r.peer_key, key1, KEY_LEN);
	r.flags = flags;
	r.relay = ip("198.51.100.1:52000");
	return r;
}

/* Up through the relay at now (WireGuard roamed to it, a handshake through it). */
static void up_on_relay(struct paths *ps, const struct proto_relay *r, uint64_t now)
{
	struct node_peer_obs o = obs_none();
	enum node_peer_action act;

	o.endpoint = r->relay;
	o.handshake_s = WALL0 + 1;
	o.wall_now_s = WALL0 + 1;
	o.rx_bytes = 1000;
	act = node_peer_on_poll(&ps->peers[0].m, &o, now, true);
	/* UP_KEEPALIVE for the second side, whose quiet write waited for this handshake. */
	CHECK(act == NODE_PEER_UP_NOW || act == NODE_PEER_UP_KEEPALIVE);
	CHECK_EQ_INT(ps->peers[0].m.path, NODE_PATH_RELAY);
}

/* The device of a side trying the direct candidate: the endpoint stays on it, rx as given. */
static struct node_peer_obs obs_at(const struct addr *ep, uint64_t rx)
{
	struct node_peer_obs o = obs_none();

	o.endpoint = *ep;
	o.handshake_s = WALL0 + 1;
	o.wall_now_s = WALL0 + 2;
	o.rx_bytes = rx;
	return o;
}

/*
 * Two sides of a relay given on request, each with its upgrade timer. The slots count from
 * the RELAY, which both get within milliseconds: the first side's RESYNC brings a PUNCH that
 * the other takes for its own slot (NODE_PEER_UPGRADE_EARLY_MS), so both try at once and
 * keep one schedule after a failed try, a missed slot, and until the try that works.
 */
static void test_paths_upgrade_timer_both_sides(void)
{
	struct paths x, y;
	struct proto_relay rx = relay_msg(0), ry = relay_msg(PROTO_RELAY_F_SECOND);
	struct proto_punch px = punch_for(key1, "198.51.100.20:51820", 5);
	struct proto_punch py = punch_for(key1, "198.51.100.30:51820", 5);
	struct node_peer_obs o = obs_none();
	struct paths_peer *pp;
	enum node_peer_action act;
	uint64_t slot = 1000 + NODE_PEER_UPGRADE_FIRST_MS;
	bool early;

	py.flags = 0; /* y is the second side of the coordinator's punches */
	table1(&x, 0);
	table1(&y, 0);
	CHECK(paths_on_relay(&x, LINK_A, &rx, 0, &o, 1000, &act) != NULL);
	CHECK_EQ_INT(act, NODE_PEER_WRITE);
	CHECK(paths_on_relay(&y, LINK_A, &ry, 0, &o, 1004, &act) != NULL);
	CHECK_EQ_INT(act, NODE_PEER_WRITE_QUIET);
	up_on_relay(&x, &rx, 1300);
	up_on_relay(&y, &ry, 1304);
	CHECK_EQ_INT(paths_resync_due(&x), slot);
	CHECK_EQ_INT(paths_resync_due(&y), slot + 4);
	CHECK(!paths_resync(&x, slot - 1, &early));

	/* x's slot: it asks, now; and only once. */
	CHECK(paths_resync(&x, slot, &early));
	CHECK(early);
	CHECK_EQ_INT(x.counters.upgrades_asked, 1);
	CHECK_EQ_INT(paths_resync_due(&x), UINT64_MAX);
	/* The PUNCH for x (first), then for y (second), before y's own slot. */
	o = obs_at(&rx.relay, 1000);
	CHECK_EQ_INT(paths_on_punch(&x, LINK_A, &px, self(), &o, slot + 2, &pp, &act), PATHS_RUN);
	CHECK_EQ_INT(act, NODE_PEER_WRITE);
	CHECK(addr_equal(&node_peer_candidate(&pp->m)->addr, &px.peer_public));
	o = obs_at(&ry.relay, 1000);
	CHECK_EQ_INT(paths_on_punch(&y, LINK_A, &py, self(), &o, slot + 3, &pp, &act), PATHS_RUN);
	CHECK_EQ_INT(act, NODE_PEER_WRITE);
	CHECK_EQ_INT(x.counters.upgrades_tried, 1);
	CHECK_EQ_INT(y.counters.upgrades_tried, 1);
	/* y's slot passes while it tries: it asks for nothing. */
	CHECK_EQ_INT(paths_resync_due(&y), UINT64_MAX);
	/* The PUNCH y's RESYNC would have brought: acked only, the try goes on. */
	o = obs_at(&px.peer_public, 1000);
	CHECK_EQ_INT(paths_on_punch(&x, LINK_A, &px, self(), &o, slot + 10, &pp, &act),
		     PATHS_MERGED);

	/* Nothing comes direct: both go back to the relay, and both schedule the same slot. */
	o = obs_at(&px.peer_public, 1000);
	CHECK_EQ_INT(node_peer_on_poll(&x.peers[0].m, &o, slot + 2 + NODE_PEER_UPGRADE_MS, true),
		     NODE_PEER_WRITE);
	o = obs_at(&py.peer_public, 1000);
	CHECK_EQ_INT(node_peer_on_poll(&y.peers[0].m, &o, slot + 3 + NODE_PEER_UPGRADE_MS, true),
		     NODE_PEER_WRITE);
	CHECK_EQ_INT(x.peers[0].m.path, NODE_PATH_RELAY);
	CHECK(addr_equal(&node_peer_candidate(&x.peers[0].m)->addr, &rx.relay));
	slot += 2 * NODE_PEER_UPGRADE_FIRST_MS;
	CHECK_EQ_INT(paths_resync_due(&x), slot);
	CHECK_EQ_INT(paths_resync_due(&y), slot + 4);

	/* A slot whose PUNCH never comes: skipped after NODE_PEER_UPGRADE_MISS_MS, on both. */
	CHECK(paths_resync(&x, slot, &early));
	CHECK(paths_resync(&y, slot + 4, &early));
	o = obs_at(&rx.relay, 1000);
	CHECK_EQ_INT(node_peer_on_poll(&x.peers[0].m, &o, slot + NODE_PEER_UPGRADE_MISS_MS, true),
		     NODE_PEER_NOTHING);
	o = obs_at(&ry.relay, 1000);
	CHECK_EQ_INT(
		node_peer_on_poll(&y.peers[0].m, &o, slot + 4 + NODE_PEER_UPGRADE_MISS_MS, true),
		NODE_PEER_NOTHING);
	slot += 4 * NODE_PEER_UPGRADE_FIRST_MS;
	CHECK_EQ_INT(paths_resync_due(&x), slot);
	CHECK_EQ_INT(paths_resync_due(&y), slot + 4);

	/* The next slot's try works: bytes come while each endpoint stays direct. */
	CHECK(paths_resync(&x, slot, &early));
	o = obs_at(&rx.relay, 1000);
	CHECK_EQ_INT(paths_on_punch(&x, LINK_A, &px, self(), &o, slot + 2, &pp, &act), PATHS_RUN);
	CHECK_EQ_INT(act, NODE_PEER_WRITE);
	o = obs_at(&ry.relay, 1000);
	CHECK_EQ_INT(paths_on_punch(&y, LINK_A, &py, self(), &o, slot + 3, &pp, &act), PATHS_RUN);
	CHECK_EQ_INT(act, NODE_PEER_WRITE);
	o = obs_at(&px.peer_public, 1032);
	CHECK_EQ_INT(node_peer_on_poll(&x.peers[0].m, &o, slot + 250, true),
		     NODE_PEER_UP_KEEPALIVE);
	o = obs_at(&py.peer_public, 1064);
	CHECK_EQ_INT(node_peer_on_poll(&y.peers[0].m, &o, slot + 251, true),
		     NODE_PEER_UP_KEEPALIVE);
	CHECK_EQ_INT(x.peers[0].m.path, NODE_PATH_DIRECT);
	CHECK_EQ_INT(y.peers[0].m.path, NODE_PATH_DIRECT);
	CHECK(x.peers[0].m.relay_done && y.peers[0].m.relay_done);
	/* Direct: the timer asks for nothing. */
	CHECK_EQ_INT(paths_resync_due(&x), UINT64_MAX);

	/* A later PUNCH (the peer's NAT rebound) is a punch again, not a relay's: it is
	 * followed, here with a keepalive for the endpoint in use. */
	CHECK_EQ_INT(x.counters.punches_on_relay, 1); /* the one at slot + 10 above */
	o = obs_at(&px.peer_public, 2000);
	CHECK_EQ_INT(paths_on_punch(&x, LINK_A, &px, self(), &o, slot + 60000, &pp, &act),
		     PATHS_RUN);
	CHECK_EQ_INT(act, NODE_PEER_NUDGE);
	CHECK_EQ_INT(x.counters.punches_on_relay, 1);
	CHECK(!addr_is_set(&x.peers[0].m.relay)); /* closed: not taken for one in use again */
	/* Another candidate that fails: the peer has no path, and the next PUNCH is run. */
	px.peer_public = ip("198.51.100.21:51820");
	CHECK_EQ_INT(paths_on_punch(&x, LINK_A, &px, self(), &o, slot + 70000, &pp, &act),
		     PATHS_RUN);
	CHECK_EQ_INT(act, NODE_PEER_WRITE);
	CHECK_EQ_INT(
		node_peer_on_poll(&x.peers[0].m, &o, slot + 70000 + NODE_PEER_ATTEMPT_MS, true),
		NODE_PEER_GIVE_UP);
	CHECK_EQ_INT(paths_on_punch(&x, LINK_A, &px, self(), &o, slot + 80000, &pp, &act),
		     PATHS_RUN);
	CHECK_EQ_INT(act, NODE_PEER_WRITE);
	paths_free(&x);
	paths_free(&y);
}

/* A relay given at once (no direct path can work): no timer; a PUNCH in a slot still tries. */
static void test_paths_upgrade_no_timer_at_once(void)
{
	struct paths x;
	struct proto_relay r = relay_msg(PROTO_RELAY_F_AT_ONCE);
	struct proto_punch p = punch_for(key1, "198.51.100.20:51820", 5);
	struct node_peer_obs o = obs_none();
	struct paths_peer *pp;
	enum node_peer_action act;
	bool early;

	table1(&x, 0);
	CHECK(paths_on_relay(&x, LINK_A, &r, 0, &o, 1000, &act) != NULL);
	up_on_relay(&x, &r, 1300);
	CHECK_EQ_INT(paths_resync_due(&x), UINT64_MAX);
	CHECK(!paths_resync(&x, 1000 + 10 * NODE_PEER_UPGRADE_FIRST_MS, &early));
	CHECK_EQ_INT(x.counters.upgrades_asked, 0);
	o = obs_at(&r.relay, 1000);
	CHECK_EQ_INT(paths_on_punch(&x, LINK_A, &p, self(), &o, 1000 + NODE_PEER_UPGRADE_FIRST_MS,
				    &pp, &act),
		     PATHS_RUN);
	CHECK_EQ_INT(act, NODE_PEER_WRITE);
	paths_free(&x);
}

int main(void)
{
	TAP_RUN(test_paths_sync_keeps_state);
	TAP_RUN(test_paths_unknown_peer);
	TAP_RUN(test_paths_two_links_same_punch);
	TAP_RUN(test_paths_punch_while_attempt_open);
	TAP_RUN(test_paths_link_down);
	TAP_RUN(test_paths_updates);
	TAP_RUN(test_paths_poll_and_resync);
	TAP_RUN(test_paths_upgrade_timer_both_sides);
	TAP_RUN(test_paths_upgrade_no_timer_at_once);
	TAP_RUN(test_paths_wall_clock_jump);
	TAP_RUN(test_paths_large_interface_pages);
	TAP_RUN(test_reason_no_coordinator);
	TAP_RUN(test_reason_peer_not_at_coordinator);
	TAP_RUN(test_reason_attempt_running);
	TAP_RUN(test_reason_no_handshake_and_relay);
	TAP_RUN(test_reason_connected_then_lost);
	TAP_RUN(test_reason_names);
	return tap_done();
}

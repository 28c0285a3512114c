/* SPDX-License-Identifier: MIT */
/*
 * test-coord-state - a node record of the state file: what goes in comes out (session,
 * addresses, peers, LAN, IPv6 mapping, timestamp), the registry gets the node back under its
 * own index, and every malformed record (each truncation, a trailing byte, a bad field) is
 * refused.
 */
#include "wgpunch/coord_state.h"

#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "../tap.h"

static void make_node(struct registry *r, struct reg_node **out)
{
	uint8_t key[KEY_LEN];
	uint64_t peers[3] = { 30, 10, 20 };
	struct addr lan[2], v6;
	struct reg_node *n;

	memset(key, 0x5a, sizeof(key));
	CHECK_EQ_INT(registry_add(r, key, 1000, &n), 0);
	CHECK_EQ_INT(registry_assign_index(r, n, NULL, NULL), 0);
	n->remote_idx = 0x01020304;
	n->send_counter = 77;
	randombytes_buf(n->send_key, sizeof(n->send_key));
	randombytes_buf(n->recv_key, sizeof(n->recv_key));
	randombytes_buf(n->probe_key, sizeof(n->probe_key));
	session_replay_commit(&n->replay, 41);
	n->probe_seq[0] = 5;
	n->probe_seq[1] = 6;
	addr_parse(&lan[0], "192.168.1.10:51820", false);
	addr_parse(&lan[1], "[fd00::10]:51820", false);
	registry_addr_pack(&n->session_addr, &lan[0]);
	registry_addr_pack(&n->mapping[0], &lan[0]);
	n->mapping[1] = n->mapping[0];
	n->mapping[1].port = 4000;
	n->filter_addr_hash = registry_addr_hash(&n->session_addr);
	n->filter = 2;
	n->filter_state = REG_FILTER_DONE;
	n->reg_flags = 1;
	n->registered = true;
	n->wg_port = 51820;
	n->sock = 1;
	CHECK_EQ_INT(registry_set_peers(n, peers, 3), 1);
	CHECK_EQ_INT(registry_set_lan(n, lan, 2), 1);
	addr_parse(&v6, "[2001:db8::1]:51820", false);
	CHECK_EQ_INT(registry_set_mapping6(n, &v6), 1);
	*out = n;
}

static void test_coord_state_round_trip(void)
{
	struct registry r1, r2;
	struct reg_node *n, *m;
	struct coord_state_node s;
	uint8_t buf[4096], ts[12];
	struct addr lan[4], v6a, v6b;
	ssize_t len;

	memset(ts, 0x11, sizeof(ts));
	CHECK_EQ_INT(registry_init(&r1, 100), 0);
	CHECK_EQ_INT(registry_init(&r2, 100), 0);
	make_node(&r1, &n);
	len = coord_state_encode_node(n, ts, 2500, buf, sizeof(buf));
	CHECK(len > (ssize_t)COORD_STATE_NODE_FIXED);
	CHECK_EQ_INT(coord_state_encode_node(n, ts, 2500, buf, (size_t)len - 1), -ENOSPC);
	CHECK_EQ_INT(coord_state_decode_node(buf, (size_t)len, &s), 0);
	CHECK_EQ_INT(s.age_ms, 2500);
	CHECK(s.has_ts && !memcmp(s.ts, ts, 12));
	CHECK_EQ_INT(coord_state_apply(&r2, &s, 10000, &m), 0);
	CHECK(m && registry_find_index(&r2, n->local_idx) == m);
	CHECK(!memcmp(m->key, n->key, KEY_LEN));
	CHECK_EQ_INT(m->last_seen_ms, 7500);
	CHECK_EQ_INT(m->remote_idx, n->remote_idx);
	CHECK_EQ_INT(m->send_counter, 77);
	CHECK(!memcmp(m->send_key, n->send_key, SESSION_KEY_LEN));
	CHECK(!memcmp(m->recv_key, n->recv_key, SESSION_KEY_LEN));
	CHECK(!memcmp(m->probe_key, n->probe_key, SESSION_KEY_LEN));
	/* DATA counters up to the highest accepted one are refused, later ones taken. */
	CHECK(!session_replay_check(&m->replay, 41));
	CHECK(!session_replay_check(&m->replay, 30));
	CHECK(session_replay_check(&m->replay, 42));
	CHECK_EQ_INT(m->probe_seq[1], 6);
	CHECK(registry_addr_equal(&m->session_addr, &n->session_addr));
	CHECK(registry_addr_equal(&m->mapping[1], &n->mapping[1]));
	CHECK_EQ_INT(m->filter_addr_hash, registry_addr_hash(&n->session_addr));
	CHECK_EQ_INT(m->filter, 2);
	CHECK_EQ_INT(m->filter_state, REG_FILTER_DONE);
	CHECK(m->registered);
	CHECK_EQ_INT(m->wg_port, 51820);
	CHECK_EQ_INT(m->sock, 1);
	CHECK_EQ_INT(m->n_peers, 3);
	CHECK(registry_lists(m, 10) && registry_lists(m, 20) && registry_lists(m, 30));
	CHECK_EQ_INT(registry_get_lan(m, lan, 4), 2);
	CHECK(registry_get_mapping6(m, &v6a) && registry_get_mapping6(n, &v6b));
	CHECK(addr_equal(&v6a, &v6b));
	/* The same key twice: refused, nothing added. */
	CHECK_EQ_INT(coord_state_apply(&r2, &s, 10000, &m), -EEXIST);
	CHECK_EQ_INT(r2.n_nodes, 1);
	registry_destroy(&r1);
	registry_destroy(&r2);
}

static void test_coord_state_malformed_refused(void)
{
	struct registry r;
	struct reg_node *n;
	struct coord_state_node s;
	uint8_t buf[4096], bad[4096];
	ssize_t len;
	int refused = 0;

	CHECK_EQ_INT(registry_init(&r, 100), 0);
	make_node(&r, &n);
	len = coord_state_encode_node(n, NULL, 0, buf, sizeof(buf) - 1);
	CHECK(len > 0);
	for (ssize_t l = 0; l < len; l++)
		refused += coord_state_decode_node(buf, (size_t)l, &s) == -EBADMSG;
	CHECK_EQ_INT(refused, len);
	CHECK_EQ_INT(coord_state_decode_node(buf, (size_t)len + 1, &s), -EBADMSG);
	/* A family no address has, an index of 0, a filter state out of range. */
	memcpy(bad, buf, (size_t)len);
	bad[KEY_LEN + 4 + 4 + 8 + 8 + 3 * SESSION_KEY_LEN + 16 + 4] = 5;
	CHECK_EQ_INT(coord_state_decode_node(bad, (size_t)len, &s), -EBADMSG);
	memcpy(bad, buf, (size_t)len);
	memset(bad + KEY_LEN, 0, 4);
	CHECK_EQ_INT(coord_state_decode_node(bad, (size_t)len, &s), -EBADMSG);
	CHECK_EQ_INT(coord_state_decode_node(buf, (size_t)len, &s), 0);
	registry_destroy(&r);
}

static void test_coord_state_header(void)
{
	struct coord_state_header h = { .version = COORD_STATE_VERSION,
					.written_unix_ms = 1234567,
					.n_nodes = 9 },
				  g;
	uint8_t b[COORD_STATE_HEADER_LEN];

	memset(h.pub, 0x33, KEY_LEN);
	coord_state_header_encode(b, &h);
	CHECK_EQ_INT(coord_state_header_decode(b, &g), 0);
	CHECK_EQ_INT(g.written_unix_ms, 1234567);
	CHECK_EQ_INT(g.n_nodes, 9);
	CHECK(!memcmp(g.pub, h.pub, KEY_LEN));
	b[16] = 2; /* version 2 */
	CHECK_EQ_INT(coord_state_header_decode(b, &g), -EPROTONOSUPPORT);
	b[0] ^= 1;
	CHECK_EQ_INT(coord_state_header_decode(b, &g), -EBADMSG);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	TAP_RUN(test_coord_state_round_trip);
	TAP_RUN(test_coord_state_malformed_refused);
	TAP_RUN(test_coord_state_header);
	return tap_done();
}

/* SPDX-License-Identifier: MIT */
/*
 * state-fill - writes a coordinator state file (docs: include/wgpunch/coord_state.h) for N
 * synthetic registered nodes, so that a real coordinator can be measured with N nodes
 * without N handshakes: a million would take the load generator's single core longer than
 * the nodes' 60 s expiry allows it to keep them refreshed. tests/bench/coord-bench.sh (mode
 * "state") starts the coordinator on the file and reads its RSS and load time.
 *
 * Each node as a fleet's: its own random key and session (indices, keys), 8 peers (its group
 * of 9, as loadgen's), one LAN address (none with --no-lan, as loadgen's nodes), both
 * mappings, a filter result, a handshake timestamp, an own session address 127.a.b.c:port.
 *
 *	state-fill N PRIVATE-KEY-FILE STATE-FILE [--no-lan]
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "wgpunch/addr.h"
#include "wgpunch/key.h"
#include "wgpunch/registry.h"
#include "wgpunch/session.h"
#include "wgpunch/state.h"
#include "wgpunch/ts_table.h"

#define GROUP 9

static void node_addr(struct addr *a, uint32_t i, uint16_t port)
{
	char s[64];

	snprintf(s, sizeof(s), "127.%u.%u.%u:%u", (i >> 16) & 255, (i >> 8) & 255, i & 255, port);
	addr_parse(a, s, false);
}

int main(int argc, char **argv)
{
	uint8_t priv[KEY_LEN], pub[KEY_LEN], tsk[TS_TABLE_KEY_LEN];
	struct registry reg;
	struct ts_table ts;
	uint8_t(*keys)[KEY_LEN];
	char err[128] = "";
	uint32_t n;
	int r;

	bool with_lan = !(argc == 5 && !strcmp(argv[4], "--no-lan"));

	if ((argc != 4 && (argc != 5 || with_lan)) || sodium_init() < 0) {
		fprintf(stderr, "usage: state-fill N PRIVATE-KEY-FILE STATE-FILE [--no-lan]\n");
		return 2;
	}
	n = (uint32_t)strtoul(argv[1], NULL, 10);
	if (n < GROUP || n > (1u << 24) ||
	    key_read_file(argv[2], priv, true, err, sizeof(err)) < 0) {
		fprintf(stderr, "state-fill: N from %d to 2^24 and a wgpunch key file %s\n", GROUP,
			err);
		return 2;
	}
	key_public_from_private(pub, priv);
	keys = malloc((size_t)n * KEY_LEN);
	randombytes_buf(tsk, sizeof(tsk));
	if (!keys || registry_init(&reg, n) < 0 || ts_table_init(&ts, (size_t)n * 2, tsk) < 0) {
		fprintf(stderr, "state-fill: out of memory\n");
		return 1;
	}
	randombytes_buf(keys, (size_t)n * KEY_LEN);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t g0 = i - i % GROUP, np = 0;
		uint64_t peers[GROUP];
		struct reg_node *x;
		struct addr a, lan;
		uint8_t t[12];

		if (registry_add(&reg, keys[i], 1000, &x) < 0 ||
		    registry_assign_index(&reg, x, NULL, NULL) < 0) {
			fprintf(stderr, "state-fill: cannot add node %u\n", i);
			return 1;
		}
		for (uint32_t j = g0; j < g0 + GROUP && j < n; j++)
			if (j != i)
				peers[np++] = key_fingerprint(keys[j]);
		if (registry_set_peers(x, peers, np) < 0)
			return 1;
		node_addr(&lan, i, 51820);
		lan.in4.sin_addr.s_addr = htonl(0xc0a80000u | (i & 0xffff)); /* 192.168.x.y */
		if (with_lan && registry_set_lan(x, &lan, 1) < 0)
			return 1;
		node_addr(&a, i, 40000);
		registry_addr_pack(&x->session_addr, &a);
		node_addr(&a, i, 51820);
		registry_addr_pack(&x->mapping[0], &a);
		x->mapping[1] = x->mapping[0];
		x->filter_addr_hash = registry_addr_hash(&x->session_addr);
		x->filter = 1;
		x->filter_state = REG_FILTER_DONE;
		x->registered = true;
		x->wg_port = 51820;
		x->remote_idx = randombytes_random();
		randombytes_buf(x->send_key, SESSION_KEY_LEN);
		randombytes_buf(x->recv_key, SESSION_KEY_LEN);
		randombytes_buf(x->probe_key, SESSION_KEY_LEN);
		session_tai64n(t, (int64_t)time(NULL), i);
		ts_table_commit(&ts, x->fp, t);
	}
	r = state_save(argv[3], &reg, &ts, priv, pub, 1000);
	registry_destroy(&reg);
	ts_table_destroy(&ts);
	free(keys);
	sodium_memzero(priv, sizeof(priv));
	if (r < 0)
		return 1;
	printf("state-fill: %u nodes in %s\n", n, argv[3]);
	return 0;
}

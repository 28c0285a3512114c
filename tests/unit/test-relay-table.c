// SPDX-License-Identifier: MIT
/*
 * relay_table: port allocation and reuse, pair and port lookups, the bind rule, the
 * forwarding decision and its drops, quotas (ports, relays per node, pps, bps) and the
 * idle timeout, all with a fake clock.
 */
#include "wgpunch/relay_table.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "../tap.h"

static struct addr v4(const char *ip, uint16_t port)
{
	struct addr a;

	memset(&a, 0, sizeof(a));
	a.in4.sin_family = AF_INET;
	a.in4.sin_port = htons(port);
	inet_pton(AF_INET, ip, &a.in4.sin_addr);
	return a;
}

static struct addr v6(const char *ip, uint16_t port)
{
	struct addr a;

	memset(&a, 0, sizeof(a));
	a.in6.sin6_family = AF_INET6;
	a.in6.sin6_port = htons(port);
	inet_pton(AF_INET6, ip, &a.in6.sin6_addr);
	return a;
}

static struct rtab_limits limits(uint16_t lo, uint16_t hi)
{
	struct rtab_limits l;

	memset(&l, 0, sizeof(l));
	l.port_min = lo;
	l.port_max = hi;
	return l;
}

#define FP_A 0x1111111111111111ULL
#define FP_B 0x2222222222222222ULL
#define FP_C 0x3333333333333333ULL

/* A relay for (FP_A, FP_B) with both sides bound; returns its id. */
static uint32_t bound_pair(struct rtab *t, const struct addr *a, const struct addr *b,
			   uint64_t now_ms)
{
	uint32_t id = UINT32_MAX;

	CHECK_EQ_INT(rtab_alloc(t, FP_B, FP_A, now_ms, &id), 0);
	CHECK_EQ_INT(rtab_bind(t, rtab_port_of(t, id, FP_A), FP_A, a, now_ms), 0);
	CHECK_EQ_INT(rtab_bind(t, rtab_port_of(t, id, FP_B), FP_B, b, now_ms), 0);
	return id;
}

static void test_relay_table_rejects_bad_ranges(void)
{
	struct rtab t;
	struct rtab_limits l = limits(52000, 52000);

	CHECK_EQ_INT(rtab_init(&t, &l), -EINVAL); /* one port: no relay fits */
	l = limits(52001, 52000);
	CHECK_EQ_INT(rtab_init(&t, &l), -EINVAL);
	l = limits(0, 10);
	CHECK_EQ_INT(rtab_init(&t, &l), -EINVAL);
	l = limits(52000, 52999);
	CHECK_EQ_INT(rtab_init(&t, &l), 0);
	CHECK_EQ_INT(t.max_relays, 500);
	rtab_destroy(&t);
}

static void test_relay_table_allocates_until_exhausted(void)
{
	struct rtab t;
	struct rtab_limits l = limits(52000, 52009); /* 10 ports: 5 relays */
	bool seen[10] = { false };
	uint32_t id;

	CHECK_EQ_INT(rtab_init(&t, &l), 0);
	for (uint64_t i = 0; i < 5; i++) {
		CHECK_EQ_INT(rtab_alloc(&t, 100 + i, 200 + i, 0, &id), 0);
		const struct rtab_relay *r = rtab_get(&t, id);

		CHECK(r != NULL);
		for (int s = 0; r && s < 2; s++) {
			uint16_t p = r->side[s].port;

			CHECK(p >= 52000 && p <= 52009);
			CHECK(!seen[p - 52000]); /* every port given out once */
			seen[p - 52000] = true;
		}
	}
	CHECK_EQ_INT(rtab_alloc(&t, 999, 998, 0, &id), -ENOSPC);
	CHECK_EQ_INT(t.counters.refused_ports, 1);
	CHECK_EQ_INT(t.counters.relays_created, 5);
	CHECK_EQ_INT(t.nrelays, 5);
	/* an odd range leaves one port unused rather than half a relay */
	rtab_destroy(&t);
	l = limits(52000, 52004);
	CHECK_EQ_INT(rtab_init(&t, &l), 0);
	CHECK_EQ_INT(rtab_alloc(&t, 1, 2, 0, &id), 0);
	CHECK_EQ_INT(rtab_alloc(&t, 3, 4, 0, &id), 0);
	CHECK_EQ_INT(rtab_alloc(&t, 5, 6, 0, &id), -ENOSPC);
	rtab_destroy(&t);
}

static void test_relay_table_pair_is_order_independent(void)
{
	struct rtab t;
	struct rtab_limits l = limits(52000, 52999);
	uint32_t id, id2, found;

	CHECK_EQ_INT(rtab_init(&t, &l), 0);
	CHECK_EQ_INT(rtab_alloc(&t, FP_B, FP_A, 0, &id), 0);
	CHECK_EQ_INT(rtab_alloc(&t, FP_A, FP_B, 0, &id2), -EEXIST);
	CHECK_EQ_INT(id2, id);
	CHECK_EQ_INT(rtab_find(&t, FP_A, FP_B, &found), 0);
	CHECK_EQ_INT(found, id);
	CHECK_EQ_INT(rtab_find(&t, FP_B, FP_A, &found), 0);
	CHECK_EQ_INT(found, id);
	CHECK_EQ_INT(rtab_find(&t, FP_A, FP_C, &found), -ENOENT);
	CHECK_EQ_INT(rtab_alloc(&t, FP_A, FP_A, 0, &id2), -EINVAL);

	const struct rtab_relay *r = rtab_get(&t, id);

	CHECK(r && r->side[0].node == FP_A &&
	      r->side[1].node == FP_B); /* lower fingerprint first */
	uint16_t pa = rtab_port_of(&t, id, FP_A), pb = rtab_port_of(&t, id, FP_B);
	int side = -1;

	CHECK(pa && pb && pa != pb);
	CHECK_EQ_INT(rtab_port_of(&t, id, FP_C), 0);
	CHECK(rtab_by_port(&t, pa, &side) == r);
	CHECK_EQ_INT(side, 0);
	CHECK(rtab_by_port(&t, pb, &side) == r);
	CHECK_EQ_INT(side, 1);
	CHECK(rtab_by_port(&t, 51999, &side) == NULL);
	CHECK(rtab_by_port(&t, 53000, &side) == NULL);
	rtab_destroy(&t);
}

/* Many relays, many removals in mixed order: every lookup stays right (the hash tables'
 * backward-shift deletion keeps probe chains intact). */
static void test_relay_table_lookups_survive_churn(void)
{
	struct rtab t;
	struct rtab_limits l = limits(40000, 40999);
	uint32_t ids[500], found;
	bool live[500];

	CHECK_EQ_INT(rtab_init(&t, &l), 0);
	for (uint64_t i = 0; i < 500; i++) {
		/* node i*7 % 61 is in many pairs: exercises the per-node table too */
		CHECK_EQ_INT(rtab_alloc(&t, 1000 + i, 5000 + (i * 7) % 61, 0, &ids[i]), 0);
		live[i] = true;
	}
	for (uint64_t i = 0; i < 500; i += 3) {
		rtab_free(&t, ids[i]);
		live[i] = false;
	}
	int wrong = 0;

	for (uint64_t i = 0; i < 500; i++) {
		int r = rtab_find(&t, 5000 + (i * 7) % 61, 1000 + i, &found);

		if (live[i] ? (r != 0 || found != ids[i]) : r != -ENOENT)
			wrong++;
	}
	CHECK_EQ_INT(wrong, 0);
	uint32_t expect = 0;

	for (uint64_t i = 0; i < 500; i++)
		if (live[i] && (i * 7) % 61 == 3)
			expect++;
	CHECK_EQ_INT(rtab_node_relays(&t, 5003), expect);
	CHECK_EQ_INT(t.nrelays, 500 - 167);
	rtab_destroy(&t);
}

/*
 * The whole port space: 32767 relays, every one found by pair and by both ports, then all
 * freed and allocated again. The paths are O(1) by construction (an array by port, hash tables
 * at most half full, a FIFO of free ports); an O(n) step anywhere would make this run take
 * minutes instead of milliseconds.
 */
static void test_relay_table_fills_the_port_space(void)
{
	struct rtab t;
	struct rtab_limits l = limits(1, 65535);
	uint32_t id, found;
	int wrong = 0;

	CHECK_EQ_INT(rtab_init(&t, &l), 0);
	CHECK_EQ_INT(t.max_relays, 32767);
	for (int round = 0; round < 2; round++) {
		for (uint64_t i = 0; i < 32767; i++)
			wrong += rtab_alloc(&t, i * 2 + 1, i * 2 + 2, 0, &id) != 0;
		CHECK_EQ_INT(rtab_alloc(&t, 1u << 20, 1u << 21, 0, &id), -ENOSPC);
		for (uint64_t i = 0; i < 32767; i++) {
			int side = -1;

			if (rtab_find(&t, i * 2 + 2, i * 2 + 1, &found) != 0) {
				wrong++;
				continue;
			}
			const struct rtab_relay *r = rtab_get(&t, found);

			wrong += r->side[0].node != i * 2 + 1 || r->side[1].node != i * 2 + 2;
			wrong += rtab_by_port(&t, r->side[0].port, &side) != r || side != 0;
			wrong += rtab_by_port(&t, r->side[1].port, &side) != r || side != 1;
		}
		for (uint32_t i = 0; i < 32767; i++)
			rtab_free(&t, i);
		CHECK_EQ_INT(t.nrelays, 0);
		CHECK_EQ_INT(t.free_count, 65535);
	}
	CHECK_EQ_INT(wrong, 0);
	rtab_destroy(&t);
}

static void test_relay_table_forwards_between_bindings(void)
{
	struct rtab t;
	struct rtab_limits l = limits(52000, 52999);
	struct addr a = v4("198.51.100.7", 40001), b = v6("2001:db8::2", 51820);
	struct rtab_fwd fw;

	CHECK_EQ_INT(rtab_init(&t, &l), 0);
	uint32_t id = bound_pair(&t, &a, &b, 0);
	uint16_t pa = rtab_port_of(&t, id, FP_A), pb = rtab_port_of(&t, id, FP_B);

	CHECK_EQ_INT(rtab_forward(&t, pa, &a, 148, 10, &fw), RTAB_FORWARD);
	CHECK_EQ_INT(fw.out_port, pb);
	CHECK(addr_equal(fw.dst, &b));
	CHECK_EQ_INT(fw.relay, id);
	CHECK_EQ_INT(rtab_forward(&t, pb, &b, 92, 10, &fw), RTAB_FORWARD);
	CHECK_EQ_INT(fw.out_port, pa);
	CHECK(addr_equal(fw.dst, &a));
	const struct rtab_relay *r = rtab_get(&t, id);

	CHECK_EQ_INT(r->counters.fwd_packets_a_to_b, 1);
	CHECK_EQ_INT(r->counters.fwd_bytes_a_to_b, 148);
	CHECK_EQ_INT(r->counters.fwd_packets_b_to_a, 1);
	CHECK_EQ_INT(r->counters.fwd_bytes_b_to_a, 92);
	rtab_destroy(&t);
}

static void test_relay_table_drops_unbound_and_strangers(void)
{
	struct rtab t;
	struct rtab_limits l = limits(52000, 52999);
	struct addr a = v4("198.51.100.7", 40001), b = v4("203.0.113.9", 1024);
	struct addr stranger = v4("198.51.100.66", 40001), a_other_port = v4("198.51.100.7", 40002);
	struct rtab_fwd fw;
	uint32_t id;

	CHECK_EQ_INT(rtab_init(&t, &l), 0);
	CHECK_EQ_INT(rtab_alloc(&t, FP_A, FP_B, 0, &id), 0);
	uint16_t pa = rtab_port_of(&t, id, FP_A), pb = rtab_port_of(&t, id, FP_B);
	const struct rtab_relay *r = rtab_get(&t, id);

	/* nothing is bound: even the right node's datagrams go nowhere */
	CHECK_EQ_INT(rtab_forward(&t, pa, &a, 100, 0, &fw), RTAB_DROP_UNBOUND);
	CHECK_EQ_INT(r->counters.drop_unbound, 1);
	CHECK_EQ_INT(rtab_bind(&t, pa, FP_A, &a, 0), 0);
	/* a bound, b not: nowhere to send */
	CHECK_EQ_INT(rtab_forward(&t, pa, &a, 100, 0, &fw), RTAB_DROP_PEER_UNBOUND);
	CHECK_EQ_INT(r->counters.drop_peer_unbound, 1);
	CHECK_EQ_INT(rtab_bind(&t, pb, FP_B, &b, 0), 0);
	/* wrong address, and right address with the wrong port, are both strangers */
	CHECK_EQ_INT(rtab_forward(&t, pa, &stranger, 100, 0, &fw), RTAB_DROP_WRONG_SOURCE);
	CHECK_EQ_INT(rtab_forward(&t, pa, &a_other_port, 100, 0, &fw), RTAB_DROP_WRONG_SOURCE);
	/* b's own address at a's port is not a's either */
	CHECK_EQ_INT(rtab_forward(&t, pa, &b, 100, 0, &fw), RTAB_DROP_WRONG_SOURCE);
	CHECK_EQ_INT(r->counters.drop_wrong_source, 3);
	/* a port of the range that no relay owns */
	uint16_t unused = pa != 52500 && pb != 52500 ? 52500 : 52501;

	CHECK_EQ_INT(rtab_forward(&t, unused, &a, 100, 0, &fw), RTAB_DROP_NO_RELAY);
	CHECK_EQ_INT(t.counters.drop_no_relay, 1);
	CHECK_EQ_INT(rtab_forward(&t, pa, &a, RTAB_MAX_DATAGRAM + 1, 0, &fw), RTAB_DROP_TOO_BIG);
	CHECK_EQ_INT(r->counters.fwd_packets_a_to_b + r->counters.fwd_packets_b_to_a, 0);
	CHECK_EQ_INT(rtab_forward(&t, pa, &a, 100, 0, &fw), RTAB_FORWARD);
	CHECK(strcmp(rtab_verdict_name(RTAB_DROP_WRONG_SOURCE), "wrong_source") == 0);
	rtab_destroy(&t);
}

/* The bind rule: a binding moves only through rtab_bind() by the side's own node. */
static void test_relay_table_rebinds_only_through_bind(void)
{
	struct rtab t;
	struct rtab_limits l = limits(52000, 52999);
	struct addr a = v4("198.51.100.7", 40001), b = v4("203.0.113.9", 1024);
	struct addr a_new = v4("198.51.100.7", 40777); /* a's NAT rebound it */
	struct rtab_fwd fw;

	CHECK_EQ_INT(rtab_init(&t, &l), 0);
	uint32_t id = bound_pair(&t, &a, &b, 0);
	uint16_t pa = rtab_port_of(&t, id, FP_A), pb = rtab_port_of(&t, id, FP_B);
	const struct rtab_relay *r = rtab_get(&t, id);

	/* traffic from the new mapping does not move the binding, however much of it */
	for (int i = 0; i < 10; i++)
		CHECK_EQ_INT(rtab_forward(&t, pa, &a_new, 100, 0, &fw), RTAB_DROP_WRONG_SOURCE);
	CHECK(addr_equal(&r->side[0].bound, &a));
	/* b cannot bind a's port, nor anyone a port that is not theirs or is unused */
	CHECK_EQ_INT(rtab_bind(&t, pa, FP_B, &a_new, 0), -EPERM);
	CHECK_EQ_INT(rtab_bind(&t, pa, FP_C, &a_new, 0), -EPERM);
	CHECK_EQ_INT(rtab_bind(&t, 52998 == pa || 52998 == pb ? 52997 : 52998, FP_A, &a_new, 0),
		     -ENOENT);
	CHECK_EQ_INT(t.counters.bind_refused, 3);
	CHECK(addr_equal(&r->side[0].bound, &a));
	/* a's authenticated probe from the new mapping rebinds */
	CHECK_EQ_INT(rtab_bind(&t, pa, FP_A, &a_new, 5), 0);
	CHECK_EQ_INT(r->counters.rebinds, 1);
	CHECK_EQ_INT(r->counters.binds, 3);
	CHECK_EQ_INT(rtab_forward(&t, pa, &a_new, 100, 6, &fw), RTAB_FORWARD);
	CHECK_EQ_INT(rtab_forward(&t, pa, &a, 100, 6, &fw), RTAB_DROP_WRONG_SOURCE);
	/* and b's traffic now goes to the new mapping */
	CHECK_EQ_INT(rtab_forward(&t, pb, &b, 100, 6, &fw), RTAB_FORWARD);
	CHECK(addr_equal(fw.dst, &a_new));
	/* binding again from the same address is a bind, not a rebind */
	CHECK_EQ_INT(rtab_bind(&t, pa, FP_A, &a_new, 7), 0);
	CHECK_EQ_INT(r->counters.rebinds, 1);
	rtab_destroy(&t);
}

static void test_relay_table_limits_relays_per_node(void)
{
	struct rtab t;
	struct rtab_limits l = limits(52000, 52999);
	uint32_t id, first;

	l.max_relays_per_node = 3;
	CHECK_EQ_INT(rtab_init(&t, &l), 0);
	CHECK_EQ_INT(rtab_alloc(&t, FP_A, 1, 0, &first), 0);
	CHECK_EQ_INT(rtab_alloc(&t, 2, FP_A, 0, &id), 0);
	CHECK_EQ_INT(rtab_alloc(&t, FP_A, 3, 0, &id), 0);
	CHECK_EQ_INT(rtab_node_relays(&t, FP_A), 3);
	CHECK_EQ_INT(rtab_alloc(&t, 4, FP_A, 0, &id), -EDQUOT);
	CHECK_EQ_INT(t.counters.refused_node_quota, 1);
	/* other nodes are not affected */
	CHECK_EQ_INT(rtab_alloc(&t, 4, 5, 0, &id), 0);
	/* a freed relay gives the node room again */
	rtab_free(&t, first);
	CHECK_EQ_INT(rtab_node_relays(&t, FP_A), 2);
	CHECK_EQ_INT(rtab_node_relays(&t, 1), 0);
	CHECK_EQ_INT(rtab_alloc(&t, 4, FP_A, 0, &id), 0);
	rtab_destroy(&t);
}

static void test_relay_table_limits_packets_per_second(void)
{
	struct rtab t;
	struct rtab_limits l = limits(52000, 52999);
	struct addr a = v4("198.51.100.7", 40001), b = v4("203.0.113.9", 1024);
	struct rtab_fwd fw;
	int fwd = 0, drop = 0;

	l.pps = 100; /* burst: 1 s worth, 100 datagrams */
	CHECK_EQ_INT(rtab_init(&t, &l), 0);
	uint32_t id = bound_pair(&t, &a, &b, 1000);
	uint16_t pa = rtab_port_of(&t, id, FP_A), pb = rtab_port_of(&t, id, FP_B);

	/* 150 at one instant, both directions sharing the pair's bucket */
	for (int i = 0; i < 150; i++) {
		enum rtab_verdict v =
			rtab_forward(&t, i & 1 ? pa : pb, i & 1 ? &a : &b, 60, 1000, &fw);

		fwd += v == RTAB_FORWARD;
		drop += v == RTAB_DROP_PPS;
	}
	CHECK_EQ_INT(fwd, 100);
	CHECK_EQ_INT(drop, 50);
	CHECK_EQ_INT(rtab_get(&t, id)->counters.drop_pps, 50);
	/* 50 ms later, 5 tokens are back (exact integer refill) */
	fwd = 0;
	for (int i = 0; i < 20; i++)
		fwd += rtab_forward(&t, pa, &a, 60, 1050, &fw) == RTAB_FORWARD;
	CHECK_EQ_INT(fwd, 5);
	/* after a long silence the bucket is full again, not fuller */
	fwd = 0;
	for (int i = 0; i < 300; i++)
		fwd += rtab_forward(&t, pa, &a, 60, 1000000, &fw) == RTAB_FORWARD;
	CHECK_EQ_INT(fwd, 100);
	rtab_destroy(&t);
}

static void test_relay_table_limits_bytes_per_second(void)
{
	struct rtab t;
	struct rtab_limits l = limits(52000, 52999);
	struct addr a = v4("198.51.100.7", 40001), b = v4("203.0.113.9", 1024);
	struct rtab_fwd fw;
	int fwd = 0;

	l.bps = 10000;
	l.burst_ms = 100; /* 1000 bytes of depth */
	CHECK_EQ_INT(rtab_init(&t, &l), 0);
	uint32_t id = bound_pair(&t, &a, &b, 0);
	uint16_t pa = rtab_port_of(&t, id, FP_A);

	for (int i = 0; i < 10; i++)
		fwd += rtab_forward(&t, pa, &a, 300, 0, &fw) == RTAB_FORWARD;
	CHECK_EQ_INT(fwd, 3); /* 900 of 1000 bytes */
	/* a small datagram still fits in what is left: the charge is by size */
	CHECK_EQ_INT(rtab_forward(&t, pa, &a, 100, 0, &fw), RTAB_FORWARD);
	CHECK_EQ_INT(rtab_forward(&t, pa, &a, 1, 0, &fw), RTAB_DROP_BPS);
	CHECK_EQ_INT(rtab_get(&t, id)->counters.drop_bps, 8);
	/* 30 ms: 300 bytes */
	CHECK_EQ_INT(rtab_forward(&t, pa, &a, 300, 30, &fw), RTAB_FORWARD);
	CHECK_EQ_INT(rtab_forward(&t, pa, &a, 1, 30, &fw), RTAB_DROP_BPS);
	rtab_destroy(&t);
}

static void test_relay_table_tears_down_idle_relays(void)
{
	struct rtab t;
	struct rtab_limits l = limits(52000, 52999);
	struct addr a = v4("198.51.100.7", 40001), b = v4("203.0.113.9", 1024);
	struct rtab_fwd fw;
	uint32_t busy, quiet, never, id;
	uint64_t next;

	l.idle_timeout_s = 30;
	CHECK_EQ_INT(rtab_init(&t, &l), 0);
	busy = bound_pair(&t, &a, &b, 0);
	CHECK_EQ_INT(rtab_alloc(&t, FP_A, FP_C, 0, &quiet), 0);
	CHECK_EQ_INT(rtab_alloc(&t, FP_B, FP_C, 10000, &never), 0); /* never bound */
	uint16_t pa = rtab_port_of(&t, busy, FP_A);

	CHECK_EQ_INT(rtab_expire(&t, 29999, &id, &next), -ENOENT);
	CHECK_EQ_INT(next, 30000);
	/* traffic keeps `busy` alive; a bind alone would not */
	CHECK_EQ_INT(rtab_forward(&t, pa, &a, 100, 20000, &fw), RTAB_FORWARD);
	CHECK_EQ_INT(rtab_bind(&t, rtab_port_of(&t, quiet, FP_A), FP_A, &a, 20000), 0);
	CHECK_EQ_INT(rtab_expire(&t, 30000, &id, &next), 0);
	CHECK_EQ_INT(id, quiet);
	rtab_free(&t, id);
	CHECK_EQ_INT(rtab_expire(&t, 30000, &id, &next), -ENOENT);
	CHECK_EQ_INT(next, 40000); /* `never`, created at 10 s */
	CHECK_EQ_INT(rtab_expire(&t, 50000, &id, &next), 0);
	CHECK_EQ_INT(id, busy);
	CHECK_EQ_INT(next, 40000); /* `never` is due too: call again */
	rtab_free(&t, id);
	CHECK_EQ_INT(rtab_expire(&t, 50000, &id, &next), 0);
	CHECK_EQ_INT(id, never);
	rtab_free(&t, id);
	CHECK_EQ_INT(rtab_expire(&t, 50000, &id, &next), -ENOENT);
	CHECK_EQ_INT(next, UINT64_MAX);
	CHECK_EQ_INT(t.counters.relays_idle, 3);
	CHECK_EQ_INT(t.counters.relays_freed, 3);
	CHECK_EQ_INT(t.nrelays, 0);
	rtab_destroy(&t);
}

static void test_relay_table_teardown_frees_ports_for_reuse(void)
{
	struct rtab t;
	struct rtab_limits l = limits(52000, 52003); /* two relays */
	struct addr a = v4("198.51.100.7", 40001), b = v4("203.0.113.9", 1024);
	struct rtab_fwd fw;
	uint32_t r1, r2, r3, found;

	CHECK_EQ_INT(rtab_init(&t, &l), 0);
	r1 = bound_pair(&t, &a, &b, 0);
	uint16_t p1a = rtab_port_of(&t, r1, FP_A), p1b = rtab_port_of(&t, r1, FP_B);

	CHECK_EQ_INT(rtab_alloc(&t, 7, 8, 0, &r2), 0);
	CHECK_EQ_INT(rtab_alloc(&t, 9, 10, 0, &r3), -ENOSPC);
	/* the pair went direct */
	rtab_free(&t, r1);
	CHECK(rtab_get(&t, r1) == NULL);
	CHECK_EQ_INT(rtab_find(&t, FP_A, FP_B, &found), -ENOENT);
	CHECK(rtab_by_port(&t, p1a, NULL) == NULL);
	CHECK_EQ_INT(rtab_forward(&t, p1a, &a, 100, 1, &fw), RTAB_DROP_NO_RELAY);
	CHECK_EQ_INT(rtab_node_relays(&t, FP_A), 0);
	rtab_free(&t, r1); /* twice is harmless */
	CHECK_EQ_INT(t.counters.relays_freed, 1);
	/* its ports serve a new pair, unbound: the old bindings do not carry over */
	CHECK_EQ_INT(rtab_alloc(&t, 9, 10, 2, &r3), 0);
	uint16_t p3a = rtab_port_of(&t, r3, 9), p3b = rtab_port_of(&t, r3, 10);

	CHECK((p3a == p1a && p3b == p1b) || (p3a == p1b && p3b == p1a));
	CHECK_EQ_INT(rtab_forward(&t, p1a, &a, 100, 3, &fw), RTAB_DROP_UNBOUND);
	rtab_destroy(&t);
}

static void test_relay_table_tells_wireguard_from_control(void)
{
	const uint8_t wg_init[] = { 1, 0, 0, 0, 0xaa }, wg_data[] = { 4, 0, 0, 0 };
	const uint8_t ours[] = { 1, 4, 0, 0 }, junk[] = { 5, 0, 0, 0 }, zero[] = { 0, 0, 0, 0 };

	CHECK(rtab_is_wireguard(wg_init, sizeof(wg_init)));
	CHECK(rtab_is_wireguard(wg_data, sizeof(wg_data)));
	CHECK(!rtab_is_wireguard(ours, sizeof(ours))); /* PROTO_VERSION, PROTO_PROBE */
	CHECK(!rtab_is_wireguard(junk, sizeof(junk)));
	CHECK(!rtab_is_wireguard(zero, sizeof(zero)));
	CHECK(!rtab_is_wireguard(wg_init, 3));
}

/* New quotas (a reload) reach the relays in use: a pair that was unlimited is cut to the new
 * rate at once, and lifting the limit lets everything through again. */
static void test_relay_table_set_quotas_applies_to_relays_in_use(void)
{
	struct rtab t;
	struct rtab_limits l = limits(52000, 52999);
	struct addr a = v4("198.51.100.7", 40001), b = v4("203.0.113.9", 1024);
	struct rtab_fwd fw;
	int fwd = 0;

	l.pps = 0;
	l.bps = 0;
	CHECK_EQ_INT(rtab_init(&t, &l), 0);
	uint32_t id = bound_pair(&t, &a, &b, 1000);
	uint16_t pa = rtab_port_of(&t, id, FP_A);

	for (int i = 0; i < 500; i++)
		fwd += rtab_forward(&t, pa, &a, 60, 1000, &fw) == RTAB_FORWARD;
	CHECK_EQ_INT(fwd, 500);
	l.pps = 10;
	l.max_relays_per_node = 1;
	l.idle_timeout_s = 40;
	rtab_set_quotas(&t, &l, 2000);
	CHECK_EQ_INT(t.lim.pps, 10);
	CHECK_EQ_INT(t.lim.idle_timeout_s, 40);
	CHECK_EQ_INT(t.lim.port_min, 52000);
	fwd = 0;
	for (int i = 0; i < 50; i++)
		fwd += rtab_forward(&t, pa, &a, 60, 2000, &fw) == RTAB_FORWARD;
	CHECK_EQ_INT(fwd, 10); /* a full bucket of the new depth, 1 s at 10 a second */
	CHECK_EQ_INT(rtab_get(&t, id)->counters.drop_pps, 40);
	/* The per-node quota: FP_A has one relay already. */
	CHECK_EQ_INT(rtab_alloc(&t, FP_A, 77, 2000, &id), -EDQUOT);
	/* No limit again: everything passes. */
	l.pps = 0;
	rtab_set_quotas(&t, &l, 3000);
	fwd = 0;
	for (int i = 0; i < 50; i++)
		fwd += rtab_forward(&t, pa, &a, 60, 3000, &fw) == RTAB_FORWARD;
	CHECK_EQ_INT(fwd, 50);
	rtab_destroy(&t);
}

int main(void)
{
	TAP_RUN(test_relay_table_rejects_bad_ranges);
	TAP_RUN(test_relay_table_allocates_until_exhausted);
	TAP_RUN(test_relay_table_pair_is_order_independent);
	TAP_RUN(test_relay_table_lookups_survive_churn);
	TAP_RUN(test_relay_table_fills_the_port_space);
	TAP_RUN(test_relay_table_forwards_between_bindings);
	TAP_RUN(test_relay_table_drops_unbound_and_strangers);
	TAP_RUN(test_relay_table_rebinds_only_through_bind);
	TAP_RUN(test_relay_table_limits_relays_per_node);
	TAP_RUN(test_relay_table_limits_packets_per_second);
	TAP_RUN(test_relay_table_limits_bytes_per_second);
	TAP_RUN(test_relay_table_tears_down_idle_relays);
	TAP_RUN(test_relay_table_teardown_frees_ports_for_reuse);
	TAP_RUN(test_relay_table_tells_wireguard_from_control);
	TAP_RUN(test_relay_table_set_quotas_applies_to_relays_in_use);
	return tap_done();
}

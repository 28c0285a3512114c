/* SPDX-License-Identifier: MIT */
/*
 * test-ts-table - the last accepted handshake timestamp per key, bounded, and the replays it
 * refuses after the registry forgot a node.
 */
#include "wgpunch/ts_table.h"

#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "wgpunch/key.h"
#include "wgpunch/session.h"

#include "../tap.h"

static const uint8_t test_key[TS_TABLE_KEY_LEN] = "ts-table-test-k";

static void ts_at(uint8_t ts[12], int64_t s, uint32_t ns)
{
	session_tai64n(ts, s, ns);
}

static void test_ts_table_newer_replay_unknown(void)
{
	struct ts_table t;
	uint8_t pub[KEY_LEN], t1[12], t2[12], t0[12];
	uint64_t fp;

	memset(pub, 0x42, sizeof(pub));
	fp = key_fingerprint(pub);
	ts_at(t0, 1700000000, 999999999);
	ts_at(t1, 1700000001, 0);
	ts_at(t2, 1700000001, 1);
	CHECK_EQ_INT(ts_table_init(&t, 16, test_key), 0);
	CHECK_EQ_INT(ts_table_check(&t, fp, t1), TS_UNKNOWN);
	ts_table_commit(&t, fp, t1);
	CHECK_EQ_INT(ts_table_check(&t, fp, t1), TS_REPLAY); /* the same HS_INIT again */
	CHECK_EQ_INT(ts_table_check(&t, fp, t0), TS_REPLAY);
	CHECK_EQ_INT(ts_table_check(&t, fp, t2), TS_NEWER); /* one nanosecond later */
	CHECK_EQ_INT(ts_table_check(&t, fp + 1, t0), TS_UNKNOWN);
	/* A commit never moves back: the later timestamp stays. */
	ts_table_commit(&t, fp, t2);
	ts_table_commit(&t, fp, t0);
	CHECK_EQ_INT(ts_table_check(&t, fp, t2), TS_REPLAY);
	CHECK_EQ_INT(ts_table_count(&t), 1);
	ts_table_destroy(&t);
}

/*
 * Attack: replay a captured HS_INIT after the registry entry expired. The table does not
 * follow the registry, so the replay is still refused, however long the wait (no clock in
 * the table: the coordinator's time cannot matter).
 */
static void test_ts_table_survives_registry_expiry(void)
{
	struct ts_table t;
	uint8_t ts[12];

	/* Sized as the header asks, well above the number of keys. */
	CHECK_EQ_INT(ts_table_init(&t, 4096, test_key), 0);
	for (uint64_t fp = 1; fp <= 1000; fp++) {
		ts_at(ts, 1700000000 + (int64_t)fp, 0);
		ts_table_commit(&t, fp * 0x9e3779b97f4a7c15ull, ts);
	}
	CHECK_EQ_INT(ts_table_evicted(&t), 0);
	CHECK_EQ_INT(ts_table_count(&t), 1000);
	for (uint64_t fp = 1; fp <= 1000; fp++) {
		ts_at(ts, 1700000000 + (int64_t)fp, 0);
		CHECK(ts_table_check(&t, fp * 0x9e3779b97f4a7c15ull, ts) == TS_REPLAY);
	}
	ts_table_destroy(&t);
}

/*
 * When full, the entry committed longest ago in the key's set leaves. Many new keys (a key
 * holder making throw-away keys) fill the table: memory stays fixed, the count never passes
 * the capacity, and a key committed recently is still known.
 */
static void test_ts_table_full_evicts_oldest(void)
{
	struct ts_table t;
	uint8_t ts[12], victim_ts[12];
	size_t mem;
	uint64_t victim = 0xdeadbeef;

	CHECK_EQ_INT(ts_table_init(&t, 64, test_key), 0);
	CHECK_EQ_INT(ts_table_capacity(&t), 64);
	CHECK_EQ_INT(ts_table_memory(&t), 64 * TS_TABLE_ENTRY_BYTES);
	mem = ts_table_memory(&t);
	ts_at(victim_ts, 1700000000, 0);
	ts_table_commit(&t, victim, victim_ts);
	for (uint64_t i = 0; i < 100000; i++) {
		ts_at(ts, 1700000000, (uint32_t)i);
		ts_table_commit(&t, i + 1, ts);
		/* The victim keeps handshaking now and then: its entry stays young. */
		if (i % 4 == 0) { /* fewer commits between than its set has ways */
			ts_at(victim_ts, 1700000000 + (int64_t)i, 1);
			ts_table_commit(&t, victim, victim_ts);
		}
		CHECK(ts_table_count(&t) <= ts_table_capacity(&t));
	}
	CHECK_EQ_INT(ts_table_memory(&t), mem);
	CHECK_EQ_INT(ts_table_count(&t), 64);
	CHECK(ts_table_evicted(&t) > 99000);
	CHECK_EQ_INT(ts_table_check(&t, victim, victim_ts), TS_REPLAY);
	/* The oldest keys are gone: TS_UNKNOWN, so the caller requires a mac2 for them. */
	ts_at(ts, 1700000000, 0);
	CHECK_EQ_INT(ts_table_check(&t, 1, ts), TS_UNKNOWN);
	ts_table_destroy(&t);
}

/* A restart starts empty: every key is unknown until it handshakes (with a mac2 proof). */
static void test_ts_table_restart_is_unknown(void)
{
	struct ts_table t;
	uint8_t ts[12];

	ts_at(ts, 1700000000, 0);
	CHECK_EQ_INT(ts_table_init(&t, 8, test_key), 0);
	ts_table_commit(&t, 7, ts);
	ts_table_destroy(&t);
	CHECK_EQ_INT(ts_table_init(&t, 8, test_key), 0);
	CHECK_EQ_INT(ts_table_check(&t, 7, ts), TS_UNKNOWN);
	CHECK_EQ_INT(ts_table_count(&t), 0);
	ts_table_destroy(&t);
	CHECK_EQ_INT(ts_table_init(&t, 0, test_key), -EINVAL);
	CHECK_EQ_INT(ts_table_init(&t, TS_TABLE_MAX_CAPACITY + 1, test_key), -EINVAL);
}

/*
 * The table costs memory for the keys it holds, not for the capacity asked at init: it
 * starts small, doubles once half full, keeps every key across the doublings (no eviction
 * at that load), and stops at the capacity asked.
 */
static void test_ts_table_grows_with_its_keys(void)
{
	struct ts_table t;
	uint8_t ts[12];
	const uint64_t n = 20000;
	size_t cap = 1u << 16;

	CHECK_EQ_INT(ts_table_init(&t, cap, test_key), 0);
	CHECK_EQ_INT(ts_table_capacity(&t), TS_TABLE_START_SETS * TS_TABLE_WAYS);
	CHECK_EQ_INT(ts_table_max_capacity(&t), cap);
	for (uint64_t fp = 1; fp <= n; fp++) {
		ts_at(ts, 1700000000 + (int64_t)fp, 0);
		ts_table_commit(&t, fp * 0x9e3779b97f4a7c15ull, ts);
		if (ts_table_count(&t) > ts_table_capacity(&t) / 2 + 1)
			break;
	}
	CHECK_EQ_INT(ts_table_count(&t), n);
	CHECK_EQ_INT(ts_table_evicted(&t), 0);
	CHECK_EQ_INT(ts_table_capacity(&t), 1u << 16); /* 20,000 > 2^15 / 2 */
	CHECK_EQ_INT(ts_table_memory(&t), (1u << 16) * TS_TABLE_ENTRY_BYTES);
	for (uint64_t fp = 1; fp <= n; fp++) {
		ts_at(ts, 1700000000 + (int64_t)fp, 0);
		if (ts_table_check(&t, fp * 0x9e3779b97f4a7c15ull, ts) != TS_REPLAY) {
			CHECK(false);
			break;
		}
		ts_at(ts, 1700000000 + (int64_t)fp, 1);
		if (ts_table_check(&t, fp * 0x9e3779b97f4a7c15ull, ts) != TS_NEWER) {
			CHECK(false);
			break;
		}
	}
	/* Past half of the capacity asked it no longer grows: it evicts instead. */
	for (uint64_t fp = n + 1; fp <= 4 * cap; fp++) {
		ts_at(ts, 1700000000 + (int64_t)fp, 0);
		ts_table_commit(&t, fp * 0x9e3779b97f4a7c15ull, ts);
	}
	CHECK_EQ_INT(ts_table_capacity(&t), cap);
	CHECK(ts_table_count(&t) <= cap);
	CHECK(ts_table_evicted(&t) > 0);
	ts_table_destroy(&t);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	TAP_RUN(test_ts_table_newer_replay_unknown);
	TAP_RUN(test_ts_table_survives_registry_expiry);
	TAP_RUN(test_ts_table_full_evicts_oldest);
	TAP_RUN(test_ts_table_restart_is_unknown);
	TAP_RUN(test_ts_table_grows_with_its_keys);
	return tap_done();
}

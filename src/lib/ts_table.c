// SPDX-License-Identifier: MIT
/*
 * ts_table - last accepted TAI64N per key fingerprint, bounded (policy in the header).
 */
#include "wgpunch/ts_table.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

struct ts_entry {
	uint64_t fp;
	uint32_t seq; /* commit order, wrapping (seq_before()); 0 = empty slot */
	uint8_t ts[TS_TABLE_TS_LEN];
};

_Static_assert(sizeof(struct ts_entry) == TS_TABLE_ENTRY_BYTES, "entry size");
_Static_assert(TS_TABLE_KEY_LEN == crypto_shorthash_KEYBYTES, "SipHash key size");

int ts_table_init(struct ts_table *t, size_t capacity, const uint8_t key[TS_TABLE_KEY_LEN])
{
	size_t n = TS_TABLE_WAYS;

	memset(t, 0, sizeof(*t));
	if (capacity < 1 || capacity > TS_TABLE_MAX_CAPACITY)
		return -EINVAL;
	while (n < capacity)
		n <<= 1;
	t->max_sets = n / TS_TABLE_WAYS;
	t->sets = t->max_sets < TS_TABLE_START_SETS ? t->max_sets : TS_TABLE_START_SETS;
	t->e = calloc(t->sets * TS_TABLE_WAYS, sizeof(*t->e));
	if (!t->e)
		return -ENOMEM;
	memcpy(t->key, key, TS_TABLE_KEY_LEN);
	return 0;
}

/* a committed before b, for sequence numbers less than 2^31 commits apart */
static bool seq_before(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) < 0;
}

static uint32_t next_seq(struct ts_table *t)
{
	if (++t->seq == 0) /* 0 marks an empty slot */
		t->seq = 1;
	return t->seq;
}

void ts_table_destroy(struct ts_table *t)
{
	if (t->e)
		sodium_memzero(t->e, t->sets * TS_TABLE_WAYS * sizeof(*t->e));
	free(t->e);
	sodium_memzero(t, sizeof(*t));
}

/*
 * The two sets fp may live in (two choices: a key goes to the emptier one, so sets overflow
 * about never at the half load the table grows at; one choice would overflow 2 % of them).
 */
static void sets_of(const struct ts_table *t, uint64_t fp, struct ts_entry *set[2])
{
	uint8_t in[8], h[crypto_shorthash_BYTES];
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		in[i] = (uint8_t)(fp >> (56 - 8 * i));
	crypto_shorthash(h, in, sizeof(in), t->key);
	for (size_t i = 0; i < sizeof(h); i++)
		v = v << 8 | h[i];
	set[0] = &t->e[(size_t)(v & (t->sets - 1)) * TS_TABLE_WAYS];
	set[1] = &t->e[(size_t)((v >> 32) & (t->sets - 1)) * TS_TABLE_WAYS];
}

static struct ts_entry *find(struct ts_entry *const set[2], uint64_t fp)
{
	for (int s = 0; s < 2; s++)
		for (size_t i = 0; i < TS_TABLE_WAYS; i++)
			if (set[s][i].seq && set[s][i].fp == fp)
				return &set[s][i];
	return NULL;
}

/* Puts entry x (commit order kept) into a free way of the emptier set, else in place of the
 * entry of both sets committed longest ago. */
static void place(struct ts_table *t, struct ts_entry *const set[2], const struct ts_entry *x)
{
	struct ts_entry *victim = NULL, *free_way[2] = { NULL, NULL };
	size_t used[2] = { 0, 0 };

	for (int s = 0; s < 2; s++) {
		for (size_t i = 0; i < TS_TABLE_WAYS; i++) {
			struct ts_entry *e = &set[s][i];

			if (!e->seq) {
				free_way[s] = e;
				continue;
			}
			used[s]++;
			if (!victim || seq_before(e->seq, victim->seq))
				victim = e;
		}
	}
	if (free_way[0] && (!free_way[1] || used[0] <= used[1]))
		victim = free_way[0];
	else if (free_way[1])
		victim = free_way[1];
	if (victim->seq) {
		t->evicted++;
		t->count--;
	}
	*victim = *x;
	t->count++;
}

/*
 * Doubles the table once it is half full, up to the capacity given at init: it costs
 * memory for the keys there are, not for max_nodes (a SipHash-chosen set makes every page
 * of a table sized up front resident after a few thousand keys). Linear, so amortised O(1)
 * a commit. Without memory for the larger table it stays as it is.
 */
static void maybe_grow(struct ts_table *t)
{
	size_t sets = t->sets * 2, old = t->sets * TS_TABLE_WAYS;
	struct ts_entry *e, *prev = t->e, *set[2];

	if (t->sets >= t->max_sets || t->count + 1 <= old / 2)
		return;
	e = calloc(sets * TS_TABLE_WAYS, sizeof(*e));
	if (!e)
		return;
	t->e = e;
	t->sets = sets;
	t->count = 0;
	for (size_t i = 0; i < old; i++) {
		if (!prev[i].seq)
			continue;
		sets_of(t, prev[i].fp, set);
		place(t, set, &prev[i]);
	}
	sodium_memzero(prev, old * sizeof(*prev));
	free(prev);
}

/* TAI64N is big-endian seconds then nanoseconds: byte order is time order. */
static int ts_cmp(const uint8_t a[TS_TABLE_TS_LEN], const uint8_t b[TS_TABLE_TS_LEN])
{
	return memcmp(a, b, TS_TABLE_TS_LEN);
}

enum ts_verdict ts_table_check(const struct ts_table *t, uint64_t fp,
			       const uint8_t ts[TS_TABLE_TS_LEN])
{
	struct ts_entry *set[2], *e;

	sets_of(t, fp, set);
	e = find(set, fp);
	if (!e)
		return TS_UNKNOWN;
	return ts_cmp(ts, e->ts) > 0 ? TS_NEWER : TS_REPLAY;
}

bool ts_table_known(const struct ts_table *t, uint64_t fp)
{
	struct ts_entry *set[2];

	sets_of(t, fp, set);
	return find(set, fp) != NULL;
}

bool ts_table_get(const struct ts_table *t, uint64_t fp, uint8_t out[TS_TABLE_TS_LEN])
{
	struct ts_entry *set[2], *e;

	sets_of(t, fp, set);
	e = find(set, fp);
	if (e)
		memcpy(out, e->ts, TS_TABLE_TS_LEN);
	return e != NULL;
}

void ts_table_commit(struct ts_table *t, uint64_t fp, const uint8_t ts[TS_TABLE_TS_LEN])
{
	struct ts_entry *set[2], *e, x = { .fp = fp };

	sets_of(t, fp, set);
	e = find(set, fp);
	if (e) {
		if (ts_cmp(ts, e->ts) > 0)
			memcpy(e->ts, ts, TS_TABLE_TS_LEN);
		e->seq = next_seq(t);
		return;
	}
	maybe_grow(t);
	x.seq = next_seq(t);
	memcpy(x.ts, ts, TS_TABLE_TS_LEN);
	sets_of(t, fp, set);
	place(t, set, &x);
}

size_t ts_table_count(const struct ts_table *t)
{
	return t->count;
}

size_t ts_table_capacity(const struct ts_table *t)
{
	return t->sets * TS_TABLE_WAYS;
}

uint64_t ts_table_evicted(const struct ts_table *t)
{
	return t->evicted;
}

size_t ts_table_max_capacity(const struct ts_table *t)
{
	return t->max_sets * TS_TABLE_WAYS;
}

size_t ts_table_memory(const struct ts_table *t)
{
	return ts_table_capacity(t) * sizeof(struct ts_entry);
}

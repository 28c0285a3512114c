// SPDX-License-Identifier: MIT
/*
 * ts_table - last accepted TAI64N per key fingerprint, bounded (policy in the header).
 */
#include "wgpunch/ts_table.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

struct ts_entry {
	uint64_t fp;
	uint64_t seq; /* commit order; 0 = empty slot */
	uint8_t ts[TS_TABLE_TS_LEN];
	uint8_t pad[4];
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
	t->e = calloc(n, sizeof(*t->e));
	if (!t->e)
		return -ENOMEM;
	t->sets = n / TS_TABLE_WAYS;
	memcpy(t->key, key, TS_TABLE_KEY_LEN);
	return 0;
}

void ts_table_destroy(struct ts_table *t)
{
	free(t->e);
	sodium_memzero(t, sizeof(*t));
}

static struct ts_entry *set_of(const struct ts_table *t, uint64_t fp)
{
	uint8_t in[8], h[crypto_shorthash_BYTES];
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		in[i] = (uint8_t)(fp >> (56 - 8 * i));
	crypto_shorthash(h, in, sizeof(in), t->key);
	for (size_t i = 0; i < sizeof(h); i++)
		v = v << 8 | h[i];
	return &t->e[(size_t)(v & (t->sets - 1)) * TS_TABLE_WAYS];
}

/* TAI64N is big-endian seconds then nanoseconds: byte order is time order. */
static int ts_cmp(const uint8_t a[TS_TABLE_TS_LEN], const uint8_t b[TS_TABLE_TS_LEN])
{
	return memcmp(a, b, TS_TABLE_TS_LEN);
}

enum ts_verdict ts_table_check(const struct ts_table *t, uint64_t fp,
			       const uint8_t ts[TS_TABLE_TS_LEN])
{
	const struct ts_entry *set = set_of(t, fp);

	for (size_t i = 0; i < TS_TABLE_WAYS; i++)
		if (set[i].seq && set[i].fp == fp)
			return ts_cmp(ts, set[i].ts) > 0 ? TS_NEWER : TS_REPLAY;
	return TS_UNKNOWN;
}

void ts_table_commit(struct ts_table *t, uint64_t fp, const uint8_t ts[TS_TABLE_TS_LEN])
{
	struct ts_entry *set = set_of(t, fp), *victim = NULL;

	for (size_t i = 0; i < TS_TABLE_WAYS; i++) {
		struct ts_entry *e = &set[i];

		if (e->seq && e->fp == fp) {
			if (ts_cmp(ts, e->ts) > 0)
				memcpy(e->ts, ts, TS_TABLE_TS_LEN);
			e->seq = ++t->seq;
			return;
		}
		if (!victim || (victim->seq && (!e->seq || e->seq < victim->seq)))
			victim = e;
	}
	if (victim->seq)
		t->evicted++;
	else
		t->count++;
	victim->fp = fp;
	victim->seq = ++t->seq;
	memcpy(victim->ts, ts, TS_TABLE_TS_LEN);
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

size_t ts_table_memory(const struct ts_table *t)
{
	return ts_table_capacity(t) * sizeof(struct ts_entry);
}

// SPDX-License-Identifier: MIT
/*
 * ratelimit - token buckets in milli-tokens, and the bounded per-prefix table
 * (policy in the header).
 */
#include "wgpunch/ratelimit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define MT_PER_TOKEN 1000u

struct ratelimit_entry {
	uint64_t tag; /* SipHash of the prefix; 0 = empty slot */
	struct bucket b;
};

_Static_assert(sizeof(struct ratelimit_entry) == RATELIMIT_ENTRY_BYTES, "entry size");
_Static_assert(RATELIMIT_KEY_LEN == crypto_shorthash_KEYBYTES, "SipHash key size");

#define X(name, help) COUNTER_DEF(ratelimit_counters, name, help)
COUNTER_TABLE_DEFINE(ratelimit_counters, RATELIMIT_COUNTERS(X));
#undef X

/* ---- bucket ---- */

void bucket_init(struct bucket *b, const struct bucket_rate *r, uint64_t now_ms)
{
	b->level_mt = (uint64_t)r->burst * MT_PER_TOKEN;
	b->last_ms = now_ms;
}

void bucket_refill(struct bucket *b, const struct bucket_rate *r, uint64_t now_ms)
{
	uint64_t cap = (uint64_t)r->burst * MT_PER_TOKEN, need, elapsed;

	/* A clock that went backwards (or the same ms) adds nothing, and last_ms keeps the
	 * latest time seen, so going back and forth cannot mint tokens twice. */
	if (now_ms <= b->last_ms)
		return;
	elapsed = now_ms - b->last_ms;
	b->last_ms = now_ms;
	if (b->level_mt >= cap || r->rate_per_s == 0) {
		if (b->level_mt > cap)
			b->level_mt = cap; /* the rate's shape changed to a smaller burst */
		return;
	}
	need = cap - b->level_mt;
	/* One ms adds rate_per_s milli-tokens; compare by division so nothing overflows. */
	if (elapsed >= need / r->rate_per_s + 1)
		b->level_mt = cap;
	else
		b->level_mt = b->level_mt + elapsed * r->rate_per_s < cap
				      ? b->level_mt + elapsed * r->rate_per_s
				      : cap;
}

bool bucket_take(struct bucket *b, const struct bucket_rate *r, uint64_t now_ms)
{
	bucket_refill(b, r, now_ms);
	if (b->level_mt < MT_PER_TOKEN)
		return false;
	b->level_mt -= MT_PER_TOKEN;
	return true;
}

uint64_t bucket_tokens(struct bucket *b, const struct bucket_rate *r, uint64_t now_ms)
{
	bucket_refill(b, r, now_ms);
	return b->level_mt / MT_PER_TOKEN;
}

/* ---- the table ---- */

void ratelimit_params_default(struct ratelimit_params *p, uint32_t rate_per_s, uint32_t burst)
{
	memset(p, 0, sizeof(*p));
	p->rate.rate_per_s = rate_per_s;
	p->rate.burst = burst;
	p->v4_prefix = 32;
	p->v6_prefix = 64;
}

int ratelimit_init(struct ratelimit *rl, size_t capacity, const struct ratelimit_params *p,
		   const uint8_t key[RATELIMIT_KEY_LEN])
{
	size_t n = RATELIMIT_WAYS;

	memset(rl, 0, sizeof(*rl));
	if (capacity < 1 || capacity > RATELIMIT_MAX_CAPACITY || p->rate.burst < 1 ||
	    p->v4_prefix < 1 || p->v4_prefix > 32 || p->v6_prefix < 1 || p->v6_prefix > 128)
		return -EINVAL;
	while (n < capacity)
		n <<= 1;
	rl->e = calloc(n, sizeof(*rl->e));
	if (!rl->e)
		return -ENOMEM;
	rl->sets = n / RATELIMIT_WAYS;
	rl->p = *p;
	memcpy(rl->key, key, RATELIMIT_KEY_LEN);
	return 0;
}

void ratelimit_destroy(struct ratelimit *rl)
{
	free(rl->e);
	sodium_memzero(rl, sizeof(*rl));
}

size_t ratelimit_capacity(const struct ratelimit *rl)
{
	return rl->sets * RATELIMIT_WAYS;
}

size_t ratelimit_memory(const struct ratelimit *rl)
{
	return ratelimit_capacity(rl) * sizeof(struct ratelimit_entry);
}

static void mask_prefix(uint8_t *ip, size_t len, unsigned bits)
{
	for (size_t i = 0; i < len; i++) {
		if (bits >= 8) {
			bits -= 8;
			continue;
		}
		ip[i] &= (uint8_t)(0xff00u >> bits);
		bits = 0;
	}
}

/* The tag of src's prefix, or 0 when src is not an IPv4 or IPv6 address. */
static uint64_t prefix_tag(const struct ratelimit *rl, const struct addr *src)
{
	uint8_t in[1 + 16] = { 0 }, h[crypto_shorthash_BYTES];
	size_t len;
	uint64_t v = 0;

	if (addr_family(src) == AF_INET6 && !IN6_IS_ADDR_V4MAPPED(&src->in6.sin6_addr)) {
		in[0] = 6;
		memcpy(in + 1, src->in6.sin6_addr.s6_addr, 16);
		mask_prefix(in + 1, 16, rl->p.v6_prefix);
		len = 17;
	} else if (addr_family(src) == AF_INET6) {
		in[0] = 4; /* the IPv4 host, whichever socket it came through */
		memcpy(in + 1, src->in6.sin6_addr.s6_addr + 12, 4);
		mask_prefix(in + 1, 4, rl->p.v4_prefix);
		len = 5;
	} else if (addr_family(src) == AF_INET) {
		in[0] = 4;
		memcpy(in + 1, &src->in4.sin_addr, 4);
		mask_prefix(in + 1, 4, rl->p.v4_prefix);
		len = 5;
	} else {
		return 0;
	}
	crypto_shorthash(h, in, len, rl->key);
	for (size_t i = 0; i < sizeof(h); i++)
		v = v << 8 | h[i];
	return v ? v : 1; /* 0 marks an empty slot */
}

static struct ratelimit_entry *set_of(const struct ratelimit *rl, uint64_t tag)
{
	/* The high bits pick the set; the whole tag is compared within it. */
	return &rl->e[(size_t)((tag >> 32) & (rl->sets - 1)) * RATELIMIT_WAYS];
}

bool ratelimit_allow(struct ratelimit *rl, const struct addr *src, uint64_t now_ms)
{
	uint64_t tag = prefix_tag(rl, src);
	struct ratelimit_entry *set, *victim = NULL, *e;
	bool ok;

	if (!tag) {
		rl->ctr.rl_limited++;
		return false;
	}
	set = set_of(rl, tag);
	for (size_t i = 0; i < RATELIMIT_WAYS; i++) {
		e = &set[i];
		if (e->tag == tag)
			goto found;
		if (!e->tag) {
			if (!victim || victim->tag)
				victim = e;
			continue;
		}
		if (victim && !victim->tag)
			continue; /* an empty slot beats any occupied one */
		bucket_refill(&e->b, &rl->p.rate, now_ms);
		if (!victim || e->b.level_mt > victim->b.level_mt ||
		    (e->b.level_mt == victim->b.level_mt && e->b.last_ms < victim->b.last_ms))
			victim = e;
	}
	e = victim;
	if (!e->tag) {
		bucket_init(&e->b, &rl->p.rate, now_ms);
		rl->ctr.rl_new_sources++;
	} else if (e->b.level_mt >= (uint64_t)rl->p.rate.burst * MT_PER_TOKEN) {
		bucket_init(&e->b, &rl->p.rate, now_ms);
		rl->ctr.rl_replaced_idle++;
	} else {
		/* Inherit the level (already refilled to now): churn mints nothing. */
		rl->ctr.rl_replaced_busy++;
	}
	e->tag = tag;
found:
	ok = bucket_take(&e->b, &rl->p.rate, now_ms);
	if (ok)
		rl->ctr.rl_allowed++;
	else
		rl->ctr.rl_limited++;
	return ok;
}

uint64_t ratelimit_peek(const struct ratelimit *rl, const struct addr *src, uint64_t now_ms)
{
	uint64_t tag = prefix_tag(rl, src);
	const struct ratelimit_entry *set;

	if (!tag)
		return 0;
	set = set_of(rl, tag);
	for (size_t i = 0; i < RATELIMIT_WAYS; i++) {
		if (set[i].tag == tag) {
			struct bucket b = set[i].b;

			return bucket_tokens(&b, &rl->p.rate, now_ms);
		}
	}
	return rl->p.rate.burst;
}

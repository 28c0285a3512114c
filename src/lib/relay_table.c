// SPDX-License-Identifier: MIT
/*
 * relay_table - ports, pairs, bindings, quotas and the forwarding decision of the relay.
 * The contract is in the header; docs/relay.md has the design.
 */
#include "wgpunch/relay_table.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define X(name, help) COUNTER_DEF(relay_counters, name, help)
COUNTER_TABLE_DEFINE(relay_counters, RELAY_COUNTERS(X));
#undef X
#define X(name, help) COUNTER_DEF(rtab_counters, name, help)
COUNTER_TABLE_DEFINE(rtab_counters, RTAB_COUNTERS(X));
#undef X

#define NONE UINT32_MAX

/* splitmix64's finaliser: fingerprints are already hashes, but a pair key combines two. */
static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

static uint64_t pair_hash(uint64_t lo, uint64_t hi)
{
	return mix64(lo ^ mix64(hi));
}

static uint32_t pow2_at_least(uint32_t n)
{
	uint32_t p = 1;

	while (p < n)
		p <<= 1;
	return p;
}

/* ---- the private bucket (TODO(ratelimit): ratelimit.h's bucket_ replaces it) ---- */

static void bucket_setup(struct rtab_bucket *b, uint64_t rate, uint32_t burst_ms, uint64_t now_ms)
{
	b->rate = rate;
	/* depth: burst_ms worth of the rate, at least one token so a single datagram can pass */
	b->cap = rate * burst_ms;
	if (b->cap < 1000)
		b->cap = 1000;
	b->milli = b->cap;
	b->last_ms = now_ms;
}

/* A new rate for a bucket in use: what it holds stays, up to the new depth; a bucket that
 * was unlimited starts full. */
static void bucket_retune(struct rtab_bucket *b, uint64_t rate, uint32_t burst_ms, uint64_t now_ms)
{
	uint64_t milli = b->milli;
	bool was_unlimited = !b->rate;

	bucket_setup(b, rate, burst_ms, now_ms);
	if (!was_unlimited && milli < b->milli)
		b->milli = milli;
}

static void bucket_refill(struct rtab_bucket *b, uint64_t now_ms)
{
	if (now_ms <= b->last_ms)
		return; /* a clock that steps back only delays the refill */
	uint64_t dt = now_ms - b->last_ms;

	b->last_ms = now_ms;
	/* dt * rate overflows only after a long silence, and a long silence fills the bucket */
	if (dt >= b->cap / b->rate + 1) {
		b->milli = b->cap;
		return;
	}
	b->milli += dt * b->rate;
	if (b->milli > b->cap)
		b->milli = b->cap;
}

static bool bucket_has(struct rtab_bucket *b, uint64_t tokens, uint64_t now_ms)
{
	if (!b->rate)
		return true;
	bucket_refill(b, now_ms);
	return b->milli >= tokens * 1000;
}

static void bucket_take(struct rtab_bucket *b, uint64_t tokens)
{
	if (b->rate)
		b->milli -= tokens * 1000;
}

/* ---- the tables ---- */

int rtab_init(struct rtab *t, const struct rtab_limits *lim)
{
	memset(t, 0, sizeof(*t));
	if (lim->port_min == 0 || lim->port_min > lim->port_max ||
	    lim->port_max - lim->port_min + 1u < 2)
		return -EINVAL;
	t->lim = *lim;
	if (!t->lim.burst_ms)
		t->lim.burst_ms = 1000;
	t->nports = lim->port_max - lim->port_min + 1u;
	t->max_relays = t->nports / 2;
	t->pair_mask = pow2_at_least(t->max_relays * 2) - 1;
	t->node_mask = pow2_at_least(t->max_relays * 4) - 1;

	t->free_ring = calloc(t->nports, sizeof(*t->free_ring));
	t->port_owner = calloc(t->nports, sizeof(*t->port_owner));
	t->relays = calloc(t->max_relays, sizeof(*t->relays));
	t->free_ids = calloc(t->max_relays, sizeof(*t->free_ids));
	t->pair_slot = calloc(t->pair_mask + 1u, sizeof(*t->pair_slot));
	t->node_slot = calloc(t->node_mask + 1u, sizeof(*t->node_slot));
	if (!t->free_ring || !t->port_owner || !t->relays || !t->free_ids || !t->pair_slot ||
	    !t->node_slot) {
		rtab_destroy(t);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < t->nports; i++) {
		t->free_ring[i] = (uint16_t)i;
		t->port_owner[i] = NONE;
	}
	t->free_head = 0;
	t->free_count = t->nports;
	/* ids handed out lowest first, which keeps the relays array dense for rtab_expire() */
	for (uint32_t i = 0; i < t->max_relays; i++)
		t->free_ids[i] = t->max_relays - 1 - i;
	t->nfree_ids = t->max_relays;
	for (uint32_t i = 0; i <= t->pair_mask; i++)
		t->pair_slot[i] = NONE;
	return 0;
}

void rtab_destroy(struct rtab *t)
{
	free(t->free_ring);
	free(t->port_owner);
	free(t->relays);
	free(t->free_ids);
	free(t->pair_slot);
	free(t->node_slot);
	memset(t, 0, sizeof(*t));
}

static uint16_t port_take(struct rtab *t)
{
	uint16_t off = t->free_ring[t->free_head];

	t->free_head = (t->free_head + 1) % t->nports;
	t->free_count--;
	return off;
}

static void port_put(struct rtab *t, uint16_t off)
{
	t->free_ring[(t->free_head + t->free_count) % t->nports] = off;
	t->free_count++;
}

/* The slot holding pair (lo, hi), or the empty slot where it would go. */
static uint32_t pair_lookup(const struct rtab *t, uint64_t lo, uint64_t hi)
{
	uint32_t i = (uint32_t)pair_hash(lo, hi) & t->pair_mask;

	for (;;) {
		uint32_t id = t->pair_slot[i];

		if (id == NONE)
			return i;
		const struct rtab_relay *r = &t->relays[id];

		if (r->side[0].node == lo && r->side[1].node == hi)
			return i;
		i = (i + 1) & t->pair_mask;
	}
}

/* Linear probing's backward-shift deletion: no tombstones, so lookups stay short. */
static void pair_remove(struct rtab *t, uint32_t i)
{
	uint32_t j = i;

	t->pair_slot[i] = NONE;
	for (;;) {
		j = (j + 1) & t->pair_mask;
		uint32_t id = t->pair_slot[j];

		if (id == NONE)
			return;
		const struct rtab_relay *r = &t->relays[id];
		uint32_t home =
			(uint32_t)pair_hash(r->side[0].node, r->side[1].node) & t->pair_mask;

		/* move j into the hole i unless its home lies cyclically in (i, j] */
		bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);

		if (!stays) {
			t->pair_slot[i] = id;
			t->pair_slot[j] = NONE;
			i = j;
		}
	}
}

static uint32_t node_lookup(const struct rtab *t, uint64_t node)
{
	uint32_t i = (uint32_t)mix64(node) & t->node_mask;

	while (t->node_slot[i].count && t->node_slot[i].node != node)
		i = (i + 1) & t->node_mask;
	return i;
}

static void node_remove(struct rtab *t, uint32_t i)
{
	uint32_t j = i;

	t->node_slot[i].count = 0;
	for (;;) {
		j = (j + 1) & t->node_mask;
		if (!t->node_slot[j].count)
			return;
		uint32_t home = (uint32_t)mix64(t->node_slot[j].node) & t->node_mask;
		bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);

		if (!stays) {
			t->node_slot[i] = t->node_slot[j];
			t->node_slot[j].count = 0;
			i = j;
		}
	}
}

uint32_t rtab_node_relays(const struct rtab *t, uint64_t node)
{
	return t->node_slot[node_lookup(t, node)].count;
}

static void node_add(struct rtab *t, uint64_t node)
{
	uint32_t i = node_lookup(t, node);

	t->node_slot[i].node = node;
	t->node_slot[i].count++;
}

static void node_drop(struct rtab *t, uint64_t node)
{
	uint32_t i = node_lookup(t, node);

	if (t->node_slot[i].count && --t->node_slot[i].count == 0)
		node_remove(t, i);
}

int rtab_find(const struct rtab *t, uint64_t x, uint64_t y, uint32_t *id)
{
	uint64_t lo = x < y ? x : y, hi = x < y ? y : x;
	uint32_t v = t->pair_slot[pair_lookup(t, lo, hi)];

	if (v == NONE)
		return -ENOENT;
	*id = v;
	return 0;
}

int rtab_alloc(struct rtab *t, uint64_t x, uint64_t y, uint64_t now_ms, uint32_t *id)
{
	if (x == y)
		return -EINVAL;
	uint64_t lo = x < y ? x : y, hi = x < y ? y : x;
	uint32_t slot = pair_lookup(t, lo, hi);

	if (t->pair_slot[slot] != NONE) {
		*id = t->pair_slot[slot];
		return -EEXIST;
	}
	if (t->free_count < 2 || !t->nfree_ids) {
		t->counters.refused_ports++;
		return -ENOSPC;
	}
	uint32_t q = t->lim.max_relays_per_node;

	if (q && (rtab_node_relays(t, lo) >= q || rtab_node_relays(t, hi) >= q)) {
		t->counters.refused_node_quota++;
		return -EDQUOT;
	}

	uint32_t n = t->free_ids[--t->nfree_ids];
	struct rtab_relay *r = &t->relays[n];

	memset(r, 0, sizeof(*r));
	r->used = true;
	r->side[0].node = lo;
	r->side[1].node = hi;
	for (int s = 0; s < 2; s++) {
		uint16_t off = port_take(t);

		r->side[s].port = (uint16_t)(t->lim.port_min + off);
		t->port_owner[off] = n * 2 + (uint32_t)s;
	}
	r->created_ms = now_ms;
	r->last_fwd_ms = now_ms;
	bucket_setup(&r->pkts, t->lim.pps, t->lim.burst_ms, now_ms);
	bucket_setup(&r->bytes, t->lim.bps, t->lim.burst_ms, now_ms);
	t->pair_slot[slot] = n;
	node_add(t, lo);
	node_add(t, hi);
	t->nrelays++;
	t->counters.relays_created++;
	*id = n;
	return 0;
}

void rtab_free(struct rtab *t, uint32_t id)
{
	if (id >= t->max_relays || !t->relays[id].used)
		return;
	struct rtab_relay *r = &t->relays[id];

	pair_remove(t, pair_lookup(t, r->side[0].node, r->side[1].node));
	for (int s = 0; s < 2; s++) {
		uint16_t off = (uint16_t)(r->side[s].port - t->lim.port_min);

		t->port_owner[off] = NONE;
		port_put(t, off);
		node_drop(t, r->side[s].node);
	}
	r->used = false;
	t->free_ids[t->nfree_ids++] = id;
	t->nrelays--;
	t->counters.relays_freed++;
}

void rtab_set_quotas(struct rtab *t, const struct rtab_limits *lim, uint64_t now_ms)
{
	t->lim.max_relays_per_node = lim->max_relays_per_node;
	t->lim.pps = lim->pps;
	t->lim.bps = lim->bps;
	t->lim.burst_ms = lim->burst_ms ? lim->burst_ms : 1000;
	t->lim.idle_timeout_s = lim->idle_timeout_s;
	for (uint32_t i = 0; i < t->max_relays; i++) {
		struct rtab_relay *r = &t->relays[i];

		if (!r->used)
			continue;
		bucket_retune(&r->pkts, t->lim.pps, t->lim.burst_ms, now_ms);
		bucket_retune(&r->bytes, t->lim.bps, t->lim.burst_ms, now_ms);
	}
}

const struct rtab_relay *rtab_get(const struct rtab *t, uint32_t id)
{
	if (id >= t->max_relays || !t->relays[id].used)
		return NULL;
	return &t->relays[id];
}

static uint32_t owner_of(const struct rtab *t, uint16_t port)
{
	if (port < t->lim.port_min || port > t->lim.port_max)
		return NONE;
	return t->port_owner[port - t->lim.port_min];
}

const struct rtab_relay *rtab_by_port(const struct rtab *t, uint16_t port, int *side)
{
	uint32_t o = owner_of(t, port);

	if (o == NONE)
		return NULL;
	if (side)
		*side = (int)(o & 1);
	return &t->relays[o >> 1];
}

uint16_t rtab_port_of(const struct rtab *t, uint32_t id, uint64_t node)
{
	const struct rtab_relay *r = rtab_get(t, id);

	if (!r)
		return 0;
	for (int s = 0; s < 2; s++)
		if (r->side[s].node == node)
			return r->side[s].port;
	return 0;
}

int rtab_bind(struct rtab *t, uint16_t port, uint64_t node, const struct addr *src, uint64_t now_ms)
{
	uint32_t o = owner_of(t, port);

	if (o == NONE) {
		t->counters.bind_refused++;
		return -ENOENT;
	}
	struct rtab_relay *r = &t->relays[o >> 1];
	struct rtab_side *sd = &r->side[o & 1];

	if (sd->node != node || !addr_is_set(src)) {
		t->counters.bind_refused++;
		return -EPERM;
	}
	if (addr_is_set(&sd->bound) && !addr_equal(&sd->bound, src))
		r->counters.rebinds++;
	sd->bound = *src;
	sd->bound_ms = now_ms;
	r->counters.binds++;
	return 0;
}

/*
 * The hot path's address test: addr_equal() is in another translation unit and compares
 * more than the relay needs (a binding is always a copy of a received source address).
 */
static inline bool src_matches(const struct addr *bound, const struct addr *src)
{
	if (bound->sa.sa_family != src->sa.sa_family)
		return false;
	if (bound->sa.sa_family == AF_INET)
		return bound->in4.sin_port == src->in4.sin_port &&
		       bound->in4.sin_addr.s_addr == src->in4.sin_addr.s_addr;
	if (bound->sa.sa_family == AF_INET6)
		return bound->in6.sin6_port == src->in6.sin6_port &&
		       memcmp(&bound->in6.sin6_addr, &src->in6.sin6_addr, 16) == 0;
	return false;
}

enum rtab_verdict rtab_forward(struct rtab *t, uint16_t port, const struct addr *src, size_t len,
			       uint64_t now_ms, struct rtab_fwd *out)
{
	uint32_t o = owner_of(t, port);

	if (o == NONE) {
		t->counters.drop_no_relay++;
		return RTAB_DROP_NO_RELAY;
	}
	struct rtab_relay *r = &t->relays[o >> 1];
	unsigned s = o & 1;
	struct rtab_side *from = &r->side[s], *to = &r->side[s ^ 1];

	if (!from->bound.sa.sa_family) {
		r->counters.drop_unbound++;
		return RTAB_DROP_UNBOUND;
	}
	if (!src_matches(&from->bound, src)) {
		r->counters.drop_wrong_source++;
		return RTAB_DROP_WRONG_SOURCE;
	}
	if (!to->bound.sa.sa_family) {
		r->counters.drop_peer_unbound++;
		return RTAB_DROP_PEER_UNBOUND;
	}
	if (len > RTAB_MAX_DATAGRAM) {
		r->counters.drop_too_big++;
		return RTAB_DROP_TOO_BIG;
	}
	/* both buckets are checked before either is charged: a drop costs the pair nothing */
	if (!bucket_has(&r->pkts, 1, now_ms)) {
		r->counters.drop_pps++;
		return RTAB_DROP_PPS;
	}
	if (!bucket_has(&r->bytes, len, now_ms)) {
		r->counters.drop_bps++;
		return RTAB_DROP_BPS;
	}
	bucket_take(&r->pkts, 1);
	bucket_take(&r->bytes, len);
	if (s == 0) {
		r->counters.fwd_packets_a_to_b++;
		r->counters.fwd_bytes_a_to_b += len;
	} else {
		r->counters.fwd_packets_b_to_a++;
		r->counters.fwd_bytes_b_to_a += len;
	}
	r->last_fwd_ms = now_ms;
	out->relay = o >> 1;
	out->out_port = to->port;
	out->dst = &to->bound;
	return RTAB_FORWARD;
}

int rtab_expire(struct rtab *t, uint64_t now_ms, uint32_t *id, uint64_t *next_ms)
{
	uint64_t next = UINT64_MAX;
	uint64_t idle_ms = (uint64_t)t->lim.idle_timeout_s * 1000;
	int found = -ENOENT;

	for (uint32_t i = 0; t->lim.idle_timeout_s && i < t->max_relays; i++) {
		const struct rtab_relay *r = &t->relays[i];

		if (!r->used)
			continue;
		uint64_t due = r->last_fwd_ms + idle_ms;

		if (due <= now_ms && found < 0) {
			*id = i;
			found = 0;
			t->counters.relays_idle++;
		} else if (due < next) {
			next = due;
		}
	}
	if (next_ms)
		*next_ms = next;
	return found;
}

const char *rtab_verdict_name(enum rtab_verdict v)
{
	switch (v) {
	case RTAB_FORWARD:
		return "forward";
	case RTAB_DROP_NO_RELAY:
		return "no_relay";
	case RTAB_DROP_UNBOUND:
		return "unbound";
	case RTAB_DROP_WRONG_SOURCE:
		return "wrong_source";
	case RTAB_DROP_PEER_UNBOUND:
		return "peer_unbound";
	case RTAB_DROP_PPS:
		return "pps";
	case RTAB_DROP_BPS:
		return "bps";
	case RTAB_DROP_TOO_BIG:
		return "too_big";
	}
	return "?";
}

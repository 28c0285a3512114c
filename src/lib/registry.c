// SPDX-License-Identifier: MIT
/*
 * registry - the coordinator's node table (see registry.h for the memory budget).
 */
#include "wgpunch/registry.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

/* Freed entries are poisoned under AddressSanitizer, so that slabs do not hide a use after
 * free that malloc'd entries would show. */
#if defined(__SANITIZE_ADDRESS__)
#define REGISTRY_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define REGISTRY_ASAN 1
#endif
#endif
#ifdef REGISTRY_ASAN
#include <sanitizer/asan_interface.h>
#else
#define ASAN_POISON_MEMORY_REGION(a, s) ((void)(a), (void)(s))
#define ASAN_UNPOISON_MEMORY_REGION(a, s) ((void)(a), (void)(s))
#endif

static_assert(sizeof(struct reg_node) <= REGISTRY_NODE_BUDGET,
	      "struct reg_node outgrew its budget: a million nodes must fit in ~512 MB");

static bool registry_peers_inline(const struct reg_node *n)
{
	return n->n_peers <= REGISTRY_INLINE_PEERS;
}
static_assert(sizeof(struct reg_addr) == 20, "struct reg_addr is meant to be compact");

/* A million nodes need 2^20 buckets; beyond 2^30 the arrays alone are 16 GB. */
#define REGISTRY_MAX_BUCKETS (1u << 30)
#define REGISTRY_MIN_BUCKETS 1024u
/* With at most 2^30 of 2^32 indices in use a draw is free with p >= 3/4, so
 * 64 draws all fail with p < 2^-128: only a broken generator gets there. */
#define REGISTRY_INDEX_DRAWS 64

void registry_addr_pack(struct reg_addr *out, const struct addr *a)
{
	memset(out, 0, sizeof(*out));
	switch (addr_family(a)) {
	case AF_INET:
		memcpy(out->ip, &a->in4.sin_addr, 4);
		out->port = ntohs(a->in4.sin_port);
		out->family = 4;
		break;
	case AF_INET6:
		memcpy(out->ip, &a->in6.sin6_addr, 16);
		out->port = ntohs(a->in6.sin6_port);
		out->family = 6;
		break;
	default:
		break;
	}
}

void registry_addr_unpack(struct addr *out, const struct reg_addr *a)
{
	memset(out, 0, sizeof(*out));
	if (a->family == 4) {
		out->in4.sin_family = AF_INET;
		memcpy(&out->in4.sin_addr, a->ip, 4);
		out->in4.sin_port = htons(a->port);
	} else if (a->family == 6) {
		out->in6.sin6_family = AF_INET6;
		memcpy(&out->in6.sin6_addr, a->ip, 16);
		out->in6.sin6_port = htons(a->port);
	}
}

bool registry_addr_equal(const struct reg_addr *a, const struct reg_addr *b)
{
	/* pack() zeroes the unused bytes, so the whole struct compares. */
	return a->family == b->family && a->port == b->port && !memcmp(a->ip, b->ip, 16);
}

uint32_t registry_addr_hash(const struct reg_addr *a)
{
	uint32_t h = 2166136261u;

	h = (h ^ a->family) * 16777619u;
	for (size_t i = 0; i < sizeof(a->ip); i++)
		h = (h ^ a->ip[i]) * 16777619u;
	h = (h ^ (uint8_t)(a->port >> 8)) * 16777619u;
	return (h ^ (uint8_t)a->port) * 16777619u;
}

/* Fingerprints are keyed BLAKE2b and indices are random: their low bits are uniform. */
static uint32_t registry_fp_slot(const struct registry *r, uint64_t fp)
{
	return (uint32_t)fp & r->mask;
}

static uint32_t registry_idx_slot(const struct registry *r, uint32_t idx)
{
	return idx & r->mask;
}

static int registry_rehash(struct registry *r, uint32_t buckets)
{
	struct reg_node **fp = calloc(buckets, sizeof(*fp));
	struct reg_node **idx = calloc(buckets, sizeof(*idx));

	if (!fp || !idx) {
		free(fp);
		free(idx);
		return -ENOMEM;
	}
	uint32_t old_buckets = r->fp_buckets ? r->mask + 1 : 0;

	r->mask = buckets - 1;
	for (uint32_t i = 0; i < old_buckets; i++) {
		struct reg_node *n, *next;

		for (n = r->fp_buckets[i]; n; n = next) {
			next = n->fp_next;
			n->fp_next = fp[registry_fp_slot(r, n->fp)];
			fp[registry_fp_slot(r, n->fp)] = n;
		}
		for (n = r->idx_buckets[i]; n; n = next) {
			next = n->idx_next;
			n->idx_next = idx[registry_idx_slot(r, n->local_idx)];
			idx[registry_idx_slot(r, n->local_idx)] = n;
		}
	}
	free(r->fp_buckets);
	free(r->idx_buckets);
	r->fp_buckets = fp;
	r->idx_buckets = idx;
	return 0;
}

int registry_init(struct registry *r, uint32_t max_nodes)
{
	memset(r, 0, sizeof(*r));
	if (max_nodes == 0)
		return -EINVAL;
	r->max_nodes = max_nodes;
	return registry_rehash(r, REGISTRY_MIN_BUCKETS);
}

/*
 * Entries come from slabs of REGISTRY_SLAB_NODES: a malloc'd entry costs its size plus an
 * 8-byte header, rounded up to 16 (464 bytes for 456), a slab entry exactly its size. Freed
 * entries go on a free list (through fp_next) and are reused; slabs are only freed with the
 * registry, so the registry keeps the memory of its largest size (as malloc mostly would).
 */
struct reg_slab {
	struct reg_slab *next;
	struct reg_node node[REGISTRY_SLAB_NODES];
};

static struct reg_node *registry_alloc_node(struct registry *r)
{
	struct reg_node *n;

	if (!r->free_nodes) {
		struct reg_slab *s = malloc(sizeof(*s));

		if (!s)
			return NULL;
		s->next = r->slabs;
		r->slabs = s;
		for (size_t i = REGISTRY_SLAB_NODES; i-- > 0;) {
			s->node[i].fp_next = r->free_nodes;
			r->free_nodes = &s->node[i];
			ASAN_POISON_MEMORY_REGION((char *)&s->node[i] + sizeof(s->node[i].fp_next),
						  sizeof(s->node[i]) - sizeof(s->node[i].fp_next));
		}
	}
	n = r->free_nodes;
	r->free_nodes = n->fp_next;
	ASAN_UNPOISON_MEMORY_REGION(n, sizeof(*n));
	memset(n, 0, sizeof(*n));
	return n;
}

static void registry_free_node(struct registry *r, struct reg_node *n)
{
	if (!registry_peers_inline(n))
		free(n->peer_store.heap);
	free(n->lan);
	free(n->filter_test); /* a pending test's state (filter.c cancels it before, normally) */
	sodium_memzero(n, sizeof(*n)); /* session keys */
	n->fp_next = r->free_nodes;
	r->free_nodes = n;
	ASAN_POISON_MEMORY_REGION((char *)n + sizeof(n->fp_next), sizeof(*n) - sizeof(n->fp_next));
}

void registry_destroy(struct registry *r)
{
	struct reg_node *n, *next;
	struct reg_slab *s, *snext;

	for (n = r->lru_head; n; n = next) {
		next = n->lru_next;
		registry_free_node(r, n);
	}
	for (s = r->slabs; s; s = snext) {
		snext = s->next;
		ASAN_UNPOISON_MEMORY_REGION(s, sizeof(*s));
		free(s);
	}
	free(r->fp_buckets);
	free(r->idx_buckets);
	memset(r, 0, sizeof(*r));
}

int registry_set_max_nodes(struct registry *r, uint32_t max_nodes)
{
	if (max_nodes == 0)
		return -EINVAL;
	r->max_nodes = max_nodes; /* the tables follow the entries, not the bound */
	return 0;
}

/*
 * Doubles both tables once the entries outnumber the buckets, so that they cost memory
 * for the nodes there are, not for max_nodes (random slots would make every page of a
 * table sized up front resident after a few thousand nodes). Rehashing is linear: on the
 * way to a million nodes, twenty doublings of amortised O(1) each, the last about 2^20
 * relinks (tens of ms, once). Without memory for the larger tables the chains just grow.
 */
static void registry_maybe_grow(struct registry *r)
{
	uint32_t buckets = r->mask + 1;

	if (r->n_nodes > buckets && buckets < REGISTRY_MAX_BUCKETS)
		(void)registry_rehash(r, buckets << 1);
}

struct reg_node *registry_find_fp(const struct registry *r, uint64_t fp,
				  const struct reg_node *prev)
{
	struct reg_node *n = prev ? prev->fp_next : r->fp_buckets[registry_fp_slot(r, fp)];

	while (n && n->fp != fp)
		n = n->fp_next;
	return n;
}

struct reg_node *registry_find(const struct registry *r, const uint8_t key[KEY_LEN])
{
	uint64_t fp = key_fingerprint(key);
	struct reg_node *n = NULL;

	while ((n = registry_find_fp(r, fp, n)))
		if (!memcmp(n->key, key, KEY_LEN))
			return n;
	return NULL;
}

struct reg_node *registry_find_index(const struct registry *r, uint32_t idx)
{
	struct reg_node *n;

	if (idx == 0)
		return NULL;
	for (n = r->idx_buckets[registry_idx_slot(r, idx)]; n; n = n->idx_next)
		if (n->local_idx == idx)
			return n;
	return NULL;
}

static void registry_lru_unlink(struct registry *r, struct reg_node *n)
{
	if (n->lru_prev)
		n->lru_prev->lru_next = n->lru_next;
	else
		r->lru_head = n->lru_next;
	if (n->lru_next)
		n->lru_next->lru_prev = n->lru_prev;
	else
		r->lru_tail = n->lru_prev;
	n->lru_prev = n->lru_next = NULL;
}

static void registry_lru_append(struct registry *r, struct reg_node *n)
{
	n->lru_prev = r->lru_tail;
	n->lru_next = NULL;
	if (r->lru_tail)
		r->lru_tail->lru_next = n;
	else
		r->lru_head = n;
	r->lru_tail = n;
}

int registry_add(struct registry *r, const uint8_t key[KEY_LEN], uint64_t now_ms,
		 struct reg_node **out)
{
	struct reg_node *n;
	uint32_t slot;

	if (registry_find(r, key))
		return -EEXIST;
	if (r->n_nodes >= r->max_nodes)
		return -ENOSPC;
	n = registry_alloc_node(r);
	if (!n)
		return -ENOMEM;
	memcpy(n->key, key, KEY_LEN);
	n->fp = key_fingerprint(key);
	n->last_seen_ms = now_ms;
	slot = registry_fp_slot(r, n->fp);
	n->fp_next = r->fp_buckets[slot];
	r->fp_buckets[slot] = n;
	registry_lru_append(r, n);
	r->n_nodes++;
	registry_maybe_grow(r);
	*out = n;
	return 0;
}

void registry_clear_index(struct registry *r, struct reg_node *n)
{
	struct reg_node **pp;

	if (n->local_idx == 0)
		return;
	for (pp = &r->idx_buckets[registry_idx_slot(r, n->local_idx)]; *pp; pp = &(*pp)->idx_next) {
		if (*pp == n) {
			*pp = n->idx_next;
			break;
		}
	}
	n->idx_next = NULL;
	n->local_idx = 0;
	r->n_sessions--;
}

void registry_remove(struct registry *r, struct reg_node *n)
{
	struct reg_node **pp;

	registry_clear_index(r, n);
	for (pp = &r->fp_buckets[registry_fp_slot(r, n->fp)]; *pp; pp = &(*pp)->fp_next) {
		if (*pp == n) {
			*pp = n->fp_next;
			break;
		}
	}
	registry_lru_unlink(r, n);
	r->n_nodes--;
	registry_free_node(r, n);
}

int registry_assign_index(struct registry *r, struct reg_node *n, registry_rand_fn rnd, void *arg)
{
	for (int i = 0; i < REGISTRY_INDEX_DRAWS; i++) {
		uint32_t idx = rnd ? rnd(arg) : randombytes_random();
		uint32_t slot;

		if (idx == 0 || registry_find_index(r, idx))
			continue;
		registry_clear_index(r, n);
		n->local_idx = idx;
		slot = registry_idx_slot(r, idx);
		n->idx_next = r->idx_buckets[slot];
		r->idx_buckets[slot] = n;
		r->n_sessions++;
		return 0;
	}
	return -EAGAIN;
}

void registry_touch(struct registry *r, struct reg_node *n, uint64_t now_ms)
{
	n->last_seen_ms = now_ms;
	if (r->lru_tail != n) {
		registry_lru_unlink(r, n);
		registry_lru_append(r, n);
	}
}

struct reg_node *registry_expired(const struct registry *r, uint64_t now_ms, uint64_t max_age_ms)
{
	struct reg_node *n = r->lru_head;

	if (n && now_ms >= n->last_seen_ms && now_ms - n->last_seen_ms >= max_age_ms)
		return n;
	return NULL;
}

struct reg_node *registry_first(const struct registry *r)
{
	return r->lru_head;
}

static int registry_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* Sorts a few fingerprints in place: a REGISTER's page is usually eight or fewer. */
static void registry_sort_small(uint64_t *v, size_t count)
{
	for (size_t i = 1; i < count; i++) {
		uint64_t x = v[i];
		size_t j = i;

		for (; j > 0 && v[j - 1] > x; j--)
			v[j] = v[j - 1];
		v[j] = x;
	}
}

int registry_set_peers(struct reg_node *n, const uint64_t *fps, size_t count)
{
	uint64_t stack[REGISTRY_INLINE_PEERS], *sorted = stack;
	size_t m = 0;

	if (count > UINT16_MAX)
		return -EINVAL;
	if (count > REGISTRY_INLINE_PEERS) {
		sorted = malloc(count * sizeof(*sorted));
		if (!sorted)
			return -ENOMEM;
	}
	if (count) {
		memcpy(sorted, fps, count * sizeof(*sorted));
		if (count <= REGISTRY_INLINE_PEERS)
			registry_sort_small(sorted, count);
		else
			qsort(sorted, count, sizeof(*sorted), registry_cmp_u64);
		for (size_t i = 0; i < count; i++)
			if (m == 0 || sorted[m - 1] != sorted[i])
				sorted[m++] = sorted[i];
	}
	/* REGISTER repeats every refresh, nearly always unchanged: nothing to store then (and,
	 * for eight peers or fewer, nothing was allocated). */
	if (m == n->n_peers &&
	    (m == 0 || !memcmp(sorted, registry_peers(n), m * sizeof(*sorted)))) {
		if (sorted != stack)
			free(sorted);
		return 0;
	}
	/* fps may have been the old list itself: sorted is a copy, so it can go now. */
	if (!registry_peers_inline(n))
		free(n->peer_store.heap);
	if (m <= REGISTRY_INLINE_PEERS) {
		/* in the entry itself: no allocation, no allocator header */
		memset(&n->peer_store, 0, sizeof(n->peer_store));
		memcpy(n->peer_store.in, sorted, m * sizeof(*sorted));
		if (sorted != stack)
			free(sorted);
	} else {
		uint64_t *shrunk = m < count ? realloc(sorted, m * sizeof(*sorted)) : NULL;

		n->peer_store.heap = shrunk ? shrunk : sorted;
	}
	n->n_peers = (uint16_t)m;
	return 1;
}

int registry_set_peer_range(struct reg_node *n, const uint64_t *fps, size_t count, uint64_t lo,
			    uint64_t hi, size_t cap)
{
	size_t total = n->n_peers + count, m = 0;
	uint64_t *all;
	int r;

	if (total == 0)
		return 0;
	all = malloc(total * sizeof(*all));
	if (!all)
		return -ENOMEM;
	const uint64_t *have = registry_peers(n);

	for (size_t i = 0; i < n->n_peers; i++)
		if (have[i] < lo || have[i] > hi)
			all[m++] = have[i];
	for (size_t i = 0; i < count; i++)
		if (fps[i] >= lo && fps[i] <= hi)
			all[m++] = fps[i];
	qsort(all, m, sizeof(*all), registry_cmp_u64);
	/* Deduplicated before the cap, so the cap counts distinct peers. */
	{
		size_t u = 0;

		for (size_t i = 0; i < m; i++)
			if (u == 0 || all[u - 1] != all[i])
				all[u++] = all[i];
		m = u;
	}
	if (m > cap)
		m = cap; /* the lowest fingerprints: the same choice every time */
	r = registry_set_peers(n, all, m);
	free(all);
	return r;
}

bool registry_lists(const struct reg_node *n, uint64_t fp)
{
	const uint64_t *peers = registry_peers(n);
	size_t lo = 0, hi = n->n_peers;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (peers[mid] == fp)
			return true;
		if (peers[mid] < fp)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* Whether n's LAN list is exactly lan[count]: a refresh repeats it, and allocates nothing. */
static bool registry_lan_same(const struct reg_node *n, const struct addr *lan, size_t count)
{
	struct reg_addr a;

	if (!n->lan)
		return count == 0;
	if (n->lan->n != count)
		return false;
	for (size_t i = 0; i < count; i++) {
		registry_addr_pack(&a, &lan[i]);
		if (!registry_addr_equal(&a, &n->lan->addr[i]))
			return false;
	}
	return true;
}

int registry_set_lan(struct reg_node *n, const struct addr *lan, size_t count)
{
	struct reg_lan *l = NULL;

	bool has6 = n->lan && n->lan->has6;

	if (count > UINT8_MAX)
		return -EINVAL;
	if (registry_lan_same(n, lan, count))
		return 0;
	if (count || has6) {
		l = malloc(sizeof(*l) + (count + has6) * sizeof(l->addr[0]));
		if (!l)
			return -ENOMEM;
		l->n = (uint8_t)count;
		l->has6 = has6;
		if (has6)
			l->addr[count] = n->lan->addr[n->lan->n];
		for (size_t i = 0; i < count; i++)
			registry_addr_pack(&l->addr[i], &lan[i]);
	}
	bool same = n->lan ? l && l->n == n->lan->n &&
				     !memcmp(l->addr, n->lan->addr, count * sizeof(l->addr[0]))
			   : !l;

	if (same) {
		free(l);
		return 0;
	}
	free(n->lan);
	n->lan = l;
	return 1;
}

size_t registry_get_lan(const struct reg_node *n, struct addr *out, size_t cap)
{
	size_t i;

	if (!n->lan)
		return 0;
	for (i = 0; i < n->lan->n && i < cap; i++)
		registry_addr_unpack(&out[i], &n->lan->addr[i]);
	return i;
}

int registry_set_mapping6(struct reg_node *n, const struct addr *a)
{
	struct reg_addr m = { 0 };
	uint8_t k = n->lan ? n->lan->n : 0;
	struct reg_lan *l;

	if (a && addr_is_set(a))
		registry_addr_pack(&m, a);
	if (n->lan && n->lan->has6 ? registry_addr_equal(&n->lan->addr[k], &m) : !m.family)
		return 0;
	l = NULL;
	if (k || m.family) {
		l = malloc(sizeof(*l) + (k + (m.family != 0)) * sizeof(l->addr[0]));
		if (!l)
			return -ENOMEM;
		l->n = k;
		l->has6 = m.family != 0;
		if (k)
			memcpy(l->addr, n->lan->addr, k * sizeof(l->addr[0]));
		if (m.family)
			l->addr[k] = m;
	}
	free(n->lan);
	n->lan = l;
	return 1;
}

bool registry_get_mapping6(const struct reg_node *n, struct addr *out)
{
	if (!n->lan || !n->lan->has6)
		return false;
	registry_addr_unpack(out, &n->lan->addr[n->lan->n]);
	return true;
}

size_t registry_node_bytes(const struct reg_node *n)
{
	size_t b = sizeof(*n);

	if (!registry_peers_inline(n))
		b += n->n_peers * sizeof(uint64_t);

	if (n->lan)
		b += sizeof(*n->lan) + (n->lan->n + n->lan->has6) * sizeof(n->lan->addr[0]);
	return b;
}

size_t registry_bucket_bytes_per_node(const struct registry *r)
{
	size_t total = 2 * (size_t)(r->mask + 1) * sizeof(struct reg_node *);
	size_t n = r->n_nodes ? r->n_nodes : 1;

	return (total + n - 1) / n;
}

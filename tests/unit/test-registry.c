// SPDX-License-Identifier: MIT
/*
 * test-registry - the coordinator's node table: lookups, indices, expiry,
 * the bound, consent, scale and memory per node.
 */
#include "wgpunch/registry.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "../tap.h"

/* Distinct valid-looking keys without X25519: only identity matters here. */
static void make_key(uint8_t key[KEY_LEN], uint32_t i)
{
	memset(key, 0, KEY_LEN);
	key[0] = 0x5a;
	key[1] = (uint8_t)(i >> 24);
	key[2] = (uint8_t)(i >> 16);
	key[3] = (uint8_t)(i >> 8);
	key[4] = (uint8_t)i;
}

static void make_addr(struct addr *a, const char *ip, uint16_t port)
{
	memset(a, 0, sizeof(*a));
	if (strchr(ip, ':')) {
		a->in6.sin6_family = AF_INET6;
		inet_pton(AF_INET6, ip, &a->in6.sin6_addr);
		a->in6.sin6_port = htons(port);
	} else {
		a->in4.sin_family = AF_INET;
		inet_pton(AF_INET, ip, &a->in4.sin_addr);
		a->in4.sin_port = htons(port);
	}
}

static void test_registry_add_find_remove(void)
{
	struct registry r;
	struct reg_node *a, *b, *x;
	uint8_t ka[KEY_LEN], kb[KEY_LEN], kc[KEY_LEN];

	make_key(ka, 1);
	make_key(kb, 2);
	make_key(kc, 3);
	CHECK_EQ_INT(registry_init(&r, 16), 0);
	CHECK_EQ_INT(registry_add(&r, ka, 100, &a), 0);
	CHECK_EQ_INT(registry_add(&r, kb, 100, &b), 0);
	CHECK_EQ_INT(registry_add(&r, ka, 100, &x), -EEXIST);
	CHECK_EQ_INT(r.n_nodes, 2);
	CHECK(registry_find(&r, ka) == a);
	CHECK(registry_find(&r, kb) == b);
	CHECK(registry_find(&r, kc) == NULL);
	CHECK(a->fp == key_fingerprint(ka));
	CHECK(registry_find_fp(&r, key_fingerprint(kb), NULL) == b);
	CHECK(registry_find_fp(&r, key_fingerprint(kb), b) == NULL);
	CHECK_EQ_INT(registry_assign_index(&r, a, NULL, NULL), 0);
	CHECK(a->local_idx != 0);
	CHECK(registry_find_index(&r, a->local_idx) == a);
	CHECK(registry_find_index(&r, 0) == NULL);
	CHECK_EQ_INT(r.n_sessions, 1);

	uint32_t idx = a->local_idx;

	registry_remove(&r, a);
	CHECK_EQ_INT(r.n_nodes, 1);
	CHECK_EQ_INT(r.n_sessions, 0);
	CHECK(registry_find(&r, ka) == NULL);
	CHECK(registry_find_index(&r, idx) == NULL);
	CHECK(registry_find(&r, kb) == b);
	CHECK(registry_first(&r) == b);
	registry_destroy(&r);
}

/* A generator replaying a script: forces collisions and the reserved index 0. */
struct script {
	const uint32_t *v;
	size_t n, i;
	uint32_t after; /* returned once the script has run out */
};

static uint32_t script_next(void *arg)
{
	struct script *s = arg;

	return s->i < s->n ? s->v[s->i++] : s->after;
}

static void test_registry_index_collisions(void)
{
	/* 17 and 17 + 16 share a bucket in a 16-bucket table; 0 is never used. */
	static const uint32_t seq[] = { 17, 0, 17, 17 + 16, 5 };
	struct script s = { seq, sizeof(seq) / sizeof(seq[0]), 0, 5 };
	struct registry r;
	struct reg_node *a, *b, *c;
	uint8_t k[KEY_LEN];

	CHECK_EQ_INT(registry_init(&r, 8), 0);
	make_key(k, 1);
	registry_add(&r, k, 0, &a);
	make_key(k, 2);
	registry_add(&r, k, 0, &b);
	make_key(k, 3);
	registry_add(&r, k, 0, &c);

	CHECK_EQ_INT(registry_assign_index(&r, a, script_next, &s), 0);
	CHECK_EQ_INT(a->local_idx, 17);
	/* 0 is skipped, 17 is taken: b gets 33, in the same bucket as a. */
	CHECK_EQ_INT(registry_assign_index(&r, b, script_next, &s), 0);
	CHECK_EQ_INT(b->local_idx, 33);
	CHECK(registry_find_index(&r, 17) == a);
	CHECK(registry_find_index(&r, 33) == b);
	CHECK(registry_find_index(&r, 49) == NULL);
	/* A new index replaces the old one. */
	CHECK_EQ_INT(registry_assign_index(&r, a, script_next, &s), 0);
	CHECK_EQ_INT(a->local_idx, 5);
	CHECK(registry_find_index(&r, 17) == NULL);
	CHECK(registry_find_index(&r, 5) == a);
	CHECK(registry_find_index(&r, 33) == b);
	CHECK_EQ_INT(r.n_sessions, 2);
	/* A generator stuck on used values gives up, bounded, and changes nothing. */
	CHECK_EQ_INT(registry_assign_index(&r, c, script_next, &s), -EAGAIN); /* only 5s */
	CHECK_EQ_INT(c->local_idx, 0);
	s.after = 7; /* free: c gets it */
	CHECK_EQ_INT(registry_assign_index(&r, c, script_next, &s), 0);
	CHECK_EQ_INT(c->local_idx, 7);
	CHECK_EQ_INT(registry_assign_index(&r, b, script_next, &s), -EAGAIN);
	CHECK_EQ_INT(b->local_idx, 33);
	CHECK(registry_find_index(&r, 33) == b);
	registry_destroy(&r);
}

static void test_registry_expiry_order(void)
{
	struct registry r;
	struct reg_node *n[4];
	uint8_t k[KEY_LEN];

	CHECK_EQ_INT(registry_init(&r, 16), 0);
	for (uint32_t i = 0; i < 4; i++) {
		make_key(k, i);
		registry_add(&r, k, 1000 + i * 10, &n[i]);
	}
	/* Refresh node 0: it goes to the tail, so node 1 is now the oldest. */
	registry_touch(&r, n[0], 1050);
	CHECK(registry_first(&r) == n[1]);
	CHECK(registry_expired(&r, 1059, 50) == NULL); /* node 1 seen at 1010: 49 ms */
	CHECK(registry_expired(&r, 1060, 50) == n[1]);
	registry_remove(&r, n[1]);
	CHECK(registry_expired(&r, 1060, 50) == NULL); /* node 2 seen at 1020 */
	CHECK(registry_expired(&r, 1070, 50) == n[2]);
	registry_remove(&r, n[2]);
	CHECK(registry_expired(&r, 1080, 50) == n[3]);
	registry_remove(&r, n[3]);
	CHECK(registry_expired(&r, 1099, 50) == NULL);
	CHECK(registry_expired(&r, 1100, 50) == n[0]);
	/* Touching the tail again is fine. */
	registry_touch(&r, n[0], 1200);
	CHECK(registry_expired(&r, 1249, 50) == NULL);
	CHECK(registry_first(&r) == n[0] && n[0]->lru_next == NULL);
	registry_destroy(&r);
}

static void test_registry_bound(void)
{
	struct registry r;
	struct reg_node *n, *first = NULL;
	uint8_t k[KEY_LEN];

	CHECK_EQ_INT(registry_init(&r, 3), 0);
	for (uint32_t i = 0; i < 3; i++) {
		make_key(k, i);
		CHECK_EQ_INT(registry_add(&r, k, 0, &n), 0);
		if (!first)
			first = n;
	}
	make_key(k, 99);
	CHECK_EQ_INT(registry_add(&r, k, 0, &n), -ENOSPC);
	CHECK(registry_find(&r, k) == NULL);
	/* Existing nodes keep working while full. */
	make_key(k, 1);
	CHECK(registry_find(&r, k) != NULL);
	CHECK_EQ_INT(registry_assign_index(&r, registry_find(&r, k), NULL, NULL), 0);
	registry_remove(&r, first);
	make_key(k, 99);
	CHECK_EQ_INT(registry_add(&r, k, 0, &n), 0);
	/* Raising the bound (reload) keeps entries findable; the tables grow with the entries
	 * (doubling once they outnumber the buckets), not with the bound. */
	CHECK_EQ_INT(registry_set_max_nodes(&r, 3000), 0);
	CHECK_EQ_INT(r.mask + 1, 1024);
	for (uint32_t i = 1000; i < 4000 && r.n_nodes < 2100; i++) {
		make_key(k, i);
		CHECK_EQ_INT(registry_add(&r, k, 0, &n), 0);
		CHECK_EQ_INT(registry_assign_index(&r, n, NULL, NULL), 0);
	}
	CHECK_EQ_INT(r.mask + 1, 4096);
	CHECK(r.n_nodes <= r.mask + 1);
	for (uint32_t i = 1; i < 3; i++) {
		make_key(k, i);
		CHECK(registry_find(&r, k) != NULL);
	}
	for (uint32_t i = 1000; i < 1000 + r.n_nodes - 3; i++) {
		make_key(k, i);
		n = registry_find(&r, k);
		CHECK(n && registry_find_index(&r, n->local_idx) == n);
		if (!n)
			break;
	}
	make_key(k, 1);
	n = registry_find(&r, k);
	CHECK(n && registry_find_index(&r, n->local_idx) == n);
	CHECK_EQ_INT(registry_init(&(struct registry){ 0 }, 0), -EINVAL);
	registry_destroy(&r);
}

static void test_registry_consent(void)
{
	struct registry r;
	struct reg_node *n;
	uint8_t k[KEY_LEN];
	uint64_t fps[6] = { 900, 5, 77, 5, UINT64_MAX, 0 };

	CHECK_EQ_INT(registry_init(&r, 4), 0);
	make_key(k, 1);
	registry_add(&r, k, 0, &n);
	CHECK(!registry_lists(n, 5)); /* empty list */
	CHECK_EQ_INT(registry_set_peers(n, fps, 6), 1);
	CHECK_EQ_INT(n->n_peers, 5); /* the duplicate 5 went */
	for (size_t i = 1; i < n->n_peers; i++)
		CHECK(registry_peers(n)[i - 1] < registry_peers(n)[i]);
	CHECK(registry_lists(n, 0));
	CHECK(registry_lists(n, 5));
	CHECK(registry_lists(n, 77));
	CHECK(registry_lists(n, 900));
	CHECK(registry_lists(n, UINT64_MAX));
	CHECK(!registry_lists(n, 6));
	CHECK(!registry_lists(n, 901));
	/* Same set in another order: unchanged. */
	uint64_t again[5] = { UINT64_MAX, 0, 900, 77, 5 };

	CHECK_EQ_INT(registry_set_peers(n, again, 5), 0);
	CHECK_EQ_INT(registry_set_peers(n, again, 4), 1);
	CHECK(!registry_lists(n, 5));
	CHECK_EQ_INT(registry_set_peers(n, NULL, 0), 1);
	CHECK(!registry_lists(n, 0));
	CHECK_EQ_INT(registry_set_peers(n, NULL, 0), 0);

	/* LAN candidates: separate, only when present; order kept. */
	struct addr lan[2], got[4];

	make_addr(&lan[0], "198.18.0.5", 51820);
	make_addr(&lan[1], "2001:db8::5", 51820);
	CHECK(n->lan == NULL);
	CHECK_EQ_INT(registry_set_lan(n, lan, 2), 1);
	const struct reg_lan *kept = n->lan;

	/* A refresh repeats the list: unchanged, and not even reallocated. */
	CHECK_EQ_INT(registry_set_lan(n, lan, 2), 0);
	CHECK(n->lan == kept);
	CHECK_EQ_INT(registry_get_lan(n, got, 4), 2);
	CHECK(addr_equal(&got[0], &lan[0]));
	CHECK(addr_equal(&got[1], &lan[1]));
	CHECK_EQ_INT(registry_get_lan(n, got, 1), 1);
	CHECK_EQ_INT(registry_set_lan(n, lan, 1), 1);
	CHECK_EQ_INT(registry_set_lan(n, NULL, 0), 1);
	CHECK(n->lan == NULL);
	CHECK_EQ_INT(registry_get_lan(n, got, 4), 0);

	/* The IPv6 mapping lives with the LAN list: nothing for nodes without one, and a new
	 * LAN list keeps it. */
	struct addr six;

	make_addr(&six, "2001:db8:a::2", 51820);
	CHECK(!registry_get_mapping6(n, &got[0]));
	CHECK_EQ_INT(registry_set_mapping6(n, NULL), 0);
	CHECK_EQ_INT(registry_set_mapping6(n, &six), 1);
	CHECK(n->lan != NULL);
	CHECK_EQ_INT(registry_set_mapping6(n, &six), 0);
	CHECK(registry_get_mapping6(n, &got[0]) && addr_equal(&got[0], &six));
	CHECK_EQ_INT(registry_get_lan(n, got, 4), 0);
	CHECK_EQ_INT(registry_set_lan(n, lan, 2), 1);
	CHECK(registry_get_mapping6(n, &got[0]) && addr_equal(&got[0], &six));
	CHECK_EQ_INT(registry_set_lan(n, NULL, 0), 1);
	CHECK(registry_get_mapping6(n, &got[0]) && addr_equal(&got[0], &six));
	CHECK_EQ_INT(registry_set_lan(n, NULL, 0), 0);
	CHECK_EQ_INT(registry_set_mapping6(n, NULL), 1);
	CHECK(n->lan == NULL);
	registry_destroy(&r);
}

/*
 * A paged peer list (REGISTER pages, as dir.c stores them): page k replaces the range from its
 * first to its last fingerprint (page 0 from 0, the last page to the top), so the stored list
 * is the union, and sending the same pages again changes nothing (no re-punch every refresh).
 */
static int set_page(struct reg_node *n, const uint64_t *fps, size_t count, unsigned page,
		    unsigned n_pages, size_t cap)
{
	uint64_t lo = page ? fps[0] : 0, hi = page + 1 < n_pages ? fps[count - 1] : UINT64_MAX;

	return registry_set_peer_range(n, fps, count, lo, hi, cap);
}

static void test_registry_peer_pages(void)
{
	struct registry r;
	struct reg_node *n;
	uint8_t k[KEY_LEN];
	uint64_t all[250];

	CHECK_EQ_INT(registry_init(&r, 4), 0);
	make_key(k, 1);
	registry_add(&r, k, 0, &n);
	for (size_t i = 0; i < 250; i++)
		all[i] = 10 * (i + 1); /* sorted, as a node sends them */
	CHECK_EQ_INT(set_page(n, all, 100, 0, 3, 1024), 1);
	CHECK_EQ_INT(set_page(n, all + 100, 100, 1, 3, 1024), 1);
	CHECK_EQ_INT(set_page(n, all + 200, 50, 2, 3, 1024), 1);
	CHECK_EQ_INT(n->n_peers, 250);
	for (size_t i = 0; i < 250; i++)
		CHECK(registry_lists(n, all[i]));
	/* The refresh: the same pages again, nothing changed. */
	CHECK_EQ_INT(set_page(n, all, 100, 0, 3, 1024), 0);
	CHECK_EQ_INT(set_page(n, all + 100, 100, 1, 3, 1024), 0);
	CHECK_EQ_INT(set_page(n, all + 200, 50, 2, 3, 1024), 0);
	/* A peer removed inside page 1 goes with that page alone. */
	uint64_t p1[99];

	memcpy(p1, all + 100, 50 * sizeof(uint64_t));
	memcpy(p1 + 50, all + 151, 49 * sizeof(uint64_t));
	CHECK_EQ_INT(set_page(n, p1, 99, 1, 3, 1024), 1);
	CHECK(!registry_lists(n, all[150]));
	CHECK_EQ_INT(n->n_peers, 249);
	CHECK(registry_lists(n, all[0]) && registry_lists(n, all[249]));
	/* The cap keeps the lowest fingerprints, the same ones every time. */
	CHECK_EQ_INT(set_page(n, all + 200, 50, 2, 3, 120), 1);
	CHECK_EQ_INT(n->n_peers, 120);
	CHECK(registry_lists(n, all[0]));
	CHECK(!registry_lists(n, all[249]));
	CHECK_EQ_INT(set_page(n, all + 200, 50, 2, 3, 120), 0);
	/* A single page replaces everything. */
	CHECK_EQ_INT(set_page(n, all, 3, 0, 1, 1024), 1);
	CHECK_EQ_INT(n->n_peers, 3);
	registry_destroy(&r);
}

static void test_registry_addr_pack(void)
{
	struct addr a, b;
	struct reg_addr p, q;

	make_addr(&a, "203.0.113.7", 40000);
	registry_addr_pack(&p, &a);
	registry_addr_unpack(&b, &p);
	CHECK(addr_equal(&a, &b));
	make_addr(&a, "2001:db8::7", 1);
	registry_addr_pack(&q, &a);
	registry_addr_unpack(&b, &q);
	CHECK(addr_equal(&a, &b));
	CHECK(!registry_addr_equal(&p, &q));
	make_addr(&a, "203.0.113.7", 40001);
	registry_addr_pack(&q, &a);
	CHECK(!registry_addr_equal(&p, &q));
	memset(&a, 0, sizeof(a));
	registry_addr_pack(&q, &a);
	CHECK_EQ_INT(q.family, 0);
	registry_addr_unpack(&b, &q);
	CHECK(!addr_is_set(&b));
}

static double elapsed_s(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* 100k nodes with 8 peers each: all found by key and by index, expiry drains
 * them in order, and the memory per node stays within the ~512-byte budget. */
static void test_registry_many_nodes(void)
{
	enum { N = 100000, PEERS = 8 };
	struct registry r;
	struct reg_node *n;
	uint8_t k[KEY_LEN];
	uint32_t *idx = calloc(N, sizeof(*idx));
	size_t node_bytes = 0;
	struct timespec t0;
	bool all_found = true;

	CHECK(idx != NULL);
	if (!idx)
		return;
	CHECK_EQ_INT(registry_init(&r, N), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (uint32_t i = 0; i < N; i++) {
		uint64_t peers[PEERS];

		make_key(k, i);
		if (registry_add(&r, k, i / 1000, &n) < 0 ||
		    registry_assign_index(&r, n, NULL, NULL) < 0) {
			all_found = false;
			break;
		}
		idx[i] = n->local_idx;
		for (uint32_t j = 0; j < PEERS; j++) {
			uint8_t pk[KEY_LEN];

			make_key(pk, (i + j + 1) % N);
			peers[j] = key_fingerprint(pk);
		}
		registry_set_peers(n, peers, PEERS);
		node_bytes += registry_node_bytes(n);
	}
	CHECK_EQ_INT(r.n_nodes, N);
	CHECK_EQ_INT(r.n_sessions, N);
	make_key(k, N);
	CHECK_EQ_INT(registry_add(&r, k, 0, &n), -ENOSPC);
	for (uint32_t i = 0; i < N && all_found; i++) {
		make_key(k, i);
		n = registry_find(&r, k);
		if (!n || registry_find_index(&r, idx[i]) != n)
			all_found = false;
		/* Consent both ways with the next node. */
		uint8_t pk[KEY_LEN];

		make_key(pk, (i + 1) % N);
		if (n && !registry_lists(n, key_fingerprint(pk)))
			all_found = false;
	}
	CHECK(all_found);
	printf("# %d nodes added and found in %.2f s\n", N, elapsed_s(&t0));

	size_t per_node = node_bytes / N + registry_bucket_bytes_per_node(&r);

	printf("# memory per node: %zu bytes (struct reg_node %zu, %d peers %zu, buckets %zu);"
	       " with malloc headers about %zu\n",
	       per_node, sizeof(struct reg_node), PEERS, PEERS * sizeof(uint64_t),
	       registry_bucket_bytes_per_node(&r), per_node + 2 * 16);
	CHECK(per_node + 2 * 16 <= 512);

	/* Expiry: oldest first, bounded work per call. */
	uint32_t expired = 0;
	bool in_order = true;

	while ((n = registry_expired(&r, 50 + 60, 60))) {
		/* Nodes 0..50999 were seen at 0..50 ms: all at most 110 - 60 = 50. */
		if (n->last_seen_ms > 50)
			in_order = false;
		registry_remove(&r, n);
		expired++;
	}
	CHECK_EQ_INT(expired, 51000);
	CHECK(in_order);
	CHECK_EQ_INT(r.n_nodes, N - 51000);
	make_key(k, 51000);
	CHECK(registry_find(&r, k) != NULL);
	make_key(k, 50999);
	CHECK(registry_find(&r, k) == NULL);
	registry_destroy(&r);
	free(idx);
}

/* Up to REGISTRY_INLINE_PEERS peers live in the entry, more in an array of their own; the
 * list stays sorted and unique and consent works the same either way, in both directions. */
static void test_registry_peers_inline(void)
{
	struct registry r;
	struct reg_node *n;
	uint8_t k[KEY_LEN];
	uint64_t fps[REGISTRY_INLINE_PEERS + 4];

	CHECK_EQ_INT(registry_init(&r, 10), 0);
	make_key(k, 1);
	CHECK_EQ_INT(registry_add(&r, k, 0, &n), 0);
	for (size_t i = 0; i < sizeof(fps) / sizeof(fps[0]); i++)
		fps[i] = 1000 - 7 * i; /* descending: the store sorts */
	CHECK_EQ_INT(registry_set_peers(n, fps, REGISTRY_INLINE_PEERS), 1);
	CHECK(registry_peers(n) == n->peer_store.in);
	CHECK_EQ_INT(registry_node_bytes(n), sizeof(*n));
	CHECK(registry_peers(n)[0] < registry_peers(n)[REGISTRY_INLINE_PEERS - 1]);
	CHECK(registry_lists(n, fps[3]) && !registry_lists(n, fps[REGISTRY_INLINE_PEERS]));
	/* The same set again, in another order: unchanged. */
	CHECK_EQ_INT(registry_set_peers(n, registry_peers(n), REGISTRY_INLINE_PEERS), 0);
	CHECK_EQ_INT(registry_set_peers(n, fps, REGISTRY_INLINE_PEERS + 4), 1);
	CHECK(registry_peers(n) != n->peer_store.in);
	/* The list itself given back as the new one (it is read before it is freed). */
	CHECK_EQ_INT(registry_set_peers(n, registry_peers(n), REGISTRY_INLINE_PEERS + 4), 0);
	CHECK_EQ_INT(registry_set_peers(n, registry_peers(n) + 1, REGISTRY_INLINE_PEERS + 3), 1);
	CHECK_EQ_INT(n->n_peers, REGISTRY_INLINE_PEERS + 3);
	CHECK_EQ_INT(registry_set_peers(n, fps, REGISTRY_INLINE_PEERS + 4), 1);
	CHECK_EQ_INT(n->n_peers, REGISTRY_INLINE_PEERS + 4);
	CHECK_EQ_INT(registry_node_bytes(n), sizeof(*n) + (REGISTRY_INLINE_PEERS + 4) * 8);
	CHECK(registry_lists(n, fps[REGISTRY_INLINE_PEERS + 3]));
	/* Duplicates count once: 9 given, 8 distinct, back in the entry. */
	fps[REGISTRY_INLINE_PEERS] = fps[0];
	CHECK_EQ_INT(registry_set_peers(n, fps, REGISTRY_INLINE_PEERS + 1), 1);
	CHECK(registry_peers(n) == n->peer_store.in);
	CHECK_EQ_INT(n->n_peers, REGISTRY_INLINE_PEERS);
	CHECK_EQ_INT(registry_set_peers(n, NULL, 0), 1);
	CHECK_EQ_INT(n->n_peers, 0);
	CHECK(!registry_lists(n, fps[0]));
	registry_destroy(&r);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	TAP_RUN(test_registry_add_find_remove);
	TAP_RUN(test_registry_index_collisions);
	TAP_RUN(test_registry_expiry_order);
	TAP_RUN(test_registry_bound);
	TAP_RUN(test_registry_consent);
	TAP_RUN(test_registry_peer_pages);
	TAP_RUN(test_registry_peers_inline);
	TAP_RUN(test_registry_addr_pack);
	TAP_RUN(test_registry_many_nodes);
	return tap_done();
}

/* SPDX-License-Identifier: MIT */
/*
 * registry - the coordinator's table of nodes. A pure data structure: no
 * I/O, no clock reads (time is passed in), no logging.
 *
 * One entry per node, keyed by its WireGuard public key, sized so that a
 * million nodes with eight peers each fit in about 512 bytes a node:
 *   - struct reg_node itself (REGISTRY_NODE_BUDGET, checked at compile time;
 *     from slabs of REGISTRY_SLAB_NODES, so no allocator header),
 *     with its peer list, a sorted array of 64-bit key fingerprints, inside it
 *     for up to REGISTRY_INLINE_PEERS peers (no allocation, no allocator
 *     header; a REGISTER that repeats the list allocates nothing) and in a
 *     separate array beyond,
 *   - two bucket pointers (load factor <= 1 in each hash table; the tables
 *     double with the entries, so they cost 16 to 32 bytes a node at any count),
 *   - LAN candidates in a small separate allocation, only when a node has any.
 *
 * Lookups are O(1): hash tables with power-of-two arrays of bucket pointers
 * and chains through the entries (by fingerprint, and by the coordinator's
 * session index). Refresh and expiry are O(1) through an intrusive LRU list.
 * Nothing here walks all nodes except registry_first()/lru_next, which only
 * non-hot paths (reload) use.
 *
 * The registry owns the entries: registry_remove() and registry_destroy()
 * free them. Pointers to an entry stay valid until it is removed.
 */
#ifndef WGPUNCH_REGISTRY_H
#define WGPUNCH_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wgpunch/addr.h"
#include "wgpunch/key.h"
#include "wgpunch/proto.h"
#include "wgpunch/session.h"

/*
 * A compact address: struct addr is 28 bytes (sockaddr_in6 with flow info
 * and scope id); the registry holds four per node, so it keeps 20-byte ones.
 * The scope id is dropped: the coordinator only ever talks to, and reports,
 * addresses that are routable without one.
 */
struct reg_addr {
	uint8_t ip[16]; /* an IPv4 address in the first 4 bytes */
	uint16_t port;  /* host byte order */
	uint8_t family; /* 0 (unset), 4 or 6 */
};

void registry_addr_pack(struct reg_addr *out, const struct addr *a);
void registry_addr_unpack(struct addr *out, const struct reg_addr *a);
bool registry_addr_equal(const struct reg_addr *a, const struct reg_addr *b);
/* A 32-bit hash of a (FNV-1a): equal addresses, equal hashes. */
uint32_t registry_addr_hash(const struct reg_addr *a);

struct filter_test;

/* LAN candidates, allocated only for nodes that report some or have an IPv6 mapping. */
struct reg_lan {
	uint8_t n;
	/* addr[n] is the node's IPv6 mapping beside an IPv4 session (dir.c): here, not in the
	 * node, so that nodes without one pay nothing for it. */
	bool has6;
	struct reg_addr addr[];
};

/* Progress of the filter test (rendezvous.md section 3). */
enum reg_filter_state {
	REG_FILTER_NONE = 0, /* never tested */
	REG_FILTER_PENDING,  /* POISON and FILTER_GO sent, waiting for the echo */
	REG_FILTER_DONE,     /* filter holds the result (UNKNOWN after a timeout) */
};

/* Peer lists up to this long live in the entry: the design's fleet has about 8 peers a node. */
#define REGISTRY_INLINE_PEERS 8

struct reg_node {
	/* Intrusive links: one allocation per node, O(1) unlink. */
	struct reg_node *fp_next;             /* chain in the fingerprint table */
	struct reg_node *idx_next;            /* chain in the session index table */
	struct reg_node *lru_prev, *lru_next; /* least recently refreshed first */
	/* The filter test's state while one is pending (filter.c's; NULL otherwise): the nonce,
	 * the deadline and the FIFO links are needed only then, so they live apart. */
	struct filter_test *filter_test;

	uint8_t key[KEY_LEN];  /* the node's WireGuard public key: its identity */
	uint64_t fp;           /* key_fingerprint(key): hash key, and what peers list */
	uint64_t last_seen_ms; /* last refresh (monotonic); LRU order follows it */

	/* The current session (one per node: a new handshake replaces it). */
	uint32_t local_idx;    /* ours: receiver index of the node's DATA and PROBE; 0 = none */
	uint32_t remote_idx;   /* the node's: receiver index of our DATA */
	uint64_t send_counter; /* nonce of our next DATA; never reused under send_key */
	uint8_t send_key[SESSION_KEY_LEN];
	uint8_t recv_key[SESSION_KEY_LEN];
	uint8_t probe_key[SESSION_KEY_LEN]; /* MAC key of the node's probes */
	struct session_replay replay;       /* the node's DATA counters */
	uint64_t probe_seq[2];              /* last accepted probe per purpose (MAP_P, MAP_P1) */
	/* When the outstanding ADDR_CHECK was sent (0: none); its nonce is a keyed hash of
	 * this, the index and the address it went to, so it needs no more room here. The last
	 * accepted TAI64N lives in the coordinator's ts_table, which outlives entries. */
	uint64_t addr_check_ms;
	uint64_t punch_tat_ms; /* GCRA of the pairs this node's changes punch (punch.c) */

	struct reg_addr session_addr; /* where the session's handshake / latest DATA came from */
	struct reg_addr mapping[2];   /* public ip:port of the WireGuard port seen on P and P + 1 */

	struct reg_lan *lan; /* NULL when the node reported no LAN address */
	uint16_t n_peers;
	uint16_t wg_port;     /* the node's WireGuard listen port, from REGISTER */
	uint8_t sock;         /* which listen address the session uses (replies leave from it) */
	uint8_t filter;       /* enum proto_filter; meaningful in REG_FILTER_DONE */
	uint8_t filter_state; /* enum reg_filter_state */
	uint8_t reg_flags;    /* flags of the last REGISTER */
	bool registered;      /* a REGISTER has been accepted */
	uint16_t n_pending;   /* punch attempts it caused, waiting for an ack (punch.c) */
	/* registry_addr_hash() of the session address the filter test last ran for (the address
	 * itself is the pending test's, filter.c): 4 bytes, not 20, for "tested here already?". */
	uint32_t filter_addr_hash;
	/* The sorted, unique fingerprints of the node's WireGuard peers (registry_peers()): in
	 * the entry for up to REGISTRY_INLINE_PEERS, else in an array of their own, whose pointer
	 * takes the place of the inline ones (so a large list costs no more entry). */
	union {
		uint64_t in[REGISTRY_INLINE_PEERS]; /* n_peers <= REGISTRY_INLINE_PEERS */
		uint64_t *heap;                     /* n_peers > REGISTRY_INLINE_PEERS */
	} peer_store;
};

/* n's peer list: n->n_peers fingerprints, sorted. */
static inline const uint64_t *registry_peers(const struct reg_node *n)
{
	return n->n_peers > REGISTRY_INLINE_PEERS ? n->peer_store.heap : n->peer_store.in;
}

/*
 * What struct reg_node may cost, 8 inline peers included, so that the entry (from a slab:
 * exactly its size), the two buckets and the ts_table stay under 512 bytes even with a LAN
 * address (a 32-byte allocation of its own). 408 today: the budget leaves room for two more
 * 20-byte addresses, not for a third.
 */
#define REGISTRY_NODE_BUDGET 456

/* Entries are allocated this many at a time (registry.c: no allocator header per entry). */
#define REGISTRY_SLAB_NODES 1024

struct reg_slab;

struct registry {
	struct reg_slab *slabs;        /* where every entry lives */
	struct reg_node *free_nodes;   /* entries to reuse, through fp_next */
	struct reg_node **fp_buckets;  /* mask + 1 buckets */
	struct reg_node **idx_buckets; /* mask + 1 buckets */
	uint32_t mask;
	struct reg_node *lru_head, *lru_tail;
	uint32_t n_nodes;
	uint32_t n_sessions; /* entries with a session index */
	uint32_t max_nodes;
};

/* Small tables that grow with the entries (up to max_nodes). 0 or -ENOMEM/-EINVAL. */
int registry_init(struct registry *r, uint32_t max_nodes);
/* Frees every entry and the tables. */
void registry_destroy(struct registry *r);
/* Changes the bound (existing entries above it stay). 0 or -EINVAL. */
int registry_set_max_nodes(struct registry *r, uint32_t max_nodes);

/* Adds an entry for key, last seen now (no session, not registered).
 * -EEXIST if key is present, -ENOSPC when max_nodes are registered, -ENOMEM. */
int registry_add(struct registry *r, const uint8_t key[KEY_LEN], uint64_t now_ms,
		 struct reg_node **out);
/* Unlinks and frees n (the caller has unlinked it from its own lists). */
void registry_remove(struct registry *r, struct reg_node *n);

struct reg_node *registry_find(const struct registry *r, const uint8_t key[KEY_LEN]);
/* The entries whose fingerprint is fp: pass NULL for the first, then the previous one. */
struct reg_node *registry_find_fp(const struct registry *r, uint64_t fp,
				  const struct reg_node *prev);
struct reg_node *registry_find_index(const struct registry *r, uint32_t idx);

/*
 * Gives n a new random session index that no other entry uses (0 is never
 * used), replacing its previous one. rnd returns random 32-bit values; NULL
 * means randombytes_random(). Returns 0 or -EAGAIN (no free index found in a
 * bounded number of draws: only a broken rnd gets there).
 */
typedef uint32_t (*registry_rand_fn)(void *arg);
int registry_assign_index(struct registry *r, struct reg_node *n, registry_rand_fn rnd, void *arg);
void registry_clear_index(struct registry *r, struct reg_node *n);

/* Marks n as refreshed now (moves it to the LRU tail). now_ms must not go backwards. */
void registry_touch(struct registry *r, struct reg_node *n, uint64_t now_ms);
/* The least recently refreshed entry when it was last seen max_age_ms or more
 * before now, else NULL. Callers remove it and ask again, a bounded number of
 * times per call, so expiry costs O(1) per entry. */
struct reg_node *registry_expired(const struct registry *r, uint64_t now_ms, uint64_t max_age_ms);
/* Oldest entry first; walk on with n->lru_next. */
struct reg_node *registry_first(const struct registry *r);

/* Stores a peer list (sorted and deduplicated here). Returns 1 when the set
 * changed, 0 when it is the same, -ENOMEM (n keeps its old list). */
int registry_set_peers(struct reg_node *n, const uint64_t *fps, size_t count);
/* One page of a paged peer list: the fingerprints of fps within [lo, hi] replace those of the
 * stored list within [lo, hi], the rest stays; at most cap distinct ones are kept (the
 * lowest). Returns as registry_set_peers(). */
int registry_set_peer_range(struct reg_node *n, const uint64_t *fps, size_t count, uint64_t lo,
			    uint64_t hi, size_t cap);
/* Consent test: does n list fp? Binary search. */
bool registry_lists(const struct reg_node *n, uint64_t fp);

/* Stores LAN candidates (order kept; at most 255). 1 changed, 0 same, -ENOMEM, -EINVAL. */
int registry_set_lan(struct reg_node *n, const struct addr *lan, size_t count);
/* Copies up to cap LAN candidates to out; returns how many. */
size_t registry_get_lan(const struct reg_node *n, struct addr *out, size_t cap);
/* The IPv6 mapping (a: NULL or unset clears it). 1 if it changed, 0 if not, -ENOMEM. */
int registry_set_mapping6(struct reg_node *n, const struct addr *a);
/* False when there is none. */
bool registry_get_mapping6(const struct reg_node *n, struct addr *out);

/* Heap bytes n holds (entry, peers, LAN; without allocator overhead). */
size_t registry_node_bytes(const struct reg_node *n);
/* Bucket bytes per entry there is now (both tables). */
size_t registry_bucket_bytes_per_node(const struct registry *r);

#endif

/* SPDX-License-Identifier: MIT */
/*
 * relay_table - the coordinator relay's bookkeeping: which ports are in use, which pair of
 * nodes each relay joins, where each side is bound, quotas, and the per-packet forwarding
 * decision. Pure: no I/O, no clock (now_ms is passed in), no logging; rtab_init() allocates
 * everything once, and nothing on the forwarding path allocates. docs/relay.md is the design.
 *
 * A relay joins two nodes, a pair (x, y) of 64-bit key fingerprints; the pair is
 * order-independent ((x, y) and (y, x) are one relay). Side 0 is the node with the lower
 * fingerprint. Each side owns one port from the range: node s points its WireGuard endpoint
 * for the other node at coordinator:port[s] and binds that port with an authenticated probe.
 * A datagram arriving at port[s] from side s's bound address goes out of port[1 - s] to the
 * other side's bound address; anything else is dropped with a reason.
 *
 * Bind rule: a side's binding changes only through rtab_bind(), which the caller makes only
 * for an authenticated relay-bind probe. Forwarded traffic never moves a binding, so a
 * stranger who spoofs or races datagrams to a relay port cannot redirect the pair's traffic.
 *
 * Complexity: rtab_alloc(), rtab_free(), rtab_find(), rtab_bind() and rtab_forward() are O(1)
 * (a FIFO free list of ports, an array from port to relay and side, open-addressing hash
 * tables for pairs and for relays per node). rtab_expire() walks the relays: it is for a timer.
 *
 * Relay ids are indices into the table, stable while the relay lives; a freed id may be
 * given to a later relay.
 */
#ifndef WGPUNCH_RELAY_TABLE_H
#define WGPUNCH_RELAY_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wgpunch/addr.h"
#include "wgpunch/counters.h"

/* Per relay; both directions are named by side: a is side 0 (the lower fingerprint). */
#define RELAY_COUNTERS(X)                                                                         \
	X(fwd_packets_a_to_b, "datagrams forwarded from side a's port to side b")                 \
	X(fwd_bytes_a_to_b, "payload bytes forwarded from side a's port to side b")               \
	X(fwd_packets_b_to_a, "datagrams forwarded from side b's port to side a")                 \
	X(fwd_bytes_b_to_a, "payload bytes forwarded from side b's port to side a")               \
	X(drop_unbound, "datagrams to a port whose side has not bound yet")                       \
	X(drop_wrong_source, "datagrams to a bound port from another address than the bound one") \
	X(drop_peer_unbound, "datagrams from a bound side while the other side is not bound")     \
	X(drop_pps, "datagrams over the pair's packets-per-second quota")                         \
	X(drop_bps, "datagrams over the pair's bytes-per-second quota")                           \
	X(drop_too_big, "datagrams longer than the largest one a relay forwards")                 \
	X(binds, "authenticated bind probes that set a side's address")                           \
	X(rebinds, "bind probes that moved an already bound side (NAT rebinding)")
struct relay_counters {
	RELAY_COUNTERS(COUNTER_FIELD)
};
COUNTER_TABLE_DECLARE(relay_counters);

/* For the whole table: what no single relay can count. */
#define RTAB_COUNTERS(X)                                                                     \
	X(relays_created, "relays allocated")                                                \
	X(relays_freed, "relays torn down, for any reason")                                  \
	X(relays_idle, "relays found idle by rtab_expire() (also counted in relays_freed)")  \
	X(refused_ports, "allocations refused: no two free ports in the range")              \
	X(refused_node_quota, "allocations refused: a node is at its relays-per-node quota") \
	X(drop_no_relay, "datagrams to a port that belongs to no relay")                     \
	X(bind_refused, "bind requests for a port that is not that node's side of a relay")
struct rtab_counters {
	RTAB_COUNTERS(COUNTER_FIELD)
};
COUNTER_TABLE_DECLARE(rtab_counters);

/* Larger datagrams are dropped (drop_too_big): WireGuard's largest on a 9000-byte jumbo MTU. */
#define RTAB_MAX_DATAGRAM 9216

/* Quotas and the port range; 0 in a rate means "no limit". */
struct rtab_limits {
	uint16_t port_min, port_max;  /* relay_ports, inclusive; each relay takes two */
	uint32_t max_relays_per_node; /* relays a node may be a side of at once; 0: no limit */
	uint32_t pps;                 /* per pair, both directions together */
	uint64_t bps;                 /* payload bytes per second per pair, both directions */
	uint32_t burst_ms;            /* bucket depth as time at the rate; 0 means 1000 */
	uint32_t idle_timeout_s;      /* no forwarded datagram for this long: torn down; 0: never */
};

/*
 * Integer token bucket. TODO(ratelimit): replace with ratelimit.h's bucket_ when that
 * module is merged; this one exists only so the relay does not wait for it. Tokens are kept
 * in thousandths so that refilling by elapsed milliseconds at a per-second rate is exact.
 */
struct rtab_bucket {
	uint64_t milli;   /* tokens * 1000 */
	uint64_t cap;     /* depth * 1000 */
	uint64_t rate;    /* tokens per second (0: unlimited) */
	uint64_t last_ms; /* last refill */
};

struct rtab_side {
	uint64_t node;     /* key fingerprint */
	struct addr bound; /* AF_UNSPEC until bound */
	uint64_t bound_ms; /* when last bound */
	uint16_t port;     /* this side's relay port */
};

struct rtab_relay {
	bool used;
	struct rtab_side side[2];
	uint64_t created_ms;
	uint64_t last_fwd_ms; /* last forwarded datagram; created_ms until the first */
	struct rtab_bucket pkts, bytes;
	struct relay_counters counters;
};

enum rtab_verdict {
	RTAB_FORWARD = 0,
	RTAB_DROP_NO_RELAY,
	RTAB_DROP_UNBOUND,
	RTAB_DROP_WRONG_SOURCE,
	RTAB_DROP_PEER_UNBOUND,
	RTAB_DROP_PPS,
	RTAB_DROP_BPS,
	RTAB_DROP_TOO_BIG,
};

/* Where rtab_forward() sends a datagram. */
struct rtab_fwd {
	uint32_t relay;    /* the relay's id */
	uint16_t out_port; /* send from this relay port ... */
	const struct addr
		*dst; /* ... to this address (the other side's binding; owned by the table) */
};

struct rtab {
	struct rtab_limits lim;
	uint32_t nports;     /* port_max - port_min + 1 */
	uint32_t max_relays; /* nports / 2 */
	uint32_t nrelays;    /* in use */
	/* Free ports as offsets from port_min, a FIFO ring: a freed port is reused last, so
	 * stragglers of an old relay rarely meet a new one (they would be dropped anyway). */
	uint16_t *free_ring;
	uint32_t free_head, free_count;
	/* port offset -> relay id * 2 + side, or UINT32_MAX */
	uint32_t *port_owner;
	struct rtab_relay *relays; /* max_relays entries */
	uint32_t *free_ids;        /* a stack of unused relay ids */
	uint32_t nfree_ids;
	/* pair -> relay id, open addressing with linear probing, UINT32_MAX empty */
	uint32_t *pair_slot;
	uint32_t pair_mask;
	/* node fingerprint -> relays it is a side of (only when max_relays_per_node is set) */
	struct rtab_node_slot {
		uint64_t node;
		uint32_t count; /* 0: empty slot */
	} * node_slot;
	uint32_t node_mask;
	struct rtab_counters counters;
};

/* Builds an empty table; 0, -EINVAL (port_min > port_max, fewer than two ports, port 0) or
 * -ENOMEM. On failure t needs no rtab_destroy(). */
int rtab_init(struct rtab *t, const struct rtab_limits *lim);
void rtab_destroy(struct rtab *t);
/*
 * New quotas (a reload): everything in lim but the port range, which only a new table can
 * change. Relays in use get the new rates at once (their buckets keep what they hold, up to
 * the new depth); relays over a new per-node quota stay, and only new ones are refused.
 */
void rtab_set_quotas(struct rtab *t, const struct rtab_limits *lim, uint64_t now_ms);

/*
 * A relay for the pair (x, y), both sides unbound, with two ports. Returns 0 and the id, or
 * -EINVAL (x == y), -EEXIST (the pair already has one: *id is it), -ENOSPC (fewer than two
 * free ports), -EDQUOT (x or y is at max_relays_per_node).
 */
int rtab_alloc(struct rtab *t, uint64_t x, uint64_t y, uint64_t now_ms, uint32_t *id);

/* Tears relay id down (the pair went direct, or a node left): its ports go back to the free
 * list. counters are lost: read them first. A no-op for an unused id. */
void rtab_free(struct rtab *t, uint32_t id);

/* The pair's relay id, or -ENOENT; order-independent. */
int rtab_find(const struct rtab *t, uint64_t x, uint64_t y, uint32_t *id);

/* The relay that owns port, and which side (0 or 1); NULL when the port is not in use. */
const struct rtab_relay *rtab_by_port(const struct rtab *t, uint16_t port, int *side);
const struct rtab_relay *rtab_get(const struct rtab *t, uint32_t id);

/* Node node's port in relay id, or 0 if it is not a side of it. */
uint16_t rtab_port_of(const struct rtab *t, uint32_t id, uint64_t node);

/*
 * Binds node's side of the relay that owns port to src. Call it only for an authenticated
 * relay-bind probe from node that arrived at port from src. Returns 0 (bound or rebound),
 * -ENOENT (no relay at port) or -EPERM (port is not node's side).
 */
int rtab_bind(struct rtab *t, uint16_t port, uint64_t node, const struct addr *src,
	      uint64_t now_ms);

/*
 * The forwarding decision for a datagram of len bytes from src arriving at port. On
 * RTAB_FORWARD, *out says where it goes and the relay's counters and buckets are charged;
 * otherwise the drop is counted (per relay, or in the table for RTAB_DROP_NO_RELAY).
 */
enum rtab_verdict rtab_forward(struct rtab *t, uint16_t port, const struct addr *src, size_t len,
			       uint64_t now_ms, struct rtab_fwd *out);

/*
 * Idle timeout: the id of one relay with no forwarded datagram for idle_timeout_s (counting
 * from its creation before the first), which the caller closes and then rtab_free()s
 * (counted in relays_idle) -- or -ENOENT when none is due. *next_ms, if
 * given, receives the earliest time another becomes due (UINT64_MAX: none). O(relays).
 */
int rtab_expire(struct rtab *t, uint64_t now_ms, uint32_t *id, uint64_t *next_ms);

/* Relays node is a side of now. */
uint32_t rtab_node_relays(const struct rtab *t, uint64_t node);

/*
 * WireGuard messages start with a type (1-4) and three zero bytes; wgpunch's own start with
 * PROTO_VERSION and a nonzero type (proto.h). The relay forwards only the former and hands
 * the rest to the bind handler, so a bind probe is never forwarded and a forwarded datagram
 * can never be taken for a bind.
 */
static inline bool rtab_is_wireguard(const uint8_t *buf, size_t len)
{
	return len >= 4 && buf[0] >= 1 && buf[0] <= 4 && buf[1] == 0 && buf[2] == 0 && buf[3] == 0;
}

/* "forward", "no_relay", "unbound", ... */
const char *rtab_verdict_name(enum rtab_verdict v);

#endif

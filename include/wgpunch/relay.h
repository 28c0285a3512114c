/* SPDX-License-Identifier: MIT */
/*
 * relay - the coordinator's relay service (docs/relay.md, "Control plane"): for a mutual,
 * authorized pair it allocates one relay port per side in an rtab table, opens them in a
 * relay_fwd forwarder, and tells each side its own port with RELAY. It authenticates the
 * relay-bind PROBEs that reach a relay port (the forwarder's on_control) and binds a side
 * only for a probe under that node's session, for that port and purpose, with a counter above
 * the last bind accepted for that side. It allocates at once when no direct path can work
 * (relay_no_direct()), or on a node's RELAY_REQUEST; it tears a relay down on RELAY_CLOSE,
 * when a side leaves the directory, and (the forwarder) when idle.
 *
 * A service beside punch: it calls dir (consent, lookups) and the transport (RELAY out),
 * nobody else; coord.c wires the directory's changed and forget hooks to it. The forwarder's
 * sockets are its own (uv_poll_t, not in the coord_handles list): relay_stop() closes them,
 * after coord_handles_close_all() and before the loop runs the close callbacks.
 */
#ifndef WGPUNCH_RELAY_H
#define WGPUNCH_RELAY_H

#include <cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "wgpunch/config.h"
#include "wgpunch/counters.h"
#include "wgpunch/registry.h"
#include "wgpunch/relay_fwd.h"
#include "wgpunch/relay_table.h"

/* The quotas (docs/relay.md section 4) are configuration keys: relay_max_per_node,
 * relay_pair_pps, relay_pair_bytes_per_s, relay_idle_timeout (config.h has the defaults). */

#define RELAY_SVC_COUNTERS(X)                                                                \
	X(relay_requests, "RELAY_REQUESTs received")                                         \
	X(relay_refused, "RELAY_REQUESTs not honoured: no consent, not ready, or relay off") \
	X(relay_at_once, "relays allocated at once: no direct path can work")                \
	X(relay_on_request, "relays allocated on a RELAY_REQUEST")                           \
	X(relay_alloc_failed, "allocations that failed: ports, quota, or a socket")          \
	X(relay_sent, "RELAY messages sent")                                                 \
	X(relay_closed, "relays torn down on RELAY_CLOSE")                                   \
	X(relay_gone, "relays torn down: a side left, or withdrew consent or relaying")      \
	X(relay_idle, "relays torn down by the forwarder for idleness")                      \
	X(bind_accepted, "relay-bind probes that bound a side")                              \
	X(bind_malformed, "control datagrams at a relay port that are no PROBE")             \
	X(bind_wrong_port, "bind probes for another port, or of another purpose")            \
	X(bind_unknown_session, "bind probes whose index names no session")                  \
	X(bind_bad_mac, "bind probes whose MAC does not verify")                             \
	X(bind_not_side, "bind probes from a node that is not this port's side")             \
	X(bind_replayed, "bind probes whose counter is not above the node's last bind")
struct relay_svc_counters {
	RELAY_SVC_COUNTERS(COUNTER_FIELD)
};
COUNTER_TABLE_DECLARE(relay_svc_counters);

struct transport;
struct dir;

struct relay {
	uv_loop_t *loop;
	struct transport *t;
	struct dir *d;
	bool on;     /* conf `relay` and a table and forwarder built */
	bool inited; /* the forwarder exists: relay_stop() closes it */
	struct rtab table;
	struct relay_fwd fwd;
	uint32_t *attempt;       /* per relay id: the id in its RELAYs; 0 unused */
	uint64_t (*bind_seq)[2]; /* per relay id and side: the last accepted bind counter */
	uint8_t *closing;        /* per relay id: bit per side that sent RELAY_CLOSE (DIRECT) */
	uint32_t next_attempt;
	struct relay_svc_counters ctr;
};

/*
 * With conf->coord.relay, builds the table for relay_ports and the forwarder on the listen
 * addresses (the first of each family), and routes RELAY_REQUEST and RELAY_CLOSE (port P).
 * 0 or -errno; with relay = no, 0 and nothing is built.
 */
int relay_init(struct relay *r, uv_loop_t *loop, const struct config *conf, struct transport *t,
	       struct dir *d);
/* Closes the forwarder's sockets (their close callbacks run on the loop). Idempotent. */
void relay_stop(struct relay *r);
/* Frees the table; after the loop ran the close callbacks. */
void relay_destroy(struct relay *r);
/* -EAGAIN when conf changes `relay` or `relay_ports` (only a restart applies them). */
int relay_reload_check(const struct relay *r, const struct config *conf);
/* A reload that passed relay_reload_check(): the new quotas apply, to relays in use too. */
void relay_reload(struct relay *r, const struct config *conf);
/* The table's quotas for conf's keys (port range included). */
void relay_limits_of(const struct config *conf, struct rtab_limits *lim);

/* The directory's changed hook: allocate at once for n's ready pairs that cannot go direct. */
void relay_after_change(struct relay *r, struct reg_node *n, bool was_ready, bool changed);
/* The directory's forget hook: n leaves; its relays go. */
void relay_forget(struct relay *r, struct reg_node *n);

/*
 * Section 5 of rendezvous.md: true when no direct path can work between a and b, so the pair
 * is relayed at once. One side maps per destination (its mappings toward P and P + 1 differ)
 * and the other does not accept unsolicited packets: it is no public host (its mapping's IP
 * is none of its LAN addresses) and its router is not poisonable. Or both routers are
 * poisonable (each side's first packet poisons the other's conntrack).
 */
bool relay_no_direct(const struct reg_node *a, const struct reg_node *b);
/* The node asked not to be relayed (REGISTER flag NO_RELAY). */
bool relay_node_allows(const struct reg_node *n);

/* "relays": one object per relay (sides, ports, bindings, counters, rates); "relay_counters":
 * the service's, the table's and the forwarder's. */
bool relay_status(const struct relay *r, cJSON *st, uint64_t now_ms);

#endif

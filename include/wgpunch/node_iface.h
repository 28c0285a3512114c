/* SPDX-License-Identifier: MIT */
/*
 * node_iface - the node's WireGuard interface: the wg handle and the raw
 * prober on its listen port, reading the device, the peer table (one
 * node_peer per device peer) and carrying out what the peers' state machines
 * decide: endpoint writes for a PUNCH, path logs, RESYNC asks. Also the LAN
 * addresses, which carry the device's port.
 *
 * Internal to the node role: struct node embeds one (node.c) and provides the
 * hooks declared at the end; the fields are read-only outside node_iface.c.
 */
#ifndef WGPUNCH_NODE_IFACE_H
#define WGPUNCH_NODE_IFACE_H

#include <cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "wgpunch/config.h"
#include "wgpunch/node_coord.h"
#include "wgpunch/node_lan.h"
#include "wgpunch/node_peer.h"
#include "wgpunch/prober.h"
#include "wgpunch/proto.h"
#include "wgpunch/wg.h"

/* How often the device is read without a path attempt open: what it notices (new peers,
 * port, addresses when rtnetlink is unavailable) is seen within this. */
#define NODE_IFACE_POLL_SLOW_MS 5000

struct node;
struct node_iface_op;

struct node_iface {
	struct node *node;
	const struct config *conf; /* the node's; node_iface_reload() follows it */
	struct wg *wg;             /* NULL once closed */
	struct prober prober;
	struct wg_device *dev; /* the last read; NULL until the first */
	bool get_pending;
	bool stopping;
	uv_timer_t poll_timer;
	uv_timer_t resync_timer;
	uint64_t last_poll_error_ms;
	struct node_peer *peers; /* one per device peer, same keys */
	size_t n_peers;
	struct node_iface_op *ops; /* endpoint writes wg has not called back yet */
	struct node_lan lan;
	/* Set by the role when rtnetlink reports address changes (ifmon): the device poll then
	 * re-reads the LAN addresses only when the listen port changed, instead of on every
	 * read (four times a second while a path attempt is open). */
	bool lan_watched;
};

/* What one read of the device changed, for node_on_device(). */
struct node_iface_changes {
	bool first; /* the first read */
	bool port;  /* listen port or fwmark */
	bool key;   /* private key */
	bool peers; /* the set of peer keys */
	bool lan;   /* LAN addresses */
};

/* Opens the interface and the prober and initialises the timers. 0, or -errno (logged) with
 * nothing left to close. */
int node_iface_open(struct node_iface *ifc, struct node *n, uv_loop_t *loop,
		    const struct config *conf);
/* Queues the first read of the device; 0 or -errno (logged). */
int node_iface_start(struct node_iface *ifc);
/* Closes wg (queued writes end silently), the prober and the timers. closed is called once
 * for each timer handle (h->data is ifc); returns how many. */
unsigned int node_iface_close(struct node_iface *ifc, uv_close_cb closed);
/* Frees the rest, once the handles are closed. */
void node_iface_free(struct node_iface *ifc);
/* A new config (same interface): a changed keepalive is written to the peers we set up. */
void node_iface_reload(struct node_iface *ifc, const struct config *conf);
/* A PUNCH from coordinator c: write the peer's first candidate, or ack at once. */
void node_iface_on_punch(struct node_iface *ifc, struct node_coord *c,
			 const struct proto_punch *punch);
/* Fills the REGISTER content: port, LAN addresses, peer fingerprints, MORE_PEERS. */
void node_iface_fill_register(const struct node_iface *ifc, struct proto_register *reg);
/* The "peers" array of the status (docs/status-json.md). */
cJSON *node_iface_status_peers(const struct node_iface *ifc);

/* ---- provided by node.c ---- */
/* The node cannot go on (the cause is logged): nothing may touch it after this returns. */
void node_fail(struct node *n, int err);
/* A device read completed: the coordinators follow what changed. */
void node_on_device(struct node *n, const struct wg_device *dev,
		    const struct node_iface_changes *ch);
/* The coordinator with this id; NULL when it is gone (reload). */
struct node_coord *node_find_coord(struct node *n, unsigned int id);
/* Peers want a PUNCH: every coordinator's next REGISTER asks (RESYNC), sent now if now. */
void node_resync_coords(struct node *n, bool now);

#endif

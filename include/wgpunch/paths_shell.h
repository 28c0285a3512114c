/* SPDX-License-Identifier: MIT */
/*
 * paths_shell - the I/O of the paths engine (paths.h): the wg handle, the raw
 * prober on the interface's listen port, reading the device (every 250 ms
 * while an attempt is open, every 5 s otherwise), the LAN addresses, and the
 * WireGuard writes the engine emits. What it notices and what it needs from
 * the links goes through the callbacks given at open.
 */
#ifndef WGPUNCH_PATHS_SHELL_H
#define WGPUNCH_PATHS_SHELL_H

#include <cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "wgpunch/config.h"
#include "wgpunch/counters.h"
#include "wgpunch/paths.h"
#include "wgpunch/prober.h"
#include "wgpunch/proto.h"
#include "wgpunch/wg.h"

#define PATHS_SHELL_COUNTERS(X)                                  \
	X(endpoint_writes, "endpoint writes queued for a PUNCH") \
	X(wg_errors, "failed reads or writes of the WireGuard device")
struct paths_shell_counters {
	PATHS_SHELL_COUNTERS(COUNTER_FIELD)
};
COUNTER_TABLE_DECLARE(paths_shell_counters);

/* What one read of the device changed. */
struct paths_shell_changes {
	bool first; /* the first read */
	bool port;  /* listen port or fwmark */
	bool key;   /* private key */
	bool peers; /* the set of peer keys */
	bool lan;   /* LAN addresses */
	/* The tunnels carried traffic since the last read: more than WireGuard's keepalives
	 * and handshakes moved through some peer. */
	bool active;
};

struct paths_shell_ops {
	/* The node cannot go on (the cause is logged): nothing may touch it after this. */
	void (*fail)(void *arg, int err);
	/* A device read completed: the links follow what changed. */
	void (*on_device)(void *arg, const struct wg_device *dev,
			  const struct paths_shell_changes *ch);
	/* The endpoint of PUNCH attempt from link link_id is written (or could not be): ack. */
	void (*punch_done)(void *arg, unsigned int link_id, uint32_t attempt);
	/* Every direct candidate of peer_key failed: ask link link_id for a relay. */
	void (*relay_request)(void *arg, unsigned int link_id, const uint8_t *peer_key);
	/* peer_key went direct from its relay (reason): tell link link_id's coordinator. */
	void (*relay_close)(void *arg, unsigned int link_id, const uint8_t *peer_key,
			    uint8_t reason);
	/* Peers want a PUNCH: every link's next REGISTER asks (RESYNC), sent now if now. */
	void (*resync)(void *arg, bool now);
	/* Every handle is closed. */
	void (*closed)(void *arg);
	void *arg;
};

struct paths_shell;

/* Opens the interface and the prober; 0, or -errno (logged) with nothing left to close. */
int paths_shell_open(uv_loop_t *loop, const struct config *conf, const struct paths_shell_ops *ops,
		     struct paths_shell **out);
/* Queues the first read of the device; 0 or -errno (logged). */
int paths_shell_start(struct paths_shell *ps);
/* Closes wg (queued writes end silently), the prober and the timers; ops->closed once all
 * are closed, and ps is freed then. */
void paths_shell_close(struct paths_shell *ps);
/* A new config (same interface): a changed keepalive is written to the peers we set up. */
void paths_shell_reload(struct paths_shell *ps, const struct config *conf);
/* rtnetlink reports address changes: device reads then re-read the LAN addresses only when
 * the port changed. */
void paths_shell_set_lan_watched(struct paths_shell *ps, bool watched);
/* Reads the LAN addresses again; true when they changed. Nothing before the first read. */
bool paths_shell_lan_refresh(struct paths_shell *ps);

/* A PUNCH from link link_id, whose public mapping of our port is mapping. */
void paths_shell_on_punch(struct paths_shell *ps, unsigned int link_id, const struct addr *mapping,
			  const struct proto_punch *punch);
/* Link link_id went down. */
/* A RELAY from link link_id: the peer's endpoint becomes the relay. true when the peer is
 * ours and the endpoint is (being) written: the caller then sends the bind probes. */
bool paths_shell_on_relay(struct paths_shell *ps, unsigned int link_id,
			  const struct proto_relay *relay);
void paths_shell_link_down(struct paths_shell *ps, unsigned int link_id);
/* Fills the REGISTER content: port, LAN addresses, peer fingerprints, pages. */
void paths_shell_fill_register(const struct paths_shell *ps, struct proto_register *reg);

/* The last read of the device; NULL until the first. */
const struct wg_device *paths_shell_device(const struct paths_shell *ps);
struct prober *paths_shell_prober(struct paths_shell *ps);
const char *paths_shell_backend(const struct paths_shell *ps);
const struct paths_counters *paths_shell_engine_counters(const struct paths_shell *ps);
/* The engine's peer table, read-only (status reasons, metrics). */
const struct paths *paths_shell_engine(const struct paths_shell *ps);
const struct paths_shell_counters *paths_shell_counters(const struct paths_shell *ps);
/* The "peers" array of the status (docs/status-json.md). */
cJSON *paths_shell_status_peers(const struct paths_shell *ps);

#endif

/* SPDX-License-Identifier: MIT */
/*
 * link_shell - the I/O of one link (link.h): the session socket, the one
 * timer and the resolver of one coordinator line. It feeds the engine what
 * happens (datagrams, the timer, lookups) and carries out what the engine
 * returns: datagrams out through the socket or the prober, the timer, a new
 * lookup, and the reports, which it logs and hands to the node through the
 * callbacks given at start. Nothing else touches the engine's state.
 */
#ifndef WGPUNCH_LINK_SHELL_H
#define WGPUNCH_LINK_SHELL_H

#include <cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "wgpunch/config.h"
#include "wgpunch/counters.h"
#include "wgpunch/link.h"
#include "wgpunch/prober.h"
#include "wgpunch/proto.h"

#define LINK_SHELL_COUNTERS(X)                                  \
	X(tx_packets, "datagrams handed to the session socket") \
	X(tx_errors, "datagrams the session socket refused")    \
	X(probes_sent, "probes sent from the WireGuard port")   \
	X(probe_errors, "probes the raw socket refused")
struct link_shell_counters {
	LINK_SHELL_COUNTERS(COUNTER_FIELD)
};
COUNTER_TABLE_DECLARE(link_shell_counters);

struct link_shell;

/* What the node gives a link: all of its callbacks, and the prober (owned by the node). */
struct link_shell_ops {
	/* Fills the REGISTER content (port, LAN addresses, peer fingerprints, pages). */
	void (*fill_register)(void *arg, struct proto_register *reg);
	/* A PUNCH from this link; link_shell_punch_done() acks it once carried out. */
	void (*on_punch)(void *arg, struct link_shell *s, const struct proto_punch *punch);
	/* A RELAY from this link (its endpoint resolved); link_shell_relay_bind() binds it. */
	void (*on_relay)(void *arg, struct link_shell *s, const struct proto_relay *relay);
	/* The session came up (up) or went down. */
	void (*on_session)(void *arg, struct link_shell *s, bool up);
	/* Every handle is closed and s is freed. */
	void (*closed)(void *arg);
	void *arg;
	struct prober *prober;
};

/* Allocates and starts (resolving, or the literal address). private_key: the device's, or
 * NULL while it is unknown (link_shell_set_identity() gives it later); fwmark: the device's.
 * 0 or -errno (nothing to clean up then). */
int link_shell_start(uv_loop_t *loop, const struct config_coordinator *cc, unsigned int id,
		     const uint8_t *private_key, uint32_t fwmark, const struct link_shell_ops *ops,
		     struct link_shell **out);
/* Closes every handle; s is freed in the last close callback, which calls ops->closed. */
void link_shell_close(struct link_shell *s);

/* The device's private key is known or changed: (re)handshake. */
void link_shell_set_identity(struct link_shell *s, const uint8_t private_key[KEY_LEN]);
/* The socket's fwmark must follow the device's, or a default route through the tunnel
 * would carry the session into the tunnel. */
void link_shell_set_fwmark(struct link_shell *s, uint32_t fwmark);
/* The engine's events (link.h). */
void link_shell_register(struct link_shell *s, bool probe);
void link_shell_probe(struct link_shell *s);
/* Whether the tunnels carry traffic (the engine refreshes more often then). */
void link_shell_activity(struct link_shell *s, bool active);
void link_shell_resync(struct link_shell *s, bool now);
void link_shell_punch_done(struct link_shell *s, uint32_t attempt);
/* Relay-bind probes from the WireGuard port to relay (our relay port on the coordinator). */
void link_shell_relay_bind(struct link_shell *s, const struct addr *relay);
/* RELAY_REQUEST / RELAY_CLOSE (reason) for peer_key over this link's session. */
void link_shell_relay_request(struct link_shell *s, const uint8_t peer_key[KEY_LEN]);
void link_shell_relay_close(struct link_shell *s, const uint8_t peer_key[KEY_LEN], uint8_t reason);

unsigned int link_shell_id(const struct link_shell *s);
bool link_shell_same_conf(const struct link_shell *s, const struct config_coordinator *cc);
/* The engine, read-only: mapping, filter, state. */
const struct link *link_shell_link(const struct link_shell *s);
const struct link_shell_counters *link_shell_counters(const struct link_shell *s);
/* One entry of the status's "coordinators" array (docs/status-json.md). */
cJSON *link_shell_status(const struct link_shell *s);

#endif

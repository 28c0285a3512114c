/* SPDX-License-Identifier: MIT */
/*
 * node_coord - the node's link with one coordinator (docs/rendezvous.md
 * sections 1 to 4, node side): the object and its lifetime, resolution, the
 * session socket and status. Two modules work on the same struct:
 * node_session.c (the Noise session: handshake, keys, DATA, re-key) and
 * node_rdv.c (the rendezvous steps the session carries: REGISTER, probes,
 * the filter echo, PUNCH handed up to the node, PUNCH_ACK).
 *
 * Everything is driven by events where it can be: the session comes up ->
 * REGISTER and probes at once; FILTER_GO -> echo at once; PUNCH -> the node
 * writes the endpoint and acks when the write completes. Timers only retry
 * and refresh. All of them run on the monotonic clock.
 *
 * Any datagram can be lost, and a step that waits for the 20 s refresh after
 * a loss makes the node's readiness wait with it. So every step the node
 * starts is repeated until it is answered, on a short timer with backoff and
 * jitter, a bounded number of times: HS_INIT (HS_RESP), REGISTER
 * (REGISTER_ACK), a probe round (both MAPPINGs), the filter echo
 * (FILTER_RESULT). PUNCH_ACK has no answer: it is sent twice.
 *
 * Internal to the node role: node.c owns every node_coord and provides the
 * node_* hooks declared at the end, which these modules call.
 */
#ifndef WGPUNCH_NODE_COORD_H
#define WGPUNCH_NODE_COORD_H

#include <cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "wgpunch/addr.h"
#include "wgpunch/config.h"
#include "wgpunch/key.h"
#include "wgpunch/proto.h"
#include "wgpunch/session.h"

struct node;
struct prober;
struct wg_device;

/* Every datagram dropped or event counted, for status and debugging. */
struct node_counters {
	uint64_t rx_packets;
	uint64_t rx_bad_decode; /* outer or inner message did not decode */
	uint64_t rx_bad_index;  /* no session or handshake with that index */
	uint64_t rx_bad_auth;   /* handshake or DATA failed to decrypt */
	uint64_t rx_replay;     /* DATA counter already seen */
	uint64_t rx_unexpected; /* valid but not for a node (or not now) */
	uint64_t rx_poison;     /* filter test poison on the session socket */
	uint64_t rx_session_unknown;
	uint64_t tx_packets;
	uint64_t tx_errors;
	uint64_t probes_sent;
	uint64_t probe_errors;
	uint64_t handshakes_sent;
	uint64_t sessions_up;
	uint64_t registers_sent;
	uint64_t punches;
	uint64_t punches_ignored; /* not a peer of the interface */
	uint64_t endpoint_writes;
	uint64_t wg_errors;
};

enum node_coord_state {
	NODE_COORD_RESOLVING = 0,
	NODE_COORD_HANDSHAKING,
	NODE_COORD_UP,
};

/* One direction pair of transport keys, as agreed by one handshake. */
struct node_coord_keys {
	bool valid;
	uint32_t local_idx, remote_idx;
	struct session_keys keys;
	uint64_t send_ctr;
	struct session_replay replay;
};

struct node_coord_sock {
	uv_udp_t udp;
	struct node_coord *c;
	int family;
};

struct node_coord {
	/* ---- the object, resolution and the socket (node_coord.c) ---- */
	struct node *node;
	uv_loop_t *loop;
	unsigned int id; /* unique within the node; survives reloads */
	char *host;
	uint16_t port;
	uint8_t public_key[KEY_LEN];
	bool host_is_literal;

	enum node_coord_state state;
	struct addr addr; /* port P; unset until resolved */
	uv_getaddrinfo_t gai;
	bool gai_pending;
	struct node_coord_sock *sock; /* NULL until resolved */
	/* Every timer of the three modules, so node_coord_close() closes them all. */
	uv_timer_t hs_timer, refresh_timer, rekey_timer, reg_timer, resolve_timer;
	uv_timer_t probe_timer, echo_timer, ack_timer;
	unsigned int closing; /* handles and requests not yet given back by libuv */
	bool stopping;

	/* ---- the session (node_session.c) ---- */
	bool hs_pending;
	struct session_hs hs;
	uint32_t hs_idx;
	uint32_t hs_backoff_ms;
	unsigned int hs_tries;
	uint32_t unknown_backoff_ms;
	struct node_coord_keys cur, prev;
	uint8_t probe_key[SESSION_KEY_LEN];
	uint64_t last_rx_ms; /* monotonic: last authentic DATA; 0 = never */

	/* ---- the rendezvous steps (node_rdv.c) ---- */
	uint64_t probe_seq; /* never reset: always above what the coordinator accepted */
	uint32_t reg_seq;

	struct proto_msg reg; /* the REGISTER last sent, for retransmission */
	bool reg_pending;
	unsigned int reg_tries;
	uint32_t reg_backoff_ms;
	uint64_t reg_sent_ms; /* monotonic: first send of the pending REGISTER */
	bool resync_wanted;   /* the next REGISTER carries RESYNC */

	/* Every datagram of the start-up sequence can be lost; each step the node starts is
	 * repeated on its own timer until answered (docs/rendezvous.md). */
	uint64_t probe_first_seq; /* first probe of the current series; 0 = none pending */
	uint32_t probe_backoff_ms;
	unsigned int probe_tries;
	bool echo_pending; /* FILTER_ECHO sent, no FILTER_RESULT yet */
	uint64_t echo_nonce;
	unsigned int echo_tries;
	uint32_t ack_repeat[4]; /* PUNCH_ACKs to send once more */
	uint8_t n_ack_repeat;

	struct addr mapping[2]; /* observed public ip:port of the WireGuard port, via P and P + 1 */
	uint64_t mapping_seq[2];
	/* From the last round whose two probes both came back (seq n to P, n + 1 to P + 1):
	 * a lost probe or a round still in flight must not look like a symmetric NAT. */
	uint8_t nat_type; /* 0 unknown, 1 endpoint-independent, 2 endpoint-dependent */
	struct addr round_mapping;
	uint8_t filter; /* enum proto_filter */

	uint8_t rxbuf[2048];
};

/* Allocates and starts resolving. 0 or -errno (nothing to clean up then). */
int node_coord_start(struct node *n, uv_loop_t *loop, const struct config_coordinator *cc,
		     unsigned int id, struct node_coord **out);
/* Closes every handle; c is freed in the last close callback, which then calls
 * node_coord_closed(). */
void node_coord_close(struct node_coord *c);
/* The socket's fwmark must follow the device's, or a default route through the tunnel
 * would carry the session into the tunnel. */
void node_coord_set_fwmark(struct node_coord *c, uint32_t fwmark);
bool node_coord_same_conf(const struct node_coord *c, const struct config_coordinator *cc);
const char *node_coord_state_name(enum node_coord_state s);
cJSON *node_coord_status(const struct node_coord *c, uint64_t now_ms);

/* ---- for node_session.c and node_rdv.c ---- */
/* Sends one datagram from the session socket (copied; the caller keeps buf): 0, -ENOTCONN
 * (no socket of to's family) or -errno. What libuv takes or refuses is counted. */
int node_coord_send(struct node_coord *c, const struct addr *to, const uint8_t *buf, size_t len);
/* Looks the host up again (nothing while a lookup is pending or c is closing); a new address
 * takes the session down and handshakes there. Not for a literal host. */
void node_coord_resolve(struct node_coord *c);
/* For log lines: the address, or host:port while unresolved. Returns buf. */
const char *node_coord_name(const struct node_coord *c, char buf[ADDR_STRLEN]);
/* ms +-25 %: nodes behind one NAT restart together and would retry in lockstep. */
uint64_t node_coord_jitter(uint64_t ms);
/* The next backoff: twice ms, at most max_ms. */
uint32_t node_coord_doubled(uint32_t ms, uint32_t max_ms);

/* ---- provided by node.c ---- */
uint64_t node_now_ms(void);
const struct wg_device *node_device(const struct node *n);
struct prober *node_prober(struct node *n);
struct node_counters *node_counters(struct node *n);
/* Fills the REGISTER content: port, LAN addresses, peer fingerprints, MORE_PEERS. */
void node_fill_register(struct node *n, struct proto_register *reg);
void node_on_punch(struct node *n, struct node_coord *c, const struct proto_punch *punch);
void node_coord_closed(struct node *n);

#endif

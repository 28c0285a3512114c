/* SPDX-License-Identifier: MIT */
/*
 * transport - the coordinator's bottom layer: every socket, the framing of
 * established sessions, and the dispatch of what arrives to the services.
 *
 * Sockets. Each listen address has two, named by role, not by position:
 * TRANSPORT_MAIN at port P (handshakes, sessions, probes) and TRANSPORT_PROBE
 * at P + 1 (probes, the filter echo, the source of the filter test's POISON).
 * A listen address of either family gets its pair: an IPv6 listen address is
 * one more entry of conf->coord.listen, bound IPV6_V6ONLY. Relay ports
 * (issue 8) are the slot after TRANSPORT_PROBE: a role whose sockets a relay
 * service opens on demand and whose datagrams go to its own handler.
 *
 * Sessions. The transport frames what travels under a node's session (the
 * session fields of struct reg_node: index, keys, counters, replay window,
 * session address): it decrypts DATA, checks its replay window, follows NAT
 * rebinding on P once the node proved the new address (ADDR_CHECK / ADDR_ECHO),
 * checks a PROBE's port, purpose, MAC and sequence per purpose, answers DATA
 * for an index it does not know with SESSION_UNKNOWN (rate-limited; never a
 * PROBE), and encrypts DATA for transport_send_msg(). Which entry an index
 * names it asks the directory through struct transport_sessions; it never
 * calls a service by name.
 *
 * Dispatch. Services register a handler per message type and the roles
 * (ports) it may arrive on:
 *   - outer types that arrive as they are (HS_INIT), or after the transport's
 *     own check (PROBE: rx->node is its authenticated sender);
 *   - inner messages of DATA (REGISTER, PUNCH_ACK, FILTER_ECHO): rx->node and
 *     rx->msg set.
 * A type with no handler or on a port its handler did not ask for is counted
 * (rx_unexpected, data_unexpected) and dropped. DATA itself is never
 * dispatched: it is the transport's.
 *
 * Receive path: libuv says when a socket is readable; the transport reads it
 * with recvmmsg, TRANSPORT_BATCH datagrams at a time and a bounded number of
 * batches a wake-up, and hands each datagram to transport_input(). Replies made
 * meanwhile are copied into a preallocated queue and leave with one sendmmsg
 * per socket when the batch is done; a send from anywhere else (a timer) is
 * one sendto. Nothing on either path allocates. The sockets ask for
 * TRANSPORT_SOCKBUF of buffer (logged: what the kernel granted) and count the
 * kernel's drops (SO_RXQ_OVFL) in rx_kernel_drops.
 *
 * One loop, no threads. Counters: transport_counters_table.
 */
#ifndef WGPUNCH_TRANSPORT_H
#define WGPUNCH_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "wgpunch/addr.h"
#include "wgpunch/addr_hint.h"
#include "wgpunch/config.h"
#include "wgpunch/coord_handles.h"
#include "wgpunch/counters.h"
#include "wgpunch/proto.h"

#define TRANSPORT_MAX_LISTEN 64
/* SESSION_UNKNOWN replies a second, all sources together. Each is smaller than the DATA it
 * answers (no amplification), and after a restart it is how a fleet learns to handshake
 * again within a round trip, not a timeout: above the handshake rate a core can serve. */
#define TRANSPORT_UNKNOWN_PER_S 10000
/* addr_hint's period: a live session refreshes (REGISTER, DATA) well within it (dir.h's
 * DIR_REFRESH_S is 20 s). */
#define TRANSPORT_HINT_PERIOD_MS 60000
/* ADDR_CHECK: at most one a node per TRANSPORT_ADDR_CHECK_MS; its echo counts this long. */
#define TRANSPORT_ADDR_CHECK_MS 1000
#define TRANSPORT_ADDR_CHECK_TTL_MS 5000
/* Larger than any valid datagram, so a longer one shows up as truncated (MSG_TRUNC). */
#define TRANSPORT_RXBUF (PROTO_MAX_DATAGRAM + 256)
/* Datagrams a recvmmsg reads, and batches a wake-up reads from one socket at most (fairness:
 * the rest wakes the loop again after its other handles had their turn). */
#define TRANSPORT_BATCH 64
#define TRANSPORT_BATCHES_PER_EVENT 4
/* Replies queued before a sendmmsg: a datagram makes at most a few (a PUNCH makes two). */
#define TRANSPORT_TXBATCH 128
/* Asked for each listen socket's receive and send buffer: at 1M nodes a burst of 40,000
 * datagrams (a restart's handshakes) must wait in the kernel, not be dropped. */
#define TRANSPORT_SOCKBUF (32 << 20)

enum transport_role {
	TRANSPORT_MAIN = 0,  /* listen port P */
	TRANSPORT_PROBE = 1, /* P + 1 */
	TRANSPORT_LISTEN_ROLES,
	/* TRANSPORT_RELAY goes here (issue 8): sockets from relay_ports, opened per pair. */
};
#define TRANSPORT_ROLE_BIT(role) (1u << (role))

/* Which socket: the listen address (conf->coord.listen[listen]) and the role there. */
struct transport_sock_id {
	uint8_t listen;
	uint8_t role; /* enum transport_role */
};

struct transport;
struct transport_batch;

struct transport_sock {
	struct coord_handle h; /* h.uv.udp; .data is the struct transport */
	struct transport *t;
	struct transport_sock_id id;
	struct addr bound;
	uint32_t rxq_ovfl; /* the kernel's cumulative drop count on it, last seen */
};

/* One listen address: its sockets, by role. */
struct transport_listen {
	struct transport_sock sock[TRANSPORT_LISTEN_ROLES];
};

#define TRANSPORT_COUNTERS(X)                                                                \
	X(rx_datagrams, "every datagram received")                                           \
	X(rx_malformed, "bad outer message, or truncated")                                   \
	X(rx_unexpected, "a type or port this side never receives")                          \
	X(unknown_index, "DATA or PROBE for an index we do not know")                        \
	X(session_unknown_sent, "SESSION_UNKNOWN answers sent")                              \
	X(session_unknown_limited, "SESSION_UNKNOWN not sent: rate limit")                   \
	X(data_replayed, "DATA whose counter was seen before")                               \
	X(data_bad_auth, "DATA that failed to authenticate (AEAD)")                          \
	X(data_malformed, "authentic DATA whose inner message did not decode")               \
	X(data_unexpected, "authentic DATA, but not a message for this port")                \
	X(probe_bad_mac, "PROBE whose MAC did not verify")                                   \
	X(probe_replayed, "PROBE whose sequence number was not above the last on its port")  \
	X(probe_wrong_port, "PROBE whose dst_port or purpose is not this socket's")          \
	X(addr_check_sent, "ADDR_CHECKs sent to a new source of authentic DATA")             \
	X(addr_check_limited, "new sources not checked: one outstanding, or DATA too small") \
	X(addr_echo_bad, "ADDR_ECHOs that answer no outstanding check from their source")    \
	X(addr_moved, "sessions moved to a new address after its ADDR_ECHO")                 \
	X(rx_batches, "recvmmsg calls that returned datagrams")                              \
	X(rx_errors, "receive calls that failed (an ICMP error for an earlier send)")        \
	X(rx_kernel_drops, "datagrams the kernel dropped: buffer full (SO_RXQ_OVFL)")        \
	X(tx_datagrams, "datagrams handed to the kernel")                                    \
	X(tx_batches, "sendmmsg calls")                                                      \
	X(tx_eagain, "datagrams not sent: the socket's send buffer was full")                \
	X(tx_errors, "datagrams not sent: too long, or the kernel refused")

struct transport_counters {
	TRANSPORT_COUNTERS(COUNTER_FIELD)
};
COUNTER_TABLE_DECLARE(transport_counters);

struct reg_node;

/* What a handler receives; valid only during the call. */
struct transport_rx {
	const struct transport_sock *sock;
	const struct addr *from;
	const uint8_t *buf; /* the whole datagram */
	size_t len;
	const struct proto_outer *outer;
	struct reg_node *node;       /* PROBE and inner messages: the authenticated sender */
	const struct proto_msg *msg; /* inner messages: the decrypted message */
};

typedef void (*transport_handler_fn)(void *arg, const struct transport_rx *rx);

struct transport_route {
	transport_handler_fn fn; /* NULL: nobody receives this type */
	void *arg;
	unsigned int roles; /* TRANSPORT_ROLE_BIT()s of the ports it may arrive on */
};

/* The directory's answers about sessions, without the transport calling it by name. */
struct transport_sessions {
	/* The entry whose session index is idx, or NULL. */
	struct reg_node *(*find)(void *arg, uint32_t idx);
	/* Authentic DATA from n: it is alive (refresh). */
	void (*seen)(void *arg, struct reg_node *n);
	/* n's session address changed on P (NAT rebinding, proven by ADDR_ECHO): the new one
	 * is in n already. */
	void (*moved)(void *arg, struct reg_node *n);
	void *arg;
};

#define TRANSPORT_OUTER_TYPES 8 /* above every enum proto_type */
#define TRANSPORT_MSG_TYPES 16  /* above every enum proto_msg_type */

struct transport {
	uv_loop_t *loop;
	struct coord_handles *handles;
	struct transport_listen *listen;
	size_t n_listen;
	struct transport_sessions sessions;
	struct transport_route outer[TRANSPORT_OUTER_TYPES];
	struct transport_route msg[TRANSPORT_MSG_TYPES];
	uint32_t unknown_tokens;
	uint64_t unknown_refill_ms;
	uint8_t addr_key[16];  /* keys the ADDR_CHECK nonces (crypto_shorthash) */
	struct addr_hint hint; /* the session addresses, for transport_may_hold_session() */
	struct transport_counters ctr;
	struct transport_batch *batch; /* the recvmmsg / sendmmsg buffers */
	bool in_batch;                 /* handling a read batch: replies wait for its sendmmsg */
};

/*
 * Creates a socket pair per listen address of cr, every socket in handles before anything can
 * fail; nothing is bound yet. Returns 0, or -EINVAL / -ENOMEM (logged); on failure the sockets
 * made so far stay in handles, which closes them.
 */
int transport_init(struct transport *t, uv_loop_t *loop, struct coord_handles *handles,
		   const struct config_coordinator_role *cr, const struct transport_sessions *s);
/* Binds every socket and starts receiving. 0, or -errno (logged with the address). */
int transport_bind(struct transport *t);
/* Frees what transport_init() allocated; only after handles closed every socket. */
void transport_destroy(struct transport *t);

/*
 * False when no session answers at rx's source on its listen address, nor did in the last
 * TRANSPORT_HINT_PERIOD_MS or so (addr_hint.h): an unproven HS_INIT from there cannot be a
 * rekey, and may be answered with a cookie reply unread. True may be wrong (a collision).
 */
bool transport_may_hold_session(const struct transport *t, const struct transport_rx *rx);

/* Registers fn for outer type `type` (HS_INIT, PROBE) on the ports in roles. */
void transport_route_outer(struct transport *t, uint8_t type, unsigned int roles,
			   transport_handler_fn fn, void *arg);
/* Registers fn for inner message type `type` of DATA, on the ports in roles. */
void transport_route_msg(struct transport *t, uint8_t type, unsigned int roles,
			 transport_handler_fn fn, void *arg);

/* One received datagram, from wherever it was read: counted, decoded, framed, dispatched. */
void transport_input(struct transport *t, const struct transport_sock *s, const struct addr *from,
		     const uint8_t *buf, size_t len, bool truncated);

/* The socket named by id, or NULL when there is none. */
struct transport_sock *transport_sock(struct transport *t, struct transport_sock_id id);

/* Sends a copy of buf[0..len) to `to` from socket id. Nothing is sent once the handles are
 * closing; failures are counted (tx_errors) and logged at debug level. */
void transport_send(struct transport *t, struct transport_sock_id id, const struct addr *to,
		    const uint8_t *buf, size_t len);
/* DATA{m} to n's session address, from P of the listen address its session uses; nothing
 * while n has no session. */
void transport_send_msg(struct transport *t, struct reg_node *n, const struct proto_msg *m);

/* Installs a new session on n (keys, indices, counters, probe key, replay window) from the
 * socket and address its handshake came from. n already has its new local index. */
struct session_keys;
void transport_session_install(struct transport *t, struct reg_node *n,
			       const struct session_keys *keys, uint32_t remote_idx,
			       struct transport_sock_id id, const struct addr *from);

/* Counts a dropped datagram in *counter and logs why at debug level. */
void transport_drop(uint64_t *counter, const struct addr *from, const char *why);

#endif

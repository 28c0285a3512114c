/* SPDX-License-Identifier: MIT */
/*
 * coord_internal - private to the coordinator: only the coordinator's own .c
 * files include it; the role's contract for everyone else is coord.h. It
 * holds the state the coordinator's pieces share and the socket layer
 * coord.c gives them:
 *
 *   coord.c          lifecycle, sockets, receive dispatch, expiry, reload, status
 *   coord_hs.c       handshake flood protection and the Noise responder
 *   coord_session.c  established sessions: DATA both ways, REGISTER, PROBE
 *   coord_filter.c   the filter test (rendezvous.md section 3)
 *   coord_punch.c    readiness, consent and the ordered punch (section 4)
 *
 * coord_pair.c, the pure punch order, stands apart and does not need this.
 * One libuv loop, no threads: every function here runs on it.
 */
#ifndef WGPUNCH_COORD_INTERNAL_H
#define WGPUNCH_COORD_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "wgpunch/addr.h"
#include "wgpunch/config.h"
#include "wgpunch/coord_hs.h"
#include "wgpunch/coord_pair.h"
#include "wgpunch/proto.h"
#include "wgpunch/registry.h"

#define COORD_REFRESH_S 20                           /* REGISTER_ACK refresh_s */
#define COORD_EXPIRE_MS (3 * COORD_REFRESH_S * 1000) /* not refreshed for 3 x refresh_s */
#define COORD_UNKNOWN_PER_S 1000 /* SESSION_UNKNOWN replies a second, all sources together */
/* Larger than any valid datagram, so a longer one shows up as UV_UDP_PARTIAL. */
#define COORD_RXBUF (PROTO_MAX_DATAGRAM + 256)

/* Every reason a datagram is dropped, and what was done; shown in the status. */
#define COORD_COUNTERS(X)                                                        \
	X(rx_datagrams)  /* every datagram received */                           \
	X(rx_malformed)  /* bad outer message, or truncated */                   \
	X(rx_unexpected) /* a type or port this side never receives */           \
	X(hs_accepted)                                                           \
	X(hs_bad)          /* Noise message 1 failed to authenticate */          \
	X(hs_unauthorized) /* key not in authorized_keys */                      \
	X(hs_replayed)     /* timestamp not later than the last accepted one */  \
	X(hs_full)         /* registry at max_nodes: new node refused */         \
	X(hs_failed)       /* local failure (memory, index) */                   \
	X(hs_rate_limited) /* its source sent too many: not even read */         \
	X(hs_over_budget)  /* global handshake budget spent: not even read */    \
	X(unknown_index)   /* DATA or PROBE for an index we do not know */       \
	X(session_unknown_sent)                                                  \
	X(session_unknown_limited) /* not answered: rate limit */                \
	X(data_replayed)                                                         \
	X(data_bad_auth)   /* AEAD failed */                                     \
	X(data_malformed)  /* authentic, but the inner message did not decode */ \
	X(data_unexpected) /* authentic, but not a message for this port */      \
	X(probe_accepted)                                                        \
	X(probe_bad_mac)                                                         \
	X(probe_replayed)                                                        \
	X(register_accepted)                                                     \
	X(register_failed) /* out of memory storing it */                        \
	X(echo_unexpected) /* no test pending, or wrong nonce */                 \
	X(ack_unknown)     /* PUNCH_ACK for no pending attempt of that node */   \
	X(filter_tests)                                                          \
	X(filter_timeouts)                                                       \
	X(punch_pairs)                                                           \
	X(punch_unordered) /* pending table full: both told at once */           \
	X(punch_released)  /* second PUNCH sent after an ack or timeout */       \
	X(nodes_expired)                                                         \
	X(nodes_dropped) /* no longer authorised after a reload */               \
	X(tx_datagrams)                                                          \
	X(tx_errors)

struct coord_counters {
#define X(name) uint64_t name;
	COORD_COUNTERS(X)
#undef X
};

struct coord_sock {
	uv_udp_t udp; /* .data is the struct coord, like every other handle */
	struct addr bound;
	uint8_t listen_idx;
	uint8_t port_idx; /* 0: P, 1: P + 1 */
};

struct coord {
	uv_loop_t *loop;
	const struct config *conf;
	struct registry reg;
	struct coord_pair_table pending;
	struct coord_sock *socks; /* socks[2 * listen_idx + port_idx] */
	size_t n_socks;
	uv_timer_t sweep_timer, punch_timer, filter_timer;
	/* Pending filter tests, oldest first: all share one timeout, so the head expires next. */
	struct reg_node *filter_head, *filter_tail;
	uint32_t n_filter;
	uint32_t unknown_tokens;
	uint64_t unknown_refill_ms;
	uint64_t budget_warned_ms; /* the last "over budget" warning (0 = never) */
	struct coord_hs_limit hs_limit;
	unsigned int open_handles; /* initialised handles whose close callback is still due */
	bool stopping;
	struct coord_counters ctr;
	uint8_t rxbuf[COORD_RXBUF]; /* one loop, one read at a time */
};

static inline struct coord_sock *coord_sock_of(struct coord *c, uint8_t listen_idx,
					       uint8_t port_idx)
{
	return &c->socks[2 * (size_t)listen_idx + port_idx];
}

/* Counts a dropped datagram in *counter and logs why at debug level. */
void coord_drop(uint64_t *counter, const struct addr *from, const char *why);

/* Sends a copy of buf[0..len) to `to` from socket s. Nothing is sent once the
 * coordinator is stopping; failures are counted (tx_errors) and logged at debug level. */
void coord_send(struct coord *c, struct coord_sock *s, const struct addr *to, const uint8_t *buf,
		size_t len);

#endif

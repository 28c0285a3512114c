/* SPDX-License-Identifier: MIT */
/*
 * link - the node's link with one coordinator over one address family, as a
 * pure engine (docs/rendezvous.md sections 1 to 4, node side): the Noise
 * initiator, REGISTER, probe rounds, the filter echo, PUNCH handed up and
 * PUNCH_ACK. No I/O, no clock reads, no logging: link_on_event() takes one
 * event, the monotonic time and a source of random bytes, and fills a
 * struct link_actions that the shell (link_shell.c) carries out: datagrams
 * for the session socket or the prober, the one timer, a DNS lookup, and
 * reports (UP, DOWN, MAPPING, FILTER, PUNCH) for the node.
 *
 * Everything is driven by events where it can be: the session comes up ->
 * REGISTER and probes at once; FILTER_GO -> echo at once; PUNCH -> the node
 * writes the endpoint and acks when the write completes. Timers only retry
 * and refresh; they all run on now_ms, which must be monotonic (a wall-clock
 * jump changes nothing here: the wall clock only goes into the handshake's
 * TAI64N timestamp).
 *
 * Any datagram can be lost, and a step that waits for the 20 s refresh after
 * a loss makes the node's readiness wait with it. So every step is repeated
 * until it is answered, with backoff and jitter, a bounded number of times:
 * HS_INIT (HS_RESP), REGISTER (REGISTER_ACK), a probe round (both MAPPINGs),
 * the filter echo (FILTER_RESULT). PUNCH_ACK has no answer: it is sent twice.
 * A failed DNS lookup is retried with exponential backoff and jitter.
 *
 * One link per coordinator: its session is over one address family, and
 * beside an IPv4 session one probe goes to the coordinator's IPv6 address
 * (addr6). A second coordinator is another struct link with its own shell
 * (docs/architecture.md).
 */
#ifndef WGPUNCH_LINK_H
#define WGPUNCH_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wgpunch/addr.h"
#include "wgpunch/cookie.h"
#include "wgpunch/counters.h"
#include "wgpunch/key.h"
#include "wgpunch/proto.h"
#include "wgpunch/session.h"

#define LINK_HS_RETRY_FIRST_MS 1000
#define LINK_HS_FAST_TRIES 3 /* sent LINK_HS_RETRY_FIRST_MS apart before the backoff doubles */
#define LINK_HS_RETRY_MAX_MS 30000
#define LINK_HS_TRIES_BEFORE_RESOLVE 3
#define LINK_UNKNOWN_BACKOFF_FIRST_MS 1000
#define LINK_REKEY_MS 120000 /* until the coordinator says otherwise (REGISTER_ACK rekey_s) */
#define LINK_REKEY_MIN_S 60
#define LINK_REKEY_MAX_S 86400
/* An idle node sends one REGISTER per LINK_REFRESH_MS and nothing else (it also keeps the
 * session socket's NAT mapping and the registry entry alive); one whose tunnels carry traffic
 * refreshes every LINK_REFRESH_ACTIVE_MS, so a NAT rebinding shows within that much
 * (docs/rendezvous.md, "Rebinding"). */
#define LINK_REFRESH_MS 20000
#define LINK_REFRESH_ACTIVE_MS 2000
#define LINK_REGISTER_RETRY_FIRST_MS 1000
#define LINK_REGISTER_RETRY_MAX_MS 2000
#define LINK_REGISTER_TRIES 4       /* retransmissions before the session is judged dead */
#define LINK_REGISTER_TRIES_ALIVE 8 /* ... or before waiting for the refresh, while DATA comes */
#define LINK_PROBE_RETRY_FIRST_MS 500
#define LINK_PROBE_RETRY_MAX_MS 4000
#define LINK_PROBE_TRIES 6 /* rounds after the first; about 15 s, then the refresh takes over */
#define LINK_ECHO_RETRY_FIRST_MS 250 /* doubling: 0.25, 0.75, 1.75 s, inside the test's 2 s */
#define LINK_ECHO_TRIES 3
#define LINK_ACK_REPEAT_MS 100
#define LINK_ACK_REPEAT_MAX 4
#define LINK_RESOLVE_EVERY_MS (5 * 60 * 1000)
#define LINK_RESOLVE_RETRY_FIRST_MS 5000
#define LINK_RESOLVE_RETRY_MAX_MS (5 * 60 * 1000)

/* Counters of the engine (the shell has its own: link_shell.h). */
#define LINK_COUNTERS(X)                                                                \
	X(rx_packets, "datagrams read from the session socket")                         \
	X(rx_bad_decode, "outer or inner message that did not decode")                  \
	X(rx_bad_index, "datagrams naming no session or handshake of ours")             \
	X(rx_bad_auth, "handshake responses or DATA that failed to authenticate")       \
	X(rx_replay, "DATA whose counter was already seen")                             \
	X(rx_unexpected, "valid messages not meant for a node, or not now")             \
	X(rx_poison, "filter test poison that reached the session socket")              \
	X(rx_session_unknown, "SESSION_UNKNOWN received")                               \
	X(handshakes_sent, "HS_INIT sent")                                              \
	X(sessions_up, "sessions that came up (re-keys not counted)")                   \
	X(registers_sent, "REGISTER sent, retransmissions included")                    \
	X(rx_cookie, "COOKIE_REPLY that opened: the handshake is sent again with mac2") \
	X(rx_cookie_bad, "COOKIE_REPLY that did not open (not ours, replayed, forged)") \
	X(addr_checks, "ADDR_CHECK answered: the coordinator saw our session move")     \
	X(rebinds, "times our session address changed while the session was up")        \
	X(relay_requests, "RELAY_REQUESTs sent: a peer's direct candidates failed")     \
	X(relay_closes, "RELAY_CLOSEs sent: a relay is not needed any more")
struct link_counters {
	LINK_COUNTERS(COUNTER_FIELD)
};
COUNTER_TABLE_DECLARE(link_counters);

enum link_state {
	LINK_RESOLVING = 0,
	LINK_HANDSHAKING,
	LINK_UP,
};

enum link_event_type {
	LINK_EV_START = 1, /* created: resolve, or use the literal address */
	/* addr: the lookup gave it, and the shell has a socket for it; addr6: the coordinator's
	 * IPv6 address too when addr is IPv4 (probes only, PROTOCOL.md 2.4), else unset */
	LINK_EV_RESOLVED,
	LINK_EV_RESOLVE_FAILED, /* the lookup failed (or returned nothing usable) */
	LINK_EV_SOCKET_FAILED,  /* addr resolved but no socket could be opened for it */
	LINK_EV_DATAGRAM,       /* buf, len from the session socket; truncated: it did not fit */
	LINK_EV_TIMER,          /* the timer armed by the last actions fired */
	LINK_EV_IDENTITY,       /* the device (its private key) is known or the key changed */
	LINK_EV_REGISTER,       /* peers, LAN addresses or port changed: REGISTER now (probe too) */
	LINK_EV_PROBE,          /* local addresses or links changed: probe now */
	LINK_EV_RESYNC,     /* a peer wants a PUNCH: next REGISTER carries RESYNC (now: at once) */
	LINK_EV_PUNCH_DONE, /* the endpoint of PUNCH `attempt` (flag ACK) is written: ack it */
	LINK_EV_ACTIVITY,   /* flag: the tunnels carry traffic (WireGuard's counters moved) */
	LINK_EV_RELAY_BIND, /* send relay-bind probes to addr (our relay port) from the WG port */
	LINK_EV_RELAY_REQUEST, /* peer_key's direct candidates failed: RELAY_REQUEST */
	LINK_EV_RELAY_CLOSE,   /* peer_key's relay is not needed (reason): RELAY_CLOSE */
};

struct link_event {
	enum link_event_type type;
	struct addr addr;   /* RESOLVED; RELAY_BIND: the relay endpoint */
	struct addr addr6;  /* RESOLVED: the coordinator's IPv6 address beside an IPv4 addr */
	const uint8_t *buf; /* DATAGRAM */
	size_t len;
	bool truncated;
	bool flag;               /* REGISTER: probe as well; RESYNC: now; ACTIVITY: active */
	uint32_t attempt;        /* PUNCH_DONE */
	const uint8_t *peer_key; /* RELAY_REQUEST, RELAY_CLOSE */
	uint8_t reason;          /* RELAY_CLOSE: enum proto_relay_close_reason */
};

/* What the engine needs from outside for one event, all of it injected. */
struct link_env {
	/* The device's private key (our identity); NULL until the device is read. */
	const uint8_t *private_key;
	/* The wall clock, for the handshake's TAI64N only (never for a timer). */
	int64_t wall_s;
	uint32_t wall_ns;
	/* Random bytes: ephemeral keys, indices, jitter. */
	void (*random)(void *arg, void *buf, size_t len);
	/* Fills the REGISTER content: port, LAN addresses, peer fingerprints, pages. */
	void (*fill_register)(void *arg, struct proto_register *reg);
	void *arg;
};

enum link_via {
	LINK_VIA_SOCKET = 0, /* the link's session socket */
	LINK_VIA_PROBER,     /* the raw socket, from the WireGuard port */
};

#define LINK_MAX_SENDS 16
#define LINK_PAGES_PER_BATCH 8 /* REGISTER pages sent per event; the rest follow at once */
#define LINK_MAX_PAGES 256     /* as many as the paths engine fills (paths.h) */
struct link_send {
	enum link_via via;
	uint8_t msg; /* the inner message type of a DATA (enum proto_msg_type), for logs; else 0 */
	struct addr to;
	size_t len;
	uint8_t buf[PROTO_MAX_DATAGRAM];
};

/* Reports for the caller (bits of link_actions.reports). */
#define LINK_R_UP 0x01               /* a new session is up (not a re-key) */
#define LINK_R_REKEYED 0x02          /* the session was re-keyed */
#define LINK_R_DOWN 0x04             /* the session went down; down_why says why */
#define LINK_R_MAPPING 0x08          /* a complete probe round changed the mapping or its type */
#define LINK_R_FILTER 0x10           /* FILTER_RESULT changed the filter */
#define LINK_R_PUNCH 0x20            /* punch holds a PUNCH for the node */
#define LINK_R_MOVED 0x40            /* the coordinator's address changed (not the first one) */
#define LINK_R_RESOLVE_RETRY 0x80    /* resolving failed; retried in resolve_retry_ms */
#define LINK_R_PROBES_GIVEN_UP 0x100 /* no complete MAPPING round: the next trigger probes again */
#define LINK_R_RELAY 0x200           /* relay holds a RELAY for the node (endpoint resolved) */
#define LINK_R_REBOUND 0x400         /* our session address moved (NAT rebinding): probing again */
#define LINK_R_MAPPING6 0x800        /* the IPv6 mapping (beside an IPv4 session) changed */
/* Bind probes sent back to back per RELAY_BIND: one lost probe must not cost a WireGuard
 * retry (5 s); each has its own counter, so the coordinator takes the first to arrive. */
#define LINK_RELAY_BINDS 3

struct link_actions {
	struct link_send sends[LINK_MAX_SENDS];
	size_t n_sends;
	bool resolve;      /* start a DNS lookup of the host */
	uint64_t timer_at; /* the one timer: fire at this now_ms; 0 = stopped */
	unsigned int reports;
	const char *down_why;
	uint64_t resolve_retry_ms;
	struct proto_punch punch;
	struct proto_relay relay;
};

/* One direction pair of transport keys, as agreed by one handshake. */
struct link_keys {
	bool valid;
	uint32_t local_idx, remote_idx;
	struct session_keys keys;
	uint64_t send_ctr;
	struct session_replay replay;
};

/* Every deadline of the engine, on now_ms; 0 = off. The shell's one timer follows the first. */
enum link_timer {
	LINK_T_RESOLVE = 0,
	LINK_T_HS,
	LINK_T_REKEY,
	LINK_T_REG,
	LINK_T_REFRESH,
	LINK_T_PROBE,
	LINK_T_ECHO,
	LINK_T_ACK,
	LINK_T_PAGES, /* more REGISTER pages to send than one batch of sends holds */
	LINK_T_COUNT,
};

struct link {
	uint16_t port; /* the coordinator's port P; probes also go to P + 1 */
	uint8_t public_key[KEY_LEN];
	bool host_is_literal;
	struct addr literal; /* when host_is_literal */

	enum link_state state;
	struct addr addr; /* port P; unset until resolved */
	/* The coordinator's IPv6 address (port P) when the session is IPv4 and the name has one
	 * too: one probe goes there after each complete IPv4 round, so the coordinator learns
	 * our IPv6 mapping for the peers (PROTOCOL.md 2.4). Unset otherwise. */
	struct addr addr6;
	bool resolving; /* a lookup is under way */
	uint32_t resolve_backoff_ms;
	uint64_t timers[LINK_T_COUNT];

	/* the session */
	bool hs_pending;
	struct session_hs hs;
	uint32_t hs_idx;
	/* The attempt before the pending one, until the next retry: a coordinator whose receive
	 * queue is long (a flood it cannot keep up with) answers after our retry timer fired,
	 * and that answer is as good as the newer one's. */
	bool hs_prev_pending;
	struct session_hs hs_prev;
	uint32_t hs_prev_idx;
	uint32_t hs_backoff_ms;
	unsigned int hs_tries;
	uint32_t unknown_backoff_ms;
	struct link_keys cur, prev;
	uint8_t probe_key[SESSION_KEY_LEN];
	uint64_t last_rx_ms;    /* last authentic DATA; 0 = never */
	uint64_t session_up_ms; /* when the current keys were agreed */
	uint32_t rekey_ms;      /* the coordinator's rekey interval, or LINK_REKEY_MS */
	uint32_t refresh_ms;    /* min(REGISTER_ACK refresh_s, LINK_REFRESH_MS) */
	/* mac1/mac2 of our HS_INIT and the coordinator's cookie (PROTOCOL.md section 5.2) */
	struct cookie_initiator cookie;
	struct addr observed; /* our session address as the coordinator saw it (REGISTER_ACK) */
	bool active;          /* the tunnels carry traffic: refresh often */

	/* the rendezvous steps */
	uint64_t probe_seq; /* never reset: always above what the coordinator accepted */
	uint32_t reg_seq;
	struct proto_msg reg; /* page 0 of the REGISTER last sent, for retransmission */
	bool reg_pending;
	/* A REGISTER of several pages (a large interface): page p has seq reg.reg.seq + p, and
	 * the REGISTER is answered when every page's ack came back. */
	uint16_t reg_pages;
	uint16_t reg_next; /* the next page to send in this round */
	uint8_t reg_acked[LINK_MAX_PAGES / 8];
	unsigned int reg_tries;
	uint32_t reg_backoff_ms;
	uint64_t reg_sent_ms;     /* first send of the pending REGISTER */
	bool resync_wanted;       /* the next REGISTER carries RESYNC */
	uint64_t probe_first_seq; /* first probe of the current series; 0 = none pending */
	uint32_t probe_backoff_ms;
	unsigned int probe_tries;
	bool echo_pending; /* FILTER_ECHO sent, no FILTER_RESULT yet */
	uint64_t echo_nonce;
	unsigned int echo_tries;
	uint32_t ack_repeat[LINK_ACK_REPEAT_MAX]; /* PUNCH_ACKs to send once more */
	uint8_t n_ack_repeat;

	struct addr mapping[2]; /* public ip:port of the WireGuard port, via P and P + 1 */
	uint64_t mapping_seq[2];
	/* From the last round whose two probes both came back (seq n to P, n + 1 to P + 1):
	 * a lost probe or a round still in flight must not look like a symmetric NAT. */
	uint8_t nat_type; /* 0 unknown, 1 endpoint-independent, 2 endpoint-dependent */
	struct addr round_mapping;
	/* What the coordinator saw of the probe to addr6 (unset: none yet), and its sequence. */
	struct addr mapping6;
	uint64_t mapping6_seq;
	uint8_t filter; /* enum proto_filter */

	struct link_counters counters;
};

/* A new link to the coordinator at port with public_key; literal: its address when the host
 * is an IP literal (no lookup then), else NULL. Feed LINK_EV_START next. */
void link_init(struct link *l, uint16_t port, const uint8_t public_key[KEY_LEN],
	       const struct addr *literal);
/* Wipes the keys. */
void link_clear(struct link *l);

/* One event; out is overwritten with what to do. */
void link_on_event(struct link *l, const struct link_event *ev, const struct link_env *env,
		   uint64_t now_ms, struct link_actions *out);

/* "resolving", "handshaking", "up" */
const char *link_state_name(enum link_state s);
/* "endpoint-independent", "endpoint-dependent" or "unknown" (both mappings needed). */
const char *link_mapping_type(const struct link *l);
/* ms +-25 %, from 4 random bytes: nodes behind one NAT restart together and would retry in
 * lockstep. */
uint64_t link_jitter(uint64_t ms, uint32_t rnd);

#endif

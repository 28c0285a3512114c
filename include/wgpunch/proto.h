/* SPDX-License-Identifier: MIT */
/*
 * proto - wgpunch's wire format: pure encode/decode, no I/O, no allocation.
 *
 * Every datagram starts with a 4-byte header: version (PROTO_VERSION), type,
 * and two reserved bytes that must be zero. All integers are big-endian.
 * "Outer" messages travel in the clear over UDP; PROTO_DATA carries an
 * encrypted "inner" message (struct proto_msg) under the Noise session.
 * docs/PROTOCOL.md describes every byte.
 *
 * proto_encode_*() fill a caller's buffer and return the length or -ENOSPC
 * (or -EINVAL for a message that breaks the format's limits).
 * proto_decode_*() never read past len and return 0 or -EBADMSG. Encodings
 * are canonical: decode then encode reproduces the input exactly.
 */
#ifndef WGPUNCH_PROTO_H
#define WGPUNCH_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "wgpunch/addr.h"
#include "wgpunch/key.h"

/*
 * Version 2: HS_INIT carries mac1/mac2 (proof of the coordinator's key, and of the source
 * address under load), COOKIE_REPLY is new, a PROBE names the port it was sent to, and the
 * session moves to a new address only after ADDR_CHECK (docs/security.md).
 */
#define PROTO_VERSION 2
#define PROTO_HDR_LEN 4
#define PROTO_TAG_LEN 16
/* Stay under the IPv6 minimum MTU so nothing is ever fragmented. */
#define PROTO_MAX_DATAGRAM 1232

/* Noise IK message sizes (see session.h). */
#define PROTO_TIMESTAMP_LEN 12
#define PROTO_HS_INIT_NOISE_LEN (32 + (32 + 16) + (PROTO_TIMESTAMP_LEN + 16)) /* 108 */
#define PROTO_HS_RESP_NOISE_LEN (32 + 16)                                     /* 48 */
#define PROTO_PROBE_MAC_LEN 16
#define PROTO_POISON_LEN 8
#define PROTO_MAC_LEN 16
/* HS_INIT: prefix (8), noise (108), mac1 over bytes 0..115, mac2 over bytes 0..131. */
#define PROTO_HS_INIT_MAC1_OFF (PROTO_HDR_LEN + 4 + PROTO_HS_INIT_NOISE_LEN) /* 116 */
#define PROTO_HS_INIT_MAC2_OFF (PROTO_HS_INIT_MAC1_OFF + PROTO_MAC_LEN)     /* 132 */
#define PROTO_HS_INIT_LEN (PROTO_HS_INIT_MAC2_OFF + PROTO_MAC_LEN)          /* 148 */
/* COOKIE_REPLY body: a 24-byte XChaCha20 nonce, then the 16-byte cookie and its tag. */
#define PROTO_COOKIE_NONCE_LEN 24
#define PROTO_COOKIE_LEN 16
#define PROTO_COOKIE_BODY_LEN (PROTO_COOKIE_NONCE_LEN + PROTO_COOKIE_LEN + PROTO_TAG_LEN) /* 56 */

enum proto_type {
	PROTO_HS_INIT = 1, /* node -> coordinator: sender_idx, noise[108], mac1[16], mac2[16] */
	PROTO_HS_RESP = 2, /* coordinator -> node: sender_idx, receiver_idx, noise[48] */
	PROTO_DATA = 3,    /* both: receiver_idx, counter, ciphertext (inner msg + tag) */
	/* node (raw, from WG port) -> coordinator: receiver_idx, counter = probe seq, the port
	 * it is sent to and why, mac[16] over all of that */
	PROTO_PROBE = 4,
	PROTO_SESSION_UNKNOWN = 5, /* coordinator -> node: receiver_idx it does not know */
	PROTO_POISON = 6, /* coordinator (listen port + 1) -> node: body[8] random; filter test */
	PROTO_COOKIE_REPLY = 7, /* coordinator -> node: receiver_idx, nonce[24], cookie[16+16] */
};

/* Why a PROBE was sent; each purpose has its own sequence numbers. */
enum proto_probe_purpose {
	PROTO_PROBE_MAP_P = 0,  /* mapping toward the listen port P */
	PROTO_PROBE_MAP_P1 = 1, /* mapping toward P + 1 (NAT mapping type) */
	PROTO_PROBE_RELAY = 2,  /* bind this side of a relay port (dst_port) */
};
#define PROTO_PROBE_PURPOSES 3

/*
 * A decoded outer message. Fields not used by a type are zero. body points
 * into the decoded buffer:
 *   HS_INIT: noise message (PROTO_HS_INIT_NOISE_LEN); macs points at mac1 and mac2 (32 bytes)
 *   HS_RESP: noise message (PROTO_HS_RESP_NOISE_LEN)
 *   DATA:    ciphertext (>= PROTO_TAG_LEN, <= PROTO_MAX_DATAGRAM - 16)
 *   PROBE:   mac (PROTO_PROBE_MAC_LEN); the MAC covers the datagram up to it, dst_port
 *            and purpose included, so a probe replayed to another port fails it
 *   COOKIE_REPLY: nonce and encrypted cookie (PROTO_COOKIE_BODY_LEN)
 *   POISON:  PROTO_POISON_LEN opaque bytes
 *   SESSION_UNKNOWN: empty
 */
struct proto_outer {
	uint8_t type;
	uint32_t sender_idx;
	uint32_t receiver_idx;
	uint64_t counter;
	uint16_t dst_port; /* PROBE: the UDP port it was sent to */
	uint8_t purpose;   /* PROBE: enum proto_probe_purpose */
	const uint8_t *body;
	size_t body_len;
	/* HS_INIT: mac1 then mac2 (2 x PROTO_MAC_LEN). Encoding with NULL writes zeros, for
	 * cookie_*() to fill in place. */
	const uint8_t *macs;
};

/* Length of the header part of an outer message of this type (everything before body). */
size_t proto_outer_prefix_len(uint8_t type);

int proto_decode_outer(const uint8_t *buf, size_t len, struct proto_outer *out);
/* Copies m->body after the prefix. */
ssize_t proto_encode_outer(uint8_t *buf, size_t cap, const struct proto_outer *m);

/* ---- inner messages, inside PROTO_DATA ---- */

#define PROTO_MAX_LAN 16    /* local candidate addresses per node (LAN IPv4, global IPv6) */
#define PROTO_MAX_PEERS 100 /* peer fingerprints in one REGISTER page */

enum proto_msg_type {
	PROTO_MSG_REGISTER = 1,      /* node -> coord: who I am willing to meet, where on my LAN */
	PROTO_MSG_REGISTER_ACK = 2,  /* coord -> node */
	PROTO_MSG_MAPPING = 3,       /* coord -> node: a probe arrived from this public ip:port */
	PROTO_MSG_FILTER_GO = 4,     /* coord -> node: poison sent; echo to listen port + 1 now */
	PROTO_MSG_FILTER_ECHO = 5,   /* node -> coord (listen port + 1, session socket) */
	PROTO_MSG_FILTER_RESULT = 6, /* coord -> node: what the filter test showed */
	PROTO_MSG_PUNCH = 7,         /* coord -> node: peer is at these candidates, send now */
	PROTO_MSG_PUNCH_ACK = 8,     /* node -> coord: my first packet to the peer is out */
	PROTO_MSG_ADDR_CHECK = 9,    /* coord -> node, to a new source address: prove it is yours */
	PROTO_MSG_ADDR_ECHO = 10,    /* node -> coord: the ADDR_CHECK's nonce, from that address */
	PROTO_MSG_RELAY = 11,        /* coord -> node: reach this peer through this relay port */
	PROTO_MSG_RELAY_REQUEST = 12, /* node -> coord: direct candidates failed, relay this peer */
	PROTO_MSG_RELAY_CLOSE = 13,   /* node -> coord: this peer's relay is no longer needed */
};

/* What a node's NAT does with an unsolicited inbound packet (filter test). */
enum proto_filter {
	PROTO_FILTER_UNKNOWN = 0,
	PROTO_FILTER_SAFE =
		1, /* dropped or delivered to the host: a peer packet arriving first does no harm */
	PROTO_FILTER_POISONABLE =
		2, /* accepted by the router itself: a peer packet arriving before we sent remaps our port */
};

/* "safe", "poisonable" or "unknown" (for logs and status). */
const char *proto_filter_name(uint8_t filter);

/* REGISTER flags */
#define PROTO_REG_F_RESYNC 0x02 /* some peers have no path and no recent PUNCH: punch again */
#define PROTO_REG_F_NO_RELAY 0x04 /* `relay = no`: never allocate a relay for this node */

/*
 * A node with more than PROTO_MAX_PEERS peers sends its sorted peer list as pages, one
 * REGISTER each: page 0 .. n_pages - 1, every page with the same port, flags and LAN list.
 */
struct proto_register {
	uint32_t seq;     /* echoed in REGISTER_ACK */
	uint16_t wg_port; /* the WireGuard listen port */
	uint8_t flags;
	uint16_t page;    /* this page's index, below n_pages */
	uint16_t n_pages; /* at least 1 */
	uint8_t n_lan;
	struct addr lan[PROTO_MAX_LAN]; /* host addresses with the WireGuard port */
	uint16_t n_peers;
	uint64_t peers[PROTO_MAX_PEERS]; /* key_fingerprint() of each WireGuard peer */
};

struct proto_register_ack {
	uint32_t seq;
	uint16_t refresh_s;   /* register again within this many seconds */
	uint16_t rekey_s;     /* start a new handshake after this many seconds (the operator's) */
	struct addr observed; /* the session address the coordinator saw: shows a NAT rebinding */
};

struct proto_mapping {
	uint64_t probe_seq;   /* the PROBE's counter */
	uint8_t port_index;   /* the PROBE's purpose: 0 the listen port, 1 the listen port + 1 */
	struct addr observed; /* the public ip:port the probe came from */
};

/* ADDR_CHECK and ADDR_ECHO: a random nonce. */
struct proto_addr_check {
	uint64_t nonce;
};

struct proto_filter_go {
	uint64_t nonce;
};

struct proto_filter_echo {
	uint64_t nonce;
};

struct proto_filter_result {
	uint8_t filter; /* enum proto_filter */
};

/* PUNCH flags */
#define PROTO_PUNCH_F_ACK 0x01 /* coordinator waits for PUNCH_ACK before telling the other side */

struct proto_punch {
	uint32_t attempt;          /* echoed in PUNCH_ACK */
	uint8_t peer_key[KEY_LEN]; /* the WireGuard peer this is about */
	uint8_t flags;
	struct addr peer_public; /* peer's public mapping of its WireGuard port */
	uint8_t n_lan;
	struct addr lan[PROTO_MAX_LAN]; /* peer's LAN candidates */
};

struct proto_punch_ack {
	uint32_t attempt;
};

/* RELAY flags */
#define PROTO_RELAY_F_AT_ONCE 0x01 /* allocated without a request: no direct path can work */
/* The other side initiates: write the endpoint quietly and kick only if its handshake does
 * not come (two initiations crossing in the relay would cost WireGuard's 5 s retry). */
#define PROTO_RELAY_F_SECOND 0x02

/*
 * RELAY: the coordinator allocated a relay for this node and peer_key. The node points its
 * WireGuard endpoint for peer_key at `relay` (the coordinator's address, this node's own relay
 * port) and binds that port with PROBEs of purpose PROTO_PROBE_RELAY. Each side of the pair gets
 * its own port; attempt is the relay's id, the same in both sides' RELAY.
 */
struct proto_relay {
	uint32_t attempt;
	uint8_t peer_key[KEY_LEN];
	uint8_t flags;
	struct addr relay; /* coordinator address : this node's relay port */
};

/* RELAY_REQUEST: every direct candidate for peer_key failed; relay it if the peer agrees. */
struct proto_relay_request {
	uint8_t peer_key[KEY_LEN];
};

/* Why a node gives a relay back. */
enum proto_relay_close_reason {
	PROTO_RELAY_CLOSE_DIRECT = 0, /* a direct path works now */
	PROTO_RELAY_CLOSE_GONE = 1,   /* the peer left the interface, or relay = no */
};

struct proto_relay_close {
	uint8_t peer_key[KEY_LEN];
	uint8_t reason; /* enum proto_relay_close_reason */
};

struct proto_msg {
	uint8_t type; /* enum proto_msg_type */
	union {
		struct proto_register reg;
		struct proto_register_ack reg_ack;
		struct proto_mapping mapping;
		struct proto_filter_go filter_go;
		struct proto_filter_echo filter_echo;
		struct proto_filter_result filter_result;
		struct proto_punch punch;
		struct proto_punch_ack punch_ack;
		struct proto_addr_check addr_check; /* ADDR_CHECK and ADDR_ECHO */
		struct proto_relay relay;
		struct proto_relay_request relay_request;
		struct proto_relay_close relay_close;
	};
};

int proto_decode_msg(const uint8_t *buf, size_t len, struct proto_msg *out);
ssize_t proto_encode_msg(uint8_t *buf, size_t cap, const struct proto_msg *m);

/* Address encoding used inside messages: family (4|6), 4 or 16 address bytes, port. */
ssize_t proto_encode_addr(uint8_t *buf, size_t cap, const struct addr *a);

#endif

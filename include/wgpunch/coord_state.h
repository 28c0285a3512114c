/* SPDX-License-Identifier: MIT */
/*
 * coord_state - the coordinator's sessions and registry as bytes, so that a restart (an
 * upgrade, a reboot, `systemctl restart`) does not cost a million handshakes: at the X25519
 * bound that is minutes, during which no node can be punched. Pure: no I/O, no clock (ages
 * and times are passed in); src/coord/state.c writes and reads the file.
 *
 * A file is:
 *	header   "wgpunch-state\n\0\0" (16), version (u32), coordinator public key (32),
 *	         written at (u64, Unix ms), record count (u32)       -- COORD_STATE_HEADER_LEN
 *	stream   crypto_secretstream_xchacha20poly1305: its header (24), then one message per
 *	         node record, the last one empty and tagged FINAL
 * all integers little-endian. The stream key is BLAKE2b of a label keyed by the
 * coordinator's private key: the file is readable and writable only with that key (its
 * session keys are secret; a forged file would hand out sessions), a truncated file is
 * refused by the missing FINAL, and another coordinator's file does not open.
 *
 * A node record keeps what the coordinator would need a handshake and a REGISTER to learn
 * again: the key, the session (both indices, the three keys, the send counter, the highest
 * DATA counter accepted), the last accepted handshake timestamp, the addresses (session,
 * mappings; the filter test's as a hash), the filter result, the REGISTER's content (flags, WireGuard port,
 * peers, LAN candidates) and the age. Not kept: a pending filter test or punch (redone on
 * the next change), relays (their ports close with the process).
 *
 * Nonces: the send counter is restored as it was, so a file must be read once only; the
 * reader removes it (state.c). DATA counters at or below the restored highest one are refused
 * (the replay window restarts full).
 */
#ifndef WGPUNCH_COORD_STATE_H
#define WGPUNCH_COORD_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "wgpunch/key.h"
#include "wgpunch/registry.h"

#define COORD_STATE_VERSION 1
#define COORD_STATE_HEADER_LEN (16 + 4 + 32 + 8 + 4)
#define COORD_STATE_KEY_LEN 32
#define COORD_STATE_ADDR_LEN 19 /* family, 16 bytes of IP, port */
/* The fixed part of a node record; then 8 bytes a peer and COORD_STATE_ADDR_LEN a LAN
 * address (and the IPv6 mapping, when there is one). */
#define COORD_STATE_NODE_FIXED                                                                  \
	(KEY_LEN + 4 + 4 + 8 + 8 + 3 * SESSION_KEY_LEN + 2 * 8 + 4 + 3 * COORD_STATE_ADDR_LEN + \
	 4 + 1 + 1 + 1 + 1 + 1 + 2 + 1 + 12 + 2 + 1 + 1)
#define COORD_STATE_NODE_MAX                               \
	(COORD_STATE_NODE_FIXED + (size_t)UINT16_MAX * 8 + \
	 ((size_t)UINT8_MAX + 1) * COORD_STATE_ADDR_LEN)

struct coord_state_header {
	uint32_t version;
	uint8_t pub[KEY_LEN];
	uint64_t written_unix_ms;
	uint32_t n_nodes;
};

void coord_state_header_encode(uint8_t out[COORD_STATE_HEADER_LEN],
			       const struct coord_state_header *h);
/* 0, or -EBADMSG (not a state file) / -EPROTONOSUPPORT (another version). */
int coord_state_header_decode(const uint8_t in[COORD_STATE_HEADER_LEN],
			      struct coord_state_header *h);

/* The stream key from the coordinator's private key. */
void coord_state_key(uint8_t out[COORD_STATE_KEY_LEN], const uint8_t priv[KEY_LEN]);

/* n's record, age_ms since its last refresh, ts its last accepted handshake timestamp (NULL:
 * none). Length, or -ENOSPC. */
ssize_t coord_state_encode_node(const struct reg_node *n, const uint8_t *ts, uint32_t age_ms,
				uint8_t *out, size_t cap);

/* A record decoded, pointing into the buffer it came from. */
struct coord_state_node {
	struct reg_node n; /* the fields a record has; links, lists and peers unset */
	uint32_t age_ms;
	bool has_ts;
	uint8_t ts[12];
	const uint8_t *peers; /* n.n_peers little-endian u64 */
	uint8_t n_lan;
	bool has6;
	const uint8_t *lan; /* n_lan + has6 addresses */
};

/* 0, or -EBADMSG (short, long, or a field out of range). */
int coord_state_decode_node(const uint8_t *in, size_t len, struct coord_state_node *out);

/*
 * Adds the decoded node to r, last seen at now_ms - age_ms (at least 0), with its own session
 * index (none if another entry holds it). 0, or -EEXIST / -ENOSPC / -ENOMEM (nothing added).
 */
int coord_state_apply(struct registry *r, const struct coord_state_node *s, uint64_t now_ms,
		      struct reg_node **out);

#endif

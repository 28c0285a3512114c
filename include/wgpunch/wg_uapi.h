/* SPDX-License-Identifier: MIT */
/*
 * wg_uapi - userspace WireGuard (wireguard-go, boringtun) over the UAPI
 * socket WG_UAPI_DIR/IFACE.sock. Internal to wg.c; exposed for the unit
 * tests and the fuzzer.
 *
 * The protocol is text: a request "get=1\n\n" or "set=1\n" + key=value
 * lines + "\n"; a reply is key=value lines ending with "errno=N\n\n".
 * Keys are hex there (base64 only in wg(8)'s own output).
 */
#ifndef WGPUNCH_WG_UAPI_H
#define WGPUNCH_WG_UAPI_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "wgpunch/wg.h"

/* The longest set text one peer needs (key, update_only, [v6]:port endpoint, keepalive). */
#define WG_UAPI_SET_PEER_MAX 256
/* A reply longer than this is refused (-EMSGSIZE): ~300 bytes a peer, ~200000 peers. */
#define WG_UAPI_REPLY_MAX (64u << 20)

/*
 * Parses the reply to get=1 into dev (zeroed by the caller). Unknown keys are
 * skipped; the public key is derived from private_key, as wg(8) does.
 * Returns 0, the -errno the reply's errno= line reports, -EBADMSG for a
 * malformed line or value or a missing errno= line, or -ENOMEM. On failure
 * dev holds what was parsed so far (free it with wg_device_free).
 */
int wg_uapi_parse_get(const char *text, size_t len, struct wg_device *dev);

/* The errno= line of a set reply: 0, its -errno, or -EBADMSG. */
int wg_uapi_parse_errno(const char *text, size_t len);

/*
 * Formats "set=1\n", per peer public_key=, update_only=true (when
 * update_only), endpoint= then persistent_keepalive_interval= (in that order:
 * WireGuard sends a keepalive at once when keepalive goes from 0 to N, and it
 * must go to the new endpoint), and the closing blank line. Returns the
 * length (no NUL is written), -ENOSPC, or -EINVAL for an endpoint to write
 * that is neither IPv4 nor IPv6.
 */
int wg_uapi_format_set(const struct wg_peer_update *updates, size_t n, bool update_only, char *buf,
		       size_t cap);

/* The length of the first complete reply in buf (through its blank line), or 0 if none yet. */
size_t wg_uapi_reply_len(const char *buf, size_t len);

/* The I/O layer: one connection per request, at most one request at a time. */
struct wg_uapi_io;

/* path is the UAPI socket (wg_uapi_socket_path()); it is connected per request. */
int wg_uapi_io_open(uv_loop_t *loop, const char *path, struct wg_uapi_io **out);
int wg_uapi_io_get(struct wg_uapi_io *io, wg_io_cb cb, void *arg);
/*
 * Writes the updates, all for peers that exist (wg.c checks). boringtun
 * refuses update_only: an EINVAL-like answer makes one more try without it.
 */
int wg_uapi_io_set(struct wg_uapi_io *io, const struct wg_peer_update *updates, size_t n,
		   wg_io_cb cb, void *arg);
/*
 * Abandons the request under way, if any: its connection is closed (a reply
 * that comes later is never read) and its cb never fires. io is idle after.
 */
void wg_uapi_io_abort(struct wg_uapi_io *io);
/* Abandons any request (its cb never fires), frees io, then calls closed(arg). */
void wg_uapi_io_close(struct wg_uapi_io *io, void (*closed)(void *arg), void *arg);

/* WG_UAPI_DIR "/IFACE.sock" into buf; -ENAMETOOLONG when it cannot be a socket path. */
int wg_uapi_socket_path(const char *ifname, char *buf, size_t cap);

#endif

/* SPDX-License-Identifier: MIT */
/*
 * wg_nl - kernel WireGuard over generic netlink (libmnl). Internal to wg.c;
 * exposed for the unit tests and the fuzzer.
 *
 * Building and parsing are pure: wg_nl_build_*() fill a caller's buffer with
 * one netlink message and return its length or -ENOSPC; wg_nl_parse_*() and
 * wg_nl_walk() read replies, never past len, skip attributes they do not
 * know and refuse truncated ones with -EBADMSG. The I/O layer (wg_nl_io_*)
 * drives one non-blocking netlink socket with a uv_poll_t.
 */
#ifndef WGPUNCH_WG_NL_H
#define WGPUNCH_WG_NL_H

#include <linux/netlink.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "wgpunch/wg.h"

/* Requests fit one page, as wireguard-tools sends them; a SET that does not is split. */
#define WG_NL_REQ_SIZE 8192
/* Dump replies: the kernel sizes dump parts to the reader's buffer, up to 32 KiB. */
#define WG_NL_RX_SIZE 32768

/* CTRL_CMD_GETFAMILY for "wireguard" (with NLM_F_ACK). */
int wg_nl_build_get_family(void *buf, size_t cap, uint32_t seq);

/* WG_CMD_GET_DEVICE as a dump (NLM_F_DUMP) for ifname. */
int wg_nl_build_get(void *buf, size_t cap, uint16_t family, uint32_t seq, const char *ifname);

/*
 * WG_CMD_SET_DEVICE (with NLM_F_ACK) for ifname carrying as many of the n
 * updates as fit, each with WGPEER_F_UPDATE_ONLY. *done is how many went in:
 * the caller sends this message and builds the next from updates + *done.
 * -ENOSPC when not even one peer fits, -EINVAL when n is 0 or an endpoint
 * to write is neither IPv4 nor IPv6.
 */
int wg_nl_build_set(void *buf, size_t cap, uint16_t family, uint32_t seq, const char *ifname,
		    const struct wg_peer_update *updates, size_t n, size_t *done);

/* The family id in a CTRL_CMD_NEWFAMILY message. 0 or -EBADMSG (absent, malformed). */
int wg_nl_parse_family(const struct nlmsghdr *nlh, uint16_t *family);

/*
 * Merges one WG_CMD_GET_DEVICE message (one part of a dump) into dev. The
 * kernel puts the device attributes in the first part only and continues the
 * peer list in the next parts; a peer whose allowed IPs did not fit starts
 * the next part again with only its public key and the rest of its allowed
 * IPs, so a first peer equal to the last one seen continues it. 0, -EBADMSG
 * or -ENOMEM; on failure dev holds what was parsed so far.
 */
int wg_nl_parse_device(const struct nlmsghdr *nlh, struct wg_device *dev);

#define WG_NL_MORE 1
/* Called for each ordinary (not NLMSG_*) message answering seq: 0 or -errno. */
typedef int (*wg_nl_msg_fn)(const struct nlmsghdr *nlh, void *data);

/*
 * Walks one datagram of netlink messages. Messages with another sequence
 * number (left over from an abandoned request) are skipped. Returns
 * WG_NL_MORE when the answer goes on in another datagram, 0 when it ended
 * (NLMSG_DONE, or an ACK), or -errno (an NLMSG_ERROR, an error from fn,
 * -EBADMSG for a truncated message). Sets *intr when a dump part carries
 * NLM_F_DUMP_INTR (the peer list changed during the dump: read it again).
 */
int wg_nl_walk(const void *buf, size_t len, uint32_t seq, wg_nl_msg_fn fn, void *data, bool *intr);

/* The I/O layer: at most one request at a time (wg.c queues them). */
struct wg_nl_io;

/* Opens the netlink socket (non-blocking). Family resolution happens on the first request. */
int wg_nl_io_open(uv_loop_t *loop, const char *ifname, struct wg_nl_io **out);
/* Reads the device. 0, then cb fires from the loop; or -errno and cb never fires. */
int wg_nl_io_get(struct wg_nl_io *io, wg_io_cb cb, void *arg);
/* Writes the updates (kept by the caller until cb fires), split over several messages. */
int wg_nl_io_set(struct wg_nl_io *io, const struct wg_peer_update *updates, size_t n, wg_io_cb cb,
		 void *arg);
/*
 * Abandons the request under way, if any (its cb never fires); io is idle
 * after. The socket goes with it and the next request opens a new one, so
 * late replies and the rest of an unfinished dump (which would make the
 * kernel refuse the next dump with EBUSY) are never read; within one socket,
 * wg_nl_walk() skips replies to older sequence numbers as well.
 */
void wg_nl_io_abort(struct wg_nl_io *io);
/* Abandons any request (its cb never fires) and frees io once libuv lets go; then closed(arg). */
void wg_nl_io_close(struct wg_nl_io *io, void (*closed)(void *arg), void *arg);

#endif

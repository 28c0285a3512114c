/* SPDX-License-Identifier: MIT */
/*
 * wg - one interface to a WireGuard device, whatever implements it.
 *
 * Two backends sit behind it: kernel WireGuard through generic netlink
 * (wg_nl.c, libmnl) and userspace implementations (wireguard-go, boringtun)
 * through the cross-platform UAPI socket /var/run/wireguard/IFACE.sock
 * (wg_uapi.c). All I/O is driven by libuv handles on the caller's loop:
 * requests are queued and run one at a time, and their callbacks fire from
 * the loop, never from inside the call that queued them. A request that
 * gets no answer within its deadline fails with -ETIMEDOUT, and the queue
 * goes on.
 *
 * Writes only ever update existing peers (endpoint, persistent keepalive):
 * wgpunch never creates, removes or otherwise changes a peer.
 */
#ifndef WGPUNCH_WG_H
#define WGPUNCH_WG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "wgpunch/addr.h"
#include "wgpunch/config.h"
#include "wgpunch/key.h"

#define WG_UAPI_DIR "/var/run/wireguard"

struct wg_allowed_ip {
	int family; /* AF_INET or AF_INET6 */
	union {
		struct in_addr ip4;
		struct in6_addr ip6;
	};
	uint8_t cidr;
};

struct wg_peer {
	uint8_t public_key[KEY_LEN];
	struct addr endpoint;     /* unset when the peer has none */
	uint16_t keepalive_s;     /* persistent keepalive, 0 = off */
	int64_t last_handshake_s; /* wall clock (Unix seconds); 0 = never */
	int64_t last_handshake_ns;
	uint64_t rx_bytes, tx_bytes;
	struct wg_allowed_ip *allowed_ips;
	size_t n_allowed_ips;
};

struct wg_device {
	char ifname[CONFIG_IFNAMSIZ];
	bool has_private_key;
	uint8_t private_key[KEY_LEN];
	uint8_t public_key[KEY_LEN];
	uint16_t listen_port;
	uint32_t fwmark;
	struct wg_peer *peers;
	size_t n_peers;
};

void wg_device_free(struct wg_device *dev);
/* NULL when absent. */
const struct wg_peer *wg_device_find_peer(const struct wg_device *dev, const uint8_t key[KEY_LEN]);

/* One peer change. Only the fields whose flag is set are written. */
#define WG_UPDATE_ENDPOINT 0x1
#define WG_UPDATE_KEEPALIVE 0x2
struct wg_peer_update {
	uint8_t public_key[KEY_LEN];
	unsigned int flags;
	struct addr endpoint;
	uint16_t keepalive_s;
};

enum wg_backend {
	WG_BACKEND_KERNEL = 1,
	WG_BACKEND_USERSPACE,
};

struct wg;

/*
 * status is 0 or -errno. For get, dev is owned by the callback (free it with
 * wg_device_free) and is NULL on failure. Callbacks never fire after wg_close().
 */
typedef void (*wg_get_cb)(struct wg *wg, int status, struct wg_device *dev, void *arg);
typedef void (*wg_set_cb)(struct wg *wg, int status, void *arg);

/*
 * Opens ifname with the configured backend. CONFIG_BACKEND_AUTO picks the
 * kernel when ifname is a kernel WireGuard link, else the UAPI socket when it
 * exists, else fails with -ENODEV and a message in err naming the interface.
 * Does not block on the loop: it only inspects sysfs and the file system.
 */
int wg_open(uv_loop_t *loop, const char *ifname, enum config_backend backend, struct wg **out,
	    char *err, size_t err_cap);
/*
 * Opens a userspace WireGuard whose UAPI socket is at path rather than
 * WG_UAPI_DIR/IFACE.sock (an implementation started with another socket
 * directory; the unit tests' fake server). Same contract as wg_open().
 */
int wg_open_uapi_path(uv_loop_t *loop, const char *ifname, const char *path, struct wg **out,
		      char *err, size_t err_cap);
enum wg_backend wg_backend_of(const struct wg *wg);

/*
 * The deadline of one request (a get, or a set with its read and writes),
 * from the moment it starts (not while it waits in the queue). When it
 * passes, the backend's I/O for it is abandoned (the UAPI connection is
 * closed; the netlink socket is replaced, so late replies are never read)
 * and its callback fires with -ETIMEDOUT; the next request then starts.
 */
#define WG_REQUEST_TIMEOUT_MS 5000
/* For requests started from now on; 0 restores WG_REQUEST_TIMEOUT_MS. */
void wg_set_timeout_ms(struct wg *wg, unsigned int timeout_ms);
const char *wg_backend_name(enum wg_backend b);

/* Queue a read of the whole device. 0 or -errno (then cb is never called). */
int wg_get_device(struct wg *wg, wg_get_cb cb, void *arg);

/*
 * Queue an update of n peers (update-only: a peer that does not exist is
 * not created). Large sets are split across several messages as needed.
 * 0 or -errno (then cb is never called). The array is copied.
 * The set first reads the device and only writes peers it has: status
 * -ENOENT means at least one peer did not exist (the others were updated).
 * A WG_UPDATE_ENDPOINT without an IPv4 or IPv6 endpoint is -EINVAL.
 */
int wg_set_peers(struct wg *wg, const struct wg_peer_update *updates, size_t n, wg_set_cb cb,
		 void *arg);

/* Cancels queued requests (their callbacks do not fire), closes the handles,
 * and frees wg once libuv is done with them. */
void wg_close(struct wg *wg);

/*
 * For the backends (wg_nl.c, wg_uapi.c), not for users of wg.h. They fill a
 * struct wg_device through these, so wg_device_free() frees what they built.
 */

/* How a backend reports one finished step: dev (owned by the callee) only for a get. */
typedef void (*wg_io_cb)(void *arg, int status, struct wg_device *dev);

/* A new zeroed peer at the end of dev->peers (n_peers grows), or NULL (out of memory). */
struct wg_peer *wg_device_add_peer(struct wg_device *dev);
/* A new zeroed allowed IP at the end of p->allowed_ips, or NULL (out of memory). */
struct wg_allowed_ip *wg_peer_add_allowed_ip(struct wg_peer *p);

#endif

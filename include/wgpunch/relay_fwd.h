/* SPDX-License-Identifier: MIT */
/*
 * relay_fwd - the relay's data plane: one UDP socket per relay port and address family,
 * watched with uv_poll_t, read with recvmmsg() and written with sendmmsg() in batches of
 * RELAY_FWD_BATCH, with every decision made by relay_table (rtab_forward()). docs/relay.md.
 *
 * Why not uv_udp_t: libuv reads one datagram per callback through its allocator and writes
 * one request per datagram; the relay wants a batch per system call and no allocation per
 * packet. All batch buffers (datagrams, iovecs, mmsghdr arrays, control messages) are
 * allocated once in relay_fwd_init(); the per-port state once per relay_fwd_open().
 *
 * The forwarder does not own the table: the relay service allocates a relay in it, then
 * calls relay_fwd_open(); it calls relay_fwd_teardown() to remove one (the pair went direct),
 * and the forwarder's timer tears idle relays down itself and reports them through on_idle.
 * Callbacks never fire after relay_fwd_close() returns.
 */
#ifndef WGPUNCH_RELAY_FWD_H
#define WGPUNCH_RELAY_FWD_H

#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "wgpunch/addr.h"
#include "wgpunch/counters.h"
#include "wgpunch/relay_table.h"

#define RELAY_FWD_BATCH 64
/* Batches read from one socket per readiness event, so one busy relay cannot starve the rest
 * of the loop (epoll is level-triggered: what is left is read on the next turn). */
#define RELAY_FWD_BATCHES_PER_EVENT 8
/*
 * Socket buffers asked for: SO_RCVBUFFORCE first (it needs CAP_NET_ADMIN, which the shipped unit
 * does not grant), then SO_RCVBUF, which net.core.rmem_max caps (docs/relay.md). The kernel
 * doubles the value and charges each queued datagram its whole buffer (~830 bytes for a small
 * one on loopback, measured), so 4 MiB holds ~10k datagrams: 20 ms at 500k pps, a loop stall.
 */
#define RELAY_FWD_SOCKBUF (4 << 20)
#define RELAY_FWD_IDLE_CHECK_MS 1000
/* A GSO run's payload stays under IPv4's and IPv6's 65535-byte packet limit with headers. */
#define RELAY_FWD_GSO_BYTES 65000

#define RELAY_FWD_COUNTERS(X)                                                                    \
	X(rx_datagrams, "datagrams read from relay ports")                                       \
	X(rx_batches, "recvmmsg calls that returned datagrams")                                  \
	X(rx_truncated, "datagrams longer than the receive buffer, dropped")                     \
	X(rx_kernel_drops, "datagrams the kernel dropped on a full relay socket (SO_RXQ_OVFL)")  \
	X(rx_errors, "recvmmsg failures other than EAGAIN and ICMP errors")                      \
	X(icmp_errors, "ICMP errors reported on relay sockets (ECONNREFUSED, unreachable)")      \
	X(tx_datagrams, "datagrams forwarded")                                                   \
	X(tx_batches, "sendmmsg calls")                                                          \
	X(tx_partial, "sendmmsg calls that sent only part of a batch")                           \
	X(tx_gso_messages, "runs of equal-length datagrams sent as one UDP GSO message")         \
	X(tx_gso_fallback, "GSO runs the kernel refused, resent one datagram at a time")         \
	X(tx_eagain, "datagrams dropped because the out socket's buffer was full")               \
	X(tx_errors, "datagrams dropped on a send error (each skipped, never retried)")          \
	X(tx_no_socket, "datagrams whose out port has no socket of the destination's family")    \
	X(rx_control, "datagrams that are not WireGuard messages (offered to the bind handler)") \
	X(dropped, "datagrams the relay table refused (reasons in the relay's counters)")
struct relay_fwd_counters {
	RELAY_FWD_COUNTERS(COUNTER_FIELD)
};
COUNTER_TABLE_DECLARE(relay_fwd_counters);

struct relay_fwd;

/*
 * A datagram at a relay port that is not WireGuard-shaped (rtab_classify()): a candidate
 * relay-bind probe. The callback authenticates it and, if it is one, calls rtab_bind() (and
 * may answer with relay_fwd_send()); it may also tear relays down. buf is valid only during
 * the call. Such datagrams are never forwarded.
 */
typedef void (*relay_fwd_control_cb)(struct relay_fwd *f, uint16_t port, const struct addr *src,
				     const uint8_t *buf, size_t len, void *data);

/* One relay port: a socket per family the coordinator listens on (fd -1 when absent). */
struct relay_fwd_port {
	struct relay_fwd *fwd;
	uint16_t port;
	int closing; /* poll handles whose close callback is pending */
	struct relay_fwd_sock {
		struct relay_fwd_port *owner;
		uv_poll_t poll;
		int fd;
		int family;
		uint32_t rxq_ovfl; /* the kernel's cumulative drop count, last seen */
	} sock[2];
};

struct relay_fwd {
	uv_loop_t *loop;
	struct rtab *table;
	struct addr listen[2]; /* local addresses to bind (port ignored); AF_UNSPEC unused */
	size_t nlisten;
	struct relay_fwd_port **ports; /* by port - port_min; NULL when closed */
	uv_timer_t idle_timer;
	void (*on_idle)(struct relay_fwd *f, uint32_t relay, void *data);
	relay_fwd_control_cb on_control;
	void *data;
	int rcvbuf, sndbuf; /* granted on the last socket opened (getsockopt: twice what was set) */
	bool gso_off;       /* the kernel refused UDP GSO for good: send one datagram each */
	struct relay_fwd_batch *batch; /* allocated once */
	struct relay_fwd_counters counters;
};

/*
 * Prepares a forwarder for table on loop, binding relay sockets to listen[0..n-1] (one IPv4
 * and/or one IPv6 address, e.g. the coordinator's `listen` addresses; their port is ignored,
 * 0.0.0.0 and :: are allowed). on_control gets candidate bind probes (NULL: they are dropped,
 * counted in rx_control). on_idle (may be NULL) learns of relays torn down for idleness, after
 * their sockets are closed and rtab_free() was called. Returns 0, -EINVAL or -ENOMEM.
 */
int relay_fwd_init(struct relay_fwd *f, uv_loop_t *loop, struct rtab *table,
		   const struct addr *listen, size_t n, relay_fwd_control_cb on_control,
		   void (*on_idle)(struct relay_fwd *f, uint32_t relay, void *data), void *data);

/* Opens and watches the sockets of relay id's two ports. 0; -EEXIST when they are open
 * already (nothing changes); or -errno (-EADDRINUSE, ...), in which case nothing of the relay
 * stays open and the caller rtab_free()s it. */
int relay_fwd_open(struct relay_fwd *f, uint32_t id);

/* Closes relay id's sockets and rtab_free()s it. */
void relay_fwd_teardown(struct relay_fwd *f, uint32_t id);

/*
 * Sends one datagram from relay port's socket of dst's family (a bind acknowledgement, from
 * the relay service). 0 or -errno (-ENOENT: port not open, -EAFNOSUPPORT: no such socket).
 */
int relay_fwd_send(struct relay_fwd *f, uint16_t port, const struct addr *dst, const void *buf,
		   size_t len);

/* Closes every socket and the timer; run the loop afterwards to finish the closes. Relays
 * stay in the table (the caller owns it). f may then be freed once the loop has run. */
void relay_fwd_close(struct relay_fwd *f);

#endif

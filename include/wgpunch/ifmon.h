/* SPDX-License-Identifier: MIT */
/*
 * ifmon - rtnetlink: tells the node when local addresses or links change.
 *
 * A NETLINK_ROUTE socket joined to the IPv4 and IPv6 address groups and the
 * link group, non-blocking, read from a uv_poll_t. One change often comes as
 * several messages (an address and its route, a link going down with its
 * addresses), so events are debounced: the callback runs once the messages
 * have been quiet for the debounce time, and at the latest four debounce
 * times after the first one. It carries no detail; the node reads what it
 * needs again (getifaddrs) and compares.
 *
 * Parsing is pure (ifmon_parse_msg, ifmon_parse_datagram) and debouncing is
 * pure (ifmon_debounce_*), so both are tested (and parsing fuzzed) without a
 * socket or a clock.
 */
#ifndef WGPUNCH_IFMON_H
#define WGPUNCH_IFMON_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "wgpunch/addr.h"

#define IFMON_DEBOUNCE_MS 150
#define IFMON_DEBOUNCE_MAX_FACTOR 4 /* a stream of messages delays the callback at most this */

enum ifmon_kind {
	IFMON_NONE = 0, /* a message we do not watch (NLMSG_DONE, a route, ...) */
	IFMON_ADDR_NEW,
	IFMON_ADDR_DEL,
	IFMON_LINK_NEW,
	IFMON_LINK_DEL,
};

struct ifmon_event {
	enum ifmon_kind kind;
	uint32_t ifindex;
	/* Address events: the local address (IFA_LOCAL, else IFA_ADDRESS), port 0. */
	struct addr addr;
	uint8_t prefixlen;
	/* Link events: IFF_* flags and the name (empty when the message had none). */
	uint32_t link_flags;
	char ifname[IF_NAMESIZE];
};

/*
 * Parses one netlink message of len bytes (len may be more than the message: it is the
 * room left in the datagram). Returns the message's aligned length (> 0) with ev filled,
 * kind IFMON_NONE for a message type we do not watch; -EBADMSG when the header, the fixed
 * part or an attribute runs past the message, or a known attribute has the wrong size.
 * Unknown attributes are skipped. No I/O, no allocation.
 */
int ifmon_parse_msg(const void *buf, size_t len, struct ifmon_event *ev);

typedef void (*ifmon_event_fn)(const struct ifmon_event *ev, void *arg);

/*
 * Walks one datagram of len bytes (buf aligned for nlmsghdr, as a receive buffer is):
 * fn for each message whose kind is not IFMON_NONE, *n_msgs the number of messages that
 * parsed. 0, or -EBADMSG at the first message that does not (the rest cannot be framed;
 * fn has seen the ones before it). Never reads past len; at most len / 16 steps.
 */
int ifmon_parse_datagram(const void *buf, size_t len, ifmon_event_fn fn, void *arg, size_t *n_msgs);

/* Debouncing, on a caller's monotonic clock. */
struct ifmon_debounce {
	uint32_t quiet_ms;
	bool pending;
	uint64_t first_ms; /* the first event since the last fire */
	uint64_t due_ms;
};

void ifmon_debounce_init(struct ifmon_debounce *d, uint32_t quiet_ms);
/* An event at now_ms: returns when the callback is due (re-arm the timer for then). */
uint64_t ifmon_debounce_event(struct ifmon_debounce *d, uint64_t now_ms);
/* The timer fired at now_ms: true when the callback is due now (and it is then reset);
 * false when a later event moved the due time (see d->due_ms). */
bool ifmon_debounce_fire(struct ifmon_debounce *d, uint64_t now_ms);

struct ifmon;

/* Called on the loop, debounced; never after ifmon_close(). */
typedef void (*ifmon_cb)(void *arg);

/*
 * Opens the socket and starts watching. 0 or -errno (nothing to clean up then).
 * closed, if not NULL, is called with arg once ifmon_close() has released everything.
 */
int ifmon_open(uv_loop_t *loop, uint32_t debounce_ms, ifmon_cb cb, void (*closed)(void *arg),
	       void *arg, struct ifmon **out);

/* Closes the handles; memory goes in the close callbacks (run the loop). NULL is a no-op. */
void ifmon_close(struct ifmon *m);

/* Messages read, and those refused as malformed (for status and debugging). */
uint64_t ifmon_messages(const struct ifmon *m);
uint64_t ifmon_malformed(const struct ifmon *m);

#endif

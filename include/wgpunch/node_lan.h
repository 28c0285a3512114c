/* SPDX-License-Identifier: MIT */
/*
 * node_lan - this host's own addresses, registered as candidates
 * (docs/rendezvous.md sections 4.1 and 4.6): every address of an interface
 * that is up, except the WireGuard interface's own (they are inside the
 * tunnel), each with the WireGuard listen port. Which addresses qualify is
 * the pure node_lan_classify():
 *   - IPv4: all but loopback and link-local (for peers behind the same NAT);
 *   - IPv6 unique local (fc00::/7): like private IPv4, a LAN candidate;
 *   - IPv6 global (2000::/3): the IPv6 candidates, tried before the public IPv4 mapping;
 *   - nothing else (loopback, link-local fe80::/10, IPv4-mapped, multicast, the rest).
 * IPv6 addresses that are temporary (RFC 8981 privacy addresses), deprecated, tentative or
 * failed duplicate detection are left out. getifaddrs() does not show those IFA_F_* flags, so
 * they come from /proc/net/if_inet6 (per network namespace); when it cannot be read the flags
 * count as 0. A temporary address is not registered because it changes (daily by default),
 * and registering it would publish it; the address the host really sends from, temporary or
 * not, reaches the peers anyway as the coordinator's IPv6 mapping (PROTOCOL.md section 2.4),
 * which they try first.
 */
#ifndef WGPUNCH_NODE_LAN_H
#define WGPUNCH_NODE_LAN_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wgpunch/addr.h"
#include "wgpunch/proto.h"
#include "wgpunch/wg.h"

/* The IFA_F_* bits (linux/if_addr.h) that keep an IPv6 address out. */
#define NODE_LAN_F_TEMPORARY 0x01
#define NODE_LAN_F_DADFAILED 0x08
#define NODE_LAN_F_DEPRECATED 0x20
#define NODE_LAN_F_TENTATIVE 0x40
#define NODE_LAN_F_SKIP \
	(NODE_LAN_F_TEMPORARY | NODE_LAN_F_DADFAILED | NODE_LAN_F_DEPRECATED | NODE_LAN_F_TENTATIVE)
/* IPv4 addresses take at most PROTO_MAX_LAN - NODE_LAN_V6_ROOM places when IPv6 ones wait. */
#define NODE_LAN_V6_ROOM 4

enum node_lan_class {
	NODE_LAN_SKIP = 0,
	NODE_LAN_V4,      /* a LAN IPv4 address */
	NODE_LAN_ULA,     /* a unique local IPv6 address: LAN-like */
	NODE_LAN_GLOBAL6, /* a global IPv6 address */
};

/* Pure: what a's address is for. flags6: its IFA_F_* flags (IPv6 only; 0 when unknown). */
enum node_lan_class node_lan_classify(const struct addr *a, uint32_t flags6);

/* One address of the host, as getifaddrs() and /proc/net/if_inet6 show it. */
struct node_lan_entry {
	const char *ifname;
	bool up;          /* IFF_UP */
	struct addr addr; /* port ignored */
	uint32_t flags6;  /* IFA_F_* for IPv6 */
};

/*
 * Pure: the candidates among e[0..n): the classify()'d ones, not on wg_ifname, each with port,
 * without duplicates, IPv4 first, then unique local, then global IPv6, PROTO_MAX_LAN at most
 * with NODE_LAN_V6_ROOM kept for IPv6 when there is any. Returns how many are in out.
 */
uint8_t node_lan_pick(const struct node_lan_entry *e, size_t n, const char *wg_ifname,
		      uint16_t port, struct addr out[PROTO_MAX_LAN]);

/*
 * Pure: one line of /proc/net/if_inet6 ("<32 hex> <idx> <plen> <scope> <flags> <name>").
 * 0, or -EINVAL for a line that does not parse.
 */
int node_lan_parse_inet6(const char *line, struct in6_addr *a, uint32_t *flags,
			 char ifname[IF_NAMESIZE]);

struct node_lan {
	struct addr addr[PROTO_MAX_LAN];
	uint8_t n;
	bool known; /* read once already, with the device known */
};

/*
 * Reads the addresses again (getifaddrs). wg_ifname is left out; dev is the last read of the
 * device, for the port (NULL: port 0). True when the set changed, which is logged once dev is
 * known. A failed read changes nothing.
 */
bool node_lan_refresh(struct node_lan *nl, const char *wg_ifname, const struct wg_device *dev);

#endif

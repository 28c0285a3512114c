/* SPDX-License-Identifier: MIT */
/*
 * node_lan - this host's IPv4 addresses for peers behind the same NAT
 * (docs/rendezvous.md section 4.1): every address of an interface that is up,
 * except the WireGuard interface's own (they are inside the tunnel),
 * loopback and link-local, each with the WireGuard listen port.
 */
#ifndef WGPUNCH_NODE_LAN_H
#define WGPUNCH_NODE_LAN_H

#include <stdbool.h>
#include <stdint.h>

#include "wgpunch/addr.h"
#include "wgpunch/proto.h"
#include "wgpunch/wg.h"

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

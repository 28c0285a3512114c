/* SPDX-License-Identifier: MIT */
/*
 * prober - send UDP datagrams whose source port is the WireGuard listen port,
 * over IPv4 and IPv6.
 *
 * The NAT mapping that matters is the one of the WireGuard socket, which
 * WireGuard owns; a raw socket can send from that port without binding it.
 * The raw socket only sends: a drop-all socket filter keeps the kernel from
 * queueing the copies of inbound UDP that a raw socket would otherwise get.
 * Packets carry the device's fwmark (SO_MARK), so a wg-quick setup whose
 * default route goes through the tunnel still sends them outside it.
 *
 * IPv6 has its own raw socket: there the kernel fills the UDP checksum itself
 * (IPV6_CHECKSUM at offset 6, RFC 3542 section 3.1), after it picked the source
 * address, so no route lookup is needed. A host without IPv6 just has no fd6.
 */
#ifndef WGPUNCH_PROBER_H
#define WGPUNCH_PROBER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "wgpunch/addr.h"

/* The source address the kernel picks for a destination (found by a
 * connect()ed UDP socket), cached so probes do not cost an extra socket each. */
#define PROBER_SRC_CACHE 8
#define PROBER_SRC_CACHE_MS 30000
struct prober_src {
	uint32_t dst; /* network order; 0 = empty slot */
	uint32_t src;
	uint64_t at_ms; /* monotonic */
};

struct prober {
	int fd4; /* raw IPv4 socket, -1 when closed */
	int fd6; /* raw IPv6 socket, -1 when closed or when the host has no IPv6 */
	uint16_t src_port;
	uint32_t fwmark;
	uint64_t sent, send_errors;
	struct prober_src src_cache[PROBER_SRC_CACHE];
	unsigned int src_next; /* slot to replace next */
};

/* Opens the raw sockets (needs CAP_NET_RAW). 0 or -errno of the IPv4 one; the IPv6 one is
 * optional (a kernel without IPv6 leaves fd6 at -1, and IPv6 sends return -EAFNOSUPPORT). */
int prober_open(struct prober *p, uint16_t src_port, uint32_t fwmark);
/* Port or fwmark changed on the device (e.g. after `wg set ... listen-port`). */
int prober_update(struct prober *p, uint16_t src_port, uint32_t fwmark);
void prober_close(struct prober *p);

/* Sends payload to dst (IPv4 or IPv6) from src_port. 0 or -errno (-EAFNOSUPPORT for IPv6
 * when fd6 could not be opened). */
int prober_send(struct prober *p, const struct addr *dst, const uint8_t *payload, size_t len);

/*
 * Pure: writes a UDP header plus payload for src -> dst. IPv4: checksum included (pseudo-header).
 * IPv6: checksum field 0, for the kernel to fill (IPV6_CHECKSUM); src's address is not used
 * then, only its port. Returns the length, -ENOSPC, -EMSGSIZE or -EAFNOSUPPORT (mixed families).
 */
ssize_t prober_build_udp(uint8_t *out, size_t cap, const struct addr *src, const struct addr *dst,
			 const uint8_t *payload, size_t len);

#endif

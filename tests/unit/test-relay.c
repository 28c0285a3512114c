// SPDX-License-Identifier: MIT
/*
 * relay: the decision to relay a pair at once (docs/rendezvous.md section 5), on directory
 * entries as the coordinator holds them. The service itself (allocation, the bind handler)
 * runs end to end in tests/netns/test-relay.sh and test-relay-request.sh.
 */
#include "wgpunch/relay.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "../tap.h"
#include "wgpunch/proto.h"

static struct reg_addr ra(const char *ip, uint16_t port)
{
	struct reg_addr a;

	memset(&a, 0, sizeof(a));
	inet_pton(AF_INET, ip, a.ip);
	a.port = port;
	a.family = 4;
	return a;
}

/* A node whose WireGuard port maps to m0 toward P and m1 toward P + 1 (family 0: unknown). */
static void node(struct reg_node *n, const char *m0, uint16_t p0, const char *m1, uint16_t p1,
		 uint8_t filter)
{
	memset(n, 0, sizeof(*n));
	n->mapping[0] = ra(m0, p0);
	if (m1)
		n->mapping[1] = ra(m1, p1);
	n->filter = filter;
}

static void test_relay_no_direct(void)
{
	struct reg_node sym, sym2, cone, pub, open;
	struct reg_lan *lan = malloc(sizeof(*lan) + sizeof(struct reg_addr));

	CHECK(lan != NULL);
	if (!lan)
		return;
	node(&sym, "198.51.100.10", 4000, "198.51.100.10", 4001, PROTO_FILTER_UNKNOWN);
	node(&sym2, "198.51.100.11", 5000, "198.51.100.11", 6000, PROTO_FILTER_UNKNOWN);
	node(&cone, "198.51.100.12", 51820, "198.51.100.12", 51820, PROTO_FILTER_SAFE);
	node(&pub, "198.51.100.13", 51820, "198.51.100.13", 51820, PROTO_FILTER_SAFE);
	lan->n = 1;
	lan->addr[0] = ra("198.51.100.13", 51820);
	pub.lan = lan;
	node(&open, "198.51.100.14", 51820, "198.51.100.14", 51820, PROTO_FILTER_POISONABLE);

	/* Symmetric to symmetric, and symmetric to a filtering cone: never direct. */
	CHECK(relay_no_direct(&sym, &sym2));
	CHECK(relay_no_direct(&sym, &cone));
	CHECK(relay_no_direct(&cone, &sym)); /* order-independent */
	/* The other side takes unsolicited packets: a direct path is not ruled out. */
	CHECK(!relay_no_direct(&sym, &pub));
	/* An open router keeps the symmetric side's packet for itself: relay at once. */
	CHECK(relay_no_direct(&open, &sym));
	CHECK(relay_no_direct(&sym, &open));
	/* Neither maps per destination: punch. */
	CHECK(!relay_no_direct(&cone, &pub));
	CHECK(!relay_no_direct(&cone, &cone));
	/* Two poisonable routers: each side's first packet poisons the other's conntrack. */
	node(&sym2, "198.51.100.11", 51820, "198.51.100.11", 51820, PROTO_FILTER_POISONABLE);
	CHECK(relay_no_direct(&open, &sym2));
	CHECK(!relay_no_direct(&open, &cone));
	CHECK(!relay_no_direct(&open, &pub));
	/* Behind one NAT (the same public IP), of any kind: the LAN is tried first, no relay. */
	node(&sym2, "198.51.100.10", 5000, "198.51.100.10", 6000, PROTO_FILTER_UNKNOWN);
	CHECK(!relay_no_direct(&sym, &sym2));
	node(&sym2, "198.51.100.14", 51821, "198.51.100.14", 51821, PROTO_FILTER_POISONABLE);
	CHECK(!relay_no_direct(&open, &sym2));
	/* A mapping toward P + 1 not known yet says nothing about the type. */
	node(&sym2, "198.51.100.11", 5000, NULL, 0, PROTO_FILTER_UNKNOWN);
	CHECK(!relay_no_direct(&sym2, &cone));
	free(lan);
}

static void test_relay_node_allows(void)
{
	struct reg_node n;

	memset(&n, 0, sizeof(n));
	CHECK(relay_node_allows(&n));
	n.reg_flags = PROTO_REG_F_RESYNC;
	CHECK(relay_node_allows(&n));
	n.reg_flags |= PROTO_REG_F_NO_RELAY;
	CHECK(!relay_node_allows(&n));
}

int main(void)
{
	TAP_RUN(test_relay_no_direct);
	TAP_RUN(test_relay_node_allows);
	return tap_done();
}

/* SPDX-License-Identifier: MIT */
/*
 * coord_filter - the filter test (rendezvous.md section 3): POISON from
 * P + 1 to the node's session address, then FILTER_GO; where the node's echo
 * to P + 1 comes from tells whether its router kept the POISON. Pending tests
 * share one timeout and one timer; one that times out ends as UNKNOWN, and so
 * does one whose node's mapping is endpoint-dependent. The result goes to the
 * node (FILTER_RESULT) and may make it ready to punch.
 */
#ifndef WGPUNCH_COORD_FILTER_H
#define WGPUNCH_COORD_FILTER_H

#include <stdint.h>

struct addr;
struct coord;
struct coord_sock;
struct reg_addr;
struct reg_node;

/* The session address is where replies go; a new one (also after NAT rebinding) is tested. */
void coord_filter_set_session_addr(struct coord *c, struct reg_node *n, const struct coord_sock *s,
				   const struct addr *from);

/* FILTER_ECHO {nonce} from n, received on P + 1 from `from`. */
void coord_filter_on_echo(struct coord *c, struct reg_node *n, const struct addr *from,
			  uint64_t nonce);

/*
 * The filter result for an echo from src (pure): SAFE when src is the address the test ran
 * for; otherwise POISONABLE, or UNKNOWN when n's two probe mappings are both known and differ
 * (endpoint-dependent mapping moves the echo to a new port whether or not the router kept the
 * POISON, so the test cannot tell).
 */
uint8_t coord_filter_judge(const struct reg_node *n, const struct reg_addr *src);

/* n is leaving the registry: its pending test, if any, is dropped. */
void coord_filter_cancel(struct coord *c, struct reg_node *n);

#endif

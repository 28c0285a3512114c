/* SPDX-License-Identifier: MIT */
/*
 * coord_filter - the filter test (rendezvous.md section 3): POISON from
 * P + 1 to the node's session address, then FILTER_GO; where the node's echo
 * to P + 1 comes from tells whether its router kept the POISON. Pending tests
 * share one timeout and one timer; one that times out ends as UNKNOWN. The
 * result goes to the node (FILTER_RESULT) and may make it ready to punch.
 */
#ifndef WGPUNCH_COORD_FILTER_H
#define WGPUNCH_COORD_FILTER_H

#include <stdint.h>

struct addr;
struct coord;
struct coord_sock;
struct reg_node;

/* The session address is where replies go; a new one (also after NAT rebinding) is tested. */
void coord_filter_set_session_addr(struct coord *c, struct reg_node *n, const struct coord_sock *s,
				   const struct addr *from);

/* FILTER_ECHO {nonce} from n, received on P + 1 from `from`. */
void coord_filter_on_echo(struct coord *c, struct reg_node *n, const struct addr *from,
			  uint64_t nonce);

/* n is leaving the registry: its pending test, if any, is dropped. */
void coord_filter_cancel(struct coord *c, struct reg_node *n);

#endif

/* SPDX-License-Identifier: MIT */
/*
 * filter - the coordinator's filter test (rendezvous.md section 3): POISON
 * from P + 1 to the node's session address, then FILTER_GO; where the node's
 * echo to P + 1 comes from tells whether its router kept the POISON. Pending
 * tests share one timeout and one timer; one that times out ends as UNKNOWN,
 * and so does one whose node's mapping is endpoint-dependent. The result goes
 * to the node (FILTER_RESULT) and may make it ready to punch.
 *
 * It owns the FIFO of pending tests (the filter fields of struct reg_node and
 * their links) and its timer. It calls the punch service (a result may make a
 * node ready) and the directory (readiness); neither calls it. Counters:
 * filter_counters_table.
 */
#ifndef WGPUNCH_FILTER_H
#define WGPUNCH_FILTER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "wgpunch/coord_handles.h"
#include "wgpunch/counters.h"

#define FILTER_TIMEOUT_MS 2000

#define FILTER_COUNTERS(X)                                                      \
	X(echo_unexpected, "FILTER_ECHO with no test pending, or wrong nonce")  \
	X(filter_tests, "filter tests started")                                 \
	X(filter_timeouts, "filter tests that ended without an echo (UNKNOWN)") \
	X(filter_rejudged, "POISONABLE results made UNKNOWN by a later probe mapping")

struct filter_counters {
	FILTER_COUNTERS(COUNTER_FIELD)
};
COUNTER_TABLE_DECLARE(filter_counters);

struct punch;
struct relay;
struct reg_addr;
struct reg_node;
struct transport;

struct filter {
	uv_loop_t *loop;
	struct transport *t;
	struct punch *punch;
	struct relay *relay;       /* a result may show that no direct path can work */
	struct coord_handle timer; /* timer.uv.timer: the head's deadline */
	/* Pending tests, oldest first: all share one timeout, so the head expires next. */
	struct filter_test *head, *tail;
	uint32_t n_pending;
	struct filter_counters ctr;
};

/* Adds the timer to handles and routes FILTER_ECHO (P + 1) to itself. */
void filter_init(struct filter *f, uv_loop_t *loop, struct coord_handles *handles,
		 struct transport *t, struct punch *punch, struct relay *relay);

/* n's session address is new (a handshake, or NAT rebinding): tested unless this very
 * address was tested already. */
void filter_on_session_addr(struct filter *f, struct reg_node *n);

/*
 * The filter result for an echo from src (pure): SAFE when src is tested, the address the
 * test ran for; otherwise POISONABLE, or UNKNOWN when n's two probe mappings are both known and differ
 * (endpoint-dependent mapping moves the echo to a new port whether or not the router kept the
 * POISON, so the test cannot tell).
 */
uint8_t filter_judge(const struct reg_node *n, const struct reg_addr *tested,
		     const struct reg_addr *src);

/*
 * n's probe mappings changed. An echo that arrived before both were known was judged by itself
 * (POISONABLE); when they now show endpoint-dependent mapping, the result becomes UNKNOWN, as
 * filter_judge() would have said, and the node is told again. Call before the relay and punch
 * decisions that read n->filter.
 */
void filter_on_mappings(struct filter *f, struct reg_node *n);

/* n is leaving the registry: its pending test, if any, is dropped. */
void filter_cancel(struct filter *f, struct reg_node *n);

#endif

/* SPDX-License-Identifier: MIT */
/*
 * dir - the coordinator's directory: the registry of nodes and what they
 * told it (rendezvous.md sections 2 and 4.1-4.3): REGISTER (peers, LAN
 * candidates, WireGuard port), the mapping each port's PROBE shows, consent,
 * readiness, expiry, and who stays authorised across a reload.
 *
 * It owns the registry (struct registry: its entries and their lifetime) and
 * the sweep timer. Inside an entry it writes the directory's fields (peers,
 * lan, wg_port, reg_flags, registered, mapping); the session fields are the
 * transport's and the filter fields the filter test's.
 *
 * dir calls no service. What others must hear goes through hooks its owner
 * sets: `changed` after something readiness depends on changed (the punch
 * service listens), `forget` before an entry is freed (the filter test drops
 * its pending test). Counters: dir_counters_table.
 */
#ifndef WGPUNCH_DIR_H
#define WGPUNCH_DIR_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "wgpunch/config.h"
#include "wgpunch/coord_handles.h"
#include "wgpunch/counters.h"
#include "wgpunch/registry.h"

#define DIR_REFRESH_S 20                         /* REGISTER_ACK refresh_s */
#define DIR_EXPIRE_MS (3 * DIR_REFRESH_S * 1000) /* not refreshed for 3 x refresh_s */
#define DIR_SWEEP_MS 1000
#define DIR_SWEEP_MAX 4096 /* expiries per sweep: bounded work per tick */
/* Peers kept from a paged REGISTER (the union of its pages): 8 KiB of fingerprints at most,
 * against the 512 bytes a node budget of a node with 8. */
#define DIR_MAX_PEERS 1024

#define DIR_COUNTERS(X)                                                       \
	X(probe_accepted, "PROBEs that authenticated: answered with MAPPING") \
	X(probe6_accepted, "of those, over IPv6 beside an IPv4 session")      \
	X(probe_other_family, "IPv4 PROBEs beside an IPv6 session: ignored")  \
	X(register_accepted, "REGISTERs stored and acknowledged")             \
	X(register_failed, "REGISTERs not stored: out of memory (no ack)")    \
	X(nodes_expired, "nodes dropped: no refresh for 3 x refresh_s")       \
	X(nodes_dropped, "nodes dropped: no longer authorised after a reload")

struct dir_counters {
	DIR_COUNTERS(COUNTER_FIELD)
};
COUNTER_TABLE_DECLARE(dir_counters);

struct transport;

struct dir_hooks {
	/* After a change readiness may depend on. was_ready: dir_ready(n) before it; changed:
	 * what section 4.4 counts as a change (mapping[0], REGISTER content, RESYNC). */
	void (*changed)(void *arg, struct reg_node *n, bool was_ready, bool changed);
	/* n is about to leave the registry. */
	void (*forget)(void *arg, struct reg_node *n);
	void *arg;
};

struct dir {
	uv_loop_t *loop;
	const struct config *conf;
	struct transport *t;
	struct registry reg;
	struct coord_handle sweep; /* sweep.uv.timer */
	struct dir_hooks hooks;
	struct dir_counters ctr;
};

/* Adds the sweep timer to handles first, then sizes the registry for conf's max_nodes and
 * routes REGISTER and PROBE to itself. 0 or -ENOMEM. The timer starts in dir_start(). */
int dir_init(struct dir *d, uv_loop_t *loop, struct coord_handles *handles,
	     const struct config *conf, struct transport *t, const struct dir_hooks *hooks);
void dir_start(struct dir *d);
/* Frees the registry; only after handles closed the timer. */
void dir_destroy(struct dir *d);

/* A new config: the bound follows max_nodes, nodes no longer authorised are dropped. 0, or
 * -ENOMEM with nothing changed. */
int dir_reload(struct dir *d, const struct config *conf);

/* Section 4.2: in session, registered, mapping[0] known and the filter test over. */
bool dir_ready(const struct reg_node *n);
/* Section 4.3: both list each other. */
bool dir_consent(const struct reg_node *a, const struct reg_node *b);

struct reg_node *dir_find(const struct dir *d, const uint8_t key[KEY_LEN]);
/* The entries whose fingerprint is fp: NULL for the first, then the previous one. */
struct reg_node *dir_find_fp(const struct dir *d, uint64_t fp, const struct reg_node *prev);
/* As registry_add(), last seen now. */
int dir_add(struct dir *d, const uint8_t key[KEY_LEN], struct reg_node **out);
/* A fresh session index for n (registry_assign_index()). */
int dir_new_index(struct dir *d, struct reg_node *n);
/* n was heard from now. */
void dir_touch(struct dir *d, struct reg_node *n);
/* Tells the forget hook, then frees n. */
void dir_forget(struct dir *d, struct reg_node *n);
/* The entry whose session index is idx, or NULL (the transport's sessions.find). */
struct reg_node *dir_find_index(const struct dir *d, uint32_t idx);

static inline const struct registry *dir_registry(const struct dir *d)
{
	return &d->reg;
}

#endif

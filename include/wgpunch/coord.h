/* SPDX-License-Identifier: MIT */
/*
 * coord - the coordinator role: Noise responder, registry of nodes, probe
 * receiver on every listen port and port + 1, and the "punch now" pusher.
 * This is the role's whole contract for ctx; the layers it is made of
 * (transport.h, then hs.h, dir.h, filter.h, punch.h) are listed in coord.c
 * and described in docs/architecture.md.
 */
#ifndef WGPUNCH_COORD_H
#define WGPUNCH_COORD_H

#include <cJSON.h>
#include <uv.h>

#include "wgpunch/config.h"

struct coord;

/* Binds every socket; on failure logs the cause and returns -errno. conf
 * must stay valid until coord_stop() or the next coord_reload(). */
int coord_start(uv_loop_t *loop, const struct config *conf, struct coord **out);

/* Applies a new config in place, keeping the registry: authorized_keys
 * (nodes no longer authorised are dropped), relay settings, limits.
 * Returns -EAGAIN when listen addresses or the key changed (restart needed). */
int coord_reload(struct coord *c, const struct config *conf);

/* Closes every handle (one list: coord_handles.h); c is freed from the loop once the last
 * close callback ran, so the caller runs the loop until it drains. NULL is ignored. */
void coord_stop(struct coord *c);

cJSON *coord_status(struct coord *c);

#endif

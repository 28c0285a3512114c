// SPDX-License-Identifier: MIT
/*
 * coord - the coordinator role (docs/rendezvous.md, coordinator side), wired
 * from its layers (docs/architecture.md, "Coordinator"):
 *
 *   transport.c  every socket; session framing; dispatch by message type
 *   hs.c         handshake flood protection and the Noise responder
 *   dir.c        the registry: REGISTER, mappings, consent, readiness, expiry
 *   filter.c     the filter test (section 3)
 *   punch.c      the ordered punch (section 4), on coord_pair's decisions
 *   coord_handles.c  the one list of libuv handles
 *
 * Services register their message types with the transport and send through
 * it. No service calls one above it: where a lower one must tell a higher one
 * (the directory's changes, the transport's NAT rebinding), this file wires a
 * hook. One libuv loop, no threads. Everything a peer sends is checked before
 * it changes state; whatever fails a check is dropped, counted by reason and
 * logged at debug level only.
 */
#include "wgpunch/coord.h"

#include <errno.h>
#include <stdlib.h>

#include <sodium.h>

#include "wgpunch/addr.h"
#include "wgpunch/coord_handles.h"
#include "wgpunch/dir.h"
#include "wgpunch/filter.h"
#include "wgpunch/hs.h"
#include "wgpunch/key.h"
#include "wgpunch/log.h"
#include "wgpunch/punch.h"
#include "wgpunch/status.h"
#include "wgpunch/transport.h"

/* Bottom to top; each service gets only what is below it. A relay service (issue 8) goes
 * beside punch: it needs dir (consent) and the transport (its own sockets, by role). */
struct coord {
	uv_loop_t *loop;
	const struct config *conf;
	struct coord_handles handles;
	struct transport transport;
	struct dir dir;
	struct punch punch;
	struct filter filter;
	struct hs hs;
};

/* ---- hooks: a lower layer's news for a higher one ---- */

static struct reg_node *coord_session_find(void *arg, uint32_t idx)
{
	struct coord *c = arg;

	return dir_find_index(&c->dir, idx);
}

static void coord_session_seen(void *arg, struct reg_node *n)
{
	struct coord *c = arg;

	dir_touch(&c->dir, n);
}

static void coord_session_moved(void *arg, struct reg_node *n)
{
	struct coord *c = arg;

	filter_on_session_addr(&c->filter, n);
}

static void coord_dir_changed(void *arg, struct reg_node *n, bool was_ready, bool changed)
{
	struct coord *c = arg;

	punch_after_change(&c->punch, n, was_ready, changed);
}

static void coord_dir_forget(void *arg, struct reg_node *n)
{
	struct coord *c = arg;

	filter_cancel(&c->filter, n);
}

/* ---- lifetime ---- */

/* The last handle closed: nothing on the loop points into c any more. */
static void coord_on_closed(void *arg)
{
	struct coord *c = arg;

	hs_destroy(&c->hs);
	punch_destroy(&c->punch);
	dir_destroy(&c->dir);
	transport_destroy(&c->transport);
	free(c);
}

void coord_stop(struct coord *c)
{
	if (c)
		coord_handles_close_all(&c->handles);
}

int coord_start(uv_loop_t *loop, const struct config *conf, struct coord **out)
{
	const struct config_coordinator_role *cr = &conf->coord;
	const struct transport_sessions sessions = {
		.find = coord_session_find,
		.seen = coord_session_seen,
		.moved = coord_session_moved,
	};
	const struct dir_hooks hooks = {
		.changed = coord_dir_changed,
		.forget = coord_dir_forget,
	};
	struct transport_sessions s = sessions;
	struct dir_hooks h = hooks;
	struct coord *c;
	char k[KEY_SHORT_LEN];
	int r;

	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return log_err_errno(-ENOMEM, "cannot start the coordinator");
	c->loop = loop;
	c->conf = conf;
	coord_handles_init(&c->handles, coord_on_closed, c);
	s.arg = h.arg = c;

	/* Each layer puts its handles in the list before its first fallible step, so on any
	 * failure coord_stop() closes what exists and the last close callback frees c. */
	r = transport_init(&c->transport, loop, &c->handles, cr, &s);
	if (r < 0)
		goto fail;
	r = dir_init(&c->dir, loop, &c->handles, conf, &c->transport, &h);
	if (r == 0)
		r = punch_init(&c->punch, loop, &c->handles, &c->transport, &c->dir);
	if (r < 0) {
		log_err_errno(r, "cannot start the coordinator");
		goto fail;
	}
	filter_init(&c->filter, loop, &c->handles, &c->transport, &c->punch);
	r = hs_init(&c->hs, loop, conf, &c->transport, &c->dir, &c->filter);
	if (r < 0)
		goto fail;

	r = transport_bind(&c->transport);
	if (r < 0)
		goto fail;
	dir_start(&c->dir);

	for (size_t i = 0; i < cr->n_listen; i++) {
		char a[ADDR_STRLEN];

		log_info("coordinator %s listening on %s and port %u", key_short(cr->public_key, k),
			 addr_format(&cr->listen[i], a), addr_port(&cr->listen[i]) + 1u);
	}
	*out = c;
	return 0;
fail:
	coord_stop(c);
	return r;
}

int coord_reload(struct coord *c, const struct config *conf)
{
	int r;

	/* First whether it can apply at all: every handle (the sockets: the same listen
	 * addresses) and the key; nothing has changed when this refuses. */
	if (sodium_memcmp(c->conf->coord.private_key, conf->coord.private_key, KEY_LEN) != 0)
		return -EAGAIN;
	r = coord_handles_reload_check(&c->handles, conf);
	if (r < 0)
		return r;
	r = dir_reload(&c->dir, conf);
	if (r < 0)
		return r;
	hs_reload(&c->hs, conf);
	c->conf = conf;
	return 0;
}

cJSON *coord_status(struct coord *c)
{
	const struct config_coordinator_role *cr = &c->conf->coord;
	const struct registry *reg = dir_registry(&c->dir);
	cJSON *st = cJSON_CreateObject(), *listen, *ctr;
	char b64[KEY_B64_LEN + 1];

	if (!st)
		return NULL;
	key_to_base64(b64, cr->public_key);
	cJSON_AddStringToObject(st, "role", "coordinator");
	cJSON_AddStringToObject(st, "public_key", b64);
	listen = cJSON_AddArrayToObject(st, "listen");
	for (size_t i = 0; listen && i < cr->n_listen; i++) {
		cJSON *l = cJSON_CreateObject();
		char a[ADDR_STRLEN];
		struct addr p1 = cr->listen[i];

		if (!l)
			break;
		cJSON_AddStringToObject(l, "address", addr_format(&cr->listen[i], a));
		addr_set_port(&p1, addr_port(&p1) + 1);
		cJSON_AddStringToObject(l, "probe_address", addr_format(&p1, a));
		cJSON_AddItemToArray(listen, l);
	}
	cJSON_AddNumberToObject(st, "nodes", reg->n_nodes);
	cJSON_AddNumberToObject(st, "max_nodes", reg->max_nodes);
	cJSON_AddNumberToObject(st, "sessions", reg->n_sessions);
	cJSON_AddNumberToObject(st, "pending_punches", c->punch.pending.n);
	cJSON_AddNumberToObject(st, "handshake_cost_ns", (double)c->hs.hs_cost_ns);
	cJSON_AddNumberToObject(st, "handshake_budget_per_s", c->hs.budget.p.all.rate_per_s);
	cJSON_AddNumberToObject(st, "handshake_under_load",
				hs_budget_under_load(&c->hs.budget, uv_now(c->loop)));
	cJSON_AddNumberToObject(st, "pending_filter_tests", c->filter.n_pending);
	/* One flat object, as before the split: the names are unique across the tables. */
	ctr = cJSON_AddObjectToObject(st, "counters");
	if (ctr && status_add_counters(ctr, &transport_counters_table, &c->transport.ctr) &&
	    status_add_counters(ctr, &hs_counters_table, &c->hs.ctr) &&
	    status_add_counters(ctr, &hs_budget_counters_table, &c->hs.budget.ctr) &&
	    status_add_counters(ctr, &dir_counters_table, &c->dir.ctr) &&
	    status_add_counters(ctr, &filter_counters_table, &c->filter.ctr))
		status_add_counters(ctr, &punch_counters_table, &c->punch.ctr);
	return st;
}

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
#include <string.h>

#include <sodium.h>

#include "wgpunch/addr.h"
#include "wgpunch/coord_handles.h"
#include "wgpunch/dir.h"
#include "wgpunch/filter.h"
#include "wgpunch/hs.h"
#include "wgpunch/key.h"
#include "wgpunch/log.h"
#include "wgpunch/metrics.h"
#include "wgpunch/punch.h"
#include "wgpunch/relay.h"
#include "wgpunch/state.h"
#include "wgpunch/status.h"
#include "wgpunch/transport.h"

/* Bottom to top; each service gets only what is below it. The relay service is beside
 * punch: it needs dir (consent) and the transport (RELAY out); its sockets are its own. */
struct coord {
	uv_loop_t *loop;
	const struct config *conf;
	struct coord_handles handles;
	struct transport transport;
	struct dir dir;
	struct punch punch;
	struct relay relay;
	struct filter filter;
	struct hs hs;
	struct metrics_file *metrics; /* not in handles: it closes itself and never calls back */
	bool started; /* coord_start() succeeded: coord_stop() writes the state file */
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

	filter_on_mappings(&c->filter, n);
	/* RELAY before PUNCH: a node that has its relay acks the PUNCH only, so WireGuard's
	 * first initiation (the next comes 5 s later) goes to the relay, not to a direct
	 * candidate that cannot work. */
	relay_after_change(&c->relay, n, was_ready, changed);
	punch_after_change(&c->punch, n, was_ready, changed);
}

static void coord_dir_forget(void *arg, struct reg_node *n)
{
	struct coord *c = arg;

	filter_cancel(&c->filter, n);
	relay_forget(&c->relay, n);
}

/* ---- lifetime ---- */

/* The last handle closed: nothing on the loop points into c any more. */
static void coord_on_closed(void *arg)
{
	struct coord *c = arg;

	relay_destroy(&c->relay);
	hs_destroy(&c->hs);
	punch_destroy(&c->punch);
	dir_destroy(&c->dir);
	transport_destroy(&c->transport);
	free(c);
}

/* Every counter table of the coordinator, with its struct: the one list that the status
 * document and the metrics file walk, so the two cannot disagree. */
#define COORD_COUNTER_GROUPS 6
static void coord_counter_groups(const struct coord *c,
				 struct counter_group g[COORD_COUNTER_GROUPS])
{
	g[0] = (struct counter_group){ &transport_counters_table, &c->transport.ctr };
	g[1] = (struct counter_group){ &hs_counters_table, &c->hs.ctr };
	g[2] = (struct counter_group){ &hs_budget_counters_table, &c->hs.budget.ctr };
	g[3] = (struct counter_group){ &dir_counters_table, &c->dir.ctr };
	g[4] = (struct counter_group){ &filter_counters_table, &c->filter.ctr };
	g[5] = (struct counter_group){ &punch_counters_table, &c->punch.ctr };
}

/* The metrics file (metrics.h): the status counters and gauges. */
static void coord_render_metrics(void *arg, struct metrics_buf *b)
{
	const struct coord *c = arg;
	const struct registry *reg = dir_registry(&c->dir);
	struct counter_group g[COORD_COUNTER_GROUPS];
	size_t i;

	coord_counter_groups(c, g);
	for (i = 0; i < COORD_COUNTER_GROUPS; i++)
		metrics_add_counters(b, g[i].table, g[i].base);
	/* The relay's, as the status has them under relay_counters while the relay is on. */
	if (c->relay.on) {
		metrics_add_counters(b, &relay_svc_counters_table, &c->relay.ctr);
		metrics_add_counters(b, &rtab_counters_table, &c->relay.table.counters);
		metrics_add_counters(b, &relay_fwd_counters_table, &c->relay.fwd.counters);
		metrics_gauge(b, "coordinator_relays", "relays in use (pairs of relay ports)",
			      c->relay.table.nrelays);
	}
	metrics_gauge(b, "coordinator_nodes", "nodes in the registry", reg->n_nodes);
	metrics_gauge(b, "coordinator_max_nodes", "the registry's bound (max_nodes)",
		      reg->max_nodes);
	metrics_gauge(b, "coordinator_sessions", "node sessions up", reg->n_sessions);
	metrics_gauge(b, "coordinator_pending_punches", "punch attempts waiting for PUNCH_ACK",
		      (double)c->punch.pending.n);
	metrics_gauge(b, "coordinator_pending_filter_tests", "filter tests under way",
		      (double)c->filter.n_pending);
}

void coord_stop(struct coord *c)
{
	bool relay;

	if (!c)
		return;
	metrics_file_stop(c->metrics); /* the last write, before anything closes */
	c->metrics = NULL;
	/* The relay's poll handles and timer are its own, not in the list. Closed after the list
	 * (libuv runs close callbacks last-closed first), they are done before the list's last
	 * callback frees c. The list is not empty once the relay exists (the transport's sockets
	 * came first), so c is still here after coord_handles_close_all(). */
	relay = c->relay.inited;
	if (c->started && c->conf->coord.state_file)
		state_save(c->conf->coord.state_file, &c->dir.reg, &c->hs.ts,
			   c->conf->coord.private_key, c->conf->coord.public_key, uv_now(c->loop));
	coord_handles_close_all(&c->handles);
	if (relay)
		relay_stop(&c->relay);
}

/* The sessions a planned restart kept (state.h). A file that cannot be used is logged and
 * the coordinator starts empty, as without one: nodes then handshake again. */
static void coord_load_state(struct coord *c)
{
	const struct config_coordinator_role *cr = &c->conf->coord;
	struct state_result res;

	state_load(cr->state_file, &c->dir.reg, &c->hs.ts, cr->private_key, cr->public_key,
		   uv_now(c->loop), &res);
}

/* Once bound: the restored session addresses count as such (addr_hint.h), and a filter test
 * that was under way when the state was written starts again. */
static void coord_resume_state(struct coord *c)
{
	uint64_t now = uv_now(c->loop);

	for (struct reg_node *n = registry_first(&c->dir.reg); n; n = n->lru_next) {
		if (!n->local_idx)
			continue;
		if (n->sock >= c->transport.n_listen) {
			/* Its listen address is gone from the config: the node handshakes anew. */
			registry_clear_index(&c->dir.reg, n);
			continue;
		}
		addr_hint_add(&c->transport.hint, &n->session_addr, n->sock, now);
		if (n->filter_state == REG_FILTER_NONE) {
			filter_on_session_addr(&c->filter, n);
		}
	}
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
	if (r == 0)
		r = relay_init(&c->relay, loop, conf, &c->transport, &c->dir);
	if (r < 0) {
		log_err_errno(r, "cannot start the coordinator");
		goto fail;
	}
	filter_init(&c->filter, loop, &c->handles, &c->transport, &c->punch, &c->relay);
	r = hs_init(&c->hs, loop, conf, &c->transport, &c->dir, &c->filter);
	if (r < 0)
		goto fail;

	if (cr->state_file)
		coord_load_state(c);
	r = transport_bind(&c->transport);
	if (r < 0)
		goto fail;
	coord_resume_state(c);
	dir_start(&c->dir);
	r = metrics_file_start(loop, conf->metrics_file, coord_render_metrics, c, &c->metrics);
	if (r < 0)
		goto fail;

	for (size_t i = 0; i < cr->n_listen; i++) {
		char a[ADDR_STRLEN];

		log_info("coordinator %s listening on %s and port %u", key_short(cr->public_key, k),
			 addr_format(&cr->listen[i], a), addr_port(&cr->listen[i]) + 1u);
	}
	c->started = true;
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
	if (r == 0)
		r = relay_reload_check(&c->relay, conf);
	if (r < 0)
		return r;
	r = dir_reload(&c->dir, conf);
	if (r < 0)
		return r;
	hs_reload(&c->hs, conf);
	relay_reload(&c->relay, conf);
	c->conf = conf;
	/* A new metrics_file: the old one gets its last write, the new one starts. */
	if (!c->metrics || !conf->metrics_file ||
	    strcmp(metrics_file_path(c->metrics), conf->metrics_file) != 0) {
		metrics_file_stop(c->metrics);
		c->metrics = NULL;
		if (metrics_file_start(c->loop, conf->metrics_file, coord_render_metrics, c,
				       &c->metrics) < 0)
			log_warn("the metrics file is not written until the next restart");
	}
	return 0;
}

cJSON *coord_status(struct coord *c)
{
	const struct config_coordinator_role *cr = &c->conf->coord;
	const struct registry *reg = dir_registry(&c->dir);
	cJSON *st = cJSON_CreateObject(), *listen, *ctr;
	struct counter_group g[COORD_COUNTER_GROUPS];
	char b64[KEY_B64_LEN + 1];
	size_t i;

	if (!st)
		return NULL;
	key_to_base64(b64, cr->public_key);
	cJSON_AddStringToObject(st, "role", "coordinator");
	cJSON_AddStringToObject(st, "public_key", b64);
	listen = cJSON_AddArrayToObject(st, "listen");
	for (i = 0; listen && i < cr->n_listen; i++) {
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
	coord_counter_groups(c, g);
	for (i = 0; ctr && i < COORD_COUNTER_GROUPS; i++)
		if (!status_add_counters(ctr, g[i].table, g[i].base))
			break;
	relay_status(&c->relay, st, uv_now(c->loop));
	return st;
}

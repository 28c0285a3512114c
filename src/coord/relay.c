// SPDX-License-Identifier: MIT
/*
 * relay - the coordinator's relay service: allocation, RELAY, the bind handler, teardown.
 * The data plane is relay_fwd's and the bookkeeping relay_table's; docs/relay.md section 9 is
 * the control plane this file implements.
 */
#include "wgpunch/relay.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "wgpunch/addr.h"
#include "wgpunch/dir.h"
#include "wgpunch/key.h"
#include "wgpunch/log.h"
#include "wgpunch/proto.h"
#include "wgpunch/session.h"
#include "wgpunch/status.h"
#include "wgpunch/transport.h"

#define X(name, help) COUNTER_DEF(relay_svc_counters, name, help)
COUNTER_TABLE_DEFINE(relay_svc_counters, RELAY_SVC_COUNTERS(X));
#undef X

/* ---- the decision (pure) ---- */

/* Endpoint-dependent mapping: the probes toward P and P + 1 left from different mappings. */
static bool maps_per_destination(const struct reg_node *n)
{
	return n->mapping[0].family && n->mapping[1].family &&
	       !registry_addr_equal(&n->mapping[0], &n->mapping[1]);
}

/* A public host: the mapping's IP is one of its own addresses, so nothing filters for it. */
static bool public_host(const struct reg_node *n)
{
	const struct reg_addr *m = &n->mapping[0];

	for (unsigned int i = 0; n->lan && i < n->lan->n; i++) {
		const struct reg_addr *l = &n->lan->addr[i];

		if (l->family == m->family && memcmp(l->ip, m->ip, m->family == 4 ? 4 : 16) == 0)
			return true;
	}
	return false;
}

/* Only a public host takes a packet from a source it has not sent to. A router without an
 * inbound filter does not pass it on either: it keeps it for itself (and is poisoned by it), so
 * a side whose mapping moves with the destination cannot be answered through it: the open
 * side's first packet goes to the mapping the coordinator saw, not the one toward it. */
static bool accepts_unsolicited(const struct reg_node *n)
{
	return public_host(n);
}

/* The same public IP: behind one NAT, where the punch tries the LAN addresses first. */
static bool same_public_ip(const struct reg_node *a, const struct reg_node *b)
{
	const struct reg_addr *x = &a->mapping[0], *y = &b->mapping[0];

	return x->family && x->family == y->family &&
	       memcmp(x->ip, y->ip, x->family == 4 ? 4 : 16) == 0;
}

bool relay_no_direct(const struct reg_node *a, const struct reg_node *b)
{
	/* Behind one NAT the LAN candidates need no NAT at all, whatever its kind; should the
	 * LAN not reach (two customers of one carrier-grade NAT), the node asks for the relay
	 * after them. */
	if (same_public_ip(a, b))
		return false;
	/* Both routers poisonable: the first side's packet makes the second's router keep it
	 * for itself, so the second side's flow leaves from another port, which the first
	 * side's router (having no flow to it) keeps for itself in turn. The order of the punch
	 * cannot help; a first packet whose TTL dies between the routers could, but only where
	 * a router lies between them, which nothing here can know. */
	if (a->filter == PROTO_FILTER_POISONABLE && b->filter == PROTO_FILTER_POISONABLE)
		return true;
	return (maps_per_destination(a) && !accepts_unsolicited(b)) ||
	       (maps_per_destination(b) && !accepts_unsolicited(a));
}

bool relay_node_allows(const struct reg_node *n)
{
	return !(n->reg_flags & PROTO_REG_F_NO_RELAY);
}

/* ---- RELAY out ---- */

static void send_relay(struct relay *r, struct reg_node *n, const struct reg_node *peer,
		       uint32_t id, uint8_t flags)
{
	const struct config_coordinator_role *cr = r->d->conf ? &r->d->conf->coord : NULL;
	struct proto_msg m = { .type = PROTO_MSG_RELAY };
	uint16_t port = rtab_port_of(&r->table, id, n->fp);

	if (!port || !cr || n->sock >= cr->n_listen)
		return;
	m.relay.attempt = r->attempt[id];
	memcpy(m.relay.peer_key, peer->key, KEY_LEN);
	/* Side 0 (the lower fingerprint) initiates; two initiations crossing in the relay would
	 * each be answered and dropped, and WireGuard retries only after 5 s. */
	m.relay.flags = flags | (n->fp > peer->fp ? PROTO_RELAY_F_SECOND : 0);
	/* The listen address the node's session uses; a wildcard one (0.0.0.0, ::) tells the
	 * node to use the address it reaches us at (PROTOCOL.md 6.10). */
	m.relay.relay = cr->listen[n->sock];
	addr_set_port(&m.relay.relay, port);
	transport_send_msg(r->t, n, &m);
	r->ctr.relay_sent++;
}

/* Allocates (or finds) the pair's relay and tells both sides. */
static void relay_pair(struct relay *r, struct reg_node *a, struct reg_node *b, uint8_t flags)
{
	uint64_t now = uv_now(r->loop);
	char k1[KEY_SHORT_LEN], k2[KEY_SHORT_LEN];
	uint32_t id;
	int e;

	e = rtab_alloc(&r->table, a->fp, b->fp, now, &id);
	if (e == 0) {
		e = relay_fwd_open(&r->fwd, id);
		if (e < 0) {
			rtab_free(&r->table, id);
			r->ctr.relay_alloc_failed++;
			log_warn_errno(e, "relay for %s and %s: cannot open its ports",
				       key_short(a->key, k1), key_short(b->key, k2));
			return;
		}
		if (++r->next_attempt == 0)
			r->next_attempt = 1;
		r->attempt[id] = r->next_attempt;
		/* A new relay's sides start from 0: the node's counter only grows, and a probe
		 * from an older relay on a reused port needs the port to come back to the same
		 * node within one session, after the FIFO free list went round (relay.md 2). */
		memset(r->bind_seq[id], 0, sizeof(r->bind_seq[id]));
		r->closing[id] = 0;
		if (flags & PROTO_RELAY_F_AT_ONCE)
			r->ctr.relay_at_once++;
		else
			r->ctr.relay_on_request++;
		log_info("relay %08x for %s (port %u) and %s (port %u)%s", r->attempt[id],
			 key_short(a->key, k1), rtab_port_of(&r->table, id, a->fp),
			 key_short(b->key, k2), rtab_port_of(&r->table, id, b->fp),
			 flags & PROTO_RELAY_F_AT_ONCE ? ": no direct path can work" : "");
	} else if (e != -EEXIST) {
		r->ctr.relay_alloc_failed++;
		log_info("no relay for %s and %s: %s", key_short(a->key, k1), key_short(b->key, k2),
			 e == -EDQUOT ? "relays-per-node quota" : "no free relay ports");
		return;
	}
	/* An existing relay is announced again: a side that lost its RELAY gets it back. */
	send_relay(r, a, b, id, flags);
	send_relay(r, b, a, id, flags);
}

static bool pair_allowed(const struct reg_node *a, const struct reg_node *b)
{
	return a != b && a->local_idx && b->local_idx && a->registered && b->registered &&
	       dir_consent(a, b) && relay_node_allows(a) && relay_node_allows(b);
}

static void teardown(struct relay *r, uint32_t id);

/* A REGISTER may withdraw consent (the peer left n's list) or relaying (NO_RELAY): n's relays
 * that lost either go now rather than when idle. O(relays), on a change only. */
static void drop_unwanted(struct relay *r, struct reg_node *n)
{
	for (uint32_t id = 0; rtab_node_relays(&r->table, n->fp) && id < r->table.max_relays;
	     id++) {
		const struct rtab_relay *rel = &r->table.relays[id];
		struct reg_node *m;
		int s;

		if (!rel->used || (rel->side[0].node != n->fp && rel->side[1].node != n->fp))
			continue;
		s = rel->side[0].node == n->fp ? 1 : 0;
		m = dir_find_fp(r->d, rel->side[s].node, NULL);
		if (m && dir_consent(n, m) && relay_node_allows(n) && relay_node_allows(m))
			continue;
		log_info("relay %08x torn down: consent or relaying withdrawn", r->attempt[id]);
		teardown(r, id);
		r->ctr.relay_gone++;
	}
}

void relay_after_change(struct relay *r, struct reg_node *n, bool was_ready, bool changed)
{
	bool resend = !was_ready || changed;

	if (!r->on)
		return;
	if (changed)
		drop_unwanted(r, n);
	if (!dir_ready(n))
		return;
	/* Any change may be the one that shows no direct path can work (mapping[1] comes with
	 * changed false); an existing relay is announced again only on what punch also
	 * counts as a change, so refreshes do not repeat RELAY. */
	for (uint16_t i = 0; i < n->n_peers; i++) {
		struct reg_node *m = NULL;
		uint32_t id;

		while ((m = dir_find_fp(r->d, registry_peers(n)[i], m)) != NULL) {
			if (!dir_ready(m) || !pair_allowed(n, m) || !relay_no_direct(n, m))
				continue;
			if (!resend && rtab_find(&r->table, n->fp, m->fp, &id) == 0)
				continue;
			relay_pair(r, n, m, PROTO_RELAY_F_AT_ONCE);
		}
	}
}

/* ---- messages from nodes ---- */

static void relay_on_request(void *arg, const struct transport_rx *rx)
{
	struct relay *r = arg;
	struct reg_node *n = rx->node, *m = dir_find(r->d, rx->msg->relay_request.peer_key);

	r->ctr.relay_requests++;
	if (!r->on || !m || !pair_allowed(n, m)) {
		transport_drop(&r->ctr.relay_refused, rx->from, "RELAY_REQUEST not honoured");
		return;
	}
	relay_pair(r, n, m, 0);
}

static void teardown(struct relay *r, uint32_t id)
{
	relay_fwd_teardown(&r->fwd, id);
	r->attempt[id] = 0;
}

static void relay_on_close(void *arg, const struct transport_rx *rx)
{
	struct relay *r = arg;
	struct reg_node *m = dir_find(r->d, rx->msg->relay_close.peer_key);
	char k1[KEY_SHORT_LEN], k2[KEY_SHORT_LEN];
	uint32_t id;

	if (!r->on || !m || rtab_find(&r->table, rx->node->fp, m->fp, &id) < 0)
		return;
	log_info("relay %08x for %s and %s closed: %s", r->attempt[id],
		 key_short(rx->node->key, k1), key_short(m->key, k2),
		 rx->msg->relay_close.reason == PROTO_RELAY_CLOSE_DIRECT ? "direct path works"
									 : "peer gone");
	/* Both sides must have moved off the relay: the first to succeed sends its RELAY_CLOSE
	 * while the other may still be judging, or falling back to the relay. */
	r->closing[id] |= (uint8_t)(1u << (rx->node->fp < m->fp ? 0 : 1));
	if (r->closing[id] != 3 && rx->msg->relay_close.reason == PROTO_RELAY_CLOSE_DIRECT)
		return;
	teardown(r, id);
	r->ctr.relay_closed++;
}

void relay_forget(struct relay *r, struct reg_node *n)
{
	if (!r->on || rtab_node_relays(&r->table, n->fp) == 0)
		return;
	for (uint32_t id = 0; id < r->table.max_relays; id++) {
		const struct rtab_relay *rel = &r->table.relays[id];

		if (rel->used && (rel->side[0].node == n->fp || rel->side[1].node == n->fp)) {
			teardown(r, id);
			r->ctr.relay_gone++;
		}
	}
}

/* ---- the bind handler ---- */

static void relay_on_control(struct relay_fwd *f, uint16_t port, const struct addr *src,
			     const uint8_t *buf, size_t len, void *data)
{
	struct relay *r = data;
	size_t pre = proto_outer_prefix_len(PROTO_PROBE);
	const struct rtab_relay *rel;
	struct proto_outer o;
	struct reg_node *n;
	int side;

	(void)f;
	if (proto_decode_outer(buf, len, &o) < 0 || o.type != PROTO_PROBE) {
		transport_drop(&r->ctr.bind_malformed, src, "not a PROBE at a relay port");
		return;
	}
	if (o.purpose != PROTO_PROBE_RELAY || o.dst_port != port) {
		transport_drop(&r->ctr.bind_wrong_port, src, "probe not for this relay port");
		return;
	}
	n = dir_find_index(r->d, o.receiver_idx);
	if (!n) {
		transport_drop(&r->ctr.bind_unknown_session, src, "bind probe: no such session");
		return;
	}
	if (!session_probe_mac_ok(n->probe_key, buf, pre, o.body)) {
		transport_drop(&r->ctr.bind_bad_mac, src, "bind probe MAC does not verify");
		return;
	}
	rel = rtab_by_port(&r->table, port, &side);
	if (!rel || rel->side[side].node != n->fp) {
		transport_drop(&r->ctr.bind_not_side, src, "bind probe from the other side");
		return;
	}
	/* The MAC cannot cover the source address: without this, a stranger who saw one probe
	 * could resend it from its own address and take the side (relay.md section 2). */
	if (o.counter <= r->bind_seq[rel - r->table.relays][side]) {
		transport_drop(&r->ctr.bind_replayed, src, "bind probe counter not above the last");
		return;
	}
	if (rtab_bind(&r->table, port, n->fp, src, uv_now(r->loop)) == 0) {
		r->bind_seq[rel - r->table.relays][side] = o.counter;
		r->ctr.bind_accepted++;
	}
}

static void relay_on_idle(struct relay_fwd *f, uint32_t id, void *data)
{
	struct relay *r = data;

	(void)f;
	log_info("relay %08x idle for %u s: torn down", r->attempt[id],
		 r->table.lim.idle_timeout_s);
	r->attempt[id] = 0;
	r->ctr.relay_idle++;
}

/* ---- lifetime ---- */

void relay_limits_of(const struct config *conf, struct rtab_limits *lim)
{
	const struct config_coordinator_role *cr = &conf->coord;

	memset(lim, 0, sizeof(*lim));
	lim->port_min = cr->relay_port_min;
	lim->port_max = cr->relay_port_max;
	lim->max_relays_per_node = cr->relay_max_per_node;
	lim->pps = cr->relay_pair_pps;
	lim->bps = cr->relay_pair_bytes_per_s;
	lim->idle_timeout_s = cr->relay_idle_timeout_s;
}

int relay_init(struct relay *r, uv_loop_t *loop, const struct config *conf, struct transport *t,
	       struct dir *d)
{
	const struct config_coordinator_role *cr = &conf->coord;
	struct rtab_limits lim;
	struct addr listen[2];
	size_t n = 0;
	bool have4 = false, have6 = false;
	int e;

	memset(r, 0, sizeof(*r));
	r->loop = loop;
	r->t = t;
	r->d = d;
	if (!cr->relay)
		return 0;
	for (size_t i = 0; i < cr->n_listen && n < 2; i++) {
		bool v4 = cr->listen[i].sa.sa_family == AF_INET;

		if (v4 ? have4 : have6)
			continue;
		listen[n++] = cr->listen[i];
		*(v4 ? &have4 : &have6) = true;
	}
	relay_limits_of(conf, &lim);
	e = rtab_init(&r->table, &lim);
	if (e < 0)
		return e;
	r->attempt = calloc(r->table.max_relays, sizeof(*r->attempt));
	r->bind_seq = calloc(r->table.max_relays, sizeof(*r->bind_seq));
	r->closing = calloc(r->table.max_relays, sizeof(*r->closing));
	if (!r->attempt || !r->bind_seq || !r->closing) {
		free(r->attempt);
		free(r->bind_seq);
		free(r->closing);
		rtab_destroy(&r->table);
		return -ENOMEM;
	}
	e = relay_fwd_init(&r->fwd, loop, &r->table, listen, n, relay_on_control, relay_on_idle, r);
	if (e < 0) {
		free(r->attempt);
		free(r->bind_seq);
		free(r->closing);
		rtab_destroy(&r->table);
		return e;
	}
	r->inited = r->on = true;
	transport_route_msg(t, PROTO_MSG_RELAY_REQUEST, TRANSPORT_ROLE_BIT(TRANSPORT_MAIN),
			    relay_on_request, r);
	transport_route_msg(t, PROTO_MSG_RELAY_CLOSE, TRANSPORT_ROLE_BIT(TRANSPORT_MAIN),
			    relay_on_close, r);
	return 0;
}

void relay_stop(struct relay *r)
{
	if (!r->inited)
		return;
	r->on = false;
	relay_fwd_close(&r->fwd);
}

void relay_destroy(struct relay *r)
{
	if (!r->inited)
		return;
	r->inited = false;
	free(r->attempt);
	free(r->bind_seq);
	free(r->closing);
	r->closing = NULL;
	r->attempt = NULL;
	r->bind_seq = NULL;
	rtab_destroy(&r->table);
}

int relay_reload_check(const struct relay *r, const struct config *conf)
{
	const struct config_coordinator_role *cr = &conf->coord;

	if (cr->relay != r->inited)
		return -EAGAIN;
	if (r->inited && (cr->relay_port_min != r->table.lim.port_min ||
			  cr->relay_port_max != r->table.lim.port_max))
		return -EAGAIN;
	return 0;
}

void relay_reload(struct relay *r, const struct config *conf)
{
	struct rtab_limits lim;

	if (!r->inited)
		return;
	relay_limits_of(conf, &lim);
	rtab_set_quotas(&r->table, &lim, uv_now(r->loop));
}

/* ---- status ---- */

static cJSON *relay_json(const struct relay *r, uint32_t id, const struct rtab_relay *rel,
			 uint64_t now_ms)
{
	cJSON *o = cJSON_CreateObject(), *sides, *ctr;
	uint64_t age_ms = now_ms > rel->created_ms ? now_ms - rel->created_ms : 0;
	double age_s = age_ms ? (double)age_ms / 1000.0 : 1.0;
	const struct relay_counters *c = &rel->counters;

	if (!o)
		return NULL;
	cJSON_AddNumberToObject(o, "attempt", r->attempt[id]);
	cJSON_AddNumberToObject(o, "age_s", (double)(age_ms / 1000));
	cJSON_AddNumberToObject(o, "idle_s", (double)((now_ms - rel->last_fwd_ms) / 1000));
	sides = cJSON_AddArrayToObject(o, "sides");
	for (int s = 0; sides && s < 2; s++) {
		cJSON *so = cJSON_CreateObject();
		char fp[17], a[ADDR_STRLEN];

		if (!so)
			break;
		snprintf(fp, sizeof(fp), "%016llx", (unsigned long long)rel->side[s].node);
		cJSON_AddStringToObject(so, "fingerprint", fp);
		cJSON_AddNumberToObject(so, "port", rel->side[s].port);
		if (addr_is_set(&rel->side[s].bound))
			cJSON_AddStringToObject(so, "bound", addr_format(&rel->side[s].bound, a));
		else
			cJSON_AddNullToObject(so, "bound");
		cJSON_AddItemToArray(sides, so);
	}
	/* Average rates over the relay's life: the counters say the rest. */
	cJSON_AddNumberToObject(o, "pps",
				(double)(c->fwd_packets_a_to_b + c->fwd_packets_b_to_a) / age_s);
	cJSON_AddNumberToObject(o, "bps",
				(double)(c->fwd_bytes_a_to_b + c->fwd_bytes_b_to_a) / age_s);
	ctr = cJSON_AddObjectToObject(o, "counters");
	if (ctr)
		status_add_counters(ctr, &relay_counters_table, c);
	return o;
}

bool relay_status(const struct relay *r, cJSON *st, uint64_t now_ms)
{
	cJSON *rel, *ctr, *q;

	cJSON_AddBoolToObject(st, "relay", r->on);
	if (!r->on)
		return true;
	/* The quotas in force (a reload changes them). */
	q = cJSON_AddObjectToObject(st, "relay_quotas");
	if (q) {
		cJSON_AddNumberToObject(q, "max_per_node", r->table.lim.max_relays_per_node);
		cJSON_AddNumberToObject(q, "pair_pps", r->table.lim.pps);
		cJSON_AddNumberToObject(q, "pair_bytes_per_s", (double)r->table.lim.bps);
		cJSON_AddNumberToObject(q, "idle_timeout_s", r->table.lim.idle_timeout_s);
	}
	rel = cJSON_AddArrayToObject(st, "relays");
	for (uint32_t id = 0; rel && id < r->table.max_relays; id++) {
		if (r->table.relays[id].used) {
			cJSON *o = relay_json(r, id, &r->table.relays[id], now_ms);

			if (o)
				cJSON_AddItemToArray(rel, o);
		}
	}
	ctr = cJSON_AddObjectToObject(st, "relay_counters");
	return ctr && status_add_counters(ctr, &relay_svc_counters_table, &r->ctr) &&
	       status_add_counters(ctr, &rtab_counters_table, &r->table.counters) &&
	       status_add_counters(ctr, &relay_fwd_counters_table, &r->fwd.counters);
}

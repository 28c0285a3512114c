// SPDX-License-Identifier: MIT
/*
 * dir - the coordinator's directory: registry, REGISTER, mappings, consent,
 * expiry.
 */
#include "wgpunch/dir.h"

#include <errno.h>

#include "wgpunch/key.h"
#include "wgpunch/log.h"
#include "wgpunch/proto.h"
#include "wgpunch/transport.h"

#define X(name, help) COUNTER_DEF(dir_counters, name, help)
COUNTER_TABLE_DEFINE(dir_counters, DIR_COUNTERS(X));
#undef X

bool dir_ready(const struct reg_node *n)
{
	return n->local_idx && n->registered && n->mapping[0].family &&
	       n->filter_state == REG_FILTER_DONE;
}

bool dir_consent(const struct reg_node *a, const struct reg_node *b)
{
	return registry_lists(a, b->fp) && registry_lists(b, a->fp);
}

struct reg_node *dir_find(const struct dir *d, const uint8_t key[KEY_LEN])
{
	return registry_find(&d->reg, key);
}

struct reg_node *dir_find_fp(const struct dir *d, uint64_t fp, const struct reg_node *prev)
{
	return registry_find_fp(&d->reg, fp, prev);
}

struct reg_node *dir_find_index(const struct dir *d, uint32_t idx)
{
	return registry_find_index(&d->reg, idx);
}

int dir_add(struct dir *d, const uint8_t key[KEY_LEN], struct reg_node **out)
{
	return registry_add(&d->reg, key, uv_now(d->loop), out);
}

int dir_new_index(struct dir *d, struct reg_node *n)
{
	return registry_assign_index(&d->reg, n, NULL, NULL);
}

void dir_touch(struct dir *d, struct reg_node *n)
{
	registry_touch(&d->reg, n, uv_now(d->loop));
}

void dir_forget(struct dir *d, struct reg_node *n)
{
	if (d->hooks.forget)
		d->hooks.forget(d->hooks.arg, n);
	registry_remove(&d->reg, n);
}

static void dir_changed(struct dir *d, struct reg_node *n, bool was_ready, bool changed)
{
	if (d->hooks.changed)
		d->hooks.changed(d->hooks.arg, n, was_ready, changed);
}

/* ---- what nodes send ---- */

static void dir_on_register(void *arg, const struct transport_rx *rx)
{
	struct dir *d = arg;
	struct reg_node *n = rx->node;
	const struct proto_register *reg = &rx->msg->reg;
	struct proto_msg ack = { .type = PROTO_MSG_REGISTER_ACK };
	bool was_ready = dir_ready(n), changed;
	int rp, rl;

	if (reg->n_pages <= 1) {
		rp = registry_set_peers(n, reg->peers, reg->n_peers);
	} else {
		/* Pages are cut from the sorted list in order: page k stands for the fingerprints
		 * from its first to its last (page 0 from 0, the last page to the top), so each
		 * page replaces its range and a repeated REGISTER changes nothing. */
		uint64_t lo = 0, hi = UINT64_MAX;

		for (size_t i = 0; i < reg->n_peers; i++) {
			if (reg->page && (i == 0 || reg->peers[i] < lo))
				lo = reg->peers[i];
			if (reg->page + 1u < reg->n_pages && (i == 0 || reg->peers[i] > hi))
				hi = reg->peers[i];
		}
		if (reg->n_peers == 0)
			lo = 1, hi = 0; /* an empty page stands for nothing */
		rp = registry_set_peer_range(n, reg->peers, reg->n_peers, lo, hi, DIR_MAX_PEERS);
	}
	rl = registry_set_lan(n, reg->lan, reg->n_lan);
	if (rp < 0 || rl < 0) {
		/* No ack: the node sends it again in 1 s. */
		d->ctr.register_failed++;
		return;
	}
	changed = rp > 0 || rl > 0 || n->wg_port != reg->wg_port;
	n->wg_port = reg->wg_port;
	n->reg_flags = reg->flags;
	d->ctr.register_accepted++;
	if (!n->registered) {
		char k[KEY_SHORT_LEN], a[ADDR_STRLEN];
		struct addr sa;

		n->registered = true;
		registry_addr_unpack(&sa, &n->session_addr);
		log_info("node %s registered from %s with %u peers", key_short(n->key, k),
			 addr_format(&sa, a), n->n_peers);
	}
	ack.reg_ack.seq = reg->seq;
	ack.reg_ack.refresh_s = DIR_REFRESH_S;
	ack.reg_ack.rekey_s = d->conf->coord.rekey_interval_s ? d->conf->coord.rekey_interval_s
							      : CONFIG_DEFAULT_REKEY_INTERVAL_S;
	ack.reg_ack.observed = *rx->from;
	transport_send_msg(d->t, n, &ack);
	dir_changed(d, n, was_ready, changed || (reg->flags & PROTO_REG_F_RESYNC));
}

/* Whether a is the first global IPv6 address n registered: the IPv6 candidate its peers
 * chose before they heard of an IPv6 mapping (node_peer_candidates()). */
static bool dir_first_global6_is(const struct reg_node *n, const struct addr *a)
{
	struct addr lan[PROTO_MAX_LAN];
	size_t k = registry_get_lan(n, lan, PROTO_MAX_LAN);

	for (size_t i = 0; i < k; i++)
		if (addr_is_global_ipv6(&lan[i]))
			return addr_equal(&lan[i], a);
	return false;
}

/*
 * A probe over IPv6 from a node whose session is IPv4 (PROTOCOL.md 2.4): its source is the
 * node's IPv6 mapping, kept beside the IPv4 ones and handed to its peers as its first IPv6
 * candidate. Only toward P; one toward P + 1 is answered and not kept (an IPv6 firewall maps
 * nothing, and the mapping type is the IPv4 NAT's).
 */
static void dir_on_probe6(struct dir *d, const struct transport_rx *rx)
{
	struct reg_node *n = rx->node;
	struct proto_msg m = { .type = PROTO_MSG_MAPPING };
	uint8_t pi = rx->outer->purpose;
	bool was_ready = dir_ready(n), had, changed = false;
	struct addr old;
	int r;

	d->ctr.probe6_accepted++;
	if (pi == PROTO_PROBE_MAP_P) {
		had = registry_get_mapping6(n, &old);
		r = registry_set_mapping6(n, rx->from);
		if (r < 0)
			return; /* no memory: the node probes again with its next refresh */
		/* A first mapping the peers already try (the first global address the node
		 * registered: no NAT66, no privacy address) changes no candidate. */
		changed = r > 0 && (had || !dir_first_global6_is(n, rx->from));
		if (r > 0 && log_enabled(LOG_LEVEL_DEBUG)) {
			char k[KEY_SHORT_LEN], a[ADDR_STRLEN];

			log_debug("node %s: IPv6 mapping is %s", key_short(n->key, k),
				  addr_format(rx->from, a));
		}
	}
	m.mapping.probe_seq = rx->outer->counter;
	m.mapping.port_index = pi;
	m.mapping.observed = *rx->from;
	transport_send_msg(d->t, n, &m);
	dir_changed(d, n, was_ready, changed);
}

/* An authentic PROBE (the transport checked MAC and sequence): where it came from is n's
 * mapping toward that port; the node hears it as MAPPING. */
static void dir_on_probe(void *arg, const struct transport_rx *rx)
{
	struct dir *d = arg;
	struct reg_node *n = rx->node;
	struct proto_msg m = { .type = PROTO_MSG_MAPPING };
	uint8_t pi = rx->outer->purpose; /* the transport checked it is this socket's */
	struct reg_addr src;
	bool was_ready, changed;

	d->ctr.probe_accepted++;
	was_ready = dir_ready(n);
	if (addr_family(rx->from) == AF_INET6 && n->session_addr.family == 4) {
		dir_on_probe6(d, rx);
		return;
	}
	if ((addr_family(rx->from) == AF_INET6) != (n->session_addr.family == 6)) {
		/* IPv4 beside an IPv6 session: nodes do not send it, and the peers could do
		 * nothing with it (PUNCH carries one IPv4 mapping, the session family's). */
		d->ctr.probe_other_family++;
		return;
	}
	registry_addr_pack(&src, rx->from);
	changed = !registry_addr_equal(&src, &n->mapping[pi]);
	n->mapping[pi] = src;
	if (changed && log_enabled(LOG_LEVEL_DEBUG)) {
		char k[KEY_SHORT_LEN], a[ADDR_STRLEN];

		log_debug("node %s: mapping[%u] is %s", key_short(n->key, k), pi,
			  addr_format(rx->from, a));
	}
	m.mapping.probe_seq = rx->outer->counter;
	m.mapping.port_index = pi;
	m.mapping.observed = *rx->from;
	transport_send_msg(d->t, n, &m);
	/* Only mapping[0] is a change that needs a new punch (section 4.4); mapping[1] is told
	 * too, with changed false, because it shows the mapping type the relay decides on. */
	dir_changed(d, n, was_ready, pi == PROTO_PROBE_MAP_P && changed);
}

/* ---- expiry ---- */

static void dir_on_sweep(uv_timer_t *timer)
{
	struct dir *d = timer->data;
	uint64_t now = uv_now(d->loop);
	struct reg_node *n;
	char k[KEY_SHORT_LEN];

	for (int i = 0; i < DIR_SWEEP_MAX; i++) {
		n = registry_expired(&d->reg, now, DIR_EXPIRE_MS);
		if (!n)
			break;
		log_info("node %s expired: no refresh for %u s", key_short(n->key, k),
			 DIR_EXPIRE_MS / 1000);
		d->ctr.nodes_expired++;
		dir_forget(d, n);
	}
}

static const struct coord_handle_ops dir_sweep_ops = { .what = "expiry timer" };

/* ---- lifetime ---- */

int dir_init(struct dir *d, uv_loop_t *loop, struct coord_handles *handles,
	     const struct config *conf, struct transport *t, const struct dir_hooks *hooks)
{
	const struct config_coordinator_role *cr = &conf->coord;

	d->loop = loop;
	d->conf = conf;
	d->t = t;
	d->hooks = *hooks;
	coord_handles_add_timer(handles, loop, &d->sweep, &dir_sweep_ops, d);
	if (registry_init(&d->reg, cr->max_nodes ? cr->max_nodes : CONFIG_DEFAULT_MAX_NODES) < 0)
		return -ENOMEM;
	/* Section 2: PROBE on both ports; REGISTER inside the session, on P. */
	transport_route_outer(t, PROTO_PROBE,
			      TRANSPORT_ROLE_BIT(TRANSPORT_MAIN) |
				      TRANSPORT_ROLE_BIT(TRANSPORT_PROBE),
			      dir_on_probe, d);
	transport_route_msg(t, PROTO_MSG_REGISTER, TRANSPORT_ROLE_BIT(TRANSPORT_MAIN),
			    dir_on_register, d);
	return 0;
}

void dir_start(struct dir *d)
{
	uv_timer_start(&d->sweep.uv.timer, dir_on_sweep, DIR_SWEEP_MS, DIR_SWEEP_MS);
}

void dir_destroy(struct dir *d)
{
	registry_destroy(&d->reg);
}

int dir_reload(struct dir *d, const struct config *conf)
{
	struct reg_node *n, *next;
	char k[KEY_SHORT_LEN];
	int r;

	r = registry_set_max_nodes(&d->reg, conf->coord.max_nodes ? conf->coord.max_nodes
								  : CONFIG_DEFAULT_MAX_NODES);
	if (r < 0)
		return r;
	d->conf = conf;
	/* Linear in the nodes, but a reload is rare and not on any packet's path. */
	for (n = registry_first(&d->reg); n; n = next) {
		next = n->lru_next;
		if (config_key_authorized(conf, n->key))
			continue;
		log_info("node %s is no longer authorised: dropped", key_short(n->key, k));
		d->ctr.nodes_dropped++;
		dir_forget(d, n);
	}
	return 0;
}

// SPDX-License-Identifier: MIT
/*
 * node - the node role: its lifetime, the sessions with the coordinators
 * (node_coord.c), the WireGuard interface and its peers' paths
 * (node_iface.c), and status.
 *
 * What the device reads notice (peers, port, fwmark, key, LAN addresses) the
 * coordinators learn at once: a new key needs a new session, anything else a
 * new REGISTER.
 *
 * rtnetlink (ifmon.c) says when local addresses or links change: the LAN
 * addresses are read again and the mapping probed again at once, since a new
 * uplink is a new mapping, which the coordinator pushes to the peers. The
 * device read and the 20 s refresh still notice what it might miss.
 */
#include "wgpunch/node.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "wgpunch/ifmon.h"
#include "wgpunch/log.h"
#include "wgpunch/node_coord.h"
#include "wgpunch/node_iface.h"
#include "wgpunch/node_rdv.h"
#include "wgpunch/node_session.h"

struct node {
	uv_loop_t *loop;
	const struct config *conf;
	node_fatal_cb fatal;
	void *fatal_arg;
	struct node_iface iface;
	bool stopping;
	struct ifmon *ifmon; /* NULL when rtnetlink is not available */

	struct node_coord **coords;
	size_t n_coords;
	unsigned int next_coord_id;

	struct node_counters counters;
	unsigned int closing;
};

uint64_t node_now_ms(void)
{
	return uv_hrtime() / 1000000u;
}

const struct wg_device *node_device(const struct node *n)
{
	return n->iface.dev;
}

struct prober *node_prober(struct node *n)
{
	return &n->iface.prober;
}

struct node_counters *node_counters(struct node *n)
{
	return &n->counters;
}

void node_fill_register(struct node *n, struct proto_register *reg)
{
	node_iface_fill_register(&n->iface, reg);
}

void node_on_punch(struct node *n, struct node_coord *c, const struct proto_punch *punch)
{
	node_iface_on_punch(&n->iface, c, punch);
}

struct node_coord *node_find_coord(struct node *n, unsigned int id)
{
	size_t i;

	for (i = 0; i < n->n_coords; i++)
		if (n->coords[i]->id == id)
			return n->coords[i];
	return NULL;
}

/* ---- lifetime ---- */

static void node_free(struct node *n)
{
	node_iface_free(&n->iface);
	free(n->coords);
	free(n);
}

static void node_release(struct node *n)
{
	if (--n->closing == 0 && n->stopping)
		node_free(n);
}

void node_coord_closed(struct node *n)
{
	node_release(n);
}

static void node_on_iface_closed(uv_handle_t *h)
{
	struct node_iface *ifc = h->data;

	node_release(ifc->node);
}

static void node_on_ifmon_closed(void *arg)
{
	node_release(arg);
}

static void node_close_coord(struct node *n, struct node_coord *c)
{
	n->closing++;
	node_coord_close(c);
}

void node_stop(struct node *n)
{
	size_t i;

	if (!n || n->stopping)
		return;
	n->stopping = true;
	n->closing++; /* held until every close below is queued */
	for (i = 0; i < n->n_coords; i++)
		node_close_coord(n, n->coords[i]);
	n->n_coords = 0;
	n->closing += node_iface_close(&n->iface, node_on_iface_closed);
	if (n->ifmon) {
		n->closing++;
		ifmon_close(n->ifmon);
		n->ifmon = NULL;
	}
	node_release(n);
}

void node_fail(struct node *n, int err)
{
	/* The callback stops us (node_stop); nothing may touch n after it returns. */
	n->fatal(n->fatal_arg, err);
}

/* ---- what the coordinators learn ---- */

void node_on_device(struct node *n, const struct wg_device *dev,
		    const struct node_iface_changes *ch)
{
	size_t i;

	for (i = 0; i < n->n_coords; i++) {
		if (ch->first || ch->port)
			node_coord_set_fwmark(n->coords[i], dev->fwmark);
		/* A new identity needs a new session. */
		if (ch->first || ch->key)
			node_session_device_ready(n->coords[i]);
		else if (ch->port || ch->peers || ch->lan)
			node_rdv_register_now(n->coords[i], ch->port);
	}
}

void node_resync_coords(struct node *n, bool now)
{
	size_t i;

	for (i = 0; i < n->n_coords; i++)
		node_rdv_resync(n->coords[i], now);
}

/* rtnetlink: addresses or links changed (debounced). */
static void node_on_ifmon(void *arg)
{
	struct node *n = arg;
	bool lan_changed;
	size_t i;

	if (n->stopping || !n->iface.dev)
		return; /* the first device read reads the addresses */
	lan_changed = node_lan_refresh(&n->iface.lan, n->conf->node.interface, n->iface.dev);
	if (!lan_changed)
		log_debug("local addresses or links changed, probing the mapping again");
	for (i = 0; i < n->n_coords; i++) {
		if (lan_changed)
			node_rdv_register_now(n->coords[i], true);
		else
			node_rdv_probe_now(n->coords[i]);
	}
}

/* ---- start, reload ---- */

static int node_add_coord(struct node *n, const struct config_coordinator *cc)
{
	struct node_coord **v = realloc(n->coords, (n->n_coords + 1) * sizeof(*v));
	int r;

	if (!v)
		return -ENOMEM;
	n->coords = v;
	r = node_coord_start(n, n->loop, cc, ++n->next_coord_id, &v[n->n_coords]);
	if (r < 0)
		return r;
	n->n_coords++;
	return 0;
}

int node_start(uv_loop_t *loop, const struct config *conf, node_fatal_cb fatal, void *arg,
	       struct node **out)
{
	const struct config_node *cn = &conf->node;
	struct node *n;
	size_t i;
	int r;

	n = calloc(1, sizeof(*n));
	if (!n)
		return log_err_errno(-ENOMEM, "cannot start the node");
	n->loop = loop;
	n->conf = conf;
	n->fatal = fatal;
	n->fatal_arg = arg;

	r = node_iface_open(&n->iface, n, loop, conf);
	if (r < 0) {
		free(n);
		return r;
	}
	/* Without it the node still works, only slower to notice a new address. */
	r = ifmon_open(loop, IFMON_DEBOUNCE_MS, node_on_ifmon, node_on_ifmon_closed, n, &n->ifmon);
	if (r < 0) {
		log_warn_errno(r,
			       "cannot watch local addresses (rtnetlink); changes are seen "
			       "within %u s instead",
			       NODE_IFACE_POLL_SLOW_MS / 1000);
		n->ifmon = NULL;
	}
	n->iface.lan_watched = n->ifmon != NULL;

	r = node_iface_start(&n->iface);
	if (r < 0)
		goto fail;
	for (i = 0; i < cn->n_coordinators; i++) {
		r = node_add_coord(n, &cn->coordinators[i]);
		if (r < 0) {
			log_err_errno(r, "cannot start the session with coordinator %s:%u",
				      cn->coordinators[i].host, cn->coordinators[i].port);
			goto fail;
		}
	}
	*out = n;
	return 0;
fail:
	node_stop(n);
	return r;
}

int node_reload(struct node *n, const struct config *conf)
{
	const struct config_node *cn = &conf->node, *on = &n->conf->node;
	struct node_coord **keep;
	size_t i, j, n_keep = 0;
	int r = 0;

	if (strcmp(cn->interface, on->interface) != 0 || cn->backend != on->backend)
		return -EAGAIN;

	/* Coordinators: keep the sessions whose line did not change, close the others,
	 * start the new ones. */
	keep = calloc(n->n_coords ? n->n_coords : 1, sizeof(*keep));
	if (!keep)
		return -EAGAIN;
	for (i = 0; i < n->n_coords; i++) {
		struct node_coord *c = n->coords[i];
		bool found = false;

		for (j = 0; j < cn->n_coordinators && !found; j++)
			found = node_coord_same_conf(c, &cn->coordinators[j]);
		if (found)
			keep[n_keep++] = c;
		else
			node_close_coord(n, c);
	}
	free(n->coords);
	n->coords = keep;
	n->n_coords = n_keep;
	n->conf = conf;
	for (j = 0; j < cn->n_coordinators; j++) {
		bool found = false;

		for (i = 0; i < n_keep && !found; i++)
			found = node_coord_same_conf(keep[i], &cn->coordinators[j]);
		if (!found && (r = node_add_coord(n, &cn->coordinators[j])) < 0)
			log_warn_errno(r, "cannot start the session with coordinator %s:%u",
				       cn->coordinators[j].host, cn->coordinators[j].port);
	}
	if (n->iface.dev)
		for (i = n_keep; i < n->n_coords; i++)
			node_session_device_ready(n->coords[i]);
	node_iface_reload(&n->iface, conf);
	log_info("node configuration reloaded: %zu coordinators, keepalive %u s", n->n_coords,
		 cn->keepalive_s);
	return 0;
}

/* ---- status ---- */

static cJSON *node_status_nat(struct node *n)
{
	cJSON *o = cJSON_CreateObject();
	const struct node_coord *best = NULL;
	char buf[ADDR_STRLEN];
	size_t i;

	for (i = 0; i < n->n_coords && !best; i++)
		if (addr_is_set(&n->coords[i]->mapping[0]))
			best = n->coords[i];
	if (!best && n->n_coords)
		best = n->coords[0];
	if (best && addr_is_set(&best->mapping[0]))
		cJSON_AddStringToObject(o, "mapping", addr_format(&best->mapping[0], buf));
	else
		cJSON_AddNullToObject(o, "mapping");
	if (best && addr_is_set(&best->mapping[1]))
		cJSON_AddStringToObject(o, "mapping_port1", addr_format(&best->mapping[1], buf));
	else
		cJSON_AddNullToObject(o, "mapping_port1");
	cJSON_AddStringToObject(o, "mapping_type", best ? node_rdv_mapping_type(best) : "unknown");
	cJSON_AddStringToObject(o, "filter",
				proto_filter_name(best ? best->filter : PROTO_FILTER_UNKNOWN));
	return o;
}

static cJSON *node_status_counters(const struct node *n)
{
	const struct node_counters *k = &n->counters;
	cJSON *o = cJSON_CreateObject();

#define COUNTER(name) cJSON_AddNumberToObject(o, #name, (double)k->name)
	COUNTER(rx_packets);
	COUNTER(rx_bad_decode);
	COUNTER(rx_bad_index);
	COUNTER(rx_bad_auth);
	COUNTER(rx_replay);
	COUNTER(rx_unexpected);
	COUNTER(rx_poison);
	COUNTER(rx_session_unknown);
	COUNTER(tx_packets);
	COUNTER(tx_errors);
	COUNTER(probes_sent);
	COUNTER(probe_errors);
	COUNTER(handshakes_sent);
	COUNTER(sessions_up);
	COUNTER(registers_sent);
	COUNTER(punches);
	COUNTER(punches_ignored);
	COUNTER(endpoint_writes);
	COUNTER(wg_errors);
#undef COUNTER
	return o;
}

cJSON *node_status(struct node *n)
{
	cJSON *o = cJSON_CreateObject(), *arr;
	char k[KEY_B64_LEN + 1];
	uint64_t now = node_now_ms();
	size_t i;

	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "role", "node");
	cJSON_AddStringToObject(o, "interface", n->conf->node.interface);
	cJSON_AddStringToObject(o, "backend",
				n->iface.wg ? wg_backend_name(wg_backend_of(n->iface.wg)) : "");
	if (n->iface.dev) {
		key_to_base64(k, n->iface.dev->public_key);
		cJSON_AddStringToObject(o, "public_key", k);
		cJSON_AddNumberToObject(o, "listen_port", n->iface.dev->listen_port);
	} else {
		cJSON_AddNullToObject(o, "public_key");
		cJSON_AddNullToObject(o, "listen_port");
	}
	cJSON_AddItemToObject(o, "nat", node_status_nat(n));

	arr = cJSON_AddArrayToObject(o, "coordinators");
	for (i = 0; arr && i < n->n_coords; i++)
		cJSON_AddItemToArray(arr, node_coord_status(n->coords[i], now));

	cJSON_AddItemToObject(o, "peers", node_iface_status_peers(&n->iface));
	cJSON_AddItemToObject(o, "counters", node_status_counters(n));
	return o;
}

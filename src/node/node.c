// SPDX-License-Identifier: MIT
/*
 * node - the node role, wired from its pieces and nothing else:
 * - one link per coordinator line (link_shell.c around the pure link.c): the
 *   Noise session and the rendezvous steps;
 * - the paths (paths_shell.c around the pure paths.c): the WireGuard
 *   interface, its peer table, and the prober on its port;
 * - ifmon (rtnetlink): local addresses or links changed.
 * Each owns its state; this file only passes what one reports to the others
 * (docs/architecture.md, "Node").
 *
 * What the device reads notice (peers, port, fwmark, key, LAN addresses) the
 * links learn at once: a new key needs a new session, anything else a new
 * REGISTER. When rtnetlink says local addresses or links changed, the LAN
 * addresses are read again and the mapping probed again at once, since a new
 * uplink is a new mapping, which the coordinator pushes to the peers. The
 * device read and the 20 s refresh still notice what it might miss.
 */
#include "wgpunch/node.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "wgpunch/ifmon.h"
#include "wgpunch/link_shell.h"
#include "wgpunch/log.h"
#include "wgpunch/paths_shell.h"
#include "wgpunch/status.h"

struct node {
	uv_loop_t *loop;
	const struct config *conf;
	node_fatal_cb fatal;
	void *fatal_arg;
	bool stopping;

	/* The pieces. Every one is closed by node_stop() the same way: closing counts the
	 * pieces whose closed callback has not come yet. */
	struct paths_shell *paths;
	struct ifmon *ifmon; /* NULL when rtnetlink is not available */
	struct link_shell **links;
	size_t n_links;
	unsigned int next_link_id;
	unsigned int closing;

	/* The counters of links closed by a reload: counters only ever grow. */
	struct link_counters gone_link;
	struct link_shell_counters gone_link_shell;
};

static struct link_shell *node_find_link(struct node *n, unsigned int id)
{
	size_t i;

	for (i = 0; i < n->n_links; i++)
		if (link_shell_id(n->links[i]) == id)
			return n->links[i];
	return NULL;
}

/* ---- lifetime ---- */

static void node_released(void *arg)
{
	struct node *n = arg;

	if (--n->closing == 0 && n->stopping) {
		free(n->links);
		free(n);
	}
}

/* to += from, counter by counter, for two structs of table t's type. */
static void add_counters(const struct counter_table *t, void *to, const void *from)
{
	size_t i;

	for (i = 0; i < t->n; i++)
		*(uint64_t *)(void *)((char *)to + t->defs[i].offset) +=
			counter_value(from, &t->defs[i]);
}

static void node_close_link(struct node *n, struct link_shell *s)
{
	add_counters(&link_counters_table, &n->gone_link, &link_shell_link(s)->counters);
	add_counters(&link_shell_counters_table, &n->gone_link_shell, link_shell_counters(s));
	/* A link a reload removed opens no attempt any more either. */
	if (n->paths)
		paths_shell_link_down(n->paths, link_shell_id(s));
	n->closing++;
	link_shell_close(s);
}

void node_stop(struct node *n)
{
	size_t i;

	if (!n || n->stopping)
		return;
	n->stopping = true;
	n->closing++; /* held until every close below is queued */
	for (i = 0; i < n->n_links; i++)
		node_close_link(n, n->links[i]);
	n->n_links = 0;
	if (n->paths) {
		n->closing++;
		paths_shell_close(n->paths);
		n->paths = NULL;
	}
	if (n->ifmon) {
		n->closing++;
		ifmon_close(n->ifmon);
		n->ifmon = NULL;
	}
	node_released(n);
}

/* ---- from the links ---- */

static void node_fill_register(void *arg, struct proto_register *reg)
{
	struct node *n = arg;

	paths_shell_fill_register(n->paths, reg);
	if (!n->conf->node.relay)
		reg->flags |= PROTO_REG_F_NO_RELAY;
}

static void node_on_punch(void *arg, struct link_shell *s, const struct proto_punch *punch)
{
	struct node *n = arg;

	paths_shell_on_punch(n->paths, link_shell_id(s), &link_shell_link(s)->mapping[0], punch);
}

static void node_on_relay(void *arg, struct link_shell *s, const struct proto_relay *relay)
{
	struct node *n = arg;
	char k[KEY_SHORT_LEN];

	if (!n->conf->node.relay) {
		/* REGISTER said NO_RELAY; a coordinator that relays anyway gets no bind. */
		log_info("RELAY for peer %s ignored: relay = no", key_short(relay->peer_key, k));
		return;
	}
	if (paths_shell_on_relay(n->paths, link_shell_id(s), relay))
		link_shell_relay_bind(s, &relay->relay);
}

static void node_on_session(void *arg, struct link_shell *s, bool up)
{
	struct node *n = arg;

	if (!up)
		paths_shell_link_down(n->paths, link_shell_id(s));
}

/* ---- from the paths ---- */

static void node_on_fail(void *arg, int err)
{
	struct node *n = arg;

	/* The callback stops us (node_stop); nothing may touch n after it returns. */
	n->fatal(n->fatal_arg, err);
}

static void node_on_device(void *arg, const struct wg_device *dev,
			   const struct paths_shell_changes *ch)
{
	struct node *n = arg;
	size_t i;

	for (i = 0; i < n->n_links; i++) {
		if (ch->first || ch->port)
			link_shell_set_fwmark(n->links[i], dev->fwmark);
		/* A new identity needs a new session. */
		if (ch->first || ch->key)
			link_shell_set_identity(n->links[i], dev->private_key);
		else if (ch->port || ch->peers || ch->lan)
			link_shell_register(n->links[i], ch->port);
	}
}

static void node_on_punch_done(void *arg, unsigned int link_id, uint32_t attempt)
{
	struct link_shell *s = node_find_link(arg, link_id);

	if (s) /* NULL: the link is gone (reload) */
		link_shell_punch_done(s, attempt);
}

static void node_on_relay_request(void *arg, unsigned int link_id, const uint8_t *peer_key)
{
	struct link_shell *s = node_find_link(arg, link_id);

	if (s) /* NULL: the link is gone (reload) */
		link_shell_relay_request(s, peer_key);
}

static void node_on_relay_close(void *arg, unsigned int link_id, const uint8_t *peer_key,
				uint8_t reason)
{
	struct link_shell *s = node_find_link(arg, link_id);

	if (s)
		link_shell_relay_close(s, peer_key, reason);
}

static void node_on_resync(void *arg, bool now)
{
	struct node *n = arg;
	size_t i;

	for (i = 0; i < n->n_links; i++)
		link_shell_resync(n->links[i], now);
}

/* ---- from ifmon: addresses or links changed (debounced) ---- */

static void node_on_ifmon(void *arg)
{
	struct node *n = arg;
	bool lan_changed;
	size_t i;

	if (n->stopping || !paths_shell_device(n->paths))
		return; /* the first device read reads the addresses */
	lan_changed = paths_shell_lan_refresh(n->paths);
	if (!lan_changed)
		log_debug("local addresses or links changed, probing the mapping again");
	for (i = 0; i < n->n_links; i++) {
		if (lan_changed)
			link_shell_register(n->links[i], true);
		else
			link_shell_probe(n->links[i]);
	}
}

/* ---- start, reload ---- */

static int node_add_link(struct node *n, const struct config_coordinator *cc)
{
	const struct link_shell_ops ops = {
		.fill_register = node_fill_register,
		.on_punch = node_on_punch,
		.on_relay = node_on_relay,
		.on_session = node_on_session,
		.closed = node_released,
		.arg = n,
		.prober = paths_shell_prober(n->paths),
	};
	const struct wg_device *dev = paths_shell_device(n->paths);
	struct link_shell **v = realloc(n->links, (n->n_links + 1) * sizeof(*v));
	int r;

	if (!v)
		return -ENOMEM;
	n->links = v;
	r = link_shell_start(n->loop, cc, ++n->next_link_id, dev ? dev->private_key : NULL,
			     dev ? dev->fwmark : 0, &ops, &v[n->n_links]);
	if (r < 0)
		return r;
	n->n_links++;
	return 0;
}

int node_start(uv_loop_t *loop, const struct config *conf, node_fatal_cb fatal, void *arg,
	       struct node **out)
{
	const struct config_node *cn = &conf->node;
	const struct paths_shell_ops ops = {
		.fail = node_on_fail,
		.on_device = node_on_device,
		.punch_done = node_on_punch_done,
		.relay_request = node_on_relay_request,
		.relay_close = node_on_relay_close,
		.resync = node_on_resync,
		.closed = node_released,
	};
	struct paths_shell_ops pops = ops;
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

	pops.arg = n;
	r = paths_shell_open(loop, conf, &pops, &n->paths);
	if (r < 0) {
		free(n);
		return r;
	}
	/* Without it the node still works, only slower to notice a new address. */
	r = ifmon_open(loop, IFMON_DEBOUNCE_MS, node_on_ifmon, node_released, n, &n->ifmon);
	if (r < 0) {
		log_warn_errno(r,
			       "cannot watch local addresses (rtnetlink); changes are seen "
			       "within %u s instead",
			       PATHS_POLL_SLOW_MS / 1000);
		n->ifmon = NULL;
	}
	paths_shell_set_lan_watched(n->paths, n->ifmon != NULL);

	r = paths_shell_start(n->paths);
	if (r < 0)
		goto fail;
	for (i = 0; i < cn->n_coordinators; i++) {
		r = node_add_link(n, &cn->coordinators[i]);
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
	struct link_shell **keep;
	size_t i, j, n_keep = 0;
	int r = 0;

	if (strcmp(cn->interface, on->interface) != 0 || cn->backend != on->backend)
		return -EAGAIN;

	/* Links: keep those whose line did not change, close the others, start the new ones. */
	keep = calloc(n->n_links ? n->n_links : 1, sizeof(*keep));
	if (!keep)
		return -EAGAIN;
	for (i = 0; i < n->n_links; i++) {
		struct link_shell *s = n->links[i];
		bool found = false;

		for (j = 0; j < cn->n_coordinators && !found; j++)
			found = link_shell_same_conf(s, &cn->coordinators[j]);
		if (found)
			keep[n_keep++] = s;
		else
			node_close_link(n, s);
	}
	free(n->links);
	n->links = keep;
	n->n_links = n_keep;
	n->conf = conf;
	for (j = 0; j < cn->n_coordinators; j++) {
		bool found = false;

		for (i = 0; i < n_keep && !found; i++)
			found = link_shell_same_conf(keep[i], &cn->coordinators[j]);
		if (!found && (r = node_add_link(n, &cn->coordinators[j])) < 0)
			log_warn_errno(r, "cannot start the session with coordinator %s:%u",
				       cn->coordinators[j].host, cn->coordinators[j].port);
	}
	paths_shell_reload(n->paths, conf);
	log_info("node configuration reloaded: %zu coordinators, keepalive %u s", n->n_links,
		 cn->keepalive_s);
	return 0;
}

/* ---- status ---- */

static cJSON *node_status_nat(struct node *n)
{
	cJSON *o = cJSON_CreateObject();
	const struct link *best = NULL;
	char buf[ADDR_STRLEN];
	size_t i;

	for (i = 0; i < n->n_links && !best; i++)
		if (addr_is_set(&link_shell_link(n->links[i])->mapping[0]))
			best = link_shell_link(n->links[i]);
	if (!best && n->n_links)
		best = link_shell_link(n->links[0]);
	if (best && addr_is_set(&best->mapping[0]))
		cJSON_AddStringToObject(o, "mapping", addr_format(&best->mapping[0], buf));
	else
		cJSON_AddNullToObject(o, "mapping");
	if (best && addr_is_set(&best->mapping[1]))
		cJSON_AddStringToObject(o, "mapping_port1", addr_format(&best->mapping[1], buf));
	else
		cJSON_AddNullToObject(o, "mapping_port1");
	cJSON_AddStringToObject(o, "mapping_type", best ? link_mapping_type(best) : "unknown");
	cJSON_AddStringToObject(o, "filter",
				proto_filter_name(best ? best->filter : PROTO_FILTER_UNKNOWN));
	return o;
}

/* One "counters" object for the node: every link's summed (and those a reload closed), then
 * the paths'. Names are the tables' (docs/status-json.md). */
static cJSON *node_status_counters(const struct node *n)
{
	struct link_counters lc = n->gone_link;
	struct link_shell_counters sc = n->gone_link_shell;
	cJSON *o = cJSON_CreateObject();
	size_t i;

	for (i = 0; i < n->n_links; i++) {
		add_counters(&link_counters_table, &lc, &link_shell_link(n->links[i])->counters);
		add_counters(&link_shell_counters_table, &sc, link_shell_counters(n->links[i]));
	}
	if (!o || !status_add_counters(o, &link_counters_table, &lc) ||
	    !status_add_counters(o, &link_shell_counters_table, &sc) ||
	    !status_add_counters(o, &paths_counters_table, paths_shell_engine_counters(n->paths)) ||
	    !status_add_counters(o, &paths_shell_counters_table, paths_shell_counters(n->paths))) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

cJSON *node_status(struct node *n)
{
	const struct wg_device *dev = paths_shell_device(n->paths);
	cJSON *o = cJSON_CreateObject(), *arr;
	char k[KEY_B64_LEN + 1];
	size_t i;

	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "role", "node");
	cJSON_AddStringToObject(o, "interface", n->conf->node.interface);
	cJSON_AddStringToObject(o, "backend", paths_shell_backend(n->paths));
	if (dev) {
		key_to_base64(k, dev->public_key);
		cJSON_AddStringToObject(o, "public_key", k);
		cJSON_AddNumberToObject(o, "listen_port", dev->listen_port);
	} else {
		cJSON_AddNullToObject(o, "public_key");
		cJSON_AddNullToObject(o, "listen_port");
	}
	cJSON_AddItemToObject(o, "nat", node_status_nat(n));

	arr = cJSON_AddArrayToObject(o, "coordinators");
	for (i = 0; arr && i < n->n_links; i++)
		cJSON_AddItemToArray(arr, link_shell_status(n->links[i]));

	cJSON_AddItemToObject(o, "peers", paths_shell_status_peers(n->paths));
	cJSON_AddItemToObject(o, "counters", node_status_counters(n));
	return o;
}

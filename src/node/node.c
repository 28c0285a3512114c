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
#include <linux/capability.h>
#include <stdlib.h>
#include <string.h>

#include "wgpunch/caps.h"
#include "wgpunch/ifmon.h"
#include "wgpunch/link_shell.h"
#include "wgpunch/log.h"
#include "wgpunch/metrics.h"
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
	struct metrics_file *metrics; /* NULL: no metrics_file */
	bool caps_dropped;

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
	/* The last write, while every piece still has its counters. */
	metrics_file_stop(n->metrics);
	n->metrics = NULL;
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

/*
 * Least privilege, once the first device read told the backend and the fwmark: the raw probe
 * socket and rtnetlink are open by then. Kernel WireGuard is read and written over generic
 * netlink, which needs CAP_NET_ADMIN, as does SO_MARK on the session sockets opened later
 * (DNS, re-keys) and on the probe socket. A userspace backend without a fwmark needs nothing:
 * the UAPI socket belongs to root, as the node does. A fwmark set only later then cannot be
 * followed (logged as such); restarting the node picks it up.
 */
static void node_drop_caps(struct node *n, const struct wg_device *dev)
{
	static const int admin[] = { CAP_NET_ADMIN };
	bool kernel = strcmp(paths_shell_backend(n->paths), "kernel") == 0;
	bool need_admin = kernel || dev->fwmark;
	int r;

	n->caps_dropped = true;
	r = caps_keep_only(admin, need_admin ? 1 : 0);
	if (r < 0)
		log_warn_errno(r, "cannot drop capabilities; running with those it started with");
	else
		log_debug("capabilities dropped; kept: %s", need_admin ? "CAP_NET_ADMIN" : "none");
}

static void node_on_device(void *arg, const struct wg_device *dev,
			   const struct paths_shell_changes *ch)
{
	struct node *n = arg;
	size_t i;

	for (i = 0; i < n->n_links; i++) {
		link_shell_activity(n->links[i], ch->active);
		if (ch->first || ch->port)
			link_shell_set_fwmark(n->links[i], dev->fwmark);
		/* A new identity needs a new session. */
		if (ch->first || ch->key)
			link_shell_set_identity(n->links[i], dev->private_key);
		else if (ch->port || ch->peers || ch->lan)
			link_shell_register(n->links[i], ch->port);
	}
	if (ch->first && !n->caps_dropped)
		node_drop_caps(n, dev);
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

static void node_render_metrics(void *arg, struct metrics_buf *b);

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
	r = metrics_file_start(loop, conf->metrics_file, node_render_metrics, n, &n->metrics);
	if (r < 0)
		goto fail;
	*out = n;
	return 0;
fail:
	node_stop(n);
	return r;
}

/* A new metrics_file: the old one gets its last write, the new one starts. */
static void node_reload_metrics(struct node *n, const struct config *conf)
{
	const char *old = n->metrics ? metrics_file_path(n->metrics) : NULL;

	if ((!old && !conf->metrics_file) ||
	    (old && conf->metrics_file && strcmp(old, conf->metrics_file) == 0))
		return;
	metrics_file_stop(n->metrics);
	n->metrics = NULL;
	if (metrics_file_start(n->loop, conf->metrics_file, node_render_metrics, n, &n->metrics) <
	    0)
		log_warn("the metrics file is not written until the next restart");
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
	node_reload_metrics(n, conf);
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

/* Every link's counters summed, and those a reload closed: counters only ever grow. */
static void node_sum_counters(const struct node *n, struct link_counters *lc,
			      struct link_shell_counters *sc)
{
	size_t i;

	*lc = n->gone_link;
	*sc = n->gone_link_shell;
	for (i = 0; i < n->n_links; i++) {
		add_counters(&link_counters_table, lc, &link_shell_link(n->links[i])->counters);
		add_counters(&link_shell_counters_table, sc, link_shell_counters(n->links[i]));
	}
}

/* Every counter table of the node with its struct: every link's summed into lc and sc (and
 * those a reload closed), then the paths'. The one list that the status document and the
 * metrics file walk; names are the tables' (docs/status-json.md). */
#define NODE_COUNTER_GROUPS 4
static void node_counter_groups(const struct node *n, struct link_counters *lc,
				struct link_shell_counters *sc,
				struct counter_group g[NODE_COUNTER_GROUPS])
{
	node_sum_counters(n, lc, sc);
	g[0] = (struct counter_group){ &link_counters_table, lc };
	g[1] = (struct counter_group){ &link_shell_counters_table, sc };
	g[2] = (struct counter_group){ &paths_counters_table,
				       paths_shell_engine_counters(n->paths) };
	g[3] = (struct counter_group){ &paths_shell_counters_table,
				       paths_shell_counters(n->paths) };
}

static cJSON *node_status_counters(const struct node *n)
{
	struct counter_group g[NODE_COUNTER_GROUPS];
	struct link_counters lc;
	struct link_shell_counters sc;
	cJSON *o = cJSON_CreateObject();
	size_t i;

	node_counter_groups(n, &lc, &sc, g);
	for (i = 0; o && i < NODE_COUNTER_GROUPS; i++) {
		if (!status_add_counters(o, g[i].table, g[i].base)) {
			cJSON_Delete(o);
			return NULL;
		}
	}
	return o;
}

static uint64_t node_now_ms(void)
{
	return uv_hrtime() / 1000000u; /* the clock the paths shell feeds the engine */
}

/* What the paths engine needs to know of the links to explain a peer. */
static void node_links_view(const struct node *n, struct paths_links_view *v)
{
	size_t i;

	v->n_up = 0;
	v->per_destination = false;
	v->relay = n->conf->node.relay;
	for (i = 0; i < n->n_links; i++) {
		const struct link *l = link_shell_link(n->links[i]);

		if (l->state != LINK_UP)
			continue;
		v->n_up++;
		if (l->nat_type == 2)
			v->per_destination = true;
	}
}

/* The reason fields of one peer's status entry (docs/status-json.md, "Reasons"). */
static void node_status_reason(cJSON *po, const struct paths_peer *p,
			       const struct paths_links_view *v, uint64_t now)
{
	struct paths_explain ex;
	char text[512], buf[ADDR_STRLEN];
	cJSON *c;

	if (paths_explain(p, v, now, &ex) == PATHS_REASON_NONE) {
		cJSON_AddNullToObject(po, "reason");
		cJSON_AddNullToObject(po, "reason_text");
		cJSON_AddNullToObject(po, "reason_since");
		cJSON_AddNullToObject(po, "reason_candidate");
		return;
	}
	if (ex.reason == PATHS_REASON_ATTEMPT && ex.cand)
		snprintf(text, sizeof(text), "%s since %llu s: candidate %u of %u, %s %s",
			 paths_reason_text(ex.reason), (unsigned long long)(ex.since_ms / 1000),
			 ex.cand_no, ex.n_cands, node_path_name(ex.cand->path),
			 addr_format(&ex.cand->addr, buf));
	else if (ex.reason == PATHS_REASON_NO_HANDSHAKE)
		snprintf(text, sizeof(text), "%s (%u tried)", paths_reason_text(ex.reason),
			 ex.n_cands);
	else
		snprintf(text, sizeof(text), "%s", paths_reason_text(ex.reason));
	cJSON_AddStringToObject(po, "reason", paths_reason_name(ex.reason));
	cJSON_AddStringToObject(po, "reason_text", text);
	if (ex.reason == PATHS_REASON_ATTEMPT)
		cJSON_AddNumberToObject(po, "reason_since", (double)(ex.since_ms / 1000));
	else
		cJSON_AddNullToObject(po, "reason_since");
	if (!ex.cand) {
		cJSON_AddNullToObject(po, "reason_candidate");
		return;
	}
	c = cJSON_AddObjectToObject(po, "reason_candidate");
	cJSON_AddStringToObject(c, "endpoint", addr_format(&ex.cand->addr, buf));
	cJSON_AddStringToObject(c, "path", node_path_name(ex.cand->path));
	cJSON_AddNumberToObject(c, "index", ex.cand_no);
	cJSON_AddNumberToObject(c, "of", ex.n_cands);
}

/* The peers array of the paths shell, with every entry's reason added. */
static cJSON *node_status_peers(const struct node *n)
{
	const struct paths *ps = paths_shell_engine(n->paths);
	cJSON *arr = paths_shell_status_peers(n->paths), *po;
	struct paths_links_view v;
	uint64_t now = node_now_ms();
	char k[KEY_B64_LEN + 1];
	size_t i = 0;

	node_links_view(n, &v);
	cJSON_ArrayForEach(po, arr)
	{
		/* The array is the table in order; the key check keeps a mismatch visible. */
		if (i >= ps->n)
			break;
		const char *pk =
			cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(po, "public_key"));

		key_to_base64(k, ps->peers[i].m.key);
		if (pk && strcmp(pk, k) == 0)
			node_status_reason(po, &ps->peers[i], &v, now);
		i++;
	}
	return arr;
}

/* ---- metrics ---- */

static void node_render_metrics(void *arg, struct metrics_buf *b)
{
	static const enum node_path paths[] = { NODE_PATH_NONE, NODE_PATH_LAN, NODE_PATH_DIRECT,
						NODE_PATH_IPV6, NODE_PATH_RELAY };
	static const enum link_state states[] = { LINK_RESOLVING, LINK_HANDSHAKING, LINK_UP };
	const struct node *n = arg;
	const struct paths *ps = paths_shell_engine(n->paths);
	unsigned int by_reason[PATHS_REASON_COUNT] = { 0 };
	struct link_counters lc;
	struct link_shell_counters sc;
	struct paths_links_view v;
	struct paths_explain ex;
	uint64_t now = node_now_ms();
	size_t i, j, cnt;

	struct counter_group g[NODE_COUNTER_GROUPS];

	node_counter_groups(n, &lc, &sc, g);
	for (i = 0; i < NODE_COUNTER_GROUPS; i++)
		metrics_add_counters(b, g[i].table, g[i].base);

	metrics_gauge_begin(b, "node_peers", "WireGuard peers of the interface, by path");
	for (j = 0; j < sizeof(paths) / sizeof(paths[0]); j++) {
		for (i = 0, cnt = 0; i < ps->n; i++)
			cnt += ps->peers[i].m.path == paths[j];
		metrics_gauge_sample(b, "node_peers", "path", node_path_name(paths[j]),
				     (double)cnt);
	}
	node_links_view(n, &v);
	for (i = 0; i < ps->n; i++)
		by_reason[paths_explain(&ps->peers[i], &v, now, &ex)]++;
	metrics_gauge_begin(b, "node_peers_not_connected",
			    "peers without a path, by reason (docs/status-json.md)");
	for (j = PATHS_REASON_NONE + 1; j < PATHS_REASON_COUNT; j++)
		metrics_gauge_sample(b, "node_peers_not_connected", "reason",
				     paths_reason_name((enum paths_reason)j), by_reason[j]);
	metrics_gauge_begin(b, "node_coordinator_sessions",
			    "coordinator links (one per coordinator line), by session state");
	for (j = 0; j < sizeof(states) / sizeof(states[0]); j++) {
		for (i = 0, cnt = 0; i < n->n_links; i++)
			cnt += link_shell_link(n->links[i])->state == states[j];
		metrics_gauge_sample(b, "node_coordinator_sessions", "state",
				     link_state_name(states[j]), (double)cnt);
	}
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

	cJSON_AddItemToObject(o, "peers", node_status_peers(n));
	cJSON_AddItemToObject(o, "counters", node_status_counters(n));
	return o;
}

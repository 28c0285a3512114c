// SPDX-License-Identifier: MIT
/*
 * node_iface - the node's WireGuard interface and its peers' paths.
 *
 * The device is read every 250 ms while a path attempt is open and every
 * 5 s otherwise; each read drives the per-peer state machines (node_peer.c)
 * and notices changed peers, port, fwmark or LAN addresses, which node.c
 * has the coordinators register again at once. A PUNCH is carried out with
 * one write of two updates for the peer: keepalive 0, then endpoint and
 * keepalive N. The 0 -> N change makes WireGuard send a keepalive at once,
 * which starts its handshake; the PUNCH_ACK leaves as soon as that write
 * completes. The second side of a pair whose candidate the first side's
 * initiation reaches directly (LAN, or no NAT here) writes the endpoint with
 * keepalive 0 and kicks only if no handshake came within about 200 ms
 * (node_peer.h): two initiations that cross are both lost, and WireGuard
 * retries only after 5 s.
 *
 * A PUNCH can be lost, and then a peer has no path and nothing coming. A
 * peer with no path and no PUNCH asks for one (REGISTER with RESYNC) after
 * 2 s, and again after twice as long each time, up to the 20 s refresh.
 */
#include "wgpunch/node_iface.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "wgpunch/log.h"
#include "wgpunch/node_rdv.h"

#define POLL_FAST_MS 250
#define POLL_ERROR_LOG_MS 60000

/* A queued endpoint write, until wg calls back (or wg_close() drops it). */
struct node_iface_op {
	struct node_iface_op *next;
	struct node_iface *ifc;
	unsigned int coord_id;
	uint32_t attempt;
	bool ack;
};

static int64_t wall_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec;
}

static struct node_peer *iface_find_peer(struct node_iface *ifc, const uint8_t key[KEY_LEN])
{
	size_t i;

	for (i = 0; i < ifc->n_peers; i++)
		if (memcmp(ifc->peers[i].key, key, KEY_LEN) == 0)
			return &ifc->peers[i];
	return NULL;
}

static void iface_obs(const struct node_iface *ifc, const uint8_t key[KEY_LEN],
		      struct node_peer_obs *o)
{
	const struct wg_peer *wp = ifc->dev ? wg_device_find_peer(ifc->dev, key) : NULL;

	memset(o, 0, sizeof(*o));
	o->wall_now_s = wall_now_s();
	if (!wp)
		return;
	o->endpoint = wp->endpoint;
	o->keepalive_s = wp->keepalive_s;
	o->handshake_s = wp->last_handshake_s;
	o->handshake_ns = wp->last_handshake_ns;
}

/* ---- lifetime ---- */

int node_iface_open(struct node_iface *ifc, struct node *n, uv_loop_t *loop,
		    const struct config *conf)
{
	const struct config_node *cn = &conf->node;
	char err[256] = "";
	int r;

	ifc->node = n;
	ifc->conf = conf;
	ifc->prober.fd4 = -1;
	r = wg_open(loop, cn->interface, cn->backend, &ifc->wg, err, sizeof(err));
	if (r < 0) {
		if (err[0])
			log_err("%s", err);
		else
			log_err_errno(r, "cannot open WireGuard interface %s", cn->interface);
		return r;
	}
	/* Port and fwmark follow once the device is read; opening now makes a missing
	 * capability a start-up failure with a clear message. */
	r = prober_open(&ifc->prober, 0, 0);
	if (r < 0) {
		log_err_errno(r, "cannot open the raw probe socket (needs CAP_NET_RAW)");
		wg_close(ifc->wg);
		ifc->wg = NULL;
		return r;
	}
	uv_timer_init(loop, &ifc->poll_timer);
	ifc->poll_timer.data = ifc;
	uv_timer_init(loop, &ifc->resync_timer);
	ifc->resync_timer.data = ifc;
	return 0;
}

unsigned int node_iface_close(struct node_iface *ifc, uv_close_cb closed)
{
	ifc->stopping = true;
	/* Queued writes end silently; their ops are freed with the node. */
	wg_close(ifc->wg);
	ifc->wg = NULL;
	prober_close(&ifc->prober);
	uv_close((uv_handle_t *)&ifc->poll_timer, closed);
	uv_close((uv_handle_t *)&ifc->resync_timer, closed);
	return 2;
}

void node_iface_free(struct node_iface *ifc)
{
	struct node_iface_op *op, *next;

	for (op = ifc->ops; op; op = next) {
		next = op->next;
		free(op);
	}
	wg_device_free(ifc->dev);
	free(ifc->peers);
}

/* ---- writing endpoints ---- */

static void iface_on_set_done(struct wg *wg, int status, void *arg)
{
	struct node_iface_op *op = arg, **pp;
	struct node_iface *ifc = op->ifc;
	struct node_coord *c;

	for (pp = &ifc->ops; *pp; pp = &(*pp)->next) {
		if (*pp == op) {
			*pp = op->next;
			break;
		}
	}
	if (status < 0) {
		node_counters(ifc->node)->wg_errors++;
		log_warn_errno(status, "writing a peer endpoint on %s failed",
			       ifc->conf->node.interface);
	}
	/* Ack even after a failure: the other side need not wait 500 ms for nothing. */
	c = op->ack ? node_find_coord(ifc->node, op->coord_id) : NULL;
	if (c)
		node_rdv_send_punch_ack(c, op->attempt);
	free(op);
}

/* Queues the updates; the PUNCH_ACK for attempt goes to c (if ack) once wg is done.
 * 0 or -errno. */
static int iface_set(struct node_iface *ifc, const struct wg_peer_update *u, size_t n,
		     struct node_coord *c, uint32_t attempt, bool ack)
{
	struct node_iface_op *op = calloc(1, sizeof(*op));
	int r;

	if (!op)
		return -ENOMEM;
	op->ifc = ifc;
	op->coord_id = c ? c->id : 0;
	op->attempt = attempt;
	op->ack = c && ack;
	r = wg_set_peers(ifc->wg, u, n, iface_on_set_done, op);
	if (r < 0) {
		free(op);
		return r;
	}
	op->next = ifc->ops;
	ifc->ops = op;
	return 0;
}

/*
 * Writes the current candidate. kick: keepalive 0, then endpoint and keepalive N (the change
 * from 0 makes WireGuard send, and handshake, at once). Quiet: endpoint with keepalive 0,
 * which sends nothing; iface_kick() follows unless a handshake comes first.
 */
static void iface_write_candidate(struct node_iface *ifc, struct node_peer *p, struct node_coord *c,
				  uint32_t attempt, bool ack, bool kick)
{
	const struct node_peer_cand *cand = node_peer_candidate(p);
	struct wg_peer_update u[2];
	char a[ADDR_STRLEN], k[KEY_SHORT_LEN];
	size_t n = 0;
	int r;

	if (!cand)
		return;
	memset(u, 0, sizeof(u));
	if (kick) {
		memcpy(u[n].public_key, p->key, KEY_LEN);
		u[n].flags = WG_UPDATE_KEEPALIVE;
		u[n].keepalive_s = 0;
		n++;
	}
	memcpy(u[n].public_key, p->key, KEY_LEN);
	u[n].flags = WG_UPDATE_ENDPOINT | WG_UPDATE_KEEPALIVE;
	u[n].endpoint = cand->addr;
	u[n].keepalive_s = kick ? ifc->conf->node.keepalive_s : 0;
	n++;

	if (kick)
		log_info("punching peer %s via %s (%s, candidate %u of %u)", key_short(p->key, k),
			 addr_format(&cand->addr, a), node_path_name(cand->path), p->cur + 1u,
			 p->n_cands);
	else
		log_info("punching peer %s via %s (%s, candidate %u of %u), kick in %u ms unless "
			 "its handshake comes first",
			 key_short(p->key, k), addr_format(&cand->addr, a),
			 node_path_name(cand->path), p->cur + 1u, p->n_cands,
			 (unsigned int)(node_peer_kick_due(p) - node_now_ms()));
	r = iface_set(ifc, u, n, c, attempt, ack);
	if (r < 0) {
		node_counters(ifc->node)->wg_errors++;
		log_warn_errno(r, "cannot write the endpoint of peer %s", k);
		if (c && ack)
			node_rdv_send_punch_ack(c, attempt);
		return;
	}
	node_counters(ifc->node)->endpoint_writes++;
}

/*
 * Keepalive 0, then N: a deferred kick, or the keepalive a quiet write left at 0. With a
 * session up WireGuard only sends a keepalive; within 5 s of its last initiation or response
 * it starts no new initiation either, so this cannot cross a handshake under way.
 */
static void iface_kick(struct node_iface *ifc, struct node_peer *p)
{
	struct wg_peer_update u[2];
	char k[KEY_SHORT_LEN];
	int r;

	memset(u, 0, sizeof(u));
	memcpy(u[0].public_key, p->key, KEY_LEN);
	u[0].flags = WG_UPDATE_KEEPALIVE;
	u[0].keepalive_s = 0;
	memcpy(u[1].public_key, p->key, KEY_LEN);
	u[1].flags = WG_UPDATE_KEEPALIVE;
	u[1].keepalive_s = ifc->conf->node.keepalive_s;
	r = iface_set(ifc, u, 2, NULL, 0, false);
	if (r < 0) {
		node_counters(ifc->node)->wg_errors++;
		log_warn_errno(r, "cannot write the keepalive of peer %s", key_short(p->key, k));
	}
}

static void iface_on_resync_timer(uv_timer_t *t);

/* Arms the RESYNC timer for the first peer that will want one. */
static void iface_schedule_resync(struct node_iface *ifc)
{
	uint64_t due = UINT64_MAX, now = node_now_ms(), d;
	size_t i;

	if (ifc->stopping)
		return;
	for (i = 0; i < ifc->n_peers; i++) {
		d = node_peer_resync_due(&ifc->peers[i]);
		if (d < due)
			due = d;
	}
	if (due == UINT64_MAX)
		uv_timer_stop(&ifc->resync_timer);
	else
		uv_timer_start(&ifc->resync_timer, iface_on_resync_timer, due > now ? due - now : 0,
			       0);
}

static void iface_on_resync_timer(uv_timer_t *t)
{
	struct node_iface *ifc = t->data;
	uint64_t now = node_now_ms();
	bool any = false, early = false;
	char k[KEY_SHORT_LEN];
	size_t i;

	for (i = 0; i < ifc->n_peers; i++) {
		struct node_peer *p = &ifc->peers[i];

		if (!node_peer_wants_resync(p, now))
			continue;
		/* While the backoff is below the refresh period, REGISTER now; after that the
		 * refresh carries the flag, so a peer that stays away costs no extra traffic. */
		if (p->resync_wait_ms < NODE_PEER_RESYNC_MS)
			early = true;
		log_debug("peer %s: no path, no punch for %u ms: asking for one (RESYNC)",
			  key_short(p->key, k), p->resync_wait_ms);
		node_peer_resync_asked(p, now);
		any = true;
	}
	if (any)
		node_resync_coords(ifc->node, early);
	iface_schedule_resync(ifc);
}

/* Carries out what a peer's state machine decided. */
static void iface_peer_act(struct node_iface *ifc, struct node_peer *p, enum node_peer_action act)
{
	char k[KEY_SHORT_LEN], a[ADDR_STRLEN];
	const struct node_peer_cand *cand;
	const struct wg_peer *wp;

	switch (act) {
	case NODE_PEER_NOTHING:
		return;
	case NODE_PEER_WRITE:
	case NODE_PEER_WRITE_QUIET:
		iface_write_candidate(ifc, p, NULL, 0, false, act == NODE_PEER_WRITE);
		return;
	case NODE_PEER_KICK:
		log_debug("peer %s: no handshake while the kick waited, kicking now",
			  key_short(p->key, k));
		iface_kick(ifc, p);
		return;
	case NODE_PEER_UP_KEEPALIVE:
		iface_kick(ifc, p);
		/* fall through */
	case NODE_PEER_UP_NOW:
		wp = wg_device_find_peer(ifc->dev, p->key);
		cand = node_peer_candidate(p);
		log_info("path to peer %s up: %s via %s", key_short(p->key, k),
			 node_path_name(p->path), addr_format(wp ? &wp->endpoint : &cand->addr, a));
		return;
	case NODE_PEER_GIVE_UP:
		log_info("no path to peer %s after %u candidates, waiting for the next punch",
			 key_short(p->key, k), p->n_cands);
		return;
	case NODE_PEER_DOWN:
		/* The RESYNC timer asks for a new punch at once (iface_schedule_resync). */
		log_info("path to peer %s down (no handshake for %d s), asking for a new punch",
			 key_short(p->key, k), NODE_PEER_STALE_S);
		return;
	}
}

static bool iface_any_attempt(const struct node_iface *ifc)
{
	size_t i;

	for (i = 0; i < ifc->n_peers; i++)
		if (node_peer_attempt_open(&ifc->peers[i]))
			return true;
	return false;
}

static void iface_on_poll_timer(uv_timer_t *t);

/* The next read: soon while an attempt is open, and when a deferred kick is due. */
static void iface_schedule_poll(struct node_iface *ifc)
{
	uint64_t delay = iface_any_attempt(ifc) ? POLL_FAST_MS : NODE_IFACE_POLL_SLOW_MS;
	uint64_t now = node_now_ms(), due;
	size_t i;

	if (ifc->stopping)
		return;
	for (i = 0; i < ifc->n_peers; i++) {
		due = node_peer_kick_due(&ifc->peers[i]);
		if (due == UINT64_MAX)
			continue;
		due = due > now ? due - now : 0;
		if (due < delay)
			delay = due;
	}
	uv_timer_start(&ifc->poll_timer, iface_on_poll_timer, delay, 0);
}

void node_iface_on_punch(struct node_iface *ifc, struct node_coord *c,
			 const struct proto_punch *punch)
{
	struct node_peer *p = iface_find_peer(ifc, punch->peer_key);
	bool ack = punch->flags & PROTO_PUNCH_F_ACK;
	struct node_peer_self self = {
		.mapping = c->mapping[0],
		.local = ifc->lan.addr,
		.n_local = ifc->lan.n,
		.rnd = randombytes_random(),
	};
	struct node_peer_obs obs;
	enum node_peer_action act;
	char k[KEY_SHORT_LEN], a[ADDR_STRLEN];

	node_counters(ifc->node)->punches++;
	if (!p || !ifc->dev) {
		node_counters(ifc->node)->punches_ignored++;
		log_debug("PUNCH for %s, not a peer of %s: ignored", key_short(punch->peer_key, k),
			  ifc->conf->node.interface);
		return;
	}
	iface_obs(ifc, p->key, &obs);
	act = node_peer_on_punch(p, punch, &self, &obs, node_now_ms());
	iface_schedule_resync(ifc);
	if (act == NODE_PEER_WRITE || act == NODE_PEER_WRITE_QUIET) {
		iface_write_candidate(ifc, p, c, punch->attempt, ack, act == NODE_PEER_WRITE);
		/* Watch for the handshake closely from now on (a pending read reschedules). */
		if (!ifc->get_pending)
			iface_schedule_poll(ifc);
		return;
	}
	if (act == NODE_PEER_UP_KEEPALIVE)
		iface_peer_act(ifc, p, act);
	else if (p->state == NODE_PEER_UP)
		log_info("punch for peer %s: path already up (%s via %s)", key_short(p->key, k),
			 node_path_name(p->path), addr_format(&obs.endpoint, a));
	else
		log_info("punch for peer %s without a usable candidate", key_short(p->key, k));
	if (ack)
		node_rdv_send_punch_ack(c, punch->attempt);
}

/* ---- the device ---- */

/* Rebuilds the peer table for the device's peers; true when the set of keys changed. */
static bool iface_sync_peers(struct node_iface *ifc, const struct wg_device *dev)
{
	struct node_peer *np, *old;
	bool changed = dev->n_peers != ifc->n_peers;
	uint64_t now = node_now_ms();
	size_t i;

	np = calloc(dev->n_peers ? dev->n_peers : 1, sizeof(*np));
	if (!np)
		return false; /* keep the old table; the next read tries again */
	for (i = 0; i < dev->n_peers; i++) {
		old = iface_find_peer(ifc, dev->peers[i].public_key);
		if (old) {
			np[i] = *old;
		} else {
			node_peer_init(&np[i], dev->peers[i].public_key, now);
			changed = true;
		}
	}
	free(ifc->peers);
	ifc->peers = np;
	ifc->n_peers = dev->n_peers;
	return changed;
}

void node_iface_fill_register(const struct node_iface *ifc, struct proto_register *reg)
{
	size_t i;

	reg->wg_port = ifc->dev ? ifc->dev->listen_port : 0;
	reg->n_lan = ifc->lan.n;
	memcpy(reg->lan, ifc->lan.addr, sizeof(ifc->lan.addr[0]) * ifc->lan.n);
	reg->n_peers = 0;
	for (i = 0; i < ifc->n_peers; i++) {
		if (reg->n_peers == PROTO_MAX_PEERS) {
			reg->flags |= PROTO_REG_F_MORE_PEERS;
			break;
		}
		reg->peers[reg->n_peers++] = key_fingerprint(ifc->peers[i].key);
	}
	/* RESYNC is added by node_rdv_register_now() when the RESYNC timer asked for it. */
}

static bool iface_first_device(struct node_iface *ifc, struct wg_device *dev)
{
	char k[KEY_B64_LEN + 1];
	int r;

	if (!dev->has_private_key) {
		log_err("WireGuard interface %s has no private key: set one, then start wgpunch",
			ifc->conf->node.interface);
		node_fail(ifc->node, -ENOKEY);
		return false;
	}
	r = prober_update(&ifc->prober, dev->listen_port, dev->fwmark);
	if (r < 0) {
		log_err_errno(r, "cannot set fwmark 0x%x on the probe socket (needs CAP_NET_ADMIN)",
			      dev->fwmark);
		node_fail(ifc->node, r);
		return false;
	}
	key_to_base64(k, dev->public_key);
	log_info("interface %s (%s): public key %s, listen port %u, %zu peers",
		 ifc->conf->node.interface, wg_backend_name(wg_backend_of(ifc->wg)), k,
		 dev->listen_port, dev->n_peers);
	return true;
}

static void iface_on_device(struct wg *wg, int status, struct wg_device *dev, void *arg)
{
	struct node_iface *ifc = arg;
	struct wg_device *old = ifc->dev;
	struct node_iface_changes ch = { .first = old == NULL };
	uint64_t now = node_now_ms();
	size_t i;

	ifc->get_pending = false;
	if (status < 0 || !dev) {
		if (ch.first) {
			log_err_errno(status, "cannot read WireGuard interface %s",
				      ifc->conf->node.interface);
			node_fail(ifc->node, status < 0 ? status : -EIO);
			return;
		}
		node_counters(ifc->node)->wg_errors++;
		if (!ifc->last_poll_error_ms ||
		    now - ifc->last_poll_error_ms >= POLL_ERROR_LOG_MS) {
			ifc->last_poll_error_ms = now;
			log_warn_errno(status, "cannot read WireGuard interface %s, retrying",
				       ifc->conf->node.interface);
		}
		iface_schedule_poll(ifc);
		return;
	}
	ifc->last_poll_error_ms = 0;
	ifc->dev = dev;
	if (ch.first && !iface_first_device(ifc, dev))
		return;
	if (old) {
		ch.port = old->listen_port != dev->listen_port || old->fwmark != dev->fwmark;
		ch.key = memcmp(old->private_key, dev->private_key, KEY_LEN) != 0;
		wg_device_free(old);
	}
	ch.peers = iface_sync_peers(ifc, dev);
	/* The first read and a new port need fresh addresses (they carry the port); anything
	 * else ifmon reports, unless it is not running. */
	if (ch.first || ch.port || !ifc->lan_watched)
		ch.lan = node_lan_refresh(&ifc->lan, ifc->conf->node.interface, dev);

	if (ch.port) {
		int r = prober_update(&ifc->prober, dev->listen_port, dev->fwmark);

		if (r < 0)
			log_warn_errno(r, "cannot follow the new port or fwmark of %s",
				       ifc->conf->node.interface);
		else
			log_info("interface %s: listen port %u, fwmark 0x%x",
				 ifc->conf->node.interface, dev->listen_port, dev->fwmark);
	}
	node_on_device(ifc->node, dev, &ch);

	for (i = 0; i < ifc->n_peers; i++) {
		struct node_peer *p = &ifc->peers[i];
		struct node_peer_obs obs;

		iface_obs(ifc, p->key, &obs);
		iface_peer_act(ifc, p, node_peer_on_poll(p, &obs, now, obs.keepalive_s > 0));
	}
	iface_schedule_poll(ifc);
	iface_schedule_resync(ifc);
}

static void iface_poll(struct node_iface *ifc)
{
	int r;

	if (ifc->get_pending || ifc->stopping)
		return;
	r = wg_get_device(ifc->wg, iface_on_device, ifc);
	if (r < 0) {
		node_counters(ifc->node)->wg_errors++;
		log_warn_errno(r, "cannot queue a read of %s", ifc->conf->node.interface);
		iface_schedule_poll(ifc);
		return;
	}
	ifc->get_pending = true;
}

static void iface_on_poll_timer(uv_timer_t *t)
{
	iface_poll(t->data);
}

int node_iface_start(struct node_iface *ifc)
{
	int r = wg_get_device(ifc->wg, iface_on_device, ifc);

	if (r < 0)
		return log_err_errno(r, "cannot read WireGuard interface %s",
				     ifc->conf->node.interface);
	ifc->get_pending = true;
	return 0;
}

static void iface_on_keepalive_set(struct wg *wg, int status, void *arg)
{
	struct node_iface *ifc = arg;

	if (status < 0) {
		node_counters(ifc->node)->wg_errors++;
		log_warn_errno(status, "cannot write the new keepalive on %s",
			       ifc->conf->node.interface);
	}
}

void node_iface_reload(struct node_iface *ifc, const struct config *conf)
{
	const struct config_node *cn = &conf->node, *on = &ifc->conf->node;
	size_t i;

	/* A new keepalive applies to the peers we set up. */
	if (cn->keepalive_s != on->keepalive_s && ifc->wg) {
		for (i = 0; i < ifc->n_peers; i++) {
			struct wg_peer_update u = { .flags = WG_UPDATE_KEEPALIVE };

			if (ifc->peers[i].state != NODE_PEER_UP &&
			    ifc->peers[i].state != NODE_PEER_TRYING)
				continue;
			/* A deferred kick writes the new keepalive itself; now would kick early. */
			if (node_peer_kick_due(&ifc->peers[i]) != UINT64_MAX)
				continue;
			memcpy(u.public_key, ifc->peers[i].key, KEY_LEN);
			u.keepalive_s = cn->keepalive_s;
			if (wg_set_peers(ifc->wg, &u, 1, iface_on_keepalive_set, ifc) < 0)
				node_counters(ifc->node)->wg_errors++;
		}
	}
	ifc->conf = conf;
}
/* ---- status ---- */

cJSON *node_iface_status_peers(const struct node_iface *ifc)
{
	cJSON *arr = cJSON_CreateArray();
	char k[KEY_B64_LEN + 1], buf[ADDR_STRLEN];
	size_t i;

	for (i = 0; arr && i < ifc->n_peers; i++) {
		const struct node_peer *p = &ifc->peers[i];
		const struct wg_peer *wp = ifc->dev ? wg_device_find_peer(ifc->dev, p->key) : NULL;
		cJSON *po = cJSON_CreateObject();

		key_to_base64(k, p->key);
		cJSON_AddStringToObject(po, "public_key", k);
		cJSON_AddStringToObject(po, "path", node_path_name(p->path));
		cJSON_AddStringToObject(po, "endpoint",
					addr_format(wp ? &wp->endpoint : &(struct addr){ 0 }, buf));
		cJSON_AddNumberToObject(po, "latest_handshake",
					wp ? (double)wp->last_handshake_s : 0);
		cJSON_AddNumberToObject(po, "keepalive", wp ? wp->keepalive_s : 0);
		cJSON_AddItemToArray(arr, po);
	}
	return arr;
}

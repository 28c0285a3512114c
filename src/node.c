// SPDX-License-Identifier: MIT
/*
 * node - the node role: the WireGuard device, its peers' paths, and the
 * sessions with the coordinators (node_coord.c).
 *
 * The device is read every 250 ms while a path attempt is open and every
 * 5 s otherwise; each read drives the per-peer state machines (node_peer.c)
 * and notices changed peers, port, fwmark or LAN addresses, which are
 * registered again at once. A PUNCH is carried out with one write of two
 * updates for the peer: keepalive 0, then endpoint and keepalive N. The
 * 0 -> N change makes WireGuard send a keepalive at once, which starts its
 * handshake; the PUNCH_ACK leaves as soon as that write completes.
 *
 * rtnetlink (ifmon.c) says when local addresses or links change: the LAN
 * addresses are read again and the mapping probed again at once, since a new
 * uplink is a new mapping, which the coordinator pushes to the peers. The
 * device read and the 20 s refresh still notice what it might miss.
 *
 * A PUNCH can be lost, and then a peer has no path and nothing coming. A
 * peer with no path and no PUNCH asks for one (REGISTER with RESYNC) after
 * 2 s, and again after twice as long each time, up to the 20 s refresh.
 */
#include "wgpunch/node.h"

#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wgpunch/ifmon.h"
#include "wgpunch/log.h"
#include "wgpunch/node_coord.h"
#include "wgpunch/node_peer.h"
#include "wgpunch/prober.h"
#include "wgpunch/wg.h"

#define POLL_FAST_MS 250
#define POLL_SLOW_MS 5000
#define POLL_ERROR_LOG_MS 60000

/* A queued endpoint write, until wg calls back (or wg_close() drops it). */
struct node_set_op {
	struct node_set_op *next;
	struct node *n;
	unsigned int coord_id;
	uint32_t attempt;
	bool ack;
};

struct node {
	uv_loop_t *loop;
	const struct config *conf;
	node_fatal_cb fatal;
	void *fatal_arg;
	struct wg *wg;
	struct prober prober;
	struct wg_device *dev; /* the last read; NULL until the first */
	bool get_pending;
	bool stopping;
	uv_timer_t poll_timer;
	uv_timer_t resync_timer;
	uint64_t last_poll_error_ms;
	struct ifmon *ifmon; /* NULL when rtnetlink is not available */

	struct node_peer *peers; /* one per device peer, same keys */
	size_t n_peers;
	struct node_coord **coords;
	size_t n_coords;
	unsigned int next_coord_id;
	struct node_set_op *ops;

	struct addr lan[PROTO_MAX_LAN];
	uint8_t n_lan;
	bool lan_known; /* read once already */
	struct node_counters counters;
	unsigned int closing;
};

uint64_t node_now_ms(void)
{
	return uv_hrtime() / 1000000u;
}

static int64_t wall_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec;
}

const struct wg_device *node_device(const struct node *n)
{
	return n->dev;
}

struct prober *node_prober(struct node *n)
{
	return &n->prober;
}

struct node_counters *node_counters(struct node *n)
{
	return &n->counters;
}

static struct node_peer *node_find_peer(struct node *n, const uint8_t key[KEY_LEN])
{
	size_t i;

	for (i = 0; i < n->n_peers; i++)
		if (memcmp(n->peers[i].key, key, KEY_LEN) == 0)
			return &n->peers[i];
	return NULL;
}

static struct node_coord *node_find_coord(struct node *n, unsigned int id)
{
	size_t i;

	for (i = 0; i < n->n_coords; i++)
		if (n->coords[i]->id == id)
			return n->coords[i];
	return NULL;
}

static void node_obs(const struct node *n, const uint8_t key[KEY_LEN], struct node_peer_obs *o)
{
	const struct wg_peer *wp = n->dev ? wg_device_find_peer(n->dev, key) : NULL;

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

static void node_free(struct node *n)
{
	struct node_set_op *op, *next;

	for (op = n->ops; op; op = next) {
		next = op->next;
		free(op);
	}
	wg_device_free(n->dev);
	free(n->peers);
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

static void node_on_handle_closed(uv_handle_t *h)
{
	node_release(h->data);
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
	/* Queued writes end silently; their ops are freed with the node. */
	wg_close(n->wg);
	n->wg = NULL;
	prober_close(&n->prober);
	if (n->ifmon) {
		n->closing++;
		ifmon_close(n->ifmon);
		n->ifmon = NULL;
	}
	n->closing += 2;
	uv_close((uv_handle_t *)&n->poll_timer, node_on_handle_closed);
	uv_close((uv_handle_t *)&n->resync_timer, node_on_handle_closed);
	node_release(n);
}

static void node_fail(struct node *n, int err)
{
	/* The callback stops us (node_stop); nothing may touch n after it returns. */
	n->fatal(n->fatal_arg, err);
}

/* ---- writing endpoints ---- */

static void node_on_set_done(struct wg *wg, int status, void *arg)
{
	struct node_set_op *op = arg, **pp;
	struct node *n = op->n;
	struct node_coord *c;

	for (pp = &n->ops; *pp; pp = &(*pp)->next) {
		if (*pp == op) {
			*pp = op->next;
			break;
		}
	}
	if (status < 0) {
		n->counters.wg_errors++;
		log_warn_errno(status, "writing a peer endpoint on %s failed",
			       n->conf->node.interface);
	}
	/* Ack even after a failure: the other side need not wait 500 ms for nothing. */
	c = op->ack ? node_find_coord(n, op->coord_id) : NULL;
	if (c)
		node_coord_send_punch_ack(c, op->attempt);
	free(op);
}

static void node_write_candidate(struct node *n, struct node_peer *p, struct node_coord *c,
				 uint32_t attempt, bool ack)
{
	const struct node_peer_cand *cand = node_peer_candidate(p);
	struct wg_peer_update u[2];
	struct node_set_op *op;
	char a[ADDR_STRLEN], k[KEY_SHORT_LEN];
	int r;

	if (!cand)
		return;
	memset(u, 0, sizeof(u));
	/* Keepalive 0, then N: the change from 0 makes WireGuard send (and handshake) at once. */
	memcpy(u[0].public_key, p->key, KEY_LEN);
	u[0].flags = WG_UPDATE_KEEPALIVE;
	u[0].keepalive_s = 0;
	memcpy(u[1].public_key, p->key, KEY_LEN);
	u[1].flags = WG_UPDATE_ENDPOINT | WG_UPDATE_KEEPALIVE;
	u[1].endpoint = cand->addr;
	u[1].keepalive_s = n->conf->node.keepalive_s;

	log_info("punching peer %s via %s (%s, candidate %u of %u)", key_short(p->key, k),
		 addr_format(&cand->addr, a), node_path_name(cand->path), p->cur + 1u, p->n_cands);
	op = calloc(1, sizeof(*op));
	if (op) {
		op->n = n;
		op->coord_id = c ? c->id : 0;
		op->attempt = attempt;
		op->ack = c && ack;
		r = wg_set_peers(n->wg, u, 2, node_on_set_done, op);
	} else {
		r = -ENOMEM;
	}
	if (r < 0) {
		free(op);
		n->counters.wg_errors++;
		log_warn_errno(r, "cannot write the endpoint of peer %s", k);
		if (c && ack)
			node_coord_send_punch_ack(c, attempt);
		return;
	}
	op->next = n->ops;
	n->ops = op;
	n->counters.endpoint_writes++;
}

static void node_on_resync_timer(uv_timer_t *t);

/* Arms the RESYNC timer for the first peer that will want one. */
static void node_schedule_resync(struct node *n)
{
	uint64_t due = UINT64_MAX, now = node_now_ms(), d;
	size_t i;

	if (n->stopping)
		return;
	for (i = 0; i < n->n_peers; i++) {
		d = node_peer_resync_due(&n->peers[i]);
		if (d < due)
			due = d;
	}
	if (due == UINT64_MAX)
		uv_timer_stop(&n->resync_timer);
	else
		uv_timer_start(&n->resync_timer, node_on_resync_timer, due > now ? due - now : 0,
			       0);
}

static void node_on_resync_timer(uv_timer_t *t)
{
	struct node *n = t->data;
	uint64_t now = node_now_ms();
	bool any = false, early = false;
	char k[KEY_SHORT_LEN];
	size_t i;

	for (i = 0; i < n->n_peers; i++) {
		struct node_peer *p = &n->peers[i];

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
	for (i = 0; any && i < n->n_coords; i++)
		node_coord_resync(n->coords[i], early);
	node_schedule_resync(n);
}

/* Carries out what a peer's state machine decided. */
static void node_peer_act(struct node *n, struct node_peer *p, enum node_peer_action act)
{
	char k[KEY_SHORT_LEN], a[ADDR_STRLEN];
	const struct node_peer_cand *cand;
	const struct wg_peer *wp;

	switch (act) {
	case NODE_PEER_NOTHING:
		return;
	case NODE_PEER_WRITE:
		node_write_candidate(n, p, NULL, 0, false);
		return;
	case NODE_PEER_UP_NOW:
		wp = wg_device_find_peer(n->dev, p->key);
		cand = node_peer_candidate(p);
		log_info("path to peer %s up: %s via %s", key_short(p->key, k),
			 node_path_name(p->path), addr_format(wp ? &wp->endpoint : &cand->addr, a));
		return;
	case NODE_PEER_GIVE_UP:
		log_info("no path to peer %s after %u candidates, waiting for the next punch",
			 key_short(p->key, k), p->n_cands);
		return;
	case NODE_PEER_DOWN:
		/* The RESYNC timer asks for a new punch at once (node_schedule_resync). */
		log_info("path to peer %s down (no handshake for %d s), asking for a new punch",
			 key_short(p->key, k), NODE_PEER_STALE_S);
		return;
	}
}

static bool node_any_attempt(const struct node *n)
{
	size_t i;

	for (i = 0; i < n->n_peers; i++)
		if (node_peer_attempt_open(&n->peers[i]))
			return true;
	return false;
}

static void node_on_poll_timer(uv_timer_t *t);

static void node_schedule_poll(struct node *n)
{
	if (n->stopping)
		return;
	uv_timer_start(&n->poll_timer, node_on_poll_timer,
		       node_any_attempt(n) ? POLL_FAST_MS : POLL_SLOW_MS, 0);
}

void node_on_punch(struct node *n, struct node_coord *c, const struct proto_punch *punch)
{
	struct node_peer *p = node_find_peer(n, punch->peer_key);
	bool ack = punch->flags & PROTO_PUNCH_F_ACK;
	struct node_peer_obs obs;
	enum node_peer_action act;
	char k[KEY_SHORT_LEN], a[ADDR_STRLEN];

	n->counters.punches++;
	if (!p || !n->dev) {
		n->counters.punches_ignored++;
		log_debug("PUNCH for %s, not a peer of %s: ignored", key_short(punch->peer_key, k),
			  n->conf->node.interface);
		return;
	}
	node_obs(n, p->key, &obs);
	act = node_peer_on_punch(p, punch, &c->mapping[0], &obs, node_now_ms());
	node_schedule_resync(n);
	if (act == NODE_PEER_WRITE) {
		node_write_candidate(n, p, c, punch->attempt, ack);
		/* Watch for the handshake closely from now on. */
		if (!n->get_pending)
			uv_timer_start(&n->poll_timer, node_on_poll_timer, POLL_FAST_MS, 0);
		return;
	}
	if (p->state == NODE_PEER_UP)
		log_info("punch for peer %s: path already up (%s via %s)", key_short(p->key, k),
			 node_path_name(p->path), addr_format(&obs.endpoint, a));
	else
		log_info("punch for peer %s without a usable candidate", key_short(p->key, k));
	if (ack)
		node_coord_send_punch_ack(c, punch->attempt);
}

/* ---- the device ---- */

/* Rebuilds the peer table for the device's peers; true when the set of keys changed. */
static bool node_sync_peers(struct node *n, const struct wg_device *dev)
{
	struct node_peer *np, *old;
	bool changed = dev->n_peers != n->n_peers;
	uint64_t now = node_now_ms();
	size_t i;

	np = calloc(dev->n_peers ? dev->n_peers : 1, sizeof(*np));
	if (!np)
		return false; /* keep the old table; the next read tries again */
	for (i = 0; i < dev->n_peers; i++) {
		old = node_find_peer(n, dev->peers[i].public_key);
		if (old) {
			np[i] = *old;
		} else {
			node_peer_init(&np[i], dev->peers[i].public_key, now);
			changed = true;
		}
	}
	free(n->peers);
	n->peers = np;
	n->n_peers = dev->n_peers;
	return changed;
}

/* IPv4 addresses of this host for peers on the same LAN: not the WireGuard interface's own
 * (they are inside the tunnel), not loopback or link-local. True when they changed. */
static bool node_refresh_lan(struct node *n)
{
	struct addr lan[PROTO_MAX_LAN];
	struct ifaddrs *ifa, *i;
	uint8_t cnt = 0, j;
	bool changed;

	if (getifaddrs(&ifa) < 0)
		return false;
	for (i = ifa; i && cnt < PROTO_MAX_LAN; i = i->ifa_next) {
		struct addr a;

		if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !(i->ifa_flags & IFF_UP) ||
		    !strcmp(i->ifa_name, n->conf->node.interface))
			continue;
		if (addr_from_sockaddr(&a, i->ifa_addr, sizeof(struct sockaddr_in)) < 0 ||
		    addr_is_loopback(&a) || addr_is_link_local(&a))
			continue;
		addr_set_port(&a, n->dev ? n->dev->listen_port : 0);
		for (j = 0; j < cnt; j++)
			if (addr_equal(&lan[j], &a))
				break;
		if (j == cnt)
			lan[cnt++] = a;
	}
	freeifaddrs(ifa);
	changed = cnt != n->n_lan;
	for (j = 0; !changed && j < cnt; j++)
		changed = !addr_equal(&lan[j], &n->lan[j]);
	memcpy(n->lan, lan, sizeof(lan[0]) * cnt);
	n->n_lan = cnt;
	if (changed && n->dev) {
		char list[PROTO_MAX_LAN * (ADDR_STRLEN + 1)] = "", a[ADDR_STRLEN];
		size_t used = 0;

		for (j = 0; j < cnt && used < sizeof(list); j++)
			used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s",
						 j ? " " : "", addr_format(&lan[j], a));
		if (n->lan_known)
			log_info("local addresses changed: %s, registering again",
				 cnt ? list : "none");
		else
			log_info("LAN addresses: %s", cnt ? list : "none");
	}
	n->lan_known = n->dev != NULL;
	return changed;
}

/* rtnetlink: addresses or links changed (debounced). */
static void node_on_ifmon(void *arg)
{
	struct node *n = arg;
	bool lan_changed;
	size_t i;

	if (n->stopping || !n->dev)
		return; /* the first device read reads the addresses */
	lan_changed = node_refresh_lan(n);
	if (!lan_changed)
		log_debug("local addresses or links changed, probing the mapping again");
	for (i = 0; i < n->n_coords; i++) {
		if (lan_changed)
			node_coord_register_now(n->coords[i], true);
		else
			node_coord_probe_now(n->coords[i]);
	}
}

void node_fill_register(struct node *n, struct proto_register *reg)
{
	size_t i;

	reg->wg_port = n->dev ? n->dev->listen_port : 0;
	reg->n_lan = n->n_lan;
	memcpy(reg->lan, n->lan, sizeof(n->lan[0]) * n->n_lan);
	reg->n_peers = 0;
	for (i = 0; i < n->n_peers; i++) {
		if (reg->n_peers == PROTO_MAX_PEERS) {
			reg->flags |= PROTO_REG_F_MORE_PEERS;
			break;
		}
		reg->peers[reg->n_peers++] = key_fingerprint(n->peers[i].key);
	}
	/* RESYNC is added by node_coord_register_now() when the RESYNC timer asked for it. */
}

static bool node_first_device(struct node *n, struct wg_device *dev)
{
	char k[KEY_B64_LEN + 1];
	int r;

	if (!dev->has_private_key) {
		log_err("WireGuard interface %s has no private key: set one, then start wgpunch",
			n->conf->node.interface);
		node_fail(n, -ENOKEY);
		return false;
	}
	r = prober_update(&n->prober, dev->listen_port, dev->fwmark);
	if (r < 0) {
		log_err_errno(r, "cannot set fwmark 0x%x on the probe socket (needs CAP_NET_ADMIN)",
			      dev->fwmark);
		node_fail(n, r);
		return false;
	}
	key_to_base64(k, dev->public_key);
	log_info("interface %s (%s): public key %s, listen port %u, %zu peers",
		 n->conf->node.interface, wg_backend_name(wg_backend_of(n->wg)), k,
		 dev->listen_port, dev->n_peers);
	return true;
}

static void node_on_device(struct wg *wg, int status, struct wg_device *dev, void *arg)
{
	struct node *n = arg;
	struct wg_device *old = n->dev;
	bool first = old == NULL, port_changed = false, key_changed = false, peers_changed;
	bool lan_changed;
	uint64_t now = node_now_ms();
	size_t i;

	n->get_pending = false;
	if (status < 0 || !dev) {
		if (first) {
			log_err_errno(status, "cannot read WireGuard interface %s",
				      n->conf->node.interface);
			node_fail(n, status < 0 ? status : -EIO);
			return;
		}
		n->counters.wg_errors++;
		if (!n->last_poll_error_ms || now - n->last_poll_error_ms >= POLL_ERROR_LOG_MS) {
			n->last_poll_error_ms = now;
			log_warn_errno(status, "cannot read WireGuard interface %s, retrying",
				       n->conf->node.interface);
		}
		node_schedule_poll(n);
		return;
	}
	n->last_poll_error_ms = 0;
	n->dev = dev;
	if (first && !node_first_device(n, dev))
		return;
	if (old) {
		port_changed = old->listen_port != dev->listen_port || old->fwmark != dev->fwmark;
		key_changed = memcmp(old->private_key, dev->private_key, KEY_LEN) != 0;
		wg_device_free(old);
	}
	peers_changed = node_sync_peers(n, dev);
	lan_changed = node_refresh_lan(n);

	if (port_changed) {
		int r = prober_update(&n->prober, dev->listen_port, dev->fwmark);

		if (r < 0)
			log_warn_errno(r, "cannot follow the new port or fwmark of %s",
				       n->conf->node.interface);
		else
			log_info("interface %s: listen port %u, fwmark 0x%x",
				 n->conf->node.interface, dev->listen_port, dev->fwmark);
	}
	for (i = 0; i < n->n_coords; i++) {
		if (first || port_changed)
			node_coord_set_fwmark(n->coords[i], dev->fwmark);
		/* A new identity needs a new session. */
		if (first || key_changed)
			node_coord_device_ready(n->coords[i]);
		else if (port_changed || peers_changed || lan_changed)
			node_coord_register_now(n->coords[i], port_changed);
	}

	for (i = 0; i < n->n_peers; i++) {
		struct node_peer *p = &n->peers[i];
		struct node_peer_obs obs;

		node_obs(n, p->key, &obs);
		node_peer_act(n, p, node_peer_on_poll(p, &obs, now, obs.keepalive_s > 0));
	}
	node_schedule_poll(n);
	node_schedule_resync(n);
}

static void node_poll(struct node *n)
{
	int r;

	if (n->get_pending || n->stopping)
		return;
	r = wg_get_device(n->wg, node_on_device, n);
	if (r < 0) {
		n->counters.wg_errors++;
		log_warn_errno(r, "cannot queue a read of %s", n->conf->node.interface);
		node_schedule_poll(n);
		return;
	}
	n->get_pending = true;
}

static void node_on_poll_timer(uv_timer_t *t)
{
	node_poll(t->data);
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
	char err[256] = "";
	size_t i;
	int r;

	n = calloc(1, sizeof(*n));
	if (!n)
		return log_err_errno(-ENOMEM, "cannot start the node");
	n->loop = loop;
	n->conf = conf;
	n->fatal = fatal;
	n->fatal_arg = arg;
	n->prober.fd4 = -1;

	r = wg_open(loop, cn->interface, cn->backend, &n->wg, err, sizeof(err));
	if (r < 0) {
		if (err[0])
			log_err("%s", err);
		else
			log_err_errno(r, "cannot open WireGuard interface %s", cn->interface);
		free(n);
		return r;
	}
	/* Port and fwmark follow once the device is read; opening now makes a missing
	 * capability a start-up failure with a clear message. */
	r = prober_open(&n->prober, 0, 0);
	if (r < 0) {
		log_err_errno(r, "cannot open the raw probe socket (needs CAP_NET_RAW)");
		wg_close(n->wg);
		free(n);
		return r;
	}
	uv_timer_init(loop, &n->poll_timer);
	n->poll_timer.data = n;
	uv_timer_init(loop, &n->resync_timer);
	n->resync_timer.data = n;
	/* Without it the node still works, only slower to notice a new address. */
	r = ifmon_open(loop, IFMON_DEBOUNCE_MS, node_on_ifmon, node_on_ifmon_closed, n,
		       &n->ifmon);
	if (r < 0) {
		log_warn_errno(r, "cannot watch local addresses (rtnetlink); changes are seen "
				  "within %u s instead",
			       POLL_SLOW_MS / 1000);
		n->ifmon = NULL;
	}

	r = wg_get_device(n->wg, node_on_device, n);
	if (r < 0) {
		log_err_errno(r, "cannot read WireGuard interface %s", cn->interface);
		goto fail;
	}
	n->get_pending = true;
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

static void node_on_keepalive_set(struct wg *wg, int status, void *arg)
{
	struct node *n = arg;

	if (status < 0) {
		n->counters.wg_errors++;
		log_warn_errno(status, "cannot write the new keepalive on %s",
			       n->conf->node.interface);
	}
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
	if (n->dev)
		for (i = n_keep; i < n->n_coords; i++)
			node_coord_device_ready(n->coords[i]);

	/* A new keepalive applies to the peers we set up. */
	if (cn->keepalive_s != on->keepalive_s && n->wg) {
		for (i = 0; i < n->n_peers; i++) {
			struct wg_peer_update u = { .flags = WG_UPDATE_KEEPALIVE };

			if (n->peers[i].state != NODE_PEER_UP &&
			    n->peers[i].state != NODE_PEER_TRYING)
				continue;
			memcpy(u.public_key, n->peers[i].key, KEY_LEN);
			u.keepalive_s = cn->keepalive_s;
			if (wg_set_peers(n->wg, &u, 1, node_on_keepalive_set, n) < 0)
				n->counters.wg_errors++;
		}
	}
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
	cJSON_AddStringToObject(o, "mapping_type",
				best ? node_coord_mapping_type(best) : "unknown");
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
	char k[KEY_B64_LEN + 1], buf[ADDR_STRLEN];
	uint64_t now = node_now_ms();
	size_t i;

	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "role", "node");
	cJSON_AddStringToObject(o, "interface", n->conf->node.interface);
	cJSON_AddStringToObject(o, "backend", n->wg ? wg_backend_name(wg_backend_of(n->wg)) : "");
	if (n->dev) {
		key_to_base64(k, n->dev->public_key);
		cJSON_AddStringToObject(o, "public_key", k);
		cJSON_AddNumberToObject(o, "listen_port", n->dev->listen_port);
	} else {
		cJSON_AddNullToObject(o, "public_key");
		cJSON_AddNullToObject(o, "listen_port");
	}
	cJSON_AddItemToObject(o, "nat", node_status_nat(n));

	arr = cJSON_AddArrayToObject(o, "coordinators");
	for (i = 0; arr && i < n->n_coords; i++)
		cJSON_AddItemToArray(arr, node_coord_status(n->coords[i], now));

	arr = cJSON_AddArrayToObject(o, "peers");
	for (i = 0; arr && i < n->n_peers; i++) {
		const struct node_peer *p = &n->peers[i];
		const struct wg_peer *wp = n->dev ? wg_device_find_peer(n->dev, p->key) : NULL;
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
	cJSON_AddItemToObject(o, "counters", node_status_counters(n));
	return o;
}

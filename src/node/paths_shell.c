// SPDX-License-Identifier: MIT
/*
 * paths_shell - the node's WireGuard interface: the I/O of the paths engine.
 *
 * The device is read every 250 ms while a path attempt is open and every
 * 5 s otherwise; each read drives the per-peer state machines (paths.c,
 * node_peer.c) and notices changed peers, port, fwmark or LAN addresses,
 * which node.c has the links register again at once. A PUNCH is carried out
 * with one write of two updates for the peer: keepalive 0, then endpoint and
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
 * 2 s, and again after twice as long each time (past 20 s on the refresh, up to 320 s:
 * node_peer.h says why). A peer on a relay
 * the coordinator gave on request asks the same way when its upgrade slot comes
 * (node_peer.h): the PUNCH that follows makes both sides try the direct path.
 */
#include "wgpunch/paths_shell.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "wgpunch/log.h"
#include "wgpunch/node_lan.h"

#define POLL_ERROR_LOG_MS 60000

#define X(name, help) COUNTER_DEF(paths_shell_counters, name, help)
COUNTER_TABLE_DEFINE(paths_shell_counters, PATHS_SHELL_COUNTERS(X));
#undef X

/* A queued endpoint write, until wg calls back (or wg_close() drops it). */
struct paths_op {
	struct paths_op *next;
	struct paths_shell *ps;
	unsigned int link_id;
	uint32_t attempt;
	bool ack;
};

enum { T_POLL, T_RESYNC, T_COUNT };

struct paths_shell {
	struct paths_shell_ops ops;
	const struct config *conf; /* the node's; paths_shell_reload() follows it */
	struct wg *wg;             /* NULL once closed */
	struct prober prober;
	struct wg_device *dev; /* the last read; NULL until the first */
	bool get_pending;
	bool stopping;
	/* The handles: one array, so start and close cannot disagree on how many. */
	uv_timer_t timers[T_COUNT];
	unsigned int closing;
	uint64_t last_poll_error_ms;
	struct paths paths;           /* the engine */
	struct paths_op *ops_pending; /* endpoint writes wg has not called back yet */
	struct node_lan lan;
	/* Set when rtnetlink reports address changes (ifmon): the device poll then re-reads
	 * the LAN addresses only when the listen port changed, instead of on every read (four
	 * times a second while a path attempt is open). */
	bool lan_watched;
	struct paths_shell_counters counters;
};

static uint64_t now_ms(void)
{
	return uv_hrtime() / 1000000u;
}

static int64_t wall_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec;
}

/*
 * The device's entry for a peer, in constant time: paths_sync() keeps the device's order, so
 * the peer's index in the table is its index in the device read that synced it (a search
 * only if the two disagree). A lookup per peer must not cost a walk of all peers: with
 * thousands of peers that made every poll and status quadratic.
 */
static const struct wg_peer *shell_dev_peer(const struct paths_shell *ps,
					    const uint8_t key[KEY_LEN])
{
	const struct paths_peer *p;
	size_t i;

	if (!ps->dev)
		return NULL;
	p = paths_find(&ps->paths, key);
	if (p) {
		i = (size_t)(p - ps->paths.peers);
		if (i < ps->dev->n_peers && !memcmp(ps->dev->peers[i].public_key, key, KEY_LEN))
			return &ps->dev->peers[i];
	}
	return wg_device_find_peer(ps->dev, key);
}

static void shell_obs(const struct paths_shell *ps, const uint8_t key[KEY_LEN],
		      struct node_peer_obs *o)
{
	const struct wg_peer *wp = shell_dev_peer(ps, key);

	memset(o, 0, sizeof(*o));
	o->wall_now_s = wall_now_s();
	if (!wp)
		return;
	o->endpoint = wp->endpoint;
	o->keepalive_s = wp->keepalive_s;
	o->handshake_s = wp->last_handshake_s;
	o->handshake_ns = wp->last_handshake_ns;
	o->rx_bytes = wp->rx_bytes;
}

/* ---- lifetime ---- */

int paths_shell_open(uv_loop_t *loop, const struct config *conf, const struct paths_shell_ops *ops,
		     struct paths_shell **out)
{
	const struct config_node *cn = &conf->node;
	struct paths_shell *ps = calloc(1, sizeof(*ps));
	char err[256] = "";
	size_t i;
	int r;

	if (!ps)
		return log_err_errno(-ENOMEM, "cannot start the node");
	ps->ops = *ops;
	ps->conf = conf;
	ps->prober.fd4 = -1;
	ps->prober.fd6 = -1;
	paths_init(&ps->paths);
	r = wg_open(loop, cn->interface, cn->backend, &ps->wg, err, sizeof(err));
	if (r < 0) {
		if (err[0])
			log_err("%s", err);
		else
			log_err_errno(r, "cannot open WireGuard interface %s", cn->interface);
		free(ps);
		return r;
	}
	/* Port and fwmark follow once the device is read; opening now makes a missing
	 * capability a start-up failure with a clear message. */
	r = prober_open(&ps->prober, 0, 0);
	if (r < 0) {
		log_err_errno(r, "cannot open the raw probe socket (needs CAP_NET_RAW)");
		wg_close(ps->wg);
		free(ps);
		return r;
	}
	for (i = 0; i < T_COUNT; i++) {
		uv_timer_init(loop, &ps->timers[i]);
		ps->timers[i].data = ps;
	}
	*out = ps;
	return 0;
}

static void shell_free(struct paths_shell *ps)
{
	struct paths_op *op, *next;

	for (op = ps->ops_pending; op; op = next) {
		next = op->next;
		free(op);
	}
	wg_device_free(ps->dev);
	paths_free(&ps->paths);
	free(ps);
}

static void shell_on_closed(uv_handle_t *h)
{
	struct paths_shell *ps = h->data;
	struct paths_shell_ops ops = ps->ops;

	if (--ps->closing)
		return;
	shell_free(ps);
	ops.closed(ops.arg);
}

void paths_shell_close(struct paths_shell *ps)
{
	size_t i;

	ps->stopping = true;
	/* Queued writes end silently; their ops are freed with the shell. */
	wg_close(ps->wg);
	ps->wg = NULL;
	prober_close(&ps->prober);
	ps->closing = T_COUNT;
	for (i = 0; i < T_COUNT; i++)
		uv_close((uv_handle_t *)&ps->timers[i], shell_on_closed);
}

/* ---- writing endpoints ---- */

/* The engine's writes as the backend's updates. */
static void to_updates(const struct paths_write *w, size_t n, struct wg_peer_update *u)
{
	size_t i;

	memset(u, 0, n * sizeof(*u));
	for (i = 0; i < n; i++) {
		memcpy(u[i].public_key, w[i].public_key, KEY_LEN);
		u[i].flags = (w[i].flags & PATHS_W_ENDPOINT ? WG_UPDATE_ENDPOINT : 0) |
			     (w[i].flags & PATHS_W_KEEPALIVE ? WG_UPDATE_KEEPALIVE : 0);
		u[i].endpoint = w[i].endpoint;
		u[i].keepalive_s = w[i].keepalive_s;
	}
}

static void shell_on_set_done(struct wg *wg, int status, void *arg)
{
	struct paths_op *op = arg, **pp;
	struct paths_shell *ps = op->ps;

	for (pp = &ps->ops_pending; *pp; pp = &(*pp)->next) {
		if (*pp == op) {
			*pp = op->next;
			break;
		}
	}
	if (status < 0) {
		ps->counters.wg_errors++;
		log_warn_errno(status, "writing a peer endpoint on %s failed",
			       ps->conf->node.interface);
	}
	/* Ack even after a failure: the other side need not wait 500 ms for nothing. */
	if (op->ack)
		ps->ops.punch_done(ps->ops.arg, op->link_id, op->attempt);
	free(op);
}

/* Queues the updates; the PUNCH_ACK for attempt goes to link_id (if ack) once wg is done.
 * 0 or -errno. */
static int shell_set(struct paths_shell *ps, const struct paths_write *w, size_t n,
		     unsigned int link_id, uint32_t attempt, bool ack)
{
	struct paths_op *op = calloc(1, sizeof(*op));
	struct wg_peer_update u[2];
	int r;

	if (!op)
		return -ENOMEM;
	op->ps = ps;
	op->link_id = link_id;
	op->attempt = attempt;
	op->ack = link_id && ack;
	to_updates(w, n, u);
	r = wg_set_peers(ps->wg, u, n, shell_on_set_done, op);
	if (r < 0) {
		free(op);
		return r;
	}
	op->next = ps->ops_pending;
	ps->ops_pending = op;
	return 0;
}

/*
 * Writes the current candidate. kick: keepalive 0, then endpoint and keepalive N (the change
 * from 0 makes WireGuard send, and handshake, at once). Quiet: endpoint with keepalive 0,
 * which sends nothing; the deferred kick follows unless a handshake comes first.
 */
static void shell_write_candidate(struct paths_shell *ps, struct paths_peer *p,
				  enum node_peer_action act, unsigned int link_id, uint32_t attempt,
				  bool ack)
{
	const struct node_peer_cand *cand = node_peer_candidate(&p->m);
	struct paths_write u[2];
	char a[ADDR_STRLEN], k[KEY_SHORT_LEN];
	size_t n;
	int r;

	n = paths_updates(p, act, ps->conf->node.keepalive_s, u);
	if (!n || !cand)
		return;
	if (act == NODE_PEER_WRITE)
		log_info("punching peer %s via %s (%s, candidate %u of %u)", key_short(p->m.key, k),
			 addr_format(&cand->addr, a), node_path_name(cand->path), p->m.cur + 1u,
			 p->m.n_cands);
	else
		log_info("punching peer %s via %s (%s, candidate %u of %u), kick in %u ms unless "
			 "its handshake comes first",
			 key_short(p->m.key, k), addr_format(&cand->addr, a),
			 node_path_name(cand->path), p->m.cur + 1u, p->m.n_cands,
			 (unsigned int)(node_peer_kick_due(&p->m) - now_ms()));
	r = shell_set(ps, u, n, link_id, attempt, ack);
	if (r < 0) {
		ps->counters.wg_errors++;
		log_warn_errno(r, "cannot write the endpoint of peer %s", k);
		if (link_id && ack)
			ps->ops.punch_done(ps->ops.arg, link_id, attempt);
		return;
	}
	ps->counters.endpoint_writes++;
}

/*
 * Keepalive 0, then N: a deferred kick, or the keepalive a quiet write left at 0. With a
 * session up WireGuard only sends a keepalive; within 5 s of its last initiation or response
 * it starts no new initiation either, so this cannot cross a handshake under way.
 */
static void shell_kick(struct paths_shell *ps, struct paths_peer *p, enum node_peer_action act)
{
	struct paths_write u[2];
	char k[KEY_SHORT_LEN];
	size_t n = paths_updates(p, act, ps->conf->node.keepalive_s, u);

	if (shell_set(ps, u, n, 0, 0, false) < 0) {
		ps->counters.wg_errors++;
		log_warn_errno(-EIO, "cannot write the keepalive of peer %s",
			       key_short(p->m.key, k));
	}
}

static void shell_on_resync_timer(uv_timer_t *t);

/* Arms the RESYNC timer for the first peer that will want one. */
static void shell_schedule_resync(struct paths_shell *ps)
{
	uint64_t due = paths_resync_due(&ps->paths), now = now_ms();

	if (ps->stopping)
		return;
	if (due == UINT64_MAX)
		uv_timer_stop(&ps->timers[T_RESYNC]);
	else
		uv_timer_start(&ps->timers[T_RESYNC], shell_on_resync_timer,
			       due > now ? due - now : 0, 0);
}

static void shell_on_resync_timer(uv_timer_t *t)
{
	struct paths_shell *ps = t->data;
	bool early;

	if (paths_resync(&ps->paths, now_ms(), &early)) {
		log_debug("peers without a path and without a punch, or on a relay whose upgrade "
			  "slot came: asking for a punch (RESYNC)");
		ps->ops.resync(ps->ops.arg, early);
	}
	shell_schedule_resync(ps);
}

/* Carries out what a peer's state machine decided. */
static void shell_peer_act(struct paths_shell *ps, struct paths_peer *p, enum node_peer_action act)
{
	char k[KEY_SHORT_LEN], a[ADDR_STRLEN];
	const struct node_peer_cand *cand;
	const struct wg_peer *wp;

	switch (act) {
	case NODE_PEER_NOTHING:
	case NODE_PEER_NUDGE: /* a PUNCH's only: paths_shell_on_punch() does it */
		return;
	case NODE_PEER_WRITE:
	case NODE_PEER_WRITE_QUIET:
		shell_write_candidate(ps, p, act, 0, 0, false);
		return;
	case NODE_PEER_KICK:
		log_debug("peer %s: no handshake while the kick waited, kicking now",
			  key_short(p->m.key, k));
		shell_kick(ps, p, act);
		return;
	case NODE_PEER_UP_KEEPALIVE:
		shell_kick(ps, p, act);
		/* fall through */
	case NODE_PEER_UP_NOW:
		if (p->m.relay_done) {
			/* Direct from the relay: the coordinator can tear the relay down. */
			p->m.relay_done = false;
			if (p->relay_link)
				ps->ops.relay_close(ps->ops.arg, p->relay_link, p->m.key,
						    PROTO_RELAY_CLOSE_DIRECT);
		}
		wp = shell_dev_peer(ps, p->m.key);
		cand = node_peer_candidate(&p->m);
		log_info("path to peer %s up: %s via %s", key_short(p->m.key, k),
			 node_path_name(p->m.path),
			 addr_format(wp ? &wp->endpoint : &cand->addr, a));
		return;
	case NODE_PEER_GIVE_UP: {
		/* The relay is the last candidate, on the coordinator that punched us (or whose
		 * relay did not come up: asked again, it announces the relay again). */
		unsigned int link = p->punch_link ? p->punch_link : p->relay_link;
		bool was_relay;

		cand = node_peer_candidate(&p->m);
		was_relay = cand && cand->path == NODE_PATH_RELAY;
		if (ps->conf->node.relay && link && !addr_is_set(&p->m.relay)) {
			log_info("no %s path to peer %s, asking for a relay",
				 was_relay ? "relay" : "direct", key_short(p->m.key, k));
			ps->ops.relay_request(ps->ops.arg, link, p->m.key);
			return;
		}
		log_info("no path to peer %s after %u candidates, waiting for the next punch",
			 key_short(p->m.key, k), p->m.n_cands);
		return;
	}
	case NODE_PEER_DOWN:
		/* The RESYNC timer asks for a new punch at once (shell_schedule_resync). */
		log_info("path to peer %s down (no handshake for %d s), asking for a new punch",
			 key_short(p->m.key, k), NODE_PEER_STALE_S);
		return;
	}
}

static void shell_on_poll_timer(uv_timer_t *t);

/* The next read: soon while an attempt is open, and when a deferred kick is due. */
static void shell_schedule_poll(struct paths_shell *ps)
{
	if (ps->stopping)
		return;
	uv_timer_start(&ps->timers[T_POLL], shell_on_poll_timer,
		       paths_poll_delay(&ps->paths, now_ms()), 0);
}

void paths_shell_on_punch(struct paths_shell *ps, unsigned int link_id, const struct addr *mapping,
			  const struct proto_punch *punch)
{
	bool ack = punch->flags & PROTO_PUNCH_F_ACK;
	struct node_peer_self self = {
		.mapping = *mapping,
		.local = ps->lan.addr,
		.n_local = ps->lan.n,
		.rnd = randombytes_random(),
	};
	struct node_peer_obs obs;
	enum node_peer_action act = NODE_PEER_NOTHING;
	enum paths_verdict v;
	struct paths_peer *p;
	char k[KEY_SHORT_LEN], a[ADDR_STRLEN];

	shell_obs(ps, punch->peer_key, &obs);
	/* Before the first device read the table is empty: every PUNCH is ignored. */
	v = paths_on_punch(&ps->paths, link_id, punch, &self, &obs, now_ms(), &p, &act);
	if (v == PATHS_IGNORED) {
		log_debug("PUNCH for %s, not a peer of %s: ignored", key_short(punch->peer_key, k),
			  ps->conf->node.interface);
		return;
	}
	if (v == PATHS_MERGED) {
		log_debug("PUNCH for peer %s: the attempt another coordinator opened goes on",
			  key_short(punch->peer_key, k));
		if (ack)
			ps->ops.punch_done(ps->ops.arg, link_id, punch->attempt);
		return;
	}
	shell_schedule_resync(ps);
	if (act == NODE_PEER_WRITE || act == NODE_PEER_WRITE_QUIET) {
		shell_write_candidate(ps, p, act, link_id, punch->attempt, ack);
		/* Watch for the handshake closely from now on (a pending read reschedules). */
		if (!ps->get_pending)
			shell_schedule_poll(ps);
		return;
	}
	if (act == NODE_PEER_UP_KEEPALIVE) {
		shell_peer_act(ps, p, act);
	} else if (act == NODE_PEER_NUDGE) {
		shell_kick(ps, p, act);
		log_info("punch for peer %s: path already up (%s via %s), keepalive sent",
			 key_short(p->m.key, k), node_path_name(p->m.path),
			 addr_format(&obs.endpoint, a));
	} else if (p->m.state == NODE_PEER_UP)
		/* Nothing to do: a RESYNC (ours or the peer's) or a second coordinator re-sent it. */
		log_debug("punch for peer %s: path already up (%s via %s)", key_short(p->m.key, k),
			 node_path_name(p->m.path), addr_format(&obs.endpoint, a));
	else
		log_info("punch for peer %s without a usable candidate", key_short(p->m.key, k));
	if (ack)
		ps->ops.punch_done(ps->ops.arg, link_id, punch->attempt);
}

bool paths_shell_on_relay(struct paths_shell *ps, unsigned int link_id,
			  const struct proto_relay *relay)
{
	struct node_peer_obs obs;
	enum node_peer_action act;
	struct paths_peer *p;
	char k[KEY_SHORT_LEN], a[ADDR_STRLEN];

	shell_obs(ps, relay->peer_key, &obs);
	p = paths_on_relay(&ps->paths, link_id, relay, randombytes_random(), &obs, now_ms(), &act);
	if (!p) {
		log_debug("RELAY for %s, not a peer of %s: ignored", key_short(relay->peer_key, k),
			  ps->conf->node.interface);
		return false;
	}
	log_info("relay for peer %s at %s%s", key_short(p->m.key, k), addr_format(&relay->relay, a),
		 relay->flags & PROTO_RELAY_F_AT_ONCE ? " (no direct path can work)" : "");
	if (act == NODE_PEER_WRITE || act == NODE_PEER_WRITE_QUIET) {
		shell_write_candidate(ps, p, act, 0, 0, false);
		if (!ps->get_pending)
			shell_schedule_poll(ps);
	}
	return true;
}

void paths_shell_link_down(struct paths_shell *ps, unsigned int link_id)
{
	paths_link_down(&ps->paths, link_id);
}

/* ---- the device ---- */

void paths_shell_fill_register(const struct paths_shell *ps, struct proto_register *reg)
{
	reg->wg_port = ps->dev ? ps->dev->listen_port : 0;
	reg->n_lan = ps->lan.n;
	memcpy(reg->lan, ps->lan.addr, sizeof(ps->lan.addr[0]) * ps->lan.n);
	paths_fill_register(&ps->paths, reg);
	/* RESYNC is added by the link when the RESYNC timer asked for it. */
}

/* The engine's table follows the device's peers; true when the set of keys changed. Out of
 * memory keeps the old table; the next read tries again. */
static bool shell_sync(struct paths_shell *ps, const struct wg_device *dev, uint64_t now)
{
	uint8_t(*keys)[KEY_LEN] = malloc((dev->n_peers ? dev->n_peers : 1) * sizeof(*keys));
	size_t i;
	int r;

	if (!keys)
		return false;
	for (i = 0; i < dev->n_peers; i++)
		memcpy(keys[i], dev->peers[i].public_key, KEY_LEN);
	r = paths_sync(&ps->paths, (const uint8_t(*)[KEY_LEN])keys, dev->n_peers, now);
	free(keys);
	return r > 0;
}

/* More than this through one peer between two reads is traffic, not WireGuard talking to
 * itself: a keepalive is 32 bytes, a handshake 148 + 92. */
#define SHELL_ACTIVE_BYTES 512

/* Linear: the device lists its peers in a stable order, so a peer is compared with the one
 * at its index in the last read, when that is the same key (else it is new: no traffic). */
static bool shell_traffic(const struct wg_device *old, const struct wg_device *dev)
{
	size_t i;

	for (i = 0; i < dev->n_peers && i < old->n_peers; i++) {
		const struct wg_peer *a = &old->peers[i], *b = &dev->peers[i];

		if (memcmp(a->public_key, b->public_key, KEY_LEN) != 0)
			continue;
		if ((b->rx_bytes > a->rx_bytes && b->rx_bytes - a->rx_bytes > SHELL_ACTIVE_BYTES) ||
		    (b->tx_bytes > a->tx_bytes && b->tx_bytes - a->tx_bytes > SHELL_ACTIVE_BYTES))
			return true;
	}
	return false;
}

static bool shell_first_device(struct paths_shell *ps, struct wg_device *dev)
{
	char k[KEY_B64_LEN + 1];
	int r;

	if (!dev->has_private_key) {
		log_err("WireGuard interface %s has no private key: set one, then start wgpunch",
			ps->conf->node.interface);
		ps->ops.fail(ps->ops.arg, -ENOKEY);
		return false;
	}
	r = prober_update(&ps->prober, dev->listen_port, dev->fwmark);
	if (r < 0) {
		log_err_errno(r, "cannot set fwmark 0x%x on the probe socket (needs CAP_NET_ADMIN)",
			      dev->fwmark);
		ps->ops.fail(ps->ops.arg, r);
		return false;
	}
	key_to_base64(k, dev->public_key);
	log_info("interface %s (%s): public key %s, listen port %u, %zu peers",
		 ps->conf->node.interface, wg_backend_name(wg_backend_of(ps->wg)), k,
		 dev->listen_port, dev->n_peers);
	return true;
}

static void shell_on_device(struct wg *wg, int status, struct wg_device *dev, void *arg)
{
	struct paths_shell *ps = arg;
	struct wg_device *old = ps->dev;
	struct paths_shell_changes ch = { .first = old == NULL };
	uint64_t now = now_ms();
	size_t i;
	int r;

	ps->get_pending = false;
	if (status < 0 || !dev) {
		if (ch.first) {
			log_err_errno(status, "cannot read WireGuard interface %s",
				      ps->conf->node.interface);
			ps->ops.fail(ps->ops.arg, status < 0 ? status : -EIO);
			return;
		}
		ps->counters.wg_errors++;
		if (!ps->last_poll_error_ms || now - ps->last_poll_error_ms >= POLL_ERROR_LOG_MS) {
			ps->last_poll_error_ms = now;
			log_warn_errno(status, "cannot read WireGuard interface %s, retrying",
				       ps->conf->node.interface);
		}
		shell_schedule_poll(ps);
		return;
	}
	ps->last_poll_error_ms = 0;
	ps->dev = dev;
	if (ch.first && !shell_first_device(ps, dev))
		return;
	if (old) {
		ch.port = old->listen_port != dev->listen_port || old->fwmark != dev->fwmark;
		ch.key = memcmp(old->private_key, dev->private_key, KEY_LEN) != 0;
		ch.active = shell_traffic(old, dev);
		wg_device_free(old);
	}
	ch.peers = shell_sync(ps, dev, now);
	/* The first read and a new port need fresh addresses (they carry the port); anything
	 * else ifmon reports, unless it is not running. */
	if (ch.first || ch.port || !ps->lan_watched)
		ch.lan = node_lan_refresh(&ps->lan, ps->conf->node.interface, dev);

	if (ch.port) {
		r = prober_update(&ps->prober, dev->listen_port, dev->fwmark);
		if (r < 0)
			log_warn_errno(r, "cannot follow the new port or fwmark of %s",
				       ps->conf->node.interface);
		else
			log_info("interface %s: listen port %u, fwmark 0x%x",
				 ps->conf->node.interface, dev->listen_port, dev->fwmark);
	}
	ps->ops.on_device(ps->ops.arg, dev, &ch);

	for (i = 0; i < ps->paths.n; i++) {
		struct paths_peer *p = &ps->paths.peers[i];
		struct node_peer_obs obs;

		shell_obs(ps, p->m.key, &obs);
		shell_peer_act(ps, p, node_peer_on_poll(&p->m, &obs, now, obs.keepalive_s > 0));
	}
	shell_schedule_poll(ps);
	shell_schedule_resync(ps);
}

static void shell_poll(struct paths_shell *ps)
{
	int r;

	if (ps->get_pending || ps->stopping)
		return;
	r = wg_get_device(ps->wg, shell_on_device, ps);
	if (r < 0) {
		ps->counters.wg_errors++;
		log_warn_errno(r, "cannot queue a read of %s", ps->conf->node.interface);
		shell_schedule_poll(ps);
		return;
	}
	ps->get_pending = true;
}

static void shell_on_poll_timer(uv_timer_t *t)
{
	shell_poll(t->data);
}

int paths_shell_start(struct paths_shell *ps)
{
	int r = wg_get_device(ps->wg, shell_on_device, ps);

	if (r < 0)
		return log_err_errno(r, "cannot read WireGuard interface %s",
				     ps->conf->node.interface);
	ps->get_pending = true;
	return 0;
}

static void shell_on_keepalive_set(struct wg *wg, int status, void *arg)
{
	struct paths_shell *ps = arg;

	if (status < 0) {
		ps->counters.wg_errors++;
		log_warn_errno(status, "cannot write the new keepalive on %s",
			       ps->conf->node.interface);
	}
}

void paths_shell_reload(struct paths_shell *ps, const struct config *conf)
{
	const struct config_node *cn = &conf->node, *on = &ps->conf->node;
	size_t i;

	/* A new keepalive applies to the peers we set up. */
	if (cn->keepalive_s != on->keepalive_s && ps->wg) {
		for (i = 0; i < ps->paths.n; i++) {
			const struct node_peer *p = &ps->paths.peers[i].m;
			struct wg_peer_update u = { .flags = WG_UPDATE_KEEPALIVE };

			if (p->state != NODE_PEER_UP && p->state != NODE_PEER_TRYING)
				continue;
			/* A deferred kick writes the new keepalive itself; now would kick early. */
			if (node_peer_kick_due(p) != UINT64_MAX)
				continue;
			memcpy(u.public_key, p->key, KEY_LEN);
			u.keepalive_s = cn->keepalive_s;
			if (wg_set_peers(ps->wg, &u, 1, shell_on_keepalive_set, ps) < 0)
				ps->counters.wg_errors++;
		}
	}
	ps->conf = conf;
}

void paths_shell_set_lan_watched(struct paths_shell *ps, bool watched)
{
	ps->lan_watched = watched;
}

bool paths_shell_lan_refresh(struct paths_shell *ps)
{
	if (ps->stopping || !ps->dev)
		return false;
	return node_lan_refresh(&ps->lan, ps->conf->node.interface, ps->dev);
}

const struct wg_device *paths_shell_device(const struct paths_shell *ps)
{
	return ps->dev;
}

struct prober *paths_shell_prober(struct paths_shell *ps)
{
	return &ps->prober;
}

const char *paths_shell_backend(const struct paths_shell *ps)
{
	return ps->wg ? wg_backend_name(wg_backend_of(ps->wg)) : "";
}

const struct paths_counters *paths_shell_engine_counters(const struct paths_shell *ps)
{
	return &ps->paths.counters;
}

const struct paths *paths_shell_engine(const struct paths_shell *ps)
{
	return &ps->paths;
}

const struct paths_shell_counters *paths_shell_counters(const struct paths_shell *ps)
{
	return &ps->counters;
}

/* ---- status ---- */

cJSON *paths_shell_status_peers(const struct paths_shell *ps)
{
	cJSON *arr = cJSON_CreateArray();
	char k[KEY_B64_LEN + 1], buf[ADDR_STRLEN];
	size_t i;

	for (i = 0; arr && i < ps->paths.n; i++) {
		const struct node_peer *p = &ps->paths.peers[i].m;
		const struct wg_peer *wp = shell_dev_peer(ps, p->key);
		cJSON *po = cJSON_CreateObject();

		key_to_base64(k, p->key);
		cJSON_AddStringToObject(po, "public_key", k);
		cJSON_AddStringToObject(po, "path", node_path_name(p->path));
		cJSON_AddStringToObject(po, "endpoint",
					addr_format(wp ? &wp->endpoint : &(struct addr){ 0 }, buf));
		cJSON_AddNumberToObject(po, "latest_handshake",
					wp ? (double)wp->last_handshake_s : 0);
		cJSON_AddNumberToObject(po, "keepalive", wp ? wp->keepalive_s : 0);
		/* The relay this peer has (in use when path is relay), or null. */
		if (addr_is_set(&p->relay))
			cJSON_AddStringToObject(po, "relay", addr_format(&p->relay, buf));
		else
			cJSON_AddNullToObject(po, "relay");
		cJSON_AddItemToArray(arr, po);
	}
	return arr;
}

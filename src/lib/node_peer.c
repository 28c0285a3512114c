// SPDX-License-Identifier: MIT
/*
 * node_peer - the path state machine of one WireGuard peer (pure; see the header).
 */
#include "wgpunch/node_peer.h"

#include <stdint.h>
#include <string.h>

static bool hs_newer(int64_t a_s, int64_t a_ns, int64_t b_s, int64_t b_ns)
{
	return a_s > b_s || (a_s == b_s && a_ns > b_ns);
}

static bool hs_fresh(const struct node_peer_obs *obs)
{
	return obs->handshake_s != 0 && obs->wall_now_s - obs->handshake_s < NODE_PEER_FRESH_S;
}

static enum node_path path_of_addr(const struct addr *a, enum node_path v4_path)
{
	return addr_family(a) == AF_INET6 && addr_is_global_ipv6(a) ? NODE_PATH_IPV6 : v4_path;
}

/* The path an endpoint WireGuard uses stands for: a candidate's, else direct (or ipv6). */
static enum node_path classify_endpoint(const struct node_peer *p, const struct addr *ep)
{
	unsigned int i;

	for (i = 0; i < p->n_cands; i++)
		if (addr_equal(&p->cands[i].addr, ep))
			return p->cands[i].path;
	if (addr_is_set(&p->relay) && addr_equal(&p->relay, ep))
		return NODE_PATH_RELAY;
	return path_of_addr(ep, NODE_PATH_DIRECT);
}

static void push_cand(struct node_peer_cand *c, uint8_t *n, const struct addr *a,
		      enum node_path path)
{
	unsigned int i;

	if (!addr_is_set(a) || addr_port(a) == 0 || *n >= NODE_PEER_MAX_CAND)
		return;
	for (i = 0; i < *n; i++)
		if (addr_equal(&c[i].addr, a))
			return;
	c[*n].addr = *a;
	c[*n].path = path;
	(*n)++;
}

static void add_cand(struct node_peer *p, const struct addr *a, enum node_path path)
{
	push_cand(p->cands, &p->n_cands, a, path);
}

static bool has_global6(const struct addr *a, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (addr_is_global_ipv6(&a[i]))
			return true;
	return false;
}

uint8_t node_peer_candidates(const struct proto_punch *punch, const struct node_peer_self *self,
			     struct node_peer_cand out[NODE_PEER_MAX_CAND])
{
	const struct addr *own = &self->mapping, *pub = &punch->peer_public;
	uint8_t n_lan = punch->n_lan < PROTO_MAX_LAN ? punch->n_lan : PROTO_MAX_LAN;
	uint8_t n = 0, i;

	/* Same public IP: behind the same NAT, where hairpinning often fails; try the LAN first
	 * (IPv4 LAN and unique local IPv6 addresses; global IPv6 ones have their own place). */
	if (addr_is_set(own) && addr_is_set(pub) && addr_same_ip(own, pub))
		for (i = 0; i < n_lan; i++)
			if (!addr_is_global_ipv6(&punch->lan[i]))
				push_cand(out, &n, &punch->lan[i], NODE_PATH_LAN);
	/* IPv6 when both sides have it: one candidate, so both sides spend the same time on it
	 * and move on to IPv4 together. The peer's public mapping when its session is IPv6, else
	 * the first global address of its list, where the coordinator puts the IPv6 mapping it
	 * saw (the source the peer really sends from) ahead of the registered ones. */
	if (has_global6(self->local, self->n_local)) {
		const struct addr *six = addr_is_global_ipv6(pub) ? pub : NULL;

		for (i = 0; !six && i < n_lan; i++)
			if (addr_is_global_ipv6(&punch->lan[i]))
				six = &punch->lan[i];
		if (six)
			push_cand(out, &n, six, NODE_PATH_IPV6);
	}
	/* The public IPv4 mapping; the relay comes after it, from the coordinator (RELAY). */
	if (addr_family(pub) == AF_INET)
		push_cand(out, &n, pub, NODE_PATH_DIRECT);
	return n;
}

static void set_up(struct node_peer *p, enum node_path path)
{
	p->kick_ms = 0;
	p->state = NODE_PEER_UP;
	p->stale = false;
	p->path = path;
	/* The next time the path is lost, ask again quickly. */
	p->resync_wait_ms = NODE_PEER_RESYNC_FIRST_MS;
}

static void start_attempt(struct node_peer *p, const struct node_peer_obs *obs, uint64_t now_ms)
{
	p->base_s = obs->handshake_s;
	p->base_ns = obs->handshake_ns;
	p->base_rx = obs->rx_bytes;
	p->deadline_ms = now_ms + NODE_PEER_ATTEMPT_MS;
	p->kick_ms = 0;
	p->state = NODE_PEER_TRYING;
	p->stale = false;
}

bool node_peer_no_nat(const struct addr *mapping, const struct addr *local, size_t n_local)
{
	size_t i;

	if (!addr_is_set(mapping))
		return false;
	for (i = 0; i < n_local; i++)
		if (addr_same_ip(mapping, &local[i]))
			return true;
	return false;
}

/*
 * The first side's initiation reaches our WireGuard by itself: it comes over the LAN, or
 * nothing stands in front of us to drop it. Only the second side (no ACK flag) can know that
 * the other one has sent already.
 */
static bool first_reaches_us(const struct node_peer *p, const struct proto_punch *punch,
			     const struct node_peer_self *self)
{
	if (punch->flags & PROTO_PUNCH_F_ACK)
		return false;
	/* IPv6 has no NAT: first's initiation arrives unless a stateful firewall drops it, and
	 * then the wait costs only NODE_PEER_KICK_WAIT_MS. */
	return p->cands[p->cur].path == NODE_PATH_LAN || p->cands[p->cur].path == NODE_PATH_IPV6 ||
	       node_peer_no_nat(&self->mapping, self->local, self->n_local);
}

void node_peer_init(struct node_peer *p, const uint8_t key[KEY_LEN], uint64_t now_ms)
{
	memset(p, 0, sizeof(*p));
	memcpy(p->key, key, KEY_LEN);
	p->last_punch_ms = now_ms;
	p->resync_ms = now_ms;
	p->resync_wait_ms = NODE_PEER_RESYNC_FIRST_MS;
	p->path = NODE_PATH_NONE;
	p->state = NODE_PEER_IDLE;
}

enum node_peer_action node_peer_on_punch(struct node_peer *p, const struct proto_punch *punch,
					 const struct node_peer_self *self,
					 const struct node_peer_obs *obs, uint64_t now_ms)
{
	bool kick_waiting = node_peer_kick_due(p) != UINT64_MAX;
	unsigned int i;

	p->last_punch_ms = now_ms;
	p->seen_s = obs->handshake_s;
	p->seen_ns = obs->handshake_ns;
	p->n_cands = 0;
	p->cur = 0;

	p->n_cands = node_peer_candidates(punch, self, p->cands);

	if (p->n_cands == 0)
		return NODE_PEER_NOTHING;

	/* A working path to one of them already: rewriting it would only disturb it. */
	if (addr_is_set(&obs->endpoint) && hs_fresh(obs)) {
		for (i = 0; i < p->n_cands; i++) {
			if (addr_equal(&p->cands[i].addr, &obs->endpoint)) {
				p->cur = (uint8_t)i;
				set_up(p, p->cands[i].path);
				/* Up while our kick waited: the keepalive is still 0. Otherwise the
				 * coordinator re-punches a working pair because a mapping moved; if it
				 * was ours (our NAT rebound), our flow toward the peer is gone and the
				 * peer's packets bounce off our NAT until we send: a keepalive now
				 * opens the new flow, sooner than WireGuard's next one. */
				if (kick_waiting || (p->nudge_ms && now_ms - p->nudge_ms <
								       NODE_PEER_NUDGE_EVERY_MS)) {
					if (kick_waiting)
						p->nudge_ms = now_ms ? now_ms : 1;
					return kick_waiting ? NODE_PEER_UP_KEEPALIVE
							    : NODE_PEER_NOTHING;
				}
				p->nudge_ms = now_ms ? now_ms : 1;
				return NODE_PEER_NUDGE;
			}
		}
	}

	start_attempt(p, obs, now_ms);
	if (first_reaches_us(p, punch, self)) {
		p->kick_ms = now_ms + NODE_PEER_KICK_WAIT_MS +
			     self->rnd % (NODE_PEER_KICK_JITTER_MS + 1u);
		return NODE_PEER_WRITE_QUIET;
	}
	return NODE_PEER_WRITE;
}

enum node_peer_action node_peer_on_relay(struct node_peer *p, const struct addr *relay, bool second,
					 uint32_t rnd, const struct node_peer_obs *obs,
					 uint64_t now_ms)
{
	/* A direct path that works stays: the coordinator relays on a guess (or on the other
	 * side's request), WireGuard's handshake is proof. */
	if (p->state == NODE_PEER_UP && p->path != NODE_PATH_RELAY && hs_fresh(obs))
		return NODE_PEER_NOTHING;
	p->relay = *relay;
	p->seen_s = obs->handshake_s;
	p->seen_ns = obs->handshake_ns;
	p->n_cands = 0;
	p->cur = 0;
	add_cand(p, relay, NODE_PATH_RELAY);
	if (p->n_cands == 0)
		return NODE_PEER_NOTHING;
	if (addr_is_set(&obs->endpoint) && addr_equal(&obs->endpoint, relay) && hs_fresh(obs)) {
		set_up(p, NODE_PATH_RELAY);
		return NODE_PEER_NOTHING;
	}
	p->upgrading = false;
	/* The slots count from here: the other side's RELAY left the coordinator with ours. */
	p->upgrade_after_ms = now_ms + NODE_PEER_UPGRADE_FIRST_MS;
	p->upgrade_wait_ms = NODE_PEER_UPGRADE_FIRST_MS;
	p->upgrade_asked_ms = 0;
	p->upgrade_timer = false; /* the caller turns it on for a relay given on request */
	start_attempt(p, obs, now_ms);
	if (second) {
		p->kick_ms =
			now_ms + NODE_PEER_KICK_WAIT_MS + rnd % (NODE_PEER_KICK_JITTER_MS + 1u);
		return NODE_PEER_WRITE_QUIET;
	}
	return NODE_PEER_WRITE;
}

/*
 * The next slot after now: each twice as far from the one before (capped), counted from the
 * slot, not from the try, so both sides stay on one schedule (NODE_PEER_UPGRADE_EARLY_MS).
 */
static void upgrade_next_slot(struct node_peer *p, uint64_t now_ms)
{
	p->upgrade_asked_ms = 0;
	do {
		p->upgrade_wait_ms = p->upgrade_wait_ms * 2 > NODE_PEER_UPGRADE_MAX_MS
					     ? NODE_PEER_UPGRADE_MAX_MS
					     : p->upgrade_wait_ms * 2;
		if (p->upgrade_wait_ms == NODE_PEER_UPGRADE_MAX_MS && p->upgrade_after_ms <= now_ms)
			/* At the cap the slots are evenly spaced: skip the missed ones at once. */
			p->upgrade_after_ms += (now_ms - p->upgrade_after_ms) /
					       NODE_PEER_UPGRADE_MAX_MS * NODE_PEER_UPGRADE_MAX_MS;
		p->upgrade_after_ms += p->upgrade_wait_ms;
	} while (p->upgrade_after_ms <= now_ms);
}

enum node_peer_action node_peer_upgrade(struct node_peer *p, const struct proto_punch *punch,
					const struct node_peer_self *self,
					const struct node_peer_obs *obs, uint64_t now_ms)
{
	struct addr relay = p->relay;
	enum node_peer_action a;

	if (p->state != NODE_PEER_UP || p->path != NODE_PATH_RELAY ||
	    now_ms + NODE_PEER_UPGRADE_EARLY_MS < p->upgrade_after_ms)
		return NODE_PEER_NOTHING;
	a = node_peer_on_punch(p, punch, self, obs, now_ms);
	p->relay = relay;
	if (a != NODE_PEER_WRITE && a != NODE_PEER_WRITE_QUIET) {
		/* Nothing to try: stay on the relay. */
		p->n_cands = 0;
		add_cand(p, &relay, NODE_PATH_RELAY);
		p->cur = 0;
		set_up(p, NODE_PATH_RELAY);
		return NODE_PEER_NOTHING;
	}
	p->kick_ms = 0; /* both sides kick: the session exists, no initiations can cross */
	p->upgrading = true;
	p->upgrade_asked_ms = 0;
	/* From the PUNCH on: the other side's first direct packet may come before our first
	 * read after the write. What came through the relay before the write is the residue:
	 * the write comes within a millisecond, and later relay packets make WireGuard roam
	 * back to the relay, which fails the try. */
	p->rx_base = obs->rx_bytes;
	p->rx_based = true;
	p->deadline_ms = now_ms + NODE_PEER_UPGRADE_MS;
	return NODE_PEER_WRITE;
}

/* The upgrade failed: the relay endpoint again, and a longer wait before the next try. */
static enum node_peer_action upgrade_failed(struct node_peer *p, uint64_t now_ms)
{
	p->upgrading = false;
	p->n_cands = 0;
	p->cur = 0;
	add_cand(p, &p->relay, NODE_PATH_RELAY);
	set_up(p, NODE_PATH_RELAY);
	upgrade_next_slot(p, now_ms);
	return NODE_PEER_WRITE;
}

static enum node_peer_action upgrade_poll(struct node_peer *p, const struct node_peer_obs *obs,
					  uint64_t now_ms)
{
	const struct addr *cand = &p->cands[p->cur].addr;

	if (!p->rx_based) {
		/* The first read after the write: what arrives from now on counts. */
		if (addr_is_set(&obs->endpoint) && addr_equal(&obs->endpoint, cand)) {
			p->rx_base = obs->rx_bytes;
			p->rx_based = true;
		}
	} else if (!addr_equal(&obs->endpoint, cand)) {
		return upgrade_failed(p,
				      now_ms); /* roamed away: the peer's packets came elsewhere */
	} else if (obs->rx_bytes > p->rx_base) {
		p->upgrading = false;
		/* p->relay stays: should WireGuard roam back to it, the path says relay. */
		p->relay_done = true;
		set_up(p, p->cands[p->cur].path);
		/* Should WireGuard roam back to the relay (the other side's try failed), the
		 * timer asks again one wait from now, not at once. */
		p->upgrade_after_ms = now_ms + p->upgrade_wait_ms;
		p->upgrade_asked_ms = 0;
		/* A keepalive now: the other side, trying too, learns the same way (WireGuard
		 * does not answer a keepalive, and the next persistent one may be 25 s off). */
		return NODE_PEER_UP_KEEPALIVE;
	}
	if (now_ms >= p->deadline_ms)
		return upgrade_failed(p, now_ms);
	return NODE_PEER_NOTHING;
}

enum node_peer_action node_peer_on_poll(struct node_peer *p, const struct node_peer_obs *obs,
					uint64_t now_ms, bool keepalive_on)
{
	bool new_since_seen = hs_newer(obs->handshake_s, obs->handshake_ns, p->seen_s, p->seen_ns);

	p->seen_s = obs->handshake_s;
	p->seen_ns = obs->handshake_ns;

	if (p->upgrading && p->state == NODE_PEER_TRYING)
		return upgrade_poll(p, obs, now_ms);
	switch (p->state) {
	case NODE_PEER_TRYING:
		/* A new handshake proves the candidate; so do packets from the peer arriving
		 * there over a session that was already up (the peer's NAT rebound and both
		 * sides moved the live session: WireGuard keeps its latest-handshake then, but
		 * counts the peer's authenticated packets, and roams its endpoint to where they
		 * come from, so it stays the candidate only if they come from there). */
		if (hs_newer(obs->handshake_s, obs->handshake_ns, p->base_s, p->base_ns) ||
		    (obs->rx_bytes > p->base_rx && hs_fresh(obs) && addr_is_set(&obs->endpoint) &&
		     addr_equal(&obs->endpoint, &p->cands[p->cur].addr))) {
			bool kick_waiting = p->kick_ms != 0;

			/* WireGuard roams to where its peer's packets come from: through the
			 * relay they are the relay's, from the peer's IPv6 address they are IPv6,
			 * whatever candidate was written. */
			set_up(p, addr_is_set(&obs->endpoint) ? classify_endpoint(p, &obs->endpoint)
							      : p->cands[p->cur].path);
			return kick_waiting ? NODE_PEER_UP_KEEPALIVE : NODE_PEER_UP_NOW;
		}
		if (p->kick_ms) {
			/* No handshake: the first side's initiation did not reach us. Kick now;
			 * the candidate's time runs from here, one WireGuard retry included. */
			if (now_ms < p->kick_ms)
				return NODE_PEER_NOTHING;
			p->kick_ms = 0;
			p->deadline_ms = now_ms + NODE_PEER_ATTEMPT_MS;
			return NODE_PEER_KICK;
		}
		if (now_ms < p->deadline_ms)
			return NODE_PEER_NOTHING;
		if (p->cur + 1 < p->n_cands) {
			p->cur++;
			start_attempt(p, obs, now_ms);
			return NODE_PEER_WRITE;
		}
		p->state = NODE_PEER_FAILED;
		p->path = NODE_PATH_NONE;
		/* The relay did not come up (its bind probes lost, or it is gone): forget it, so
		 * the node asks again and the next PUNCH is not taken for the relay's. */
		if (p->cands[p->cur].path == NODE_PATH_RELAY)
			memset(&p->relay, 0, sizeof(p->relay));
		return NODE_PEER_GIVE_UP;
	case NODE_PEER_UP:
		/* With keepalive on, WireGuard re-handshakes every 2 minutes while the path works. */
		if (keepalive_on && (obs->handshake_s == 0 ||
				     obs->wall_now_s - obs->handshake_s > NODE_PEER_STALE_S)) {
			p->state = NODE_PEER_FAILED;
			p->path = NODE_PATH_NONE;
			p->stale = true;
			/* A stale relay is gone too (idle teardown, a coordinator restart): the
			 * next PUNCH or RELAY starts over. */
			memset(&p->relay, 0, sizeof(p->relay));
			return NODE_PEER_DOWN;
		}
		/* WireGuard roams to where authentic packets come from; follow it. */
		if (addr_is_set(&obs->endpoint))
			p->path = classify_endpoint(p, &obs->endpoint);
		/* The timer asked for this slot's PUNCH and none came (lost, or the coordinator's
		 * re-punch limit): the next slot asks again. */
		if (p->upgrade_asked_ms &&
		    now_ms - p->upgrade_asked_ms >= NODE_PEER_UPGRADE_MISS_MS)
			upgrade_next_slot(p, now_ms);
		return NODE_PEER_NOTHING;
	case NODE_PEER_IDLE:
	case NODE_PEER_FAILED:
		/*
		 * A path we did not set up: left by a previous run (IDLE), or the peer
		 * reached us on its own after we gave up (FAILED, needs a new handshake).
		 */
		if (addr_is_set(&obs->endpoint) && hs_fresh(obs) &&
		    (p->state == NODE_PEER_IDLE || new_since_seen)) {
			set_up(p, classify_endpoint(p, &obs->endpoint));
			return NODE_PEER_UP_NOW;
		}
		return NODE_PEER_NOTHING;
	}
	return NODE_PEER_NOTHING;
}

const struct node_peer_cand *node_peer_candidate(const struct node_peer *p)
{
	return p->cur < p->n_cands ? &p->cands[p->cur] : NULL;
}

bool node_peer_attempt_open(const struct node_peer *p)
{
	return p->state == NODE_PEER_TRYING;
}

uint64_t node_peer_kick_due(const struct node_peer *p)
{
	return p->state == NODE_PEER_TRYING && p->kick_ms ? p->kick_ms : UINT64_MAX;
}

uint64_t node_peer_upgrade_due(const struct node_peer *p)
{
	if (!p->upgrade_timer || !addr_is_set(&p->relay) || p->state != NODE_PEER_UP ||
	    p->path != NODE_PATH_RELAY || p->upgrading || p->upgrade_asked_ms)
		return UINT64_MAX;
	return p->upgrade_after_ms;
}

uint64_t node_peer_resync_due(const struct node_peer *p)
{
	uint64_t since = p->last_punch_ms > p->resync_ms ? p->last_punch_ms : p->resync_ms;

	if (p->path != NODE_PATH_NONE || p->state == NODE_PEER_TRYING)
		return node_peer_upgrade_due(p);
	return since + p->resync_wait_ms;
}

bool node_peer_wants_resync(const struct node_peer *p, uint64_t now_ms)
{
	return now_ms >= node_peer_resync_due(p);
}

void node_peer_resync_asked(struct node_peer *p, uint64_t now_ms)
{
	if (now_ms >= node_peer_upgrade_due(p)) {
		/* An upgrade slot: the no-path backoff is not this peer's business now. */
		p->upgrade_asked_ms = now_ms ? now_ms : 1;
		return;
	}
	p->resync_ms = now_ms;
	p->resync_wait_ms = p->resync_wait_ms * 2 > NODE_PEER_RESYNC_MAX_MS
				    ? NODE_PEER_RESYNC_MAX_MS
				    : p->resync_wait_ms * 2;
}

const char *node_path_name(enum node_path path)
{
	switch (path) {
	case NODE_PATH_LAN:
		return "lan";
	case NODE_PATH_DIRECT:
		return "direct";
	case NODE_PATH_IPV6:
		return "ipv6";
	case NODE_PATH_RELAY:
		return "relay";
	case NODE_PATH_NONE:
		break;
	}
	return "none";
}

// SPDX-License-Identifier: MIT
/*
 * paths - the node's peer table and the PUNCHes of every link merged into
 * it (see paths.h). Pure.
 */
#include "wgpunch/paths.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define X(name, help) COUNTER_DEF(paths_counters, name, help)
COUNTER_TABLE_DEFINE(paths_counters, PATHS_COUNTERS(X));
#undef X

void paths_init(struct paths *ps)
{
	memset(ps, 0, sizeof(*ps));
}

void paths_free(struct paths *ps)
{
	free(ps->peers);
	ps->peers = NULL;
	ps->n = 0;
}

struct paths_peer *paths_find(struct paths *ps, const uint8_t key[KEY_LEN])
{
	size_t i;

	for (i = 0; i < ps->n; i++)
		if (memcmp(ps->peers[i].m.key, key, KEY_LEN) == 0)
			return &ps->peers[i];
	return NULL;
}

int paths_sync(struct paths *ps, const uint8_t (*keys)[KEY_LEN], size_t n, uint64_t now_ms)
{
	struct paths_peer *np, *old;
	bool changed = n != ps->n;
	size_t i;

	np = calloc(n ? n : 1, sizeof(*np));
	if (!np)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		old = paths_find(ps, keys[i]);
		if (old) {
			np[i] = *old;
		} else {
			node_peer_init(&np[i].m, keys[i], now_ms);
			changed = true;
		}
	}
	free(ps->peers);
	ps->peers = np;
	ps->n = n;
	return changed;
}

static bool same_candidates(const struct proto_punch *a, const struct proto_punch *b)
{
	unsigned int i;

	if (!addr_equal(&a->peer_public, &b->peer_public) || a->n_lan != b->n_lan)
		return false;
	for (i = 0; i < a->n_lan && i < PROTO_MAX_LAN; i++)
		if (!addr_equal(&a->lan[i], &b->lan[i]))
			return false;
	return true;
}

static bool attempt_open(const struct paths_peer *p)
{
	return node_peer_attempt_open(&p->m) || node_peer_kick_due(&p->m) != UINT64_MAX;
}

enum paths_verdict paths_on_punch(struct paths *ps, unsigned int link_id,
				  const struct proto_punch *punch,
				  const struct node_peer_self *self,
				  const struct node_peer_obs *obs, uint64_t now_ms,
				  struct paths_peer **out, enum node_peer_action *act)
{
	struct paths_peer *p = paths_find(ps, punch->peer_key);

	ps->counters.punches++;
	*out = p;
	if (!p) {
		ps->counters.punches_ignored++;
		return PATHS_IGNORED;
	}
	/* The same pair punched by a second coordinator: restarting would reset the attempt
	 * the first one opened, whose packets may be crossing right now. */
	if (attempt_open(p) && p->link_id && p->link_id != link_id &&
	    same_candidates(&p->punch, punch)) {
		ps->counters.punches_merged++;
		return PATHS_MERGED;
	}
	/* With a relay a PUNCH would point WireGuard back at a direct candidate that failed (or
	 * never could work), and a handshake through the relay would pass for the direct
	 * candidate's: the relay stays until its path goes stale. RELAY and PUNCH of one pair
	 * come in either order (the second side's PUNCH waits for the first side's ack). */
	if (addr_is_set(&p->m.relay)) {
		p->punch_link = link_id;
		*act = node_peer_upgrade(&p->m, punch, self, obs, now_ms);
		if (*act == NODE_PEER_NOTHING) {
			ps->counters.punches_on_relay++;
			return PATHS_MERGED;
		}
		ps->counters.upgrades_tried++;
		p->link_id = link_id;
		p->punch = *punch;
		return PATHS_RUN;
	}
	*act = node_peer_on_punch(&p->m, punch, self, obs, now_ms);
	p->punch_link = link_id;
	if (attempt_open(p)) {
		p->link_id = link_id;
		p->punch = *punch;
	} else {
		p->link_id = 0;
	}
	return PATHS_RUN;
}

struct paths_peer *paths_on_relay(struct paths *ps, unsigned int link_id,
				  const struct proto_relay *relay, uint32_t rnd,
				  const struct node_peer_obs *obs, uint64_t now_ms,
				  enum node_peer_action *act)
{
	struct paths_peer *p = paths_find(ps, relay->peer_key);

	*act = NODE_PEER_NOTHING;
	if (!p)
		return NULL;
	ps->counters.relays++;
	p->relay_link = link_id;
	*act = node_peer_on_relay(&p->m, &relay->relay, relay->flags & PROTO_RELAY_F_SECOND, rnd,
				  obs, now_ms);
	p->link_id = attempt_open(p) ? link_id : 0;
	memset(&p->punch, 0, sizeof(p->punch));
	return p;
}

void paths_link_down(struct paths *ps, unsigned int link_id)
{
	size_t i;

	for (i = 0; i < ps->n; i++) {
		if (ps->peers[i].link_id == link_id)
			ps->peers[i].link_id = 0;
		if (ps->peers[i].punch_link == link_id)
			ps->peers[i].punch_link = 0;
		if (ps->peers[i].relay_link == link_id)
			ps->peers[i].relay_link = 0;
	}
}

size_t paths_updates(const struct paths_peer *p, enum node_peer_action act, uint16_t keepalive_s,
		     struct paths_write u[2])
{
	const struct node_peer_cand *cand = node_peer_candidate(&p->m);
	bool kick = act == NODE_PEER_WRITE;
	size_t n = 0;

	memset(u, 0, 2 * sizeof(*u));
	if (act == NODE_PEER_KICK || act == NODE_PEER_UP_KEEPALIVE) {
		memcpy(u[0].public_key, p->m.key, KEY_LEN);
		u[0].flags = PATHS_W_KEEPALIVE;
		u[0].keepalive_s = 0;
		memcpy(u[1].public_key, p->m.key, KEY_LEN);
		u[1].flags = PATHS_W_KEEPALIVE;
		u[1].keepalive_s = keepalive_s;
		return 2;
	}
	if ((act != NODE_PEER_WRITE && act != NODE_PEER_WRITE_QUIET) || !cand)
		return 0;
	if (kick) {
		memcpy(u[n].public_key, p->m.key, KEY_LEN);
		u[n].flags = PATHS_W_KEEPALIVE;
		u[n].keepalive_s = 0;
		n++;
	}
	memcpy(u[n].public_key, p->m.key, KEY_LEN);
	u[n].flags = PATHS_W_ENDPOINT | PATHS_W_KEEPALIVE;
	u[n].endpoint = cand->addr;
	u[n].keepalive_s = kick ? keepalive_s : 0;
	n++;
	return n;
}

uint64_t paths_poll_delay(const struct paths *ps, uint64_t now_ms)
{
	uint64_t delay = PATHS_POLL_SLOW_MS, due;
	size_t i;

	for (i = 0; i < ps->n; i++)
		if (node_peer_attempt_open(&ps->peers[i].m))
			delay = PATHS_POLL_FAST_MS;
	for (i = 0; i < ps->n; i++) {
		due = node_peer_kick_due(&ps->peers[i].m);
		if (due == UINT64_MAX)
			continue;
		due = due > now_ms ? due - now_ms : 0;
		if (due < delay)
			delay = due;
	}
	return delay;
}

uint64_t paths_resync_due(const struct paths *ps)
{
	uint64_t due = UINT64_MAX, d;
	size_t i;

	for (i = 0; i < ps->n; i++) {
		d = node_peer_resync_due(&ps->peers[i].m);
		if (d < due)
			due = d;
	}
	return due;
}

bool paths_resync(struct paths *ps, uint64_t now_ms, bool *early)
{
	bool any = false;
	size_t i;

	*early = false;
	for (i = 0; i < ps->n; i++) {
		struct node_peer *p = &ps->peers[i].m;

		if (!node_peer_wants_resync(p, now_ms))
			continue;
		/* While the backoff is below the refresh period, REGISTER now; after that the
		 * refresh carries the flag, so a peer that stays away costs no extra traffic. */
		if (p->resync_wait_ms < NODE_PEER_RESYNC_MS)
			*early = true;
		node_peer_resync_asked(p, now_ms);
		any = true;
	}
	return any;
}

void paths_fill_register(const struct paths *ps, struct proto_register *reg)
{
	size_t i;

	/* One page for now: as in version 1, peers past PROTO_MAX_PEERS are not registered
	 * (docs/operations.md, "Limits of this release"). */
	reg->page = 0;
	reg->n_pages = 1;
	reg->n_peers = 0;
	for (i = 0; i < ps->n && reg->n_peers < PROTO_MAX_PEERS; i++)
		reg->peers[reg->n_peers++] = key_fingerprint(ps->peers[i].m.key);
}

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
	free(ps->slot);
	free(ps->fps);
	ps->peers = NULL;
	ps->slot = NULL;
	ps->fps = NULL;
	ps->n = ps->cap = 0;
}

static int fp_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* WireGuard public keys are curve points the operator configured: their first bytes are as
 * good a hash as any, and nobody outside chooses them. */
static size_t key_hash(const uint8_t key[KEY_LEN])
{
	uint64_t h;

	memcpy(&h, key, sizeof(h));
	return (size_t)(h ^ h >> 29);
}

struct paths_peer *paths_find(const struct paths *ps, const uint8_t key[KEY_LEN])
{
	size_t i;

	if (!ps->cap)
		return NULL;
	for (i = key_hash(key) & (ps->cap - 1); ps->slot[i]; i = (i + 1) & (ps->cap - 1)) {
		struct paths_peer *p = &ps->peers[ps->slot[i] - 1];

		if (memcmp(p->m.key, key, KEY_LEN) == 0)
			return p;
	}
	return NULL;
}

/* A new index for peers[0..n): -ENOMEM leaves nothing half built. */
static int index_build(uint32_t **slot_out, size_t *cap_out, const struct paths_peer *peers,
		       size_t n)
{
	size_t cap = 8, i, j;
	uint32_t *slot;

	while (cap < 2 * n + 1)
		cap <<= 1;
	slot = calloc(cap, sizeof(*slot));
	if (!slot)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		for (j = key_hash(peers[i].m.key) & (cap - 1); slot[j]; j = (j + 1) & (cap - 1))
			;
		slot[j] = (uint32_t)(i + 1);
	}
	*slot_out = slot;
	*cap_out = cap;
	return 0;
}

int paths_sync(struct paths *ps, const uint8_t (*keys)[KEY_LEN], size_t n, uint64_t now_ms)
{
	struct paths_peer *np, *old;
	bool changed = n != ps->n;
	uint64_t *fps;
	uint32_t *slot;
	size_t i, cap;

	if (n >= UINT32_MAX)
		return -E2BIG;
	np = calloc(n ? n : 1, sizeof(*np));
	if (!np)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		/* The device keeps its order: the peer at the same index is the likely one. */
		old = i < ps->n && memcmp(ps->peers[i].m.key, keys[i], KEY_LEN) == 0
			      ? &ps->peers[i]
			      : paths_find(ps, keys[i]);
		if (old) {
			np[i] = *old;
		} else {
			node_peer_init(&np[i].m, keys[i], now_ms);
			changed = true;
		}
	}
	fps = malloc((n ? n : 1) * sizeof(*fps));
	if (!fps || index_build(&slot, &cap, np, n) < 0) {
		free(fps);
		free(np);
		return -ENOMEM;
	}
	for (i = 0; i < n; i++)
		fps[i] = key_fingerprint(np[i].m.key);
	qsort(fps, n, sizeof(*fps), fp_cmp);
	free(ps->peers);
	free(ps->slot);
	free(ps->fps);
	ps->peers = np;
	ps->n = n;
	ps->slot = slot;
	ps->cap = cap;
	ps->fps = fps;
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
	/* Direct after an upgrade: this side closed its relay (RELAY_CLOSE), and a PUNCH now is
	 * the coordinator following a change (a NAT that rebound): an ordinary punch, which must
	 * not take the old relay for a relay still in use (a failed attempt would then wait for
	 * PUNCHes that are only acked). */
	if (addr_is_set(&p->m.relay) && p->m.state == NODE_PEER_UP &&
	    p->m.path != NODE_PATH_RELAY) {
		memset(&p->m.relay, 0, sizeof(p->m.relay));
		p->m.upgrade_timer = false;
	}
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
	/* A relay given on request: the direct attempt failed for a reason the coordinator
	 * cannot see (a filter on the way, loss), which may pass; the upgrade timer asks for a
	 * PUNCH in each slot. Given at once, the coordinator saw that no direct path can work
	 * and punches again when that changes. A RELAY repeated for a working relay (NOTHING)
	 * keeps the timer as it was. */
	if (*act != NODE_PEER_NOTHING)
		p->m.upgrade_timer = !(relay->flags & PROTO_RELAY_F_AT_ONCE);
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
	if (act == NODE_PEER_KICK || act == NODE_PEER_UP_KEEPALIVE || act == NODE_PEER_NUDGE) {
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
		 * refresh carries the flag, so a peer that stays away costs no extra traffic. An
		 * upgrade slot asks now: the other side's slot is now too. */
		if (now_ms >= node_peer_upgrade_due(p)) {
			ps->counters.upgrades_asked++;
			*early = true;
		} else if (p->resync_wait_ms < NODE_PEER_RESYNC_MS) {
			*early = true;
		}
		node_peer_resync_asked(p, now_ms);
		any = true;
	}
	return any;
}

void paths_fill_register(const struct paths *ps, struct proto_register *reg)
{
	size_t pages = ps->n ? (ps->n + PROTO_MAX_PEERS - 1) / PROTO_MAX_PEERS : 1, at, i;

	if (pages > PATHS_MAX_PAGES)
		pages = PATHS_MAX_PAGES; /* the rest is not registered: see paths.h */
	reg->n_pages = (uint16_t)pages;
	if (reg->page >= pages)
		reg->page = (uint16_t)(pages - 1);
	at = (size_t)reg->page * PROTO_MAX_PEERS;
	reg->n_peers = 0;
	for (i = at; i < ps->n && reg->n_peers < PROTO_MAX_PEERS; i++)
		reg->peers[reg->n_peers++] = ps->fps[i];
}

/* ---- why a peer is not connected ---- */

enum paths_reason paths_explain(const struct paths_peer *p, const struct paths_links_view *links,
				uint64_t now_ms, struct paths_explain *out)
{
	const struct node_peer *m = &p->m;
	uint64_t since_punch = now_ms > m->last_punch_ms ? now_ms - m->last_punch_ms : 0;

	memset(out, 0, sizeof(*out));
	out->n_cands = m->n_cands;
	if (m->cur < m->n_cands) {
		out->cand = &m->cands[m->cur];
		out->cand_no = m->cur + 1u;
	}
	if (m->state == NODE_PEER_UP && m->path != NODE_PATH_NONE) {
		out->reason = PATHS_REASON_NONE;
	} else if (node_peer_attempt_open(m)) {
		/* Under way even when the link that opened it is gone: say what is happening. */
		out->reason = PATHS_REASON_ATTEMPT;
		out->since_ms = since_punch;
	} else if (links->n_up == 0) {
		out->reason = PATHS_REASON_NO_COORDINATOR;
	} else if (m->state == NODE_PEER_IDLE) {
		/* Never punched: a coordinator with both sides would have by now. The node cannot
		 * tell an absent peer from one that does not list us, and must not. */
		out->reason = since_punch < PATHS_FIRST_PUNCH_MS ? PATHS_REASON_WAITING
								 : PATHS_REASON_PEER_UNKNOWN;
	} else if (m->resync_ms > m->last_punch_ms && since_punch >= PATHS_UNANSWERED_MS) {
		/* Asked again (RESYNC) since the last PUNCH, and nothing came: gone since. */
		out->reason = PATHS_REASON_PEER_UNKNOWN;
	} else if (m->stale) {
		out->reason = PATHS_REASON_PATH_LOST;
	} else if (links->per_destination) {
		/* Only our side is known; the text says what follows if the peer's is the same. */
		out->reason = links->relay ? PATHS_REASON_NO_RELAY : PATHS_REASON_RELAY_OFF;
	} else {
		out->reason = PATHS_REASON_NO_HANDSHAKE;
	}
	if (out->reason == PATHS_REASON_NONE || out->reason == PATHS_REASON_NO_COORDINATOR ||
	    out->reason == PATHS_REASON_WAITING || out->reason == PATHS_REASON_PEER_UNKNOWN) {
		out->cand = NULL;
		out->cand_no = 0;
	}
	return out->reason;
}

const char *paths_reason_name(enum paths_reason r)
{
	switch (r) {
	case PATHS_REASON_NONE:
		return "connected";
	case PATHS_REASON_ATTEMPT:
		return "attempt_running";
	case PATHS_REASON_NO_COORDINATOR:
		return "no_coordinator";
	case PATHS_REASON_WAITING:
		return "waiting_for_punch";
	case PATHS_REASON_PEER_UNKNOWN:
		return "peer_not_at_coordinator";
	case PATHS_REASON_NO_HANDSHAKE:
		return "no_handshake";
	case PATHS_REASON_RELAY_OFF:
		return "per_destination_relay_off";
	case PATHS_REASON_NO_RELAY:
		return "per_destination_no_relay";
	case PATHS_REASON_PATH_LOST:
		return "path_lost";
	}
	return "unknown";
}

_Static_assert(NODE_PEER_STALE_S == 180, "paths_reason_text() says 180 s");

const char *paths_reason_text(enum paths_reason r)
{
	switch (r) {
	case PATHS_REASON_NONE:
		return "connected";
	case PATHS_REASON_ATTEMPT:
		return "a punch attempt is running";
	case PATHS_REASON_NO_COORDINATOR:
		return "no coordinator session is up";
	case PATHS_REASON_WAITING:
		return "no punch from a coordinator yet";
	case PATHS_REASON_PEER_UNKNOWN:
		return "the peer has not appeared at any of our coordinators: it is not registered "
		       "there, or it does not list this node's key (the node cannot tell which)";
	case PATHS_REASON_NO_HANDSHAKE:
		return "WireGuard completed no handshake on any candidate endpoint; waiting for "
		       "the next punch";
	case PATHS_REASON_RELAY_OFF:
		return "no direct candidate worked and this node's NAT maps per destination: "
		       "if the peer's does too, only a relay can connect them, and the relay "
		       "is off (relay = no)";
	case PATHS_REASON_NO_RELAY:
		return "no direct candidate worked and this node's NAT maps per destination: "
		       "if the peer's does too, only a relay can connect them, and no relay was "
		       "offered (the peer or the coordinator has relay = no, or its relay quota "
		       "is full)";
	case PATHS_REASON_PATH_LOST:
		return "the path went stale (no WireGuard handshake for 180 s); asking for a new "
		       "punch";
	}
	return "unknown";
}

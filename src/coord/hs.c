// SPDX-License-Identifier: MIT
/*
 * hs - the coordinator's handshakes: flood protection, then the Noise IK
 * responder (rendezvous.md section 1).
 */
#include "wgpunch/hs.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#include <sodium.h>

#include "wgpunch/dir.h"
#include "wgpunch/filter.h"
#include "wgpunch/key.h"
#include "wgpunch/log.h"
#include "wgpunch/proto.h"
#include "wgpunch/registry.h"
#include "wgpunch/session.h"
#include "wgpunch/transport.h"

#define X(name, help) COUNTER_DEF(hs_counters, name, help)
COUNTER_TABLE_DEFINE(hs_counters, HS_COUNTERS(X));
#undef X

/* ---- handshake flood protection (pure) ---- */

/*
 * GCRA, a token bucket kept as one number: tat is when the bucket would be
 * full again. One more is allowed while that lies at most (burst - 1)
 * intervals ahead. *tat is only advanced by the caller (on allow), so a
 * handshake the other check refuses is not charged here.
 */
static bool gcra_allows(uint64_t tat_us, uint64_t now_us, uint64_t interval_us, uint64_t burst,
			uint64_t *next_us)
{
	uint64_t t = tat_us > now_us ? tat_us : now_us;

	if (t - now_us > (burst - 1) * interval_us)
		return false;
	*next_us = t + interval_us;
	return true;
}

void hs_limit_init(struct hs_limit *l, const uint8_t key[HS_HASH_KEY_LEN])
{
	memset(l, 0, sizeof(*l));
	memcpy(l->hash_key, key, HS_HASH_KEY_LEN);
}

/* The source's slot: its IPv4 address, or the /64 of its IPv6 address. */
static size_t hs_slot(const struct hs_limit *l, const struct addr *from)
{
	uint8_t in[1 + 8] = { 0 }, h[crypto_shorthash_BYTES];
	size_t len;
	uint64_t v = 0;

	if (addr_family(from) == AF_INET6 && !IN6_IS_ADDR_V4MAPPED(&from->in6.sin6_addr)) {
		in[0] = 6;
		memcpy(in + 1, from->in6.sin6_addr.s6_addr, 8);
		len = 9;
	} else if (addr_family(from) == AF_INET6) {
		in[0] = 4; /* the IPv4 host, whichever socket it came through */
		memcpy(in + 1, from->in6.sin6_addr.s6_addr + 12, 4);
		len = 5;
	} else {
		in[0] = 4;
		memcpy(in + 1, &from->in4.sin_addr, 4);
		len = 5;
	}
	crypto_shorthash(h, in, len, l->hash_key);
	for (size_t i = 0; i < sizeof(h); i++)
		v = v << 8 | h[i];
	return (size_t)(v % HS_SLOTS);
}

enum hs_verdict hs_limit_check(struct hs_limit *l, const struct addr *from, uint64_t now_ms)
{
	uint64_t now_us = now_ms * 1000, *src = &l->source_tat_us[hs_slot(l, from)];
	uint64_t src_next, global_next;

	/* The source first: one loud source must not spend the budget of all. */
	if (!gcra_allows(*src, now_us, 1000000 / HS_SOURCE_PER_S, HS_SOURCE_BURST, &src_next))
		return HS_SOURCE_LIMITED;
	if (!gcra_allows(l->global_tat_us, now_us, 1000000 / HS_GLOBAL_PER_S, HS_GLOBAL_PER_S,
			 &global_next))
		return HS_OVER_BUDGET;
	*src = src_next;
	l->global_tat_us = global_next;
	return HS_ALLOW;
}

/* Both before any X25519 work; what is dropped is counted, and logged at debug level. */
static bool hs_allowed(struct hs *h, const struct addr *from)
{
	uint64_t now = uv_now(h->loop);

	switch (hs_limit_check(&h->limit, from, now)) {
	case HS_ALLOW:
		return true;
	case HS_SOURCE_LIMITED:
		transport_drop(&h->ctr.hs_rate_limited, from,
			       "too many handshakes from its source");
		return false;
	case HS_OVER_BUDGET:
		break;
	}
	transport_drop(&h->ctr.hs_over_budget, from, "handshake budget spent");
	/* The operator should know: a flood, or more nodes re-keying than one core serves. */
	if (!h->budget_warned_ms || now - h->budget_warned_ms >= 60000) {
		h->budget_warned_ms = now;
		log_warn("more than %d handshakes a second: dropping the excess (%llu so far), "
			 "nodes retry",
			 HS_GLOBAL_PER_S, (unsigned long long)h->ctr.hs_over_budget);
	}
	return false;
}

/* ---- the responder ---- */

/*
 * HS_INIT on P. Past the flood protection and the Noise checks (authentic, authorised key,
 * timestamp newer than the last accepted), it answers HS_RESP; the new session replaces the
 * node's old one, its entry (mapping, filter, peers) stays, and a new session address starts a
 * filter test. What fails a check is dropped and counted.
 */
static void hs_on_init(void *arg, const struct transport_rx *rx)
{
	struct hs *h = arg;
	const struct proto_outer *o = rx->outer;
	const struct addr *from = rx->from;
	uint8_t ts[PROTO_TIMESTAMP_LEN], e_priv[32], noise[PROTO_HS_RESP_NOISE_LEN], out[128];
	struct proto_outer resp = { .type = PROTO_HS_RESP };
	struct session_keys keys;
	struct session_hs hs;
	struct reg_node *n;
	bool created = false;
	ssize_t r;

	if (!hs_allowed(h, from))
		return;
	if (session_hs_init(&hs, false, (const uint8_t *)SESSION_PROLOGUE, strlen(SESSION_PROLOGUE),
			    h->conf->coord.private_key, NULL) < 0) {
		h->ctr.hs_failed++;
		goto out;
	}
	r = session_hs_read_msg1(&hs, o->body, o->body_len, ts, sizeof(ts));
	if (r != PROTO_TIMESTAMP_LEN) {
		transport_drop(&h->ctr.hs_bad, from, "handshake does not authenticate");
		goto out;
	}
	if (!config_key_authorized(h->conf, hs.rs)) {
		transport_drop(&h->ctr.hs_unauthorized, from,
			       "handshake from a key not authorised");
		goto out;
	}
	n = dir_find(h->dir, hs.rs);
	if (n && !session_tai64n_after(ts, n->hs_timestamp)) {
		transport_drop(&h->ctr.hs_replayed, from, "handshake timestamp not newer (replay)");
		goto out;
	}
	if (!n) {
		int e = dir_add(h->dir, hs.rs, &n);

		if (e < 0) {
			transport_drop(e == -ENOSPC ? &h->ctr.hs_full : &h->ctr.hs_failed, from,
				       e == -ENOSPC ? "registry full" : "cannot add node");
			goto out;
		}
		created = true;
	}
	randombytes_buf(e_priv, sizeof(e_priv));
	r = session_hs_write_msg2(&hs, e_priv, NULL, 0, noise, sizeof(noise));
	if (r != PROTO_HS_RESP_NOISE_LEN || dir_new_index(h->dir, n) < 0) {
		h->ctr.hs_failed++;
		if (created)
			dir_forget(h->dir, n);
		goto out;
	}
	session_hs_split(&hs, &keys);

	/* The new session replaces the old one; the entry (mapping, filter, peers) stays. */
	memcpy(n->hs_timestamp, ts, sizeof(ts));
	transport_session_install(h->t, n, &keys, o->sender_idx, rx->sock->id, from);
	dir_touch(h->dir, n);
	h->ctr.hs_accepted++;

	resp.sender_idx = n->local_idx;
	resp.receiver_idx = o->sender_idx;
	resp.body = noise;
	resp.body_len = sizeof(noise);
	r = proto_encode_outer(out, sizeof(out), &resp);
	if (r > 0)
		transport_send(h->t, rx->sock->id, from, out, (size_t)r);
	if (log_enabled(LOG_LEVEL_DEBUG)) {
		char k[KEY_SHORT_LEN], a[ADDR_STRLEN];

		log_debug("session with %s from %s, index %08x", key_short(n->key, k),
			  addr_format(from, a), n->local_idx);
	}
	/* After HS_RESP, so the node has the keys when FILTER_GO arrives. */
	filter_on_session_addr(h->filter, n);
out:
	sodium_memzero(&hs, sizeof(hs));
	sodium_memzero(&keys, sizeof(keys));
	sodium_memzero(e_priv, sizeof(e_priv));
}

void hs_init(struct hs *h, uv_loop_t *loop, const struct config *conf, struct transport *t,
	     struct dir *dir, struct filter *filter)
{
	uint8_t key[HS_HASH_KEY_LEN];

	h->loop = loop;
	h->conf = conf;
	h->t = t;
	h->dir = dir;
	h->filter = filter;
	h->budget_warned_ms = 0;
	randombytes_buf(key, sizeof(key));
	hs_limit_init(&h->limit, key);
	sodium_memzero(key, sizeof(key));
	/* Handshakes only on P: P + 1 never starts a session. */
	transport_route_outer(t, PROTO_HS_INIT, TRANSPORT_ROLE_BIT(TRANSPORT_MAIN), hs_on_init, h);
}

void hs_reload(struct hs *h, const struct config *conf)
{
	h->conf = conf;
}

// SPDX-License-Identifier: MIT
/*
 * coord_hs - the coordinator's handshakes: flood protection, then the Noise
 * IK responder (rendezvous.md section 1).
 */
#include "wgpunch/coord_hs.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#include <sodium.h>

#include "wgpunch/config.h"
#include "wgpunch/coord_filter.h"
#include "wgpunch/coord_internal.h"
#include "wgpunch/key.h"
#include "wgpunch/log.h"
#include "wgpunch/proto.h"
#include "wgpunch/registry.h"
#include "wgpunch/session.h"

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

void coord_hs_limit_init(struct coord_hs_limit *l, const uint8_t key[COORD_HS_HASH_KEY_LEN])
{
	memset(l, 0, sizeof(*l));
	memcpy(l->hash_key, key, COORD_HS_HASH_KEY_LEN);
}

/* The source's slot: its IPv4 address, or the /64 of its IPv6 address. */
static size_t coord_hs_slot(const struct coord_hs_limit *l, const struct addr *from)
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
	return (size_t)(v % COORD_HS_SLOTS);
}

enum coord_hs_verdict coord_hs_limit_check(struct coord_hs_limit *l, const struct addr *from,
					   uint64_t now_ms)
{
	uint64_t now_us = now_ms * 1000, *src = &l->source_tat_us[coord_hs_slot(l, from)];
	uint64_t src_next, global_next;

	/* The source first: one loud source must not spend the budget of all. */
	if (!gcra_allows(*src, now_us, 1000000 / COORD_HS_SOURCE_PER_S, COORD_HS_SOURCE_BURST,
			 &src_next))
		return COORD_HS_SOURCE_LIMITED;
	if (!gcra_allows(l->global_tat_us, now_us, 1000000 / COORD_HS_GLOBAL_PER_S,
			 COORD_HS_GLOBAL_PER_S, &global_next))
		return COORD_HS_OVER_BUDGET;
	*src = src_next;
	l->global_tat_us = global_next;
	return COORD_HS_ALLOW;
}

/* Both before any X25519 work; what is dropped is counted, and logged at debug level. */
static bool coord_hs_allowed(struct coord *c, const struct addr *from)
{
	uint64_t now = uv_now(c->loop);

	switch (coord_hs_limit_check(&c->hs_limit, from, now)) {
	case COORD_HS_ALLOW:
		return true;
	case COORD_HS_SOURCE_LIMITED:
		coord_drop(&c->ctr.hs_rate_limited, from, "too many handshakes from its source");
		return false;
	case COORD_HS_OVER_BUDGET:
		break;
	}
	coord_drop(&c->ctr.hs_over_budget, from, "handshake budget spent");
	/* The operator should know: a flood, or more nodes re-keying than one core serves. */
	if (!c->budget_warned_ms || now - c->budget_warned_ms >= 60000) {
		c->budget_warned_ms = now;
		log_warn("more than %d handshakes a second: dropping the excess (%llu so far), "
			 "nodes retry",
			 COORD_HS_GLOBAL_PER_S, (unsigned long long)c->ctr.hs_over_budget);
	}
	return false;
}

/* ---- the responder ---- */

void coord_hs_on_init(struct coord *c, struct coord_sock *s, const struct addr *from,
		      const struct proto_outer *o)
{
	uint8_t ts[PROTO_TIMESTAMP_LEN], e_priv[32], noise[PROTO_HS_RESP_NOISE_LEN], out[128];
	struct proto_outer resp = { .type = PROTO_HS_RESP };
	struct session_keys keys;
	struct session_hs hs;
	struct reg_node *n;
	bool created = false;
	ssize_t r;

	if (!coord_hs_allowed(c, from))
		return;
	if (session_hs_init(&hs, false, (const uint8_t *)SESSION_PROLOGUE, strlen(SESSION_PROLOGUE),
			    c->conf->coord.private_key, NULL) < 0) {
		c->ctr.hs_failed++;
		goto out;
	}
	r = session_hs_read_msg1(&hs, o->body, o->body_len, ts, sizeof(ts));
	if (r != PROTO_TIMESTAMP_LEN) {
		coord_drop(&c->ctr.hs_bad, from, "handshake does not authenticate");
		goto out;
	}
	if (!config_key_authorized(c->conf, hs.rs)) {
		coord_drop(&c->ctr.hs_unauthorized, from, "handshake from a key not authorised");
		goto out;
	}
	n = registry_find(&c->reg, hs.rs);
	if (n && !session_tai64n_after(ts, n->hs_timestamp)) {
		coord_drop(&c->ctr.hs_replayed, from, "handshake timestamp not newer (replay)");
		goto out;
	}
	if (!n) {
		int e = registry_add(&c->reg, hs.rs, uv_now(c->loop), &n);

		if (e < 0) {
			coord_drop(e == -ENOSPC ? &c->ctr.hs_full : &c->ctr.hs_failed, from,
				   e == -ENOSPC ? "registry full" : "cannot add node");
			goto out;
		}
		created = true;
	}
	randombytes_buf(e_priv, sizeof(e_priv));
	r = session_hs_write_msg2(&hs, e_priv, NULL, 0, noise, sizeof(noise));
	if (r != PROTO_HS_RESP_NOISE_LEN || registry_assign_index(&c->reg, n, NULL, NULL) < 0) {
		c->ctr.hs_failed++;
		if (created)
			registry_remove(&c->reg, n);
		goto out;
	}
	session_hs_split(&hs, &keys);

	/* The new session replaces the old one; the entry (mapping, filter, peers) stays. */
	memcpy(n->hs_timestamp, ts, sizeof(ts));
	n->remote_idx = o->sender_idx;
	n->send_counter = 0;
	memcpy(n->send_key, keys.send, SESSION_KEY_LEN);
	memcpy(n->recv_key, keys.recv, SESSION_KEY_LEN);
	session_probe_key(&keys, n->probe_key);
	memset(&n->replay, 0, sizeof(n->replay));
	n->probe_seq[0] = n->probe_seq[1] = 0;
	registry_touch(&c->reg, n, uv_now(c->loop));
	c->ctr.hs_accepted++;

	resp.sender_idx = n->local_idx;
	resp.receiver_idx = o->sender_idx;
	resp.body = noise;
	resp.body_len = sizeof(noise);
	r = proto_encode_outer(out, sizeof(out), &resp);
	if (r > 0)
		coord_send(c, s, from, out, (size_t)r);
	if (log_enabled(LOG_LEVEL_DEBUG)) {
		char k[KEY_SHORT_LEN], a[ADDR_STRLEN];

		log_debug("session with %s from %s, index %08x", key_short(n->key, k),
			  addr_format(from, a), n->local_idx);
	}
	/* After HS_RESP, so the node has the keys when FILTER_GO arrives. */
	coord_filter_set_session_addr(c, n, s, from);
out:
	sodium_memzero(&hs, sizeof(hs));
	sodium_memzero(&keys, sizeof(keys));
	sodium_memzero(e_priv, sizeof(e_priv));
}

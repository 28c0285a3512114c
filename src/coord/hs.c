// SPDX-License-Identifier: MIT
/*
 * hs - the coordinator's handshakes: flood protection, then the Noise IK
 * responder (rendezvous.md section 1).
 */
#include "wgpunch/hs.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

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

void hs_source_params(struct ratelimit_params *p)
{
	ratelimit_params_default(p, HS_SOURCE_PER_S, HS_SOURCE_BURST);
}

/* The operator should know: a flood, or more nodes re-keying than the budget serves. */
static void hs_warn_budget(struct hs *h, uint64_t now)
{
	if (h->budget_warned_ms && now - h->budget_warned_ms < 60000)
		return;
	h->budget_warned_ms = now;
	log_warn("handshakes above the budget of %u a second: %llu dropped, %llu cookie replies "
		 "so far; nodes retry",
		 h->budget.p.all.rate_per_s, (unsigned long long)h->ctr.hs_over_budget,
		 (unsigned long long)h->ctr.hs_cookie_sent);
}

static void hs_next_cookie_nonce(struct hs *h, uint8_t out[COOKIE_NONCE_LEN])
{
	/* The last 8 bytes count, little-endian; the first 16 stay as drawn at start. */
	for (size_t i = COOKIE_NONCE_LEN - 8; i < COOKIE_NONCE_LEN && ++h->cookie_nonce[i] == 0;
	     i++)
		;
	memcpy(out, h->cookie_nonce, COOKIE_NONCE_LEN);
}

/* COOKIE_REPLY to the HS_INIT in rx: receiver_idx is its sender_idx, the body binds its mac1.
 * 64 bytes for 148: never an amplifier. */
static void hs_send_cookie(struct hs *h, const struct transport_rx *rx, uint64_t now)
{
	uint8_t rnd[COOKIE_SECRET_LEN], nonce[COOKIE_NONCE_LEN], body[COOKIE_REPLY_BODY_LEN];
	uint8_t out[PROTO_HDR_LEN + 4 + COOKIE_REPLY_BODY_LEN];
	struct proto_outer o = { .type = PROTO_COOKIE_REPLY };
	int r;
	ssize_t len;

	hs_next_cookie_nonce(h, nonce);
	r = cookie_reply_make(&h->cookie, rx->buf + PROTO_HS_INIT_MAC1_OFF, rx->from, nonce, now,
			      body);
	if (r == -ESTALE) {
		randombytes_buf(rnd, sizeof(rnd));
		cookie_responder_rotate(&h->cookie, rnd, now);
		sodium_memzero(rnd, sizeof(rnd));
		r = cookie_reply_make(&h->cookie, rx->buf + PROTO_HS_INIT_MAC1_OFF, rx->from, nonce,
				      now, body);
	}
	if (r != COOKIE_REPLY_BODY_LEN)
		return;
	o.receiver_idx = rx->outer->sender_idx;
	o.body = body;
	o.body_len = sizeof(body);
	len = proto_encode_outer(out, sizeof(out), &o);
	if (len <= 0 || (size_t)len >= rx->len)
		return;
	h->ctr.hs_cookie_sent++;
	transport_send(h->t, rx->sock->id, rx->from, out, (size_t)len);
}

/* An HS_INIT that would create or move state without proving its source: a cookie reply
 * (within the cookie budget), so that the next one can prove it. */
static void hs_require_cookie(struct hs *h, const struct transport_rx *rx, uint64_t now)
{
	h->ctr.hs_cookie_required++;
	if (hs_budget_take_cookie(&h->budget, now))
		hs_send_cookie(h, rx, now);
}

/* Steps 1-3 of the header, before any X25519: true when the Noise message may be read. */
static bool hs_admit(struct hs *h, const struct transport_rx *rx, uint64_t now, bool *proven)
{
	enum cookie_verdict v;

	if (cookie_responder_due(&h->cookie, now)) {
		uint8_t rnd[COOKIE_SECRET_LEN];

		randombytes_buf(rnd, sizeof(rnd));
		cookie_responder_rotate(&h->cookie, rnd, now);
		sodium_memzero(rnd, sizeof(rnd));
	}
	v = cookie_check(&h->cookie, rx->buf, rx->len, rx->from, now);
	if (v == COOKIE_BAD_MAC1) {
		transport_drop(&h->ctr.hs_bad_mac1, rx->from, "handshake mac1 wrong");
		return false;
	}
	*proven = v == COOKIE_MAC2_OK;
	/* Step 2: unproven, from where no session is: not a rekey, so a cookie whatever it says. */
	if (!*proven && !transport_may_hold_session(h->t, rx)) {
		h->ctr.hs_cookie_unread++;
		hs_require_cookie(h, rx, now);
		return false;
	}
	/* Only a proven source is charged: a forged one cannot spend a victim's bucket. */
	if (*proven && !ratelimit_allow(&h->source, rx->from, now)) {
		transport_drop(&h->ctr.hs_rate_limited, rx->from,
			       "too many handshakes from its source");
		return false;
	}
	switch (hs_budget_decide(&h->budget, *proven, now)) {
	case HS_PROCESS:
		return true;
	case HS_SEND_COOKIE:
		hs_send_cookie(h, rx, now);
		return false;
	case HS_DROP:
		break;
	}
	transport_drop(&h->ctr.hs_over_budget, rx->from, "handshake budget spent");
	hs_warn_budget(h, now);
	return false;
}

/* ---- the responder ---- */

/*
 * HS_INIT on P. Past the flood protection and the Noise checks (authentic, authorised key,
 * timestamp newer than the last accepted), it answers HS_RESP; the new session replaces the
 * node's old one, its entry (mapping, filter, peers) stays, and a new session address starts a
 * filter test. What fails a check is dropped and counted. The order is the header's.
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
	struct reg_addr src;
	enum ts_verdict tv;
	uint64_t now = uv_now(h->loop), fp;
	bool created = false, proven = false;
	ssize_t r;

	if (!hs_admit(h, rx, now, &proven))
		return;
	/* The static key's part (a fixed-base X25519, two hashes) was done once, at start. */
	session_hs_init_responder(&hs, &h->resp);
	if (session_hs_read_msg1_static(&hs, o->body, o->body_len) < 0) {
		transport_drop(&h->ctr.hs_bad, from, "handshake does not authenticate");
		goto out;
	}
	if (!config_key_authorized(h->conf, hs.rs)) {
		transport_drop(&h->ctr.hs_unauthorized, from,
			       "handshake from a key not authorised");
		goto out;
	}
	fp = key_fingerprint(hs.rs);
	/* Unproven, for a key with no timestamp (a new node, every node after a restart): the
	 * answer is a cookie reply whatever the timestamp says (step 5 below), so the second
	 * X25519 (ss) is not spent on it. Whether the rest authenticates is learnt with the
	 * cookie: the HS_INIT that carries it is read in full. */
	if (!proven && !ts_table_known(&h->ts, fp)) {
		hs_require_cookie(h, rx, now);
		goto out;
	}
	r = session_hs_read_msg1_payload(&hs, o->body, o->body_len, ts, sizeof(ts));
	if (r != PROTO_TIMESTAMP_LEN) {
		transport_drop(&h->ctr.hs_bad, from, "handshake does not authenticate");
		goto out;
	}
	tv = ts_table_check(&h->ts, fp, ts);
	if (tv == TS_REPLAY) {
		transport_drop(&h->ctr.hs_replayed, from, "handshake timestamp not newer (replay)");
		goto out;
	}
	n = dir_find(h->dir, hs.rs);
	registry_addr_pack(&src, from);
	/* Step 5: state only for a sender that showed it receives where it claims to be. A
	 * replay of a captured HS_INIT (after expiry, or after a restart emptied the table)
	 * lands here too: its source cannot read the cookie. */
	if (!proven && (!n || tv == TS_UNKNOWN || !registry_addr_equal(&src, &n->session_addr) ||
			n->sock != rx->sock->id.listen)) {
		hs_require_cookie(h, rx, now);
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
	ts_table_commit(&h->ts, fp, ts);
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

/*
 * The measurements' clock: this thread's CPU time, not wall time. The budget is a share of a
 * core, and wall time counts what other processes took of it while the measurement ran: a
 * coordinator started beside a busy job (on this 2-core test machine: 1,100 to 3,700 a second
 * at handshake_cpu 100 from one start to the next) kept a budget that small until restarted.
 */
static uint64_t hs_clock(void *arg)
{
	struct timespec ts;

	(void)arg;
	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) < 0)
		return uv_hrtime();
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The budget from the measured costs and conf's handshake_cpu; the counters stay. */
static int hs_size_budget(struct hs *h, const struct config *conf)
{
	struct hs_budget_counters ctr = h->budget.ctr;
	struct hs_budget_input in;
	struct hs_budget_params bp;
	int e;

	hs_budget_input_default(&in, h->hs_cost_ns, h->cookie_cost_ns);
	in.cpu_permille = (conf->coord.handshake_cpu ? conf->coord.handshake_cpu
						     : CONFIG_DEFAULT_HANDSHAKE_CPU) *
			  10u;
	e = hs_budget_params_from_input(&bp, &in);
	if (e < 0)
		return log_err_errno(e, "cannot size the handshake budget");
	hs_budget_init(&h->budget, &bp, uv_now(h->loop));
	h->budget.ctr = ctr;
	log_info("handshake costs %llu us, a cookie reply %llu ns: budget %u handshakes and %u "
		 "cookie replies a second (handshake_cpu %u%%)",
		 (unsigned long long)(h->hs_cost_ns / 1000), (unsigned long long)h->cookie_cost_ns,
		 bp.all.rate_per_s, bp.cookie.rate_per_s, in.cpu_permille / 10);
	return 0;
}

int hs_init(struct hs *h, uv_loop_t *loop, const struct config *conf, struct transport *t,
	    struct dir *dir, struct filter *filter)
{
	uint8_t key[RATELIMIT_KEY_LEN], secret[COOKIE_SECRET_LEN];
	struct ratelimit_params rp;
	uint32_t max_nodes =
		conf->coord.max_nodes ? conf->coord.max_nodes : CONFIG_DEFAULT_MAX_NODES;
	size_t ts_cap;
	int e;

	memset(h, 0, sizeof(*h));
	h->loop = loop;
	h->conf = conf;
	h->t = t;
	h->dir = dir;
	h->filter = filter;

	e = session_responder_init(&h->resp, (const uint8_t *)SESSION_PROLOGUE,
				   strlen(SESSION_PROLOGUE), conf->coord.private_key);
	if (e < 0)
		return log_err_errno(e, "cannot use the coordinator's private key");
	/* What this machine can do, now: the median of a few batches (hs_budget.h). */
	e = hs_budget_measure_responder(HS_MEASURE_RESPONDER_N, hs_clock, NULL, &h->hs_cost_ns);
	if (e == 0)
		e = hs_budget_measure_cookie(HS_MEASURE_COOKIE_N, hs_clock, NULL,
					     &h->cookie_cost_ns);
	if (e < 0)
		return log_err_errno(e, "cannot measure the handshake cost");
	e = hs_size_budget(h, conf);
	if (e < 0)
		return e;

	randombytes_buf(secret, sizeof(secret));
	cookie_responder_init(&h->cookie, conf->coord.public_key, secret, uv_now(loop));
	randombytes_buf(h->cookie_nonce, sizeof(h->cookie_nonce));
	sodium_memzero(secret, sizeof(secret));
	hs_source_params(&rp);
	randombytes_buf(key, sizeof(key));
	e = ratelimit_init(&h->source, HS_SOURCE_SLOTS, &rp, key);
	/* Room above max_nodes, so evictions do not happen in normal operation (ts_table.h);
	 * untouched pages of the calloc cost no memory. */
	ts_cap = (size_t)max_nodes + max_nodes / 4;
	if (ts_cap > TS_TABLE_MAX_CAPACITY)
		ts_cap = TS_TABLE_MAX_CAPACITY;
	randombytes_buf(key, sizeof(key));
	if (e == 0)
		e = ts_table_init(&h->ts, ts_cap, key);
	sodium_memzero(key, sizeof(key));
	if (e < 0) {
		hs_destroy(h);
		return log_err_errno(e, "cannot start the coordinator");
	}
	/* Handshakes only on P: P + 1 never starts a session. */
	transport_route_outer(t, PROTO_HS_INIT, TRANSPORT_ROLE_BIT(TRANSPORT_MAIN), hs_on_init, h);
	return 0;
}

void hs_destroy(struct hs *h)
{
	ratelimit_destroy(&h->source);
	ts_table_destroy(&h->ts);
	cookie_responder_wipe(&h->cookie);
	session_responder_wipe(&h->resp);
}

void hs_reload(struct hs *h, const struct config *conf)
{
	/* A new share of the core takes effect now, from the costs measured at start (config
	 * checked the range, so sizing cannot fail); the buckets start full again. */
	if (conf->coord.handshake_cpu != h->conf->coord.handshake_cpu)
		hs_size_budget(h, conf);
	h->conf = conf;
}

// SPDX-License-Identifier: MIT
/* coord_state - the state file's header and node records (format in the header). */
#include "wgpunch/coord_state.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

static const uint8_t state_magic[16] = "wgpunch-state\n";

_Static_assert(COORD_STATE_KEY_LEN == crypto_secretstream_xchacha20poly1305_KEYBYTES,
	       "stream key size");

/* ---- little-endian writer and reader ---- */

struct wr {
	uint8_t *p, *end;
	bool over;
};

static void put(struct wr *w, const void *b, size_t len)
{
	if (w->over || (size_t)(w->end - w->p) < len) {
		w->over = true;
		return;
	}
	memcpy(w->p, b, len);
	w->p += len;
}

static void put_u(struct wr *w, uint64_t v, size_t len)
{
	uint8_t b[8];

	for (size_t i = 0; i < len; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	put(w, b, len);
}

static void put_addr(struct wr *w, const struct reg_addr *a)
{
	put_u(w, a->family, 1);
	put(w, a->ip, 16);
	put_u(w, a->port, 2);
}

struct rd {
	const uint8_t *p, *end;
	bool short_;
};

static const uint8_t *get(struct rd *r, size_t len)
{
	const uint8_t *b = r->p;

	if (r->short_ || (size_t)(r->end - r->p) < len) {
		r->short_ = true;
		return NULL;
	}
	r->p += len;
	return b;
}

static void get_bytes(struct rd *r, void *out, size_t len)
{
	const uint8_t *b = get(r, len);

	if (b)
		memcpy(out, b, len);
	else
		memset(out, 0, len);
}

static uint64_t get_u(struct rd *r, size_t len)
{
	const uint8_t *b = get(r, len);
	uint64_t v = 0;

	for (size_t i = 0; b && i < len; i++)
		v |= (uint64_t)b[i] << (8 * i);
	return v;
}

/* False for an address no registry would hold. */
static bool get_addr(struct rd *r, struct reg_addr *a)
{
	memset(a, 0, sizeof(*a));
	a->family = (uint8_t)get_u(r, 1);
	get_bytes(r, a->ip, 16);
	a->port = (uint16_t)get_u(r, 2);
	return a->family == 0 || a->family == 4 || a->family == 6;
}

/* ---- header ---- */

void coord_state_header_encode(uint8_t out[COORD_STATE_HEADER_LEN],
			       const struct coord_state_header *h)
{
	struct wr w = { out, out + COORD_STATE_HEADER_LEN, false };

	put(&w, state_magic, sizeof(state_magic));
	put_u(&w, h->version, 4);
	put(&w, h->pub, KEY_LEN);
	put_u(&w, h->written_unix_ms, 8);
	put_u(&w, h->n_nodes, 4);
}

int coord_state_header_decode(const uint8_t in[COORD_STATE_HEADER_LEN],
			      struct coord_state_header *h)
{
	struct rd r = { in, in + COORD_STATE_HEADER_LEN, false };

	memset(h, 0, sizeof(*h));
	if (memcmp(get(&r, sizeof(state_magic)), state_magic, sizeof(state_magic)))
		return -EBADMSG;
	h->version = (uint32_t)get_u(&r, 4);
	if (h->version != COORD_STATE_VERSION)
		return -EPROTONOSUPPORT;
	get_bytes(&r, h->pub, KEY_LEN);
	h->written_unix_ms = get_u(&r, 8);
	h->n_nodes = (uint32_t)get_u(&r, 4);
	return 0;
}

void coord_state_key(uint8_t out[COORD_STATE_KEY_LEN], const uint8_t priv[KEY_LEN])
{
	static const char label[] = "wgpunch state file key v1";

	crypto_generichash(out, COORD_STATE_KEY_LEN, (const uint8_t *)label, sizeof(label) - 1,
			   priv, KEY_LEN);
}

/* ---- node records ---- */

ssize_t coord_state_encode_node(const struct reg_node *n, const uint8_t *ts, uint32_t age_ms,
				uint8_t *out, size_t cap)
{
	struct wr w = { out, out + cap, false };
	uint8_t n_lan = n->lan ? n->lan->n : 0;
	bool has6 = n->lan && n->lan->has6;
	static const uint8_t no_ts[12];

	put(&w, n->key, KEY_LEN);
	put_u(&w, n->local_idx, 4);
	put_u(&w, n->remote_idx, 4);
	put_u(&w, n->send_counter, 8);
	put_u(&w, n->replay.top, 8);
	put(&w, n->send_key, SESSION_KEY_LEN);
	put(&w, n->recv_key, SESSION_KEY_LEN);
	put(&w, n->probe_key, SESSION_KEY_LEN);
	put_u(&w, n->probe_seq[0], 8);
	put_u(&w, n->probe_seq[1], 8);
	put_u(&w, age_ms, 4);
	put_addr(&w, &n->session_addr);
	put_addr(&w, &n->mapping[0]);
	put_addr(&w, &n->mapping[1]);
	put_u(&w, n->filter_addr_hash, 4);
	put_u(&w, n->sock, 1);
	/* A pending filter test is not kept: it is redone. */
	put_u(&w, n->filter_state == REG_FILTER_DONE ? n->filter : 0, 1);
	put_u(&w, n->filter_state == REG_FILTER_DONE ? REG_FILTER_DONE : REG_FILTER_NONE, 1);
	put_u(&w, n->reg_flags, 1);
	put_u(&w, n->registered, 1);
	put_u(&w, n->wg_port, 2);
	put_u(&w, ts != NULL, 1);
	put(&w, ts ? ts : no_ts, 12);
	put_u(&w, n->n_peers, 2);
	put_u(&w, n_lan, 1);
	put_u(&w, has6, 1);
	for (uint16_t i = 0; i < n->n_peers; i++)
		put_u(&w, registry_peers(n)[i], 8);
	for (unsigned i = 0; i < (unsigned)n_lan + has6; i++)
		put_addr(&w, &n->lan->addr[i]);
	if (w.over)
		return -ENOSPC;
	return w.p - out;
}

int coord_state_decode_node(const uint8_t *in, size_t len, struct coord_state_node *out)
{
	struct rd r = { in, in + len, false };
	struct reg_node *n = &out->n;
	bool addrs_ok;

	memset(out, 0, sizeof(*out));
	get_bytes(&r, n->key, KEY_LEN);
	n->local_idx = (uint32_t)get_u(&r, 4);
	n->remote_idx = (uint32_t)get_u(&r, 4);
	n->send_counter = get_u(&r, 8);
	n->replay.top = get_u(&r, 8);
	get_bytes(&r, n->send_key, SESSION_KEY_LEN);
	get_bytes(&r, n->recv_key, SESSION_KEY_LEN);
	get_bytes(&r, n->probe_key, SESSION_KEY_LEN);
	n->probe_seq[0] = get_u(&r, 8);
	n->probe_seq[1] = get_u(&r, 8);
	out->age_ms = (uint32_t)get_u(&r, 4);
	addrs_ok = get_addr(&r, &n->session_addr);
	addrs_ok &= get_addr(&r, &n->mapping[0]);
	addrs_ok &= get_addr(&r, &n->mapping[1]);
	n->filter_addr_hash = (uint32_t)get_u(&r, 4);
	n->sock = (uint8_t)get_u(&r, 1);
	n->filter = (uint8_t)get_u(&r, 1);
	n->filter_state = (uint8_t)get_u(&r, 1);
	n->reg_flags = (uint8_t)get_u(&r, 1);
	uint64_t registered = get_u(&r, 1);
	n->wg_port = (uint16_t)get_u(&r, 2);
	uint64_t has_ts = get_u(&r, 1);
	get_bytes(&r, out->ts, 12);
	n->n_peers = (uint16_t)get_u(&r, 2);
	out->n_lan = (uint8_t)get_u(&r, 1);
	uint64_t has6 = get_u(&r, 1);

	if (r.short_ || !addrs_ok || registered > 1 || has_ts > 1 || has6 > 1 ||
	    (n->filter_state != REG_FILTER_NONE && n->filter_state != REG_FILTER_DONE) ||
	    !n->local_idx || n->n_peers > 1024 /* DIR_MAX_PEERS */)
		return -EBADMSG;
	n->registered = registered;
	out->has_ts = has_ts;
	out->has6 = has6;
	out->peers = get(&r, (size_t)n->n_peers * 8);
	out->lan = get(&r, ((size_t)out->n_lan + out->has6) * COORD_STATE_ADDR_LEN);
	if (r.short_ || r.p != r.end)
		return -EBADMSG;
	return 0;
}

/* ---- into the registry ---- */

static uint32_t saved_index(void *arg)
{
	return *(const uint32_t *)arg;
}

int coord_state_apply(struct registry *r, const struct coord_state_node *s, uint64_t now_ms,
		      struct reg_node **out)
{
	const struct reg_node *f = &s->n;
	uint64_t seen = now_ms > s->age_ms ? now_ms - s->age_ms : 0;
	uint64_t *fps = NULL;
	struct reg_node *n;
	int e;

	*out = NULL;
	e = registry_add(r, f->key, seen, &n);
	if (e < 0)
		return e;
	if (f->n_peers) {
		fps = malloc((size_t)f->n_peers * sizeof(*fps));
		if (!fps) {
			registry_remove(r, n);
			return -ENOMEM;
		}
		for (uint16_t i = 0; i < f->n_peers; i++) {
			struct rd rd = { s->peers + 8 * i, s->peers + 8 * i + 8, false };

			fps[i] = get_u(&rd, 8);
		}
	}
	e = registry_set_peers(n, fps, f->n_peers);
	free(fps);
	if (e >= 0 && (s->n_lan || s->has6)) {
		struct addr lan[UINT8_MAX + 1];
		struct rd rd = { s->lan,
				 s->lan + ((size_t)s->n_lan + s->has6) * COORD_STATE_ADDR_LEN,
				 false };
		struct reg_addr a;

		for (unsigned i = 0; i < s->n_lan; i++) {
			get_addr(&rd, &a);
			registry_addr_unpack(&lan[i], &a);
		}
		e = registry_set_lan(n, lan, s->n_lan);
		if (e >= 0 && s->has6) {
			get_addr(&rd, &a);
			registry_addr_unpack(&lan[0], &a);
			e = registry_set_mapping6(n, &lan[0]);
		}
	}
	if (e < 0) {
		registry_remove(r, n);
		return -ENOMEM;
	}
	/* The node's DATA names this index: without it the session is of no use (a collision
	 * only with a broken file: the indices were unique when it was written). */
	if (registry_assign_index(r, n, saved_index, (void *)&f->local_idx) == 0) {
		n->remote_idx = f->remote_idx;
		n->send_counter = f->send_counter;
		memcpy(n->send_key, f->send_key, SESSION_KEY_LEN);
		memcpy(n->recv_key, f->recv_key, SESSION_KEY_LEN);
		memcpy(n->probe_key, f->probe_key, SESSION_KEY_LEN);
		/* Everything up to the highest accepted counter counts as seen. */
		n->replay.top = f->replay.top;
		memset(n->replay.bitmap, 0xff, sizeof(n->replay.bitmap));
		memcpy(n->probe_seq, f->probe_seq, sizeof(n->probe_seq));
		n->session_addr = f->session_addr;
		n->sock = f->sock;
	}
	n->mapping[0] = f->mapping[0];
	n->mapping[1] = f->mapping[1];
	n->filter_addr_hash = f->filter_addr_hash;
	n->filter = f->filter;
	n->filter_state = f->filter_state;
	n->reg_flags = f->reg_flags;
	n->registered = f->registered;
	n->wg_port = f->wg_port;
	*out = n;
	return 0;
}

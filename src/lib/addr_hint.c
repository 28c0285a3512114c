// SPDX-License-Identifier: MIT
/* addr_hint - the two-generation address filter (contract in the header). */
#include "wgpunch/addr_hint.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

_Static_assert(ADDR_HINT_KEY_LEN == crypto_shorthash_KEYBYTES, "SipHash key size");

static uint64_t *bits_alloc(uint32_t nbits)
{
	return calloc(nbits / 64, sizeof(uint64_t));
}

int addr_hint_init(struct addr_hint *h, const uint8_t key[ADDR_HINT_KEY_LEN], uint32_t period_ms,
		   uint64_t now_ms)
{
	memset(h, 0, sizeof(*h));
	if (!period_ms)
		return -EINVAL;
	for (int g = 0; g < 2; g++) {
		h->bits[g] = bits_alloc(ADDR_HINT_MIN_BITS);
		if (!h->bits[g]) {
			addr_hint_destroy(h);
			return -ENOMEM;
		}
		h->mask[g] = ADDR_HINT_MIN_BITS - 1;
	}
	memcpy(h->key, key, ADDR_HINT_KEY_LEN);
	h->period_ms = period_ms;
	h->started_ms = now_ms;
	return 0;
}

void addr_hint_destroy(struct addr_hint *h)
{
	free(h->bits[0]);
	free(h->bits[1]);
	sodium_memzero(h, sizeof(*h));
}

static uint64_t hint_hash(const struct addr_hint *h, const struct reg_addr *a, uint8_t sock)
{
	uint8_t in[1 + 16 + 2 + 1], out[crypto_shorthash_BYTES];
	uint64_t v;

	in[0] = a->family;
	memcpy(in + 1, a->ip, 16);
	in[17] = (uint8_t)(a->port >> 8);
	in[18] = (uint8_t)a->port;
	in[19] = sock;
	crypto_shorthash(out, in, sizeof(in), h->key);
	memcpy(&v, out, sizeof(v));
	return v;
}

static bool bit_test(const uint64_t *bits, uint32_t mask, uint64_t hash)
{
	uint32_t i = (uint32_t)hash & mask;

	return bits[i / 64] >> (i % 64) & 1;
}

/* OR src (src_words) into dst (dst_words <= src_words, both powers of two): index = hash & mask,
 * so a bit of the larger one lands where the smaller one would have set it. */
static void fold_or(uint64_t *dst, uint32_t dst_words, const uint64_t *src, uint32_t src_words)
{
	for (uint32_t i = 0; i < src_words; i++)
		dst[i & (dst_words - 1)] |= src[i];
}

static uint32_t popcount_words(const uint64_t *bits, uint32_t words)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < words; i++)
		n += (uint32_t)__builtin_popcountll(bits[i]);
	return n;
}

/* The union of both generations, in the older one's place, at the smaller of their sizes (so
 * nothing is lost, at the price of more false positives until it is dropped). */
static void hint_merge(struct addr_hint *h)
{
	uint8_t cur = h->cur, old = cur ^ 1;
	uint32_t wc = (h->mask[cur] + 1u) / 64, wo = (h->mask[old] + 1u) / 64;

	if (wo <= wc) {
		fold_or(h->bits[old], wo, h->bits[cur], wc);
	} else {
		fold_or(h->bits[cur], wc, h->bits[old], wo);
		uint64_t *t = h->bits[old];

		h->bits[old] = h->bits[cur];
		h->bits[cur] = t;
		h->mask[old] = h->mask[cur];
		h->mask[cur] = wo * 64 - 1;
		wo = wc;
	}
	h->set[old] = popcount_words(h->bits[old], wo);
}

/*
 * A new, empty current generation of ADDR_HINT_BITS_PER_ADDR bits for each address this
 * period saw. Normally the older one is dropped and the current one becomes the older. When
 * the current one is too full before the period ends (early), or was so earlier in this
 * period, the two are merged instead: the period's addresses are split between them, and a
 * live session must stay in one until a period later.
 */
static void hint_rotate(struct addr_hint *h, uint64_t now_ms, bool early)
{
	uint64_t want = (uint64_t)h->seen_period * ADDR_HINT_BITS_PER_ADDR;
	uint32_t nbits = ADDR_HINT_MIN_BITS;
	uint8_t cur = h->cur, old = cur ^ 1;
	uint64_t *bits;

	while (nbits < want && nbits < ADDR_HINT_MAX_BITS)
		nbits <<= 1;
	bits = bits_alloc(nbits);
	if (!bits)
		return; /* the current generation goes on: only more false positives */
	if (early || h->grew_early) {
		hint_merge(h);
		h->grew_early = early;
	} else {
		h->cur = old;
		old = cur;
		cur = h->cur;
	}
	free(h->bits[cur]);
	h->bits[cur] = bits;
	h->mask[cur] = nbits - 1;
	h->set[cur] = 0;
	if (!early) {
		h->started_ms = now_ms;
		h->seen_period = 0;
	}
}

void addr_hint_add(struct addr_hint *h, const struct reg_addr *a, uint8_t sock, uint64_t now_ms)
{
	uint64_t hash = hint_hash(h, a, sock);
	uint8_t c;
	uint32_t i;

	/* At the end of a period, or early when the fleet outgrew this generation (a quarter of
	 * its bits set). */
	if (now_ms - h->started_ms >= h->period_ms)
		hint_rotate(h, now_ms, false);
	else if (h->set[h->cur] > (h->mask[h->cur] + 1u) / 4 &&
		 h->mask[h->cur] + 1u < ADDR_HINT_MAX_BITS)
		hint_rotate(h, now_ms, true);
	c = h->cur;
	i = (uint32_t)hash & h->mask[c];
	if (!bit_test(h->bits[c], h->mask[c], hash)) {
		h->bits[c][i / 64] |= (uint64_t)1 << (i % 64);
		h->set[c]++;
		h->seen_period++;
	}
}

bool addr_hint_maybe(const struct addr_hint *h, const struct reg_addr *a, uint8_t sock)
{
	uint64_t hash = hint_hash(h, a, sock);

	return bit_test(h->bits[0], h->mask[0], hash) || bit_test(h->bits[1], h->mask[1], hash);
}

uint64_t addr_hint_bytes(const struct addr_hint *h)
{
	return ((uint64_t)h->mask[0] + 1 + (uint64_t)h->mask[1] + 1) / 8;
}

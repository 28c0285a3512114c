/* SPDX-License-Identifier: MIT */
/*
 * bench-crypto - what one handshake and each check in front of it cost on this machine: the
 * numbers the handshake budget (hs_budget.h) is computed from. Prints ns per operation, the
 * median of five batches, and the budget that follows at the default shares.
 *
 *	bench-crypto [N]	N operations per measurement (default 2000)
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "wgpunch/cookie.h"
#include "wgpunch/hs_budget.h"
#include "wgpunch/key.h"
#include "wgpunch/ratelimit.h"
#include "wgpunch/ts_table.h"

#define MSG_LEN (116 + COOKIE_MACS_LEN)

static uint64_t mono_ns(void *arg)
{
	struct timespec ts;

	(void)arg;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct ctx {
	uint8_t priv[32], pub[32], out[32];
	uint8_t msg[MSG_LEN], body[COOKIE_REPLY_BODY_LEN], nonce[COOKIE_NONCE_LEN];
	struct cookie_responder r;
	struct cookie_initiator ci;
	struct ratelimit rl;
	struct ts_table ts;
	struct addr src;
	uint32_t i;
	volatile int sink;
};

static void do_scalarmult(void *arg)
{
	struct ctx *c = arg;

	c->sink += crypto_scalarmult(c->out, c->priv, c->pub);
}

static void do_scalarmult_base(void *arg)
{
	struct ctx *c = arg;

	c->sink += crypto_scalarmult_base(c->out, c->priv);
}

static void do_mac1_check(void *arg)
{
	struct ctx *c = arg;

	c->sink += cookie_mac1_ok(&c->r.keys, c->msg, MSG_LEN - COOKIE_MACS_LEN,
				  c->msg + MSG_LEN - COOKIE_MACS_LEN);
}

static void do_cookie_reply(void *arg)
{
	struct ctx *c = arg;

	randombytes_buf(c->nonce, sizeof(c->nonce)); /* the coordinator draws one each time */
	c->sink += cookie_reply_make(&c->r, c->msg + MSG_LEN - COOKIE_MACS_LEN, &c->src, c->nonce,
				     0, c->body);
}

static void do_check_mac2(void *arg)
{
	struct ctx *c = arg;

	c->sink += (int)cookie_check(&c->r, c->msg, MSG_LEN, &c->src, 0);
}

static void do_ratelimit(void *arg)
{
	struct ctx *c = arg;
	struct addr a = c->src;

	a.in4.sin_addr.s_addr = htonl(0xc6120000u | (c->i++ & 0x1ffff));
	c->sink += ratelimit_allow(&c->rl, &a, c->i / 100);
}

static void do_ts_check(void *arg)
{
	struct ctx *c = arg;
	uint8_t ts[12] = { 0x40 };

	c->sink += (int)ts_table_check(&c->ts, c->i++ * 0x9e3779b97f4a7c15ull, ts);
}

static uint64_t run(const char *what, void (*fn)(void *), struct ctx *c, unsigned n)
{
	uint64_t ns = 0;

	if (hs_budget_measure(fn, c, n, mono_ns, NULL, &ns) < 0)
		exit(1);
	printf("%-44s %10llu ns\n", what, (unsigned long long)ns);
	return ns;
}

int main(int argc, char **argv)
{
	unsigned n = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 2000;
	uint8_t secret[COOKIE_SECRET_LEN], key[16];
	struct hs_budget_params p;
	struct hs_budget_input in;
	struct ratelimit_params rp;
	uint64_t hs_ns, reply_ns, mac1_ns;
	struct ctx *c;

	if (sodium_init() < 0 || n < 5 || !(c = calloc(1, sizeof(*c))))
		return 1;
	key_generate_private(c->priv);
	key_public_from_private(c->pub, c->priv);
	randombytes_buf(secret, sizeof(secret));
	randombytes_buf(key, sizeof(key));
	cookie_responder_init(&c->r, c->pub, secret, 0);
	cookie_initiator_init(&c->ci, c->pub);
	c->src.in4.sin_family = AF_INET;
	c->src.in4.sin_addr.s_addr = htonl(0xcb007101);
	c->src.in4.sin_port = htons(51820);
	randombytes_buf(c->msg, sizeof(c->msg));
	cookie_initiator_sign(&c->ci, c->msg, sizeof(c->msg), 0);
	ratelimit_params_default(&rp, 20, 128);
	if (ratelimit_init(&c->rl, 65536, &rp, key) < 0 || ts_table_init(&c->ts, 1 << 20, key) < 0)
		return 1;

	printf("# %u operations per measurement, median of 5 batches\n", n);
	run("X25519 variable base (crypto_scalarmult)", do_scalarmult, c, n);
	run("X25519 fixed base (crypto_scalarmult_base)", do_scalarmult_base, c, n);
	if (hs_budget_measure_responder(n / 4 < 5 ? 5 : n / 4, mono_ns, NULL, &hs_ns) < 0)
		return 1;
	printf("%-44s %10llu ns\n", "responder handshake (session.c)", (unsigned long long)hs_ns);
	mac1_ns = run("mac1 check (116 bytes)", do_mac1_check, c, n * 10);
	reply_ns = run("cookie reply (cookie + XChaCha20-Poly1305)", do_cookie_reply, c, n * 10);
	c->body[0] = 0;
	cookie_initiator_open_reply(&c->ci, c->body, sizeof(c->body), 0);
	run("cookie_check, zero mac2 (mac1 only)", do_check_mac2, c, n * 10);
	memset(c->msg + MSG_LEN - COOKIE_MAC_LEN, 0xaa, COOKIE_MAC_LEN); /* a wrong mac2 */
	run("cookie_check, wrong mac2 (worst case)", do_check_mac2, c, n * 10);
	run("ratelimit_allow, 131072 sources in 65536", do_ratelimit, c, n * 10);
	run("ts_table_check, 2^20 slots", do_ts_check, c, n * 10);

	hs_budget_input_default(&in, hs_ns, mac1_ns + reply_ns);
	if (hs_budget_params_from_input(&p, &in) < 0)
		return 1;
	printf("# budget at %u/1000 of a core: %u handshakes/s (burst %u, unproven above %u); "
	       "%u cookie replies/s at %u/1000\n",
	       in.cpu_permille, p.all.rate_per_s, p.all.burst, p.reserve, p.cookie.rate_per_s,
	       in.cookie_cpu_permille);
	printf("# at a 120 s rekey that serves %llu nodes\n",
	       (unsigned long long)p.all.rate_per_s * 120);
	printf("# memory: ratelimit %zu bytes for %zu sources, ts_table %zu bytes for %zu keys\n",
	       ratelimit_memory(&c->rl), ratelimit_capacity(&c->rl), ts_table_memory(&c->ts),
	       ts_table_capacity(&c->ts));
	cookie_responder_wipe(&c->r);
	ratelimit_destroy(&c->rl);
	ts_table_destroy(&c->ts);
	free(c);
	return 0;
}

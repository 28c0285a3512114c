/* SPDX-License-Identifier: MIT */
/*
 * test-ratelimit - token buckets in integer milli-tokens, and the bounded per-prefix table
 * against attackers with many sources.
 */
#include "wgpunch/ratelimit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "../tap.h"

static const uint8_t test_key[RATELIMIT_KEY_LEN] = "ratelimit-test!";

static struct addr v4(uint32_t ip, uint16_t port)
{
	struct addr a;

	memset(&a, 0, sizeof(a));
	a.in4.sin_family = AF_INET;
	a.in4.sin_addr.s_addr = htonl(ip);
	a.in4.sin_port = htons(port);
	return a;
}

static struct addr v6(const char *ip, uint16_t port)
{
	struct addr a;

	memset(&a, 0, sizeof(a));
	a.in6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, ip, &a.in6.sin6_addr);
	a.in6.sin6_port = htons(port);
	return a;
}

/* 198.18.0.0/15 holds 2^17 addresses: enough distinct forged sources. */
static struct addr junk_source(uint32_t i)
{
	return v4(0xc6120000u | (i & 0x1ffff), (uint16_t)(1024 + i % 60000));
}

static void test_ratelimit_bucket_burst_then_rate(void)
{
	struct bucket_rate r = { .rate_per_s = 3, .burst = 5 };
	struct bucket b;
	int n = 0;

	bucket_init(&b, &r, 1000);
	while (bucket_take(&b, &r, 1000) && n < 100)
		n++;
	CHECK_EQ_INT(n, 5);
	/* 3 a second: a token every 333.3 ms; 333 ms give 999 milli-tokens, not one. */
	CHECK(!bucket_take(&b, &r, 1333));
	CHECK(bucket_take(&b, &r, 1334));
	CHECK(!bucket_take(&b, &r, 1334));
	CHECK_EQ_INT(bucket_tokens(&b, &r, 1334 + 100000), 5);
}

/* Exactly rate x time over a long run, whatever the call pattern: no drift. */
static void test_ratelimit_bucket_no_drift(void)
{
	struct bucket_rate r = { .rate_per_s = 7, .burst = 2 }; /* room: nothing is clipped */
	struct bucket b;
	uint64_t taken = 0, t;

	bucket_init(&b, &r, 0);
	for (t = 0; t <= 1000000; t += 13) /* 1000 s in awkward 13 ms steps */
		while (bucket_take(&b, &r, t))
			taken++;
	/* The burst, then 7 a second for 999.999 s: 6999.993 tokens, of which 6999 whole. */
	CHECK_EQ_INT(taken, 2 + 6999);
}

/* A clock that goes back mints nothing; going forward again counts from the latest time. */
static void test_ratelimit_bucket_clock_back(void)
{
	struct bucket_rate r = { .rate_per_s = 1, .burst = 1 };
	struct bucket b;

	bucket_init(&b, &r, 50000);
	CHECK(bucket_take(&b, &r, 50000));
	CHECK(!bucket_take(&b, &r, 10000));
	CHECK(!bucket_take(&b, &r, 50999));
	CHECK(!bucket_take(&b, &r, 20000));
	CHECK(bucket_take(&b, &r, 51000));
	CHECK(!bucket_take(&b, &r, 51000));
}

/* Only differences of now_ms matter: the same traffic at any origin gives the same answers. */
static void test_ratelimit_origin_irrelevant(void)
{
	const uint64_t origins[] = { 0, 1234567, (uint64_t)1 << 62 };
	uint64_t first = 0;

	for (size_t o = 0; o < sizeof(origins) / sizeof(origins[0]); o++) {
		struct ratelimit_params p;
		struct ratelimit rl;
		uint64_t pattern = 0;

		ratelimit_params_default(&p, 10, 4);
		CHECK_EQ_INT(ratelimit_init(&rl, 64, &p, test_key), 0);
		for (uint32_t i = 0; i < 2000; i++) {
			struct addr a = junk_source(i % 37);
			bool ok = ratelimit_allow(&rl, &a, origins[o] + i * 7);

			pattern = pattern * 31 + ok;
		}
		if (o == 0)
			first = pattern;
		CHECK(pattern == first);
		ratelimit_destroy(&rl);
	}
}

static void test_ratelimit_prefixes(void)
{
	struct ratelimit_params p;
	struct ratelimit rl;
	struct addr a = v6("2001:db8:1:2::1", 1000), b = v6("2001:db8:1:2:ffff::9", 2000);
	struct addr c = v6("2001:db8:1:3::1", 1000);
	struct addr d4 = v4(0xcb007105, 1), d4b = v4(0xcb007105, 2);
	struct addr mapped = v6("::ffff:203.0.113.5", 3), none;

	memset(&none, 0, sizeof(none));
	ratelimit_params_default(&p, 1, 2);
	CHECK_EQ_INT(ratelimit_init(&rl, 100, &p, test_key), 0);
	CHECK_EQ_INT(ratelimit_capacity(&rl), 128);
	CHECK_EQ_INT(ratelimit_memory(&rl), 128 * RATELIMIT_ENTRY_BYTES);
	/* One /64: hosts inside it share a bucket. */
	CHECK(ratelimit_allow(&rl, &a, 0));
	CHECK(ratelimit_allow(&rl, &b, 0));
	CHECK(!ratelimit_allow(&rl, &a, 0));
	CHECK(ratelimit_allow(&rl, &c, 0)); /* the next /64 is another source */
	/* IPv4: the port does not count, and a mapped address is the IPv4 one. */
	CHECK(ratelimit_allow(&rl, &d4, 0));
	CHECK(ratelimit_allow(&rl, &d4b, 0));
	CHECK(!ratelimit_allow(&rl, &mapped, 0));
	CHECK_EQ_INT(ratelimit_peek(&rl, &d4, 0), 0);
	CHECK_EQ_INT(ratelimit_peek(&rl, &d4, 1000), 1);
	CHECK(!ratelimit_allow(&rl, &none, 0));
	ratelimit_destroy(&rl);

	/* A configured IPv4 /24 groups a whole documentation range. */
	p.v4_prefix = 24;
	CHECK_EQ_INT(ratelimit_init(&rl, 8, &p, test_key), 0);
	CHECK(ratelimit_allow(&rl, &d4, 0));
	a = v4(0xcb0071fe, 9);
	CHECK(ratelimit_allow(&rl, &a, 0));
	CHECK(!ratelimit_allow(&rl, &a, 0));
	ratelimit_destroy(&rl);
}

static void test_ratelimit_init_refuses(void)
{
	struct ratelimit_params p;
	struct ratelimit rl;

	ratelimit_params_default(&p, 1, 1);
	CHECK_EQ_INT(ratelimit_init(&rl, 0, &p, test_key), -EINVAL);
	CHECK_EQ_INT(ratelimit_init(&rl, RATELIMIT_MAX_CAPACITY + 1, &p, test_key), -EINVAL);
	p.rate.burst = 0;
	CHECK_EQ_INT(ratelimit_init(&rl, 8, &p, test_key), -EINVAL);
	ratelimit_params_default(&p, 1, 1);
	p.v6_prefix = 129;
	CHECK_EQ_INT(ratelimit_init(&rl, 8, &p, test_key), -EINVAL);
	ratelimit_destroy(&rl); /* safe on a table init refused */
}

/*
 * Attack: many sources, each new (forged, or a whole botnet), 20,000 a second. Memory stays
 * what init allocated. While the table holds capacity x rate (here 4096 x 10 = 40,960) new
 * sources a second, a busy legitimate source keeps its entry: it is allowed exactly its burst
 * plus its rate, never less (it was not starved) and never more (it was not evicted and
 * reset). Above that bound (a table of 1024) it may be replaced now and then, and still gets
 * almost all of its allowance and never more.
 */
static void test_ratelimit_many_sources_keep_busy_one(void)
{
	static const size_t caps[] = { 4096, 1024 };

	for (size_t c = 0; c < 2; c++) {
		struct ratelimit_params p;
		struct ratelimit rl;
		struct addr legit = v6("2001:db8:aa::1", 51820);
		uint64_t legit_ok = 0, mem;
		uint32_t junk = 0;

		ratelimit_params_default(&p, 10, 20);
		CHECK_EQ_INT(ratelimit_init(&rl, caps[c], &p, test_key), 0);
		mem = ratelimit_memory(&rl);
		CHECK_EQ_INT(mem, caps[c] * RATELIMIT_ENTRY_BYTES);
		/* 10 s: every ms 20 new sources, and the legitimate one tries 5 times (5000/s). */
		for (uint64_t t = 0; t < 10000; t++) {
			for (int i = 0; i < 20; i++) {
				struct addr a = junk_source(junk++);

				ratelimit_allow(&rl, &a, t);
			}
			for (int i = 0; i < 5; i++)
				legit_ok += ratelimit_allow(&rl, &legit, t);
		}
		CHECK_EQ_INT(junk, 200000);
		if (c == 0)
			CHECK_EQ_INT(legit_ok, 20 + 10 * 9999 / 1000); /* burst, then 10/s */
		else
			CHECK(legit_ok <= 20 + 10 * 9999 / 1000 && legit_ok >= 100);
		CHECK_EQ_INT(ratelimit_memory(&rl), mem);
		CHECK_EQ_INT(ratelimit_capacity(&rl), caps[c]);
		CHECK(rl.ctr.rl_replaced_idle + rl.ctr.rl_replaced_busy > 190000);
		printf("# capacity %zu: legitimate source allowed %llu of 119, %llu busy "
		       "replaced\n",
		       caps[c], (unsigned long long)legit_ok,
		       (unsigned long long)rl.ctr.rl_replaced_busy);
		ratelimit_destroy(&rl);
	}
}

/*
 * Attack: a flooder that rotates through more prefixes than its set can hold, hoping its
 * drained entries are replaced and come back full. With one set (capacity 8) and nine busy
 * prefixes, the newcomer inherits a drained bucket: the nine together get no more than
 * eight full buckets and the rate of eight.
 */
static void test_ratelimit_churn_mints_nothing(void)
{
	struct ratelimit_params p;
	struct ratelimit rl;
	uint64_t ok = 0;

	ratelimit_params_default(&p, 2, 10);
	CHECK_EQ_INT(ratelimit_init(&rl, 8, &p, test_key), 0);
	CHECK_EQ_INT(ratelimit_capacity(&rl), 8);
	for (uint64_t t = 0; t < 5000; t++)
		for (uint32_t i = 0; i < 9; i++) {
			struct addr a = v4(0xcb007100u + i, 7);

			ok += ratelimit_allow(&rl, &a, t);
		}
	/* 8 x (10 + 2 x 5 s) = 160 at most; a table that reset newcomers would give ~10 times that */
	CHECK(ok <= 8 * (10 + 2 * 5));
	CHECK(ok >= 8 * 10);
	CHECK(rl.ctr.rl_replaced_busy > 0);
	ratelimit_destroy(&rl);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	TAP_RUN(test_ratelimit_bucket_burst_then_rate);
	TAP_RUN(test_ratelimit_bucket_no_drift);
	TAP_RUN(test_ratelimit_bucket_clock_back);
	TAP_RUN(test_ratelimit_origin_irrelevant);
	TAP_RUN(test_ratelimit_prefixes);
	TAP_RUN(test_ratelimit_init_refuses);
	TAP_RUN(test_ratelimit_many_sources_keep_busy_one);
	TAP_RUN(test_ratelimit_churn_mints_nothing);
	return tap_done();
}

/* SPDX-License-Identifier: MIT */
/*
 * test-addr-hint - the filter that lets the coordinator answer an unproven HS_INIT from an
 * address with no session by a cookie reply before any X25519: no false negatives within two
 * periods, a bounded false positive rate, generations that follow the fleet's size.
 */
#include "wgpunch/addr_hint.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "../tap.h"

static const uint8_t test_key[ADDR_HINT_KEY_LEN] = "addr-hint-test-";

/* 127.a.b.c:port, one per i. */
static void addr_of(struct reg_addr *a, uint32_t i, uint16_t port)
{
	memset(a, 0, sizeof(*a));
	a->family = 4;
	a->ip[0] = 127;
	a->ip[1] = (uint8_t)(i >> 16);
	a->ip[2] = (uint8_t)(i >> 8);
	a->ip[3] = (uint8_t)i;
	a->port = port;
}

static void test_addr_hint_added_is_maybe(void)
{
	struct addr_hint h;
	struct reg_addr a, b, a6;

	CHECK_EQ_INT(addr_hint_init(&h, test_key, 60000, 0), 0);
	addr_of(&a, 1, 51820);
	addr_of(&b, 1, 51821);
	a6 = a;
	a6.family = 6;
	CHECK(!addr_hint_maybe(&h, &a, 0));
	addr_hint_add(&h, &a, 0, 10);
	CHECK(addr_hint_maybe(&h, &a, 0));
	/* Another port, another listen socket, another family: each its own address. */
	CHECK(!addr_hint_maybe(&h, &b, 0));
	CHECK(!addr_hint_maybe(&h, &a, 1));
	CHECK(!addr_hint_maybe(&h, &a6, 0));
	addr_hint_destroy(&h);
	CHECK_EQ_INT(addr_hint_init(&h, test_key, 0, 0), -EINVAL);
}

/* Added in one period: still there in the next; gone after two without a refresh. */
static void test_addr_hint_two_generations(void)
{
	struct addr_hint h;
	struct reg_addr a, live, other;

	CHECK_EQ_INT(addr_hint_init(&h, test_key, 1000, 0), 0);
	addr_of(&a, 7, 1000);
	addr_of(&live, 8, 1000);
	addr_of(&other, 9, 1000);
	addr_hint_add(&h, &a, 0, 0);
	addr_hint_add(&h, &live, 0, 0);
	addr_hint_add(&h, &other, 0, 1500); /* a new period: a rotates into the old one */
	CHECK(addr_hint_maybe(&h, &a, 0));
	addr_hint_add(&h, &live, 0, 1600);  /* refreshed in this period */
	addr_hint_add(&h, &other, 0, 2600); /* and another: the one holding a is dropped */
	CHECK(!addr_hint_maybe(&h, &a, 0));
	CHECK(addr_hint_maybe(&h, &live, 0));
	CHECK(addr_hint_maybe(&h, &other, 0));
	addr_hint_destroy(&h);
}

/* Strangers (port 40001) that read "maybe". */
static uint32_t strangers_maybe(const struct addr_hint *h, uint32_t n)
{
	struct reg_addr a;
	uint32_t fp = 0;

	for (uint32_t i = 0; i < n; i++) {
		addr_of(&a, i, 40001);
		fp += addr_hint_maybe(h, &a, 0);
	}
	return fp;
}

/* Fleet members (port 40000) that read "no". */
static uint32_t fleet_missed(const struct addr_hint *h, uint32_t n)
{
	struct reg_addr a;
	uint32_t missed = 0;

	for (uint32_t i = 0; i < n; i++) {
		addr_of(&a, i, 40000);
		missed += !addr_hint_maybe(h, &a, 0);
	}
	return missed;
}

/*
 * A fleet of n refreshing every period: never a false negative, and the next generation is
 * sized for it, so strangers mostly read "no" (about 1/8 of a bit's worth per generation).
 */
static void test_addr_hint_follows_the_fleet(void)
{
	struct addr_hint h;
	struct reg_addr a;
	const uint32_t n = 100000, strangers = 100000;
	uint32_t missed, fp;

	CHECK_EQ_INT(addr_hint_init(&h, test_key, 1000, 0), 0);
	for (uint64_t t = 0; t < 3000; t += 1000)
		for (uint32_t i = 0; i < n; i++) {
			addr_of(&a, i, 40000);
			addr_hint_add(&h, &a, 0, t + i % 1000);
		}
	missed = fleet_missed(&h, n);
	fp = strangers_maybe(&h, strangers);
	printf("# %u nodes: %u missed, %u of %u strangers maybe, %llu bytes\n", n, missed, fp,
	       strangers, (unsigned long long)addr_hint_bytes(&h));
	CHECK_EQ_INT(missed, 0);
	CHECK(fp < strangers / 4);
	/* Both generations at 8 to 16 bits an address, no more. */
	CHECK(addr_hint_bytes(&h) <= 2ull * n * 2);
	addr_hint_destroy(&h);
}

/*
 * A fleet that arrives within one period outgrows the first generation: it grows early, and
 * loses no one, not even at the period's end, before anyone refreshed. Once the fleet has
 * refreshed through a period, strangers mostly read "no" again.
 */
static void test_addr_hint_grows_early(void)
{
	struct addr_hint h;
	struct reg_addr a;
	const uint32_t n = 50000;
	uint32_t fp;

	CHECK_EQ_INT(addr_hint_init(&h, test_key, 1000, 0), 0);
	for (uint32_t i = 0; i < n; i++) {
		addr_of(&a, i, 40000);
		addr_hint_add(&h, &a, 0, 5);
	}
	CHECK_EQ_INT(fleet_missed(&h, n), 0);
	CHECK(addr_hint_bytes(&h) > ADDR_HINT_MIN_BITS / 4);
	/* The next period starts with the first refresh: no one lost. */
	addr_of(&a, 0, 40000);
	addr_hint_add(&h, &a, 0, 1005);
	CHECK_EQ_INT(fleet_missed(&h, n), 0);
	for (uint64_t t = 1005; t < 3005; t += 1000)
		for (uint32_t i = 0; i < n; i++) {
			addr_of(&a, i, 40000);
			addr_hint_add(&h, &a, 0, t + i % 1000);
			if (i == n / 2)
				CHECK_EQ_INT(fleet_missed(&h, n), 0);
		}
	CHECK_EQ_INT(fleet_missed(&h, n), 0);
	fp = strangers_maybe(&h, n);
	printf("# %u arrivals in one period, two refreshes: %u of %u strangers maybe, %llu bytes\n",
	       n, fp, n, (unsigned long long)addr_hint_bytes(&h));
	CHECK(fp < n / 4);
	addr_hint_destroy(&h);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	TAP_RUN(test_addr_hint_added_is_maybe);
	TAP_RUN(test_addr_hint_two_generations);
	TAP_RUN(test_addr_hint_follows_the_fleet);
	TAP_RUN(test_addr_hint_grows_early);
	return tap_done();
}

/* SPDX-License-Identifier: MIT */
/*
 * tap.h - a minimal TAP producer for the unit tests.
 *
 * Each test program calls TAP_RUN(fn) for every test function and ends with
 * tap_done(). A test function reports with CHECK(); the first failing CHECK
 * in a function marks it "not ok" but the function goes on, so one run shows
 * every broken expectation.
 */
#ifndef WGPUNCH_TESTS_TAP_H
#define WGPUNCH_TESTS_TAP_H

#include <stdbool.h>
#include <stdio.h>

static int tap_count;
static int tap_failed;
static bool tap_current_ok;

#define CHECK(cond)                                                                      \
	do {                                                                             \
		if (!(cond)) {                                                           \
			tap_current_ok = false;                                          \
			printf("# %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
		}                                                                        \
	} while (0)

#define CHECK_EQ_INT(a, b)                                                                     \
	do {                                                                                   \
		long long tap_a_ = (long long)(a), tap_b_ = (long long)(b);                    \
		if (tap_a_ != tap_b_) {                                                        \
			tap_current_ok = false;                                                \
			printf("# %s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, \
			       #b, tap_a_, tap_b_);                                            \
		}                                                                              \
	} while (0)

#define TAP_RUN(fn)                                                                 \
	do {                                                                        \
		tap_current_ok = true;                                              \
		fn();                                                               \
		tap_count++;                                                        \
		if (!tap_current_ok)                                                \
			tap_failed++;                                               \
		printf("%s %d - %s\n", tap_current_ok ? "ok" : "not ok", tap_count, #fn); \
		fflush(stdout);                                                     \
	} while (0)

static inline int tap_done(void)
{
	printf("1..%d\n", tap_count);
	return tap_failed ? 1 : 0;
}

#endif

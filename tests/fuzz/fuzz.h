/* SPDX-License-Identifier: MIT */
/*
 * fuzz.h - what every fuzz target shares: the libFuzzer entry point and an
 * assertion that survives NDEBUG (a fuzzer build must never compile checks out).
 */
#ifndef WGPUNCH_TESTS_FUZZ_H
#define WGPUNCH_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond)                                                          \
	do {                                                                       \
		if (!(cond)) {                                                     \
			fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                   \
		}                                                                  \
	} while (0)

#endif

// SPDX-License-Identifier: MIT
/*
 * bench-peers - what a device read costs the node as the interface grows (issue 9): the
 * UAPI parse of a `get` reply, and the peer table's sync and lookups. Prints ns per peer at
 * 1k, 10k and 20k peers; linear work shows as a flat column. Bounded: a few passes each.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "wgpunch/key.h"
#include "wgpunch/paths.h"
#include "wgpunch/wg.h"
#include "wgpunch/wg_uapi.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A UAPI `get` reply as wireguard-go writes it, for n peers. */
static char *uapi_dump(uint8_t (*keys)[KEY_LEN], size_t n, size_t *len)
{
	size_t cap = 256 + n * 400, at = 0, i, j;
	char *buf = malloc(cap);

	if (!buf)
		return NULL;
	at += (size_t)snprintf(buf + at, cap - at,
			       "private_key=%064x\nlisten_port=51820\n", 1);
	for (i = 0; i < n; i++) {
		at += (size_t)snprintf(buf + at, cap - at, "public_key=");
		for (j = 0; j < KEY_LEN; j++)
			at += (size_t)snprintf(buf + at, cap - at, "%02x", keys[i][j]);
		at += (size_t)snprintf(buf + at, cap - at,
				       "\nendpoint=198.51.100.%zu:%zu\n"
				       "last_handshake_time_sec=1700000000\n"
				       "last_handshake_time_nsec=5\ntx_bytes=%zu\nrx_bytes=%zu\n"
				       "persistent_keepalive_interval=25\nallowed_ip=198.18.%zu.%zu/32\n",
				       i % 250 + 1, 1024 + i % 60000, i * 7, i * 11, i / 250 % 250,
				       i % 250);
	}
	at += (size_t)snprintf(buf + at, cap - at, "errno=0\n\n");
	*len = at;
	return buf;
}

static void run(size_t n)
{
	uint8_t(*keys)[KEY_LEN] = malloc(n * KEY_LEN);
	uint64_t t0, parse_ns = 0, sync_ns = 0, find_ns = 0;
	struct wg_device *dev;
	struct paths ps;
	size_t len, i, found = 0;
	const int passes = 5;
	char *text;

	if (!keys)
		return;
	randombytes_buf(keys, n * KEY_LEN);
	text = uapi_dump(keys, n, &len);
	paths_init(&ps);
	for (int pass = 0; text && pass < passes; pass++) {
		dev = calloc(1, sizeof(*dev));
		if (!dev)
			break;
		t0 = now_ns();
		if (wg_uapi_parse_get(text, len, dev) < 0) {
			printf("parse failed\n");
			wg_device_free(dev);
			break;
		}
		parse_ns += now_ns() - t0;
		t0 = now_ns();
		paths_sync(&ps, (const uint8_t(*)[KEY_LEN])keys, n, 1000);
		sync_ns += now_ns() - t0;
		t0 = now_ns();
		for (i = 0; i < n; i++)
			found += paths_find(&ps, keys[(i * 7919) % n]) != NULL;
		find_ns += now_ns() - t0;
		wg_device_free(dev);
	}
	printf("%6zu peers: UAPI parse %6.0f ns/peer  table sync %5.0f ns/peer  lookup %4.0f ns  "
	       "(%s)\n",
	       n, (double)parse_ns / passes / (double)n, (double)sync_ns / passes / (double)n,
	       (double)find_ns / passes / (double)n, found == n * passes ? "all found" : "MISSING");
	paths_free(&ps);
	free(text);
	free(keys);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	printf("bench-peers: a device read's cost per peer (flat = linear)\n");
	run(1000);
	run(10000);
	run(20000);
	return 0;
}

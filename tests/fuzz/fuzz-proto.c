/* SPDX-License-Identifier: MIT */
/*
 * fuzz-proto - decodes every input as an outer datagram and as an inner
 * message. Our encodings are canonical, so whenever a decode succeeds, the
 * encoder must give back exactly the input, and must refuse a buffer one
 * byte too small.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wgpunch/proto.h"
#include "fuzz.h"


static void check_outer(const uint8_t *data, size_t size)
{
	uint8_t buf[PROTO_MAX_DATAGRAM];
	struct proto_outer o;
	ssize_t n;

	if (proto_decode_outer(data, size, &o) != 0)
		return;
	FUZZ_ASSERT(size <= PROTO_MAX_DATAGRAM);
	/* An HS_INIT's body is the Noise message alone; its two MACs follow it (macs). */
	if (o.type == PROTO_HS_INIT) {
		FUZZ_ASSERT(size == PROTO_HS_INIT_LEN && o.body_len == PROTO_HS_INIT_NOISE_LEN);
		FUZZ_ASSERT(o.body == data + proto_outer_prefix_len(o.type));
		FUZZ_ASSERT(o.macs == data + PROTO_HS_INIT_MAC1_OFF);
	} else {
		FUZZ_ASSERT(proto_outer_prefix_len(o.type) + o.body_len == size);
		FUZZ_ASSERT(o.body_len == 0 ||
			    (o.body >= data && o.body + o.body_len == data + size));
		FUZZ_ASSERT(o.macs == NULL);
	}
	n = proto_encode_outer(buf, sizeof(buf), &o);
	FUZZ_ASSERT(n >= 0 && (size_t)n == size);
	FUZZ_ASSERT(memcmp(buf, data, size) == 0);
	FUZZ_ASSERT(proto_encode_outer(buf, size - 1, &o) < 0);
}

static void check_msg(const uint8_t *data, size_t size)
{
	uint8_t buf[PROTO_MAX_DATAGRAM];
	struct proto_msg m, m2;
	ssize_t n;
	unsigned int i;

	if (proto_decode_msg(data, size, &m) != 0)
		return;
	/* Whatever decodes fits in a DATA datagram. */
	FUZZ_ASSERT(size + proto_outer_prefix_len(PROTO_DATA) + PROTO_TAG_LEN <=
		    PROTO_MAX_DATAGRAM);
	if (m.type == PROTO_MSG_REGISTER) {
		FUZZ_ASSERT(m.reg.n_lan <= PROTO_MAX_LAN && m.reg.n_peers <= PROTO_MAX_PEERS);
		for (i = 0; i < m.reg.n_lan; i++)
			FUZZ_ASSERT(m.reg.lan[i].sa.sa_family == AF_INET ||
				    m.reg.lan[i].sa.sa_family == AF_INET6);
	}
	if (m.type == PROTO_MSG_PUNCH)
		FUZZ_ASSERT(m.punch.n_lan <= PROTO_MAX_LAN);
	n = proto_encode_msg(buf, sizeof(buf), &m);
	FUZZ_ASSERT(n >= 0 && (size_t)n == size);
	FUZZ_ASSERT(memcmp(buf, data, size) == 0);
	FUZZ_ASSERT(proto_encode_msg(buf, size - 1, &m) == -ENOSPC);
	FUZZ_ASSERT(proto_decode_msg(buf, (size_t)n, &m2) == 0);
	FUZZ_ASSERT(memcmp(&m, &m2, sizeof(m)) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_outer(data, size);
	check_msg(data, size);
	return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * test-proto - every outer and inner message round-trips, byte layouts match
 * docs/PROTOCOL.md, and every non-canonical or out-of-range encoding is
 * refused.
 */
#include "wgpunch/proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../tap.h"

static struct addr mk4(const char *ip, uint16_t port)
{
	struct addr a;

	memset(&a, 0, sizeof(a));
	a.in4.sin_family = AF_INET;
	a.in4.sin_port = htons(port);
	if (inet_pton(AF_INET, ip, &a.in4.sin_addr) != 1)
		printf("# bad test address %s\n", ip);
	return a;
}

static struct addr mk6(const char *ip, uint16_t port)
{
	struct addr a;

	memset(&a, 0, sizeof(a));
	a.in6.sin6_family = AF_INET6;
	a.in6.sin6_port = htons(port);
	if (inet_pton(AF_INET6, ip, &a.in6.sin6_addr) != 1)
		printf("# bad test address %s\n", ip);
	return a;
}

/* Encodes m, decodes it, checks the decoded struct equals m and re-encodes to the same bytes.
 * Returns the encoded length. */
static ssize_t msg_roundtrip(const struct proto_msg *m)
{
	uint8_t buf[PROTO_MAX_DATAGRAM], buf2[PROTO_MAX_DATAGRAM];
	struct proto_msg d;
	ssize_t n, n2, i;

	n = proto_encode_msg(buf, sizeof(buf), m);
	CHECK(n > 0);
	if (n <= 0)
		return n;
	CHECK_EQ_INT(proto_decode_msg(buf, (size_t)n, &d), 0);
	CHECK(memcmp(&d, m, sizeof(d)) == 0);
	n2 = proto_encode_msg(buf2, sizeof(buf2), &d);
	CHECK_EQ_INT(n2, n);
	CHECK(n2 == n && memcmp(buf, buf2, (size_t)n) == 0);
	/* every truncation is refused, and so is one trailing byte */
	for (i = 0; i < n; i++)
		if (proto_decode_msg(buf, (size_t)i, &d) != -EBADMSG) {
			CHECK(!"truncated message accepted");
			printf("# type %u accepted at length %zd of %zd\n", m->type, i, n);
			break;
		}
	buf[n] = 0;
	CHECK_EQ_INT(proto_decode_msg(buf, (size_t)n + 1, &d), -EBADMSG);
	/* every buffer too small gives -ENOSPC */
	for (i = 0; i < n; i++)
		if (proto_encode_msg(buf2, (size_t)i, m) != -ENOSPC) {
			CHECK(!"small buffer not refused");
			break;
		}
	return n;
}

static void zero_msg(struct proto_msg *m, uint8_t type)
{
	memset(m, 0, sizeof(*m));
	m->type = type;
}

static struct proto_msg full_register(void)
{
	struct proto_msg m;
	unsigned int i;

	zero_msg(&m, PROTO_MSG_REGISTER);
	m.reg.seq = 0xfffffffe;
	m.reg.wg_port = 51820;
	m.reg.flags = PROTO_REG_F_RESYNC;
	m.reg.page = 0xfffe;
	m.reg.n_pages = 0xffff;
	m.reg.n_lan = PROTO_MAX_LAN;
	for (i = 0; i < PROTO_MAX_LAN; i++) {
		char ip[64];

		snprintf(ip, sizeof(ip), "2001:db8:ffff:ffff:ffff:ffff:ffff:%x", 0xff00 + i);
		m.reg.lan[i] = mk6(ip, (uint16_t)(65535 - i));
	}
	m.reg.n_peers = PROTO_MAX_PEERS;
	for (i = 0; i < PROTO_MAX_PEERS; i++)
		m.reg.peers[i] = UINT64_MAX - i;
	return m;
}

static struct proto_msg full_punch(void)
{
	struct proto_msg m;
	unsigned int i;

	zero_msg(&m, PROTO_MSG_PUNCH);
	m.punch.attempt = 77;
	for (i = 0; i < KEY_LEN; i++)
		m.punch.peer_key[i] = (uint8_t)(0xa0 + i);
	m.punch.flags = PROTO_PUNCH_F_ACK;
	m.punch.peer_public = mk6("2001:db8::1", 40000);
	m.punch.n_lan = PROTO_MAX_LAN;
	for (i = 0; i < PROTO_MAX_LAN; i++) {
		char ip[64];

		snprintf(ip, sizeof(ip), "2001:db8:1::%x", i + 1);
		m.punch.lan[i] = mk6(ip, 51820);
	}
	return m;
}

/* ---- inner messages ---- */

static void test_proto_register_roundtrip(void)
{
	struct proto_msg m = full_register();
	ssize_t n;

	n = msg_roundtrip(&m);
	CHECK_EQ_INT(n, 1 + 4 + 2 + 1 + 4 + 1 + PROTO_MAX_LAN * 19 + 2 + PROTO_MAX_PEERS * 8);

	/* empty lists */
	zero_msg(&m, PROTO_MSG_REGISTER);
	m.reg.seq = 1;
	m.reg.wg_port = 51820;
	m.reg.n_pages = 1;
	CHECK_EQ_INT(msg_roundtrip(&m), 1 + 4 + 2 + 1 + 4 + 1 + 2);

	/* mixed families */
	m.reg.n_lan = 3;
	m.reg.lan[0] = mk4("198.51.100.7", 51820);
	m.reg.lan[1] = mk6("2001:db8::7", 51820);
	m.reg.lan[2] = mk4("203.0.113.200", 0);
	m.reg.n_peers = 1;
	m.reg.peers[0] = 0x0102030405060708;
	CHECK_EQ_INT(msg_roundtrip(&m), 1 + 4 + 2 + 1 + 4 + 1 + 7 + 19 + 7 + 2 + 8);
}

static void test_proto_register_bytes(void)
{
	/* One row per field. */
	/* clang-format off */
	static const uint8_t want[] = {
		PROTO_MSG_REGISTER,
		0x00, 0x00, 0x01, 0x02,            /* seq */
		0xca, 0x6c,                        /* wg_port 51820 */
		0x02,                              /* flags: RESYNC */
		0x00, 0x01,                        /* page 1 */
		0x00, 0x03,                        /* of 3 pages */
		0x01,                              /* n_lan */
		0x04, 198, 51, 100, 9, 0xca, 0x6c, /* 198.51.100.9:51820 */
		0x00, 0x02,                        /* n_peers */
		0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
	};
	/* clang-format on */
	uint8_t buf[128];
	struct proto_msg m;

	zero_msg(&m, PROTO_MSG_REGISTER);
	m.reg.seq = 0x102;
	m.reg.wg_port = 51820;
	m.reg.flags = PROTO_REG_F_RESYNC;
	m.reg.page = 1;
	m.reg.n_pages = 3;
	m.reg.n_lan = 1;
	m.reg.lan[0] = mk4("198.51.100.9", 51820);
	m.reg.n_peers = 2;
	m.reg.peers[0] = 0x1122334455667788;
	m.reg.peers[1] = 1;
	CHECK_EQ_INT(proto_encode_msg(buf, sizeof(buf), &m), sizeof(want));
	CHECK(memcmp(buf, want, sizeof(want)) == 0);
}

static void test_proto_small_messages_roundtrip(void)
{
	struct proto_msg m;

	zero_msg(&m, PROTO_MSG_REGISTER_ACK);
	m.reg_ack.seq = 0xdeadbeef;
	m.reg_ack.refresh_s = 20;
	m.reg_ack.rekey_s = 900;
	m.reg_ack.observed = mk4("198.51.100.20", 40000);
	CHECK_EQ_INT(msg_roundtrip(&m), 9 + 7);
	m.reg_ack.observed = mk6("2001:db8::20", 40000);
	CHECK_EQ_INT(msg_roundtrip(&m), 9 + 19);

	zero_msg(&m, PROTO_MSG_MAPPING);
	m.mapping.probe_seq = 0x0102030405060708;
	m.mapping.port_index = 1;
	m.mapping.observed = mk4("203.0.113.5", 1024);
	CHECK_EQ_INT(msg_roundtrip(&m), 1 + 8 + 1 + 7);
	m.mapping.port_index = 0;
	m.mapping.observed = mk6("2001:db8:aa::5", 65535);
	CHECK_EQ_INT(msg_roundtrip(&m), 1 + 8 + 1 + 19);

	zero_msg(&m, PROTO_MSG_FILTER_GO);
	m.filter_go.nonce = UINT64_MAX;
	CHECK_EQ_INT(msg_roundtrip(&m), 9);

	zero_msg(&m, PROTO_MSG_FILTER_ECHO);
	m.filter_echo.nonce = 12345;
	CHECK_EQ_INT(msg_roundtrip(&m), 9);

	for (int f = PROTO_FILTER_UNKNOWN; f <= PROTO_FILTER_POISONABLE; f++) {
		zero_msg(&m, PROTO_MSG_FILTER_RESULT);
		m.filter_result.filter = (uint8_t)f;
		CHECK_EQ_INT(msg_roundtrip(&m), 2);
	}

	zero_msg(&m, PROTO_MSG_PUNCH_ACK);
	m.punch_ack.attempt = 99;
	CHECK_EQ_INT(msg_roundtrip(&m), 5);

	zero_msg(&m, PROTO_MSG_ADDR_CHECK);
	m.addr_check.nonce = 0x0102030405060708;
	CHECK_EQ_INT(msg_roundtrip(&m), 9);
	zero_msg(&m, PROTO_MSG_ADDR_ECHO);
	m.addr_check.nonce = UINT64_MAX;
	CHECK_EQ_INT(msg_roundtrip(&m), 9);
}

static void test_proto_mapping_bytes(void)
{
	/* One row per field. */
	/* clang-format off */
	static const uint8_t want[] = {
		PROTO_MSG_MAPPING,
		0, 0, 0, 0, 0, 0, 0, 3, /* probe_seq */
		1,                      /* port_index */
		6, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x42, /* 2001:db8::42 */
		0xc3, 0x50,             /* port 50000 */
	};
	/* clang-format on */
	uint8_t buf[64];
	struct proto_msg m;

	zero_msg(&m, PROTO_MSG_MAPPING);
	m.mapping.probe_seq = 3;
	m.mapping.port_index = 1;
	m.mapping.observed = mk6("2001:db8::42", 50000);
	CHECK_EQ_INT(proto_encode_msg(buf, sizeof(buf), &m), sizeof(want));
	CHECK(memcmp(buf, want, sizeof(want)) == 0);
	CHECK_EQ_INT(proto_encode_addr(buf, sizeof(buf), &m.mapping.observed), 19);
	CHECK(memcmp(buf, want + 10, 19) == 0);
}

static void test_proto_punch_roundtrip(void)
{
	struct proto_msg m = full_punch();

	CHECK_EQ_INT(msg_roundtrip(&m), 1 + 4 + 32 + 1 + 19 + 1 + PROTO_MAX_LAN * 19);
	m.punch.n_lan = 0;
	m.punch.flags = 0;
	m.punch.peer_public = mk4("198.18.0.1", 51820);
	memset(m.punch.lan, 0, sizeof(m.punch.lan));
	CHECK_EQ_INT(msg_roundtrip(&m), 1 + 4 + 32 + 1 + 7 + 1);
}

static void test_proto_max_sizes_fit_datagram(void)
{
	struct proto_msg reg = full_register(), punch = full_punch();
	uint8_t buf[PROTO_MAX_DATAGRAM];
	ssize_t n;

	n = proto_encode_msg(buf, sizeof(buf), &reg);
	CHECK(n > 0);
	/* inside DATA: 16-byte prefix, the message, the AEAD tag */
	CHECK(proto_outer_prefix_len(PROTO_DATA) + (size_t)n + PROTO_TAG_LEN <= PROTO_MAX_DATAGRAM);
	n = proto_encode_msg(buf, sizeof(buf), &punch);
	CHECK(n > 0);
	CHECK(proto_outer_prefix_len(PROTO_DATA) + (size_t)n + PROTO_TAG_LEN <= PROTO_MAX_DATAGRAM);

	/* and the DATA datagram carrying it encodes and decodes */
	{
		uint8_t ct[PROTO_MAX_DATAGRAM], dg[PROTO_MAX_DATAGRAM];
		struct proto_outer o = { .type = PROTO_DATA, .receiver_idx = 1, .counter = 2 };
		struct proto_outer d;
		ssize_t len;

		memset(ct, 0x5a, sizeof(ct));
		n = proto_encode_msg(buf, sizeof(buf), &reg);
		o.body = ct;
		o.body_len = (size_t)n + PROTO_TAG_LEN;
		len = proto_encode_outer(dg, sizeof(dg), &o);
		CHECK(len > 0 && len <= PROTO_MAX_DATAGRAM);
		CHECK_EQ_INT(proto_decode_outer(dg, (size_t)len, &d), 0);
		CHECK_EQ_INT(d.body_len, o.body_len);
	}
}

static void test_proto_msg_rejects_non_canonical(void)
{
	uint8_t buf[PROTO_MAX_DATAGRAM] = { 0 };
	struct proto_msg m, d;
	ssize_t n;

	/* empty, unknown types */
	CHECK_EQ_INT(proto_decode_msg(buf, 0, &d), -EBADMSG);
	buf[0] = 0;
	CHECK_EQ_INT(proto_decode_msg(buf, 1, &d), -EBADMSG);
	buf[0] = 14; /* one past RELAY_CLOSE */
	CHECK_EQ_INT(proto_decode_msg(buf, 1, &d), -EBADMSG);
	buf[0] = PROTO_MSG_ADDR_CHECK; /* known, but its nonce is missing */
	CHECK_EQ_INT(proto_decode_msg(buf, 1, &d), -EBADMSG);
	buf[0] = 0xff;
	CHECK_EQ_INT(proto_decode_msg(buf, 1, &d), -EBADMSG);

	/* REGISTER: n_lan over the limit, n_peers over the limit, unknown flag, bad family,
	 * a page at or past the page count */
	m = full_register();
	n = proto_encode_msg(buf, sizeof(buf), &m);
	CHECK(n > 0);
	CHECK_EQ_INT(proto_decode_msg(buf, (size_t)n, &d), 0);
	buf[12] = PROTO_MAX_LAN + 1;
	CHECK_EQ_INT(proto_decode_msg(buf, (size_t)n, &d), -EBADMSG);
	buf[12] = PROTO_MAX_LAN;
	buf[7] = 0x08;
	CHECK_EQ_INT(proto_decode_msg(buf, (size_t)n, &d), -EBADMSG);
	buf[7] = PROTO_REG_F_NO_RELAY | PROTO_REG_F_RESYNC; /* both defined */
	CHECK_EQ_INT(proto_decode_msg(buf, (size_t)n, &d), 0);
	buf[7] = 0x80;
	CHECK_EQ_INT(proto_decode_msg(buf, (size_t)n, &d), -EBADMSG);
	buf[7] = 0x01; /* version 1's MORE_PEERS: pages replace it */
	CHECK_EQ_INT(proto_decode_msg(buf, (size_t)n, &d), -EBADMSG);
	buf[7] = 0;
	CHECK_EQ_INT(proto_decode_msg(buf, (size_t)n, &d), 0);
	buf[9] = 0xff; /* page 0xffff of 0xffff */
	CHECK_EQ_INT(proto_decode_msg(buf, (size_t)n, &d), -EBADMSG);
	buf[10] = buf[11] = 0; /* no pages at all */
	buf[8] = buf[9] = 0;
	CHECK_EQ_INT(proto_decode_msg(buf, (size_t)n, &d), -EBADMSG);
	buf[11] = 1;
	CHECK_EQ_INT(proto_decode_msg(buf, (size_t)n, &d), 0);
	{
		/* n_peers sits after the LAN list */
		size_t at = 13 + PROTO_MAX_LAN * 19;

		CHECK_EQ_INT(buf[at] << 8 | buf[at + 1], PROTO_MAX_PEERS);
		buf[at + 1]++;
		CHECK_EQ_INT(proto_decode_msg(buf, (size_t)n, &d), -EBADMSG);
		/* even with the extra peer's bytes present */
		memset(buf + n, 0, 8);
		CHECK_EQ_INT(proto_decode_msg(buf, (size_t)n + 8, &d), -EBADMSG);
		buf[at + 1]--;
	}
	for (int fam = 0; fam < 256; fam++) {
		if (fam == 4 || fam == 6)
			continue;
		buf[13] = (uint8_t)fam;
		if (proto_decode_msg(buf, (size_t)n, &d) != -EBADMSG) {
			CHECK(!"bad address family accepted");
			break;
		}
	}
	/* family 4 where 16 bytes follow: the lengths no longer add up */
	buf[13] = 4;
	CHECK_EQ_INT(proto_decode_msg(buf, (size_t)n, &d), -EBADMSG);
	buf[13] = 6;
	CHECK_EQ_INT(proto_decode_msg(buf, (size_t)n, &d), 0);

	/* MAPPING port index, FILTER_RESULT value, PUNCH flags */
	zero_msg(&m, PROTO_MSG_MAPPING);
	m.mapping.observed = mk4("203.0.113.1", 9);
	n = proto_encode_msg(buf, sizeof(buf), &m);
	CHECK_EQ_INT(n, 17);
	buf[9] = 2;
	CHECK_EQ_INT(proto_decode_msg(buf, (size_t)n, &d), -EBADMSG);
	buf[9] = 1;
	CHECK_EQ_INT(proto_decode_msg(buf, (size_t)n, &d), 0);

	buf[0] = PROTO_MSG_FILTER_RESULT;
	buf[1] = PROTO_FILTER_POISONABLE + 1;
	CHECK_EQ_INT(proto_decode_msg(buf, 2, &d), -EBADMSG);
	buf[1] = 0xff;
	CHECK_EQ_INT(proto_decode_msg(buf, 2, &d), -EBADMSG);

	m = full_punch();
	n = proto_encode_msg(buf, sizeof(buf), &m);
	CHECK(n > 0);
	buf[37] = 0x02;
	CHECK_EQ_INT(proto_decode_msg(buf, (size_t)n, &d), -EBADMSG);
	buf[37] = PROTO_PUNCH_F_ACK;
	buf[38 + 19] = PROTO_MAX_LAN + 1;
	CHECK_EQ_INT(proto_decode_msg(buf, (size_t)n, &d), -EBADMSG);
	buf[38 + 19] = PROTO_MAX_LAN;
	buf[38] = 0;
	CHECK_EQ_INT(proto_decode_msg(buf, (size_t)n, &d), -EBADMSG);
	buf[38] = 6;
	CHECK_EQ_INT(proto_decode_msg(buf, (size_t)n, &d), 0);
	/* a failed decode leaves nothing half-filled */
	CHECK_EQ_INT(proto_decode_msg(buf, (size_t)n - 1, &d), -EBADMSG);
	{
		struct proto_msg zero;

		memset(&zero, 0, sizeof(zero));
		CHECK(memcmp(&d, &zero, sizeof(d)) == 0);
	}
}

static void test_proto_msg_encode_rejects_invalid(void)
{
	uint8_t buf[PROTO_MAX_DATAGRAM];
	struct proto_msg m;

	zero_msg(&m, 0);
	CHECK_EQ_INT(proto_encode_msg(buf, sizeof(buf), &m), -EINVAL);
	zero_msg(&m, 11);
	CHECK_EQ_INT(proto_encode_msg(buf, sizeof(buf), &m), -EINVAL);
	zero_msg(&m, PROTO_MSG_REGISTER_ACK);
	CHECK_EQ_INT(proto_encode_msg(buf, sizeof(buf), &m), -EINVAL); /* no observed address */

	m = full_register();
	m.reg.n_lan = PROTO_MAX_LAN + 1;
	CHECK_EQ_INT(proto_encode_msg(buf, sizeof(buf), &m), -EINVAL);
	m = full_register();
	m.reg.n_peers = PROTO_MAX_PEERS + 1;
	CHECK_EQ_INT(proto_encode_msg(buf, sizeof(buf), &m), -EINVAL);
	m = full_register();
	m.reg.flags = 0x80;
	CHECK_EQ_INT(proto_encode_msg(buf, sizeof(buf), &m), -EINVAL);
	m = full_register();
	m.reg.page = m.reg.n_pages;
	CHECK_EQ_INT(proto_encode_msg(buf, sizeof(buf), &m), -EINVAL);
	m = full_register();
	memset(&m.reg.lan[3], 0, sizeof(m.reg.lan[3])); /* AF_UNSPEC */
	CHECK_EQ_INT(proto_encode_msg(buf, sizeof(buf), &m), -EINVAL);

	zero_msg(&m, PROTO_MSG_MAPPING);
	CHECK_EQ_INT(proto_encode_msg(buf, sizeof(buf), &m), -EINVAL); /* no address */
	m.mapping.observed = mk4("203.0.113.1", 9);
	m.mapping.port_index = 2;
	CHECK_EQ_INT(proto_encode_msg(buf, sizeof(buf), &m), -EINVAL);

	zero_msg(&m, PROTO_MSG_FILTER_RESULT);
	m.filter_result.filter = 3;
	CHECK_EQ_INT(proto_encode_msg(buf, sizeof(buf), &m), -EINVAL);

	m = full_punch();
	m.punch.flags = 0x02;
	CHECK_EQ_INT(proto_encode_msg(buf, sizeof(buf), &m), -EINVAL);
	m = full_punch();
	memset(&m.punch.peer_public, 0, sizeof(m.punch.peer_public));
	CHECK_EQ_INT(proto_encode_msg(buf, sizeof(buf), &m), -EINVAL);
	m = full_punch();
	m.punch.n_lan = 200;
	CHECK_EQ_INT(proto_encode_msg(buf, sizeof(buf), &m), -EINVAL);
}

static void test_proto_addr_encoding(void)
{
	uint8_t buf[32];
	struct addr a = mk4("203.0.113.9", 51820), none;
	static const uint8_t want4[] = { 4, 203, 0, 113, 9, 0xca, 0x6c };

	CHECK_EQ_INT(proto_encode_addr(buf, sizeof(buf), &a), 7);
	CHECK(memcmp(buf, want4, sizeof(want4)) == 0);
	CHECK_EQ_INT(proto_encode_addr(buf, 6, &a), -ENOSPC);
	a = mk6("2001:db8::9", 1);
	CHECK_EQ_INT(proto_encode_addr(buf, sizeof(buf), &a), 19);
	CHECK_EQ_INT(proto_encode_addr(buf, 18, &a), -ENOSPC);
	memset(&none, 0, sizeof(none));
	CHECK_EQ_INT(proto_encode_addr(buf, sizeof(buf), &none), -EINVAL);
	/* scope id and flow info do not travel: the decoded form is the canonical one */
	a.in6.sin6_scope_id = 3;
	a.in6.sin6_flowinfo = 5;
	CHECK_EQ_INT(proto_encode_addr(buf, sizeof(buf), &a), 19);
	CHECK_EQ_INT(buf[0], 6);
	CHECK_EQ_INT(buf[17] << 8 | buf[18], 1);
}

/* ---- outer messages ---- */

static bool sodium_is_zero_(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static void outer_roundtrip(const struct proto_outer *o, size_t want_len)
{
	uint8_t buf[PROTO_MAX_DATAGRAM + 8], buf2[PROTO_MAX_DATAGRAM + 8];
	struct proto_outer d;
	ssize_t n, n2;
	size_t i;

	n = proto_encode_outer(buf, sizeof(buf), o);
	CHECK_EQ_INT(n, want_len);
	if (n <= 0)
		return;
	CHECK_EQ_INT(buf[0], PROTO_VERSION);
	CHECK_EQ_INT(buf[1], o->type);
	CHECK(buf[2] == 0 && buf[3] == 0);
	CHECK_EQ_INT(proto_decode_outer(buf, (size_t)n, &d), 0);
	CHECK_EQ_INT(d.type, o->type);
	CHECK_EQ_INT(d.sender_idx, o->sender_idx);
	CHECK_EQ_INT(d.receiver_idx, o->receiver_idx);
	CHECK(d.counter == o->counter);
	CHECK_EQ_INT(d.dst_port, o->dst_port);
	CHECK_EQ_INT(d.purpose, o->purpose);
	CHECK_EQ_INT(d.body_len, o->body_len);
	CHECK(d.body_len == 0 || d.body == buf + proto_outer_prefix_len(o->type));
	CHECK(d.body_len == 0 || memcmp(d.body, o->body, d.body_len) == 0);
	if (o->type == PROTO_HS_INIT) {
		/* the MACs follow the Noise message, outside the body */
		CHECK(d.macs == buf + PROTO_HS_INIT_MAC1_OFF);
		CHECK(o->macs ? memcmp(d.macs, o->macs, 2 * PROTO_MAC_LEN) == 0
			      : sodium_is_zero_(d.macs, 2 * PROTO_MAC_LEN));
		CHECK_EQ_INT(PROTO_HS_INIT_LEN, n);
	} else {
		CHECK(d.macs == NULL);
		CHECK_EQ_INT(proto_outer_prefix_len(o->type) + o->body_len, n);
	}
	n2 = proto_encode_outer(buf2, sizeof(buf2), &d);
	CHECK(n2 == n && memcmp(buf, buf2, (size_t)n) == 0);
	for (i = 0; i < (size_t)n; i++)
		if (proto_encode_outer(buf2, i, o) != -ENOSPC) {
			CHECK(!"small buffer not refused");
			break;
		}
	/* fixed-size types refuse one byte more or less */
	if (o->type != PROTO_DATA) {
		buf[n] = 0;
		CHECK_EQ_INT(proto_decode_outer(buf, (size_t)n + 1, &d), -EBADMSG);
		CHECK_EQ_INT(proto_decode_outer(buf, (size_t)n - 1, &d), -EBADMSG);
	}
	/* nonzero reserved bytes, other versions */
	buf[2] = 1;
	CHECK_EQ_INT(proto_decode_outer(buf, (size_t)n, &d), -EBADMSG);
	buf[2] = 0;
	buf[3] = 0x80;
	CHECK_EQ_INT(proto_decode_outer(buf, (size_t)n, &d), -EBADMSG);
	buf[3] = 0;
	buf[0] = PROTO_VERSION + 1;
	CHECK_EQ_INT(proto_decode_outer(buf, (size_t)n, &d), -EBADMSG);
	buf[0] = 0;
	CHECK_EQ_INT(proto_decode_outer(buf, (size_t)n, &d), -EBADMSG);
}

static void test_proto_outer_roundtrip(void)
{
	uint8_t body[PROTO_MAX_DATAGRAM];
	struct proto_outer o;

	for (size_t i = 0; i < sizeof(body); i++)
		body[i] = (uint8_t)(i * 13 + 1);

	o = (struct proto_outer){ .type = PROTO_HS_INIT,
				  .sender_idx = 0x01020304,
				  .body = body,
				  .body_len = PROTO_HS_INIT_NOISE_LEN };
	outer_roundtrip(&o, 8 + 108 + 32); /* MACs zero, to be filled in place */
	o.macs = body + 500;
	outer_roundtrip(&o, 8 + 108 + 32);
	o = (struct proto_outer){ .type = PROTO_HS_RESP,
				  .sender_idx = 0xffffffff,
				  .receiver_idx = 7,
				  .body = body,
				  .body_len = PROTO_HS_RESP_NOISE_LEN };
	outer_roundtrip(&o, 12 + 48);
	o = (struct proto_outer){ .type = PROTO_DATA,
				  .receiver_idx = 3,
				  .counter = 0x0102030405060708,
				  .body = body,
				  .body_len = PROTO_TAG_LEN };
	outer_roundtrip(&o, 16 + 16);
	o.body_len = PROTO_MAX_DATAGRAM - 16;
	outer_roundtrip(&o, PROTO_MAX_DATAGRAM);
	for (uint8_t purpose = 0; purpose < PROTO_PROBE_PURPOSES; purpose++) {
		o = (struct proto_outer){ .type = PROTO_PROBE,
					  .receiver_idx = 9,
					  .counter = 1,
					  .dst_port = (uint16_t)(51900 + purpose),
					  .purpose = purpose,
					  .body = body,
					  .body_len = PROTO_PROBE_MAC_LEN };
		outer_roundtrip(&o, 36);
	}
	o = (struct proto_outer){ .type = PROTO_SESSION_UNKNOWN, .receiver_idx = 0xabcdef01 };
	outer_roundtrip(&o, 8);
	o = (struct proto_outer){ .type = PROTO_COOKIE_REPLY,
				  .receiver_idx = 0x01020304,
				  .body = body,
				  .body_len = PROTO_COOKIE_BODY_LEN };
	outer_roundtrip(&o, 64);
	o = (struct proto_outer){ .type = PROTO_POISON,
				  .body = body,
				  .body_len = PROTO_POISON_LEN };
	outer_roundtrip(&o, 12);
}

static void test_proto_outer_bytes(void)
{
	/* One row per field. */
	/* clang-format off */
	static const uint8_t want[] = {
		PROTO_VERSION, PROTO_PROBE, 0, 0,
		0x11, 0x22, 0x33, 0x44,         /* receiver_idx */
		0, 0, 0, 0, 0, 0, 0x01, 0x00,   /* counter 256 */
		0xca, 0xbd,                     /* dst_port 51901 */
		0x01,                           /* purpose: mapping toward P + 1 */
		0x00,                           /* reserved */
		1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, /* mac */
	};
	/* clang-format on */
	uint8_t buf[64];
	struct proto_outer o = { .type = PROTO_PROBE,
				 .receiver_idx = 0x11223344,
				 .counter = 256,
				 .dst_port = 51901,
				 .purpose = PROTO_PROBE_MAP_P1,
				 .body = want + 20,
				 .body_len = 16 };
	struct proto_outer d;

	CHECK_EQ_INT(proto_encode_outer(buf, sizeof(buf), &o), sizeof(want));
	CHECK(memcmp(buf, want, sizeof(want)) == 0);
	CHECK_EQ_INT(proto_outer_prefix_len(PROTO_HS_INIT), 8);
	CHECK_EQ_INT(proto_outer_prefix_len(PROTO_HS_RESP), 12);
	CHECK_EQ_INT(proto_outer_prefix_len(PROTO_DATA), 16);
	CHECK_EQ_INT(proto_outer_prefix_len(PROTO_PROBE), 20);
	CHECK_EQ_INT(proto_outer_prefix_len(PROTO_SESSION_UNKNOWN), 8);
	CHECK_EQ_INT(proto_outer_prefix_len(PROTO_POISON), 4);
	CHECK_EQ_INT(proto_outer_prefix_len(PROTO_COOKIE_REPLY), 8);
	CHECK_EQ_INT(proto_outer_prefix_len(0), 0);
	CHECK_EQ_INT(proto_outer_prefix_len(8), 0);

	/* a PROBE's purpose is one of three, and its reserved byte is zero */
	memcpy(buf, want, sizeof(want));
	CHECK_EQ_INT(proto_decode_outer(buf, sizeof(want), &d), 0);
	buf[18] = PROTO_PROBE_PURPOSES;
	CHECK_EQ_INT(proto_decode_outer(buf, sizeof(want), &d), -EBADMSG);
	buf[18] = PROTO_PROBE_RELAY;
	CHECK_EQ_INT(proto_decode_outer(buf, sizeof(want), &d), 0);
	buf[19] = 1;
	CHECK_EQ_INT(proto_decode_outer(buf, sizeof(want), &d), -EBADMSG);
	o.purpose = PROTO_PROBE_PURPOSES;
	CHECK_EQ_INT(proto_encode_outer(buf, sizeof(buf), &o), -EINVAL);
}

static void test_proto_outer_rejects(void)
{
	uint8_t buf[PROTO_MAX_DATAGRAM + 2];
	struct proto_outer d, o;

	memset(buf, 0, sizeof(buf));
	CHECK_EQ_INT(proto_decode_outer(buf, 0, &d), -EBADMSG);
	CHECK_EQ_INT(proto_decode_outer(NULL, 0, &d), -EBADMSG);
	buf[0] = PROTO_VERSION;
	for (int t = 0; t < 256; t++) {
		if (proto_outer_prefix_len((uint8_t)t))
			continue;
		buf[1] = (uint8_t)t;
		if (proto_decode_outer(buf, 64, &d) != -EBADMSG) {
			CHECK(!"unknown outer type accepted");
			break;
		}
	}
	/* header shorter than 4 */
	buf[1] = PROTO_POISON;
	CHECK_EQ_INT(proto_decode_outer(buf, 3, &d), -EBADMSG);
	/* DATA: a body shorter than the tag, and longer than the datagram limit */
	buf[1] = PROTO_DATA;
	CHECK_EQ_INT(proto_decode_outer(buf, 16 + 15, &d), -EBADMSG);
	CHECK_EQ_INT(proto_decode_outer(buf, 16 + 16, &d), 0);
	CHECK_EQ_INT(proto_decode_outer(buf, PROTO_MAX_DATAGRAM, &d), 0);
	CHECK_EQ_INT(proto_decode_outer(buf, PROTO_MAX_DATAGRAM + 1, &d), -EBADMSG);
	/* SESSION_UNKNOWN is exactly 8 bytes */
	buf[1] = PROTO_SESSION_UNKNOWN;
	CHECK_EQ_INT(proto_decode_outer(buf, 8, &d), 0);
	CHECK(d.body == NULL && d.body_len == 0);
	CHECK_EQ_INT(proto_decode_outer(buf, 9, &d), -EBADMSG);
	CHECK_EQ_INT(proto_decode_outer(buf, 7, &d), -EBADMSG);

	/* encoder: wrong body length for the type, unknown type, missing body */
	o = (struct proto_outer){ .type = PROTO_HS_INIT, .body = buf, .body_len = 107 };
	CHECK_EQ_INT(proto_encode_outer(buf + 200, 400, &o), -EINVAL);
	o.body_len = PROTO_HS_INIT_NOISE_LEN + 2 * PROTO_MAC_LEN; /* the MACs are not body */
	CHECK_EQ_INT(proto_encode_outer(buf + 200, 400, &o), -EINVAL);
	/* an HS_INIT without its MACs (version 1's length) */
	buf[1] = PROTO_HS_INIT;
	CHECK_EQ_INT(proto_decode_outer(buf, 8 + 108, &d), -EBADMSG);
	CHECK_EQ_INT(proto_decode_outer(buf, PROTO_HS_INIT_LEN, &d), 0);
	o = (struct proto_outer){ .type = PROTO_DATA, .body = buf, .body_len = 15 };
	CHECK_EQ_INT(proto_encode_outer(buf + 200, 400, &o), -EINVAL);
	o = (struct proto_outer){ .type = PROTO_DATA, .body = NULL, .body_len = 16 };
	CHECK_EQ_INT(proto_encode_outer(buf + 200, 400, &o), -EINVAL);
	o = (struct proto_outer){ .type = PROTO_SESSION_UNKNOWN, .body = buf, .body_len = 1 };
	CHECK_EQ_INT(proto_encode_outer(buf + 200, 400, &o), -EINVAL);
	o = (struct proto_outer){ .type = 0 };
	CHECK_EQ_INT(proto_encode_outer(buf + 200, 400, &o), -EINVAL);
}

static void test_proto_relay_messages(void)
{
	/* One row per field. */
	/* clang-format off */
	static const uint8_t want[] = {
		PROTO_MSG_RELAY,
		0x00, 0x00, 0x00, 0x07,                /* attempt */
		0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
		0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
		0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
		0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, /* peer_key */
		0x01,                                  /* flags: AT_ONCE */
		0x04, 203, 0, 113, 1, 0xcb, 0x20,      /* 203.0.113.1:52000 */
	};
	/* clang-format on */
	uint8_t buf[128];
	struct proto_msg m, d;
	ssize_t n;

	zero_msg(&m, PROTO_MSG_RELAY);
	m.relay.attempt = 7;
	memset(m.relay.peer_key, 0xaa, KEY_LEN);
	m.relay.flags = PROTO_RELAY_F_AT_ONCE;
	m.relay.relay = mk4("203.0.113.1", 52000);
	CHECK_EQ_INT(proto_encode_msg(buf, sizeof(buf), &m), sizeof(want));
	CHECK(memcmp(buf, want, sizeof(want)) == 0);
	CHECK_EQ_INT(msg_roundtrip(&m), 1 + 4 + 32 + 1 + 7);
	m.relay.relay = mk6("2001:db8::1", 52001);
	CHECK_EQ_INT(msg_roundtrip(&m), 1 + 4 + 32 + 1 + 19);

	/* an undefined flag, a truncated address, a trailing byte: refused both ways */
	memcpy(buf, want, sizeof(want));
	buf[37] = 0x04;
	CHECK_EQ_INT(proto_decode_msg(buf, sizeof(want), &d), -EBADMSG);
	buf[37] = PROTO_RELAY_F_AT_ONCE | PROTO_RELAY_F_SECOND; /* both defined */
	CHECK_EQ_INT(proto_decode_msg(buf, sizeof(want), &d), 0);
	buf[37] = 0x01;
	CHECK_EQ_INT(proto_decode_msg(buf, sizeof(want) - 1, &d), -EBADMSG);
	buf[sizeof(want)] = 0;
	CHECK_EQ_INT(proto_decode_msg(buf, sizeof(want) + 1, &d), -EBADMSG);
	CHECK_EQ_INT(proto_decode_msg(buf, sizeof(want), &d), 0);
	m.relay.flags = 0x80;
	CHECK_EQ_INT(proto_encode_msg(buf, sizeof(buf), &m), -EINVAL);
	m.relay.flags = 0;
	m.relay.relay.sa.sa_family = AF_UNSPEC;
	CHECK_EQ_INT(proto_encode_msg(buf, sizeof(buf), &m), -EINVAL);

	zero_msg(&m, PROTO_MSG_RELAY_REQUEST);
	memset(m.relay_request.peer_key, 0x11, KEY_LEN);
	CHECK_EQ_INT(msg_roundtrip(&m), 1 + 32);
	n = proto_encode_msg(buf, sizeof(buf), &m);
	CHECK_EQ_INT(proto_decode_msg(buf, (size_t)n - 1, &d), -EBADMSG);

	for (int r = PROTO_RELAY_CLOSE_DIRECT; r <= PROTO_RELAY_CLOSE_GONE; r++) {
		zero_msg(&m, PROTO_MSG_RELAY_CLOSE);
		memset(m.relay_close.peer_key, 0x22, KEY_LEN);
		m.relay_close.reason = (uint8_t)r;
		CHECK_EQ_INT(msg_roundtrip(&m), 1 + 32 + 1);
	}
	n = proto_encode_msg(buf, sizeof(buf), &m);
	buf[33] = 2; /* no such reason */
	CHECK_EQ_INT(proto_decode_msg(buf, (size_t)n, &d), -EBADMSG);
	m.relay_close.reason = 2;
	CHECK_EQ_INT(proto_encode_msg(buf, sizeof(buf), &m), -EINVAL);
}

int main(void)
{
	TAP_RUN(test_proto_register_roundtrip);
	TAP_RUN(test_proto_register_bytes);
	TAP_RUN(test_proto_small_messages_roundtrip);
	TAP_RUN(test_proto_mapping_bytes);
	TAP_RUN(test_proto_punch_roundtrip);
	TAP_RUN(test_proto_relay_messages);
	TAP_RUN(test_proto_max_sizes_fit_datagram);
	TAP_RUN(test_proto_msg_rejects_non_canonical);
	TAP_RUN(test_proto_msg_encode_rejects_invalid);
	TAP_RUN(test_proto_addr_encoding);
	TAP_RUN(test_proto_outer_roundtrip);
	TAP_RUN(test_proto_outer_bytes);
	TAP_RUN(test_proto_outer_rejects);
	return tap_done();
}

// SPDX-License-Identifier: MIT
/*
 * node_lan: which of the host's addresses become candidates (the pure classify and pick),
 * and the parser of /proc/net/if_inet6 lines.
 */
#include "wgpunch/node_lan.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "../tap.h"

static struct addr ip(const char *s)
{
	struct addr a;

	memset(&a, 0, sizeof(a));
	if (inet_pton(AF_INET, s, &a.in4.sin_addr) == 1) {
		a.in4.sin_family = AF_INET;
	} else {
		a.in6.sin6_family = AF_INET6;
		inet_pton(AF_INET6, s, &a.in6.sin6_addr);
	}
	return a;
}

static void test_classify(void)
{
	struct addr a;

	CHECK_EQ_INT(node_lan_classify(&(struct addr){ 0 }, 0), NODE_LAN_SKIP);
	a = ip("203.0.113.2");
	CHECK_EQ_INT(node_lan_classify(&a, 0), NODE_LAN_V4);
	a = ip("127.0.0.1");
	CHECK_EQ_INT(node_lan_classify(&a, 0), NODE_LAN_SKIP);
	a = ip("169.254.1.1");
	CHECK_EQ_INT(node_lan_classify(&a, 0), NODE_LAN_SKIP);
	a = ip("0.0.0.0");
	CHECK_EQ_INT(node_lan_classify(&a, 0), NODE_LAN_SKIP);
	a = ip("2001:db8:a::2");
	CHECK_EQ_INT(node_lan_classify(&a, 0), NODE_LAN_GLOBAL6);
	/* Privacy, deprecated, tentative and duplicate addresses stay out. */
	CHECK_EQ_INT(node_lan_classify(&a, NODE_LAN_F_TEMPORARY), NODE_LAN_SKIP);
	CHECK_EQ_INT(node_lan_classify(&a, NODE_LAN_F_DEPRECATED), NODE_LAN_SKIP);
	CHECK_EQ_INT(node_lan_classify(&a, NODE_LAN_F_TENTATIVE), NODE_LAN_SKIP);
	CHECK_EQ_INT(node_lan_classify(&a, NODE_LAN_F_DADFAILED), NODE_LAN_SKIP);
	CHECK_EQ_INT(node_lan_classify(&a, 0x80 /* IFA_F_PERMANENT */), NODE_LAN_GLOBAL6);
	a = ip("fd12:3456::1");
	CHECK_EQ_INT(node_lan_classify(&a, 0), NODE_LAN_ULA);
	a = ip("fc00::1");
	CHECK_EQ_INT(node_lan_classify(&a, 0), NODE_LAN_ULA);
	a = ip("fe80::1");
	CHECK_EQ_INT(node_lan_classify(&a, 0), NODE_LAN_SKIP);
	a = ip("::1");
	CHECK_EQ_INT(node_lan_classify(&a, 0), NODE_LAN_SKIP);
	a = ip("::ffff:203.0.113.2");
	CHECK_EQ_INT(node_lan_classify(&a, 0), NODE_LAN_SKIP);
	a = ip("ff02::1");
	CHECK_EQ_INT(node_lan_classify(&a, 0), NODE_LAN_SKIP);
	a = ip("fec0::1"); /* site-local, deprecated by RFC 3879 */
	CHECK_EQ_INT(node_lan_classify(&a, 0), NODE_LAN_SKIP);
	a = ip("64:ff9b::1");
	CHECK_EQ_INT(node_lan_classify(&a, 0), NODE_LAN_SKIP);
}

static void test_pick_orders_and_filters(void)
{
	struct node_lan_entry e[] = {
		{ "eth0", true, ip("2001:db8:a::2"), 0 },
		{ "eth0", true, ip("fe80::2"), 0 },
		{ "eth0", true, ip("203.0.113.2"), 0 },
		{ "wg0", true, ip("198.18.0.1"), 0 },
		{ "wg0", true, ip("2001:db8:ffff::1"), 0 },
		{ "eth1", false, ip("203.0.113.50"), 0 },
		{ "eth0", true, ip("2001:db8:a::99"), NODE_LAN_F_TEMPORARY },
		{ "eth0", true, ip("fd00::2"), 0 },
		{ "lo", true, ip("127.0.0.1"), 0 },
		{ "eth2", true, ip("203.0.113.2"), 0 }, /* the same address twice: once */
	};
	struct addr out[PROTO_MAX_LAN];
	char buf[ADDR_STRLEN];
	uint8_t n = node_lan_pick(e, sizeof(e) / sizeof(e[0]), "wg0", 51820, out);

	CHECK_EQ_INT(n, 3);
	CHECK(strcmp(addr_format(&out[0], buf), "203.0.113.2:51820") == 0);
	CHECK(strcmp(addr_format(&out[1], buf), "[fd00::2]:51820") == 0);
	CHECK(strcmp(addr_format(&out[2], buf), "[2001:db8:a::2]:51820") == 0);
}

static void test_pick_keeps_room_for_ipv6(void)
{
	struct node_lan_entry e[PROTO_MAX_LAN + 2];
	struct addr out[PROTO_MAX_LAN];
	char s[32];
	uint8_t n;

	for (int i = 0; i < PROTO_MAX_LAN; i++) {
		snprintf(s, sizeof(s), "203.0.113.%d", i + 2);
		e[i] = (struct node_lan_entry){ "eth0", true, ip(s), 0 };
	}
	e[PROTO_MAX_LAN] = (struct node_lan_entry){ "eth0", true, ip("2001:db8::5"), 0 };
	e[PROTO_MAX_LAN + 1] = (struct node_lan_entry){ "eth0", true, ip("2001:db8::6"), 0 };
	n = node_lan_pick(e, PROTO_MAX_LAN + 2, "wg0", 1, out);
	CHECK_EQ_INT(n, PROTO_MAX_LAN);
	CHECK_EQ_INT(addr_family(&out[PROTO_MAX_LAN - 3]), AF_INET);
	CHECK_EQ_INT(addr_family(&out[PROTO_MAX_LAN - 2]), AF_INET6);
	CHECK_EQ_INT(addr_family(&out[PROTO_MAX_LAN - 1]), AF_INET6);
	/* Without IPv6 every place can hold IPv4. */
	n = node_lan_pick(e, PROTO_MAX_LAN, "wg0", 1, out);
	CHECK_EQ_INT(n, PROTO_MAX_LAN);
	CHECK_EQ_INT(addr_family(&out[PROTO_MAX_LAN - 1]), AF_INET);
}

static void test_parse_inet6(void)
{
	struct in6_addr a, want;
	char name[IF_NAMESIZE];
	uint32_t fl = 0;

	CHECK_EQ_INT(node_lan_parse_inet6("20010db8000a00000000000000000002 02 40 00 81     eth0\n",
					  &a, &fl, name),
		     0);
	inet_pton(AF_INET6, "2001:db8:a::2", &want);
	CHECK(memcmp(&a, &want, sizeof(a)) == 0);
	CHECK_EQ_INT(fl, 0x81);
	CHECK(strcmp(name, "eth0") == 0);
	CHECK_EQ_INT(node_lan_parse_inet6("20010db8 02 40 00 80 eth0\n", &a, &fl, name), -EINVAL);
	CHECK_EQ_INT(node_lan_parse_inet6("2001zdb8000a00000000000000000002 02 40 00 80 eth0\n", &a,
					  &fl, name),
		     -EINVAL);
	CHECK_EQ_INT(
		node_lan_parse_inet6("20010db8000a00000000000000000002 02 40\n", &a, &fl, name),
		-EINVAL);
	CHECK_EQ_INT(node_lan_parse_inet6("", &a, &fl, name), -EINVAL);
	CHECK_EQ_INT(node_lan_parse_inet6("20010db8000a00000000000000000002 02 40 00 80 "
					  "aninterfacename0123\n",
					  &a, &fl, name),
		     -EINVAL);
}

int main(void)
{
	TAP_RUN(test_classify);
	TAP_RUN(test_pick_orders_and_filters);
	TAP_RUN(test_pick_keeps_room_for_ipv6);
	TAP_RUN(test_parse_inet6);
	return tap_done();
}

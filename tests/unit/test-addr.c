/* SPDX-License-Identifier: MIT */
#include "wgpunch/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "../tap.h"

/* Parses s and checks that it formats back to exactly s. */
static void check_round_trip(const char *s, int family, uint16_t port)
{
	struct addr a;
	char buf[ADDR_STRLEN];

	CHECK_EQ_INT(addr_parse(&a, s, false), 0);
	CHECK(addr_is_set(&a));
	CHECK_EQ_INT(addr_family(&a), family);
	CHECK_EQ_INT(addr_port(&a), port);
	addr_format(&a, buf);
	if (strcmp(buf, s) != 0)
		printf("# '%s' formatted as '%s'\n", s, buf);
	CHECK(strcmp(buf, s) == 0);
}

static void test_addr_parse_format_round_trip(void)
{
	check_round_trip("203.0.113.1:51900", AF_INET, 51900);
	check_round_trip("198.51.100.255:1", AF_INET, 1);
	check_round_trip("127.0.0.1:65535", AF_INET, 65535);
	check_round_trip("[2001:db8::1]:51820", AF_INET6, 51820);
	check_round_trip("[::]:51900", AF_INET6, 51900);
	check_round_trip("[::1]:2", AF_INET6, 2);
	check_round_trip("[2001:db8:1:2:3:4:5:6]:443", AF_INET6, 443);
}

/* Non-canonical input parses, and prints in the one form `wg show` uses. */
static void test_addr_format_canonical(void)
{
	struct addr a;
	char buf[ADDR_STRLEN];

	CHECK_EQ_INT(addr_parse(&a, "[2001:DB8:0:0::1]:00080", false), 0);
	CHECK(strcmp(addr_format(&a, buf), "[2001:db8::1]:80") == 0);
	memset(&a, 0, sizeof(a));
	CHECK(strcmp(addr_format(&a, buf), "(none)") == 0);
	CHECK(!addr_is_set(&a));
	CHECK_EQ_INT(addr_family(&a), AF_UNSPEC);
	CHECK_EQ_INT(addr_len(&a), 0);
}

static void test_addr_parse_rejects(void)
{
	static const char *const bad[] = {
		"",
		"203.0.113.1",
		"203.0.113.1:",
		"203.0.113.1:65536",
		"203.0.113.1:-1",
		"203.0.113.1:+5",
		"203.0.113.1:5x",
		"203.0.113.1: 5",
		"203.0.113.256:1",
		"203.0.113:1",
		"2001:db8::1:51900", /* IPv6 needs brackets */
		"[2001:db8::1]",
		"[2001:db8::1]51900",
		"[203.0.113.1]:51900",
		"[2001:db8::g]:1",
		"example.com:51900", /* a literal only: no DNS here */
		":51900",
		"[]:51900",
	};
	struct addr a;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = addr_parse(&a, bad[i], true);

		if (r != -EINVAL)
			printf("# accepted '%s'\n", bad[i]);
		CHECK_EQ_INT(r, -EINVAL);
		CHECK(!addr_is_set(&a));
	}
}

static void test_addr_parse_port0(void)
{
	struct addr a;

	CHECK_EQ_INT(addr_parse(&a, "203.0.113.1:0", false), -EINVAL);
	CHECK_EQ_INT(addr_parse(&a, "203.0.113.1:0", true), 0);
	CHECK_EQ_INT(addr_port(&a), 0);
	CHECK_EQ_INT(addr_parse(&a, "[2001:db8::1]:0", true), 0);
}

static void test_addr_split_host_port(void)
{
	char host[256];
	uint16_t port = 0;

	CHECK_EQ_INT(addr_split_host_port("coord.example.com:51900", host, sizeof(host), &port), 0);
	CHECK(strcmp(host, "coord.example.com") == 0);
	CHECK_EQ_INT(port, 51900);
	CHECK_EQ_INT(addr_split_host_port("203.0.113.7:1", host, sizeof(host), &port), 0);
	CHECK(strcmp(host, "203.0.113.7") == 0);
	CHECK_EQ_INT(port, 1);
	CHECK_EQ_INT(addr_split_host_port("[2001:db8::7]:65535", host, sizeof(host), &port), 0);
	CHECK(strcmp(host, "2001:db8::7") == 0);
	CHECK_EQ_INT(port, 65535);
	CHECK_EQ_INT(addr_split_host_port("localhost:9", host, sizeof(host), &port), 0);
	CHECK_EQ_INT(addr_split_host_port("host.example.:9", host, sizeof(host), &port), 0);

	CHECK_EQ_INT(addr_split_host_port_diag("coord.example.com", host, sizeof(host), &port),
		     ADDR_SPLIT_SYNTAX);
	CHECK_EQ_INT(addr_split_host_port_diag("2001:db8::7:51900", host, sizeof(host), &port),
		     ADDR_SPLIT_SYNTAX);
	CHECK_EQ_INT(addr_split_host_port_diag("[2001:db8::7:51900", host, sizeof(host), &port),
		     ADDR_SPLIT_SYNTAX);
	CHECK_EQ_INT(addr_split_host_port_diag("bad_host:51900", host, sizeof(host), &port),
		     ADDR_SPLIT_HOST);
	CHECK_EQ_INT(addr_split_host_port_diag("203.0.113.300:51900", host, sizeof(host), &port),
		     ADDR_SPLIT_HOST);
	CHECK_EQ_INT(addr_split_host_port_diag("[coord.example]:51900", host, sizeof(host), &port),
		     ADDR_SPLIT_HOST);
	CHECK_EQ_INT(addr_split_host_port_diag(":51900", host, sizeof(host), &port),
		     ADDR_SPLIT_HOST);
	CHECK_EQ_INT(addr_split_host_port_diag("coord.example.com:0", host, sizeof(host), &port),
		     ADDR_SPLIT_PORT);
	CHECK_EQ_INT(
		addr_split_host_port_diag("coord.example.com:70000", host, sizeof(host), &port),
		ADDR_SPLIT_PORT);
	CHECK_EQ_INT(addr_split_host_port_diag("coord.example.com:", host, sizeof(host), &port),
		     ADDR_SPLIT_PORT);
	/* A host that does not fit host_cap is refused, not cut. */
	CHECK_EQ_INT(addr_split_host_port_diag("coord.example.com:1", host, 8, &port),
		     ADDR_SPLIT_HOST);
	CHECK_EQ_INT(addr_split_host_port("x:", host, sizeof(host), &port), -EINVAL);
}

static void test_addr_host_name_valid(void)
{
	static const char *const good[] = { "a",
					    "coord",
					    "coord.example.com",
					    "x-1.example.",
					    "1coord.example.com",
					    "a.b.c.d.e.f",
					    "xn--bcher-kva.example" };
	static const char *const bad[] = {
		"",    ".",     "a..b",        "-a.example",  "a-.example", "a_b.example",
		"a b", "1.2.3", "example.123", "ex@mple.com", "..",         "a.example.."
	};
	char label64[80], long_name[300];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		if (!addr_host_name_valid(good[i]))
			printf("# refused '%s'\n", good[i]);
		CHECK(addr_host_name_valid(good[i]));
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (addr_host_name_valid(bad[i]))
			printf("# accepted '%s'\n", bad[i]);
		CHECK(!addr_host_name_valid(bad[i]));
	}
	memset(label64, 'a', 64);
	strcpy(label64 + 64, ".example");
	CHECK(!addr_host_name_valid(label64));
	CHECK(addr_host_name_valid(label64 + 1)); /* 63 characters */

	/* 253 characters is the limit of a name. */
	memset(long_name, 0, sizeof(long_name));
	for (size_t i = 0; i < 253; i++)
		long_name[i] = i % 10 == 9 ? '.' : 'a';
	CHECK(addr_host_name_valid(long_name));
	long_name[253] = 'a';
	CHECK(!addr_host_name_valid(long_name));
}

static void test_addr_equal_and_same_ip(void)
{
	struct addr a, b, c, d;

	addr_parse(&a, "203.0.113.1:51900", false);
	addr_parse(&b, "203.0.113.1:51901", false);
	addr_parse(&c, "[::ffff:203.0.113.1]:51900", false);
	addr_parse(&d, "203.0.113.1:51900", false);
	CHECK(addr_equal(&a, &d));
	CHECK(!addr_equal(&a, &b));
	CHECK(addr_same_ip(&a, &b));
	CHECK(!addr_equal(&a, &c)); /* mapped IPv6 is a different address */
	CHECK(!addr_same_ip(&a, &c));
	addr_set_port(&b, 51900);
	CHECK(addr_equal(&a, &b));
	CHECK_EQ_INT(addr_port(&b), 51900);
}

static void test_addr_from_sockaddr(void)
{
	struct sockaddr_in6 in6 = { 0 };
	struct sockaddr_in in4 = { 0 };
	struct sockaddr_storage ss = { 0 };
	struct addr a, b;

	in4.sin_family = AF_INET;
	in4.sin_port = htons(51820);
	inet_pton(AF_INET, "198.51.100.9", &in4.sin_addr);
	CHECK_EQ_INT(addr_from_sockaddr(&a, (struct sockaddr *)&in4, sizeof(in4)), 0);
	addr_parse(&b, "198.51.100.9:51820", false);
	CHECK(addr_equal(&a, &b));
	CHECK_EQ_INT(addr_len(&a), sizeof(struct sockaddr_in));
	CHECK_EQ_INT(addr_from_sockaddr(&a, (struct sockaddr *)&in4, sizeof(in4) - 1), -EINVAL);

	in6.sin6_family = AF_INET6;
	in6.sin6_port = htons(51820);
	in6.sin6_flowinfo = htonl(12345); /* not part of the address */
	inet_pton(AF_INET6, "2001:db8::9", &in6.sin6_addr);
	CHECK_EQ_INT(addr_from_sockaddr(&a, (struct sockaddr *)&in6, sizeof(in6)), 0);
	addr_parse(&b, "[2001:db8::9]:51820", false);
	CHECK(addr_equal(&a, &b));
	CHECK(memcmp(&a, &b, sizeof(a)) == 0);
	CHECK_EQ_INT(addr_len(&a), sizeof(struct sockaddr_in6));

	ss.ss_family = AF_UNIX;
	CHECK_EQ_INT(addr_from_sockaddr(&a, (struct sockaddr *)&ss, sizeof(ss)), -EAFNOSUPPORT);
	CHECK(!addr_is_set(&a));
}

static bool classify(const char *s, bool (*fn)(const struct addr *))
{
	struct addr a;

	if (addr_parse(&a, s, true) < 0) {
		printf("# cannot parse '%s'\n", s);
		return false;
	}
	return fn(&a);
}

static void test_addr_classes(void)
{
	CHECK(classify("127.0.0.1:1", addr_is_loopback));
	CHECK(classify("127.255.0.1:1", addr_is_loopback));
	CHECK(classify("[::1]:1", addr_is_loopback));
	CHECK(!classify("203.0.113.1:1", addr_is_loopback));
	CHECK(!classify("[2001:db8::1]:1", addr_is_loopback));

	CHECK(classify("169.254.3.4:1", addr_is_link_local));
	CHECK(classify("[fe80::1]:1", addr_is_link_local));
	CHECK(!classify("198.51.100.1:1", addr_is_link_local));
	CHECK(!classify("[2001:db8::1]:1", addr_is_link_local));

	CHECK(classify("[2001:db8::1]:1", addr_is_global_ipv6));
	CHECK(classify("[3fff::1]:1", addr_is_global_ipv6));
	CHECK(!classify("[fe80::1]:1", addr_is_global_ipv6));
	CHECK(!classify("[fd00::1]:1", addr_is_global_ipv6));
	CHECK(!classify("[::1]:1", addr_is_global_ipv6));
	CHECK(!classify("[::ffff:203.0.113.1]:1", addr_is_global_ipv6));
	CHECK(!classify("203.0.113.1:1", addr_is_global_ipv6));
}

int main(void)
{
	TAP_RUN(test_addr_parse_format_round_trip);
	TAP_RUN(test_addr_format_canonical);
	TAP_RUN(test_addr_parse_rejects);
	TAP_RUN(test_addr_parse_port0);
	TAP_RUN(test_addr_split_host_port);
	TAP_RUN(test_addr_host_name_valid);
	TAP_RUN(test_addr_equal_and_same_ip);
	TAP_RUN(test_addr_from_sockaddr);
	TAP_RUN(test_addr_classes);
	return tap_done();
}

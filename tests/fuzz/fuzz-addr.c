/* SPDX-License-Identifier: MIT */
/*
 * fuzz-addr - arbitrary bytes as the address text of a config line (listen,
 * coordinator) and as a sockaddr from the kernel. Must not crash; what
 * addr_parse() accepts formats back to a string that parses to the same
 * address, and what addr_split_host_port() accepts is an IP literal or a
 * valid host name with a port of 1-65535.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "wgpunch/addr.h"

static void check_parse(const char *s, bool allow_port0)
{
	struct addr a, b;
	char text[ADDR_STRLEN];

	if (addr_parse(&a, s, allow_port0) < 0) {
		FUZZ_ASSERT(!addr_is_set(&a));
		return;
	}
	FUZZ_ASSERT(addr_family(&a) == AF_INET || addr_family(&a) == AF_INET6);
	FUZZ_ASSERT(allow_port0 || addr_port(&a) != 0);
	FUZZ_ASSERT(addr_len(&a) > 0);
	addr_format(&a, text);
	FUZZ_ASSERT(memchr(text, '\0', sizeof(text)) != NULL);
	FUZZ_ASSERT(addr_parse(&b, text, true) == 0);
	FUZZ_ASSERT(addr_equal(&a, &b));
	/* The class checks read nothing beyond the address. */
	(void)addr_is_loopback(&a);
	(void)addr_is_link_local(&a);
	(void)addr_is_global_ipv6(&a);
}

static void check_split(const char *s, size_t cap)
{
	char host[256];
	uint16_t port = 0;
	struct in6_addr in6;
	enum addr_split_error e = addr_split_host_port_diag(s, host, cap, &port);

	FUZZ_ASSERT(e >= ADDR_SPLIT_OK && e <= ADDR_SPLIT_PORT);
	FUZZ_ASSERT((e == ADDR_SPLIT_OK) == (addr_split_host_port(s, host, cap, &port) == 0));
	if (e != ADDR_SPLIT_OK)
		return;
	FUZZ_ASSERT(port != 0);
	FUZZ_ASSERT(strlen(host) < cap);
	FUZZ_ASSERT(inet_pton(AF_INET6, host, &in6) == 1 || inet_pton(AF_INET, host, &in6) == 1 ||
		    addr_host_name_valid(host));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	struct addr a;

	FUZZ_ASSERT(s);
	memcpy(s, data, size);
	s[size] = '\0'; /* config values are C strings: inih cuts at the NUL */
	check_parse(s, false);
	check_parse(s, true);
	check_split(s, 256);
	check_split(s, 8); /* a host that does not fit is refused, never cut */
	if (addr_host_name_valid(s))
		FUZZ_ASSERT(strlen(s) <= 254);
	free(s);

	/* The same bytes as a sockaddr of their own length, as recvfrom() would give it. */
	if (addr_from_sockaddr(&a, (const struct sockaddr *)(const void *)data,
			       (socklen_t)(size < 256 ? size : 256)) == 0) {
		char text[ADDR_STRLEN];

		FUZZ_ASSERT(addr_family(&a) == AF_INET || addr_family(&a) == AF_INET6);
		addr_format(&a, text);
	}
	return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * addr - socket addresses and their text forms ("203.0.113.1:51820",
 * "[2001:db8::1]:51820"), as `wg show` prints them.
 */
#include "wgpunch/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>

bool addr_is_set(const struct addr *a)
{
	return a->sa.sa_family == AF_INET || a->sa.sa_family == AF_INET6;
}

int addr_family(const struct addr *a)
{
	return addr_is_set(a) ? a->sa.sa_family : AF_UNSPEC;
}

socklen_t addr_len(const struct addr *a)
{
	switch (a->sa.sa_family) {
	case AF_INET:
		return sizeof(a->in4);
	case AF_INET6:
		return sizeof(a->in6);
	default:
		return 0;
	}
}

uint16_t addr_port(const struct addr *a)
{
	switch (a->sa.sa_family) {
	case AF_INET:
		return ntohs(a->in4.sin_port);
	case AF_INET6:
		return ntohs(a->in6.sin6_port);
	default:
		return 0;
	}
}

void addr_set_port(struct addr *a, uint16_t port)
{
	if (a->sa.sa_family == AF_INET)
		a->in4.sin_port = htons(port);
	else if (a->sa.sa_family == AF_INET6)
		a->in6.sin6_port = htons(port);
}

/*
 * Only family, address, port (and the IPv6 scope) are kept: flow labels and
 * padding would otherwise make equal endpoints compare unequal.
 */
int addr_from_sockaddr(struct addr *a, const struct sockaddr *sa, socklen_t len)
{
	memset(a, 0, sizeof(*a));
	if (!sa || len < (socklen_t)sizeof(sa_family_t))
		return -EINVAL;
	switch (sa->sa_family) {
	case AF_INET: {
		struct sockaddr_in in4;

		if (len < (socklen_t)sizeof(in4))
			return -EINVAL;
		memcpy(&in4, sa, sizeof(in4));
		a->in4.sin_family = AF_INET;
		a->in4.sin_port = in4.sin_port;
		a->in4.sin_addr = in4.sin_addr;
		return 0;
	}
	case AF_INET6: {
		struct sockaddr_in6 in6;

		if (len < (socklen_t)sizeof(in6))
			return -EINVAL;
		memcpy(&in6, sa, sizeof(in6));
		a->in6.sin6_family = AF_INET6;
		a->in6.sin6_port = in6.sin6_port;
		a->in6.sin6_addr = in6.sin6_addr;
		a->in6.sin6_scope_id = in6.sin6_scope_id;
		return 0;
	}
	default:
		return -EAFNOSUPPORT;
	}
}

bool addr_same_ip(const struct addr *a, const struct addr *b)
{
	if (a->sa.sa_family != b->sa.sa_family)
		return false;
	switch (a->sa.sa_family) {
	case AF_INET:
		return a->in4.sin_addr.s_addr == b->in4.sin_addr.s_addr;
	case AF_INET6:
		return memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, sizeof(struct in6_addr)) == 0 &&
		       a->in6.sin6_scope_id == b->in6.sin6_scope_id;
	default:
		return true; /* two unset addresses */
	}
}

bool addr_equal(const struct addr *a, const struct addr *b)
{
	return addr_same_ip(a, b) && addr_port(a) == addr_port(b);
}

const char *addr_format(const struct addr *a, char buf[ADDR_STRLEN])
{
	char ip[INET6_ADDRSTRLEN];

	switch (a->sa.sa_family) {
	case AF_INET:
		inet_ntop(AF_INET, &a->in4.sin_addr, ip, sizeof(ip));
		snprintf(buf, ADDR_STRLEN, "%s:%u", ip, ntohs(a->in4.sin_port));
		break;
	case AF_INET6:
		inet_ntop(AF_INET6, &a->in6.sin6_addr, ip, sizeof(ip));
		if (a->in6.sin6_scope_id) {
			/* As getnameinfo() in `wg show`: the interface name, else its index. */
			char scope[IF_NAMESIZE];
			int n;

			if (!if_indextoname(a->in6.sin6_scope_id, scope))
				snprintf(scope, sizeof(scope), "%u", a->in6.sin6_scope_id);
			n = snprintf(buf, ADDR_STRLEN, "[%s%%%s]:%u", ip, scope,
				     ntohs(a->in6.sin6_port));
			if (n > 0 && n < ADDR_STRLEN)
				break;
			/* Only a scoped address of 40+ characters gets here: keep the port. */
		}
		snprintf(buf, ADDR_STRLEN, "[%s]:%u", ip, ntohs(a->in6.sin6_port));
		break;
	default:
		snprintf(buf, ADDR_STRLEN, "(none)");
		break;
	}
	return buf;
}

/* Decimal 0-65535, digits only: no sign, no spaces, at most five digits. */
static int parse_port(const char *s, size_t len, uint16_t *port)
{
	unsigned long v = 0;

	if (len == 0 || len > 5)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > 65535)
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

/*
 * Splits s into host and port text without judging either: "[h]:p" (the
 * brackets are dropped and *bracketed set) or "h:p" with exactly one colon.
 */
static int split_raw(const char *s, const char **host, size_t *host_len, const char **port,
		     bool *bracketed)
{
	const char *colon;

	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (!close || close[1] != ':')
			return -EINVAL;
		*host = s + 1;
		*host_len = (size_t)(close - s - 1);
		*port = close + 2;
		*bracketed = true;
		return 0;
	}
	colon = strrchr(s, ':');
	if (!colon || memchr(s, ':', (size_t)(colon - s)))
		return -EINVAL; /* no port, or IPv6 without brackets: ambiguous */
	*host = s;
	*host_len = (size_t)(colon - s);
	*port = colon + 1;
	*bracketed = false;
	return 0;
}

int addr_parse(struct addr *a, const char *s, bool allow_port0)
{
	char ip[INET6_ADDRSTRLEN];
	const char *host, *port_s;
	size_t host_len;
	bool bracketed;
	uint16_t port;

	memset(a, 0, sizeof(*a));
	if (!s || split_raw(s, &host, &host_len, &port_s, &bracketed) < 0)
		return -EINVAL;
	if (host_len == 0 || host_len >= sizeof(ip))
		return -EINVAL;
	if (parse_port(port_s, strlen(port_s), &port) < 0 || (port == 0 && !allow_port0))
		return -EINVAL;
	memcpy(ip, host, host_len);
	ip[host_len] = '\0';
	if (bracketed) {
		if (inet_pton(AF_INET6, ip, &a->in6.sin6_addr) != 1)
			return -EINVAL;
		a->in6.sin6_family = AF_INET6;
		a->in6.sin6_port = htons(port);
	} else {
		if (inet_pton(AF_INET, ip, &a->in4.sin_addr) != 1)
			return -EINVAL;
		a->in4.sin_family = AF_INET;
		a->in4.sin_port = htons(port);
	}
	return 0;
}

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool addr_host_name_valid(const char *name)
{
	size_t len = strlen(name), label = 0;
	bool all_digits = true;

	if (len > 0 && name[len - 1] == '.')
		len--; /* the root: "host.example." */
	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i <= len; i++) {
		char c = i < len ? name[i] : '.';

		if (c == '.') {
			/* RFC 1123 2.1: 1-63 characters, no hyphen at either end. */
			if (label == 0 || label > 63 || name[i - 1] == '-')
				return false;
			if (i == len && all_digits)
				return false; /* RFC 3696 2: a top-level label is not all digits */
			label = 0;
			all_digits = true;
			continue;
		}
		if (!is_alnum(c) && c != '-')
			return false;
		if (label == 0 && c == '-')
			return false;
		if (c < '0' || c > '9')
			all_digits = false;
		label++;
	}
	return true;
}

enum addr_split_error addr_split_host_port_diag(const char *s, char *host, size_t host_cap,
						uint16_t *port)
{
	const char *h, *port_s;
	size_t h_len;
	bool bracketed;
	struct in6_addr in6;
	struct in_addr in4;

	if (!s || split_raw(s, &h, &h_len, &port_s, &bracketed) < 0)
		return ADDR_SPLIT_SYNTAX;
	if (h_len == 0 || h_len >= host_cap)
		return ADDR_SPLIT_HOST;
	memcpy(host, h, h_len);
	host[h_len] = '\0';
	if (bracketed) {
		if (inet_pton(AF_INET6, host, &in6) != 1)
			return ADDR_SPLIT_HOST;
	} else if (inet_pton(AF_INET, host, &in4) != 1 && !addr_host_name_valid(host)) {
		return ADDR_SPLIT_HOST;
	}
	if (parse_port(port_s, strlen(port_s), port) < 0 || *port == 0)
		return ADDR_SPLIT_PORT;
	return ADDR_SPLIT_OK;
}

int addr_split_host_port(const char *s, char *host, size_t host_cap, uint16_t *port)
{
	return addr_split_host_port_diag(s, host, host_cap, port) == ADDR_SPLIT_OK ? 0 : -EINVAL;
}

bool addr_is_loopback(const struct addr *a)
{
	if (a->sa.sa_family == AF_INET)
		return (ntohl(a->in4.sin_addr.s_addr) >> 24) == 127;
	if (a->sa.sa_family == AF_INET6) {
		const struct in6_addr *ip = &a->in6.sin6_addr;

		if (IN6_IS_ADDR_LOOPBACK(ip))
			return true;
		return IN6_IS_ADDR_V4MAPPED(ip) && ip->s6_addr[12] == 127;
	}
	return false;
}

bool addr_is_link_local(const struct addr *a)
{
	if (a->sa.sa_family == AF_INET)
		return (ntohl(a->in4.sin_addr.s_addr) >> 16) == 0xa9fe; /* 169.254.0.0/16 */
	if (a->sa.sa_family == AF_INET6)
		return IN6_IS_ADDR_LINKLOCAL(&a->in6.sin6_addr);
	return false;
}

/*
 * Global unicast is 2000::/3 (RFC 4291 2.4). The documentation prefix
 * 2001:db8::/32 is inside it on purpose: the test beds use it as the
 * "global" IPv6 network.
 */
bool addr_is_global_ipv6(const struct addr *a)
{
	if (a->sa.sa_family != AF_INET6)
		return false;
	return (a->in6.sin6_addr.s6_addr[0] & 0xe0) == 0x20;
}

bool addr_is_ula(const struct addr *a)
{
	return a->sa.sa_family == AF_INET6 && (a->in6.sin6_addr.s6_addr[0] & 0xfe) == 0xfc;
}

/* SPDX-License-Identifier: MIT */
/*
 * addr - an IPv4 or IPv6 socket address with port, and its text forms.
 *
 * Text forms are the ones `wg show` prints: "203.0.113.1:51820" and
 * "[2001:db8::1]:51820". Pure functions; no DNS.
 */
#ifndef WGPUNCH_ADDR_H
#define WGPUNCH_ADDR_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* AF_UNSPEC (all zero) means "no address". */
struct addr {
	union {
		struct sockaddr sa;
		struct sockaddr_in in4;
		struct sockaddr_in6 in6;
	};
};

/* "[v6]:port" plus NUL: 1 + 45 + 1 + 1 + 5 + 1 (INET6_ADDRSTRLEN is 46). */
#define ADDR_STRLEN 64

bool addr_is_set(const struct addr *a);
int addr_family(const struct addr *a);
socklen_t addr_len(const struct addr *a);
uint16_t addr_port(const struct addr *a);
void addr_set_port(struct addr *a, uint16_t port);

/* Copies a sockaddr of family AF_INET or AF_INET6; 0 or -EAFNOSUPPORT / -EINVAL (short). */
int addr_from_sockaddr(struct addr *a, const struct sockaddr *sa, socklen_t len);

/* Same address and port (an IPv4-mapped IPv6 address is not equal to the IPv4 one). */
bool addr_equal(const struct addr *a, const struct addr *b);
/* Same IP, any port. */
bool addr_same_ip(const struct addr *a, const struct addr *b);

/* Formats as "ip:port" / "[ip]:port" ("(none)" when unset); returns buf. */
const char *addr_format(const struct addr *a, char buf[ADDR_STRLEN]);

/*
 * Parses an IP literal with port: "203.0.113.1:51900" or "[2001:db8::1]:51900".
 * Port 0 is refused unless allow_port0. Returns 0 or -EINVAL.
 */
int addr_parse(struct addr *a, const char *s, bool allow_port0);

/*
 * Splits "host:port" / "[v6]:port" into host and port without resolving it.
 * host is a literal or a DNS name (checked for valid syntax). Returns 0 or -EINVAL.
 */
int addr_split_host_port(const char *s, char *host, size_t host_cap, uint16_t *port);

/* Why addr_split_host_port() refused a string, so config messages can say which part is wrong. */
enum addr_split_error {
	ADDR_SPLIT_OK = 0,
	ADDR_SPLIT_SYNTAX, /* no ":PORT" part, or an IPv6 literal without brackets */
	ADDR_SPLIT_HOST, /* neither an IP literal nor a valid DNS name (or longer than host_cap) */
	ADDR_SPLIT_PORT, /* not a decimal number in 1-65535 */
};
enum addr_split_error addr_split_host_port_diag(const char *s, char *host, size_t host_cap,
						uint16_t *port);

/*
 * RFC 1123 host name syntax: dot-separated labels of 1-63 letters, digits and '-' (not at
 * either end), at most 253 characters, an optional final dot, and a last label that is not
 * all digits (so "203.0.113.300" is refused rather than looked up).
 */
bool addr_host_name_valid(const char *name);

/* Routable address classes used to pick candidates. */
bool addr_is_loopback(const struct addr *a);
bool addr_is_link_local(const struct addr *a);
bool addr_is_global_ipv6(const struct addr *a);
/* Unique local IPv6, fc00::/7 (RFC 4193): routed inside a site only, like private IPv4. */
bool addr_is_ula(const struct addr *a);

#endif

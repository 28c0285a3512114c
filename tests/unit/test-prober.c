// SPDX-License-Identifier: MIT
/*
 * prober: the UDP header builder (checksum against values computed by hand
 * with an independent implementation) and, as root, a real send over
 * loopback from a chosen source port.
 */
#include "wgpunch/prober.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../tap.h"

static struct addr v4(const char *ip, uint16_t port)
{
	struct addr a;

	memset(&a, 0, sizeof(a));
	a.in4.sin_family = AF_INET;
	a.in4.sin_port = htons(port);
	inet_pton(AF_INET, ip, &a.in4.sin_addr);
	return a;
}

/* Independent check: summing pseudo-header and datagram, checksum included, gives 0xffff. */
static unsigned int fold_sum(const struct addr *src, const struct addr *dst, const uint8_t *udp,
			     size_t len)
{
	unsigned long sum = 0;
	const uint8_t *s = (const uint8_t *)&src->in4.sin_addr,
		      *d = (const uint8_t *)&dst->in4.sin_addr;
	size_t i;

	for (i = 0; i < 4; i += 2)
		sum += (unsigned long)(s[i] * 256 + s[i + 1]) +
		       (unsigned long)(d[i] * 256 + d[i + 1]);
	sum += 17 + len;
	for (i = 0; i < len; i++)
		sum += (i % 2 == 0) ? (unsigned long)udp[i] * 256 : udp[i];
	while (sum > 0xffff)
		sum = (sum & 0xffff) + (sum >> 16);
	return (unsigned int)sum;
}

static void test_prober_builds_header_and_checksum(void)
{
	struct addr src = v4("198.51.100.7", 51820), dst = v4("203.0.113.1", 51900);
	const uint8_t payload[] = "wgpunch!";
	uint8_t out[64];
	ssize_t n = prober_build_udp(out, sizeof(out), &src, &dst, payload, 8);

	CHECK_EQ_INT(n, 16);
	CHECK_EQ_INT(out[0] << 8 | out[1], 51820);
	CHECK_EQ_INT(out[2] << 8 | out[3], 51900);
	CHECK_EQ_INT(out[4] << 8 | out[5], 16);
	/* Computed by hand (RFC 768 pseudo-header, RFC 1071 sum) with a Python script. */
	CHECK_EQ_INT(out[6] << 8 | out[7], 0x4606);
	CHECK(memcmp(out + 8, payload, 8) == 0);
	CHECK_EQ_INT(fold_sum(&src, &dst, out, (size_t)n), 0xffff);
}

static void test_prober_checksum_odd_length(void)
{
	struct addr src = v4("198.18.0.2", 51820), dst = v4("203.0.113.9", 51901);
	uint8_t out[64];
	ssize_t n = prober_build_udp(out, sizeof(out), &src, &dst, (const uint8_t *)"odd", 3);

	CHECK_EQ_INT(n, 11);
	CHECK_EQ_INT(out[6] << 8 | out[7], 0x952a);
	CHECK_EQ_INT(fold_sum(&src, &dst, out, (size_t)n), 0xffff);
}

static void test_prober_checksum_many_payloads(void)
{
	struct addr src = v4("198.51.100.200", 1), dst = v4("203.0.113.254", 65535);
	uint8_t payload[300], out[400];
	size_t len;

	for (len = 0; len < sizeof(payload); len += 7) {
		ssize_t n;
		size_t i;

		for (i = 0; i < len; i++)
			payload[i] = (uint8_t)(i * 37 + len);
		n = prober_build_udp(out, sizeof(out), &src, &dst, payload, len);
		CHECK_EQ_INT(n, (long long)(len + 8));
		CHECK(out[6] != 0 || out[7] != 0);
		CHECK_EQ_INT(fold_sum(&src, &dst, out, (size_t)n), 0xffff);
	}
}

static void test_prober_build_refuses_small_buffer_and_ipv6(void)
{
	struct addr src = v4("198.51.100.7", 51820), dst = v4("203.0.113.1", 51900);
	struct addr six;
	uint8_t out[16];

	CHECK_EQ_INT(prober_build_udp(out, 15, &src, &dst, (const uint8_t *)"12345678", 8),
		     -ENOSPC);
	memset(&six, 0, sizeof(six));
	six.in6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "2001:db8::1", &six.in6.sin6_addr);
	six.in6.sin6_port = htons(51900);
	CHECK_EQ_INT(prober_build_udp(out, sizeof(out), &src, &six, NULL, 0), -EAFNOSUPPORT);
}

/* A UDP socket on loopback (127.0.0.1 or ::1), port chosen by the kernel, and its address in
 * *at: where a probe is sent. -1 when the family is not there. */
static int loopback_receiver(int family, struct addr *at)
{
	struct addr a;
	socklen_t sl = sizeof(a.in6);
	int fd;

	memset(&a, 0, sizeof(a));
	a.sa.sa_family = (sa_family_t)family;
	if (family == AF_INET)
		a.in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else
		a.in6.sin6_addr = in6addr_loopback;
	fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (bind(fd, &a.sa, addr_len(&a)) < 0 || getsockname(fd, &a.sa, &sl) < 0) {
		close(fd);
		return -1;
	}
	*at = a;
	return fd;
}

/* The next datagram on rx within 2 s into buf; its source port in *port. Length or -1. */
static ssize_t recv_probe(int rx, uint8_t *buf, size_t cap, uint16_t *port)
{
	struct pollfd pfd = { .fd = rx, .events = POLLIN };
	struct addr from;
	socklen_t sl = sizeof(from.in6);
	ssize_t n;

	if (poll(&pfd, 1, 2000) != 1)
		return -1;
	n = recvfrom(rx, buf, cap, MSG_DONTWAIT, &from.sa, &sl);
	if (n >= 0)
		*port = addr_port(&from);
	return n;
}

/* As root: a probe from port X arrives at a loopback UDP socket with source port X, and
 * the raw socket itself queues nothing (the drop-all filter). Without root: -EPERM. */
static void test_prober_sends_from_port_over_loopback(void)
{
	struct prober p;
	struct addr dst;
	uint8_t buf[64];
	uint16_t port = 0;
	int rx, r;
	ssize_t n;

	r = prober_open(&p, 0, 0);
	if (geteuid() != 0) {
		CHECK(r == -EPERM || r == -EACCES);
		return;
	}
	CHECK_EQ_INT(r, 0);
	if (r < 0)
		return;

	rx = loopback_receiver(AF_INET, &dst);
	CHECK(rx >= 0);

	CHECK_EQ_INT(prober_update(&p, 40123, 0), 0);
	CHECK_EQ_INT(prober_send(&p, &dst, (const uint8_t *)"probe", 5), 0);
	CHECK_EQ_INT(p.sent, 1);

	n = recv_probe(rx, buf, sizeof(buf), &port);
	CHECK_EQ_INT(n, 5);
	CHECK(n == 5 && memcmp(buf, "probe", 5) == 0);
	CHECK_EQ_INT(port, 40123);

	/* Without the filter the raw socket would hold a copy of that datagram. */
	n = recv(p.fd4, buf, sizeof(buf), MSG_DONTWAIT);
	CHECK(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));

	CHECK_EQ_INT(prober_send(&p, &(struct addr){ 0 }, buf, 1), -EAFNOSUPPORT);
	CHECK_EQ_INT(p.send_errors, 0);
	close(rx);
	prober_close(&p);
	CHECK_EQ_INT(p.fd4, -1);
	CHECK_EQ_INT(prober_send(&p, &dst, buf, 1), -EBADF);
}

static struct addr v6(const char *ip, uint16_t port)
{
	struct addr a;

	memset(&a, 0, sizeof(a));
	a.in6.sin6_family = AF_INET6;
	a.in6.sin6_port = htons(port);
	inet_pton(AF_INET6, ip, &a.in6.sin6_addr);
	return a;
}

/* IPv6: the header with a zero checksum field, which the kernel fills (IPV6_CHECKSUM). */
static void test_prober_builds_ipv6_header(void)
{
	struct addr src = v6("::", 51820), dst = v6("2001:db8::1", 51900);
	uint8_t out[64];
	ssize_t n = prober_build_udp(out, sizeof(out), &src, &dst, (const uint8_t *)"v6probe", 7);

	CHECK_EQ_INT(n, 15);
	CHECK_EQ_INT(out[0] << 8 | out[1], 51820);
	CHECK_EQ_INT(out[2] << 8 | out[3], 51900);
	CHECK_EQ_INT(out[4] << 8 | out[5], 15);
	CHECK_EQ_INT(out[6] << 8 | out[7], 0);
	CHECK(memcmp(out + 8, "v6probe", 7) == 0);
	/* Mixed families cannot make one pseudo-header. */
	src = v4("198.51.100.7", 51820);
	CHECK_EQ_INT(prober_build_udp(out, sizeof(out), &src, &dst, NULL, 0), -EAFNOSUPPORT);
}

/* As root with IPv6 on loopback: a probe to ::1 arrives from the chosen port; the kernel's
 * checksum is right (the receiver verifies it unless the device says it need not). */
static void test_prober_sends_ipv6_from_port(void)
{
	struct prober p;
	struct addr dst;
	uint8_t buf[64];
	uint16_t port = 0;
	int rx;
	ssize_t n;

	if (geteuid() != 0) {
		CHECK(prober_open(&p, 0, 0) < 0);
		return;
	}
	CHECK_EQ_INT(prober_open(&p, 40124, 0), 0);
	rx = loopback_receiver(AF_INET6, &dst);
	if (rx < 0 || p.fd6 < 0) {
		/* No IPv6 here: the send says so instead of pretending. */
		dst = v6("::1", 9);
		CHECK(prober_send(&p, &dst, (const uint8_t *)"x", 1) < 0);
		if (rx >= 0)
			close(rx);
		prober_close(&p);
		return;
	}
	CHECK_EQ_INT(prober_send(&p, &dst, (const uint8_t *)"probe6", 6), 0);
	n = recv_probe(rx, buf, sizeof(buf), &port);
	CHECK_EQ_INT(n, 6);
	CHECK(n == 6 && memcmp(buf, "probe6", 6) == 0);
	CHECK_EQ_INT(port, 40124);
	n = recv(p.fd6, buf, sizeof(buf), MSG_DONTWAIT);
	CHECK(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
	close(rx);
	prober_close(&p);
	CHECK_EQ_INT(p.fd6, -1);
}

int main(void)
{
	TAP_RUN(test_prober_builds_ipv6_header);
	TAP_RUN(test_prober_sends_ipv6_from_port);
	TAP_RUN(test_prober_builds_header_and_checksum);
	TAP_RUN(test_prober_checksum_odd_length);
	TAP_RUN(test_prober_checksum_many_payloads);
	TAP_RUN(test_prober_build_refuses_small_buffer_and_ipv6);
	TAP_RUN(test_prober_sends_from_port_over_loopback);
	return tap_done();
}

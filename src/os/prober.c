// SPDX-License-Identifier: MIT
/*
 * prober - UDP datagrams from the WireGuard listen port, sent through a raw
 * IPv4 or IPv6 socket.
 *
 * The kernel writes the IP header (no IP_HDRINCL) and picks the source
 * address by routing; we write the UDP header and payload. The UDP checksum
 * covers the IPv4 pseudo-header, so we need that source address before the
 * kernel picks it: a connect()ed throw-away UDP socket with the same fwmark
 * asks the routing table the same question (connect() on UDP sends nothing).
 * Over IPv6 the kernel computes the checksum after routing (IPV6_CHECKSUM), so
 * the source address never has to be known here.
 */
#include "wgpunch/prober.h"

#include <errno.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <netinet/ip6.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define UDP_HDR_LEN 8
#define UDP_CSUM_OFFSET 6

static uint64_t prober_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* One's complement sum of 16-bit big-endian words (RFC 1071); an odd last byte is padded. */
static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t len)
{
	while (len > 1) {
		sum += (uint32_t)(p[0] << 8 | p[1]);
		p += 2;
		len -= 2;
	}
	if (len)
		sum += (uint32_t)(p[0] << 8);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return sum;
}

ssize_t prober_build_udp(uint8_t *out, size_t cap, const struct addr *src, const struct addr *dst,
			 const uint8_t *payload, size_t len)
{
	uint8_t pseudo[12];
	size_t total = UDP_HDR_LEN + len;
	uint32_t sum;
	uint16_t csum;

	if (addr_family(dst) != AF_INET && addr_family(dst) != AF_INET6)
		return -EAFNOSUPPORT;
	if (addr_family(src) != addr_family(dst))
		return -EAFNOSUPPORT;
	if (total > 0xffff)
		return -EMSGSIZE;
	if (cap < total)
		return -ENOSPC;

	put_be16(out, addr_port(src));
	put_be16(out + 2, addr_port(dst));
	put_be16(out + 4, (uint16_t)total);
	put_be16(out + 6, 0);
	if (len)
		memmove(out + UDP_HDR_LEN, payload, len);
	if (addr_family(dst) == AF_INET6)
		return (ssize_t)total; /* the kernel fills the checksum (IPV6_CHECKSUM) */

	/* Pseudo-header (RFC 768): source, destination, zero, protocol, UDP length. */
	memcpy(pseudo, &src->in4.sin_addr.s_addr, 4);
	memcpy(pseudo + 4, &dst->in4.sin_addr.s_addr, 4);
	pseudo[8] = 0;
	pseudo[9] = IPPROTO_UDP;
	put_be16(pseudo + 10, (uint16_t)total);

	sum = csum_add(0, pseudo, sizeof(pseudo));
	sum = csum_add(sum, out, total);
	csum = (uint16_t)~sum;
	/* 0 means "no checksum" in UDP over IPv4; a computed 0 is sent as all ones. */
	if (csum == 0)
		csum = 0xffff;
	put_be16(out + 6, csum);
	return (ssize_t)total;
}

static int set_mark(int fd, uint32_t fwmark)
{
	if (setsockopt(fd, SOL_SOCKET, SO_MARK, &fwmark, sizeof(fwmark)) < 0)
		return -errno;
	return 0;
}

/* A send-only raw UDP socket of family: drop-all filter, smallest receive buffer, fwmark. */
static int open_raw(int family, uint32_t fwmark)
{
	/* A single "ret #0": accept nothing. The socket only sends. */
	struct sock_filter drop_all[] = { BPF_STMT(BPF_RET | BPF_K, 0) };
	struct sock_fprog prog = { .len = 1, .filter = drop_all };
	int rcvbuf = 1, off = UDP_CSUM_OFFSET;
	int fd, r;

	fd = socket(family, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) < 0)
		goto fail;
	/* The kernel rounds this up to its minimum; nothing should get this far anyway. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) < 0)
		goto fail;
	/* The UDP checksum covers the source address, which only the kernel knows for sure. */
	if (family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_CHECKSUM, &off, sizeof(off)) < 0)
		goto fail;
	if (fwmark) {
		r = set_mark(fd, fwmark);
		if (r < 0) {
			close(fd);
			return r;
		}
	}
	return fd;
fail:
	r = -errno;
	close(fd);
	return r;
}

int prober_open(struct prober *p, uint16_t src_port, uint32_t fwmark)
{
	int fd;

	memset(p, 0, sizeof(*p));
	p->fd4 = -1;
	p->fd6 = -1;
	fd = open_raw(AF_INET, fwmark);
	if (fd < 0)
		return fd;
	p->fd4 = fd;
	/* Optional: a kernel booted with ipv6.disable=1 has none, and IPv4 still works. */
	fd = open_raw(AF_INET6, fwmark);
	p->fd6 = fd < 0 ? -1 : fd;
	p->src_port = src_port;
	p->fwmark = fwmark;
	return 0;
}

int prober_update(struct prober *p, uint16_t src_port, uint32_t fwmark)
{
	int r;

	if (p->fd4 < 0)
		return -EBADF;
	if (fwmark != p->fwmark) {
		r = set_mark(p->fd4, fwmark);
		if (r == 0 && p->fd6 >= 0)
			r = set_mark(p->fd6, fwmark);
		if (r < 0)
			return r;
		p->fwmark = fwmark;
		/* Another mark may route elsewhere, from another address. */
		memset(p->src_cache, 0, sizeof(p->src_cache));
	}
	p->src_port = src_port;
	return 0;
}

void prober_close(struct prober *p)
{
	if (p->fd4 >= 0)
		close(p->fd4);
	if (p->fd6 >= 0)
		close(p->fd6);
	p->fd4 = -1;
	p->fd6 = -1;
}

/* The address the kernel would send from to reach dst with our fwmark. */
static int lookup_source(struct prober *p, const struct addr *dst, struct in_addr *src)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	uint32_t d = dst->in4.sin_addr.s_addr;
	uint64_t now = prober_now_ms();
	int fd, r = 0;
	unsigned int i;

	for (i = 0; i < PROBER_SRC_CACHE; i++) {
		struct prober_src *e = &p->src_cache[i];

		if (e->dst == d && d != 0 && now - e->at_ms < PROBER_SRC_CACHE_MS) {
			src->s_addr = e->src;
			return 0;
		}
	}

	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (p->fwmark)
		r = set_mark(fd, p->fwmark);
	sin = dst->in4;
	if (sin.sin_port == 0)
		sin.sin_port = htons(9); /* any port will do for a route lookup */
	if (r == 0 && connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
		r = -errno;
	if (r == 0 && getsockname(fd, (struct sockaddr *)&sin, &sl) < 0)
		r = -errno;
	close(fd);
	if (r < 0)
		return r;

	*src = sin.sin_addr;
	for (i = 0; i < PROBER_SRC_CACHE; i++)
		if (p->src_cache[i].dst == d)
			break;
	if (i == PROBER_SRC_CACHE) {
		i = p->src_next;
		p->src_next = (p->src_next + 1) % PROBER_SRC_CACHE;
	}
	p->src_cache[i] = (struct prober_src){ .dst = d, .src = sin.sin_addr.s_addr, .at_ms = now };
	return 0;
}

#define RAW_PAYLOAD_MAX 1500

/*
 * Builds the UDP packet from src to dst and sends it on fd: the tail both families share. The
 * destination's port is 0 (the UDP header carries the real one; a raw IPv6 socket takes the
 * protocol or 0 there, RFC 3542). Counts the send or the error.
 */
static int send_raw(struct prober *p, int fd, const struct addr *src, const struct addr *dst,
		    const uint8_t *payload, size_t len)
{
	uint8_t pkt[UDP_HDR_LEN + RAW_PAYLOAD_MAX];
	struct addr to = *dst;
	ssize_t n;
	int r;

	if (len > sizeof(pkt) - UDP_HDR_LEN) {
		r = -EMSGSIZE;
		goto fail;
	}
	n = prober_build_udp(pkt, sizeof(pkt), src, dst, payload, len);
	if (n < 0) {
		r = (int)n;
		goto fail;
	}
	addr_set_port(&to, 0);
	if (sendto(fd, pkt, (size_t)n, 0, &to.sa, addr_len(&to)) < 0) {
		r = -errno;
		goto fail;
	}
	p->sent++;
	return 0;
fail:
	p->send_errors++;
	return r;
}

int prober_send(struct prober *p, const struct addr *dst, const uint8_t *payload, size_t len)
{
	struct addr src = { 0 };
	int r;

	if (p->fd4 < 0)
		return -EBADF;
	if (addr_family(dst) == AF_INET6) {
		/* No source lookup: the kernel picks the source and fills the checksum. */
		if (p->fd6 < 0) {
			p->send_errors++;
			return -EAFNOSUPPORT;
		}
		src.in6.sin6_family = AF_INET6;
		src.in6.sin6_port = htons(p->src_port);
		return send_raw(p, p->fd6, &src, dst, payload, len);
	}
	if (addr_family(dst) != AF_INET)
		return -EAFNOSUPPORT;
	if (len > RAW_PAYLOAD_MAX)
		return -EMSGSIZE;
	src.in4.sin_family = AF_INET;
	r = lookup_source(p, dst, &src.in4.sin_addr);
	if (r < 0) {
		p->send_errors++;
		return r;
	}
	src.in4.sin_port = htons(p->src_port);
	return send_raw(p, p->fd4, &src, dst, payload, len);
}

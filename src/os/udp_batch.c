// SPDX-License-Identifier: MIT
/*
 * udp_batch - socket buffers and SO_RXQ_OVFL for the batched UDP paths (see the header).
 */
#include "wgpunch/udp_batch.h"

#include <errno.h>
#include <string.h>

static void set_one(int fd, int force_opt, int opt, int bytes, int *granted)
{
	int v = bytes;
	socklen_t l = sizeof(v);

	/* FORCE passes net.core.[rw]mem_max when we have CAP_NET_ADMIN; else take what we get */
	if (setsockopt(fd, SOL_SOCKET, force_opt, &v, sizeof(v)) < 0)
		(void)setsockopt(fd, SOL_SOCKET, opt, &v, sizeof(v));
	if (getsockopt(fd, SOL_SOCKET, opt, &v, &l) == 0 && granted)
		*granted = v;
}

void udp_sockbuf_set(int fd, int bytes, int *rcv, int *snd)
{
	set_one(fd, SO_RCVBUFFORCE, SO_RCVBUF, bytes, rcv);
	set_one(fd, SO_SNDBUFFORCE, SO_SNDBUF, bytes, snd);
}

int udp_rxq_ovfl_enable(int fd)
{
	int one = 1;

	return setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one)) < 0 ? -errno : 0;
}

uint64_t udp_rxq_ovfl(const struct msghdr *h, uint32_t *last)
{
	uint64_t add = 0;

	if (!h->msg_control || h->msg_controllen < sizeof(struct cmsghdr))
		return 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)h); c;
	     c = CMSG_NXTHDR((struct msghdr *)h, c)) {
		uint32_t v;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SO_RXQ_OVFL)
			continue;
		memcpy(&v, CMSG_DATA(c), sizeof(v));
		/* a cumulative count of the socket's drops as of this datagram's arrival; it wraps
		 * at 2^32, which unsigned subtraction handles for any step below that */
		if (v != *last && (uint32_t)(v - *last) < UINT32_C(1) << 31) {
			add += (uint32_t)(v - *last);
			*last = v;
		}
	}
	return add;
}

/* SPDX-License-Identifier: MIT */
/*
 * fuzz-wg-nl - arbitrary bytes as one datagram of netlink replies to a
 * WG_CMD_GET_DEVICE dump. Must not crash or read out of bounds; a dump the
 * walk accepted must be a consistent device (counts match arrays, valid
 * families). A failed one is only freed, as the I/O layer does.
 */
#include <stdlib.h>
#include <string.h>

#include "wgpunch/wg_nl.h"

#define FUZZ_SEQ 1
#define FUZZ_FAMILY 0x20

static int on_msg(const struct nlmsghdr *nlh, void *data)
{
	uint16_t family;

	if (nlh->nlmsg_type == 0x10) /* GENL_ID_CTRL */
		return wg_nl_parse_family(nlh, &family);
	return wg_nl_parse_device(nlh, data);
}

static void check_device(const struct wg_device *dev)
{
	if ((dev->n_peers == 0) != (dev->peers == NULL))
		abort();
	for (size_t i = 0; i < dev->n_peers; i++) {
		const struct wg_peer *p = &dev->peers[i];
		int fam = addr_family(&p->endpoint);

		if ((p->n_allowed_ips == 0) != (p->allowed_ips == NULL))
			abort();
		if (fam != AF_UNSPEC && fam != AF_INET && fam != AF_INET6)
			abort();
		/* Consecutive parts continue a peer, never repeat it. */
		if (i && !memcmp(p->public_key, dev->peers[i - 1].public_key, KEY_LEN))
			abort();
		for (size_t j = 0; j < p->n_allowed_ips; j++) {
			const struct wg_allowed_ip *a = &p->allowed_ips[j];

			if (!((a->family == AF_INET && a->cidr <= 32) ||
			      (a->family == AF_INET6 && a->cidr <= 128)))
				abort();
		}
	}
	if (memchr(dev->ifname, '\0', sizeof(dev->ifname)) == NULL)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wg_device *dev = calloc(1, sizeof(*dev));
	void *buf = malloc(size ? size : 1); /* aligned, as a receive buffer is */
	bool intr = false;

	if (!dev || !buf)
		abort();
	memcpy(buf, data, size);
	int r = wg_nl_walk(buf, size, FUZZ_SEQ, on_msg, dev, &intr);
	if (r > WG_NL_MORE)
		abort();
	/* A failed dump is discarded (nl_finish() frees it): only what the walk accepted must be
	 * a consistent device. A partial one may hold a peer cut before its key or IPs. */
	if (r >= 0)
		check_device(dev);
	wg_device_free(dev);
	free(buf);
	return 0;
}

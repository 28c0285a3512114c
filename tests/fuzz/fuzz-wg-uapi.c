/* SPDX-License-Identifier: MIT */
/*
 * fuzz-wg-uapi - arbitrary bytes as a UAPI get=1 reply. Must not crash;
 * whatever parsed must be a consistent device, and a device that parsed
 * fully must format into a set that fits WG_UAPI_SET_PEER_MAX per peer.
 */
#include <stdlib.h>
#include <string.h>

#include "wgpunch/wg_uapi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wg_device *dev = calloc(1, sizeof(*dev));
	int r;

	if (!dev)
		abort();
	r = wg_uapi_parse_get((const char *)data, size, dev);
	if (r > 0 || r < -4095)
		abort();
	if (wg_uapi_parse_errno((const char *)data, size) > 0)
		abort();
	if (wg_uapi_reply_len((const char *)data, size) > size)
		abort();
	if ((dev->n_peers == 0) != (dev->peers == NULL))
		abort();
	for (size_t i = 0; i < dev->n_peers; i++) {
		const struct wg_peer *p = &dev->peers[i];

		if ((p->n_allowed_ips == 0) != (p->allowed_ips == NULL))
			abort();
		for (size_t j = 0; j < p->n_allowed_ips; j++) {
			if (!((p->allowed_ips[j].family == AF_INET &&
			       p->allowed_ips[j].cidr <= 32) ||
			      (p->allowed_ips[j].family == AF_INET6 &&
			       p->allowed_ips[j].cidr <= 128)))
				abort();
		}
		if (p->last_handshake_ns < 0 || p->last_handshake_ns > 999999999)
			abort();
	}
	/* Every endpoint read back can be written again, within the per-peer bound. */
	if (r == 0 && dev->n_peers) {
		struct wg_peer_update u;
		char buf[WG_UAPI_SET_PEER_MAX + 16];

		for (size_t i = 0; i < dev->n_peers; i++) {
			memset(&u, 0, sizeof(u));
			memcpy(u.public_key, dev->peers[i].public_key, KEY_LEN);
			u.keepalive_s = dev->peers[i].keepalive_s;
			u.flags = WG_UPDATE_KEEPALIVE;
			if (addr_is_set(&dev->peers[i].endpoint)) {
				u.endpoint = dev->peers[i].endpoint;
				u.flags |= WG_UPDATE_ENDPOINT;
			}
			if (wg_uapi_format_set(&u, 1, true, buf, sizeof(buf)) <= 0)
				abort();
		}
	}
	wg_device_free(dev);
	return 0;
}

// SPDX-License-Identifier: MIT
/*
 * node_lan - the LAN addresses a node registers (see the header).
 */
#include "wgpunch/node_lan.h"

#include <ifaddrs.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>

#include "wgpunch/log.h"

bool node_lan_refresh(struct node_lan *nl, const char *wg_ifname, const struct wg_device *dev)
{
	struct addr lan[PROTO_MAX_LAN];
	struct ifaddrs *ifa, *i;
	uint8_t cnt = 0, j;
	bool changed;

	if (getifaddrs(&ifa) < 0)
		return false;
	for (i = ifa; i && cnt < PROTO_MAX_LAN; i = i->ifa_next) {
		struct addr a;

		if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !(i->ifa_flags & IFF_UP) ||
		    !strcmp(i->ifa_name, wg_ifname))
			continue;
		if (addr_from_sockaddr(&a, i->ifa_addr, sizeof(struct sockaddr_in)) < 0 ||
		    addr_is_loopback(&a) || addr_is_link_local(&a))
			continue;
		addr_set_port(&a, dev ? dev->listen_port : 0);
		for (j = 0; j < cnt; j++)
			if (addr_equal(&lan[j], &a))
				break;
		if (j == cnt)
			lan[cnt++] = a;
	}
	freeifaddrs(ifa);
	changed = cnt != nl->n;
	for (j = 0; !changed && j < cnt; j++)
		changed = !addr_equal(&lan[j], &nl->addr[j]);
	memcpy(nl->addr, lan, sizeof(lan[0]) * cnt);
	nl->n = cnt;
	if (changed && dev) {
		char list[PROTO_MAX_LAN * (ADDR_STRLEN + 1)] = "", a[ADDR_STRLEN];
		size_t used = 0;

		for (j = 0; j < cnt && used < sizeof(list); j++)
			used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s",
						 j ? " " : "", addr_format(&lan[j], a));
		if (nl->known)
			log_info("local addresses changed: %s, registering again",
				 cnt ? list : "none");
		else
			log_info("LAN addresses: %s", cnt ? list : "none");
	}
	nl->known = dev != NULL;
	return changed;
}

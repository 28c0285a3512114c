// SPDX-License-Identifier: MIT
/*
 * node_lan - the addresses a node registers (see the header).
 */
#include "wgpunch/node_lan.h"

#include <errno.h>
#include <ifaddrs.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "wgpunch/log.h"

/* Candidates looked at per refresh (after the cheap filters), and IPv6 addresses whose flags
 * keep them out (temporary, deprecated...) remembered from /proc/net/if_inet6: beyond that
 * many, the rest are taken with flags 0. */
#define NODE_LAN_INET6_MAX 64

enum node_lan_class node_lan_classify(const struct addr *a, uint32_t flags6)
{
	const struct in6_addr *ip;

	if (addr_is_loopback(a) || addr_is_link_local(a))
		return NODE_LAN_SKIP;
	if (addr_family(a) == AF_INET)
		return a->in4.sin_addr.s_addr ? NODE_LAN_V4 : NODE_LAN_SKIP;
	if (addr_family(a) != AF_INET6 || (flags6 & NODE_LAN_F_SKIP))
		return NODE_LAN_SKIP;
	ip = &a->in6.sin6_addr;
	if (IN6_IS_ADDR_V4MAPPED(ip) || IN6_IS_ADDR_MULTICAST(ip))
		return NODE_LAN_SKIP;
	if (addr_is_ula(a))
		return NODE_LAN_ULA;
	return addr_is_global_ipv6(a) ? NODE_LAN_GLOBAL6 : NODE_LAN_SKIP;
}

static bool seen(const struct addr *list, size_t n, const struct addr *a)
{
	for (size_t i = 0; i < n; i++)
		if (addr_equal(&list[i], a))
			return true;
	return false;
}

uint8_t node_lan_pick(const struct node_lan_entry *e, size_t n, const char *wg_ifname,
		      uint16_t port, struct addr out[PROTO_MAX_LAN])
{
	struct addr by[3][PROTO_MAX_LAN]; /* V4, ULA, GLOBAL6 */
	size_t cnt[3] = { 0 }, v6, v4_max, k = 0;

	for (size_t i = 0; i < n; i++) {
		enum node_lan_class c = e[i].up && strcmp(e[i].ifname, wg_ifname)
						? node_lan_classify(&e[i].addr, e[i].flags6)
						: NODE_LAN_SKIP;
		struct addr a = e[i].addr;
		size_t g = (size_t)c - 1;

		if (c == NODE_LAN_SKIP || cnt[g] == PROTO_MAX_LAN)
			continue;
		if (addr_family(&a) == AF_INET6) {
			a.in6.sin6_flowinfo = 0; /* neither travels (PROTOCOL.md 6.1) */
			a.in6.sin6_scope_id = 0;
		}
		addr_set_port(&a, port);
		if (!seen(by[g], cnt[g], &a))
			by[g][cnt[g]++] = a;
	}
	/* A host with many IPv4 addresses still gets its IPv6 ones through. */
	v6 = cnt[1] + cnt[2];
	v4_max = PROTO_MAX_LAN - (v6 < NODE_LAN_V6_ROOM ? v6 : NODE_LAN_V6_ROOM);
	for (size_t g = 0; g < 3; g++)
		for (size_t i = 0; i < cnt[g] && k < PROTO_MAX_LAN && (g || i < v4_max); i++)
			out[k++] = by[g][i];
	return (uint8_t)k;
}

int node_lan_parse_inet6(const char *line, struct in6_addr *a, uint32_t *flags,
			 char ifname[IF_NAMESIZE])
{
	unsigned int idx, plen, scope, fl;
	char name[IF_NAMESIZE + 1];
	int used = 0;

	size_t got = 0;
	const char *end = NULL;

	/* Stops at the first character that is not hex (a short line's NUL included). */
	if (sodium_hex2bin(a->s6_addr, 16, line, 32, NULL, &got, &end) != 0 || got != 16 ||
	    end != line + 32)
		return -EINVAL;
	line = end;
	if (*line != ' ' && *line != '\t')
		return -EINVAL;
	if (sscanf(line, "%x %x %x %x %16s%n", &idx, &plen, &scope, &fl, name, &used) != 5 ||
	    strlen(name) >= IF_NAMESIZE)
		return -EINVAL;
	*flags = fl;
	memcpy(ifname, name, strlen(name) + 1);
	return 0;
}

struct inet6_flags {
	struct in6_addr a;
	uint32_t flags;
	char ifname[IF_NAMESIZE];
};

static size_t read_inet6_flags(struct inet6_flags *t, size_t cap)
{
	FILE *f = fopen("/proc/net/if_inet6", "re");
	char line[256];
	size_t n = 0;

	if (!f)
		return 0;
	/* Only the addresses a flag keeps out matter: one not found counts as flags 0. */
	while (n < cap && fgets(line, sizeof(line), f))
		if (node_lan_parse_inet6(line, &t[n].a, &t[n].flags, t[n].ifname) == 0 &&
		    (t[n].flags & NODE_LAN_F_SKIP) && !IN6_IS_ADDR_LINKLOCAL(&t[n].a))
			n++;
	fclose(f);
	return n;
}

static uint32_t flags_of(const struct inet6_flags *t, size_t n, const char *ifname,
			 const struct in6_addr *a)
{
	for (size_t i = 0; i < n; i++)
		if (!memcmp(&t[i].a, a, sizeof(*a)) && !strcmp(t[i].ifname, ifname))
			return t[i].flags;
	return 0;
}

bool node_lan_refresh(struct node_lan *nl, const char *wg_ifname, const struct wg_device *dev)
{
	struct inet6_flags fl[NODE_LAN_INET6_MAX];
	struct node_lan_entry e[NODE_LAN_INET6_MAX];
	struct addr lan[PROTO_MAX_LAN];
	struct ifaddrs *ifa, *i;
	size_t n = 0, nfl;
	uint8_t cnt, j;
	bool changed;

	if (getifaddrs(&ifa) < 0)
		return false;
	nfl = read_inet6_flags(fl, NODE_LAN_INET6_MAX);
	for (i = ifa; i && n < NODE_LAN_INET6_MAX; i = i->ifa_next) {
		socklen_t len;

		if (!i->ifa_addr)
			continue;
		if (i->ifa_addr->sa_family == AF_INET)
			len = sizeof(struct sockaddr_in);
		else if (i->ifa_addr->sa_family == AF_INET6)
			len = sizeof(struct sockaddr_in6);
		else
			continue;
		if (!(i->ifa_flags & IFF_UP) || !strcmp(i->ifa_name, wg_ifname) ||
		    addr_from_sockaddr(&e[n].addr, i->ifa_addr, len) < 0)
			continue;
		e[n].ifname = i->ifa_name;
		e[n].up = true;
		e[n].flags6 = len == sizeof(struct sockaddr_in6)
				      ? flags_of(fl, nfl, i->ifa_name, &e[n].addr.in6.sin6_addr)
				      : 0;
		/* Link-local and the like would crowd out the candidates on a host with many
		 * interfaces: only those that can be one take a place. */
		if (node_lan_classify(&e[n].addr, e[n].flags6) != NODE_LAN_SKIP)
			n++;
	}
	cnt = node_lan_pick(e, n, wg_ifname, dev ? dev->listen_port : 0, lan);
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

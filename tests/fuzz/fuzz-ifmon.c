/* SPDX-License-Identifier: MIT */
/*
 * fuzz-ifmon - arbitrary bytes as one rtnetlink datagram (address and link
 * events). Must not crash, read past the datagram or loop: the walk takes at
 * most one step per 16 bytes, and every event it reports is well formed.
 */
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "wgpunch/ifmon.h"

struct seen {
	size_t events;
};

static void on_event(const struct ifmon_event *ev, void *arg)
{
	struct seen *s = arg;
	int fam = addr_family(&ev->addr);

	s->events++;
	FUZZ_ASSERT(ev->kind >= IFMON_ADDR_NEW && ev->kind <= IFMON_LINK_DEL);
	FUZZ_ASSERT(fam == AF_UNSPEC || fam == AF_INET || fam == AF_INET6);
	FUZZ_ASSERT(addr_port(&ev->addr) == 0);
	FUZZ_ASSERT(memchr(ev->ifname, '\0', sizeof(ev->ifname)) != NULL);
	if (ev->kind == IFMON_LINK_NEW || ev->kind == IFMON_LINK_DEL)
		FUZZ_ASSERT(fam == AF_UNSPEC);
	else
		FUZZ_ASSERT(ev->ifname[0] == '\0' && ev->link_flags == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	void *buf = malloc(size ? size : 1); /* aligned, as the receive buffer is */
	struct ifmon_event ev;
	struct seen s = { 0 };
	size_t n = 99;
	int r;

	FUZZ_ASSERT(buf);
	memcpy(buf, data, size);
	r = ifmon_parse_datagram(buf, size, on_event, &s, &n);
	FUZZ_ASSERT(r == 0 || r == -EBADMSG);
	FUZZ_ASSERT(n <= size / 16 && s.events <= n);
	/* One message on its own: a step within the datagram, or refused with ev cleared. */
	r = ifmon_parse_msg(buf, size, &ev);
	if (r < 0) {
		FUZZ_ASSERT(r == -EBADMSG && ev.kind == IFMON_NONE);
		FUZZ_ASSERT(!addr_is_set(&ev.addr));
	} else {
		FUZZ_ASSERT(r >= 16 && (size_t)r <= size);
	}
	free(buf);
	return 0;
}

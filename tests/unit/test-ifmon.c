// SPDX-License-Identifier: MIT
/*
 * ifmon: rtnetlink messages built by hand (address and link events, unknown
 * and truncated attributes), the debounce on a fake clock, and the socket
 * opening and closing on a real loop.
 */
#include "wgpunch/ifmon.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../tap.h"

/* Room for a few messages, aligned for nlmsghdr. */
static union {
	uint8_t b[1024];
	struct nlmsghdr h;
} buf;

static struct nlmsghdr *addr_msg(void *at, uint16_t type, uint8_t family, uint32_t ifindex)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(at);
	struct ifaddrmsg *ifa;

	nlh->nlmsg_type = type;
	ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = family;
	ifa->ifa_prefixlen = family == AF_INET ? 24 : 64;
	ifa->ifa_index = ifindex;
	return nlh;
}

static struct nlmsghdr *link_msg(void *at, uint16_t type, uint32_t ifindex, uint32_t flags)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(at);
	struct ifinfomsg *ifi;

	nlh->nlmsg_type = type;
	ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = (int)ifindex;
	ifi->ifi_flags = flags;
	return nlh;
}

static void put_v4(struct nlmsghdr *nlh, uint16_t type, const char *ip)
{
	struct in_addr a;

	inet_pton(AF_INET, ip, &a);
	mnl_attr_put(nlh, type, sizeof(a), &a);
}

static bool is_ip(const struct addr *a, const char *ip)
{
	char buf4[INET6_ADDRSTRLEN] = "";

	if (addr_family(a) == AF_INET)
		inet_ntop(AF_INET, &a->in4.sin_addr, buf4, sizeof(buf4));
	else if (addr_family(a) == AF_INET6)
		inet_ntop(AF_INET6, &a->in6.sin6_addr, buf4, sizeof(buf4));
	return strcmp(buf4, ip) == 0 && addr_port(a) == 0;
}

static void test_ifmon_parses_new_and_deleted_ipv4_address(void)
{
	struct nlmsghdr *nlh;
	struct ifmon_event ev;

	memset(&buf, 0, sizeof(buf));
	nlh = addr_msg(buf.b, RTM_NEWADDR, AF_INET, 3);
	put_v4(nlh, IFA_ADDRESS, "198.18.11.1");
	mnl_attr_put_strz(nlh, IFA_LABEL, "eth0");
	CHECK_EQ_INT(ifmon_parse_msg(buf.b, sizeof(buf.b), &ev), (int)nlh->nlmsg_len);
	CHECK_EQ_INT(ev.kind, IFMON_ADDR_NEW);
	CHECK_EQ_INT(ev.ifindex, 3);
	CHECK_EQ_INT(ev.prefixlen, 24);
	CHECK(is_ip(&ev.addr, "198.18.11.1"));

	memset(&buf, 0, sizeof(buf));
	nlh = addr_msg(buf.b, RTM_DELADDR, AF_INET, 4);
	put_v4(nlh, IFA_ADDRESS, "203.0.113.9");
	CHECK_EQ_INT(ifmon_parse_msg(buf.b, nlh->nlmsg_len, &ev), (int)nlh->nlmsg_len);
	CHECK_EQ_INT(ev.kind, IFMON_ADDR_DEL);
	CHECK_EQ_INT(ev.ifindex, 4);
	CHECK(is_ip(&ev.addr, "203.0.113.9"));
}

static void test_ifmon_prefers_local_over_peer_address(void)
{
	struct nlmsghdr *nlh;
	struct ifmon_event ev;

	/* Point-to-point: IFA_ADDRESS is the far end, IFA_LOCAL ours, in either order. */
	memset(&buf, 0, sizeof(buf));
	nlh = addr_msg(buf.b, RTM_NEWADDR, AF_INET, 5);
	put_v4(nlh, IFA_LOCAL, "198.18.0.1");
	put_v4(nlh, IFA_ADDRESS, "198.18.0.2");
	CHECK(ifmon_parse_msg(buf.b, nlh->nlmsg_len, &ev) > 0);
	CHECK(is_ip(&ev.addr, "198.18.0.1"));

	memset(&buf, 0, sizeof(buf));
	nlh = addr_msg(buf.b, RTM_NEWADDR, AF_INET, 5);
	put_v4(nlh, IFA_ADDRESS, "198.18.0.2");
	put_v4(nlh, IFA_LOCAL, "198.18.0.1");
	CHECK(ifmon_parse_msg(buf.b, nlh->nlmsg_len, &ev) > 0);
	CHECK(is_ip(&ev.addr, "198.18.0.1"));
}

static void test_ifmon_parses_ipv6_address(void)
{
	struct nlmsghdr *nlh;
	struct ifmon_event ev;
	struct in6_addr a6;

	memset(&buf, 0, sizeof(buf));
	nlh = addr_msg(buf.b, RTM_NEWADDR, AF_INET6, 7);
	inet_pton(AF_INET6, "2001:db8::5", &a6);
	mnl_attr_put(nlh, IFA_ADDRESS, sizeof(a6), &a6);
	CHECK(ifmon_parse_msg(buf.b, nlh->nlmsg_len, &ev) > 0);
	CHECK_EQ_INT(ev.kind, IFMON_ADDR_NEW);
	CHECK_EQ_INT(addr_family(&ev.addr), AF_INET6);
	CHECK(is_ip(&ev.addr, "2001:db8::5"));

	/* A 4-byte address in an IPv6 message is malformed. */
	memset(&buf, 0, sizeof(buf));
	nlh = addr_msg(buf.b, RTM_NEWADDR, AF_INET6, 7);
	put_v4(nlh, IFA_ADDRESS, "198.18.0.1");
	CHECK_EQ_INT(ifmon_parse_msg(buf.b, nlh->nlmsg_len, &ev), -EBADMSG);
	CHECK_EQ_INT(ev.kind, IFMON_NONE);
}

static void test_ifmon_skips_unknown_attributes(void)
{
	struct nlmsghdr *nlh;
	struct ifmon_event ev;
	uint8_t blob[13] = { 1, 2, 3 };

	memset(&buf, 0, sizeof(buf));
	nlh = addr_msg(buf.b, RTM_NEWADDR, AF_INET, 2);
	mnl_attr_put(nlh, 200, sizeof(blob), blob); /* a type from a future kernel, odd length */
	mnl_attr_put_u32(nlh, IFA_FLAGS, 0x80);
	put_v4(nlh, IFA_ADDRESS, "198.18.1.1");
	mnl_attr_put(nlh, 201, 0, NULL);
	CHECK_EQ_INT(ifmon_parse_msg(buf.b, nlh->nlmsg_len, &ev), (int)nlh->nlmsg_len);
	CHECK(is_ip(&ev.addr, "198.18.1.1"));

	memset(&buf, 0, sizeof(buf));
	nlh = link_msg(buf.b, RTM_NEWLINK, 9, IFF_UP | IFF_RUNNING);
	mnl_attr_put_u32(nlh, IFLA_MTU, 1420);
	mnl_attr_put_strz(nlh, IFLA_IFNAME, "wan");
	mnl_attr_put(nlh, 250, sizeof(blob), blob);
	CHECK_EQ_INT(ifmon_parse_msg(buf.b, nlh->nlmsg_len, &ev), (int)nlh->nlmsg_len);
	CHECK_EQ_INT(ev.kind, IFMON_LINK_NEW);
	CHECK_EQ_INT(ev.ifindex, 9);
	CHECK(ev.link_flags & IFF_UP);
	CHECK(strcmp(ev.ifname, "wan") == 0);
}

static void test_ifmon_parses_link_removed(void)
{
	struct nlmsghdr *nlh;
	struct ifmon_event ev;

	memset(&buf, 0, sizeof(buf));
	nlh = link_msg(buf.b, RTM_DELLINK, 12, 0);
	CHECK_EQ_INT(ifmon_parse_msg(buf.b, nlh->nlmsg_len, &ev), (int)nlh->nlmsg_len);
	CHECK_EQ_INT(ev.kind, IFMON_LINK_DEL);
	CHECK_EQ_INT(ev.ifindex, 12);
	CHECK(ev.ifname[0] == '\0');
}

static void test_ifmon_refuses_truncated_messages(void)
{
	struct nlmsghdr *nlh;
	struct nlattr *a;
	struct ifmon_event ev;
	uint32_t full;

	memset(&buf, 0, sizeof(buf));
	nlh = addr_msg(buf.b, RTM_NEWADDR, AF_INET, 3);
	put_v4(nlh, IFA_ADDRESS, "198.18.11.1");
	full = nlh->nlmsg_len;

	/* The datagram ends before the message does. */
	CHECK_EQ_INT(ifmon_parse_msg(buf.b, full - 1, &ev), -EBADMSG);
	CHECK_EQ_INT(ifmon_parse_msg(buf.b, 8, &ev), -EBADMSG);
	CHECK_EQ_INT(ifmon_parse_msg(buf.b, 0, &ev), -EBADMSG);

	/* The message ends inside the attribute (its nla_len says more than is left). */
	nlh->nlmsg_len = full - 2;
	CHECK_EQ_INT(ifmon_parse_msg(buf.b, sizeof(buf.b), &ev), -EBADMSG);
	/* ... or inside an attribute header. */
	nlh->nlmsg_len = full - 6;
	CHECK_EQ_INT(ifmon_parse_msg(buf.b, sizeof(buf.b), &ev), -EBADMSG);

	/* An attribute shorter than its own header. */
	nlh->nlmsg_len = full;
	a = (struct nlattr *)(void *)((uint8_t *)mnl_nlmsg_get_payload(nlh) +
				      MNL_ALIGN(sizeof(struct ifaddrmsg)));
	a->nla_len = 2;
	CHECK_EQ_INT(ifmon_parse_msg(buf.b, sizeof(buf.b), &ev), -EBADMSG);

	/* The fixed part itself cut short. */
	memset(&buf, 0, sizeof(buf));
	nlh = link_msg(buf.b, RTM_NEWLINK, 1, 0);
	nlh->nlmsg_len = MNL_NLMSG_HDRLEN + 8;
	CHECK_EQ_INT(ifmon_parse_msg(buf.b, sizeof(buf.b), &ev), -EBADMSG);

	/* A name without its NUL. */
	memset(&buf, 0, sizeof(buf));
	nlh = link_msg(buf.b, RTM_NEWLINK, 1, 0);
	mnl_attr_put(nlh, IFLA_IFNAME, 4, "eth0");
	CHECK_EQ_INT(ifmon_parse_msg(buf.b, nlh->nlmsg_len, &ev), -EBADMSG);
}

static void test_ifmon_walks_a_datagram_and_ignores_other_types(void)
{
	struct nlmsghdr *nlh;
	struct ifmon_event ev;
	size_t off = 0, len;
	int r, kinds[4] = { 0 }, n = 0;

	memset(&buf, 0, sizeof(buf));
	nlh = addr_msg(buf.b, RTM_NEWADDR, AF_INET, 3);
	put_v4(nlh, IFA_ADDRESS, "198.18.11.1");
	off += MNL_ALIGN(nlh->nlmsg_len);
	nlh = mnl_nlmsg_put_header(buf.b + off);
	nlh->nlmsg_type = RTM_NEWROUTE; /* not watched */
	mnl_nlmsg_put_extra_header(nlh, sizeof(struct rtmsg));
	off += MNL_ALIGN(nlh->nlmsg_len);
	nlh = link_msg(buf.b + off, RTM_NEWLINK, 3, IFF_UP);
	off += MNL_ALIGN(nlh->nlmsg_len);
	len = off;

	for (off = 0; off < len && n < 4; off += (size_t)r) {
		r = ifmon_parse_msg(buf.b + off, len - off, &ev);
		CHECK(r > 0);
		if (r <= 0)
			break;
		kinds[n++] = (int)ev.kind;
	}
	CHECK_EQ_INT(n, 3);
	CHECK_EQ_INT(kinds[0], IFMON_ADDR_NEW);
	CHECK_EQ_INT(kinds[1], IFMON_NONE);
	CHECK_EQ_INT(kinds[2], IFMON_LINK_NEW);
}

/*
 * Finding 8 of issue 7: mnl_nlmsg_ok() compared nlmsg_len as an int, so a length of 2^31 or
 * more passed. An unknown type of length 2^32 - 1 then aligned to a step of 0 (the walk never
 * ended), and an address message read attributes past the datagram.
 */
static void test_ifmon_refuses_lengths_of_2_31_and_more(void)
{
	static const uint32_t huge[] = { 0x80000000u, 0xfffffffcu, 0xfffffffdu, 0xffffffffu };
	struct nlmsghdr *nlh;
	struct ifmon_event ev;
	uint32_t full;

	for (size_t i = 0; i < sizeof(huge) / sizeof(huge[0]); i++) {
		memset(&buf, 0, sizeof(buf));
		nlh = mnl_nlmsg_put_header(buf.b);
		nlh->nlmsg_type = RTM_NEWROUTE; /* not watched: only the framing counts */
		mnl_nlmsg_put_extra_header(nlh, sizeof(struct rtmsg));
		nlh->nlmsg_len = huge[i];
		CHECK_EQ_INT(ifmon_parse_msg(buf.b, 64, &ev), -EBADMSG);
		CHECK_EQ_INT(ev.kind, IFMON_NONE);
	}

	/* An address message whose datagram ends after its first attribute, at the end of a
	 * page followed by an inaccessible one: reading past the datagram faults. */
	long page = sysconf(_SC_PAGESIZE);
	uint8_t *map = mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	CHECK(map != MAP_FAILED);
	if (map == MAP_FAILED)
		return;
	CHECK_EQ_INT(mprotect(map + page, (size_t)page, PROT_NONE), 0);
	memset(&buf, 0, sizeof(buf));
	nlh = addr_msg(buf.b, RTM_NEWADDR, AF_INET, 3);
	put_v4(nlh, IFA_ADDRESS, "198.18.11.1");
	full = nlh->nlmsg_len;
	nlh->nlmsg_len = 0x80000000u;
	memcpy(map + page - full, buf.b, full);
	CHECK_EQ_INT(ifmon_parse_msg(map + page - full, full, &ev), -EBADMSG);
	CHECK(!addr_is_set(&ev.addr));
	munmap(map, (size_t)page * 2);
}

static void count_event(const struct ifmon_event *ev, void *arg)
{
	int *kinds = arg;

	if (kinds[0] < 3)
		kinds[1 + kinds[0]] = (int)ev->kind;
	kinds[0]++;
}

/* The shell's walk over a datagram: bounded, and it stops at the first unframed message. */
static void test_ifmon_datagram_walk_stops_at_a_bad_message(void)
{
	struct nlmsghdr *nlh;
	size_t off = 0, n = 99;
	int kinds[4] = { 0 };

	memset(&buf, 0, sizeof(buf));
	nlh = addr_msg(buf.b, RTM_NEWADDR, AF_INET, 3);
	put_v4(nlh, IFA_ADDRESS, "198.18.11.1");
	off += MNL_ALIGN(nlh->nlmsg_len);
	nlh = mnl_nlmsg_put_header(buf.b + off);
	nlh->nlmsg_type = RTM_NEWROUTE;
	mnl_nlmsg_put_extra_header(nlh, sizeof(struct rtmsg));
	off += MNL_ALIGN(nlh->nlmsg_len);
	nlh = link_msg(buf.b + off, RTM_DELLINK, 3, 0);
	off += MNL_ALIGN(nlh->nlmsg_len);
	CHECK_EQ_INT(ifmon_parse_datagram(buf.b, off, count_event, kinds, &n), 0);
	CHECK_EQ_INT(n, 3);
	CHECK_EQ_INT(kinds[0], 2); /* the route is not an event */
	CHECK_EQ_INT(kinds[1], IFMON_ADDR_NEW);
	CHECK_EQ_INT(kinds[2], IFMON_LINK_DEL);

	/* An unknown type of length 2^32 - 1 after the first message: the old walk spun here. */
	memset(kinds, 0, sizeof(kinds));
	nlh = mnl_nlmsg_put_header(buf.b +
				   MNL_ALIGN(((struct nlmsghdr *)(void *)buf.b)->nlmsg_len));
	nlh->nlmsg_type = 0x7fff;
	nlh->nlmsg_len = 0xffffffffu;
	CHECK_EQ_INT(ifmon_parse_datagram(buf.b, off, count_event, kinds, &n), -EBADMSG);
	CHECK_EQ_INT(n, 1);
	CHECK_EQ_INT(kinds[0], 1);
	CHECK_EQ_INT(ifmon_parse_datagram(buf.b, 0, count_event, kinds, &n), 0);
	CHECK_EQ_INT(n, 0);
}

static void test_ifmon_debounce_waits_for_quiet_but_not_forever(void)
{
	struct ifmon_debounce d;
	uint64_t t = 1000, due;

	ifmon_debounce_init(&d, 150);
	CHECK(!ifmon_debounce_fire(&d, t)); /* nothing pending */

	/* One message: due 150 ms later. */
	CHECK_EQ_INT(ifmon_debounce_event(&d, t), t + 150);
	CHECK(!ifmon_debounce_fire(&d, t + 149));
	CHECK(ifmon_debounce_fire(&d, t + 150));
	CHECK(!ifmon_debounce_fire(&d, t + 151)); /* once per burst */

	/* A burst: each message moves the due time ... */
	t = 5000;
	CHECK_EQ_INT(ifmon_debounce_event(&d, t), t + 150);
	CHECK_EQ_INT(ifmon_debounce_event(&d, t + 100), t + 250);
	CHECK(!ifmon_debounce_fire(&d, t + 150)); /* the old due time: not yet */
	CHECK(ifmon_debounce_fire(&d, t + 250));

	/* ... but a steady stream fires at the latest 4 x 150 ms after its first message. */
	t = 9000;
	for (due = 0; due < 20; due++)
		ifmon_debounce_event(&d, t + due * 100);
	CHECK_EQ_INT(d.due_ms, t + 150 * IFMON_DEBOUNCE_MAX_FACTOR);
	CHECK(ifmon_debounce_fire(&d, t + 600));
	/* The next burst starts a new window. */
	CHECK_EQ_INT(ifmon_debounce_event(&d, t + 2000), t + 2150);
}

static int cb_calls;

static void on_change(void *arg)
{
	cb_calls++;
}

static void on_closed(void *arg)
{
	*(int *)arg += 1;
}

/* Opening needs only an rtnetlink socket (no privilege); closing gives everything back. */
static void test_ifmon_open_and_close_leave_the_loop_empty(void)
{
	uv_loop_t loop;
	struct ifmon *m = NULL;
	int closed = 0, r;

	CHECK_EQ_INT(uv_loop_init(&loop), 0);
	r = ifmon_open(&loop, IFMON_DEBOUNCE_MS, on_change, on_closed, &closed, &m);
	CHECK_EQ_INT(r, 0);
	if (r == 0) {
		uv_run(&loop, UV_RUN_NOWAIT);
		CHECK_EQ_INT(ifmon_malformed(m), 0);
		ifmon_close(m);
		ifmon_close(NULL);
		uv_run(&loop, UV_RUN_DEFAULT);
	}
	CHECK_EQ_INT(closed, r == 0 ? 1 : 0);
	CHECK_EQ_INT(cb_calls, 0);
	CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

int main(void)
{
	TAP_RUN(test_ifmon_parses_new_and_deleted_ipv4_address);
	TAP_RUN(test_ifmon_prefers_local_over_peer_address);
	TAP_RUN(test_ifmon_parses_ipv6_address);
	TAP_RUN(test_ifmon_skips_unknown_attributes);
	TAP_RUN(test_ifmon_parses_link_removed);
	TAP_RUN(test_ifmon_refuses_truncated_messages);
	TAP_RUN(test_ifmon_walks_a_datagram_and_ignores_other_types);
	TAP_RUN(test_ifmon_refuses_lengths_of_2_31_and_more);
	TAP_RUN(test_ifmon_datagram_walk_stops_at_a_bad_message);
	TAP_RUN(test_ifmon_debounce_waits_for_quiet_but_not_forever);
	TAP_RUN(test_ifmon_open_and_close_leave_the_loop_empty);
	return tap_done();
}

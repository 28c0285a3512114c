/* SPDX-License-Identifier: MIT */
/*
 * The genetlink messages we build, checked attribute by attribute against
 * linux/wireguard.h, and hand-built kernel replies (multi-part dumps,
 * unknown attributes, truncation) through the parser; then the socket
 * layer's abort, which needs no kernel WireGuard.
 */
#include "wgpunch/wg_nl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/wireguard.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tap.h"

#define FAMILY 0x1234

static _Alignas(4) uint8_t buf[65536];

static void fill_key(uint8_t key[KEY_LEN], uint8_t seed)
{
	for (int i = 0; i < KEY_LEN; i++)
		key[i] = (uint8_t)(seed + i);
}

static const struct genlmsghdr *genl(const struct nlmsghdr *nlh)
{
	return mnl_nlmsg_get_payload(nlh);
}

/* The first top-level attribute of type t in a genl message, or NULL. */
static const struct nlattr *find_attr(const struct nlmsghdr *nlh, uint16_t t)
{
	const struct nlattr *a;

	mnl_attr_for_each (a, nlh, GENL_HDRLEN) {
		if (mnl_attr_get_type(a) == t)
			return a;
	}
	return NULL;
}

static void test_wg_nl_build_get_family(void)
{
	int len = wg_nl_build_get_family(buf, sizeof(buf), 7);
	const struct nlmsghdr *nlh = (const void *)buf;
	const struct nlattr *a;

	CHECK(len > 0);
	CHECK_EQ_INT(nlh->nlmsg_len, len);
	CHECK_EQ_INT(nlh->nlmsg_type, GENL_ID_CTRL);
	CHECK_EQ_INT(nlh->nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK);
	CHECK_EQ_INT(nlh->nlmsg_seq, 7);
	CHECK_EQ_INT(genl(nlh)->cmd, CTRL_CMD_GETFAMILY);
	a = find_attr(nlh, CTRL_ATTR_FAMILY_NAME);
	CHECK(a && !strcmp(mnl_attr_get_str(a), WG_GENL_NAME));
	CHECK(a && mnl_attr_get_payload_len(a) == sizeof(WG_GENL_NAME));
	CHECK_EQ_INT(wg_nl_build_get_family(buf, 20, 7), -ENOSPC);
}

static void test_wg_nl_build_get_is_a_dump(void)
{
	int len = wg_nl_build_get(buf, sizeof(buf), FAMILY, 9, "wg0");
	const struct nlmsghdr *nlh = (const void *)buf;
	const struct nlattr *a;

	CHECK(len > 0);
	CHECK_EQ_INT(nlh->nlmsg_len, len);
	CHECK_EQ_INT(nlh->nlmsg_type, FAMILY);
	CHECK_EQ_INT(nlh->nlmsg_flags, NLM_F_REQUEST | NLM_F_DUMP);
	CHECK_EQ_INT(nlh->nlmsg_seq, 9);
	CHECK_EQ_INT(genl(nlh)->cmd, WG_CMD_GET_DEVICE);
	CHECK_EQ_INT(genl(nlh)->version, WG_GENL_VERSION);
	a = find_attr(nlh, WGDEVICE_A_IFNAME);
	CHECK(a && !strcmp(mnl_attr_get_str(a), "wg0"));
	/* header 16 + genl 4 + ifname attr 4 + "wg0\0" */
	CHECK_EQ_INT(len, 16 + 4 + 8);
}

static void make_updates(struct wg_peer_update *u, size_t n)
{
	memset(u, 0, n * sizeof(*u));
	for (size_t i = 0; i < n; i++) {
		fill_key(u[i].public_key, (uint8_t)i);
		u[i].public_key[31] = (uint8_t)(i >> 8);
		u[i].flags = WG_UPDATE_ENDPOINT | WG_UPDATE_KEEPALIVE;
		u[i].endpoint.in4.sin_family = AF_INET;
		u[i].endpoint.in4.sin_port = htons((uint16_t)(20000 + i));
		inet_pton(AF_INET, "198.18.0.1", &u[i].endpoint.in4.sin_addr);
		u[i].keepalive_s = 25;
	}
}

static void test_wg_nl_build_set_attributes(void)
{
	struct wg_peer_update u[2];
	const struct nlmsghdr *nlh = (const void *)buf;
	const struct nlattr *peers, *peer, *a;
	size_t done = 0, n_peers = 0;
	int len;

	make_updates(u, 2);
	u[1].flags = WG_UPDATE_ENDPOINT;
	memset(&u[1].endpoint, 0, sizeof(u[1].endpoint));
	u[1].endpoint.in6.sin6_family = AF_INET6;
	u[1].endpoint.in6.sin6_port = htons(51820);
	inet_pton(AF_INET6, "2001:db8::7", &u[1].endpoint.in6.sin6_addr);

	len = wg_nl_build_set(buf, sizeof(buf), FAMILY, 3, "wg1", u, 2, &done);
	CHECK(len > 0);
	CHECK_EQ_INT(done, 2);
	CHECK_EQ_INT(nlh->nlmsg_len, len);
	CHECK_EQ_INT(nlh->nlmsg_type, FAMILY);
	CHECK_EQ_INT(nlh->nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK);
	CHECK_EQ_INT(genl(nlh)->cmd, WG_CMD_SET_DEVICE);
	a = find_attr(nlh, WGDEVICE_A_IFNAME);
	CHECK(a && !strcmp(mnl_attr_get_str(a), "wg1"));
	CHECK(!find_attr(nlh, WGDEVICE_A_FLAGS)); /* never WGDEVICE_F_REPLACE_PEERS */
	peers = find_attr(nlh, WGDEVICE_A_PEERS);
	CHECK(peers != NULL);
	if (!peers)
		return;
	mnl_attr_for_each_nested (peer, peers) {
		int pos = 0, ep_pos = -1, ka_pos = -1;
		bool key_ok = false, flags_ok = false;

		mnl_attr_for_each_nested (a, peer) {
			pos++;
			switch (mnl_attr_get_type(a)) {
			case WGPEER_A_PUBLIC_KEY:
				key_ok = mnl_attr_get_payload_len(a) == KEY_LEN &&
					 !memcmp(mnl_attr_get_payload(a), u[n_peers].public_key,
						 KEY_LEN);
				break;
			case WGPEER_A_FLAGS:
				flags_ok = mnl_attr_get_u32(a) == WGPEER_F_UPDATE_ONLY;
				break;
			case WGPEER_A_ENDPOINT:
				ep_pos = pos;
				if (n_peers == 0) {
					CHECK_EQ_INT(mnl_attr_get_payload_len(a),
						     sizeof(struct sockaddr_in));
					CHECK(!memcmp(mnl_attr_get_payload(a), &u[0].endpoint.in4,
						      sizeof(struct sockaddr_in)));
				} else {
					CHECK_EQ_INT(mnl_attr_get_payload_len(a),
						     sizeof(struct sockaddr_in6));
					CHECK(!memcmp(mnl_attr_get_payload(a), &u[1].endpoint.in6,
						      sizeof(struct sockaddr_in6)));
				}
				break;
			case WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL:
				ka_pos = pos;
				CHECK_EQ_INT(mnl_attr_get_u16(a), 25);
				break;
			default:
				CHECK(!"unexpected peer attribute");
			}
		}
		CHECK(key_ok);
		CHECK(flags_ok);
		CHECK(ep_pos > 0);
		if (n_peers == 0)
			CHECK(ka_pos > ep_pos); /* endpoint before keepalive */
		else
			CHECK_EQ_INT(ka_pos, -1); /* keepalive not asked for: not written */
		n_peers++;
	}
	CHECK_EQ_INT(n_peers, 2);
}

static void test_wg_nl_build_set_splits_many_peers(void)
{
	enum { N = 300 };
	static struct wg_peer_update u[N];
	size_t pos = 0, msgs = 0, seen = 0;

	make_updates(u, N);
	while (pos < N && msgs < N) {
		const struct nlmsghdr *nlh = (const void *)buf;
		const struct nlattr *peers, *peer, *a;
		size_t done = 0;
		int len = wg_nl_build_set(buf, WG_NL_REQ_SIZE, FAMILY, 1, "wg0", u + pos, N - pos,
					  &done);

		CHECK(len > 0 && (size_t)len <= WG_NL_REQ_SIZE);
		CHECK(done > 0);
		if (len <= 0 || done == 0)
			return;
		/* The nests are closed: every peer in this message is complete. */
		peers = find_attr(nlh, WGDEVICE_A_PEERS);
		CHECK(peers != NULL);
		CHECK(mnl_attr_validate(peers, MNL_TYPE_NESTED) == 0);
		CHECK((const uint8_t *)peers + peers->nla_len <= buf + len);
		size_t in_msg = 0;
		mnl_attr_for_each_nested (peer, peers) {
			mnl_attr_for_each_nested (a, peer) {
				if (mnl_attr_get_type(a) == WGPEER_A_PUBLIC_KEY)
					CHECK(!memcmp(mnl_attr_get_payload(a),
						      u[pos + in_msg].public_key, KEY_LEN));
			}
			in_msg++;
		}
		CHECK_EQ_INT(in_msg, done);
		seen += in_msg;
		pos += done;
		msgs++;
	}
	CHECK_EQ_INT(pos, N);
	CHECK_EQ_INT(seen, N);
	CHECK(msgs > 1); /* 300 peers do not fit one page */
}

static void test_wg_nl_build_set_refuses(void)
{
	struct wg_peer_update u[1];
	size_t done = 99;

	make_updates(u, 1);
	CHECK_EQ_INT(wg_nl_build_set(buf, sizeof(buf), FAMILY, 1, "wg0", u, 0, &done), -EINVAL);
	CHECK_EQ_INT(done, 0);
	CHECK_EQ_INT(wg_nl_build_set(buf, 60, FAMILY, 1, "wg0", u, 1, &done), -ENOSPC);
	memset(&u[0].endpoint, 0, sizeof(u[0].endpoint));
	CHECK_EQ_INT(wg_nl_build_set(buf, sizeof(buf), FAMILY, 1, "wg0", u, 1, &done), -EINVAL);
	u[0].flags = WG_UPDATE_KEEPALIVE; /* no endpoint to write: fine */
	CHECK(wg_nl_build_set(buf, sizeof(buf), FAMILY, 1, "wg0", u, 1, &done) > 0);
}

/* ---------------------------------------------------------------- replies */

struct reply {
	uint8_t *p;
	size_t len; /* bytes of finished messages */
};

static struct nlmsghdr *reply_msg(struct reply *r, uint16_t type, uint16_t flags, uint32_t seq,
				  uint8_t cmd)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(r->p + r->len);

	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = flags;
	nlh->nlmsg_seq = seq;
	if (type >= NLMSG_MIN_TYPE) {
		struct genlmsghdr *g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));

		g->cmd = cmd;
		g->version = 1;
	}
	return nlh;
}

static void reply_end(struct reply *r, struct nlmsghdr *nlh)
{
	r->len += MNL_ALIGN(nlh->nlmsg_len);
}

static void put_allowed_ip(struct nlmsghdr *nlh, const char *ip, uint8_t cidr)
{
	struct nlattr *n = mnl_attr_nest_start(nlh, 0);
	uint8_t a[16];
	bool v6 = strchr(ip, ':') != NULL;

	inet_pton(v6 ? AF_INET6 : AF_INET, ip, a);
	mnl_attr_put_u16(nlh, WGALLOWEDIP_A_FAMILY, v6 ? AF_INET6 : AF_INET);
	mnl_attr_put(nlh, WGALLOWEDIP_A_IPADDR, v6 ? 16 : 4, a);
	mnl_attr_put_u8(nlh, WGALLOWEDIP_A_CIDR_MASK, cidr);
	mnl_attr_nest_end(nlh, n);
}

/* A two-part dump as the kernel sends it for peers A, B, C where B's allowed IPs spill over. */
static size_t build_dump(uint32_t seq, bool unknown)
{
	struct reply r = { .p = buf };
	struct nlmsghdr *nlh;
	struct nlattr *peers, *peer, *ips;
	uint8_t key[KEY_LEN];
	struct sockaddr_in ep4 = { .sin_family = AF_INET, .sin_port = htons(51820) };
	struct sockaddr_in6 ep6 = { .sin6_family = AF_INET6, .sin6_port = htons(51821) };
	int64_t ts[2] = { 1700000000, 123456789 };

	inet_pton(AF_INET, "203.0.113.5", &ep4.sin_addr);
	inet_pton(AF_INET6, "2001:db8::5", &ep6.sin6_addr);

	/* Part 1: the device attributes, peer A whole, the start of B. */
	nlh = reply_msg(&r, FAMILY, NLM_F_MULTI, seq, WG_CMD_GET_DEVICE);
	mnl_attr_put_u16(nlh, WGDEVICE_A_LISTEN_PORT, 51820);
	mnl_attr_put_u32(nlh, WGDEVICE_A_FWMARK, 0x51);
	mnl_attr_put_u32(nlh, WGDEVICE_A_IFINDEX, 4);
	mnl_attr_put_strz(nlh, WGDEVICE_A_IFNAME, "wg0");
	if (unknown)
		mnl_attr_put_u32(nlh, 77, 1);
	fill_key(key, 100);
	mnl_attr_put(nlh, WGDEVICE_A_PRIVATE_KEY, KEY_LEN, key);
	fill_key(key, 200);
	mnl_attr_put(nlh, WGDEVICE_A_PUBLIC_KEY, KEY_LEN, key);
	peers = mnl_attr_nest_start(nlh, WGDEVICE_A_PEERS);

	peer = mnl_attr_nest_start(nlh, 0);
	fill_key(key, 1);
	mnl_attr_put(nlh, WGPEER_A_PUBLIC_KEY, KEY_LEN, key);
	fill_key(key, 9);
	mnl_attr_put(nlh, WGPEER_A_PRESHARED_KEY, KEY_LEN, key);
	mnl_attr_put(nlh, WGPEER_A_LAST_HANDSHAKE_TIME, sizeof(ts), ts);
	mnl_attr_put_u16(nlh, WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, 25);
	mnl_attr_put_u64(nlh, WGPEER_A_TX_BYTES, 1000);
	mnl_attr_put_u64(nlh, WGPEER_A_RX_BYTES, 2000);
	mnl_attr_put_u32(nlh, WGPEER_A_PROTOCOL_VERSION, 1);
	if (unknown)
		mnl_attr_put_u64(nlh, 60, 5);
	mnl_attr_put(nlh, WGPEER_A_ENDPOINT, sizeof(ep4), &ep4);
	ips = mnl_attr_nest_start(nlh, WGPEER_A_ALLOWEDIPS);
	put_allowed_ip(nlh, "198.18.1.0", 24);
	if (unknown) {
		struct nlattr *n = mnl_attr_nest_start(nlh, 0);

		mnl_attr_put_u16(nlh, WGALLOWEDIP_A_FAMILY, AF_INET);
		mnl_attr_put_u32(nlh, WGALLOWEDIP_A_IPADDR, htonl(0xc6120200));
		mnl_attr_put_u8(nlh, WGALLOWEDIP_A_CIDR_MASK, 23);
		mnl_attr_put_u32(nlh, 9, 0); /* a newer allowed-IP attribute */
		mnl_attr_nest_end(nlh, n);
	}
	put_allowed_ip(nlh, "2001:db8:1::", 48);
	mnl_attr_nest_end(nlh, ips);
	mnl_attr_nest_end(nlh, peer);

	peer = mnl_attr_nest_start(nlh, 0);
	fill_key(key, 2);
	mnl_attr_put(nlh, WGPEER_A_PUBLIC_KEY, KEY_LEN, key);
	mnl_attr_put(nlh, WGPEER_A_ENDPOINT, sizeof(ep6), &ep6);
	ips = mnl_attr_nest_start(nlh, WGPEER_A_ALLOWEDIPS);
	put_allowed_ip(nlh, "198.18.2.1", 32);
	mnl_attr_nest_end(nlh, ips);
	mnl_attr_nest_end(nlh, peer);
	mnl_attr_nest_end(nlh, peers);
	reply_end(&r, nlh);

	/* Part 2: no device attributes; B again with its key and the rest of its IPs; C. */
	nlh = reply_msg(&r, FAMILY, NLM_F_MULTI, seq, WG_CMD_GET_DEVICE);
	peers = mnl_attr_nest_start(nlh, WGDEVICE_A_PEERS);
	peer = mnl_attr_nest_start(nlh, 0);
	fill_key(key, 2);
	mnl_attr_put(nlh, WGPEER_A_PUBLIC_KEY, KEY_LEN, key);
	ips = mnl_attr_nest_start(nlh, WGPEER_A_ALLOWEDIPS);
	put_allowed_ip(nlh, "198.18.2.2", 32);
	put_allowed_ip(nlh, "198.18.2.3", 32);
	mnl_attr_nest_end(nlh, ips);
	mnl_attr_nest_end(nlh, peer);
	peer = mnl_attr_nest_start(nlh, 0);
	fill_key(key, 3);
	mnl_attr_put(nlh, WGPEER_A_PUBLIC_KEY, KEY_LEN, key);
	mnl_attr_nest_end(nlh, peer);
	mnl_attr_nest_end(nlh, peers);
	reply_end(&r, nlh);
	return r.len;
}

static int parse_msg(const struct nlmsghdr *nlh, void *data)
{
	return wg_nl_parse_device(nlh, data);
}

static void check_dump(const struct wg_device *dev, bool unknown)
{
	uint8_t key[KEY_LEN];
	const struct wg_peer *p;
	char ip[INET6_ADDRSTRLEN];

	CHECK(!strcmp(dev->ifname, "wg0"));
	CHECK_EQ_INT(dev->listen_port, 51820);
	CHECK_EQ_INT(dev->fwmark, 0x51);
	CHECK(dev->has_private_key);
	fill_key(key, 100);
	CHECK(!memcmp(dev->private_key, key, KEY_LEN));
	fill_key(key, 200);
	CHECK(!memcmp(dev->public_key, key, KEY_LEN));
	CHECK_EQ_INT(dev->n_peers, 3);
	if (dev->n_peers != 3)
		return;
	p = &dev->peers[0];
	fill_key(key, 1);
	CHECK(!memcmp(p->public_key, key, KEY_LEN));
	CHECK(wg_device_find_peer(dev, key) == p);
	CHECK_EQ_INT(p->keepalive_s, 25);
	CHECK_EQ_INT(p->last_handshake_s, 1700000000);
	CHECK_EQ_INT(p->last_handshake_ns, 123456789);
	CHECK_EQ_INT(p->rx_bytes, 2000);
	CHECK_EQ_INT(p->tx_bytes, 1000);
	CHECK_EQ_INT(addr_family(&p->endpoint), AF_INET);
	CHECK_EQ_INT(addr_port(&p->endpoint), 51820);
	CHECK_EQ_INT(p->n_allowed_ips, unknown ? 3 : 2);
	if (p->n_allowed_ips >= 2) {
		CHECK_EQ_INT(p->allowed_ips[0].family, AF_INET);
		CHECK_EQ_INT(p->allowed_ips[0].cidr, 24);
		inet_ntop(AF_INET, &p->allowed_ips[0].ip4, ip, sizeof(ip));
		CHECK(!strcmp(ip, "198.18.1.0"));
		const struct wg_allowed_ip *v6 = &p->allowed_ips[p->n_allowed_ips - 1];
		CHECK_EQ_INT(v6->family, AF_INET6);
		CHECK_EQ_INT(v6->cidr, 48);
		inet_ntop(AF_INET6, &v6->ip6, ip, sizeof(ip));
		CHECK(!strcmp(ip, "2001:db8:1::"));
	}
	p = &dev->peers[1];
	CHECK_EQ_INT(addr_family(&p->endpoint), AF_INET6);
	CHECK_EQ_INT(addr_port(&p->endpoint), 51821);
	CHECK_EQ_INT(p->n_allowed_ips, 3); /* continued in the second part */
	if (p->n_allowed_ips == 3) {
		inet_ntop(AF_INET, &p->allowed_ips[2].ip4, ip, sizeof(ip));
		CHECK(!strcmp(ip, "198.18.2.3"));
	}
	p = &dev->peers[2];
	fill_key(key, 3);
	CHECK(!memcmp(p->public_key, key, KEY_LEN));
	CHECK(!addr_is_set(&p->endpoint));
	CHECK_EQ_INT(p->n_allowed_ips, 0);
	CHECK_EQ_INT(p->last_handshake_s, 0);
}

static void test_wg_nl_parse_multipart_dump(void)
{
	struct wg_device *dev = calloc(1, sizeof(*dev));
	size_t len = build_dump(5, false);
	struct nlmsghdr *second = (void *)(buf + MNL_ALIGN(((struct nlmsghdr *)buf)->nlmsg_len));
	bool intr = false;

	/* Datagram 1 holds both parts, no DONE yet: the answer goes on. */
	CHECK_EQ_INT(wg_nl_walk(buf, len, 5, parse_msg, dev, &intr), WG_NL_MORE);
	CHECK(!intr);
	check_dump(dev, false);
	wg_device_free(dev);

	/* The parts one by one, as separate datagrams. */
	dev = calloc(1, sizeof(*dev));
	CHECK_EQ_INT(wg_nl_walk(buf, MNL_ALIGN(((struct nlmsghdr *)buf)->nlmsg_len), 5, parse_msg,
				dev, &intr),
		     WG_NL_MORE);
	CHECK_EQ_INT(dev->n_peers, 2);
	CHECK_EQ_INT(wg_nl_walk(second, second->nlmsg_len, 5, parse_msg, dev, &intr), WG_NL_MORE);
	check_dump(dev, false);
	wg_device_free(dev);
}

static void test_wg_nl_parse_skips_unknown_attributes(void)
{
	struct wg_device *dev = calloc(1, sizeof(*dev));
	size_t len = build_dump(5, true);
	bool intr = false;

	CHECK_EQ_INT(wg_nl_walk(buf, len, 5, parse_msg, dev, &intr), WG_NL_MORE);
	check_dump(dev, true);
	wg_device_free(dev);
}

static void test_wg_nl_parse_refuses_truncated(void)
{
	size_t len = build_dump(5, false);
	struct nlmsghdr *nlh = (void *)buf;
	uint32_t full = nlh->nlmsg_len;
	struct wg_device *dev;
	bool intr = false;

	/* The message ends inside an attribute: mnl_attr_parse() would stop quietly. */
	for (uint32_t cut = 1; cut < 12; cut += 3) {
		dev = calloc(1, sizeof(*dev));
		nlh->nlmsg_len = full - cut;
		CHECK_EQ_INT(wg_nl_parse_device(nlh, dev), -EBADMSG);
		wg_device_free(dev);
	}
	nlh->nlmsg_len = full;

	/* A key attribute one byte short. */
	struct reply r = { .p = buf };
	uint8_t key[KEY_LEN] = { 0 };
	nlh = reply_msg(&r, FAMILY, 0, 5, WG_CMD_GET_DEVICE);
	mnl_attr_put(nlh, WGDEVICE_A_PUBLIC_KEY, KEY_LEN - 1, key);
	dev = calloc(1, sizeof(*dev));
	CHECK_EQ_INT(wg_nl_parse_device(nlh, dev), -EBADMSG);
	wg_device_free(dev);

	/* A peer without a public key. */
	r.len = 0;
	nlh = reply_msg(&r, FAMILY, 0, 5, WG_CMD_GET_DEVICE);
	struct nlattr *peers = mnl_attr_nest_start(nlh, WGDEVICE_A_PEERS);
	struct nlattr *peer = mnl_attr_nest_start(nlh, 0);
	mnl_attr_put_u16(nlh, WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, 25);
	mnl_attr_nest_end(nlh, peer);
	mnl_attr_nest_end(nlh, peers);
	dev = calloc(1, sizeof(*dev));
	CHECK_EQ_INT(wg_nl_parse_device(nlh, dev), -EBADMSG);
	wg_device_free(dev);

	/* A datagram that ends inside a message header. */
	len = build_dump(5, false);
	dev = calloc(1, sizeof(*dev));
	CHECK_EQ_INT(wg_nl_walk(buf, MNL_ALIGN(((struct nlmsghdr *)buf)->nlmsg_len) + 8, 5,
				parse_msg, dev, &intr),
		     -EBADMSG);
	wg_device_free(dev);
	(void)len;
}

static int count_msg(const struct nlmsghdr *nlh, void *data)
{
	(*(int *)data)++;
	return 0;
}

static void test_wg_nl_walk_control_messages(void)
{
	struct reply r = { .p = buf };
	struct nlmsghdr *nlh;
	struct nlmsgerr *e;
	bool intr = false;
	int count = 0;

	/* A stale message of another request, then our error. */
	nlh = reply_msg(&r, FAMILY, NLM_F_MULTI, 4, WG_CMD_GET_DEVICE);
	reply_end(&r, nlh);
	nlh = reply_msg(&r, NLMSG_ERROR, 0, 5, 0);
	e = mnl_nlmsg_put_extra_header(nlh, sizeof(*e));
	e->error = -ENODEV;
	reply_end(&r, nlh);
	CHECK_EQ_INT(wg_nl_walk(buf, r.len, 5, count_msg, &count, &intr), -ENODEV);
	CHECK_EQ_INT(count, 0);

	/* An ACK is error 0. */
	e->error = 0;
	CHECK_EQ_INT(wg_nl_walk(buf, r.len, 5, count_msg, &count, &intr), 0);

	/* An interrupted dump part, then DONE. */
	r.len = 0;
	nlh = reply_msg(&r, FAMILY, NLM_F_MULTI | NLM_F_DUMP_INTR, 5, WG_CMD_GET_DEVICE);
	reply_end(&r, nlh);
	nlh = reply_msg(&r, NLMSG_DONE, NLM_F_MULTI, 5, 0);
	*(int *)mnl_nlmsg_put_extra_header(nlh, sizeof(int)) = 0;
	reply_end(&r, nlh);
	CHECK_EQ_INT(wg_nl_walk(buf, r.len, 5, count_msg, &count, &intr), 0);
	CHECK(intr);
	CHECK_EQ_INT(count, 1);

	/* A dump that failed part-way: DONE carries the error. */
	*(int *)mnl_nlmsg_get_payload(nlh) = -EMSGSIZE;
	CHECK_EQ_INT(wg_nl_walk(buf, r.len, 5, count_msg, &count, &intr), -EMSGSIZE);
}

/*
 * What an abandoned request leaves behind: the kernel's whole answer to it
 * (dump parts, even an interrupted one, DONE, an error) arrives while the
 * next request waits for its own sequence number. None of it is taken.
 */
static void test_wg_nl_walk_discards_late_replies(void)
{
	struct reply r = { .p = buf };
	struct nlmsghdr *nlh;
	struct nlmsgerr *e;
	bool intr = false;
	int count = 0;

	nlh = reply_msg(&r, FAMILY, NLM_F_MULTI | NLM_F_DUMP_INTR, 41, WG_CMD_GET_DEVICE);
	reply_end(&r, nlh);
	nlh = reply_msg(&r, FAMILY, NLM_F_MULTI, 41, WG_CMD_GET_DEVICE);
	reply_end(&r, nlh);
	nlh = reply_msg(&r, NLMSG_DONE, NLM_F_MULTI, 41, 0);
	*(int *)mnl_nlmsg_put_extra_header(nlh, sizeof(int)) = -EINTR;
	reply_end(&r, nlh);
	nlh = reply_msg(&r, NLMSG_ERROR, 0, 40, 0);
	e = mnl_nlmsg_put_extra_header(nlh, sizeof(*e));
	e->error = -EBUSY;
	reply_end(&r, nlh);
	nlh = reply_msg(&r, NLMSG_OVERRUN, 0, 41, 0);
	reply_end(&r, nlh);

	/* Waiting for 42: all stale, nothing is parsed, and the answer is still to come. */
	CHECK_EQ_INT(wg_nl_walk(buf, r.len, 42, count_msg, &count, &intr), WG_NL_MORE);
	CHECK_EQ_INT(count, 0);
	CHECK(!intr);

	/* Our own ACK after them ends the step. */
	nlh = reply_msg(&r, NLMSG_ERROR, 0, 42, 0);
	e = mnl_nlmsg_put_extra_header(nlh, sizeof(*e));
	e->error = 0;
	reply_end(&r, nlh);
	CHECK_EQ_INT(wg_nl_walk(buf, r.len, 42, count_msg, &count, &intr), 0);
	CHECK_EQ_INT(count, 0);
	CHECK(!intr);

	/* The same datagram, read by the request that sent 41, is its answer. */
	CHECK_EQ_INT(wg_nl_walk(buf, r.len, 41, count_msg, &count, &intr), -EINTR);
	CHECK_EQ_INT(count, 2);
	CHECK(intr);
}

struct io_result {
	int calls;
	int status;
};

static void on_io(void *arg, int status, struct wg_device *dev)
{
	struct io_result *res = arg;

	res->calls++;
	res->status = status;
	wg_device_free(dev);
}

static void on_watchdog(uv_timer_t *t)
{
}

static void on_io_closed(void *arg)
{
	(*(int *)arg)++;
}

/*
 * The real socket: a request abandoned right after it was sent never calls
 * back, and the next one (on a new socket) gets its own answer. Without
 * kernel WireGuard that answer is an error (no such family or device); all
 * that matters here is that exactly that callback fires, once.
 */
static void test_wg_nl_io_abort_then_next_request(void)
{
	struct io_result first = { 0 }, second = { 0 };
	struct wg_nl_io *io;
	uv_timer_t watchdog;
	uv_loop_t loop;
	int closed = 0, r;

	uv_loop_init(&loop);
	/* Bounds each UV_RUN_ONCE below should the kernel never answer. */
	uv_timer_init(&loop, &watchdog);
	uv_timer_start(&watchdog, on_watchdog, 100, 100);
	r = wg_nl_io_open(&loop, "wgpt-nl0", &io);
	CHECK_EQ_INT(r, 0);
	if (r < 0)
		goto out;
	CHECK_EQ_INT(wg_nl_io_get(io, on_io, &first), 0);
	CHECK_EQ_INT(wg_nl_io_get(io, on_io, &second), -EBUSY); /* one at a time */
	wg_nl_io_abort(io);
	wg_nl_io_abort(io); /* idle: nothing to do */
	CHECK_EQ_INT(wg_nl_io_get(io, on_io, &second), 0);
	CHECK_EQ_INT(second.calls, 0); /* never from inside the call */
	for (int i = 0; i < 20 && !second.calls; i++)
		uv_run(&loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&watchdog, NULL);
	CHECK_EQ_INT(first.calls, 0);
	CHECK_EQ_INT(second.calls, 1);
	CHECK(second.status < 0);
	printf("# the second request ended with %d\n", second.status);
	wg_nl_io_close(io, on_io_closed, &closed);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK_EQ_INT(closed, 1);
	CHECK_EQ_INT(first.calls, 0);
	CHECK_EQ_INT(second.calls, 1);
	CHECK_EQ_INT(uv_loop_close(&loop), 0);
	return;
out:
	uv_close((uv_handle_t *)&watchdog, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

/* Closed while the socket of an abandoned request is still closing: both go cleanly. */
static void test_wg_nl_io_close_after_abort(void)
{
	struct io_result res = { 0 };
	struct wg_nl_io *io;
	uv_loop_t loop;
	int closed = 0;

	uv_loop_init(&loop);
	if (wg_nl_io_open(&loop, "wgpt-nl0", &io) < 0) {
		CHECK(false);
		goto out;
	}
	CHECK_EQ_INT(wg_nl_io_get(io, on_io, &res), 0);
	wg_nl_io_abort(io);
	wg_nl_io_close(io, on_io_closed, &closed); /* no socket now: closed at once */
	CHECK_EQ_INT(closed, 1);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK_EQ_INT(res.calls, 0);
out:
	CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

static void test_wg_nl_parse_family(void)
{
	struct reply r = { .p = buf };
	struct nlmsghdr *nlh = reply_msg(&r, GENL_ID_CTRL, 0, 1, CTRL_CMD_NEWFAMILY);
	uint16_t family = 0;

	mnl_attr_put_strz(nlh, CTRL_ATTR_FAMILY_NAME, WG_GENL_NAME);
	mnl_attr_put_u16(nlh, CTRL_ATTR_FAMILY_ID, 0x22);
	mnl_attr_put_u32(nlh, CTRL_ATTR_VERSION, 1);
	CHECK_EQ_INT(wg_nl_parse_family(nlh, &family), 0);
	CHECK_EQ_INT(family, 0x22);

	r.len = 0;
	family = 0;
	nlh = reply_msg(&r, GENL_ID_CTRL, 0, 1, CTRL_CMD_NEWFAMILY);
	mnl_attr_put_strz(nlh, CTRL_ATTR_FAMILY_NAME, WG_GENL_NAME);
	CHECK_EQ_INT(wg_nl_parse_family(nlh, &family), -EBADMSG);
	CHECK_EQ_INT(family, 0);
}

int main(void)
{
	TAP_RUN(test_wg_nl_build_get_family);
	TAP_RUN(test_wg_nl_build_get_is_a_dump);
	TAP_RUN(test_wg_nl_build_set_attributes);
	TAP_RUN(test_wg_nl_build_set_splits_many_peers);
	TAP_RUN(test_wg_nl_build_set_refuses);
	TAP_RUN(test_wg_nl_parse_multipart_dump);
	TAP_RUN(test_wg_nl_parse_skips_unknown_attributes);
	TAP_RUN(test_wg_nl_parse_refuses_truncated);
	TAP_RUN(test_wg_nl_walk_control_messages);
	TAP_RUN(test_wg_nl_walk_discards_late_replies);
	TAP_RUN(test_wg_nl_parse_family);
	TAP_RUN(test_wg_nl_io_abort_then_next_request);
	TAP_RUN(test_wg_nl_io_close_after_abort);
	return tap_done();
}

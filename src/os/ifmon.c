// SPDX-License-Identifier: MIT
/*
 * ifmon - rtnetlink address and link events for the node (see the header).
 *
 * Pure parsing and debouncing first, then the thin I/O layer: a uv_poll_t on
 * a non-blocking libmnl socket and one uv_timer_t for the debounce.
 */
#include "wgpunch/ifmon.h"

#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <stdlib.h>
#include <string.h>

#include "wgpunch/log.h"

/* ---- parsing ---- */

struct addr_attrs {
	int family;
	const struct nlattr *address, *local;
};

/*
 * Walks the attributes after the fixed part (at offset in the payload). Unlike
 * mnl_attr_for_each, which stops quietly at the first attribute that does not fit, this
 * refuses the message: a truncated attribute means the rest cannot be trusted either.
 */
static int walk_attrs(const struct nlmsghdr *nlh, size_t offset,
		      int (*fn)(const struct nlattr *a, void *data), void *data)
{
	const uint8_t *p = (const uint8_t *)mnl_nlmsg_get_payload(nlh) + MNL_ALIGN(offset);
	const uint8_t *end = (const uint8_t *)nlh + nlh->nlmsg_len;
	int r;

	while (p < end) {
		const struct nlattr *a = (const struct nlattr *)(const void *)p;
		size_t left = (size_t)(end - p);

		if (left < sizeof(*a) || a->nla_len < sizeof(*a) || a->nla_len > left)
			return -EBADMSG;
		r = fn(a, data);
		if (r < 0)
			return r;
		p += MNL_ALIGN(a->nla_len);
	}
	return 0;
}

static int addr_attr(const struct nlattr *a, void *data)
{
	struct addr_attrs *aa = data;
	size_t want = aa->family == AF_INET ? 4 : 16;

	switch (mnl_attr_get_type(a)) {
	case IFA_ADDRESS:
	case IFA_LOCAL:
		if (aa->family != AF_INET && aa->family != AF_INET6)
			return 0; /* not an address family we know: nothing to read */
		if (mnl_attr_get_payload_len(a) != want)
			return -EBADMSG;
		if (mnl_attr_get_type(a) == IFA_LOCAL)
			aa->local = a;
		else
			aa->address = a;
		return 0;
	default:
		return 0; /* labels, flags, cache info, and what newer kernels add */
	}
}

static int link_attr(const struct nlattr *a, void *data)
{
	struct ifmon_event *ev = data;
	const char *name;
	size_t len;

	if (mnl_attr_get_type(a) != IFLA_IFNAME)
		return 0;
	name = mnl_attr_get_payload(a);
	len = mnl_attr_get_payload_len(a);
	if (len == 0 || !memchr(name, '\0', len) || strlen(name) >= sizeof(ev->ifname))
		return -EBADMSG;
	memcpy(ev->ifname, name, strlen(name) + 1);
	return 0;
}

static void set_addr(struct addr *out, int family, const struct nlattr *a)
{
	memset(out, 0, sizeof(*out));
	if (family == AF_INET) {
		out->in4.sin_family = AF_INET;
		memcpy(&out->in4.sin_addr, mnl_attr_get_payload(a), 4);
	} else {
		out->in6.sin6_family = AF_INET6;
		memcpy(&out->in6.sin6_addr, mnl_attr_get_payload(a), 16);
	}
}

static int parse_addr(const struct nlmsghdr *nlh, struct ifmon_event *ev)
{
	const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
	struct addr_attrs aa = { 0 };
	int r;

	if (mnl_nlmsg_get_payload_len(nlh) < sizeof(*ifa))
		return -EBADMSG;
	aa.family = ifa->ifa_family;
	r = walk_attrs(nlh, sizeof(*ifa), addr_attr, &aa);
	if (r < 0)
		return r;
	ev->kind = nlh->nlmsg_type == RTM_NEWADDR ? IFMON_ADDR_NEW : IFMON_ADDR_DEL;
	ev->ifindex = ifa->ifa_index;
	ev->prefixlen = ifa->ifa_prefixlen;
	/* On a point-to-point link IFA_ADDRESS is the far end; IFA_LOCAL is ours. */
	if (aa.local || aa.address)
		set_addr(&ev->addr, aa.family, aa.local ? aa.local : aa.address);
	return 0;
}

static int parse_link(const struct nlmsghdr *nlh, struct ifmon_event *ev)
{
	const struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);
	int r;

	if (mnl_nlmsg_get_payload_len(nlh) < sizeof(*ifi))
		return -EBADMSG;
	r = walk_attrs(nlh, sizeof(*ifi), link_attr, ev);
	if (r < 0)
		return r;
	ev->kind = nlh->nlmsg_type == RTM_NEWLINK ? IFMON_LINK_NEW : IFMON_LINK_DEL;
	ev->ifindex = (uint32_t)ifi->ifi_index;
	ev->link_flags = ifi->ifi_flags;
	return 0;
}

int ifmon_parse_msg(const void *buf, size_t len, struct ifmon_event *ev)
{
	const struct nlmsghdr *nlh = buf;
	size_t msg_len;
	int r = 0;

	memset(ev, 0, sizeof(*ev));
	if (len > INT32_MAX)
		len = INT32_MAX; /* the return value is an int; no datagram is that long */
	/* Not mnl_nlmsg_ok(): it compares nlmsg_len as an int, so a length of 2^31 or more
	 * passes, and the message then runs past the datagram (as wg_nl_walk() explains). */
	if (len < MNL_NLMSG_HDRLEN || nlh->nlmsg_len < MNL_NLMSG_HDRLEN || nlh->nlmsg_len > len)
		return -EBADMSG;
	switch (nlh->nlmsg_type) {
	case RTM_NEWADDR:
	case RTM_DELADDR:
		r = parse_addr(nlh, ev);
		break;
	case RTM_NEWLINK:
	case RTM_DELLINK:
		r = parse_link(nlh, ev);
		break;
	default:
		ev->kind = IFMON_NONE;
		break;
	}
	if (r < 0) {
		memset(ev, 0, sizeof(*ev));
		return r;
	}
	/* In size_t: MNL_ALIGN() of a uint32_t near 2^32 wraps to 0, a walk that never moves. */
	msg_len = MNL_ALIGN((size_t)nlh->nlmsg_len);
	return (int)(msg_len < len ? msg_len : len);
}

int ifmon_parse_datagram(const void *buf, size_t len, ifmon_event_fn fn, void *arg, size_t *n_msgs)
{
	struct ifmon_event ev;
	size_t off = 0;

	*n_msgs = 0;
	/* Each step is at least a header long, so this ends within len / 16 steps. */
	while (off < len) {
		int r = ifmon_parse_msg((const uint8_t *)buf + off, len - off, &ev);

		if (r < 0)
			return r; /* the rest cannot be framed */
		++*n_msgs;
		if (ev.kind != IFMON_NONE)
			fn(&ev, arg);
		off += (size_t)r;
	}
	return 0;
}

/* ---- debouncing ---- */

void ifmon_debounce_init(struct ifmon_debounce *d, uint32_t quiet_ms)
{
	memset(d, 0, sizeof(*d));
	d->quiet_ms = quiet_ms;
}

uint64_t ifmon_debounce_event(struct ifmon_debounce *d, uint64_t now_ms)
{
	uint64_t cap;

	if (!d->pending) {
		d->pending = true;
		d->first_ms = now_ms;
	}
	/* Wait for quiet, but a steady stream (a flapping link) must not starve the node. */
	cap = d->first_ms + (uint64_t)d->quiet_ms * IFMON_DEBOUNCE_MAX_FACTOR;
	d->due_ms = now_ms + d->quiet_ms < cap ? now_ms + d->quiet_ms : cap;
	return d->due_ms;
}

bool ifmon_debounce_fire(struct ifmon_debounce *d, uint64_t now_ms)
{
	if (!d->pending || now_ms < d->due_ms)
		return false;
	d->pending = false;
	return true;
}

/* ---- I/O ---- */

struct ifmon {
	uv_loop_t *loop;
	struct mnl_socket *nl;
	uv_poll_t poll;
	uv_timer_t timer;
	struct ifmon_debounce deb;
	ifmon_cb cb;
	void (*closed)(void *arg);
	void *arg;
	unsigned int closing;
	bool stopping;
	uint64_t messages, malformed;
	uint8_t rx[16384]; /* one datagram; a longer one is cut (ENOSPC) and counts as a change */
};

uint64_t ifmon_messages(const struct ifmon *m)
{
	return m->messages;
}

uint64_t ifmon_malformed(const struct ifmon *m)
{
	return m->malformed;
}

static void ifmon_on_timer(uv_timer_t *t)
{
	struct ifmon *m = t->data;
	uint64_t now = uv_now(m->loop);

	if (m->stopping)
		return;
	if (ifmon_debounce_fire(&m->deb, now)) {
		m->cb(m->arg);
		return;
	}
	if (m->deb.pending)
		uv_timer_start(&m->timer, ifmon_on_timer, m->deb.due_ms - now, 0);
}

static void ifmon_changed(struct ifmon *m)
{
	uint64_t now = uv_now(m->loop);
	uint64_t due = ifmon_debounce_event(&m->deb, now);

	uv_timer_start(&m->timer, ifmon_on_timer, due > now ? due - now : 0, 0);
}

static void ifmon_on_event(const struct ifmon_event *ev, void *arg)
{
	bool *changed = arg;
	char a[ADDR_STRLEN];

	*changed = true;
	log_debug("rtnetlink: %s on interface %u%s%s",
		  ev->kind == IFMON_ADDR_NEW   ? "new address"
		  : ev->kind == IFMON_ADDR_DEL ? "address removed"
		  : ev->kind == IFMON_LINK_NEW ? "link changed"
					       : "link removed",
		  ev->ifindex, addr_is_set(&ev->addr) ? " " : "",
		  addr_is_set(&ev->addr) ? addr_format(&ev->addr, a) : "");
}

/* True when the datagram held an event we watch. */
static bool ifmon_read_datagram(struct ifmon *m, size_t len)
{
	bool changed = false;
	size_t n = 0;

	if (ifmon_parse_datagram(m->rx, len, ifmon_on_event, &changed, &n) < 0) {
		/* The rest of the datagram cannot be framed; the next read is fresh. */
		m->malformed++;
		log_debug("malformed rtnetlink message after %zu good ones in a %zu-byte datagram",
			  n, len);
	}
	m->messages += n;
	return changed;
}

static void ifmon_on_poll(uv_poll_t *h, int status, int events)
{
	struct ifmon *m = h->data;
	bool changed = false;
	unsigned int i;

	if (m->stopping)
		return;
	if (status < 0) {
		log_warn("address monitor failed: %s; local changes are seen with the next refresh",
			 uv_strerror(status));
		uv_poll_stop(h);
		return;
	}
	/* Bounded so a flood cannot starve the loop; the poll is level-triggered. */
	for (i = 0; i < 64; i++) {
		ssize_t n = mnl_socket_recvfrom(m->nl, m->rx, sizeof(m->rx));

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0 && (errno == ENOBUFS || errno == ENOSPC)) {
			/* Messages were lost (or cut): something changed that we did not see. */
			changed = true;
			continue;
		}
		if (n < 0) {
			log_debug("address monitor: %s", strerror(errno));
			break;
		}
		if (ifmon_read_datagram(m, (size_t)n))
			changed = true;
	}
	if (changed)
		ifmon_changed(m);
}

static void ifmon_on_closed(uv_handle_t *h)
{
	struct ifmon *m = h->data;
	void (*closed)(void *) = m->closed;
	void *arg = m->arg;

	if (--m->closing > 0)
		return;
	/* The fd outlives the poll handle: libuv must stop watching it first. */
	mnl_socket_close(m->nl);
	free(m);
	if (closed)
		closed(arg);
}

void ifmon_close(struct ifmon *m)
{
	if (!m || m->stopping)
		return;
	m->stopping = true;
	m->closing = 2;
	uv_close((uv_handle_t *)&m->poll, ifmon_on_closed);
	uv_close((uv_handle_t *)&m->timer, ifmon_on_closed);
}

int ifmon_open(uv_loop_t *loop, uint32_t debounce_ms, ifmon_cb cb, void (*closed)(void *arg),
	       void *arg, struct ifmon **out)
{
	struct ifmon *m = calloc(1, sizeof(*m));
	int r;

	if (!m)
		return -ENOMEM;
	m->loop = loop;
	m->cb = cb;
	m->closed = closed;
	m->arg = arg;
	ifmon_debounce_init(&m->deb, debounce_ms);
	m->nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (!m->nl) {
		r = -errno;
		free(m);
		return r;
	}
	if (mnl_socket_bind(m->nl, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR,
			    MNL_SOCKET_AUTOPID) < 0) {
		r = -errno;
		goto fail;
	}
	r = uv_poll_init(loop, &m->poll, mnl_socket_get_fd(m->nl));
	if (r < 0)
		goto fail;
	m->poll.data = m;
	uv_timer_init(loop, &m->timer); /* cannot fail for a valid loop */
	m->timer.data = m;
	r = uv_poll_start(&m->poll, UV_READABLE, ifmon_on_poll);
	if (r < 0) {
		m->closed = NULL; /* a synchronous failure never calls back */
		ifmon_close(m);
		return r;
	}
	*out = m;
	return 0;
fail:
	mnl_socket_close(m->nl);
	free(m);
	return r;
}

// SPDX-License-Identifier: MIT
/*
 * relay_fwd on real sockets (loopback only): two "nodes" as plain UDP sockets bind their
 * sides with a test bind probe, then datagrams cross the relay both ways unchanged and
 * appear to come from the relay ports; a stranger's datagrams reach neither node and are
 * counted; ICMP errors are counted without spinning; idle relays close their ports; every
 * handle closes (uv_loop_close() == 0).
 *
 * The bind probe here is a stand-in for the relay service's authenticated one: a fixed
 * non-WireGuard header, the node's fingerprint and a per-node secret the handler checks.
 */
#include "wgpunch/relay_fwd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../tap.h"

#define FP_A 0xa1a1a1a1a1a1a1a1ULL
#define FP_B 0xb2b2b2b2b2b2b2b2ULL
#define SECRET_A 0x5ec7e7a000000001ULL
#define SECRET_B 0x5ec7e7b000000002ULL
#define PROBE_LEN 20

struct harness {
	uv_loop_t loop;
	struct rtab table;
	struct relay_fwd fwd;
	uint32_t relay;
	uint16_t port_a, port_b;
	int binds_ok, binds_refused, idle_calls;
	uint32_t idle_relay;
};

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* wgpunch-shaped (version 1, a type no real message uses), so rtab_is_wireguard() says no */
static void make_probe(uint8_t *p, uint64_t fp, uint64_t secret)
{
	p[0] = 1;
	p[1] = 0x7f;
	p[2] = p[3] = 0;
	put64(p + 4, fp);
	put64(p + 12, secret);
}

static void on_control(struct relay_fwd *f, uint16_t port, const struct addr *src,
		       const uint8_t *buf, size_t len, void *data)
{
	struct harness *h = data;

	if (len != PROBE_LEN || buf[1] != 0x7f) {
		h->binds_refused++;
		return;
	}
	uint64_t fp = get64(buf + 4), secret = get64(buf + 12);
	bool auth = (fp == FP_A && secret == SECRET_A) || (fp == FP_B && secret == SECRET_B);

	if (!auth || rtab_bind(f->table, port, fp, src, uv_now(f->loop)) < 0) {
		h->binds_refused++;
		return;
	}
	h->binds_ok++;
	CHECK_EQ_INT(relay_fwd_send(f, port, src, "ack", 3), 0);
}

static void on_idle(struct relay_fwd *f, uint32_t relay, void *data)
{
	struct harness *h = data;

	h->idle_calls++;
	h->idle_relay = relay;
}

static struct addr loopback(int family, uint16_t port)
{
	struct addr a;

	memset(&a, 0, sizeof(a));
	if (family == AF_INET) {
		a.in4.sin_family = AF_INET;
		a.in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		a.in4.sin_port = htons(port);
	} else {
		a.in6.sin6_family = AF_INET6;
		a.in6.sin6_addr = in6addr_loopback;
		a.in6.sin6_port = htons(port);
	}
	return a;
}

static bool have_ipv6(void)
{
	int fd = socket(AF_INET6, SOCK_DGRAM, 0);
	struct addr a = loopback(AF_INET6, 0);
	bool ok = fd >= 0 && bind(fd, &a.sa, addr_len(&a)) == 0;

	if (fd >= 0)
		close(fd);
	return ok;
}

/* A "node": a nonblocking UDP socket on loopback with an ephemeral port. */
static int node_socket(int family, struct addr *bound)
{
	int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct addr a = loopback(family, 0);
	socklen_t l = sizeof(*bound);

	CHECK(fd >= 0);
	CHECK_EQ_INT(bind(fd, &a.sa, addr_len(&a)), 0);
	memset(bound, 0, sizeof(*bound));
	CHECK_EQ_INT(getsockname(fd, &bound->sa, &l), 0);
	return fd;
}

/*
 * Sets up a loop, a table and a forwarder on listen addresses of the families given, with a
 * relay (FP_A, FP_B) whose ports are open. Other helpers' tests may hold ports, so the range
 * moves with the PID and a busy one is skipped (bounded).
 */
static bool harness_init(struct harness *h, bool v4, bool v6, uint32_t idle_s)
{
	struct addr listen[2];
	size_t n = 0;

	memset(h, 0, sizeof(*h));
	if (v4)
		listen[n++] = loopback(AF_INET, 0);
	if (v6)
		listen[n++] = loopback(AF_INET6, 0);
	CHECK_EQ_INT(uv_loop_init(&h->loop), 0);
	for (int attempt = 0; attempt < 20; attempt++) {
		struct rtab_limits l = { 0 };

		/* below the kernel's ephemeral range (32768-60999), so other tests' picks of a
		 * free port cannot race ours */
		l.port_min = (uint16_t)(10000 +
					((unsigned)getpid() * 7 + (unsigned)attempt * 211) % 20000);
		l.port_max = (uint16_t)(l.port_min + 3);
		l.idle_timeout_s = idle_s;
		CHECK_EQ_INT(rtab_init(&h->table, &l), 0);
		CHECK_EQ_INT(relay_fwd_init(&h->fwd, &h->loop, &h->table, listen, n, on_control,
					    on_idle, h),
			     0);
		CHECK_EQ_INT(rtab_alloc(&h->table, FP_A, FP_B, uv_now(&h->loop), &h->relay), 0);
		int r = relay_fwd_open(&h->fwd, h->relay);

		if (r == 0) {
			h->port_a = rtab_port_of(&h->table, h->relay, FP_A);
			h->port_b = rtab_port_of(&h->table, h->relay, FP_B);
			return true;
		}
		CHECK_EQ_INT(r, -EADDRINUSE);
		rtab_free(&h->table, h->relay);
		relay_fwd_close(&h->fwd);
		uv_run(&h->loop, UV_RUN_DEFAULT);
		rtab_destroy(&h->table);
	}
	CHECK(!"no free relay port range");
	return false;
}

static void harness_close(struct harness *h)
{
	relay_fwd_close(&h->fwd);
	CHECK_EQ_INT(uv_run(&h->loop, UV_RUN_DEFAULT), 0);
	CHECK_EQ_INT(uv_loop_close(&h->loop), 0);
	rtab_destroy(&h->table);
}

/* Runs the loop until fd has a datagram or about max_ms passed; recv's result. */
static ssize_t recv_via_loop(struct harness *h, int fd, uint8_t *buf, size_t cap, struct addr *from,
			     int max_ms)
{
	for (int i = 0; i < max_ms; i++) {
		socklen_t l = sizeof(*from);

		uv_run(&h->loop, UV_RUN_NOWAIT);
		ssize_t r = recvfrom(fd, buf, cap, MSG_DONTWAIT, &from->sa, &l);

		if (r >= 0 || errno != EAGAIN)
			return r;
		struct pollfd p[2] = { { .fd = uv_backend_fd(&h->loop), .events = POLLIN },
				       { .fd = fd, .events = POLLIN } };

		poll(p, 2, 1);
	}
	return -1;
}

/* Runs the loop for about ms, so whatever is in flight gets handled. */
static void settle(struct harness *h, int ms)
{
	for (int i = 0; i < ms; i++) {
		uv_run(&h->loop, UV_RUN_NOWAIT);
		struct pollfd p = { .fd = uv_backend_fd(&h->loop), .events = POLLIN };

		poll(&p, 1, 1);
	}
}

static void send_to(int fd, const void *buf, size_t len, const struct addr *to)
{
	CHECK_EQ_INT(sendto(fd, buf, len, 0, &to->sa, addr_len(to)), (ssize_t)len);
}

/* Binds a node's side: probe from its socket to its relay port, and the ack comes back. */
static void bind_side(struct harness *h, int fd, uint64_t fp, uint64_t secret, uint16_t port,
		      int family)
{
	uint8_t probe[PROBE_LEN], buf[64];
	struct addr relay = loopback(family, port), from;

	make_probe(probe, fp, secret);
	send_to(fd, probe, sizeof(probe), &relay);
	CHECK_EQ_INT(recv_via_loop(h, fd, buf, sizeof(buf), &from, 2000), 3);
	CHECK(memcmp(buf, "ack", 3) == 0);
	CHECK(addr_equal(&from, &relay));
}

/* A WireGuard-shaped datagram: type 4 (transport data), three zero bytes, then a pattern. */
static size_t make_wg(uint8_t *buf, size_t len, unsigned seed)
{
	buf[0] = 4;
	buf[1] = buf[2] = buf[3] = 0;
	for (size_t i = 4; i < len; i++)
		buf[i] = (uint8_t)(seed * 131 + i * 7);
	return len;
}

/* a -> relay port A arrives at b from relay port B, byte for byte, and back. */
static void check_both_ways(struct harness *h, int fa, int fb, int fam_a, int fam_b)
{
	static const size_t sizes[] = { 4, 32, 128, 148, 1420, 1452 };
	uint8_t out[2048], in[2048];
	struct addr ra = loopback(fam_a, h->port_a), rb = loopback(fam_b, h->port_b), from;

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t n = make_wg(out, sizes[i], (unsigned)i);

		send_to(fa, out, n, &ra);
		CHECK_EQ_INT(recv_via_loop(h, fb, in, sizeof(in), &from, 2000), (ssize_t)n);
		CHECK(memcmp(in, out, n) == 0);
		CHECK(addr_equal(&from, &rb)); /* b's WireGuard sees the peer at coordinator:B */

		n = make_wg(out, sizes[i], (unsigned)i + 100);
		send_to(fb, out, n, &rb);
		CHECK_EQ_INT(recv_via_loop(h, fa, in, sizeof(in), &from, 2000), (ssize_t)n);
		CHECK(memcmp(in, out, n) == 0);
		CHECK(addr_equal(&from, &ra));
	}
}

static void test_relay_fwd_forwards_both_ways_unchanged(void)
{
	struct harness h;
	struct addr aa, ab;

	if (!harness_init(&h, true, false, 0))
		return;
	int fa = node_socket(AF_INET, &aa), fb = node_socket(AF_INET, &ab);
	uint8_t buf[256];
	struct addr from, ra = loopback(AF_INET, h.port_a);

	/* before binding, nothing passes */
	send_to(fa, buf, make_wg(buf, 64, 1), &ra);
	CHECK_EQ_INT(recv_via_loop(&h, fb, buf, sizeof(buf), &from, 50), -1);
	CHECK_EQ_INT(rtab_get(&h.table, h.relay)->counters.drop_unbound, 1);

	bind_side(&h, fa, FP_A, SECRET_A, h.port_a, AF_INET);
	bind_side(&h, fb, FP_B, SECRET_B, h.port_b, AF_INET);
	CHECK_EQ_INT(h.binds_ok, 2);
	check_both_ways(&h, fa, fb, AF_INET, AF_INET);

	const struct rtab_relay *r = rtab_get(&h.table, h.relay);

	CHECK_EQ_INT(r->counters.fwd_packets_a_to_b, 6);
	CHECK_EQ_INT(r->counters.fwd_packets_b_to_a, 6);
	CHECK_EQ_INT(r->counters.fwd_bytes_a_to_b, 4 + 32 + 128 + 148 + 1420 + 1452);
	CHECK_EQ_INT(h.fwd.counters.tx_datagrams, 12);
	CHECK_EQ_INT(h.fwd.counters.rx_control, 2);
	CHECK(h.fwd.rcvbuf > 0 && h.fwd.sndbuf > 0);
	close(fa);
	close(fb);
	harness_close(&h);
}

static void test_relay_fwd_drops_strangers(void)
{
	struct harness h;
	struct addr aa, ab, as;

	if (!harness_init(&h, true, false, 0))
		return;
	int fa = node_socket(AF_INET, &aa), fb = node_socket(AF_INET, &ab);
	int fs = node_socket(AF_INET, &as);
	uint8_t buf[256], probe[PROBE_LEN];
	struct addr from, ra = loopback(AF_INET, h.port_a), rb = loopback(AF_INET, h.port_b);

	bind_side(&h, fa, FP_A, SECRET_A, h.port_a, AF_INET);
	bind_side(&h, fb, FP_B, SECRET_B, h.port_b, AF_INET);

	/* WireGuard-shaped datagrams to both ports, and bind probes with a forged secret */
	for (int i = 0; i < 10; i++) {
		send_to(fs, buf, make_wg(buf, 100, (unsigned)i), i & 1 ? &ra : &rb);
		make_probe(probe, i & 1 ? FP_A : FP_B, 0xbad);
		send_to(fs, probe, sizeof(probe), i & 1 ? &ra : &rb);
	}
	settle(&h, 50);
	CHECK_EQ_INT(recv(fa, buf, sizeof(buf), MSG_DONTWAIT), -1);
	CHECK_EQ_INT(recv(fb, buf, sizeof(buf), MSG_DONTWAIT), -1);
	CHECK_EQ_INT(recv(fs, buf, sizeof(buf), MSG_DONTWAIT), -1); /* no ack for a forgery */
	const struct rtab_relay *r = rtab_get(&h.table, h.relay);

	CHECK_EQ_INT(r->counters.drop_wrong_source, 10);
	CHECK_EQ_INT(h.binds_refused, 10);
	CHECK_EQ_INT(r->counters.fwd_packets_a_to_b + r->counters.fwd_packets_b_to_a, 0);
	CHECK_EQ_INT(h.fwd.counters.dropped, 10);
	CHECK(addr_equal(&r->side[0].bound, &aa));
	CHECK(addr_equal(&r->side[1].bound, &ab));
	/* the pair is unharmed */
	check_both_ways(&h, fa, fb, AF_INET, AF_INET);
	(void)from;
	close(fa);
	close(fb);
	close(fs);
	harness_close(&h);
}

/* A burst read as one batch goes out as GSO runs, and still arrives as the same datagrams. */
static void test_relay_fwd_batches_keep_datagrams(void)
{
	static const size_t sizes[] = { 100, 100, 100,  100, 100, 60, 1400, 1400, 1400, 200,
					200, 100, 1452, 4,   4,   4,  4,    4,    4,    4 };
	enum { N = sizeof(sizes) / sizeof(sizes[0]) };
	struct harness h;
	struct addr aa, ab, from;
	uint8_t out[N][1500], in[1500];

	if (!harness_init(&h, true, false, 0))
		return;
	int fa = node_socket(AF_INET, &aa), fb = node_socket(AF_INET, &ab);
	struct addr ra = loopback(AF_INET, h.port_a);

	bind_side(&h, fa, FP_A, SECRET_A, h.port_a, AF_INET);
	bind_side(&h, fb, FP_B, SECRET_B, h.port_b, AF_INET);
	uint64_t batches = h.fwd.counters.rx_batches;

	/* all queued at the relay port before the loop runs: one recvmmsg, one flush */
	for (unsigned i = 0; i < N; i++)
		send_to(fa, out[i], make_wg(out[i], sizes[i], i), &ra);
	for (unsigned i = 0; i < N; i++) {
		CHECK_EQ_INT(recv_via_loop(&h, fb, in, sizeof(in), &from, 2000), (ssize_t)sizes[i]);
		CHECK(memcmp(in, out[i], sizes[i]) == 0); /* in order, each intact */
	}
	CHECK_EQ_INT(h.fwd.counters.rx_batches - batches, 1);
	CHECK_EQ_INT(h.fwd.counters.tx_gso_messages, 4); /* 5x100, 3x1400, 2x200, 7x4 */
	CHECK_EQ_INT(h.fwd.counters.tx_gso_fallback, 0);
	CHECK_EQ_INT(rtab_get(&h.table, h.relay)->counters.fwd_packets_a_to_b, N);
	close(fa);
	close(fb);
	harness_close(&h);
}

/* A flood beyond the relay socket's buffer: the kernel's drops are read from SO_RXQ_OVFL. */
static void test_relay_fwd_counts_kernel_drops(void)
{
	enum { FLOOD = 30000 };
	struct harness h;
	struct addr aa;
	uint8_t buf[64];

	if (!harness_init(&h, true, false, 0))
		return;
	int fa = node_socket(AF_INET, &aa);
	struct addr ra = loopback(AF_INET, h.port_a);

	bind_side(&h, fa, FP_A, SECRET_A, h.port_a, AF_INET); /* b unbound: all dropped there */
	uint64_t before = h.fwd.counters.rx_datagrams;
	int sent = 0;

	make_wg(buf, sizeof(buf), 7);
	/* the loop does not run meanwhile, so the relay port's queue fills (4 MiB granted to
	 * root, under 1 KiB a small datagram) and the kernel drops the rest */
	for (int i = 0; i < FLOOD; i++)
		sent += sendto(fa, buf, sizeof(buf), 0, &ra.sa, addr_len(&ra)) == sizeof(buf);
	settle(&h, 200);
	/* SO_RXQ_OVFL travels with a queued datagram: one more carries the final count */
	sent += sendto(fa, buf, sizeof(buf), 0, &ra.sa, addr_len(&ra)) == sizeof(buf);
	settle(&h, 50);
	uint64_t read = h.fwd.counters.rx_datagrams - before;

	printf("# %d sent, %llu read, %llu dropped by the kernel (socket buffer %d bytes)\n", sent,
	       (unsigned long long)read, (unsigned long long)h.fwd.counters.rx_kernel_drops,
	       h.fwd.rcvbuf);
	CHECK_EQ_INT(sent, FLOOD + 1);
	CHECK(h.fwd.counters.rx_kernel_drops > 0);
	CHECK_EQ_INT(read + h.fwd.counters.rx_kernel_drops, sent); /* every datagram accounted */
	CHECK_EQ_INT(rtab_get(&h.table, h.relay)->counters.drop_peer_unbound, read);
	close(fa);
	harness_close(&h);
}

/* a over IPv4, b over IPv6: each relay port has a socket per family. */
static void test_relay_fwd_crosses_families(void)
{
	struct harness h;
	struct addr aa, ab;

	if (!have_ipv6()) {
		printf("# no IPv6 loopback here: the cross-family check cannot run\n");
		CHECK(!"IPv6 loopback is required");
		return;
	}
	if (!harness_init(&h, true, true, 0))
		return;
	int fa = node_socket(AF_INET, &aa), fb = node_socket(AF_INET6, &ab);

	bind_side(&h, fa, FP_A, SECRET_A, h.port_a, AF_INET);
	bind_side(&h, fb, FP_B, SECRET_B, h.port_b, AF_INET6);
	check_both_ways(&h, fa, fb, AF_INET, AF_INET6);
	CHECK_EQ_INT(h.fwd.counters.tx_no_socket, 0);
	close(fa);
	close(fb);
	harness_close(&h);
}

/* b vanishes: forwarding to it draws ICMP port unreachable, which is counted, not spun on. */
static void test_relay_fwd_counts_icmp_errors(void)
{
	struct harness h;
	struct addr aa, ab;

	if (!harness_init(&h, true, false, 0))
		return;
	int fa = node_socket(AF_INET, &aa), fb = node_socket(AF_INET, &ab);
	uint8_t buf[256];
	struct addr ra = loopback(AF_INET, h.port_a);

	bind_side(&h, fa, FP_A, SECRET_A, h.port_a, AF_INET);
	bind_side(&h, fb, FP_B, SECRET_B, h.port_b, AF_INET);
	close(fb);
	/* spaced out: the kernel rate-limits ICMP errors */
	for (int i = 0; i < 3 && h.fwd.counters.icmp_errors == 0; i++) {
		send_to(fa, buf, make_wg(buf, 100, (unsigned)i), &ra);
		settle(&h, 100);
	}
	CHECK(h.fwd.counters.icmp_errors >= 1);
	CHECK(h.fwd.counters.icmp_errors <= 3); /* one per datagram sent at most: no loop */
	CHECK(h.fwd.counters.rx_errors == 0);
	/* the reverse direction and the relay still work once b is back at a new address */
	fb = node_socket(AF_INET, &ab);
	bind_side(&h, fb, FP_B, SECRET_B, h.port_b, AF_INET);
	CHECK_EQ_INT(rtab_get(&h.table, h.relay)->counters.rebinds, 1);
	check_both_ways(&h, fa, fb, AF_INET, AF_INET);
	close(fa);
	close(fb);
	harness_close(&h);
}

static bool port_bindable(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct addr a = loopback(AF_INET, port);
	bool ok = bind(fd, &a.sa, addr_len(&a)) == 0;

	close(fd);
	return ok;
}

static void test_relay_fwd_closes_idle_relays(void)
{
	struct harness h;

	if (!harness_init(&h, true, false, 1))
		return;
	CHECK(!port_bindable(h.port_a));
	/* the check runs every RELAY_FWD_IDLE_CHECK_MS; 1 s idle means gone within ~2 s */
	for (int i = 0; i < 3000 && !h.idle_calls; i += 10)
		settle(&h, 10);
	CHECK_EQ_INT(h.idle_calls, 1);
	CHECK_EQ_INT(h.idle_relay, h.relay);
	CHECK(rtab_get(&h.table, h.relay) == NULL);
	CHECK_EQ_INT(h.table.counters.relays_idle, 1);
	/* its ports are closed at once, so a new relay can have them */
	CHECK(port_bindable(h.port_a));
	CHECK(port_bindable(h.port_b));
	harness_close(&h);
}

/* Explicit teardown (the pair went direct) closes the ports; reopening a new relay works. */
static void test_relay_fwd_teardown_and_reopen(void)
{
	struct harness h;

	if (!harness_init(&h, true, false, 0))
		return;
	CHECK_EQ_INT(relay_fwd_open(&h.fwd, h.relay), -EEXIST);
	CHECK(!port_bindable(h.port_a)); /* and it stayed open */
	relay_fwd_teardown(&h.fwd, h.relay);
	CHECK(rtab_get(&h.table, h.relay) == NULL);
	CHECK(port_bindable(h.port_a));
	uint32_t id;

	CHECK_EQ_INT(rtab_alloc(&h.table, FP_A, FP_B, 0, &id), 0);
	CHECK_EQ_INT(relay_fwd_open(&h.fwd, id), 0);
	CHECK(!port_bindable(rtab_port_of(&h.table, id, FP_A)));
	harness_close(&h);
}

int main(void)
{
	TAP_RUN(test_relay_fwd_forwards_both_ways_unchanged);
	TAP_RUN(test_relay_fwd_drops_strangers);
	TAP_RUN(test_relay_fwd_batches_keep_datagrams);
	TAP_RUN(test_relay_fwd_counts_kernel_drops);
	TAP_RUN(test_relay_fwd_crosses_families);
	TAP_RUN(test_relay_fwd_counts_icmp_errors);
	TAP_RUN(test_relay_fwd_closes_idle_relays);
	TAP_RUN(test_relay_fwd_teardown_and_reopen);
	return tap_done();
}

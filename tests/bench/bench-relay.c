// SPDX-License-Identifier: MIT
/*
 * bench-relay: relayed datagrams per second on one core (issue 8's target: 500k pps of
 * 128-byte datagrams), on loopback.
 *
 *   generator (CPU 0) --sendmmsg--> 127.0.0.1:A  relay_fwd (CPU 1)  127.0.0.1:B --> sink (CPU 0)
 *
 * The generator and the sink are child processes pinned to CPU 0 and use plain sockets;
 * the forwarder is this process, pinned to CPU 1, running relay_fwd on a libuv loop with a
 * relay whose two sides are bound to the generator's and the sink's addresses (binding is
 * not what is measured, so rtab_bind() is called directly). Bounded by time (-t seconds,
 * default 5) and count (-n datagrams, default 100M). Prints what each stage saw, the
 * forwarder's CPU time, and pps per wall second and per CPU second of the forwarder.
 *
 * Usage: bench-relay [-t seconds] [-n count] [-s size]
 */
#include "wgpunch/relay_fwd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define FP_GEN 1
#define FP_SINK 2

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void pin(int cpu)
{
	cpu_set_t set;
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 2) {
		fprintf(stderr, "bench-relay: %ld CPU online: not pinning (numbers mean less)\n",
			n);
		return;
	}
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0)
		perror("bench-relay: sched_setaffinity");
}

static int udp_socket(struct addr *bound)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int big = 8 << 20;
	socklen_t l = sizeof(*bound);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("bench-relay: socket");
		exit(1);
	}
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big)) < 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	memset(bound, 0, sizeof(*bound));
	getsockname(fd, &bound->sa, &l);
	return fd;
}

static void wait_go(int fd)
{
	char c;

	if (read(fd, &c, 1) != 1)
		_exit(1);
}

/* Sends size-byte WireGuard-shaped datagrams to dst until the deadline or count. */
static void generator(int fd, const struct addr *dst, size_t size, double secs, uint64_t count,
		      int go, int result)
{
	static uint8_t data[BATCH][2048];
	static struct mmsghdr m[BATCH];
	static struct iovec iov[BATCH];
	uint64_t sent = 0, failed = 0;

	pin(0);
	for (int i = 0; i < BATCH; i++) {
		memset(data[i], 0xa5, size);
		data[i][0] = 4; /* WireGuard transport data */
		data[i][1] = data[i][2] = data[i][3] = 0;
		iov[i].iov_base = data[i];
		iov[i].iov_len = size;
		m[i].msg_hdr.msg_iov = &iov[i];
		m[i].msg_hdr.msg_iovlen = 1;
		m[i].msg_hdr.msg_name = (void *)&dst->sa;
		m[i].msg_hdr.msg_namelen = addr_len(dst);
	}
	wait_go(go);
	double end = now_s() + secs;

	for (uint64_t round = 0; sent < count; round++) {
		if ((round & 63) == 0 && now_s() >= end)
			break;
		int n = sendmmsg(fd, m, BATCH, 0);

		if (n < 0) {
			failed++;
			continue;
		}
		sent += (uint64_t)n;
	}
	uint64_t r[2] = { sent, failed };

	if (write(result, r, sizeof(r)) != sizeof(r))
		_exit(1);
	_exit(0);
}

/* Counts datagrams until none came for 300 ms once the run is over. */
static void sink(int fd, double secs, int go, int result)
{
	static uint8_t data[BATCH][2048];
	static struct mmsghdr m[BATCH];
	static struct iovec iov[BATCH];
	struct timeval tv = { 0, 300000 };
	uint64_t got = 0, bytes = 0;

	pin(0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (int i = 0; i < BATCH; i++) {
		iov[i].iov_base = data[i];
		iov[i].iov_len = sizeof(data[i]);
		m[i].msg_hdr.msg_iov = &iov[i];
		m[i].msg_hdr.msg_iovlen = 1;
	}
	wait_go(go);
	double end = now_s() + secs;
	int idle = 0;

	/* bounded: the run's end plus one silent timeout; 30 (9 s) if nothing ever came */
	while (idle < (got ? 1 : 30) || (got && now_s() < end)) {
		int n = recvmmsg(fd, m, BATCH, MSG_WAITFORONE, NULL);

		if (n <= 0) {
			idle++;
			continue;
		}
		idle = 0;
		got += (uint64_t)n;
		for (int i = 0; i < n; i++)
			bytes += m[i].msg_len;
	}
	uint64_t r[2] = { got, bytes };

	if (write(result, r, sizeof(r)) != sizeof(r))
		_exit(1);
	_exit(0);
}

struct run {
	struct relay_fwd *fwd;
	uv_timer_t stop;
};

static void on_stop(uv_timer_t *t)
{
	struct run *r = t->data;

	relay_fwd_close(r->fwd);
	uv_close((uv_handle_t *)t, NULL);
}

static pid_t spawn(void (*fn)(void *), void *arg)
{
	pid_t p = fork();

	if (p < 0) {
		perror("bench-relay: fork");
		exit(1);
	}
	if (p == 0)
		fn(arg);
	return p;
}

struct child_args {
	int fd, go[2], result[2];
	struct addr dst;
	size_t size;
	double secs;
	uint64_t count;
};

static void gen_main(void *p)
{
	struct child_args *a = p;

	generator(a->fd, &a->dst, a->size, a->secs, a->count, a->go[0], a->result[1]);
}

static void sink_main(void *p)
{
	struct child_args *a = p;

	sink(a->fd, a->secs, a->go[0], a->result[1]);
}

int main(int argc, char **argv)
{
	double secs = 5;
	uint64_t count = 100000000;
	size_t size = 128;
	int opt;

	while ((opt = getopt(argc, argv, "t:n:s:")) != -1) {
		if (opt == 't')
			secs = atof(optarg);
		else if (opt == 'n')
			count = strtoull(optarg, NULL, 10);
		else if (opt == 's')
			size = strtoul(optarg, NULL, 10);
		else {
			fprintf(stderr, "usage: bench-relay [-t seconds] [-n count] [-s size]\n");
			return 2;
		}
	}
	if (secs <= 0 || secs > 60 || size < 4 || size > 2048) {
		fprintf(stderr, "bench-relay: -t 0-60, -s 4-2048\n");
		return 2;
	}

	/* the relay: two ports from a PID-dependent range, so parallel runs rarely collide */
	struct rtab table;
	struct rtab_limits lim = { 0 };
	uint32_t id;

	/* below the kernel's ephemeral range, so other programs' free-port picks do not race it */
	lim.port_min = (uint16_t)(10000 + ((unsigned)getpid() * 13) % 20000);
	lim.port_max = (uint16_t)(lim.port_min + 1);
	if (rtab_init(&table, &lim) < 0 || rtab_alloc(&table, FP_GEN, FP_SINK, 0, &id) < 0)
		return 1;
	uint16_t port_a = rtab_port_of(&table, id, FP_GEN),
		 port_b = rtab_port_of(&table, id, FP_SINK);
	struct child_args g = { .size = size, .secs = secs, .count = count };
	struct child_args s = { .secs = secs };
	struct addr gen_addr, sink_addr;

	g.fd = udp_socket(&gen_addr);
	s.fd = udp_socket(&sink_addr);
	memset(&g.dst, 0, sizeof(g.dst));
	g.dst.in4.sin_family = AF_INET;
	g.dst.in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	g.dst.in4.sin_port = htons(port_a);
	if (pipe(g.go) < 0 || pipe(g.result) < 0 || pipe(s.go) < 0 || pipe(s.result) < 0)
		return 1;
	pid_t gp = spawn(gen_main, &g), sp = spawn(sink_main, &s);

	close(g.fd);
	close(s.fd);
	pin(1);

	uv_loop_t loop;
	struct relay_fwd fwd;
	struct addr listen;
	struct run run = { .fwd = &fwd };

	memset(&listen, 0, sizeof(listen));
	listen.in4.sin_family = AF_INET;
	listen.in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	uv_loop_init(&loop);
	int r = relay_fwd_init(&fwd, &loop, &table, &listen, 1, NULL, NULL, NULL);

	if (r == 0)
		r = relay_fwd_open(&fwd, id);
	if (r < 0) {
		fprintf(stderr, "bench-relay: relay ports %u, %u: %s\n", port_a, port_b,
			strerror(-r));
		kill(gp, SIGKILL);
		kill(sp, SIGKILL);
		waitpid(gp, NULL, 0);
		waitpid(sp, NULL, 0);
		return 1;
	}
	rtab_bind(&table, port_a, FP_GEN, &gen_addr, 0);
	rtab_bind(&table, port_b, FP_SINK, &sink_addr, 0);

	uv_timer_init(&loop, &run.stop);
	run.stop.data = &run;
	/* 200 ms past the generator's deadline, so what is queued gets forwarded */
	uv_timer_start(&run.stop, on_stop, (uint64_t)(secs * 1000) + 200, 0);

	struct rusage ru0, ru1;
	struct timespec cpu0, cpu1;

	getrusage(RUSAGE_SELF, &ru0);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu0);
	double t0 = now_s();

	if (write(g.go[1], "g", 1) != 1 || write(s.go[1], "g", 1) != 1)
		return 1;
	uv_run(&loop, UV_RUN_DEFAULT);
	double wall = now_s() - t0 - 0.2;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu1);
	getrusage(RUSAGE_SELF, &ru1);
	int closed = uv_loop_close(&loop);

	uint64_t gres[2] = { 0 }, sres[2] = { 0 };

	if (read(g.result[0], gres, sizeof(gres)) != sizeof(gres) ||
	    read(s.result[0], sres, sizeof(sres)) != sizeof(sres))
		fprintf(stderr, "bench-relay: a child did not report\n");
	waitpid(gp, NULL, 0);
	waitpid(sp, NULL, 0);

	const struct relay_fwd_counters *c = &fwd.counters;
	double cpu =
		(double)(cpu1.tv_sec - cpu0.tv_sec) + (double)(cpu1.tv_nsec - cpu0.tv_nsec) / 1e9;
	double user = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
		      (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6;
	double sys = (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
		     (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;

	printf("datagram size        %zu bytes, %.1f s, batch %d\n", size, wall, RELAY_FWD_BATCH);
	printf("generator sent       %llu (%.0f pps, %llu failed sendmmsg)\n",
	       (unsigned long long)gres[0], (double)gres[0] / wall, (unsigned long long)gres[1]);
	printf("relay received       %llu in %llu batches (%.1f per batch)\n",
	       (unsigned long long)c->rx_datagrams, (unsigned long long)c->rx_batches,
	       c->rx_batches ? (double)c->rx_datagrams / (double)c->rx_batches : 0.0);
	printf("relay forwarded      %llu\n", (unsigned long long)c->tx_datagrams);
	printf("sink received        %llu\n", (unsigned long long)sres[0]);
	printf("drops                kernel at relay port %llu, out buffer full %llu, "
	       "send errors %llu, table %llu, lost after forwarding %lld\n",
	       (unsigned long long)c->rx_kernel_drops, (unsigned long long)c->tx_eagain,
	       (unsigned long long)c->tx_errors, (unsigned long long)c->dropped,
	       (long long)(c->tx_datagrams - sres[0]));
	printf("forwarder CPU        %.2f s (user %.2f, sys %.2f), %.0f%% of the run\n", cpu, user,
	       sys, 100 * cpu / wall);
	printf("forwarded pps        %.0f per wall second, %.0f per forwarder CPU second\n",
	       (double)c->tx_datagrams / wall, cpu > 0 ? (double)c->tx_datagrams / cpu : 0.0);
	rtab_destroy(&table);
	if (closed != 0) {
		fprintf(stderr, "bench-relay: uv_loop_close: %d\n", closed);
		return 1;
	}
	return c->tx_datagrams > 0 && sres[0] > 0 ? 0 : 1;
}

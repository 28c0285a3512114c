/* SPDX-License-Identifier: MIT */
/*
 * hs_budget - how many handshakes the coordinator does a second, and which ones, so that
 * the budget follows what the machine can do and junk can never starve a real node.
 * Pure: time is passed in (now_ms, monotonic), the costs are measured by the caller (the
 * helpers below take a clock callback); no I/O, no allocation, no logging.
 *
 * Sizing. A responder handshake costs hs_cost_ns of one core (4 X25519 and 1 fixed-base
 * X25519 with session.c today: the static key's fixed-base one is done once, struct
 * session_responder; the measurement runs that same path, so the budget follows it).
 * Given a share of a core (cpu_permille), the budget is
 *	rate  = cpu_permille / 1000 * 1e9 / hs_cost_ns   handshakes a second
 *	burst = rate * burst_ms / 1000
 * and cookie replies get their own share (cookie_cpu_permille, cookie_cost_ns), as one
 * costs about a hundredth of a handshake. A fleet of N nodes re-keying every T seconds needs
 * N / T handshakes a second: with rate 10,000 (50 us a handshake, half a core) and T = 120,
 * 1.2 million nodes; after a restart, N / rate seconds to see them all again.
 *
 * The decision for one HS_INIT whose mac1 is good (check that first, cookie.h), given
 * whether its mac2 proved the source address:
 *  - Not under load: everything is processed while the global bucket holds more than the
 *    reserve (burst * (1000 - unproven_permille) / 1000): unproven handshakes may use only
 *    the top unproven_permille of the burst, the rest is kept for proven ones.
 *  - An unproven handshake that finds the bucket at the reserve, or a proven one that finds
 *    it empty, puts the coordinator under load for hold_ms (renewed while it lasts).
 *  - Under load: a proven handshake is processed while the global bucket has a token;
 *    an unproven one gets a cookie reply while the cookie bucket has one, else is dropped.
 * So junk from forged sources (which can only ever be unproven: it cannot receive the
 * cookie) spends at most the top of the burst once per hold_ms and then only cookie replies
 * (smaller than the HS_INIT: no amplification), and a node that follows the cookie protocol
 * is processed one round trip later from the reserve. Proven floods (sources that do receive)
 * are the per-source limiter's job (ratelimit.h), applied to proven handshakes only, so that a
 * forged source can never charge a victim's bucket. For the same reason cookie replies have
 * only this global bound and none per source: a per-source one would let a forged flood with
 * the victim's address spend the victim's cookies. A node is sure to get its cookie within
 * one try only while the cookie budget covers the flood; beyond it, each try succeeds with
 * probability cookie rate / flood rate.
 */
#ifndef WGPUNCH_HS_BUDGET_H
#define WGPUNCH_HS_BUDGET_H

#include <stdbool.h>
#include <stdint.h>

#include "wgpunch/counters.h"
#include "wgpunch/ratelimit.h"

struct hs_budget_input {
	uint64_t hs_cost_ns;          /* one responder handshake, measured */
	uint64_t cookie_cost_ns;      /* one mac1 check and cookie reply, measured */
	uint32_t cpu_permille;        /* share of a core for handshakes; default 500 */
	uint32_t cookie_cpu_permille; /* share of a core for cookie replies; default 250 */
	uint32_t unproven_permille;   /* of the burst, for unproven handshakes; default 250 */
	uint32_t burst_ms;            /* the burst is this much of the rate; default 1000 */
	uint32_t hold_ms;             /* under load lasts this long; default 1000 */
};

/* The defaults above, with the two costs. */
void hs_budget_input_default(struct hs_budget_input *in, uint64_t hs_cost_ns,
			     uint64_t cookie_cost_ns);

struct hs_budget_params {
	struct bucket_rate all;    /* handshakes processed */
	uint32_t reserve;          /* tokens of `all` unproven handshakes may not take */
	struct bucket_rate cookie; /* cookie replies */
	uint32_t hold_ms;
};

/* Pure arithmetic: 0, or -EINVAL (a cost of 0, a share of 0 or above 1000 per mille, a
 * burst_ms of 0). Rates are at least 1 a second and at most UINT32_MAX. */
int hs_budget_params_from_input(struct hs_budget_params *p, const struct hs_budget_input *in);

#define HS_BUDGET_COUNTERS(X)                                                                 \
	X(hs_processed_proven, "handshakes processed whose mac2 proved the source")           \
	X(hs_processed_unproven, "handshakes processed on mac1 alone (not under load)")       \
	X(hs_cookie_replies, "unproven handshakes answered with a cookie reply (under load)") \
	X(hs_dropped_budget, "proven handshakes dropped: the handshake budget is spent")      \
	X(hs_dropped_cookie_budget,                                                           \
	  "unproven handshakes dropped: the cookie reply budget is spent")                    \
	X(hs_load_episodes, "times the coordinator went under load")
struct hs_budget_counters {
	HS_BUDGET_COUNTERS(COUNTER_FIELD)
};
COUNTER_TABLE_DECLARE(hs_budget_counters);

struct hs_budget {
	struct hs_budget_params p;
	struct bucket all, cookie;
	uint64_t load_until_ms;
	bool loaded; /* went under load at least once: load_until_ms is meaningful */
	struct hs_budget_counters ctr;
};

enum hs_action {
	HS_PROCESS = 0, /* run the Noise responder */
	HS_SEND_COOKIE, /* answer a cookie reply (cookie_reply_make), nothing else */
	HS_DROP,        /* answer nothing */
};

/* Full buckets at now_ms. */
void hs_budget_init(struct hs_budget *b, const struct hs_budget_params *p, uint64_t now_ms);
/* For an HS_INIT whose mac1 is valid; charges the bucket it draws from. */
enum hs_action hs_budget_decide(struct hs_budget *b, bool mac2_valid, uint64_t now_ms);
bool hs_budget_under_load(const struct hs_budget *b, uint64_t now_ms);
/*
 * Takes a token from the cookie reply budget, for a cookie reply decided after the Noise
 * message authenticated (a handshake that would create or move state without a mac2 proof).
 * true when the reply may be sent; counted as hs_cookie_replies or hs_dropped_cookie_budget.
 */
bool hs_budget_take_cookie(struct hs_budget *b, uint64_t now_ms);

/* ---- measuring the costs (the shell calls these once at start) ---- */

/* A monotonic clock in nanoseconds (uv_hrtime() in the shell; a fake one in tests). */
typedef uint64_t (*hs_budget_clock_fn)(void *arg);

/*
 * Runs work(work_arg) n times (n >= 5) in 5 batches and gives the median batch's cost per
 * call in ns (at least 1): the median, not the fastest, because the coordinator shares its
 * machine and must not promise more than it can keep. Returns 0 or -EINVAL.
 */
int hs_budget_measure(void (*work)(void *), void *work_arg, unsigned n, hs_budget_clock_fn clock,
		      void *clock_arg, uint64_t *ns);
/* One Noise IK responder handshake with session.c (read message 1, write message 2, split),
 * on fixed test keys. Returns 0 or -errno. */
int hs_budget_measure_responder(unsigned n, hs_budget_clock_fn clock, void *clock_arg,
				uint64_t *ns);
/* One mac1 check and one cookie reply over a 148-byte message (cookie.h). */
int hs_budget_measure_cookie(unsigned n, hs_budget_clock_fn clock, void *clock_arg, uint64_t *ns);

#endif

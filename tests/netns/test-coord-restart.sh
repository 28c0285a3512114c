#!/bin/bash
# SPDX-License-Identifier: MIT
# The coordinator restarts and forgets every session and registration. A node learns it from the
# SESSION_UNKNOWN answer to its next DATA (the 20 s refresh at the latest) and re-handshakes
# after a random 0-1 s; both nodes must be registered again and punched again by the new
# coordinator, while the tunnel keeps working (WireGuard needs no coordinator once it has its
# endpoints). Then the coordinator is stopped for good and node B restarts alone: its
# handshakes go unanswered and it keeps retrying with backoff, without exiting or hammering.
set -u
. "$(dirname "$0")/lib.sh"

restart_registered()
{
	tb_json coord "d['nodes'] == 2 and d['counters']['register_accepted'] >= 2 and \
		d['counters']['punch_pairs'] >= 1" >/dev/null
}

coord_gone()
{
	! tb_alive "$1"
}

tb_init
tb_pair cone cone
tb_assert_tunnel a b 20

old=$TB_COORD_PID
kill -TERM "$old"
tb_wait_for 5 coord_gone "$old" || tb_fail "the coordinator did not stop on SIGTERM"
tb_log "coordinator stopped; starting a new one with the same key"
tb_coord
t0=${EPOCHREALTIME/./}
tb_wait_for 45 restart_registered ||
	tb_fail "the nodes did not register with the restarted coordinator within 45 s"
tb_log "both nodes registered and punched again after $(((${EPOCHREALTIME/./} - t0) / 1000)) ms"
tb_json coord "d['counters']['session_unknown_sent'] >= 1" >/dev/null ||
	tb_fail "no SESSION_UNKNOWN was sent: the nodes did not notice the restart the documented way"
tb_node_session_up a || tb_fail "a has no session with the restarted coordinator"
tb_node_session_up b || tb_fail "b has no session with the restarted coordinator"
tb_ping a b || tb_fail "no ping from a to b after the coordinator restart"
tb_ping b a || tb_fail "no ping from b to a after the coordinator restart"

# No coordinator at all: node b restarts and must keep trying, not exit.
kill -TERM "$TB_COORD_PID"
tb_wait_for 5 coord_gone "$TB_COORD_PID" || tb_fail "the coordinator did not stop on SIGTERM"
kill -TERM "$TB_NODE_PID_b"
tb_wait_for 5 coord_gone "$TB_NODE_PID_b" || tb_fail "node b did not stop on SIGTERM"
: >"$TB_DIR/b.log"
tb_node b
sleep 4
tb_alive "$TB_NODE_PID_b" || tb_fail "node b exited while the coordinator was unreachable"
tb_json b "all(c.get('state') != 'up' for c in d['coordinators'])" >/dev/null ||
	tb_fail "node b claims a session with a coordinator that is gone"
sent=$(tb_json b "d['counters']['handshakes_sent']") || tb_fail "no status from node b"
# Three tries a second apart, then doubling, each +-25 % jitter: 4 or 5 in 4 s. Far more means
# no backoff.
[ "$sent" -ge 2 ] && [ "$sent" -le 6 ] ||
	tb_fail "node b sent $sent handshakes in 4 s to an absent coordinator (expected 2-6)"
tb_log "node b sent $sent handshakes in 4 s to an absent coordinator and keeps running"
tb_pass "coordinator restart: nodes re-register; an absent coordinator is retried with backoff"

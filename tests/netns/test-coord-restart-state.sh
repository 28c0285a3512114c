#!/bin/bash
# SPDX-License-Identifier: MIT
# A planned coordinator restart with state_file: SIGTERM writes the sessions to the file (mode
# 0600), the new process reads it, removes it, and the nodes carry on as if nothing happened:
# both stay registered on their old sessions (their next REGISTER is accepted), no handshake,
# no SESSION_UNKNOWN, no new handshake on either node. The tunnel works throughout. (That the
# restored registry punches a pair is test-coord's test_coord_state_file_keeps_sessions.)
set -u
. "$(dirname "$0")/lib.sh"

coord_gone()
{
	! tb_alive "$1"
}

refreshed()
{
	tb_json coord "d['counters']['register_accepted'] >= 2" >/dev/null
}

tb_init
tb_side a cone
tb_side b cone
tb_peers a b
state=$TB_DIR/coord.state
tb_coord "state_file = $state"
tb_node a
tb_node b
tb_assert_tunnel a b 20
hs_a=$(tb_json a "d['counters']['handshakes_sent']") || tb_fail "no status from a"
hs_b=$(tb_json b "d['counters']['handshakes_sent']") || tb_fail "no status from b"

old=$TB_COORD_PID
kill -TERM "$old"
tb_wait_for 5 coord_gone "$old" || tb_fail "the coordinator did not stop on SIGTERM"
[ -f "$state" ] || tb_fail "no state file after SIGTERM"
[ "$(stat -c %a "$state")" = 600 ] || tb_fail "state file mode $(stat -c %a "$state"), not 600"
tb_coord "state_file = $state"
[ ! -e "$state" ] || tb_fail "the state file was not removed once read"
tb_json coord "d['nodes'] == 2" >/dev/null || tb_fail "the registry did not come back"
t0=${EPOCHREALTIME/./}
tb_wait_for 30 refreshed || tb_fail "the nodes' REGISTERs on their old sessions were not accepted"
tb_log "both nodes refreshed on their old sessions $(((${EPOCHREALTIME/./} - t0) / 1000)) ms after the restart"
tb_json coord "d['counters']['hs_accepted'] == 0 and d['counters']['session_unknown_sent'] == 0" \
	>/dev/null || tb_fail "the restart cost handshakes or SESSION_UNKNOWNs: $(tb_json coord "d['counters']")"
[ "$(tb_json a "d['counters']['handshakes_sent']")" = "$hs_a" ] || tb_fail "a handshook again"
[ "$(tb_json b "d['counters']['handshakes_sent']")" = "$hs_b" ] || tb_fail "b handshook again"
tb_node_session_up a || tb_fail "a has no session after the restart"
tb_ping a b || tb_fail "no ping from a to b after the restart"
tb_ping b a || tb_fail "no ping from b to a after the restart"
tb_pass "coordinator restart with state_file: sessions kept, no handshake, tunnel up"

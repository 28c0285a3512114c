#!/bin/bash
# SPDX-License-Identifier: MIT
# Finding 2 of issue 7, targeted lockout: junk HS_INITs carrying a victim NAT's own source
# address (random ports), well above the 100 a second that locked out every node behind it,
# half with a valid mac1 (anyone knows the coordinator's key), half with a wrong one. The two
# nodes behind that NAT still get a session within 2 s of starting, and one of them connects
# to a peer elsewhere, all while the flood goes on.
set -u
. "$(dirname "$0")/lib.sh"
tb_need python3

RATE=${RATE:-300}  # junk a second, of each kind
SECONDS_FLOOD=25

tb_init
tb_wgattack_bin
tb_router rv cone # the victim NAT
tb_host v1 rv
tb_host v2 rv
tb_wg_up v1
tb_wg_up v2
tb_side b cone
tb_public_host x # the attacker
tb_peers v1 b
tb_wg_peer v2 b
tb_coord

victim=${TB_WAN[rv]}
for kind in "" --bad-mac1; do
	tb_bg "$TB_DIR/flood$kind.log" x "$WGATTACK" flood --to "$TB_COORD_IP:$TB_COORD_PORT" \
		--coord-pub "$TB_COORD_PUB" --src "$victim" --rate "$RATE" \
		--seconds "$SECONDS_FLOOD" $kind
	flooders+=("$TB_LASTPID")
done
sleep 2

# start_timed HOST: starts HOST's node; fails unless its session is up within 2 s.
start_timed()
{
	local t0=${EPOCHREALTIME/./} ms

	tb_node "$1"
	tb_wait_for 2 tb_node_session_up "$1" ||
		tb_fail "node $1 behind the flooded NAT has no session 2 s after starting"
	ms=$(((${EPOCHREALTIME/./} - t0) / 1000))
	[ "$ms" -le 2000 ] || tb_fail "node $1 has its session only $ms ms after starting"
	tb_log "node $1 (behind $victim): session up $ms ms after starting, under the flood"
}
start_timed v1
start_timed v2
tb_node b
tb_assert_tunnel v1 b 20
for pid in "${flooders[@]}"; do
	tb_alive "$pid" || tb_fail "the flood ended before the tunnel was checked (too short)"
done
for pid in "${flooders[@]}"; do
	wait "$pid" || tb_fail "a flooder failed"
done
cat "$TB_DIR"/flood*.log >&2
tb_log "coordinator counters: $(tb_json coord "d.get('counters')")"
tb_node_session_up v1 && tb_node_session_up v2 || tb_fail "a session behind $victim went down"
tb_pass "2 x $RATE junk HS_INIT/s from $victim: its nodes got sessions within 2 s, a pair connected"

#!/bin/bash
# SPDX-License-Identifier: MIT
# Finding 5 of issue 7, amplification through PUNCH fan-out: a group of colluding key holders
# (throw-away keys that all list each other; no authorized_keys) sends authentic DATA (REGISTER
# with RESYNC) and authentic probes of its sessions from a victim's forged address. The victim
# must not receive more than was sent in its name (ratio <= 1, printed), and the ordered punch
# of a legitimate pair behind an open router (which needs the pending table) still works.
set -u
. "$(dirname "$0")/lib.sh"
tb_need python3

KEYS=${KEYS:-50}
RATE=${RATE:-600} # forged datagrams a second
SECONDS_ATTACK=12

tb_init
tb_wgattack_bin
tb_side a open
tb_side b cone
tb_public_host x # the colluders
tb_public_host v # the victim
tb_peers a b
tb_coord

tb_bg "$TB_DIR/sink.log" v "$WGATTACK" sink --from "$TB_COORD_IP" --seconds $((SECONDS_ATTACK + 12))
sink=$TB_LASTPID
tb_wait_for 5 grep -q READY "$TB_DIR/sink.log" || tb_fail "the victim's sink did not start"
tb_bg "$TB_DIR/collude.log" x "$WGATTACK" collude --coord "$TB_COORD_IP:$TB_COORD_PORT" \
	--coord-pub "$TB_COORD_PUB" --keys "$KEYS" --victim "${TB_ADDR[v]}:$TB_WG_PORT" \
	--seconds "$SECONDS_ATTACK" --rate "$RATE"
colluders=$TB_LASTPID
tb_wait_for 20 grep -q "keys have a session" "$TB_DIR/collude.log" ||
	tb_fail "the colluders did not get their sessions"
grep "keys have a session" "$TB_DIR/collude.log" >&2

tb_node a
tb_node b
tb_assert_tunnel a b 20
tb_assert_endpoint a b
tb_assert_endpoint b a
tb_json a "d['coordinators'][0]['filter'] == 'poisonable'" >/dev/null ||
	tb_fail "the filter test did not find the open router of A poisonable"
tb_alive "$colluders" || tb_fail "the attack ended before the pair was checked (too short)"
wait "$colluders" || tb_fail "the colluders failed: $(cat "$TB_DIR/collude.log")"
wait "$sink" || tb_fail "the sink failed"
cat "$TB_DIR/collude.log" "$TB_DIR/sink.log" >&2

sent=$(awk '$1 == "SENT_BYTES" { print $2 }' "$TB_DIR/collude.log")
recv=$(awk '$1 == "RECV_BYTES" { print $2 }' "$TB_DIR/sink.log")
[ -n "$sent" ] && [ "$sent" -gt 0 ] && [ -n "$recv" ] || tb_fail "no byte counts"
ratio=$(awk -v r="$recv" -v s="$sent" 'BEGIN { printf "%.4f", r / s }')
log_kb=$(($(stat -c %s "$TB_DIR/coord.log") / 1024))
tb_log "amplification: the victim received $recv bytes for $sent sent in its name: x$ratio;" \
	"coordinator log $log_kb kB"
tb_log "coordinator counters: $(tb_json coord "d.get('counters')")"
[ "$recv" -le "$sent" ] || tb_fail "amplification x$ratio: $recv bytes at the victim for $sent"
[ "$log_kb" -le 2048 ] || tb_fail "the coordinator wrote $log_kb kB of log during the attack"
tb_pass "$KEYS colluders: x$ratio at the victim ($recv / $sent bytes); the open-router pair" \
	"connects"

#!/bin/bash
# SPDX-License-Identifier: MIT
# Finding 6 of issue 7: a captured HS_INIT replayed once the node's registry entry is gone.
# Node A's handshakes are captured; A stops; its HS_INITs are replayed (from A's own public
# ip:port and from the attacker) while the coordinator still has A's last timestamp, and again
# after a restart of the coordinator, which knows no timestamp at all. Neither time may the
# coordinator answer with HS_RESP or make a registry entry: before the restart the timestamp
# is not newer, after it the key is unknown and must prove its source (mac2) first.
set -u
. "$(dirname "$0")/lib.sh"
tb_need python3

tb_init
tb_wgattack_bin
tb_side a cone
tb_side b cone
tb_public_host x # the attacker
tb_peers a b

tb_coord_host
tb_capture coord "$TB_DIR/capture.txt" 30
tb_coord
tb_node a
tb_node b
tb_assert_tunnel a b 20
kill "$TB_CAPTURE_PID" 2>/dev/null

wan=${TB_WAN[ra]}
# HS_INIT: version 2, type 1, 148 bytes (296 hex digits).
awk -v src="$wan" '$1 == "in" && $2 == src && $5 == 51900 && substr($6, 1, 4) == "0201" &&
	length($6) == 296 { print $3, $5, $6 }' "$TB_DIR/capture.txt" >"$TB_DIR/hs.txt"
n_hs=$(wc -l <"$TB_DIR/hs.txt")
[ "$n_hs" -ge 1 ] || tb_fail "captured no HS_INIT from A"
tb_log "captured $n_hs HS_INIT from A"

kill "$TB_NODE_PID_a"
tb_wait_for 5 bash -c "! kill -0 $TB_NODE_PID_a 2>/dev/null" || tb_fail "node A did not stop"

# nodes: how many nodes the coordinator's registry holds.
nodes()
{
	tb_json coord "str(d['nodes'])"
}

# replay_and_check WHEN: replays A's HS_INITs from two sources; no HS_RESP, no new entry.
replay_and_check()
{
	local before out src

	before=$(nodes) || tb_fail "no status from the coordinator ($1)"
	tb_capture coord "$TB_DIR/answers-$1.txt" 10
	for src in "$wan" "${TB_ADDR[x]}:40000"; do
		out=$(tb_exec x "$WGATTACK" replay --src "$src" --to "$TB_COORD_IP" \
			--ports "$TB_COORD_PORT" "$TB_DIR/hs.txt") || tb_fail "replay failed: $out"
		tb_log "$1: $out"
	done
	sleep 2
	kill "$TB_CAPTURE_PID" 2>/dev/null
	n_resp=$(awk -v c="$TB_COORD_IP" '$1 == "out" && $2 == c && substr($6, 1, 4) == "0202"' \
		"$TB_DIR/answers-$1.txt" | wc -l)
	n_cookie=$(awk -v c="$TB_COORD_IP" '$1 == "out" && $2 == c && substr($6, 1, 4) == "0207"' \
		"$TB_DIR/answers-$1.txt" | wc -l)
	tb_log "$1: the coordinator answered $n_resp HS_RESP and $n_cookie COOKIE_REPLY;" \
		"registry $before nodes before, $(nodes) after"
	[ "$n_resp" = 0 ] || tb_fail "$1: replayed HS_INITs got $n_resp HS_RESP"
	[ "$(nodes)" -le "$before" ] || tb_fail "$1: replayed HS_INITs made a registry entry"
}

replay_and_check "A stopped, timestamp known"

kill "$TB_COORD_PID"
tb_wait_for 5 bash -c "! kill -0 $TB_COORD_PID 2>/dev/null" ||
	tb_fail "the coordinator did not stop"
rm -f "$TB_DIR/coord.sock"
tb_coord
# B comes back (at its next REGISTER, within its 20 s refresh), A cannot: the registry then
# holds exactly B.
tb_wait_for 45 tb_json coord "d['nodes'] == 1" >/dev/null ||
	tb_fail "node B did not register again after the restart"
replay_and_check "after a restart"
[ "$(nodes)" = 1 ] || tb_fail "the registry holds $(nodes) nodes, expected B only"
tb_pass "$n_hs captured HS_INITs replayed after A stopped and after a restart: no HS_RESP, no entry"

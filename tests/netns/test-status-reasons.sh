#!/bin/bash
# SPDX-License-Identifier: MIT
# The status explains why a peer is not connected (docs/status-json.md, "Reasons"), for each
# reason this test bed can produce, all in one bed:
#   e (cone) lists c, its node's coordinator line names a port nothing listens on:
#                                            no_coordinator
#   c (cone) lists d and x; d runs a node but does not list c, x runs none (not registered):
#                                            peer_not_at_coordinator for both, with one text
#                                            (the node cannot tell the two apart, and must not)
#   a, b (symmetric) list each other; a has relay = no, b the default:
#                                            attempt_running while they try, then
#                                            per_destination_relay_off (a), _no_relay (b)
# The JSON fields are checked, and the human table: a "why:" line with the same text, in colour
# only on a terminal and never with NO_COLOR.
set -u
. "$(dirname "$0")/lib.sh"
tb_need python3 script

# reason HOST PEER: the reason field of PEER's entry in HOST's status.
reason()
{
	tb_peer_status "$1" "$2" reason
}

# has_reason HOST PEER REASON
has_reason()
{
	[ "$(reason "$1" "$2")" = "$3" ]
}

tb_init
tb_side a symmetric
tb_side b symmetric
tb_peers a b
tb_side c cone
tb_side d cone
tb_side x cone
tb_side e cone
tb_wg_peer c d
tb_wg_peer c x
tb_wg_peer d e # d lists someone, only not c
tb_wg_peer e c
tb_coord
tb_node a "relay = no"
tb_node b
tb_node c
tb_node d
# e: the coordinator's key, but a port with nothing behind it.
tb_wgpunch_bin
{
	echo "[node]"
	echo "interface = ${TB_WGIF[e]}"
	echo "coordinator = $TB_COORD_IP:$((TB_COORD_PORT + 90)) $TB_COORD_PUB"
	echo "backend = userspace"
	echo "control_socket = $TB_DIR/e.sock"
} >"$TB_DIR/e.ini"
tb_bg "$TB_DIR/e.log" e "$WGPUNCH" -c "$TB_DIR/e.ini"
TB_NODE_PID_e=$TB_LASTPID

for h in a b c d; do
	tb_wait_for 10 tb_node_session_up "$h" || tb_fail "node $h has no coordinator session"
done

# -- no coordinator
tb_wait_for 10 has_reason e c no_coordinator ||
	tb_fail "e shows reason '$(reason e c)' for c, expected no_coordinator"
t=$(tb_peer_status e c reason_text)
[ "$t" = "no coordinator session is up" ] || tb_fail "e's reason text for c: '$t'"
tb_log "e -> c: $t"

# -- attempt running (the symmetric pair tries its one candidate for 6 s)
# attempt_entry: a's entry for b, saved when it shows an attempt (one status read: it lasts 6 s).
attempt_entry()
{
	tb_json a "[p for p in d['peers'] if p['reason'] == 'attempt_running'][0]" \
		>"$TB_DIR/attempt.json"
}
tb_wait_for 20 attempt_entry ||
	tb_fail "a never showed attempt_running for b (last: '$(reason a b)')"
python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))
c = p["reason_candidate"]
assert c["path"] == "direct" and c["index"] == 1 and c["of"] >= 1 and ":" in c["endpoint"], p
assert isinstance(p["reason_since"], (int, float)) and p["reason_since"] >= 0, p
assert p["reason_text"].startswith("a punch attempt is running since "), p
assert c["endpoint"] in p["reason_text"], p' "$TB_DIR/attempt.json" ||
	tb_fail "a's attempt entry for b is wrong: $(cat "$TB_DIR/attempt.json")"
tb_log "a -> b: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["reason_text"])' \
	"$TB_DIR/attempt.json")"

# -- not at any coordinator: d does not list c, x is not registered at all
for p in d x; do
	tb_wait_for 20 has_reason c "$p" peer_not_at_coordinator ||
		tb_fail "c shows reason '$(reason c "$p")' for $p, expected peer_not_at_coordinator"
done
td=$(tb_peer_status c d reason_text)
tx=$(tb_peer_status c x reason_text)
[ "$td" = "$tx" ] || tb_fail "c tells an unlisting peer from an absent one: '$td' / '$tx'"
case $td in
*"not registered"*"does not list this node"*"cannot tell which"*) ;;
*) tb_fail "c's reason text says too little: '$td'" ;;
esac
tb_log "c -> d, x: $td"
# d is registered and lists e, which c also cannot see: c learned nothing about d.
tb_json coord "d['nodes'] == 4" >/dev/null || tb_fail "the coordinator does not hold a-d"

# -- per destination on both sides: after the attempt, relay off (a) or no relay (b)
tb_wait_for 30 has_reason a b per_destination_relay_off ||
	tb_fail "a shows reason '$(reason a b)' for b, expected per_destination_relay_off"
tb_wait_for 30 has_reason b a per_destination_no_relay ||
	tb_fail "b shows reason '$(reason b a)' for a, expected per_destination_no_relay"
ta=$(tb_peer_status a b reason_text)
tb=$(tb_peer_status b a reason_text)
case $ta in *"relay = no"*) ;; *) tb_fail "a's text does not say the relay is off: '$ta'" ;; esac
case $tb in *"no relay was offered"*) ;; *) tb_fail "b's text: '$tb'" ;; esac
tb_log "a -> b: $ta"
tb_log "b -> a: $tb"

# -- the table: the same words on a "why:" line; colour only on a terminal, not with NO_COLOR
out=$(tb_status c) || tb_fail "wgpunch status of c failed"
echo "$out" | grep -qF "why: $td [peer_not_at_coordinator]" ||
	tb_fail "c's table lacks the reason line: $out"
case $out in *$'\033'*) tb_fail "colour codes in c's table on a pipe" ;; esac
tb_log "c's table:"$'\n'"$out"
sock=$TB_DIR/c.sock
out=$(script -qec "$WGPUNCH status -s $sock" /dev/null) || tb_fail "status on a terminal failed"
case $out in *$'\033[33m'*) ;; *) tb_fail "no colour in c's table on a terminal: $out" ;; esac
out=$(NO_COLOR=1 script -qec "$WGPUNCH status -s $sock" /dev/null) ||
	tb_fail "status with NO_COLOR failed"
case $out in *$'\033'*) tb_fail "colour codes in c's table with NO_COLOR set" ;; esac
echo "$out" | grep -qF "[peer_not_at_coordinator]" || tb_fail "no reason with NO_COLOR: $out"

for h in a b c d e; do
	pid=TB_NODE_PID_$h
	tb_alive "${!pid}" || tb_fail "node $h exited"
done
tb_pass "every reason the bed can produce is shown, in the JSON and the table"

#!/bin/bash
# SPDX-License-Identifier: MIT
# Finding 1 of issue 7, generically: an on-path observer captures everything node A sends to
# the coordinator (handshakes, DATA, probes to P and P + 1, filter echoes) and replays every
# datagram, unchanged, to every coordinator port, from several sources: its own address, a
# forged address, A's public IP with another port, and A's own public ip:port. None of it may
# change what a peer is told or what A believes its mapping is: B's WireGuard keeps A's
# endpoint, the tunnel still pings, A's mapping stays, and the attacker's addresses show nowhere.
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
tb_capture coord "$TB_DIR/capture.txt" 40
tb_coord
tb_node a
tb_node b
tb_assert_tunnel a b 20
tb_wait_node_ready a 10 || tb_fail "node A never became ready"
# Another probe round and some keepalives into the capture.
sleep 3
kill "$TB_CAPTURE_PID" 2>/dev/null

wan=${TB_WAN[ra]}
awk -v src="$wan" -v dst="$TB_COORD_IP" \
	'$1 == "in" && $2 == src && $4 == dst { print $3, $5, $6 }' \
	"$TB_DIR/capture.txt" >"$TB_DIR/replay.txt"
n_captured=$(wc -l <"$TB_DIR/replay.txt")
[ "$n_captured" -ge 5 ] || tb_fail "captured only $n_captured datagrams from A"
kinds=$(cut -d' ' -f3 "$TB_DIR/replay.txt" | cut -c1-4 | sort | uniq -c | tr -s ' \n' ' ')
tb_log "captured $n_captured datagrams from A ($wan) to the coordinator" \
	"(count, version+type): $kinds"
for t in 0201 0203 0204; do
	grep -q " $t" <(cut -d' ' -f3 "$TB_DIR/replay.txt" | cut -c1-4 | sed 's/^/ /') ||
		tb_fail "the capture has no datagram of type $t from A"
done

endpoint_before=$(tb_endpoint b a)
mapping_before=$(tb_mapping a)
[ "$endpoint_before" = "${TB_PUBLIC[a]}" ] || tb_fail "B sees A at '$endpoint_before'"
[ "$mapping_before" = "${TB_PUBLIC[a]}" ] || tb_fail "A's mapping is '$mapping_before'"
a_port=${TB_PUBLIC[a]##*:}

ports=$TB_COORD_PORT,$((TB_COORD_PORT + 1))
for src in "${TB_ADDR[x]}:40000" 198.18.7.7:51820 "$wan:$((a_port + 7))" "$wan"; do
	out=$(tb_exec x "$WGATTACK" replay --src "$src" --to "$TB_COORD_IP" --ports "$ports" \
		"$TB_DIR/replay.txt") || tb_fail "wgattack replay from $src failed: $out"
	tb_log "$out"
done

# What a replay could change shows within a probe round; keepalives go on meanwhile.
sleep 4
tb_alive "$TB_COORD_PID" || tb_fail "the coordinator died"
[ "$(tb_endpoint b a)" = "$endpoint_before" ] ||
	tb_fail "B's endpoint for A moved from $endpoint_before to $(tb_endpoint b a)"
[ "$(tb_endpoint a b)" = "${TB_PUBLIC[b]}" ] || tb_fail "A's endpoint for B is $(tb_endpoint a b)"
[ "$(tb_mapping a)" = "$mapping_before" ] ||
	tb_fail "A's mapping moved from $mapping_before to $(tb_mapping a)"
tb_ping a b || tb_fail "no ping from A to B after the replay"
tb_ping b a || tb_fail "no ping from B to A after the replay"
for h in a b; do
	tb_json "$h" "not any(s in json.dumps(d) for s in ('${TB_ADDR[x]}', '198.18.7.7', \
		':$((a_port + 7))'))" >/dev/null ||
		tb_fail "an attacker's address shows in $h's status"
done
tb_log "coordinator counters after the replay: $(tb_json coord "d.get('counters')")"
tb_pass "$n_captured captured datagrams replayed to ports $ports from 4 sources changed nothing"

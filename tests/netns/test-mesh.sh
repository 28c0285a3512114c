#!/bin/bash
# SPDX-License-Identifier: MIT
# An 8-host mesh behind 4 NAT routers, 2 hosts on each, every host a peer of every other, so all
# 28 pairs must come up:
#   rc  cone        port-preserving masquerade, inbound filtered      hosts c1 c2
#   rp  portmap     fixed port translations (51820 -> 61820, ...)     hosts p1 p2
#   rs  symmetric   masquerade fully-random (a port per destination)  hosts s1 s2
#   ro  open        port-preserving masquerade, no inbound filter     hosts o1 o2
# The second host behind each router uses WireGuard port 51821, as two hosts behind one home
# router would (with the same port the router would have to remap one of them).
# For each pair: a handshake on both sides, a ping both ways, and the path kind both nodes show:
#   lan     the two hosts behind the same router
#   relay   symmetric with anything behind another router (relayed at once: rendezvous.md
#           section 6; an open router keeps the symmetric side's packet for itself); the
#           endpoint is a relay port
#   direct  everything else, at the peer's public address
# Prints the time from the last node's start to the last pair's handshake (bound: 90 s).
set -u
. "$(dirname "$0")/lib.sh"
tb_need python3 # status JSON

HOSTS=(c1 c2 p1 p2 s1 s2 o1 o2)
LIMIT_S=90

router_of()
{
	echo "r${1:0:1}"
}

# expected A B: the path kind of pair (A, B).
expected()
{
	local ka=${1:0:1} kb=${2:0:1}

	if [ "$ka" = "$kb" ]; then
		echo lan
	elif [ "$ka" = s ] || [ "$kb" = s ]; then
		echo relay
	else
		echo direct
	fi
}

# endpoint_ok A B KIND: A's WireGuard endpoint for B fits the path kind.
endpoint_ok()
{
	local ep

	ep=$(tb_endpoint "$1" "$2")
	case $3 in
	lan) [ "${ep%:*}" = "${TB_ADDR[$2]}" ] ;;
	relay) tb_relay_endpoint "$1" "$2" ;;
	direct) [ "$ep" = "${TB_PUBLIC[$2]}" ] ;;
	esac
}

pair_settled()
{
	local kind

	kind=$(expected "$1" "$2")
	tb_path_is "$1" "$2" "$kind" && tb_path_is "$2" "$1" "$kind" &&
		endpoint_ok "$1" "$2" "$kind" && endpoint_ok "$2" "$1" "$kind"
}

# all_up: every pair has a handshake on both sides; sets UP to how many do.
all_up()
{
	local i j

	UP=0
	for ((i = 0; i < ${#HOSTS[@]}; i++)); do
		for ((j = i + 1; j < ${#HOSTS[@]}; j++)); do
			tb_pair_up "${HOSTS[i]}" "${HOSTS[j]}" && UP=$((UP + 1))
		done
	done
	[ "$UP" = 28 ]
}

tb_init
tb_router rc cone
tb_router rp portmap
tb_router rs symmetric
tb_router ro open
for h in "${HOSTS[@]}"; do
	port=$((${h:1:1} == 1 ? TB_WG_PORT : TB_WG_PORT + 1))
	tb_mesh_host "$h" "$(router_of "$h")" "$port"
done
tb_portmap rp p1 "$TB_WG_PORT" 61820
tb_portmap rp p2 $((TB_WG_PORT + 1)) 61821
TB_PUBLIC[p1]=${TB_WAN[rp]}:61820
TB_PUBLIC[p2]=${TB_WAN[rp]}:61821
tb_mesh_peers "${HOSTS[@]}"
tb_coord
for h in "${HOSTS[@]}"; do
	tb_node "$h"
done
start=$(tb_ms_now)
tb_log "8 nodes started"

UP=0
tb_wait_for "$LIMIT_S" all_up || tb_fail "only $UP of 28 pairs have a handshake after $LIMIT_S s"
last_ms=$(($(tb_ms_now) - start))
tb_log "all 28 pairs have a handshake, $last_ms ms after the last node's start"

ok=0
for ((i = 0; i < ${#HOSTS[@]}; i++)); do
	for ((j = i + 1; j < ${#HOSTS[@]}; j++)); do
		a=${HOSTS[i]} b=${HOSTS[j]}
		kind=$(expected "$a" "$b")
		# A relay on request, and a direct path whose first try crossed, settle a little
		# later than their first handshake.
		tb_wait_for 20 pair_settled "$a" "$b" ||
			tb_fail "pair $a-$b: expected $kind; $a shows $(tb_peer_status "$a" "$b" path)" \
				"via $(tb_endpoint "$a" "$b"), $b shows $(tb_peer_status "$b" "$a" path)" \
				"via $(tb_endpoint "$b" "$a")"
		tb_ping "$a" "$b" || tb_fail "pair $a-$b ($kind): no ping from $a"
		tb_ping "$b" "$a" || tb_fail "pair $a-$b ($kind): no ping from $b"
		ok=$((ok + 1))
		echo "ok $ok: $a-$b $kind ($a via $(tb_endpoint "$a" "$b"), $b via $(tb_endpoint "$b" "$a"))"
	done
done
tb_alive "$TB_COORD_PID" || tb_fail "the coordinator exited"
echo "mesh: time to the last pair's handshake: $last_ms ms"
tb_pass "28 pairs up, each on its expected path; the last after $last_ms ms"

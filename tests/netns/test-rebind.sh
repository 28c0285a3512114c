#!/bin/bash
# SPDX-License-Identifier: MIT
# NAT rebinding (issue 9): the router in front of A gets a new public address under a working
# tunnel. With traffic flowing, A's node refreshes every 2 s, so the coordinator sees the new
# session address (ADDR_CHECK), A probes its new mapping, and the coordinator re-punches the
# pair: the tunnel pings again within seconds. Then the same for an idle tunnel, which must be
# back within the 20 s refresh (plus a punch). Both recovery times are printed.
set -u
. "$(dirname "$0")/lib.sh"

# b's WireGuard has a's new public address as a's endpoint.
b_sees_new_a()
{
	[ "$(tb_endpoint b a)" = "${TB_WAN[ra]}:$TB_WG_PORT" ]
}

tb_init
tb_pair cone cone
tb_assert_tunnel a b 20

# Traffic: a ping every 0.2 s from A keeps WireGuard's counters moving (bounded: 60 s).
tb_bg "$TB_DIR/traffic.log" a ping -n -q -i 0.2 -w 60 "${TB_TUN[b]}"
traffic=$TB_LASTPID
# The node sees the traffic at its next device reads (every 5 s) and refreshes faster.
tb_wait_for 15 tb_json a "d['counters']['registers_sent'] >= 4" >/dev/null
sleep 6
tb_rebind ra
ms=$(tb_until_ping 20 a b) || tb_fail "the tunnel did not come back within 20 s of the rebinding"
tb_log "with traffic: the tunnel pings again $ms ms after the rebinding"
tb_ping b a || tb_fail "no ping from b to a after the rebinding"
[ "$(tb_endpoint b a)" = "${TB_WAN[ra]}:$TB_WG_PORT" ] ||
	tb_fail "b reaches a at $(tb_endpoint b a), not at the new ${TB_WAN[ra]}:$TB_WG_PORT"
tb_json a "d['counters']['rebinds'] + d['counters']['addr_checks'] >= 1" >/dev/null ||
	tb_fail "a's node did not notice its rebinding"
[ "$ms" -le 10000 ] || tb_fail "with traffic flowing, recovery took $ms ms (over 10 s)"
kill "$traffic" 2>/dev/null
echo "rebind-active-ms $ms"

# Idle: no traffic for a while, so the node is back at the 20 s refresh.
sleep 12
tb_rebind ra
t0=${EPOCHREALTIME/./}
# Nothing pings meanwhile (a ping is traffic): wait for b's WireGuard to get the new endpoint.
tb_wait_for 40 b_sees_new_a || tb_fail "an idle tunnel did not learn the new address within 40 s"
ms=$(((${EPOCHREALTIME/./} - t0) / 1000))
tb_ping a b || tb_fail "no ping through the idle tunnel after its rebinding"
tb_log "idle: the peer has the new endpoint $ms ms after the rebinding"
echo "rebind-idle-ms $ms"
tb_pass "NAT rebinding: back in $ms ms idle, and fast with traffic"

#!/bin/bash
# SPDX-License-Identifier: MIT
# Both sides behind "open" routers (masquerade, no inbound filter): each side's first packet is
# taken by the other router for itself, and conntrack then remaps that host's own flow, so no
# order of the punch can connect them (docs/rendezvous.md section 6). The filter test finds both
# poisonable and the coordinator relays the pair at once: asserts a handshake through the relay
# within 10 s of the later node's start (the time is printed), a ping both ways, the relay
# endpoints and path "relay" on both nodes. Both start orders, a fresh topology each.
#
# Then the relay quotas: the coordinator runs with relay_pair_pps = 300, a flood ping through the
# relay makes the pair's drop_pps counter rise in its status, and a reload (SIGHUP) with
# relay_pair_pps = 0 shows the new quota in force.
set -u
. "$(dirname "$0")/lib.sh"
tb_need python3 # status JSON

both_relay()
{
	tb_relay_endpoint a b && tb_relay_endpoint b a && tb_path_is a b relay && tb_path_is b a relay
}

n=0
for first in a b; do
	n=$((n + 1))
	second=$([ "$first" = a ] && echo b || echo a)
	TB_NAME="test-punch-open-both (node $first starts first)"
	tb_init "$n"
	tb_side a open
	tb_side b open
	tb_peers a b
	tb_coord "relay_pair_pps = 300"
	tb_node "$first"
	tb_wait_node_ready "$first" 10 || tb_fail "node $first never became ready"
	start=$(tb_ms_now)
	tb_node "$second"
	tb_wait_for 10 tb_pair_up a b || tb_fail "no handshake within 10 s of node $second's start"
	ms=$(($(tb_ms_now) - start))
	tb_assert_tunnel a b 1
	tb_wait_for 5 both_relay || tb_fail "not relayed: a sees b at $(tb_endpoint a b)" \
		"($(tb_peer_status a b path)), b sees a at $(tb_endpoint b a) ($(tb_peer_status b a path))"
	for h in a b; do
		tb_json "$h" "d['coordinators'][0]['filter'] == 'poisonable'" >/dev/null ||
			tb_fail "the filter test did not find the open router of $h poisonable"
	done
	tb_json coord "d['relay_counters']['relay_at_once'] == 1" >/dev/null ||
		tb_fail "not relayed at once: $(tb_json coord "d['relay_counters']")"
	echo "ok: node $first first: working path (relay) $ms ms after node $second's start"

	if [ "$n" = 2 ]; then
		# 2000 echo requests as fast as replies come: well over 300 datagrams a second.
		tb_json coord "d['relay_quotas']['pair_pps'] == 300" >/dev/null ||
			tb_fail "relay_quotas: $(tb_json coord "d['relay_quotas']")"
		tb_exec a ping -n -q -f -c 2000 -W 1 "${TB_TUN[b]}" >/dev/null 2>&1
		drops=$(tb_json coord "d['relays'][0]['counters']['drop_pps']") ||
			tb_fail "the flood made no drop_pps: $(tb_json coord "d['relays']")"
		echo "ok: relay_pair_pps = 300 dropped $drops datagrams of a flood ping"
		sed -i 's/^relay_pair_pps = 300$/relay_pair_pps = 0/' "$TB_DIR/coordinator.ini"
		kill -HUP "$TB_COORD_PID"
		tb_wait_for 5 tb_json coord "d['relay_quotas']['pair_pps'] == 0" >/dev/null ||
			tb_fail "the reload did not apply relay_pair_pps = 0: $(tb_json coord \
				"d['relay_quotas']")"
		tb_ping a b || tb_fail "no ping through the relay after the reload"
		echo "ok: a reload applied relay_pair_pps = 0"
	fi
	tb_alive "$TB_COORD_PID" || tb_fail "the coordinator exited"
	tb_cleanup
done
TB_NAME=test-punch-open-both
tb_pass "relayed at once, both orders; the pps quota bites and reloads"

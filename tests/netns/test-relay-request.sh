#!/bin/bash
# SPDX-License-Identifier: MIT
# The relay on request. Hosts a and b behind cone routers, with a filter on a's router that
# drops everything between the two routers' WAN addresses (an upstream firewall: nothing the
# coordinator can see). The coordinator punches (neither side maps per destination), the
# direct candidate fails, a node sends RELAY_REQUEST, and the coordinator relays the pair: both
# endpoints are relay ports, both nodes show path relay, a ping goes through. Then hosts c
# (symmetric) and d (no inbound filter), which the coordinator would relay at once, with
# `relay = no` on d: no relay is ever allocated and d shows path none.
set -u
. "$(dirname "$0")/lib.sh"
tb_need python3 # status JSON

relay_endpoint_ok()
{
	local ep

	ep=$(tb_endpoint "$1" "$2")
	[ "${ep%:*}" = "$TB_COORD_IP" ] && [ "${ep##*:}" -ge 52000 ] && [ "${ep##*:}" -le 52999 ]
}

relay_path_is()
{
	[ "$(tb_peer_status "$1" "$2" path)" = "$3" ]
}

tb_init
tb_side a cone
tb_side b cone
tb_side c symmetric
tb_side d open
tb_peers a b
tb_exec ra nft -f - <<EOF || tb_fail "the filter on ra"
table ip block {
	chain pre {
		type filter hook prerouting priority -300; policy accept;
		ip saddr ${TB_WAN[rb]} drop
		ip daddr ${TB_WAN[rb]} drop
	}
}
EOF
tb_peers c d
tb_coord
tb_node a
tb_node b

# One direct candidate for 6 s, then the request: well within 30 s.
tb_assert_tunnel a b 30
for h in a b; do
	p=b
	[ "$h" = b ] && p=a
	relay_endpoint_ok "$h" "$p" ||
		tb_fail "$h uses endpoint '$(tb_endpoint "$h" "$p")' for $p, expected the relay"
	tb_wait_for 5 relay_path_is "$h" "$p" relay ||
		tb_fail "node $h shows path '$(tb_peer_status "$h" "$p" path)' for $p, expected relay"
done
tb_json coord "d['relay_counters']['relay_at_once'] == 0 and \
	d['relay_counters']['relay_on_request'] == 1 and d['relay_counters']['relay_requests'] >= 1" \
	>/dev/null || tb_fail "not relayed on request: $(tb_json coord "d['relay_counters']")"

# relay = no on d: d's REGISTER says so, the coordinator never relays c and d.
tb_node c
tb_node d "relay = no"
tb_wait_for 10 tb_node_session_up d || tb_fail "node d has no coordinator session"
sleep 15 # the direct attempt (6 s) and a request from c, if any, have been handled by now
tb_json coord "len(d['relays']) == 1 and d['relay_counters']['relay_on_request'] == 1" \
	>/dev/null || tb_fail "a relay for c and d exists: $(tb_json coord "d['relays']")"
for h in c d; do
	p=d
	[ "$h" = d ] && p=c
	relay_endpoint_ok "$h" "$p" && tb_fail "$h reaches $p through a relay despite relay = no"
	path=$(tb_peer_status "$h" "$p" path)
	[ "$path" = none ] || tb_fail "node $h shows path '$path' for $p, expected none"
done
tb_ping a b || tb_fail "no ping through the relay at the end"
tb_alive "$TB_COORD_PID" || tb_fail "the coordinator exited"
tb_pass "a failed punch is relayed on request; relay = no keeps a pair off the relay"

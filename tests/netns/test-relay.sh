#!/bin/bash
# SPDX-License-Identifier: MIT
# The relay end to end. Hosts a and b behind symmetric routers (a new public port for every
# destination): no direct path can work, so the coordinator relays the pair at once
# (docs/rendezvous.md section 5). Asserts: each side's WireGuard endpoint is the coordinator's
# address with a port from relay_ports, both sides show path "relay", a ping goes through, and
# the coordinator's status lists the relay with both sides bound. Then a stranger on the public
# network sends datagrams to both relay ports (WireGuard-shaped and not): they reach neither
# host (their WireGuard receive counters do not move by them) and the coordinator counts them.
# Last, c behind a symmetric router and d behind a cone router: also relayed at once, as the
# design says (d's router drops what it did not ask for, and c's mapping toward d cannot be
# predicted, so d can never ask for it), and the relay is a second one.
set -u
. "$(dirname "$0")/lib.sh"
tb_need python3 # status JSON

RELAY_MIN=52000
RELAY_MAX=52999

# relay_endpoint_ok HOST PEER: HOST reaches PEER at the coordinator's address and a relay port.
relay_endpoint_ok()
{
	local ep port

	ep=$(tb_endpoint "$1" "$2")
	[ "${ep%:*}" = "$TB_COORD_IP" ] || return 1
	port=${ep##*:}
	[ "$port" -ge "$RELAY_MIN" ] && [ "$port" -le "$RELAY_MAX" ]
}

relay_path_is()
{
	[ "$(tb_peer_status "$1" "$2" path)" = "$3" ]
}

tb_init
tb_side a symmetric
tb_side b symmetric
tb_side s public # the stranger
tb_side c symmetric
tb_side d cone
tb_peers a b
tb_peers c d
tb_coord
tb_node a
tb_node b

tb_assert_tunnel a b 20
for h in a b; do
	p=b
	[ "$h" = b ] && p=a
	relay_endpoint_ok "$h" "$p" ||
		tb_fail "$h uses endpoint '$(tb_endpoint "$h" "$p")' for $p, expected the relay"
	tb_wait_for 5 relay_path_is "$h" "$p" relay ||
		tb_fail "node $h shows path '$(tb_peer_status "$h" "$p" path)' for $p, expected relay"
done
tb_json coord "len(d['relays']) == 1 and all(s['bound'] for s in d['relays'][0]['sides'])" \
	>/dev/null || tb_fail "the coordinator does not show one relay with both sides bound"
tb_json coord "d['relay_counters']['relay_at_once'] == 1" >/dev/null ||
	tb_fail "the relay was not allocated at once"
tb_log "coordinator relays: $(tb_json coord "d['relays']")"

# The stranger: WireGuard-shaped datagrams (type 4, three zero bytes) and a forged bind
# probe to each relay port. Neither host may see them.
port_a=$(tb_endpoint a b)
port_a=${port_a##*:}
port_b=$(tb_endpoint b a)
port_b=${port_b##*:}
rx_before_a=$(wg show "${TB_WGIF[a]}" transfer | awk '{ print $2 }')
rx_before_b=$(wg show "${TB_WGIF[b]}" transfer | awk '{ print $2 }')
tb_exec s python3 - "$TB_COORD_IP" "$port_a" "$port_b" <<'PY' || tb_fail "the stranger's sends"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
host = sys.argv[1]
for port in map(int, sys.argv[2:]):
    for _ in range(50):
        s.sendto(b"\x04\x00\x00\x00" + b"\x00" * 28, (host, port))   # WireGuard data, shaped
        s.sendto(b"\x02\x04\x00\x00" + b"\x00" * 32, (host, port))   # a PROBE, unknown session
PY
sleep 1
stranger_counted()
{
	tb_json coord "sum(r['counters']['drop_wrong_source'] for r in d['relays']) >= 100 and \
		d['relay_counters']['bind_unknown_session'] + d['relay_counters']['bind_wrong_port'] \
		>= 100" >/dev/null
}
tb_wait_for 5 stranger_counted ||
	tb_fail "the coordinator did not count the stranger's datagrams: $(tb_json coord \
		"[d['relay_counters'], [r['counters'] for r in d['relays']]]")"
# WireGuard's keepalives still pass; 100 stranger datagrams of 32 bytes would add 3200 bytes.
rx_after_a=$(wg show "${TB_WGIF[a]}" transfer | awk '{ print $2 }')
rx_after_b=$(wg show "${TB_WGIF[b]}" transfer | awk '{ print $2 }')
[ $((rx_after_a - rx_before_a)) -lt 3200 ] ||
	tb_fail "a received $((rx_after_a - rx_before_a)) bytes while the stranger sent"
[ $((rx_after_b - rx_before_b)) -lt 3200 ] ||
	tb_fail "b received $((rx_after_b - rx_before_b)) bytes while the stranger sent"
tb_ping a b || tb_fail "no ping through the relay after the stranger"

tb_node c
tb_node d
tb_assert_tunnel c d 20
for h in c d; do
	p=d
	[ "$h" = d ] && p=c
	relay_endpoint_ok "$h" "$p" ||
		tb_fail "$h uses endpoint '$(tb_endpoint "$h" "$p")' for $p, expected the relay"
	tb_wait_for 5 relay_path_is "$h" "$p" relay ||
		tb_fail "node $h shows path '$(tb_peer_status "$h" "$p" path)' for $p, expected relay"
done
tb_json coord "len(d['relays']) == 2 and d['relay_counters']['relay_at_once'] == 2" >/dev/null ||
	tb_fail "the coordinator does not show two relays allocated at once"
tb_ping a b || tb_fail "no ping through the first relay after the second came"
tb_alive "$TB_COORD_PID" || tb_fail "the coordinator exited"
tb_pass "symmetric <-> symmetric and symmetric <-> cone through the relay; strangers dropped"

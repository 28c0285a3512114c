#!/bin/bash
# SPDX-License-Identifier: MIT
# Two hosts, each behind a symmetric router (masquerade fully-random: a new public port for every
# destination). A direct punch cannot work there, so the pair goes through the coordinator's
# relay, at once (docs/rendezvous.md section 5): both nodes get a session, report the NAT as
# endpoint-dependent and its filter as unknown (the filter test's echo leaves a fully-random NAT
# from a new port whether or not the router kept the poison, so it cannot tell; rendezvous.md
# section 3.3), get their PUNCH and their RELAY, and show path "relay", true to what WireGuard
# does: its endpoint is a relay port of the coordinator, with a handshake and a ping through it.
# Nothing crashes, and the coordinator still serves a fresh pair behind cone routers directly.
# (Before the relay this test asserted path "none": the contract changed.)
set -u
. "$(dirname "$0")/lib.sh"
tb_need python3 # status JSON

# sym_on_relay HOST PEER: HOST's WireGuard reaches PEER at a relay port of the coordinator.
sym_on_relay()
{
	local ep

	ep=$(tb_endpoint "$1" "$2")
	[ "${ep%:*}" = "$TB_COORD_IP" ] && [ "${ep##*:}" -ge 52000 ] && [ "${ep##*:}" -le 52999 ]
}

# sym_check_alive: every wgpunch process this test started is still running.
sym_check_alive()
{
	local h pid

	tb_alive "$TB_COORD_PID" || tb_fail "the coordinator exited ($1)"
	for h in "${@:2}"; do
		pid=TB_NODE_PID_$h
		tb_alive "${!pid}" || tb_fail "node $h exited ($1)"
	done
}

# sym_check_relay HOST PEER WHEN: HOST's node shows path relay to PEER, and that is what its
# WireGuard does (a handshake, the endpoint at a relay port), and its session is up.
sym_check_relay()
{
	local path

	path=$(tb_peer_status "$1" "$2" path)
	[ "$path" = relay ] || tb_fail "node $1 shows path '$path' for $2 $3, expected relay"
	[ "$(tb_handshake "$1" "$2")" != 0 ] ||
		tb_fail "$1 has no handshake with $2 $3, but its node shows the relay"
	sym_on_relay "$1" "$2" ||
		tb_fail "$1 uses endpoint '$(tb_endpoint "$1" "$2")' for $2 $3, not a relay port"
	tb_node_session_up "$1" || tb_fail "node $1 has lost its coordinator session $3"
}

tb_init
tb_side a symmetric
tb_side b symmetric
tb_peers a b
# The cone pair is built now, its nodes start after the symmetric pair has given up.
tb_side c cone
tb_side d cone
tb_peers c d
tb_coord
tb_node a
tb_node b

for h in a b; do
	tb_wait_for 10 tb_node_session_up "$h" || tb_fail "node $h has no coordinator session"
done
for h in a b; do
	tb_wait_for 10 tb_json "$h" "d['nat']['mapping_type'] == 'endpoint-dependent'" >/dev/null ||
		tb_fail "node $h shows NAT mapping type" \
			"'$(tb_json "$h" "d['nat']['mapping_type']")', expected endpoint-dependent"
	tb_log "node $h: nat $(tb_json "$h" "d['nat']")"
done
# Both filter tests ended on an echo (not by the 2 s timeout, which also says unknown).
sym_filter_done()
{
	tb_json coord "d['pending_filter_tests'] == 0 and d['counters']['filter_tests'] >= 2" \
		>/dev/null
}
tb_wait_for 5 sym_filter_done || tb_fail "the coordinator's filter tests did not finish"
[ "$(tb_json coord "d['counters']['filter_timeouts']")" = 0 ] ||
	tb_fail "a filter test timed out; its echo should have decided it"
for h in a b; do
	f=$(tb_json "$h" "d['nat']['filter']")
	[ "$f" = unknown ] || tb_fail "node $h shows NAT filter '$f', expected unknown"
done

# The relay comes with the PUNCH: a handshake through it well within 20 s.
tb_assert_tunnel a b 20
tb_json a "d['counters']['punches'] > 0 and d['counters']['relays'] > 0" >/dev/null ||
	tb_fail "node a is on the relay without a PUNCH and a RELAY"
tb_json b "d['counters']['punches'] > 0 and d['counters']['relays'] > 0" >/dev/null ||
	tb_fail "node b is on the relay without a PUNCH and a RELAY"
sym_relay_path()
{
	[ "$(tb_peer_status "$1" "$2" path)" = relay ]
}
tb_wait_for 5 sym_relay_path a b || tb_fail "node a never showed path relay"
tb_wait_for 5 sym_relay_path b a || tb_fail "node b never showed path relay"
sym_check_relay a b "once up"
sym_check_relay b a "once up"
sym_check_alive "after the symmetric pair went to the relay" a b

tb_node c
tb_node d
tb_assert_tunnel c d 20
tb_assert_endpoint c d
tb_assert_endpoint d c
sym_check_alive "after the cone pair" a b c d
# Still on the relay, and honest about it, after whatever ran meanwhile.
sym_check_relay a b "at the end"
sym_check_relay b a "at the end"
tb_ping a b || tb_fail "no ping from a to b through the relay at the end"
tb_log "node a counters: $(tb_json a "d['counters']")"
tb_pass "symmetric <-> symmetric: through the relay, reported as such; cone pair served directly"

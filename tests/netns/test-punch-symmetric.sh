#!/bin/bash
# SPDX-License-Identifier: MIT
# Two hosts, each behind a symmetric router (masquerade fully-random: a new public port for every
# destination). A direct punch cannot work there and there is no relay yet, so this checks that
# wgpunch is honest about it: both nodes get a session, report the NAT as endpoint-dependent and
# its filter as unknown (the filter test's echo leaves a fully-random NAT from a new port whether
# or not the router kept the poison, so it cannot tell; docs/rendezvous.md section 3.3), try
# the one candidate they have (the peer's mapping, which that peer's router does not keep for
# us), give up after it and then show path "none", and nothing crashes. The coordinator then still
# serves a fresh pair behind cone routers in the same test bed.
set -u
. "$(dirname "$0")/lib.sh"
tb_need python3 # status JSON

# sym_gave_up HOST: HOST's node logged that its attempts for its peer ran out.
sym_gave_up()
{
	grep -q "no path to peer .* candidates, waiting for the next punch" "$TB_DIR/$1.log"
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

# sym_check_none HOST PEER WHEN: HOST's node shows no path to PEER, its WireGuard has no
# handshake with PEER (the node claims nothing it does not have), and its session is up.
sym_check_none()
{
	local path

	path=$(tb_peer_status "$1" "$2" path)
	[ "$path" = none ] || tb_fail "node $1 shows path '$path' for $2 $3, expected none"
	[ "$(tb_handshake "$1" "$2")" = 0 ] ||
		tb_fail "$1 has a handshake with $2 $3, but its node shows no path"
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

# One candidate (the public IPs differ) for 6 s once the PUNCH arrives: allow 20 s for all of it.
for h in a b; do
	tb_wait_for 20 sym_gave_up "$h" || tb_fail "node $h never gave up on its peer within 20 s"
done
tb_json a "d['counters']['punches'] > 0" >/dev/null || tb_fail "node a gave up without a PUNCH"
tb_json b "d['counters']['punches'] > 0" >/dev/null || tb_fail "node b gave up without a PUNCH"
sym_check_none a b "after giving up"
sym_check_none b a "after giving up"
sym_check_alive "after the symmetric pair gave up" a b

tb_node c
tb_node d
tb_assert_tunnel c d 20
tb_assert_endpoint c d
tb_assert_endpoint d c
sym_check_alive "after the cone pair" a b c d
# Still honest after the retries (RESYNC) that ran meanwhile.
sym_check_none a b "at the end"
sym_check_none b a "at the end"
tb_log "node a counters: $(tb_json a "d['counters']")"
tb_pass "symmetric <-> symmetric: no path, reported honestly; cone pair still served"

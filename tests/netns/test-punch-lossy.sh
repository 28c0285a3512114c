#!/bin/bash
# SPDX-License-Identifier: MIT
# Two hosts behind cone routers that each drop LOSSY_PERCENT % (default 10) of the packets in and
# out of their WAN: every step of the rendezvous and of the punch loses datagrams, so the nodes'
# retries (probes, REGISTER, filter echo, PUNCH_ACK, RESYNC) have to carry it. Three fresh
# topologies in a row; each must show a WireGuard handshake within LOSSY_TIMEOUT seconds (default
# 45) of starting the nodes, and a ping through the tunnel both ways.
# Why these numbers: a packet crosses both lossy routers, so at 10 % an initiation and its
# response both get through 66 % of the time, and WireGuard sends at most one initiation per
# peer every 5 s; nine rounds all failing has a chance of about 1 in 15000, so the test does not
# flake. At 20 % (LOSSY_PERCENT=20 LOSSY_TIMEOUT=60) a round succeeds 41 % of the time:
# measured over about 40 topologies, median 10 s, a quarter after 17 s, the slowest 28 s, and
# one with none within 40 s, which is WireGuard's 5 s retry meeting bad luck (1.5 % per
# topology), not a node that gave up: both kept being punched and kept asking.
#
# Then, in each topology, the address monitor (rtnetlink): adding an address to host a's LAN
# interface, and removing it again, must each make a's node send a new REGISTER within a second.
# The device is read every 5 s anyway, so a chance catch by that read is ruled out by doing it
# six times.
set -u
. "$(dirname "$0")/lib.sh"
tb_need python3 # status JSON

LOSS=${LOSSY_PERCENT:-10}
TIMEOUT=${LOSSY_TIMEOUT:-45}

lossy_any_handshake()
{
	tb_has_handshake a b || tb_has_handshake b a
}

lossy_both_handshakes()
{
	tb_has_handshake a b && tb_has_handshake b a
}

# lossy_pings: a ping through the tunnel from a to b and from b to a, one echo reply each being
# enough, tried in turn up to 30 times each (a request and its reply may each be dropped). In turn, because the side that answered the first initiation has keys it may not
# use until the other side's first packet arrives; the other side's ping is that packet.
lossy_pings()
{
	local i ab= ba=

	for i in $(seq 1 30); do
		[ -n "$ab" ] || ! tb_exec a ping -n -q -c 1 -W 1 "${TB_TUN[b]}" >/dev/null 2>&1 || ab=$i
		[ -n "$ba" ] || ! tb_exec b ping -n -q -c 1 -W 1 "${TB_TUN[a]}" >/dev/null 2>&1 || ba=$i
		[ -n "$ab" ] && [ -n "$ba" ] && return 0
	done
	[ -n "$ab" ] || tb_fail "no ping from a to b through the tunnel in 30 tries"
	tb_fail "no ping from b to a through the tunnel in 30 tries"
}

lossy_registers()
{
	tb_json a "d['counters']['registers_sent']"
}

# lossy_registered SKIP ADDR ACTION BEFORE: after line SKIP of a's log, the node logged a change
# of its local addresses that lists ADDR (ACTION add) or no longer does (del), and it has sent
# more than BEFORE REGISTERs.
lossy_registered()
{
	local line now

	line=$(tail -n +"$(($1 + 1))" "$TB_DIR/a.log" | grep "local addresses changed" | tail -n 1)
	[ -n "$line" ] || return 1
	if [ "$3" = add ]; then
		[[ "$line" == *" $2:"* ]] || return 1
	else
		[[ "$line" != *" $2:"* ]] || return 1
	fi
	now=$(lossy_registers) || return 1
	[ "$now" -gt "$4" ]
}

# lossy_lan_change RUN ACTION: ACTION (add | del) a 198.18.x address on a's LAN interface; a's
# node must notice within a second and REGISTER again.
lossy_lan_change()
{
	local addr=198.18.$((10 + $1)).1 before skip

	before=$(lossy_registers) || tb_fail "no status from a's node"
	skip=$(wc -l <"$TB_DIR/a.log")
	tb_exec a ip addr "$2" "$addr/32" dev eth0 || tb_fail "ip addr $2 $addr on a"
	tb_wait_for 1 lossy_registered "$skip" "$addr" "$2" "$before" ||
		tb_fail "a's node did not REGISTER within 1 s of 'ip addr $2 $addr'"
	tb_log "run $1: ip addr $2 $addr: REGISTER sent again"
}

for run in 1 2 3; do
	TB_NAME="test-punch-lossy (run $run, $LOSS % loss)"
	tb_init "$run"
	tb_side a cone
	tb_side b cone
	tb_lossy ra wan "$LOSS"
	tb_lossy rb wan "$LOSS"
	tb_peers a b
	tb_coord
	start=${EPOCHREALTIME/./}
	tb_node a "log_level = debug"
	tb_node b "log_level = debug"
	tb_wait_for "$TIMEOUT" lossy_any_handshake ||
		tb_fail "no handshake within $TIMEOUT s at $LOSS % loss"
	took=$(((${EPOCHREALTIME/./} - start) / 1000))
	lossy_pings
	tb_wait_for 5 lossy_both_handshakes || tb_fail "a handshake on one side only"
	echo "ok: run $run: first handshake after $took ms, pings through"

	lossy_lan_change "$run" add
	lossy_lan_change "$run" del
	tb_cleanup
done
TB_NAME=test-punch-lossy
tb_pass "three lossy topologies"

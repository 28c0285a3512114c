#!/bin/bash
# SPDX-License-Identifier: MIT
# Several coordinators (issue 9): every node registers with both, so losing either one loses
# nothing. With coordinator 1 killed, a NAT rebinding still recovers and a new node still
# connects, through coordinator 2. Then coordinator 1 comes back with no state, coordinator 2
# goes, and a second rebinding recovers through the restarted one.
set -u
. "$(dirname "$0")/lib.sh"

C2_PORT=51910

coord2_start()
{
	local ini=$TB_DIR/coord2.ini

	{
		echo "[coordinator]"
		echo "listen = ${TB_ADDR[coord2]}:$C2_PORT"
		echo "private_key_file = coord2.key"
		echo "control_socket = $TB_DIR/coord2.sock"
	} >"$ini"
	rm -f "$TB_DIR/coord2.sock"
	tb_bg "$TB_DIR/coord2.log" coord2 "$WGPUNCH" -c "$ini"
	C2_PID=$TB_LASTPID
	tb_wait_for 5 test -S "$TB_DIR/coord2.sock" || tb_fail "coordinator 2 did not start"
}

both_up()
{
	tb_json "$1" "sum(c.get('state') == 'up' for c in d['coordinators']) == 2" >/dev/null
}

stop()
{
	kill -TERM "$1"
	tb_wait_for 5 eval "! kill -0 $1 2>/dev/null" || tb_fail "process $1 did not stop"
}

tb_init
tb_side a cone
tb_side b cone
tb_side c cone
tb_peers a b
tb_peers a c
tb_coord
tb_public_host coord2
(umask 077 && wg genkey >"$TB_DIR/coord2.key")
C2_PUB=$(wg pubkey <"$TB_DIR/coord2.key")
coord2_start
second="coordinator = ${TB_ADDR[coord2]}:$C2_PORT $C2_PUB"
tb_node a "$second"
tb_node b "$second"
tb_assert_tunnel a b 20
tb_wait_for 10 both_up a || tb_fail "a has no session with both coordinators"
tb_wait_for 10 both_up b || tb_fail "b has no session with both coordinators"

# Coordinator 1 dies: a's status says so, and nothing else changes.
stop "$TB_COORD_PID"
tb_log "coordinator 1 stopped"
tb_rebind ra
ms=$(tb_until_ping 30 a b) || tb_fail "no recovery from a rebinding with coordinator 1 gone"
tb_log "rebinding with coordinator 1 gone: the tunnel pings again after $ms ms"
echo "failover-rebind-ms $ms"
tb_node c "$second"
tb_assert_tunnel a c 30
tb_log "a new node connected through coordinator 2 alone"
# A dead coordinator shows once its REGISTERs go unanswered (four retries, a few seconds).
tb_wait_for 30 tb_json a "[c['state'] for c in d['coordinators']].count('up') == 1" >/dev/null ||
	tb_fail "a's status does not show exactly one coordinator up"

# Coordinator 1 comes back empty; coordinator 2 dies; a second rebinding.
tb_coord
tb_wait_for 30 tb_json coord "d['nodes'] >= 3" >/dev/null ||
	tb_fail "the nodes did not register again with the restarted coordinator 1"
stop "$C2_PID"
tb_log "coordinator 1 restarted and has the nodes; coordinator 2 stopped"
tb_rebind ra
ms=$(tb_until_ping 30 a b) || tb_fail "no recovery from a rebinding after the restart"
tb_log "rebinding after coordinator 1's restart: the tunnel pings again after $ms ms"
echo "restart-rebind-ms $ms"
tb_ping a c || tb_fail "the tunnel to c did not survive"
tb_pass "two coordinators: each one's loss loses nothing"

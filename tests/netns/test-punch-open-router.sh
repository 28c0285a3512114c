#!/bin/bash
# SPDX-License-Identifier: MIT
# One side is behind an "open" router: masquerade with no inbound filter, so a peer packet that
# arrives before its own host has sent is taken by the router itself, and its host's flow is then
# remapped to another port (tests/netns/naive-order.sh shows the trap without wgpunch). The
# coordinator's filter test must find that side poisonable and make it send first, whichever side
# is open and whichever node starts first. Four cases, a fresh topology each.
set -u
. "$(dirname "$0")/lib.sh"
tb_need python3 # status JSON

n=0
for open in a b; do
	for first in a b; do
		n=$((n + 1))
		second=$([ "$first" = a ] && echo b || echo a)
		TB_NAME="test-punch-open-router (open side $open, node $first starts first)"
		tb_init "$n"
		tb_side a "$([ "$open" = a ] && echo open || echo cone)"
		tb_side b "$([ "$open" = b ] && echo open || echo cone)"
		tb_peers a b
		tb_coord
		tb_node "$first"
		tb_wait_node_ready "$first" 10 || tb_fail "node $first never became ready"
		tb_node "$second"
		tb_assert_tunnel a b 20
		tb_assert_endpoint a b
		tb_assert_endpoint b a
		cone=$([ "$open" = a ] && echo b || echo a)
		tb_json "$open" "d['coordinators'][0]['filter'] == 'poisonable'" >/dev/null ||
			tb_fail "the filter test did not find the open router of $open poisonable"
		tb_json "$cone" "d['coordinators'][0]['filter'] == 'safe'" >/dev/null ||
			tb_fail "the filter test did not find the cone router of $cone safe"
		echo "ok: open side $open, node $first first"
		tb_cleanup
	done
done
TB_NAME=test-punch-open-router
tb_pass "all four orders"

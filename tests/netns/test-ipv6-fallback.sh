#!/bin/bash
# SPDX-License-Identifier: MIT
# Dual-stack hosts as in test-ipv6-dual.sh, but b's router drops every IPv6 datagram to or from
# the WireGuard port (broken IPv6 for WireGuard, working IPv4). Both sides try the IPv6
# candidate first, give it up at the same time, and move on together to the public IPv4
# mapping: path "direct" at the other side's public mapping, not the relay.
set -u
. "$(dirname "$0")/lib.sh"

tb6_dual_pair
for dir in sport dport; do
	tb_exec rb nft insert rule ip6 fw6 forward udp "$dir" "$TB_WG_PORT" counter drop ||
		tb_fail "IPv6 block on rb"
done
tb_wg_up a
tb_wg_up b
tb_peers a b
tb_coord "listen = [$TB6_COORD_IP]:$TB_COORD_PORT"
tb_node_at a "$TB6_COORD_NAME:$TB_COORD_PORT"
tb_node_at b "$TB6_COORD_NAME:$TB_COORD_PORT"

# The IPv6 attempt takes 6 s (one WireGuard retry), then IPv4.
tb_assert_tunnel a b 25
tb_assert_endpoint a b
tb_assert_endpoint b a
tb6_assert_path a b direct "${TB_PUBLIC[b]}"
tb6_assert_path b a direct "${TB_PUBLIC[a]}"
for h in a b; do
	grep -q "via \[2001:db8:.*(ipv6, candidate 1 of 2)" "$TB_DIR/$h.log" ||
		tb_fail "$h did not try IPv6 first"
	grep -q "asking for a relay" "$TB_DIR/$h.log" && tb_fail "$h asked for a relay"
done
tb_pass "IPv6 blocked: both sides fall back to IPv4 together"

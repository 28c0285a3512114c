#!/bin/bash
# SPDX-License-Identifier: MIT
# Two hosts behind ONE cone router (the test bed's router does not hairpin), each with a
# WireGuard peer that is the other, no endpoints. Both nodes learn the same public IP, so each
# must try the other's LAN address first (docs/rendezvous.md, section 4.6) and get a tunnel over
# the LAN: path "lan", endpoint the other host's LAN address and WireGuard port, not the router's.
#
# Nothing on the LAN drops the first side's initiation, so if the second side kicked its
# WireGuard at once too, the two initiations would cross, both answers would be thrown away
# ("Received invalid response message") and WireGuard would retry only after 5 s. The second
# side waits for the first side's initiation instead (docs/rendezvous.md, section 4.6), so the
# tunnel must be up within SAME_TUNNEL_S of starting the nodes: a crossing shows as a failure.
set -u
. "$(dirname "$0")/lib.sh"
tb_need python3 # status JSON

# Usually well under 100 ms; a crossing costs WireGuard's 5 s retry.
SAME_TUNNEL_S=3

# same_both_handshakes: both WireGuards have a handshake with each other.
same_both_handshakes()
{
	tb_has_handshake a b && tb_has_handshake b a
}

# same_path HOST PEER PATH: HOST's node shows PATH for PEER.
same_path()
{
	[ "$(tb_peer_status "$1" "$2" path)" = "$3" ]
}

# same_keepalive HOST PEER: HOST's WireGuard has a persistent keepalive of 25 s (the node's
# default) for PEER. The side that waited for the other's initiation wrote it only afterwards.
same_keepalive()
{
	[ "$(wg show "${TB_WGIF[$1]}" persistent-keepalive |
		awk -v k="${TB_WGPUB[$2]}" '$1 == k { print $2 }')" = 25 ]
}

# same_check_lan HOST PEER: HOST's node and HOST's WireGuard both reach PEER at PEER's LAN
# address and WireGuard port, with the persistent keepalive on.
same_check_lan()
{
	local host=$1 peer=$2 want=${TB_ADDR[$2]}:$TB_WG_PORT ep wg_ep

	tb_wait_for 10 same_path "$host" "$peer" lan ||
		tb_fail "$host's node shows path '$(tb_peer_status "$host" "$peer" path)' for" \
			"$peer, expected 'lan'"
	ep=$(tb_peer_status "$host" "$peer" endpoint)
	[ "$ep" = "$want" ] ||
		tb_fail "$host's node shows endpoint '$ep' for $peer, expected its LAN address $want"
	wg_ep=$(tb_endpoint "$host" "$peer")
	[ "$wg_ep" = "$want" ] ||
		tb_fail "$host's WireGuard uses endpoint '$wg_ep' for $peer, expected $want"
	case $ep in
	"${TB_WAN[r]}":*) tb_fail "$host reaches $peer through the router's public address" ;;
	esac
	tb_wait_for 2 same_keepalive "$host" "$peer" ||
		tb_fail "$host's WireGuard has no persistent keepalive of 25 s for $peer"
}

tb_init
tb_router r cone
tb_host a r
tb_host b r
tb_wg_up a
tb_wg_up b
tb_peers a b
tb_coord
t0=${EPOCHREALTIME/./}
tb_node a
tb_node b

tb_wait_for "$SAME_TUNNEL_S" same_both_handshakes ||
	tb_fail "no handshake on both sides within $SAME_TUNNEL_S s of starting the nodes" \
		"(a: $(tb_handshake a b), b: $(tb_handshake b a)); crossed initiations?"
ms=$(((${EPOCHREALTIME/./} - t0) / 1000))
tb_log "both handshakes $ms ms after starting the nodes"
tb_wait_node_ready a 10 || tb_fail "node a never became ready"
tb_wait_node_ready b 10 || tb_fail "node b never became ready"
# The precondition of the LAN candidates: both mappings carry the router's one public IP.
for h in a b; do
	m=$(tb_mapping "$h") || tb_fail "node $h has no mapping"
	[ "${m%:*}" = "${TB_WAN[r]}" ] ||
		tb_fail "node $h's mapping is $m, expected the router's address ${TB_WAN[r]}"
	tb_log "node $h's public mapping: $m"
done

tb_assert_tunnel a b 1
same_check_lan a b
same_check_lan b a
tb_pass "two hosts behind one cone NAT: tunnel over the LAN"

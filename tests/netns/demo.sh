#!/bin/bash
# SPDX-License-Identifier: MIT
# demo.sh [WGPUNCH] - watch wgpunch connect WireGuard hosts behind NATs, on each kind of path.
#
# Builds, in network namespaces on this machine, a "public internet" (198.51.100.0/24) with a
# coordinator at 198.51.100.1 and three pairs of hosts, each running wireguard-go with its pair
# as a peer WITHOUT an endpoint, and wgpunch in the node role:
#   A <-> B   behind two different NATs (a home router; one that maps the port): path direct
#   C <-> D   behind one NAT that does not hairpin: path lan
#   E <-> F   behind two symmetric NATs (a new port per destination): path relay, through the
#             coordinator (WireGuard keeps it end-to-end encrypted)
# Prints each tunnel's `wg show`, a ping through it and the path wgpunch reports, then removes
# everything it made. Needs root, wireguard-go, wireguard-tools, nftables and iproute2 (Debian:
# apt install wireguard-go wireguard-tools nftables iproute2).
set -u
TB_NAME=demo
here=$(cd "$(dirname "$0")" && pwd)
WGPUNCH=${1:-${WGPUNCH:-$here/../../build/wgpunch}}
. "$here/lib.sh"

if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
step()
{
	printf '\n%s== %s%s\n' "$bold" "$*" "$plain"
}

[ -x "$WGPUNCH" ] || { echo "demo: no wgpunch binary at $WGPUNCH (pass its path as \$1)"; exit 1; }
tb_init
step "building the test network (namespaces $TB_PREFIX-*)"
tb_side a cone
tb_side b portmap
tb_peers a b
tb_router rcd cone
tb_host c rcd
tb_host d rcd
tb_wg_up c
tb_wg_up d
tb_peers c d
tb_side e symmetric
tb_side f symmetric
tb_peers e f
cat <<DIAGRAM

                         coordinator 198.51.100.1:51900 (and :51901, relay ports 52000-52999)
                                              |
   ------------------------------- "internet" 198.51.100.0/24 -------------------------------
        |                    |                         |                       |          |
  router A ${TB_WAN[ra]}  router B ${TB_WAN[rb]}   router CD ${TB_WAN[rcd]}    router E ${TB_WAN[re]}   router F ${TB_WAN[rf]}
  home NAT            maps :51820->:52820   one NAT, no hairpin        symmetric         symmetric
        |                    |                  |          |               |          |
     host A               host B             host C     host D          host E     host F
  ${TB_TUN[a]}        ${TB_TUN[b]}         ${TB_TUN[c]}   ${TB_TUN[d]}      ${TB_TUN[e]} ${TB_TUN[f]}
DIAGRAM

step "WireGuard peers are configured without endpoints (host A)"
wg show "${TB_WGIF[a]}"

step "starting the coordinator, then the six nodes"
tb_coord
echo "coordinator pid $TB_COORD_PID, public key $TB_COORD_PUB"
t0=${EPOCHREALTIME/./}
for h in a b c d e f; do
	tb_node "$h"
done

# demo_path_is HOST PEER PATH: HOST's node reports PATH for PEER (read anew on every poll).
demo_path_is()
{
	[ "$(tb_peer_status "$1" "$2" path)" = "$3" ]
}

demo_pair()
{
	local x=$1 y=$2 want=$3 path

	tb_wait_handshake "$x" "$y" 20 || tb_fail "no handshake on $x for $y within 20 s (logs below)"
	tb_wait_handshake "$y" "$x" 5 || tb_fail "no handshake on $y for $x (logs below)"
	printf 'WireGuard handshake %s <-> %s after %d ms\n' "$x" "$y" \
		$(((${EPOCHREALTIME/./} - t0) / 1000))
	tb_wait_for 10 demo_path_is "$x" "$y" "$want" ||
		tb_fail "$x's node reports path '$(tb_peer_status "$x" "$y" path)' for $y, not $want"
	step "pair ${x^^} <-> ${y^^}: path $want; wg show on host ${x^^}"
	wg show "${TB_WGIF[$x]}"
	step "ping from ${x^^} (${TB_TUN[$x]}) to ${y^^} (${TB_TUN[$y]}) through the tunnel"
	tb_exec "$x" ping -n -c 3 -i 0.2 -W 1 "${TB_TUN[$y]}" || tb_fail "no ping $x -> $y"
}

demo_pair a b direct
demo_pair c d lan
demo_pair e f relay

step "wgpunch status on host A"
tb_status a
step "wgpunch status on host E (relayed)"
tb_status e
step "wgpunch status of the coordinator"
tb_status coord

step "cleaning up"
tb_cleanup
echo "done: all namespaces, processes and temporary files of this demo are gone"

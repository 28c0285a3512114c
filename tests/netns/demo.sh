#!/bin/bash
# SPDX-License-Identifier: MIT
# demo.sh [WGPUNCH] - watch wgpunch connect two WireGuard hosts behind two different NATs.
#
# Builds, in network namespaces on this machine: a "public internet" (198.51.100.0/24) with a
# coordinator at 198.51.100.1, host A behind a typical home router (port-preserving NAT that
# drops unsolicited inbound packets) and host B behind a router that also maps the WireGuard port
# to another public port. Each host runs wireguard-go with the other as a peer WITHOUT an
# endpoint, and wgpunch in the node role. Prints the tunnel, a ping through it and wgpunch's
# status, then removes everything it made. Needs root, wireguard-go, wireguard-tools, nftables
# and iproute2 (Debian: apt install wireguard-go wireguard-tools nftables iproute2).
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
cat <<DIAGRAM

                      coordinator 198.51.100.1:51900 (and :51901)
                                    |
      ------------------- "internet" 198.51.100.0/24 -------------------
             |                                                  |
   router A ${TB_WAN[ra]}                          router B ${TB_WAN[rb]}
   masquerade, drops unsolicited              fixed map :51820 -> :52820, drops unsolicited
             |                                                  |
   host A ${TB_ADDR[a]}                                host B ${TB_ADDR[b]}
   ${TB_WGIF[a]} ${TB_TUN[a]}:51820                       ${TB_WGIF[b]} ${TB_TUN[b]}:51820
DIAGRAM

step "WireGuard peers are configured without endpoints"
wg show "${TB_WGIF[a]}"

step "starting the coordinator, then the nodes"
tb_coord
echo "coordinator pid $TB_COORD_PID, public key $TB_COORD_PUB"
t0=${EPOCHREALTIME/./}
tb_node a
tb_node b
echo "node A and node B started; waiting for the tunnel (at most 20 s)"
tb_wait_handshake a b 20 || tb_fail "no handshake on A within 20 s (logs below)"
tb_wait_handshake b a 5 || tb_fail "no handshake on B (logs below)"
printf 'WireGuard handshake after %d ms\n' $(((${EPOCHREALTIME/./} - t0) / 1000))

step "wg show on host A"
wg show "${TB_WGIF[a]}"
step "wg show on host B"
wg show "${TB_WGIF[b]}"

step "ping from A (${TB_TUN[a]}) to B (${TB_TUN[b]}) through the tunnel"
tb_exec a ping -n -c 3 -i 0.2 -W 1 "${TB_TUN[b]}" || tb_fail "no ping through the tunnel"

step "wgpunch status on host A"
tb_status a
step "wgpunch status on host B"
tb_status b
step "wgpunch status of the coordinator"
tb_status coord

step "cleaning up"
tb_cleanup
echo "done: all namespaces, processes and temporary files of this demo are gone"

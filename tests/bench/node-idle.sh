#!/bin/bash
# SPDX-License-Identifier: MIT
# node-idle.sh [SECONDS] [PEERS] - what an idle node costs: resident memory and wake-ups.
#
# Builds two hosts behind cone NATs and a coordinator (docs/testbed.md), waits until their
# tunnel is up, lets it settle, then watches node A for SECONDS (default 60) while nothing
# happens but WireGuard's keepalives: VmRSS at the end, and wake-ups counted as the growth of
# the process's voluntary context switches (every return from epoll_wait that found work, or
# a timer, is one). With PEERS > 1, host A's interface also lists PEERS - 1 extra peers that
# never appear (their keys are random), so the cost of a larger interface shows.
# Targets (issue 10): idle RSS <= 4 MiB, <= 1 wake-up a second. Needs root; WGPUNCH names the
# binary (default build/wgpunch).
set -u
TB_NAME=node-idle
. "$(dirname "$0")/../netns/lib.sh"
tb_need python3

secs=${1:-60}
peers=${2:-1}
[ "$secs" -ge 5 ] 2>/dev/null && [ "$secs" -le 3600 ] && [ "$peers" -ge 1 ] 2>/dev/null &&
	[ "$peers" -le 20000 ] || { echo "usage: $0 [SECONDS 5-3600] [PEERS 1-20000]" >&2; exit 2; }

ctxt()
{
	awk '$1 == "voluntary_ctxt_switches:" { v = $2 }
	     $1 == "nonvoluntary_ctxt_switches:" { n = $2 } END { print v + 0, n + 0 }' \
		"/proc/$1/status"
}

tb_init
tb_side a cone
tb_side b cone
tb_peers a b
if [ "$peers" -gt 1 ]; then
	# Extra peers with random keys and no allowed IPs: they never answer, as a large
	# interface's absent peers do. One `wg set` per 500 keeps the argument list short.
	extra=()
	for i in $(seq 2 "$peers"); do
		extra+=(peer "$(wg genkey | wg pubkey)")
		if [ "${#extra[@]}" -ge 1000 ] || [ "$i" = "$peers" ]; then
			tb_exec a wg set "${TB_WGIF[a]}" "${extra[@]}" || tb_fail "wg set failed"
			extra=()
		fi
	done
fi
tb_coord
tb_node a
tb_node b
tb_assert_tunnel a b 20
pid=$TB_NODE_PID_a
sleep 5 # the first refreshes and the status reads of the assert are over

read -r v0 n0 < <(ctxt "$pid")
cpu0=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
sleep "$secs"
read -r v1 n1 < <(ctxt "$pid")
cpu1=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
rss=$(tb_vmrss "$pid")
hz=$(getconf CLK_TCK)

python3 - "$secs" "$peers" "$rss" "$v0" "$v1" "$n0" "$n1" "$cpu0" "$cpu1" "$hz" <<'EOF'
import sys
secs, peers, rss, v0, v1, n0, n1, c0, c1, hz = (int(x) for x in sys.argv[1:])
wake = (v1 - v0 + n1 - n0) / secs
cpu_ms = (c1 - c0) * 1000 / hz
print(f"node idle over {secs} s with {peers} peer(s):")
print(f"  VmRSS       {rss} kB ({rss / 1024:.2f} MiB; target <= 4 MiB)")
print(f"  wake-ups    {wake:.2f} a second (target <= 1)")
print(f"  CPU         {cpu_ms:.0f} ms in {secs} s")
sys.exit(0 if rss <= 4096 and wake <= 1.0 else 1)
EOF

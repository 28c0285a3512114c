#!/bin/bash
# SPDX-License-Identifier: MIT
# punch-latency.sh [RUNS] - how long from starting a node until WireGuard has a handshake.
#
# Each run builds a fresh topology (two hosts behind cone NATs, a coordinator; see
# docs/testbed.md), starts the coordinator and node A and waits until A is ready (its status
# shows a session and its mapping). Then t0, node B starts, and B's `wg show IFACE
# latest-handshakes` is polled every ~3 ms (at most 15 s) for the first non-zero handshake.
# Prints each run's milliseconds and p50 / p95 (nearest rank). Targets: p50 <= 50 ms, p95 <=
# 200 ms. Needs root; WGPUNCH names the binary (default build/wgpunch).
set -u
TB_NAME=punch-latency
. "$(dirname "$0")/../netns/lib.sh"
tb_need python3 # status JSON

runs=${1:-20}
[ "$runs" -ge 1 ] 2>/dev/null || { echo "usage: $0 [RUNS]" >&2; exit 2; }
exec {nap}<> <(:) # read -t on an fd that never has data: a sleep without a fork
results=()
failed=0

now_us()
{
	echo "${EPOCHREALTIME/./}"
}

for run in $(seq 1 "$runs"); do
	tb_init "$run"
	tb_side a cone
	tb_side b cone
	tb_peers a b
	tb_coord
	tb_node a
	tb_wait_node_ready a 10 || tb_fail "run $run: node A never became ready"
	ifb=${TB_WGIF[b]}
	t0=$(now_us)
	tb_node b
	end=$((t0 + 15000000))
	ms=
	while [ "$(now_us)" -lt "$end" ]; do
		hs=$(wg show "$ifb" latest-handshakes 2>/dev/null)
		if [ -n "$hs" ] && [ "${hs##*[[:space:]]}" != 0 ]; then
			ms=$((($(now_us) - t0) / 1000))
			break
		fi
		read -r -t 0.003 -u "$nap"
	done
	if [ -n "$ms" ]; then
		results+=("$ms")
		printf 'run %3d: %6d ms\n' "$run" "$ms"
	else
		failed=$((failed + 1))
		printf 'run %3d: no handshake within 15 s\n' "$run"
		tb_dump_logs
	fi
	tb_cleanup
done

tb_latency_summary "50" "200" "$failed" "${results[@]}"

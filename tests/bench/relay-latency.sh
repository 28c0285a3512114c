#!/bin/bash
# SPDX-License-Identifier: MIT
# relay-latency.sh [RUNS] - how long from starting the later node until WireGuard has a
# handshake through the coordinator's relay.
#
# Each run builds a fresh topology (two hosts behind symmetric NATs, a coordinator; see
# docs/testbed.md), starts the coordinator and node A and waits until the coordinator has A
# ready (a session, its mappings, its filter test over: a symmetric NAT's result is "unknown",
# so the node's own status cannot say). Then t0, node B starts, and B's `wg show IFACE
# latest-handshakes` is polled every ~3 ms (at most 15 s) for the first non-zero handshake,
# which can only come through the relay there; the endpoint is checked to be a relay port.
# Prints each run's milliseconds and p50 / p95 (nearest rank). Target: p50 <= 1000 ms
# (issue 8). Needs root; WGPUNCH names the binary (default build/wgpunch).
set -u
TB_NAME=relay-latency
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
	tb_side a symmetric
	tb_side b symmetric
	tb_peers a b
	tb_coord
	tb_node a
	tb_wait_for 10 tb_json coord "d['sessions'] == 1 and d['pending_filter_tests'] == 0 and \
		d['counters']['filter_tests'] >= 1 and d['counters']['probe_accepted'] >= 2" \
		>/dev/null || tb_fail "run $run: node A never became ready at the coordinator"
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
	ep=$(tb_endpoint b a)
	if [ -n "$ms" ] && { [ "${ep%:*}" != "$TB_COORD_IP" ] || [ "${ep##*:}" -lt 52000 ]; }; then
		printf 'run %3d: handshake, but B reaches A at %s, not a relay port\n' "$run" "$ep"
		ms=
	fi
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

tb_latency_summary "1000" "" "$failed" "${results[@]}"

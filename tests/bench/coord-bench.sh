#!/bin/bash
# SPDX-License-Identifier: MIT
# coord-bench.sh - the coordinator under a fleet on loopback: one table of what it does.
#
# Builds nothing: uses BUILD/wgpunch and BUILD/tests/bench/loadgen (BUILD defaults to
# ./build). The coordinator runs pinned to CPU 0 (taskset), loadgen to CPU 1; loadgen starts
# and stops each coordinator itself, by PID (and it dies with loadgen: PR_SET_PDEATHSIG).
# Runs, each bounded in time (bringing a fleet up at most 45 s, or N / 1,500 s within 75 to
# 300 s for the big fleet, each measurement 3-4 s:
# 6 to 7 minutes on a busy machine, 4 on a quiet one; a fleet not all up by then is measured
# as far as it got, and the table says how many):
#   1. new sessions a second: 256 source addresses, 12,000 fresh keys, 3 s
#      (with the default handshake_cpu, and with 100)
#   2. 10,000 nodes registered: RSS per node; a cold restart (default handshake budget, no
#      state_file: every node handshakes again)
#   3. N nodes (default 30,000; one source address each up to the open-file limit, then
#      shared; handshake_cpu 100 so that bringing them up twice fits the bound): RSS per node,
#      REGISTER and PROBE
#      round trips with a window, REGISTER latency paced at 20,000 and 100,000 a second, and a
#      planned coordinator restart with state_file (time until every node is registered again)
# Targets are issue 10's. Needs root only to raise the open file limit for N sockets.
#	coord-bench.sh [N]
#	coord-bench.sh N state    the coordinator started on a state file of N synthetic nodes
#	                          (tests/bench/state-fill.c): RSS per node, time to load, to
#	                          write it at stop and to load its own (1M: about a minute)
#	coord-bench.sh N memory   only the RSS per node with N registered and a restart with
#	                          state_file (1M: about 30 minutes, the fleet brought up at the
#	                          handshake rate)
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD:-$root/build}
wgp=$build/wgpunch
lg=$build/tests/bench/loadgen
big=${1:-30000}
for f in "$wgp" "$lg"; do
	[ -x "$f" ] || { echo "coord-bench: $f missing: build first" >&2; exit 1; }
done
[ "$(nproc)" -ge 2 ] || { echo "coord-bench: needs two cores (one each)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/coord-bench.XXXXXX)
pid=
cleanup()
{
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free even port below the ephemeral range, with port + 1 free too.
port=
for _ in $(seq 1 50); do
	p=$((20000 + (RANDOM % 4000) * 2))
	hex=$(printf ':%04X ' "$p")
	hex1=$(printf ':%04X ' $((p + 1)))
	if ! grep -q -e "$hex" -e "$hex1" /proc/net/udp /proc/net/udp6; then
		port=$p
		break
	fi
done
[ -n "$port" ] || { echo "coord-bench: no free port" >&2; exit 1; }

(umask 077 && "$wgp" genkey >"$tmp/coord.key")
pub=$("$wgp" pubkey <"$tmp/coord.key")
cat >"$tmp/coord.ini" <<EOF
[coordinator]
listen = 127.0.0.1:$port
private_key_file = $tmp/coord.key
control_socket = $tmp/coord.sock
max_nodes = 1048576
log_level = warn
EOF
"$wgp" -c "$tmp/coord.ini" --check >/dev/null || exit 1
coord="exec taskset -c 0 $wgp -c $tmp/coord.ini"

declare -A R
only=${2:-}
# run NAME loadgen-options...: results land in R[name].
run()
{
	local name=$1 line k v
	shift
	echo "coord-bench: $name: loadgen $*" >&2
	"$lg" --coord "$coord" --port "$port" --pub "$pub" --cpu 1 "$@" >"$tmp/$name.out" \
		2>"$tmp/$name.err" &
	pid=$!
	wait "$pid"
	local rc=$?
	pid=
	sed 's/^/    /' "$tmp/$name.err" >&2
	[ $rc -eq 0 ] || echo "coord-bench: $name: loadgen failed ($rc)" >&2
	while read -r line k v; do
		[ "$line" = result ] && R[$k]=$v
	done <"$tmp/$name.out"
}

g()
{
	local v=${R[$1]:-}
	[ -n "$v" ] && printf '%.0f' "$v" || printf 'n/a'
}
# vmrss PID: resident kB.
vmrss()
{
	awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# coord_up INI: starts the coordinator (pinned to CPU 0) in the background, pid in $pid, and
# waits (at most 300 s) until its status answers; the seconds that took in $up_s.
coord_up()
{
	local t0=${EPOCHREALTIME/./}

	taskset -c 0 "$wgp" -c "$1" 2>>"$tmp/state.err" &
	pid=$!
	for _ in $(seq 1 3000); do
		"$wgp" status -s "$tmp/coord.sock" --json >"$tmp/status.json" 2>/dev/null && break
		sleep 0.1
	done
	up_s=$(((${EPOCHREALTIME/./} - t0) / 1000))
	up_s=$((up_s / 1000)).$(printf '%03d' $((up_s % 1000)))
}

coord_down()
{
	local t0=${EPOCHREALTIME/./}

	kill -TERM "$pid"
	wait "$pid"
	pid=
	down_s=$(((${EPOCHREALTIME/./} - t0) / 1000))
	down_s=$((down_s / 1000)).$(printf '%03d' $((down_s % 1000)))
}

if [ "$only" = state ]; then
	# The coordinator with N registered nodes without N handshakes: a state file of synthetic
	# nodes (tests/bench/state-fill.c), with and without a LAN address each.
	sed 's|^log_level = warn$|&\nstate_file = '"$tmp"'/coord.state|' "$tmp/coord.ini" \
		>"$tmp/coordstate.ini"
	coord_up "$tmp/coordstate.ini"
	rss0=$(vmrss "$pid")
	coord_down
	printf '\n| what | value | target |\n|---|---|---|\n'
	for lan in "" --no-lan; do
		"$build/tests/bench/state-fill" "$big" "$tmp/coord.key" "$tmp/coord.state" $lan \
			>/dev/null || exit 1
		coord_up "$tmp/coordstate.ini"
		nodes=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["nodes"])' \
			"$tmp/status.json")
		rss=$(vmrss "$pid")
		load_s=$up_s
		coord_down
		size=$(stat -c %s "$tmp/coord.state")
		coord_up "$tmp/coordstate.ini"
		reload_s=$up_s
		coord_down
		rm -f "$tmp/coord.state"
		what="8 peers and one LAN address each"
		[ -n "$lan" ] && what="8 peers, no LAN address (as loadgen's)"
		printf '| RSS per registered node, %s nodes, %s | %s B (%s kB, empty %s kB; %s registered) | <= 512 B at 1M |\n' \
			"$big" "$what" $(((rss - rss0) * 1024 / nodes)) "$rss" "$rss0" "$nodes"
		printf '| restart with state_file, %s nodes (%s) | up in %s s from the synthetic file, %s s from its own; state written in %s s, %s B a node | 1M within 180 s |\n' \
			"$big" "${lan:-with LAN}" "$load_s" "$reload_s" "$down_s" $((size / nodes))
	done
	exit 0
fi

if [ "$only" = memory ]; then
	sed -e 's/^log_level = warn$/&\nhandshake_cpu = 100/' \
		-e 's|^log_level = warn$|&\nstate_file = '"$tmp"'/coord.state|' "$tmp/coord.ini" \
		>"$tmp/coordstate.ini"
	coord="exec taskset -c 0 $wgp -c $tmp/coordstate.ini"
	setup=$((big / 550 + 60))
	[ "$setup" -gt 1800 ] && setup=1800
	run memory --mode memory,register:64,latency:20000,restart --nodes "$big" --time 4 \
		--setup-time "$setup"
	printf '\n| RSS per registered node, %s nodes | %s B (%s kB in all, %s registered in %s s) | <= 512 B at 1M |\n' \
		"$big" "${R[bytes_per_node]:-n/a}" "${R[rss_kb]:-n/a}" "${R[registered]:-n/a}" \
		"${R[establish_s]:-n/a}"
	printf '| REGISTER answered, window 64, %s nodes | %s a second (%s us coordinator CPU each) | >= 400,000 at 1M nodes |\n' \
		"$big" "$(g register_w64_per_s)" "$(g register_w64_coord_us)"
	printf '| REGISTER p50 / p99 at 20000 a second paced, %s nodes | %s / %s us, %s %% lost | |\n' \
		"$big" "$(g latency20000_p50_us)" "$(g latency20000_p99_us)" \
		"${R[latency20000_lost_pct]:-n/a}"
	printf '| restart with state_file, %s nodes: registered again | %s s (%s of them, %s handshakes) | 1M within 180 s |\n' \
		"$big" "${R[restart_s]:-n/a}" "${R[restart_registered]:-n/a}" \
		"${R[restart_handshakes]:-n/a}"
	exit 0
fi
run sessions --mode sessions --nodes 12000 --sockets 256 --window 64 --time 3
R[sessions_budget_per_s]=${R[sessions_per_s]:-}
R[sessions_budget_coord_us]=${R[sessions_coord_us]:-}
# The same with the whole core for handshakes: what the CPU can do, not the default budget.
sed 's/^log_level = warn$/&\nhandshake_cpu = 100/' "$tmp/coord.ini" >"$tmp/coord100.ini"
coord="exec taskset -c 0 $wgp -c $tmp/coord100.ini"
run sessions100 --mode sessions --nodes 12000 --sockets 256 --window 64 --time 3
coord="exec taskset -c 0 $wgp -c $tmp/coord.ini"
run mem10k --mode memory,restart --nodes 10000 --setup-time 45
R[bytes_per_node_10k]=${R[bytes_per_node]:-}
R[restart_10k_s]=${R[restart_s]:-}
R[establish_10k_s]=${R[establish_s]:-}
R[registered_10k]=${R[registered]:-}
R[restart_10k_registered]=${R[restart_registered]:-}
# The big fleet with the whole core for handshakes, so that bringing it up fits the time
# bound on a shared machine, and with a state_file: its restart is a planned one (SIGTERM),
# where the sessions are kept. The 10k restart above is a cold one (no state file: every node
# handshakes again, as after a crash).
sed 's|^log_level = warn$|&\nstate_file = '"$tmp"'/coord.state|' "$tmp/coord100.ini" \
	>"$tmp/coordstate.ini"
coord="exec taskset -c 0 $wgp -c $tmp/coordstate.ini"
# Bringing N up (and back after the restart) gets N / 1,500 s, at least 75 and at most 300.
setup=$((big / 1500))
[ "$setup" -lt 75 ] && setup=75
[ "$setup" -gt 300 ] && setup=300
run big --mode memory,register:64,register:256,probe:64,latency:20000,latency:100000,restart \
	--nodes "$big" --time 4 --setup-time "$setup"

k=$((big / 1000))k
printf '\n| what | value | target |\n|---|---|---|\n'
printf '| new sessions a second (256 source addresses), default handshake_cpu 50 | %s (coordinator CPU %s us each) | >= 6,000 |\n' \
	"$(g sessions_budget_per_s)" "$(g sessions_budget_coord_us)"
printf '| new sessions a second (256 source addresses), handshake_cpu 100 | %s (coordinator CPU %s us each) | >= 6,000 |\n' \
	"$(g sessions_per_s)" "$(g sessions_coord_us)"
printf '| 10k nodes registered from scratch (window 256, default budget) | %s s (%s of them) | |\n' \
	"${R[establish_10k_s]:-n/a}" "$(g registered_10k)"
printf '| %s nodes registered from scratch (window 256, handshake_cpu 100) | %s s (%s of them), %s kernel drops | |\n' \
	"$k" "${R[establish_s]:-n/a}" "$(g registered)" "$(g establish_kernel_drops)"
printf '| REGISTER answered, window 64, %s nodes | %s a second (%s us coordinator CPU each, %s lost) | >= 400,000 at 1M nodes |\n' \
	"$k" "$(g register_w64_per_s)" "$(g register_w64_coord_us)" "$(g register_w64_lost)"
printf '| REGISTER answered, window 256, %s nodes | %s a second (%s us each, %s lost, %s kernel drops) | >= 400,000 at 1M nodes |\n' \
	"$k" "$(g register_w256_per_s)" "$(g register_w256_coord_us)" "$(g register_w256_lost)" \
	"$(g register_w256_kernel_drops)"
printf '| PROBE answered, window 64, %s nodes | %s a second (%s us each) | |\n' \
	"$k" "$(g probe_w64_per_s)" "$(g probe_w64_coord_us)"
for r in 20000 100000; do
	printf '| REGISTER p50 / p99 at %s a second paced | %s / %s us, %s %% lost, %s kernel drops, coordinator %s %% CPU | p99 <= 1,000 us at 100k, nothing lost uncounted |\n' \
		"$r" "$(g latency${r}_p50_us)" "$(g latency${r}_p99_us)" \
		"${R[latency${r}_lost_pct]:-n/a}" "$(g latency${r}_kernel_drops)" \
		"$(g latency${r}_coord_cpu_pct)"
done
printf '| RSS per registered node, 10k nodes | %s B | <= 512 B at 1M |\n' "$(g bytes_per_node_10k)"
printf '| RSS per registered node, %s nodes | %s B (%s kB in all) | <= 512 B at 1M |\n' \
	"$k" "$(g bytes_per_node)" "$(g rss_kb)"
printf '| cold restart (no state_file) with 10k nodes (default budget): registered again | %s s (%s of them) | 1M within 180 s |\n' \
	"${R[restart_10k_s]:-n/a}" "$(g restart_10k_registered)"
printf '| restart with state_file, %s nodes: registered again | %s s (%s of them, %s handshakes) | 1M within 180 s |\n' \
	"$k" "${R[restart_s]:-n/a}" "$(g restart_registered)" "$(g restart_handshakes)"
echo "(the coordinator's own log of its handshake budget: $(grep -ho 'budget of [0-9]* a second' "$tmp"/*.err | sort -u | tr '\n' ' '))"

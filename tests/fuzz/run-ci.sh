#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# CI for the decoders: builds every tests/fuzz/fuzz-NAME.c as a libFuzzer
# binary (clang, -Dfuzz=true) in its own build folder and runs each for
# FUZZ_SECONDS (60) on a copy of its kept corpus, FUZZ_JOBS (2) at a time, so
# the tree is never rewritten. Fails when any target crashes, leaks, hangs
# (-timeout) or runs out of memory; its log and the input that did it stay in
# the printed work folder. About 4.5 minutes on 2 cores with the defaults.
#
# usage: tests/fuzz/run-ci.sh   (FUZZ_SECONDS, FUZZ_JOBS, FUZZ_BUILD_DIR override)
set -euo pipefail
cd "$(dirname "$0")/../.."

secs=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-2}
build=${FUZZ_BUILD_DIR:-build-ci-fuzz}

names=()
for src in tests/fuzz/fuzz-*.c; do
	name=$(basename "$src" .c)
	names+=("${name#fuzz-}")
done

rm -rf "$build"
CC=clang meson setup "$build" --wrap-mode=nodownload -Dfuzz=true -Dwerror=true >/dev/null
# Only the fuzz binaries (and the core they link): the rest is built elsewhere in CI.
meson compile -C "$build" "${names[@]/#/fuzz-}" >/dev/null

work=$(mktemp -d "${TMPDIR:-/tmp}/wgpunch-fuzz-ci-XXXXXX")
pids=()
# Only our own runs are stopped (by PID) if the script is interrupted.
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' INT TERM

export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=detect_leaks=1

run_one() { # NAME
	local name=$1 dir=$work/$1 rc=0
	mkdir -p "$dir/corpus" "$dir/tmp"
	cp -- tests/fuzz/corpus/"$name"/* "$dir/corpus/"
	# The outer timeout bounds the run even if libFuzzer's own clock never fires.
	TMPDIR=$dir/tmp timeout --kill-after=10 $((secs + 60)) \
		"$build/tests/fuzz/fuzz-$name" -max_total_time="$secs" -timeout=10 \
		-rss_limit_mb=1024 -print_final_stats=1 -artifact_prefix="$dir/" \
		"$dir/corpus" </dev/null >"$dir/log" 2>&1 || rc=$?
	echo "$rc" >"$dir/rc"
}

start=$SECONDS
for name in "${names[@]}"; do
	while (($(jobs -rp | wc -l) >= jobs)); do
		wait -n || true
	done
	run_one "$name" &
	pids+=($!)
done
wait

failed=0
for name in "${names[@]}"; do
	rc=$(cat "$work/$name/rc" 2>/dev/null || echo missing)
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$name/log" | tail -n 1)
	cov=$(grep -o 'cov: [0-9]*' "$work/$name/log" | tail -n 1 || true)
	if [ "$rc" = 0 ]; then
		echo "fuzz-$name: ok, ${runs:-?} runs, ${cov:-no coverage line} ($secs s)"
	else
		failed=$((failed + 1))
		echo "fuzz-$name: FAILED (exit $rc); log and input in $work/$name/" >&2
		tail -n 40 "$work/$name/log" >&2
	fi
done
echo "fuzz: ${#names[@]} targets, $failed failed, $((SECONDS - start)) s"
if [ "$failed" -ne 0 ]; then
	exit 1
fi
rm -rf -- "$work"

#!/bin/bash
# SPDX-License-Identifier: MIT
# naive-order.sh [RUNS] [TIMEOUT_S] - an experiment, not a test, and no wgpunch involved.
#
# Host A sits behind an "open" router (masquerade, no inbound filter), host B behind a "cone"
# router (masquerade, stateful filter). Each side is told the other's public ip:port plus a
# persistent keepalive with `wg set`, in three orders: A (open side) first, B (cone side) first,
# and both at once; each order RUNS times (default 10) on a fresh topology. A run succeeds when
# both interfaces show a handshake within TIMEOUT_S seconds (default 8: one WireGuard retry at
# 5 s is included). It shows why the coordinator orders the punch: when the cone side sends
# first, its packet reaches the open router, which takes it for itself and keeps a conntrack
# entry for it; A's own flow to B is then remapped to another port, which B's router drops.
set -u
TB_NAME=naive-order
. "$(dirname "$0")/lib.sh"

runs=${1:-10}
timeout_s=${2:-8}
delay_s=0.2
run=0

# One attempt in ORDER; sets RESULT to "ok" or "fail" and SEEN to A's endpoint as B sees it.
attempt()
{
	local order=$1 seta setb ok

	run=$((run + 1))
	tb_init "$run"
	tb_router ro open
	tb_router rc cone
	tb_host a ro
	tb_host b rc
	tb_wg_up a
	tb_wg_up b
	tb_wg_peer a b
	tb_wg_peer b a
	seta=(tb_wg_peer a b endpoint "${TB_WAN[rc]}:$TB_WG_PORT" persistent-keepalive 25)
	setb=(tb_wg_peer b a endpoint "${TB_WAN[ro]}:$TB_WG_PORT" persistent-keepalive 25)
	case $order in
	open-first) "${seta[@]}"; sleep "$delay_s"; "${setb[@]}" ;;
	cone-first) "${setb[@]}"; sleep "$delay_s"; "${seta[@]}" ;;
	together) "${seta[@]}" & "${setb[@]}"; wait $! ;;
	esac
	ok=fail
	if tb_wait_handshake a b "$timeout_s" && tb_wait_handshake b a 1; then
		ok=ok
	fi
	RESULT=$ok
	SEEN=$(tb_endpoint b a)
	tb_cleanup
}

declare -A total=()
for order in open-first cone-first together; do
	total[$order]=0
	line=
	for i in $(seq 1 "$runs"); do
		attempt "$order"
		[ "$RESULT" = ok ] && total[$order]=$((total[$order] + 1))
		line+=" $RESULT"
		tb_log "$order run $i: $RESULT (B sees A at $SEEN)"
	done
	echo "$order:$line"
done
echo
echo "handshakes within ${timeout_s} s, delay between the two sides ${delay_s} s:"
for order in open-first cone-first together; do
	printf '  %-11s %2d / %d\n' "$order" "${total[$order]}" "$runs"
done

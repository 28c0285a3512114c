#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# test-wg-userspace: the wg module's UAPI backend against a real wireguard-go.
# Reads key, port and peers and compares them to `wg show dump`; writes endpoint
# and keepalive on two of three peers (IPv4 and IPv6) and checks that exactly
# those changed, and that a peer that does not exist is not created.
# Needs root and wireguard-go (exit 77 otherwise).
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "SKIP: needs root"; exit 77; }
for t in wireguard-go wg ip; do
	command -v "$t" >/dev/null || { echo "SKIP: $t missing"; exit 77; }
done
wgtool=${WGPUNCH_BUILD:?WGPUNCH_BUILD is not set}/tests/tools/wgtool
[ -x "$wgtool" ] || { echo "FAIL: $wgtool not built"; exit 1; }

prefix=wpt-wgu-$$
ns=$prefix
# UAPI sockets of every namespace share /var/run/wireguard: the name must be unique.
ifc=wgu$$
tmp=$(mktemp -d "${TMPDIR:-/tmp}/$prefix.XXXXXX")
wgpid=

cleanup() {
	set +e
	if [ -n "$wgpid" ]; then
		kill "$wgpid" 2>/dev/null
		for _ in $(seq 50); do kill -0 "$wgpid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$wgpid" 2>/dev/null
	fi
	for n in $(ip netns list 2>/dev/null | awk -v p="$prefix" 'index($1, p) == 1 {print $1}'); do
		ip netns del "$n"
	done
	rm -f "/var/run/wireguard/$ifc.sock"
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "FAIL: $*"; exit 1; }
inns() { ip netns exec "$ns" "$@"; }

ip netns add "$ns"
inns ip link set lo up
# wireguard-go refuses to start where the kernel module exists unless told otherwise.
WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 ip netns exec "$ns" \
	wireguard-go -f "$ifc" >"$tmp/wireguard-go.log" 2>&1 &
wgpid=$!
for _ in $(seq 100); do
	[ -S "/var/run/wireguard/$ifc.sock" ] && break
	kill -0 "$wgpid" 2>/dev/null || { cat "$tmp/wireguard-go.log"; fail "wireguard-go exited"; }
	sleep 0.1
done
[ -S "/var/run/wireguard/$ifc.sock" ] || fail "no UAPI socket for $ifc"

umask 077
wg genkey >"$tmp/key"
p1=$(wg genkey | wg pubkey)
p2=$(wg genkey | wg pubkey)
p3=$(wg genkey | wg pubkey)
unknown=$(wg genkey | wg pubkey)
inns wg set "$ifc" private-key "$tmp/key" listen-port 51999 \
	peer "$p1" allowed-ips 198.18.10.1/32,2001:db8:10::1/128 \
	peer "$p2" allowed-ips 198.18.10.2/32 \
	peer "$p3" allowed-ips 198.18.10.3/32
inns ip link set "$ifc" up

# 1. Read: the same key, port and peers as wg(8) sees (auto must pick userspace).
inns "$wgtool" "$ifc" get >"$tmp/get" 2>"$tmp/get.err" || { cat "$tmp/get.err"; fail "wgtool get"; }
grep -q "userspace backend" "$tmp/get.err" || fail "auto did not pick the userspace backend"
inns wg show "$ifc" dump >"$tmp/dump"
head -n1 "$tmp/dump" | cut -f1-4 >"$tmp/want.dev"
head -n1 "$tmp/get" >"$tmp/got.dev"
diff -u "$tmp/want.dev" "$tmp/got.dev" || fail "device line differs from wg show dump"
tail -n +2 "$tmp/dump" | cut -f1,3-8 | sort >"$tmp/want.peers"
tail -n +2 "$tmp/get" | sort >"$tmp/got.peers"
diff -u "$tmp/want.peers" "$tmp/got.peers" || fail "peers differ from wg show dump"
[ "$(wc -l <"$tmp/got.peers")" = 3 ] || fail "expected 3 peers"
[ "$(cut -f2 "$tmp/got.dev")" = "$(wg pubkey <"$tmp/key")" ] || fail "public key not derived"
[ "$(cut -f3 "$tmp/got.dev")" = 51999 ] || fail "listen port"

# 2. Write endpoint + keepalive on two peers, IPv4 and IPv6.
"$wgtool" --backend userspace "$ifc" set \
	"$p1" 198.51.100.7:51820 25 \
	"$p2" "[2001:db8::7]:51821" 30 || fail "wgtool set"
ep() { inns wg show "$ifc" endpoints | awk -v k="$1" '$1 == k {print $2}'; }
ka() { inns wg show "$ifc" persistent-keepalive | awk -v k="$1" '$1 == k {print $2}'; }
[ "$(ep "$p1")" = 198.51.100.7:51820 ] || fail "p1 endpoint is '$(ep "$p1")'"
[ "$(ka "$p1")" = 25 ] || fail "p1 keepalive is '$(ka "$p1")'"
[ "$(ep "$p2")" = "[2001:db8::7]:51821" ] || fail "p2 endpoint is '$(ep "$p2")'"
[ "$(ka "$p2")" = 30 ] || fail "p2 keepalive is '$(ka "$p2")'"
[ "$(ep "$p3")" = "(none)" ] || fail "p3 endpoint changed to '$(ep "$p3")'"
[ "$(ka "$p3")" = off ] || fail "p3 keepalive changed to '$(ka "$p3")'"
# Nothing but endpoint and keepalive moved: allowed IPs are as before.
inns wg show "$ifc" allowed-ips | sort >"$tmp/ips.after"
awk -F'\t' '{gsub(",", " ", $4); print $1 "\t" $4}' "$tmp/dump" | tail -n +2 | sort >"$tmp/ips.before"
diff -u "$tmp/ips.before" "$tmp/ips.after" || fail "allowed IPs changed"

# 3. Update-only: an unknown peer is reported (exit 3) and not created; the known one
#    in the same call is still written.
rc=0
"$wgtool" "$ifc" set "$unknown" 203.0.113.9:51820 5 "$p3" - 7 || rc=$?
[ "$rc" = 3 ] || fail "set of an unknown peer: exit $rc, want 3"
inns wg show "$ifc" peers | grep -qx "$unknown" && fail "unknown peer was created"
[ "$(inns wg show "$ifc" peers | wc -l)" = 3 ] || fail "peer count changed"
[ "$(ka "$p3")" = 7 ] || fail "p3 keepalive not written next to the unknown peer"
[ "$(ep "$p3")" = "(none)" ] || fail "p3 endpoint changed"

# 4. The values read back through wgtool match too.
inns "$wgtool" "$ifc" get 2>/dev/null | grep -q "^$p2	\[2001:db8::7\]:51821	" ||
	fail "wgtool does not read the IPv6 endpoint back"

echo "PASS: wg userspace backend reads and updates wireguard-go ($ifc)"

#!/bin/sh
# SPDX-License-Identifier: MIT
# test-kernel-wg: runs inside the VM (run-vm.sh) with wgtool, wg and ip packed.
# The wg module's kernel backend against kernel WireGuard: read, update-only writes,
# a handshake and ping over the endpoints it wrote, and 300 peers (multi-part dumps,
# SET split over several messages). Interfaces live in namespaces a and b; their UDP
# sockets stay in the initial namespace, where they were created, so they meet on
# 127.0.0.1.
set -eu
fail() { echo "FAIL: $*"; exit 1; }
step() { echo "== $*"; }
ina() { ip netns exec a "$@"; }

ip netns add a
ip netns add b
ip link add wg0 type wireguard
ip link add wg1 type wireguard
ip link set wg0 netns a
ip link set wg1 netns b
umask 077
wg genkey >/tmp/k0
wg genkey >/tmp/k1
p0=$(wg pubkey </tmp/k0)
p1=$(wg pubkey </tmp/k1)
px=$(wg genkey | wg pubkey)
py=$(wg genkey | wg pubkey)
unknown=$(wg genkey | wg pubkey)
# No endpoints anywhere: wgtool writes them.
ina wg set wg0 listen-port 51820 private-key /tmp/k0 fwmark 0x51 \
	peer "$p1" allowed-ips 198.19.77.2/32 \
	peer "$px" allowed-ips 198.19.78.0/24,2001:db8:78::/48 \
	peer "$py" allowed-ips 198.19.79.1/32
ip netns exec b wg set wg1 listen-port 51821 private-key /tmp/k1 \
	peer "$p0" allowed-ips 198.19.77.1/32
ip -n a addr add 198.19.77.1/24 dev wg0
ip -n b addr add 198.19.77.2/24 dev wg1
ip -n a link set wg0 up
ip -n b link set wg1 up

step "read wg0 and compare with wg show dump"
ina wgtool --backend kernel wg0 get >/tmp/get || fail "wgtool get"
ina wg show wg0 dump >/tmp/dump
[ "$(head -n1 /tmp/get)" = "$(head -n1 /tmp/dump | cut -f1-4)" ] || {
	head -n1 /tmp/get /tmp/dump
	fail "device line differs"
}
tail -n +2 /tmp/dump | cut -f1,3-8 | sort >/tmp/want
tail -n +2 /tmp/get | sort >/tmp/got
cmp -s /tmp/want /tmp/got || { diff /tmp/want /tmp/got; fail "peers differ"; }
[ "$(wc -l </tmp/got)" = 3 ] || fail "expected 3 peers"

step "write endpoint + keepalive on two peers, IPv4 and IPv6"
ina wgtool --backend kernel wg0 set "$p1" 127.0.0.1:51821 1 "$px" "[2001:db8::7]:51830" 30 ||
	fail "wgtool set wg0"
ep() { ina wg show wg0 endpoints | awk -v k="$1" '$1 == k {print $2}'; }
ka() { ina wg show wg0 persistent-keepalive | awk -v k="$1" '$1 == k {print $2}'; }
[ "$(ep "$p1")" = 127.0.0.1:51821 ] || fail "p1 endpoint '$(ep "$p1")'"
[ "$(ka "$p1")" = 1 ] || fail "p1 keepalive '$(ka "$p1")'"
[ "$(ep "$px")" = "[2001:db8::7]:51830" ] || fail "px endpoint '$(ep "$px")'"
[ "$(ka "$px")" = 30 ] || fail "px keepalive '$(ka "$px")'"
[ "$(ep "$py")" = "(none)" ] || fail "py endpoint changed"
[ "$(ka "$py")" = off ] || fail "py keepalive changed"
[ "$(ina wg show wg0 allowed-ips | awk -v k="$px" '$1 == k {print $2, $3}')" = \
	"198.19.78.0/24 2001:db8:78::/48" ] || fail "px allowed IPs changed"

step "handshake and ping over the written endpoints"
ip netns exec b wgtool wg1 set "$p0" 127.0.0.1:51820 1 || fail "wgtool set wg1 (auto backend)"
ina ping -c 3 -W 5 198.19.77.2 >/dev/null || fail "no ping over the tunnel"
hs=$(ina wgtool --backend kernel wg0 get | awk -v k="$p1" '$1 == k {print $4}')
[ "${hs:-0}" -gt 0 ] || fail "wgtool sees no handshake"
rx=$(ina wgtool --backend kernel wg0 get | awk -v k="$p1" '$1 == k {print $5}')
[ "${rx:-0}" -gt 0 ] || fail "wgtool sees no rx bytes"

step "update-only: an unknown peer is not created"
rc=0
ina wgtool --backend kernel wg0 set "$unknown" 127.0.0.1:9 5 "$py" - 7 || rc=$?
[ "$rc" = 3 ] || fail "set with an unknown peer: exit $rc, want 3"
ina wg show wg0 peers | grep -qx "$unknown" && fail "unknown peer created"
[ "$(ina wg show wg0 peers | wc -l)" = 3 ] || fail "peer count changed"
[ "$(ka "$py")" = 7 ] || fail "py keepalive not written"

step "300 peers: multi-part dump and a split SET"
ip -n a link add wg2 type wireguard
# Keys: 43 base64 characters whose last one ('A') leaves the padding bits zero, then '='.
# The first peer has 1500 allowed IPs, more than one dump part holds, so its allowed IPs
# continue in the next part.
awk 'BEGIN {
	for (i = 0; i < 300; i++) {
		printf "[Peer]\nPublicKey = AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%04dA=\n", i
		printf "AllowedIPs = 198.18.%d.%d/32, 2001:db8:ff::%x/128\n", 100 + int(i / 200), i % 200, i
		if (i == 0)
			for (j = 0; j < 1500; j++)
				printf "AllowedIPs = 198.19.%d.%d/32\n", int(j / 250), j % 250
	}
}' >/tmp/many.conf
ina wg addconf wg2 /tmp/many.conf
ina wgtool --backend kernel wg2 get >/tmp/get2 || fail "wgtool get wg2"
ina wg show wg2 dump | tail -n +2 | cut -f1,3-8 | sort >/tmp/want2
tail -n +2 /tmp/get2 | sort >/tmp/got2
[ "$(wc -l </tmp/got2)" = 300 ] || fail "read $(wc -l </tmp/got2) peers, want 300"
cmp -s /tmp/want2 /tmp/got2 || fail "300-peer read differs from wg show dump"
awk '$1 ~ /^AAAA/ {n = split($3, a, ","); if (n > m) m = n} END {exit m != 1502}' /tmp/got2 ||
	fail "the peer with 1502 allowed IPs was not read whole"
# One wg_set_peers() call for all 300 (about 90 fit one netlink message).
set --
for i in $(seq 0 299); do
	set -- "$@" "$(printf 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%04dA=' "$i")" \
		"198.51.100.$((i % 250 + 1)):$((20000 + i))" 15
done
ina wgtool --backend kernel wg2 set "$@" || fail "wgtool set 300 peers"
n=$(ina wg show wg2 endpoints | awk '{
	# busybox awk reads a leading 0 as octal: strip the zeros first
	i = substr($1, 39, 4)
	sub(/^0+/, "", i)
	i += 0
	want = sprintf("198.51.100.%d:%d", i % 250 + 1, 20000 + i)
	if ($2 == want) n++
} END {print n + 0}')
[ "$n" = 300 ] || fail "$n of 300 endpoints written"
n=$(ina wg show wg2 persistent-keepalive | awk '$2 == 15' | wc -l)
[ "$n" = 300 ] || fail "$n of 300 keepalives written"
[ "$(ina wg show wg2 peers | wc -l)" = 300 ] || fail "peer count changed"

echo "PASS: kernel WireGuard through the wg module"

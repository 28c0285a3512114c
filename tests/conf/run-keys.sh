#!/bin/bash
# SPDX-License-Identifier: MIT
#
# `wgpunch genkey` and `wgpunch pubkey` against wireguard-tools: a generated
# key is one `wg pubkey` accepts, and `wgpunch pubkey` prints exactly what
# `wg pubkey` prints, for generated keys, for unclamped random keys and for the
# RFC 7748 section 6.1 key pair. Prints TAP.
#
# usage: run-keys.sh WGPUNCH
set -u

wgpunch=$1
n=0
failed=0

report() { # OK NAME
	n=$((n + 1))
	if [ "$1" = 1 ]; then
		echo "ok $n - $2"
	else
		echo "not ok $n - $2"
		failed=$((failed + 1))
	fi
}

# genkey: 44 characters of base64 that wg takes, clamped, different each time.
ok=1
prev=
for i in 1 2 3 4 5; do
	key=$(timeout 10 "$wgpunch" genkey) || { echo "# genkey failed"; ok=0; continue; }
	if ! [[ $key =~ ^[A-Za-z0-9+/]{43}=$ ]]; then
		echo "# genkey printed '${key:0:8}...', not a base64 key"
		ok=0
	fi
	if ! printf '%s\n' "$key" | wg pubkey >/dev/null; then
		echo "# wg pubkey refused a wgpunch genkey key"
		ok=0
	fi
	# Clamped as `wg genkey` does: byte 0 & 7 == 0, byte 31 & 0xc0 == 0x40.
	bytes=$(printf '%s' "$key" | base64 -d | od -An -tu1 -v | tr -s ' \n' ' ')
	read -r -a b <<<"$bytes"
	if [ "${#b[@]}" != 32 ] || [ $((b[0] & 7)) != 0 ] || [ $((b[31] & 192)) != 64 ]; then
		echo "# genkey key is not clamped"
		ok=0
	fi
	if [ "$key" = "$prev" ]; then
		echo "# genkey printed the same key twice"
		ok=0
	fi
	prev=$key
done
report $ok "genkey output is a clamped key that wg pubkey accepts"

# pubkey: byte for byte what wg pubkey prints (output and newline included).
check_pubkey() { # PRIVATE-KEY
	local want got
	want=$(printf '%s\n' "$1" | wg pubkey | od -An -c)
	got=$(printf '%s\n' "$1" | timeout 10 "$wgpunch" pubkey | od -An -c)
	if [ -z "$want" ] || [ "$want" != "$got" ]; then
		echo "# pubkey of ${1:0:8}...: wg printed [$want], wgpunch printed [$got]"
		return 1
	fi
}

ok=1
for i in 1 2 3 4 5 6 7 8; do
	check_pubkey "$(wg genkey)" || ok=0
done
report $ok "pubkey equals wg pubkey for wg genkey keys"

ok=1
for i in 1 2 3 4 5 6 7 8; do
	# Unclamped: both tools clamp internally, so they must still agree.
	check_pubkey "$(head -c 32 /dev/urandom | base64)" || ok=0
done
check_pubkey "//////////////////////////////////////////8=" || ok=0
report $ok "pubkey equals wg pubkey for unclamped random keys"

ok=1
# RFC 7748 section 6.1: Alice's private key gives Alice's public key.
got=$(printf '%s\n' "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=" | "$wgpunch" pubkey)
[ "$got" = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=" ] || { echo "# got '$got'"; ok=0; }
check_pubkey "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=" || ok=0
report $ok "pubkey of the RFC 7748 test key"

ok=1
for bad in "" "not a key" "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo" \
	"hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmp="; do
	if out=$(printf '%s\n' "$bad" | timeout 10 "$wgpunch" pubkey 2>/dev/null); then
		echo "# pubkey accepted '$bad'"
		ok=0
	elif [ -n "$out" ]; then
		echo "# pubkey printed '$out' for '$bad'"
		ok=0
	fi
done
report $ok "pubkey refuses input that is not a key"

echo "1..$n"
[ $failed = 0 ]

#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The examples in conf/ are valid: `wgpunch --check` passes for every *.ini (a
# coordinator example is copied, with the nodes.keys example, next to a freshly
# made 0600 key file: examples never ship a private key), nodes.keys holds only public keys, and wg0.conf is a wg-quick config
# whose peers have no Endpoint (parsed here, not by --check). Prints TAP.
#
# usage: run-examples.sh WGPUNCH CONFDIR
set -u

wgpunch=$1
conf=$2
n=0
failed=0

tmp=$(mktemp -d /tmp/wgpunch-conf-examples-XXXXXX) || exit 1
trap 'rm -rf -- "$tmp"' EXIT

report() { # OK NAME
	n=$((n + 1))
	if [ "$1" = 1 ]; then
		echo "ok $n - $2"
	else
		echo "not ok $n - $2"
		failed=$((failed + 1))
	fi
}

check() { # DIR FILE: --check passes, stderr is empty, stdout names the role
	local out
	if ! out=$(cd "$1" && timeout 10 "$wgpunch" -c "$2" --check 2>"$tmp/stderr"); then
		sed 's/^/# /' "$tmp/stderr"
		return 1
	fi
	if [ -s "$tmp/stderr" ]; then
		sed 's/^/# stderr: /' "$tmp/stderr"
		return 1
	fi
	grep -q '^\[\(node\|coordinator\)\]$' <<<"$out" || { echo "# no role in the output"; return 1; }
}

# Every *.ini in conf/ passes --check, each in a folder of its own. A
# coordinator example gets the nodes.keys example next to it and a fresh key
# file made 0600, as wgpunch.conf(5) says to make it.
inis=0
for ini in "$conf"/*.ini; do
	[ -e "$ini" ] || continue
	inis=$((inis + 1))
	name=$(basename "$ini" .ini)
	ok=1
	mkdir "$tmp/$name"
	cp "$ini" "$tmp/$name/"
	what="passes --check"
	if grep -q '^\[coordinator\]' "$ini"; then
		cp "$conf/nodes.keys" "$tmp/$name/"
		key=$(sed -n 's/^private_key_file *= *//p' "$ini")
		case $key in
		/* | "") echo "# $name.ini: private_key_file '$key' is not relative"; ok=0 ;;
		*) (umask 077 && wg genkey >"$tmp/$name/$key") ;;
		esac
		what="passes --check next to a 0600 key file"
	fi
	check "$tmp/$name" "$name.ini" || ok=0
	report $ok "conf/$name.ini $what"
done
[ $inis -ge 2 ] || { echo "# only $inis example configs in $conf"; report 0 "examples found"; }

ok=1
# The same example is refused when the key file is readable by others.
chmod 644 "$tmp/coordinator/coordinator.key" || ok=0
if (cd "$tmp/coordinator" && "$wgpunch" -c coordinator.ini --check >/dev/null 2>&1); then
	echo "# a world-readable key file was accepted"
	ok=0
fi
report $ok "conf/coordinator.ini is refused with a 0644 key file"

ok=1
# nodes.keys: only comments, blank lines and canonical base64 keys.
lines=0
while IFS= read -r line; do
	line=${line%%#*}
	line=$(echo "$line" | tr -d ' \t')
	[ -z "$line" ] && continue
	lines=$((lines + 1))
	if ! [[ $line =~ ^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$ ]]; then
		echo "# nodes.keys: '$line' is not a base64 key"
		ok=0
	fi
done <"$conf/nodes.keys"
[ $lines -gt 0 ] || { echo "# nodes.keys lists no key"; ok=0; }
report $ok "conf/nodes.keys lists base64 keys"

ok=1
# wg0.conf: [Interface] with a PrivateKey placeholder (never a real key) and a
# ListenPort, and [Peer] sections with PublicKey and AllowedIPs but no Endpoint.
section=
peers=0
seen_private=0
seen_port=0
peer_key=0
lineno=0
end_peer() {
	if [ "$section" = Peer ] && [ $peer_key = 0 ]; then
		echo "# wg0.conf: a [Peer] without PublicKey"
		ok=0
	fi
}
while IFS= read -r line || [ -n "$line" ]; do
	lineno=$((lineno + 1))
	line=${line%%#*}
	line=$(echo "$line" | sed 's/^[ \t]*//; s/[ \t]*$//')
	[ -z "$line" ] && continue
	if [[ $line =~ ^\[([A-Za-z]+)\]$ ]]; then
		end_peer
		section=${BASH_REMATCH[1]}
		peer_key=0
		[ "$section" = Peer ] && peers=$((peers + 1))
		if [ "$section" != Interface ] && [ "$section" != Peer ]; then
			echo "# wg0.conf:$lineno: unknown section [$section]"
			ok=0
		fi
		continue
	fi
	if ! [[ $line =~ ^([A-Za-z]+)[[:space:]]*=[[:space:]]*(.*)$ ]]; then
		echo "# wg0.conf:$lineno: not key = value"
		ok=0
		continue
	fi
	key=${BASH_REMATCH[1]}
	value=${BASH_REMATCH[2]}
	case "$section/$key" in
	Interface/PrivateKey)
		seen_private=1
		if [[ $value =~ ^[A-Za-z0-9+/]{43}=$ ]]; then
			echo "# wg0.conf:$lineno: PrivateKey must be a placeholder, not a key"
			ok=0
		fi
		;;
	Interface/ListenPort)
		seen_port=1
		if ! [[ $value =~ ^[0-9]+$ ]] || [ "$value" -lt 1 ] || [ "$value" -gt 65535 ]; then
			echo "# wg0.conf:$lineno: bad ListenPort '$value'"
			ok=0
		fi
		;;
	Interface/Address | Interface/DNS | Interface/MTU | Interface/FwMark | Interface/Table) ;;
	Peer/PublicKey)
		peer_key=1
		if ! printf '%s' "$value" | grep -Eq '^[A-Za-z0-9+/]{43}=$'; then
			echo "# wg0.conf:$lineno: bad PublicKey"
			ok=0
		fi
		;;
	Peer/AllowedIPs | Peer/PresharedKey) ;;
	Peer/Endpoint)
		echo "# wg0.conf:$lineno: a peer has an Endpoint: wgpunch sets it"
		ok=0
		;;
	*)
		echo "# wg0.conf:$lineno: unexpected '$key' in [$section]"
		ok=0
		;;
	esac
done <"$conf/wg0.conf"
end_peer
[ $seen_private = 1 ] || { echo "# wg0.conf: no PrivateKey in [Interface]"; ok=0; }
[ $seen_port = 1 ] || { echo "# wg0.conf: no ListenPort in [Interface]"; ok=0; }
[ $peers -gt 0 ] || { echo "# wg0.conf: no [Peer]"; ok=0; }
report $ok "conf/wg0.conf: placeholder key, ListenPort, peers without Endpoint"

ok=1
# No file in conf/ goes unchecked: the configs above, the keys and wg-quick
# files here, the unit templates and the completion by the 'install' suite.
for f in "$conf"/*; do
	case $(basename "$f") in
	*.ini | nodes.keys | wg0.conf | *.service.in | wgpunch.bash-completion) ;;
	*) echo "# $f: no test covers this example"; ok=0 ;;
	esac
done
report $ok "every file in conf/ is covered by a test"

echo "1..$n"
[ $failed = 0 ]

#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Golden tests of `wgpunch -c NAME.ini --check`: for every NAME.ini here, the
# exact stderr must equal NAME.expected, and the exit status must be 1 when
# NAME.expected lists mistakes and 0 when it is empty. Prints TAP.
#
# Each test runs in a fresh folder holding a copy of NAME.ini, the *.keys
# fixtures (public keys only) and key files made here with known modes (a
# private key is never committed):
#   coordinator.key  0600, valid      open.key  0640, valid
#   world.key        0604, valid      invalid.key  0600, not a key
#   keydir/          a folder (unreadable as a key file, even for root)
# The config is passed as "NAME.ini", so messages start with "NAME.ini:LINE:".
#
# usage: run-golden.sh WGPUNCH SRCDIR
# With WGPUNCH_GOLDEN_UPDATE=1 the .expected files are rewritten instead (review the diff).
set -u

wgpunch=$1
src=$2

tmp=$(mktemp -d /tmp/wgpunch-conf-golden-XXXXXX) || exit 1
trap 'rm -rf -- "$tmp"' EXIT
umask 022

make_key() { # FILE MODE
	(umask 077 && wg genkey >"$1") && chmod "$2" "$1"
}

n=0
failed=0
for ini in "$src"/*.ini; do
	name=$(basename "$ini" .ini)
	n=$((n + 1))
	dir=$tmp/$name
	mkdir "$dir"
	cp "$ini" "$dir/"
	cp "$src"/*.keys "$dir/"
	make_key "$dir/coordinator.key" 600
	make_key "$dir/open.key" 640
	make_key "$dir/world.key" 604
	echo "not a key" >"$dir/invalid.key"
	chmod 600 "$dir/invalid.key"
	mkdir "$dir/keydir"

	(cd "$dir" && timeout 10 "$wgpunch" -c "$name.ini" --check >stdout 2>stderr)
	rc=$?
	expected=$src/$name.expected
	if [ "${WGPUNCH_GOLDEN_UPDATE:-0}" = 1 ]; then
		cp "$dir/stderr" "$expected"
	fi
	want_rc=0
	[ -s "$expected" ] && want_rc=1

	ok=1
	if [ ! -f "$expected" ]; then
		echo "# $name.expected is missing"
		ok=0
	elif ! diff -u "$expected" "$dir/stderr" >"$dir/diff"; then
		echo "# stderr differs from $name.expected:"
		sed 's/^/#   /' "$dir/diff"
		ok=0
	fi
	if [ "$rc" != "$want_rc" ]; then
		echo "# exit status $rc, want $want_rc"
		ok=0
	fi
	# A valid config prints its normalised form, which must not leak a private key.
	if [ "$want_rc" = 0 ] && [ ! -s "$dir/stdout" ]; then
		echo "# a valid config printed nothing on stdout"
		ok=0
	fi
	if grep -qF -f "$dir/coordinator.key" "$dir/stdout" "$dir/stderr"; then
		echo "# the private key appears in the output"
		ok=0
	fi

	if [ $ok = 1 ]; then
		echo "ok $n - $name"
	else
		echo "not ok $n - $name"
		failed=$((failed + 1))
	fi
done
echo "1..$n"
[ $failed = 0 ]

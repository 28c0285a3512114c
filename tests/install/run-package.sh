#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The Debian package, as a user would get it: build wgpunch_*.deb with
# `dpkg-buildpackage -us -uc -b` from a clean copy of the tree (the build
# writes next to its source folder, so never into the checkout), install it
# with apt-get, then check what it installed: `systemd-analyze verify` on the
# units, `man -w` for both pages, `wgpunch --version`, the examples and the
# completion, and that no unit was enabled or started. lintian's findings are
# printed; an error (E:) fails. Prints TAP. Run as root (CI: .ci/run).
#
# A package that was not installed before is purged again at the end, so
# the machine is left as found (a wgpunch that was installed is replaced).
#
# usage: run-package.sh [SRCDIR]   (default: this checkout)
set -u

src=$(cd "${1:-$(dirname "$0")/../..}" && pwd)
n=0
failed=0

if [ "$(id -u)" != 0 ]; then
	echo "run-package: run as root (it installs the package)" >&2
	exit 1
fi
work=$(mktemp -d /tmp/wgpunch-package-$$-XXXXXX) || exit 1
was_installed=0
dpkg-query -W -f '${Status}' wgpunch 2>/dev/null | grep -q 'ok installed' && was_installed=1
cleanup() {
	if [ $was_installed = 0 ] && dpkg-query -W wgpunch >/dev/null 2>&1; then
		DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq wgpunch >/dev/null 2>&1
	fi
	rm -rf -- "$work"
}
trap cleanup EXIT

report() { # OK NAME
	n=$((n + 1))
	if [ "$1" = 1 ]; then
		echo "ok $n - $2"
	else
		echo "not ok $n - $2"
		failed=$((failed + 1))
	fi
}

# The tree as committed plus what is being changed, without build output.
mkdir "$work/wgpunch"
(cd "$src" && git ls-files -z --cached --others --exclude-standard |
	xargs -0 -r cp --parents -t "$work/wgpunch" --) 2>"$work/cp.err"
ok=1
[ -f "$work/wgpunch/debian/control" ] || { sed 's/^/# /' "$work/cp.err"; ok=0; }
report $ok "copied the tree"

ok=1
if ! (cd "$work/wgpunch" && dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1; then
	# dh_auto_test prints meson's whole test log: show the failures first.
	grep -E '^not ok|check failed|(FAIL|TIMEOUT|ERROR) +[0-9.]+s' "$work/build.log" |
		sed 's/^/# failure: /'
	tail -n 60 "$work/build.log" | sed 's/^/# /'
	ok=0
fi
deb=$(compgen -G "$work/wgpunch_*.deb" | head -n 1)
[ -n "$deb" ] || { echo "# no wgpunch_*.deb"; ok=0; }
report $ok "dpkg-buildpackage -us -uc -b builds wgpunch_*.deb"
if [ $ok = 0 ]; then
	echo "Bail out! no package to install"
	exit 1
fi
echo "# $(basename "$deb"): $(stat -c %s "$deb" 2>/dev/null) bytes"

ok=1
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --reinstall "$deb" \
	>"$work/apt.log" 2>&1; then
	sed 's/^/# /' "$work/apt.log"
	ok=0
fi
report $ok "apt-get install ./$(basename "$deb")"

ok=1
v=$(wgpunch --version 2>&1) || ok=0
want=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)
[ "$(command -v wgpunch)" = /usr/bin/wgpunch ] || { echo "# wgpunch is $(command -v wgpunch)"; ok=0; }
grep -q "^wgpunch $want\b" <<<"$v" || { echo "# --version: '$v', package $want"; ok=0; }
report $ok "wgpunch --version: $v"

ok=1
for page in wgpunch wgpunch.conf; do
	p=$(man -w "$page" 2>&1) || { echo "# man -w $page: $p"; ok=0; continue; }
	echo "# man -w $page: $p"
	case $p in /usr/share/man/*) ;; *) echo "# $page is not the package's"; ok=0 ;; esac
done
report $ok "man -w wgpunch, man -w wgpunch.conf"

ok=1
# Installed, the two pages find each other: mandoc -T lint must say nothing
# about them. (Its notes on the system's mandoc.db, which Debian's man-db
# does not keep, are about other packages' pages.)
pages=$(dpkg -L wgpunch | grep -E '^/usr/share/man/man[58]/wgpunch')
[ "$(wc -w <<<"$pages")" = 2 ] || { echo "# pages: $pages"; ok=0; }
mkdir "$work/lint"
for p in $pages; do # mandoc reads no gzip itself
	f=$work/lint/$(basename "$p" .gz)
	zcat -f "$p" >"$f"
	out=$(mandoc -T lint "$f" 2>&1 | grep -v ': outdated mandoc.db lacks ')
	[ -n "$out" ] && { sed 's/^/# /' <<<"$out"; ok=0; }
done
report $ok "mandoc -T lint on the installed pages is silent"

units=$(dpkg -L wgpunch | grep -E '/systemd/system/[^/]+\.service$')
ok=1
[ "$(wc -l <<<"$units")" = 2 ] || { echo "# units: $units"; ok=0; }
# verify loads the units as systemd would: ExecStart= must exist, and each
# Documentation= man page must open with man(1).
if ! out=$(systemd-analyze verify $units 2>&1); then
	ok=0
fi
[ -n "$out" ] && sed 's/^/# /' <<<"$out"
report $ok "systemd-analyze verify on the installed units"

ok=1
# Installing must enable nothing and start nothing (systemd may not run here:
# then no symlink in the .wants folders is the proof).
for u in wgpunch-coordinator.service wgpunch-node@.service; do
	if compgen -G "/etc/systemd/system/*.wants/${u%.service}*" >/dev/null; then
		echo "# $u enabled on install"
		ok=0
	fi
done
if [ -d /run/systemd/system ] && systemctl is-active -q wgpunch-coordinator.service; then
	echo "# wgpunch-coordinator.service started on install"
	ok=0
fi
report $ok "units installed but not enabled or started"

ok=1
for f in /usr/share/doc/wgpunch/examples/{coordinator.ini,node.ini,nodes.keys,wg0.conf} \
	/usr/share/bash-completion/completions/wgpunch /usr/share/doc/wgpunch/copyright; do
	dpkg -S "$f" >/dev/null 2>&1 || { echo "# $f is not in the package"; ok=0; }
done
report $ok "examples, completion and copyright in the package"

ok=1
# The installed node example passes --check as shipped.
t=$work/check
mkdir "$t"
cp /usr/share/doc/wgpunch/examples/node.ini "$t/"
(cd "$t" && wgpunch -c node.ini --check >/dev/null) || ok=0
report $ok "the installed node example passes --check"

ok=1
if command -v lintian >/dev/null; then
	lintian --allow-root --display-info --pedantic "$deb" >"$work/lintian.log" 2>&1
	sed 's/^/# lintian: /' "$work/lintian.log"
	echo "# lintian: $(grep -c '^E:' "$work/lintian.log") errors, $(grep -c '^W:' \
		"$work/lintian.log") warnings, $(grep -c '^[IP]:' "$work/lintian.log") info/pedantic"
	grep -q '^E:' "$work/lintian.log" && ok=0
else
	echo "# lintian is not installed (tests/install-deps.sh installs it)"
	ok=0
fi
report $ok "lintian finds no error"

echo "1..$n"
[ $failed = 0 ]

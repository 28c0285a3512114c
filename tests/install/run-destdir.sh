#!/bin/bash
# SPDX-License-Identifier: MIT
#
# `meson install` into a throw-away DESTDIR, then check that every file lands
# where the units, the man pages and the docs say: each unit's Exec* binary is
# the installed one, each Documentation= man page is installed, lints cleanly
# with mandoc and renders with man -l, the examples and the bash completion are
# there and the completion completes the command line. Prints TAP.
#
# usage: run-destdir.sh MESON BUILDDIR SRCDIR BINDIR MANDIR DOCDIR UNITDIR COMPLETIONSDIR
# (the install folders absolute, as meson resolved them; UNITDIR or
# COMPLETIONSDIR 'no' when that part is configured out)
set -u

meson=$1
build=$2
src=$3
bindir=$4
mandir=$5
docdir=$6
unitdir=$7
compdir=$8
n=0
failed=0

dest=$(mktemp -d /tmp/wgpunch-destdir-$$-XXXXXX) || exit 1
trap 'rm -rf -- "$dest"' EXIT

report() { # OK NAME
	n=$((n + 1))
	if [ "$1" = 1 ]; then
		echo "ok $n - $2"
	else
		echo "not ok $n - $2"
		failed=$((failed + 1))
	fi
}

ok=1
if ! out=$("$meson" install -C "$build" --no-rebuild --destdir "$dest" 2>&1); then
	sed 's/^/# /' <<<"$out"
	ok=0
fi
report $ok "meson install --destdir"

# Every file meson says it installs is there, and nothing else.
ok=1
expected=$("$meson" introspect --installed "$build" |
	python3 -c 'import json, sys; print("\n".join(sorted(json.load(sys.stdin).values())))')
actual=$(cd "$dest" && find . -type f -o -type l | sed 's|^\.||' | sort)
if [ "$expected" != "$actual" ]; then
	diff <(echo "$expected") <(echo "$actual") | sed 's/^/# /'
	ok=0
fi
[ -n "$expected" ] || ok=0
report $ok "installed files are the ones meson lists"

ok=1
exe=$dest$bindir/wgpunch
if [ ! -x "$exe" ] || ! "$exe" --version | grep -q '^wgpunch '; then
	echo "# $exe missing or --version fails"
	ok=0
fi
report $ok "wgpunch in bindir runs"

# mandoc -T lint must be silent but for cross-references mandoc cannot look up:
# it searches its own database, which knows neither pages not yet installed
# (our two name each other) nor, on Debian, pages it was never told about.
lint() { # FILE
	local msgs
	msgs=$(mandoc -T lint "$1" 2>&1 | grep -v ': STYLE: referenced manual not found: ' |
		grep -v ': outdated mandoc.db lacks ')
	if [ -n "$msgs" ]; then
		sed 's/^/# /' <<<"$msgs"
		return 1
	fi
}

for page in wgpunch.8 wgpunch.conf.5; do
	ok=1
	f=$dest$mandir/man${page##*.}/$page
	if [ ! -f "$f" ]; then
		echo "# $f missing"
		ok=0
	elif ! command -v mandoc >/dev/null; then
		echo "# mandoc is not installed (tests/install-deps.sh installs it)"
		ok=0
	else
		lint "$f" || ok=0
		# man -l (man-db and groff) must render without a word on stderr.
		r=$(MANWIDTH=80 man -l "$f" 2>&1 >/dev/null)
		if [ -n "$r" ]; then
			sed 's/^/# man -l: /' <<<"$r"
			ok=0
		fi
		MANWIDTH=80 man -l "$f" 2>/dev/null | grep -q '^NAME' || { echo "# $page: no NAME"; ok=0; }
	fi
	report $ok "$page installed, lints cleanly, renders"
done

ok=1
for ex in coordinator.ini node.ini nodes.keys wg0.conf; do
	if ! cmp -s "$src/conf/$ex" "$dest$docdir/examples/$ex"; then
		echo "# $docdir/examples/$ex missing or not conf/$ex"
		ok=0
	fi
done
report $ok "examples in $docdir/examples"

units=(wgpunch-coordinator.service wgpunch-node@.service)
if [ "$unitdir" = no ]; then
	ok=1
	for u in "${units[@]}"; do
		[ -n "$(find "$dest" -name "$u")" ] && { echo "# $u installed"; ok=0; }
	done
	report $ok "no units with -Dsystemdsystemunitdir=no"
else
	for u in "${units[@]}"; do
		ok=1
		f=$dest$unitdir/$u
		if [ ! -f "$f" ]; then
			echo "# $f missing"
			report 0 "$u installed"
			continue
		fi
		# ExecStart=, ExecStartPre=, ExecReload=: ours must be the installed binary;
		# others (kill) come from the system.
		execs=0
		while IFS= read -r cmd; do
			bin=${cmd%% *}
			bin=${bin#[-@:+!]}
			execs=$((execs + 1))
			case $bin in
			*/wgpunch)
				if [ "$bin" != "$bindir/wgpunch" ] || [ ! -x "$dest$bin" ]; then
					echo "# $u: $bin is not the installed $bindir/wgpunch"
					ok=0
				fi
				;;
			/*) [ -x "$bin" ] || { echo "# $u: $bin does not exist"; ok=0; } ;;
			*) echo "# $u: '$bin' is not an absolute path"; ok=0 ;;
			esac
		done < <(sed -n 's/^Exec[A-Za-z]*=//p' "$f")
		grep -q "^ExecStart=$bindir/wgpunch " "$f" || { echo "# $u: no ExecStart"; ok=0; }
		grep -q '@[a-z]*@' "$f" && { echo "# $u: unsubstituted @...@"; ok=0; }
		docs=0
		for d in $(sed -n 's/^Documentation=//p' "$f"); do
			if [[ $d =~ ^man:([A-Za-z0-9._-]+)\(([0-9])\)$ ]]; then
				docs=$((docs + 1))
				p=$dest$mandir/man${BASH_REMATCH[2]}/${BASH_REMATCH[1]}.${BASH_REMATCH[2]}
				[ -f "$p" ] || { echo "# $u: $d: $p missing"; ok=0; }
			else
				echo "# $u: Documentation '$d' is not a man page of ours"
				ok=0
			fi
		done
		[ $execs -ge 1 ] && [ $docs -ge 1 ] || { echo "# $u: no Exec or no Documentation"; ok=0; }
		report $ok "$u: Exec* and Documentation= name installed files"
	done
fi

if [ "$compdir" = no ]; then
	report "$([ -z "$(find "$dest" -path '*completions/wgpunch')" ] && echo 1)" \
		"no completion with -Dbashcompletionsdir=no"
else
	ok=1
	comp=$dest$compdir/wgpunch
	helpers=/usr/share/bash-completion/bash_completion
	if [ ! -f "$comp" ] || ! bash -n "$comp"; then
		echo "# $comp missing or not bash"
		ok=0
	elif [ ! -f "$helpers" ]; then
		echo "# $helpers missing (package bash-completion; tests/install-deps.sh installs it)"
		ok=0
	else
		# Complete a few command lines the way bash would, in a clean shell.
		got=$(
			cd "$dest" || exit 1
			mkdir -p etc && touch etc/a.ini etc/b.txt
			# shellcheck disable=SC1090
			bash --norc --noprofile -c '
				. "$1"; . "$2"
				try() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
					COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMPREPLY=()
					_wgpunch wgpunch "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
					printf "%s|" "$*"; printf "%s " $(printf "%s\n" "${COMPREPLY[@]}" | sort); echo; }
				try wgpunch ""
				try wgpunch st
				try wgpunch status ""
				try wgpunch status -s /run/wgpunch/x.sock ""
				try wgpunch -c etc/
				try wgpunch -c etc/a.ini ""
				try wgpunch genkey ""' _ "$helpers" "$comp"
		)
		want="wgpunch |--help --version -c genkey pubkey status 
wgpunch st|status 
wgpunch status |--help --json -c -s 
wgpunch status -s /run/wgpunch/x.sock |--help --json 
wgpunch -c etc/|etc/a.ini 
wgpunch -c etc/a.ini |--check 
wgpunch genkey | "
		if [ "$got" != "$want" ]; then
			diff <(echo "$want") <(echo "$got") | sed 's/^/# /'
			ok=0
		fi
	fi
	report $ok "bash completion installed and completes the command line"
fi

echo "1..$n"
[ $failed = 0 ]

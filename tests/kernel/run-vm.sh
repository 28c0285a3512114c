#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# run-vm.sh - runs a test script as root inside a throw-away QEMU VM that boots a stock
# Debian cloud kernel, so tests see real kernel WireGuard (the build hosts have no module).
#
#   run-vm.sh [-b HOSTPROG]... [-f FILE]... [-t SECS] SCRIPT [ARG...]
#
#   -b PROG  pack a host program (a name found in PATH, or a path) at the same path, with
#            the shared libraries ldd lists. Repeatable.
#   -f FILE  copy FILE into /payload (ELF files get their libraries too). Repeatable.
#   -t SECS  wall-clock limit for the VM (default 300); exit 124 when hit.
#   SCRIPT   copied to /payload and run with /bin/sh (the host's dash) in /payload, with
#            PATH=/payload:/usr/sbin:/usr/bin:/sbin:/bin; /proc, /sys, /dev, /run, /tmp mounted.
#
# Exit status: SCRIPT's; 77 when qemu or a needed host tool is missing; 124 on timeout;
# 125 when the VM ends without reporting (boot or module failure).
#
# Facts this relies on:
# - apt-get download fetches linux-image-*-cloud-amd64 and busybox-static into the cache
#   (WGPUNCH_VM_CACHE, default ~/.cache/wgpunch-vm) without installing them; it needs the
#   apt lists (apt-get update), which CI runs first.
# - Debian ships modules compressed (.ko.xz); busybox insmod wants them plain, so they are
#   unpacked on the host, in the order modprobe --show-depends gives.
# - Debian's busybox ash runs its own applets even when PATH has a real program of that
#   name (e.g. iproute2's ip), so /bin/sh in the guest is the host's dash.
# - /dev/kvm may exist and still be unusable (nested sandboxes); TCG boots in seconds.
set -euo pipefail

prog=${0##*/}
die() { echo "$prog: $*" >&2; exit 125; }
skip() { echo "$prog: SKIP: $*" >&2; exit 77; }

bins=() files=() timeout_s=300
while getopts "b:f:t:" opt; do
	case $opt in
	b) bins+=("$OPTARG") ;;
	f) files+=("$OPTARG") ;;
	t) timeout_s=$OPTARG ;;
	*) exit 125 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || die "usage: $prog [-b PROG]... [-f FILE]... [-t SECS] SCRIPT [ARG...]"
script=$1
shift
[ -f "$script" ] || die "$script: not found"
for t in qemu-system-x86_64 apt-get dpkg cpio modprobe ldd flock timeout xz; do
	command -v "$t" >/dev/null || skip "missing $t"
done

cache=${WGPUNCH_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wgpunch-vm}
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9 # concurrent runs share the cache

fetch() { # PKG -> the extracted package directory
	local pkg=$1 deb
	deb=$(ls -t "$cache/${pkg}"_*.deb 2>/dev/null | head -n1 || true)
	if [ -z "$deb" ]; then
		(cd "$cache" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2) ||
			die "apt-get download $pkg failed (run apt-get update first)"
		deb=$(ls -t "$cache/${pkg}"_*.deb | head -n1)
	fi
	local dir=$cache/x/$(basename "$deb" .deb)
	if [ ! -e "$dir/.done" ]; then
		rm -rf "$dir" && mkdir -p "$dir" && dpkg -x "$deb" "$dir" && touch "$dir/.done" ||
			die "dpkg -x $deb failed"
	fi
	echo "$dir"
}

kpkg=${WGPUNCH_VM_KERNEL_PKG:-$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
	awk '/Depends: linux-image-/ {print $2; exit}' || true)}
if [ -n "$kpkg" ]; then
	kroot=$(fetch "$kpkg")
else # no apt lists: whatever kernel was cached before
	kroot=$(ls -dt "$cache"/x/linux-image-*/ 2>/dev/null | head -n1 || true)
	[ -n "$kroot" ] || die "cannot resolve linux-image-cloud-amd64 (run apt-get update)"
	kroot=${kroot%/}
fi
busybox=$(fetch busybox-static)/bin/busybox
vmlinuz=$(ls "$kroot"/boot/vmlinuz-* | head -n1)
kver=${vmlinuz##*/vmlinuz-}
# merged-/usr kernels keep their modules in usr/lib/modules
if [ ! -d "$kroot/lib/modules/$kver" ] && [ -d "$kroot/usr/lib/modules/$kver" ]; then
	mkdir -p "$kroot/lib/modules"
	ln -sfn "../../usr/lib/modules/$kver" "$kroot/lib/modules/$kver"
fi
[ -s "$kroot/lib/modules/$kver/modules.dep" ] || depmod -b "$kroot" "$kver" || die "depmod"
flock -u 9

work=$(mktemp -d "${TMPDIR:-/tmp}/wgpunch-vm.XXXXXX")
qpid=
cleanup() {
	[ -n "$qpid" ] && kill "$qpid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,root,payload,lib/modules}
cp "$busybox" "$root/bin/busybox"

add_file() { # host path -> same path in the guest
	[ -e "$root$1" ] && return 0
	mkdir -p "$root$(dirname "$1")"
	cp -L "$1" "$root$1"
}
add_libs() { # ELF -> its libraries and interpreter, as ldd lists them
	local line lib out
	out=$(ldd "$1" 2>/dev/null) || return 0
	while IFS= read -r line; do
		case $line in
		*"not found"*) die "$1: missing library: $line" ;;
		*"=> /"*) lib=${line#*=> } ;;
		*/*) lib=/${line#*/} ;;
		*) continue ;;
		esac
		add_file "${lib%% (*}"
	done <<<"$out"
}

[ -x /bin/dash ] || skip "no /bin/dash"
cp -L /bin/dash "$root/bin/sh"
add_libs /bin/dash
for b in "${bins[@]}"; do
	p=$(command -v "$b" || true)
	[ -n "$p" ] || skip "missing $b"
	add_file "$p"
	add_libs "$p"
done
for f in "${files[@]}" "$script"; do
	cp -L "$f" "$root/payload/"
	add_libs "$f"
done

# The WireGuard module and what it needs, unpacked, in load order.
: >"$root/etc/modules"
while read -r kind path _; do
	[ "$kind" = insmod ] || continue
	base=${path##*/}
	base=${base%%.ko*}
	case $path in
	*.xz) xz -dc "$path" ;;
	*.zst) zstd -dcq "$path" ;;
	*.gz) gzip -dc "$path" ;;
	*) cat "$path" ;;
	esac >"$root/lib/modules/$base.ko"
	echo "$base.ko" >>"$root/etc/modules"
done < <(modprobe -d "$kroot" -S "$kver" --show-depends wireguard || die "no wireguard module")

q() { printf "'%s' " "${1//\'/\'\\\'\'}"; }
{
	printf '/bin/sh '
	q "./${script##*/}"
	for a in "$@"; do q "$a"; done
	echo
} >"$root/etc/cmd"

marker=WGPUNCH-VM-EXIT-$$-$RANDOM
cat >"$root/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/payload:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root WG_COLOR_MODE=never
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mkdir -p /var && ln -s /run /var/run
finish() { echo; echo "$marker=\$1"; sync; reboot -f; }
for m in \$(cat /etc/modules); do insmod /lib/modules/\$m || finish 125; done
ip link set lo up
cd /payload
/bin/sh -c ". /etc/cmd" </dev/null
finish \$?
EOF
chmod 755 "$root/init"
(cd "$root" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet) >"$work/initrd" ||
	die "cpio failed"

accel=(-accel tcg,thread=multi -cpu max)
if [ "${WGPUNCH_VM_ACCEL:-tcg}" = kvm ]; then accel=(-accel kvm -cpu host); fi
console=$work/console
rc=0
timeout -k 5 "$timeout_s" qemu-system-x86_64 "${accel[@]}" -m 512M -smp 2 \
	-nodefaults -no-user-config -display none -no-reboot -nic none \
	-chardev "file,id=con,path=$console" -serial chardev:con -monitor none \
	-kernel "$vmlinuz" -initrd "$work/initrd" \
	-append "console=ttyS0 quiet loglevel=1 panic=-1 oops=panic reboot=t random.trust_cpu=on" \
	</dev/null >"$work/qemu.log" 2>&1 &
qpid=$!
wait "$qpid" || rc=$?
qpid=
tr -d '\r' <"$console" | grep -v "^$marker=" || true
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
	echo "$prog: timed out after ${timeout_s}s" >&2
	exit 124
fi
status=$(tr -d '\r' <"$console" | sed -n "s/^$marker=\([0-9]*\)\$/\1/p" | tail -n1)
if [ -z "$status" ]; then
	echo "$prog: the VM ended without an exit status (qemu rc=$rc)" >&2
	cat "$work/qemu.log" >&2
	exit 125
fi
exit "$status"

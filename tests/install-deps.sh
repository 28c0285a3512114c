#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs everything wgpunch needs to build, run its demo and run its tests on
# a Debian machine (bookworm or later). Run as root.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
	echo "install-deps: run as root (apt-get install)" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
	gcc clang libclang-rt-dev libc6-dev linux-libc-dev pkg-config meson ninja-build \
	libuv1-dev libsodium-dev libmnl-dev libcjson-dev libinih-dev \
	wireguard-tools wireguard-go nftables iproute2 iputils-ping procps python3 \
	qemu-system-x86 kmod cpio busybox-static xz-utils zstd ca-certificates valgrind \
	dpkg-dev debhelper fakeroot lintian mandoc man-db bash-completion systemd \
	>/dev/null
# systemd.pc (the unit folder meson installs into) moved to systemd-dev after bookworm.
if apt-cache show systemd-dev >/dev/null 2>&1; then
	apt-get install -y -qq --no-install-recommends systemd-dev >/dev/null
fi
echo "install-deps: done"

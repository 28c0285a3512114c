#!/bin/bash
# SPDX-License-Identifier: MIT
# Least privilege: what an attacker who took over a running agent could do with its
# capabilities. After start (docs/security.md, "Least privilege"):
#  - a node on the userspace backend holds no capability at all;
#  - a node whose interface has a fwmark keeps CAP_NET_ADMIN only (SO_MARK on sockets it opens
#    later), nothing else;
#  - the coordinator on a port above 1024 holds none;
#  - each has an empty bounding set and no_new_privs, so not even an exec gets any back;
# and both still work (the node reads its interface, the coordinator answers status).
set -u
. "$(dirname "$0")/lib.sh"
tb_need python3

tb_init
tb_side a public
tb_side b public
wg set "${TB_WGIF[b]}" fwmark 0x5150 || tb_fail "cannot set a fwmark on b"
tb_coord
tb_node a
tb_node b

# proc_field PID FIELD: the value of FIELD in /proc/PID/status.
proc_field()
{
	awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null
}

# caps_are PID EFF: the effective set of PID is EFF (hex, as /proc prints it).
caps_are()
{
	[ "$(proc_field "$1" CapEff)" = "$2" ]
}

NONE=0000000000000000
NET_ADMIN=0000000000001000 # 1 << CAP_NET_ADMIN (12)

# check NAME PID EFF: PID ends up with exactly EFF, in every set, and no_new_privs.
check()
{
	local name=$1 pid=$2 eff=$3 f

	tb_wait_for 10 caps_are "$pid" "$eff" ||
		tb_fail "$name: CapEff is $(proc_field "$pid" CapEff), expected $eff"
	for f in CapPrm CapBnd; do
		[ "$(proc_field "$pid" "$f")" = "$eff" ] ||
			tb_fail "$name: $f is $(proc_field "$pid" "$f"), expected $eff"
	done
	for f in CapInh CapAmb; do
		[ "$(proc_field "$pid" "$f")" = "$NONE" ] ||
			tb_fail "$name: $f is $(proc_field "$pid" "$f"), expected none"
	done
	[ "$(proc_field "$pid" NoNewPrivs)" = 1 ] || tb_fail "$name: no_new_privs is not set"
	tb_log "$name (pid $pid): CapEff $(proc_field "$pid" CapEff) CapBnd" \
		"$(proc_field "$pid" CapBnd) NoNewPrivs $(proc_field "$pid" NoNewPrivs)"
}

check "node a (userspace)" "$TB_NODE_PID_a" "$NONE"
check "node b (userspace, fwmark)" "$TB_NODE_PID_b" "$NET_ADMIN"
check "coordinator (port $TB_COORD_PORT)" "$TB_COORD_PID" "$NONE"

# Still working without them: the nodes read their interfaces over UAPI.
for h in a b; do
	tb_wait_for 10 tb_json "$h" "d.get('backend') == 'userspace' and \
		d.get('listen_port') == $TB_WG_PORT" >/dev/null ||
		tb_fail "node $h does not read its interface after dropping its capabilities"
done
tb_json coord "d['role'] == 'coordinator'" >/dev/null ||
	tb_fail "the coordinator gives no status after dropping its capabilities"
tb_alive "$TB_NODE_PID_a" && tb_alive "$TB_NODE_PID_b" && tb_alive "$TB_COORD_PID" ||
	tb_fail "an agent died after dropping its capabilities"
tb_pass "nodes keep nothing (userspace) or CAP_NET_ADMIN (fwmark); the coordinator nothing"

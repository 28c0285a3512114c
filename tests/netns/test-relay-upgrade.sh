#!/bin/bash
# SPDX-License-Identifier: MIT
# Relay -> direct. Host a behind a symmetric router, b behind a cone router: relayed at once.
# Then a's router becomes a cone router (its nft rules swapped, its conntrack table flushed, as
# a reboot would). a's next probe round shows the new mapping, the coordinator punches the
# pair, both nodes on the relay try the direct path (the relay has been up for more than 30 s),
# it works, both endpoints are the peers' public addresses, both show path direct, a ping goes
# through, and the coordinator tears the relay down once both sides sent RELAY_CLOSE.
set -u
. "$(dirname "$0")/lib.sh"
tb_need python3 # status JSON, conntrack flush

relay_endpoint_ok()
{
	local ep

	ep=$(tb_endpoint "$1" "$2")
	[ "${ep%:*}" = "$TB_COORD_IP" ] && [ "${ep##*:}" -ge 52000 ] && [ "${ep##*:}" -le 52999 ]
}

path_is()
{
	[ "$(tb_peer_status "$1" "$2" path)" = "$3" ]
}

both_direct()
{
	[ "$(tb_endpoint a b)" = "${TB_PUBLIC[b]}" ] && [ "$(tb_endpoint b a)" = "${TB_PUBLIC[a]}" ] &&
		path_is a b direct && path_is b a direct
}

tb_init
tb_side a symmetric
tb_side b cone
tb_peers a b
tb_coord
tb_node a
tb_node b
tb_assert_tunnel a b 20
relay_endpoint_ok a b || tb_fail "a reaches b at '$(tb_endpoint a b)', expected the relay"
relay_endpoint_ok b a || tb_fail "b reaches a at '$(tb_endpoint b a)', expected the relay"
tb_wait_for 5 path_is a b relay || tb_fail "node a shows '$(tb_peer_status a b path)', not relay"
tb_wait_for 5 path_is b a relay || tb_fail "node b shows '$(tb_peer_status b a path)', not relay"

sleep 31 # an upgrade is tried 30 s after the relay came up at the earliest

# a's router turns into a cone router: port-preserving masquerade, and no old mappings.
sed 's/ fully-random//' "$TB_DIR/ra.nft" >"$TB_DIR/ra-cone.nft"
tb_exec ra nft flush ruleset || tb_fail "nft flush on ra"
tb_exec ra nft -f "$TB_DIR/ra-cone.nft" || tb_fail "cone rules on ra"
tb_exec ra python3 - <<'PY' || tb_fail "conntrack flush on ra"
# IPCTNL_MSG_CT_DELETE without attributes: ctnetlink flushes the IPv4 table.
import socket, struct
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
body = struct.pack("BBH", socket.AF_INET, 0, 0)             # nfgenmsg
hdr = struct.pack("=IHHII", 16 + len(body), (1 << 8) | 2, 1 | 4, 1, 0)  # REQUEST | ACK
s.send(hdr + body)
ack = s.recv(4096)
err = struct.unpack("=i", ack[16:20])[0]
raise SystemExit(0 if err == 0 else 1)
PY
tb_log "router ra is a cone router now"
TB_PUBLIC[a]=${TB_WAN[ra]}:$TB_WG_PORT

# The next probe round (within the 20 s refresh), the PUNCH, the 3 s judgement: 40 s at most.
tb_wait_for 40 both_direct || tb_fail "not direct: a sees b at $(tb_endpoint a b)" \
	"($(tb_peer_status a b path)), b sees a at $(tb_endpoint b a) ($(tb_peer_status b a path))"
tb_ping a b || tb_fail "no ping from a to b on the direct path"
tb_ping b a || tb_fail "no ping from b to a on the direct path"
relay_gone()
{
	tb_json coord "len(d['relays']) == 0 and d['relay_counters']['relay_closed'] == 1" >/dev/null
}
tb_wait_for 5 relay_gone || tb_fail "the relay is still up: $(tb_json coord "d['relays']")"
tb_json a "d['counters']['upgrades_tried'] >= 1" >/dev/null || tb_fail "a tried no upgrade"
tb_alive "$TB_COORD_PID" || tb_fail "the coordinator exited"
tb_pass "relay -> direct when the symmetric router became a cone router"

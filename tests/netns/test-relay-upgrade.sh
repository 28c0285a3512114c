#!/bin/bash
# SPDX-License-Identifier: MIT
# Relay -> direct. Host a behind a symmetric router, b behind a cone router: relayed at once.
# Then a's router becomes a cone router (its nft rules swapped, its conntrack table flushed, as
# a reboot would). a's next probe round shows the new mapping, the coordinator punches the
# pair, both nodes on the relay try the direct path (the relay has been up for more than 30 s),
# it works, both endpoints are the peers' public addresses, both show path direct, a ping goes
# through, and the coordinator tears the relay down once both sides sent RELAY_CLOSE.
#
# Second, the upgrade timer, with nothing the coordinator could see changing: a and b behind
# cone routers, with a filter on ra that drops everything between the two routers' WAN
# addresses (before conntrack sees it). The punch fails, the nodes ask for the relay and get it
# (on request, so with the upgrade timer). The filter goes, while a ping runs through the
# tunnel every 0.2 s. No mapping changes (asserted), so no PUNCH comes by itself: the timer's
# slot, 30 s after the RELAY, asks for one (RESYNC), both sides try and go direct, the relay is
# torn down, and the ping lost at most 2 of its echoes across the switch.
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
echo "ok: relay -> direct when the symmetric router became a cone router"
tb_cleanup

TB_NAME="test-relay-upgrade (upgrade timer)"
tb_init 2
tb_side a cone
tb_side b cone
tb_peers a b
# Between the two routers nothing passes, in either direction; the coordinator is reachable.
tb_exec ra nft -f - <<EOF2 || tb_fail "the filter on ra"
table ip block {
	chain pre {
		type filter hook prerouting priority -300; policy accept;
		ip saddr ${TB_WAN[rb]} drop
		ip daddr ${TB_WAN[rb]} drop
	}
}
EOF2
tb_coord
tb_node a
tb_node b
tb_assert_tunnel a b 25
relay_endpoint_ok a b || tb_fail "a reaches b at '$(tb_endpoint a b)', expected the relay"
relay_endpoint_ok b a || tb_fail "b reaches a at '$(tb_endpoint b a)', expected the relay"
tb_wait_for 5 path_is a b relay || tb_fail "node a shows '$(tb_peer_status a b path)', not relay"
tb_wait_for 5 path_is b a relay || tb_fail "node b shows '$(tb_peer_status b a path)', not relay"
tb_json coord "d['relay_counters']['relay_on_request'] == 1 and \
	d['relay_counters']['relay_at_once'] == 0" >/dev/null ||
	tb_fail "not a relay on request: $(tb_json coord "d['relay_counters']")"
relayed=$(tb_ms_now)
map_a=$(tb_mapping a) map_b=$(tb_mapping b)
tb_exec ra nft delete table ip block || tb_fail "cannot lift the filter on ra"
tb_log "the filter between ra and rb is gone"
tb_ping_bg a b
ping_pid=$TB_PING_PID

# The first slot is 30 s after the RELAY; then the PUNCH and the 3 s judgement.
tb_wait_for 40 both_direct || tb_fail "not direct: a sees b at $(tb_endpoint a b)" \
	"($(tb_peer_status a b path)), b sees a at $(tb_endpoint b a) ($(tb_peer_status b a path))"
up_ms=$(($(tb_ms_now) - relayed))
sleep 2 # echoes across the switch and after it
read -r sent received < <(tb_ping_stop "$ping_pid" a b)
tb_log "ping during the switch: $sent sent, $received received"
[ -n "$sent" ] && [ "$sent" -ge 100 ] || tb_fail "the ping sent only '$sent' echoes"
[ $((sent - received)) -le 2 ] || tb_fail "the switch lost $((sent - received)) of $sent echoes"
tb_ping a b || tb_fail "no ping from a to b on the direct path"
tb_ping b a || tb_fail "no ping from b to a on the direct path"
[ "$(tb_mapping a)" = "$map_a" ] && [ "$(tb_mapping b)" = "$map_b" ] ||
	tb_fail "a mapping changed: a $map_a -> $(tb_mapping a), b $map_b -> $(tb_mapping b)"
tb_json a "d['counters']['upgrades_asked'] + 0 >= 1" >/dev/null ||
	tb_json b "d['counters']['upgrades_asked'] + 0 >= 1" >/dev/null ||
	tb_fail "no upgrade timer asked for a punch"
tb_json a "d['counters']['upgrades_tried'] >= 1" >/dev/null || tb_fail "a tried no upgrade"
tb_json b "d['counters']['upgrades_tried'] >= 1" >/dev/null || tb_fail "b tried no upgrade"
tb_wait_for 5 relay_gone || tb_fail "the relay is still up: $(tb_json coord "d['relays']")"
tb_alive "$TB_COORD_PID" || tb_fail "the coordinator exited"
echo "ok: the upgrade timer: direct $up_ms ms after the relay was seen up, $((sent - received)) of" \
	"$sent echoes lost"
TB_NAME=test-relay-upgrade
tb_pass "relay -> direct on a mapping change, and by the upgrade timer"

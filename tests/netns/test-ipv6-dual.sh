#!/bin/bash
# SPDX-License-Identifier: MIT
# Two dual-stack hosts, each behind a home router that masquerades IPv4 with an inbound filter
# and routes IPv6 through a stateful firewall, and a dual-stack coordinator reached by a name
# with both addresses: each node's session is IPv4, one probe over IPv6 gives the coordinator
# its IPv6 mapping, and the tunnel comes up over IPv6 (path "ipv6"), which comes before the
# public IPv4 mapping.
set -u
. "$(dirname "$0")/lib.sh"

tb6_dual_pair
# A deprecated address (preferred lifetime 0, as when a prefix is being withdrawn) on a: the
# kernel no longer sends from it, and the node must not register it (/proc/net/if_inet6 flags).
tb_exec a ip -6 addr add 2001:db8:1::99/64 dev eth0 nodad preferred_lft 0 ||
	tb_fail "cannot add a deprecated address to a"
tb_wg_up a
tb_wg_up b
tb_peers a b
tb_coord "listen = [$TB6_COORD_IP]:$TB_COORD_PORT"
tb_node_at a "$TB6_COORD_NAME:$TB_COORD_PORT" ${TB6_DEBUG:+"log_level = debug"}
tb_node_at b "$TB6_COORD_NAME:$TB_COORD_PORT" ${TB6_DEBUG:+"log_level = debug"}

tb_assert_tunnel a b 20
tb6_assert_path a b ipv6 "[${TB6_ADDR[b]}]:$TB_WG_PORT"
tb6_assert_path b a ipv6 "[${TB6_ADDR[a]}]:$TB_WG_PORT"

# The session is IPv4 (behind the NAT, the filter test's subject); the IPv6 probe came too.
for h in a b; do
	tb_json "$h" "d['coordinators'][0]['address'] == '$TB_COORD_IP:$TB_COORD_PORT'" \
		>/dev/null || tb_fail "$h's session: $(tb_json "$h" "d['coordinators'][0]")"
	tb_json "$h" "d['coordinators'][0]['mapping'] == '${TB_WAN[r$h]}:$TB_WG_PORT'" \
		>/dev/null || tb_fail "$h's IPv4 mapping: $(tb_json "$h" "d['coordinators'][0]")"
	tb_json "$h" "d['coordinators'][0]['ipv6_mapping'] == '[${TB6_ADDR[$h]}]:$TB_WG_PORT'" \
		>/dev/null || tb_fail "$h's IPv6 mapping: $(tb_json "$h" "d['coordinators'][0]")"
done
lan=$(grep -m1 "LAN addresses:" "$TB_DIR/a.log")
case $lan in
*"[${TB6_ADDR[a]}]:$TB_WG_PORT"*) ;;
*) tb_fail "a did not register its IPv6 address: $lan" ;;
esac
case $lan in
*2001:db8:1::99*) tb_fail "a registered its deprecated address: $lan" ;;
esac
[ "$(tb_coord_counter probe6_accepted)" -ge 2 ] ||
	tb_fail "the coordinator took $(tb_coord_counter probe6_accepted) IPv6 probes, expected 2"

# The IPv6 firewalls are stateful.
before=$(tb6_fw_drops ra)
tb6_send_udp coord "${TB6_ADDR[a]}" "$TB_WG_PORT"
tb_wait_for 2 test "$(tb6_fw_drops ra)" -gt "$before" ||
	tb_fail "ra let an unsolicited datagram through"
tb_ping b a || tb_fail "the tunnel broke"
tb_pass "dual stack behind NAT and IPv6 firewalls: path ipv6"

#!/bin/bash
# SPDX-License-Identifier: MIT
# Two IPv6-only hosts (no IPv4 address at all), each behind an IPv6 router with a stateful
# firewall and no NAT, and a coordinator that listens on IPv6 only: the session, the probes to
# P and P + 1 and the punch all go over IPv6, and the tunnel comes up with path "ipv6" at the
# other host's own address. Without the ordered punch the firewalls would drop both sides'
# first packets; the test checks they did drop something unsolicited, and still do. Node a
# names the coordinator by its IPv6 literal; node b by a name that also has an IPv4 address,
# which b has no route to, so it must pick the IPv6 one.
set -u
. "$(dirname "$0")/lib.sh"

coord=[$TB6_COORD_IP]:$TB_COORD_PORT

tb6_init
tb6_coord_host v6only
tb6_router ra
tb6_host a ra
tb6_router rb
tb6_host b rb
for h in a b; do
	tb_exec "$h" ip -4 addr show scope global | grep -q inet && tb_fail "$h has IPv4"
done
tb_wg_up a
tb_wg_up b
tb_peers a b
tb_coord_on "$coord"
tb6_resolve b "$TB_COORD_IP"
tb_node_at a "$coord"
tb_node_at b "$TB6_COORD_NAME:$TB_COORD_PORT"

tb_assert_tunnel a b 20
tb6_assert_path a b ipv6 "[${TB6_ADDR[b]}]:$TB_WG_PORT"
tb6_assert_path b a ipv6 "[${TB6_ADDR[a]}]:$TB_WG_PORT"

# Probes over IPv6 to P and P + 1: both mappings, the host's own address, so no NAT.
for h in a b; do
	tb_json "$h" "d['coordinators'][0]['address'] == '$coord'" >/dev/null ||
		tb_fail "$h's session is not with $coord"
	tb_json "$h" "d['coordinators'][0]['mapping'] == '[${TB6_ADDR[$h]}]:$TB_WG_PORT'" \
		>/dev/null || tb_fail "$h's mapping: $(tb_json "$h" "d['coordinators'][0]")"
	tb_json "$h" "d['coordinators'][0]['mapping_type'] == 'endpoint-independent'" >/dev/null ||
		tb_fail "$h's mapping type over IPv6 is not endpoint-independent"
	tb_json "$h" "d['coordinators'][0]['ipv6_mapping'] is None" >/dev/null ||
		tb_fail "$h has an IPv6 mapping beside an IPv6 session"
	tb_json "$h" "d['coordinators'][0]['filter'] == 'safe'" >/dev/null ||
		tb_fail "$h's filter test over IPv6: $(tb_json "$h" "d['coordinators'][0]['filter']")"
done
[ "$(tb_coord_counter probe_accepted)" -ge 4 ] || tb_fail "the coordinator took too few probes"

# The firewalls are stateful: an unsolicited datagram from the internet does not get in.
before=$(tb6_fw_drops rb)
tb6_send_udp coord "${TB6_ADDR[b]}" "$TB_WG_PORT"
tb_wait_for 2 test "$(tb6_fw_drops rb)" -gt "$before" ||
	tb_fail "rb let an unsolicited datagram through (drops $before -> $(tb6_fw_drops rb))"
tb_ping a b || tb_fail "the tunnel broke"
tb_pass "IPv6 only, stateful firewalls: path ipv6"

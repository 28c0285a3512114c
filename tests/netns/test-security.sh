#!/bin/bash
# SPDX-License-Identifier: MIT
# What the coordinator must refuse, and that refusing it does not stop it serving others:
#  - node B is not in authorized_keys: B gets no endpoint and no handshake, A is still served;
#  - node C lists A but A does not list C: C learns nothing about A;
#  - forged probes (A's probe with a wrong MAC and a higher sequence number, and A's genuine
#    probe replayed, to the port it names and to the other one) sent from another address do
#    not move A's mapping;
#  - a few thousand random and half-valid datagrams to both coordinator ports leave it serving
#    (node D, started afterwards, still gets a tunnel to A) and show in its drop counters.
set -u
. "$(dirname "$0")/lib.sh"
tb_need python3 # status JSON

FLOOD=${FLOOD:-3000}

tb_init
tb_side a cone
tb_side b cone
tb_side c cone
tb_side d cone
tb_public_host x # the attacker
tb_peers a b
tb_peers a d
tb_wg_peer c a # A does not list C

printf '%s\n' "${TB_WGPUB[a]}" "${TB_WGPUB[c]}" "${TB_WGPUB[d]}" >"$TB_DIR/nodes.keys"

# Capture A's first probe to the coordinator's port as it arrives (AF_PACKET, bounded).
tb_coord_host
tb_bg "$TB_DIR/sniff.log" coord python3 -c '
import socket, struct, sys, time
src, out, deadline = sys.argv[1], sys.argv[2], time.time() + 20
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
s.settimeout(0.2)
open(out + ".ready", "w").close()
while time.time() < deadline:
    try:
        pkt, addr = s.recvfrom(4096)
    except socket.timeout:
        continue
    if addr[2] == socket.PACKET_OUTGOING or pkt[9] != 17 or socket.inet_ntoa(pkt[12:16]) != src:
        continue
    ihl = (pkt[0] & 15) * 4
    dport = struct.unpack("!H", pkt[ihl + 2:ihl + 4])[0]
    data = pkt[ihl + 8:]
    # Protocol v2: 36 bytes, version 2, type 4, and the port it names is the port it went to.
    if (dport == 51900 and len(data) == 36 and data[0] == 2 and data[1] == 4 and
            struct.unpack("!H", data[16:18])[0] == dport and data[18] == 0):
        open(out, "w").write(data.hex() + "\n")
        sys.exit(0)
sys.exit(1)' "${TB_WAN[ra]}" "$TB_DIR/probe.hex"
sniffer=$TB_LASTPID
# Python starts slowly on a loaded machine: the nodes start once the socket is open.
tb_wait_for 10 test -e "$TB_DIR/probe.hex.ready" || tb_fail "the probe sniffer did not start"

tb_coord "authorized_keys = nodes.keys"
tb_node a
tb_node b
tb_node c
tb_wait_node_ready a 10 || tb_fail "node A never became ready"

tb_wait_for 10 test -s "$TB_DIR/probe.hex" || tb_fail "did not capture a probe from A"
probe=$(cat "$TB_DIR/probe.hex")
tb_log "captured A's probe $probe"

mapping_of_a()
{
	tb_mapping a
}
mapping_before=$(mapping_of_a)
[ "$mapping_before" = "${TB_PUBLIC[a]}" ] ||
	tb_fail "A's mapping is '$mapping_before', expected ${TB_PUBLIC[a]}"

# counter NAME: one of the coordinator's counters (see its status JSON).
counter()
{
	tb_json coord "str(d['counters']['$1'])"
}
bad_mac_before=$(counter probe_bad_mac)
replayed_before=$(counter probe_replayed)
wrong_port_before=$(counter probe_wrong_port)

# Forged probes from the attacker: a wrong MAC with a higher sequence number (each naming the
# port it is sent to, so that the MAC is what refuses it), and the genuine probe replayed, to
# both ports: to P it is a replay, to P + 1 a probe meant for another port.
tb_exec x python3 -c '
import os, socket, sys
coord, probe = sys.argv[1], bytes.fromhex(sys.argv[2])
seq = int.from_bytes(probe[8:16], "big")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for port in (51900, 51901):
    names = port.to_bytes(2, "big") + bytes([port - 51900, 0])
    for bump in (1, 2, 1000):
        s.sendto(probe[:8] + (seq + bump).to_bytes(8, "big") + names + os.urandom(16),
                 (coord, port))
    s.sendto(probe, (coord, port))' "$TB_COORD_IP" "$probe" || tb_fail "cannot send forged probes"
sleep 1.5
[ "$(counter probe_bad_mac)" -ge $((bad_mac_before + 6)) ] ||
	tb_fail "6 probes with a wrong MAC: probe_bad_mac went from $bad_mac_before to" \
		"$(counter probe_bad_mac)"
[ "$(counter probe_replayed)" -ge $((replayed_before + 1)) ] ||
	tb_fail "the probe replayed to P: probe_replayed went from $replayed_before to" \
		"$(counter probe_replayed)"
[ "$(counter probe_wrong_port)" -ge $((wrong_port_before + 1)) ] ||
	tb_fail "the probe replayed to P + 1: probe_wrong_port went from $wrong_port_before to" \
		"$(counter probe_wrong_port)"
[ "$(mapping_of_a)" = "$mapping_before" ] ||
	tb_fail "forged probes moved A's mapping from $mapping_before to $(mapping_of_a)"
tb_json a "'${TB_ADDR[x]}' not in json.dumps(d)" >/dev/null ||
	tb_fail "the attacker's address shows in A's status"

# Every counter of a datagram the coordinator refused.
drops()
{
	tb_json coord "str(sum(d['counters'][k] for k in ('rx_malformed', 'rx_unexpected', \
		'hs_bad', 'hs_bad_mac1', 'hs_unauthorized', 'hs_replayed', 'unknown_index', \
		'data_replayed', 'data_bad_auth', 'data_malformed', 'data_unexpected', \
		'probe_bad_mac', 'probe_replayed', 'probe_wrong_port', 'echo_unexpected')))"
}
drops_before=$(drops) || tb_fail "no drop counters in the coordinator's status"

# The flood: random bytes, valid headers with random bodies, and DATA for A's real session index
# with random ciphertext, to both ports, paced so that they are not just lost in socket buffers.
tb_exec x python3 -c '
import os, random, socket, sys, time
coord, idx, n = sys.argv[1], bytes.fromhex(sys.argv[2])[4:8], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(n):
    k = i % 3
    if k == 0:
        buf = os.urandom(random.randint(0, 300))
    elif k == 1:
        buf = bytes([2, random.randint(0, 8), 0, 0]) + os.urandom(random.randint(0, 200))
    else:
        buf = bytes([2, 3, 0, 0]) + idx + os.urandom(8 + random.randint(16, 120))
    s.sendto(buf, (coord, 51900 + (i & 1)))
    if i % 20 == 19:
        time.sleep(0.002)' "$TB_COORD_IP" "$probe" "$FLOOD" || tb_fail "cannot send the flood"
sleep 0.5

tb_alive "$TB_COORD_PID" || tb_fail "the coordinator died during the flood"
drops_after=$(drops) || tb_fail "no status from the coordinator after the flood"
tb_log "coordinator drop counters: $drops_before before the flood, $drops_after after"
tb_json coord "d.get('counters')" >&2
[ "$((${drops_after%.*} - ${drops_before%.*}))" -ge $((FLOOD / 2)) ] ||
	tb_fail "$FLOOD junk datagrams raised the drop counters by only" \
		"$((${drops_after%.*} - ${drops_before%.*}))"

# Still serving: D starts now and gets a tunnel to A.
tb_node d
tb_assert_tunnel a d 20
tb_assert_endpoint d a
[ "$(mapping_of_a)" = "$mapping_before" ] || tb_fail "A's mapping moved to $(mapping_of_a)"

# B (not authorised) and C (not listed by A) learned nothing, though C is served.
tb_node_session_up c || tb_fail "C has no session with the coordinator"
! tb_node_session_up b || tb_fail "unauthorised B has a session with the coordinator"
[ "$(tb_handshake b a)" = 0 ] || tb_fail "unauthorised B got a handshake with A"
[ "$(tb_endpoint b a)" = "(none)" ] || tb_fail "unauthorised B got endpoint $(tb_endpoint b a)"
[ "$(tb_endpoint a b)" = "(none)" ] || tb_fail "A got endpoint $(tb_endpoint a b) for unauthorised B"
[ "$(tb_handshake c a)" = 0 ] || tb_fail "C (not listed by A) got a handshake with A"
[ "$(tb_endpoint c a)" = "(none)" ] || tb_fail "C (not listed by A) learned A at $(tb_endpoint c a)"
! wg show "${TB_WGIF[a]}" peers | grep -qF "${TB_WGPUB[c]}" ||
	tb_fail "A's interface gained a peer for C"
[ "$(counter hs_unauthorized)" -ge 1 ] || tb_fail "hs_unauthorized did not count B's handshakes"
tb_alive "$sniffer" && kill "$sniffer"
tb_pass "unauthorised and unlisted nodes learn nothing; forged probes and $FLOOD junk datagrams change nothing"

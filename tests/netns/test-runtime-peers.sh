#!/bin/bash
# SPDX-License-Identifier: MIT
# Runtime changes (issue 9), with no restart of any node:
#  - A peer added to both interfaces while the nodes run connects (WireGuard sends no
#    notification: the node sees it at its next device read and registers it).
#  - An interface with 150 more peers than the real one: REGISTER goes in pages, and the real
#    peer, sorted anywhere among them, still connects.
#  - SIGHUP with a new keepalive writes it to the managed peers without a new handshake.
set -u
. "$(dirname "$0")/lib.sh"

tb_init
tb_side a cone
tb_side b cone
tb_side c cone
# 150 peers on A's interface that exist nowhere: keys only (no endpoint, no allowed IPs),
# chosen so that B's fingerprint (docs/PROTOCOL.md section 6.10) sorts after all of them:
# B is then on REGISTER's second page, which only paging delivers.
python3 - "${TB_WGPUB[b]}" >"$TB_DIR/fillers" <<'PY' || tb_fail "cannot make filler keys"
import base64, hashlib, os, sys
def fp(pub):
    d = hashlib.blake2b(pub, digest_size=16, key=b"wgpunch key fingerprint v1").digest()
    return int.from_bytes(d[:8], "little")
limit = fp(base64.b64decode(sys.argv[1]))
out = []
for _ in range(2000000):
    k = os.urandom(32)
    if fp(k) < limit:
        out.append(base64.b64encode(k).decode())
        if len(out) == 150:
            break
if len(out) < 150:
    sys.exit(1)
print("\n".join(out))
PY
while read -r k; do
	wg set "${TB_WGIF[a]}" peer "$k" || tb_fail "cannot add a filler peer to a"
done <"$TB_DIR/fillers"
tb_peers a b
tb_coord
tb_node a
tb_node b
tb_node c
tb_assert_tunnel a b 20
tb_log "a connects to b among $(wg show "${TB_WGIF[a]}" peers | wc -l) peers"

# C is added to A's and C's interfaces at runtime.
t0=${EPOCHREALTIME/./}
tb_peers a c
tb_wait_handshake a c 30 || tb_fail "a peer added at runtime did not connect within 30 s"
tb_ping a c || tb_fail "no ping to the peer added at runtime"
tb_log "the peer added at runtime connected after $(((${EPOCHREALTIME/./} - t0) / 1000)) ms"

# SIGHUP with a new keepalive: written to the managed peers, the handshake stays the same.
hs=$(tb_handshake a b)
sed -i '/^keepalive/d' "$TB_DIR/a.ini"
echo "keepalive = 17" >>"$TB_DIR/a.ini"
kill -HUP "$TB_NODE_PID_a"
keepalive_is_17()
{
	wg show "${TB_WGIF[a]}" persistent-keepalive |
		awk -v k="${TB_WGPUB[b]}" '$1 == k && $2 == 17 { f = 1 } END { exit !f }'
}
tb_wait_for 10 keepalive_is_17 || tb_fail "SIGHUP did not apply the new keepalive to b"
[ "$(tb_handshake a b)" = "$hs" ] || tb_fail "the keepalive change made a new handshake"
tb_ping a b || tb_fail "no ping after the keepalive change"
tb_pass "runtime peers, a 151-peer interface, and a keepalive change by SIGHUP"

#!/bin/bash
# SPDX-License-Identifier: MIT
# Finding 4 of issue 7: without authorized_keys, real handshakes (valid mac1, Noise under
# throw-away keys, fresh timestamps) from random forged sources must not make registry entries
# before the source has shown it receives answers, and must not get more bytes sent to the
# forged addresses than came from them. The registry is small here (max_nodes = 8): had the
# forged handshakes filled it, the two legitimate nodes started afterwards would be refused.
set -u
. "$(dirname "$0")/lib.sh"
tb_need python3

RATE=${RATE:-1000}
SECONDS_FLOOD=8

tb_init
tb_wgattack_bin
tb_side a cone
tb_side b cone
tb_public_host x # the attacker
tb_peers a b
tb_coord "max_nodes = 8"
tb_exec coord ip route add 198.18.0.0/15 via "${TB_ADDR[x]}"
tb_exec coord nft -f - <<-EOF || tb_fail "nft counters in the coordinator's namespace"
	table inet attack {
		counter rx { }
		counter tx { }
		chain in {
			type filter hook input priority 0; policy accept;
			ip saddr 198.18.0.0/15 counter name rx
		}
		chain out {
			type filter hook output priority 0; policy accept;
			ip daddr 198.18.0.0/15 counter name tx
		}
	}
	EOF

out=$(tb_exec x "$WGATTACK" flood --to "$TB_COORD_IP:$TB_COORD_PORT" --coord-pub "$TB_COORD_PUB" \
	--random-src --noise --rate "$RATE" --seconds "$SECONDS_FLOOD") || tb_fail "flood: $out"
tb_log "$out"
sleep 1
read -r rx_p rx_b <<<"$(tb_nft_count coord rx)"
read -r tx_p tx_b <<<"$(tb_nft_count coord tx)"
nodes=$(tb_json coord "str(d['nodes'])")
tb_log "forged sources: $rx_p datagrams ($rx_b bytes) in, $tx_p ($tx_b bytes) out; registry:" \
	"$nodes nodes"
tb_log "coordinator counters: $(tb_json coord "d.get('counters')")"
[ "$rx_p" -ge $((RATE * SECONDS_FLOOD / 2)) ] || tb_fail "only $rx_p forged handshakes arrived"
[ "$nodes" = 0 ] || tb_fail "forged handshakes made $nodes registry entries"
[ "$tx_b" -le "$rx_b" ] || tb_fail "$tx_b bytes went to forged sources for $rx_b received"
[ "$tx_p" -le "$rx_p" ] || tb_fail "$tx_p datagrams went to forged sources for $rx_p received"

tb_node a
tb_node b
tb_assert_tunnel a b 20
tb_json coord "d['nodes'] == 2" >/dev/null || tb_fail "the registry does not hold exactly A and B"
tb_pass "$rx_p forged handshakes: 0 entries, $tx_b bytes out for $rx_b in; A and B connect"

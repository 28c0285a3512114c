# SPDX-License-Identifier: MIT
# shellcheck shell=bash disable=SC2034
# lib.sh - the network-namespace test bed shared by the end-to-end tests, the demo and the
# latency benchmark. Source it, then call tb_init. docs/testbed.md draws the topologies.
#
# Everything a run creates carries the run's prefix (TB_PREFIX, "wp<pid>" or "wp<pid>r<run>"):
# namespaces are "$TB_PREFIX-<name>", WireGuard interfaces "$TB_PREFIX<host>" (their UAPI
# sockets share /var/run/wireguard, so the names must be unique on the machine and fit in 15
# characters). tb_cleanup (run from the EXIT trap) kills the processes this run recorded, then
# whatever is left inside this run's namespaces, deletes the namespaces, the UAPI sockets of this
# run's interfaces and the temporary folder, and nothing else.
#
# Addresses (documentation and benchmark ranges only):
#   198.51.100.0/24   the "public internet": a bridge; coordinator .1, WANs and public hosts .10 up
#   203.0.113.0/24    LANs behind routers, one /28 per router (router .16k+1, hosts from .16k+2)
#   198.18.0.0/24     WireGuard tunnel addresses, one per host
#
# Environment: WGPUNCH (the binary), WGPUNCH_BUILD (build folder), WGPUNCH_SRC (source tree).

TB_COORD_IP=198.51.100.1
TB_COORD_PORT=51900
TB_WG_PORT=51820

declare -A TB_ADDR=()    # host or router -> its address on the network above it
declare -A TB_WAN=()     # router -> WAN address
declare -A TB_LANNET=()  # router -> k (its LAN is 203.0.113.16k/28)
declare -A TB_LANNEXT=() # router -> next host octet on its LAN
declare -A TB_WGIF=()    # host -> WireGuard interface
declare -A TB_WGPUB=()   # host -> WireGuard public key
declare -A TB_TUN=()     # host -> tunnel address
declare -A TB_PUBLIC=()  # host -> ip:port its WireGuard port has on the public network
TB_PIDS=()
TB_NAMESPACES=()
TB_NAME=${TB_NAME:-$(basename "$0" .sh)}

tb_log()
{
	printf '[%s] %s\n' "$(date +%T.%3N)" "$*" >&2
}

# Ends the script: 1 with the logs of every process of this run.
tb_fail()
{
	echo "FAIL: $TB_NAME: $*"
	tb_dump_logs
	exit 1
}

tb_pass()
{
	echo "PASS: $TB_NAME${1:+: $1}"
	exit 0
}

tb_skip()
{
	echo "SKIP: $TB_NAME: $*"
	exit 77
}

tb_dump_logs()
{
	local f

	[ -n "${TB_DIR:-}" ] && [ -d "$TB_DIR" ] || return 0
	for f in "$TB_DIR"/*.log; do
		[ -s "$f" ] || continue
		echo "----- $(basename "$f") (last 60 lines) -----"
		tail -n 60 "$f"
	done
}

# tb_init [RUN]: checks the tools, makes the temporary folder, the public network and the trap.
# RUN distinguishes several topologies built one after the other by one process.
tb_init()
{
	[ "$(id -u)" = 0 ] || tb_skip "needs root (network namespaces)"
	tb_need ip nft wg wireguard-go
	[ -c /dev/net/tun ] || tb_skip "no /dev/net/tun for wireguard-go"

	TB_PREFIX="wp$$${1:+r$1}"
	TB_ADDR=() TB_WAN=() TB_LANNET=() TB_LANNEXT=()
	TB_WGIF=() TB_WGPUB=() TB_TUN=() TB_PUBLIC=()
	TB_PIDS=() TB_NAMESPACES=()
	TB_PUBNEXT=10 TB_LANCOUNT=0 TB_TUNNEXT=1 TB_VETHS=0 TB_COORD_PUB=
	TB_DIR=$(mktemp -d "${TMPDIR:-/tmp}/wgpunch-$TB_PREFIX.XXXXXX") || tb_fail "mktemp"
	chmod 700 "$TB_DIR"
	trap tb_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	tb_new_ns pub
	tb_exec pub ip link add br0 type bridge || tb_fail "cannot create the public bridge"
	tb_exec pub ip link set br0 up
}

# tb_need TOOL...: skips the test (77) when a tool it needs is missing.
tb_need()
{
	local tool

	for tool in "$@"; do
		command -v "$tool" >/dev/null 2>&1 || tb_skip "$tool is not installed"
	done
}

tb_wgpunch_bin()
{
	if [ -z "${WGPUNCH:-}" ]; then
		local src=${WGPUNCH_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}

		WGPUNCH=${WGPUNCH_BUILD:-$src/build}/wgpunch
	fi
	[ -x "$WGPUNCH" ] || tb_fail "no wgpunch binary at $WGPUNCH (set WGPUNCH)"
}

# tb_exec NAME CMD...: runs CMD inside namespace NAME.
tb_exec()
{
	local ns=$TB_PREFIX-$1

	shift
	ip netns exec "$ns" "$@"
}

tb_new_ns()
{
	local ns=$TB_PREFIX-$1

	ip netns add "$ns" || tb_fail "cannot create namespace $ns"
	TB_NAMESPACES+=("$ns")
	ip -n "$ns" link set lo up
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 2>/dev/null || true
}

# tb_veth NS1 IF1 NS2 IF2: a veth pair between two namespaces of this run.
tb_veth()
{
	ip link add "$2" netns "$TB_PREFIX-$1" type veth peer name "$4" netns "$TB_PREFIX-$3" ||
		tb_fail "cannot create veth $1:$2 - $3:$4"
	ip -n "$TB_PREFIX-$1" link set "$2" up
	ip -n "$TB_PREFIX-$3" link set "$4" up
}

# tb_attach_public NAME IF ADDR: NAME's interface IF on the public bridge with ADDR/24.
tb_attach_public()
{
	TB_VETHS=$((TB_VETHS + 1))
	tb_veth "$1" "$2" pub "p$TB_VETHS"
	ip -n "$TB_PREFIX-pub" link set "p$TB_VETHS" master br0
	ip -n "$TB_PREFIX-$1" addr add "$3/24" dev "$2"
}

# tb_coord_host: the coordinator's namespace, at 198.51.100.1 on the public network.
tb_coord_host()
{
	tb_new_ns coord
	tb_attach_public coord eth0 "$TB_COORD_IP"
	TB_ADDR[coord]=$TB_COORD_IP
}

# tb_public_host NAME: a host with a public address and no NAT (kind g).
tb_public_host()
{
	local ip=198.51.100.$TB_PUBNEXT

	TB_PUBNEXT=$((TB_PUBNEXT + 1))
	tb_new_ns "$1"
	tb_attach_public "$1" eth0 "$ip"
	TB_ADDR[$1]=$ip
}

# tb_lan_attach NAME IF ROUTER: NAME's interface IF on ROUTER's LAN bridge, next LAN address,
# default route through the router. Sets TB_ADDR[NAME].
tb_lan_attach()
{
	local name=$1 ifname=$2 router=$3
	local k=${TB_LANNET[$router]} n=${TB_LANNEXT[$router]}
	local ip=203.0.113.$((16 * k + n)) gw=203.0.113.$((16 * k + 1))

	[ "$n" -le 14 ] || tb_fail "LAN of $router is full"
	TB_LANNEXT[$router]=$((n + 1))
	TB_VETHS=$((TB_VETHS + 1))
	tb_veth "$name" "$ifname" "$router" "l$TB_VETHS"
	ip -n "$TB_PREFIX-$router" link set "l$TB_VETHS" master lan
	ip -n "$TB_PREFIX-$name" addr add "$ip/28" dev "$ifname"
	ip -n "$TB_PREFIX-$name" route add default via "$gw"
	TB_ADDR[$name]=$ip
}

# tb_router NAME KIND [UPSTREAM]: a NAT router. Its WAN ("wan") is on the public bridge, or on
# the LAN of router UPSTREAM (NAT behind NAT); its LAN is the bridge "lan" with a /28.
# KIND: cone      port-preserving masquerade; unsolicited inbound dropped (forward and input)
#       open      the same masquerade, no inbound filter: the router itself takes packets for
#                 its own ip:port, and conntrack remembers them
#       portmap   as cone, plus fixed port translations added with tb_portmap
#       symmetric masquerade fully-random (new port per destination), filtered
tb_router()
{
	local name=$1 kind=$2 up=${3:-} k=$TB_LANCOUNT filter=yes random=

	case $kind in
	cone | portmap) ;;
	open) filter= ;;
	symmetric) random=fully-random ;;
	*) tb_fail "unknown router kind '$kind'" ;;
	esac
	[ "$k" -le 15 ] || tb_fail "no LAN subnet left for $name"
	TB_LANCOUNT=$((TB_LANCOUNT + 1))

	tb_new_ns "$name"
	tb_exec "$name" sysctl -qw net.ipv4.ip_forward=1
	if [ -z "$up" ]; then
		TB_WAN[$name]=198.51.100.$TB_PUBNEXT
		TB_PUBNEXT=$((TB_PUBNEXT + 1))
		tb_attach_public "$name" wan "${TB_WAN[$name]}"
	else
		tb_lan_attach "$name" wan "$up"
		TB_WAN[$name]=${TB_ADDR[$name]}
	fi
	TB_ADDR[$name]=${TB_WAN[$name]}

	TB_LANNET[$name]=$k
	TB_LANNEXT[$name]=2
	tb_exec "$name" ip link add lan type bridge
	tb_exec "$name" ip link set lan up
	tb_exec "$name" ip addr add "203.0.113.$((16 * k + 1))/28" dev lan

	{
		echo "table ip nat {"
		echo "	chain postrouting {"
		echo "		type nat hook postrouting priority srcnat; policy accept;"
		echo "		oifname \"wan\" masquerade $random"
		echo "	}"
		echo "}"
		if [ -n "$filter" ]; then
			echo "table inet filter {"
			for chain in forward input; do
				echo "	chain $chain {"
				echo "		type filter hook $chain priority filter; policy accept;"
				echo "		iifname \"wan\" ct state established,related accept"
				echo "		iifname \"wan\" drop"
				echo "	}"
			done
			echo "}"
		fi
	} >"$TB_DIR/$name.nft"
	tb_exec "$name" nft -f "$TB_DIR/$name.nft" || tb_fail "nft rules of router $name ($kind)"
}

# tb_portmap ROUTER HOST PORT PUBPORT: ROUTER sends HOST's UDP port PORT out as WAN:PUBPORT for
# every destination (endpoint-independent mapping with another port). Inbound stays filtered.
tb_portmap()
{
	local rule="oifname \"wan\" ip saddr ${TB_ADDR[$2]} udp sport $3 snat to ${TB_WAN[$1]}:$4"

	tb_exec "$1" nft insert rule ip nat postrouting "$rule" || tb_fail "portmap on $1"
}

# tb_host NAME ROUTER: a host on ROUTER's LAN.
tb_host()
{
	tb_new_ns "$1"
	tb_lan_attach "$1" eth0 "$2"
}

# tb_lossy NAME IF PERCENT: NAME drops PERCENT % of the packets in and out of IF.
tb_lossy()
{
	tb_exec "$1" nft -f - <<-EOF || tb_fail "lossy rules on $1"
	table ip lossy {
		chain pre {
			type filter hook prerouting priority -300; policy accept;
			iifname "$2" numgen random mod 100 < $3 drop
		}
		chain post {
			type filter hook postrouting priority 300; policy accept;
			oifname "$2" numgen random mod 100 < $3 drop
		}
	}
	EOF
}

# tb_bg LOG NAME CMD...: starts CMD in namespace NAME in the background, stderr and stdout to
# LOG, and records its PID (ip netns exec execs CMD, so $! is CMD's own PID).
tb_bg()
{
	local log=$1 name=$2

	shift 2
	ip netns exec "$TB_PREFIX-$name" "$@" >>"$log" 2>&1 &
	TB_LASTPID=$!
	TB_PIDS+=("$TB_LASTPID")
}

# tb_wait_for SECONDS CMD...: polls CMD every 50 ms until it succeeds; 1 after SECONDS.
tb_wait_for()
{
	local end=$((${EPOCHREALTIME/./} + $1 * 1000000))

	shift
	until "$@"; do
		[ "${EPOCHREALTIME/./}" -lt "$end" ] || return 1
		sleep 0.05
	done
}

# tb_wg_up HOST [PORT]: a wireguard-go interface in HOST with a new key, listen port PORT
# (default 51820) and the next tunnel address 198.18.0.N/24.
tb_wg_up()
{
	local host=$1 port=${2:-$TB_WG_PORT}
	local ifname=$TB_PREFIX$host tun=198.18.0.$TB_TUNNEXT

	[ "${#ifname}" -le 15 ] || tb_fail "interface name $ifname is too long"
	[ ! -e "/var/run/wireguard/$ifname.sock" ] || tb_fail "$ifname.sock exists already"
	TB_TUNNEXT=$((TB_TUNNEXT + 1))
	TB_WGIF[$host]=$ifname
	tb_bg "$TB_DIR/wg-$host.log" "$host" env WG_PROCESS_FOREGROUND=1 \
		WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 wireguard-go -f "$ifname"
	tb_wait_for 5 test -S "/var/run/wireguard/$ifname.sock" ||
		tb_fail "wireguard-go did not create $ifname"
	(umask 077 && wg genkey >"$TB_DIR/$host.key")
	TB_WGPUB[$host]=$(wg pubkey <"$TB_DIR/$host.key")
	TB_TUN[$host]=$tun
	wg set "$ifname" listen-port "$port" private-key "$TB_DIR/$host.key" ||
		tb_fail "wg set $ifname"
	tb_exec "$host" ip addr add "$tun/24" dev "$ifname"
	tb_exec "$host" ip link set "$ifname" up
}

# tb_wg_peer HOST PEER [WG-ARGS...]: PEER's key as a peer of HOST's interface, allowed-ips its
# tunnel /32, with no endpoint (what wgpunch expects) unless WG-ARGS add one.
tb_wg_peer()
{
	wg set "${TB_WGIF[$1]}" peer "${TB_WGPUB[$2]}" allowed-ips "${TB_TUN[$2]}/32" "${@:3}" ||
		tb_fail "wg set ${TB_WGIF[$1]} peer $2"
}

# tb_handshake HOST PEER: PEER's latest handshake on HOST's interface (Unix seconds, 0 = never).
tb_handshake()
{
	wg show "${TB_WGIF[$1]}" latest-handshakes 2>/dev/null |
		awk -v k="${TB_WGPUB[$2]}" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }'
}

# tb_endpoint HOST PEER: PEER's endpoint on HOST's interface, as wg prints it ("(none)").
tb_endpoint()
{
	wg show "${TB_WGIF[$1]}" endpoints 2>/dev/null |
		awk -v k="${TB_WGPUB[$2]}" '$1 == k { print $2 }'
}

tb_has_handshake()
{
	[ "$(tb_handshake "$1" "$2")" != 0 ]
}

tb_wait_handshake()
{
	tb_wait_for "$3" tb_has_handshake "$1" "$2"
}

# tb_ping HOST PEER: a ping from HOST to PEER's tunnel address (a few tries, bounded).
tb_ping()
{
	local i

	for i in 1 2 3 4 5; do
		tb_exec "$1" ping -n -q -c 1 -W 1 "${TB_TUN[$2]}" >/dev/null 2>&1 && return 0
	done
	return 1
}

# tb_assert_tunnel A B TIMEOUT: fails the test unless both sides show a handshake within
# TIMEOUT seconds and a ping goes through the tunnel both ways.
tb_assert_tunnel()
{
	local a=$1 b=$2

	tb_wait_handshake "$a" "$b" "$3" || tb_fail "no handshake on $a for $b within $3 s"
	tb_wait_handshake "$b" "$a" 5 || tb_fail "handshake on $a but none on $b"
	tb_ping "$a" "$b" || tb_fail "no ping from $a to $b through the tunnel"
	tb_ping "$b" "$a" || tb_fail "no ping from $b to $a through the tunnel"
	tb_log "tunnel $a <-> $b up: $a sees $b at $(tb_endpoint "$a" "$b"), $b sees $a at" \
		"$(tb_endpoint "$b" "$a")"
}

# tb_side HOST KIND: HOST with a WireGuard interface (port 51820) behind a network of KIND:
#   public                          no NAT (198.51.100.x)
#   cone | open | symmetric         router "rHOST" of that kind
#   portmap                         router "rHOST" mapping the WireGuard port to port + 1000
#   double                          cone router "rHOST" behind cone router "oHOST"
# Sets TB_PUBLIC[HOST] to the ip:port a peer should end up using (for symmetric, a guess).
tb_side()
{
	local host=$1 kind=$2 port=$TB_WG_PORT

	case $kind in
	public)
		tb_public_host "$host"
		TB_PUBLIC[$host]=${TB_ADDR[$host]}:$port
		;;
	double)
		tb_router "o$host" cone
		tb_router "r$host" cone "o$host"
		tb_host "$host" "r$host"
		TB_PUBLIC[$host]=${TB_WAN[o$host]}:$port
		;;
	portmap)
		tb_router "r$host" portmap
		tb_host "$host" "r$host"
		tb_portmap "r$host" "$host" "$port" $((port + 1000))
		TB_PUBLIC[$host]=${TB_WAN[r$host]}:$((port + 1000))
		;;
	*)
		tb_router "r$host" "$kind"
		tb_host "$host" "r$host"
		TB_PUBLIC[$host]=${TB_WAN[r$host]}:$port
		;;
	esac
	tb_wg_up "$host" "$port"
}

# tb_peers A B: A and B list each other (no endpoints).
tb_peers()
{
	tb_wg_peer "$1" "$2"
	tb_wg_peer "$2" "$1"
}

# tb_pair KIND_A KIND_B: the common scenario: host a behind KIND_A, host b behind KIND_B (see
# tb_side), listing each other, a coordinator, and a node started next to each interface.
tb_pair()
{
	tb_side a "$1"
	tb_side b "$2"
	tb_peers a b
	tb_coord
	tb_node a
	tb_node b
}

# tb_assert_endpoint HOST PEER: HOST's interface reaches PEER at PEER's public ip:port
# (a direct path, not the relay).
tb_assert_endpoint()
{
	local ep

	ep=$(tb_endpoint "$1" "$2")
	[ "$ep" = "${TB_PUBLIC[$2]}" ] ||
		tb_fail "$1 uses endpoint '$ep' for $2, expected its public ${TB_PUBLIC[$2]}"
}

# tb_json NAME EXPR: evaluates the Python expression EXPR on the status document d of the
# coordinator ("coord") or a node; prints the value, and fails (1) when it is false.
tb_json()
{
	local doc

	doc=$(tb_status "$1" --json 2>/dev/null) || return 1
	python3 -c '
import json, sys
d = json.loads(sys.argv[1])
v = eval(sys.argv[2])
print(v if not isinstance(v, (dict, list)) else json.dumps(v))
sys.exit(0 if v else 1)' "$doc" "$2" 2>/dev/null
}

# tb_peer_status HOST PEER FIELD: FIELD of PEER's entry in HOST's node status.
tb_peer_status()
{
	tb_json "$1" "[p.get('$3') for p in d.get('peers', []) if p.get('public_key') == \
		'${TB_WGPUB[$2]}'][0]"
}

# tb_node_session_up HOST: HOST's node has a session with a coordinator.
tb_node_session_up()
{
	tb_json "$1" "any(c.get('state') == 'up' for c in d.get('coordinators', []))" >/dev/null
}

# tb_node_ready HOST: a coordinator session is up and the coordinator has told the node its
# mapping and its filter-test result: what makes the node "ready" at the coordinator. A node
# behind a symmetric NAT gets an inconclusive result ("unknown", which the status cannot tell
# from "not yet"), so it never counts as ready here: test-punch-symmetric.sh checks it its way.
tb_node_ready()
{
	tb_json "$1" "any(c.get('state') == 'up' and c.get('mapping') and \
		c.get('filter') in ('safe', 'poisonable') for c in d.get('coordinators', []))" >/dev/null
}

# tb_mapping HOST: the public mapping HOST's node learned from its first coordinator.
tb_mapping()
{
	tb_json "$1" "d['coordinators'][0].get('mapping')"
}

tb_wait_node_ready()
{
	tb_wait_for "$2" tb_node_ready "$1"
}

# tb_coord [CONFIG-LINES...]: starts the coordinator at 198.51.100.1:51900 (creating its
# namespace the first time), with extra lines appended to its [coordinator] section.
tb_coord()
{
	[ -n "${TB_ADDR[coord]:-}" ] || tb_coord_host
	tb_coord_on "$TB_COORD_IP:$TB_COORD_PORT" -- "$@"
}

# tb_coord_on LISTEN... [-- CONFIG-LINES...]: the coordinator listening on each LISTEN (its key
# made once, in $TB_DIR/coordinator.key), with CONFIG-LINES added to its config.
tb_coord_on()
{
	local ini=$TB_DIR/coordinator.ini line listen=()

	while [ "$#" -gt 0 ] && [ "$1" != -- ]; do
		listen+=("$1")
		shift
	done
	[ "${1:-}" = -- ] && shift
	tb_wgpunch_bin
	if [ ! -f "$TB_DIR/coordinator.key" ]; then
		(umask 077 && wg genkey >"$TB_DIR/coordinator.key")
		TB_COORD_PUB=$(wg pubkey <"$TB_DIR/coordinator.key")
	fi
	{
		echo "[coordinator]"
		for line in "${listen[@]}"; do
			echo "listen = $line"
		done
		echo "private_key_file = coordinator.key"
		echo "control_socket = $TB_DIR/coord.sock"
		for line in "$@"; do
			echo "$line"
		done
	} >"$ini"
	tb_bg "$TB_DIR/coord.log" coord "$WGPUNCH" -c "$ini"
	TB_COORD_PID=$TB_LASTPID
	tb_wait_for 5 test -S "$TB_DIR/coord.sock" ||
		tb_fail "the coordinator did not open its control socket"
}

# tb_node HOST [CONFIG-LINES...]: starts wgpunch's node role next to HOST's interface.
tb_node()
{
	local host=$1

	shift
	tb_node_at "$host" "$TB_COORD_IP:$TB_COORD_PORT" "$@"
}

# tb_node_at HOST COORDINATOR [CONFIG-LINES...]: tb_node with the coordinator at COORDINATOR
# (host:port: an IPv4 or IPv6 literal, or a name).
tb_node_at()
{
	local host=$1 coord=$2 ini=$TB_DIR/$1.ini line

	shift 2
	tb_wgpunch_bin
	{
		echo "[node]"
		echo "interface = ${TB_WGIF[$host]}"
		echo "coordinator = $coord $TB_COORD_PUB"
		echo "backend = userspace"
		echo "control_socket = $TB_DIR/$host.sock"
		for line in "$@"; do
			echo "$line"
		done
	} >"$ini"
	tb_bg "$TB_DIR/$host.log" "$host" "$WGPUNCH" -c "$ini"
	eval "TB_NODE_PID_$host=$TB_LASTPID"
}

# tb_status NAME [--json]: `wgpunch status` of the coordinator ("coord") or a node.
tb_status()
{
	"$WGPUNCH" status -s "$TB_DIR/$1.sock" "${@:2}"
}

tb_alive()
{
	kill -0 "$1" 2>/dev/null
}

tb_cleanup()
{
	local rc=$? pid ns i ifname

	trap - EXIT INT TERM
	for pid in "${TB_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null
	done
	for pid in "${TB_PIDS[@]}"; do
		for _ in $(seq 1 40); do
			tb_alive "$pid" || break
			sleep 0.05
		done
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	TB_PIDS=()
	# Anything still inside this run's namespaces was started by this run.
	for ns in "${TB_NAMESPACES[@]}"; do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			kill -KILL "$pid" 2>/dev/null
		done
		ip netns del "$ns" 2>/dev/null
	done
	TB_NAMESPACES=()
	for ifname in "${TB_WGIF[@]}"; do
		rm -f "/var/run/wireguard/$ifname.sock"
	done
	TB_WGIF=()
	if [ -n "${TB_DIR:-}" ] && [ -d "$TB_DIR" ]; then
		[ -n "${TB_KEEP_LOGS:-}" ] && cp -r "$TB_DIR" "$TB_KEEP_LOGS" 2>/dev/null
		rm -rf "$TB_DIR"
	fi
	return "$rc"
}

# tb_rebind ROUTER: ROUTER's NAT gets a new public address, as when an ISP renumbers a line:
# the WAN address moves to the next free one in 198.51.100.0/24 and the old one goes. Removing
# the address makes the kernel drop every masquerade mapping made with it, so the hosts behind
# see nothing change locally while every flow through the NAT gets a new mapping.
tb_rebind()
{
	local r=$1 old=${TB_WAN[$1]} new=198.51.100.$TB_PUBNEXT

	TB_PUBNEXT=$((TB_PUBNEXT + 1))
	# Without this, removing the primary address removes the new (secondary) one with it.
	tb_exec "$r" sysctl -qw net.ipv4.conf.wan.promote_secondaries=1
	tb_exec "$r" ip addr add "$new/24" dev wan || tb_fail "cannot add $new to $r"
	tb_exec "$r" ip addr del "$old/24" dev wan || tb_fail "cannot remove $old from $r"
	TB_WAN[$r]=$new
	TB_ADDR[$r]=$new
	tb_log "router $r rebound: public address $old -> $new"
}

# tb_until_ping SECONDS HOST PEER: pings PEER's tunnel address from HOST every 0.1 s until one
# is answered; prints the milliseconds it took, fails (1) after SECONDS.
tb_until_ping()
{
	local t0=${EPOCHREALTIME/./} end

	end=$((t0 + $1 * 1000000))
	until tb_exec "$2" ping -n -q -c 1 -W 0.2 "${TB_TUN[$3]}" >/dev/null 2>&1; do
		[ "${EPOCHREALTIME/./}" -lt "$end" ] || return 1
		sleep 0.1
	done
	echo $(((${EPOCHREALTIME/./} - t0) / 1000))
}

# ---- helpers of the attack tests (tests/netns/test-attack-*.sh) ----

# tb_wgattack_bin: sets WGATTACK to the attacker program (tests/tools/wgattack.c).
tb_wgattack_bin()
{
	local src=${WGPUNCH_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}

	WGATTACK=${WGATTACK:-${WGPUNCH_BUILD:-$src/build}/tests/tools/wgattack}
	[ -x "$WGATTACK" ] || tb_fail "no wgattack binary at $WGATTACK (set WGATTACK)"
}

# tb_capture NAME OUT SECONDS: captures every IPv4 UDP datagram in and out of namespace NAME
# (AF_PACKET, for at most SECONDS) into OUT, one line each: "in|out SRC SPORT DST DPORT HEX".
# Returns once the socket is open; TB_CAPTURE_PID is the capturer (kill it to stop early).
tb_capture()
{
	tb_bg "$TB_DIR/capture-$1.log" "$1" python3 -c '
import socket, struct, sys, time
out, deadline = open(sys.argv[1], "w", buffering=1), time.time() + float(sys.argv[2])
# ETH_P_ALL: a tap for one protocol sees only what comes in.
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(3))
s.settimeout(0.2)
open(sys.argv[1] + ".ready", "w").close()
while time.time() < deadline:
    try:
        pkt, addr = s.recvfrom(65535)
    except socket.timeout:
        continue
    if addr[0] == "lo" or addr[1] != 0x0800 or len(pkt) < 28 or pkt[9] != 17:
        continue
    ihl = (pkt[0] & 15) * 4
    sport, dport = struct.unpack("!HH", pkt[ihl:ihl + 4])
    d = "out" if addr[2] == socket.PACKET_OUTGOING else "in"
    out.write("%s %s %d %s %d %s\n" % (d, socket.inet_ntoa(pkt[12:16]), sport,
        socket.inet_ntoa(pkt[16:20]), dport, pkt[ihl + 8:].hex()))' "$2" "$3"
	TB_CAPTURE_PID=$TB_LASTPID
	tb_wait_for 10 test -e "$2.ready" || tb_fail "the capture in $1 did not start"
}

# tb_vmrss PID: the resident set of PID in kB.
tb_vmrss()
{
	awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status" 2>/dev/null
}

# tb_coord_counter NAME: one of the coordinator's counters (0 when it has no such counter).
tb_coord_counter()
{
	tb_json coord "str(d['counters'].get('$1', 0))" || echo 0
}

# tb_nft_count NAME COUNTER: packets and bytes of a named nft counter in namespace NAME.
tb_nft_count()
{
	tb_exec "$1" nft list counter inet attack "$2" 2>/dev/null |
		awk '/packets/ { for (i = 1; i < NF; i++) { if ($i == "packets") p = $(i + 1);
			if ($i == "bytes") b = $(i + 1) } } END { print p + 0, b + 0 }'
}

# tb_latency_summary P50_TARGET P95_TARGET FAILED MS...: the latency benchmarks' closing lines:
# how many runs worked, p50, p95 (nearest rank), min and max, each target beside its number
# ("" for none). Returns 1 when no run worked or FAILED is not 0.
tb_latency_summary()
{
	local p50t=$1 p95t=$2 failed=$3 count r50 r95
	local -a sorted

	shift 3
	[ "$#" -gt 0 ] || { echo "no run produced a handshake"; return 1; }
	mapfile -t sorted < <(printf '%s\n' "$@" | sort -n)
	count=${#sorted[@]}
	r50=$(((count * 50 + 99) / 100))
	r95=$(((count * 95 + 99) / 100))
	echo
	printf 'runs: %d ok, %d without handshake\n' "$count" "$failed"
	printf 'p50: %d ms%s\np95: %d ms%s\nmin: %d ms, max: %d ms\n' \
		"${sorted[$((r50 > 0 ? r50 - 1 : 0))]}" "${p50t:+ (target <= $p50t)}" \
		"${sorted[$((r95 > 0 ? r95 - 1 : 0))]}" "${p95t:+ (target <= $p95t)}" \
		"${sorted[0]}" "${sorted[$((count - 1))]}"
	[ "$failed" = 0 ]
}

# --- IPv6 helpers ---
# The IPv6 test beds (tests/netns/test-ipv6-*.sh; docs/testbed.md draws them). Addresses are
# in 2001:db8::/32 only:
#   2001:db8:ff::/64    the IPv6 "internet", on the same public bridge; coordinator ::1,
#                       routers from ::10
#   2001:db8:K::/64     the LAN behind router number K (K from 1), router ::1, hosts from ::2
# No NAT anywhere in IPv6: every router routes its LAN's /64, and every namespace on the
# internet has a route to every LAN. A router's stateful firewall (tb6_firewall) lets in only
# what answers a flow from inside, plus neighbour discovery to the router itself.

TB6_COORD_IP=2001:db8:ff::1
TB6_COORD_NAME=coord.wgpunch.test
declare -A TB6_ADDR=()   # host or router -> its IPv6 address on the network above it
declare -A TB6_LANNET=() # router -> K (its LAN is 2001:db8:K::/64)
declare -A TB6_LANNEXT=() # router -> next host number on its LAN
TB6_INET=()  # namespaces on the IPv6 internet (they get a route to every LAN)
TB6_ROUTES=() # "PREFIX VIA" of every LAN
TB6_NEXT=16  # next router address on the internet (hex 0x10)
TB6_LANCOUNT=0
TB6_HOSTS_FILES=0 # /etc/netns/<ns>/hosts files were written (tb6_resolve)

# tb6_init [RUN]: tb_init plus a trap that also removes the /etc/netns files of this run.
tb6_init()
{
	tb_init "$@"
	TB6_ADDR=() TB6_LANNET=() TB6_LANNEXT=() TB6_INET=() TB6_ROUTES=()
	TB6_NEXT=16 TB6_LANCOUNT=0 TB6_HOSTS_FILES=0
	tb_exec pub ip link set br0 type bridge mcast_snooping 0 2>/dev/null
	trap tb6_cleanup EXIT
}

tb6_cleanup()
{
	local rc=$? ns

	if [ "$TB6_HOSTS_FILES" = 1 ]; then
		for ns in "${TB_NAMESPACES[@]}"; do
			case $ns in
			"$TB_PREFIX"-*) rm -rf "/etc/netns/$ns" ;;
			esac
		done
		rmdir /etc/netns 2>/dev/null # only when no other run has files there
	fi
	(exit "$rc")
	tb_cleanup
}

# tb6_enable NAME: IPv6 on in namespace NAME (tb_new_ns turns it off), addresses usable at
# once (no duplicate address detection), no router advertisements taken.
tb6_enable()
{
	local k

	# Duplicate address detection off first, on every interface there already is: a
	# tentative link-local address holds up neighbour discovery, and with it every first
	# packet to a new neighbour, for a second or two, long enough to cross a punch.
	for k in all default $(tb_exec "$1" ls /sys/class/net); do
		tb_exec "$1" sysctl -qw "net.ipv6.conf.$k.accept_dad=0" \
			"net.ipv6.conf.$k.accept_ra=0" || tb_fail "cannot set up IPv6 in $1"
	done
	for k in all default; do
		tb_exec "$1" sysctl -qw "net.ipv6.conf.$k.disable_ipv6=0" ||
			tb_fail "cannot enable IPv6 in $1"
	done
}

# tb6_on_inet NAME IF ADDR: NAME's interface IF (already on the public bridge) gets ADDR/64 on
# the IPv6 internet, and NAME a route to every LAN so far.
tb6_on_inet()
{
	local r

	tb6_enable "$1"
	tb_exec "$1" sysctl -qw "net.ipv6.conf.$2.disable_ipv6=0"
	tb_exec "$1" ip -6 addr add "$3/64" dev "$2" nodad || tb_fail "cannot add $3 to $1"
	TB6_ADDR[$1]=$3
	TB6_INET+=("$1")
	for r in "${TB6_ROUTES[@]}"; do
		# shellcheck disable=SC2086 # "PREFIX via ADDR" on purpose
		tb_exec "$1" ip -6 route add ${r% *} via ${r#* } || tb_fail "route ${r% *} in $1"
	done
}

# tb6_public_veth NAME IF: a veth from NAME to the public bridge without any IPv4 address.
tb6_public_veth()
{
	TB_VETHS=$((TB_VETHS + 1))
	tb_veth "$1" "$2" pub "p$TB_VETHS"
	ip -n "$TB_PREFIX-pub" link set "p$TB_VETHS" master br0
}

# tb6_coord_host [v6only]: the coordinator's namespace at 2001:db8:ff::1: beside its IPv4
# address (tb_coord_host), or with no IPv4 at all ("v6only").
tb6_coord_host()
{
	if [ "${1:-}" = v6only ]; then
		tb_new_ns coord
		tb6_public_veth coord eth0
	elif [ -z "${TB_ADDR[coord]:-}" ]; then
		tb_coord_host
	fi
	TB_ADDR[coord]=${TB_ADDR[coord]:-$TB6_COORD_IP}
	tb6_on_inet coord eth0 "$TB6_COORD_IP"
}

# tb6_firewall NAME: a stateful IPv6 firewall on router NAME: from "wan", only what answers a
# flow from inside is forwarded or taken (ct state established,related), and neighbour
# discovery to the router itself; nothing else.
tb6_firewall()
{
	tb_exec "$1" nft -f - <<-EOF6 || tb_fail "IPv6 firewall on $1"
	table ip6 fw6 {
		chain forward {
			type filter hook forward priority filter; policy accept;
			iifname "wan" ct state established,related accept
			iifname "wan" counter drop
		}
		chain input {
			type filter hook input priority filter; policy accept;
			iifname "wan" ct state established,related accept
			iifname "wan" icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept
			iifname "wan" drop
		}
	}
	EOF6
}

# tb6_router NAME [ROUTER4]: an IPv6 router with a stateful firewall (tb6_firewall) and no NAT:
# its WAN on the IPv6 internet, its LAN 2001:db8:K::/64 on the bridge "lan". With no ROUTER4 a
# new namespace with no IPv4 at all; with ROUTER4 = NAME, IPv6 is added to the IPv4 NAT router
# NAME made by tb_router (its inet filter then also lets neighbour discovery in on the WAN).
tb6_router()
{
	local name=$1 k wan r

	TB6_LANCOUNT=$((TB6_LANCOUNT + 1))
	k=$TB6_LANCOUNT
	wan=$(printf '2001:db8:ff::%x' "$TB6_NEXT")
	TB6_NEXT=$((TB6_NEXT + 1))
	if [ -z "${2:-}" ]; then
		tb_new_ns "$name"
		tb6_public_veth "$name" wan
		tb_exec "$name" ip link add lan type bridge
		tb_exec "$name" ip link set lan up
	else
		# The IPv4 router's own filter must not drop neighbour discovery on its WAN.
		tb_exec "$name" nft insert rule inet filter input iifname "wan" \
			icmpv6 type "{ nd-neighbor-solicit, nd-neighbor-advert }" accept ||
			tb_fail "neighbour discovery on $name"
	fi
	tb6_on_inet "$name" wan "$wan"
	tb_exec "$name" sysctl -qw net.ipv6.conf.all.forwarding=1 "net.ipv6.conf.lan.disable_ipv6=0"
	tb_exec "$name" ip -6 addr add "2001:db8:$k::1/64" dev lan nodad ||
		tb_fail "LAN address of $name"
	tb6_firewall "$name"
	TB6_LANNET[$name]=$k
	TB6_LANNEXT[$name]=2
	# Everybody on the internet reaches the new LAN through the router.
	for r in "${TB6_INET[@]}"; do
		[ "$r" = "$name" ] && continue
		tb_exec "$r" ip -6 route add "2001:db8:$k::/64" via "$wan" ||
			tb_fail "route to $name's LAN in $r"
	done
	TB6_ROUTES+=("2001:db8:$k::/64 $wan")
}

# tb6_host NAME ROUTER: a host on ROUTER's IPv6 LAN with the next address and a default route
# through it. With no IPv4 on NAME yet, a new namespace and interface (an IPv6-only host);
# after tb_host NAME ROUTER, IPv6 is added to its eth0 (a dual-stack host).
tb6_host()
{
	local name=$1 router=$2 k n ip

	k=${TB6_LANNET[$router]}
	n=${TB6_LANNEXT[$router]}
	TB6_LANNEXT[$router]=$((n + 1))
	ip=$(printf '2001:db8:%x::%x' "$k" "$n")
	if [ -z "${TB_ADDR[$name]:-}" ]; then
		tb_new_ns "$name"
		TB_VETHS=$((TB_VETHS + 1))
		tb_veth "$name" eth0 "$router" "l$TB_VETHS"
		ip -n "$TB_PREFIX-$router" link set "l$TB_VETHS" master lan
		TB_ADDR[$name]=$ip
	fi
	tb6_enable "$name"
	tb_exec "$name" sysctl -qw net.ipv6.conf.eth0.disable_ipv6=0
	tb_exec "$name" ip -6 addr add "$ip/64" dev eth0 nodad || tb_fail "cannot add $ip to $name"
	tb_exec "$name" ip -6 route add default via "2001:db8:$k::1" ||
		tb_fail "default route of $name"
	TB6_ADDR[$name]=$ip
}

# tb6_resolve NAME [IPV4]: inside namespace NAME, $TB6_COORD_NAME resolves to an IPv4 address
# (IPV4, else the coordinator's when it has one) and to the coordinator's IPv6 address
# (/etc/netns/<ns>/hosts, which `ip netns exec` mounts over /etc/hosts; tb6_cleanup removes it).
tb6_resolve()
{
	local dir=/etc/netns/$TB_PREFIX-$1 v4=${2:-}

	[ -z "$v4" ] && [ "${TB_ADDR[coord]}" != "$TB6_COORD_IP" ] && v4=${TB_ADDR[coord]}
	mkdir -p "$dir" || tb_fail "cannot create $dir"
	TB6_HOSTS_FILES=1
	{
		echo "127.0.0.1 localhost"
		[ -n "$v4" ] && echo "$v4 $TB6_COORD_NAME"
		echo "$TB6_COORD_IP $TB6_COORD_NAME"
	} >"$dir/hosts"
}

# tb6_dual_pair: a dual-stack coordinator host and hosts a and b, each behind a home router
# (rX) that masquerades IPv4 (cone, inbound filter) and routes IPv6 through a stateful
# firewall, each host's name resolvable. TB_PUBLIC is each host's public IPv4 mapping.
tb6_dual_pair()
{
	local h

	tb6_init
	tb6_coord_host
	for h in a b; do
		tb_router "r$h" cone
		tb6_router "r$h" "r$h"
		tb_host "$h" "r$h"
		tb6_host "$h" "r$h"
		tb6_resolve "$h"
		TB_PUBLIC[$h]=${TB_WAN[r$h]}:$TB_WG_PORT
	done
}

# tb6_path_is HOST PEER PATH: HOST's node shows PATH for PEER.
tb6_path_is()
{
	[ "$(tb_peer_status "$1" "$2" path)" = "$3" ]
}

# tb6_assert_path HOST PEER PATH ENDPOINT: HOST's node shows PATH for PEER (within 5 s), and
# its WireGuard really uses ENDPOINT for PEER.
tb6_assert_path()
{
	local ep

	tb_wait_for 5 tb6_path_is "$1" "$2" "$3" ||
		tb_fail "node $1 shows path '$(tb_peer_status "$1" "$2" path)' for $2, expected $3"
	ep=$(tb_endpoint "$1" "$2")
	[ "$ep" = "$4" ] || tb_fail "$1 uses endpoint '$ep' for $2, expected $4"
}

# tb6_fw_drops ROUTER: packets ROUTER's IPv6 firewall dropped on their way in (forward chain).
tb6_fw_drops()
{
	tb_exec "$1" nft list chain ip6 fw6 forward 2>/dev/null |
		awk '/counter packets/ { for (i = 1; i < NF; i++) if ($i == "packets") p = $(i + 1) }
			END { print p + 0 }'
}

# tb6_send_udp NAME ADDR PORT: one unsolicited UDP datagram from namespace NAME to [ADDR]:PORT.
tb6_send_udp()
{
	tb_exec "$1" python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.sendto(b"unsolicited", (sys.argv[1], int(sys.argv[2])))' "$2" "$3"
}

# --- mesh helpers ---
# For tests with many hosts and relayed pairs (test-mesh.sh, test-punch-open-both.sh,
# test-relay-upgrade.sh).

TB_RELAY_MIN=52000 # the coordinator's default relay_ports
TB_RELAY_MAX=52999

# tb_ms_now: the wall clock in milliseconds.
tb_ms_now()
{
	echo $((${EPOCHREALTIME/./} / 1000))
}

# tb_relay_endpoint HOST PEER: HOST's WireGuard reaches PEER at the coordinator's address and a
# port of relay_ports.
tb_relay_endpoint()
{
	local ep port

	ep=$(tb_endpoint "$1" "$2")
	[ "${ep%:*}" = "$TB_COORD_IP" ] || return 1
	port=${ep##*:}
	[ "$port" -ge "$TB_RELAY_MIN" ] 2>/dev/null && [ "$port" -le "$TB_RELAY_MAX" ]
}

# tb_path_is HOST PEER KIND: HOST's node shows path KIND for PEER.
tb_path_is()
{
	[ "$(tb_peer_status "$1" "$2" path)" = "$3" ]
}

# tb_pair_up A B: both sides have a handshake for each other.
tb_pair_up()
{
	tb_has_handshake "$1" "$2" && tb_has_handshake "$2" "$1"
}

# tb_mesh_host NAME ROUTER PORT: a host on ROUTER's LAN with a WireGuard interface on PORT;
# TB_PUBLIC[NAME] is ROUTER's WAN address with PORT (a port-preserving router's mapping).
tb_mesh_host()
{
	tb_host "$1" "$2"
	tb_wg_up "$1" "$3"
	TB_PUBLIC[$1]=${TB_WAN[$2]}:$3
}

# tb_mesh_peers HOST...: every HOST lists every other one.
tb_mesh_peers()
{
	local a b

	for a in "$@"; do
		for b in "$@"; do
			[ "$a" = "$b" ] || tb_wg_peer "$a" "$b"
		done
	done
}

# tb_ping_bg HOST PEER: pings PEER's tunnel address from HOST every 0.2 s in the background
# (PID recorded, so cleanup ends it); the log is $TB_DIR/ping-HOST-PEER.log. Sets TB_PING_PID.
tb_ping_bg()
{
	tb_bg "$TB_DIR/ping-$1-$2.log" "$1" ping -n -i 0.2 -W 1 "${TB_TUN[$2]}"
	TB_PING_PID=$TB_LASTPID
}

# tb_ping_stop PID HOST PEER: stops that ping (SIGINT: it prints its summary) and prints
# "SENT RECEIVED".
tb_ping_stop()
{
	local i

	kill -INT "$1" 2>/dev/null
	for i in $(seq 1 40); do
		tb_alive "$1" || break
		sleep 0.05
	done
	awk '/packets transmitted/ { print $1, $4 }' "$TB_DIR/ping-$2-$3.log"
}

# tb_ct_flush NAME: flushes the IPv4 conntrack table of namespace NAME (as a router reboot
# would), through ctnetlink.
tb_ct_flush()
{
	tb_exec "$1" python3 - <<'PY'
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
}

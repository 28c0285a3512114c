#!/bin/bash
# SPDX-License-Identifier: MIT
# The process contract (DESIGN.md "Command line"): status over the control socket (-s, -c and
# the sockets under /run/wgpunch), SIGHUP reloads (a bad config is reported at FILE:LINE and the
# running one kept; a good one is applied), SIGTERM and SIGINT end it with status 0 and remove
# the socket, start-up failures end it with status 1 and one message, a second agent on a busy
# control socket is refused while a stale socket left by a killed agent is not in the way; and
# both roles run and stop clean under valgrind.
set -u
. "$(dirname "$0")/lib.sh"

STOP_S=5 # a clean stop or a refused start takes at most this long

tb_init
tb_need python3
tb_wgpunch_bin
tb_coord_host
tb_public_host a
tb_wg_up a
COORD_SOCK=$TB_DIR/coord.sock
COORD_INI=$TB_DIR/coordinator.ini
RUN_SOCK=/run/wgpunch/$TB_PREFIX-life.sock
STALE_SOCK=/run/wgpunch/$TB_PREFIX-stale.sock
trap 'rc=$?; rm -f "$RUN_SOCK" "$STALE_SOCK"; (exit $rc); tb_cleanup' EXIT

dead()
{
	! tb_alive "$1"
}

# forget PID: the process has been reaped; tb_cleanup must not signal its number again.
forget()
{
	local keep=() p

	for p in "${TB_PIDS[@]}"; do
		[ "$p" = "$1" ] || keep+=("$p")
	done
	TB_PIDS=("${keep[@]}")
}

# stop_agent PID SIGNAL SOCKET WHAT: SIGNAL ends the agent within STOP_S seconds with status 0
# and its control socket file is gone.
stop_agent()
{
	local pid=$1 sig=$2 sock=$3 what=$4 rc

	tb_alive "$pid" || tb_fail "$what died before $sig"
	kill "-$sig" "$pid"
	tb_wait_for "$STOP_S" dead "$pid" || tb_fail "$what still runs $STOP_S s after $sig"
	wait "$pid"
	rc=$?
	forget "$pid"
	[ "$rc" = 0 ] || tb_fail "$what exits $rc after $sig, expected 0"
	[ ! -e "$sock" ] || tb_fail "$what left its control socket $sock behind after $sig"
	tb_log "$what: $sig -> exit 0, socket removed"
}

# expect_exit PID STATUS WHAT: the agent ends by itself within STOP_S seconds with STATUS.
expect_exit()
{
	local pid=$1 want=$2 what=$3 rc

	tb_wait_for "$STOP_S" dead "$pid" || tb_fail "$what still runs after $STOP_S s"
	wait "$pid"
	rc=$?
	forget "$pid"
	[ "$rc" = "$want" ] || tb_fail "$what exits $rc, expected $want"
}

log_has()
{
	grep -qF -- "$2" "$1"
}

# log_count_over LOG TEXT N: LOG has more than N lines with TEXT.
log_count_over()
{
	[ "$(grep -cF -- "$2" "$1")" -gt "$3" ]
}

# wait_log LOG TEXT WHAT: TEXT appears in LOG within 5 s.
wait_log()
{
	tb_wait_for 5 log_has "$1" "$2" || tb_fail "$3: no '$2' in $(basename "$1")"
}

# py DOC EXPR: evaluates the Python expression EXPR on the JSON text DOC (as d); fails if false.
py()
{
	python3 -c '
import json, sys
d = json.loads(sys.argv[1])
sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2" 2>/dev/null
}

# hs_accepted: how many Noise handshakes the coordinator has accepted.
hs_accepted()
{
	tb_json coord "d['counters']['hs_accepted']"
}

# ---------------------------------------------------------------- coordinator: status ----
tb_coord "log_level = info"
COORD=$TB_COORD_PID
out=$("$WGPUNCH" status -s "$COORD_SOCK") || tb_fail "status -s of the coordinator fails"
grep -q "^coordinator: public key $TB_COORD_PUB" <<<"$out" ||
	tb_fail "status -s does not show the coordinator's table: $out"
grep -qF "listen $TB_COORD_IP:$TB_COORD_PORT" <<<"$out" || tb_fail "the table has no listen line"
json=$("$WGPUNCH" status -s "$COORD_SOCK" --json) || tb_fail "status -s --json fails"
py "$json" "d['role'] == 'coordinator' and d['public_key'] == '$TB_COORD_PUB' and \
	d['control_socket'] == '$COORD_SOCK' and \
	d['listen'][0]['address'] == '$TB_COORD_IP:$TB_COORD_PORT'" ||
	tb_fail "status --json is not the coordinator's document: $json"
json2=$("$WGPUNCH" status -c "$COORD_INI" --json) || tb_fail "status -c CONFIG fails"
py "$json2" "d['role'] == 'coordinator' and d['control_socket'] == '$COORD_SOCK'" ||
	tb_fail "status -c CONFIG does not find the coordinator's socket: $json2"
"$WGPUNCH" status -c "$COORD_INI" | grep -q "^coordinator: public key $TB_COORD_PUB" ||
	tb_fail "status -c CONFIG (table) does not show the coordinator"

# ---------------------------------------------------------------- coordinator: SIGHUP ----
cp "$COORD_INI" "$TB_DIR/coordinator.good"
{
	echo "[coordinator]"
	echo "listen = $TB_COORD_IP:$TB_COORD_PORT"
	echo "private_key_file = coordinator.key"
	echo "no_such_key = 1"
	echo "control_socket = $COORD_SOCK"
} >"$COORD_INI"
kill -HUP "$COORD"
wait_log "$TB_DIR/coord.log" "$COORD_INI:4:" "a bad config on SIGHUP"
wait_log "$TB_DIR/coord.log" "keeping the running config" "a bad config on SIGHUP"
tb_alive "$COORD" || tb_fail "a bad config on SIGHUP ended the coordinator"
tb_json coord "d['role'] == 'coordinator'" >/dev/null || tb_fail "no status after a bad reload"

# A config file that has gone: the same.
rm "$COORD_INI"
kill -HUP "$COORD"
tb_wait_for 5 log_count_over "$TB_DIR/coord.log" "keeping the running config" 1 ||
	tb_fail "a missing config on SIGHUP is not reported"
log_has "$TB_DIR/coord.log" "$COORD_INI: No such file" || tb_fail "the missing file is not named"
tb_alive "$COORD" || tb_fail "a missing config on SIGHUP ended the coordinator"

# A good change: authorized_keys (node a only) and log_level.
echo "${TB_WGPUB[a]}" >"$TB_DIR/nodes.keys"
cp "$TB_DIR/coordinator.good" "$COORD_INI"
sed -i '/^log_level/d' "$COORD_INI"
printf 'authorized_keys = nodes.keys\nlog_level = debug\n' >>"$COORD_INI"
kill -HUP "$COORD"
wait_log "$TB_DIR/coord.log" "reload: $COORD_INI applied" "a good config on SIGHUP"
log_has "$TB_DIR/coord.log" "log_level = debug" ||
	tb_fail "the reload does not say log_level changed"
log_has "$TB_DIR/coord.log" "authorized_keys = $TB_DIR/nodes.keys" ||
	tb_fail "the reload does not say authorized_keys was added"
tb_json coord "d['role'] == 'coordinator'" >/dev/null || tb_fail "no status after a good reload"
cp "$COORD_INI" "$TB_DIR/coordinator.auth"

# reload_coord LOG-TEXT WHAT: SIGHUP, then LOG-TEXT in the log, the agent alive.
reload_coord()
{
	local n

	n=$(grep -cF -- "$1" "$TB_DIR/coord.log")
	kill -HUP "$COORD"
	tb_wait_for 5 log_count_over "$TB_DIR/coord.log" "$1" "$n" ||
		tb_fail "$2: no '$1' in the log"
	tb_alive "$COORD" || tb_fail "$2: the coordinator died"
}

# A new listen port restarts the role; one that cannot be bound goes back to the running one.
sed -i "s|^listen = .*|listen = $TB_COORD_IP:$((TB_COORD_PORT + 20))|" "$COORD_INI"
reload_coord "restarting the coordinator role" "a new listen port"
tb_wait_for 5 tb_json coord "d['listen'][0]['address'] == '$TB_COORD_IP:$((TB_COORD_PORT + 20))'" \
	>/dev/null || tb_fail "the new listen port is not in use after the reload"
sed -i "s|^listen = .*|listen = 198.51.100.99:$TB_COORD_PORT|" "$COORD_INI"
reload_coord "going back to the running one" "a listen address the host lacks"
# The coordinator says so after going back, a moment later under load: wait for it.
tb_wait_for 5 log_has "$TB_DIR/coord.log" "not applied, keeping the running config" ||
	tb_fail "a config that cannot start is not said to be left unapplied"
tb_json coord "d['listen'][0]['address'] == '$TB_COORD_IP:$((TB_COORD_PORT + 20))'" >/dev/null ||
	tb_fail "the running listen port is not back after a config that cannot start"

# A new control socket: the new one answers, the old file is gone; and back.
sed -e "s|^control_socket = .*|control_socket = $TB_DIR/moved.sock|" \
	"$TB_DIR/coordinator.auth" >"$COORD_INI"
reload_coord "control socket moved to $TB_DIR/moved.sock" "a new control socket"
"$WGPUNCH" status -s "$TB_DIR/moved.sock" >/dev/null || tb_fail "no status at the moved socket"
[ ! -e "$COORD_SOCK" ] || tb_fail "the old control socket is still there after the move"
cp "$TB_DIR/coordinator.auth" "$COORD_INI"
reload_coord "control socket moved to $COORD_SOCK" "the control socket moved back"
[ ! -e "$TB_DIR/moved.sock" ] || tb_fail "the moved socket is still there after moving back"
tb_json coord "d['listen'][0]['address'] == '$TB_COORD_IP:$TB_COORD_PORT'" >/dev/null ||
	tb_fail "the coordinator is not back on its listen port"

# ---------------------------------------------------------------- node ----
tb_node a
NODE=$TB_LASTPID
NODE_SOCK=$TB_DIR/a.sock
tb_wait_for 10 tb_node_session_up a || tb_fail "node a (authorized) has no coordinator session"
out=$("$WGPUNCH" status -s "$NODE_SOCK") || tb_fail "status -s of the node fails"
grep -q "^node: interface ${TB_WGIF[a]}" <<<"$out" || tb_fail "the node's table: $out"
json=$("$WGPUNCH" status -c "$TB_DIR/a.ini" --json) || tb_fail "status -c of the node fails"
py "$json" "d['role'] == 'node' and d['public_key'] == '${TB_WGPUB[a]}' and \
	isinstance(d['peers'], list) and d['control_socket'] == '$NODE_SOCK'" ||
	tb_fail "the node's status --json: $json"

echo "keepalive = 30" >>"$TB_DIR/a.ini"
kill -HUP "$NODE"
wait_log "$TB_DIR/a.log" "reload: $TB_DIR/a.ini applied" "the node's SIGHUP"
wait_log "$TB_DIR/a.log" "keepalive = 30" "the node's SIGHUP"

# A second agent on the same control socket is refused before it touches anything.
hs_before=$(hs_accepted) || tb_fail "no coordinator counters"
tb_bg "$TB_DIR/a2.log" a "$WGPUNCH" -c "$TB_DIR/a.ini"
expect_exit "$TB_LASTPID" 1 "a second node on $NODE_SOCK"
log_has "$TB_DIR/a2.log" "already in use" ||
	tb_fail "the second node does not say the socket is in use"
[ "$(grep -c '^error:' "$TB_DIR/a2.log")" = 1 ] ||
	tb_fail "the second node says more than one error"
tb_alive "$NODE" || tb_fail "the first node died when a second one started"
[ -S "$NODE_SOCK" ] || tb_fail "the second node removed the first one's socket"
tb_node_session_up a || tb_fail "the first node lost its session when a second one started"
[ "$(hs_accepted)" = "$hs_before" ] || tb_fail "the second node opened a session before it gave up"
stop_agent "$NODE" TERM "$NODE_SOCK" "node"

tb_bg "$TB_DIR/a.log" a "$WGPUNCH" -c "$TB_DIR/a.ini"
NODE=$TB_LASTPID
tb_wait_for 10 tb_node_session_up a || tb_fail "the restarted node has no session"
stop_agent "$NODE" INT "$NODE_SOCK" "node"

# A stale socket: the file a SIGKILLed agent leaves does not stop the next one.
tb_bg "$TB_DIR/a.log" a "$WGPUNCH" -c "$TB_DIR/a.ini"
NODE=$TB_LASTPID
tb_wait_for 5 test -S "$NODE_SOCK" || tb_fail "the node opened no socket"
kill -KILL "$NODE"
expect_exit "$NODE" 137 "a SIGKILLed node"
[ -S "$NODE_SOCK" ] || tb_fail "SIGKILL left no socket file: the stale case is not tested"
tb_bg "$TB_DIR/a.log" a "$WGPUNCH" -c "$TB_DIR/a.ini"
NODE=$TB_LASTPID
tb_wait_for 10 tb_node_session_up a || tb_fail "a node does not start over a stale socket"
stop_agent "$NODE" TERM "$NODE_SOCK" "node after a stale socket"

# An interface that does not exist: 1, with one error naming it, whatever the backend.
for backend in auto userspace; do
	ifname=${TB_PREFIX}zz
	{
		echo "[node]"
		echo "interface = $ifname"
		echo "coordinator = $TB_COORD_IP:$TB_COORD_PORT $TB_COORD_PUB"
		echo "backend = $backend"
		echo "control_socket = $TB_DIR/zz.sock"
	} >"$TB_DIR/zz.ini"
	tb_bg "$TB_DIR/zz-$backend.log" a "$WGPUNCH" -c "$TB_DIR/zz.ini"
	expect_exit "$TB_LASTPID" 1 "a node for the missing interface $ifname ($backend)"
	errors=$(grep '^error:' "$TB_DIR/zz-$backend.log")
	[ "$(grep -c . <<<"$errors")" = 1 ] ||
		tb_fail "missing interface ($backend): not one error line: $errors"
	grep -qF "$ifname" <<<"$errors" ||
		tb_fail "missing interface ($backend): the error does not name $ifname: $errors"
	[ ! -e "$TB_DIR/zz.sock" ] || tb_fail "a failed start left its control socket"
done

# ---------------------------------------------------------------- /run/wgpunch ----
# `wgpunch status` with neither -c nor -s asks every socket there: ours must be among them,
# and a stale socket next to it is no error.
python3 -c 'import os, socket, sys
os.makedirs("/run/wgpunch", exist_ok=True)
socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$STALE_SOCK" ||
	tb_fail "cannot plant a stale socket"
sed -e "s|^control_socket = .*|control_socket = $RUN_SOCK|" \
	-e "s|^listen = .*|listen = $TB_COORD_IP:$((TB_COORD_PORT + 10))|" \
	"$TB_DIR/coordinator.good" >"$TB_DIR/run.ini"
tb_bg "$TB_DIR/run.log" coord "$WGPUNCH" -c "$TB_DIR/run.ini"
RUNPID=$TB_LASTPID
tb_wait_for 5 test -S "$RUN_SOCK" || tb_fail "no socket at $RUN_SOCK"
out=$("$WGPUNCH" status 2>"$TB_DIR/status.err")
grep -qx "agent: $RUN_SOCK" <<<"$out" ||
	tb_fail "status without -c/-s does not list $RUN_SOCK: $out"
grep -A1 -x "agent: $RUN_SOCK" <<<"$out" | grep -q "public key $TB_COORD_PUB" ||
	tb_fail "status without -c/-s does not show the agent at $RUN_SOCK"
log_has "$TB_DIR/status.err" "$STALE_SOCK" || tb_fail "the stale socket is not mentioned"
json=$("$WGPUNCH" status --json 2>/dev/null)
py "$json" "isinstance(d, list) and any(a.get('control_socket') == '$RUN_SOCK' and \
	a.get('role') == 'coordinator' for a in d)" ||
	tb_fail "status --json without -c/-s is not an array with the agent at $RUN_SOCK: $json"
stop_agent "$RUNPID" TERM "$RUN_SOCK" "the coordinator at $RUN_SOCK"
rm -f "$STALE_SOCK"

# ---------------------------------------------------------------- coordinator: stop ----
stop_agent "$COORD" TERM "$COORD_SOCK" "coordinator"
tb_coord
stop_agent "$TB_COORD_PID" INT "$COORD_SOCK" "coordinator"

# ---------------------------------------------------------------- valgrind ----
# Both roles through a session, a status, a reload and SIGTERM: no error, no leak, exit 0.
VG=(valgrind -q --leak-check=full --error-exitcode=9)
vg_usable()
{
	local out

	command -v valgrind >/dev/null 2>&1 || return 1
	# An older valgrind cannot read the DWARF 5 that clang writes: it says so and gives up.
	out=$("${VG[@]}" "$WGPUNCH" --version 2>&1) && [ "$out" = "$("$WGPUNCH" --version)" ]
}
if vg_usable; then
	cp "$TB_DIR/coordinator.good" "$COORD_INI"
	tb_bg "$TB_DIR/coord-vg.log" coord "${VG[@]}" "$WGPUNCH" -c "$COORD_INI"
	COORD=$TB_LASTPID
	tb_wait_for 20 test -S "$COORD_SOCK" ||
		tb_fail "the coordinator under valgrind did not start"
	tb_bg "$TB_DIR/a-vg.log" a "${VG[@]}" "$WGPUNCH" -c "$TB_DIR/a.ini"
	NODE=$TB_LASTPID
	tb_wait_for 20 tb_node_session_up a || tb_fail "no session under valgrind"
	tb_status coord >/dev/null || tb_fail "no coordinator status under valgrind"
	# The coordinator moves its control socket (a handle closed and another opened).
	sed -i "s|^control_socket = .*|control_socket = $TB_DIR/moved.sock|" "$COORD_INI"
	tb_status a >/dev/null || tb_fail "no node status under valgrind"
	kill -HUP "$COORD" "$NODE"
	wait_log "$TB_DIR/coord-vg.log" "applied" "the coordinator's reload under valgrind"
	wait_log "$TB_DIR/a-vg.log" "applied" "the node's reload under valgrind"
	"$WGPUNCH" status -s "$TB_DIR/moved.sock" >/dev/null ||
		tb_fail "no status at the moved socket"
	STOP_S=20
	stop_agent "$NODE" TERM "$NODE_SOCK" "node under valgrind"
	stop_agent "$COORD" TERM "$TB_DIR/moved.sock" "coordinator under valgrind"
	grep -q '^==' "$TB_DIR/coord-vg.log" "$TB_DIR/a-vg.log" && tb_fail "valgrind reports errors"
	tb_log "valgrind: both roles clean"
	VG_DONE=", valgrind"
else
	# Not a reason to fail the rest: say it loudly so a missing tool is seen.
	echo "NOTE: valgrind is missing or cannot read this binary: the leak check did not run"
fi

tb_pass "status, SIGHUP, SIGTERM, SIGINT, start-up failures, busy and stale sockets${VG_DONE:-}"

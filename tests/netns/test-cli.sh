#!/bin/bash
# SPDX-License-Identifier: MIT
# The command line contract (DESIGN.md "Command line"): exit status 2 for usage errors, 1 for a
# bad config or a failure with one message naming its cause, 0 for success; --help and
# --version on stdout; --check prints a normalised config that --check accepts again; genkey and
# pubkey agree with wg(8). Needs no namespaces and no root; it sits in the netns suite because
# that is where the binary is.
set -u
. "$(dirname "$0")/lib.sh"

tb_wgpunch_bin
tb_need wg python3
DIR=$(mktemp -d "${TMPDIR:-/tmp}/wgpunch-cli.XXXXXX") || tb_fail "mktemp"
trap 'rm -rf "$DIR"' EXIT
FAILS=0

bad()
{
	echo "not ok: $*"
	FAILS=$((FAILS + 1))
}

# run [STDIN-FILE] -- ARGS...: runs wgpunch, stdout to $DIR/out, stderr to $DIR/err, status
# in RC. A run is bounded: nothing here may wait for input or hang.
run()
{
	local in=/dev/null

	if [ "$1" != -- ]; then
		in=$1
		shift
	fi
	shift
	timeout 10 "$WGPUNCH" "$@" <"$in" >"$DIR/out" 2>"$DIR/err"
	RC=$?
}

lines()
{
	local n

	n=$(wc -l <"$1")
	echo "$n"
}

# expect_usage ARGS...: exit 2, the synopsis on stderr, nothing on stdout.
expect_usage()
{
	run -- "$@"
	[ "$RC" = 2 ] || bad "wgpunch $* exits $RC, expected 2 (usage error)"
	[ ! -s "$DIR/out" ] || bad "wgpunch $* writes to stdout on a usage error"
	grep -q usage: "$DIR/err" || bad "wgpunch $* shows no usage on stderr"
}

# expect_fail WHAT ARGS...: exit 1 with exactly one line on stderr that contains WHAT.
expect_fail()
{
	local what=$1

	shift
	[ "$RC" = 1 ] || bad "wgpunch $* exits $RC, expected 1"
	[ "$(lines "$DIR/err")" = 1 ] ||
		bad "wgpunch $* says $(lines "$DIR/err") lines, expected one: $(cat "$DIR/err")"
	grep -qF -- "$what" "$DIR/err" || bad "wgpunch $*: the message does not name '$what'"
}

# ---- usage errors: 2 ----
expect_usage
expect_usage --bogus
expect_usage -x
expect_usage --check
expect_usage --check extra
expect_usage -c "$DIR/any.ini" extra
expect_usage -c
expect_usage genkey extra
expect_usage pubkey extra
expect_usage status -c "$DIR/any.ini" -s "$DIR/any.sock"
expect_usage status --bogus
expect_usage status extra
expect_usage status -s
expect_usage --version extra
run -- --check
grep -q "needs -c FILE" "$DIR/err" || bad "--check without -c does not say that it needs -c"
run -- status -c a -s b
grep -q "not both" "$DIR/err" || bad "status with -c and -s does not say why it is refused"
run -- --bogus
grep -q "unknown option '--bogus'" "$DIR/err" || bad "an unknown option is not named"

# ---- --help, --version: 0, stdout ----
for args in --help -h --version -V "status --help"; do
	# shellcheck disable=SC2086
	run -- $args
	[ "$RC" = 0 ] || bad "wgpunch $args exits $RC"
	[ -s "$DIR/out" ] || bad "wgpunch $args prints nothing on stdout"
	[ ! -s "$DIR/err" ] || bad "wgpunch $args writes to stderr"
done
run -- --version
grep -Eq '^wgpunch [0-9]+\.[0-9]+' "$DIR/out" || bad "--version prints '$(cat "$DIR/out")'"
run -- --help
for cmd in genkey pubkey status --check --version; do
	grep -q -- "$cmd" "$DIR/out" || bad "--help does not mention $cmd"
done

# ---- a config that is not there: 1, one message naming the file ----
run -- -c "$DIR/missing.ini"
expect_fail "$DIR/missing.ini" -c "$DIR/missing.ini"
run -- -c "$DIR/missing.ini" --check
expect_fail "$DIR/missing.ini" -c "$DIR/missing.ini" --check
run -- status -c "$DIR/missing.ini"
expect_fail "$DIR/missing.ini" status -c "$DIR/missing.ini"

# ---- --check ----
(umask 077 && wg genkey >"$DIR/coordinator.key")
COORD_PUB=$(wg pubkey <"$DIR/coordinator.key")
cat >"$DIR/coordinator.ini" <<EOF
[coordinator]
listen = 198.51.100.1:51900
; a comment
private_key_file = coordinator.key
relay = on
control_socket = $DIR/coord.sock
EOF
for args in "-c $DIR/coordinator.ini --check" "--check -c $DIR/coordinator.ini" \
	"--check --config=$DIR/coordinator.ini"; do
	# shellcheck disable=SC2086
	run -- $args
	[ "$RC" = 0 ] || bad "wgpunch $args exits $RC: $(cat "$DIR/err")"
	grep -qx '\[coordinator\]' "$DIR/out" || bad "wgpunch $args does not print the config"
done
cp "$DIR/out" "$DIR/normal1.ini"
grep -qx "private_key_file = $DIR/coordinator.key" "$DIR/normal1.ini" ||
	bad "--check does not print private_key_file resolved against the config's folder"
grep -qx "relay = yes" "$DIR/normal1.ini" || bad "--check does not normalise 'relay = on'"
grep -qx "relay_ports = 52000-52999" "$DIR/normal1.ini" ||
	bad "--check omits the default relay_ports"
grep -qF "$COORD_PUB" "$DIR/normal1.ini" || bad "--check does not show the coordinator's public key"
grep -qF "$(cat "$DIR/coordinator.key")" "$DIR/normal1.ini" && bad "--check prints the private key"
run -- -c "$DIR/normal1.ini" --check
[ "$RC" = 0 ] || bad "--check refuses its own output: $(cat "$DIR/err")"
cmp -s "$DIR/out" "$DIR/normal1.ini" || bad "--check of its own output prints something else"

# A node config: no live interface and no DNS are needed to check it.
cat >"$DIR/node.ini" <<EOF
[node]
interface = wpcli-nosuch0
coordinator = coordinator.example.invalid:51900 $COORD_PUB
coordinator = [2001:db8::1]:51900 $COORD_PUB
keepalive = 30
EOF
run -- -c "$DIR/node.ini" --check
[ "$RC" = 0 ] || bad "--check of a node config with no live interface exits $RC: $(cat "$DIR/err")"
cp "$DIR/out" "$DIR/normal2.ini"
grep -qx "coordinator = \[2001:db8::1\]:51900 $COORD_PUB" "$DIR/normal2.ini" ||
	bad "--check does not print an IPv6 coordinator in brackets"
grep -qx "control_socket = /run/wgpunch/wpcli-nosuch0.sock" "$DIR/normal2.ini" ||
	bad "--check does not print the node's default control socket"
run -- -c "$DIR/normal2.ini" --check
[ "$RC" = 0 ] || bad "--check refuses its own node output: $(cat "$DIR/err")"
cmp -s "$DIR/out" "$DIR/normal2.ini" || bad "--check of its own node output prints something else"

# A bad config: 1, every mistake as FILE:LINE: message, nothing on stdout.
printf '[node]\ninterface = wg0\nkeepalive = 70000\nnonsense = 1\n' >"$DIR/bad.ini"
run -- -c "$DIR/bad.ini" --check
[ "$RC" = 1 ] || bad "--check of a bad config exits $RC"
[ ! -s "$DIR/out" ] || bad "--check of a bad config prints a config"
grep -q "^$DIR/bad.ini:3: " "$DIR/err" || bad "--check does not report keepalive at bad.ini:3"
grep -q "^$DIR/bad.ini:4: " "$DIR/err" || bad "--check does not report nonsense at bad.ini:4"
grep -q "^$DIR/bad.ini:1: " "$DIR/err" || bad "--check does not report the missing coordinator"
run -- -c "$DIR/bad.ini"
[ "$RC" = 1 ] || bad "running a bad config exits $RC"

# ---- status without an agent: 1, one clear message naming the socket ----
run -- status -s /nonexistent.sock
expect_fail /nonexistent.sock status -s /nonexistent.sock
grep -q "cannot reach an agent" "$DIR/err" || bad "status -s: unclear message: $(cat "$DIR/err")"
run -- status -s /nonexistent.sock --json
expect_fail /nonexistent.sock status -s /nonexistent.sock --json
[ ! -s "$DIR/out" ] || bad "status --json prints something without an agent"
# The socket named by the config, here a stale one that nobody listens on.
python3 -c 'import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' \
	"$DIR/coord.sock"
run -- status -c "$DIR/coordinator.ini"
expect_fail "$DIR/coord.sock" status -c "$DIR/coordinator.ini"

# ---- pubkey ----
for input in "garbage" "" "$(head -c 43 "$DIR/coordinator.key")" \
	"$(cat "$DIR/coordinator.key") $(cat "$DIR/coordinator.key")"; do
	printf '%s\n' "$input" >"$DIR/in"
	run "$DIR/in" -- pubkey
	expect_fail "base64" pubkey "<<< '${input:0:10}...'"
	[ ! -s "$DIR/out" ] || bad "pubkey prints a key for bad input"
done
head -c 300 /dev/zero | tr '\0' A >"$DIR/in"
run "$DIR/in" -- pubkey
[ "$RC" = 1 ] || bad "pubkey of 300 characters exits $RC"
for _ in 1 2 3; do
	(umask 077 && wg genkey >"$DIR/priv")
	run "$DIR/priv" -- pubkey
	[ "$RC" = 0 ] || bad "pubkey of a wg genkey key exits $RC: $(cat "$DIR/err")"
	[ "$(cat "$DIR/out")" = "$(wg pubkey <"$DIR/priv")" ] ||
		bad "pubkey disagrees with wg pubkey"
done
printf '  %s  \n\n' "$(cat "$DIR/priv")" >"$DIR/in"
run "$DIR/in" -- pubkey
[ "$RC" = 0 ] || bad "pubkey refuses a key with surrounding white space"

# ---- genkey ----
run -- genkey
[ "$RC" = 0 ] || bad "genkey exits $RC"
[ "$(lines "$DIR/out")" = 1 ] || bad "genkey prints $(lines "$DIR/out") lines"
grep -Eqx '[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=' "$DIR/out" ||
	bad "genkey prints '$(cat "$DIR/out")', not 44 base64 characters of 32 bytes"
cp "$DIR/out" "$DIR/k1"
pub=$(wg pubkey <"$DIR/k1") || bad "wg pubkey refuses genkey's output"
[ ${#pub} = 44 ] || bad "wg pubkey of genkey's output is '$pub'"
run "$DIR/k1" -- pubkey
[ "$(cat "$DIR/out")" = "$pub" ] || bad "wgpunch pubkey and wg pubkey disagree on a genkey key"
run -- genkey
cmp -s "$DIR/out" "$DIR/k1" && bad "genkey printed the same key twice"
# The key is clamped as wg genkey's are (a Curve25519 private key).
python3 - "$DIR/k1" <<'PY' || bad "genkey's key is not clamped"
import base64, sys
k = base64.b64decode(open(sys.argv[1]).read().strip())
sys.exit(0 if len(k) == 32 and k[0] & 7 == 0 and k[31] & 0x80 == 0 and k[31] & 0x40 else 1)
PY

[ "$FAILS" = 0 ] || tb_fail "$FAILS checks failed"
tb_pass "usage, --help, --version, --check, status, genkey, pubkey"

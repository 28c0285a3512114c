#!/bin/bash
# SPDX-License-Identifier: MIT
# The metrics file (metrics_file, node_exporter's textfile-collector convention): a coordinator
# and two nodes behind cone routers write it; every file is parsed strictly (the grammar of the
# text format 0.0.4, HELP and TYPE once per family and before its samples, no duplicate series,
# counters named *_total and whole numbers >= 0; and `promtool check metrics` too when it is
# installed), its counters are exactly the status document's (one metric per JSON counter,
# named wgpunch_<table>_<name>_total), and each lies between the status read before the file
# was written and the status read right after it: counters only grow, and the file is no older
# than one period. The gauges agree with the status too. A metrics folder that disappears is
# logged once (rate-limited) and the node goes on; when it is back the file is written again.
# At shutdown the file is written a last time.
set -u
. "$(dirname "$0")/lib.sh"
tb_need python3

tb_init
check=$TB_DIR/promcheck.py
cat >"$check" <<'EOF'
# promcheck.py FILE [BEFORE.json AFTER.json GROUP,...]: strict checks of a metrics file; with
# the status documents, its counters against theirs. Prints what is wrong, exits 1 if anything.
import json, re, sys

NAME = r'[a-zA-Z_:][a-zA-Z0-9_:]*'
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
NUM = r'[-+]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?|NaN|Inf)'
HELP_RE = re.compile(r'# HELP (' + NAME + r') ((?:[^\\\n]|\\[\\n])*)$')
TYPE_RE = re.compile(r'# TYPE (' + NAME + r') (counter|gauge|histogram|summary|untyped)$')
SAMPLE_RE = re.compile(r'(' + NAME + r')(\{(?:' + LABEL + r'(?:,' + LABEL + r')*)?\})? (' + NUM
                       + r')(?: -?[0-9]+)?$')
errors = []

def bad(lineno, msg):
    errors.append('%s:%d: %s' % (sys.argv[1], lineno, msg))

text = open(sys.argv[1], encoding='utf-8').read()
if not text.endswith('\n'):
    bad(0, 'the file does not end with a newline')
families = {}  # name -> {'help', 'type', 'samples': {labels: value}}
order = []
current = None
for i, line in enumerate(text.split('\n')[:-1], 1):
    if line.startswith('# HELP '):
        m = HELP_RE.match(line)
        if not m:
            bad(i, 'malformed HELP: %r' % line); continue
        name = m.group(1)
        if name in families:
            bad(i, 'second HELP for %s' % name); continue
        families[name] = {'help': m.group(2), 'type': None, 'samples': {}}
        order.append(name)
        current = name
    elif line.startswith('# TYPE '):
        m = TYPE_RE.match(line)
        if not m:
            bad(i, 'malformed TYPE: %r' % line); continue
        name = m.group(1)
        if name != current or families[name]['type'] or families[name]['samples']:
            bad(i, 'TYPE for %s is not right after its HELP, once' % name); continue
        families[name]['type'] = m.group(2)
    elif line.startswith('#') or line == '':
        bad(i, 'unexpected comment or empty line: %r' % line)
    else:
        m = SAMPLE_RE.match(line)
        if not m:
            bad(i, 'malformed sample: %r' % line); continue
        name, labels, value = m.group(1), m.group(2) or '', m.group(3)
        if name != current or not families[name]['type']:
            bad(i, 'sample of %s outside its family (HELP and TYPE first, samples together)'
                % name); continue
        f = families[name]
        if labels in f['samples']:
            bad(i, 'duplicate series %s%s' % (name, labels)); continue
        if f['type'] == 'counter':
            if not name.endswith('_total'):
                bad(i, 'counter %s does not end in _total' % name)
            if not re.fullmatch(r'[0-9]+', value):
                bad(i, 'counter %s is not a whole number >= 0: %s' % (name, value))
        f['samples'][labels] = float(value)
for name in order:
    f = families[name]
    if not name.startswith('wgpunch_'):
        bad(0, '%s lacks the wgpunch_ prefix' % name)
    if not f['help'].strip():
        bad(0, '%s has an empty HELP' % name)
    if not f['samples']:
        bad(0, '%s has no sample' % name)

if len(sys.argv) > 2 and not errors:
    before = json.load(open(sys.argv[2]))
    after = json.load(open(sys.argv[3]))
    groups = sys.argv[4].split(',')
    # The coordinator's relay counters are their own object in the status (relay_counters),
    # and may share names with the others: key them by (object, name).
    RELAY_GROUPS = ('relay_svc', 'rtab', 'relay_fwd')
    def flat(doc):
        d = {('counters', k): v for k, v in doc['counters'].items()}
        d.update({('relay_counters', k): v for k, v in doc.get('relay_counters', {}).items()})
        return d
    cb, ca = flat(before), flat(after)
    seen = {}
    for name in order:
        f = families[name]
        if f['type'] != 'counter':
            continue
        keys = [(obj, k) for g in groups for (obj, k) in ca
                if obj == ('relay_counters' if g in RELAY_GROUPS else 'counters')
                and name == 'wgpunch_%s_%s_total' % (g, k)]
        if len(keys) != 1:
            bad(0, 'counter %s matches %d status counters %s' % (name, len(keys), keys))
            continue
        k = keys[0]
        if k in seen:
            bad(0, 'status counter %s is both %s and %s' % (k, seen[k], name))
        seen[k] = name
        v = f['samples']['']
        if not cb[k] <= v <= ca[k]:
            bad(0, '%s = %d, but the status said %d before and %d after' % (name, v, cb[k], ca[k]))
    for k in ca:
        if k not in seen:
            bad(0, 'status counter %s has no metric' % (k,))
    print('%d families, %d counters checked against the status' % (len(order), len(seen)))

for e in errors:
    print(e)
sys.exit(1 if errors else 0)
EOF

NODE_GROUPS=link,link_shell,paths,paths_shell
COORD_GROUPS=transport,hs,hs_budget,dir,filter,punch,relay_svc,rtab,relay_fwd

# metric FILE NAME: the value of the series NAME (with its labels, as written) in FILE.
metric()
{
	awk -v n="$2" '$1 == n { print $2; found = 1 } END { exit !found }' "$1"
}

# replaced FILE INODE: FILE exists with another inode (the writer renamed a new one over it).
replaced()
{
	local ino

	ino=$(stat -c %i "$1" 2>/dev/null) && [ "$ino" != "$2" ]
}

# check_file NAME FILE GROUPS: the strict checks, then the counters between two status reads
# around a fresh write of FILE (the writer renames a new file into place every 5 s).
check_file()
{
	local name=$1 file=$2 groups=$3 ino0 out

	tb_status "$name" --json >"$TB_DIR/$name.before.json" || tb_fail "no status from $name"
	ino0=$(stat -c %i "$file")
	tb_wait_for 8 replaced "$file" "$ino0" ||
		tb_fail "$file was not rewritten within 8 s (the period is 5 s)"
	cp "$file" "$TB_DIR/$name.snap.prom"
	tb_status "$name" --json >"$TB_DIR/$name.after.json" || tb_fail "no status from $name"
	out=$(python3 "$check" "$TB_DIR/$name.snap.prom" "$TB_DIR/$name.before.json" \
		"$TB_DIR/$name.after.json" "$groups") ||
		tb_fail "metrics file of $name: $out"
	tb_log "$name: $out"
	if command -v promtool >/dev/null 2>&1; then
		out=$(promtool check metrics <"$TB_DIR/$name.snap.prom" 2>&1) ||
			tb_fail "promtool check metrics on the file of $name: $out"
	fi
}

tb_side a cone
tb_side b cone
tb_peers a b
tb_coord "metrics_file = coord.prom"
mkdir "$TB_DIR/bmetrics"
tb_node a "metrics_file = $TB_DIR/a.prom"
tb_node b "metrics_file = bmetrics/b.prom"
tb_assert_tunnel a b 20

for f in coord.prom a.prom bmetrics/b.prom; do
	tb_wait_for 8 test -s "$TB_DIR/$f" || tb_fail "no metrics file $f within 8 s"
done
[ "$(stat -c %a "$TB_DIR/a.prom")" = 644 ] || tb_fail "a.prom is not mode 0644"

check_file coord "$TB_DIR/coord.prom" "$COORD_GROUPS"
check_file a "$TB_DIR/a.prom" "$NODE_GROUPS"
check_file b "$TB_DIR/bmetrics/b.prom" "$NODE_GROUPS"

# A connected peer has no reason (docs/status-json.md).
for h in a b; do
	[ "$(tb_peer_status "$h" "$([ "$h" = a ] && echo b || echo a)" reason)" = None ] ||
		tb_fail "$h shows a reason for its connected peer"
done

# Gauges: the pair is connected directly, one session up each, the registry holds both.
for h in a b; do
	f=$TB_DIR/$h.snap.prom
	[ "$(metric "$f" 'wgpunch_node_peers{path="direct"}')" = 1 ] ||
		tb_fail "$h: wgpunch_node_peers{path=\"direct\"} is not 1"
	[ "$(metric "$f" 'wgpunch_node_peers{path="none"}')" = 0 ] ||
		tb_fail "$h: wgpunch_node_peers{path=\"none\"} is not 0"
	[ "$(metric "$f" 'wgpunch_node_coordinator_sessions{state="up"}')" = 1 ] ||
		tb_fail "$h: wgpunch_node_coordinator_sessions{state=\"up\"} is not 1"
	[ "$(metric "$f" 'wgpunch_node_peers_not_connected{reason="no_coordinator"}')" = 0 ] ||
		tb_fail "$h: a peer not connected for no_coordinator"
done
f=$TB_DIR/coord.snap.prom
[ "$(metric "$f" wgpunch_coordinator_nodes)" = 2 ] || tb_fail "coordinator_nodes is not 2"
[ "$(metric "$f" wgpunch_coordinator_nodes)" = "$(tb_json coord "d['nodes']")" ] ||
	tb_fail "coordinator_nodes differs from the status"
[ "$(metric "$f" wgpunch_coordinator_sessions)" = "$(tb_json coord "d['sessions']")" ] ||
	tb_fail "coordinator_sessions differs from the status"
metric "$f" wgpunch_coordinator_pending_punches >/dev/null || tb_fail "no pending_punches gauge"
metric "$f" wgpunch_coordinator_pending_filter_tests >/dev/null ||
	tb_fail "no pending_filter_tests gauge"

# b's folder goes away: one warning (rate-limited to one a minute), the node goes on, and
# the file is written again once the folder is back.
rm -rf "$TB_DIR/bmetrics"
tb_wait_for 8 grep -q "cannot write the metrics file" "$TB_DIR/b.log" ||
	tb_fail "b did not log its failed metrics write"
sleep 11 # two more periods, both failing
n=$(grep -c "cannot write the metrics file" "$TB_DIR/b.log")
[ "$n" = 1 ] || tb_fail "b logged its failed metrics write $n times in 3 periods, expected 1"
tb_alive "$TB_NODE_PID_b" || tb_fail "node b exited after a failed metrics write"
tb_ping b a || tb_fail "the tunnel is down after b's failed metrics writes"
mkdir "$TB_DIR/bmetrics"
tb_wait_for 8 test -s "$TB_DIR/bmetrics/b.prom" || tb_fail "b.prom not written again"
grep -q "metrics file .* written again" "$TB_DIR/b.log" || tb_fail "b did not log the recovery"
python3 "$check" "$TB_DIR/bmetrics/b.prom" >/dev/null || tb_fail "b.prom is malformed after"

# Shutdown: one last write. The file is replaced, so its inode changes.
ino0=$(stat -c %i "$TB_DIR/a.prom")
mv "$TB_DIR/a.prom" "$TB_DIR/a.old.prom"
kill -TERM "$TB_NODE_PID_a"
wait "$TB_NODE_PID_a" # bounded by the agent's own shutdown timeout
rc=$?
[ "$rc" = 0 ] || tb_fail "node a exited $rc on SIGTERM, expected 0"
[ -s "$TB_DIR/a.prom" ] || tb_fail "node a wrote no metrics file at shutdown"
[ "$(stat -c %i "$TB_DIR/a.prom")" != "$ino0" ] || tb_fail "a.prom was not replaced"
out=$(python3 "$check" "$TB_DIR/a.prom") || tb_fail "the last metrics file of a: $out"
# Atomic writes leave no temporary file behind (the collector skips them: no .prom suffix).
for f in "$TB_DIR"/.a.prom.*; do
	[ -e "$f" ] && tb_fail "node a left its temporary file $f"
done
tb_pass "metrics files parse strictly and agree with the status"

#!/usr/bin/env bash
# The daemon's configuration file: a bad one is refused with FILE:LINE:COL and nothing is
# loaded (no pins, no policy: never half-configured); a good one with an interface pattern
# enforces on the interfaces it matches; flags replace the file's values; the file's pin-dir
# and state-dir serve every command; SIGHUP re-reads file and policy (a bad reload is
# rejected, logged, and the old stays in force); SIGINT leaves enforcement in force.
#
# usage: config.sh PATH/TO/sluice   (root; builds its own namespaces, see lib.sh)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/lib.sh
source "$here/lib.sh"
sl_init "${1:-}"
sl_setup

policy=$SL_TMP/policy.conf
cat >"$policy" <<'EOF'
mode enforce
default deny
allow 198.51.100.0/24
allow 2001:db8:a::/48
EOF
conf=$SL_TMP/sluice.conf

# nothing_loaded DESC — a refused start left no trace: no pins, no policy in force.
nothing_loaded() {
	check "$1: nothing pinned" "$(find "$SL_PIN_DIR" -mindepth 1 2>/dev/null | wc -l)" 0
	check "$1: no policy recorded" "$(test -e "$SL_STATE_DIR/policy.json" && echo yes || echo no)" no
}

# refused DESC EXACT-MESSAGE CONFIG-TEXT — `sluice run --config` on that text fails with
# exit 1 and exactly "sluice: error: EXACT-MESSAGE", and loads nothing.
refused() {
	printf '%s' "$3" >"$conf"
	bad_cmd "$1" 1 "^sluice: error: $(printf '%s' "$2" | sed 's/[][\.*^$()+?{}|]/\\&/g')\$" -- \
		sl run --config "$conf"
	nothing_loaded "$1"
}

sl_log "bad configurations are refused before anything is loaded"
refused "unknown key" "$conf:3:1: unknown key 'interfaces' (did you mean 'interface'?)" \
	"# test
policy $policy
interfaces $SL_NODE_IF
"
refused "bad metrics address" \
	"$conf:3:11: bad address '127.0.0.1:port': expected IPV4:PORT, [IPV6]:PORT (numeric) or off" \
	"interface $SL_NODE_IF
policy $policy
metrics   127.0.0.1:port
"
refused "missing policy" \
	"$conf:2:8: cannot read policy $SL_TMP/nonexistent.conf: No such file or directory" \
	"interface $SL_NODE_IF
policy $SL_TMP/nonexistent.conf
"
refused "pattern matching no interface" "$conf:1:11: pattern 'sl-zz-*' matches no interface" \
	"interface sl-zz-* $SL_NODE_IF
policy $policy
"
refused "interface that does not exist" "$conf:2:11: no such interface: nosuch0" \
	"interface $SL_NODE_IF
interface nosuch0
policy $policy
"
refused "mode given twice" "$conf:3:1: mode is already set at line 2" \
	"interface $SL_NODE_IF
mode audit
mode enforce
policy $policy
"
printf 'default deny\nessential maybe\n' >"$SL_TMP/bad-policy.conf"
refused "policy that does not compile" "$SL_TMP/bad-policy.conf:2:11: expected on or off, not 'maybe'" \
	"interface $SL_NODE_IF
policy $SL_TMP/bad-policy.conf
"
bad_cmd "missing --config file" 1 \
	"^sluice: error: cannot read configuration $SL_TMP/none\\.conf: No such file or directory\$" -- \
	sl run --config "$SL_TMP/none.conf"
bad_cmd "flag checked as the file would be" 2 "^sluice: error: --metrics: bad address 'x:1'" -- \
	sl run --config "$conf" --metrics x:1

sl_log "a good configuration: a pattern, audit mode"
cat >"$conf" <<EOF
# e2e: the node's veth through a pattern
interface sl-n-*
mode audit
policy $policy
metrics off
events off
EOF
sluice_start_args --config "$conf"
check "attached through the pattern" "$(grep -c "attached to $SL_NODE_IF egress" "$SL_RUN_LOG")" 1
check "audit: ping 203.0.113.10 passes" "$(sl_ping 203.0.113.10 3)" 3
check "audit: 203.0.113.10 counted as audit" "$(sl_dest_count 203.0.113.10 audit packets)" 3
sluice_stop

sl_log "a flag replaces the file's value: --mode enforce"
sluice_start_args --config "$conf" --mode enforce
check "enforce: ping 203.0.113.10 denied" "$(sl_ping 203.0.113.10 3)" 0
check "enforce: ping 198.51.100.10 allowed" "$(sl_ping 198.51.100.10 3)" 3
sluice_stop

sl_log "the file's pin-dir and state-dir serve every command"
cat >>"$conf" <<EOF
pin-dir $SL_PIN_DIR
state-dir $SL_STATE_DIR
EOF
out=$(in_node "$SLUICE" stats --json --config "$conf" | jq -r '.mode') || out="failed"
check "sluice stats --config finds the pins" "$out" enforce
out=$(in_node "$SLUICE" policy show --json --config "$conf" | jq -r '.source') || out="failed"
check "sluice policy show --config finds the state" "$out" "$policy"

sl_log "SIGHUP re-reads the file and the policy; a bad one is rejected, the old stays"
cat >"$conf" <<EOF
interface sl-n-*
mode audit
policy $policy
EOF
sluice_start_args --config "$conf"

# hup — SIGHUP the daemon and wait until it logged the outcome; prints it.
hup() {
	local before
	before=$(grep -cE 'reloaded$|reload rejected' "$SL_RUN_LOG" || true)
	kill -HUP "$SL_SLUICE_PID"
	wait_for 10 reload_logged "$before" || sl_die "no reload outcome logged after SIGHUP"
	grep -E 'reloaded$|reload rejected' "$SL_RUN_LOG" | tail -n1 | sed 's/^sluice: //; s/^warning: //'
}
reload_logged() { [ "$(grep -cE 'reloaded$|reload rejected' "$SL_RUN_LOG" || true)" -gt "$1" ]; }
generation() { sl policy show --json | jq -r '.generation'; }

sed -i 's/^mode audit$/mode enforce/' "$conf"
check "reload to mode enforce" "$(hup)" reloaded
check "enforce after reload: ping 203.0.113.10 denied" "$(sl_ping 203.0.113.10 3)" 0
gen=$(generation)

printf 'interfcae sl-n-*\n' >>"$conf"
check "reload of a configuration with an unknown key" "$(hup)" \
	"reload rejected: the configuration and the policy in force are unchanged"
check_match "the rejected line is named" "$(cat "$SL_RUN_LOG")" \
	"error: $conf:4:1: unknown key 'interfcae' \\(did you mean 'interface'\\?\\)"
check "rejected: generation unchanged" "$(generation)" "$gen"
check "rejected: ping 203.0.113.10 still denied" "$(sl_ping 203.0.113.10 3)" 0
check "rejected: ping 198.51.100.10 still allowed" "$(sl_ping 198.51.100.10 3)" 3
sed -i '$d' "$conf"

printf 'allow 203.0.113.0/24 tcp 99999\n' >>"$policy"
check "reload of a policy that does not compile" "$(hup)" \
	"reload rejected: the configuration and the policy in force are unchanged"
check_match "the policy's error is named" "$(cat "$SL_RUN_LOG")" \
	"error: $policy:5:[0-9]+: port 99999 is out of range"
check "bad policy: generation unchanged" "$(generation)" "$gen"
check "bad policy: ping 203.0.113.10 still denied" "$(sl_ping 203.0.113.10 3)" 0
sed -i '$d' "$policy"

policy2=$SL_TMP/policy2.conf
printf 'mode enforce\ndefault deny\nallow 203.0.113.0/24\n' >"$policy2"
sed -i "s|^policy .*|policy $policy2|" "$conf"
check "reload onto another policy file" "$(hup)" reloaded
check "the new policy is in force" "$(sl policy show --json | jq -r .source)" "$policy2"
check "new policy: ping 203.0.113.10 allowed" "$(sl_ping 203.0.113.10 3)" 3
check "new policy: ping 198.51.100.10 denied" "$(sl_ping 198.51.100.10 3)" 0

sl_log "systemd's readiness protocol (Type=notify): READY only once enforcing"
sluice_stop
sl detach --all 2>/dev/null # no pins: the links counted at READY are this start's
notify_log=$SL_TMP/notify.log
# The listener notes, as each message arrives, how many links are pinned at that moment.
python3 - "$SL_TMP/notify.sock" "$SL_PIN_DIR/links" >"$notify_log" <<'PY' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("listening", flush=True)
while True:
    msg = s.recv(4096).decode().replace("\n", " ")
    links = len(os.listdir(sys.argv[2])) if os.path.isdir(sys.argv[2]) else 0
    print("%s (links %d)" % (msg, links), flush=True)
PY
notify_pid=$!
stop_notify() { sl_kill_wait "$notify_pid"; }
SL_CLEANUP_HOOKS+=(stop_notify)
wait_for 5 grep -q listening "$notify_log" || sl_die "notify listener did not start"
NOTIFY_SOCKET=$SL_TMP/notify.sock sluice_start_args --config "$conf"
wait_for 5 grep -q READY "$notify_log" || true
# links 2: tc egress and tc ingress of the one interface
check "READY=1 sent once attached" "$(sed -n 2p "$notify_log")" "READY=1 STATUS=enforcing (links 2)"
check "reload: RELOADING=1 then READY=1" "$(hup) / $(sed -n '3,4p' "$notify_log" | tr '\n' '/')" \
	"reloaded / RELOADING=1 (links 2)/READY=1 STATUS=reloaded (links 2)/"

sl_log "SIGINT: the daemon exits, enforcement stays"
kill -INT "$SL_SLUICE_PID"
rc=0
wait "$SL_SLUICE_PID" || rc=$?
SL_SLUICE_PID=
check "sluice run exits 0 on SIGINT" "$rc" 0
wait_for 5 grep -q STOPPING "$notify_log" || true
check "STOPPING=1 sent on exit" "$(sed -n 5p "$notify_log")" "STOPPING=1 (links 2)"
check_match "it says enforcement stays" "$(tail -n1 "$SL_RUN_LOG")" \
	"exiting on Interrupt; enforcement stays in force"
check "after exit: ping 198.51.100.10 still denied" "$(sl_ping 198.51.100.10 3)" 0
check "after exit: ping 203.0.113.10 still allowed" "$(sl_ping 203.0.113.10 3)" 3

sl_finish

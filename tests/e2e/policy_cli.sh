#!/usr/bin/env bash
# Acceptance test of the policy CLI and runtime overrides, judged at the receiving side:
#
#   policy check    a good file: exit 0 and a summary; a bad one: exit 1, one FILE:LINE:COL
#                   line (and {"error": ...} on stdout with --json)
#   policy load     with `sluice run` going: a bad file changes nothing (generation,
#                   counters, the policy shown, what gets through); a good one takes effect
#                   at once, one generation later. Without a daemon (pins only): the same.
#   deny/allow      in force at once (or, made before sluice ever ran, once it runs);
#   /remove         listed by `policy show`; kept across a daemon restart and across
#                   `policy load` of another file; `remove` lifts at once; `--for` expires
#                   under the daemon; protocol/port overrides touch only what they name,
#                   and two of them on one address hold together
#   bad arguments   exit 2 with one `sluice: error:` line, nothing changed
#
# Every "gets through / gets nothing" is what a UDP receiver in the world namespace logged
# (or the world's nft counters, for ICMP), never what sluice says about itself.
#
# usage: policy_cli.sh PATH/TO/sluice   (root; builds its own namespaces, see lib.sh)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/lib.sh
source "$here/lib.sh"
sl_init "${1:-}"
sl_setup

A=198.51.100.10     # allowed by P1, denied by P2 and P3
B=203.0.113.10      # denied by P1, allowed by P2 and P3
A6=2001:db8:a::10   # as A
B6=2001:db8:d::10   # as B
ALT_PORT=5353       # the port of the protocol/port override; SL_UDP_PORT is the other one
PROBE_N=3           # datagrams per probe

p1=$SL_TMP/p1.conf
p2=$SL_TMP/p2.conf
p3=$SL_TMP/p3.conf
bad=$SL_TMP/bad.conf
cat >"$p1" <<'EOF'
# P1: the A side only
mode enforce
default deny
set a_side { 198.51.100.0/24, 2001:db8:a::/48 }
allow @a_side
deny  203.0.113.0/24
deny  2001:db8:d::/48
EOF
cat >"$p2" <<'EOF'
# P2: the B side only
mode enforce
default deny
set b_side { 203.0.113.0/24, 2001:db8:d::/48 }
allow @b_side  name b-side
deny  198.51.100.0/24
EOF
cat >"$p3" <<'EOF'
# P3: the B side only, written differently (no set, narrower prefixes)
mode enforce
default deny
allow 203.0.113.0/25
allow 2001:db8:d::/64
EOF
# Line 3, column 20 is the prefix length (column 7 the CIDR: either is precise).
printf '# broken on line 3\ndefault deny\nallow 198.51.100.0/33\n' >"$bad"
bad_re="^sluice: error: $bad:3:(7|20): .*198\\.51\\.100\\.0/33"

# --- helpers ----------------------------------------------------------------------------

# sl_tail CMD ARGS... — like sl, with the common options after the positional arguments.
sl_tail() { in_node "$SLUICE" "$@" --pin-dir "$SL_PIN_DIR" --state-dir "$SL_STATE_DIR"; }

# run_cmd COMMAND... — run it; sets RC, OUT (stdout) and ERR (stderr).
run_cmd() {
	RC=0
	OUT=$("$@" 2>"$SL_TMP/stderr") || RC=$?
	ERR=$(cat "$SL_TMP/stderr")
}

# expect_error DESC RC ERE [json] -- COMMAND... — COMMAND exits RC with exactly one
# "sluice: error: " line on stderr matching ERE (plus, for usage errors (RC 2), at most the
# one "Try 'sluice help CMD'." line), and nothing on stdout — or, with "json", exactly the
# error as {"error": "..."} on stdout.
expect_error() {
	local desc=$1 want_rc=$2 re=$3 json='' try='^$'
	shift 3
	[ "$1" = json ] && json=1 && shift
	shift # --
	[ "$want_rc" = 2 ] && try="^Try 'sluice help [a-z]*'\.\$"
	local nerr nother line
	run_cmd "$@"
	check "$desc: exit status" "$RC" "$want_rc"
	nerr=$(grep -c '^sluice: error: ' <<<"$ERR" || true)
	nother=$(grep -v -c -e '^sluice: error: ' -e "$try" <<<"$ERR" || true)
	check "$desc: one 'sluice: error:' line on stderr" "$nerr/$nother" 1/0
	[ "$nerr/$nother" = 1/0 ] || printf '# stderr was: %s\n' "$ERR"
	line=$(grep '^sluice: error: ' <<<"$ERR" | head -n1 || true)
	check_match "$desc: message" "$line" "$re"
	if [ -n "$json" ]; then
		check "$desc: stdout is {\"error\": the same message}" \
			"$(jq -c 'keys' <<<"$OUT" 2>&1)|$(jq -r '.error' <<<"$OUT" 2>&1)" \
			"[\"error\"]|${line#sluice: error: }"
	else
		check "$desc: nothing on stdout" "$OUT" ""
	fi
}

# The receiver: UDP on every destination, on SL_UDP_PORT and ALT_PORT; one line per
# datagram ("udp DEST PORT PAYLOAD") in $RECV_LOG.
RECV_LOG=$SL_TMP/recv.log
receiver_start() {
	: >"$RECV_LOG"
	in_world python3 - "$SL_UDP_PORT" "$ALT_PORT" "${SL_DESTS[@]}" >>"$RECV_LOG" 2>&1 <<'EOF' &
import select, socket, sys
ports, addrs = (int(sys.argv[1]), int(sys.argv[2])), sys.argv[3:]
socks = {}
for a in addrs:
    for p in ports:
        s = socket.socket(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((a, p))
        socks[s] = (a, p)
print("ready", flush=True)
while True:
    for s in select.select(list(socks), [], [])[0]:
        a, p = socks[s]
        print("udp", a, p, s.recv(65535).decode(errors="replace"), flush=True)
EOF
	SL_SERVER_PID=$! # lib.sh's cleanup stops it
	wait_for 10 grep -q '^ready' "$RECV_LOG" || sl_die "world receiver did not start"
}

# probe pass|block DEST [PORT] — send PROBE_N datagrams from node to DEST:PORT (default
# SL_UDP_PORT), tagged uniquely (probe runs in a subshell: the tag is the clock, not a
# counter); print how many the world received. A datagram sluice lets through is in the
# receiver's log within milliseconds (veth, local softirq): "pass" waits up to 3 s for all
# of them, "block" 0.4 s for any leak.
probe() {
	local want=$1 dst=$2 port=${3:-$SL_UDP_PORT} tag
	tag=probe$(date +%s%N)
	in_node python3 - "$dst" "$port" "$PROBE_N" "$tag" <<'PY'
import socket, sys
dst, port, n, tag = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
s = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_DGRAM)
for i in range(n):
    s.sendto(b"%s %d" % (tag.encode(), i), (dst, port))
PY
	if [ "$want" = pass ]; then
		wait_for 3 probe_all_seen "$dst" "$port" "$tag" || true
	else
		sleep 0.4
	fi
	grep -c "^udp $dst $port $tag " "$RECV_LOG" || true
}
probe_all_seen() { [ "$(grep -c "^udp $1 $2 $3 " "$RECV_LOG")" -ge "$PROBE_N" ]; }

# passes DESC DEST [PORT] / blocked DESC DEST [PORT] — the world gets all / none of a probe.
passes() { check "$1: $2${3:+:$3} gets through" "$(probe pass "$2" "${3:-}")" "$PROBE_N"; }
blocked() { check "$1: $2${3:+:$3} gets nothing" "$(probe block "$2" "${3:-}")" 0; }

# These print "?" (or nothing) rather than fail, so a broken sluice fails checks, not the
# script: every mismatch gets reported.
generation() { sl stats --json | jq -r '.generation // "?"' || echo "?"; }
show() { sl policy show --json | jq -S -c . || true; }
# plus N VALUE — VALUE + N, or "?" when VALUE is not a number.
plus() { if [[ "$2" =~ ^[0-9]+$ ]]; then echo $(($2 + $1)); else echo "?"; fi; }
overrides() { # the overrides `policy show` lists, one "action target protocols ports" each
	show | jq -r '.overrides[] | [.action, .target, .protocols, .ports] |
		map(select(. != "")) | join(" ")' | sort | paste -sd';' || true
}
# The rules of the policy shown, compactly; the source is checked separately.
rules_shown() { show | jq -c '[.rules[] | [.action, .target, .name]]' || true; }
# sluice's per-destination counters, one destination a line, in a form that compares exactly.
dest_snapshot() { sl dest --json | jq -S -c 'sort_by(.destination) | .[]' || true; }
# unchanged DESC BEFORE AFTER — the two texts are equal; shows the difference if not.
unchanged() {
	check "$1 unchanged" "$(diff <(printf '%s\n' "$2") <(printf '%s\n' "$3") | head -n 20)" ""
}

# --- 1. policy check --------------------------------------------------------------------

run_cmd sl policy check "$p1"
check "check P1: exit status" "$RC" 0
check "check P1: nothing on stderr" "$ERR" ""
check_match "check P1: summary names the file" "$OUT" "^$p1: ok"
check_match "check P1: summary counts rules, destinations and sets" "$OUT" \
	'3 rules over 4 destinations, 1 sets'
check_match "check P1: summary counts prefixes" "$OUT" 'compiles to [0-9]+ prefixes'
run_cmd sl policy check "$p1" --json
check "check P1 --json: exit status" "$RC" 0
check "check P1 --json: ok, rules, destinations, sets" \
	"$(jq -c '[.ok, .file, .mode, .default, .rules, .destinations, .sets]' <<<"$OUT" 2>&1)" \
	"[true,\"$p1\",\"enforce\",\"deny\",3,4,1]"
check_match "check P1 --json: prefixes counted" "$(jq -r .prefixes <<<"$OUT" 2>&1)" '^[1-9][0-9]*$'
expect_error "check BAD" 1 "$bad_re" -- sl policy check "$bad"
expect_error "check BAD --json" 1 "$bad_re" json -- sl policy check "$bad" --json
expect_error "check a missing file" 1 "$SL_TMP/nonexistent\\.conf" -- \
	sl policy check "$SL_TMP/nonexistent.conf"
# A policy within the parser's limits that needs more address and port ranges than a bank
# of the datapath holds (8200 rules, each with 32 single ports): refused whole, up front.
huge=$SL_TMP/huge.conf
awk -v p="$(seq -s, 1 2 63)" 'BEGIN { print "default deny"
	for (i = 1; i <= 8200; i++) printf "allow 2001:db8:aa::%x tcp %s\n", i, p }' >"$huge"
expect_error "check HUGE" 1 "too large: it needs more than the [0-9]+ address and port ranges" \
	-- sl policy check "$huge"

# --- 2. policy load with the daemon running ----------------------------------------------

# First, an override made before sluice ever ran here: stored, in force once it runs.
run_cmd sl deny "$A6"
check "deny $A6 before any sluice run: exit status" "$RC" 0
check_match "deny $A6 before any sluice run: says it is stored for later" "$ERR" \
	"^sluice: warning: .*stored"

receiver_start
sl_log "sluice run --iface $SL_NODE_IF --policy $p1"
sluice_start "$p1"
check "P1: policy show lists the override made before the run" "$(overrides)" "deny $A6"
blocked "P1 + the override made before the run" "$A6"
run_cmd sl remove "$A6"
check "remove $A6: exit status" "$RC" 0
passes "P1" "$A"
passes "P1" "$A6"
blocked "P1" "$B"
blocked "P1" "$B6"
g0=$(generation)
check_match "P1: a generation is in force" "$g0" '^[1-9][0-9]*$'
check "P1: policy show: source" "$(show | jq -r .source)" "$p1"
check "P1: policy show: generation = stats generation" "$(show | jq -r .generation)" "$g0"

dest0=$(dest_snapshot)
show0=$(show)
expect_error "load BAD (daemon running)" 1 "$bad_re" -- sl policy load "$bad"
expect_error "load BAD --json (daemon running)" 1 "$bad_re" json -- sl policy load "$bad" --json
check "load BAD: generation unchanged" "$(generation)" "$g0"
unchanged "load BAD: per-destination counters" "$dest0" "$(dest_snapshot)"
unchanged "load BAD: policy show" "$show0" "$(show)"
check "load BAD: the daemon is still running" \
	"$(kill -0 "$SL_SLUICE_PID" 2>/dev/null && echo yes || echo no)" yes
blocked "after load BAD" "$B"
passes "after load BAD" "$A"
run_cmd sl policy load "$huge"
check "load HUGE: refused" "$RC" 1
check_match "load HUGE: says why" "$ERR" "ranges"
check "load HUGE: generation unchanged" "$(generation)" "$g0"
unchanged "load HUGE: policy show" "$show0" "$(show)"
blocked "after load HUGE" "$B"
passes "after load HUGE" "$A"

run_cmd sl policy load "$p2"
check "load P2: exit status" "$RC" 0
check_match "load P2: says which generation is in force" "$OUT" \
	"^$p2: in force as generation $(plus 1 "$g0") "
blocked "P2, at once" "$A"
blocked "P2, at once" "$A6"
passes "P2, at once" "$B"
passes "P2, at once" "$B6"
check "load P2: generation + 1" "$(generation)" "$(plus 1 "$g0")"
check "load P2: policy show: source" "$(show | jq -r .source)" "$p2"
check "load P2: policy show: generation" "$(show | jq -r .generation)" "$(plus 1 "$g0")"
check "load P2: policy show: rules" "$(rules_shown)" \
	'[["allow","@b_side","b-side"],["deny","198.51.100.0/24","p2.conf:6"]]'
check "load P2: policy show: sets" "$(show | jq -c '[.sets[] | .name, .members]')" \
	'["b_side",["203.0.113.0/24","2001:db8:d::/48"]]'
check "load P2: the rule sluice reports for $B" \
	"$(sl dest --json | jq -r --arg d "$B" '.[] | select(.destination == $d) | .rule')" b-side

# --- 3. overrides -----------------------------------------------------------------------

g=$(generation)
d0=$(sl_dest_count "$B" deny packets || echo "?")
run_cmd sl deny "$B"
check "deny $B: exit status" "$RC" 0
blocked "deny $B, at once" "$B"
passes "deny $B" "$B6" # the override is that address only
check "deny $B: counted as denied ($PROBE_N more)" "$(sl_dest_count "$B" deny packets)" \
	"$(plus "$PROBE_N" "$d0")"
check "deny $B: the rule sluice reports" \
	"$(sl dest --json | jq -r --arg d "$B" '.[] | select(.destination == $d) | .rule')" \
	"override:deny:$B"
check "deny $B: generation + 1" "$(generation)" "$(plus 1 "$g")"
check "deny $B: policy show lists it" "$(overrides)" "deny $B"
check "deny $B: it does not expire" "$(show | jq -r '.overrides[0].expires')" 0
check "deny $B: policy show still shows P2's own rules" "$(rules_shown)" \
	'[["allow","@b_side","b-side"],["deny","198.51.100.0/24","p2.conf:6"]]'

rc=0
sluice_stop || rc=$?
check "sluice run exits 0 on SIGTERM" "$rc" 0
sl_log "sluice run again, same pin and state dirs"
sluice_start "$p2"
check "restart: policy show still lists the override" "$(overrides)" "deny $B"
blocked "restart" "$B"
passes "restart" "$B6"

run_cmd sl policy load "$p3"
check "load P3 (override in force): exit status" "$RC" 0
check_match "load P3: one override re-applied" "$OUT" ', 1 overrides\)$'
check "load P3: policy show: source" "$(show | jq -r .source)" "$p3"
check "load P3: policy show still lists the override" "$(overrides)" "deny $B"
blocked "P3 + override" "$B"
passes "P3" "$B6"
blocked "P3" "$A"

g=$(generation)
run_cmd sl remove "$B"
check "remove $B: exit status" "$RC" 0
passes "remove $B, at once" "$B"
check "remove $B: generation + 1" "$(generation)" "$(plus 1 "$g")"
check "remove $B: policy show lists no override" "$(overrides)" ""
g=$(generation)
expect_error "remove $B again" 1 "no override for $B\$" -- sl remove "$B"
expect_error "remove an override never made" 1 "no override for $A udp $ALT_PORT\$" -- \
	sl remove "$A" udp "$ALT_PORT"
check "failed removes: generation unchanged" "$(generation)" "$g"

# allow --for: through at once, blocked again once the daemon sees it expire.
ms() { echo $(($(date +%s%N) / 1000000)); }
t_allow=$(ms)
run_cmd sl_tail allow "$A" --for 3s
check "allow $A --for 3s: exit status" "$RC" 0
g=$(generation)
passes "allow $A --for 3s, at once" "$A"
blocked "allow $A --for 3s" "$A6"
check "allow $A --for 3s: policy show lists it" "$(overrides)" "allow $A"
expires=$(show | jq -r '.overrides[0].expires // "absent"' || true)
[[ "$expires" =~ ^[0-9]+$ ]] && expires=$((expires - $(date +%s)))
check_match "allow $A --for 3s: expires 2-3 s from now" "$expires" '^[23]$'
expired() { [ "$(probe block "$A")" = 0 ]; }
wait_for 6 expired || true
# expires = whole seconds at the allow + 3; the daemon looks each second: 2-4 s, plus probes.
lasted=$(($(ms) - t_allow))
check_match "allow $A --for 3s: lasted 2-6 s (${lasted} ms)" "$lasted" '^[2-5][0-9]{3}$'
blocked "allow $A --for 3s, after expiry" "$A"
check "expiry: policy show lists no override" "$(overrides)" ""
check "expiry: the daemon re-applied the policy once" "$(generation)" "$(plus 1 "$g")"

# A protocol/port override touches only that protocol and port.
passes "before deny udp $ALT_PORT" "$B" "$ALT_PORT"
run_cmd sl_tail deny "$B" udp "$ALT_PORT"
check "deny $B udp $ALT_PORT: exit status" "$RC" 0
blocked "deny $B udp $ALT_PORT" "$B" "$ALT_PORT"
passes "deny $B udp $ALT_PORT" "$B" "$SL_UDP_PORT"
sl_counters_reset
check "deny $B udp $ALT_PORT: ping $B gets 3 replies" "$(sl_ping "$B" 3)" 3
check "deny $B udp $ALT_PORT: the world got the 3 echo requests" \
	"$(sl_count in "$B" icmp packets)" 3
check "deny $B udp $ALT_PORT: policy show lists it" "$(overrides)" "deny $B udp $ALT_PORT"
# A second override on the same address, for another protocol: both in force.
run_cmd sl deny "$B" icmp
check "deny $B icmp (with deny $B udp $ALT_PORT): exit status" "$RC" 0
sl_counters_reset
sl_icmp_send "$B" 3
check "deny $B icmp: no echo request reached the world" "$(sl_count in "$B" icmp packets)" 0
blocked "deny $B icmp + udp $ALT_PORT" "$B" "$ALT_PORT"
passes "deny $B icmp + udp $ALT_PORT" "$B" "$SL_UDP_PORT"
check "deny $B icmp: policy show lists both" "$(overrides)" "deny $B icmp;deny $B udp $ALT_PORT"
run_cmd sl remove "$B" icmp
check "remove $B icmp: exit status" "$RC" 0
run_cmd sl_tail remove "$B" udp "$ALT_PORT"
check "remove $B udp $ALT_PORT: exit status" "$RC" 0
passes "remove $B udp $ALT_PORT" "$B" "$ALT_PORT"
check "remove both: policy show lists no override" "$(overrides)" ""
sl_counters_reset
sl_icmp_send "$B" 3
check "remove both: the echo requests reach the world" "$(sl_count in "$B" icmp packets)" 3

# --- 4. policy load with no daemon: the pins alone ----------------------------------------

rc=0
sluice_stop || rc=$?
check "sluice run exits 0 on SIGTERM (again)" "$rc" 0
g=$(generation)
run_cmd sl_tail policy load "$p1"
check "no daemon: load P1: exit status" "$RC" 0
check "no daemon: load P1: generation + 1" "$(generation)" "$(plus 1 "$g")"
check "no daemon: policy show: source" "$(show | jq -r .source)" "$p1"
passes "no daemon, P1" "$A"
blocked "no daemon, P1" "$B"
passes "no daemon, P1" "$A6"
blocked "no daemon, P1" "$B6"

g=$(generation)
dest0=$(dest_snapshot)
show0=$(show)
expect_error "no daemon: load BAD" 1 "$bad_re" -- sl_tail policy load "$bad"
check "no daemon: load BAD: generation unchanged" "$(generation)" "$g"
unchanged "no daemon: load BAD: per-destination counters" "$dest0" "$(dest_snapshot)"
unchanged "no daemon: load BAD: policy show" "$show0" "$(show)"
passes "no daemon, after load BAD" "$A"
blocked "no daemon, after load BAD" "$B"

# Overrides need no daemon either (only their expiry does).
run_cmd sl deny "$A"
check "no daemon: deny $A: exit status" "$RC" 0
blocked "no daemon: deny $A, at once" "$A"
run_cmd sl remove "$A"
check "no daemon: remove $A: exit status" "$RC" 0
passes "no daemon: remove $A, at once" "$A"

# --- 5. usage errors: exit 2, one line, nothing changed ---------------------------------

g=$(generation)
show0=$(show)
expect_error "allow with no target" 2 'TARGET' -- sl allow
expect_error "deny with host bits set" 2 "198\\.51\\.100\\.1/24.*host bits" -- \
	sl deny 198.51.100.1/24
expect_error "allow tcp port 70000" 2 '70000' -- sl_tail allow 198.51.100.0/24 tcp 70000
expect_error "allow --for 5x" 2 "--for .*'5x'" -- sl_tail allow 198.51.100.0/24 tcp 443 --for 5x
expect_error "remove with --for" 2 'remove takes no --for' -- sl_tail remove "$A" --for 1h
check "usage errors: generation unchanged" "$(generation)" "$g"
unchanged "usage errors: policy show" "$show0" "$(show)"
passes "after usage errors" "$A"
blocked "after usage errors" "$B"

sl_finish

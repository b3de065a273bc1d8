#!/usr/bin/env bash
# e2e: events (issue 6). With `sluice run` writing events to a file and to stdout at once:
#  - new_destination: exactly one per distinct destination contacted (50 of them);
#  - attribution: a process of a user this test creates, in a cgroup named like a Slurm job
#    (.../job_4242/step_0), gives events with its uid, user, cgroup and job 4242;
#  - hostile names (quotes, backslash, control characters, non-UTF-8 bytes in an interface
#    and a cgroup name): every line still passes a strict JSON and UTF-8 parser;
#  - a flood of denied traffic to 1,000 destinations for 10 s, with a `sluice events
#    --follow` client stopped (SIGSTOP) throughout: emitted + suppressed + lost equals the
#    kernel's deny count exactly, deny events stay within the rate limit, the daemon goes on;
#  - the daemon itself SIGSTOPped for 10 s of a flood to 2,000 destinations: no denied
#    packet reaches the wire, the losses are reported after SIGCONT and the sum is exact;
#  - overrides made and removed while the daemon runs: the events name the rules in force.
# Suppressed repeats are reported on the next event of their (destination, type): after a
# flood, one more packet per destination past the interval brings them out.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/lib.sh
source "$here/lib.sh"
sl_init "${1:-}"
for t in useradd userdel findmnt curl; do
	command -v "$t" >/dev/null || sl_die "missing tool: $t (run scripts/install-deps.sh)"
done
sl_setup

FLOOD_SECONDS=10
MPORT=9753
EVENTS=$SL_TMP/events.json
policy=$SL_TMP/policy.conf
cat >"$policy" <<'EOF'
default deny
allow 198.51.100.0/24 name allowed-net
deny 2001:db8:d::/48 name flood-net
EOF

# --- a user, cgroups and an interface with hostile names, all this test's own ------------
CG2=$(findmnt -n -t cgroup2 -o TARGET | head -n1)
[ -n "$CG2" ] || sl_die "no cgroup2 mount"
CG_BASE=sluice-e2e-$SL_ID
CG_JOB=/$CG_BASE/job_4242/step_0
CG_HOSTILE=/$CG_BASE/job_4243/$'q"b\\c\x01\xff'
TEST_USER=sl-ev-$SL_ID
HOSTILE_IF=$'d"\\\x01\xfe'
cleanup_events() {
	local d
	for d in "$CG2$CG_HOSTILE" "$CG2$CG_JOB" "$CG2/$CG_BASE/job_4243" "$CG2/$CG_BASE/job_4242" \
		"$CG2/$CG_BASE"; do
		[ -d "$d" ] && rmdir "$d"
	done
	id "$TEST_USER" >/dev/null 2>&1 && userdel "$TEST_USER"
	[ -n "${FOLLOW_PID:-}" ] && kill -CONT "$FOLLOW_PID" 2>/dev/null
	[ -n "${FOLLOW_PID:-}" ] && sl_kill_wait "$FOLLOW_PID"
	return 0
}
SL_CLEANUP_HOOKS+=(cleanup_events)
useradd --system --no-create-home --no-user-group --shell /usr/sbin/nologin "$TEST_USER"
TEST_UID=$(id -u "$TEST_USER")
mkdir -p "$CG2$CG_JOB" "$CG2$CG_HOSTILE"
# A second veth pair (its peer in world, unaddressed), a route and a fixed neighbour:
# a datagram to 203.0.113.200 leaves through the hostile name without any ARP.
ip -n "$SL_NODE_NS" link add name "$HOSTILE_IF" type veth peer name "sl-h-$SL_ID" \
	netns "$SL_WORLD_NS"
ip -n "$SL_NODE_NS" link set dev "$HOSTILE_IF" up
ip -n "$SL_WORLD_NS" link set dev "sl-h-$SL_ID" up
ip -n "$SL_NODE_NS" route add 203.0.113.200/32 dev "$HOSTILE_IF"
ip -n "$SL_NODE_NS" neigh replace 203.0.113.200 lladdr 02:00:5e:10:00:03 nud permanent \
	dev "$HOSTILE_IF"

# The configuration refuses control characters in a name; a pattern reaches the interface.
sluice_start "$policy" --iface 'd"*' --events "$EVENTS" --events stdout \
	--event-interval 1s --metrics "127.0.0.1:$MPORT"
scrape() { in_node curl -sf -m 5 "http://127.0.0.1:$MPORT/metrics"; }
metric() { scrape | awk -v m="$1" '$1 == m { print $2 }'; }

# send_udp CGROUP UID DEST... — one datagram to each DEST, from a process running as UID
# in CGROUP (relative to the cgroup2 root; "" for the test's own). Only that subshell moves.
send_udp() {
	local cg=$1 uid=$2
	shift 2
	(
		[ -z "$cg" ] || echo "$BASHPID" >"$CG2$cg/cgroup.procs"
		# The system interpreter: root's PATH may lead to one the test user cannot run.
		exec ip netns exec "$SL_NODE_NS" setpriv --reuid="$uid" --regid=65534 --clear-groups \
			/usr/bin/python3 - "$SL_UDP_PORT" "$@" <<'PY'
import socket, sys
port = int(sys.argv[1])
for dst in sys.argv[2:]:
    s = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"sluice-events", (dst, port))
    s.close()
PY
	)
}

# flood PREFIX N SECONDS — UDP to PREFIX1..PREFIXn (hex) as fast as it can for SECONDS.
flood() {
	in_node python3 - "$SL_UDP_PORT" "$@" <<'PY'
import socket, sys, time
port, prefix, n, secs = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
dsts = [(prefix + "%x" % i, port) for i in range(1, n + 1)]
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
end = time.monotonic() + secs
while time.monotonic() < end:
    for d in dsts:
        try:
            s.sendto(b"x", d)
        except OSError:
            pass
PY
}
dests_of() { # PREFIX N
	local i
	for ((i = 1; i <= $2; i++)); do printf '%s%x\n' "$1" "$i"; done
}

# jq over every event line written so far (the file output).
events() { jq -c "$@" "$EVENTS"; }
settled() { # the daemon has written everything: the line count holds still for 2 s
	local a b
	a=$(wc -l <"$EVENTS")
	sleep 2
	b=$(wc -l <"$EVENTS")
	[ "$a" = "$b" ]
}

# --- new_destination: one per distinct destination ---------------------------------------
mapfile -t fifty < <(for i in $(seq 101 150); do echo "198.51.100.$i"; done)
send_udp "" 0 "${fifty[@]}"
send_udp "" 0 "${fifty[@]}"
wait_for 10 settled || true
check "50 destinations contacted twice: 50 new_destination events for them" \
	"$(events -r 'select(.type == "new_destination" and (.dst | startswith("198.51.100.1"))) | .dst' | wc -l)" 50
check "... each destination exactly once" \
	"$(events -r 'select(.type == "new_destination" and (.dst | startswith("198.51.100.1"))) | .dst' | sort -u | wc -l)" 50

# --- attribution -------------------------------------------------------------------------
send_udp "$CG_JOB" "$TEST_UID" 203.0.113.10
send_udp "$CG_HOSTILE" "$TEST_UID" 203.0.113.11
send_udp "" 0 203.0.113.200
wait_for 10 settled || true
attrib=$(events 'select(.type == "deny" and .dst == "203.0.113.10")')
check "deny event of the job's process carries its uid" "$(jq -r .uid <<<"$attrib")" "$TEST_UID"
check "... its user name" "$(jq -r .user <<<"$attrib")" "$TEST_USER"
check "... its cgroup path" "$(jq -r .cgroup <<<"$attrib")" "$CG_JOB"
check "... the Slurm job id from the path" "$(jq -r .job <<<"$attrib")" 4242
check "... the rule, interface and port" "$(jq -r '[.rule, .iface, .proto, .dport] | join(" ")' <<<"$attrib")" \
	"default $SL_NODE_IF udp $SL_UDP_PORT"

# Overrides changed in place by the running daemon: the events name the new rules (the
# daemon extends its rule names instead of rereading them; a removed override's id stays).
sl deny 203.0.113.12 >/dev/null 2>&1
sl deny 203.0.113.13 --name blocked-13 >/dev/null 2>&1
sl remove 203.0.113.12 >/dev/null 2>&1
sl deny 203.0.113.14 >/dev/null 2>&1
send_udp "" 0 203.0.113.13 203.0.113.14 203.0.113.12
wait_for 10 settled || true
rule_of() { events -r --arg d "$1" 'select(.type == "deny" and .dst == $d) | .rule'; }
check "deny event after an in-place override names it (--name)" "$(rule_of 203.0.113.13)" \
	blocked-13
check "... after a remove and another override, the newest one by its name" \
	"$(rule_of 203.0.113.14)" "override:deny:203.0.113.14"
check "... the removed override's address is denied by the default again" \
	"$(rule_of 203.0.113.12)" default

# Every line, hostile names included, is strict JSON in strict UTF-8; the names arrive
# with each invalid byte replaced by U+FFFD and everything else as it is.
strict=$(python3 - "$EVENTS" "$CG_HOSTILE" "$HOSTILE_IF" <<'PY'
import json, os, sys
def no_dupes(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate key")
    return dict(pairs)
bad, lines, cg_ok, if_ok = 0, 0, False, False
want_cg = os.fsencode(sys.argv[2]).decode("utf-8", "replace")
want_if = os.fsencode(sys.argv[3]).decode("utf-8", "replace")
with open(sys.argv[1], "rb") as f:
    for raw in f:
        lines += 1
        try:
            ev = json.loads(raw.decode("utf-8"), strict=True, object_pairs_hook=no_dupes)
        except ValueError:
            bad += 1
            continue
        cg_ok |= ev.get("cgroup") == want_cg and ev.get("job") == 4243
        if_ok |= ev.get("iface") == want_if and ev.get("dst") == "203.0.113.200"
print(bad, lines > 0, cg_ok, if_ok)
PY
)
check "every event line passes a strict JSON parser; hostile cgroup and interface names kept" \
	"$strict" "0 True True True"

# --- flood with a stopped `sluice events --follow` client --------------------------------
# ip netns exec execs sluice, so $! is the client itself (a shell function would fork).
ip netns exec "$SL_NODE_NS" "$SLUICE" events --follow --json --pin-dir "$SL_PIN_DIR" \
	--state-dir "$SL_STATE_DIR" >"$SL_TMP/follow.json" 2>&1 &
FOLLOW_PID=$!
wait_for 10 grep -q '"policy"' "$SL_TMP/follow.json" || sl_die "sluice events --follow printed nothing"
kill -STOP "$FOLLOW_PID"

start=$SECONDS
flood 2001:db8:d:: 1000 "$FLOOD_SECONDS"
sleep 1.2 # past the interval: the next packet to each destination reports its repeats
mapfile -t thousand < <(dests_of 2001:db8:d:: 1000)
send_udp "" 0 "${thousand[@]}"
span=$((SECONDS - start + 1))
wait_for 20 settled || true

kernel_deny=$(sl stats --json | jq '.verdicts.deny.packets')
emitted=$(events -s '[.[] | select(.type == "deny")] | length')
suppressed=$(events -s '[.[] | select(.type == "deny") | .suppressed] | add')
lost=$(events -s '[.[] | select(.type == "lost" and .reason == "deny") | .count] | add // 0')
sl_log "flood: kernel denied $kernel_deny; events $emitted + suppressed $suppressed + lost $lost"
check_ge "the flood was a flood (denied packets)" "$kernel_deny" 100000
check "emitted + suppressed + lost == the kernel's deny count" \
	"$((emitted + suppressed + lost))" "$kernel_deny"
flood_events=$(events -s '[.[] | select(.type == "deny" and (.dst | startswith("2001:db8:d::")))] | length')
check "deny events to the 1,000 destinations within 1/s each over ${span}s (+1 each)" \
	"$((flood_events <= 1000 * span + 1000))" 1
check_ge "... and the rate limit let events through (one per destination at least)" "$flood_events" 1000
check "the stopped client did not stop the daemon" "$(kill -0 "$SL_SLUICE_PID" && echo alive)" alive
check_ge "lines the stopped client missed are counted" "$(metric sluice_events_dropped_total)" 1
check "stdout got the same deny events as the file" \
	"$(grep -c '"type":"deny"' "$SL_RUN_LOG")" "$(grep -c '"type":"deny"' "$EVENTS")"
kill -CONT "$FOLLOW_PID"
kill -TERM "$FOLLOW_PID"
wait "$FOLLOW_PID" || true
FOLLOW_PID=

# --- the daemon stopped for 10 s of a flood ----------------------------------------------
sl_nft_load "$SL_WORLD_NS" "table netdev sl_ev" \
	"type filter hook ingress device \"$SL_WORLD_IF\" priority 0; policy accept;" \
	"counter flood_in {}
chain_rule ip6 daddr 2001:db8:d::/48 counter name flood_in"
flood 2001:db8:d:1:: 2000 12 &
flood_pid=$!
sleep 1
kill -STOP "$SL_SLUICE_PID"
sleep 10
kill -CONT "$SL_SLUICE_PID"
wait "$flood_pid"
sleep 1.2
mapfile -t twothousand < <(dests_of 2001:db8:d:1:: 2000)
send_udp "" 0 "${twothousand[@]}"
wait_for 30 settled || true

arrived=$(in_world nft -j list counter netdev sl_ev flood_in | jq '[.nftables[] | select(.counter) | .counter.packets] | first')
check "no denied packet reached the wire while the daemon was stopped" "$arrived" 0
kernel_deny=$(sl stats --json | jq '.verdicts.deny.packets')
emitted=$(events -s '[.[] | select(.type == "deny")] | length')
suppressed=$(events -s '[.[] | select(.type == "deny") | .suppressed] | add')
lost=$(events -s '[.[] | select(.type == "lost" and .reason == "deny") | .count] | add // 0')
sl_log "stopped daemon: kernel denied $kernel_deny; events $emitted + suppressed $suppressed + lost $lost"
check_ge "the ring buffer overflowed while the daemon was stopped (lost events reported)" "$lost" 1
check "emitted + suppressed + lost == the kernel's deny count, after SIGCONT" \
	"$((emitted + suppressed + lost))" "$kernel_deny"
all_lost=$(events -s '[.[] | select(.type == "lost") | .count] | add // 0')
check "sluice_events_lost_total equals the lost events' counts" \
	"$(metric sluice_events_lost_total)" "$all_lost"
check "sluice stats shows the same losses" "$(sl stats --json | jq .events_lost)" "$all_lost"
check "sluice_events_total{type=\"deny\"} equals the deny events written" \
	"$(metric 'sluice_events_total{type="deny"}')" "$emitted"
check "the daemon recovered by itself: the last flush's events were written" \
	"$(events -s '[.[] | select(.type == "deny" and (.dst | startswith("2001:db8:d:1::")))] | length >= 2000')" true

# `sluice events` without --follow prints the recent events and ends; text by default.
recent=$(timeout 10 "$SLUICE" events --pin-dir "$SL_PIN_DIR" --state-dir "$SL_STATE_DIR" | tail -n 1)
check_match "sluice events prints recent events as text" "$recent" \
	'^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z [a-z_]+'

sluice_stop
sl_finish

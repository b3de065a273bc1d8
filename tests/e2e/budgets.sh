#!/usr/bin/env bash
# e2e: volume budgets (issue 8). Real TCP transfers between the namespaces, counted by the
# receiving application (the ground truth), against:
#  1. `budget DEST 20MB per 1h block`: a 100 MB transfer stops after about 20 MB (receiver
#     gets at most the budget plus the documented slack), exactly one budget event, another
#     destination unaffected, `sluice budget reset` lets traffic flow again;
#  2. the same with `alert`: the transfer completes, one event, the metric increments;
#  3. replies: a peer pulling 50 MB over a connection it opened to the node trips a 20 MB
#     budget on that peer (reply bytes count);
#  4. per user: two test users (created here, removed on exit) send to one destination;
#     `budget user 10MB per 1h block` stops only the one who exceeded, and `sluice users`
#     shows both with byte counts within 1% of what crossed the wire;
#  5. a 5 s window: once over, usage restarts and the block lifts.
#
# usage: budgets.sh PATH/TO/sluice   (root; builds its own namespaces, see lib.sh)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/lib.sh
source "$here/lib.sh"
sl_init "${1:-}"
command -v curl >/dev/null || sl_die "missing tool: curl (run scripts/install-deps.sh)"
sl_setup_net
sl_mount_bpffs

EVENTS=$SL_TMP/events.json
MPORT=9753
PORT=5301
MB=1000000
# Slack (docs/design.md, "Budgets"): the packet that reaches the limit passes whole, and so
# may one packet per other CPU that read the usage before that add landed: at most one
# 64 KiB (GSO) packet per CPU beyond the limit.
SLACK=$(($(nproc) * 65536))

# A small TCP sender/receiver: the application's byte counts are what the test trusts.
XFER=$SL_TMP/xfer.py
cat >"$XFER" <<'EOF'
import os, socket, sys

mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
chunk = b"x" * 65536
idle = float(os.environ.get("XFER_IDLE", "3"))  # seconds without progress: blocked

def drain(conn, out):
    """Count bytes until EOF, or until idle seconds without any (a blocked sender)."""
    conn.settimeout(idle)
    total = 0
    try:
        while True:
            data = conn.recv(1 << 20)
            if not data:
                break
            total += len(data)
    except socket.timeout:
        pass
    open(out, "w").write("%d\n" % total)

def pour(conn, n):
    """Send n bytes, or as many as leave within idle seconds of the last progress."""
    conn.settimeout(idle)
    sent = 0
    try:
        while sent < n:
            sent += conn.send(chunk[: min(len(chunk), n - sent)])
    except (socket.timeout, OSError):
        pass
    return sent

if mode in ("recv", "serve"):  # listen; recv: count what arrives; serve: send argv[4] bytes
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(1)
    conn, _ = s.accept()
    if mode == "recv":
        drain(conn, sys.argv[4])
    else:
        pour(conn, int(sys.argv[4]))
    conn.close()
elif mode == "send":  # connect and send argv[4] bytes; print how many left
    c = socket.create_connection((host, port), timeout=5)
    print(pour(c, int(sys.argv[4])))
    c.close()
elif mode == "pull":  # connect and count what the server sends into argv[4]
    c = socket.create_connection((host, port), timeout=5)
    drain(c, sys.argv[4])
EOF

listening() { # NS PORT
	ip netns exec "$1" ss -Hltn "sport = :$2" | grep -q .
}

# transfer DEST BYTES — send BYTES from the node to a receiver at DEST in world; prints
# what the receiver got.
transfer() {
	local dest=$1 bytes=$2 out=$SL_TMP/recv.$RANDOM
	in_world python3 "$XFER" recv "$dest" "$PORT" "$out" &
	local rpid=$!
	wait_for 10 listening "$SL_WORLD_NS" "$PORT" || sl_die "receiver at $dest did not start"
	in_node python3 "$XFER" send "$dest" "$PORT" "$bytes" >/dev/null || true
	wait "$rpid" || true
	cat "$out"
}

budget_events() { # BUDGET-NAME — budget events of that budget, one per line
	jq -c --arg b "$1" 'select(.type == "budget" and .budget == $b)' "$EVENTS"
}

policy=$SL_TMP/policy.conf
cat >"$policy" <<EOF
mode enforce
default deny
allow 198.51.100.0/24
allow 203.0.113.0/24
budget 198.51.100.10 20MB per 1h block name dest-block
budget 203.0.113.10 20MB per 1h alert name dest-alert
budget $SL_WORLD_V4 20MB per 1h block name reply-block
budget 203.0.113.77 1MB per 5s block name short-window
EOF
sluice_start "$policy" --events "$EVENTS" --metrics "127.0.0.1:$MPORT" ${BUDGETS_VERBOSE:+-v}
scrape() { in_node curl -sf -m 5 "http://127.0.0.1:$MPORT/metrics"; }

# --- 1. block ----------------------------------------------------------------------------
got=$(transfer 198.51.100.10 $((100 * MB)))
sl_log "block: receiver got $got of 100 MB; budget 20 MB, slack $SLACK"
check_ge "block: the transfer got going (>= 15 MB of payload before the block)" "$got" $((15 * MB))
SL_CHECKS=$((SL_CHECKS + 1))
if [ "$got" -le $((20 * MB + SLACK)) ]; then
	printf 'ok %d - block: receiver got at most the budget plus slack (%s <= %s)\n' \
		"$SL_CHECKS" "$got" $((20 * MB + SLACK))
else
	printf 'not ok %d - block: receiver got %s, more than %s\n' "$SL_CHECKS" "$got" \
		$((20 * MB + SLACK))
	SL_FAILURES=$((SL_FAILURES + 1))
fi
wait_for 5 sh -c "grep -q '\"budget\": *\"dest-block\"\\|\"budget\":\"dest-block\"' '$EVENTS'" || true
check "block: exactly one budget event" "$(budget_events dest-block | wc -l)" 1
ev=$(budget_events dest-block | head -n 1)
check "block: the event names the destination" "$(jq -r .dst <<<"$ev")" 198.51.100.10
check_ge "block: the event carries the bytes so far" "$(jq -r .bytes <<<"$ev")" $((20 * MB))
check "block: the crossing packet itself was allowed" "$(jq -r .verdict <<<"$ev")" allow
check_ge "block: later packets were dropped with reason budget" \
	"$(sl stats --json | jq '[.. | objects | select(.reason? == "budget") | .packets // 0] | add // 0')" 1
show=$(sl budget show --json)
check "budget show: dest-block is blocked for 198.51.100.10" \
	"$(jq -r '.[] | select(.name == "dest-block") | .keys[] | select(.dst == "198.51.100.10") | .state' <<<"$show")" \
	blocked
check "budget show: crossed once" "$(jq -r '.[] | select(.name == "dest-block") | .crossed' <<<"$show")" 1

got=$(transfer 198.51.100.200 $((5 * MB)))
check "block: another destination is unaffected (5 MB arrive whole)" "$got" $((5 * MB))

out=$(sl budget reset 198.51.100.10)
check "budget reset 198.51.100.10 clears its record" "$out" "cleared 1 usage record"
got=$(transfer 198.51.100.10 $((5 * MB)))
check "after the reset traffic flows again (5 MB arrive whole)" "$got" $((5 * MB))
check "after the reset: no new budget event" "$(budget_events dest-block | wc -l)" 1

# --- 2. alert ----------------------------------------------------------------------------
got=$(transfer 203.0.113.10 $((30 * MB)))
check "alert: the 30 MB transfer completes" "$got" $((30 * MB))
wait_for 5 sh -c "jq -e 'select(.budget == \"dest-alert\")' '$EVENTS' >/dev/null" || true
check "alert: exactly one budget event" "$(budget_events dest-alert | wc -l)" 1
check "alert: the metric counts the crossing" \
	"$(scrape | awk '$1 == "sluice_budget_exceeded_total{budget=\"dest-alert\"}" { print $2 }')" 1
check "alert: the block budget's metric too" \
	"$(scrape | awk '$1 == "sluice_budget_exceeded_total{budget=\"dest-block\"}" { print $2 }')" 1
# A reload installs the policy afresh, in the other half of the kernel's crossing counters:
# the daemon folds the old half in, so the metric keeps counting (no counter reset).
sl policy load "$policy" >/dev/null
check "after a reload the metric keeps its crossings (dest-alert)" \
	"$(scrape | awk '$1 == "sluice_budget_exceeded_total{budget=\"dest-alert\"}" { print $2 }')" 1
sl policy load "$policy" >/dev/null
check "and after a second reload (dest-block)" \
	"$(scrape | awk '$1 == "sluice_budget_exceeded_total{budget=\"dest-block\"}" { print $2 }')" 1

# --- 3. replies --------------------------------------------------------------------------
# The world opens a connection to a server on the node and pulls 50 MB: policy denies the
# world's address, so every byte the node sends passes as a reply, and counts.
out=$SL_TMP/pulled
in_node python3 "$XFER" serve "$SL_NODE_V4" "$PORT" $((50 * MB)) &
spid=$!
wait_for 10 listening "$SL_NODE_NS" "$PORT" || sl_die "server on the node did not start"
in_world python3 "$XFER" pull "$SL_NODE_V4" "$PORT" "$out" || true
wait "$spid" || true
got=$(cat "$out")
sl_log "replies: the peer pulled $got of 50 MB"
check_ge "replies: the pull got going (>= 15 MB)" "$got" $((15 * MB))
check_ge "replies: the pull stopped at the budget plus slack" $((20 * MB + SLACK)) "$got"
check "replies: one budget event for the peer" "$(budget_events reply-block | wc -l)" 1
check "replies: the crossing packet was a reply" \
	"$(budget_events reply-block | jq -r .verdict)" reply

# --- 5. window roll-over -----------------------------------------------------------------
# Given up after 1 s without progress, so that the state is read well inside the 5 s window
# that the transfer's first packet started.
got=$(XFER_IDLE=1 transfer 203.0.113.77 $((3 * MB)))
check_ge "5 s window: blocked at the budget plus slack" $((1 * MB + SLACK)) "$got"
check "5 s window: blocked" \
	"$(sl budget show --json | jq -r '.[] | select(.name == "short-window") | .keys[0].state')" \
	blocked
# The window started at the first packet; a few seconds later it is over: the block lifts
# (expired, or ok when a late retransmission of the closed connection started a new one).
sleep 6
check_match "5 s window: no longer blocked once the window is over" \
	"$(sl budget show --json | jq -r '.[] | select(.name == "short-window") | .keys[0].state')" \
	'^(expired|ok)$'
got=$(transfer 203.0.113.77 $((500 * 1000)))
check "5 s window: the next window lets 500 kB through" "$got" $((500 * 1000))
check "5 s window: usage restarted in the new window" \
	"$(sl budget show --json | jq -r '.[] | select(.name == "short-window") | .keys[0].state')" ok

# --- 4. per user -------------------------------------------------------------------------
USER_A=slb-a-$SL_ID
USER_B=slb-b-$SL_ID
users_cleanup() {
	userdel "$USER_A" 2>/dev/null || true
	userdel "$USER_B" 2>/dev/null || true
}
SL_CLEANUP_HOOKS+=(users_cleanup)
useradd -M -N -r -s /usr/sbin/nologin "$USER_A"
useradd -M -N -r -s /usr/sbin/nologin "$USER_B"
# The users run the sender from here: readable by them, the rest of SL_TMP stays closed.
chmod 711 "$SL_TMP"
chmod 644 "$XFER"
sl_counters_setup

cat >"$policy" <<EOF
mode enforce
default deny
allow 198.51.100.0/24
budget user 10MB per 1h block name per-user
EOF
sl policy load "$policy" >/dev/null

# transfer_as USER DEST BYTES — like transfer, the sender running as USER; prints what the
# receiver got. The wire counters are reset first (wire_bytes reads them after).
transfer_as() {
	local user=$1 dest=$2 bytes=$3 out=$SL_TMP/recv.$RANDOM
	sl_counters_reset
	in_world python3 "$XFER" recv "$dest" "$PORT" "$out" &
	local rpid=$!
	wait_for 10 listening "$SL_WORLD_NS" "$PORT" || sl_die "receiver at $dest did not start"
	in_node setpriv --reuid="$user" --regid="$(id -g "$user")" --clear-groups \
		/usr/bin/python3 "$XFER" send "$dest" "$PORT" "$bytes" >/dev/null || true
	wait "$rpid" || true
	sleep 0.3 # the last FIN
	cat "$out"
}
# What crossed the wire to DEST since the last reset, as sluice counts bytes (L2 frames).
wire_bytes() {
	echo $(($(sl_count in "$1" tcp bytes) + 14 * $(sl_count in "$1" tcp packets)))
}
user_bytes() { # USER
	sl users --json | jq -r --arg u "$1" '[.[] | select(.user == $u) | .bytes] | add // 0'
}
# within_1pct NAME ACTUAL EXPECTED
within_1pct() {
	local diff=$(($2 - $3))
	[ "$diff" -lt 0 ] && diff=$((-diff))
	SL_CHECKS=$((SL_CHECKS + 1))
	if [ "$3" -gt 0 ] && [ $((diff * 100)) -le "$3" ]; then
		printf 'ok %d - %s (%s vs %s)\n' "$SL_CHECKS" "$1" "$2" "$3"
	else
		printf 'not ok %d - %s: got %s, want %s +- 1%%\n' "$SL_CHECKS" "$1" "$2" "$3"
		SL_FAILURES=$((SL_FAILURES + 1))
	fi
}

got_a=$(transfer_as "$USER_A" 198.51.100.10 $((15 * MB)))
wire_a=$(wire_bytes 198.51.100.10)
got_b=$(transfer_as "$USER_B" 198.51.100.10 $((5 * MB)))
wire_b=$(wire_bytes 198.51.100.10)
sl_log "per user: $USER_A got $got_a of 15 MB ($wire_a wire bytes), $USER_B got $got_b of 5 MB"
check_ge "per user: $USER_A stopped at the user budget plus slack" $((10 * MB + SLACK)) "$got_a"
check_ge "per user: $USER_A got going (>= 8 MB)" "$got_a" $((8 * MB))
check "per user: $USER_B, under its own budget, is not stopped (5 MB whole)" "$got_b" $((5 * MB))
ev=$(jq -c 'select(.type == "budget" and .budget == "per-user")' "$EVENTS")
check "per user: one budget event" "$(printf '%s\n' "$ev" | grep -c .)" 1
check "per user: the event names the user" "$(jq -r .user <<<"$ev" | head -n 1)" "$USER_A"
within_1pct "sluice users: $USER_A's bytes match the wire" "$(user_bytes "$USER_A")" "$wire_a"
within_1pct "sluice users: $USER_B's bytes match the wire" "$(user_bytes "$USER_B")" "$wire_b"
check "sluice users: both listed by name" \
	"$(sl users --json | jq -r --arg a "$USER_A" --arg b "$USER_B" \
		'[.[] | select(.user == $a or .user == $b)] | length')" 2
check_ge "metric: sluice_user_bytes_total for $USER_A" \
	"$(scrape | awk -v l="sluice_user_bytes_total{user=\"$USER_A\"}" '$1 == l { print $2 }')" \
	$((8 * MB))
out=$(sl budget reset "$USER_A")
check "budget reset USER clears the user's record" "$out" "cleared 1 usage record"

check "the daemon is still running" "$(kill -0 "$SL_SLUICE_PID" && echo yes)" yes
sl_finish

#!/usr/bin/env bash
# Acceptance test: enforcement never lapses when the daemon dies. A steady UDP stream runs
# to an allowed and a denied destination while `sluice run` is SIGKILLed and started again
# ten times. The world side must count zero denied datagrams; the allowed stream keeps
# arriving (the fraction is reported); sluice's per-destination counters only ever grow
# (a restart adopts the pinned maps); and the tc links are the same kernel objects before
# and after (a restart swaps programs on them, it never detaches).
#
# usage: crash_restart.sh PATH/TO/sluice   (root; builds its own namespaces, see lib.sh)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/lib.sh
source "$here/lib.sh"
sl_init "${1:-}"
sl_setup

RESTARTS=10
ALLOWED=198.51.100.10
DENIED=203.0.113.10

policy=$SL_TMP/policy.conf
cat >"$policy" <<EOF
mode enforce
default deny
allow $ALLOWED
EOF

# link_ids — the kernel ids of this run's pinned links, "HOOK=ID ..." sorted.
link_ids() {
	local p
	for p in "$SL_PIN_DIR"/links/*; do
		printf '%s=%s\n' "$(basename "$p")" "$(bpftool -j link show pinned "$p" | jq -r .id)"
	done | sort | tr '\n' ' '
}
# packets DEST — sluice's count for DEST, every verdict.
packets() {
	sl dest --json | jq -r --arg d "$1" \
		'[.[] | select(.destination == $d) | .by_verdict[] | .packets] | add // 0'
}

sluice_start "$policy" --metrics off --events off
links_before=$(link_ids)
check_match "links pinned at start" "$links_before" "tc_egress_[0-9]+=[0-9]+ tc_ingress_"

sl_counters_reset
sl_stream_start "$ALLOWED" "$DENIED"
sleep 0.5
prev_allowed=$(packets "$ALLOWED")
prev_denied=$(packets "$DENIED")
grew=0
for i in $(seq 1 "$RESTARTS"); do
	kill -KILL "$SL_SLUICE_PID"
	wait "$SL_SLUICE_PID" 2>/dev/null || true
	SL_SLUICE_PID=
	sleep 0.2 # no daemon: the pinned programs decide alone
	sluice_start "$policy" --metrics off --events off
	sleep 0.3
	now_allowed=$(packets "$ALLOWED")
	now_denied=$(packets "$DENIED")
	if [ "$now_allowed" -ge "$prev_allowed" ] && [ "$now_denied" -ge "$prev_denied" ] &&
		[ "$now_allowed" -gt 0 ]; then
		grew=$((grew + 1))
	else
		sl_log "restart $i: counters went from $prev_allowed/$prev_denied to $now_allowed/$now_denied"
	fi
	prev_allowed=$now_allowed
	prev_denied=$now_denied
done
sleep 0.3
sl_stream_stop

sent_allowed=$(sl_stream_sent "$ALLOWED")
sent_denied=$(sl_stream_sent "$DENIED")
got_allowed=$(sl_count in "$ALLOWED" udp packets)
got_denied=$(sl_count in "$DENIED" udp packets)
fraction=$(awk -v g="$got_allowed" -v s="$sent_allowed" 'BEGIN { printf "%.4f", s ? g / s : 0 }')
sl_log "sent $sent_allowed allowed and $sent_denied denied datagrams over $RESTARTS SIGKILL restarts"
sl_log "allowed delivery: $got_allowed of $sent_allowed ($fraction)"
check_ge "the stream ran (denied datagrams sent)" "$sent_denied" 1000
check "zero denied datagrams reached the world" "$got_denied" 0
check_ge "allowed datagrams kept arriving (at least 90%)" "$got_allowed" $((sent_allowed * 9 / 10))
check "per-destination counters only grew, at every restart" "$grew" "$RESTARTS"
check_ge "sluice counted the denied stream" "$(sl_dest_count "$DENIED" deny packets)" \
	$((sent_denied * 9 / 10))
check "the same links after $RESTARTS restarts" "$(link_ids)" "$links_before"

sl_finish

#!/usr/bin/env bash
# Acceptance test of an upgrade: a release runs, then the next one (sluice-next: the same
# sources with a tc egress program that differs by one instruction, see CMakeLists.txt) is
# started over it the way systemd restarts a service (SIGTERM, then start), and the old one
# is started again (a downgrade). Meanwhile a UDP stream runs to an allowed and a denied
# destination and hook_watch asks the kernel every millisecond which programs are attached.
# The hooks are never seen empty, the new program (another tag) replaces the old one on the
# same link, and zero denied datagrams reach the world. Last, a version whose map layout
# differs is refused with a message naming the map, and what is in force stays.
#
# usage: upgrade.sh PATH/TO/sluice PATH/TO/sluice-next PATH/TO/hook_watch PATH/TO/plant_map
#        (root)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/lib.sh
source "$here/lib.sh"
sl_init "${1:-}"
[ -x "${2:-}" ] && [ -x "${3:-}" ] && [ -x "${4:-}" ] ||
	sl_die "usage: $0 SLUICE SLUICE_NEXT HOOK_WATCH PLANT_MAP"
RELEASE=$SLUICE
NEXT=$(readlink -f "$2")
WATCH=$(readlink -f "$3")
PLANT_MAP=$(readlink -f "$4")
sl_setup

ALLOWED=198.51.100.10
DENIED=203.0.113.10
policy=$SL_TMP/policy.conf
cat >"$policy" <<EOF
mode enforce
default deny
allow $ALLOWED
EOF

# prog_of HOOK — "ID TAG" of the program on this run's pinned HOOK link.
prog_of() {
	local id
	id=$(bpftool -j link show pinned "$SL_PIN_DIR/links/${1}_$IFINDEX" | jq -r .prog_id)
	printf '%s %s' "$id" "$(bpftool -j prog show id "$id" | jq -r .tag)"
}
link_of() { bpftool -j link show pinned "$SL_PIN_DIR/links/${1}_$IFINDEX" | jq -r .id; }
# run_release BINARY — stop the daemon running (SIGTERM, as systemctl restart), start BINARY.
run_release() {
	sluice_stop
	SLUICE=$1
	sluice_start "$policy" --metrics off --events off
	sleep 0.3
}

sluice_start "$policy" --metrics off --events off
IFINDEX=$(in_node cat "/sys/class/net/$SL_NODE_IF/ifindex")
before=$(prog_of tc_egress)
link=$(link_of tc_egress)

sl_counters_reset
sl_stream_start "$ALLOWED" "$DENIED"
ip netns exec "$SL_NODE_NS" "$WATCH" "$SL_NODE_IF" >"$SL_TMP/watch.json" 2>"$SL_TMP/watch.err" &
WATCH_PID=$!
stop_watch() { [ -z "${WATCH_PID:-}" ] || sl_kill_wait "$WATCH_PID"; }
SL_CLEANUP_HOOKS+=(stop_watch)
wait_for 5 grep -q watching "$SL_TMP/watch.err" || sl_die "hook_watch did not start"
sleep 0.3

sl_log "upgrade: the next release over the running one"
run_release "$NEXT"
upgraded=$(prog_of tc_egress)
sl_log "downgrade: the release again"
run_release "$RELEASE"
downgraded=$(prog_of tc_egress)

kill -TERM "$WATCH_PID"
wait "$WATCH_PID" || sl_die "hook_watch failed: $(cat "$SL_TMP/watch.err")"
WATCH_PID=
sl_stream_stop
watch=$(cat "$SL_TMP/watch.json")
sl_log "hook_watch: $watch"
sl_log "programs on tc egress: release $before, next $upgraded, release again $downgraded"

check_ge "the attached programs were polled (every ms)" "$(jq .polls <<<"$watch")" 500
check "tc egress never seen empty" "$(jq .tc_egress.empty <<<"$watch")" 0
check "tc ingress never seen empty" "$(jq .tc_ingress.empty <<<"$watch")" 0
check "tc egress ran three programs in turn: release, next, release" \
	"$(jq -r '.tc_egress.progs | map(tostring) | join(" ")' <<<"$watch")" \
	"${before%% *} ${upgraded%% *} ${downgraded%% *}"
check "the next release's program differs (another tag)" \
	"$([ "${before#* }" != "${upgraded#* }" ] && echo differs)" differs
check "the release's own program again after the downgrade (same tag)" "${downgraded#* }" \
	"${before#* }"
check "the same link throughout" "$(link_of tc_egress)" "$link"
sent_allowed=$(sl_stream_sent "$ALLOWED")
got_allowed=$(sl_count in "$ALLOWED" udp packets)
sl_log "allowed delivery: $got_allowed of $sent_allowed"
check_ge "the stream ran (denied datagrams sent)" "$(sl_stream_sent "$DENIED")" 500
check "zero denied datagrams reached the world" "$(sl_count in "$DENIED" udp packets)" 0
check_ge "allowed datagrams kept arriving (at least 90%)" "$got_allowed" $((sent_allowed * 9 / 10))

sl_log "a version whose map layout differs is refused, and what is in force stays"
sluice_stop
# Same sizes, another field: the budget sets as the previous version laid them out (pad[3]
# where this one has a block flag). Only the maps' BTF tells: refused, naming the field.
sets=$SL_PIN_DIR/maps/sluice_budget_sets
mv "$sets" "${sets}_ours"
"$PLANT_MAP" "$sets" "$(bpftool -j map show pinned "${sets}_ours" | jq .max_entries)"
in_node "$SLUICE" run --iface "$SL_NODE_IF" --policy "$policy" --metrics off --events off \
	--pin-dir "$SL_PIN_DIR" --state-dir "$SL_STATE_DIR" >"$SL_TMP/refused-btf.log" 2>&1 &&
	rc=0 || rc=$?
check "sluice run refuses a map whose fields changed (same sizes)" "$rc" 1
sl_log "$(grep error "$SL_TMP/refused-btf.log")"
check_match "it names the map and the field" "$(grep error "$SL_TMP/refused-btf.log")" \
	"pinned map .*/sluice_budget_sets has another layout .*member 'pad' at byte 5 is 'block'"
check "the program in force is untouched" "$(prog_of tc_egress)" "$downgraded"
rm "$sets"
mv "${sets}_ours" "$sets"
# The pin of one map replaced by one of another layout (value size), as another version's.
flows=$SL_PIN_DIR/maps/sluice_flows
key_size=$(bpftool -j map show pinned "$flows" | jq .bytes_key)
rm "$flows"
bpftool map create "$flows" type lru_hash key "$key_size" value 4 entries 8 name sluice_flows
in_node "$SLUICE" run --iface "$SL_NODE_IF" --policy "$policy" --metrics off --events off \
	--pin-dir "$SL_PIN_DIR" --state-dir "$SL_STATE_DIR" >"$SL_TMP/refused.log" 2>&1 &&
	rc=0 || rc=$?
check "sluice run refuses the foreign layout" "$rc" 1
check_match "it names the map and what differs" "$(grep error "$SL_TMP/refused.log")" \
	"pinned map .*/sluice_flows has another layout .*value size 4, this build: [0-9]+"
check "the program in force is untouched" "$(prog_of tc_egress)" "$downgraded"
check "still denied" "$(sl_ping "$DENIED" 2)" 0

sl_finish

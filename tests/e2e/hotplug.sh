#!/usr/bin/env bash
# Interface hotplug (rtnetlink notifications, no polling): an interface matching a pattern
# that appears later is attached; the node's veth deleted and created again (a new
# ifindex) is enforced again, its old pin removed; a rename is followed (the attachment
# belongs to the device); down/up changes nothing. The time from an interface's return to
# its attachment is measured and printed (sanity bound only: no timing assertion).
#
# usage: hotplug.sh PATH/TO/sluice   (root; builds its own namespaces, see lib.sh)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/lib.sh
source "$here/lib.sh"
sl_init "${1:-}"
sl_setup

SANITY_MS=5000 # far above the 500 ms target: a bound for a broken build, not a benchmark

policy=$SL_TMP/policy.conf
printf 'mode enforce\ndefault deny\nallow 198.51.100.0/24\n' >"$policy"
conf=$SL_TMP/sluice.conf
# Interfaces in the node namespace are this test's own: plain names cannot collide.
cat >"$conf" <<EOF
interface sl-n-*
interface hp*
policy $policy
EOF

ifindex_of() { in_node cat "/sys/class/net/$1/ifindex"; }
pins() { find "$SL_PIN_DIR/links" -mindepth 1 -printf '%f\n' | sort | tr '\n' ' ' | sed 's/ $//'; }
# The link pins of both tc hooks on the interfaces with these ifindexes, as pins() lists them.
hook_pins() { printf 'tc_egress_%s\ntc_ingress_%s\n' $(for i in "$@"; do echo "$i $i"; done) | sort | tr '\n' ' ' | sed 's/ $//'; }
pin_of() { printf '%s/links/tc_egress_%s' "$SL_PIN_DIR" "$1"; }
now_ns() { date +%s%N; }
jqs() { sl status --json | jq -c -r "$1"; }

# new_pin_ms T0_NS — wait until a link pin appears that is not there now; print the ms
# from T0_NS to when it was seen (polled from the root namespace every 2 ms, so the
# measure does not wait for the commands that configure the interface).
new_pin_ms() {
	local before deadline=$((SECONDS + 10))
	before=$(pins)
	while [ "$(pins)" = "$before" ]; do
		[ $SECONDS -lt $deadline ] || {
			echo timeout
			return
		}
		sleep 0.002
	done
	echo $((($(now_ns) - $1) / 1000000))
}

# measure_attach COMMAND... — run COMMAND (which creates an interface sluice should attach
# to); print the ms from just before it to the new interface's pin.
measure_attach() {
	local t0 poller
	t0=$(now_ns)
	new_pin_ms "$t0" >"$SL_TMP/attach_ms" &
	poller=$!
	"$@"
	wait "$poller"
	cat "$SL_TMP/attach_ms"
}

# enforced DESC — the policy holds on the node's veth: denied dropped, allowed through.
enforced() {
	check "$1: ping 203.0.113.10 denied" "$(sl_ping 203.0.113.10 3)" 0
	check "$1: ping 198.51.100.10 allowed" "$(sl_ping 198.51.100.10 3)" 3
}

in_node ip link add hp0 type veth peer name hp0w netns "$SL_WORLD_NS"
sluice_start_args --config "$conf"
enforced "at start"
check "attached to the veth and hp0" "$(pins)" \
	"$(hook_pins "$(ifindex_of "$SL_NODE_IF")" "$(ifindex_of hp0)")"

sl_log "an interface matching a pattern appears"
ms=$(measure_attach in_node ip link add hp1 type veth peer name hp1w netns "$SL_WORLD_NS")
sl_log "hp1 attached ${ms} ms after it was created"
check_ge "hp1 attached (ms, sanity bound $SANITY_MS)" "$((SANITY_MS - ${ms/timeout/99999}))" 0
check "status: hp1 attached, matched by hp*" \
	"$(jqs '.interfaces[] | select(.iface == "hp1") | [.configured, .hooks[0].hook] | join(" ")')" \
	"hp* tc_egress"

sl_log "the veth deleted: its pin goes, status and log say degraded"
old=$(ifindex_of "$SL_NODE_IF")
in_node ip link del "$SL_NODE_IF"
wait_for 10 test ! -e "$(pin_of "$old")" || true
check "the deleted veth's pin is removed" "$(test -e "$(pin_of "$old")" && echo stale || echo removed)" removed
check "status: pattern sl-n-* matches nothing" "$(jqs '.degraded | join("; ")')" \
	"pattern 'sl-n-*' matches no interface"
wait_for 5 grep -qF "DEGRADED: pattern 'sl-n-*' matches no interface" "$SL_RUN_LOG" || true
check "log: DEGRADED" "$(grep -cF "warning: DEGRADED: pattern 'sl-n-*' matches no interface" "$SL_RUN_LOG")" 1

sl_log "the veth created again: a new ifindex, attached again"
ms=$(measure_attach sl_veth_create)
new=$(ifindex_of "$SL_NODE_IF")
sl_log "veth (ifindex $old -> $new) enforced again ${ms} ms after it was created"
echo "# hotplug: recreated interface enforced again after ${ms} ms"
check "a new ifindex" "$([ "$new" != "$old" ] && echo new || echo same)" new
check_ge "recreated veth attached (ms, sanity bound $SANITY_MS)" "$((SANITY_MS - ${ms/timeout/99999}))" 0
enforced "recreated"
check "pins: the new veth, hp0, hp1; none stale" "$(pins)" \
	"$(hook_pins "$new" "$(ifindex_of hp0)" "$(ifindex_of hp1)")"
wait_for 5 grep -qF "recovered: pattern 'sl-n-*' matches no interface" "$SL_RUN_LOG" || true
check "log: recovered" "$(grep -cF "recovered: pattern 'sl-n-*' matches no interface" "$SL_RUN_LOG")" 1
check "status: healthy" "$(jqs .healthy)" true

sl_log "renamed: the attachment follows the device"
in_node ip link set dev "$SL_NODE_IF" down
in_node ip link set dev "$SL_NODE_IF" name sl-n-renamed
renamed_if=$SL_NODE_IF
SL_NODE_IF=sl-n-renamed
sl_veth_up
enforced "renamed (still matching)"
check "same pin after the rename" "$(test -e "$(pin_of "$new")" && echo kept || echo gone)" kept
wait_for 5 grep -qF "$renamed_if was renamed sl-n-renamed" "$SL_RUN_LOG" || true
check "log: the rename is followed" "$(grep -cF "$renamed_if was renamed sl-n-renamed: enforcement follows the device" "$SL_RUN_LOG")" 1
check "status: the new name" "$(jqs '[.interfaces[] | select(.ifindex == '"$new"') | .iface] | first')" sl-n-renamed

in_node ip link set dev "$SL_NODE_IF" down
in_node ip link set dev "$SL_NODE_IF" name other0
SL_NODE_IF=other0
sl_veth_up
enforced "renamed out of the pattern (still enforced)"
check "status: still attached under its new name" \
	"$(jqs '.interfaces[] | select(.iface == "other0") | .hooks[0].hook')" tc_egress
check "status: the pattern matching nothing is degraded" "$(jqs '.degraded | join("; ")')" \
	"pattern 'sl-n-*' matches no interface"
in_node ip link set dev "$SL_NODE_IF" down
in_node ip link set dev "$SL_NODE_IF" name "$renamed_if"
SL_NODE_IF=$renamed_if
sl_veth_up

sl_log "down and up: nothing to do, enforcement never lapses"
in_node ip link set dev "$SL_NODE_IF" down
in_node ip link set dev hp0 down
sl_veth_up
enforced "after down/up"
check "same pin after down/up" "$(test -e "$(pin_of "$new")" && echo kept || echo gone)" kept

sl_log "an attached interface that matches no pattern any more is gone: no stale pins"
in_node ip link del hp1
wait_for 10 bash -c "[ \$(find '$SL_PIN_DIR/links' -mindepth 1 | wc -l) -eq 2 ]" || true
check "pins: the veth and hp0 only" "$(pins)" \
	"$(hook_pins "$new" "$(ifindex_of hp0)")"
check "status: healthy at the end" "$(jqs .healthy)" true
check "the daemon is still running" "$(kill -0 "$SL_SLUICE_PID" 2>/dev/null && echo yes || echo no)" yes

sl_finish

#!/usr/bin/env bash
# Least privilege: a non-root user (a throwaway account made for this run and removed at
# exit) can read and write no pin and no state file, and every command that changes
# state refuses it with a clear message, changing nothing; the pin and state directories
# are 0700, pins and state files 0600. The daemon itself runs with only the capabilities
# the systemd unit grants (CAP_BPF CAP_NET_ADMIN CAP_PERFMON).
#
# usage: permissions.sh PATH/TO/sluice   (root; builds its own namespaces, see lib.sh)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/lib.sh
source "$here/lib.sh"
sl_init "${1:-}"
command -v useradd >/dev/null && command -v userdel >/dev/null ||
	sl_die "missing tool: useradd/userdel (passwd package)"
sl_setup
# Let the user reach the pin and state dirs, so what stops it is sluice's own permissions.
chmod 0755 "$SL_TMP"

user=sl-u-$SL_ID
useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$user"
remove_user() { userdel "$user" 2>/dev/null || true; }
SL_CLEANUP_HOOKS+=(remove_user)
as_user() { in_node setpriv --reuid="$user" --regid="$user" --clear-groups "$@"; }

policy=$SL_TMP/policy.conf
printf 'mode enforce\ndefault deny\nallow 198.51.100.0/24\n' >"$policy"
conf=$SL_TMP/sluice.conf
cat >"$conf" <<EOF
interface sl-n-*
policy $policy
pin-dir $SL_PIN_DIR
state-dir $SL_STATE_DIR
EOF
chmod 0644 "$policy" "$conf" # readable: the refusals below must come from sluice's state

sl_log "the daemon runs with only the unit's capabilities"
: >"$SL_RUN_LOG"
ip netns exec "$SL_NODE_NS" setpriv --bounding-set -all,+bpf,+net_admin,+perfmon --inh-caps -all \
	"$SLUICE" run --config "$conf" </dev/null >>"$SL_RUN_LOG" 2>&1 &
SL_SLUICE_PID=$!
wait_for 20 grep -q 'ready' "$SL_RUN_LOG" || sl_die "sluice run (unit capabilities) not ready: $(cat "$SL_RUN_LOG")"
check "effective capabilities: bpf, net_admin, perfmon only" \
	"$(sed -n 's/^CapEff:\s*//p' "/proc/$SL_SLUICE_PID/status")" 000000c000001000
check "enforcing: ping 203.0.113.10 denied" "$(sl_ping 203.0.113.10 2)" 0
check "enforcing: ping 198.51.100.10 allowed" "$(sl_ping 198.51.100.10 2)" 2
sl deny 203.0.113.77 >/dev/null 2>&1 # an override, so overrides.json exists too

sl_log "modes: directories 0700, files 0600"
check "pin directories are 0700" "$(find "$SL_PIN_DIR" -type d ! -perm 0700 | wc -l)/$(find "$SL_PIN_DIR" -type d | wc -l)" "0/4"
check "pins are 0600" "$(find "$SL_PIN_DIR" -type f ! -perm 0600 | wc -l)" 0
check "state directory is 0700" "$(stat -c %a "$SL_STATE_DIR")" 700
check "state files are 0600" "$(find "$SL_STATE_DIR" -type f ! -perm 0600 -printf '%f ' | wc -w)" 0
states=$(find "$SL_STATE_DIR" -type f -printf '%f\n' | sort | tr '\n' ' ')
check "the state files checked" "$states" \
	"budgets daemon.pid lock overrides.json policy.json policy.snapshot rules status.json "

sl_log "the user can read, write or list nothing"
snapshot() {
	find "$SL_PIN_DIR" "$SL_STATE_DIR" -mindepth 1 -printf '%P %i %m %s\n' | sort
	sl policy show --json | jq -c '{generation, overrides}'
}
before=$(snapshot)
n=0 readable=0 writable=0
while IFS= read -r f; do
	n=$((n + 1))
	as_user cat "$f" >/dev/null 2>&1 && readable=$((readable + 1))
	as_user sh -c ': >>"$1"' sh "$f" 2>/dev/null && writable=$((writable + 1))
done < <(find "$SL_PIN_DIR" "$SL_STATE_DIR" -type f)
check_ge "pin and state files tried" "$n" 12
check "files the user could read" "$readable" 0
check "files the user could write" "$writable" 0
for d in "$SL_PIN_DIR" "$SL_PIN_DIR/maps" "$SL_STATE_DIR"; do
	check "user cannot list $(basename "$d")" "$(as_user ls "$d" >/dev/null 2>&1 && echo listed || echo refused)" refused
done
check "user cannot create a file in the state dir" \
	"$(as_user touch "$SL_STATE_DIR/x" 2>/dev/null && echo created || echo refused)" refused
check "user cannot open a pinned map with bpftool" \
	"$(as_user bpftool map show pinned "$SL_PIN_DIR/maps/sluice_config" >/dev/null 2>&1 && echo opened || echo refused)" refused

sl_log "state-changing commands refuse the user, clearly"
u() { as_user "$SLUICE" "$@" --config "$conf"; }
bad_cmd "user: run" 1 "'sluice run' changes kernel state and needs root" -- u run
bad_cmd "user: policy load" 1 "'sluice policy load' changes kernel state and needs root" -- \
	u policy load "$policy"
bad_cmd "user: allow" 1 "'sluice allow' changes kernel state and needs root" -- u allow 203.0.113.10
bad_cmd "user: deny" 1 "'sluice deny' changes kernel state and needs root" -- u deny 198.51.100.10
bad_cmd "user: remove" 1 "'sluice remove' changes kernel state and needs root" -- u remove 203.0.113.77
bad_cmd "user: detach --all" 1 "'sluice detach' changes kernel state and needs root" -- u detach --all
bad_cmd "user: detach --iface" 1 "'sluice detach' changes kernel state and needs root" -- \
	u detach --iface "$SL_NODE_IF"
sl_log "read commands refuse the user too: the state is root's"
for c in status stats dest "policy show"; do
	# shellcheck disable=SC2086 # "policy show" is two words
	bad_cmd "user: $c" 1 "Permission denied \\(sluice's state is readable by root only\\)\$" -- u $c
done

check "nothing changed: pins, state, policy generation, overrides (digest)" \
	"$(snapshot | md5sum)" "$(md5sum <<<"$before")"
check "still enforcing: ping 203.0.113.10 denied" "$(sl_ping 203.0.113.10 2)" 0
check "the daemon is still running" "$(kill -0 "$SL_SLUICE_PID" 2>/dev/null && echo yes || echo no)" yes

sl_finish

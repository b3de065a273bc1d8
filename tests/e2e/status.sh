#!/usr/bin/env bash
# sluice status: the daemon's pid and liveness, per interface the hook attached with the
# program and link ids the kernel reports, mode, policy generation and load time; and
# each degraded condition, said by status and loudly by the daemon's log: an interface
# configured but not attached, xdp configured, the daemon not running.
#
# usage: status.sh PATH/TO/sluice   (root; builds its own namespaces, see lib.sh)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/lib.sh
source "$here/lib.sh"
sl_init "${1:-}"
sl_setup
chmod 0755 "$SL_TMP" # so what stops a non-root user is sluice's own permissions

policy=$SL_TMP/policy.conf
printf 'mode enforce\ndefault deny\nallow 198.51.100.0/24\n' >"$policy"
conf=$SL_TMP/sluice.conf
cat >"$conf" <<EOF
interface sl-n-*
policy $policy
EOF

# jqs FILTER — a field of `sluice status --json`.
jqs() { sl status --json | jq -c -r "$1"; }

sluice_start_args --config "$conf"

sl_log "a healthy daemon"
# The kernel's own account: the link pinned for the veth's ifindex (bpftool 7.1 predates
# tcx, so it is found by its pin; the kernel has no other link with that id).
ifindex=$(in_node cat "/sys/class/net/$SL_NODE_IF/ifindex")
link_json=$(in_node bpftool -j link show pinned "$SL_PIN_DIR/links/tc_egress_$ifindex")
link_id=$(jq -r .id <<<"$link_json")
prog_id=$(jq -r .prog_id <<<"$link_json")
check_match "bpftool sees the link" "$link_id/$prog_id" '^[0-9]+/[0-9]+$'
check "the link runs the pinned program" "$prog_id" \
	"$(in_node bpftool -j prog show pinned "$SL_PIN_DIR/progs/tc_egress" | jq -r .id)"
check "daemon running" "$(jqs .daemon.running)" true
check "daemon pid" "$(jqs .daemon.pid)" "$SL_SLUICE_PID"
check "daemon config file" "$(jqs .daemon.config)" "$conf"
check "pid file is 0600" "$(stat -c %a "$SL_STATE_DIR/daemon.pid")" 600
check "status record is 0600" "$(stat -c %a "$SL_STATE_DIR/status.json")" 600
check "mode" "$(jqs .mode)" enforce
check "policy generation as policy show has it" "$(jqs .policy.generation)" \
	"$(sl policy show --json | jq -r .generation)"
check "policy source" "$(jqs .policy.source)" "$policy"
check_match "policy load time" "$(jqs .policy.loaded_at)" '^20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$'
check "one interface row" "$(jqs '.interfaces | length')" 1
check "the veth, matched by the pattern" "$(jqs '.interfaces[0] | [.iface, .configured] | join(" ")')" \
	"$SL_NODE_IF sl-n-*"
check "its hook" "$(jqs '.interfaces[0].hooks[0] | [.hook, .attach] | join(" ")')" "tc_egress tcx"
check "program id as the kernel reports it" "$(jqs '.interfaces[0].hooks[0].prog_id')" "$prog_id"
check "link id as the kernel reports it" "$(jqs '.interfaces[0].hooks[0].link_id')" "$link_id"
check "healthy" "$(jqs .healthy)" true
check "nothing degraded" "$(jqs .degraded)" "[]"
out=$(sl status)
check_match "human: daemon line" "$out" "^daemon +running, pid $SL_SLUICE_PID"
check_match "human: interface line" "$out" "$SL_NODE_IF +[0-9]+ +sl-n-\\* +tc_egress +tcx +$prog_id +$link_id"
check_match "human: health ok" "$out" "health +ok"

sl_log "an interface detached behind the daemon's back is degraded, loudly"
sl detach --iface "$SL_NODE_IF" 2>/dev/null
want="$SL_NODE_IF: configured (sl-n-*) but NOT attached: no tc egress program on it"
check "status: degraded" "$(jqs '.degraded | join("; ")')" "$want"
check "status: not healthy" "$(jqs .healthy)" false
check "status: the row has no hooks" "$(jqs '.interfaces[0].hooks | length')" 0
check_match "status human: DEGRADED" "$(sl status)" "health +DEGRADED \\(1\\)"
wait_for 10 grep -qF "warning: DEGRADED: $want" "$SL_RUN_LOG"
check "daemon log: DEGRADED" "$(grep -cF "warning: DEGRADED: $want" "$SL_RUN_LOG")" 1
kill -HUP "$SL_SLUICE_PID"
wait_for 10 grep -qF "recovered: $want" "$SL_RUN_LOG"
check "SIGHUP re-attaches: daemon log says recovered" "$(grep -cF "recovered: $want" "$SL_RUN_LOG")" 1
check "SIGHUP re-attaches: healthy" "$(jqs .healthy)" true
check "SIGHUP re-attaches: denied again" "$(sl_ping 203.0.113.10 2)" 0
link_id=$(in_node bpftool -j link show pinned "$SL_PIN_DIR/links/tc_egress_$ifindex" | jq -r .id)
check "status shows the new link" "$(jqs '.interfaces[0].hooks[0].link_id')" "$link_id"

sl_log "non-root cannot read status"
bad_cmd "status as non-root" 1 'readable by root only' -- \
	in_node setpriv --reuid=65534 --regid=65534 --clear-groups "$SLUICE" status \
	--pin-dir "$SL_PIN_DIR" --state-dir "$SL_STATE_DIR"

sl_log "xdp configured: attached next to tc, shown in status"
sluice_stop
sluice_start_args --config "$conf" --xdp "$SL_NODE_IF"
check "status with xdp: healthy" "$(jqs .healthy)" true
check "status: the xdp hook is listed" "$(jqs '[.interfaces[0].hooks[].hook] | join(",")')" \
	"tc_egress,tc_ingress,xdp"
check_match "status: how XDP runs" \
	"$(jqs '.interfaces[0].hooks[] | select(.hook == "xdp") | .attach')" "^xdp (native|generic)$"
check "status: xdp configured as" "$(jqs '.interfaces[0].xdp_configured')" "$SL_NODE_IF"

sl_log "daemon stopped: enforcement stays, status says so"
sluice_stop
check "daemon not running" "$(jqs .daemon.running)" false
check_match "degraded: daemon not running" "$(jqs '.degraded[0]')" "^daemon not running"
check "the attachment stays (same link across daemon restarts)" "$(jqs '.interfaces[0].hooks[0].link_id')" "$link_id"
check "not running: still denied" "$(sl_ping 203.0.113.10 2)" 0
check_match "human: NOT running" "$(sl status)" "^daemon +NOT running"

sl_finish

#!/usr/bin/env bash
# Bad input is refused with one precise message and a non-zero exit, and changes nothing
# already in force: with a policy enforced on the node's veth (first by a running daemon,
# then by the pins alone after it exits), every bad command below must leave the pins,
# the attached program, the counters and the deny exactly as they were.
#
# usage: bad_input.sh PATH/TO/sluice   (root; builds its own namespaces, see lib.sh)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/lib.sh
source "$here/lib.sh"
sl_init "${1:-}"
sl_setup
# Let an unprivileged user reach the pin and state dirs, so what stops it is sluice's
# own permissions (pins 0600, dirs 0700), not this test's private temp dir.
chmod 0755 "$SL_TMP"

policy=$SL_TMP/policy.conf
cat >"$policy" <<'POLICY'
mode enforce
default deny
allow 198.51.100.0/24
allow 2001:db8:a::/48
POLICY

# What "nothing changed" means: the same pins (same inodes: nothing re-pinned), the same
# program attached to the veth, the same policy generation and the same counters.
snapshot() {
	find "$SL_PIN_DIR" -mindepth 1 -printf '%P %i %m\n' | sort
	echo "--- attached"
	in_node bpftool -j net show dev "$SL_NODE_IF" |
		jq -c '[.[] | (.tc // []), (.tcx // [])] | flatten | map({kind, id})'
	echo "--- stats"
	sl stats --json | jq -S .
	echo "--- dest"
	sl dest --json | jq -S 'sort_by(.destination)'
}

# enforced PHASE — the policy is in force: denied gets nothing through, allowed gets
# through, and both are counted.
enforced() {
	local p0 d0
	p0=$(sl_dest_count 2001:db8:a::10 allow packets)
	d0=$(sl_dest_count 203.0.113.10 deny packets)
	sl_counters_reset
	check "$1: ping 203.0.113.10 denied" "$(sl_ping 203.0.113.10 3)" 0
	check "$1: ping 2001:db8:a::10 allowed" "$(sl_ping 2001:db8:a::10 3)" 3
	check "$1: nothing reached 203.0.113.10" "$(sl_count in 203.0.113.10 all packets)" 0
	check "$1: 203.0.113.10 deny counted" "$(($(sl_dest_count 203.0.113.10 deny packets) - d0))" \
		"$(sl_count out 203.0.113.10 all packets)"
	check "$1: 2001:db8:a::10 allow counted" \
		"$(($(sl_dest_count 2001:db8:a::10 allow packets) - p0))" 3
}

bad_commands() { # PHASE
	local ph=$1 bad
	bad=$SL_TMP/bad.conf

	bad_cmd "$ph: run --iface missing" 1 'nosuch0' -- \
		sl run --iface nosuch0 --policy "$policy"
	bad_cmd "$ph: run with one good and one missing --iface" 1 'nosuch1' -- \
		sl run --iface "$SL_NODE_IF" --iface nosuch1 --policy "$policy"
	bad_cmd "$ph: run --policy nonexistent" 1 "$SL_TMP/nonexistent\\.conf" -- \
		sl run --iface "$SL_NODE_IF" --policy "$SL_TMP/nonexistent.conf"

	printf '# invalid prefix length on line 3\nmode enforce\nallow 198.51.100.0/33\n' >"$bad"
	# Column 7 is the start of the CIDR, 20 its prefix length: either is precise.
	bad_cmd "$ph: policy with /33" 1 "^sluice: error: $bad:3:(7|20): .*198\\.51\\.100\\.0/33" -- \
		sl run --iface "$SL_NODE_IF" --policy "$bad"
	printf 'mode enforce\ndefault deny\n\ndeny 203.0.113.300\n' >"$bad"
	bad_cmd "$ph: policy with a bad IPv4 address" 1 "^sluice: error: $bad:4:6: .*203\\.0\\.113\\.300" -- \
		sl run --iface "$SL_NODE_IF" --policy "$bad"
	printf 'allow 2001:db8:a::/48\n  deny   2001:db8::zz/64   # typo\n' >"$bad"
	bad_cmd "$ph: policy with a bad IPv6 prefix" 1 "^sluice: error: $bad:2:10: .*2001:db8::zz/64" -- \
		sl run --iface "$SL_NODE_IF" --policy "$bad"

	bad_cmd "$ph: run as non-root" 1 'root' -- \
		in_node setpriv --reuid=65534 --regid=65534 --clear-groups "$SLUICE" run \
		--iface "$SL_NODE_IF" --policy "$policy" --pin-dir "$SL_PIN_DIR" --state-dir "$SL_STATE_DIR"
	bad_cmd "$ph: stats as non-root" 1 '([Pp]ermission|root)' -- \
		in_node setpriv --reuid=65534 --regid=65534 --clear-groups "$SLUICE" stats \
		--pin-dir "$SL_PIN_DIR" --state-dir "$SL_STATE_DIR"
	bad_cmd "$ph: detach as non-root" 1 'root' -- \
		in_node setpriv --reuid=65534 --regid=65534 --clear-groups "$SLUICE" detach --all \
		--pin-dir "$SL_PIN_DIR" --state-dir "$SL_STATE_DIR"

	bad_cmd "$ph: run without --iface" 2 'iface' -- sl run --policy "$policy"
	bad_cmd "$ph: run --mode bogus" 2 'bogus' -- \
		sl run --iface "$SL_NODE_IF" --policy "$policy" --mode bogus
	bad_cmd "$ph: run with an unknown option" 2 'no-such-option' -- \
		sl run --iface "$SL_NODE_IF" --policy "$policy" --no-such-option
}

sl_log "sluice run --iface $SL_NODE_IF --policy $policy"
sluice_start "$policy"
enforced "before"
check "pin dirs are 0700" "$(find "$SL_PIN_DIR" -type d ! -perm 0700 | wc -l)" 0
check "pins are 0600" "$(find "$SL_PIN_DIR" -type f ! -perm 0600 | wc -l)" 0
check "state dir is 0700" "$(stat -c %a "$SL_STATE_DIR")" 700

snap0=$(snapshot)
bad_commands "daemon running"
check "daemon running: sluice run still running" \
	"$(kill -0 "$SL_SLUICE_PID" 2>/dev/null && echo yes || echo no)" yes
snap1=$(snapshot)
check "daemon running: pins, attachment, policy and counters unchanged" \
	"$(diff <(echo "$snap0") <(echo "$snap1") | head -n 20)" ""
enforced "daemon running, after bad input"

rc=0
sluice_stop || rc=$?
check "sluice run exits 0 on SIGTERM" "$rc" 0
snap0=$(snapshot)
bad_commands "pins only"
snap1=$(snapshot)
check "pins only: pins, attachment, policy and counters unchanged" \
	"$(diff <(echo "$snap0") <(echo "$snap1") | head -n 20)" ""
enforced "pins only, after bad input"

sl_finish

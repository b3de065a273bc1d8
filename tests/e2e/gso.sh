#!/usr/bin/env bash
# Acceptance test of GSO/TSO accounting: an iperf3 TCP transfer of 200 MB from the node to
# an allowed address, once with TSO/GSO on the node's veth and once with both off. Each
# time sluice's packet and byte counts for the destination must be within 1% of the wire
# packets and bytes counted at the receiver.
#
# A veth hands a GSO super-packet to its peer whole, so no counter in the world namespace
# would ever see the wire packets it stands for. The receiver therefore sits one hop
# further, in a third namespace ("sink"): the world namespace routes to it over a second
# veth pair with TSO and GSO off, so the kernel cuts every super-packet into the segments
# a NIC would put on the wire, and the sink's nft counters (netdev ingress, GRO off) count
# those. Independent of sluice's arithmetic: segmentation by the kernel, counting by nft.
#
#   node --veth (TSO/GSO on|off)--> world (forwards) --veth (TSO/GSO off)--> sink
#   192.0.2.1                       192.0.2.2 / 198.51.100.249               198.51.100.250
#
# usage: gso.sh PATH/TO/sluice   (root; builds its own namespaces, see lib.sh)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/lib.sh
source "$here/lib.sh"
sl_init "${1:-}"
for t in iperf3 ethtool; do
	command -v "$t" >/dev/null || sl_die "missing tool: $t (run scripts/install-deps.sh)"
done
sl_setup_net
sl_mount_bpffs

SINK_NS=sl-sink-$SL_ID
ROUTER_IF=sl-r-$SL_ID # world's side of the world-sink pair
SINK_IF=sl-s-$SL_ID
ROUTER_V4=198.51.100.249
SINK_V4=198.51.100.250
BYTES=200M
L2=14 # sluice counts frames; nft at netdev ingress counts from the IP header

sink_cleanup() {
	local pids
	[ -e "/run/netns/$SINK_NS" ] || return 0
	mapfile -t pids < <(ip netns pids "$SINK_NS" 2>/dev/null)
	[ "${#pids[@]}" -eq 0 ] || kill -KILL "${pids[@]}" 2>/dev/null
	ip netns del "$SINK_NS" 2>/dev/null
}
SL_CLEANUP_HOOKS+=(sink_cleanup)
in_sink() { ip netns exec "$SINK_NS" "$@"; }

ip netns add "$SINK_NS"
sl_ns_sysctls "$SINK_NS"
ip -n "$SL_WORLD_NS" link add "$ROUTER_IF" type veth peer name "$SINK_IF" netns "$SINK_NS"
ip -n "$SL_WORLD_NS" addr add "$ROUTER_V4/30" dev "$ROUTER_IF"
ip -n "$SL_WORLD_NS" link set dev "$ROUTER_IF" up
in_world sysctl -qw net.ipv4.ip_forward=1
ip -n "$SINK_NS" link set dev lo up
ip -n "$SINK_NS" addr add "$SINK_V4/30" dev "$SINK_IF"
ip -n "$SINK_NS" link set dev "$SINK_IF" up
ip -n "$SINK_NS" route add default via "$ROUTER_V4"
# The world-to-sink hop segments in software, like a NIC; the sink must not merge again.
in_world ethtool -K "$ROUTER_IF" tso off gso off >/dev/null
in_sink ethtool -K "$SINK_IF" gro off >/dev/null 2>&1 || true

# Ground truth: what crossed the last hop (sink), and what the node's veth handed to the
# world as skbs (world), which shows whether GSO was in effect.
sl_nft_load "$SINK_NS" "table netdev sl_gso" \
	"type filter hook ingress device \"$SINK_IF\" priority 0; policy accept;" \
	"counter wire {}
chain_rule ip daddr $SINK_V4 counter name wire"
sl_nft_load "$SL_WORLD_NS" "table netdev sl_gso" \
	"type filter hook ingress device \"$SL_WORLD_IF\" priority 0; policy accept;" \
	"counter skbs {}
chain_rule ip daddr $SINK_V4 counter name skbs"

nft_count() { # NS COUNTER packets|bytes
	ip netns exec "$1" nft -j list counter netdev sl_gso "$2" |
		jq -r --arg f "$3" '[.nftables[] | select(.counter) | .counter[$f]] | first'
}
nft_reset() {
	in_sink nft reset counters table netdev sl_gso >/dev/null
	in_world nft reset counters table netdev sl_gso >/dev/null
}

policy=$SL_TMP/policy.conf
cat >"$policy" <<EOF
mode enforce
default deny
allow $SINK_V4 name sink
EOF
sluice_start "$policy"
check "ping to the sink passes through the router" "$(sl_ping "$SINK_V4" 3)" 3

# within_1pct NAME ACTUAL EXPECTED — |ACTUAL - EXPECTED| <= 1% of EXPECTED (EXPECTED > 0)
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

# transfer on|off
transfer() {
	local mode=$1 p0 b0 p1 b1 wire_p wire_b skbs got rc=0
	if [ "$mode" = on ]; then
		# lib.sh limits the node veth to one segment per skb; lift that for this mode.
		ip -n "$SL_NODE_NS" link set dev "$SL_NODE_IF" gso_max_segs 65535
		in_node ethtool -K "$SL_NODE_IF" tso on gso on >/dev/null
	else
		in_node ethtool -K "$SL_NODE_IF" tso off gso off >/dev/null
	fi
	sl_log "TSO/GSO $mode: $(in_node ethtool -k "$SL_NODE_IF" |
		grep -E '^(tcp-segmentation-offload|generic-segmentation-offload):' | tr '\n' ' ')"

	in_sink iperf3 -s -1 -B "$SINK_V4" -p 5201 >"$SL_TMP/iperf-server.$mode" 2>&1 &
	local server=$!
	wait_for 10 sh -c "ip netns exec $SINK_NS ss -Hltn 'sport = :5201' | grep -q ." ||
		sl_die "iperf3 server did not start"
	nft_reset
	p0=$(sl_dest_count "$SINK_V4" allow packets)
	b0=$(sl_dest_count "$SINK_V4" allow bytes)
	in_node iperf3 -c "$SINK_V4" -p 5201 -n "$BYTES" -J >"$SL_TMP/iperf.$mode.json" || rc=$?
	wait "$server" || true
	check "GSO $mode: iperf3 client exits 0" "$rc" 0
	got=$(jq -r '.end.sum_sent.bytes // 0' "$SL_TMP/iperf.$mode.json")
	check_ge "GSO $mode: iperf3 sent at least 200 MiB" "$got" $((200 * 1024 * 1024))
	sleep 0.3 # the last ACKs and FINs

	p1=$(sl_dest_count "$SINK_V4" allow packets)
	b1=$(sl_dest_count "$SINK_V4" allow bytes)
	wire_p=$(nft_count "$SINK_NS" wire packets)
	wire_b=$(nft_count "$SINK_NS" wire bytes)
	skbs=$(nft_count "$SL_WORLD_NS" skbs packets)
	check_ge "GSO $mode: at least 200 MiB crossed the last hop" "$wire_b" $((200 * 1024 * 1024))
	sl_log "GSO $mode: sluice $((p1 - p0)) packets $((b1 - b0)) bytes; wire $wire_p packets" \
		"$((wire_b + L2 * wire_p)) bytes; node handed over $skbs skbs"
	if [ "$mode" = on ]; then
		# Otherwise this mode would not test GSO accounting at all.
		check_ge "GSO on: super-packets left the node (wire packets >= 4 x skbs)" \
			"$wire_p" $((4 * skbs))
	else
		check "GSO off: one skb per wire packet" "$skbs" "$wire_p"
	fi
	within_1pct "GSO $mode: sluice packets vs wire packets" "$((p1 - p0))" "$wire_p"
	within_1pct "GSO $mode: sluice bytes vs wire bytes" "$((b1 - b0))" "$((wire_b + L2 * wire_p))"
	check "GSO $mode: no denied packets to the sink" "$(sl_dest_count "$SINK_V4" deny packets)" 0
}

transfer on
transfer off
sl_finish

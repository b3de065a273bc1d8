#!/usr/bin/env bash
# Acceptance test of gateway mode: three namespaces, client -> gateway (a router, sluice
# with --xdp on its client-facing veth) -> world. Under `default deny` with one allowed
# prefix per family, forwarded packets to a denied destination never reach world and are
# counted with hook=xdp; allowed ones arrive, counted exactly; the client still reaches
# the gateway's own addresses (TCP to a listener there), which XDP neither polices nor
# counts; `sluice detach --iface` lifts the XDP program.
#
#   client  CL_IF 192.0.2.130/25, 2001:db8:2::2/64
#      |    veth
#   gateway GW_IN 192.0.2.129/25, 2001:db8:2::1/64  (forwarding on; sluice --xdp GW_IN)
#           SL_NODE_IF 192.0.2.1/25, 2001:db8:1::1/64
#      |    veth
#   world   SL_WORLD_IF 192.0.2.2/25, 2001:db8:1::2/64; lo: SL_DESTS
#
# usage: xdp_gateway.sh PATH/TO/sluice   (root; builds its own namespaces, see lib.sh)
# SLUICE_FORCE_XDP_GENERIC=1 runs it with the program in generic mode.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/lib.sh
source "$here/lib.sh"
sl_init "${1:-}"

# The world holds one allowed and one denied destination per family.
SL_DESTS=(198.51.100.10 203.0.113.10 2001:db8:a::10 2001:db8:d::10)
SL_NODE_V4=192.0.2.1 SL_WORLD_V4=192.0.2.2
GW_IN_V4=192.0.2.129 CL_V4=192.0.2.130
GW_IN_V6=2001:db8:2::1 CL_V6=2001:db8:2::2
GW_IN_MAC=02:00:5e:10:00:03 CL_MAC=02:00:5e:10:00:04
CL_NS=sl-cli-$SL_ID
CL_IF=sl-c-$SL_ID
GW_IN=sl-g-$SL_ID
UDP_N=6
L2=14 # sluice counts frames, nft in world counts from the IP header

cleanup_client() {
	local pids
	if [ -e "/run/netns/$CL_NS" ]; then
		mapfile -t pids < <(ip netns pids "$CL_NS" 2>/dev/null)
		[ "${#pids[@]}" -eq 0 ] || kill -KILL "${pids[@]}" 2>/dev/null
		ip netns del "$CL_NS" 2>/dev/null
	fi
}
SL_CLEANUP_HOOKS+=(cleanup_client)

in_client() { ip netns exec "$CL_NS" "$@"; }

setup_net() {
	ip netns add "$SL_NODE_NS"
	ip netns add "$SL_WORLD_NS"
	ip netns add "$CL_NS"
	local ns
	for ns in "$SL_NODE_NS" "$SL_WORLD_NS" "$CL_NS"; do
		sl_ns_sysctls "$ns"
		ip -n "$ns" link set dev lo up
	done
	# Both veth pairs are created inside our namespaces, never in the root namespace.
	ip -n "$SL_NODE_NS" link add "$SL_NODE_IF" address "$SL_NODE_MAC" type veth \
		peer name "$SL_WORLD_IF" address "$SL_WORLD_MAC" netns "$SL_WORLD_NS"
	ip -n "$SL_NODE_NS" link add "$GW_IN" address "$GW_IN_MAC" type veth \
		peer name "$CL_IF" address "$CL_MAC" netns "$CL_NS"
	# Permanent IPv6 neighbours, as in lib.sh: no neighbour discovery on the links.
	ip -n "$SL_NODE_NS" -6 neigh replace "$SL_WORLD_V6" lladdr "$SL_WORLD_MAC" nud permanent \
		dev "$SL_NODE_IF"
	ip -n "$SL_NODE_NS" -6 neigh replace "$CL_V6" lladdr "$CL_MAC" nud permanent dev "$GW_IN"
	ip -n "$SL_WORLD_NS" -6 neigh replace "$SL_NODE_V6" lladdr "$SL_NODE_MAC" nud permanent \
		dev "$SL_WORLD_IF"
	ip -n "$CL_NS" -6 neigh replace "$GW_IN_V6" lladdr "$GW_IN_MAC" nud permanent dev "$CL_IF"

	ip -n "$SL_NODE_NS" addr add "$SL_NODE_V4/25" dev "$SL_NODE_IF"
	ip -n "$SL_NODE_NS" addr add "$SL_NODE_V6/64" dev "$SL_NODE_IF" nodad
	ip -n "$SL_NODE_NS" addr add "$GW_IN_V4/25" dev "$GW_IN"
	ip -n "$SL_NODE_NS" addr add "$GW_IN_V6/64" dev "$GW_IN" nodad
	ip -n "$SL_NODE_NS" link set dev "$SL_NODE_IF" up
	ip -n "$SL_NODE_NS" link set dev "$GW_IN" up
	ip -n "$SL_NODE_NS" route add 198.51.100.0/24 via "$SL_WORLD_V4"
	ip -n "$SL_NODE_NS" route add 203.0.113.0/24 via "$SL_WORLD_V4"
	ip -n "$SL_NODE_NS" -6 route add 2001:db8:a::/48 via "$SL_WORLD_V6"
	ip -n "$SL_NODE_NS" -6 route add 2001:db8:d::/48 via "$SL_WORLD_V6"
	ip netns exec "$SL_NODE_NS" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1

	ip -n "$CL_NS" addr add "$CL_V4/25" dev "$CL_IF"
	ip -n "$CL_NS" addr add "$CL_V6/64" dev "$CL_IF" nodad
	ip -n "$CL_NS" link set dev "$CL_IF" up
	ip -n "$CL_NS" route add default via "$GW_IN_V4"
	ip -n "$CL_NS" -6 route add default via "$GW_IN_V6"

	ip -n "$SL_WORLD_NS" addr add "$SL_WORLD_V4/25" dev "$SL_WORLD_IF"
	ip -n "$SL_WORLD_NS" addr add "$SL_WORLD_V6/64" dev "$SL_WORLD_IF" nodad
	ip -n "$SL_WORLD_NS" link set dev "$SL_WORLD_IF" up
	ip -n "$SL_WORLD_NS" route add 192.0.2.128/25 via "$SL_NODE_V4"
	ip -n "$SL_WORLD_NS" -6 route add 2001:db8:2::/64 via "$SL_NODE_V6"
	local d
	for d in "${SL_DESTS[@]}"; do
		case $d in
		*:*) ip -n "$SL_WORLD_NS" addr add "$d/128" dev lo nodad ;;
		*) ip -n "$SL_WORLD_NS" addr add "$d/32" dev lo ;;
		esac
	done
}

setup_net
sl_mount_bpffs
sl_counters_setup
sl_server_start

# A listener on the gateway itself, every address: one line per connection in gw.log.
gw_log=$SL_TMP/gw.log
: >"$gw_log"
in_node python3 - "$SL_TCP_PORT" >>"$gw_log" 2>&1 <<'EOF' &
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", int(sys.argv[1])))
s.listen(16)
print("ready", flush=True)
while True:
    c, peer = s.accept()
    local = c.getsockname()[0].replace("::ffff:", "")
    c.settimeout(3)
    data = b""
    try:
        while True:
            chunk = c.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    c.close()
    print("tcp", local, data.decode(errors="replace").strip(), flush=True)
EOF
wait_for 10 grep -q '^ready' "$gw_log" || sl_die "gateway listener did not start"

policy=$SL_TMP/policy.conf
cat >"$policy" <<'EOF'
# gateway: default deny; one allowed prefix per family
mode enforce
default deny
allow 198.51.100.0/24
allow 2001:db8:a::/48
EOF

# XDP only: the gateway's own traffic has no tc program in this test.
: >"$SL_RUN_LOG"
ip netns exec "$SL_NODE_NS" "$SLUICE" run --xdp "$GW_IN" --policy "$policy" \
	--pin-dir "$SL_PIN_DIR" --state-dir "$SL_STATE_DIR" --metrics off \
	</dev/null >>"$SL_RUN_LOG" 2>&1 &
SL_SLUICE_PID=$!
wait_for 20 grep -q 'ready' "$SL_RUN_LOG" || sl_die "sluice run not ready: $(cat "$SL_RUN_LOG")"

want_mode=native
[ -n "${SLUICE_FORCE_XDP_GENERIC:-}" ] && want_mode=generic
check "attached to $GW_IN with XDP ($want_mode)" \
	"$(grep -o "attached to $GW_IN XDP ([a-z]*)" "$SL_RUN_LOG" | head -n 1)" \
	"attached to $GW_IN XDP ($want_mode)"
gw_in_index=$(in_node cat "/sys/class/net/$GW_IN/ifindex")
check "XDP link pinned" "$(ls "$SL_PIN_DIR/links")" "xdp_$gw_in_index"

# sl_udp_send and friends send from the client namespace here.
SL_SENDER_NS=$CL_NS
sl_counters_reset

# --- forwarded traffic: exact counts --------------------------------------------------
declare -A verdict=([198.51.100.10]=allow [203.0.113.10]=deny [2001:db8:a::10]=allow
	[2001:db8:d::10]=deny)
for d in 203.0.113.10 198.51.100.10 2001:db8:d::10 2001:db8:a::10; do
	sl_udp_send "$d" "$UDP_N"
done
# Denied datagrams went first on each path: once the allowed ones are in, all have crossed.
seen_all() { [ "$(sl_server_seen udp "$1")" -ge "$UDP_N" ]; }
wait_for 5 seen_all 198.51.100.10 || true
wait_for 5 seen_all 2001:db8:a::10 || true
for d in "${SL_DESTS[@]}"; do
	if [ "${verdict[$d]}" = allow ]; then
		check "$d: every datagram forwarded to world" "$(sl_server_seen udp "$d")" "$UDP_N"
		check "$d: world's ingress saw them" "$(sl_count in "$d" udp packets)" "$UDP_N"
		check "$d: counted allow by sluice" "$(sl_dest_count "$d" allow packets)" "$UDP_N"
		check "$d: sluice's bytes = wire bytes + L2 headers" \
			"$(sl_dest_count "$d" allow bytes)" \
			"$(($(sl_count in "$d" udp bytes) + UDP_N * L2))"
	else
		check "$d: no datagram reached world" "$(sl_server_seen udp "$d")" 0
		check "$d: nothing crossed world's wire" "$(sl_count in "$d" all packets)" 0
		check "$d: counted deny by sluice" "$(sl_dest_count "$d" deny packets)" "$UDP_N"
	fi
done

# Node totals: the denies are on the XDP hook of the client-facing interface.
xdp_deny=$(sl stats --json | jq --arg i "$GW_IN" \
	'[.totals[] | select(.iface == $i and .hook == "xdp" and .verdict == "deny")
	  | .packets] | add // 0')
check "hook=xdp deny packets on $GW_IN" "$xdp_deny" $((2 * UDP_N))
check "no other hook counted" \
	"$(sl stats --json | jq '[.totals[] | select(.hook != "xdp") | .packets] | add // 0')" 0

# TCP through the gateway: the allowed destination answers, the denied one never hears.
check "TCP to allowed 198.51.100.10" "$(sl_tcp_send 198.51.100.10)" delivered
check "TCP to allowed 2001:db8:a::10" "$(sl_tcp_send 2001:db8:a::10)" delivered
check_match "TCP to denied 203.0.113.10 fails" "$(sl_tcp_send 203.0.113.10)" '^failed'
check "no TCP message reached 203.0.113.10" "$(sl_server_seen tcp 203.0.113.10)" 0

# --- the gateway's own addresses: reachable under default deny, not counted -------------
for a in "$GW_IN_V4" "$GW_IN_V6" "$SL_NODE_V4"; do
	check "TCP to the gateway's own $a" "$(sl_tcp_send "$a")" delivered
	check "gateway received it on $a" \
		"$(grep -c "^tcp $a sluice-tcp hello" "$gw_log" || true)" 1
	check "$a: no destination counted by XDP" \
		"$(sl dest --json | jq --arg d "$a" '[.[] | select(.destination == $d)] | length')" \
		0
done
check "ping the gateway" "$(sl_ping "$GW_IN_V4" 3)" 3

# An address the gateway gains while the daemon runs, in a range the policy denies: the
# gateway's own once rtnetlink told the daemon (a TCP retry covers the moment between).
NEW_GW_V4=203.0.113.254
in_node ip addr add "$NEW_GW_V4/32" dev "$SL_NODE_IF"
check "TCP to an address the gateway gained while sluice ran" "$(sl_tcp_send "$NEW_GW_V4")" delivered
check "... received by the gateway itself" \
	"$(grep -c "^tcp $NEW_GW_V4 sluice-tcp hello" "$gw_log" || true)" 1

# --- adoption and detach ----------------------------------------------------------------
sluice_stop
check_match "denied still dropped with the daemon gone" "$(sl_tcp_send 203.0.113.10)" '^failed'
sl detach --iface "$GW_IN" >/dev/null 2>&1
check "detach removed the XDP link" "$(ls "$SL_PIN_DIR/links")" ""
check "after detach 203.0.113.10 is reachable" "$(sl_tcp_send 203.0.113.10)" delivered

sl_finish

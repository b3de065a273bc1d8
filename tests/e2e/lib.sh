# shellcheck shell=bash
# Shared helpers for the e2e tests (tests/e2e/*.sh) and scripts/quickstart.sh. Source it,
# then call sl_init; everything it creates is torn down by the EXIT trap sl_init installs.
#
# The topology is two network namespaces joined by one veth pair, documentation addresses
# only, so no packet ever leaves the namespaces this file creates:
#
#   node  (sluice runs here)                     world (holds every destination)
#   SL_NODE_IF  192.0.2.1/24   <---- veth ---->  SL_WORLD_IF  192.0.2.2/24
#               2001:db8:1::1/64                              2001:db8:1::2/64
#   routes: 198.51.100.0/24, 203.0.113.0/24       lo: SL_DESTS (/32 and /128 each)
#           2001:db8:a::/48, 2001:db8:d::/48 via world
#
# IPv6 runs without any neighbour discovery, router solicitation or DAD (permanent
# neighbour entries, nodad, accept_ra=0), so the only IP packets on the link are the ones
# a test sends. IPv4 ARP stays dynamic on purpose: it is non-IP and must pass a
# default-deny policy, or every IPv4 check fails.
#
# Each run mounts its own bpffs instance under a private temporary directory and hands
# sluice --pin-dir/--state-dir inside it, so runs never share pins with each other or with
# an installed sluice. /sys/fs/bpf is never touched.

# Destinations held by the world namespace. enforce.sh and examples/policy.conf decide
# which are allowed; the addresses are the contract between them and this file.
SL_DESTS=(
	198.51.100.10 198.51.100.200 203.0.113.10 203.0.113.77
	2001:db8:a::10 2001:db8:a:bad::10 2001:db8:d::10 2001:db8:d:600d::10
)
SL_NODE_V4=192.0.2.1
SL_WORLD_V4=192.0.2.2
SL_NODE_V6=2001:db8:1::1
SL_WORLD_V6=2001:db8:1::2
SL_NODE_MAC=02:00:5e:10:00:01
SL_WORLD_MAC=02:00:5e:10:00:02
SL_UDP_PORT=9999
SL_TCP_PORT=9998

SL_FAILURES=0
SL_CHECKS=0
SL_SLUICE_PID=
SL_SERVER_PID=
SL_CLEANUP_HOOKS=() # functions a test adds to run first at cleanup (its own helpers)

sl_log() { printf '# %s\n' "$*" >&2; }
sl_die() {
	printf 'FATAL: %s\n' "$*" >&2
	exit 1
}

# sl_init SLUICE_BINARY — names, temp dir, cleanup trap. Sets SL_ID, SL_TMP, SL_NODE_NS,
# SL_WORLD_NS, SL_NODE_IF, SL_WORLD_IF, SL_PIN_DIR, SL_STATE_DIR, SLUICE.
sl_init() {
	[ "$(id -u)" -eq 0 ] || sl_die "needs root (network namespaces, bpffs, BPF)"
	[ -n "${1:-}" ] || sl_die "usage: $0 PATH/TO/sluice"
	SLUICE=$(readlink -f "$1")
	[ -x "$SLUICE" ] || sl_die "not an executable: $1"
	local t
	for t in ip nft jq python3 ping mount umount setpriv; do
		command -v "$t" >/dev/null || sl_die "missing tool: $t (run scripts/install-deps.sh)"
	done
	# Interface names are at most 15 characters: "sl-n-" plus at most 10.
	SL_ID=$(printf '%x%02x' "$$" "$((RANDOM % 256))")
	SL_ID=${SL_ID:0:10}
	SL_NODE_NS=sl-node-$SL_ID
	SL_WORLD_NS=sl-world-$SL_ID
	SL_NODE_IF=sl-n-$SL_ID
	SL_WORLD_IF=sl-w-$SL_ID
	SL_TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-e2e.$SL_ID.XXXXXX")
	SL_BPFFS=$SL_TMP/bpf
	SL_PIN_DIR=$SL_BPFFS/sluice
	SL_STATE_DIR=$SL_TMP/state
	SL_RUN_LOG=$SL_TMP/run.log
	trap sl_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# Tear down everything sl_init and the helpers created; safe to call at any stage.
sl_cleanup() {
	local rc=$?
	set +e
	trap '' PIPE INT TERM # finish cleaning up even if the reader of our output is gone
	local h ns pids
	for h in "${SL_CLEANUP_HOOKS[@]}"; do
		"$h"
	done
	sl_kill_wait "$SL_SLUICE_PID"
	sl_kill_wait "$SL_SERVER_PID"
	if [ $rc -ne 0 ] && [ -s "${SL_RUN_LOG:-}" ]; then
		echo "--- sluice run log ($SL_RUN_LOG) ---" >&2
		tail -n 40 "$SL_RUN_LOG" >&2
	fi
	if [ -n "${SL_NODE_NS:-}" ] && [ -e "/run/netns/$SL_NODE_NS" ] && [ -d "${SL_PIN_DIR:-}" ]; then
		ip netns exec "$SL_NODE_NS" "$SLUICE" detach --all --pin-dir "$SL_PIN_DIR" \
			--state-dir "$SL_STATE_DIR" >/dev/null 2>&1
	fi
	# Anything still running inside our namespaces was started by this run.
	for ns in "${SL_NODE_NS:-}" "${SL_WORLD_NS:-}"; do
		if [ -n "$ns" ] && [ -e "/run/netns/$ns" ]; then
			mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null)
			[ "${#pids[@]}" -eq 0 ] || kill -KILL "${pids[@]}" 2>/dev/null
		fi
	done
	# Deleting the namespaces destroys the veth pair, which releases any attachment.
	[ -n "${SL_NODE_NS:-}" ] && ip netns del "$SL_NODE_NS" 2>/dev/null
	[ -n "${SL_WORLD_NS:-}" ] && ip netns del "$SL_WORLD_NS" 2>/dev/null
	if [ -n "${SL_BPFFS:-}" ] && mountpoint -q "$SL_BPFFS"; then
		umount "$SL_BPFFS" || umount -l "$SL_BPFFS"
	fi
	[ -n "${SL_TMP:-}" ] && [ -d "$SL_TMP" ] && rm -rf --one-file-system "$SL_TMP"
	return $rc
}

# sl_kill_wait PID — SIGTERM a child of ours, SIGKILL it if it lingers 5 s, reap it.
sl_kill_wait() {
	[ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null || return 0
	kill -TERM "$1" 2>/dev/null
	wait_for 5 sl_gone "$1" || kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	return 0
}

sl_gone() { ! kill -0 "$1" 2>/dev/null; }

# wait_for TIMEOUT_SECONDS COMMAND... — poll COMMAND every 0.1 s until it succeeds.
wait_for() {
	local timeout=$1
	shift
	local deadline=$((SECONDS + timeout))
	until "$@"; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.1
	done
}

in_node() { ip netns exec "$SL_NODE_NS" "$@"; }
# The traffic helpers below send from SL_SENDER_NS, the node unless a test sets it (a
# client behind the node in gateway tests).
in_sender() { ip netns exec "${SL_SENDER_NS:-$SL_NODE_NS}" "$@"; }
in_world() { ip netns exec "$SL_WORLD_NS" "$@"; }

# sluice SUBCOMMAND ARGS... — the binary under test, in the node namespace, on this run's
# pins and state.
sl() {
	local cmd=$1
	shift
	in_node "$SLUICE" "$cmd" --pin-dir "$SL_PIN_DIR" --state-dir "$SL_STATE_DIR" "$@"
}

sl_ns_sysctls() {
	# New namespaces start from the kernel's IPv6 defaults (devconf_inherit_init_net=0);
	# set "default" before the veth exists so it is born quiet.
	ip netns exec "$1" sysctl -qw \
		net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0 \
		net.ipv6.conf.all.router_solicitations=0 net.ipv6.conf.default.router_solicitations=0 \
		net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
		net.ipv6.conf.default.addr_gen_mode=1 \
		net.ipv6.conf.default.mldv2_unsolicited_report_interval=10 \
		net.ipv6.conf.all.forwarding=0 net.ipv4.ip_forward=0
}

# Build the two namespaces, the veth pair, addresses, routes and neighbours.
sl_setup_net() {
	ip netns add "$SL_NODE_NS"
	ip netns add "$SL_WORLD_NS"
	sl_ns_sysctls "$SL_NODE_NS"
	sl_ns_sysctls "$SL_WORLD_NS"
	sl_veth_create
	ip -n "$SL_NODE_NS" link set dev lo up
	ip -n "$SL_WORLD_NS" link set dev lo up
	local d
	for d in "${SL_DESTS[@]}"; do
		case $d in
		*:*) ip -n "$SL_WORLD_NS" addr add "$d/128" dev lo nodad ;;
		*) ip -n "$SL_WORLD_NS" addr add "$d/32" dev lo ;;
		esac
	done
	# Joining the solicited-node group of the node's address sends the only IPv6 packets
	# nobody asked for: two MLDv2 reports, 10 ms apart. Let them leave before sluice runs.
	wait_for 3 sl_mld_done || sl_log "MLD reports not seen; continuing"
}

# sl_veth_create — the veth pair between node and world, addressed and routed (also to
# bring it back after a test deleted it).
sl_veth_create() {
	# Created inside the node namespace with its peer in world: never in the root namespace.
	ip -n "$SL_NODE_NS" link add "$SL_NODE_IF" address "$SL_NODE_MAC" type veth \
		peer name "$SL_WORLD_IF" address "$SL_WORLD_MAC" netns "$SL_WORLD_NS"
	# One skb = one wire packet, so per-packet counts on both sides compare exactly.
	ip -n "$SL_NODE_NS" link set dev "$SL_NODE_IF" gso_max_segs 1 2>/dev/null || true
	ip -n "$SL_WORLD_NS" addr add "$SL_WORLD_V4/24" dev "$SL_WORLD_IF"
	ip -n "$SL_WORLD_NS" addr add "$SL_WORLD_V6/64" dev "$SL_WORLD_IF" nodad
	ip -n "$SL_WORLD_NS" link set dev "$SL_WORLD_IF" up
	ip -n "$SL_WORLD_NS" -6 neigh replace "$SL_NODE_V6" lladdr "$SL_NODE_MAC" nud permanent \
		dev "$SL_WORLD_IF"
	sl_veth_up
}

# sl_veth_up — bring the node's veth up with its addresses, neighbour and routes (the
# kernel removes the routes and the IPv6 address when the interface goes down).
sl_veth_up() {
	ip -n "$SL_NODE_NS" addr replace "$SL_NODE_V4/24" dev "$SL_NODE_IF"
	ip -n "$SL_NODE_NS" addr replace "$SL_NODE_V6/64" dev "$SL_NODE_IF" nodad
	ip -n "$SL_NODE_NS" link set dev "$SL_NODE_IF" up
	ip -n "$SL_NODE_NS" -6 neigh replace "$SL_WORLD_V6" lladdr "$SL_WORLD_MAC" nud permanent \
		dev "$SL_NODE_IF"
	ip -n "$SL_NODE_NS" route replace 198.51.100.0/24 via "$SL_WORLD_V4"
	ip -n "$SL_NODE_NS" route replace 203.0.113.0/24 via "$SL_WORLD_V4"
	ip -n "$SL_NODE_NS" -6 route replace 2001:db8:a::/48 via "$SL_WORLD_V6"
	ip -n "$SL_NODE_NS" -6 route replace 2001:db8:d::/48 via "$SL_WORLD_V6"
}

sl_mld_done() {
	local n
	# shellcheck disable=SC2016 # awk's $1, not the shell's
	n=$(ip netns exec "$SL_NODE_NS" awk '$1 == "Icmp6OutMLDv2Reports" { print $2 }' /proc/net/snmp6)
	[ "${n:-0}" -ge 2 ]
}

sl_mount_bpffs() {
	mkdir -p "$SL_BPFFS" # the state dir is sluice's to create (0700)
	mount -t bpf bpf "$SL_BPFFS"
}

# sl_setup — the usual start: namespaces, own bpffs, counters on both sides.
sl_setup() {
	sl_setup_net
	sl_mount_bpffs
	sl_counters_setup
}

# --- sluice run ------------------------------------------------------------------------

# sluice_start POLICY [EXTRA ARGS...] — `sluice run` on the node veth in the background,
# stderr to SL_RUN_LOG; returns once it logged "ready", fails if it died or took > 20 s.
sluice_start() {
	local policy=$1
	shift
	sluice_start_args --iface "$SL_NODE_IF" --policy "$policy" "$@"
}

# sluice_start_args ARGS... — `sluice run ARGS` (this run's pin and state dirs added) in the
# background, as sluice_start.
sluice_start_args() {
	: >"$SL_RUN_LOG"
	# ip netns exec execs the command, so $! is sluice itself (not a subshell) and the
	# SIGTERM of sluice_stop reaches it.
	ip netns exec "$SL_NODE_NS" "$SLUICE" run --pin-dir "$SL_PIN_DIR" \
		--state-dir "$SL_STATE_DIR" "$@" </dev/null >>"$SL_RUN_LOG" 2>&1 &
	SL_SLUICE_PID=$!
	local deadline=$((SECONDS + 20))
	until grep -q 'ready' "$SL_RUN_LOG"; do
		if ! kill -0 "$SL_SLUICE_PID" 2>/dev/null; then
			local rc=0
			wait "$SL_SLUICE_PID" || rc=$?
			SL_SLUICE_PID=
			cat "$SL_RUN_LOG" >&2
			sl_die "sluice run exited with status $rc before it was ready"
		fi
		[ $SECONDS -lt $deadline ] || sl_die "sluice run not ready after 20 s"
		sleep 0.1
	done
}

# sluice_stop — SIGTERM the daemon and wait; returns its exit status.
sluice_stop() {
	[ -n "$SL_SLUICE_PID" ] || return 0
	local rc=0
	kill -TERM "$SL_SLUICE_PID"
	wait "$SL_SLUICE_PID" || rc=$?
	SL_SLUICE_PID=
	return $rc
}

# --- counters outside sluice: the ground truth it is checked against -------------------

sl_counter_name() { # SIDE DEST PROTO -> an nft object name
	printf '%s_%s_%s' "$1" "$(printf '%s' "$2" | tr '.:' '__')" "$3"
}

# nft named counters per (destination, protocol): in the node namespace on the output
# hook (what the node's stack sent, before sluice sees it) and in the world namespace on
# netdev ingress of its veth (what actually crossed the wire).
sl_counters_setup() {
	local node_rules="" world_rules="" d fam l4 p icmp
	for d in "${SL_DESTS[@]}" "$SL_WORLD_V4" "$SL_WORLD_V6"; do
		case $d in
		*:*) fam=ip6 icmp=ipv6-icmp ;;
		*) fam=ip icmp=icmp ;;
		esac
		for p in icmp udp tcp all; do
			case $p in
			icmp) l4="meta l4proto $icmp" ;;
			all) l4="" ;;
			*) l4="meta l4proto $p" ;;
			esac
			node_rules+="counter $(sl_counter_name out "$d" "$p") {}"$'\n'
			node_rules+="chain_rule $fam daddr $d $l4 counter name $(sl_counter_name out "$d" "$p")"$'\n'
			world_rules+="counter $(sl_counter_name in "$d" "$p") {}"$'\n'
			world_rules+="chain_rule $fam daddr $d $l4 counter name $(sl_counter_name in "$d" "$p")"$'\n'
		done
	done
	sl_nft_load "$SL_NODE_NS" "table inet sl_e2e" \
		"type filter hook output priority 0; policy accept;" "$node_rules"
	sl_nft_load "$SL_WORLD_NS" "table netdev sl_e2e" \
		"type filter hook ingress device \"$SL_WORLD_IF\" priority 0; policy accept;" "$world_rules"
}

sl_nft_load() { # NS TABLE CHAIN_HEAD LINES
	local ns=$1 table=$2 head=$3 lines=$4 objs="" rules="" l
	while IFS= read -r l; do
		case $l in
		counter*) objs+="	$l"$'\n' ;;
		chain_rule*) rules+="		${l#chain_rule }"$'\n' ;;
		esac
	done <<<"$lines"
	ip netns exec "$ns" nft -f - <<EOF
$table {
$objs
	chain c {
		$head
$rules
	}
}
EOF
}

# sl_count out|in DEST icmp|udp|tcp|all packets|bytes
sl_count() {
	local ns table
	if [ "$1" = out ]; then
		ns=$SL_NODE_NS table="inet sl_e2e"
	else
		ns=$SL_WORLD_NS table="netdev sl_e2e"
	fi
	# shellcheck disable=SC2086 # $table is two words on purpose
	ip netns exec "$ns" nft -j list counter $table "$(sl_counter_name "$1" "$2" "$3")" |
		jq -r --arg f "$4" '[.nftables[] | select(.counter) | .counter[$f]] | first'
}

sl_counters_reset() {
	in_node nft reset counters table inet sl_e2e >/dev/null
	in_world nft reset counters table netdev sl_e2e >/dev/null
}

# --- sluice's own view ------------------------------------------------------------------

# sl_dest_count DEST VERDICT packets|bytes — from `sluice dest --json`; 0 when absent.
sl_dest_count() {
	sl dest --json | jq -r --arg d "$1" --arg v "$2" --arg f "$3" \
		'[.[] | select(.destination == $d) | .by_verdict[$v][$f] // 0] | add // 0'
}

# --- traffic ----------------------------------------------------------------------------

# sl_stream_start DEST... — a steady UDP stream from the sender namespace: one 64-byte
# datagram to port SL_UDP_PORT of each destination every millisecond, until
# sl_stream_stop. sl_stream_sent DEST then prints how many were sent (attempted: a datagram
# sluice drops fails the sendto, and still counts as sent).
sl_stream_start() {
	SL_STREAM_SENT=$SL_TMP/stream.sent
	# Not through in_sender: ip netns exec execs python, so $! is the sender itself.
	ip netns exec "${SL_SENDER_NS:-$SL_NODE_NS}" python3 - "$SL_STREAM_SENT" "$SL_UDP_PORT" "$@" <<'PY' &
import json, signal, socket, sys, time
out, port, dests = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
socks = {d: socket.socket(socket.AF_INET6 if ":" in d else socket.AF_INET, socket.SOCK_DGRAM)
         for d in dests}
sent = dict.fromkeys(dests, 0)
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
while not stop:
    for d, s in socks.items():
        sent[d] += 1
        try:
            s.sendto(b"s" * 64, (d, port))
        except OSError:
            pass
    time.sleep(0.001)
with open(out, "w") as f:
    json.dump(sent, f)
PY
	SL_STREAM_PID=$!
	SL_CLEANUP_HOOKS+=(sl_stream_stop)
}

sl_stream_stop() {
	[ -n "${SL_STREAM_PID:-}" ] || return 0
	kill -TERM "$SL_STREAM_PID" 2>/dev/null
	wait "$SL_STREAM_PID" 2>/dev/null || true
	SL_STREAM_PID=
	return 0
}

sl_stream_sent() { jq -r --arg d "$1" '.[$d] // 0' "$SL_STREAM_SENT"; }


# sl_ping DEST [COUNT [DEADLINE]] — echo requests from the sender (node), 0.2 s apart; prints the number
# of replies. To a denied destination ping keeps retrying until DEADLINE (default 5 s).
sl_ping() {
	local out
	out=$(in_sender ping -n -q -c "${2:-10}" -i 0.2 -W 1 -w "${3:-5}" "$1" 2>&1) || true
	printf '%s\n' "$out" | sed -n 's/.* \([0-9][0-9]*\) received.*/\1/p' | head -n1 | grep . ||
		echo 0
}

# sl_udp_send DEST COUNT — exactly COUNT datagrams from node to DEST:SL_UDP_PORT. A datagram
# sluice drops is still one packet sent: without IP_RECVERR the socket reports no error.
sl_udp_send() {
	in_sender python3 - "$1" "$SL_UDP_PORT" "$2" <<'EOF'
import socket, sys
dst, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
for i in range(n):
    s.sendto(b"sluice-udp %d" % i, (dst, port))
EOF
}

# sl_icmp_send DEST COUNT — exactly COUNT echo requests with 56 bytes of payload (the
# size of ping's), one packet each, dropped or not: unlike ping, which retries an echo
# request when the kernel reports it dropped (ENOBUFS).
sl_icmp_send() {
	in_sender python3 - "$1" "$2" <<'EOF'
import errno, socket, struct, sys
dst, n = sys.argv[1], int(sys.argv[2])
v6 = ":" in dst
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_RAW,
                  socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
def csum(b):
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while t >> 16:
        t = (t & 0xffff) + (t >> 16)
    return ~t & 0xffff
for seq in range(n):
    payload = bytes(range(56))
    if v6:  # the kernel fills in the ICMPv6 checksum of raw ICMPv6 sockets
        pkt = struct.pack("!BBHHH", 128, 0, 0, 0x51ce, seq) + payload
    else:
        hdr = struct.pack("!BBHHH", 8, 0, 0, 0x51ce, seq)
        pkt = struct.pack("!BBHHH", 8, 0, csum(hdr + payload), 0x51ce, seq) + payload
    try:
        s.sendto(pkt, (dst, 0))
    except OSError as e:  # IPv6 raw sockets report a tc drop; the packet was still sent
        if e.errno != errno.ENOBUFS:
            raise
EOF
}

# sl_tcp_send DEST — connect to DEST:SL_TCP_PORT, send one short line, wait for the
# server's close. Prints "delivered" or "failed: REASON".
sl_tcp_send() {
	in_sender python3 - "$1" "$SL_TCP_PORT" <<'EOF'
import socket, sys
dst, port = sys.argv[1], int(sys.argv[2])
fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.settimeout(2.5)
try:
    s.connect((dst, port))
    s.sendall(b"sluice-tcp hello\n")
    s.shutdown(socket.SHUT_WR)
    while s.recv(4096):
        pass
    print("delivered")
except OSError as e:
    print("failed: %s" % (e.strerror or type(e).__name__))
finally:
    s.close()
EOF
}

# sl_server_start — UDP and TCP listeners in world on every destination; one line per
# datagram or TCP message received ("udp DEST PAYLOAD" / "tcp DEST PAYLOAD") in
# SL_SERVER_LOG.
sl_server_start() {
	SL_SERVER_LOG=$SL_TMP/server.log
	: >"$SL_SERVER_LOG"
	ip netns exec "$SL_WORLD_NS" python3 - "$SL_UDP_PORT" "$SL_TCP_PORT" "${SL_DESTS[@]}" \
		>>"$SL_SERVER_LOG" 2>&1 <<'EOF' &
import select, socket, sys
udp_port, tcp_port, addrs = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
socks = {}
for a in addrs:
    fam = socket.AF_INET6 if ":" in a else socket.AF_INET
    u = socket.socket(fam, socket.SOCK_DGRAM)
    u.bind((a, udp_port))
    t = socket.socket(fam, socket.SOCK_STREAM)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind((a, tcp_port))
    t.listen(16)
    socks[u] = ("udp", a)
    socks[t] = ("tcp", a)
print("ready", flush=True)
while True:
    for s in select.select(list(socks), [], [])[0]:
        kind, a = socks[s]
        if kind == "udp":
            data = s.recv(65535)
        else:
            c, _ = s.accept()
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
        print(kind, a, data.decode(errors="replace").strip(), flush=True)
EOF
	SL_SERVER_PID=$!
	wait_for 10 grep -q '^ready' "$SL_SERVER_LOG" || sl_die "world listeners did not start"
}

# sl_server_seen udp|tcp DEST — how many datagrams / TCP messages the world received.
sl_server_seen() {
	grep -c "^$1 $2 " "$SL_SERVER_LOG" || true
}

# --- assertions -------------------------------------------------------------------------

# check DESCRIPTION ACTUAL EXPECTED — TAP-style line; failures are counted, not fatal, so
# one run reports every mismatch.
check() {
	SL_CHECKS=$((SL_CHECKS + 1))
	if [ "$2" = "$3" ]; then
		printf 'ok %d - %s (%s)\n' "$SL_CHECKS" "$1" "$2"
	else
		printf 'not ok %d - %s: got "%s", want "%s"\n' "$SL_CHECKS" "$1" "$2" "$3"
		SL_FAILURES=$((SL_FAILURES + 1))
	fi
}

# check_ge DESCRIPTION ACTUAL MINIMUM — integers
check_ge() {
	SL_CHECKS=$((SL_CHECKS + 1))
	if [[ "$2" =~ ^[0-9]+$ ]] && [ "$2" -ge "$3" ]; then
		printf 'ok %d - %s (%s >= %s)\n' "$SL_CHECKS" "$1" "$2" "$3"
	else
		printf 'not ok %d - %s: got "%s", want >= %s\n' "$SL_CHECKS" "$1" "$2" "$3"
		SL_FAILURES=$((SL_FAILURES + 1))
	fi
}

# check_match DESCRIPTION TEXT EXTENDED-REGEX
check_match() {
	SL_CHECKS=$((SL_CHECKS + 1))
	if printf '%s' "$2" | grep -Eq -- "$3"; then
		printf 'ok %d - %s\n' "$SL_CHECKS" "$1"
	else
		printf 'not ok %d - %s: "%s" does not match /%s/\n' "$SL_CHECKS" "$1" "$2" "$3"
		SL_FAILURES=$((SL_FAILURES + 1))
	fi
}

# bad_cmd DESC EXPECTED_RC ERE -- COMMAND... — COMMAND must exit EXPECTED_RC, print nothing
# on stdout, and on stderr exactly one "sluice: error: " line matching ERE (a usage error
# may add one "Try 'sluice help CMD'." line).
bad_cmd() {
	local desc=$1 want_rc=$2 re=$3 rc=0 err out nerr nother
	shift 4
	out=$("$@" 2>"$SL_TMP/stderr") || rc=$?
	err=$(cat "$SL_TMP/stderr")
	check "$desc: exit status" "$rc" "$want_rc"
	check "$desc: nothing on stdout" "$out" ""
	nerr=$(grep -c '^sluice: error: ' <<<"$err" || true)
	nother=$(grep -v -c -e '^sluice: error: ' -e "^Try 'sluice help [a-z]*'\.\$" <<<"$err" || true)
	check "$desc: one 'sluice: error:' line on stderr" "$nerr/$nother" "1/0"
	[ "$nerr/$nother" = 1/0 ] || printf '# stderr was: %s\n' "$err"
	check_match "$desc: message" "$(grep '^sluice: error: ' <<<"$err" | head -n1 || true)" "$re"
}

sl_finish() {
	if [ "$SL_FAILURES" -ne 0 ]; then
		printf '# FAILED %d of %d checks\n' "$SL_FAILURES" "$SL_CHECKS"
		exit 1
	fi
	printf '# all %d checks passed\n' "$SL_CHECKS"
}

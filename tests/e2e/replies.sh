#!/usr/bin/env bash
# Acceptance test of stateful replies under `default deny`, enforce mode:
#
#   inbound   a world address the policy denies opens a TCP connection to a service in
#             the node namespace and exchanges data both ways; a UDP request gets its
#             response; IPv4 and IPv6. Both sides check every byte arrived.
#   outbound  the node connecting to that same address (TCP) or sending to it (UDP)
#             gets nothing through.
#   counted   `sluice dest --json` shows the node's answers under verdict `reply`, packets
#             and bytes equal to what crossed the wire.
#   off       with `replies off` loaded, the inbound exchanges fail.
#   spoofed   a crafted SYN (and a UDP datagram) to a port where nothing listens does not
#             open a hole: later outbound data from that port to the sender is dropped.
#
# usage: replies.sh PATH/TO/sluice   (root; builds its own namespaces, see lib.sh)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/lib.sh
source "$here/lib.sh"
sl_init "${1:-}"
sl_setup

PEER=203.0.113.10    # a world address the policy denies
PEER6=2001:db8:d::10
SVC_PORT=7070        # the node's service (TCP and UDP)
REQ=30000            # bytes the world sends over TCP
RESP=200000          # bytes the node answers with
UDP_RESP=1200        # bytes of the node's UDP answer
CLOSED_PORT=7777     # nothing listens on it in the node
PEER_PORT=45678      # the spoofer's port; a world listener waits there
L2=14

policy=$SL_TMP/policy.conf
cat >"$policy" <<'EOF'
mode enforce
default deny
allow 198.51.100.10
EOF
policy_off=$SL_TMP/policy-off.conf
{ cat "$policy"; echo "replies off"; } >"$policy_off"

# The node's service: TCP reads the request to its end, then answers RESP bytes; UDP
# answers each datagram with UDP_RESP bytes. One line per request in node.log.
node_service() {
	in_node python3 - "$SVC_PORT" "$RESP" "$UDP_RESP" "$SL_NODE_V4" "$SL_NODE_V6" \
		>>"$SL_TMP/node.log" 2>&1 <<'EOF' &
import select, socket, sys
port, resp, uresp = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
socks = {}
for a in sys.argv[4:]:
    fam = socket.AF_INET6 if ":" in a else socket.AF_INET
    t = socket.socket(fam, socket.SOCK_STREAM)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind((a, port))
    t.listen(8)
    u = socket.socket(fam, socket.SOCK_DGRAM)
    u.bind((a, port))
    socks[t], socks[u] = "tcp", "udp"
print("ready", flush=True)
while True:
    for s in select.select(list(socks), [], [])[0]:
        if socks[s] == "udp":
            data, peer = s.recvfrom(65535)
            s.sendto(b"u" * uresp, peer)
            print("udp", peer[0], len(data), flush=True)
            continue
        c, peer = s.accept()
        c.settimeout(5)
        n = 0
        try:
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                n += len(chunk)
            c.sendall(b"r" * resp)
        except OSError:
            pass
        c.close()
        print("tcp", peer[0], n, flush=True)
EOF
	NODE_SVC_PID=$!
	wait_for 10 grep -q '^ready' "$SL_TMP/node.log" || sl_die "node service did not start"
}
NODE_SVC_PID=
stop_node_service() { sl_kill_wait "$NODE_SVC_PID"; }
SL_CLEANUP_HOOKS+=(stop_node_service)

# world_client tcp|udp SRC DST — from world, bound to SRC: TCP sends REQ bytes and reads
# the answer to its end; UDP sends one datagram and waits for one. Prints "SENT RECEIVED"
# or "failed: REASON".
world_client() {
	in_world python3 - "$1" "$2" "$3" "$SVC_PORT" "$REQ" <<'EOF'
import socket, sys
kind, src, dst, port, req = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
s.bind((src, 0))
s.settimeout(3)
try:
    if kind == "udp":
        s.sendto(b"q" * 100, (dst, port))
        print(100, len(s.recv(65535)))
    else:
        s.connect((dst, port))
        s.sendall(b"q" * req)
        s.shutdown(socket.SHUT_WR)
        n = 0
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            n += len(chunk)
        print(req, n)
except OSError as e:
    print("failed: %s" % (e.strerror or type(e).__name__))
EOF
}

# node_received tcp|udp PEER — the byte counts the node's service logged for PEER
node_received() {
	awk -v k="$1" -v p="$2" '$1 == k && $2 == p { print $3 }' "$SL_TMP/node.log" | paste -sd' '
}

sl_server_start # world listeners on every SL_DEST, PEER included (SL_TCP_PORT, SL_UDP_PORT)
node_service
sluice_start "$policy"
sl_log "links pinned: $(ls "$SL_PIN_DIR/links" 2>/dev/null | paste -sd" ")"

# --- inbound: the world opens, the node answers ------------------------------------------
sl_counters_reset
r0=$(sl_dest_count "$PEER" reply packets)
check "TCP from $PEER: both directions complete" "$(world_client tcp "$PEER" "$SL_NODE_V4")" \
	"$REQ $RESP"
check "TCP from $PEER: the node's service got the whole request" \
	"$(node_received tcp "$PEER")" "$REQ"
check "UDP from $PEER: the node's response arrives" \
	"$(world_client udp "$PEER" "$SL_NODE_V4")" "100 $UDP_RESP"
check "UDP from $PEER: the node's service got the request" "$(node_received udp "$PEER")" 100
check "TCP from $PEER6: both directions complete" \
	"$(world_client tcp "$PEER6" "$SL_NODE_V6")" "$REQ $RESP"
check "TCP from $PEER6: the node's service got the whole request" \
	"$(node_received tcp "$PEER6")" "$REQ"
check "UDP from $PEER6: the node's response arrives" \
	"$(world_client udp "$PEER6" "$SL_NODE_V6")" "100 $UDP_RESP"
sleep 0.3 # the last ACKs of the teardowns
for d in "$PEER" "$PEER6"; do
	wire_p=$(sl_count in "$d" all packets)
	wire_b=$(sl_count in "$d" all bytes)
	check_ge "$d: the node's answers crossed the wire" "$wire_p" 10
	check "$d: sluice counts every answer under reply (packets)" \
		"$(sl_dest_count "$d" reply packets)" "$wire_p"
	check "$d: sluice counts every answer under reply (bytes)" \
		"$(sl_dest_count "$d" reply bytes)" "$((wire_b + L2 * wire_p))"
	check "$d: nothing denied in the exchange" "$(sl_dest_count "$d" deny packets)" 0
done
check "sluice stats: reply packets under reason reply" \
	"$(sl stats --json | jq -r '[.totals[] | select(.hook == "tc_egress" and
		.verdict == "reply" and .reason == "reply") | .packets] | add // 0')" \
	"$(($(sl_dest_count "$PEER" reply packets) + $(sl_dest_count "$PEER6" reply packets)))"

# --- outbound: the node opens, nothing gets through ---------------------------------------
reply_before=$(sl_dest_count "$PEER" reply packets)
sl_counters_reset
check_match "TCP from the node to $PEER fails" "$(sl_tcp_send "$PEER")" '^failed: '
sl_udp_send "$PEER" 3
sl_udp_send "$PEER6" 3
check_match "TCP from the node to $PEER6 fails" "$(sl_tcp_send "$PEER6")" '^failed: '
sleep 0.3
check "world listener on $PEER got no TCP message" "$(sl_server_seen tcp "$PEER")" 0
check "world socket on $PEER got no datagram" "$(sl_server_seen udp "$PEER")" 0
check "world socket on $PEER6 got no datagram" "$(sl_server_seen udp "$PEER6")" 0
check "nothing from the node reached $PEER" "$(sl_count in "$PEER" all packets)" 0
check "nothing from the node reached $PEER6" "$(sl_count in "$PEER6" all packets)" 0
check "$PEER: node-initiated packets are not replies" \
	"$(sl_dest_count "$PEER" reply packets)" "$reply_before"
check_ge "$PEER: node-initiated packets denied" "$(sl_dest_count "$PEER" deny packets)" 4

# --- spoofed: a SYN or datagram to a closed port opens nothing ----------------------------
# World listeners wait on PEER:PEER_PORT; the node will try to reach them from CLOSED_PORT.
in_world python3 - "$PEER" "$PEER_PORT" >>"$SL_TMP/spoof-listener.log" 2>&1 <<'EOF' &
import select, socket, sys
a, port = sys.argv[1], int(sys.argv[2])
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind((a, port)); t.listen(4)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((a, port))
print("ready", flush=True)
while True:
    for s in select.select([t, u], [], [])[0]:
        if s is u:
            print("udp", len(u.recv(65535)), flush=True)
        else:
            c, _ = t.accept()
            print("tcp connection", flush=True)
            c.close()
EOF
SPOOF_LISTENER_PID=$!
stop_spoof_listener() { sl_kill_wait "$SPOOF_LISTENER_PID"; }
SL_CLEANUP_HOOKS+=(stop_spoof_listener)
wait_for 10 grep -q '^ready' "$SL_TMP/spoof-listener.log" || sl_die "spoof listener did not start"

# A crafted SYN and a UDP datagram from PEER:PEER_PORT to the node's closed port.
in_world python3 - "$PEER" "$SL_NODE_V4" "$PEER_PORT" "$CLOSED_PORT" <<'EOF'
import socket, struct, sys
src, dst, sport, dport = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def csum(b):
    if len(b) % 2:
        b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while t >> 16:
        t = (t & 0xffff) + (t >> 16)
    return ~t & 0xffff
sa, da = socket.inet_aton(src), socket.inet_aton(dst)
for proto, hdr in ((socket.IPPROTO_TCP,
                    struct.pack("!HHIIBBHHH", sport, dport, 0x5eed, 0, 5 << 4, 0x02, 65535, 0, 0)),
                   (socket.IPPROTO_UDP, struct.pack("!HHHH", sport, dport, 12, 0) + b"spoof")):
    pseudo = sa + da + struct.pack("!xBH", proto, len(hdr))
    c = csum(pseudo + hdr)
    off = 16 if proto == socket.IPPROTO_TCP else 6
    pkt = hdr[:off] + struct.pack("!H", c) + hdr[off + 2:]
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
    s.bind((src, 0))
    s.sendto(pkt, (dst, 0))
EOF
sleep 0.3
deny0=$(sl_dest_count "$PEER" deny packets)
reply0=$(sl_dest_count "$PEER" reply packets)
sl_counters_reset
# The node now sends from the closed port to the spoofer: TCP and UDP.
out=$(in_node python3 - "$SL_NODE_V4" "$CLOSED_PORT" "$PEER" "$PEER_PORT" <<'EOF'
import socket, sys
src, sport, dst, dport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind((src, sport))
for i in range(3):
    try:
        u.sendto(b"data after a spoofed datagram", (dst, dport))
    except OSError:
        pass
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind((src, sport))
t.settimeout(2)
try:
    t.connect((dst, dport))
    t.sendall(b"data after a spoofed SYN")
    print("connected")
except OSError as e:
    print("failed: %s" % (e.strerror or type(e).__name__))
EOF
)
sleep 0.3
check_match "after a spoofed SYN: the node's connection from the closed port fails" "$out" \
	'^failed: '
check "after a spoofed SYN: the spoofer's listener saw no connection" \
	"$(grep -c '^tcp' "$SL_TMP/spoof-listener.log" || true)" 0
check "after a spoofed datagram: the spoofer's socket got nothing" \
	"$(grep -c '^udp' "$SL_TMP/spoof-listener.log" || true)" 0
check "after the spoofs: nothing from the node reached $PEER" \
	"$(sl_count in "$PEER" all packets)" 0
check "after the spoofs: no reply counted" "$(sl_dest_count "$PEER" reply packets)" "$reply0"
check_ge "after the spoofs: the node's packets denied" \
	"$(($(sl_dest_count "$PEER" deny packets) - deny0))" 4

# --- replies off: the inbound exchanges fail ---------------------------------------------
check "policy load with replies off" "$(sl policy load "$policy_off" >/dev/null 2>&1; echo $?)" 0
sl_counters_reset
check_match "replies off: TCP from $PEER fails" "$(world_client tcp "$PEER" "$SL_NODE_V4")" \
	'^failed: '
check_match "replies off: UDP from $PEER gets no response" \
	"$(world_client udp "$PEER" "$SL_NODE_V4")" '^failed: '
check_match "replies off: TCP from $PEER6 fails" "$(world_client tcp "$PEER6" "$SL_NODE_V6")" \
	'^failed: '
check "replies off: nothing from the node reached $PEER" "$(sl_count in "$PEER" all packets)" 0
check "replies off: the node's UDP service did get the request" \
	"$(node_received udp "$PEER" | wc -w)" 2

sl_finish

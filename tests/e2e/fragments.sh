#!/usr/bin/env bash
# Acceptance test of fragments: 8 KB UDP datagrams, which the node's stack cuts into six
# fragments each (MTU 1500), IPv4 and IPv6.
#
#   allowed port      `allow DEST udp 9999` under `default deny`: every datagram arrives
#                     whole. Only the first fragment carries the port; the later ones pass
#                     because they follow the first fragment's verdict.
#   denied dest       default deny: the receiver gets no datagram, nothing is on the wire.
#   denied port       the first fragment is denied by a port rule inside a broader allow;
#                     later fragments, which alone would be allowed by the broader rule,
#                     follow the first fragment and are denied too: not one fragment of
#                     those datagrams reaches the wire.
#
# Judged at the receiving side (the world's UDP sockets and nft counters on its veth) and
# by sluice's per-destination counters, which must count every fragment.
#
# usage: fragments.sh PATH/TO/sluice   (root; builds its own namespaces, see lib.sh)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/lib.sh
source "$here/lib.sh"
sl_init "${1:-}"
sl_setup

N=20       # datagrams per destination
SIZE=8192  # UDP payload bytes
FRAGS=6    # 8200 bytes of UDP in 1480-byte (IPv4) or 1448-byte (IPv6) fragments

policy=$SL_TMP/policy.conf
cat >"$policy" <<EOF
mode enforce
default deny
allow 198.51.100.10 udp $SL_UDP_PORT name frag-v4
allow 2001:db8:a::10 udp $SL_UDP_PORT name frag-v6
allow 198.51.100.128/25
deny  198.51.100.200 udp $SL_UDP_PORT name port-v4
allow 2001:db8:a:bad::/64
deny  2001:db8:a:bad::10 udp $SL_UDP_PORT name port-v6
EOF

# send_big DEST — N datagrams of SIZE bytes to DEST:SL_UDP_PORT. A datagram sluice drops
# may be reported as ENOBUFS (the fragments were still handed to the device).
send_big() {
	in_node python3 - "$1" "$SL_UDP_PORT" "$N" "$SIZE" <<'EOF'
import errno, socket, sys, time
dst, port, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_DGRAM)
for i in range(n):
    time.sleep(0.005)  # pace: the receiver's socket buffer holds only a few reassembled datagrams
    head = b"frag %d " % i
    try:
        s.sendto(head + b"x" * (size - len(head)), (dst, port))
    except OSError as e:
        if e.errno not in (errno.ENOBUFS, errno.EPERM):
            raise
EOF
}

# send_crafted DEST — the same N datagrams, fragmented by hand and written to the node's
# veth through a packet socket, one fragment per send: each fragment meets sluice on its
# own, whatever sluice did to the ones before it. (The stack stops sending a datagram's
# fragments once the device refuses one, so it cannot show what later fragments get.)
send_crafted() {
	in_node python3 - "$1" "$SL_UDP_PORT" "$N" "$SIZE" "$SL_NODE_IF" "$SL_NODE_MAC" \
		"$SL_WORLD_MAC" "$SL_NODE_V4" "$SL_NODE_V6" <<'EOF'
import errno, socket, struct, sys, time
dst, port, n, size, ifname, smac, dmac, src4, src6 = sys.argv[1:]
port, n, size = int(port), int(n), int(size)
v6 = ":" in dst
def mac(m):
    return bytes(int(x, 16) for x in m.split(":"))
def csum(b):
    if len(b) % 2:
        b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while t >> 16:
        t = (t & 0xffff) + (t >> 16)
    return ~t & 0xffff
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
if v6:
    sa, da = socket.inet_pton(socket.AF_INET6, src6), socket.inet_pton(socket.AF_INET6, dst)
else:
    sa, da = socket.inet_aton(src4), socket.inet_aton(dst)
for i in range(n):
    time.sleep(0.005)  # pace, as in send_big
    head = b"frag %d " % i
    data = head + b"y" * (size - len(head))
    ulen = 8 + len(data)
    if v6:
        pseudo = sa + da + struct.pack("!I3xB", ulen, 17)
    else:
        pseudo = sa + da + struct.pack("!xBH", 17, ulen)
    udp = struct.pack("!HHHH", 41000 + i, port, ulen, 0) + data
    c = csum(pseudo + udp) or 0xffff
    dgram = udp[:6] + struct.pack("!H", c) + udp[8:]
    step = 1448 if v6 else 1480
    ident = 0x5100 + i
    for off in range(0, len(dgram), step):
        chunk = dgram[off:off + step]
        more = 1 if off + step < len(dgram) else 0
        if v6:
            frag = struct.pack("!BBHI", 17, 0, off | more, ident)
            ip = struct.pack("!IHBB", 6 << 28, len(frag) + len(chunk), 44, 64) + sa + da + frag
            eth = mac(dmac) + mac(smac) + b"\x86\xdd"
        else:
            hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(chunk), ident,
                              (off // 8) | (0x2000 * more), 64, 17, 0, sa, da)
            ip = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
            eth = mac(dmac) + mac(smac) + b"\x08\x00"
        try:
            s.send(eth + ip + chunk)
        except OSError as e:
            if e.errno not in (errno.ENOBUFS, errno.EPERM):
                raise
EOF
}

# whole DEST MARK — datagrams of SIZE bytes to DEST that the world's socket received, with
# a payload of MARK bytes (x: fragmented by the stack, y: by hand)
whole() {
	grep -E "^udp $1 frag [0-9]+ $2+\$" "$SL_SERVER_LOG" |
		awk -v d="$1" -v len="$SIZE" 'length($0) == length("udp " d " ") + len' | wc -l
}
seen() { grep -cE "^udp $1 frag [0-9]+ $2+\$" "$SL_SERVER_LOG" || true; }

sl_server_start
sluice_start "$policy"

allowed=(198.51.100.10 2001:db8:a::10)
denied_dest=(203.0.113.10 2001:db8:d::10)       # default deny
denied_port=(198.51.100.200 2001:db8:a:bad::10) # a port rule denies, a broader prefix allows

# --- fragmented by the node's own stack -------------------------------------------------
sl_counters_reset
for d in "${allowed[@]}" "${denied_dest[@]}" "${denied_port[@]}"; do
	send_big "$d"
done
sleep 0.5 # let the receiver log the last datagrams
for d in "${allowed[@]}"; do
	check "stack: $d: all $N datagrams of $SIZE bytes reassembled" "$(whole "$d" x)" "$N"
	check "stack: $d: every fragment crossed the wire" "$(sl_count in "$d" udp packets)" \
		$((N * FRAGS))
	check "stack: $d: sluice counted every fragment as allowed" \
		"$(sl_dest_count "$d" allow packets)" $((N * FRAGS))
	check "stack: $d: sluice denied none" "$(sl_dest_count "$d" deny packets)" 0
done
for d in "${denied_dest[@]}" "${denied_port[@]}"; do
	check "stack: $d: the receiver got no datagram" "$(seen "$d" x)" 0
	check "stack: $d: no fragment crossed the wire" "$(sl_count in "$d" all packets)" 0
	# The stack gives up on a datagram at its first refused fragment: at least one each.
	check_ge "stack: $d: sluice denied the fragments it saw" \
		"$(sl_dest_count "$d" deny packets)" "$N"
	check "stack: $d: sluice allowed none" "$(sl_dest_count "$d" allow packets)" 0
done

# --- fragmented by hand, each fragment sent on its own ----------------------------------
declare -A allow0 deny0
for d in "${allowed[@]}" "${denied_port[@]}"; do
	allow0[$d]=$(sl_dest_count "$d" allow packets)
	deny0[$d]=$(sl_dest_count "$d" deny packets)
done
sl_counters_reset
for d in "${allowed[@]}" "${denied_port[@]}"; do
	send_crafted "$d"
done
sleep 0.5
for d in "${allowed[@]}"; do
	check "crafted: $d: all $N datagrams reassembled" "$(whole "$d" y)" "$N"
	check "crafted: $d: every fragment crossed the wire" "$(sl_count in "$d" udp packets)" \
		$((N * FRAGS))
	check "crafted: $d: sluice counted every fragment as allowed" \
		$(($(sl_dest_count "$d" allow packets) - allow0[$d])) $((N * FRAGS))
done
for d in "${denied_port[@]}"; do
	# Alone, a later fragment would be allowed here (198.51.100.128/25 and
	# 2001:db8:a:bad::/64 allow without ports): it must follow its first fragment.
	check "crafted: $d: the receiver got no datagram" "$(seen "$d" y)" 0
	check "crafted: $d: no fragment crossed the wire" "$(sl_count in "$d" all packets)" 0
	check "crafted: $d: sluice denied every fragment" \
		$(($(sl_dest_count "$d" deny packets) - deny0[$d])) $((N * FRAGS))
	check "crafted: $d: sluice allowed none" \
		$(($(sl_dest_count "$d" allow packets) - allow0[$d])) 0
done
sl_finish

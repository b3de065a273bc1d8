#!/usr/bin/env bash
# Acceptance test of atomic policy replacement under load. UDP runs continuously from the
# node to three address groups while two policies are swapped back and forth (SIGHUP to
# `sluice run`, and `sluice policy load` where this build has it):
#
#   A  allowed by P_A only      B  allowed by P_B only      N  denied by both
#
# Checked, exactly: nothing sent to N ever reaches the world and sluice counts all of it as
# denied; for every destination, sluice's allow + deny packets equal what the node's stack
# sent there (each packet decided once) and its allow packets equal what crossed the wire;
# every swap moved the generation by one. Per packet: each datagram carries a sequence
# number, the sender records when its sendto() began and ended, and the swapper records
# when each swap began and when the new generation was seen in force. A packet sent wholly
# inside a window where one policy was certainly in force must have arrived if and only if
# that policy allows its destination — a stale or half-applied decision shows up there.
#
# usage: atomic_swap.sh PATH/TO/sluice   (root; builds its own namespaces, see lib.sh)
# SLUICE_SWAPS (default 60) swaps; SLUICE_SWAP_RATE (default 20000) datagrams per second.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/lib.sh
source "$here/lib.sh"

# The groups, IPv4 and IPv6 in each, all routed to world (see lib.sh). N sits inside the
# ranges A and B are allowed from, below a more specific deny, so only longest-prefix
# matching against one whole policy keeps it out.
GROUP_A=(198.51.100.10 198.51.100.20 2001:db8:a::10 2001:db8:a:1::20)
GROUP_B=(203.0.113.10 203.0.113.20 2001:db8:d::10 2001:db8:d:1::20)
GROUP_N=(198.51.100.200 203.0.113.200 2001:db8:a:bad::10 2001:db8:d:bad::10)
# The world holds exactly these: lib.sh puts each on its loopback and counts it both sides.
SL_DESTS=("${GROUP_A[@]}" "${GROUP_B[@]}" "${GROUP_N[@]}")
SWAPS=${SLUICE_SWAPS:-60}
RATE=${SLUICE_SWAP_RATE:-20000}
DWELL=0.15 # seconds each policy stays certainly in force before the next swap begins

sl_init "${1:-}"
sl_setup
# No ARP during the run: an IPv4 packet queued behind neighbour resolution passes the
# node's nft counter and may be dropped before sluice sees it.
ip -n "$SL_NODE_NS" neigh replace "$SL_WORLD_V4" lladdr "$SL_WORLD_MAC" nud permanent \
	dev "$SL_NODE_IF"

# P_A and P_B turn the same /24 (/48) from allow to deny and back while a more specific
# deny inside it keeps N out in both. A switch done in steps — the broad entry first, the
# specific one after, or the old cache kept under the new generation — lets N through or
# decides A or B by the policy not in force.
pa=$SL_TMP/pa.conf
pb=$SL_TMP/pb.conf
cat >"$pa" <<'EOF'
# P_A: group A only
mode enforce
default deny
allow 198.51.100.0/24
deny  198.51.100.128/25
deny  203.0.113.0/24
allow 2001:db8:a::/48
deny  2001:db8:a:bad::/64
deny  2001:db8:d::/48
EOF
cat >"$pb" <<'EOF'
# P_B: group B only
mode enforce
default deny
allow 203.0.113.0/24
deny  203.0.113.128/25
deny  198.51.100.0/24
allow 2001:db8:d::/48
deny  2001:db8:d:bad::/64
deny  2001:db8:a::/48
EOF
policy=$SL_TMP/policy.conf # the daemon's --policy, rewritten before each SIGHUP
cp "$pa" "$policy"

# --- the sender (node) and the receiver (world) -----------------------------------------

cat >"$SL_TMP/sender.py" <<'EOF'
# Round-robin UDP to every destination at about RATE datagrams/s until STOP exists. Each
# datagram carries its sequence number (destination = seq % len(dests)); the wall-clock
# time (ns) just before and just after its sendto() goes to OUT.t0 / OUT.t1, the
# per-destination counts to OUT.json.
import array, errno, json, os, socket, struct, sys, time
out, stop, port, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
dests = sys.argv[5:]
socks = {f: socket.socket(f, socket.SOCK_DGRAM) for f in (socket.AF_INET, socket.AF_INET6)}
targets = [(socks[socket.AF_INET6 if ":" in d else socket.AF_INET], (d, port)) for d in dests]
n = len(targets)
t0s, t1s = array.array("q"), array.array("q")
sent, enobufs = [0] * n, [0] * n
pad = b"sluice-swap" * 3
seq, start = 0, time.monotonic()
while True:
    if seq % 64 == 0:
        if os.path.exists(stop):
            break
        ahead = seq / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
    i = seq % n
    s, addr = targets[i]
    t0 = time.time_ns()
    try:
        s.sendto(struct.pack("!Q", seq) + pad, addr)
    except OSError as e:  # a packet dropped on the node may be reported; it was still sent
        if e.errno != errno.ENOBUFS:
            raise
        enobufs[i] += 1
    t1 = time.time_ns()
    t0s.append(t0)
    t1s.append(t1)
    sent[i] += 1
    seq += 1
with open(out + ".t0", "wb") as f:
    t0s.tofile(f)
with open(out + ".t1", "wb") as f:
    t1s.tofile(f)
with open(out + ".json", "w") as f:
    json.dump({"dests": dests, "sent": sent, "enobufs": enobufs, "total": seq}, f)
EOF

cat >"$SL_TMP/receiver.py" <<'EOF'
# UDP listeners on every destination; on STOP, the sequence numbers received per
# destination go to OUT (JSON). Prints "ready" once bound.
import array, json, os, select, socket, struct, sys, time
out, stop, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
dests = sys.argv[4:]
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
ep, socks = select.epoll(), {}
for i, d in enumerate(dests):
    s = socket.socket(socket.AF_INET6 if ":" in d else socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)  # bursts must not overflow
    s.bind((d, port))
    s.setblocking(False)
    ep.register(s.fileno(), select.EPOLLIN)
    socks[s.fileno()] = (i, s)
seqs = [array.array("Q") for _ in dests]
def drain(i, s):
    while True:
        try:
            data = s.recv(2048)
        except BlockingIOError:
            return
        seqs[i].append(struct.unpack_from("!Q", data)[0])
print("ready", flush=True)
next_check = 0.0
while True:
    for fd, _ in ep.poll(0.1):
        drain(*socks[fd])
    now = time.monotonic()
    if now >= next_check:
        next_check = now + 0.1
        if os.path.exists(stop):
            break
for i, s in socks.values():
    drain(i, s)
with open(out, "w") as f:
    json.dump({d: list(seqs[i]) for i, d in enumerate(dests)}, f)
EOF

# Which packets arrived, against which policy was certainly in force when each was sent.
cat >"$SL_TMP/analyse.py" <<'EOF'
import array, bisect, json, sys
sender, received, swaplog = sys.argv[1], sys.argv[2], sys.argv[3]
group = dict(g.split("=") for g in sys.argv[4:])  # destination -> A | B | N
meta = json.load(open(sender + ".json"))
dests, n = meta["dests"], len(meta["dests"])
t0, t1 = array.array("q"), array.array("q")
with open(sender + ".t0", "rb") as f:
    t0.frombytes(f.read())
with open(sender + ".t1", "rb") as f:
    t1.frombytes(f.read())
got = json.load(open(received))
arrived = set()
unknown = 0
for d, seqs in got.items():
    i = dests.index(d)
    for s in seqs:
        if s >= len(t0) or s % n != i:
            unknown += 1
        arrived.add(s)
def ns(epochrealtime):  # bash $EPOCHREALTIME: seconds.microseconds
    sec, usec = epochrealtime.replace(",", ".").split(".")  # the locale's decimal point
    return int(sec) * 10**9 + int(usec.ljust(6, "0")) * 1000
# swap log: "POLICY T_BEGIN T_CONFIRMED"; the first line is the initial policy, "?" a swap
# that failed (what was in force after it began is unknown).
pols, begin, conf = [], [], []
for line in open(swaplog):
    p, b, c = line.split()
    pols.append(p)
    begin.append(ns(b))
    conf.append(ns(c))
begin.append(1 << 62)  # no change after the last swap
r = {"classified": 0, "uncertain": 0, "leaked": 0, "missing": 0, "unknown_seq": unknown,
     "arrived": len(arrived), "by_policy": {}, "examples": []}
for s in range(len(t0)):
    d = dests[s % n]
    k = bisect.bisect_right(conf, t0[s]) - 1
    if k < 0 or t1[s] >= begin[k + 1] or pols[k] == "?":
        r["uncertain"] += 1
        continue
    r["classified"] += 1
    key = "%s->%s" % (pols[k], group[d])
    r["by_policy"][key] = r["by_policy"].get(key, 0) + 1
    want, was = group[d] == pols[k], s in arrived
    if want != was:
        r["leaked" if was else "missing"] += 1
        if len(r["examples"]) < 10:
            r["examples"].append({"seq": s, "dst": d, "policy": pols[k], "window": k,
                                  "arrived": was})
print(json.dumps(r))
EOF

sender_out=$SL_TMP/sender
received=$SL_TMP/received.json
recv_log=$SL_TMP/receiver.log
# Started directly, not through in_world/in_node, so that $! is python itself.
ip netns exec "$SL_WORLD_NS" python3 "$SL_TMP/receiver.py" "$received" "$SL_TMP/stop.receiver" \
	"$SL_UDP_PORT" "${SL_DESTS[@]}" >"$recv_log" 2>&1 &
SL_SERVER_PID=$!
wait_for 10 grep -q '^ready' "$recv_log" || sl_die "receiver did not start: $(cat "$recv_log")"

sl_log "sluice run --iface $SL_NODE_IF --policy $policy (pins in $SL_PIN_DIR)"
sluice_start "$policy"

gen_now() { sl stats --json | jq -r .generation; }
# gen_reach WANT — poll until the active generation is at least WANT (5 s at most); prints it.
gen_reach() {
	local g deadline=$((SECONDS + 5))
	while :; do
		g=$(gen_now)
		if [[ $g =~ ^[0-9]+$ ]] && [ "$g" -ge "$1" ]; then
			echo "$g"
			return 0
		fi
		[ $SECONDS -lt $deadline ] || {
			echo "${g:-none}"
			return 1
		}
		sleep 0.005
	done
}

gen0=$(gen_now)
check_match "initial policy generation" "$gen0" '^[1-9][0-9]*$'
have_load=
if "$SLUICE" help 2>/dev/null | grep -qE '^ +policy +' &&
	"$SLUICE" help policy 2>/dev/null | grep -q 'policy load'; then
	have_load=1
fi
n_hup=$SWAPS
[ -n "$have_load" ] && n_hup=$((SWAPS / 2))
sl_log "$SWAPS swaps: $n_hup by SIGHUP, $((SWAPS - n_hup)) by 'sluice policy load'"

sender_status=$SL_TMP/sender.status
(
	rc=0
	in_node python3 "$SL_TMP/sender.py" "$sender_out" "$SL_TMP/stop.sender" "$SL_UDP_PORT" \
		"$RATE" "${SL_DESTS[@]}" 2>"$SL_TMP/sender.err" || rc=$?
	echo "$rc" >"$sender_status"
) &
sender_job=$!
stop_sender() { touch "$SL_TMP/stop.sender"; }
SL_CLEANUP_HOOKS+=(stop_sender)

# --- the swaps --------------------------------------------------------------------------
swaplog=$SL_TMP/swaps.log
printf 'A %s %s\n' "$EPOCHREALTIME" "$EPOCHREALTIME" >"$swaplog" # P_A is already in force
cur=A
swaps_ok=0
swap_failure=
for ((i = 1; i <= SWAPS; i++)); do
	sleep "$DWELL"
	if [ "$cur" = A ]; then next=B file=$pb; else next=A file=$pa; fi
	want=$((gen0 + i))
	if [ "$i" -le "$n_hup" ]; then
		cp "$file" "$policy.new"
		mv -f "$policy.new" "$policy"
		t_begin=$EPOCHREALTIME
		if ! kill -HUP "$SL_SLUICE_PID"; then
			swap_failure="swap $i: the daemon is gone"
			printf '? %s %s\n' "$t_begin" "$t_begin" >>"$swaplog" # in force from now: unknown
			break
		fi
	else
		t_begin=$EPOCHREALTIME
		if ! out=$(in_node "$SLUICE" --pin-dir "$SL_PIN_DIR" --state-dir "$SL_STATE_DIR" \
			policy load "$file" 2>&1); then
			swap_failure="swap $i: sluice policy load failed: $out"
			printf '? %s %s\n' "$t_begin" "$t_begin" >>"$swaplog"
			break
		fi
	fi
	if ! g=$(gen_reach "$want"); then
		swap_failure="swap $i: generation is $g after 5 s, want $want"
		printf '? %s %s\n' "$t_begin" "$t_begin" >>"$swaplog"
		break
	fi
	t_conf=$EPOCHREALTIME
	if [ "$g" != "$want" ]; then
		swap_failure="swap $i: generation jumped to $g, want $want"
		printf '? %s %s\n' "$t_begin" "$t_begin" >>"$swaplog"
		break
	fi
	printf '%s %s %s\n' "$next" "$t_begin" "$t_conf" >>"$swaplog"
	cur=$next
	swaps_ok=$i
done
sleep "$DWELL" # the last policy, too, decides traffic for a while
stop_sender
wait "$sender_job" || true
sleep 0.5 # the last datagrams reach the receiver
touch "$SL_TMP/stop.receiver"
wait "$SL_SERVER_PID" || true
SL_SERVER_PID=

check "swaps confirmed, each moving the generation by one" "$swaps_ok${swap_failure:+ ($swap_failure)}" "$SWAPS"
check "sender finished cleanly" "$(cat "$sender_status" 2>/dev/null)$(head -c 300 "$SL_TMP/sender.err")" 0
check_match "receiver wrote its counts" "$(head -c 1 "$received" 2>/dev/null)" '^\{'
gen_end=$(gen_now)
check "final generation = initial + $SWAPS" "$gen_end" "$((gen0 + SWAPS))"
check "daemon installed the initial policy and each SIGHUP's" \
	"$(grep -cF "policy $policy installed: generation" "$SL_RUN_LOG" || true)" "$((1 + n_hup))"
check "daemon rejected no reload" "$(grep -c 'rejected' "$SL_RUN_LOG" || true)" 0

# --- exact counts per destination -------------------------------------------------------
dest_json=$(sl dest --json --top 0)
printf '%s\n' "$dest_json" >"$SL_TMP/dest.json"
by() {
	jq -r --arg d "$1" --arg v "$2" \
		'[.[] | select(.destination == $d) | .by_verdict[$v].packets // 0] | add // 0' \
		<<<"$dest_json"
}
others() { # packets with any verdict other than allow and deny
	jq -r --arg d "$1" '[.[] | select(.destination == $d) | .by_verdict
		| to_entries[] | select(.key != "allow" and .key != "deny") | .value.packets] | add // 0' \
		<<<"$dest_json"
}
sent_by_sender() { jq -r --arg d "$1" '.sent[.dests | index($d)]' "$sender_out.json"; }
seen_by_receiver() { jq -r --arg d "$1" '.[$d] | length' "$received"; }

declare -A grp
for d in "${GROUP_A[@]}"; do grp[$d]=A; done
for d in "${GROUP_B[@]}"; do grp[$d]=B; done
for d in "${GROUP_N[@]}"; do grp[$d]=N; done

total_sent=0
for d in "${SL_DESTS[@]}"; do
	g=${grp[$d]}
	sent=$(sl_count out "$d" all packets)
	wire=$(sl_count in "$d" all packets)
	allow=$(by "$d" allow)
	deny=$(by "$d" deny)
	total_sent=$((total_sent + sent))
	check "$d ($g): the node's stack sent every datagram the sender sent" \
		"$sent" "$(sent_by_sender "$d")"
	check "$d ($g): sluice allow + deny = packets the node sent" "$((allow + deny))" "$sent"
	check "$d ($g): no other verdict" "$(others "$d")" 0
	check "$d ($g): world received = sluice allow" "$wire" "$allow"
	check "$d ($g): world's socket received = world's wire count" "$(seen_by_receiver "$d")" "$wire"
	if [ "$g" = N ]; then
		check "$d (N): nothing arrived" "$wire" 0
		check "$d (N): all denied" "$deny" "$sent"
		check_ge "$d (N): traffic was sent" "$sent" 100
	else
		# Both policies decided this destination, many times each.
		check_ge "$d ($g): allowed under P_$g" "$allow" 100
		check_ge "$d ($g): denied under the other policy" "$deny" 100
	fi
done
check_ge "datagrams sent in all" "$total_sent" 20000
# Every test destination matches a rule in both policies, so a packet decided by the
# default or with no policy at all was decided by neither P_A nor P_B (a trie caught
# half-filled or empty). The link carries nothing but the test's datagrams (see lib.sh).
stats_json=$(sl stats --json)
reason_packets() {
	jq -r --arg r "$1" '[.totals[] | select(.reason == $r) | .packets] | add // 0' <<<"$stats_json"
}
check "node totals: every packet decided by a rule" "$(reason_packets rule)" "$total_sent"
check "node totals: none decided by the default" "$(reason_packets default)" 0
check "node totals: none decided without a policy" "$(reason_packets no_policy)" 0

# The decision each destination holds now is the final policy's.
for d in "${SL_DESTS[@]}"; do
	want=deny
	[ "${grp[$d]}" = "$cur" ] && want=allow
	check "$d: cached verdict under the final P_$cur" \
		"$(jq -r --arg d "$d" '[.[] | select(.destination == $d) | .verdict] | first // "absent"' \
			<<<"$dest_json")" "$want"
done

# --- per packet: decided by the policy in force -----------------------------------------
groups=()
for d in "${SL_DESTS[@]}"; do groups+=("$d=${grp[$d]}"); done
verdicts=$(python3 "$SL_TMP/analyse.py" "$sender_out" "$received" "$swaplog" "${groups[@]}") ||
	verdicts='{}'
printf '%s\n' "$verdicts" >"$SL_TMP/analysis.json"
sl_log "per-packet analysis: $(jq -c 'del(.examples)' <<<"$verdicts")"
check "received sequence numbers all belong to their destination" \
	"$(jq -r '.unknown_seq' <<<"$verdicts")" 0
check "no packet passed that the policy in force denies" "$(jq -r '.leaked' <<<"$verdicts")$(
	jq -r 'if .leaked > 0 then " e.g. \(.examples | map(select(.arrived)) | .[:3])" else "" end' \
		<<<"$verdicts")" 0
check "no packet dropped that the policy in force allows" "$(jq -r '.missing' <<<"$verdicts")$(
	jq -r 'if .missing > 0 then " e.g. \(.examples | map(select(.arrived | not)) | .[:3])" else "" end' \
		<<<"$verdicts")" 0
for k in "A->A" "A->B" "A->N" "B->A" "B->B" "B->N"; do
	check_ge "packets sent while one policy was certainly in force: P_$k" \
		"$(jq -r --arg k "$k" '.by_policy[$k] // 0' <<<"$verdicts")" 100
done

sl_finish

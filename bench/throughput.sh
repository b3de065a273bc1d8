#!/usr/bin/env bash
# Throughput over a veth pair between two network namespaces, with each egress filter an
# admin could use in turn on the sender:
#   none            no filter (the baseline)
#   sluice          `sluice run --iface` on the sender's veth, the generated policy
#   nft             the same prefixes in nft interval sets, output hook
#   ipset           the same prefixes in ipset hash:net sets, matched by iptables OUTPUT rules
#   iptables-N      the first N IPv4 prefixes as N linear iptables OUTPUT rules (--linear)
# Then one more run per test for sluice alone, with the kernel timing its tc egress program
# (BPF run-time statistics, on for that run only, kept out of the figures):
# throughput-inpath.tsv gives its ns per run in the real path — how much of a packet's
# time is sluice's.
# Tests: TCP (iperf3, one stream, client and server on one CPU) and small UDP datagrams (sluice-bench-udp: 64-byte
# payloads, sendmmsg, as fast as one CPU sends; packets/s received). The traffic goes to an
# allowed destination (198.51.100.10); the policy also holds --prefixes generated prefixes
# (a quarter of them denied) in 10.0.0.0/8 and fd00::/8, where no packet of the benchmark
# goes, and denies 198.51.100.200, which is checked to be dropped before anything is
# measured (so a filter that silently failed to load cannot pass for a fast one).
#
# Every contender has a pair of namespaces of its own (node: sender and filter; world: the
# receivers), built by tests/e2e/lib.sh, so all filters stay loaded for the whole run and
# repetitions interleave them (rotating who goes first) without reloading anything.
# Rules, sets and the sluice pins live in those namespaces and in a bpffs mounted for this
# run; the EXIT trap deletes all of it. Nothing is attached to, or loaded in, the root
# namespace. Documentation addresses only.
#
# Usage: bench/throughput.sh --build-dir DIR --out DIR [--seconds S] [--reps N]
#                            [--prefixes N] [--linear N[,N...]] [--only LIST]
#                            [--iptables NAME]
#   --build-dir    the CMake build tree (sluice, sluice-bench-udp, sluice-bench-rulegen)
#   --out          where throughput-raw.tsv, throughput.tsv and throughput-meta.tsv go
#   --seconds      length of each run (default 5)
#   --reps         interleaved repetitions (default 5)
#   --prefixes     generated prefixes in the policy (default 100000)
#   --linear       sizes of the linear iptables rulesets (default 1000,10000)
#   --only         comma-separated contenders to run (default: all; none is always run)
#   --iptables     iptables binary (default iptables; e.g. iptables-legacy), ip6tables alike
# Needs root. Prints progress on stderr and the summary table on stdout.
set -euo pipefail

self=$(readlink -f "$0")
root=$(cd "$(dirname "$self")/.." && pwd)
# shellcheck source=tests/e2e/lib.sh
source "$root/tests/e2e/lib.sh"

build_dir=
out=
run_seconds=5
reps=5
prefixes=100000
linear=1000,10000
only=
iptables=iptables

usage() {
	sed -n '2,/^set -euo/p' "$self" | sed -e '$d' -e 's/^# \{0,1\}//'
}
bad_usage() {
	echo "throughput.sh: $*" >&2
	exit 2
}

while [ $# -gt 0 ]; do
	case $1 in
	--build-dir | --out | --seconds | --reps | --prefixes | --linear | --only | --iptables)
		[ $# -ge 2 ] || bad_usage "$1 needs a value"
		case $1 in
		--build-dir) build_dir=$(readlink -f "$2") ;;
		--out) out=$(readlink -f "$2") ;;
		--seconds) run_seconds=$2 ;;
		--reps) reps=$2 ;;
		--prefixes) prefixes=$2 ;;
		--linear) linear=$2 ;;
		--only) only=$2 ;;
		--iptables) iptables=$2 ;;
		esac
		shift
		;;
	-h | --help) usage; exit 0 ;;
	*) bad_usage "unknown option '$1' (try --help)" ;;
	esac
	shift
done
if [ -z "$build_dir" ] || [ -z "$out" ]; then
	bad_usage "--build-dir and --out are required"
fi
[[ "$run_seconds" =~ ^[1-9][0-9]*$ ]] ||
	bad_usage "--seconds: a whole number of seconds, got '$run_seconds'"
[[ "$reps" =~ ^[1-9][0-9]*$ ]] || bad_usage "--reps: a positive number, got '$reps'"
[[ "$prefixes" =~ ^[1-9][0-9]*$ ]] || bad_usage "--prefixes: a positive number, got '$prefixes'"
[[ "$linear" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] ||
	bad_usage "--linear: sizes like 1000,10000, got '$linear'"
ip6tables=${iptables/iptables/ip6tables}

sluice_bin=$build_dir/sluice
udp_bin=$build_dir/bench/sluice-bench-udp
rulegen_bin=$build_dir/bench/sluice-bench-rulegen
progtime_bin=$build_dir/bench/sluice-bench-progtime
for b in "$sluice_bin" "$udp_bin" "$rulegen_bin" "$progtime_bin"; do
	[ -x "$b" ] || { echo "throughput.sh: $b not built" >&2; exit 1; }
done
for t in iperf3 nft ipset "$iptables" "$ip6tables" "$iptables-restore" "$ip6tables-restore"; do
	command -v "$t" >/dev/null ||
		{ echo "throughput.sh: missing $t (run scripts/install-deps.sh)" >&2; exit 1; }
done

# The destination every run sends to (allowed), and the one that must be dropped. Both are
# addresses the world namespace of lib.sh holds.
TP_DST=198.51.100.10
TP_DENIED=198.51.100.200
TP_IPERF_PORT=5201
# UDP: sender and receiver on different CPUs, as far as the machine has them (the receive
# path runs on the sender's CPU anyway: a veth delivers through that CPU's backlog).
# TCP: client and server on the sender's CPU. Across two CPUs a veth reorders segments
# (data sent from the application's CPU and from ACK processing on the other one go
# through two backlogs), and the spurious fast retransmits made runs vary by 2x.
TP_SEND_CPU=0
TP_RECV_CPU=$(($(nproc) > 1 ? 1 : 0))

contenders=(none sluice nft ipset)
IFS=, read -r -a linear_sizes <<<"$linear"
for n in "${linear_sizes[@]}"; do
	contenders+=("iptables-$n")
done
if [ -n "$only" ]; then
	IFS=, read -r -a wanted <<<"$only"
	picked=(none)
	for c in "${contenders[@]}"; do
		for w in "${wanted[@]}"; do
			[ "$c" = "$w" ] && [ "$c" != none ] && picked+=("$c")
		done
	done
	contenders=("${picked[@]}")
fi
# One digit per pair in the interface names (lib.sh leaves room for exactly one).
[ "${#contenders[@]}" -le 10 ] || bad_usage "at most 10 contenders"

sl_init "$sluice_bin"
mkdir -p "$out"
rules=$SL_TMP/rules
mkdir -p "$rules"

declare -A TP_INDEX=()
TP_SERVER_PIDS=()
for i in "${!contenders[@]}"; do
	TP_INDEX[${contenders[$i]}]=$i
done

# tp_use CONTENDER — point lib.sh's globals (in_node, in_world, sluice_start) at its pair.
# shellcheck disable=SC2034 # SL_WORLD_IF is lib.sh's (sl_setup_net)
tp_use() {
	local i=${TP_INDEX[$1]}
	SL_NODE_NS=sl-tp$i-node-$SL_ID
	SL_WORLD_NS=sl-tp$i-world-$SL_ID
	SL_NODE_IF=sl${i}n-$SL_ID
	SL_WORLD_IF=sl${i}w-$SL_ID
}

# Runs first in lib.sh's EXIT trap: stop what we started, then delete every pair (lib.sh
# then unmounts the bpffs and removes the temporary directory).
tp_cleanup() {
	local c pid pids ns
	sluice_stop >/dev/null 2>&1
	for pid in "${TP_SERVER_PIDS[@]}"; do
		sl_kill_wait "$pid"
	done
	for c in "${contenders[@]}"; do
		tp_use "$c"
		for ns in "$SL_NODE_NS" "$SL_WORLD_NS"; do
			[ -e "/run/netns/$ns" ] || continue
			mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null)
			[ "${#pids[@]}" -eq 0 ] || kill -KILL "${pids[@]}" 2>/dev/null
			ip netns del "$ns" 2>/dev/null
		done
	done
}
SL_CLEANUP_HOOKS+=(tp_cleanup)

tp_listening() {
	in_world ss -Hltn "sport = :$TP_IPERF_PORT" | grep -q .
}

tp_reachable() { # DEST — one echo request answered within a second
	in_node ping -n -q -c 1 -W 1 -w 1 "$1" >/dev/null 2>&1
}

# tp_load CONTENDER — the filter, in the sender namespace of the contender's pair.
tp_load() {
	case $1 in
	none) ;;
	sluice) sluice_start "$rules/policy.conf" ;;
	nft) in_node nft -f "$rules/filter.nft" ;;
	ipset)
		in_node ipset -exist -file "$rules/ipset.restore" restore
		in_node "$iptables-restore" <"$rules/iptables-ipset.rules"
		in_node "$ip6tables-restore" <"$rules/ip6tables-ipset.rules"
		;;
	iptables-*) in_node "$iptables-restore" <"$rules/iptables-linear-${1#iptables-}.rules" ;;
	esac
}

# --- setup -----------------------------------------------------------------------------

allow_list=198.51.100.0/24,203.0.113.0/24
sl_log "generating $prefixes prefixes (10.0.0.0/8, fd00::/8)," \
	"plus allow $allow_list, deny $TP_DENIED"
"$rulegen_bin" --prefixes "$prefixes" --allow "$allow_list" --deny "$TP_DENIED" \
	--linear "$linear" "$rules" >"$out/throughput-rules.tsv"

sl_mount_bpffs
for c in "${contenders[@]}"; do
	tp_use "$c"
	sl_setup_net
	# lib.sh makes one skb one wire packet, for exact counts; a benchmark wants the
	# kernel's default, segmentation offload as on a real NIC.
	ip -n "$SL_NODE_NS" link set dev "$SL_NODE_IF" gso_max_segs 65535
	ip netns exec "$SL_WORLD_NS" iperf3 -s -B "$TP_DST" -p "$TP_IPERF_PORT" \
		</dev/null >"$SL_TMP/iperf3-$c.log" 2>&1 &
	TP_SERVER_PIDS+=($!)
	wait_for 10 tp_listening || sl_die "iperf3 server for $c did not start"
	tp_load "$c"
	tp_reachable "$TP_DST" || sl_die "$c: $TP_DST does not answer with the filter loaded"
	if [ "$c" = none ]; then
		tp_reachable "$TP_DENIED" ||
			sl_die "$c: $TP_DENIED does not answer without a filter"
	elif tp_reachable "$TP_DENIED"; then
		sl_die "$c: $TP_DENIED answers: the filter is not in force"
	fi
	sl_log "$c: ready ($TP_DST answers, $TP_DENIED" \
		"$([ "$c" = none ] && echo answers || echo dropped))"
done

{
	printf 'seconds\t%s\nreps\t%s\n' "$run_seconds" "$reps"
	printf 'prefixes\t%s\nlinear\t%s\n' "$prefixes" "$linear"
	printf 'send_cpu\t%s\nrecv_cpu\t%s\ntcp_cpu\t%s\n' "$TP_SEND_CPU" "$TP_RECV_CPU" \
		"$TP_SEND_CPU"
	printf 'iperf3\t%s\n' "$(iperf3 --version | head -n1)"
	printf 'iptables\t%s\n' "$("$iptables" --version)"
	printf 'ipset\t%s\n' "$(ipset --version | head -n1)"
	printf 'nft\t%s\n' "$(nft --version)"
} >"$out/throughput-meta.tsv"

# --- runs ------------------------------------------------------------------------------

tp_tcp() { # -> bits/s received, retransmits
	local json
	json=$(in_node iperf3 -c "$TP_DST" -p "$TP_IPERF_PORT" -t "$run_seconds" -J \
		-A "$TP_SEND_CPU,$TP_SEND_CPU") || { printf '%s\n' "$json" >&2; return 1; }
	printf '%s\n' "$json" |
		jq -r '[.end.sum_received.bits_per_second, .end.sum_sent.retransmits] | @tsv'
}

tp_udp() { # -> packets/s received, packets sent
	"$udp_bin" --from "$SL_NODE_NS" --to "$SL_WORLD_NS" --dst "$TP_DST" \
		--seconds "$run_seconds" --send-cpu "$TP_SEND_CPU" --recv-cpu "$TP_RECV_CPU" |
		awk '{ print $8 "\t" $2 }'
}

# tp_profiled TEST — run TEST on sluice's pair while the kernel times sluice's tc egress
# program (bench/progtime.c); appends "rep test runs ns ns_per_run value" to $inpath.
tp_profiled() {
	local link id pt line
	link=$SL_PIN_DIR/links/tc_egress_$(in_node cat "/sys/class/net/$SL_NODE_IF/ifindex")
	id=$(bpftool -j link show pinned "$link" | jq .prog_id)
	"$progtime_bin" "$id" 2>"$SL_TMP/progtime" &
	pt=$!
	wait_for 5 grep -q ready "$SL_TMP/progtime" || sl_die "progtime did not start"
	line=$(tp_$1) || { kill -TERM "$pt"; wait "$pt" || true; return 1; }
	kill -TERM "$pt"
	wait "$pt" || true
	awk -v rep="$rep" -v t="$1" -v v="${line%%$'\t'*}" '$1 == "progtime" && $2 == "runs" {
		printf "%s\t%s\t%s\t%s\t%s\t%s\n", rep, t, $3, $5, $7, v }' "$SL_TMP/progtime" >>"$inpath"
	printf '%s\n' "$line"
}

raw=$out/throughput-raw.tsv
inpath=$out/throughput-inpath.tsv
printf 'rep\ttest\tcontender\tvalue\textra\n' >"$raw"
printf 'rep\ttest\truns\tns\tns_per_run\tvalue\n' >"$inpath"
n=${#contenders[@]}
for rep in $(seq 1 "$reps"); do
	for test in tcp udp; do
		for k in $(seq 0 $((n - 1))); do
			c=${contenders[$(((k + rep - 1) % n))]}
			tp_use "$c"
			line=$(tp_$test) || sl_die "$c: $test run failed"
			printf '%s\t%s\t%s\t%s\n' "$rep" "$test" "$c" "$line" >>"$raw"
			sl_log "rep $rep/$reps $test $c: $line"
		done
	done
done

# The profile: one more run per test for sluice alone, timed by the kernel (the timing
# costs a little itself, so these runs stay out of the figures above).
if [ -n "${TP_INDEX[sluice]:-}" ]; then
	tp_use sluice
	rep=profile
	for test in tcp udp; do
		line=$(tp_profiled "$test") || sl_die "sluice: profiled $test run failed"
		sl_log "profile $test sluice: $line; $(tail -n 1 "$inpath" | cut -f5) ns per program run"
	done
fi

# --- summary: median, min, max per test and contender, and the ratio to no filter -------
# Sorted by test, contender, value, so each group's values arrive in order (mawk has no
# sort of its own).
summary=$out/throughput.tsv
tail -n +2 "$raw" | sort -t "$(printf '\t')" -k2,2 -k3,3 -k4,4g |
	awk -F'\t' -v order="${contenders[*]}" '
	function flush(   med) {
		if (key == "") return
		med = cnt % 2 ? v[(cnt + 1) / 2] : (v[cnt / 2] + v[cnt / 2 + 1]) / 2
		median[key] = med; lo[key] = v[1]; hi[key] = v[cnt]; count[key] = cnt
	}
	{
		k = $2 SUBSEP $3
		if (k != key) { flush(); key = k; cnt = 0 }
		v[++cnt] = $4
	}
	END {
		flush()
		nc = split(order, names, " ")
		print "test\tcontender\truns\tmedian\tmin\tmax\tunit\tvs_none"
		for (t = 1; t <= 2; t++) {
			test = t == 1 ? "tcp" : "udp"
			unit = t == 1 ? "bit/s" : "packet/s"
			base = median[test, "none"]
			for (i = 1; i <= nc; i++) {
				k = test SUBSEP names[i]
				if (!(k in median)) continue
				printf "%s\t%s\t%d\t%.0f\t%.0f\t%.0f\t%s\t%.4f\n", test, names[i],
					count[k], median[k], lo[k], hi[k], unit,
					(base > 0 ? median[k] / base : 0)
			}
		}
	}' >"$summary"

awk -F'\t' 'NR > 1 {
	scale = $1 == "tcp" ? 1e9 : 1e3
	printf "%-4s %-16s %10.2f %10.2f %10.2f %-9s %6.1f%%\n", $1, $2, $4 / scale, $5 / scale,
		$6 / scale, $1 == "tcp" ? "Gbit/s" : "kpacket/s", 100 * $8
}
BEGIN {
	printf "%-4s %-16s %10s %10s %10s %-9s %7s\n", "test", "contender", "median", "min",
		"max", "unit", "vs none"
}' "$summary"

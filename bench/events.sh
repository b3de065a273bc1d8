#!/usr/bin/env bash
# What events cost on the deny path, in throughput: one sender floods 64-byte UDP
# datagrams at --dests destinations that the policy denies (sluice-bench-udp --spread,
# sendmmsg, as fast as one CPU sends), and the rate it gets through is measured with
#   none        no filter on the sender's veth (context: what the deny path costs at all)
#   events-off  `sluice run --events off` (the kernel emits nothing)
#   events-on   `sluice run --events FILE` (deny and new_destination events, rate limited
#               to one per destination per second, written by the daemon to a file)
# interleaved (the first of each repetition rotates), --reps repetitions of --seconds each.
# Before a sluice run counts, its deny counter must have grown by what was sent (so a
# filter that silently let the flood through cannot pass for a fast one).
#
# The namespaces, veth and bpffs are tests/e2e/lib.sh's, deleted on exit; documentation
# addresses only (2001:db8:d:1::/64, reached over the veth with a permanent neighbour).
#
# Usage: bench/events.sh --build-dir DIR --out DIR [--seconds S] [--reps N] [--dests N]
# Writes events-raw.tsv (every run) and events.tsv (medians) to --out and prints the
# summary. Needs root.
set -euo pipefail

self=$(readlink -f "$0")
root=$(cd "$(dirname "$self")/.." && pwd)
# shellcheck source=tests/e2e/lib.sh
source "$root/tests/e2e/lib.sh"

build_dir=
out=
seconds=3
reps=5
dests=1000
bad_usage() {
	echo "events.sh: $*" >&2
	exit 2
}
while [ $# -gt 0 ]; do
	case $1 in
	--build-dir | --out | --seconds | --reps | --dests)
		[ $# -ge 2 ] || bad_usage "$1 needs a value"
		case $1 in
		--build-dir) build_dir=$(readlink -f "$2") ;;
		--out) out=$(readlink -f "$2") ;;
		--seconds) seconds=$2 ;;
		--reps) reps=$2 ;;
		--dests) dests=$2 ;;
		esac
		shift
		;;
	-h | --help) sed -n '2,/^set -euo/p' "$self" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
	*) bad_usage "unknown option '$1' (try --help)" ;;
	esac
	shift
done
[ -n "$build_dir" ] && [ -n "$out" ] || bad_usage "--build-dir and --out are required"
for v in "$seconds" "$reps" "$dests"; do
	[[ "$v" =~ ^[1-9][0-9]*$ ]] || bad_usage "--seconds, --reps, --dests: positive numbers"
done
udp_bin=$build_dir/bench/sluice-bench-udp
[ -x "$build_dir/sluice" ] && [ -x "$udp_bin" ] || { echo "events.sh: build first" >&2; exit 1; }

sl_init "$build_dir/sluice"
sl_setup_net
sl_mount_bpffs
mkdir -p "$out"
FIRST=2001:db8:d:1::1
policy=$SL_TMP/policy.conf
printf 'mode enforce\ndefault deny\nallow 198.51.100.0/24\n' >"$policy"

denied_packets() { sl stats --json | jq '.verdicts.deny.packets'; }

# run_one CONTENDER — one timed flood; prints its tx_pps.
run_one() {
	local c=$1 before after line pps sent
	case $c in
	none) sl detach --all >/dev/null 2>&1 || true ;;
	events-off) sluice_start "$policy" --metrics off --events off ;;
	events-on) sluice_start "$policy" --metrics off --events "$SL_TMP/events.json" ;;
	esac
	[ "$c" = none ] || before=$(denied_packets)
	line=$("$udp_bin" --from "$SL_NODE_NS" --dst "$FIRST" --spread "$dests" \
		--seconds "$seconds" --send-cpu 0)
	pps=$(awk '{ print $6 }' <<<"$line")
	sent=$(awk '{ print $2 }' <<<"$line")
	if [ "$c" != none ]; then
		after=$(denied_packets)
		# The warm-up's datagrams are denied too: at least what was timed.
		[ $((after - before)) -ge "$sent" ] ||
			sl_die "$c: sluice denied $((after - before)) of $sent datagrams"
		sluice_stop
	fi
	echo "$pps"
}

contenders=(none events-off events-on)
printf 'rep\tcontender\ttx_pps\n' >"$out/events-raw.tsv"
for rep in $(seq 1 "$reps"); do
	for k in 0 1 2; do
		c=${contenders[$(((rep - 1 + k) % 3))]}
		pps=$(run_one "$c")
		printf '%s\t%s\t%s\n' "$rep" "$c" "$pps" >>"$out/events-raw.tsv"
		echo "events.sh: rep $rep $c $pps packets/s" >&2
	done
done
events_written=$(wc -l <"$SL_TMP/events.json")

awk -F'\t' -v dests="$dests" -v seconds="$seconds" -v reps="$reps" -v ev="$events_written" '
	NR == 1 { next }
	{ v[$2, ++n[$2]] = $3 }
	function median(c,   i, j, t, m, a) {
		m = n[c]
		for (i = 1; i <= m; i++) a[i] = v[c, i]
		for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		lo[c] = a[1]; hi[c] = a[m]
		return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
	}
	END {
		split("none events-off events-on", cs, " ")
		printf "dests\t%d\nseconds\t%d\nreps\t%d\nevent_lines\t%d\n", dests, seconds, reps, ev
		for (i = 1; i <= 3; i++) {
			c = cs[i]; m[c] = median(c)
			printf "%s_pps_median\t%.0f\n%s_pps_min\t%.0f\n%s_pps_max\t%.0f\n", c, m[c], c, lo[c], c, hi[c]
		}
		printf "loss_on_vs_off\t%.4f\n", 1 - m["events-on"] / m["events-off"]
		printf "ns_added_by_events\t%.1f\n", 1e9 / m["events-on"] - 1e9 / m["events-off"]
		printf "ns_added_by_sluice_events_off\t%.1f\n", 1e9 / m["events-off"] - 1e9 / m["none"]
	}' "$out/events-raw.tsv" | tee "$out/events.tsv"

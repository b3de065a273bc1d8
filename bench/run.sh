#!/usr/bin/env bash
# Per-packet cost of sluice's tc egress program: build, run sluice-bench-pktcost, record the
# machine, and (for a full run) regenerate the tables in docs/performance.md and the plot
# docs/img/pktcost.png. Raw results go to bench/results/<UTC time>-<full|quick>/.
#
# Usage: bench/run.sh [--quick] [--docs|--no-docs] [--build-dir DIR] [--skip-build]
#                     [-- ARGS FOR sluice-bench-pktcost]
#   --quick        about a minute: 10 and 100000 prefixes, fewer repetitions; leaves
#                  docs/ alone unless --docs is given (quick numbers are too rough to publish)
#   --docs         update docs/ even for a quick run or one with extra benchmark arguments
#   --no-docs      never touch docs/
#   --build-dir    CMake build tree (default: build/ at the top of the repository)
#   --skip-build   use the benchmark binary already built
# Needs root for BPF_PROG_TEST_RUN; re-executes itself with sudo (building first, as you).
# No network interface is touched: everything runs through BPF_PROG_TEST_RUN.
set -euo pipefail

self=$(readlink -f "$0")
root=$(cd "$(dirname "$self")/.." && pwd)
build_dir=$root/build
quick=0
docs=auto
skip_build=0
extra=()

usage() {
	sed -n '2,/^set -euo/p' "$self" | sed -e '$d' -e 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
	case $1 in
	--quick) quick=1 ;;
	--docs) docs=yes ;;
	--no-docs) docs=no ;;
	--build-dir)
		[ $# -ge 2 ] || { echo "run.sh: --build-dir needs a directory" >&2; exit 2; }
		build_dir=$(readlink -f "$2")
		shift
		;;
	--skip-build) skip_build=1 ;;
	-h | --help) usage; exit 0 ;;
	--) shift; extra=("$@"); break ;;
	*) echo "run.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
	esac
	shift
done

build() {
	if [ ! -f "$build_dir/CMakeCache.txt" ]; then
		cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	fi
	cmake --build "$build_dir" --target sluice-bench-pktcost -j "$(nproc)"
}

if [ "$(id -u)" -ne 0 ]; then
	if ! command -v sudo >/dev/null; then
		echo "run.sh: BPF_PROG_TEST_RUN needs root and sudo is not installed; run as root" >&2
		exit 1
	fi
	# Build as the calling user so the build tree does not end up owned by root.
	[ "$skip_build" -eq 1 ] || build
	args=(--skip-build --build-dir "$build_dir")
	[ "$quick" -eq 1 ] && args+=(--quick)
	[ "$docs" = yes ] && args+=(--docs)
	[ "$docs" = no ] && args+=(--no-docs)
	exec sudo "$self" "${args[@]}" -- "${extra[@]}"
fi
[ "$skip_build" -eq 1 ] || build

bin=$build_dir/bench/sluice-bench-pktcost
[ -x "$bin" ] || { echo "run.sh: $bin not built" >&2; exit 1; }

if [ "$quick" -eq 1 ]; then
	kind=quick
	bench_args=(--prefixes 10,100000 --reps 3 --hot-repeat 200000 --spread-passes 2)
else
	kind=full
	bench_args=(--prefixes 10,1000,10000,100000,1000000 --reps 7 --hot-repeat 1000000
		--spread-passes 5)
fi
bench_args+=("${extra[@]}")
# Published numbers come from the standard full run only, unless asked for explicitly.
if [ "$docs" = auto ]; then
	if [ "$quick" -eq 0 ] && [ "${#extra[@]}" -eq 0 ]; then docs=yes; else docs=no; fi
fi

# How to reproduce this run, as the docs should quote it.
command="bench/run.sh"
[ "$quick" -eq 1 ] && command+=" --quick"
[ "${#extra[@]}" -eq 0 ] || command+=" -- ${extra[*]}"

stamp=$(date -u +%Y%m%dT%H%M%SZ)
results=$root/bench/results
out=$results/$stamp-$kind
mkdir -p "$out"

cpu_model=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n1)
[ -n "$cpu_model" ] || cpu_model=$(sed -n 's/^model name\t*: //p' /proc/cpuinfo | head -n1)
hypervisor=$(lscpu 2>/dev/null | sed -n 's/^Hypervisor vendor: *//p' | head -n1)
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo none)
dirty=$(git -C "$root" status --porcelain 2>/dev/null | grep -q . && echo yes || echo no)
{
	printf 'date\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	printf 'kind\t%s\n' "$kind"
	printf 'kernel\t%s\n' "$(uname -r)"
	printf 'cpu\t%s\n' "${cpu_model:-unknown}"
	printf 'cpus\t%s\n' "$(nproc)"
	printf 'hypervisor\t%s\n' "${hypervisor:-none}"
	printf 'clocksource\t%s\n' \
		"$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null || echo unknown)"
	printf 'commit\t%s\n' "$commit"
	printf 'uncommitted_changes\t%s\n' "$dirty"
	printf 'command\t%s\n' "$command"
	printf 'bench_args\t%s\n' "${bench_args[*]}"
} >"$out/meta.tsv"

echo "run.sh: kernel $(uname -r), CPU ${cpu_model:-unknown} x $(nproc); results in $out" >&2
"$bin" "${bench_args[@]}" --out "$out/pktcost.tsv" 2> >(tee "$out/pktcost.log" >&2) |
	tee "$out/pktcost.txt"
ln -sfn "$(basename "$out")" "$results/latest"

# --- plot ----------------------------------------------------------------------------------
# One data file per (workload, program): prefixes, median, min, max.
for w in spread hot; do
	for p in noop lpm sluice; do
		awk -F'\t' -v w="$w" -v p="$p" 'NR > 1 && $1 == w && $8 == p {
			print $2, $9, $10, $11 }' "$out/pktcost.tsv" | sort -n >"$out/plot-$w-$p.dat"
	done
done
gnuplot <<EOF
set terminal pngcairo size 1200,480 font ",10"
set output "$out/pktcost.png"
set multiplot layout 1,2 title "sluice tc egress: ns per packet vs policy size (kernel $(uname -r), ${cpu_model:-unknown})" noenhanced
set logscale xy
set grid
set key top left
set xlabel "prefixes in the policy"
set ylabel "ns per packet (median; bars: min-max)"
set format x "10^{%L}"
set title "spread: distinct destinations, one BPF_PROG_TEST_RUN each" noenhanced
plot "$out/plot-spread-noop.dat" using 1:2:3:4 with yerrorlines lw 2 title "no-op", \
     "$out/plot-spread-lpm.dat" using 1:2:3:4 with yerrorlines lw 2 title "plain LPM", \
     "$out/plot-spread-sluice.dat" using 1:2:3:4 with yerrorlines lw 2 title "sluice", \
     "$out/plot-spread-noop.dat" using 1:(\$2+60) with lines dt 2 lc rgb "black" title "target: no-op + 60 ns"
set title "hot: one destination, repeat per run" noenhanced
plot "$out/plot-hot-noop.dat" using 1:2:3:4 with yerrorlines lw 2 title "no-op", \
     "$out/plot-hot-lpm.dat" using 1:2:3:4 with yerrorlines lw 2 title "plain LPM", \
     "$out/plot-hot-sluice.dat" using 1:2:3:4 with yerrorlines lw 2 title "sluice"
unset multiplot
EOF

# --- docs ----------------------------------------------------------------------------------
# The generated block: machine, command, target verdict and one table per workload.
make_block() {
	awk -F'\t' '
	FNR == NR { meta[$1] = $2; next }
	FNR == 1 { next }
	{
		n++
		for (i = 1; i <= NF; i++) row[n, i] = $i
		if ($1 == "spread" && $2 == 100000 && $8 == "sluice") target = $12
		if ($1 == "spread") { dests = $4; passes = $6 }
		if ($1 == "hot") repeat = $5
		reps = $7
	}
	function table(w, title,   i) {
		printf "\n#### %s\n\n", title
		print "| prefixes | trie entries | program | median ns/pkt | min–max | − no-op ns | × no-op | × plain LPM |"
		print "|---:|---:|:---|---:|---:|---:|---:|---:|"
		for (i = 1; i <= n; i++) {
			if (row[i, 1] != w) continue
			printf "| %s | %s | %s | %s%.1f%s | %.1f–%.1f | %+.1f | %.2f | %.2f |\n",
				row[i, 2], row[i, 3], row[i, 8],
				row[i, 8] == "sluice" ? "**" : "", row[i, 9],
				row[i, 8] == "sluice" ? "**" : "",
				row[i, 10], row[i, 11], row[i, 12], row[i, 13], row[i, 14]
		}
	}
	END {
		printf "Measured %s on Linux `%s`, %s × %s CPUs (hypervisor: %s, clocksource %s), ",
			meta["date"], meta["kernel"], meta["cpu"], meta["cpus"], meta["hypervisor"],
			meta["clocksource"]
		printf "commit `%s`%s.\n", meta["commit"],
			meta["uncommitted_changes"] == "yes" ? " plus uncommitted changes" : ""
		printf "Command: `%s` (benchmark arguments: `%s`).\n", meta["command"], meta["bench_args"]
		printf "Each figure is the median of %s interleaved repetitions; min–max is their range.\n\n", reps
		if (target == "")
			print "**Target** (sluice at 100000 prefixes, spread ≤ no-op + 60 ns): not measured in this run."
		else
			printf "**Target** (sluice at 100000 prefixes, spread ≤ no-op + 60 ns): measured no-op %+.1f ns — **%s**.\n",
				target, target <= 60 ? "met" : "not met"
		table("spread", sprintf("spread: %s distinct destinations, one run each, %s passes", dests, passes))
		table("hot", sprintf("hot: one destination, repeat %s", repeat))
	}' "$out/meta.tsv" "$out/pktcost.tsv"
}

make_block >"$out/performance-block.md"
if [ "$docs" = yes ]; then
	doc=$root/docs/performance.md
	begin='<!-- pktcost:begin -->'
	end='<!-- pktcost:end -->'
	if ! grep -qF "$begin" "$doc" || ! grep -qF "$end" "$doc"; then
		echo "run.sh: $doc lacks the $begin / $end markers; not updated" >&2
		exit 1
	fi
	awk -v begin="$begin" -v end="$end" -v block="$out/performance-block.md" '
		$0 == begin { print; while ((getline line < block) > 0) print line; skip = 1; next }
		$0 == end { skip = 0 }
		!skip' "$doc" >"$doc.tmp"
	mv "$doc.tmp" "$doc"
	mkdir -p "$root/docs/img"
	cp "$out/pktcost.png" "$root/docs/img/pktcost.png"
	echo "run.sh: updated docs/performance.md and docs/img/pktcost.png" >&2
fi

# Under sudo, hand what was written back to the user who asked for it.
if [ -n "${SUDO_UID:-}" ] && [ -n "${SUDO_GID:-}" ]; then
	chown -R "$SUDO_UID:$SUDO_GID" "$results"
	if [ "$docs" = yes ]; then
		chown "$SUDO_UID:$SUDO_GID" "$root/docs/performance.md" "$root/docs/img/pktcost.png"
	fi
fi
echo "run.sh: done: $out" >&2

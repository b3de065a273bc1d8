#!/usr/bin/env bash
# sluice's benchmarks: build, run, record the machine, and (for a full run) regenerate the
# marked blocks of docs/performance.md and the plots docs/img/pktcost.png and
# docs/img/throughput.png. Raw results go to bench/results/<UTC time>-<full|quick>/.
#   pktcost     per-packet cost of the tc egress and XDP programs (sluice-bench-pktcost)
#   apply       time and peak RSS to apply a 100 000-prefix policy, against `nft -f` and
#               `ipset restore` loading the same prefixes (sluice-bench-apply)
#   throughput  TCP and small-packet UDP over veth between network namespaces: no filter,
#               sluice, nftables sets, iptables + ipset, linear iptables rules
#               (bench/throughput.sh)
#   scrape      one /metrics scrape with 1 000 000 tracked destinations (sluice-bench-scrape)
#   events      deny-path throughput with events off and on, and no filter (bench/events.sh)
#
# Usage: bench/run.sh [--quick] [--docs|--no-docs] [--build-dir DIR] [--skip-build]
#                     [--only pktcost|apply|throughput|scrape|events]
#                     [-- ARGS FOR sluice-bench-pktcost]
#   --quick        about a minute: pktcost at 10 and 100000 prefixes, fewer repetitions
#                  and 1-second throughput runs; leaves docs/ alone unless --docs is given
#                  (quick numbers are too rough to publish)
#   --docs         update docs/ even for a quick run or one with extra benchmark arguments
#   --no-docs      never touch docs/
#   --build-dir    CMake build tree (default: build/ at the top of the repository)
#   --skip-build   use the benchmark binaries already built
#   --only NAME    run one benchmark (its docs block alone is updated)
# Needs root (BPF_PROG_TEST_RUN, BPF maps, network namespaces); re-executes itself with sudo
# (building first, as you). No network interface of the host is touched: pktcost runs
# everything through BPF_PROG_TEST_RUN, apply runs nft and ipset in a network namespace of
# its own that the kernel deletes when it exits, throughput builds namespace pairs joined
# by veth (tests/e2e/lib.sh) and deletes them when it exits, however it exits.
set -euo pipefail

self=$(readlink -f "$0")
root=$(cd "$(dirname "$self")/.." && pwd)
build_dir=$root/build
quick=0
docs=auto
skip_build=0
only=all
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
	--only)
		case ${2:-} in
		pktcost | apply | throughput | scrape | events) only=$2 ;;
		*) echo "run.sh: --only needs pktcost, apply, throughput, scrape or events" >&2
		   exit 2 ;;
		esac
		shift
		;;
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
	# apply also drives the CLI (sluice deny) where it has runtime overrides.
	cmake --build "$build_dir" --target sluice-bench-pktcost sluice-bench-apply \
		sluice-bench-udp sluice-bench-rulegen sluice-bench-scrape sluice-bench-progtime sluice -j "$(nproc)"
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
	args+=(--only "$only")
	exec sudo "$self" "${args[@]}" -- "${extra[@]}"
fi
[ "$skip_build" -eq 1 ] || build

bin=$build_dir/bench/sluice-bench-pktcost
apply_bin=$build_dir/bench/sluice-bench-apply
scrape_bin=$build_dir/bench/sluice-bench-scrape
for b in "$bin" "$apply_bin" "$scrape_bin" "$build_dir/bench/sluice-bench-udp" \
	"$build_dir/bench/sluice-bench-rulegen" "$build_dir/sluice"; do
	[ -x "$b" ] || { echo "run.sh: $b not built" >&2; exit 1; }
done

if [ "$quick" -eq 1 ]; then
	kind=quick
	bench_args=(--prefixes 10,100000 --reps 3 --hot-repeat 200000 --spread-passes 2)
	apply_args=(--reps 3)
	scrape_args=(--destinations 100000 --reps 3)
	throughput_args=(--seconds 1 --reps 2)
	events_args=(--seconds 1 --reps 2)
else
	kind=full
	bench_args=(--prefixes 10,1000,10000,100000,250000 --reps 7 --hot-repeat 1000000
		--spread-passes 5)
	apply_args=(--reps 7)
	scrape_args=(--destinations 1000000 --reps 7)
	throughput_args=(--seconds 5 --reps 5)
	events_args=(--seconds 3 --reps 5)
fi
bench_args+=("${extra[@]}")
# The CLI, for `sluice policy load` and the single-override latency (measured only where
# the CLI has `sluice deny`). Kept out of apply_args: the docs quote those, not local paths.
apply_cli=(--cli "$build_dir/sluice")
# Published numbers come from the standard full run only, unless asked for explicitly.
if [ "$docs" = auto ]; then
	if [ "$quick" -eq 0 ] && [ "${#extra[@]}" -eq 0 ]; then docs=yes; else docs=no; fi
fi

# How to reproduce this run, as the docs should quote it.
command="bench/run.sh"
[ "$quick" -eq 1 ] && command+=" --quick"
[ "$only" = all ] || command+=" --only $only"
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
	printf 'apply_args\t%s\n' "${apply_args[*]}"
	printf 'throughput_args\t%s\n' "${throughput_args[*]}"
	printf 'nft\t%s\n' "$(nft --version 2>/dev/null || echo none)"
	printf 'ipset\t%s\n' "$(ipset --version 2>/dev/null | head -n1 || echo none)"
	# Other work on the machine skews wall times: the 1-minute load average at the start.
	printf 'loadavg\t%s\n' "$(cut -d' ' -f1 /proc/loadavg)"
} >"$out/meta.tsv"

echo "run.sh: kernel $(uname -r), CPU ${cpu_model:-unknown} x $(nproc); results in $out" >&2
updated=()

# Replace what is between <!-- NAME:begin --> and <!-- NAME:end --> in docs/performance.md.
update_doc() {
	local name=$1 block=$2 doc=$root/docs/performance.md
	local begin="<!-- $name:begin -->" end="<!-- $name:end -->"

	if ! grep -qF "$begin" "$doc" || ! grep -qF "$end" "$doc"; then
		echo "run.sh: $doc lacks the $begin / $end markers; not updated" >&2
		exit 1
	fi
	awk -v begin="$begin" -v end="$end" -v block="$block" '
		$0 == begin { print; while ((getline line < block) > 0) print line; skip = 1; next }
		$0 == end { skip = 0 }
		!skip' "$doc" >"$doc.tmp"
	mv "$doc.tmp" "$doc"
	updated+=("$doc")
}

# --- pktcost ---------------------------------------------------------------------------------
run_pktcost() {
	"$bin" "${bench_args[@]}" --out "$out/pktcost.tsv" 2> >(tee "$out/pktcost.log" >&2) |
		tee "$out/pktcost.txt"

	# plot ----------------------------------------------------------------------------------
	# One data file per (workload, program): prefixes, median, min, max.
	for w in spread hot; do
		for p in noop lpm sluice xdp-noop xdp; do
			awk -F'\t' -v w="$w" -v p="$p" 'NR > 1 && $1 == w && $8 == p {
				print $2, $9, $10, $11 }' "$out/pktcost.tsv" | sort -n >"$out/plot-$w-$p.dat"
		done
	done
	gnuplot <<EOF
set terminal pngcairo size 1200,480 font ",10"
set output "$out/pktcost.png"
set multiplot layout 1,2 title "sluice tc egress and XDP: ns per packet vs policy size (kernel $(uname -r), ${cpu_model:-unknown})" noenhanced
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
     "$out/plot-spread-xdp-noop.dat" using 1:2:3:4 with yerrorlines lw 2 dt 3 title "XDP no-op", \
     "$out/plot-spread-xdp.dat" using 1:2:3:4 with yerrorlines lw 2 dt 3 title "sluice XDP", \
     "$out/plot-spread-noop.dat" using 1:(\$2+60) with lines dt 2 lc rgb "black" title "target: no-op + 60 ns"
set title "hot: one destination, repeat per run" noenhanced
plot "$out/plot-hot-noop.dat" using 1:2:3:4 with yerrorlines lw 2 title "no-op", \
     "$out/plot-hot-lpm.dat" using 1:2:3:4 with yerrorlines lw 2 title "plain LPM", \
     "$out/plot-hot-sluice.dat" using 1:2:3:4 with yerrorlines lw 2 title "sluice", \
     "$out/plot-hot-xdp-noop.dat" using 1:2:3:4 with yerrorlines lw 2 dt 3 title "XDP no-op", \
     "$out/plot-hot-xdp.dat" using 1:2:3:4 with yerrorlines lw 2 dt 3 title "sluice XDP"
unset multiplot
EOF
}

# The generated block: machine, command, target verdict and one table per workload.
make_block() {
	awk -F'\t' '
	FNR == NR { meta[$1] = $2; next }
	FNR == 1 { next }
	{
		n++
		for (i = 1; i <= NF; i++) row[n, i] = $i
		if ($1 == "spread" && $2 == 100000 && $8 == "sluice") target = $12
		if ($2 == 100000 && $8 == "xdp") xdp[$1] = $12
		if ($2 == 100000 && $8 == "sluice") plain[$1] = $9
		if ($2 == 100000 && $8 == "budget") budget[$1] = $9
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
			# XDP rows: "− no-op" and "× no-op" are against the XDP no-op; the plain
			# LPM program is a tc program, so no ratio to it.
			bold = row[i, 8] == "sluice" || row[i, 8] == "xdp" ? "**" : ""
			printf "| %s | %s | %s | %s%.1f%s | %.1f–%.1f | %+.1f | %.2f | %s |\n",
				row[i, 2], row[i, 3], row[i, 8], bold, row[i, 9], bold,
				row[i, 10], row[i, 11], row[i, 12], row[i, 13],
				row[i, 8] ~ /^xdp/ ? "–" : sprintf("%.2f", row[i, 14])
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
		if ("spread" in xdp)
			printf "\n**XDP target** (sluice XDP at 100000 prefixes ≤ XDP no-op + 60 ns): spread %+.1f ns — **%s**; hot %+.1f ns — **%s**.\n",
				xdp["spread"], xdp["spread"] <= 60 ? "met" : "not met",
				xdp["hot"], xdp["hot"] <= 60 ? "met" : "not met"
		if (("hot" in budget) && ("spread" in budget))
			printf "\n**Budget target** (one destination budget at 100000 prefixes ≤ the same build without it + 15 ns): hot %+.1f ns — **%s**; spread %+.1f ns — **%s**.\n",
				budget["hot"] - plain["hot"], budget["hot"] - plain["hot"] <= 15 ? "met" : "not met",
				budget["spread"] - plain["spread"], budget["spread"] - plain["spread"] <= 15 ? "met" : "not met"
		table("spread", sprintf("spread: %s distinct destinations, one run each, %s passes", dests, passes))
		table("hot", sprintf("hot: one destination, repeat %s", repeat))
	}' "$out/meta.tsv" "$out/pktcost.tsv"
}

if [ "$only" = all ] || [ "$only" = pktcost ]; then
	run_pktcost
	make_block >"$out/performance-block.md"
	if [ "$docs" = yes ]; then
		update_doc pktcost "$out/performance-block.md"
		mkdir -p "$root/docs/img"
		cp "$out/pktcost.png" "$root/docs/img/pktcost.png"
		updated+=("$root/docs/img/pktcost.png")
	fi
fi

# --- apply -----------------------------------------------------------------------------------
# The block: machine, command, the policy, one table, the targets, and what was not measured.
make_apply_block() {
	awk -F'\t' '
	FNR == NR { meta[$1] = $2; next }
	FNR == 1 { next }
	$1 == "param" { param[$2] = $3; next }
	$1 == "metric" { med[$2] = $3; lo[$2] = $4; hi[$2] = $5; unit[$2] = $6 }
	function row(name, label) {
		if (!(name in med)) return
		bold = name == "sluice_wall" || name == "nft_wall" || name == "ipset_wall" ? "**" : ""
		printf "| %s | %s%.1f%s | %.1f–%.1f | %s |\n", label, bold, med[name], bold,
			lo[name], hi[name], unit[name]
	}
	END {
		printf "Measured %s on Linux `%s`, %s × %s CPUs (hypervisor: %s), %s, %s, ",
			meta["date"], meta["kernel"], meta["cpu"], meta["cpus"], meta["hypervisor"],
			meta["nft"], meta["ipset"]
		printf "commit `%s`%s, load average %s at the start.\n", meta["commit"],
			meta["uncommitted_changes"] == "yes" ? " plus uncommitted changes" : "", meta["loadavg"]
		printf "Command: `%s` (benchmark arguments: `%s`).\n", meta["command"], meta["apply_args"]
		printf "Each figure is the median of %s interleaved repetitions (after one warm-up each); min–max is their range.\n\n", param["reps"]
		printf "Policy: %s prefixes (%s IPv4, %s IPv6, disjoint), %s of them with `%s`",
			param["prefixes"], param["ipv4"], param["ipv6"], param["port_rules"], param["port_list"]
		if (param["ports_applied"] != "yes")
			printf " — **port lists NOT applied**: the policy parser rejected them (`%s`), so every side loaded plain prefixes",
				param["ports_rejected_because"]
		printf ". sluice compiled it into %s prefixes and %s port entries (%s port classes); ",
			param["trie_entries"], param["port_entries"], param["port_classes"]
		printf "nft loaded %s elements into 6 interval sets", param["nft_elements"]
		if (param["ipset_elements"] != "")
			printf "; `ipset restore` loaded %s elements into 6 hash:net sets, each filled beside the live set and swapped in (the iptables rules that use the sets do not change on a reload and are not timed)",
				param["ipset_elements"]
		print ".\n"
		print "| | median | min–max | unit |"
		print "|:---|---:|---:|:---|"
		row("sluice_wall", "sluice: whole process (start to exit)")
		row("sluice_apply", "sluice: parse + compile + install")
		row("sluice_parse", "— parse (read the file)")
		row("sluice_compile", "— compile")
		row("sluice_install", "— install (fill a bank with address and port ranges, switch)")
		row("sluice_peak_rss", "sluice: peak RSS")
		row("nft_wall", "`nft -f`: whole process (start to exit)")
		row("nft_peak_rss", "`nft -f`: peak RSS")
		row("ipset_wall", "`ipset restore`: whole process (start to exit)")
		row("ipset_peak_rss", "`ipset restore`: peak RSS")
		row("cli_policy_load", "`sluice policy load FILE`: whole command (CLI, state files included)")
		row("override_wall", "`sluice deny " param["override_addr"] "`: whole command, this policy in force")
		row("override_remove_wall", "`sluice remove " param["override_addr"] "`: whole command")
		row("override_daemon_wall", "`sluice deny " param["override_addr"] "`: whole command, daemon running (in place)")
		row("override_daemon_remove_wall", "`sluice remove " param["override_addr"] "`: whole command, daemon running (in place)")
		print ""
		ratio = med["sluice_wall"] > 0 ? med["nft_wall"] / med["sluice_wall"] : 0
		printf "**Targets** (issue): sluice applies in ≤ 200 ms: %.1f ms — **%s**; ",
			med["sluice_wall"], (med["sluice_wall"] <= 200 ? "met" : "not met")
		if ("nft_wall" in med)
			printf "≥ 20× faster than nft: %.1f× — **%s**. Peak RSS: nft/sluice = %.1f×.\n",
				ratio, (ratio >= 20 ? "met" : "not met"),
				(med["sluice_peak_rss"] > 0 ? med["nft_peak_rss"] / med["sluice_peak_rss"] : 0)
		else
			print "≥ 20× faster than nft: not measured in this run."
		if ("ipset_wall" in med && med["sluice_wall"] > 0) {
			r = med["ipset_wall"] / med["sluice_wall"]
			printf "Against `ipset restore`: ipset/sluice = %.2f× (%s). Peak RSS: ipset/sluice = %.2f×.\n",
				r, (r >= 1 ? "sluice is faster" : "**ipset is faster**"),
				(med["sluice_peak_rss"] > 0 ? med["ipset_peak_rss"] / med["sluice_peak_rss"] : 0)
		}
		if ("override_daemon_wall" in med)
			printf "An override applies in ≤ 10 ms (daemon running): %.1f ms — **%s**.\n",
				med["override_daemon_wall"], (med["override_daemon_wall"] <= 10 ? "met" : "not met")
		if (!("override_wall" in med))
			printf "\nSingle-override latency (`sluice deny ADDR`): not measured yet (%s).\n",
				param["override"]
	}' "$out/meta.tsv" "$out/apply.tsv"
}

if [ "$only" = all ] || [ "$only" = apply ]; then
	"$apply_bin" "${apply_args[@]}" "${apply_cli[@]}" --out "$out/apply.tsv" \
		2> >(tee "$out/apply.log" >&2) | tee "$out/apply.txt"
	make_apply_block >"$out/apply-block.md"
	if [ "$docs" = yes ]; then
		update_doc apply "$out/apply-block.md"
	fi
fi
# --- scrape ----------------------------------------------------------------------------------
make_scrape_block() {
	awk -F'\t' '
	FNR == NR { meta[$1] = $2; next }
	{ v[$1] = $2 }
	END {
		printf "Measured %s on Linux `%s`, %s × %s CPUs (hypervisor: %s), commit `%s`%s, load average %s at the start.\n",
			meta["date"], meta["kernel"], meta["cpu"], meta["cpus"], meta["hypervisor"],
			meta["commit"], meta["uncommitted_changes"] == "yes" ? " plus uncommitted changes" : "",
			meta["loadavg"]
		printf "Command: `%s` (benchmark arguments: `--destinations %s --reps %s`).\n\n",
			meta["command"], v["destinations"], v["reps"]
		print "| | median | min–max | unit |"
		print "|:---|---:|---:|:---|"
		printf "| one scrape, %s destinations, top %s: in-kernel walk, `bpf_for_each_map_elem` (what the daemon uses) | **%.1f** | %.1f–%.1f | ms |\n",
			v["destinations"], v["top_n"], v["scrape_walk_ms_median"], v["scrape_walk_ms_min"], v["scrape_walk_ms_max"]
		printf "| the same, kernel map iterator (the daemon'"'"'s way when more than %s destinations qualify) | %.1f | %.1f–%.1f | ms |\n",
			v["found_max"], v["scrape_iterator_ms_median"], v["scrape_iterator_ms_min"], v["scrape_iterator_ms_max"]
		printf "| the same, every entry copied out with batch lookups (fallback) | %.1f | %.1f–%.1f | ms |\n",
			v["scrape_batch_ms_median"], v["scrape_batch_ms_min"], v["scrape_batch_ms_max"]
		printf "| every timed walk of the daemon'"'"'s way used `bpf_for_each_map_elem` | %s | | |\n", v["walk_without_iterator"]
		printf "| the three ways render the same series | %s | | |\n", v["same_output"]
		printf "| scrape output | %d | | bytes |\n", v["output_bytes"]
		printf "| peak RSS of the process, before / after the scrapes | %.1f / %.1f | | MiB |\n\n",
			v["peak_rss_mib_before_scrapes"], v["peak_rss_mib_after_scrapes"]
		printf "Each figure is the median of %s repetitions, the three ways interleaved, after one warm-up each.\n\n", v["reps"]
		printf "**Target** (issue): a scrape at 1 000 000 destinations in ≤ 150 ms: %.1f ms — **%s**.\n",
			v["scrape_walk_ms_median"], (v["scrape_walk_ms_median"] <= 150 ? "met" : "not met")
	}' "$out/meta.tsv" "$out/scrape.tsv"
}

if [ "$only" = all ] || [ "$only" = scrape ]; then
	"$scrape_bin" "${scrape_args[@]}" 2> >(tee "$out/scrape.log" >&2) | tee "$out/scrape.tsv"
	make_scrape_block >"$out/scrape-block.md"
	if [ "$docs" = yes ]; then
		update_doc scrape "$out/scrape-block.md"
	fi
fi

# --- events ----------------------------------------------------------------------------------
make_events_block() {
	awk -F'\t' '
	FNR == NR { meta[$1] = $2; next }
	{ v[$1] = $2 }
	END {
		printf "Measured %s on Linux `%s`, %s × %s CPUs (hypervisor: %s), commit `%s`%s.\n",
			meta["date"], meta["kernel"], meta["cpu"], meta["cpus"], meta["hypervisor"],
			meta["commit"], meta["uncommitted_changes"] == "yes" ? " plus uncommitted changes" : ""
		printf "Command: `%s` (`bench/events.sh --dests %s --seconds %s --reps %s`).\n\n",
			meta["command"], v["dests"], v["seconds"], v["reps"]
		print "| sender'"'"'s egress | median | min–max | unit |"
		print "|:---|---:|---:|:---|"
		printf "| no filter (the datagrams cross the veth) | %.0f | %.0f–%.0f | packets/s |\n",
			v["none_pps_median"], v["none_pps_min"], v["none_pps_max"]
		printf "| sluice, events off (dropped at tc egress) | %.0f | %.0f–%.0f | packets/s |\n",
			v["events-off_pps_median"], v["events-off_pps_min"], v["events-off_pps_max"]
		printf "| sluice, events on (%d lines written) | %.0f | %.0f–%.0f | packets/s |\n\n",
			v["event_lines"], v["events-on_pps_median"], v["events-on_pps_min"], v["events-on_pps_max"]
		printf "Events on cost %.1f %% of the deny path'"'"'s throughput (%.1f ns per denied packet).\n",
			100 * v["loss_on_vs_off"], v["ns_added_by_events"]
		printf "**Target** (issue): at most 5 %% loss, events on vs off: **%s**.\n",
			(v["loss_on_vs_off"] <= 0.05 ? "met" : "not met")
	}' "$out/meta.tsv" "$out/events.tsv"
}

if [ "$only" = all ] || [ "$only" = events ]; then
	"$root/bench/events.sh" --build-dir "$build_dir" --out "$out" "${events_args[@]}" \
		2> >(tee "$out/events.log" >&2) >/dev/null
	make_events_block >"$out/events-block.md"
	if [ "$docs" = yes ]; then
		update_doc events "$out/events-block.md"
	fi
fi

# --- throughput ------------------------------------------------------------------------------
# Short names for the plot.
throughput_label() { # CONTENDER
	case $1 in
	none) echo "no filter" ;;
	sluice) echo "sluice" ;;
	nft) echo "nftables set" ;;
	ipset) echo "iptables+ipset" ;;
	iptables-*) echo "iptables ${1#iptables-} rules" ;;
	esac
}

run_throughput() {
	"$root/bench/throughput.sh" --build-dir "$build_dir" --out "$out" "${throughput_args[@]}" \
		2> >(tee "$out/throughput.log" >&2) | tee "$out/throughput.txt"

	# plot ----------------------------------------------------------------------------------
	# One data file per test: label, median, min, max (Gbit/s or thousand packets/s), colour.
	# Bars are medians, the whiskers min-max, the number the median.
	local test scale t c med lo hi
	for test in tcp udp; do
		[ "$test" = tcp ] && scale=1e9 || scale=1e3
		: >"$out/plot-tp-$test.dat"
		while IFS=$'\t' read -r t c _ med lo hi _; do
			[ "$t" = "$test" ] || continue
			awk -v l="$(throughput_label "$c")" -v m="$med" -v lo="$lo" -v hi="$hi" \
				-v s="$scale" -v col="$([ "$c" = sluice ] && echo 2 || echo 1)" \
				'BEGIN { printf "\"%s\" %g %g %g %d\n", l, m / s, lo / s, hi / s, col }' \
				>>"$out/plot-tp-$test.dat"
		done <"$out/throughput.tsv"
	done
	local tcp_none udp_none prefixes
	tcp_none=$(awk -F'\t' '$1 == "tcp" && $2 == "none" { print $4 / 1e9 }' "$out/throughput.tsv")
	udp_none=$(awk -F'\t' '$1 == "udp" && $2 == "none" { print $4 / 1e3 }' "$out/throughput.tsv")
	prefixes=$(awk -F'\t' '$1 == "prefixes" { print $2 }' "$out/throughput-meta.tsv")
	gnuplot <<EOF
set terminal pngcairo size 1200,520 font ",10"
set output "$out/throughput.png"
set multiplot layout 1,2 title "Throughput over veth between namespaces, filter on the sender's egress, $prefixes prefixes (kernel $(uname -r), ${cpu_model:-unknown} x $(nproc))" noenhanced
set style fill solid 0.7 border -1
set boxwidth 0.6
set logscale y
set grid ytics
set key top right
set xtics rotate by 25 right noenhanced
set bmargin 7
set xrange [-0.6:*]
set linetype 1 lc rgb "#8c8c8c"
set linetype 2 lc rgb "#d95f02"
set title "TCP, one iperf3 stream" noenhanced
set ylabel "Gbit/s received (median; bars: min-max; log scale)"
plot "$out/plot-tp-tcp.dat" using 0:2:(0.6):5:xtic(1) with boxes lc variable notitle, \
     "" using 0:3:(0):(\$4-\$3) with vectors heads size 0.08,90 lc rgb "black" lw 1.5 notitle, \
     "" using 0:4:(sprintf("%.2f", \$2)) with labels offset 0,0.8 notitle, \
     ${tcp_none:-0} * 0.98 with lines dt 2 lc rgb "black" title "98 % of no filter (target for sluice)"
set title "UDP, 64-byte payloads from one CPU (sendmmsg)" noenhanced
set ylabel "thousand packets/s received (median; bars: min-max; log scale)"
plot "$out/plot-tp-udp.dat" using 0:2:(0.6):5:xtic(1) with boxes lc variable notitle, \
     "" using 0:3:(0):(\$4-\$3) with vectors heads size 0.08,90 lc rgb "black" lw 1.5 notitle, \
     "" using 0:4:(sprintf("%.0f", \$2)) with labels offset 0,0.8 notitle, \
     ${udp_none:-0} * 0.95 with lines dt 2 lc rgb "black" title "95 % of no filter (target for sluice)"
unset multiplot
EOF
}

# The block: machine, command, policy, targets, one table per test with ratios against the
# baseline and against sluice.
make_throughput_block() {
	awk -F'\t' '
	FILENAME == ARGV[1] { meta[$1] = $2; next }
	FILENAME == ARGV[2] { tp[$1] = $2; next }
	FNR == 1 { next }
	{
		k = $1 SUBSEP $2
		if (!(k in med)) { n[$1]++; order[$1, n[$1]] = $2 }
		med[k] = $4; lo[k] = $5; hi[k] = $6
	}
	function label(c,   s) {
		if (c == "none") return "no filter"
		if (c == "sluice") return "**sluice** (`sluice run`, " tp["prefixes"] " prefixes)"
		if (c == "nft") return "nftables, interval sets, output hook (" tp["prefixes"] " prefixes)"
		if (c == "ipset") return "iptables + ipset hash:net (" tp["prefixes"] " prefixes)"
		s = c; sub(/^iptables-/, "", s)
		return "iptables, " s " linear rules"
	}
	function overlap(t, a, b) {
		return lo[t, a] <= hi[t, b] && lo[t, b] <= hi[t, a]
	}
	function verdict(ok) { return ok ? "met" : "not met" }
	function table(t, title, scale, fmt,   i, c, base, sl) {
		printf "\n#### %s\n\n", title
		if (t == "udp") {
			print "| filter on the sender | median | min–max | × no filter | added ns/packet | sluice ÷ this |"
			print "|:---|---:|---:|---:|---:|---:|"
		} else {
			print "| filter on the sender | median | min–max | × no filter | sluice ÷ this |"
			print "|:---|---:|---:|---:|---:|"
		}
		base = med[t, "none"]; sl = med[t, "sluice"]
		for (i = 1; i <= n[t]; i++) {
			c = order[t, i]
			printf "| %s | " fmt " | " fmt "–" fmt " | %.3f |", label(c), med[t, c] / scale,
				lo[t, c] / scale, hi[t, c] / scale, (base > 0 ? med[t, c] / base : 0)
			if (t == "udp")
				printf " %+.0f |", (med[t, c] > 0 && base > 0 ? 1e9 / med[t, c] - 1e9 / base : 0)
			if (sl > 0 && med[t, c] > 0)
				printf " %.3f |\n", sl / med[t, c]
			else
				print " — |"
		}
	}
	END {
		printf "Measured %s on Linux `%s`, %s × %s CPUs (hypervisor: %s), commit `%s`%s.\n",
			meta["date"], meta["kernel"], meta["cpu"], meta["cpus"], meta["hypervisor"],
			meta["commit"], (meta["uncommitted_changes"] == "yes" ? " plus uncommitted changes" : "")
		printf "Command: `%s` (throughput arguments: `%s`). Tools: %s, %s, %s, %s.\n",
			meta["command"], meta["throughput_args"], tp["iperf3"], tp["iptables"], tp["ipset"],
			tp["nft"]
		printf "Each figure is the median of %s interleaved runs of %s s (the order of the contenders rotates every repetition); min–max is their range. TCP: client and server on CPU %s; UDP: sender on CPU %s, receiver on CPU %s.\n\n",
			tp["reps"], tp["seconds"], tp["tcp_cpu"], tp["send_cpu"], tp["recv_cpu"]
		printf "Policy: %s generated prefixes (half IPv4 in 10.0.0.0/8, half IPv6 in fd00::/8, a quarter denied; no packet goes there), plus allow 198.51.100.0/24 and 203.0.113.0/24, deny 198.51.100.200, default deny. All traffic goes to 198.51.100.10 (allowed); every filter was checked to drop 198.51.100.200 before the runs. The linear iptables rulesets hold the first N IPv4 prefixes, the destinations last.\n\n",
			tp["prefixes"]
		if ((("tcp", "sluice") in med) && (("tcp", "none") in med)) {
			rt = med["tcp", "sluice"] / med["tcp", "none"]
			ru = med["udp", "sluice"] / med["udp", "none"]
			printf "**Targets** (issue): TCP with sluice ≥ 98 %% of no filter: %.1f %% — **%s**; ",
				100 * rt, verdict(rt >= 0.98)
			printf "small-packet UDP ≥ 95 %%: %.1f %% — **%s**", 100 * ru, verdict(ru >= 0.95)
			for (p = 1; p <= 2; p++) {
				peer = p == 1 ? "nft" : "ipset"
				if (!(("tcp", peer) in med)) continue
				printf "; sluice ≥ %s: TCP %.2f×, UDP %.2f× — **%s**",
					(peer == "nft" ? "nftables" : "iptables + ipset"),
					med["tcp", "sluice"] / med["tcp", peer], med["udp", "sluice"] / med["udp", peer],
					verdict(med["tcp", "sluice"] >= med["tcp", peer] && med["udp", "sluice"] >= med["udp", peer])
				same = ""
				for (t = 1; t <= 2; t++) {
					test = t == 1 ? "tcp" : "udp"
					if (overlap(test, "sluice", peer))
						same = same (same == "" ? "" : " and ") toupper(test)
				}
				if (same != "")
					printf " (%s: the min–max ranges overlap, so this run cannot tell them apart)", same
			}
			print "."
		} else {
			print "**Targets**: not measured in this run (sluice or the baseline missing)."
		}
		table("tcp", "TCP, one iperf3 stream, Gbit/s received", 1e9, "%.2f")
		table("udp", "UDP, 64-byte payloads from one CPU (sendmmsg), thousand packets/s received", 1e3, "%.1f")
	}' "$out/meta.tsv" "$out/throughput-meta.tsv" "$out/throughput.tsv"
	make_inpath_profile
}

# Where sluice's share of a packet's time goes: its program's own run time in the real path
# (throughput-inpath.tsv, one kernel-timed run per test) against the time one packet takes
# without a filter (1 / the no-filter median rate).
make_inpath_profile() {
	[ -s "$out/throughput-inpath.tsv" ] || return 0
	awk -F'\t' '
	FILENAME == ARGV[1] { if ($1 == "seconds") seconds = $2; next }
	FILENAME == ARGV[2] { if ($2 == "none") base[$1] = $4; next }
	FNR > 1 { ns[$2] = $5; runs[$2] = $3; val[$2] = $6 }
	END {
		print "\n#### Profile: sluice'"'"'s program in the real path\n"
		print "One more run per test with sluice, the kernel timing its tc egress program (BPF run-time statistics, on for that run only; they add two clock reads per run, so these figures are an upper bound and stay out of the tables above):\n"
		print "| test | program runs | ns per run | the same packet without a filter | sluice'"'"'s share |"
		print "|:---|---:|---:|---:|---:|"
		if ("udp" in ns && base["udp"] > 0) {
			t = 1e9 / base["udp"]
			printf "| UDP, 64-byte datagrams | %d | %.0f | %.0f ns (1 / %.0f packets/s) | %.1f %% |\n",
				runs["udp"], ns["udp"], t, base["udp"], 100 * ns["udp"] / (t + ns["udp"])
		}
		if ("tcp" in ns && base["tcp"] > 0 && runs["tcp"] > 0) {
			bytes = val["tcp"] / 8 * seconds / runs["tcp"]
			t = bytes / (base["tcp"] / 8) * 1e9
			printf "| TCP, one stream (one run per GSO super-packet, %.0f bytes on average) | %d | %.0f | %.0f ns | %.1f %% |\n",
				bytes, runs["tcp"], ns["tcp"], t, 100 * ns["tcp"] / (t + ns["tcp"])
		}
	}' "$out/throughput-meta.tsv" "$out/throughput.tsv" "$out/throughput-inpath.tsv"
}

if [ "$only" = all ] || [ "$only" = throughput ]; then
	run_throughput
	make_throughput_block >"$out/throughput-block.md"
	if [ "$docs" = yes ]; then
		update_doc throughput "$out/throughput-block.md"
		mkdir -p "$root/docs/img"
		cp "$out/throughput.png" "$root/docs/img/throughput.png"
		updated+=("$root/docs/img/throughput.png")
	fi
fi
ln -sfn "$(basename "$out")" "$results/latest"
[ "${#updated[@]}" -eq 0 ] || echo "run.sh: updated ${updated[*]#"$root/"}" >&2

# Under sudo, hand what was written back to the user who asked for it.
if [ -n "${SUDO_UID:-}" ] && [ -n "${SUDO_GID:-}" ]; then
	chown -R "$SUDO_UID:$SUDO_GID" "$results"
	[ "${#updated[@]}" -eq 0 ] || chown "$SUDO_UID:$SUDO_GID" "${updated[@]}"
fi
echo "run.sh: done: $out" >&2

#!/usr/bin/env bash
# Install dependencies, build, and run the whole test suite (unit, bpf, e2e) with ctest;
# then, when clang's libFuzzer runtime is there, fuzz the policy parser and compiler for a
# minute in a second build tree (build-fuzz) and fail on any finding.
# Needs root (BPF, network namespaces); re-executes itself with sudo otherwise.
#
# Environment: BUILD_DIR (default build/), FUZZ_BUILD_DIR (default build-fuzz/),
# FUZZ_SECONDS (default 60; 0 skips the fuzzer).
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
	exec sudo -E "$0" "$@"
fi

top=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$top/build}
fuzz_build=${FUZZ_BUILD_DIR:-$top/build-fuzz}
fuzz_seconds=${FUZZ_SECONDS:-60}

"$top/scripts/install-deps.sh"
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)"
(cd "$build" && ctest --output-on-failure --timeout 600 "$@")
# ctest's summary scrolls up behind the fuzzer's output: end with one line that counts both.
ntests=$(cd "$build" && ctest -N "$@" | awk '/^Total Tests:/ { print $3 }')
summary() { echo "test.sh: $1 passed, 0 failed"; }

# --- policy fuzzer ---------------------------------------------------------------------
# Does clang link a libFuzzer program? (The runtime is a separate package on Debian.)
have_libfuzzer() {
	local dir ok=1

	command -v clang >/dev/null || return 1
	dir=$(mktemp -d)
	printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n)\n{ (void)d; (void)n; return 0; }\n' >"$dir/probe.c"
	clang -fsanitize=fuzzer "$dir/probe.c" -o "$dir/probe" >/dev/null 2>&1 && ok=0
	rm -rf "$dir"
	return $ok
}

if [ "$fuzz_seconds" -eq 0 ]; then
	echo "test.sh: FUZZ_SECONDS=0: policy fuzzer skipped" >&2
	summary "$ntests"
	exit 0
fi
if ! have_libfuzzer; then
	echo "test.sh: clang cannot link libFuzzer programs (libclang-rt-dev missing?): policy fuzzer skipped" >&2
	summary "$ntests"
	exit 0
fi

cmake -S "$top" -B "$fuzz_build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
	-DSLUICE_FUZZ=ON >/dev/null
cmake --build "$fuzz_build" --target fuzz_policy -j "$(nproc)"

# The fuzzer adds what it finds to its corpus: work on a copy, never in the source tree.
run=$fuzz_build/fuzz-run
rm -rf "$run"
mkdir -p "$run/corpus" "$run/artifacts"
cp "$top"/tests/fuzz/corpus/* "$run/corpus/"
echo "test.sh: fuzzing the policy parser and compiler for ${fuzz_seconds}s (log: $run/fuzz.log)" >&2
status=0
# -max_len 8192: long enough for lines past the parser's 4096-byte limit. -timeout: a
# policy that takes seconds to parse is a finding too.
"$fuzz_build/tests/fuzz/fuzz_policy" -max_total_time="$fuzz_seconds" -max_len=8192 \
	-timeout=10 -dict="$top/tests/fuzz/policy.dict" -artifact_prefix="$run/artifacts/" \
	-print_final_stats=1 "$run/corpus" >"$run/fuzz.log" 2>&1 || status=$?
if [ "$status" -ne 0 ] || [ -n "$(ls -A "$run/artifacts")" ]; then
	tail -n 40 "$run/fuzz.log" >&2
	echo "test.sh: the policy fuzzer found a problem (exit status $status); reproduce with" >&2
	for a in "$run"/artifacts/*; do
		[ -e "$a" ] && echo "  $fuzz_build/tests/fuzz/fuzz_policy $a" >&2
	done
	exit 1
fi
grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$run/fuzz.log" >&2 || true
echo "test.sh: policy fuzzer: no findings in ${fuzz_seconds}s, corpus $(ls "$run/corpus" | wc -l) inputs" >&2
summary "$((ntests + 1))" # the fuzzer counts as one test

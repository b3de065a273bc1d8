#!/usr/bin/env bash
# sluice in two minutes: install the build dependencies, build, and watch the example
# policy (examples/policy.conf) enforced on a throw-away network of two namespaces.
#
# Nothing here touches the host's own interfaces, routes or firewall, nor /sys/fs/bpf:
# the demo builds a "node" namespace (where sluice runs) and a "world" namespace (every
# destination the policy talks about), joined by one veth pair, with documentation
# addresses only, and its own bpffs instance for the pins. All of it is removed on exit,
# success or not, so the script can be run again and again.
#
# usage: scripts/quickstart.sh        (re-executes itself with sudo when not root)
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
	exec sudo -E "$0" "$@"
fi

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
policy=$top/examples/policy.conf

say() { printf '\n==> %s\n' "$*"; }

say "installing build and test dependencies (scripts/install-deps.sh)"
"$top/scripts/install-deps.sh"

say "building (cmake -S . -B build && cmake --build build -j)"
cmake -S . -B build >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
echo "built $top/build/sluice ($("$top/build/sluice" version 2>/dev/null || echo '?'))"

# shellcheck source=tests/e2e/lib.sh
source "$top/tests/e2e/lib.sh"
sl_init "$top/build/sluice"

say "demo network"
sl_setup_net
sl_mount_bpffs
cat <<EOF
  namespace $SL_NODE_NS   the node sluice protects: $SL_NODE_IF $SL_NODE_V4, $SL_NODE_V6
  namespace $SL_WORLD_NS  the outside world:        $SL_WORLD_IF $SL_WORLD_V4, $SL_WORLD_V6
                          and the destinations ${SL_DESTS[*]}
EOF

say "the policy: $policy (rules only, with line numbers)"
grep -n -v -E '^[[:space:]]*(#|$)' "$policy" | sed 's/^/  /'

say "sluice run --iface $SL_NODE_IF --policy examples/policy.conf   (in $SL_NODE_NS)"
sluice_start "$policy"
sed 's/^/  /' "$SL_RUN_LOG"

say "ping every destination from the node (3 echo requests each)"
mkdir -p "$SL_TMP/ping"
pids=()
for d in "${SL_DESTS[@]}"; do
	sl_ping "$d" 3 2 >"$SL_TMP/ping/$d" &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || true; done

# Narrate each result with the decision sluice itself reports for that destination.
dest_json=$(sl dest --json)
for d in "${SL_DESTS[@]}"; do
	verdict=$(jq -r --arg d "$d" '[.[] | select(.destination == $d) | .verdict] | first // "?"' \
		<<<"$dest_json")
	rule=$(jq -r --arg d "$d" '[.[] | select(.destination == $d) | .rule] | first // ""' \
		<<<"$dest_json")
	line=${rule##*:}
	why="${verdict}ed"
	[ "$verdict" = deny ] && why=denied
	if [[ "$line" =~ ^[0-9]+$ ]]; then
		text=$(sed -n "${line}p" "$policy" | sed -E 's/[[:space:]]*#.*//; s/[[:space:]]+/ /g')
		why="$why by policy.conf line $line: $text"
	else
		why="$why by the default"
	fi
	replies=$(cat "$SL_TMP/ping/$d")
	outcome="$replies/3 replies"
	[ "$replies" = 0 ] && outcome="no reply, dropped on the node"
	printf '  ping %-20s (%s): %s\n' "$d" "$why" "$outcome"
done

say "sluice stats"
sl stats | sed 's/^/  /'

say "sluice dest"
sl dest | sed 's/^/  /'
cat <<'EOF'
  (A denied destination shows more packets than the 3 pings: the kernel reports a drop
   on the node to the sender as ENOBUFS, ping retries, and sluice counts every packet
   that tried to leave.)
EOF

say "Prometheus metrics: curl http://127.0.0.1:9753/metrics   (in $SL_NODE_NS; excerpt)"
in_node curl -sf -m 5 http://127.0.0.1:9753/metrics |
	grep -E '^sluice_(packets_total|destination_packets_total|rule_packets_total|policy_generation)' |
	sed 's/^/  /' || echo "  (no metrics: is curl installed?)"

say "sluice run stops (SIGTERM); enforcement stays until 'sluice detach'"
sluice_stop
printf '  ping 203.0.113.10 with the daemon gone: %s/3 replies\n' "$(sl_ping 203.0.113.10 3 2)"
sl detach --all 2>&1 | sed 's/^/  /'
printf '  ping 203.0.113.10 after detach: %s/3 replies\n' "$(sl_ping 203.0.113.10 3 2)"

say "cleaning up: namespaces, veth pair, bpffs and temporary files are removed"

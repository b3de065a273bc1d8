#!/usr/bin/env bash
# e2e: the Prometheus exporter, scraped by a real Prometheus server (the distro's) that this
# test starts on loopback inside the node namespace. Known traffic, then PromQL over
# Prometheus' HTTP API must return exactly the packets and bytes sluice counted; promtool
# accepts the scrape; per-destination series stay at top N + "other" and sum to the node
# total after traffic to 10,000 destinations; abusive HTTP clients do not stop scrapes or
# enforcement; the loopback-bound port is not reachable from another namespace.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
sl_init "$1"
for t in prometheus promtool curl; do
	command -v "$t" >/dev/null || sl_die "missing tool: $t (run scripts/install-deps.sh)"
done
sl_setup

ALLOWED=198.51.100.10
DENIED=203.0.113.10
MPORT=9753
PPORT=9090
TOP=5
policy=$SL_TMP/policy.conf
cat >"$policy" <<'POL'
default deny
allow 198.51.100.0/24 name allowed-net
deny 203.0.113.0/24 name denied-net
allow 2001:db8:a::/48 name many-v6
POL

sluice_start "$policy" --metrics "127.0.0.1:$MPORT" --top-destinations "$TOP"
scrape() { in_node curl -sf -m 5 "http://127.0.0.1:$MPORT/metrics"; }

# --- Prometheus, scraping every second ----------------------------------------------------
cat >"$SL_TMP/prometheus.yml" <<PROM
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: sluice
    static_configs:
      - targets: ['127.0.0.1:$MPORT']
PROM
in_node prometheus --config.file="$SL_TMP/prometheus.yml" --storage.tsdb.path="$SL_TMP/tsdb" \
	--web.listen-address="127.0.0.1:$PPORT" </dev/null >"$SL_TMP/prometheus.log" 2>&1 &
PROM_PID=$!
stop_prometheus() { kill "$PROM_PID" 2>/dev/null && wait "$PROM_PID" 2>/dev/null || true; }
SL_CLEANUP_HOOKS+=(stop_prometheus)
prom_ready() { in_node curl -sf -m 1 "http://127.0.0.1:$PPORT/-/ready" >/dev/null; }
wait_for 30 prom_ready || { tail -20 "$SL_TMP/prometheus.log" >&2; sl_die "Prometheus not ready"; }

# promql QUERY — the value of an instant query's single result ("none" if no result).
promql() {
	in_node curl -sf -m 5 -G "http://127.0.0.1:$PPORT/api/v1/query" --data-urlencode "query=$1" |
		jq -r '.data.result | if length == 1 then .[0].value[1] else "none" end'
}

# --- known traffic -------------------------------------------------------------------------
sl_ping "$ALLOWED" 7 >/dev/null
sl_icmp_send "$DENIED" 4
want_ap=$(sl_dest_count "$ALLOWED" allow packets)
want_ab=$(sl_dest_count "$ALLOWED" allow bytes)
want_dp=$(sl_dest_count "$DENIED" deny packets)
want_db=$(sl_dest_count "$DENIED" deny bytes)
check "sluice counted the 7 echo requests to $ALLOWED" "$want_ap" 7
check "sluice counted the 4 denied packets to $DENIED" "$want_dp" 4

# Prometheus has the traffic once a scrape after it is stored.
q_ap="sluice_destination_packets_total{destination=\"$ALLOWED\",verdict=\"allow\"}"
caught_up() { [ "$(promql "$q_ap")" = "$want_ap" ] && [ "$(promql "sluice_destination_packets_total{destination=\"$DENIED\",verdict=\"deny\"}")" = "$want_dp" ]; }
wait_for 20 caught_up || true
check "PromQL: packets to $ALLOWED (allow)" "$(promql "$q_ap")" "$want_ap"
check "PromQL: bytes to $ALLOWED (allow)" \
	"$(promql "sluice_destination_bytes_total{destination=\"$ALLOWED\",verdict=\"allow\"}")" "$want_ab"
check "PromQL: packets to $DENIED (deny)" \
	"$(promql "sluice_destination_packets_total{destination=\"$DENIED\",verdict=\"deny\"}")" "$want_dp"
check "PromQL: bytes to $DENIED (deny)" \
	"$(promql "sluice_destination_bytes_total{destination=\"$DENIED\",verdict=\"deny\"}")" "$want_db"
check "PromQL: node packets denied on $SL_NODE_IF" \
	"$(promql "sum(sluice_packets_total{iface=\"$SL_NODE_IF\",verdict=\"deny\"})")" "$want_dp"
check "PromQL: packets decided by rule allowed-net" \
	"$(promql 'sluice_rule_packets_total{rule="allowed-net"}')" "$want_ap"
check "PromQL: bytes decided by rule allowed-net" \
	"$(promql 'sluice_rule_bytes_total{rule="allowed-net"}')" "$want_ab"
check "PromQL: packets decided by rule denied-net" \
	"$(promql 'sluice_rule_packets_total{rule="denied-net"}')" "$want_dp"
check "PromQL: bytes decided by rule denied-net" \
	"$(promql 'sluice_rule_bytes_total{rule="denied-net"}')" "$want_db"
check "PromQL: the policy generation is the one in force" \
	"$(promql sluice_policy_generation)" "$(sl stats --json | jq -r .generation)"
check "PromQL: rules of the policy" "$(promql sluice_policy_rules)" 3
check "PromQL: no policy errors" "$(promql sluice_policy_errors_total)" 0
check "PromQL: build info" "$(promql 'count(sluice_build_info)')" 1

# A reload renumbers the rules (the kernel counts in its other half): the counts stay, and
# stay in every scrape taken while it happens (the daemon folds the old half in a moment
# after the switch; a dip would read as a counter reset to Prometheus).
rule_value() { scrape | awk -v m="$1" -v r="rule=\"$2\"" 'index($0, m "{") == 1 && index($0, r) { print $2 }'; }
gen0=$(sl stats --json | jq -r .generation)
for i in $(seq 1 150); do
	v=$(rule_value sluice_rule_packets_total allowed-net)
	echo "${v:-missing}"
done >"$SL_TMP/during-reload" &
spid=$!
sleep 0.2
kill -HUP "$SL_SLUICE_PID"
reloaded() { [ "$(sl stats --json | jq -r .generation)" != "$gen0" ]; }
wait_for 10 reloaded || sl_die "SIGHUP did not reload the policy"
wait "$spid"
check "scrapes during the reload: allowed-net never missing nor below $want_ap" \
	"$(grep -cvx "$want_ap" "$SL_TMP/during-reload")" 0
check "after SIGHUP: packets of allowed-net kept" \
	"$(rule_value sluice_rule_packets_total allowed-net)" "$want_ap"
check "after SIGHUP: bytes of denied-net kept" \
	"$(rule_value sluice_rule_bytes_total denied-net)" "$want_db"
sl_icmp_send "$DENIED" 2
check "after SIGHUP: new packets add to denied-net" \
	"$(rule_value sluice_rule_packets_total denied-net)" "$((want_dp + 2))"

# --- the exposition format -------------------------------------------------------------------
scrape >"$SL_TMP/scrape1.txt"
lint=$(promtool check metrics <"$SL_TMP/scrape1.txt" 2>&1) && rc=0 || rc=$?
check "promtool check metrics: exit status" "$rc" 0
check "promtool check metrics: no findings" "$lint" ""
check "/metrics content type" \
	"$(in_node curl -s -o /dev/null -w '%{content_type}' "http://127.0.0.1:$MPORT/metrics")" \
	"text/plain; version=0.0.4; charset=utf-8"
check "other paths: 404" \
	"$(in_node curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MPORT/")" 404
check "POST /metrics: 405" \
	"$(in_node curl -s -o /dev/null -w '%{http_code}' -d x "http://127.0.0.1:$MPORT/metrics")" 405

# --- cardinality: 10,000 destinations -----------------------------------------------------
in_node python3 - <<'PY'
import errno, socket
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
for i in range(10000):
    try:
        s.sendto(b"x" * (i % 50), ("2001:db8:a:%x::%x" % (i >> 8, i & 0xff), 9))
    except OSError as e:
        if e.errno not in (errno.ENOBUFS, errno.EAGAIN):
            raise
PY
scrape >"$SL_TMP/scrape2.txt"
for v in allow deny; do
	series=$(grep -c "^sluice_destination_bytes_total{.*verdict=\"$v\"}" "$SL_TMP/scrape2.txt" || true)
	check_ge "10k destinations: $v destination series <= top $TOP + other ($series)" \
		"$((TOP + 1))" "$series"
	dsum=$(awk -v v="verdict=\"$v\"" '/^sluice_destination_bytes_total\{/ && index($0, v) { s += $2 } END { printf "%d", s }' "$SL_TMP/scrape2.txt")
	nsum=$(awk -v v="verdict=\"$v\"" '/^sluice_bytes_total\{/ && index($0, v) { s += $2 } END { printf "%d", s }' "$SL_TMP/scrape2.txt")
	check "10k destinations: $v destination series sum to the node total" "$dsum" "$nsum"
done
tracked=$(awk '/^sluice_map_entries\{map="destinations"\}/ { print $2 }' "$SL_TMP/scrape2.txt")
check_ge "10k destinations: the destination table holds them all ($tracked)" "$tracked" 10002

# --- abusive clients --------------------------------------------------------------------------
in_node python3 - "$MPORT" "$SL_TMP/abuse.ok" <<'PY' &
import socket, sys, time
port, ok = int(sys.argv[1]), sys.argv[2]
idle = []
for _ in range(1000):                      # 1,000 idle connections
    c = socket.create_connection(("127.0.0.1", port)); idle.append(c)
g = socket.create_connection(("127.0.0.1", port))
g.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")   # malformed
big = socket.create_connection(("127.0.0.1", port))
try:
    big.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")
except OSError:
    pass                                    # the server may hang up mid-send: fine
slow = socket.create_connection(("127.0.0.1", port))
slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")  # and never read
open(ok, "w").close()
time.sleep(8)
PY
ABUSE_PID=$!
stop_abuse() { kill "$ABUSE_PID" 2>/dev/null && wait "$ABUSE_PID" 2>/dev/null || true; }
SL_CLEANUP_HOOKS+=(stop_abuse)
wait_for 20 test -e "$SL_TMP/abuse.ok" || sl_die "the abusive clients did not connect"
scrape >"$SL_TMP/scrape3.txt" && rc=0 || rc=$?
check "with 1,000 idle, a malformed, a 1 MB-header and a slow client: a scrape works" "$rc" 0
check_ge "  and it is a whole scrape" "$(grep -c '^sluice_' "$SL_TMP/scrape3.txt")" 20
check "  the daemon is alive" "$(kill -0 "$SL_SLUICE_PID" 2>/dev/null && echo yes || echo no)" yes
sl_counters_reset
sl_icmp_send "$DENIED" 3
check "  and still enforcing: nothing reached $DENIED" "$(sl_count in "$DENIED" icmp packets)" 0
stop_abuse

# --- loopback only -------------------------------------------------------------------------
rc=0
in_world curl -sf -m 2 -o /dev/null "http://$SL_NODE_V4:$MPORT/metrics" || rc=$?
check "the metrics port is not reachable from the world namespace (curl fails)" \
	"$([ "$rc" -ne 0 ] && echo refused || echo reachable)" refused

sl_finish

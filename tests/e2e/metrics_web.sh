#!/usr/bin/env bash
# Acceptance test of the exporter's TLS and basic auth (--web-config, Prometheus' exporter
# web configuration format): with a certificate made by the test and a bcrypt user,
# /metrics answers only over TLS and only to that user's password (401 with a Basic
# challenge otherwise), plain HTTP gets nothing, TLS below 1.2 is refused; the shipped
# example passes promtool's own check; and bad web configurations are refused at start
# with FILE:LINE:COL before anything in the kernel changes.
#
# usage: metrics_web.sh PATH/TO/sluice   (root; builds its own namespaces, see lib.sh)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/lib.sh
source "$here/lib.sh"
sl_init "${1:-}"
for t in openssl htpasswd curl promtool; do
	command -v "$t" >/dev/null || sl_die "missing tool: $t (run scripts/install-deps.sh)"
done
sl_setup

MPORT=9753
URL=https://127.0.0.1:$MPORT/metrics
tls=$SL_TMP/tls
mkdir -m 0700 "$tls"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=sluice-e2e" \
	-addext "subjectAltName=IP:127.0.0.1" -keyout "$tls/key.pem" -out "$tls/cert.pem" 2>/dev/null
chmod 0600 "$tls/key.pem"
hash=$(htpasswd -nbBC 10 prom s3cret-pass | cut -d: -f2)
web=$SL_TMP/web.yml
cat >"$web" <<EOF
tls_server_config:
  cert_file: $tls/cert.pem
  key_file: $tls/key.pem
basic_auth_users:
  prom: '$hash'
EOF
policy=$SL_TMP/policy.conf
printf 'mode enforce\ndefault allow\n' >"$policy"

check "promtool accepts the web configuration" "$(promtool check web-config "$web" 2>&1 | grep -c SUCCESS)" 1
# The shipped example, pointed at this run's certificate: Prometheus' parser and sluice's agree.
sed -e "s|/etc/sluice/tls/|$tls/|" "$here/../../examples/prometheus/web-config.yml" >"$SL_TMP/example.yml"
check "promtool accepts the shipped example" "$(promtool check web-config "$SL_TMP/example.yml" 2>&1 | grep -c SUCCESS)" 1

sluice_start "$policy" --metrics "127.0.0.1:$MPORT" --web-config "$SL_TMP/example.yml" --events off
check "the example's user (password changeme): 200" \
	"$(in_node curl -s -o /dev/null -w '%{http_code}' -m 5 --cacert "$tls/cert.pem" -u prometheus:changeme "$URL")" 200
sluice_stop
sluice_start "$policy" --metrics "127.0.0.1:$MPORT" --web-config "$web" --events off
check "the log says https and basic auth" \
	"$(grep -c "serving metrics on https://127.0.0.1:$MPORT/metrics (basic auth)" "$SL_RUN_LOG")" 1

# status CURL-ARGS... — the HTTP status of one request to the exporter (000: no HTTP at all).
status() { in_node curl -s -o /dev/null -w '%{http_code}' -m 5 "$@" || true; }
check "TLS and the right password: 200" "$(status --cacert "$tls/cert.pem" -u prom:s3cret-pass "$URL")" 200
check_match "the body is the scrape" \
	"$(in_node curl -sf -m 5 --cacert "$tls/cert.pem" -u prom:s3cret-pass "$URL" | grep '^sluice_build_info')" \
	'^sluice_build_info\{version="[^"]+"\} 1$'
check "again (the remembered password): 200" "$(status --cacert "$tls/cert.pem" -u prom:s3cret-pass "$URL")" 200
check "a wrong password: 401" "$(status --cacert "$tls/cert.pem" -u prom:wrong "$URL")" 401
check "an unknown user: 401" "$(status --cacert "$tls/cert.pem" -u other:s3cret-pass "$URL")" 401
check "no credentials: 401" "$(status --cacert "$tls/cert.pem" "$URL")" 401
check_match "the 401 carries a Basic challenge" \
	"$(in_node curl -s -D - -o /dev/null -m 5 --cacert "$tls/cert.pem" "$URL" | tr -d '\r' | grep -i '^www-authenticate')" \
	'^[Ww][Ww][Ww]-[Aa]uthenticate: Basic realm="sluice"'
check "no credentials on another path: 401, not 404" "$(status --cacert "$tls/cert.pem" "https://127.0.0.1:$MPORT/")" 401
check "plain HTTP gets no metrics" "$(status -u prom:s3cret-pass "http://127.0.0.1:$MPORT/metrics" | grep -c 200)" 0
check "TLS 1.1 is refused" "$(status --cacert "$tls/cert.pem" -u prom:s3cret-pass --tlsv1.1 --tls-max 1.1 "$URL")" 000
check "the daemon still serves" "$(status --cacert "$tls/cert.pem" -u prom:s3cret-pass "$URL")" 200
sluice_stop

# refused WHAT FILE REGEX — sluice run with web configuration FILE exits 1, saying REGEX.
refused() {
	local rc=0 out
	out=$(in_node "$SLUICE" run --iface "$SL_NODE_IF" --policy "$policy" --events off \
		--metrics "127.0.0.1:$MPORT" --web-config "$2" --pin-dir "$SL_PIN_DIR" \
		--state-dir "$SL_STATE_DIR" 2>&1 </dev/null) || rc=$?
	check "$1: refused" "$rc" 1
	check_match "$1: the message" "$(grep 'error' <<<"$out" | head -n1)" "$3"
}
sl_log "bad web configurations are refused before anything changes"
printf 'tls_server_config:\n  cert_file: %s\n  key_file: %s\n  client_ca_file: /x\n' \
	"$tls/cert.pem" "$tls/key.pem" >"$SL_TMP/w1.yml"
refused "unsupported key" "$SL_TMP/w1.yml" "w1.yml:4:3: tls_server_config: 'client_ca_file' is not supported"
printf 'basic_auth_users:\n  prom: plaintext\n' >"$SL_TMP/w2.yml"
refused "not a bcrypt hash" "$SL_TMP/w2.yml" "w2.yml:2:9: basic_auth_users: prom: expected a bcrypt hash"
chmod 0644 "$tls/key.pem"
refused "a key readable by others" "$web" "key_file: .*key.pem is readable by others \(mode 0644\)"
chmod 0600 "$tls/key.pem"
printf 'tls_server_config:\n  cert_file: %s\n' "$tls/cert.pem" >"$SL_TMP/w3.yml"
refused "key_file missing" "$SL_TMP/w3.yml" "w3.yml:2:3: tls_server_config needs both cert_file and key_file"
printf 'basic_auth_users: [a, b\n' >"$SL_TMP/w4.yml"
refused "not YAML" "$SL_TMP/w4.yml" "w4.yml:2:1: "
check "nothing was attached by the refused starts" "$(find "$SL_PIN_DIR/links" -mindepth 1 | wc -l)" 2

sl_finish

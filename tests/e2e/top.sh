#!/usr/bin/env bash
# Acceptance test of `sluice top`: with a steady stream to an allowed and a denied
# destination, the live view shows both with their verdicts and rates that match the
# stream (packets of one size: bytes/s = packets/s x the frame size), and node rates by
# verdict; the text view names them too.
#
# usage: top.sh PATH/TO/sluice   (root; builds its own namespaces, see lib.sh)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/lib.sh
source "$here/lib.sh"
sl_init "${1:-}"
sl_setup

ALLOWED=198.51.100.10
DENIED=203.0.113.10
FRAME=106 # 64-byte payload + UDP 8 + IPv4 20 + Ethernet 14
policy=$SL_TMP/policy.conf
printf 'mode enforce\ndefault deny\nallow %s\n' "$ALLOWED" >"$policy"
sluice_start "$policy" --metrics off --events off
sl_stream_start "$ALLOWED" "$DENIED"
sleep 0.5

view=$(sl top --json --iterations 2 --interval 1 | tail -n 1)
dest() { jq -c --arg d "$1" '.destinations[] | select(.destination == $d)' <<<"$view"; }
sl_log "second view: $(jq -c '{totals: .totals.deny, n: .active_destinations}' <<<"$view")"
check "the allowed destination, verdict allow" "$(dest "$ALLOWED" | jq -r .verdict)" allow
check "the denied destination, verdict deny" "$(dest "$DENIED" | jq -r .verdict)" deny
check_ge "its packet rate is the stream's (at least 200/s)" \
	"$(dest "$DENIED" | jq '.packets_per_second | floor')" 200
check "bytes/s = packets/s x $FRAME for the allowed one" \
	"$(dest "$ALLOWED" | jq '.bytes_per_second / .packets_per_second | round')" "$FRAME"
check_ge "node deny rate" "$(jq '.totals.deny.packets_per_second | floor' <<<"$view")" 200
check_ge "node allow rate" "$(jq '.totals.allow.packets_per_second | floor' <<<"$view")" 200
check "two destinations active" "$(jq .active_destinations <<<"$view")" 2
text=$(sl top --iterations 1 --interval 1)
check_match "the text view lists the denied destination" \
	"$(grep -E "^$DENIED " <<<"$text")" "^$DENIED +deny "
check "--interval 0 is refused" "$(sl top --interval 0 >/dev/null 2>&1; echo $?)" 2
sl_stream_stop

sl_finish

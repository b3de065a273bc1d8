#!/usr/bin/env bash
# e2e: connect-time fail-fast (issue 9, acceptance 3). `sluice run --connect-hooks=CG` on a
# cgroup this test creates; only the test's own sender subshells are moved into it, running
# as a user this test creates. With `default deny`:
#  - TCP connect() to a denied destination fails at once with EPERM ("Operation not
#    permitted"), from python and from curl; an allowed destination is reached;
#  - UDP sendto() to a denied destination fails with EPERM, IPv4, IPv6 and IPv4-mapped IPv6
#    (decided as the IPv4 address); an allowed mapped destination is reached;
#  - a process outside the cgroup is not refused by the hook: its datagram leaves the socket
#    and tc egress drops it (counted at hook tc_egress, never reaching world);
#  - every refused call counts once under hook=connect; the deny event has hook connect,
#    the sender's uid and the cgroup;
#  - a UDP server in the cgroup answering a denied peer that contacted it first is not
#    refused (a reply, as tc egress decides it), IPv4 and IPv6; sending to a denied peer
#    that did not is;
#  - essential traffic passes: a DHCP client's datagram (port 68 to 67) to a denied address;
#  - audit mode never refuses; a restart adopts the pinned links (still one program per
#    hook on the cgroup); `sluice detach --all` removes them.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/lib.sh
source "$here/lib.sh"
sl_init "${1:-}"
for t in useradd userdel findmnt curl bpftool; do
	command -v "$t" >/dev/null || sl_die "missing tool: $t (run scripts/install-deps.sh)"
done
sl_setup

EVENTS=$SL_TMP/events.json
REPLY_PORT=5353
DENIED4=203.0.113.10
DENIED6=2001:db8:d::10
ALLOWED4=198.51.100.10
policy=$SL_TMP/policy.conf
cat >"$policy" <<'EOF'
default deny
allow 198.51.100.0/24 name allowed-net
allow 2001:db8:a::/48 name allowed-net6
EOF
audit_policy=$SL_TMP/audit.conf
printf 'mode audit\n' | cat - "$policy" >"$audit_policy"

# --- this test's own cgroup and user ------------------------------------------------------
# The cgroup v2 hierarchy mounted once more under the test's temporary directory: `ip netns
# exec` remounts /sys, so the daemon in the node namespace would not see the system's mount.
findmnt -n -t cgroup2 >/dev/null || sl_die "no cgroup2 mount"
CG2=$SL_TMP/cgroup2
mkdir "$CG2"
mount -t cgroup2 cgroup2 "$CG2"
CG=$CG2/sluice-test-$SL_ID
TEST_USER=sl-cn-$SL_ID
cleanup_connect() {
	# Processes still in the cgroup are this test's senders; they block its removal.
	if [ -f "$CG/cgroup.procs" ]; then
		local p
		while read -r p; do kill -KILL "$p" 2>/dev/null || true; done <"$CG/cgroup.procs"
		wait_for 5 test ! -s "$CG/cgroup.procs" || true
		rmdir "$CG" 2>/dev/null || true
	fi
	mountpoint -q "$CG2" && umount "$CG2"
	id "$TEST_USER" >/dev/null 2>&1 && userdel "$TEST_USER"
	return 0
}
SL_CLEANUP_HOOKS+=(cleanup_connect)
useradd --system --no-create-home --no-user-group --shell /usr/sbin/nologin "$TEST_USER"
TEST_UID=$(id -u "$TEST_USER")
mkdir "$CG"
CG_REL=${CG#"$CG2"}

# in_cg COMMAND... — run COMMAND in the node namespace as the test user, in the test cgroup.
# Only this subshell moves into the cgroup; the test itself stays where it is.
in_cg() {
	(
		echo "$BASHPID" >"$CG/cgroup.procs"
		# The system interpreter: root's PATH may lead to one the test user cannot run.
		exec ip netns exec "$SL_NODE_NS" setpriv --reuid="$TEST_UID" --regid=65534 \
			--clear-groups "$@"
	)
}
# in_cg_root COMMAND... — the same as root (a privileged source port).
in_cg_root() {
	(
		echo "$BASHPID" >"$CG/cgroup.procs"
		exec ip netns exec "$SL_NODE_NS" "$@"
	)
}

# try_call tcp|udp DEST [PORT] — one connect() (tcp) or sendto() (udp); prints "ok" or the
# errno's name, then the time the call took in ms. "--outside": from the test's own cgroup.
PY_CALL='
import errno, socket, sys, time
kind, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
s.settimeout(3)
t = time.monotonic()
try:
    if kind == "tcp":
        s.connect((dst, port))
    else:
        s.sendto(b"sluice-udp connect-hooks", (dst, port))
    res = "ok"
except OSError as e:
    res = errno.errorcode.get(e.errno, str(e.errno)) if e.errno else type(e).__name__
print(res, "%.3f" % ((time.monotonic() - t) * 1000))
'
try_call() {
	local port=$SL_UDP_PORT
	[ "$1" = tcp ] && port=$SL_TCP_PORT
	in_cg /usr/bin/python3 -c "$PY_CALL" "$1" "$2" "${3:-$port}"
}
try_call_outside() {
	in_node python3 -c "$PY_CALL" "$1" "$2" "${3:-$SL_UDP_PORT}"
}

connect_total() { # VERDICT — calls counted under hook=connect
	sl stats --json | jq --arg v "$1" \
		'[.totals[] | select(.hook == "connect" and .verdict == $v) | .packets] | add // 0'
}
hooks_on_cgroup() { # programs attached to the test cgroup
	bpftool cgroup show "$CG" 2>/dev/null | grep -cE 'connect4|connect6|sendmsg4|sendmsg6' || true
}

sl_server_start
sluice_start "$policy" --connect-hooks="$CG" --events "$EVENTS" --event-interval 1s
check "four connect-time programs on the test cgroup" "$(hooks_on_cgroup)" 4
status=$(sl status --json)
check "sluice status lists the four hooks on the cgroup" \
	"$(jq -r '[.connect_hooks[] | .hook] | sort | join(",")' <<<"$status")" \
	"connect4,connect6,sendmsg4,sendmsg6"
check "... on the test cgroup's id" "$(jq '[.connect_hooks[].cgroup_id] | unique | .[0]' <<<"$status")" \
	"$(stat -c %i "$CG")"
check "... and healthy" "$(jq .healthy <<<"$status")" true

# --- TCP connect -------------------------------------------------------------------------
before=$(connect_total deny)
read -r res ms < <(try_call tcp "$DENIED4")
check "TCP connect to denied $DENIED4 from the cgroup: EPERM" "$res" EPERM
sl_log "refused connect() returned after $ms ms"
read -r res ms < <(try_call tcp "$DENIED6")
check "TCP connect to denied $DENIED6: EPERM" "$res" EPERM
read -r res ms < <(try_call tcp "::ffff:$DENIED4")
check "TCP connect6 to IPv4-mapped ::ffff:$DENIED4: EPERM (decided as IPv4)" "$res" EPERM
read -r res ms < <(try_call tcp "$ALLOWED4")
check "TCP connect to allowed $ALLOWED4: connected" "$res" ok
read -r res ms < <(try_call tcp 2001:db8:a::10)
check "TCP connect to allowed 2001:db8:a::10: connected" "$res" ok

# --- UDP sendto --------------------------------------------------------------------------
read -r res ms < <(try_call udp "$DENIED4")
check "UDP sendto denied $DENIED4: EPERM" "$res" EPERM
read -r res ms < <(try_call udp "$DENIED6")
check "UDP sendto denied $DENIED6: EPERM" "$res" EPERM
read -r res ms < <(try_call udp "::ffff:$DENIED4")
check "UDP sendto IPv4-mapped ::ffff:$DENIED4: EPERM" "$res" EPERM
read -r res ms < <(try_call udp "::ffff:$ALLOWED4")
check "UDP sendto IPv4-mapped allowed ::ffff:$ALLOWED4: sent" "$res" ok
wait_for 5 test "$(sl_server_seen udp "$ALLOWED4")" -ge 1 || true
check "... and it arrived in world" "$(sl_server_seen udp "$ALLOWED4")" 1
check "every refused call counted once under hook=connect" \
	"$(($(connect_total deny) - before))" 6

# curl, the tool a user runs: fails at once with the kernel's EPERM text.
# (-v: curl 7.88 reports the errno's text only in its verbose lines.)
out=$(in_cg /usr/bin/curl -sS -v -m 5 "http://$DENIED4:$SL_TCP_PORT/" 2>&1) && rc=0 || rc=$?
check "curl to denied $DENIED4 fails to connect (exit 7)" "$rc" 7
check_match "... with 'Operation not permitted'" "$out" "Operation not permitted"
sl_log "curl: $(grep -E 'Operation not permitted|Failed to connect' <<<"$out" | tr '\n' ' ')"

# --- outside the cgroup: tc egress is the backstop ---------------------------------------
seen_before=$(sl_server_seen udp 203.0.113.77)
tc_before=$(sl stats --json | jq '[.totals[] | select(.hook == "tc_egress" and .verdict == "deny")
	| .packets] | add // 0')
before=$(connect_total deny)
read -r res ms < <(try_call_outside udp 203.0.113.77)
check "UDP sendto denied 203.0.113.77 from outside the cgroup: not refused by the hook" "$res" ok
check "... not counted at hook=connect" "$(($(connect_total deny) - before))" 0
check "... dropped by tc egress" "$(($(sl stats --json | jq '[.totals[] |
	select(.hook == "tc_egress" and .verdict == "deny") | .packets] | add // 0') - tc_before))" 1
sleep 0.5
check "... never reached world" "$(sl_server_seen udp 203.0.113.77)" "$seen_before"

# --- events: hook connect, the sender's uid and cgroup ------------------------------------
wait_for 10 grep -q '"hook":"connect"' "$EVENTS" || true
ev=$(jq -c --arg d "$DENIED4" 'select(.type == "deny" and .hook == "connect" and .dst == $d)' \
	"$EVENTS" | head -n1)
check "a deny event for $DENIED4 at hook connect" "$(jq -r .hook <<<"$ev")" connect
check "... with the sender's uid" "$(jq -r .uid <<<"$ev")" "$TEST_UID"
check "... and user" "$(jq -r .user <<<"$ev")" "$TEST_USER"
check "... and cgroup" "$(jq -r .cgroup <<<"$ev")" "$CG_REL"

# --- essential traffic: a DHCP client's shape passes whatever the destination -------------
# sendto_from SPORT DEST DPORT — as root in the cgroup, from a socket bound to SPORT.
sendto_from() {
	in_cg_root /usr/bin/python3 - "$@" <<'PY'
import errno, socket, sys
sport, dst, dport = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", sport))
try:
    s.sendto(b"dhcp-ish", (dst, dport))
    print("ok")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
PY
}
check "UDP 68 -> $DENIED4:67 (a DHCP client's shape): essential, not refused" \
	"$(sendto_from 68 "$DENIED4" 67)" ok
check "UDP 69 -> $DENIED4:67 (not the shape): EPERM" "$(sendto_from 69 "$DENIED4" 67)" EPERM

# --- a UDP server in the cgroup answering a denied peer that contacted it first ------------
# reply_check LOCAL PEER OTHER — a server on the wildcard address (port REPLY_PORT) waits
# for one datagram, answers its sender, then sends to OTHER (a denied peer that never
# contacted it); PEER in world sends first from its own address and waits for the answer.
reply_check() {
	local local_addr=$1 peer=$2 other=$3 log=$SL_TMP/reply.$RANDOM fam=AF_INET any=0.0.0.0
	case $peer in *:*) fam=AF_INET6 any=:: ;; esac
	in_cg /usr/bin/python3 - "$fam" "$any" "$REPLY_PORT" "$other" >"$log" 2>&1 <<'PY' &
import errno, socket, sys
fam, any_addr, port, other = getattr(socket, sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
s = socket.socket(fam, socket.SOCK_DGRAM)
s.bind((any_addr, port))
s.settimeout(10)
print("ready", flush=True)
data, peer = s.recvfrom(100)
def send(addr):
    try:
        s.sendto(b"answer", addr)
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
print("reply", send(peer), flush=True)
print("other", send((other, port)), flush=True)
PY
	local server=$!
	wait_for 10 grep -q ready "$log" || sl_die "reply server did not start"
	got=$(in_world python3 - "$peer" "$local_addr" "$REPLY_PORT" <<'PY'
import socket, sys
peer, node, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET6 if ":" in peer else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((peer, 0))
s.settimeout(3)
s.sendto(b"question", (node, port))
try:
    print(s.recv(100).decode())
except OSError:
    print("no answer")
PY
	)
	wait "$server" || true
	check "UDP server answering denied $peer that asked first: sendto not refused" \
		"$(sed -n 's/^reply //p' "$log")" ok
	check "... and $peer got the answer" "$got" answer
	check "... sendto denied $other that never asked: EPERM" "$(sed -n 's/^other //p' "$log")" EPERM
}
reply_check "$SL_NODE_V4" "$DENIED4" 203.0.113.77
reply_check "$SL_NODE_V6" "$DENIED6" 2001:db8:d:600d::10

# --- audit mode never refuses ------------------------------------------------------------
sl policy load "$audit_policy" >/dev/null
before=$(connect_total audit)
read -r res ms < <(try_call tcp "$DENIED4")
check "audit mode: TCP connect to $DENIED4 connects" "$res" ok
read -r res ms < <(try_call udp "$DENIED6")
check "audit mode: UDP sendto $DENIED6 sent" "$res" ok
check "... both counted as audit under hook=connect" "$(($(connect_total audit) - before))" 2
sl policy load "$policy" >/dev/null

# --- restart adopts the pinned links; detach removes them ---------------------------------
sluice_stop
read -r res ms < <(try_call tcp "$DENIED4")
check "daemon stopped: the pinned hooks still refuse" "$res" EPERM
sluice_start "$policy" --connect-hooks="$CG" --events off
check "restart adopted the links: still four programs on the cgroup" "$(hooks_on_cgroup)" 4
check "... the same links, not pruned as stale interface pins" \
	"$(sl status --json | jq -c '[.connect_hooks[].link_id] | sort')" \
	"$(jq -c '[.connect_hooks[].link_id] | sort' <<<"$status")"
sluice_stop
sl detach --all >/dev/null 2>&1
check "sluice detach --all: no program left on the cgroup" "$(hooks_on_cgroup)" 0
read -r res ms < <(try_call udp "$DENIED4")
check "after detach the call is not refused" "$res" ok

sl_finish

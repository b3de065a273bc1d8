#!/usr/bin/env bash
# `cmake --install` with DESTDIR into staging directories (nothing outside them is
# touched): the tree docs/operations.md documents, configuration defaults installed only
# when absent, the systemd unit naming the installed binary and passing `systemd-analyze
# verify` (where systemd-analyze exists), with the hardening the operations guide promises.
#
# usage: install.sh BUILD_DIR SOURCE_DIR
set -euo pipefail

build=$(readlink -f "${1:?usage: install.sh BUILD_DIR SOURCE_DIR}")
src=$(readlink -f "${2:?usage: install.sh BUILD_DIR SOURCE_DIR}")
# shellcheck source=tests/e2e/lib.sh
source "$src/tests/e2e/lib.sh" # check helpers only: no namespaces here

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sluice-install.XXXXXX")
trap 'rm -rf --one-file-system "$tmp"' EXIT

# install PREFIX STAGING — prints cmake's log to STAGING.log
install_to() {
	DESTDIR=$2 cmake --install "$build" --prefix "$1" >"$2.log" 2>&1 ||
		sl_die "cmake --install failed: $(cat "$2.log")"
}

stage=$tmp/stage
install_to /usr "$stage"
tree=$(cd "$stage" && find . -mindepth 1 \( -type f -o -type l \) -printf '%p %m\n' | sort)
want=$(sort <<'EOF'
./etc/sluice/policy.conf 644
./etc/sluice/sluice.conf 644
./usr/lib/systemd/system/sluice.service 644
./usr/sbin/sluice 755
./usr/share/doc/sluice/README.md 644
./usr/share/doc/sluice/examples/policy-full.conf 644
./usr/share/doc/sluice/examples/policy.conf 644
./usr/share/doc/sluice/examples/sluice.conf 644
./usr/share/doc/sluice/examples/sluice.service 644
./usr/share/doc/sluice/operations.md 644
./usr/share/doc/sluice/threat-model.md 644
./usr/share/man/man8/sluice.8 644
EOF
)
check "the installed tree (files and modes)" "$tree" "$want"
# The manual page: roff that groff reads without a warning, every command in it.
man=$stage/usr/share/man/man8/sluice.8
check "the manual page renders without warnings" "$(groff -man -ww -z -Tutf8 "$man" 2>&1)" ""
check "the manual page documents every command" "$(grep -c '^\.SS ' "$man")" \
	"$("$stage/usr/sbin/sluice" help | awk '/^COMMANDS/ { on = 1; next } on && /^  [a-z]/ { n++ } on && /^$/ { exit } END { print n }')"
check "the installed binary runs" "$("$stage/usr/sbin/sluice" version)" "sluice $(sed -n 's/^project(sluice VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")"
check "default configuration is the example" \
	"$(cmp -s "$stage/etc/sluice/sluice.conf" "$src/examples/sluice.conf" && echo same || echo differs)" same
check "default policy is the example" \
	"$(cmp -s "$stage/etc/sluice/policy.conf" "$src/examples/policy.conf" && echo same || echo differs)" same
check "the default policy compiles" \
	"$("$stage/usr/sbin/sluice" policy check "$stage/etc/sluice/policy.conf" >/dev/null 2>&1 && echo ok || echo fails)" ok

unit=$stage/usr/lib/systemd/system/sluice.service
key() { sed -n "s/^$1=//p" "$unit" | tr '\n' '|' | sed 's/|$//'; }
check "unit: ExecStart is the installed binary" "$(key ExecStart)" \
	"/usr/sbin/sluice run --config /etc/sluice/sluice.conf"
check "unit: readiness after attach" "$(key Type)" notify
check "unit: reload is SIGHUP" "$(key ExecReload)" '/bin/kill -HUP $MAINPID'
check "unit: restarted on failure" "$(key Restart)" on-failure
check "unit: capabilities" "$(key CapabilityBoundingSet)" "CAP_BPF CAP_NET_ADMIN CAP_PERFMON"
check "unit: no ambient capabilities" "$(key AmbientCapabilities)" ""
check "unit: read-only system" "$(key ProtectSystem)" strict
check "unit: writable pins" "$(key ReadWritePaths)" /sys/fs/bpf
check "unit: state directory" "$(key StateDirectory) $(key StateDirectoryMode)" "sluice 0700"
check "unit: no new privileges" "$(key NoNewPrivileges)" yes
check "unit: documentation link is installed" "$(key Documentation)" \
	"file:///usr/share/doc/sluice/operations.md"

if command -v systemd-analyze >/dev/null; then
	# verify checks that ExecStart and ExecReload exist: look at the staged tree as the
	# root, with the one host command the unit uses (kill) copied into a scratch copy.
	root=$tmp/verify-root
	cp -a "$stage" "$root"
	mkdir -p "$root/bin"
	cp "$(type -P kill)" "$root/bin/kill"
	rc=0
	out=$(systemd-analyze --root="$root" verify /usr/lib/systemd/system/sluice.service 2>&1) || rc=$?
	check "systemd-analyze verify: exit status" "$rc" 0
	check "systemd-analyze verify: no warnings" "$out" ""
	exposure=$(systemd-analyze --offline=true --root="$root" security \
		/usr/lib/systemd/system/sluice.service 2>/dev/null | sed -n 's/.*Overall exposure level for sluice.service: //p')
	echo "# systemd-analyze security: exposure $exposure"
else
	echo "# systemd-analyze not available: unit not verified"
fi

sl_log "an upgrade keeps the admin's configuration"
echo "# edited by the admin" >>"$stage/etc/sluice/sluice.conf"
printf 'default allow\n' >"$stage/etc/sluice/policy.conf"
touch -d '2000-01-01' "$stage/usr/sbin/sluice"
install_to /usr "$stage"
check "sluice.conf kept" "$(tail -n1 "$stage/etc/sluice/sluice.conf")" "# edited by the admin"
check "policy.conf kept" "$(cat "$stage/etc/sluice/policy.conf")" "default allow"
check "the binary is replaced" "$(cmp -s "$stage/usr/sbin/sluice" "$build/sluice" && echo new || echo old)" new
check "cmake says it kept them" "$(grep -c '^-- Keeping: ' "$stage.log")" 2

sl_log "another prefix: the unit follows it, the configuration stays in /etc/sluice"
install_to /usr/local "$tmp/local"
check "unit under the prefix names the binary there" \
	"$(sed -n 's/^ExecStart=//p' "$tmp/local/usr/local/lib/systemd/system/sluice.service")" \
	"/usr/local/sbin/sluice run --config /etc/sluice/sluice.conf"
check "configuration under /etc/sluice" "$(ls "$tmp/local/etc/sluice" | tr '\n' ' ')" "policy.conf sluice.conf "

sl_finish

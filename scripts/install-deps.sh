#!/usr/bin/env bash
# Install what sluice needs to build, test and benchmark, from the distribution's archive.
# Idempotent: packages already present are left alone. Debian 12+ / Ubuntu 22.04+.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
	exec sudo -E "$0" "$@"
fi

packages=(
	# build
	build-essential cmake pkg-config clang llvm bpftool libbpf-dev libelf-dev zlib1g-dev
	libjansson-dev libmicrohttpd-dev libyaml-dev libcrypt-dev
	# tests: namespaces, traffic, JSON checks
	iproute2 iputils-ping jq python3 util-linux curl passwd
	# metrics tests: a real Prometheus server and promtool
	prometheus
	# exporter TLS and basic auth tests: certificates, bcrypt hashes
	openssl apache2-utils
	# the manual page is checked with groff
	groff-base
	# benchmark peers and plots
	iperf3 nftables iptables ipset gnuplot-nox
	# e2e: TSO/GSO switched on and off on the veth (gso.sh)
	ethtool
)
# Installed when the archive has them; what needs them is skipped otherwise.
optional=(
	# libFuzzer runtime of the default clang, for the policy fuzzer in scripts/test.sh.
	# Debian 12+ split it out of clang's own packages (only recommended by them, and this
	# script installs without recommends); libclang-rt-dev follows the `clang` package.
	libclang-rt-dev
)

installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

missing=()
for p in "${packages[@]}"; do
	installed "$p" || missing+=("$p")
done
missing_optional=()
for p in "${optional[@]}"; do
	installed "$p" || missing_optional+=("$p")
done
if [ "${#missing[@]}" -eq 0 ] && [ "${#missing_optional[@]}" -eq 0 ]; then
	exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
for p in "${missing_optional[@]}"; do
	if apt-cache show "$p" >/dev/null 2>&1; then
		missing+=("$p")
	else
		echo "install-deps: $p is not in the archive; skipping it" >&2
	fi
done
if [ "${#missing[@]}" -eq 0 ]; then
	exit 0
fi
echo "install-deps: installing ${missing[*]}" >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The tests start their own Prometheus on loopback inside a network namespace; the
# package's own service (started on systemd machines) is not wanted: stop it if we installed it.
if printf '%s\n' "${missing[@]}" | grep -qx prometheus && command -v systemctl >/dev/null &&
	[ -d /run/systemd/system ]; then
	systemctl disable --now prometheus >/dev/null 2>&1 || true
fi

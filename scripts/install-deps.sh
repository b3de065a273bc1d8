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
	libjansson-dev
	# tests: namespaces, traffic, JSON checks
	iproute2 iputils-ping jq python3 util-linux
	# benchmark peers and plots
	iperf3 nftables iptables ipset gnuplot-nox
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
	exit 0
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

#!/usr/bin/env bash
# Installs every Debian 12 package that flowlb's build, tests, benchmarks and
# demo need. Idempotent: packages already present are skipped quickly.
# Usage: scripts/install-deps.sh   (as root)
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config git clang llvm lld
  clang-format libclang-rt-14-dev
  # libraries
  libxdp-dev libbpf-dev libelf-dev zlib1g-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libcpprest-dev libssl-dev prometheus-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libnl-route-3-dev libnl-3-dev libnftables-dev libyaml-cpp-dev libspdlog-dev libfmt-dev libcli11-dev
  # runtime tools for the lab, the e2e tests and the demo
  xdp-tools iproute2 ethtool iperf3 socat nginx-light curl wrk tcpdump
  python3 python3-scapy nftables procps util-linux iputils-ping unzip openssl
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages (${missing[*]}); run as root" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Several builds may run this at once: wait for the package lock instead of failing.
apt-get -o DPkg::Lock::Timeout=600 update -q
apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"

#!/usr/bin/env bash
# Installs every Debian 12 package that flowlb's build, tests, benchmarks and
# demo need. Idempotent: packages already present are skipped quickly.
# Usage: scripts/install-deps.sh [build]   (as root)
#   build   only what compiling the two binaries needs (the Dockerfile's build stage)
set -euo pipefail

build_packages=(
  # toolchain (clang builds the XDP program)
  build-essential cmake ninja-build ccache pkg-config clang llvm
  # libraries
  libxdp-dev libbpf-dev libelf-dev zlib1g-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libcpprest-dev libssl-dev prometheus-cpp-dev
  libnl-route-3-dev libnl-3-dev libnftables-dev libyaml-cpp-dev libspdlog-dev libfmt-dev libcli11-dev
)
packages=(
  "${build_packages[@]}"
  git lld clang-format libclang-rt-14-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # runtime tools for the lab, the e2e tests and the demo
  xdp-tools iproute2 ethtool iperf3 socat nginx-light curl wrk tcpdump
  python3 python3-scapy python3-yaml python3-jsonschema nftables procps util-linux iputils-ping
  unzip openssl
  # a real Prometheus (and promtool) for the dashboard and alert checks
  prometheus
  # the image: built without a daemon (buildah) from a local Debian base (mmdebstrap)
  buildah mmdebstrap uidmap
  # the BGP lab: real routers as the agent's peers (run in namespaces, never as services)
  bird2 frr gobgpd
)
[ "${1:-}" = build ] && packages=("${build_packages[@]}")

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

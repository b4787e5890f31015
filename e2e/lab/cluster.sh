#!/usr/bin/env bash
# The cluster lab: a client LAN with two LB nodes, a backend network with four
# backends and the controller. See e2e/README.md for the drawing.
#   e2e/lab/cluster.sh up [PREFIX]     create it (idempotent: tears down first)
#   e2e/lab/cluster.sh down [PREFIX]   delete every namespace named PREFIX-*
set -euo pipefail
cmd=${1:-}
P=${2:-flc}
NODES="client lb1 lb2 swc swb ctl b1 b2 b3 b4"

in_ns() { local ns=$1; shift; ip netns exec "$P-$ns" "$@"; }

down() {
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^$P-(client|lb[0-9]|sw[cb]|ctl|b[0-9])$" || true); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
}

port() {  # port NS IF SWITCH: a veth from NS (named IF) to a port of SWITCH's bridge
  local peer="${1}-${2}"
  ip link add "$2" netns "$P-$1" type veth peer name "$peer" netns "$P-$3"
  in_ns "$1" ip link set "$2" up
  in_ns "$3" ip link set "$peer" master br0 up
}

up() {
  down
  for ns in $NODES; do
    ip netns add "$P-$ns"
    in_ns "$ns" ip link set lo up
  done
  for sw in swc swb; do
    in_ns "$sw" ip link add br0 type bridge
    in_ns "$sw" ip link set br0 up
  done
  # Client LAN 10.10.1.0/24: the client and both LB nodes' l0.
  port client c0 swc
  in_ns client ip addr add 10.10.1.2/24 dev c0
  in_ns client ip -6 addr add fd10:1::2/64 dev c0 nodad
  in_ns client ethtool -K c0 tx off >/dev/null
  for i in 1 2; do
    port "lb$i" l0 swc
    port "lb$i" l1 swb
    in_ns "lb$i" ip addr add "10.10.1.1$i/24" dev l0
    in_ns "lb$i" ip addr add "10.10.2.10$i/24" dev l1
    in_ns "lb$i" ip -6 addr add "fd10:1::1$i/64" dev l0 nodad
    in_ns "lb$i" ip -6 addr add "fd10:2::10$i/64" dev l1 nodad
    in_ns "lb$i" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
    in_ns "lb$i" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.l0.rp_filter=0 \
      net.ipv4.conf.l1.rp_filter=0
    in_ns "lb$i" ethtool -K l1 tx off >/dev/null
  done
  # Backend network 10.10.2.0/24: the controller, the backends, the LB nodes' l1.
  port ctl eth0 swb
  in_ns ctl ip addr add 10.10.2.5/24 dev eth0
  for i in 1 2 3 4; do
    port "b$i" eth0 swb
    in_ns "b$i" ip addr add "10.10.2.1$i/24" dev eth0
    in_ns "b$i" ip -6 addr add "fd10:2::1$i/64" dev eth0 nodad
    # DSR replies go to the client through an LB node's kernel routing.
    in_ns "b$i" ip route add 10.10.1.0/24 via 10.10.2.101
    # The DSR VIP on lo, never answered by ARP.
    in_ns "b$i" ip addr add 10.10.1.120/32 dev lo
    in_ns "b$i" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
    in_ns "b$i" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0
    in_ns "b$i" ethtool -K eth0 tx off >/dev/null
  done
  # Warm the neighbour tables (a new bridge takes about a second to pass the
  # first frames).
  for i in 1 2 3 4; do
    in_ns "b$i" ping -c1 -W3 10.10.2.101 >/dev/null || true
    in_ns "b$i" ping -c1 -W3 10.10.2.102 >/dev/null || true
  done
  in_ns client ping -c1 -W3 10.10.1.11 >/dev/null || true
  in_ns client ping -c1 -W3 10.10.1.12 >/dev/null || true
  in_ns ctl ping -c1 -W3 10.10.2.101 >/dev/null || true
}

case "$cmd" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down [PREFIX]" >&2; exit 2 ;;
esac

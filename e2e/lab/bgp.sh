#!/usr/bin/env bash
# The BGP lab: a client, a router (BIRD, FRR or GoBGP runs in it), up to
# three LB nodes on the router's LB network, and three backends. The router
# learns each VIP from every LB node and spreads flows over them with ECMP
# (L4 hash). See e2e/README.md for the drawing.
#   e2e/lab/bgp.sh up [PREFIX]     create it (idempotent: tears down first)
#   e2e/lab/bgp.sh down [PREFIX]   delete every namespace named PREFIX-*
set -euo pipefail
cmd=${1:-}
P=${2:-flbgp}
NODES="client rt swl swb lb1 lb2 lb3 b1 b2 b3"

in_ns() { local ns=$1; shift; ip netns exec "$P-$ns" "$@"; }

down() {
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^$P-(client|rt|sw[lb]|lb[0-9]|b[0-9])$" || true); do
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
  for sw in swl swb; do
    in_ns "$sw" ip link add br0 type bridge
    in_ns "$sw" ip link set br0 up
  done
  # Client network 10.30.0.0/24: the client and the router.
  ip link add c0 netns "$P-client" type veth peer name rtr-c netns "$P-rt"
  in_ns client ip link set c0 up
  in_ns rt ip link set rtr-c up
  in_ns client ip addr add 10.30.0.2/24 dev c0
  in_ns client ip -6 addr add fd30::2/64 dev c0 nodad
  in_ns client ip route add default via 10.30.0.1
  in_ns client ip -6 route add default via fd30::1
  in_ns client ethtool -K c0 tx off >/dev/null
  in_ns rt ip addr add 10.30.0.1/24 dev rtr-c
  in_ns rt ip -6 addr add fd30::1/64 dev rtr-c nodad
  # The router: forwards, and hashes ECMP on the L4 5-tuple.
  in_ns rt sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
    net.ipv4.fib_multipath_hash_policy=1 net.ipv6.fib_multipath_hash_policy=1 \
    net.ipv4.conf.all.rp_filter=0
  # LB network 10.30.1.0/24: the router and every LB node's l0 (BGP runs here).
  port rt rtr-l swl
  in_ns rt ip addr add 10.30.1.1/24 dev rtr-l
  in_ns rt ip -6 addr add fd30:1::1/64 dev rtr-l nodad
  in_ns rt ethtool -K rtr-l tx off >/dev/null
  # Backend network 10.30.2.0/24: the router (the backends' gateway, so DSR
  # replies go straight back), the backends and every LB node's l1.
  port rt rtr-b swb
  in_ns rt ip addr add 10.30.2.1/24 dev rtr-b
  in_ns rt ip -6 addr add fd30:2::1/64 dev rtr-b nodad
  for i in 1 2 3; do
    port "lb$i" l0 swl
    port "lb$i" l1 swb
    in_ns "lb$i" ip addr add "10.30.1.1$i/24" dev l0
    in_ns "lb$i" ip -6 addr add "fd30:1::1$i/64" dev l0 nodad
    in_ns "lb$i" ip addr add "10.30.2.10$i/24" dev l1
    in_ns "lb$i" ip -6 addr add "fd30:2::10$i/64" dev l1 nodad
    in_ns "lb$i" ip route add default via 10.30.1.1
    in_ns "lb$i" ip -6 route add default via fd30:1::1
    in_ns "lb$i" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
      net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.l0.rp_filter=0 net.ipv4.conf.l1.rp_filter=0
    in_ns "lb$i" ethtool -K l1 tx off >/dev/null
    in_ns "lb$i" ethtool -K l0 tx off >/dev/null
  done
  for i in 1 2 3; do
    port "b$i" eth0 swb
    in_ns "b$i" ip addr add "10.30.2.1$i/24" dev eth0
    in_ns "b$i" ip -6 addr add "fd30:2::1$i/64" dev eth0 nodad
    in_ns "b$i" ip route add default via 10.30.2.1
    in_ns "b$i" ip -6 route add default via fd30:2::1
    # The DSR VIP on lo, never answered by ARP.
    in_ns "b$i" ip addr add 10.30.100.20/32 dev lo
    in_ns "b$i" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
      net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0
    in_ns "b$i" ethtool -K eth0 tx off >/dev/null
  done
  # Warm the neighbour tables (a new bridge takes about a second to pass the
  # first frames).
  for i in 1 2 3; do
    in_ns rt ping -c1 -W3 "10.30.1.1$i" >/dev/null || true
    in_ns rt ping -6 -c1 -W3 "fd30:1::1$i" >/dev/null || true
    in_ns "b$i" ping -c1 -W3 10.30.2.1 >/dev/null || true
    for j in 1 2 3; do in_ns "b$i" ping -c1 -W3 "10.30.2.10$j" >/dev/null || true; done
  done
  in_ns client ping -c1 -W3 10.30.0.1 >/dev/null || true
}

case "$cmd" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down [PREFIX]" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# The network-namespace lab: a client, one LB node, a switch and three
# backends, joined by veth pairs. See e2e/README.md for the drawing.
#   e2e/lab/lab.sh up [PREFIX]     create it (idempotent: tears down first)
#   e2e/lab/lab.sh down [PREFIX]   delete every namespace named PREFIX-*
# PREFIX defaults to "flb"; tests use their own so runs never collide.
# FLOWLB_LAB_QUEUES=N gives every veth (both ends) N receive and transmit
# queues (default 1), for the agent's --queues N.
set -euo pipefail
cmd=${1:-}
P=${2:-flb}
Q=${FLOWLB_LAB_QUEUES:-1}

in_ns() { local ns=$1; shift; ip netns exec "$P-$ns" "$@"; }

down() {
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^$P-(client|lb|sw|b[0-9]|pod[0-9]|node[0-9])$" || true); do
    # Processes left in the namespace (servers, a crashed agent) go first.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
}

veth() {  # veth NS_A IF_A NS_B IF_B
  if [ "$Q" = 1 ]; then  # the kernel's default: one queue in use
    ip link add "$2" netns "$P-$1" type veth peer name "$4" netns "$P-$3"
  else
    ip link add "$2" netns "$P-$1" numrxqueues "$Q" numtxqueues "$Q" \
      type veth peer name "$4" netns "$P-$3" numrxqueues "$Q" numtxqueues "$Q"
  fi
  in_ns "$1" ip link set "$2" up
  in_ns "$3" ip link set "$4" up
}

up() {
  down
  for ns in client lb sw b1 b2 b3; do
    ip netns add "$P-$ns"
    in_ns "$ns" ip link set lo up
  done
  veth client c0 lb l0
  veth lb l1 sw sw-l1
  in_ns sw ip link add br0 type bridge
  in_ns sw ip link set br0 up
  in_ns sw ip link set sw-l1 master br0
  in_ns client ip addr add 10.10.1.2/24 dev c0
  in_ns client ip route add default via 10.10.1.1
  in_ns lb ip addr add 10.10.1.1/24 dev l0
  in_ns lb ip addr add 10.10.2.1/24 dev l1
  # IPv6 beside IPv4 (nodad: usable at once).
  in_ns client ip -6 addr add fd10:1::2/64 dev c0 nodad
  in_ns client ip -6 route add default via fd10:1::1
  in_ns lb ip -6 addr add fd10:1::1/64 dev l0 nodad
  in_ns lb ip -6 addr add fd10:2::1/64 dev l1 nodad
  in_ns lb sysctl -qw net.ipv6.conf.all.forwarding=1
  in_ns lb sysctl -qw net.ipv4.ip_forward=1
  in_ns lb sysctl -qw net.ipv4.conf.all.rp_filter=0
  in_ns lb sysctl -qw net.ipv4.conf.l0.rp_filter=0
  in_ns lb sysctl -qw net.ipv4.conf.l1.rp_filter=0
  for i in 1 2 3; do
    veth "b$i" eth0 sw "sw-b$i"
    in_ns sw ip link set "sw-b$i" master br0
    in_ns "b$i" ip addr add "10.10.2.1$i/24" dev eth0
    in_ns "b$i" ip route add default via 10.10.2.1
    in_ns "b$i" ip -6 addr add "fd10:2::1$i/64" dev eth0 nodad
    in_ns "b$i" ip -6 route add default via fd10:2::1
    # DSR: the backend owns the DSR VIP on lo and never answers ARP for it.
    in_ns "b$i" ip addr add 10.10.100.20/32 dev lo
    in_ns "b$i" ip -6 addr add fd10:100::20/128 dev lo  # IPv6 answers NS only on the interface: no arp_ignore needed
    in_ns "b$i" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
    in_ns "b$i" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0
    # veth leaves TCP/UDP checksums partial and AF_XDP copy mode loses that
    # state: make senders compute them, as a real wire delivers them.
    in_ns "b$i" ethtool -K eth0 tx off >/dev/null
  done
  in_ns client ethtool -K c0 tx off >/dev/null
  # Resolve neighbours up front so the first packets are not held back.
  in_ns client ping -c1 -W1 10.10.1.1 >/dev/null
  in_ns client ping -c1 -W1 fd10:1::1 >/dev/null
  for i in 1 2 3; do
    in_ns "b$i" ping -c1 -W1 10.10.2.1 >/dev/null
    in_ns "b$i" ping -c1 -W1 fd10:2::1 >/dev/null
  done
}

case "$cmd" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down [PREFIX]" >&2; exit 2 ;;
esac

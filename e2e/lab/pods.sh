#!/usr/bin/env bash
# Backends as a real cluster has them, added to the datapath lab (lab.sh):
# a pod on the LB node itself, behind a veth with a host route (as every CNI
# does), and a second node hosting a pod behind a VXLAN overlay (as flannel
# does). Only the LB node's kernel can reach either. See e2e/README.md.
#   e2e/lab/pods.sh up PREFIX     add them to a running lab.sh lab
#   (lab.sh down PREFIX removes them with the rest)
set -euo pipefail
cmd=${1:-}
P=${2:-flb}

in_ns() { local ns=$1; shift; ip netns exec "$P-$ns" "$@"; }
mac() { in_ns "$1" cat "/sys/class/net/$2/address"; }

up() {
  for ns in pod1 node2 pod2; do
    ip netns del "$P-$ns" 2>/dev/null || true
    ip netns add "$P-$ns"
    in_ns "$ns" ip link set lo up
  done

  # pod1 on the LB node: a /32 behind a veth, default route to a link-local
  # gateway on the host side (Calico, Cilium).
  ip link add vethpod1 netns "$P-lb" type veth peer name eth0 netns "$P-pod1"
  in_ns lb ip link set vethpod1 up
  in_ns lb ip addr add 169.254.1.1/32 dev vethpod1
  in_ns lb ip -6 addr add fe80::1/64 dev vethpod1 nodad
  in_ns lb ip route add 10.244.1.5/32 dev vethpod1
  in_ns lb ip -6 route add fd10:244:1::5/128 dev vethpod1
  in_ns pod1 ip link set eth0 up
  in_ns pod1 ip addr add 10.244.1.5/32 dev eth0
  in_ns pod1 ip -6 addr add fd10:244:1::5/128 dev eth0 nodad
  in_ns pod1 ip route add 169.254.1.1 dev eth0
  in_ns pod1 ip route add default via 169.254.1.1 dev eth0
  in_ns pod1 ip -6 route add default via fe80::1 dev eth0

  # node2 on the backend network, joined to the LB node by VXLAN.
  ip link add eth0 netns "$P-node2" type veth peer name sw-node2 netns "$P-sw"
  in_ns sw ip link set sw-node2 master br0 up
  in_ns node2 ip link set eth0 up
  in_ns node2 ip addr add 10.10.2.21/24 dev eth0
  in_ns node2 ethtool -K eth0 tx off >/dev/null
  in_ns node2 sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
    net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0
  for side in lb:10.10.2.1:10.244.1.0:fd10:244:1:: node2:10.10.2.21:10.244.2.0:fd10:244:2::; do
    IFS=: read -r ns under over over6a over6b over6c _ <<<"$side"
    in_ns "$ns" ip link add vx0 type vxlan id 1 local "$under" dstport 8472 nolearning
    in_ns "$ns" ip link set vx0 mtu 1450 up
    in_ns "$ns" ip addr add "$over/32" dev vx0
    in_ns "$ns" ip -6 addr add "$over6a:$over6b:$over6c::/128" dev vx0 nodad
    in_ns "$ns" sysctl -qw "net.ipv4.conf.vx0.rp_filter=0"
  done
  local lb_vx node2_vx
  lb_vx=$(mac lb vx0)
  node2_vx=$(mac node2 vx0)
  # Each node routes the other's pod range over the overlay (flannel's
  # "via <node>.0 dev flannel.1 onlink" with static neighbours and FDB).
  in_ns lb ip route add 10.244.2.0/24 via 10.244.2.0 dev vx0 onlink
  in_ns lb ip -6 route add fd10:244:2::/64 via fd10:244:2:: dev vx0 onlink
  in_ns lb ip neigh add 10.244.2.0 lladdr "$node2_vx" dev vx0 nud permanent
  in_ns lb ip -6 neigh add fd10:244:2:: lladdr "$node2_vx" dev vx0 nud permanent
  in_ns lb bridge fdb add "$node2_vx" dev vx0 dst 10.10.2.21
  in_ns node2 ip route add 10.244.1.0/24 via 10.244.1.0 dev vx0 onlink
  in_ns node2 ip -6 route add fd10:244:1::/64 via fd10:244:1:: dev vx0 onlink
  in_ns node2 ip neigh add 10.244.1.0 lladdr "$lb_vx" dev vx0 nud permanent
  in_ns node2 ip -6 neigh add fd10:244:1:: lladdr "$lb_vx" dev vx0 nud permanent
  in_ns node2 bridge fdb add "$lb_vx" dev vx0 dst 10.10.2.1

  # pod2 on node2, like pod1 on the LB node.
  ip link add vethpod2 netns "$P-node2" type veth peer name eth0 netns "$P-pod2"
  in_ns node2 ip link set vethpod2 up
  in_ns node2 ip addr add 169.254.1.1/32 dev vethpod2
  in_ns node2 ip -6 addr add fe80::1/64 dev vethpod2 nodad
  in_ns node2 ip route add 10.244.2.5/32 dev vethpod2
  in_ns node2 ip -6 route add fd10:244:2::5/128 dev vethpod2
  in_ns pod2 ip link set eth0 up
  in_ns pod2 ip addr add 10.244.2.5/32 dev eth0
  in_ns pod2 ip -6 addr add fd10:244:2::5/128 dev eth0 nodad
  in_ns pod2 ip route add 169.254.1.1 dev eth0
  in_ns pod2 ip route add default via 169.254.1.1 dev eth0
  in_ns pod2 ip -6 route add default via fe80::1 dev eth0

  # Resolve the underlay and check both paths.
  in_ns node2 ping -c1 -W2 10.10.2.1 >/dev/null
  in_ns lb ping -c1 -W2 10.244.1.5 >/dev/null
  in_ns lb ping -c1 -W2 10.244.2.5 >/dev/null
  in_ns lb ping -6 -c1 -W2 fd10:244:1::5 >/dev/null
  in_ns lb ping -6 -c1 -W2 fd10:244:2::5 >/dev/null
}

case "$cmd" in
  up) up ;;
  *) echo "usage: $0 up PREFIX" >&2; exit 2 ;;
esac

// One immutable view of the kernel's routes and neighbours, as the datapath
// mirrors them (agent/datapath/kernel_next_hops.cc builds it from netlink):
// the pure part of a next-hop lookup, and the answers precomputed for the
// destinations the datapath sends to most (the backends), so a packet to a
// backend costs one hash lookup instead of a scan of every route.
#pragma once

#include <array>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "agent/lb/next_hop.h"
#include "common/ip_addr.h"

namespace flowlb::agent {

struct IpAddrHash {
  size_t operator()(const IpAddr& a) const;
};

class NextHopView {
 public:
  struct Route {
    IpPrefix prefix;
    uint32_t priority = 0;
    int ifindex = 0;
    bool gateway = false;
    IpAddr gateway_addr;
    NextHop via;  // for gateway routes: the gateway's neighbour
  };
  // Where a destination goes. `hop` nullptr: no route. `miss`: the hop is
  // unresolved and the neighbour (miss_ifindex, miss_addr) must be resolved.
  struct Answer {
    const NextHop* hop = nullptr;
    bool miss = false;
    int miss_ifindex = 0;
    IpAddr miss_addr;
  };

  NextHopView() = default;
  // Answers point into the view: it is never copied.
  NextHopView(const NextHopView&) = delete;
  NextHopView& operator=(const NextHopView&) = delete;

  std::vector<Route> routes;  // longest prefix first, then lowest metric
  // Addresses of this host (table local): only the kernel delivers to them.
  std::unordered_map<IpAddr, bool, IpAddrHash> local;
  // Interfaces the datapath transmits on; anything else is behind the kernel.
  std::vector<int> attached;
  NextHop kernel_hop;  // the answer for a destination behind the kernel
  std::unordered_map<int, std::array<uint8_t, 6>> link_macs;
  // Per interface: neighbour address -> next hop (on link).
  std::unordered_map<int, std::unordered_map<IpAddr, NextHop, IpAddrHash>> neighbors;
  // Per interface: the answer for an on-link destination not yet resolved.
  std::unordered_map<int, NextHop> unresolved;

  const Route* route(const IpAddr& dst) const;
  // The answer from the tables: local address, longest-prefix route, neighbour.
  Answer resolve(const IpAddr& dst) const;
  // Computes the answers of `dsts` once; call after the tables are complete.
  void precompute(const std::vector<IpAddr>& dsts);
  // A precomputed answer, or resolve(). Never allocates.
  Answer find(const IpAddr& dst) const {
    auto it = precomputed_.find(dst);
    return it != precomputed_.end() ? it->second : resolve(dst);
  }
  size_t precomputed() const { return precomputed_.size(); }

 private:
  std::unordered_map<IpAddr, Answer, IpAddrHash> precomputed_;
};

}  // namespace flowlb::agent

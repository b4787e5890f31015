// Where to send a frame for an IP destination: egress interface, our MAC on
// it and the next hop's MAC. The datapath keeps an implementation mirrored
// from the kernel's route and neighbour tables; tests use StaticNextHops.
#pragma once

#include <array>
#include <cstdint>
#include <map>

#include "common/ip_addr.h"

namespace flowlb::agent {

struct NextHop {
  uint32_t ifindex = 0;
  std::array<uint8_t, 6> src_mac{};
  std::array<uint8_t, 6> dst_mac{};
  bool resolved = false;  // false: neighbour entry missing or incomplete
  bool on_link = true;    // false: via a gateway (DSR needs on-link backends)
  // Reached through a device the datapath does not own (a pod's veth, an
  // overlay, a local address): only the kernel can deliver it, through the
  // exception path. ifindex and MACs are then meaningless.
  bool kernel = false;
};

class NextHopTable {
 public:
  virtual ~NextHopTable() = default;
  // Packet path: must not block or allocate. nullptr: no route.
  virtual const NextHop* lookup(const IpAddr& dst) const = 0;
};

// Exact-address entries plus an optional default per family.
class StaticNextHops final : public NextHopTable {
 public:
  void set(const IpAddr& dst, const NextHop& hop) { hops_[dst] = hop; }
  void setDefault(bool v4, const NextHop& hop) {
    if (v4) {
      default_v4_ = hop;
      has_v4_ = true;
    } else {
      default_v6_ = hop;
      has_v6_ = true;
    }
  }
  const NextHop* lookup(const IpAddr& dst) const override {
    auto it = hops_.find(dst);
    if (it != hops_.end()) return &it->second;
    if (dst.isV4()) return has_v4_ ? &default_v4_ : nullptr;
    return has_v6_ ? &default_v6_ : nullptr;
  }

 private:
  std::map<IpAddr, NextHop> hops_;
  NextHop default_v4_, default_v6_;
  bool has_v4_ = false, has_v6_ = false;
};

}  // namespace flowlb::agent

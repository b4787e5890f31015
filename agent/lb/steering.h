// What the XDP program must steer to the workers, in domain terms: one key
// per VIP:port:protocol of a service, one per VIP and protocol for the
// VIP's non-first fragments (they carry no port), one per VIP for ICMP
// errors about it, and the SNAT addresses (their replies, matched by port
// range in the program). The datapath turns these into entries of the VIP
// map (agent/bpf/flowlb_abi.h); the snapshot builder counts them, so a
// state that would overflow the map is refused service by service before
// anything is written.
#pragma once

#include <compare>
#include <cstdint>
#include <set>

#include "common/ip_addr.h"

namespace flowlb::agent {

struct SteerKey {
  IpAddr addr;
  uint16_t port = 0;  // host order; 0: a whole-address entry
  uint8_t proto = 0;
  bool snat = false;  // the node's SNAT address (matched by port range)
  friend auto operator<=>(const SteerKey&, const SteerKey&) = default;
};

// The keys one service needs.
inline void addServiceKeys(const IpAddr& vip, uint16_t port, uint8_t proto,
                           std::set<SteerKey>* keys) {
  keys->insert({vip, port, proto, false});
  keys->insert({vip, 0, proto, false});                         // its non-first fragments
  keys->insert({vip, 0, uint8_t(vip.isV4() ? 1 : 58), false});  // ICMP / ICMPv6 errors
}

// The keys of a SNAT address: TCP and UDP replies, ICMP errors.
inline void addSnatKeys(const IpAddr& addr, std::set<SteerKey>* keys) {
  for (uint8_t proto : {uint8_t{6}, uint8_t{17}, uint8_t(addr.isV4() ? 1 : 58)}) {
    keys->insert({addr, 0, proto, true});
  }
}

}  // namespace flowlb::agent

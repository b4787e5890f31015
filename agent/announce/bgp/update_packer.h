// Packs route announcements and withdrawals into as few UPDATE messages as
// fit in 4096 bytes each: withdrawals first, then one group of messages per
// distinct set of attributes. IPv4 routes travel in the classic NLRI and
// withdrawn-routes fields, other families in MP_REACH_NLRI/MP_UNREACH_NLRI.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "agent/announce/bgp/wire.h"

namespace flowlb::agent::bgp {

// One route as sent to one peer: the attributes (next hop included: the
// NEXT_HOP attribute for IPv4, the MP_REACH next hop otherwise).
struct OutRoute {
  IpPrefix prefix;
  PathAttributes attributes;
  IpAddr next_hop;
};

std::vector<std::vector<uint8_t>> packUpdates(const std::vector<IpPrefix>& withdraw,
                                              const std::vector<OutRoute>& announce,
                                              bool four_octet_as);

}  // namespace flowlb::agent::bgp

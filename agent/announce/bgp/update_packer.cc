#include "agent/announce/bgp/update_packer.h"

#include <algorithm>

namespace flowlb::agent::bgp {
namespace {

Family familyOf(const IpPrefix& p) {
  return p.addr.isV4() ? kIpv4Unicast : kIpv6Unicast;
}

// Room for prefixes in an UPDATE whose other fields `base` already encodes;
// one byte is kept for an attribute length that grows to two octets.
size_t room(const UpdateMessage& base, bool four_octet_as) {
  const size_t used = encodeUpdate(base, four_octet_as).size() + 1;
  return used >= kMaxMessageSize ? 0 : kMaxMessageSize - used;
}

}  // namespace

std::vector<std::vector<uint8_t>> packUpdates(const std::vector<IpPrefix>& withdraw,
                                              const std::vector<OutRoute>& announce,
                                              bool four_octet_as) {
  std::vector<std::vector<uint8_t>> out;
  // Withdrawals, per family.
  for (const Family f : {kIpv4Unicast, kIpv6Unicast}) {
    UpdateMessage u;
    if (f != kIpv4Unicast) u.mp_unreach = MpUnreach{f, {}};
    const size_t budget = room(u, four_octet_as);
    size_t used = 0;
    auto flush = [&] {
      if (!u.withdrawn.empty() || (u.mp_unreach && !u.mp_unreach->withdrawn.empty())) {
        out.push_back(encodeUpdate(u, four_octet_as));
      }
      u.withdrawn.clear();
      if (u.mp_unreach) u.mp_unreach->withdrawn.clear();
      used = 0;
    };
    for (const IpPrefix& p : withdraw) {
      if (familyOf(p) != f) continue;
      if (used + prefixWireSize(p) > budget) flush();
      (f == kIpv4Unicast ? u.withdrawn : u.mp_unreach->withdrawn).push_back(p);
      used += prefixWireSize(p);
    }
    flush();
  }
  // Announcements, grouped by family, next hop and attributes.
  struct Key {
    Family family;
    IpAddr next_hop;
    const PathAttributes* attributes;
  };
  std::vector<std::pair<Key, std::vector<IpPrefix>>> groups;
  for (const OutRoute& r : announce) {
    const Family f = familyOf(r.prefix);
    auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) {
      return g.first.family == f && g.first.next_hop == r.next_hop &&
             *g.first.attributes == r.attributes;
    });
    if (it == groups.end()) {
      groups.push_back({Key{f, r.next_hop, &r.attributes}, {}});
      it = groups.end() - 1;
    }
    it->second.push_back(r.prefix);
  }
  for (const auto& [key, prefixes] : groups) {
    UpdateMessage u;
    u.has_attributes = true;
    u.attributes = *key.attributes;
    if (key.family == kIpv4Unicast) {
      u.attributes.next_hop = key.next_hop;
    } else {
      u.attributes.next_hop.reset();
      u.mp_reach = MpReach{key.family, key.next_hop, std::nullopt, {}};
    }
    const size_t budget = room(u, four_octet_as);
    size_t used = 0;
    auto& nlri = key.family == kIpv4Unicast ? u.nlri : u.mp_reach->nlri;
    for (const IpPrefix& p : prefixes) {
      if (used + prefixWireSize(p) > budget) {
        out.push_back(encodeUpdate(u, four_octet_as));
        nlri.clear();
        used = 0;
      }
      nlri.push_back(p);
      used += prefixWireSize(p);
    }
    if (!nlri.empty()) out.push_back(encodeUpdate(u, four_octet_as));
  }
  return out;
}

}  // namespace flowlb::agent::bgp

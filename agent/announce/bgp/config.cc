#include "agent/announce/bgp/config.h"

#include <charconv>
#include <set>

namespace flowlb::agent::bgp {
namespace {

bool number(std::string_view s, uint64_t max, uint64_t* out) {
  uint64_t v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size() || s.empty() || v > max) return false;
  *out = v;
  return true;
}

std::vector<std::string_view> split(std::string_view s) {
  std::vector<std::string_view> parts;
  for (size_t at = 0;;) {
    const size_t colon = s.find(':', at);
    parts.push_back(s.substr(at, colon - at));
    if (colon == std::string_view::npos) return parts;
    at = colon + 1;
  }
}

}  // namespace

Result<uint32_t> parseCommunity(const std::string& text) {
  static const std::map<std::string, uint32_t> kNamed = {
      {"no-export", 0xffffff01}, {"no-advertise", 0xffffff02}, {"no-export-subconfed", 0xffffff03},
      {"no-peer", 0xffffff04},   {"blackhole", 0xffff029a},    {"graceful-shutdown", 0xffff0000}};
  if (auto it = kNamed.find(text); it != kNamed.end()) return it->second;
  const auto parts = split(text);
  uint64_t a = 0, b = 0;
  if (parts.size() == 2 && number(parts[0], 0xffff, &a) && number(parts[1], 0xffff, &b)) {
    return static_cast<uint32_t>(a << 16 | b);
  }
  if (parts.size() == 1 && number(parts[0], 0xffffffff, &a)) return static_cast<uint32_t>(a);
  return Status::error("'" + text +
                       "' is not a community (ASN:VALUE with 16-bit parts, a 32-bit number, "
                       "or no-export, no-advertise, no-export-subconfed, no-peer, blackhole, "
                       "graceful-shutdown)");
}

Result<LargeCommunity> parseLargeCommunity(const std::string& text) {
  const auto parts = split(text);
  uint64_t g = 0, l1 = 0, l2 = 0;
  if (parts.size() != 3 || !number(parts[0], 0xffffffff, &g) ||
      !number(parts[1], 0xffffffff, &l1) || !number(parts[2], 0xffffffff, &l2)) {
    return Status::error("'" + text +
                         "' is not a large community (GLOBAL:LOCAL1:LOCAL2, 32-bit "
                         "numbers)");
  }
  return LargeCommunity{static_cast<uint32_t>(g), static_cast<uint32_t>(l1),
                        static_cast<uint32_t>(l2)};
}

Status validate(const BgpSettings& s) {
  std::set<std::string> names;
  for (const PeerSettings& p : s.peers) {
    if (p.name.empty()) return Status::error("a peer has no name");
    if (!names.insert(p.name).second) return Status::error("peer '" + p.name + "' is repeated");
    if (p.peer_asn == 0) return Status::error("peer '" + p.name + "': peerASN is required");
    if (p.local_asn == 0) return Status::error("peer '" + p.name + "': myASN is required");
    if (p.hold_time_s != 0 && p.hold_time_s < 3) {
      return Status::error("peer '" + p.name + "': holdTimeSeconds must be 0 or at least 3");
    }
    if (!p.ipv4 && !p.ipv6) return Status::error("peer '" + p.name + "': no address family");
    if (!p.bfd_profile.empty() && !s.bfd_profiles.count(p.bfd_profile)) {
      return Status::error("peer '" + p.name + "': no BFD profile named '" + p.bfd_profile + "'");
    }
    if (p.source && p.source->isV4() != p.address.isV4()) {
      return Status::error("peer '" + p.name + "': sourceAddress and peerAddress differ in family");
    }
  }
  for (const Advertisement& a : s.advertisements) {
    for (const std::string& peer : a.peers) {
      if (!names.count(peer)) {
        return Status::error("advertisement '" + a.name + "': no peer named '" + peer + "'");
      }
    }
  }
  return Status::ok();
}

}  // namespace flowlb::agent::bgp

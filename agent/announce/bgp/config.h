// BGP configuration of one agent in domain terms: our AS, the peers, BFD
// profiles and advertisements (which VIPs go to which peers, with what
// attributes). Filled from the standalone file (config_yaml.cc) or, later,
// from the controller's message; the speaker and the route policy see only
// this.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "agent/announce/bfd/bfd_session.h"
#include "agent/announce/bgp/session.h"
#include "common/status.h"

namespace flowlb::agent::bgp {

struct BfdProfile {
  std::string name;
  bfd::Timers timers;
  friend bool operator==(const BfdProfile&, const BfdProfile&) = default;
};

// Which VIPs are announced to which peers, and with what. A VIP matched by
// several advertisements is announced once per aggregated prefix; their
// communities add up, and the first (in file order) sets MED and LOCAL_PREF.
struct Advertisement {
  std::string name;
  std::vector<IpPrefix> prefixes;  // VIPs inside these; empty: every VIP
  std::vector<std::string> peers;  // peer names; empty: every peer
  uint8_t aggregation_length_v4 = 32;
  uint8_t aggregation_length_v6 = 128;
  RouteAttributes attributes;
  friend bool operator==(const Advertisement&, const Advertisement&) = default;
};

struct BgpSettings {
  std::vector<PeerSettings> peers;  // names unique
  std::map<std::string, BfdProfile> bfd_profiles;
  // Empty: every VIP this node serves, as a host route, to every peer
  // (unless only_advertised).
  std::vector<Advertisement> advertisements;
  // Only VIPs an advertisement matches are announced, even when there is
  // none (the controller's settings: only pools a BGPAdvertisement selects).
  bool only_advertised = false;
  bool enabled() const { return !peers.empty(); }
  friend bool operator==(const BgpSettings&, const BgpSettings&) = default;
};

// "65000:100", "no-export" (and the other RFC 1997/7999 names), or a
// 32-bit number; "65000:1:2" for a large community.
Result<uint32_t> parseCommunity(const std::string& text);
Result<LargeCommunity> parseLargeCommunity(const std::string& text);

// Cross-field checks shared by every source: unique peer names, BFD
// profiles that exist, advertisements naming known peers, ASNs set.
Status validate(const BgpSettings& s);

}  // namespace flowlb::agent::bgp

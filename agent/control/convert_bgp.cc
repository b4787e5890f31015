#include "agent/control/convert_bgp.h"

#include <algorithm>
#include <set>

#include "agent/control/convert.h"

namespace flowlb::agent {

namespace pb = flowlb::v1;

namespace {

Result<bgp::PeerSettings> convertPeer(const pb::BgpPeer& in) {
  bgp::PeerSettings p;
  p.name = in.name();
  if (p.name.empty()) return Status::error("a BGP peer has no name");
  auto addr = pbAddress(in.address());
  if (!addr) return Status::error("BGP peer '" + p.name + "': address: " + addr.error());
  p.address = *addr;
  if (in.port() > 65535) return Status::error("BGP peer '" + p.name + "': port out of range");
  p.port = in.port() == 0 ? 179 : static_cast<uint16_t>(in.port());
  p.peer_asn = in.peer_asn();
  p.password = in.password();
  p.local_asn = in.local_asn();
  if (in.has_source_address()) {
    auto src = pbAddress(in.source_address());
    if (!src) return Status::error("BGP peer '" + p.name + "': source_address: " + src.error());
    p.source = *src;
  }
  if (in.has_hold_time_seconds()) {
    if (in.hold_time_seconds() > 65535) {
      return Status::error("BGP peer '" + p.name + "': hold time out of range");
    }
    p.hold_time_s = static_cast<uint16_t>(in.hold_time_seconds());
  }
  if (in.graceful_restart_seconds() > 0) {
    p.graceful_restart = true;
    p.restart_time_s =
        static_cast<uint16_t>(std::min<uint32_t>(in.graceful_restart_seconds(), 4095));
  }
  p.ipv4 = p.ipv6 = true;
  return p;
}

bfd::Timers convertBfd(const pb::BfdTimers& t) {
  bfd::Timers out;
  const auto ms = [](uint32_t v) { return bfd::Micros{int64_t{v == 0 ? 300 : v} * 1000}; };
  out.desired_min_tx = ms(t.min_tx_ms());
  out.required_min_rx = ms(t.min_rx_ms());
  out.detect_mult = static_cast<uint8_t>(
      t.detect_multiplier() == 0 ? 3 : std::min<uint32_t>(t.detect_multiplier(), 255));
  return out;
}

}  // namespace

bgp::BgpSettings convertBgp(const pb::BgpConfig& config,
                            const std::vector<std::pair<IpAddr, pb::BgpAnnouncement>>& vips,
                            std::vector<std::string>* problems) {
  bgp::BgpSettings out;
  out.only_advertised = true;
  std::set<std::string> names;
  for (const pb::BgpPeer& in : config.peers()) {
    auto p = convertPeer(in);
    if (p && (p->peer_asn == 0 || p->local_asn == 0)) {
      p = Status::error("BGP peer '" + p->name + "': an AS number is 0");
    }
    if (p && !names.insert(p->name).second) {
      p = Status::error("BGP peer '" + p->name + "' is repeated");
    }
    if (!p) {
      problems->push_back(p.error());
      continue;
    }
    if (in.has_bfd()) {
      p->bfd_profile = "peer:" + p->name;
      out.bfd_profiles[p->bfd_profile] = bgp::BfdProfile{p->bfd_profile, convertBfd(in.bfd())};
    }
    out.peers.push_back(std::move(*p));
  }
  for (const auto& [vip, ann] : vips) {
    const IpPrefix host{vip, static_cast<uint8_t>(vip.isV4() ? 32 : 128)};
    if (ann.advertisements_size() == 0) {
      bgp::Advertisement a;
      a.name = "vip " + vip.toString();
      a.prefixes = {host};
      a.peers.assign(names.begin(), names.end());
      if (!a.peers.empty()) out.advertisements.push_back(std::move(a));
      continue;
    }
    for (const pb::BgpRouteAdvertisement& r : ann.advertisements()) {
      bgp::Advertisement a;
      a.name = r.name() + " " + vip.toString();
      a.prefixes = {host};
      if (r.peers_size() == 0) {
        a.peers.assign(names.begin(), names.end());
      } else {
        for (const std::string& p : r.peers()) {
          if (names.count(p)) a.peers.push_back(p);
        }
      }
      if (a.peers.empty()) continue;  // none of its peers is this node's
      const uint32_t l4 = r.aggregation_length_v4(), l6 = r.aggregation_length_v6();
      if (l4 > 32 || l6 > 128) {
        problems->push_back("BGP advertisement '" + r.name() +
                            "': aggregation length out of range");
        continue;
      }
      a.aggregation_length_v4 = static_cast<uint8_t>(l4 == 0 ? 32 : l4);
      a.aggregation_length_v6 = static_cast<uint8_t>(l6 == 0 ? 128 : l6);
      a.attributes.communities.assign(r.communities().begin(), r.communities().end());
      for (const pb::LargeCommunity& c : r.large_communities()) {
        a.attributes.large_communities.push_back(
            {c.global_admin(), c.local_data_1(), c.local_data_2()});
      }
      if (r.has_local_pref()) a.attributes.local_pref = r.local_pref();
      out.advertisements.push_back(std::move(a));
    }
  }
  return out;
}

}  // namespace flowlb::agent

#include "agent/announce/bgp/routes.h"

#include <algorithm>
#include <set>

namespace flowlb::agent::bgp {
namespace {

IpPrefix aggregate(const IpAddr& vip, uint8_t length) {
  auto p = IpPrefix::parse(vip.toString() + "/" + std::to_string(length));
  return p ? *p : IpPrefix{vip, static_cast<uint8_t>(vip.isV4() ? 32 : 128)};
}

template <typename T>
void addUnique(std::vector<T>& to, const std::vector<T>& from) {
  for (const T& x : from) {
    if (std::find(to.begin(), to.end(), x) == to.end()) to.push_back(x);
  }
}

}  // namespace

std::vector<IpAddr> eligibleVips(const std::vector<ServiceSpec>& services,
                                 const std::vector<ServiceError>& refused,
                                 const std::string& node) {
  std::set<std::string> refused_names;
  for (const ServiceError& e : refused) refused_names.insert(e.service);
  std::set<IpAddr> vips;
  for (const ServiceSpec& s : services) {
    if (refused_names.count(s.name)) continue;
    const bool serves =
        std::any_of(s.backends.begin(), s.backends.end(), [&](const BackendSpec& b) {
          return b.state == BackendState::kActive && b.weight > 0 &&
                 (!s.keep_client_address || (!node.empty() && b.node == node));
        });
    if (serves) vips.insert(s.vip);
  }
  return {vips.begin(), vips.end()};
}

std::map<std::string, RouteSet> routesPerPeer(const BgpSettings& settings,
                                              const std::vector<IpAddr>& vips) {
  std::map<std::string, RouteSet> out;
  for (const PeerSettings& p : settings.peers) out[p.name];
  for (const IpAddr& vip : vips) {
    if (settings.advertisements.empty() && !settings.only_advertised) {
      for (auto& [peer, routes] : out) routes[aggregate(vip, vip.isV4() ? 32 : 128)];
      continue;
    }
    for (const Advertisement& a : settings.advertisements) {
      const bool matches =
          a.prefixes.empty() || std::any_of(a.prefixes.begin(), a.prefixes.end(),
                                            [&](const IpPrefix& p) { return p.contains(vip); });
      if (!matches) continue;
      const IpPrefix prefix =
          aggregate(vip, vip.isV4() ? a.aggregation_length_v4 : a.aggregation_length_v6);
      for (auto& [peer, routes] : out) {
        if (!a.peers.empty() && std::find(a.peers.begin(), a.peers.end(), peer) == a.peers.end()) {
          continue;
        }
        auto [it, fresh] = routes.try_emplace(prefix, a.attributes);
        if (fresh) continue;
        RouteAttributes& r = it->second;  // a second advertisement: communities add up
        addUnique(r.communities, a.attributes.communities);
        addUnique(r.large_communities, a.attributes.large_communities);
        if (!r.med) r.med = a.attributes.med;
        if (!r.local_pref) r.local_pref = a.attributes.local_pref;
      }
    }
  }
  return out;
}

}  // namespace flowlb::agent::bgp

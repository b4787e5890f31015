#include "controller/dump_state.h"

#include <string>

namespace flowlb::controller {
namespace {

const char* modeName(ForwardingMode m) {
  return m == ForwardingMode::kDsr ? "dsr" : "nat";
}

// address:port, IPv6 in brackets.
std::string endpointText(const IpAddr& a, uint16_t port) {
  return (a.isV4() ? a.toString() : "[" + a.toString() + "]") + ":" + std::to_string(port);
}

}  // namespace

void dumpState(const Reconciled& r, const AnnouncerMap& announcers, std::FILE* out) {
  std::fprintf(out, "services:\n");
  for (const ServiceOutcome& s : r.services) {
    std::string ips;
    for (const IpAddr& a : s.ips) ips += (ips.empty() ? "" : ", ") + a.toString();
    std::fprintf(out, "  %s: [%s] pool=%s satisfied=%s reason=%s\n", s.key.c_str(), ips.c_str(),
                 s.pool.c_str(), s.satisfied ? "true" : "false", s.reason.c_str());
  }
  std::fprintf(out, "pools:\n");
  for (const auto& [name, u] : r.pools) {
    std::fprintf(out, "  %s: used=%llu free=%llu\n", name.c_str(),
                 static_cast<unsigned long long>(u.used), static_cast<unsigned long long>(u.free));
  }
  std::fprintf(out, "nodes:\n");
  for (const std::string& node : r.nodes) {
    std::fprintf(out, "  %s:\n", node.c_str());
    // What a BGP-capable agent on this node is sent about BGP.
    if (const std::vector<BgpPeerSpec>* peers = r.bgp ? r.bgp->peersOf(node) : nullptr) {
      for (const BgpPeerSpec& p : *peers) {
        std::fprintf(out, "    bgp peer %s %s port=%u asn=%u my_asn=%u bfd=%s%s\n", p.name.c_str(),
                     p.address.toString().c_str(), p.port, p.peer_asn, p.local_asn,
                     p.bfd ? "on" : "off",
                     p.password.empty() ? "" : " password=set");  // never the password
      }
    }
    for (const auto& ds : r.desired) {
      const DesiredService& d = *ds;
      auto a = announcers.find(d.vip);
      const std::string who = a == announcers.end() ? "" : a->second;
      std::fprintf(out, "    %s %s/%s mode=%s announcer=%s%s\n", d.key.c_str(),
                   endpointText(d.vip, d.port).c_str(), d.proto == 17 ? "udp" : "tcp",
                   modeName(d.mode), who.c_str(), who == node ? " (this node announces)" : "");
      if (const std::vector<BgpRouteSpec>* routes = r.bgp ? r.bgp->routesOf(d.vip) : nullptr) {
        std::string names;
        for (const BgpRouteSpec& x : *routes) names += (names.empty() ? "" : ",") + x.name;
        std::fprintf(out, "      bgp advertisements=%s (to BGP-capable agents: no L2 announcer)\n",
                     names.c_str());
      }
      for (const DesiredBackend& b : d.backends) {
        // externalTrafficPolicy: Local: each node forwards to its own endpoints only.
        if (d.external_traffic_local && b.node != node) continue;
        std::fprintf(out, "      backend %s %s node=%s\n", endpointText(b.addr, b.port).c_str(),
                     b.state == BackendState::kActive     ? "ACTIVE"
                     : b.state == BackendState::kDraining ? "DRAINING"
                                                          : "UNHEALTHY",
                     b.node.c_str());
      }
    }
  }
  std::fflush(out);
}

}  // namespace flowlb::controller

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

void dumpState(const Reconciled& r, std::FILE* out) {
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
  for (const NodeDesiredState& n : r.nodes) {
    std::fprintf(out, "  %s:\n", n.node.c_str());
    for (const auto& ds : n.services) {
      const DesiredService& d = *ds;
      std::fprintf(out, "    %s %s/%s mode=%s announcer=%s%s\n", d.key.c_str(),
                   endpointText(d.vip, d.port).c_str(), d.proto == 17 ? "udp" : "tcp",
                   modeName(d.mode), d.announcer.c_str(),
                   d.announcer == n.node ? " (this node announces)" : "");
      for (const DesiredBackend& b : d.backends) {
        std::fprintf(out, "      backend %s %s node=%s\n", endpointText(b.addr, b.port).c_str(),
                     b.state == BackendState::kActive ? "ACTIVE" : "DRAINING", b.node.c_str());
      }
    }
  }
  std::fflush(out);
}

}  // namespace flowlb::controller

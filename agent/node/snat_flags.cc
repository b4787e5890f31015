#include "agent/node/snat_flags.h"

#include <cstdio>

namespace flowlb::agent {

Status parseSnatFlags(const std::string& v4, const std::string& v6, const std::string& ports,
                      SnatConfig* snat) {
  if (!v4.empty()) {
    auto a = IpAddr::parse(v4);
    if (!a || !a->isV4()) return Status::error("--snat-ipv4 " + v4 + " is not an IPv4 address");
    snat->v4 = *a;
    snat->has_v4 = true;
  }
  if (!v6.empty()) {
    auto a = IpAddr::parse(v6);
    if (!a || a->isV4()) return Status::error("--snat-ipv6 " + v6 + " is not an IPv6 address");
    snat->v6 = *a;
    snat->has_v6 = true;
  }
  unsigned lo = 0, hi = 0;
  if (std::sscanf(ports.c_str(), "%u-%u", &lo, &hi) != 2 || lo == 0 || lo > hi || hi > 65535) {
    return Status::error("--snat-ports " + ports + " is not MIN-MAX");
  }
  snat->port_min = static_cast<uint16_t>(lo);
  snat->port_max = static_cast<uint16_t>(hi);
  return Status::ok();
}

}  // namespace flowlb::agent

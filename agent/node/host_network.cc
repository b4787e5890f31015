// readHostNetwork(): the edge of interface_discovery.h, reading the host
// through getifaddrs() and /proc/net (both per network namespace).
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>

#include <cstring>
#include <map>
#include <sstream>

#include "agent/node/interface_discovery.h"
#include "common/file.h"

namespace flowlb::agent {
namespace {

bool linkLocalOrLoopback(const IpAddr& a) {
  if (a.isV4()) {
    const uint8_t* b = a.v4();
    return b[0] == 127 || (b[0] == 169 && b[1] == 254);
  }
  static const uint8_t kLoop[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  return (a.bytes[0] == 0xfe && (a.bytes[1] & 0xc0) == 0x80) ||
         std::memcmp(a.bytes.data(), kLoop, 16) == 0;
}

uint8_t prefixOf(const sockaddr* mask) {
  if (mask == nullptr) return 0;
  const uint8_t* b = nullptr;
  size_t n = 0;
  if (mask->sa_family == AF_INET) {
    b = reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in*>(mask)->sin_addr);
    n = 4;
  } else if (mask->sa_family == AF_INET6) {
    b = reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in6*>(mask)->sin6_addr);
    n = 16;
  }
  uint8_t bits = 0;
  for (size_t i = 0; i < n; ++i) bits = static_cast<uint8_t>(bits + __builtin_popcount(b[i]));
  return bits;
}

}  // namespace

std::string defaultRouteV4(const std::string& text) {
  std::istringstream in(text);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string iface, dest, gateway, flags, refcnt, use, metric, mask;
    if (!(f >> iface >> dest >> gateway >> flags >> refcnt >> use >> metric >> mask)) continue;
    const unsigned long fl = std::strtoul(flags.c_str(), nullptr, 16);
    if (dest == "00000000" && mask == "00000000" && (fl & RTF_UP) && !(fl & RTF_REJECT)) {
      return iface;
    }
  }
  return "";
}

std::string defaultRouteV6(const std::string& text) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string dest, dest_len, src, src_len, next_hop, metric, refcnt, use, flags, iface;
    if (!(f >> dest >> dest_len >> src >> src_len >> next_hop >> metric >> refcnt >> use >> flags >>
          iface)) {
      continue;
    }
    const unsigned long fl = std::strtoul(flags.c_str(), nullptr, 16);
    if (dest == std::string(32, '0') && dest_len == "00" && (fl & RTF_UP) && !(fl & RTF_REJECT) &&
        iface != "lo") {
      return iface;
    }
  }
  return "";
}

std::vector<std::pair<std::string, HostAddress>> parseIfInet6(const std::string& text) {
  // address ifindex prefix_len scope flags name; flags from IFA_F_*
  constexpr unsigned kTemporary = 0x01, kDadFailed = 0x08, kDeprecated = 0x20, kTentative = 0x40;
  std::vector<std::pair<std::string, HostAddress>> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string hex, ifindex, plen, scope, flags, name;
    if (!(f >> hex >> ifindex >> plen >> scope >> flags >> name) || hex.size() != 32) continue;
    uint8_t bytes[16];
    for (size_t i = 0; i < 16; ++i) {
      bytes[i] = static_cast<uint8_t>(std::strtoul(hex.substr(2 * i, 2).c_str(), nullptr, 16));
    }
    HostAddress h;
    h.addr = IpAddr::fromV6(bytes);
    h.prefix_len = static_cast<uint8_t>(std::strtoul(plen.c_str(), nullptr, 16));
    const unsigned fl = static_cast<unsigned>(std::strtoul(flags.c_str(), nullptr, 16));
    h.usable = (fl & (kTemporary | kDadFailed | kDeprecated | kTentative)) == 0;
    h.global = std::strtoul(scope.c_str(), nullptr, 16) == 0 && !linkLocalOrLoopback(h.addr);
    out.emplace_back(name, h);
  }
  return out;
}

Result<HostNetwork> readHostNetwork() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return Status::error(std::string("getifaddrs: ") + strerror(errno));
  std::map<std::string, HostInterface> by_name;
  std::vector<std::string> order;
  for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
    auto [it, added] = by_name.try_emplace(a->ifa_name);
    HostInterface& i = it->second;
    if (added) order.push_back(a->ifa_name);
    i.name = a->ifa_name;
    i.up = (a->ifa_flags & IFF_UP) != 0;
    i.loopback = (a->ifa_flags & IFF_LOOPBACK) != 0;
    if (a->ifa_addr != nullptr && a->ifa_addr->sa_family == AF_INET) {
      HostAddress h;
      h.addr = IpAddr::fromV4(reinterpret_cast<const uint8_t*>(
          &reinterpret_cast<const sockaddr_in*>(a->ifa_addr)->sin_addr));
      h.prefix_len = prefixOf(a->ifa_netmask);
      h.global = !linkLocalOrLoopback(h.addr);
      i.addresses.push_back(h);
    }
  }
  freeifaddrs(list);
  // IPv6 with the flags getifaddrs() leaves out (tentative, deprecated).
  if (auto text = readFile("/proc/net/if_inet6")) {
    for (auto& [name, h] : parseIfInet6(*text)) {
      auto it = by_name.find(name);
      if (it != by_name.end()) it->second.addresses.push_back(h);
    }
  }
  HostNetwork host;
  for (const std::string& n : order) host.interfaces.push_back(std::move(by_name[n]));
  if (auto t = readFile("/proc/net/route")) host.default_route_v4 = defaultRouteV4(*t);
  if (auto t = readFile("/proc/net/ipv6_route")) host.default_route_v6 = defaultRouteV6(*t);
  return host;
}

}  // namespace flowlb::agent

// One service checked on its own, before any table is built: what a user
// wrote wrong (INVALID_ARGUMENT) or what this node cannot do (UNSUPPORTED),
// each in words that name the field and say what to do.
#include <set>

#include "agent/lb/snapshot.h"
#include "agent/packet/packet.h"

namespace flowlb::agent {
namespace {

std::string where(const ServiceSpec& s) {
  return "service '" + s.name + "' (" + s.vip.withPort(s.port) + ")";
}

ServiceError invalid(const ServiceSpec& s, const std::string& what) {
  return {s.name, ApplyErrorCode::kInvalidArgument, where(s) + ": " + what};
}
ServiceError unsupported(const ServiceSpec& s, const std::string& what) {
  return {s.name, ApplyErrorCode::kUnsupported, where(s) + ": " + what};
}

bool allZero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

// Why an address can be neither a VIP nor a backend, or nullptr.
const char* unusable(const IpAddr& a) {
  if (a.isV4()) {
    const uint8_t* b = a.v4();
    if (allZero(b, 4)) return "the unspecified address";
    if (b[0] == 255 && b[1] == 255 && b[2] == 255 && b[3] == 255) return "the broadcast address";
    if (b[0] >= 224 && b[0] <= 239) return "a multicast address";
    if (b[0] == 127) return "a loopback address";
    return nullptr;
  }
  const uint8_t* b = a.bytes.data();
  if (allZero(b, 16)) return "the unspecified address";
  if (b[0] == 0xff) return "a multicast address";
  if (allZero(b, 15) && b[15] == 1) return "the loopback address";
  return nullptr;
}

}  // namespace

const char* applyErrorCodeName(ApplyErrorCode c) {
  switch (c) {
    case ApplyErrorCode::kInvalidArgument: return "invalid_argument";
    case ApplyErrorCode::kUnsupported: return "unsupported";
    case ApplyErrorCode::kResourceExhausted: return "resource_exhausted";
    case ApplyErrorCode::kConflict: return "conflict";
    case ApplyErrorCode::kInternal: return "internal";
  }
  return "unknown";
}

const char* healthCheckKindName(HealthCheckKind k) {
  switch (k) {
    case HealthCheckKind::kNone: return "none";
    case HealthCheckKind::kTcp: return "tcp";
    case HealthCheckKind::kHttp: return "http";
    case HealthCheckKind::kHttps: return "https";
    case HealthCheckKind::kUdpDns: return "udp-dns";
  }
  return "unknown";
}

std::optional<ServiceError> validateService(const ServiceSpec& s, const SnatConfig& snat,
                                            std::vector<std::string>* warnings) {
  if (s.proto != kProtoTCP && s.proto != kProtoUDP) {
    return unsupported(s, "protocol must be TCP or UDP");
  }
  if (s.port == 0) return invalid(s, "port must not be 0");
  if (const char* why = unusable(s.vip)) {
    return invalid(s, "the VIP " + s.vip.toString() + " is " + why);
  }
  if ((snat.has_v4 && s.vip == snat.v4) || (snat.has_v6 && s.vip == snat.v6)) {
    return invalid(s, "the VIP is this node's source NAT address");
  }
  if (s.mode == ForwardingMode::kNat && !(s.vip.isV4() ? snat.has_v4 : snat.has_v6)) {
    return unsupported(s, std::string("NAT mode needs a source NAT address of the VIP's family, "
                                      "and this node has no ") +
                              (s.vip.isV4() ? "IPv4 one (--snat-ipv4)" : "IPv6 one (--snat-ipv6)"));
  }
  if (s.proxy_protocol != ProxyProtocol::kNone && s.mode == ForwardingMode::kDsr) {
    return unsupported(s, "the PROXY protocol needs NAT: DSR delivers packets unchanged");
  }
  const uint32_t size = s.maglev_size;
  if (size != 0 && (size < 3 || size > kMaxMaglevSize || !isPrime(size))) {
    return invalid(s, "Maglev table size " + std::to_string(size) +
                          " must be a prime between 3 and " + std::to_string(kMaxMaglevSize));
  }
  if (size != 0 && s.backends.size() >= size) {
    return invalid(s, std::to_string(s.backends.size()) +
                          " backends do not fit a Maglev table of " + std::to_string(size) +
                          " slots");
  }
  if (!s.source_ranges.empty()) {
    bool any = false;
    for (const IpPrefix& r : s.source_ranges) any = any || r.addr.isV4() == s.vip.isV4();
    if (!any) {
      return invalid(s, std::string("every source range is ") + (s.vip.isV4() ? "IPv6" : "IPv4") +
                            ", so no client could reach this " + (s.vip.isV4() ? "IPv4" : "IPv6") +
                            " VIP");
    }
  }
  if (const HealthCheckSpec& h = s.health; h.kind != HealthCheckKind::kNone) {
    if (h.interval_ms < 100) return invalid(s, "health check interval must be at least 100 ms");
    if (h.timeout_ms < 10 || h.timeout_ms >= h.interval_ms) {
      return invalid(s, "health check timeout must be at least 10 ms and below the interval (" +
                            std::to_string(h.interval_ms) + " ms)");
    }
    if (h.unhealthy_threshold < 1 || h.unhealthy_threshold > 100 || h.healthy_threshold < 1 ||
        h.healthy_threshold > 100) {
      return invalid(s, "health check thresholds must be between 1 and 100");
    }
    if ((h.kind == HealthCheckKind::kHttp || h.kind == HealthCheckKind::kHttps) &&
        (h.path.empty() || h.path[0] != '/' ||
         h.path.find_first_of(" \r\n") != std::string::npos)) {
      return invalid(s, "health check path must start with '/' and hold no space or line break");
    }
  }
  std::set<std::string> keys;
  uint32_t weight = 0;
  for (const BackendSpec& b : s.backends) {
    if (!keys.insert(b.key()).second) {
      return invalid(s, "backend " + b.key() + " is listed twice");
    }
    if (b.addr.isV4() != s.vip.isV4()) {
      return invalid(s, "backend " + b.addr.toString() + " is not of the VIP's address family");
    }
    if (const char* why = unusable(b.addr)) {
      return invalid(
          s, "backend " + b.addr.toString() + " is " + why + ", which the datapath cannot reach");
    }
    if (b.port == 0) return invalid(s, "backend " + b.addr.toString() + " has port 0");
    if (s.mode == ForwardingMode::kDsr && b.port != s.port) {
      return unsupported(s, "DSR delivers packets unchanged, so it cannot send port " +
                                std::to_string(s.port) + " to backend " + b.key() +
                                "; make the target port equal the service port, or use NAT");
    }
    if (b.state == BackendState::kActive) weight += b.weight;
  }
  if (warnings != nullptr && !s.backends.empty() && weight == 0) {
    warnings->push_back(where(s) + ": no backend takes new flows (all draining or weight 0)");
  }
  return std::nullopt;
}

}  // namespace flowlb::agent

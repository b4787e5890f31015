// The flowlb.io/ annotations of a Service (and the Service fields they sit
// beside) turned into typed settings. Every bad value becomes an error a
// user can act on (it goes to a Warning Event and the status condition);
// the other settings still apply.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/ip_addr.h"

namespace flowlb::controller {

inline constexpr const char* kAnnotationPool = "flowlb.io/pool";
inline constexpr const char* kAnnotationIps = "flowlb.io/ips";
inline constexpr const char* kAnnotationSharingKey = "flowlb.io/sharing-key";
inline constexpr const char* kAnnotationForwardingMode = "flowlb.io/forwarding-mode";
inline constexpr const char* kAnnotationIdleTimeout = "flowlb.io/idle-timeout";
inline constexpr const char* kAnnotationDrainTimeout = "flowlb.io/drain-timeout";
inline constexpr const char* kAnnotationProxyProtocol = "flowlb.io/proxy-protocol";
inline constexpr const char* kAnnotationHealthCheck = "flowlb.io/health-check";
inline constexpr const char* kAnnotationHealthInterval = "flowlb.io/health-check-interval";
inline constexpr const char* kAnnotationHealthTimeout = "flowlb.io/health-check-timeout";
inline constexpr const char* kAnnotationHealthUnhealthy =
    "flowlb.io/health-check-unhealthy-threshold";
inline constexpr const char* kAnnotationHealthHealthy = "flowlb.io/health-check-healthy-threshold";
// Written by the controller: the pool an address came from.
inline constexpr const char* kAnnotationAllocatedFrom = "flowlb.io/ip-allocated-from-pool";
// The conditions the controller keeps in a served Service's status.
inline constexpr const char* kConditionAllocated = "flowlb.io/AddressAllocated";
inline constexpr const char* kConditionProgrammed = "flowlb.io/Programmed";
inline constexpr const char* kConditionAnnounced = "flowlb.io/Announced";
inline bool isControllerCondition(const std::string& type) {
  return type == kConditionAllocated || type == kConditionProgrammed || type == kConditionAnnounced;
}
// Whether the controller writes this annotation itself (so a change to it
// is our own write coming back, not the user asking for something new).
inline bool isControllerAnnotation(const std::string& key) {
  return key == kAnnotationAllocatedFrom;
}

enum class ForwardingMode : uint8_t { kNat, kDsr };

// Active health checking of a Service's backends (flowlb.io/health-check;
// kNone: off), with the contract's defaults and limits (HealthCheck).
enum class HealthCheckKind : uint8_t { kNone, kTcp, kHttp, kHttps, kUdpDns };
struct HealthCheckSettings {
  HealthCheckKind kind = HealthCheckKind::kNone;
  std::string path;  // HTTP and HTTPS
  uint32_t interval_ms = 5000;
  uint32_t timeout_ms = 2000;
  uint32_t unhealthy_threshold = 3;
  uint32_t healthy_threshold = 2;
  bool operator==(const HealthCheckSettings&) const = default;
};

struct ServiceSettings {
  std::string pool;
  std::vector<IpAddr> ips;  // requested, at most one per family
  std::string sharing_key;
  ForwardingMode mode = ForwardingMode::kNat;
  uint32_t idle_timeout_s = 0;      // 0: the agent's default
  uint32_t drain_timeout_s = 300;   // 5 min
  bool proxy_protocol_v2 = false;   // a PROXY v2 header in front of what backends receive
  HealthCheckSettings health;       // kind kNone when off or invalid
  std::vector<std::string> errors;  // one line per bad annotation
};

// `load_balancer_ip` is spec.loadBalancerIP (deprecated upstream, still
// honoured); flowlb.io/ips wins when both are set.
ServiceSettings parseServiceSettings(const std::map<std::string, std::string>& annotations,
                                     const std::string& load_balancer_ip = "");

// "90", "90s", "15m", "2h", "1h30m" -> seconds; false on anything else.
bool parseDuration(const std::string& text, uint32_t* seconds);
// The same, also accepting milliseconds ("500ms", "1s500ms") -> ms.
bool parseDurationMs(const std::string& text, uint64_t* ms);

}  // namespace flowlb::controller

// What this agent probes, from an applied desired state: one target per
// (service with a health check, backend this node probes by
// common/health_probers.h). Also how targets change between states (a
// changed check restarts its targets), where each target's probes fall in
// its interval, and how a standalone agent turns its own verdicts into the
// state it applies. Pure.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "agent/health/health_state.h"
#include "agent/lb/service.h"

namespace flowlb::agent::health {

struct TargetKey {
  std::string service;  // ServiceSpec.name (VirtualService.key)
  std::string backend;  // canonical "10.1.2.3:8080", "[fd00::5]:8080"
  auto operator<=>(const TargetKey&) const = default;
};

struct ProbeTarget {
  TargetKey key;
  IpAddr addr;
  uint16_t port = 0;
  HealthCheckSpec check;
  bool operator==(const ProbeTarget&) const = default;
};

struct TargetSet {
  std::vector<ProbeTarget> targets;  // sorted by key, unique
  size_t refused = 0;                // beyond `cap`
};

// The targets of `node` in `desired` (an empty prober list: all of them),
// at most `cap`; the rest are counted in `refused`.
TargetSet probeTargets(const DesiredState& desired, const std::string& node, size_t cap);

struct TargetDiff {
  std::vector<ProbeTarget> added;  // new, or whose check changed (start UNKNOWN)
  std::vector<TargetKey> removed;  // gone, or whose check changed
};
// Both sorted by key, as probeTargets returns them.
TargetDiff diffTargets(const std::vector<ProbeTarget>& before,
                       const std::vector<ProbeTarget>& after);

// The target's first probe, ms after it starts: spread over the interval by
// a hash of the target, so probes of many targets do not fall together.
uint32_t staggerMs(const TargetKey& key, uint32_t interval_ms);

// A standalone agent's own verdict: backends UNHEALTHY in `statuses` are
// applied as kUnhealthy (unless the file drains them); the rest as the file
// says.
DesiredState withVerdicts(const DesiredState& file,
                          const std::map<TargetKey, HealthStatus>& statuses);

}  // namespace flowlb::agent::health

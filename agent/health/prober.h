// The agent's health prober: one thread of its own that probes the targets
// of the applied state (targets.h) from the node, each every interval,
// spread over it, with all sockets non-blocking in one poll(), so neither
// the control loop nor the workers ever wait on a backend. Results go
// through each target's thresholds (health_state.h); a status change is
// logged (event=backend_health) and, batched over `batch`, announced
// through on_change.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "agent/health/targets.h"
#include "common/status.h"

namespace flowlb::agent::health {

struct ProberOptions {
  std::string node;            // this node's name (common/health_probers.h)
  size_t max_targets = 20000;  // beyond: refused (logged, counted)
  size_t max_in_flight = 256;  // probes open at once; the others wait their turn
  uint16_t port_ceiling = 0;   // source ports stay below (the SNAT range's start); 0: none
  std::chrono::milliseconds batch{100};
  // From the prober's thread, at most once per `batch`, after statuses changed.
  std::function<void()> on_change;
};

struct TargetStatus {
  TargetKey key;
  HealthStatus status = HealthStatus::kUnknown;
  std::string detail;
};

struct ProberCounters {
  uint64_t passed = 0;
  uint64_t failed = 0;
  size_t targets = 0;
  uint64_t refused = 0;  // targets refused at the last update (beyond max_targets)
};

class Prober {
 public:
  static Result<std::unique_ptr<Prober>> start(ProberOptions options);
  ~Prober();
  Prober(const Prober&) = delete;
  Prober& operator=(const Prober&) = delete;

  // The targets of an applied state: new ones start UNKNOWN, gone ones are
  // dropped, a changed check restarts its targets. Returns the refused count.
  size_t setTargets(const DesiredState& desired);
  std::vector<TargetStatus> statuses() const;  // sorted by key
  std::map<TargetKey, HealthStatus> verdicts() const;
  ProberCounters counters() const;

 private:
  Prober() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace flowlb::agent::health

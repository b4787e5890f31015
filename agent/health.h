// The agent's /healthz and /readyz (common/health.h): live while the main
// loop turns; ready once XDP is attached and a desired state is applied
// (with a controller: the first one it sent). /readyz also says which
// interfaces are in use and why. The main loop reports through the setters
// (atomics: the HTTP thread reads them).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "common/health.h"

namespace flowlb::agent {

class AgentHealth {
 public:
  // `interface_choice`: how the interfaces were chosen ("" when by flag).
  AgentHealth(const std::vector<std::string>& interfaces, const std::string& interface_choice,
              bool wait_for_controller);
  const HealthChecks& checks() const { return checks_; }
  HealthChecks& checks() { return checks_; }

  void beat();  // once per main-loop turn
  void attached() { attached_ = true; }
  void applied(uint64_t generation) {
    generation_ = generation;
    applied_ = true;
  }

 private:
  static int64_t nowMs();
  HealthChecks checks_;
  std::atomic<int64_t> heartbeat_ms_{0};
  std::atomic<bool> attached_{false};
  std::atomic<bool> applied_{false};
  std::atomic<uint64_t> generation_{0};
};

}  // namespace flowlb::agent

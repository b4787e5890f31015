#include "agent/health.h"

#include <chrono>

namespace flowlb::agent {

int64_t AgentHealth::nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void AgentHealth::beat() {
  heartbeat_ms_ = nowMs();
}

AgentHealth::AgentHealth(const std::vector<std::string>& interfaces,
                         const std::string& interface_choice, bool wait_for_controller) {
  beat();
  checks_.add("main-loop", [this] {
    const int64_t age = nowMs() - heartbeat_ms_.load();
    return age > 10000 ? HealthCheck::fail("main loop stuck for " + std::to_string(age) + "ms")
                       : HealthCheck::pass();
  });
  std::string names;
  for (const std::string& i : interfaces) names += (names.empty() ? "" : ",") + i;
  checks_.addReadiness("xdp", [this, names] {
    return attached_ ? HealthCheck::pass("attached to " + names)
                     : HealthCheck::fail("not attached to " + names + " yet");
  });
  checks_.addReadiness("desired-state", [this, wait_for_controller] {
    if (applied_) return HealthCheck::pass("generation " + std::to_string(generation_.load()));
    return HealthCheck::fail(wait_for_controller
                                 ? "no desired state from the controller applied yet"
                                 : "the configuration is not applied yet");
  });
  if (!interface_choice.empty()) {
    checks_.addReadiness("interfaces",
                         [interface_choice] { return HealthCheck::pass(interface_choice); });
  }
}

}  // namespace flowlb::agent

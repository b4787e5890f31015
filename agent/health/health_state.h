// One probed backend's status as this agent sees it: consecutive probe
// results through two thresholds (hysteresis), so one lost probe does not
// flip a backend. UNKNOWN until a threshold is first met; then HEALTHY after
// `healthy_threshold` passes in a row, UNHEALTHY after `unhealthy_threshold`
// failures in a row, and back by the opposite threshold. Pure: no clock, no
// sockets.
#pragma once

#include <cstdint>
#include <string>

namespace flowlb::agent::health {

enum class HealthStatus : uint8_t { kUnknown, kHealthy, kUnhealthy };
const char* healthStatusName(HealthStatus s);  // "unknown" | "healthy" | "unhealthy"

class HealthThreshold {
 public:
  HealthThreshold(uint32_t healthy_threshold, uint32_t unhealthy_threshold)
      : healthy_threshold_(healthy_threshold ? healthy_threshold : 1),
        unhealthy_threshold_(unhealthy_threshold ? unhealthy_threshold : 1) {}

  // One probe's result (`failure`: why it failed; ignored on a pass).
  // Returns whether the status changed.
  bool record(bool passed, const std::string& failure = "");

  HealthStatus status() const { return status_; }
  // The last probe's failure ("connect: Connection refused", "http status
  // 503", "timeout after 2000 ms"); empty when the last probe passed.
  const std::string& detail() const { return detail_; }

 private:
  uint32_t healthy_threshold_;
  uint32_t unhealthy_threshold_;
  HealthStatus status_ = HealthStatus::kUnknown;
  uint32_t passes_ = 0;    // in a row
  uint32_t failures_ = 0;  // in a row
  std::string detail_;
};

}  // namespace flowlb::agent::health

#include "agent/health/health_state.h"

namespace flowlb::agent::health {

const char* healthStatusName(HealthStatus s) {
  switch (s) {
    case HealthStatus::kHealthy: return "healthy";
    case HealthStatus::kUnhealthy: return "unhealthy";
    case HealthStatus::kUnknown: break;
  }
  return "unknown";
}

bool HealthThreshold::record(bool passed, const std::string& failure) {
  const HealthStatus before = status_;
  if (passed) {
    failures_ = 0;
    detail_.clear();
    if (passes_ < healthy_threshold_) ++passes_;
    if (passes_ >= healthy_threshold_) status_ = HealthStatus::kHealthy;
  } else {
    passes_ = 0;
    detail_ = failure;
    if (failures_ < unhealthy_threshold_) ++failures_;
    if (failures_ >= unhealthy_threshold_) status_ = HealthStatus::kUnhealthy;
  }
  return status_ != before;
}

}  // namespace flowlb::agent::health

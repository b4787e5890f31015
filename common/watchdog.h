// Named heartbeats with deadlines: a part that must keep turning (an
// informer reading its watch, the reconcile loop, a thread pool running its
// tasks) beats; a liveness check fails, naming the parts that missed their
// deadline, so a hung process gets restarted instead of hanging silently
// (issue 17.10: the controller kept serving metrics and gRPC while nothing
// moved). The clock is injected; tests move a FakeClock.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <string>

#include "common/clock.h"

namespace flowlb {

class Watchdog {
 public:
  explicit Watchdog(Clock* clock = SystemClock::get()) : clock_(clock) {}

  // A part to watch: it must beat at least every `deadline` (the clock
  // starts now).
  void expect(const std::string& name, std::chrono::milliseconds deadline) {
    std::lock_guard<std::mutex> lock(mu_);
    parts_[name] = {deadline, clock_->now()};
  }
  void beat(const std::string& name) {
    const auto now = clock_->now();
    std::lock_guard<std::mutex> lock(mu_);
    auto it = parts_.find(name);
    if (it != parts_.end()) it->second.last = now;
  }

  struct Verdict {
    bool ok = true;
    std::string detail;  // the stale parts and how long since each beat, or "all N moving"
  };
  Verdict check() const {
    const auto now = clock_->now();
    std::lock_guard<std::mutex> lock(mu_);
    Verdict v;
    for (const auto& [name, p] : parts_) {
      const auto age = std::chrono::duration_cast<std::chrono::seconds>(now - p.last);
      if (now - p.last <= p.deadline) continue;
      v.ok = false;
      v.detail +=
          (v.detail.empty() ? "" : ", ") + name + " stuck for " + std::to_string(age.count()) + "s";
    }
    if (v.ok) v.detail = "all " + std::to_string(parts_.size()) + " moving";
    return v;
  }

 private:
  struct Part {
    std::chrono::milliseconds deadline;
    std::chrono::steady_clock::time_point last;
  };
  Clock* clock_;
  mutable std::mutex mu_;
  std::map<std::string, Part> parts_;
};

}  // namespace flowlb

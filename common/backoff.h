// Jittered exponential backoff for reconnects and retries (the Kubernetes
// client, the agent's controller link).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>

namespace flowlb {

// Jittered exponential backoff: the n-th failure in a row waits a random
// time in [d/2, d] with d = initial * 2^n, capped at max.
class Backoff {
 public:
  Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max)
      : initial_(initial), max_(max), rng_(std::random_device{}()) {}
  std::chrono::milliseconds next() {
    const double d =
        std::min<double>(static_cast<double>(max_.count()),
                         static_cast<double>(initial_.count()) * (1u << std::min(failures_, 20)));
    ++failures_;
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    return std::chrono::milliseconds(static_cast<int64_t>(d * jitter(rng_)));
  }
  void reset() { failures_ = 0; }
  int failures() const { return failures_; }

 private:
  std::chrono::milliseconds initial_, max_;
  int failures_ = 0;
  std::mt19937_64 rng_;
};

}  // namespace flowlb

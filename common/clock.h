// Time as an injected edge: production code asks a Clock, tests pass a
// FakeClock and move it by hand, so nothing waits on the wall clock.
#pragma once

#include <chrono>
#include <mutex>

namespace flowlb {

class Clock {
 public:
  virtual ~Clock() = default;
  // For durations, deadlines and timeouts.
  virtual std::chrono::steady_clock::time_point now() const = 0;
  // For timestamps users read (Event and condition times).
  virtual std::chrono::system_clock::time_point wallNow() const = 0;
};

class SystemClock final : public Clock {
 public:
  std::chrono::steady_clock::time_point now() const override {
    return std::chrono::steady_clock::now();
  }
  std::chrono::system_clock::time_point wallNow() const override {
    return std::chrono::system_clock::now();
  }
  static SystemClock* get() {
    static SystemClock clock;
    return &clock;
  }
};

class FakeClock final : public Clock {
 public:
  std::chrono::steady_clock::time_point now() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return steady_;
  }
  std::chrono::system_clock::time_point wallNow() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return wall_;
  }
  void advance(std::chrono::steady_clock::duration d) {
    std::lock_guard<std::mutex> lock(mu_);
    steady_ += d;
    wall_ += std::chrono::duration_cast<std::chrono::system_clock::duration>(d);
  }

 private:
  mutable std::mutex mu_;
  std::chrono::steady_clock::time_point steady_{std::chrono::hours(1000)};
  std::chrono::system_clock::time_point wall_{std::chrono::seconds(1767323045)};
};

}  // namespace flowlb

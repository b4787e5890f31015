// Flow sync's bounds at the controller, per agent (docs/flow-sync.md, "The
// controller's relay"): a token bucket on the records an agent may send,
// and a bounded queue of the batches relayed to it that drops the oldest
// when full (a slow reader costs itself its oldest records, never the
// controller's memory). Every agent's queue also counts its bytes into a
// total shared by all of them: over the total's bound, a queue that grows
// drops its own oldest, so many slow agents at once stay bounded too. Pure:
// the time is passed in.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>

#include "common/flow_record.h"

namespace flowlb::controller {

// `rate` tokens a second, at most `burst` saved up; starts full.
class TokenBucket {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  TokenBucket(double rate, double burst, TimePoint now)
      : rate_(rate), burst_(burst), tokens_(burst), at_(now) {}
  // Takes `n` tokens if there are that many; else takes none.
  bool take(double n, TimePoint now) {
    if (now > at_) {
      tokens_ =
          std::min(burst_, tokens_ + rate_ * std::chrono::duration<double>(now - at_).count());
      at_ = now;
    }
    if (n > tokens_) return false;
    tokens_ -= n;
    return true;
  }

 private:
  double rate_, burst_, tokens_;
  TimePoint at_;
};

// One relayed batch waiting for its agent's stream.
struct FlowSyncItem {
  std::string records;  // packed, kFlowRecordBytes each
  std::string origin_node;
  bool dump = false;
  uint64_t count() const { return records.size() / kFlowRecordBytes; }
};

// The bytes waiting in every agent's queue, and their bound.
struct FlowSyncTotal {
  explicit FlowSyncTotal(size_t max) : max_bytes(max) {}
  const size_t max_bytes;
  std::atomic<size_t> bytes{0};
};

class FlowSyncQueue {
 public:
  // `total` (may be null: no shared bound) must outlive the queue.
  FlowSyncQueue(size_t max_batches, size_t max_bytes, FlowSyncTotal* total = nullptr)
      : max_batches_(std::max<size_t>(max_batches, 1)), max_bytes_(max_bytes), total_(total) {}
  ~FlowSyncQueue() {
    if (total_) total_->bytes -= bytes_;
  }
  FlowSyncQueue(const FlowSyncQueue&) = delete;
  FlowSyncQueue& operator=(const FlowSyncQueue&) = delete;

  // Appends `item`, then drops the oldest while over a bound, its own or the
  // total's (never the one just added). Returns the records dropped.
  uint64_t push(FlowSyncItem item) {
    add(item.records.size());
    q_.push_back(std::move(item));
    uint64_t dropped = 0;
    while (q_.size() > 1 && (q_.size() > max_batches_ || bytes_ > max_bytes_ ||
                             (total_ && total_->bytes > total_->max_bytes))) {
      dropped += q_.front().count();
      sub(q_.front().records.size());
      q_.pop_front();
    }
    return dropped;
  }
  std::optional<FlowSyncItem> pop() {
    if (q_.empty()) return std::nullopt;
    FlowSyncItem item = std::move(q_.front());
    q_.pop_front();
    sub(item.records.size());
    return item;
  }
  bool empty() const { return q_.empty(); }
  size_t size() const { return q_.size(); }
  size_t bytes() const { return bytes_; }

 private:
  void add(size_t n) {
    bytes_ += n;
    if (total_) total_->bytes += n;
  }
  void sub(size_t n) {
    bytes_ -= n;
    if (total_) total_->bytes -= n;
  }

  size_t max_batches_, max_bytes_;
  FlowSyncTotal* total_;
  std::deque<FlowSyncItem> q_;
  size_t bytes_ = 0;
};

}  // namespace flowlb::controller

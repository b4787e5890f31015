// The flows one worker shares (flow sync): a bounded, lock-free ring with
// the worker as its one producer and the agent's control thread as its one
// consumer. A full ring refuses the record (the worker counts it and goes
// on): the packet path never waits for the control plane, and a lost
// record only means that flow is not adopted if its VIP moves.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "common/flow_record.h"

namespace flowlb::agent {

class FlowExportRing {
 public:
  // `capacity`: rounded up to a power of two.
  explicit FlowExportRing(uint32_t capacity) {
    uint32_t c = 1;
    while (c < capacity) c <<= 1;
    mask_ = c - 1;
    slots_.reset(new FlowRecord[c]);
  }
  FlowExportRing(const FlowExportRing&) = delete;
  FlowExportRing& operator=(const FlowExportRing&) = delete;

  uint32_t capacity() const { return mask_ + 1; }

  // Producer.
  bool push(const FlowRecord& r) {
    const uint32_t tail = tail_.load(std::memory_order_relaxed);
    if (tail - head_cache_ > mask_) {
      head_cache_ = head_.load(std::memory_order_acquire);
      if (tail - head_cache_ > mask_) return false;
    }
    slots_[tail & mask_] = r;
    tail_.store(tail + 1, std::memory_order_release);
    return true;
  }

  // Consumer: the oldest record into `out`; false when empty.
  bool pop(FlowRecord* out) {
    const uint32_t head = head_.load(std::memory_order_relaxed);
    if (head == tail_.load(std::memory_order_acquire)) return false;
    *out = slots_[head & mask_];
    head_.store(head + 1, std::memory_order_release);
    return true;
  }

 private:
  uint32_t mask_ = 0;
  std::unique_ptr<FlowRecord[]> slots_;
  alignas(64) std::atomic<uint32_t> head_{0};  // consumer
  alignas(64) std::atomic<uint32_t> tail_{0};  // producer
  uint32_t head_cache_ = 0;
};

}  // namespace flowlb::agent

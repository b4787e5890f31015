// How one worker hands a frame to another: a bounded, lock-free ring with
// one producer thread and one consumer thread, holding copies of frames.
// Each ordered pair of workers has its own ring (HandoffMesh), so no two
// threads ever write the same index. A full ring refuses the frame (the
// caller drops and counts it): the packet path never waits for another
// worker.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>

namespace flowlb::agent {

class HandoffRing {
 public:
  static constexpr uint32_t kMaxFrame = 4096;  // one UMEM frame
  struct Slot {
    uint32_t len;
    uint16_t origin;      // the worker that received the frame first
    uint8_t from_kernel;  // read from the exception path, not from a NIC queue
    uint8_t pad;
    uint8_t data[kMaxFrame];
  };

  // `capacity`: rounded up to a power of two.
  explicit HandoffRing(uint32_t capacity) {
    uint32_t c = 1;
    while (c < capacity) c <<= 1;
    mask_ = c - 1;
    slots_.reset(new Slot[c]);  // not zeroed: pages are touched as they are used
  }
  HandoffRing(const HandoffRing&) = delete;
  HandoffRing& operator=(const HandoffRing&) = delete;

  uint32_t capacity() const { return mask_ + 1; }

  // Producer: copies the frame in; false when the ring is full or the frame
  // does not fit a slot.
  bool push(const uint8_t* frame, uint32_t len, uint32_t origin, bool from_kernel) {
    if (len > kMaxFrame) return false;
    const uint32_t tail = tail_.load(std::memory_order_relaxed);
    if (tail - head_cache_ > mask_) {
      head_cache_ = head_.load(std::memory_order_acquire);
      if (tail - head_cache_ > mask_) return false;
    }
    Slot& s = slots_[tail & mask_];
    s.len = len;
    s.origin = static_cast<uint16_t>(origin);
    s.from_kernel = from_kernel ? 1 : 0;
    std::memcpy(s.data, frame, len);
    tail_.store(tail + 1, std::memory_order_release);
    return true;
  }

  // Consumer: the oldest frame, or nullptr when the ring is empty; pop()
  // gives its slot back once the frame has been copied out.
  const Slot* front() {
    const uint32_t head = head_.load(std::memory_order_relaxed);
    if (head == tail_cache_) {
      tail_cache_ = tail_.load(std::memory_order_acquire);
      if (head == tail_cache_) return nullptr;
    }
    return &slots_[head & mask_];
  }
  void pop() { head_.store(head_.load(std::memory_order_relaxed) + 1, std::memory_order_release); }
  // Either side: whether a frame is waiting (a snapshot).
  bool empty() const {
    return head_.load(std::memory_order_acquire) == tail_.load(std::memory_order_acquire);
  }

 private:
  uint32_t mask_ = 0;
  std::unique_ptr<Slot[]> slots_;
  // Free-running indices, each written by one side only, on their own lines
  // with that side's cached copy of the other's.
  alignas(64) std::atomic<uint32_t> head_{0};  // consumer
  uint32_t tail_cache_ = 0;
  alignas(64) std::atomic<uint32_t> tail_{0};  // producer
  uint32_t head_cache_ = 0;
};

}  // namespace flowlb::agent

// Read-copy-update for one writer and a fixed set of readers (workers),
// quiescent-state based. A reader starts offline; it calls quiescent()
// before its first acquire() (and after every offline()), takes the current
// object at the start of a batch and reports quiescence after it. The writer
// frees a replaced object only when every reader has reported since it was
// replaced. Readers never block and never touch a reference count.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace flowlb::agent {

template <typename T>
class RcuPublisher {
 public:
  explicit RcuPublisher(size_t readers)
      : reader_epoch_(std::make_unique<Epoch[]>(readers)), readers_(readers) {}

  // Reader side (worker `r`).
  const T* acquire() const { return current_.load(); }
  // Sequentially consistent so that a reader coming back online publishes
  // its epoch before it loads the pointer (no store-load reordering).
  void quiescent(size_t r) { reader_epoch_[r].value.store(epoch_.load()); }
  // A reader going to sleep (idle wait) holds nothing: it never delays frees.
  void offline(size_t r) { reader_epoch_[r].value.store(kOffline); }

  // Writer side.
  void publish(std::shared_ptr<const T> next) {
    std::lock_guard<std::mutex> lock(writer_mu_);
    current_.store(next.get(), std::memory_order_release);
    const uint64_t retired_at = epoch_.fetch_add(1, std::memory_order_acq_rel) + 1;
    if (holder_) retired_.emplace_back(retired_at, std::move(holder_));
    holder_ = std::move(next);
  }
  // Frees objects no reader can still see; returns how many are pending.
  size_t reclaim() {
    std::lock_guard<std::mutex> lock(writer_mu_);
    uint64_t oldest = UINT64_MAX;
    for (size_t r = 0; r < readers_; ++r) {
      oldest = std::min(oldest, reader_epoch_[r].value.load(std::memory_order_acquire));
    }
    // An object retired when the epoch became E is safe once every reader
    // has reported an epoch >= E (it re-read current_ after the swap).
    std::erase_if(retired_, [oldest](const auto& r) { return oldest >= r.first; });
    return retired_.size();
  }
  // The writer's own reference to the current object.
  std::shared_ptr<const T> current() const {
    std::lock_guard<std::mutex> lock(writer_mu_);
    return holder_;
  }

 private:
  static constexpr uint64_t kOffline = UINT64_MAX;
  struct alignas(64) Epoch {
    std::atomic<uint64_t> value{kOffline};
  };
  std::atomic<const T*> current_{nullptr};
  std::atomic<uint64_t> epoch_{1};
  std::unique_ptr<Epoch[]> reader_epoch_;
  size_t readers_;
  mutable std::mutex writer_mu_;  // guards holder_ and retired_ (writer side only)
  std::shared_ptr<const T> holder_;
  std::vector<std::pair<uint64_t, std::shared_ptr<const T>>> retired_;
};

}  // namespace flowlb::agent

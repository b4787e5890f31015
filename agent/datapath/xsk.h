// AF_XDP: one UMEM shared by a socket per configured interface (a frame
// received on one interface can be sent on another without a copy), the
// free-frame pool, and the rings. libxdp's xsk API is used here and in the
// worker's ring loop (worker.cc), nowhere else.
#pragma once

#include <xdp/xsk.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "agent/datapath/xdp_program.h"
#include "common/status.h"

namespace flowlb::agent {

enum class BindMode : uint8_t { kAuto, kZeroCopy, kCopy };

inline constexpr uint32_t kFrameSize = XSK_UMEM__DEFAULT_FRAME_SIZE;  // 4096
inline constexpr uint32_t kRingSize = 2048;

// Frames not owned by the kernel: a LIFO of UMEM offsets. Worker-owned.
class FramePool {
 public:
  explicit FramePool(uint32_t frames) {
    free_.reserve(frames);
    for (uint32_t i = 0; i < frames; ++i) free_.push_back(uint64_t{i} * kFrameSize);
  }
  bool empty() const { return free_.empty(); }
  size_t size() const { return free_.size(); }
  uint64_t take() {
    const uint64_t a = free_.back();
    free_.pop_back();
    return a;
  }
  void give(uint64_t addr) { free_.push_back(addr - addr % kFrameSize); }

 private:
  std::vector<uint64_t> free_;  // never grows past its reserve
};

class Umem {
 public:
  static Result<std::unique_ptr<Umem>> create(uint32_t frames);
  ~Umem();
  Umem(const Umem&) = delete;
  Umem& operator=(const Umem&) = delete;

  uint8_t* data(uint64_t addr) { return static_cast<uint8_t*>(xsk_umem__get_data(area_, addr)); }
  uint32_t frames() const { return frames_; }
  struct xsk_umem* handle() {
    return umem_;
  }
  struct xsk_ring_prod* firstFill() {
    return &fill_;
  }
  struct xsk_ring_cons* firstComp() {
    return &comp_;
  }

 private:
  Umem() = default;
  void* area_ = nullptr;
  size_t size_ = 0;
  uint32_t frames_ = 0;
  struct xsk_umem* umem_ = nullptr;
  struct xsk_ring_prod fill_ {};
  struct xsk_ring_cons comp_ {};
};

// One AF_XDP socket on (interface, queue 0) with its four rings.
class XskSocket {
 public:
  // The first socket on a UMEM uses the UMEM's own fill/completion rings.
  // `busy_poll`: set SO_PREFER_BUSY_POLL, SO_BUSY_POLL and
  // SO_BUSY_POLL_BUDGET (a refusal is logged, not fatal: see busyPoll()).
  static Result<std::unique_ptr<XskSocket>> create(Umem& umem, const Interface& iface,
                                                   uint32_t queue, BindMode mode, bool first,
                                                   bool busy_poll = false);
  ~XskSocket();
  XskSocket(const XskSocket&) = delete;
  XskSocket& operator=(const XskSocket&) = delete;

  int fd() const { return xsk_socket__fd(xsk_); }
  const Interface& iface() const { return iface_; }
  bool zeroCopy() const { return zero_copy_; }
  // Descriptors the kernel sends per kick in copy mode.
  int txBudget() const { return tx_budget_; }
  // Every busy-poll option asked for was accepted.
  bool busyPoll() const { return busy_poll_; }
  // The rings, for the worker that owns this socket (the fill and completion
  // rings are the UMEM's own for the first socket on it).
  struct xsk_ring_cons* rx() {
    return &rx_;
  }
  struct xsk_ring_prod* tx() {
    return &tx_;
  }
  struct xsk_ring_prod* fill() {
    return fill_;
  }
  struct xsk_ring_cons* comp() {
    return comp_;
  }
  uint32_t in_fill = 0;  // frames handed to the kernel on this fill ring
  uint32_t in_tx = 0;    // frames queued for transmission, not yet completed

  struct Stats {
    uint64_t rx_dropped = 0, rx_invalid = 0, tx_invalid = 0, rx_ring_full = 0, fill_ring_empty = 0,
             tx_ring_empty = 0;
  };
  Stats stats() const;

 private:
  XskSocket() = default;
  struct xsk_socket* xsk_ = nullptr;
  Interface iface_;
  bool zero_copy_ = false;
  int tx_budget_ = 32;
  bool busy_poll_ = false;
  struct xsk_ring_cons rx_ {};
  struct xsk_ring_prod tx_ {};
  struct xsk_ring_prod* fill_ = nullptr;
  struct xsk_ring_cons* comp_ = nullptr;
  struct xsk_ring_prod own_fill_ {};
  struct xsk_ring_cons own_comp_ {};
};

}  // namespace flowlb::agent

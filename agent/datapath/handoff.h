// The hand-off rings between workers (one per ordered pair) and the
// doorbells that wake a worker asleep in poll() when a frame is handed to
// it. Frames go across when a worker receives a packet of a flow another
// worker holds: a NAT reply to another worker's SNAT port, a reply out of
// the kernel path or an ICMP error on the wrong queue (docs/datapath.md,
// "Several queues").
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <vector>

#include "agent/datapath/handoff_ring.h"
#include "common/unique_fd.h"

namespace flowlb::agent {

// Wakes a worker that sleeps in poll() (wakeup mode): it announces that it
// is about to sleep, checks its rings once more, then polls the eventfd.
// A producer rings after pushing. A fence on each side (store, then load)
// makes sure at least one of them sees the other.
class Doorbell {
 public:
  Doorbell() : fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}
  int fd() const { return fd_.get(); }
  void sleeping(bool asleep) {
    asleep_.store(asleep, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  void ring() {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (!asleep_.load(std::memory_order_relaxed) || fd_.get() < 0) return;
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = write(fd_.get(), &one, sizeof one);
  }
  void clear() {
    uint64_t v = 0;
    [[maybe_unused]] const ssize_t n = read(fd_.get(), &v, sizeof v);
  }

 private:
  UniqueFd fd_;
  std::atomic<bool> asleep_{false};
};

// What one worker sees of the mesh.
struct HandoffLinks {
  std::vector<HandoffRing*> out;  // by worker: the ring this one fills for it (nullptr: itself)
  std::vector<HandoffRing*> in;   // the rings the others fill for this one
  std::vector<Doorbell*> bells;   // by worker
  Doorbell* bell = nullptr;       // this worker's own
};

class HandoffMesh {
 public:
  // Slots per ring: 512 frames (4 KiB each) for two workers, fewer for more
  // (at least 64), so a worker's inbound rings hold ~2 MiB (3.75 MiB with
  // 16 workers, where the 64-slot floor binds).
  static uint32_t slotsFor(uint32_t workers) {
    uint32_t s = 512;
    while (s > 64 && s * (workers - 1) > 512) s >>= 1;
    return s;
  }
  explicit HandoffMesh(uint32_t workers) : workers_(workers) {
    for (uint32_t i = 0; i < workers * workers; ++i) {
      const bool self = i / workers == i % workers;
      rings_.push_back(self ? nullptr : std::make_unique<HandoffRing>(slotsFor(workers)));
    }
    for (uint32_t w = 0; w < workers; ++w) bells_.push_back(std::make_unique<Doorbell>());
  }
  HandoffLinks links(uint32_t worker) const {
    HandoffLinks l;
    for (uint32_t w = 0; w < workers_; ++w) {
      l.out.push_back(rings_[worker * workers_ + w].get());
      if (w != worker) l.in.push_back(rings_[w * workers_ + worker].get());
      l.bells.push_back(bells_[w].get());
    }
    l.bell = bells_[worker].get();
    return l;
  }

 private:
  uint32_t workers_;
  std::vector<std::unique_ptr<HandoffRing>> rings_;  // [from * workers + to]
  std::vector<std::unique_ptr<Doorbell>> bells_;
};

}  // namespace flowlb::agent

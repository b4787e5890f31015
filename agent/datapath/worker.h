// A datapath worker: one per receive queue, on its own thread, sharing
// nothing on the packet path. It receives bursts from the AF_XDP sockets of
// its queue on every interface, runs the forwarding decision on them, puts
// the frames to forward on the egress socket's TX ring (same UMEM, no
// copy), and recycles every other frame. A frame of a flow another worker
// holds (a NAT reply on the wrong queue) is copied to that worker's hand-off
// ring, and frames handed to this one are decided here like received ones.
// Busy-poll or sleep-when-idle.
#pragma once

#include <array>
#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "agent/datapath/handoff.h"
#include "agent/datapath/kernel_next_hops.h"
#include "agent/datapath/kernel_path.h"
#include "agent/datapath/xsk.h"
#include "agent/lb/forwarder.h"
#include "agent/lb/snapshot.h"

namespace flowlb::agent {

struct WorkerConfig {
  uint32_t index = 0;  // also the RCU reader index
  uint32_t queue = 0;
  bool busy_poll = false;
  int cpu = -1;  // pin to this CPU when >= 0
  ForwarderConfig forwarder;
  KernelPath::QueueFds kernel;  // the exception path; -1: none (frames for it are dropped)
  HandoffLinks handoffs;        // to and from the other workers (none with one queue)
  // Socket busy polling (--xsk-busy-poll): when the RX rings are empty, a
  // recvfrom() lets the kernel run the device's NAPI in this thread.
  bool busy_poll_sockets = false;
  // When any worker last sent a kernel-path flow's packet into the kernel
  // (coarse milliseconds), shared by the workers: the kernel may route a
  // reply to any worker's queue of the reply device. Null: this worker's own.
  std::atomic<uint32_t>* kernel_flow_sent_ms = nullptr;
};

// What a worker has counted, copied out for metrics. Keys are names so the
// figures survive snapshot changes.
struct WorkerReport {
  struct Traffic {
    uint64_t packets = 0, bytes = 0, new_flows = 0;
    Traffic& operator+=(const Traffic& o) {
      packets += o.packets;
      bytes += o.bytes;
      new_flows += o.new_flows;
      return *this;
    }
  };
  std::map<std::string, Traffic> services;  // by service name
  std::map<std::string, Traffic> backends;  // by backend "address:port"
  ForwarderStats forwarder;
  ConntrackStats conntrack;
  size_t conntrack_entries = 0;
  size_t conntrack_capacity = 0;
  uint64_t tx_ring_full = 0;
  uint64_t unhandled = 0;  // frames for the kernel that could not be handed to it
  // The exception path: frames handed to the kernel by reason, and replies
  // read back from it.
  std::array<uint64_t, static_cast<size_t>(KernelHandoff::kCount)> to_kernel{};
  uint64_t from_kernel = 0;
  size_t frames_free = 0;  // in the pool or on fill rings
  size_t frames_in_tx = 0;
  size_t frames_total = 0;
  uint64_t rx_batches = 0;
  // Frames of flows another worker holds: copied to its ring, refused by a
  // full ring (dropped), and received from the others.
  uint64_t handed_off = 0;
  uint64_t handoff_ring_full = 0;
  uint64_t handoffs_received = 0;
};

class Worker {
 public:
  // `conntrack`: the worker's table (adopted from a file, or anonymous).
  Worker(const WorkerConfig& config, Umem& umem, std::vector<XskSocket*> sockets,
         SnapshotPublisher& snapshots, KernelNextHops& next_hops,
         std::unique_ptr<ConnTrack> conntrack);

  void run(const std::atomic<bool>& stop);
  WorkerReport report() const;

 private:
  void refill(XskSocket& s);
  void completions(XskSocket& s);
  void kick(XskSocket& s);
  void handleBurst(XskSocket& s, const Snapshot& snap, uint32_t now_ms);
  // Reads up to a burst of replies from the kernel path and forwards them.
  void handleKernelReplies(const Snapshot& snap, uint32_t now_ms);
  // Frames the other workers handed to this one.
  void handleHandoffs(const Snapshot& snap, uint32_t now_ms);
  void ringBells();
  bool handoffsWaiting() const;
  // Carries out one action on a frame in `addr`; false: the frame is free
  // again. `origin`/`from_kernel` travel with a frame handed on.
  bool dispatch(const Snapshot& snap, const Action& a, uint64_t addr, size_t len, uint32_t origin,
                bool from_kernel);
  bool toKernel(const Action& a, const uint8_t* frame, size_t len);
  void account(const Snapshot& snap, const Action& a, size_t len);
  void flush(const Snapshot* snap);
  XskSocket* socketFor(uint32_t ifindex);

  WorkerConfig config_;
  Umem& umem_;
  std::vector<XskSocket*> sockets_;
  SnapshotPublisher& snapshots_;
  KernelNextHops& next_hops_;
  Forwarder forwarder_;
  FramePool pool_;
  // Counters since the last flush, indexed for the current snapshot.
  std::vector<WorkerReport::Traffic> service_counts_;
  std::vector<WorkerReport::Traffic> backend_counts_;  // by backend id index
  uint64_t tx_ring_full_ = 0;
  uint64_t unhandled_ = 0;
  std::array<uint64_t, static_cast<size_t>(KernelHandoff::kCount)> to_kernel_{};
  uint64_t from_kernel_ = 0;
  uint64_t rx_batches_ = 0;
  uint64_t handed_off_ = 0;
  uint64_t handoff_ring_full_ = 0;
  uint64_t handoffs_received_ = 0;
  uint64_t bells_due_ = 0;  // bit w: a frame was handed to worker w since the last ring
  bool unflushed_ = false;  // counts since the last flush
  // Reading the exception path's reply device is a system call: after a
  // read that found nothing, the next few passes skip it (backoff, doubled
  // up to kMaxKernelSkip, or kMaxKernelSkipQuiet while no kernel-path flow
  // has sent anything for a second; reset by a reply, or by poll()
  // reporting one).
  uint32_t kernel_skip_ = 0;
  uint32_t kernel_backoff_ = 0;
  uint32_t now_ms_ = 0;  // the coarse clock of this pass of the loop
  std::atomic<uint32_t> own_kernel_flow_sent_ms_{0};

  mutable std::mutex report_mu_;  // guards report_
  WorkerReport report_;
};

}  // namespace flowlb::agent

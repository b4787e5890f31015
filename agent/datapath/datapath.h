// The node's datapath: the XDP program on the configured interfaces, one
// UMEM and worker per receive queue with a socket on every interface, the
// kernel next-hop mirror, and the desired state published to the workers.
// apply() is the one way in for a new desired state, from the standalone
// file or (later) the controller.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "agent/datapath/kernel_next_hops.h"
#include "agent/datapath/worker.h"
#include "agent/datapath/xdp_program.h"
#include "agent/datapath/xsk.h"
#include "agent/lb/snapshot.h"

namespace flowlb::agent {

struct DatapathConfig {
  std::string bpf_object;
  std::vector<std::string> interfaces;
  XdpMode xdp_mode = XdpMode::kAuto;
  BindMode bind_mode = BindMode::kAuto;
  uint32_t queues = 1;
  bool busy_poll = false;
  std::vector<int> cpus;  // worker i pinned to cpus[i] when given
  size_t conntrack_entries = 1 << 20;
  uint32_t umem_frames = 8192;
  uint16_t snat_port_min = 40000;
  uint16_t snat_port_max = 59999;
};

struct DatapathStatus {
  std::vector<XdpProgram::Attached> attached;
  bool dispatcher = false;
  bool zero_copy = false;
  std::vector<uint64_t> xdp_counters;
  std::vector<WorkerReport> workers;
  std::vector<std::pair<std::string, XskSocket::Stats>> sockets;
  uint64_t neighbor_misses = 0;
  uint64_t neighbor_probes = 0;
  uint64_t generation = 0;
};

class Datapath {
 public:
  static Result<std::unique_ptr<Datapath>> start(const DatapathConfig& config);
  ~Datapath();  // stops the workers, then detaches

  // Builds tables off the packet path and swaps them in; on error the
  // previous state stays in force.
  Status apply(const DesiredState& desired, const SnatConfig& snat,
               std::vector<std::string>* warnings = nullptr);
  // Control-thread housekeeping: netlink events, resolution probes, RCU
  // reclamation. Returns after at most `timeout_ms`.
  void poll(int timeout_ms);
  DatapathStatus status() const;

 private:
  Datapath() = default;

  DatapathConfig config_;
  std::unique_ptr<XdpProgram> program_;
  std::unique_ptr<KernelNextHops> next_hops_;
  std::unique_ptr<SnapshotPublisher> snapshots_;
  SnapshotBuilder builder_;
  struct Queue {
    std::unique_ptr<Umem> umem;
    std::vector<std::unique_ptr<XskSocket>> sockets;
    std::unique_ptr<Worker> worker;
    std::thread thread;
  };
  std::vector<Queue> queues_;
  std::atomic<bool> stop_{false};
  // The state in force, rebuilt when a draining backend's deadline passes.
  DesiredState desired_;
  SnatConfig snat_;
};

}  // namespace flowlb::agent

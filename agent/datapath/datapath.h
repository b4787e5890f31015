// The node's datapath: the XDP program on the configured interfaces, one
// UMEM and worker per receive queue with a socket on every interface, the
// kernel exception path, the kernel next-hop mirror, and the desired state
// published to the workers. apply() is the one way in for a new desired
// state, from the standalone file or the controller.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "agent/datapath/kernel_next_hops.h"
#include "agent/datapath/kernel_path.h"
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
  bool xsk_busy_poll = false;  // socket busy-poll options on the AF_XDP sockets
  std::vector<int> cpus;       // worker i pinned to cpus[i] when given
  size_t conntrack_entries = 1 << 20;
  uint32_t umem_frames = 8192;
  uint16_t snat_port_min = FLOWLB_SNAT_PORT_MIN_DEFAULT;
  uint16_t snat_port_max = FLOWLB_SNAT_PORT_MAX_DEFAULT;
  uint32_t max_vip_entries = 65536;  // the XDP program's VIP map
  BuildLimits limits;                // table memory budget, previous-table grace
  bool kernel_path = true;           // the exception path (flowlb-snat/-keep/-pass)
  KernelPathConfig kernel;
  // Flow state that outlives the process (conntrack, backend ids) lives in
  // this directory (tmpfs, e.g. /run/flowlb); empty: in memory only. With
  // it, an exit leaves the rules that hold flows for the next agent.
  std::string state_dir;
  SnatConfig snat;  // the first state's, for what is set up before it
  // Flow sync (docs/flow-sync.md): other nodes' flows to adopt, and each
  // worker's ring for the flows it shares (by queue); null/empty: none.
  const FlowSyncTable* flow_sync = nullptr;
  std::vector<FlowExportRing*> flow_export;
};

// What an apply did not take: services refused alone (the rest applies).
// One service's Maglev table as built (the contract's MaglevFingerprint).
struct TableFingerprint {
  std::string service;
  uint64_t fingerprint = 0;
  uint32_t size = 0;
  uint32_t backends_with_slots = 0;
  bool built = false;  // false: the previous generation's table, reused
};

struct ApplyReport {
  uint64_t generation = 0;
  std::vector<ServiceError> errors;
  std::vector<std::string> warnings;
  std::vector<TableFingerprint> tables;  // every service of the applied snapshot
};

// What the agent took over from its predecessor at start (state_dir).
struct StateAdoption {
  size_t entries = 0;            // conntrack entries adopted
  size_t entries_discarded = 0;  // found inconsistent and freed
  size_t tables_discarded = 0;   // incompatible tables started afresh
  bool registry_discarded = false;
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
  bool kernel_path = false;
  size_t local_vips = 0;
  size_t steering_keys = 0;
  size_t max_steering_keys = 0;
  size_t table_bytes = 0;
  StateAdoption adoption;
};

class Datapath {
 public:
  static Result<std::unique_ptr<Datapath>> start(const DatapathConfig& config);
  ~Datapath();  // stops the workers, then detaches

  // Builds tables off the packet path and swaps them in. A service that
  // cannot be applied is refused alone (in the report); the call fails as a
  // whole only when the node-wide settings are unusable or the kernel
  // refused the VIP map update, and then the kernel maps and the workers'
  // state are exactly as before.
  Result<ApplyReport> apply(const DesiredState& desired, const SnatConfig& snat);
  // Control-thread housekeeping: netlink events, resolution probes, drain
  // deadlines, RCU reclamation. Sleeps until one of those is due, one of
  // `also` (the caller's descriptors: -1 are skipped) is readable, or
  // `timeout_ms` passed.
  void poll(int timeout_ms, const std::vector<int>& also = {});
  // An interface's link state from the kernel's link cache (control thread).
  bool interfaceUp(const std::string& name) const;
  DatapathStatus status() const;

 private:
  Datapath() = default;

  DatapathConfig config_;
  std::unique_ptr<XdpProgram> program_;
  std::unique_ptr<KernelPath> kernel_;
  std::unique_ptr<KernelNextHops> next_hops_;
  std::unique_ptr<SnapshotPublisher> snapshots_;
  std::unique_ptr<HandoffMesh> handoffs_;  // between the workers; outlives them
  SnapshotBuilder builder_;
  size_t steering_keys_ = 0;
  StateAdoption adoption_;
  bool trim_pending_ = false;  // a snapshot was replaced: return its memory once reclaimed
  struct Queue {
    std::unique_ptr<Umem> umem;
    std::vector<std::unique_ptr<XskSocket>> sockets;
    std::unique_ptr<Worker> worker;
    std::thread thread;
  };
  std::vector<Queue> queues_;
  void saveRegistry();
  std::atomic<bool> stop_{false};
  // The state in force, rebuilt when a draining backend's deadline passes.
  DesiredState desired_;
  SnatConfig snat_;
  // What the kernel path drops SNAT ports of while no worker steers them.
  std::vector<IpAddr> snat_addresses_;
  // When a worker last sent a kernel-path flow's packet (WorkerConfig).
  std::atomic<uint32_t> kernel_flow_sent_ms_{0};
};

}  // namespace flowlb::agent

// The kernel's routes, neighbours and interface MACs mirrored in userspace
// for the workers: a netlink (libnl-route) cache manager keeps the caches
// current from kernel events, the control thread rebuilds an immutable
// table when they change and publishes it with RCU. A destination whose
// neighbour is unknown is noted, and the control thread makes the kernel
// resolve it (a probe datagram towards it), so the next packets find it.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "agent/lb/next_hop.h"
#include "agent/lb/next_hop_view.h"
#include "agent/lb/rcu.h"
#include "common/status.h"
#include "common/waker.h"

struct nl_sock;
struct nl_cache_mngr;
struct nl_cache;
struct nl_object;

namespace flowlb::agent {

class KernelNextHops final : public NextHopTable {
 public:
  // `attached`: the interfaces with AF_XDP sockets; a destination routed
  // through any other device (or local to this host) is reported as behind
  // the kernel (NextHop::kernel).
  static Result<std::unique_ptr<KernelNextHops>> create(size_t readers, std::vector<int> attached);
  ~KernelNextHops() override;

  // Worker side: the view is RCU-protected; call quiescent() per batch.
  const NextHop* lookup(const IpAddr& dst) const override;
  void quiescent(size_t reader) { views_.quiescent(reader); }
  void offline(size_t reader) { views_.offline(reader); }

  // Control side: waits up to `timeout_ms` for kernel events, a worker's
  // miss or one of `also` (other descriptors the caller sleeps on; -1 are
  // skipped), then rebuilds the view when something changed and sends
  // resolution probes for misses. Misses wake it at most every kMissQuietMs.
  void poll(int timeout_ms, const std::vector<int>& also = {});
  // Whether the interface is up as the kernel's link cache has it (operstate
  // up, or unknown for devices that report none); false if there is no such
  // interface. Control thread only; as fresh as the last poll().
  bool linkUp(const std::string& name) const;
  // Control side: the destinations whose answers every view precomputes
  // (the backends); the view is rebuilt at the start of the next poll().
  void setDestinations(std::vector<IpAddr> dsts);
  uint64_t misses() const { return misses_.load(std::memory_order_relaxed); }
  uint64_t probes() const { return probes_; }

 private:
  KernelNextHops(size_t readers, std::vector<int> attached)
      : views_(readers), attached_(std::move(attached)) {}
  void rebuild();
  void probeMisses();
  void noteMiss(int ifindex, const IpAddr& addr) const;

  RcuPublisher<NextHopView> views_;
  std::vector<int> attached_;
  struct nl_sock* sock_ = nullptr;
  struct nl_cache_mngr* mngr_ = nullptr;
  struct nl_cache* links_ = nullptr;
  struct nl_cache* routes_ = nullptr;
  struct nl_cache* neighs_ = nullptr;
  std::atomic<bool> dirty_{true};
  std::mutex dest_mu_;  // guards destinations_
  std::vector<IpAddr> destinations_;
  // Misses noted by workers: try_lock (a worker never waits for it) into a
  // queue whose capacity is reserved off the packet path (never allocates).
  static constexpr size_t kMaxMisses = 256;
  static constexpr uint64_t kMissQuietMs = 10;
  // Rung by a worker whose miss found the queue empty; not waited on for
  // kMissQuietMs after each round, so a flood to an unresolvable neighbour
  // costs at most 100 probe rounds a second.
  std::optional<Waker> miss_waker_;
  uint64_t miss_quiet_until_ms_ = 0;
  mutable std::mutex miss_mu_;
  mutable std::vector<std::pair<int, IpAddr>> missed_;
  mutable std::atomic<uint64_t> misses_{0};
  uint64_t probes_ = 0;
  std::unordered_map<IpAddr, uint64_t, IpAddrHash> last_probe_ms_;
  static void onCacheChange(struct nl_cache*, struct ::nl_object*, int, void* self);
};

}  // namespace flowlb::agent

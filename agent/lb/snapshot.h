// The immutable tables a worker forwards with. A Snapshot is built by the
// control thread off the packet path (SnapshotBuilder) and published with
// read-copy-update (SnapshotPublisher); workers only read it.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "agent/lb/maglev.h"
#include "agent/lb/rcu.h"
#include "agent/lb/service.h"

namespace flowlb::agent {

// A backend as workers see it. `id` is stable for the backend's life across
// generations, so conntrack entries keep pointing at it; the top 8 bits are
// a reuse tag, so an id freed and handed out again never matches an old
// entry.
struct BackendRuntime {
  uint32_t id = 0;
  IpAddr addr;
  uint16_t port = 0;
  BackendState state = BackendState::kActive;
  bool present = false;  // in the current desired state
};

struct ServiceRuntime {
  ServiceSpec spec;
  std::shared_ptr<const MaglevTable> table;       // current generation
  std::vector<uint32_t> ids;                      // table index -> backend id
  std::shared_ptr<const MaglevTable> prev_table;  // previous generation (rule 6)
  std::vector<uint32_t> prev_ids;
  ConntrackTimeouts timeouts;  // agent defaults + service overrides
};

inline constexpr uint32_t kBackendIndexBits = 24;
inline constexpr uint32_t kBackendIndexMask = (1u << kBackendIndexBits) - 1;

class Snapshot {
 public:
  uint64_t generation = 0;
  std::vector<ServiceRuntime> services;
  std::vector<BackendRuntime> backends;  // indexed by id & kBackendIndexMask
  SnatConfig snat;

  // Service for (VIP, port, proto), or -1. Open addressing over a
  // power-of-two array built once per snapshot.
  int findService(const IpAddr& vip, uint16_t port, uint8_t proto) const;
  // The backend with this id if it is still in the desired state.
  const BackendRuntime* backend(uint32_t id) const {
    const uint32_t i = id & kBackendIndexMask;
    if (i >= backends.size()) return nullptr;
    const BackendRuntime& b = backends[i];
    return b.present && b.id == id ? &b : nullptr;
  }
  bool isSnatAddress(const IpAddr& a) const {
    return (snat.has_v4 && a == snat.v4) || (snat.has_v6 && a == snat.v6);
  }

  void buildIndex();

 private:
  std::vector<int32_t> index_;  // -1 empty, else service position
};

// Builds snapshots from desired states. Owns the backend id registry and the
// last snapshot, whose tables become the next one's previous tables. Used by
// one control thread.
class SnapshotBuilder {
 public:
  explicit SnapshotBuilder(ConntrackTimeouts defaults = {}) : defaults_(defaults) {}

  // Validates and builds. On error nothing changes and the message names the
  // service and the field. `warnings` collects non-fatal notes.
  // `now_ms` (a monotonic clock) times draining: a DRAINING backend stays a
  // valid target for its flows until its service's drain_timeout_s has
  // passed since the first build that saw it draining, then it is removed
  // (0: no deadline). Callers rebuild at nextDrainDeadlineMs().
  Result<std::shared_ptr<const Snapshot>> build(const DesiredState& desired, const SnatConfig& snat,
                                                std::vector<std::string>* warnings = nullptr,
                                                uint64_t now_ms = 0);
  uint64_t nextDrainDeadlineMs() const { return next_drain_deadline_ms_; }

 private:
  uint32_t idFor(const IpAddr& addr, uint16_t port);
  // The same VIP:port:protocol in the last snapshot built, or nullptr.
  const ServiceRuntime* lastService(const ServiceSpec& s) const;

  ConntrackTimeouts defaults_;
  std::shared_ptr<const Snapshot> last_;
  struct Slot {
    IpAddr addr;
    uint16_t port = 0;
    uint32_t id = 0;
    bool used = false;
    uint8_t tag = 0;
  };
  std::vector<Slot> registry_;
  std::map<std::pair<IpAddr, uint16_t>, uint32_t> index_;  // used slots by backend
  std::vector<uint32_t> free_;
  std::map<std::string, uint64_t> draining_since_ms_;  // "service|backend" -> first seen draining
  std::set<std::string> drained_;                      // past their deadline (reported once)
  uint64_t next_drain_deadline_ms_ = UINT64_MAX;
};

// Workers read snapshots through read-copy-update (see rcu.h).
using SnapshotPublisher = RcuPublisher<Snapshot>;

}  // namespace flowlb::agent

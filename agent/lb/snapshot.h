// The immutable tables a worker forwards with. A Snapshot is built by the
// control thread off the packet path (SnapshotBuilder) and published with
// read-copy-update (SnapshotPublisher); workers only read it.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "agent/lb/maglev.h"
#include "agent/lb/rcu.h"
#include "agent/lb/service.h"
#include "agent/lb/steering.h"

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
  // Tables are shared: between the ports of a Service with the same
  // backends, and with the previous generation when the members did not
  // change.
  std::shared_ptr<const MaglevTable> table;       // current generation
  std::vector<uint32_t> ids;                      // table index -> backend id
  std::shared_ptr<const MaglevTable> prev_table;  // previous generation (rule 6)
  std::vector<uint32_t> prev_ids;
  uint64_t prev_until_ms = 0;  // prev_table is dropped by the first build after this
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
  // Bytes held by the distinct Maglev tables (current and previous).
  size_t tableBytes() const;

  void buildIndex();

 private:
  std::vector<int32_t> index_;  // -1 empty, else service position
};

// What the builder may use, agent-wide.
struct BuildLimits {
  size_t max_steering_keys = SIZE_MAX;   // entries of the XDP program's VIP map
  size_t table_budget_bytes = SIZE_MAX;  // Maglev tables of the current generation
  uint64_t previous_table_grace_ms = 120'000;
};

// Builds snapshots from desired states, one service at a time: a service
// that is invalid, conflicts with another or does not fit is refused alone
// (with the contract's error code) and keeps its previous version when the
// agent had one; the rest applies. Owns the backend id registry and the last
// snapshot, whose tables become the next one's previous tables. Used by one
// control thread.
//
// Building is a transaction: prepare() changes nothing, so a caller that
// must also program the kernel commits only once that succeeded; an
// outcome never committed leaves the builder exactly as it was.
class SnapshotBuilder {
 public:
  explicit SnapshotBuilder(ConntrackTimeouts defaults = {}, BuildLimits limits = {})
      : defaults_(defaults), limits_(limits) {}

  struct Outcome {
    std::shared_ptr<const Snapshot> snapshot;
    std::vector<ServiceError> errors;   // services refused (one entry each)
    std::vector<std::string> warnings;  // applied, but worth a look
    std::vector<std::string> drained;   // "service|backend" past its drain deadline (once)

   private:
    friend class SnapshotBuilder;
    struct Fresh {
      IpAddr addr;
      uint16_t port;
      uint32_t id;
    };
    std::vector<Fresh> fresh_ids;
    size_t free_used = 0;
    std::vector<bool> referenced;
    std::map<std::string, uint64_t> draining_since_ms;
    std::set<std::string> drained_keys;
    uint64_t next_deadline_ms = UINT64_MAX;
  };

  // Validates and builds. Fails as a whole only when the node-wide settings
  // are unusable (the SNAT port range). `now_ms` (a monotonic clock) times
  // draining: a DRAINING backend stays a valid target for its flows until
  // its service's drain_timeout_s has passed since the first build that saw
  // it draining, then it is removed (0: no deadline); and previous tables,
  // dropped after limits.previous_table_grace_ms.
  Result<Outcome> prepare(const DesiredState& desired, const SnatConfig& snat,
                          uint64_t now_ms = 0) const;
  // Adopts a prepared outcome (backend ids, drain clocks, the last snapshot).
  void commit(const Outcome& outcome);
  // prepare() + commit().
  Result<Outcome> build(const DesiredState& desired, const SnatConfig& snat, uint64_t now_ms = 0);

  // The backend id registry, every slot (used or not, with its reuse tag),
  // to be saved beside an adopted conntrack table: a restarted agent that
  // adopts the table must give its backends the ids its entries point at.
  struct RegistrySlot {
    IpAddr addr;
    uint16_t port = 0;
    uint8_t tag = 0;
    bool used = false;
  };
  std::vector<RegistrySlot> registry() const;
  // Before the first build only: takes over a saved registry. Duplicate
  // backends or a registry beyond the id space are refused.
  Status adoptRegistry(const std::vector<RegistrySlot>& slots);

  // When a build must run again (a drain deadline, a previous table's end).
  uint64_t nextDeadlineMs() const { return next_deadline_ms_; }
  const std::shared_ptr<const Snapshot>& last() const { return last_; }
  const BuildLimits& limits() const { return limits_; }

 private:
  class IdAllocator;

  ConntrackTimeouts defaults_;
  BuildLimits limits_;
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
  uint64_t next_deadline_ms_ = UINT64_MAX;
};

// The registry as bytes (a versioned little-endian record per slot) and back.
std::string encodeRegistry(const std::vector<SnapshotBuilder::RegistrySlot>& slots);
Result<std::vector<SnapshotBuilder::RegistrySlot>> decodeRegistry(const std::string& bytes);

// The XDP program's VIP map entries for a snapshot.
std::set<SteerKey> steeringKeys(const Snapshot& snap);

// Checks one service on its own (addresses, ports, families, sizes, what
// this node can do). nullopt: valid. Warnings for legal but odd settings go
// to `warnings`.
std::optional<ServiceError> validateService(const ServiceSpec& s, const SnatConfig& snat,
                                            std::vector<std::string>* warnings = nullptr);

// Workers read snapshots through read-copy-update (see rcu.h).
using SnapshotPublisher = RcuPublisher<Snapshot>;

}  // namespace flowlb::agent

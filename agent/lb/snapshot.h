// The immutable tables a worker forwards with. A Snapshot is built by the
// control thread off the packet path (SnapshotBuilder) and published with
// read-copy-update (SnapshotPublisher); workers only read it.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "agent/lb/maglev.h"
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
  Result<std::shared_ptr<const Snapshot>> build(const DesiredState& desired, const SnatConfig& snat,
                                                std::vector<std::string>* warnings = nullptr);

 private:
  uint32_t idFor(const IpAddr& addr, uint16_t port);

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
  std::vector<uint32_t> free_;
};

// Read-copy-update for one writer and a fixed set of readers (workers),
// quiescent-state based: a reader starts offline; it calls quiescent()
// before its first acquire() (and after every offline()), takes the current
// snapshot at the start of a batch and reports quiescence after it; the writer frees an old
// snapshot only when every reader has reported since it was replaced. Readers never block and never
// touch a reference count.
class SnapshotPublisher {
 public:
  explicit SnapshotPublisher(size_t readers);

  // Reader side (worker `r`).
  const Snapshot* acquire() const { return current_.load(); }
  // Sequentially consistent so that a reader coming back online publishes
  // its epoch before it loads the pointer (no store-load reordering).
  void quiescent(size_t r) { reader_epoch_[r].value.store(epoch_.load()); }
  // A reader going to sleep (idle wait) holds nothing: it never delays frees.
  void offline(size_t r) { reader_epoch_[r].value.store(kOffline); }

  // Writer side.
  void publish(std::shared_ptr<const Snapshot> next);
  // Frees snapshots no reader can still see; returns how many are pending.
  size_t reclaim();

 private:
  static constexpr uint64_t kOffline = UINT64_MAX;
  struct alignas(64) Epoch {
    std::atomic<uint64_t> value{kOffline};
  };
  std::atomic<const Snapshot*> current_{nullptr};
  std::atomic<uint64_t> epoch_{1};
  std::unique_ptr<Epoch[]> reader_epoch_;
  size_t readers_;
  std::mutex writer_mu_;  // guards holder_ and retired_ (writer side only)
  std::shared_ptr<const Snapshot> holder_;
  std::vector<std::pair<uint64_t, std::shared_ptr<const Snapshot>>> retired_;
};

}  // namespace flowlb::agent

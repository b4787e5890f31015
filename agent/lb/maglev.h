// Maglev consistent hashing (Eisenbud et al., NSDI 2016, §3.4) with weights
// given as turns proportional to weight, as Katran's V2 table does.
//
// The table depends only on the set of (backend key, weight) and the seed:
// backends are ordered by key before filling, and the permutation hashes are
// computed with flowlb::hashBytes, which is the same on every platform. Two
// agents given the same backends in any order build bit-identical tables, so
// ECMP may move a flow between LB nodes and it still reaches the same pod
// (rule 3 of docs/architecture.md). fingerprint() lets nodes compare.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace flowlb::agent {

inline constexpr uint32_t kMaxMaglevSize = 1u << 24;

struct MaglevBackend {
  std::string key;      // stable identity, e.g. "10.0.1.7:8080"
  uint32_t weight = 1;  // 0: in the set, but gets no slots (draining)
};

bool isPrime(uint32_t n);

class MaglevTable {
 public:
  // Builds the table; fails on a non-prime or out-of-range size, on
  // duplicate keys, and on more backends than slots. `warning` (optional)
  // receives a note when size < 100 * backends (shares then differ > 1 %).
  static Result<MaglevTable> build(std::vector<MaglevBackend> backends, uint32_t size,
                                   uint64_t seed, std::string* warning = nullptr);

  uint32_t size() const { return static_cast<uint32_t>(slots_.size()); }
  bool empty() const { return backends_.empty() || !has_slots_; }
  // Index into backends() for a flow hash; only valid when !empty(). The
  // hash picks slot floor(hash * M / 2^64) (multiply-shift, no division):
  // part of the cross-node contract, like the table itself.
  uint32_t lookup(uint64_t flow_hash) const { return slots_[slotOf(flow_hash)]; }
  size_t slotOf(uint64_t flow_hash) const {
    __extension__ using Wide = unsigned __int128;
    return static_cast<size_t>((static_cast<Wide>(flow_hash) * slots_.size()) >> 64);
  }
  // Backends in table order (sorted by key).
  const std::vector<MaglevBackend>& backends() const { return backends_; }
  const std::vector<uint32_t>& slots() const { return slots_; }
  // Hash of the sorted (key, weight) list, the seed and every slot.
  uint64_t fingerprint() const { return fingerprint_; }
  uint64_t seed() const { return seed_; }
  // Slots held by each backend, in backends() order.
  std::vector<uint32_t> slotCounts() const;

 private:
  std::vector<MaglevBackend> backends_;
  std::vector<uint32_t> slots_;
  uint64_t fingerprint_ = 0;
  uint64_t seed_ = 0;
  bool has_slots_ = false;
};

}  // namespace flowlb::agent

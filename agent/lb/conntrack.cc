#include "agent/lb/conntrack.h"

#include <cstring>

#include "common/hash.h"

namespace flowlb::agent {

const char* evictReasonName(EvictReason r) {
  switch (r) {
    case EvictReason::kExpired: return "expired";
    case EvictReason::kHalfOpen: return "half_open";
    case EvictReason::kOldest: return "oldest";
    default: return "unknown";
  }
}

ConnTrack::ConnTrack(size_t capacity, uint64_t seed) : seed_(seed) {
  size_t buckets = 1;
  while (buckets * kWays < capacity) buckets <<= 1;
  bucket_count_ = buckets;
  sigs_ = std::make_unique<uint32_t[]>(buckets * kWays);  // zeroed: all free
  entries_ = std::make_unique<FlowEntry[]>(buckets * kWays);
}

uint64_t ConnTrack::hash(const FlowKey& k) const {
  // Five 8-byte words; the key has no padding (see static_assert).
  uint64_t w[5];
  std::memcpy(w, &k, sizeof w);
  uint64_t h = seed_;
  for (uint64_t x : w) h = mix64(h ^ x) + 0x9e3779b97f4a7c15ULL;
  return h;
}

void ConnTrack::prefetch(uint64_t hash) const {
  const size_t b = bucketOf(hash);
  __builtin_prefetch(&sigs_[b * kWays]);
}

const FlowEntry& ConnTrack::owner(const FlowEntry& e) const {
  if (e.key.kind == FlowKind::kNatReply && e.peer != kNoPeer) return entries_[e.peer];
  return e;
}

bool ConnTrack::isDead(const FlowEntry& e, uint32_t now_ms) const {
  const FlowEntry& o = owner(e);
  return now_ms - o.last_seen_ms > o.timeout_ms;
}

FlowEntry* ConnTrack::find(const FlowKey& k, uint64_t hash, uint32_t now_ms) {
  const size_t base = bucketOf(hash) * kWays;
  const uint32_t sig = signature(hash);
  for (uint32_t w = 0; w < kWays; ++w) {
    if (sigs_[base + w] != sig) continue;
    FlowEntry& e = entries_[base + w];
    if (!(e.key == k)) continue;
    if (isDead(e, now_ms)) {
      ++stats_.expired_on_lookup;
      erase(&e);
      return nullptr;
    }
    return &e;
  }
  return nullptr;
}

FlowEntry* ConnTrack::insert(const FlowKey& k, uint64_t hash, uint32_t now_ms, uint32_t protect) {
  const size_t base = bucketOf(hash) * kWays;
  int victim = -1;
  int victim_rank = 3;  // 0 expired, 1 half-open, 2 live
  uint32_t victim_age = 0;
  for (uint32_t w = 0; w < kWays; ++w) {
    if (sigs_[base + w] == 0) {
      victim = static_cast<int>(w);
      victim_rank = -1;
      break;
    }
    if (base + w == protect) continue;
    const FlowEntry& o = owner(entries_[base + w]);
    const uint32_t age = now_ms - o.last_seen_ms;
    const int rank = age > o.timeout_ms ? 0 : o.state == FlowState::kSynSent ? 1 : 2;
    if (rank < victim_rank || (rank == victim_rank && age > victim_age)) {
      victim = static_cast<int>(w);
      victim_rank = rank;
      victim_age = age;
    }
  }
  const uint32_t slot = static_cast<uint32_t>(base) + static_cast<uint32_t>(victim);
  if (victim_rank >= 0) {
    const auto reason = victim_rank == 0   ? EvictReason::kExpired
                        : victim_rank == 1 ? EvictReason::kHalfOpen
                                           : EvictReason::kOldest;
    ++stats_.evictions[static_cast<size_t>(reason)];
    erase(&entries_[slot]);
  }
  FlowEntry& e = entries_[slot];
  e = FlowEntry{};
  e.key = k;
  e.last_seen_ms = now_ms;
  sigs_[slot] = signature(hash);
  ++size_;
  ++stats_.inserts;
  return &e;
}

void ConnTrack::freeSlot(uint32_t index) {
  if (sigs_[index] == 0) return;
  sigs_[index] = 0;
  entries_[index].state = FlowState::kFree;
  entries_[index].peer = kNoPeer;
  --size_;
}

void ConnTrack::erase(FlowEntry* e) {
  const uint32_t index = indexOf(e);
  const uint32_t peer = e->peer;
  freeSlot(index);
  if (peer != kNoPeer && entries_[peer].peer == index) freeSlot(peer);
}

void ConnTrack::link(FlowEntry* a, FlowEntry* b) {
  a->peer = indexOf(b);
  b->peer = indexOf(a);
}

size_t ConnTrack::sweep(uint32_t now_ms, size_t buckets) {
  size_t freed = 0;
  for (size_t i = 0; i < buckets && i < bucket_count_; ++i) {
    const size_t base = sweep_cursor_ * kWays;
    for (uint32_t w = 0; w < kWays; ++w) {
      if (sigs_[base + w] == 0) continue;
      FlowEntry& e = entries_[base + w];
      if (e.key.kind == FlowKind::kNatReply) continue;  // dies with its forward entry
      if (isDead(e, now_ms)) {
        freed += e.peer != kNoPeer ? 2 : 1;
        erase(&e);
      }
    }
    sweep_cursor_ = (sweep_cursor_ + 1) & (bucket_count_ - 1);
  }
  stats_.swept += freed;
  return freed;
}

}  // namespace flowlb::agent

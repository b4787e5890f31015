#include "agent/lb/conntrack.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <stdexcept>

#include "common/hash.h"

namespace flowlb::agent {

const char* evictReasonName(EvictReason r) {
  switch (r) {
    case EvictReason::kExpired: return "expired";
    case EvictReason::kUnanswered: return "unanswered";
    case EvictReason::kOldest: return "oldest";
    default: return "unknown";
  }
}

size_t ConnTrack::bucketsFor(size_t capacity) {
  size_t buckets = 1;
  while (buckets * kWays < capacity) buckets <<= 1;
  return buckets;
}

ConnTrack::ConnTrack(size_t capacity, uint64_t seed)
    : bucket_count_(bucketsFor(capacity)), seed_(seed) {
  // Zeroed memory from mmap (a zero signature is a free slot), on
  // transparent huge pages where the kernel has them: a lookup in a large
  // table then costs cache misses, not TLB misses. Pages are touched only
  // as entries use them.
  const size_t n = bucket_count_ * kWays;
  const size_t sig_bytes = (n * sizeof(uint32_t) + 63) & ~size_t{63};
  map_bytes_ = sig_bytes + n * sizeof(FlowEntry);
  map_ = mmap(nullptr, map_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (map_ == MAP_FAILED) throw std::bad_alloc();
  madvise(map_, map_bytes_, MADV_HUGEPAGE);  // advisory: ignore failure
  sigs_ = static_cast<uint32_t*>(map_);
  entries_ = reinterpret_cast<FlowEntry*>(static_cast<uint8_t*>(map_) + sig_bytes);
}

ConnTrack::~ConnTrack() {
  if (map_ != nullptr) munmap(map_, map_bytes_);
}

void ConnTrack::prefetch(uint64_t hash) const {
  __builtin_prefetch(&sigs_[bucketOf(hash) * kWays]);
  __builtin_prefetch(&sigs_[altBucketOf(hash) * kWays]);
}

void ConnTrack::prefetchEntry(uint64_t hash) const {
  const uint32_t sig = signature(hash);
  for (size_t base : {bucketOf(hash) * kWays, altBucketOf(hash) * kWays}) {
    for (uint32_t w = 0; w < kWays; ++w) {
      if (sigs_[base + w] != sig) continue;
      // A 60-byte entry spans two cache lines 15 times in 16: fetch both,
      // or the key compare waits for the second one alone.
      const char* e = reinterpret_cast<const char*>(&entries_[base + w]);
      __builtin_prefetch(e);
      __builtin_prefetch(e + sizeof(FlowEntry) - 1);
    }
  }
}

const FlowEntry& ConnTrack::owner(const FlowEntry& e) const {
  if (isReplyKind(e.key.kind) && e.peer != kNoPeer) return entries_[e.peer];
  return e;
}

bool ConnTrack::isDead(const FlowEntry& e, uint32_t now_ms) const {
  const FlowEntry& o = owner(e);
  return now_ms - o.last_seen_ms > o.timeout_ms;
}

FlowEntry* ConnTrack::find(const FlowKey& k, uint64_t hash, uint32_t now_ms) {
  const uint32_t sig = signature(hash);
  if (FlowEntry* e = findIn(bucketOf(hash), k, sig, now_ms)) return e;
  const size_t alt = altBucketOf(hash);
  return alt == bucketOf(hash) ? nullptr : findIn(alt, k, sig, now_ms);
}

FlowEntry* ConnTrack::findIn(size_t bucket, const FlowKey& k, uint32_t sig, uint32_t now_ms) {
  const size_t base = bucket * kWays;
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
  // A free way in the less loaded of the two buckets (the power of two
  // choices); when both are full, the least valuable of the 16 candidates.
  const size_t buckets[2] = {bucketOf(hash) * kWays, altBucketOf(hash) * kWays};
  uint32_t slot = UINT32_MAX;
  uint32_t best_free = 0;
  for (size_t base : buckets) {
    uint32_t free_ways = 0, first_free = 0;
    for (uint32_t w = 0; w < kWays; ++w) {
      if (sigs_[base + w] == 0 && free_ways++ == 0) first_free = static_cast<uint32_t>(base + w);
    }
    if (free_ways > best_free) {
      best_free = free_ways;
      slot = first_free;
    }
  }
  int victim_rank = -1;  // 0 expired, 1 never answered, 2 live
  // Candidates are ranked by their own fields first: a linked NAT reply is
  // skipped (it goes with its forward entry, and ranking it would cost a
  // random read of that peer); only if all 16 are such replies are their
  // peers read.
  for (int pass = 0; pass < 2 && slot == UINT32_MAX; ++pass) {
    victim_rank = 3;
    uint32_t victim_age = 0;
    for (size_t base : buckets) {
      for (uint32_t w = 0; w < kWays; ++w) {
        const uint32_t i = static_cast<uint32_t>(base + w);
        if (i == protect) continue;
        const FlowEntry& e = entries_[i];
        const bool linked_reply = isReplyKind(e.key.kind) && e.peer != kNoPeer;
        if (linked_reply && pass == 0) continue;
        const FlowEntry& o = owner(e);
        const uint32_t age = now_ms - o.last_seen_ms;
        const bool answered = (o.flags & kFlowAnswered) != 0 || o.state == FlowState::kAffinity;
        const int rank = age > o.timeout_ms ? 0 : !answered ? 1 : 2;
        if (rank < victim_rank || (rank == victim_rank && age > victim_age)) {
          slot = i;
          victim_rank = rank;
          victim_age = age;
          // A dead entry is as good a victim as the oldest dead one: stop
          // reading candidates (each is a cache line; a full table of
          // expired flows is the common case under a flood of new flows).
          if (rank == 0) break;
        }
      }
      if (victim_rank == 0) break;
    }
  }
  if (victim_rank >= 0) {
    const auto reason = victim_rank == 0   ? EvictReason::kExpired
                        : victim_rank == 1 ? EvictReason::kUnanswered
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
      // A linked NAT reply dies with its forward entry (owner() follows it).
      if (isReplyKind(e.key.kind) && e.peer != kNoPeer) continue;
      if (isDead(e, now_ms)) {
        const size_t before = size_;
        erase(&e);
        freed += before - size_;
      }
    }
    sweep_cursor_ = (sweep_cursor_ + 1) & (bucket_count_ - 1);
  }
  stats_.swept += freed;
  return freed;
}

size_t ConnTrack::sweepPaced(uint32_t now_ms) {
  if (!paced_started_) {
    paced_started_ = true;
    paced_at_ms_ = now_ms;
    return 0;
  }
  const uint32_t since = now_ms - paced_at_ms_;
  const uint64_t elapsed = std::min(since, kSweepPeriodMs);
  const uint64_t buckets = uint64_t{bucket_count_} * elapsed / kSweepPeriodMs;
  if (buckets == 0) return 0;  // too soon: the time is kept for the next call
  // Only the time these buckets are worth is used up; the rest carries over.
  paced_at_ms_ =
      since > kSweepPeriodMs
          ? now_ms
          : paced_at_ms_ + static_cast<uint32_t>(buckets * kSweepPeriodMs / bucket_count_);
  return sweep(now_ms, static_cast<size_t>(buckets));
}

}  // namespace flowlb::agent

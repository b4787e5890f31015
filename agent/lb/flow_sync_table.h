// The NAT flows other LB nodes shared (flow sync, docs/flow-sync.md): what
// this node needs to adopt one of them if its VIP comes here. One writer
// (the agent's control thread, applying relayed batches) and any number of
// readers (the workers, on a conntrack miss) that never lock or wait: each
// slot is a sequence lock over the record's 64 wire bytes, kept as atomic
// words. Each record sits in two slots, found by its forward key (client
// -> VIP:port) and by its reply key (backend -> VIP:SNAT port). Fixed size,
// allocated once; a record that finds both its buckets full is refused and
// counted, never evicting another node's flow.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "agent/lb/conntrack.h"
#include "common/flow_record.h"

namespace flowlb::agent {

// The conntrack keys of a shared flow.
FlowKey forwardKeyOf(const FlowRecord& r);
FlowKey replyKeyOf(const FlowRecord& r);

struct FlowSyncTableStats {
  uint64_t upserts = 0;
  uint64_t deletes = 0;
  uint64_t refused_full = 0;  // both buckets of a key full
  uint64_t expired = 0;
};

class FlowSyncTable {
 public:
  static constexpr uint32_t kWays = 4;

  // Room for about `capacity` records (two slots each), rounded up to a
  // power-of-two number of buckets. `ttl_ms`: a record not refreshed for
  // this long is dropped by expire() (its delete was lost).
  FlowSyncTable(size_t capacity, uint64_t seed, uint32_t ttl_ms);
  FlowSyncTable(const FlowSyncTable&) = delete;
  FlowSyncTable& operator=(const FlowSyncTable&) = delete;

  // Records of UDP flows expire after this instead (default: the TTL).
  void setUdpTtl(uint32_t ttl_ms) { udp_ttl_ms_ = ttl_ms; }

  // Writer only. An upsert replaces the record with the same forward key
  // (and its reply slot); false when it was refused (table full).
  bool apply(const FlowRecord& r, uint32_t now_ms);
  // Drops records older than the TTL; returns how many.
  size_t expire(uint32_t now_ms);
  // Writer only: every record held (e.g. for a dump to a node that joins).
  template <typename F>
  void forEach(F&& f) const {
    for (size_t i = 0; i < bucket_count_ * kWays; ++i) {
      const Slot& s = slots_[i];
      if (s.tag.load(std::memory_order_relaxed) != 1) continue;  // forward slots only
      uint64_t words[kWords];
      for (size_t w = 0; w < kWords; ++w) words[w] = s.words[w].load(std::memory_order_relaxed);
      FlowRecord r;
      if (decode(words, &r)) f(r);
    }
  }

  // Readers (any thread): the record whose forward (or reply) key is `k`.
  bool findForward(const FlowKey& k, FlowRecord* out) const { return find(k, false, out); }
  bool findReply(const FlowKey& k, FlowRecord* out) const { return find(k, true, out); }

  size_t size() const { return size_.load(std::memory_order_relaxed); }  // records
  size_t capacity() const { return bucket_count_ * kWays / 2; }
  FlowSyncTableStats stats() const;

 private:
  static constexpr size_t kWords = kFlowRecordBytes / 8;
  struct Slot {
    std::atomic<uint32_t> seq{0};  // odd while being written
    std::atomic<uint32_t> tag{0};  // 0 free, 1 forward key, 2 reply key
    std::atomic<uint64_t> words[kWords] = {};
  };
  struct Meta {  // writer only
    uint32_t written_ms = 0;
  };

  bool find(const FlowKey& k, bool reply, FlowRecord* out) const;
  size_t bucketOf(const FlowKey& k) const;
  // Writer: the slot holding key `k` (tag), or nullptr.
  Slot* locate(const FlowKey& k, uint32_t tag);
  void write(Slot& s, uint32_t tag, const uint8_t* bytes);
  void clear(Slot& s);
  static bool decode(const uint64_t* words, FlowRecord* out);

  size_t bucket_count_ = 0;
  uint64_t seed_ = 0;
  uint32_t ttl_ms_ = 0;
  uint32_t udp_ttl_ms_ = 0;
  std::unique_ptr<Slot[]> slots_;
  std::unique_ptr<Meta[]> meta_;
  std::atomic<size_t> size_{0};
  std::atomic<uint64_t> upserts_{0}, deletes_{0}, refused_full_{0}, expired_{0};
  size_t expire_cursor_ = 0;
};

}  // namespace flowlb::agent

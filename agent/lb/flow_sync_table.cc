#include "agent/lb/flow_sync_table.h"

#include <algorithm>
#include <cstring>

namespace flowlb::agent {
namespace {

constexpr uint32_t kTagForward = 1;
constexpr uint32_t kTagReply = 2;

}  // namespace

FlowKey forwardKeyOf(const FlowRecord& r) {
  FlowKey k;
  k.src = r.client.bytes;
  k.dst = r.vip.bytes;
  k.sport = r.client_port;
  k.dport = r.vip_port;
  k.proto = r.proto;
  k.kind = FlowKind::kForward;
  return k;
}

FlowKey replyKeyOf(const FlowRecord& r) {
  FlowKey k;
  k.src = r.backend.bytes;
  k.dst = r.vip.bytes;
  k.sport = r.backend_port;
  k.dport = r.nat_port;
  k.proto = r.proto;
  k.kind = FlowKind::kNatReply;
  return k;
}

FlowSyncTable::FlowSyncTable(size_t capacity, uint64_t seed, uint32_t ttl_ms)
    : seed_(seed), ttl_ms_(ttl_ms), udp_ttl_ms_(ttl_ms) {
  size_t buckets = 1;
  while (buckets * kWays < 2 * capacity) buckets <<= 1;
  bucket_count_ = buckets;
  slots_.reset(new Slot[buckets * kWays]);
  meta_.reset(new Meta[buckets * kWays]);
}

size_t FlowSyncTable::bucketOf(const FlowKey& k) const {
  return hashFlowKey(k, seed_) & (bucket_count_ - 1);
}

bool FlowSyncTable::decode(const uint64_t* words, FlowRecord* out) {
  uint8_t bytes[kFlowRecordBytes];
  std::memcpy(bytes, words, sizeof bytes);
  return decodeFlowRecord(bytes, out) == nullptr;
}

bool FlowSyncTable::find(const FlowKey& k, bool reply, FlowRecord* out) const {
  const uint32_t tag = reply ? kTagReply : kTagForward;
  const Slot* bucket = &slots_[bucketOf(k) * kWays];
  for (uint32_t w = 0; w < kWays; ++w) {
    const Slot& s = bucket[w];
    if (s.tag.load(std::memory_order_relaxed) != tag) continue;
    for (int attempt = 0; attempt < 4; ++attempt) {
      const uint32_t before = s.seq.load(std::memory_order_acquire);
      if (before & 1) continue;  // being written: look again
      uint64_t words[kWords];
      for (size_t i = 0; i < kWords; ++i) words[i] = s.words[i].load(std::memory_order_relaxed);
      const uint32_t slot_tag = s.tag.load(std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (s.seq.load(std::memory_order_relaxed) != before) continue;  // torn: again
      FlowRecord r;
      if (slot_tag != tag || !decode(words, &r)) break;
      if ((reply ? replyKeyOf(r) : forwardKeyOf(r)) == k) {
        *out = r;
        return true;
      }
      break;
    }
  }
  return false;
}

FlowSyncTable::Slot* FlowSyncTable::locate(const FlowKey& k, uint32_t tag) {
  Slot* bucket = &slots_[bucketOf(k) * kWays];
  for (uint32_t w = 0; w < kWays; ++w) {
    Slot& s = bucket[w];
    if (s.tag.load(std::memory_order_relaxed) != tag) continue;
    uint64_t words[kWords];
    for (size_t i = 0; i < kWords; ++i) words[i] = s.words[i].load(std::memory_order_relaxed);
    FlowRecord r;
    if (decode(words, &r) && (tag == kTagReply ? replyKeyOf(r) : forwardKeyOf(r)) == k) return &s;
  }
  return nullptr;
}

void FlowSyncTable::write(Slot& s, uint32_t tag, const uint8_t* bytes) {
  uint64_t words[kWords];
  std::memcpy(words, bytes, sizeof words);
  const uint32_t seq = s.seq.load(std::memory_order_relaxed);
  s.seq.store(seq + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  for (size_t i = 0; i < kWords; ++i) s.words[i].store(words[i], std::memory_order_relaxed);
  s.tag.store(tag, std::memory_order_relaxed);
  s.seq.store(seq + 2, std::memory_order_release);
}

void FlowSyncTable::clear(Slot& s) {
  const uint32_t seq = s.seq.load(std::memory_order_relaxed);
  s.seq.store(seq + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  s.tag.store(0, std::memory_order_relaxed);
  s.seq.store(seq + 2, std::memory_order_release);
}

bool FlowSyncTable::apply(const FlowRecord& r, uint32_t now_ms) {
  const FlowKey fk = forwardKeyOf(r);
  Slot* fwd = locate(fk, kTagForward);
  // The record this one replaces (its reply key may differ: a new SNAT port).
  if (fwd != nullptr) {
    uint64_t words[kWords];
    for (size_t i = 0; i < kWords; ++i) words[i] = fwd->words[i].load(std::memory_order_relaxed);
    FlowRecord old;
    if (decode(words, &old)) {
      if (Slot* rep = locate(replyKeyOf(old), kTagReply)) clear(*rep);
    }
    clear(*fwd);
    size_.fetch_sub(1, std::memory_order_relaxed);
  }
  if (r.op == FlowRecordOp::kDelete) {
    deletes_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  const FlowKey rk = replyKeyOf(r);
  // Another flow held by this reply key (the same SNAT port reused for a
  // new flow before the old one's delete arrived): the newer wins.
  if (Slot* stale = locate(rk, kTagReply)) {
    uint64_t words[kWords];
    for (size_t i = 0; i < kWords; ++i) words[i] = stale->words[i].load(std::memory_order_relaxed);
    FlowRecord old;
    if (decode(words, &old)) {
      if (Slot* f = locate(forwardKeyOf(old), kTagForward)) {
        clear(*f);
        size_.fetch_sub(1, std::memory_order_relaxed);
      }
    }
    clear(*stale);
  }
  auto freeIn = [&](const FlowKey& k) -> Slot* {
    const size_t b = bucketOf(k) * kWays;
    for (uint32_t w = 0; w < kWays; ++w) {
      if (slots_[b + w].tag.load(std::memory_order_relaxed) == 0) return &slots_[b + w];
    }
    return nullptr;
  };
  Slot* f = freeIn(fk);
  Slot* p = f != nullptr ? freeIn(rk) : nullptr;
  if (f == nullptr || p == nullptr || f == p) {
    if (f != nullptr && f == p) {
      // Both keys in one bucket with one free slot left: look for a second.
      const size_t b = bucketOf(rk) * kWays;
      p = nullptr;
      for (uint32_t w = 0; w < kWays && p == nullptr; ++w) {
        Slot& s = slots_[b + w];
        if (&s != f && s.tag.load(std::memory_order_relaxed) == 0) p = &s;
      }
    }
    if (f == nullptr || p == nullptr) {
      refused_full_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
  }
  uint8_t bytes[kFlowRecordBytes];
  encodeFlowRecord(r, bytes);
  write(*f, kTagForward, bytes);
  write(*p, kTagReply, bytes);
  meta_[static_cast<size_t>(f - slots_.get())].written_ms = now_ms;
  meta_[static_cast<size_t>(p - slots_.get())].written_ms = now_ms;
  size_.fetch_add(1, std::memory_order_relaxed);
  upserts_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

size_t FlowSyncTable::expire(uint32_t now_ms) {
  // The whole table in slices: a call covers 1/64 of it.
  const size_t total = bucket_count_ * kWays;
  const size_t slice = total / 64 + 1;
  size_t freed = 0;
  for (size_t n = 0; n < slice; ++n) {
    const size_t i = expire_cursor_;
    expire_cursor_ = (expire_cursor_ + 1) % total;
    Slot& s = slots_[i];
    if (s.tag.load(std::memory_order_relaxed) != kTagForward) continue;
    if (now_ms - meta_[i].written_ms < std::min(ttl_ms_, udp_ttl_ms_)) continue;
    uint64_t words[kWords];
    for (size_t w = 0; w < kWords; ++w) words[w] = s.words[w].load(std::memory_order_relaxed);
    FlowRecord r;
    const bool ok = decode(words, &r);
    if (ok && now_ms - meta_[i].written_ms < (r.proto == 17 ? udp_ttl_ms_ : ttl_ms_)) continue;
    if (ok) {
      if (Slot* rep = locate(replyKeyOf(r), kTagReply)) clear(*rep);
    }
    clear(s);
    size_.fetch_sub(1, std::memory_order_relaxed);
    ++freed;
  }
  expired_.fetch_add(freed, std::memory_order_relaxed);
  return freed;
}

FlowSyncTableStats FlowSyncTable::stats() const {
  FlowSyncTableStats s;
  s.upserts = upserts_.load(std::memory_order_relaxed);
  s.deletes = deletes_.load(std::memory_order_relaxed);
  s.refused_full = refused_full_.load(std::memory_order_relaxed);
  s.expired = expired_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace flowlb::agent

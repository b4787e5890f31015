// Connection tracking for one worker: a fixed-size table of 8-way buckets
// with two candidate buckets per key (two-choice hashing keeps buckets from
// overflowing long before the table is full), allocated once at start. It never grows and never
// allocates on the packet path; when a bucket is full the least valuable
// entry goes first (expired, then flows that never saw an answer, then the
// oldest), so a flood of new flows of any protocol (SYNs, random UDP, stray
// ACKs) evicts its own unanswered entries before any flow that is in use.
//
// Memory: a 40-byte key and a 20-byte value per entry plus a 4-byte
// signature kept apart so a lookup scans one bucket's signatures (32 bytes)
// and touches one entry: 64 bytes per entry in all.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "common/hash.h"
#include "common/ip_addr.h"
#include "common/status.h"

namespace flowlb::agent {

enum class FlowKind : uint8_t {
  kForward = 1,   // client -> VIP:port, value: backend (+ SNAT port)
  kNatReply = 2,  // backend -> node SNAT address:port; peer: its kForward entry
  kAffinity = 3,  // client address -> VIP:port (sessionAffinity: ClientIP)
  // backend:port -> client:port of a flow sent through the kernel (the
  // exception path): its reply as it comes back out of the kernel; peer: its
  // kForward entry.
  kKernelReply = 4,
};

// FlowEntry::flags.
inline constexpr uint8_t kFlowAnswered = 0x1;     // the other side has answered
inline constexpr uint8_t kFlowKernelPath = 0x2;   // forward flow sent through the kernel
inline constexpr uint8_t kFlowKeepSource = 0x4;   // ... with the client's address kept
inline constexpr uint8_t kFlowProxyV2 = 0x8;      // a PROXY protocol header goes to the backend
inline constexpr uint8_t kFlowFinClient = 0x10;   // TCP: the client sent a FIN (or either a RST)
inline constexpr uint8_t kFlowFinBackend = 0x20;  // TCP: the backend sent a FIN (or either a RST)
inline constexpr uint8_t kFlowVipSnat = 0x40;     // NAT flow source-NATed to its VIP (flow sync)
// Closed both ways: neither side sends any more (a half-closed flow still
// carries data one way).
inline bool closedBothWays(uint8_t flags) {
  return (flags & (kFlowFinClient | kFlowFinBackend)) == (kFlowFinClient | kFlowFinBackend);
}

// A reply entry lives and dies with its forward peer.
inline bool isReplyKind(FlowKind k) {
  return k == FlowKind::kNatReply || k == FlowKind::kKernelReply;
}

enum class FlowState : uint8_t {
  kFree = 0,
  kSynSent,      // TCP, only the opening SYN seen: half-open
  kEstablished,  // TCP, past the handshake (or picked up mid-flow)
  kClosing,      // TCP, FIN or RST seen
  kUdp,
  kAffinity,
};

// Ports in host order; unused bytes are zero so keys compare and hash as
// plain memory.
struct FlowKey {
  std::array<uint8_t, 16> src{};
  std::array<uint8_t, 16> dst{};
  uint16_t sport = 0;
  uint16_t dport = 0;
  uint8_t proto = 0;
  FlowKind kind = FlowKind::kForward;
  uint16_t zero = 0;
};
static_assert(sizeof(FlowKey) == 40);

inline bool operator==(const FlowKey& a, const FlowKey& b) {
  uint64_t x[5], y[5];
  std::memcpy(x, &a, sizeof x);
  std::memcpy(y, &b, sizeof y);
  return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3]) | (x[4] ^ y[4])) == 0;
}

// Hash of a flow key: independent multiplies (they run in parallel) and one
// final mix. Used with a local seed for the conntrack table and with the
// cluster-wide seed for Maglev (so it must be the same on every node: the
// key's bytes are read as little-endian words, as on all supported hosts).
inline uint64_t hashFlowKey(const FlowKey& k, uint64_t seed) {
  uint64_t w[5];
  std::memcpy(w, &k, sizeof w);
  const uint64_t a =
      (w[0] ^ seed) * 0x9e3779b97f4a7c15ULL + (w[1] ^ (seed >> 7)) * 0xc2b2ae3d27d4eb4fULL;
  const uint64_t b = w[2] * 0x165667b19e3779f9ULL + w[3] * 0xd6e8feb86659fd93ULL +
                     (w[4] ^ seed) * 0xff51afd7ed558ccdULL;
  return mix64(a ^ ((b << 29) | (b >> 35)));
}

inline constexpr uint32_t kNoPeer = UINT32_MAX;

struct FlowEntry {
  FlowKey key;
  // A reply entry lives as long as its forward peer and has no age of its
  // own: its last_seen_ms holds the flow's PROXY protocol sequence origin
  // (the client's ISN + 1) instead; see proxySeq().
  uint32_t last_seen_ms = 0;
  uint32_t timeout_ms = 0;  // idle time after which the entry is dead
  uint32_t backend = 0;     // stable backend id (see BackendRegistry)
  uint32_t peer = kNoPeer;  // index of the linked entry (forward <-> NAT reply)
  uint16_t nat_port = 0;    // SNAT source port of a NAT flow, host order
  FlowState state = FlowState::kFree;
  uint8_t flags = 0;  // kFlow* bits
};
static_assert(sizeof(FlowEntry) == 60);

// The PROXY protocol sequence origin kept in a flow's reply entry.
inline uint32_t& proxySeq(FlowEntry& reply) {
  return reply.last_seen_ms;
}

// Idle timeouts by state, in milliseconds. Defaults follow Cilium's
// (SYN 60 s, established 6 h, closing 10 s, non-TCP 60 s).
struct ConntrackTimeouts {
  uint32_t syn_ms = 60'000;
  uint32_t established_ms = 21'600'000;
  uint32_t closing_ms = 10'000;
  uint32_t udp_ms = 60'000;
};
// Longest timeout accepted: the 32-bit millisecond clock must not wrap
// within one idle period.
inline constexpr uint32_t kMaxTimeoutMs = 24u * 24 * 3600 * 1000;

// kUnanswered: a flow that never saw an answer (half-open TCP, UDP without a
// reply, a mid-flow pickup nobody answered yet).
enum class EvictReason : uint8_t { kExpired, kUnanswered, kOldest, kCount };
const char* evictReasonName(EvictReason r);

struct ConntrackStats {
  uint64_t inserts = 0;
  std::array<uint64_t, static_cast<size_t>(EvictReason::kCount)> evictions{};
  uint64_t expired_on_lookup = 0;
  uint64_t swept = 0;
};

// What a conntrack file must match to be adopted by a restarted agent: the
// worker it belongs to (its share of the SNAT ports) and the boot (its
// timestamps are CLOCK_MONOTONIC milliseconds).
struct ConntrackOwner {
  uint32_t worker = 0;
  uint32_t workers = 1;
  uint16_t snat_port_min = 0;
  uint16_t snat_port_max = 0;
  std::string boot_id;  // /proc/sys/kernel/random/boot_id
};

// What opening a conntrack file found.
struct ConntrackAdoption {
  bool adopted = false;  // a compatible table was taken over
  size_t entries = 0;    // live entries taken over
  size_t discarded = 0;  // entries found inconsistent and freed
  std::string why_not;   // when not adopted (empty for a new file)
};

class ConnTrack {
 public:
  static constexpr uint32_t kWays = 8;

  // `capacity` entries (rounded up to a power-of-two number of buckets), in
  // anonymous memory: the table dies with the process.
  ConnTrack(size_t capacity, uint64_t seed);
  // The same in a file that outlives the process (on tmpfs, e.g. under
  // /run/flowlb), so a restarted agent keeps its flows and SNAT ports
  // (issue 15). A file left by an agent of this layout, boot, worker and
  // SNAT range is adopted (its seed with it) after every entry is checked;
  // anything else is discarded with the reason and the table starts empty.
  // Fails only when the file cannot be created or mapped.
  static Result<std::unique_ptr<ConnTrack>> openFile(const std::string& path, size_t capacity,
                                                     uint64_t seed, const ConntrackOwner& owner,
                                                     ConntrackAdoption* adoption);
  ~ConnTrack();
  ConnTrack(const ConnTrack&) = delete;
  ConnTrack& operator=(const ConnTrack&) = delete;

  uint64_t hash(const FlowKey& k) const { return hashFlowKey(k, seed_); }
  // Batched lookups: prefetch() the buckets' signatures, later
  // prefetchEntry() the entries whose signature matches, then find().
  void prefetch(uint64_t hash) const;
  void prefetchEntry(uint64_t hash) const;

  // The live entry for `k`, or nullptr. An entry found dead is freed.
  FlowEntry* find(const FlowKey& k, uint64_t hash, uint32_t now_ms);
  // A new entry for `k` (which must not be present), its value zeroed and
  // last_seen = now. Evicts the least valuable entry of the bucket if needed,
  // never the entry at `protect` (an index, or kNoPeer).
  FlowEntry* insert(const FlowKey& k, uint64_t hash, uint32_t now_ms, uint32_t protect = kNoPeer);
  // Frees the entry and its linked peer.
  void erase(FlowEntry* e);
  // The same, counted as an eviction of a flow that never saw an answer
  // (its SNAT port was needed by a new flow).
  void evictUnanswered(FlowEntry* e) {
    ++stats_.evictions[static_cast<size_t>(EvictReason::kUnanswered)];
    erase(e);
  }
  // Links two entries so that they live and die together.
  void link(FlowEntry* a, FlowEntry* b);

  uint32_t indexOf(const FlowEntry* e) const { return static_cast<uint32_t>(e - entries_); }
  FlowEntry* at(uint32_t index) { return &entries_[index]; }

  // Frees dead entries in up to `buckets` buckets, continuing where the
  // previous call stopped; returns how many it freed. Call it off the
  // per-packet path (e.g. once per idle poll).
  size_t sweep(uint32_t now_ms, size_t buckets);
  // The same, paced by the clock: sweeps as many buckets as the time since
  // the previous call is worth, so the whole table is covered every
  // kSweepPeriodMs however busy the caller is (a worker that never idles
  // still frees dead flows, and the entries gauge stays true).
  static constexpr uint32_t kSweepPeriodMs = 10'000;
  size_t sweepPaced(uint32_t now_ms);

  bool isDead(const FlowEntry& e, uint32_t now_ms) const;
  // The entry whose age and state decide when a slot dies: a NAT reply
  // lives as long as its forward peer.
  const FlowEntry& owner(const FlowEntry& e) const;
  size_t size() const { return size_; }
  size_t capacity() const { return bucket_count_ * kWays; }
  size_t bytesPerEntry() const { return sizeof(FlowEntry) + sizeof(uint32_t); }
  const ConntrackStats& stats() const { return stats_; }

 private:
  uint32_t signature(uint64_t hash) const { return static_cast<uint32_t>(hash >> 32) | 1u; }
  size_t bucketOf(uint64_t hash) const { return hash & (bucket_count_ - 1); }
  size_t altBucketOf(uint64_t hash) const {
    return (bucketOf(hash) ^ ((hash >> 20) | 1)) & (bucket_count_ - 1);
  }
  FlowEntry* findIn(size_t bucket, const FlowKey& k, uint32_t sig, uint32_t now_ms);
  void freeSlot(uint32_t index);
  ConnTrack() = default;
  static size_t bucketsFor(size_t capacity);
  // Checks every occupied slot of an adopted table; frees what is not
  // consistent (a torn write, a corrupt file). Returns how many it freed.
  size_t sanitize();

  size_t bucket_count_ = 0;
  uint64_t seed_ = 0;
  // One mapping (anonymous or of the file) holds both arrays.
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  uint32_t* sigs_ = nullptr;  // 0 = free
  FlowEntry* entries_ = nullptr;
  size_t size_ = 0;
  size_t sweep_cursor_ = 0;
  uint32_t paced_at_ms_ = 0;
  bool paced_started_ = false;
  ConntrackStats stats_;
};

}  // namespace flowlb::agent

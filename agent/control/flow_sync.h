// The agent's side of flow sync (docs/flow-sync.md), between its workers
// and the controller link: it gathers the flows the workers share (their
// export rings) into batches for the controller, keeps the ones still live
// for a dump when another node joins, and applies the batches the
// controller relays from other nodes to the table the workers adopt from.
// Only with --nat-source=vip and a controller.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "agent/lb/flow_export_ring.h"
#include "agent/lb/flow_sync_table.h"
#include "common/status.h"

namespace flowlb::agent {

struct FlowSyncOptions {
  size_t table_entries = 262144;  // other nodes' flows this node can hold
  size_t own_entries = 262144;    // own live flows kept for dumps
  uint32_t ring_records = 8192;   // per worker
  uint32_t tcp_ttl_ms = 21'600'000;
  uint32_t udp_ttl_ms = 300'000;
  uint64_t seed = 0x5be0cd19137e2179ULL;
};

struct FlowSyncCounters {
  uint64_t records_sent = 0;
  uint64_t batches_sent = 0;
  uint64_t bytes_sent = 0;
  uint64_t records_received = 0;
  uint64_t batches_refused = 0;  // malformed relayed batches
  uint64_t own_refused = 0;      // own flows not kept for dumps (own_entries reached)
  uint64_t dumps_sent = 0;
  FlowSyncTableStats table;
  size_t table_size = 0;
  size_t table_capacity = 0;
  size_t own_size = 0;
};

class FlowSync {
 public:
  static constexpr size_t kBatchRecords = 1024;  // the contract's limit

  FlowSync(const FlowSyncOptions& options, uint32_t workers);

  const FlowSyncTable& table() const { return table_; }
  FlowExportRing* ring(uint32_t worker) { return rings_.at(worker).get(); }

  // Control thread: the records the workers shared since the last call, in
  // batches of at most kBatchRecords (each the bytes of FlowSyncBatch.records).
  std::vector<std::string> collect(uint32_t now_ms);
  // Control thread: every own live flow, in batches (a node joined).
  std::vector<std::string> dump(uint32_t now_ms);

  // Any thread (the link's): a batch relayed from `origin`. Applied whole or,
  // malformed, not at all (the error says why).
  Status applyRelayed(const std::string& records, const std::string& origin, uint32_t now_ms);
  // Drops what outlived its TTL (a delete that never came), in slices.
  void expire(uint32_t now_ms);

  // Sent-side counters are the control thread's; call counters() from it.
  void noteSent(size_t records, size_t bytes, bool dump);
  FlowSyncCounters counters() const;

 private:
  struct KeyHash {
    size_t operator()(const FlowKey& k) const { return hashFlowKey(k, 0x9e3779b97f4a7c15ULL); }
  };
  struct Own {
    FlowRecord record;
    uint32_t written_ms = 0;
  };

  FlowSyncOptions opt_;
  FlowSyncTable table_;
  std::mutex writer_mu_;  // the table has one writer at a time
  std::vector<std::unique_ptr<FlowExportRing>> rings_;
  std::unordered_map<FlowKey, Own, KeyHash> own_;  // control thread
  FlowSyncCounters sent_;                          // control thread
  std::atomic<uint64_t> received_{0}, refused_{0};
};

}  // namespace flowlb::agent

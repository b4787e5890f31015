// Flow sync at the controller (docs/flow-sync.md, "The controller's
// relay"): an agent's FlowSyncBatch checked (format, size, rate, each
// record's identity) and turned into what each other agent gets; what is
// refused is counted and logged, at most one line per node per 10 s so a
// hostile agent cannot flood the log. The Sync server (sync_flows.cc)
// chooses the destinations and carries the result; the decision on each
// record is relayFlowRecords() (flow_sync_relay.h).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "controller/distribution/distributor.h"
#include "controller/grpc/flow_sync_queue.h"
#include "controller/grpc/flow_sync_relay.h"

namespace flowlb::v1 {
class FlowSyncBatch;
}

namespace flowlb::controller {

struct FlowSyncOptions {
  // Records one agent may send a second; more are dropped by the batch.
  // Burst: one second's worth, and at least one full batch.
  double max_records_per_second = 50000;
  // Batches waiting for one agent's stream; over either bound the oldest go.
  size_t queue_batches = 256;
  size_t queue_bytes = 8u << 20;
  // Bytes waiting in all agents' queues together: over it, a queue that
  // grows drops its own oldest (each still keeps its newest batch).
  size_t total_queue_bytes = 64u << 20;
  // A node that joined this recently gets the dumps the others send it.
  std::chrono::seconds dump_window{60};
};

// Records by what became of them, and the bytes of flow sync messages.
struct FlowSyncCounters {
  // Queued for a destination's stream: one record relayed to two agents
  // counts 2 (queue_full: of those, dropped from a full queue unsent).
  uint64_t relayed = 0;
  uint64_t malformed = 0, rate_limited = 0, refused_vip = 0, refused_backend = 0;
  uint64_t not_capable = 0, queue_full = 0;
  uint64_t bytes_in = 0, bytes_out = 0;
};

class FlowSyncHub {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr size_t kMaxBatchRecords = 1024;

  explicit FlowSyncHub(FlowSyncOptions options)
      : opt_(options), total_(options.total_queue_bytes) {}
  const FlowSyncOptions& options() const { return opt_; }
  // A new agent's queue, counted into the total.
  FlowSyncQueue queue() { return FlowSyncQueue(opt_.queue_batches, opt_.queue_bytes, &total_); }
  // A new agent's rate limit.
  TokenBucket bucket(Clock::time_point now) const;

  // What `batch` from `sender` gives each of `destinations` (in their order;
  // an empty string: nothing), checked against `view`. A batch refused
  // whole (format, size, a malformed record, over the rate) gives nothing.
  std::vector<std::string> relay(const std::string& sender, const flowlb::v1::FlowSyncBatch& batch,
                                 TokenBucket& bucket, const std::vector<std::string>& destinations,
                                 const std::shared_ptr<const View>& view, Clock::time_point now);
  // A batch from an agent that did not list CAPABILITY_FLOW_SYNC (or
  // before its Hello was accepted).
  void notCapable(const std::string& sender, const flowlb::v1::FlowSyncBatch& batch,
                  Clock::time_point now);
  void received(uint64_t bytes) { bytes_in_ += bytes; }
  void sent(uint64_t bytes) { bytes_out_ += bytes; }
  void relayed(uint64_t records) { relayed_ += records; }
  void queueFull(uint64_t records) { queue_full_ += records; }
  FlowSyncCounters counters() const;

 private:
  std::shared_ptr<const FlowServiceIndex> indexOf(const std::shared_ptr<const View>& view);
  void refused(const std::string& node, const char* reason, const std::string& msg,
               uint64_t records, Clock::time_point now);

  const FlowSyncOptions opt_;
  FlowSyncTotal total_;
  std::atomic<uint64_t> relayed_{0}, malformed_{0}, rate_limited_{0}, refused_vip_{0},
      refused_backend_{0}, not_capable_{0}, queue_full_{0}, bytes_in_{0}, bytes_out_{0};
  std::mutex mu_;                                  // the two below
  std::shared_ptr<const FlowServiceIndex> index_;  // of the last view a batch was checked in
  struct LogState {
    Clock::time_point at;
    uint64_t suppressed = 0;
  };
  std::map<std::string, LogState> logged_;  // per node; bounded
};

}  // namespace flowlb::controller

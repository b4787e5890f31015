#include "controller/grpc/flow_sync_hub.h"

#include <spdlog/spdlog.h>

#include "common/log_safe.h"
#include "flowlb/v1/sync.pb.h"

namespace flowlb::controller {
namespace {

constexpr auto kLogEvery = std::chrono::seconds(10);
constexpr size_t kMaxLogged = 1024;

// The records a batch claims to carry (a partial one counts).
uint64_t claimed(const flowlb::v1::FlowSyncBatch& b) {
  return (b.records().size() + kFlowRecordBytes - 1) / kFlowRecordBytes;
}

}  // namespace

TokenBucket FlowSyncHub::bucket(Clock::time_point now) const {
  const double rate = opt_.max_records_per_second;
  return TokenBucket(rate, std::max(rate, static_cast<double>(kMaxBatchRecords)), now);
}

std::shared_ptr<const FlowServiceIndex> FlowSyncHub::indexOf(
    const std::shared_ptr<const View>& view) {
  std::lock_guard<std::mutex> lock(mu_);
  // Built once per view that carries flow sync (an endpoint change makes a
  // new view; a lookup per record beats a scan of every service).
  if (!index_ || index_->view() != view) index_ = std::make_shared<FlowServiceIndex>(view);
  return index_;
}

std::vector<std::string> FlowSyncHub::relay(const std::string& sender,
                                            const flowlb::v1::FlowSyncBatch& batch,
                                            TokenBucket& bucket,
                                            const std::vector<std::string>& destinations,
                                            const std::shared_ptr<const View>& view,
                                            Clock::time_point now) {
  const uint64_t n = claimed(batch);
  if (batch.format() != kFlowRecordFormat) {
    malformed_ += n;
    refused(sender, "malformed",
            "format " + std::to_string(batch.format()) + " (this controller relays format " +
                std::to_string(kFlowRecordFormat) + ")",
            n, now);
    return {};
  }
  // Decoding costs what receiving the bytes did; the rate bounds what
  // costs more: the copies to every other agent.
  Result<std::vector<FlowRecord>> records = decodeFlowRecords(batch.records(), kMaxBatchRecords);
  if (!records) {
    malformed_ += n;
    refused(sender, "malformed", records.error(), n, now);
    return {};
  }
  if (n == 0) return {};
  if (!bucket.take(static_cast<double>(n), now)) {
    rate_limited_ += n;
    refused(sender, "rate_limited", fmt::format("over {:g} records/s", opt_.max_records_per_second),
            n, now);
    return {};
  }
  const std::shared_ptr<const FlowServiceIndex> index = indexOf(view);
  FlowRelay r = relayFlowRecords(*records, batch.records(), *index, sender, destinations);
  refused_vip_ += r.refused_vip;
  refused_backend_ += r.refused_backend;
  if (r.first_reason) {
    refused(sender, r.first_reason,
            r.first_refusal + " (refused_vip " + std::to_string(r.refused_vip) +
                ", refused_backend " + std::to_string(r.refused_backend) + ")",
            r.refused_vip + r.refused_backend, now);
  }
  return std::move(r.records);
}

void FlowSyncHub::notCapable(const std::string& sender, const flowlb::v1::FlowSyncBatch& batch,
                             Clock::time_point now) {
  const uint64_t n = claimed(batch);
  not_capable_ += n;
  refused(sender, "not_capable", "the agent did not list CAPABILITY_FLOW_SYNC in its Hello", n,
          now);
}

void FlowSyncHub::refused(const std::string& node, const char* reason, const std::string& msg,
                          uint64_t records, Clock::time_point now) {
  uint64_t suppressed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (logged_.size() > kMaxLogged && !logged_.count(node)) logged_.clear();
    auto [it, fresh] = logged_.try_emplace(node);
    if (!fresh && now - it->second.at < kLogEvery) {
      ++it->second.suppressed;
      return;
    }
    it->second.at = now;
    suppressed = it->second.suppressed;
    it->second.suppressed = 0;
  }
  // suppressed: refusals from this node since its last line, not logged.
  spdlog::warn("event=flow_sync_refused node={} reason={} records={} msg=\"{}\" suppressed={}",
               logSafe(node, 64), reason, records, logSafe(msg, 256), suppressed);
}

FlowSyncCounters FlowSyncHub::counters() const {
  FlowSyncCounters c;
  c.relayed = relayed_;
  c.malformed = malformed_;
  c.rate_limited = rate_limited_;
  c.refused_vip = refused_vip_;
  c.refused_backend = refused_backend_;
  c.not_capable = not_capable_;
  c.queue_full = queue_full_;
  c.bytes_in = bytes_in_;
  c.bytes_out = bytes_out_;
  return c;
}

}  // namespace flowlb::controller

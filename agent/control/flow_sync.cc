#include "agent/control/flow_sync.h"

namespace flowlb::agent {

FlowSync::FlowSync(const FlowSyncOptions& options, uint32_t workers)
    : opt_(options), table_(options.table_entries, options.seed, options.tcp_ttl_ms) {
  table_.setUdpTtl(options.udp_ttl_ms);
  for (uint32_t w = 0; w < std::max<uint32_t>(workers, 1); ++w) {
    rings_.push_back(std::make_unique<FlowExportRing>(options.ring_records));
  }
}

std::vector<std::string> FlowSync::collect(uint32_t now_ms) {
  std::vector<std::string> batches;
  FlowRecord r;
  for (auto& ring : rings_) {
    while (ring->pop(&r)) {
      const FlowKey k = forwardKeyOf(r);
      if (r.op == FlowRecordOp::kDelete) {
        own_.erase(k);
      } else if (own_.size() < opt_.own_entries || own_.count(k) != 0) {
        own_[k] = Own{r, now_ms};
      } else {
        ++sent_.own_refused;  // still sent; only a later dump misses it
      }
      if (batches.empty() || batches.back().size() >= kBatchRecords * kFlowRecordBytes) {
        batches.emplace_back();
      }
      appendFlowRecord(&batches.back(), r);
    }
  }
  return batches;
}

std::vector<std::string> FlowSync::dump(uint32_t now_ms) {
  std::vector<std::string> batches;
  const auto add = [&batches](const FlowRecord& r) {
    if (batches.empty() || batches.back().size() >= kBatchRecords * kFlowRecordBytes) {
      batches.emplace_back();
    }
    appendFlowRecord(&batches.back(), r);
  };
  for (auto it = own_.begin(); it != own_.end();) {
    const uint32_t ttl = it->second.record.proto == 17 ? opt_.udp_ttl_ms : opt_.tcp_ttl_ms;
    if (now_ms - it->second.written_ms >= ttl) {
      it = own_.erase(it);
      continue;
    }
    add(it->second.record);
    ++it;
  }
  // And the other nodes' flows this node holds: one whose node died before
  // anyone carried it on (its VIP has not moved yet, or its first packet
  // has not come) is known only here and to the other survivors.
  std::lock_guard<std::mutex> lock(writer_mu_);
  table_.forEach([&](const FlowRecord& r) {
    if (own_.count(forwardKeyOf(r)) == 0) add(r);
  });
  return batches;
}

Status FlowSync::applyRelayed(const std::string& records, const std::string& origin,
                              uint32_t now_ms) {
  auto decoded = decodeFlowRecords(records, kBatchRecords);
  if (!decoded) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    return Status::error("from " + origin + ": " + decoded.error());
  }
  std::lock_guard<std::mutex> lock(writer_mu_);
  for (const FlowRecord& r : *decoded) table_.apply(r, now_ms);
  received_.fetch_add(decoded->size(), std::memory_order_relaxed);
  return Status::ok();
}

void FlowSync::expire(uint32_t now_ms) {
  std::lock_guard<std::mutex> lock(writer_mu_);
  table_.expire(now_ms);
}

void FlowSync::noteSent(size_t records, size_t bytes, bool dump) {
  sent_.records_sent += records;
  sent_.bytes_sent += bytes;
  ++sent_.batches_sent;
  if (dump) ++sent_.dumps_sent;
}

FlowSyncCounters FlowSync::counters() const {
  FlowSyncCounters c = sent_;
  c.records_received = received_.load(std::memory_order_relaxed);
  c.batches_refused = refused_.load(std::memory_order_relaxed);
  c.table = table_.stats();
  c.table_size = table_.size();
  c.table_capacity = table_.capacity();
  c.own_size = own_.size();
  return c;
}

}  // namespace flowlb::agent

#include "controller/grpc/flow_sync_relay.h"

#include <algorithm>
#include <tuple>

namespace flowlb::controller {
namespace {

const char* protoName(uint8_t proto) {
  return proto == 6 ? "tcp" : proto == 17 ? "udp" : "?";
}

// Whether `node` forwards to `b` of `s`: every backend, but for
// externalTrafficPolicy: Local only those on the node (or of no known
// node), as the agent filters them.
bool forwardsTo(const DesiredService& s, const DesiredBackend& b, const std::string& node) {
  return !s.external_traffic_local || b.node.empty() || b.node == node;
}

// The service's backend at addr:port (backends are sorted by address, port).
const DesiredBackend* backendOf(const DesiredService& s, const IpAddr& addr, uint16_t port) {
  auto it = std::lower_bound(
      s.backends.begin(), s.backends.end(), std::tie(addr, port),
      [](const DesiredBackend& b, const std::tuple<const IpAddr&, const uint16_t&>& k) {
        return std::tie(b.addr, b.port) < k;
      });
  return it != s.backends.end() && it->addr == addr && it->port == port ? &*it : nullptr;
}

}  // namespace

FlowServiceIndex::FlowServiceIndex(std::shared_ptr<const View> view) : view_(std::move(view)) {
  slots_.reserve(view_->services.size());
  for (const auto& e : view_->services) {
    const DesiredService& s = e->service();
    slots_.push_back({s.vip, s.port, s.proto, &s});
  }
  std::sort(slots_.begin(), slots_.end(), [](const Slot& a, const Slot& b) {
    return std::tie(a.vip, a.port, a.proto) < std::tie(b.vip, b.port, b.proto);
  });
}

const DesiredService* FlowServiceIndex::find(const IpAddr& vip, uint16_t port,
                                             uint8_t proto) const {
  auto it = std::lower_bound(
      slots_.begin(), slots_.end(), std::tie(vip, port, proto),
      [](const Slot& s, const std::tuple<const IpAddr&, const uint16_t&, const uint8_t&>& k) {
        return std::tie(s.vip, s.port, s.proto) < k;
      });
  if (it == slots_.end() || !(it->vip == vip) || it->port != port || it->proto != proto) {
    return nullptr;
  }
  return it->service;
}

FlowRelay relayFlowRecords(const std::vector<FlowRecord>& records, std::string_view packed,
                           const FlowServiceIndex& index, const std::string& sender,
                           const std::vector<std::string>& destinations) {
  FlowRelay out;
  out.records.resize(destinations.size());
  std::vector<bool> runs(destinations.size());
  for (size_t d = 0; d < destinations.size(); ++d) {
    runs[d] = index.runs(destinations[d]) && destinations[d] != sender;
  }
  // What every destination that runs the view gets, unless an upsert of a
  // Local service is not for it (`partial`): then it gets its own subset.
  // The common case is one copy per destination, not an append per record.
  std::string all;
  all.reserve(packed.size());
  struct Kept {
    size_t i;
    const DesiredService* s;
    const DesiredBackend* b;
  };
  std::vector<Kept> kept;
  std::vector<bool> partial(destinations.size());
  const bool sender_runs = index.runs(sender);
  auto refuse = [&](const FlowRecord& r, const char* reason, const char* what) {
    if (out.first_reason) return;
    out.first_reason = reason;
    out.first_refusal = std::string(what) + " " + r.vip.withPort(r.vip_port) + "/" +
                        protoName(r.proto) + " backend " + r.backend.withPort(r.backend_port);
  };
  auto forDestination = [&](const Kept& k, size_t d) {
    return runs[d] &&
           (records[k.i].op != FlowRecordOp::kUpsert || forwardsTo(*k.s, *k.b, destinations[d]));
  };
  for (size_t i = 0; i < records.size(); ++i) {
    const FlowRecord& r = records[i];
    const DesiredService* s = sender_runs ? index.find(r.vip, r.vip_port, r.proto) : nullptr;
    if (!s) {
      ++out.refused_vip;
      refuse(r, "refused_vip", "no service the sender runs:");
      continue;
    }
    const DesiredBackend* b = backendOf(*s, r.backend, r.backend_port);
    if (r.op == FlowRecordOp::kUpsert && (!b || !forwardsTo(*s, *b, sender))) {
      ++out.refused_backend;
      refuse(r, "refused_backend", b ? "a backend on another node:" : "no backend of the service:");
      continue;
    }
    ++out.accepted;
    kept.push_back({i, s, b});
    all.append(packed.substr(i * kFlowRecordBytes, kFlowRecordBytes));
    if (r.op == FlowRecordOp::kUpsert && s->external_traffic_local) {
      for (size_t d = 0; d < destinations.size(); ++d) {
        if (runs[d] && !forDestination(kept.back(), d)) partial[d] = true;
      }
    }
  }
  for (size_t d = 0; d < destinations.size(); ++d) {
    if (!runs[d]) continue;
    if (!partial[d]) {
      out.records[d] = all;
      continue;
    }
    for (const Kept& k : kept) {
      if (forDestination(k, d)) {
        out.records[d].append(packed.substr(k.i * kFlowRecordBytes, kFlowRecordBytes));
      }
    }
  }
  return out;
}

}  // namespace flowlb::controller

// Flow sync's one decision at the controller (docs/flow-sync.md, "The
// controller's relay"): which of an agent's flow records are its to share,
// and which other agents get each of them. Pure: no gRPC, no protobuf, no
// clock; the transport (sync_flows.cc) decodes, calls this and carries the
// result.
//
// A node speaks only for its own flows:
// - a record's VIP:port/protocol must be a service the sender runs in the
//   view it is sent (refused_vip otherwise);
// - an upsert's backend address:port must be one of that service's
//   backends, and for externalTrafficPolicy: Local one on the sender's node
//   (the agent forwards to no other), refused_backend otherwise. A delete is
//   relayed whatever its backend: the flow ends, and a backend that left the
//   view since must not keep a receiver's copy alive.
// A destination gets the records of services it runs, and an upsert only if
// it would forward to that backend itself (Local: a backend on its node).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/flow_record.h"
#include "controller/distribution/distributor.h"

namespace flowlb::controller {

// A view's services found by what a flow record names (VIP, port,
// protocol). Built once per view (a lookup per record, not a scan).
class FlowServiceIndex {
 public:
  explicit FlowServiceIndex(std::shared_ptr<const View> view);
  // nullptr: no such service in the view.
  const DesiredService* find(const IpAddr& vip, uint16_t port, uint8_t proto) const;
  bool runs(const std::string& node) const { return view_->runs(node); }
  const std::shared_ptr<const View>& view() const { return view_; }

 private:
  struct Slot {
    IpAddr vip;
    uint16_t port;
    uint8_t proto;
    const DesiredService* service;
  };
  std::shared_ptr<const View> view_;  // keeps the services alive
  std::vector<Slot> slots_;           // sorted by (vip, port, proto)
};

struct FlowRelay {
  // Per destination, in the order given: the packed records it gets
  // (empty: nothing to send it).
  std::vector<std::string> records;
  uint64_t accepted = 0;         // records the sender may share
  uint64_t refused_vip = 0;      // not a service the sender runs
  uint64_t refused_backend = 0;  // an upsert to a backend not the service's (or not the sender's)
  // For the log: the first refused record's reason (refused_vip or
  // refused_backend) and what it named.
  const char* first_reason = nullptr;
  std::string first_refusal;
};

// `records` decoded from `packed` (same order, kFlowRecordBytes each).
FlowRelay relayFlowRecords(const std::vector<FlowRecord>& records, std::string_view packed,
                           const FlowServiceIndex& index, const std::string& sender,
                           const std::vector<std::string>& destinations);

}  // namespace flowlb::controller

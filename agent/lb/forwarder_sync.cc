// Flow sync in the forwarder (docs/flow-sync.md): NAT flows source-NATed to
// their VIP are shared with the other LB nodes once answered and when they
// close, and another node's flow is adopted here when its VIP moves to this
// node (its first packet here misses conntrack: a mid-flow client packet,
// or the backend's reply to VIP:SNAT port).
#include "agent/lb/forwarder.h"
#include "agent/lb/snat_ports.h"

namespace flowlb::agent {

bool Forwarder::isVipSnatReply(const Snapshot& snap, const FlowTuple& t) const {
  return snap.snat.vip_source && snap.snat.inPortRange(t.dport) &&
         snap.findService(t.dst, t.dport, t.proto) < 0;
}

FlowEntry* Forwarder::adopt(const FlowRecord& rec, const Snapshot& snap, uint32_t now_ms) {
  if (!snap.snat.vip_source || snatPortOwner(rec.nat_port, config_.workers) != config_.worker) {
    return nullptr;
  }
  const int si = snap.findService(rec.vip, rec.vip_port, rec.proto);
  if (si < 0) return nullptr;
  const ServiceRuntime& svc = snap.services[static_cast<size_t>(si)];
  if (svc.spec.mode != ForwardingMode::kNat || !vipSourced(snap, svc)) return nullptr;
  // The backend must still be one of ours (a record names it by address:
  // port; it can name no other place to send the flow).
  const BackendRuntime* b = nullptr;
  for (const BackendRuntime& x : snap.backends) {
    if (x.present && x.port == rec.backend_port && x.addr == rec.backend) {
      b = &x;
      break;
    }
  }
  if (b == nullptr) return nullptr;
  const NextHop* hop = next_hops_.lookup(b->addr);
  if (hop != nullptr && hop->kernel) return nullptr;  // kernel-path flows are not shared

  const FlowKey fk = forwardKeyOf(rec);
  const uint64_t fh = conntrack_.hash(fk);
  const FlowKey rk = replyKeyOf(rec);
  const uint64_t rh = conntrack_.hash(rk);
  if (conntrack_.find(fk, fh, now_ms) != nullptr) return nullptr;
  if (conntrack_.find(rk, rh, now_ms) != nullptr) return nullptr;  // a flow of ours holds the port
  FlowEntry* e = conntrack_.insert(fk, fh, now_ms);
  e->backend = b->id;
  e->nat_port = rec.nat_port;
  e->flags = kFlowVipSnat | kFlowAnswered | ((rec.flags & kFlowRecordProxyV2) ? kFlowProxyV2 : 0);
  e->state = rec.proto == kProtoTCP ? FlowState::kEstablished : FlowState::kUdp;
  e->timeout_ms = rec.proto == kProtoTCP ? svc.timeouts.established_ms : svc.timeouts.udp_ms;
  FlowEntry* r = conntrack_.insert(rk, rh, now_ms, conntrack_.indexOf(e));
  r->backend = b->id;
  r->state = FlowState::kEstablished;
  conntrack_.link(e, r);
  proxySeq(*r) = rec.proxy_seq;
  ++stats_.flows_adopted;
  // Shared again from here: this node carries it now, so a node that joins
  // later learns it from this node's dump, and its close is this node's.
  exportFlow(*e, FlowRecordOp::kUpsert, snap);
  return e;
}

void Forwarder::shareFlow(const FlowEntry& f, uint8_t before, const Snapshot& snap) {
  if (config_.flow_export == nullptr) return;
  FlowRecordOp op;
  if ((f.flags & kFlowAnswered) && !(before & kFlowAnswered) && !closedBothWays(f.flags)) {
    op = FlowRecordOp::kUpsert;
  } else if (closedBothWays(f.flags) && !closedBothWays(before) && (f.flags & kFlowAnswered)) {
    op = FlowRecordOp::kDelete;
  } else {
    return;
  }
  exportFlow(f, op, snap);
}

void Forwarder::exportFlow(const FlowEntry& f, FlowRecordOp op, const Snapshot& snap) {
  if (config_.flow_export == nullptr) return;
  const BackendRuntime* b = snap.backend(f.backend);
  if (b == nullptr || f.peer == kNoPeer) return;
  FlowRecord rec;
  rec.op = op;
  rec.proto = f.key.proto;
  rec.flags = (f.flags & kFlowProxyV2) ? kFlowRecordProxyV2 : 0;
  rec.proxy_seq = proxySeq(*conntrack_.at(f.peer));
  rec.client = IpAddr{f.key.src};
  rec.vip = IpAddr{f.key.dst};
  rec.backend = b->addr;
  rec.client_port = f.key.sport;
  rec.vip_port = f.key.dport;
  rec.backend_port = b->port;
  rec.nat_port = f.nat_port;
  if (config_.flow_export->push(rec)) {
    ++stats_.flow_exports;
  } else {
    ++stats_.flow_export_dropped;
  }
}

}  // namespace flowlb::agent

// The forwarder's ICMP errors (split from forwarder.cc): an error about a
// packet of one of our flows goes where that flow goes, its outer and quoted
// headers translated like the flow, whether it came from the NIC or out of
// the kernel path.
#include "agent/lb/forwarder.h"
#include "agent/lb/snat_ports.h"
#include "agent/packet/rewrite.h"

namespace flowlb::agent {
namespace {

FlowTuple reversed(const FlowTuple& t) {
  return FlowTuple{t.dst, t.src, t.dport, t.sport, t.proto};
}

}  // namespace

const FlowEntry* Forwarder::quotedFlow(const FlowTuple& quoted, FlowKind kind, uint32_t now_ms) {
  const FlowKey key = makeFlowKey(reversed(quoted), kind);
  FlowEntry* r = conntrack_.find(key, conntrack_.hash(key), now_ms);
  return r == nullptr || r->peer == kNoPeer ? nullptr : conntrack_.at(r->peer);
}

Action Forwarder::errorToClient(const FlowEntry& f, const Snapshot& snap) {
  Action a;
  a.reply = true;
  a.backend = f.backend;
  a.service = snap.findService(IpAddr{f.key.dst}, f.key.dport, f.key.proto);
  ++stats_.icmp_errors_forwarded;
  return a;
}

Action Forwarder::kernelIcmpError(uint8_t* frame, ParsedPacket& p, const Snapshot& snap,
                                  uint32_t now_ms) {
  // The kernel reports on a packet of a flow we sent through it (client ->
  // backend, as we rewrote it): the client must see it about the VIP.
  const FlowEntry* fp = quotedFlow(p.inner_tuple, FlowKind::kKernelReply, now_ms);
  if (fp == nullptr) return notHere(DropReason::kKernelReplyNoFlow);
  const FlowEntry& f = *fp;
  const IpAddr client{f.key.src};
  const IpAddr vip{f.key.dst};
  Action a = errorToClient(f, snap);
  rewriteAddress(frame, p.inner, p.inner_tuple, Endpoint::kDestination, vip);
  rewritePort(frame, p.inner, p.inner_tuple, Endpoint::kDestination, f.key.dport);
  refreshIcmpChecksum(frame, p);
  Action out = transmit(frame, client, Path::kAny, a);
  out.l3 = static_cast<uint16_t>(p.outer.l3);
  return out;
}

Action Forwarder::icmpError(uint8_t* frame, ParsedPacket& p, const Snapshot& snap,
                            uint32_t now_ms) {
  const FlowTuple q = p.inner_tuple;  // the packet that triggered the error, as sent
  // (a) It left a VIP towards a client: the flow is client -> VIP.
  const int si = snap.findService(q.src, q.sport, q.proto);
  if (si >= 0) {
    const ServiceRuntime& svc = snap.services[static_cast<size_t>(si)];
    const FlowTuple fwd = reversed(q);
    const FlowKey key = makeFlowKey(fwd, FlowKind::kForward);
    FlowEntry* e = conntrack_.find(key, conntrack_.hash(key), now_ms);
    const BackendRuntime* b = e != nullptr ? snap.backend(e->backend) : nullptr;
    if (b == nullptr && svc.spec.mode == ForwardingMode::kDsr && !svc.table->empty()) {
      b = snap.backend(svc.ids[svc.table->lookup(flowHash(fwd, svc.spec.hash_seed))]);
    }
    if (b == nullptr) {
      // The error's queue is chosen by its own addresses, not by the flow's:
      // another worker may hold it (DSR needs no state: any worker can).
      return e == nullptr && svc.spec.mode != ForwardingMode::kDsr
                 ? notHere(DropReason::kIcmpNoFlow, si)
                 : drop(DropReason::kIcmpNoFlow, si);
    }
    Action a;
    a.service = si;
    a.backend = b->id;
    ++stats_.icmp_errors_forwarded;
    if (svc.spec.mode == ForwardingMode::kDsr) return transmit(frame, b->addr, Path::kOnLink, a);
    if (e->flags & kFlowKernelPath) {
      // The backend answered the client (the kernel undid its own NAT on the
      // way back): show it the error about backend:port -> client:port; the
      // kernel translates a related ICMP error like the flow itself.
      rewriteAddress(frame, p.outer, p.tuple, Endpoint::kDestination, b->addr);
      rewriteAddress(frame, p.inner, p.inner_tuple, Endpoint::kSource, b->addr);
      rewritePort(frame, p.inner, p.inner_tuple, Endpoint::kSource, b->port);
      refreshIcmpChecksum(frame, p);
      a.kind = ActionKind::kPass;
      a.handoff =
          (e->flags & kFlowKeepSource) ? KernelHandoff::kFlowKeep : KernelHandoff::kFlowSnat;
      ++stats_.passed;
      return a;
    }
    // NAT: the backend sent backend:port -> snat:nat_port; show it that
    // (the VIP is the SNAT address of a VIP-sourced flow).
    const IpAddr& snat = (e->flags & kFlowVipSnat) ? svc.spec.vip
                         : b->addr.isV4()          ? snap.snat.v4
                                                   : snap.snat.v6;
    rewriteAddress(frame, p.outer, p.tuple, Endpoint::kDestination, b->addr);
    rewriteAddress(frame, p.inner, p.inner_tuple, Endpoint::kSource, b->addr);
    rewritePort(frame, p.inner, p.inner_tuple, Endpoint::kSource, b->port);
    rewriteAddress(frame, p.inner, p.inner_tuple, Endpoint::kDestination, snat);
    rewritePort(frame, p.inner, p.inner_tuple, Endpoint::kDestination, e->nat_port);
    refreshIcmpChecksum(frame, p);
    return transmit(frame, b->addr, Path::kOwnInterfaces, a);
  }
  // (b) It left our SNAT address towards a backend: a NAT flow's forward
  // packet. With --nat-source=vip the SNAT address is the VIP, on a port of
  // the SNAT range that is no service's.
  if (snap.isSnatAddress(q.src) || isVipSnatReply(snap, reversed(q))) {
    if (!owns(q.sport)) return handOff(snatPortOwner(q.sport, config_.workers));
    const FlowEntry* fp = quotedFlow(q, FlowKind::kNatReply, now_ms);
    if (fp == nullptr) return drop(DropReason::kIcmpNoFlow);
    const FlowEntry& f = *fp;
    const IpAddr client{f.key.src};
    const IpAddr vip{f.key.dst};
    Action a = errorToClient(f, snap);
    if (p.tuple.src == q.dst) {  // reported by the backend itself: it speaks as the VIP
      rewriteAddress(frame, p.outer, p.tuple, Endpoint::kSource, vip);
    }
    rewriteAddress(frame, p.outer, p.tuple, Endpoint::kDestination, client);
    rewriteAddress(frame, p.inner, p.inner_tuple, Endpoint::kSource, client);
    rewritePort(frame, p.inner, p.inner_tuple, Endpoint::kSource, f.key.sport);
    rewriteAddress(frame, p.inner, p.inner_tuple, Endpoint::kDestination, vip);
    rewritePort(frame, p.inner, p.inner_tuple, Endpoint::kDestination, f.key.dport);
    refreshIcmpChecksum(frame, p);
    return transmit(frame, client, Path::kAny, a);
  }
  return pass();
}

}  // namespace flowlb::agent

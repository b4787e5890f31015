#include "agent/lb/forwarder.h"

#include <algorithm>

#include "agent/lb/snat_ports.h"
#include "agent/packet/parser.h"
#include "agent/packet/proxy_protocol.h"
#include "agent/packet/rewrite.h"
#include "common/hash.h"

namespace flowlb::agent {
namespace {

constexpr uint64_t kAffinitySalt = 0xa5a5f00dcafe1234ULL;

bool opensFlow(const FlowTuple& t, uint8_t tcp_flags) {
  if (t.proto != kProtoTCP) return true;
  return (tcp_flags & (kTcpSyn | kTcpAck | kTcpRst)) == kTcpSyn;
}

}  // namespace

const char* kernelHandoffName(KernelHandoff h) {
  switch (h) {
    case KernelHandoff::kUnclaimed: return "unclaimed";
    case KernelHandoff::kRouted: return "routed";
    case KernelHandoff::kFlowSnat: return "flow_snat";
    case KernelHandoff::kFlowKeep: return "flow_keep_source";
    default: return "unknown";
  }
}

FlowKey makeFlowKey(const FlowTuple& t, FlowKind kind) {
  FlowKey k;
  k.src = t.src.bytes;
  k.dst = t.dst.bytes;
  k.sport = t.sport;
  k.dport = t.dport;
  k.proto = t.proto;
  k.kind = kind;
  return k;
}

uint64_t flowHash(const FlowTuple& t, uint64_t seed) {
  return hashFlowKey(makeFlowKey(t, FlowKind::kForward), seed);
}

Forwarder::Forwarder(const ForwarderConfig& config, const NextHopTable& next_hops)
    : Forwarder(config, next_hops,
                std::make_unique<ConnTrack>(config.conntrack_entries, config.conntrack_seed)) {}

Forwarder::Forwarder(const ForwarderConfig& config, const NextHopTable& next_hops,
                     std::unique_ptr<ConnTrack> conntrack)
    : config_(config),
      next_hops_(next_hops),
      conntrack_owned_(std::move(conntrack)),
      conntrack_(*conntrack_owned_),
      fragments_(config.fragment_entries) {
  if (config_.workers == 0) config_.workers = 1;
  origin_ = config_.worker;
}

Action Forwarder::drop(DropReason r, int32_t service) {
  ++stats_.drops[static_cast<size_t>(r)];
  Action a;
  a.kind = ActionKind::kDrop;
  a.reason = r;
  a.service = service;
  return a;
}

Action Forwarder::pass() {
  ++stats_.passed;
  return Action{};
}

Action Forwarder::handOff(uint32_t worker) {
  ++stats_.handed_off;
  Action a;
  a.kind = ActionKind::kHandOff;
  a.worker = worker;
  return a;
}

bool Forwarder::owns(uint16_t snat_port) const {
  return snatPortOwner(snat_port, config_.workers) == config_.worker;
}

Action Forwarder::notHere(DropReason r, int32_t service) {
  const uint32_t next = (config_.worker + 1) % config_.workers;
  if (next == origin_) return drop(r, service);  // every worker has looked (or there is one)
  return handOff(next);
}

Action Forwarder::processHandedOff(uint8_t* frame, size_t len, const Snapshot& snap,
                                   uint32_t now_ms, size_t capacity, uint32_t origin,
                                   bool from_kernel) {
  origin_ = origin < config_.workers ? origin : config_.worker;
  Action a = from_kernel ? processFromKernel(frame, len, snap, now_ms, capacity)
                         : process(frame, len, snap, now_ms, capacity);
  origin_ = config_.worker;
  return a;
}

Action Forwarder::transmit(uint8_t* frame, const IpAddr& toward, Path path, Action a) {
  const NextHop* hop = next_hops_.lookup(toward);
  if (hop == nullptr) return drop(DropReason::kNoRoute, a.service);
  if (hop->kernel) {
    if (path == Path::kOnLink) return drop(DropReason::kDsrBackendNotOnLink, a.service);
    if (path == Path::kOwnInterfaces) return drop(DropReason::kPathChanged, a.service);
    if (!config_.kernel_path) return drop(DropReason::kKernelPathDisabled, a.service);
    a.kind = ActionKind::kPass;
    a.handoff = KernelHandoff::kRouted;
    ++stats_.passed;
    return a;
  }
  if (path == Path::kOnLink && !hop->on_link) {
    return drop(DropReason::kDsrBackendNotOnLink, a.service);
  }
  if (!hop->resolved && path != Path::kOnLink && config_.kernel_path) {
    // The frame is complete but its neighbour is not known yet (first
    // contact, or the entry expired): the kernel routes it out of the same
    // interface and holds it while it resolves the address, where dropping
    // it would cost the client a retransmission (a SYN: one second or more).
    // The lookup has noted the miss; the next packets go direct.
    a.kind = ActionKind::kPass;
    a.handoff = KernelHandoff::kRouted;
    ++stats_.passed;
    ++stats_.routed_unresolved;
    return a;
  }
  if (!hop->resolved) {
    Action d = drop(DropReason::kNeighborUnresolved, a.service);
    d.backend = a.backend;
    d.ifindex = hop->ifindex;
    return d;
  }
  rewriteMacs(frame, hop->dst_mac.data(), hop->src_mac.data());
  a.kind = ActionKind::kTransmit;
  a.ifindex = hop->ifindex;
  ++stats_.transmitted;
  return a;
}

Action Forwarder::process(uint8_t* frame, size_t len, const Snapshot& snap, uint32_t now_ms,
                          size_t capacity) {
  capacity_ = capacity != 0 ? capacity : len;
  const ParseOutcome o = parsePacket(frame, len, pkt_);
  Action a = decide(frame, o, pkt_, snap, now_ms);
  if (a.kind == ActionKind::kPass && o.status == ParseStatus::kOk) {
    a.l3 = static_cast<uint16_t>(pkt_.outer.l3);
  }
  return a;
}

bool Forwarder::lookupKey(const ParsedPacket& p, const Snapshot& snap, FlowKey* key) const {
  const FlowTuple& t = p.tuple;
  if (p.icmp_error || !p.outer.has_l4 || (t.proto != kProtoTCP && t.proto != kProtoUDP)) {
    return false;
  }
  const bool reply = snap.isSnatAddress(t.dst) || isVipSnatReply(snap, t);
  if (reply && !owns(t.dport)) return false;  // handed to its owner, not looked up here
  *key = makeFlowKey(t, reply ? FlowKind::kNatReply : FlowKind::kForward);
  return true;
}

void Forwarder::processBatch(const Frame* frames, size_t n, const Snapshot& snap, uint32_t now_ms,
                             Action* actions) {
  // A software pipeline over a small ring: frame i is parsed and its bucket
  // signatures prefetched kLead frames before it is decided, and the
  // matching entry half-way there; the misses of several frames overlap
  // while the working set stays in L1.
  constexpr size_t kLead = 4;
  constexpr size_t kRing = 2 * kLead;
  static_assert(kRing <= kMaxBatch);
  uint64_t hashes[kRing];
  bool keyed[kRing];
  for (size_t i = 0; i < n + kLead; ++i) {
    if (i < n) {
      const size_t r = i % kRing;
      FlowKey key;
      outcomes_[r] = parsePacket(frames[i].data, frames[i].len, batch_[r]);
      keyed[r] = outcomes_[r].status == ParseStatus::kOk && lookupKey(batch_[r], snap, &key);
      if (keyed[r]) {
        hashes[r] = conntrack_.hash(key);
        conntrack_.prefetch(hashes[r]);
      }
    }
    if (i >= kLead / 2 && i - kLead / 2 < n && keyed[(i - kLead / 2) % kRing]) {
      conntrack_.prefetchEntry(hashes[(i - kLead / 2) % kRing]);
    }
    if (i >= kLead) {
      const size_t d = i - kLead;
      const size_t r = d % kRing;
      capacity_ = frames[d].capacity != 0 ? frames[d].capacity : frames[d].len;
      actions[d] = decide(frames[d].data, outcomes_[r], batch_[r], snap, now_ms,
                          keyed[r] ? &hashes[r] : nullptr);
      if (actions[d].kind == ActionKind::kPass && outcomes_[r].status == ParseStatus::kOk) {
        actions[d].l3 = static_cast<uint16_t>(batch_[r].outer.l3);
      }
    }
  }
}

Action Forwarder::decide(uint8_t* frame, ParseOutcome o, ParsedPacket& p, const Snapshot& snap,
                         uint32_t now_ms, const uint64_t* hash_hint) {
  if (o.status == ParseStatus::kNotIp) return pass();
  if (o.status == ParseStatus::kMalformed) return drop(o.reason);
  if (p.icmp_error) return icmpError(frame, p, snap, now_ms);
  FlowTuple& t = p.tuple;
  if (t.proto != kProtoTCP && t.proto != kProtoUDP) return pass();  // echo, other protocols

  if (p.outer.is_fragment) {
    if (p.outer.first_fragment) {
      fragments_.remember(t, p.outer.frag_id, now_ms);
    } else if (!fragments_.recall(t, p.outer.frag_id, now_ms)) {
      return drop(DropReason::kFragmentUnknownFlow);
    }
  }
  if (snap.isSnatAddress(t.dst)) return natReply(frame, p, snap, now_ms, hash_hint);
  const int si = snap.findService(t.dst, t.dport, t.proto);
  if (si < 0) {
    if (isVipSnatReply(snap, t)) return natReply(frame, p, snap, now_ms, hash_hint);
    return pass();
  }
  return toService(frame, p, snap, si, now_ms, hash_hint);
}

const BackendRuntime* Forwarder::choose(const ServiceRuntime& svc, const Snapshot& snap,
                                        const FlowTuple& t, bool opens_flow, uint32_t now_ms) {
  const uint64_t seed = svc.spec.hash_seed;
  if (svc.spec.client_ip_affinity) {
    FlowTuple at{t.src, t.dst, 0, t.dport, t.proto};
    const FlowKey ak = makeFlowKey(at, FlowKind::kAffinity);
    const uint64_t ah = conntrack_.hash(ak);
    FlowEntry* ae = conntrack_.find(ak, ah, now_ms);
    const BackendRuntime* b = nullptr;
    if (ae != nullptr) {
      b = snap.backend(ae->backend);
      if (b != nullptr && b->state != BackendState::kActive) b = nullptr;
    }
    if (b == nullptr && !svc.table->empty()) {
      b = snap.backend(
          svc.ids[svc.table->lookup(hashBytes(t.src.bytes.data(), 16, seed ^ kAffinitySalt))]);
    }
    if (b == nullptr) return nullptr;
    if (ae == nullptr) ae = conntrack_.insert(ak, ah, now_ms);
    ae->backend = b->id;
    ae->state = FlowState::kAffinity;
    ae->last_seen_ms = now_ms;
    ae->timeout_ms = static_cast<uint32_t>(
        std::min<uint64_t>(uint64_t{svc.spec.affinity_timeout_s} * 1000, kMaxTimeoutMs));
    return b;
  }
  const uint64_t h = flowHash(t, seed);
  if (!opens_flow && svc.prev_table && !svc.prev_table->empty()) {
    // Rule 6: a mid-flow packet without state most likely belongs to a flow
    // placed by the previous table; keep it there if that backend lives.
    if (const BackendRuntime* b = snap.backend(svc.prev_ids[svc.prev_table->lookup(h)])) {
      ++stats_.prev_table_hits;
      return b;
    }
  }
  if (svc.table->empty()) return nullptr;
  return snap.backend(svc.ids[svc.table->lookup(h)]);
}

void Forwarder::track(FlowEntry& e, const ServiceRuntime& svc, uint8_t proto, uint8_t tcp_flags,
                      bool from_client, uint32_t now_ms) {
  e.last_seen_ms = now_ms;
  if (proto != kProtoTCP) {
    e.state = FlowState::kUdp;
    e.timeout_ms = svc.timeouts.udp_ms;
    return;
  }
  if (tcp_flags & kTcpRst) e.flags |= kFlowFinClient | kFlowFinBackend;
  if (tcp_flags & kTcpFin) e.flags |= from_client ? kFlowFinClient : kFlowFinBackend;
  if (tcp_flags & (kTcpFin | kTcpRst)) {
    e.state = FlowState::kClosing;
  } else if (e.state == FlowState::kFree) {
    e.state = (tcp_flags & (kTcpSyn | kTcpAck)) == kTcpSyn ? FlowState::kSynSent
                                                           : FlowState::kEstablished;
  } else if (e.state == FlowState::kSynSent && from_client && (tcp_flags & kTcpAck)) {
    e.state = FlowState::kEstablished;  // the client saw the SYN-ACK: answered
    e.flags |= kFlowAnswered;
  }
  switch (e.state) {
    case FlowState::kSynSent: e.timeout_ms = svc.timeouts.syn_ms; break;
    case FlowState::kClosing: e.timeout_ms = svc.timeouts.closing_ms; break;
    default: e.timeout_ms = svc.timeouts.established_ms; break;
  }
}

bool Forwarder::allocateSnatPort(const Snapshot& snap, const BackendRuntime& b, const FlowTuple& t,
                                 bool vip, uint32_t now_ms, uint16_t* port, FlowKey* reply_key,
                                 uint64_t* reply_hash) {
  const SnatPortShare mine =
      snatPortShare(snap.snat.port_min, snap.snat.port_max, config_.worker, config_.workers);
  if (mine.count == 0) return false;
  // With vip_source the VIP is the source address, so the port must also be
  // none of the VIP's service ports, nor one another node's flow holds.
  const IpAddr& snat = vip ? t.dst : b.addr.isV4() ? snap.snat.v4 : snap.snat.v6;
  FlowTuple rt{b.addr, snat, b.port, 0, t.proto};
  // Each attempt is an independent random port: linear probing would walk
  // along the runs of busy ports that a loaded range builds up.
  uint64_t h = flowHash(t, config_.conntrack_seed);
  const uint32_t attempts = std::min(config_.snat_port_attempts, mine.count);
  // When every port tried is taken, the oldest holder that never saw an
  // answer gives its port up: a flood of new flows (a SYN flood) would
  // otherwise hold the ports of a backend until they time out and starve
  // every new flow, while flows in use are never taken from.
  FlowEntry* victim = nullptr;
  uint16_t victim_port = 0;
  uint32_t victim_age = 0;
  for (uint32_t i = 0; i < attempts; ++i, h = mix64(h + i)) {
    rt.dport = mine.at(static_cast<uint32_t>((h >> 32) * mine.count >> 32));
    *reply_key = makeFlowKey(rt, FlowKind::kNatReply);
    *reply_hash = conntrack_.hash(*reply_key);
    if (vip &&
        (snap.findService(snat, rt.dport, t.proto) >= 0 ||
         (config_.flow_sync != nullptr && config_.flow_sync->findReply(*reply_key, &shared_)))) {
      continue;
    }
    FlowEntry* held = conntrack_.find(*reply_key, *reply_hash, now_ms);
    if (held == nullptr) {
      *port = rt.dport;
      return true;
    }
    if (held->peer == kNoPeer) continue;
    const FlowEntry& holder = *conntrack_.at(held->peer);
    const uint32_t age = now_ms - holder.last_seen_ms;
    if (!(holder.flags & kFlowAnswered) && (victim == nullptr || age > victim_age)) {
      victim = held;
      victim_port = rt.dport;
      victim_age = age;
    }
  }
  if (victim == nullptr) return false;
  conntrack_.evictUnanswered(victim);
  rt.dport = victim_port;
  *port = victim_port;
  *reply_key = makeFlowKey(rt, FlowKind::kNatReply);
  *reply_hash = conntrack_.hash(*reply_key);
  return true;
}

Action Forwarder::toService(uint8_t* frame, ParsedPacket& p, const Snapshot& snap, int32_t si,
                            uint32_t now_ms, const uint64_t* hash_hint) {
  const ServiceRuntime& svc = snap.services[static_cast<size_t>(si)];
  FlowTuple& t = p.tuple;
  if (!svc.spec.source_ranges.empty()) {
    bool allowed = false;
    for (const IpPrefix& r : svc.spec.source_ranges) allowed = allowed || r.contains(t.src);
    if (!allowed) return drop(DropReason::kSourceRangeDenied, si);
  }
  const bool opens = p.outer.has_l4 && opensFlow(t, p.tcp_flags);
  const FlowKey key = makeFlowKey(t, FlowKind::kForward);
  const uint64_t h = hash_hint ? *hash_hint : conntrack_.hash(key);
  FlowEntry* e = conntrack_.find(key, h, now_ms);
  const BackendRuntime* b = nullptr;
  Action a;
  a.service = si;
  if (e != nullptr) {
    b = snap.backend(e->backend);
    if (b == nullptr) ++stats_.rerouted_backend_gone;
    if (b == nullptr || (opens && e->state == FlowState::kClosing)) {
      conntrack_.erase(e);  // backend gone, or the client reuses the tuple
      e = nullptr;
    }
  }
  // Another node's flow, mid-flow here after its VIP moved: adopted by the
  // worker that owns its SNAT port (replies are steered by that port).
  if (e == nullptr && config_.flow_sync != nullptr && svc.spec.mode == ForwardingMode::kNat &&
      vipSourced(snap, svc) && (!opens || t.proto == kProtoUDP) &&
      config_.flow_sync->findForward(key, &shared_)) {
    const uint32_t owner = snatPortOwner(shared_.nat_port, config_.workers);
    if (owner != config_.worker) return handOff(owner);
    e = adopt(shared_, snap, now_ms);
    if (e != nullptr) b = snap.backend(e->backend);
  }
  if (e == nullptr) {
    b = choose(svc, snap, t, opens, now_ms);
    if (b == nullptr) return drop(DropReason::kNoBackend, si);
    const bool nat = svc.spec.mode == ForwardingMode::kNat;
    // A NAT flow to a backend we cannot reach ourselves goes through the
    // kernel: only its destination is rewritten, and its reply is known by
    // the tuple the backend answers with.
    const NextHop* hop = nat ? next_hops_.lookup(b->addr) : nullptr;
    const bool via_kernel = hop != nullptr && hop->kernel;
    if (via_kernel && !config_.kernel_path) return drop(DropReason::kKernelPathDisabled, si);
    uint16_t nat_port = 0;
    FlowKey reply_key;
    uint64_t reply_hash = 0;
    if (via_kernel) {
      reply_key =
          makeFlowKey(FlowTuple{b->addr, t.src, b->port, t.sport, t.proto}, FlowKind::kKernelReply);
      reply_hash = conntrack_.hash(reply_key);
      // The client's address:port already talks to this backend:port through
      // another VIP: the backend could not tell the two apart. A flow there
      // that is closed both ways gives way to a new connection, as the
      // backend's own TCP does from TIME_WAIT; a live or half-closed one
      // (still carrying data one way) keeps it.
      if (FlowEntry* other = conntrack_.find(reply_key, reply_hash, now_ms)) {
        if (!opens || !closedBothWays(conntrack_.owner(*other).flags)) {
          return drop(DropReason::kKernelTupleInUse, si);
        }
        conntrack_.erase(other);  // and its forward entry
        ++stats_.kernel_tuple_reused;
      }
    } else if (nat && !allocateSnatPort(snap, *b, t, vipSourced(snap, svc), now_ms, &nat_port,
                                        &reply_key, &reply_hash)) {
      return drop(DropReason::kSnatPortsExhausted, si);
    }
    e = conntrack_.insert(key, h, now_ms);
    e->backend = b->id;
    e->nat_port = nat_port;
    if (via_kernel) {
      e->flags = kFlowKernelPath | (svc.spec.keep_client_address ? kFlowKeepSource : 0);
    } else if (nat && vipSourced(snap, svc)) {
      e->flags = kFlowVipSnat;
    }
    if (nat) {
      FlowEntry* r = conntrack_.insert(reply_key, reply_hash, now_ms, conntrack_.indexOf(e));
      r->backend = b->id;
      r->state = FlowState::kEstablished;  // unused: a reply entry follows its peer
      conntrack_.link(e, r);
    }
    a.new_flow = true;
    ++stats_.new_flows;
  }
  const uint8_t before = e->flags;
  track(*e, svc, t.proto, p.tcp_flags, true, now_ms);
  if (e->flags & kFlowVipSnat) shareFlow(*e, before, snap);
  a.backend = b->id;

  if (svc.spec.mode == ForwardingMode::kDsr) return transmit(frame, b->addr, Path::kOnLink, a);
  if (svc.spec.proxy_protocol == ProxyProtocol::kV2) {
    if (const DropReason r = proxyForward(frame, p, *e, a.new_flow, &a); r != DropReason::kNone) {
      return drop(r, si);
    }
  }
  if (e->flags & kFlowKernelPath) {
    const IpAddr client = t.src;
    const uint16_t client_port = t.sport;
    rewriteFlow(frame, p.outer, t, client, client_port, b->addr, b->port);
    a.kind = ActionKind::kPass;
    a.handoff = (e->flags & kFlowKeepSource) ? KernelHandoff::kFlowKeep : KernelHandoff::kFlowSnat;
    ++stats_.passed;
    return a;
  }
  const IpAddr snat = (e->flags & kFlowVipSnat) ? t.dst
                      : b->addr.isV4()          ? snap.snat.v4
                                                : snap.snat.v6;
  rewriteFlow(frame, p.outer, t, snat, e->nat_port, b->addr, b->port);
  return transmit(frame, b->addr, Path::kOwnInterfaces, a);
}

Action Forwarder::natReply(uint8_t* frame, ParsedPacket& p, const Snapshot& snap, uint32_t now_ms,
                           const uint64_t* hash_hint) {
  FlowTuple& t = p.tuple;
  // The port names the worker that allocated it, whatever queue this came on.
  if (!owns(t.dport)) return handOff(snatPortOwner(t.dport, config_.workers));
  const FlowKey key = makeFlowKey(t, FlowKind::kNatReply);
  FlowEntry* r = conntrack_.find(key, hash_hint ? *hash_hint : conntrack_.hash(key), now_ms);
  // Another node's flow whose VIP moved here: its backend speaks first.
  if (r == nullptr && config_.flow_sync != nullptr && config_.flow_sync->findReply(key, &shared_)) {
    if (FlowEntry* f = adopt(shared_, snap, now_ms)) r = conntrack_.at(f->peer);
  }
  if (r == nullptr || r->peer == kNoPeer) {
    ++stats_.nat_reply_unknown;  // not ours: maybe the node's own connection
    Action a = pass();
    a.reason = DropReason::kNatReplyNoFlow;
    return a;
  }
  FlowEntry& f = *conntrack_.at(r->peer);
  const IpAddr client = IpAddr{f.key.src};
  const IpAddr vip = IpAddr{f.key.dst};
  Action a;
  a.reply = true;
  a.backend = f.backend;
  a.service = snap.findService(vip, f.key.dport, f.key.proto);
  const uint8_t before = f.flags;
  f.flags |= kFlowAnswered;
  if (a.service >= 0) {
    track(f, snap.services[static_cast<size_t>(a.service)], t.proto, p.tcp_flags, false, now_ms);
  } else {
    f.last_seen_ms = now_ms;  // service being removed: keep the flow alive
  }
  if (f.flags & kFlowVipSnat) shareFlow(f, before, snap);
  if (f.flags & kFlowProxyV2) proxyReply(frame, p, f, *r);
  rewriteFlow(frame, p.outer, t, vip, f.key.dport, client, f.key.sport);
  return transmit(frame, client, Path::kAny, a);
}

Action Forwarder::processFromKernel(uint8_t* frame, size_t len, const Snapshot& snap,
                                    uint32_t now_ms, size_t capacity) {
  capacity_ = capacity != 0 ? capacity : len;
  ParsedPacket& p = pkt_;
  const ParseOutcome o = parsePacket(frame, len, p);
  if (o.status == ParseStatus::kMalformed) return drop(o.reason);
  if (o.status != ParseStatus::kOk) return drop(DropReason::kKernelReplyNoFlow);
  if (p.icmp_error) return kernelIcmpError(frame, p, snap, now_ms);
  FlowTuple& t = p.tuple;
  if ((t.proto != kProtoTCP && t.proto != kProtoUDP) || !p.outer.has_l4) {
    return drop(DropReason::kKernelReplyNoFlow);
  }
  const FlowKey key = makeFlowKey(t, FlowKind::kKernelReply);
  FlowEntry* r = conntrack_.find(key, conntrack_.hash(key), now_ms);
  // The kernel picks the reply's queue by its own flow table, not by ours.
  if (r == nullptr || r->peer == kNoPeer) return notHere(DropReason::kKernelReplyNoFlow);
  FlowEntry& f = *conntrack_.at(r->peer);
  const IpAddr client{f.key.src};
  const IpAddr vip{f.key.dst};
  Action a;
  a.reply = true;
  a.backend = f.backend;
  a.service = snap.findService(vip, f.key.dport, f.key.proto);
  f.flags |= kFlowAnswered;
  if (a.service >= 0) {
    track(f, snap.services[static_cast<size_t>(a.service)], t.proto, p.tcp_flags, false, now_ms);
  } else {
    f.last_seen_ms = now_ms;
  }
  if (f.flags & kFlowProxyV2) proxyReply(frame, p, f, *r);
  // The kernel has undone its own source NAT: the packet goes to the client
  // already; it must come from the VIP.
  rewriteFlow(frame, p.outer, t, vip, f.key.dport, client, f.key.sport);
  ++stats_.from_kernel;
  Action out = transmit(frame, client, Path::kAny, a);
  out.l3 = static_cast<uint16_t>(p.outer.l3);
  return out;
}

}  // namespace flowlb::agent

// The forwarding decision: from a received frame and the worker's tables to
// an action (transmit on an interface after rewriting the frame in place,
// hand it to the kernel, or drop with a reason). Conntrack first, Maglev
// second (rules 4-6 of docs/architecture.md); session affinity and source ranges per
// service. A backend the datapath cannot reach itself (a pod on this node, a
// backend behind an overlay, a local address) is reached through the kernel
// (rule 9): the flow's packets are handed to it with only the destination
// rewritten, and its replies come back out of the kernel to
// processFromKernel().
// One Forwarder per worker: it owns its conntrack and fragment tables and
// shares nothing; it never allocates, locks or blocks.
#pragma once

#include <array>
#include <cstdint>
#include <memory>

#include "agent/lb/conntrack.h"
#include "agent/lb/flow_export_ring.h"
#include "agent/lb/flow_sync_table.h"
#include "agent/lb/fragment_table.h"
#include "agent/lb/next_hop.h"
#include "agent/lb/snapshot.h"
#include "agent/packet/packet.h"
#include "agent/packet/parser.h"

namespace flowlb::agent {

enum class ActionKind : uint8_t {
  kTransmit,  // on the AF_XDP socket of `ifindex`
  kPass,      // to the kernel through the exception path, as `handoff` says
  kDrop,
  kHandOff,  // to the worker `worker`, which holds (or may hold) its flow
};

// Why and how a frame goes to the kernel.
enum class KernelHandoff : uint8_t {
  kUnclaimed,  // no service of ours: as if the XDP program had passed it
  kRouted,     // ours, rewritten; its destination is behind a device we do not own
  kFlowSnat,   // a NAT flow to a backend behind the kernel; the kernel source-NATs it
  kFlowKeep,   // the same with the client's address kept (externalTrafficPolicy: Local)
  kCount,
};
const char* kernelHandoffName(KernelHandoff h);

struct Action {
  ActionKind kind = ActionKind::kPass;
  KernelHandoff handoff = KernelHandoff::kUnclaimed;  // when kPass
  DropReason reason = DropReason::kNone;
  uint32_t ifindex = 0;   // egress interface when kTransmit
  int32_t service = -1;   // index into Snapshot::services, when known
  uint32_t backend = 0;   // backend id, when known
  bool new_flow = false;  // this packet created a conntrack entry
  bool reply = false;     // a NAT reply translated back towards the client
  uint16_t l3 = 0;        // kPass: where the IP packet starts in the frame (0: not IP)
  uint32_t len = 0;       // the frame's new length when the decision changed it, else 0
  uint32_t worker = 0;    // kHandOff: the worker to hand the frame to
};

struct ForwarderConfig {
  size_t conntrack_entries = 1 << 20;
  uint64_t conntrack_seed = 0x6a09e667f3bcc908ULL;
  size_t fragment_entries = 4096;
  // This worker among `workers` (one per receive queue): it source-NATs
  // on the ports it owns (agent/lb/snat_ports.h) and hands a reply to
  // another worker's port to that worker (ActionKind::kHandOff).
  uint32_t worker = 0;
  uint32_t workers = 1;
  uint32_t snat_port_attempts = 64;
  // Backends behind the kernel are reached through the exception path;
  // off: they are dropped (reason kernel_path_disabled).
  bool kernel_path = true;
  // Flow sync (docs/flow-sync.md), with SnatConfig::vip_source: the flows
  // other LB nodes shared, adopted on a conntrack miss (null: none), and
  // where this worker shares its own (null: it does not).
  const FlowSyncTable* flow_sync = nullptr;
  FlowExportRing* flow_export = nullptr;
};

struct ForwarderStats {
  std::array<uint64_t, static_cast<size_t>(DropReason::kCount)> drops{};
  uint64_t transmitted = 0;
  uint64_t passed = 0;
  uint64_t new_flows = 0;
  uint64_t prev_table_hits = 0;        // mid-flow packets placed by the previous table
  uint64_t rerouted_backend_gone = 0;  // tracked flow whose backend left the set
  uint64_t icmp_errors_forwarded = 0;
  uint64_t nat_reply_unknown = 0;    // passed to the kernel
  uint64_t from_kernel = 0;          // replies that came back out of the kernel, translated
  uint64_t routed_unresolved = 0;    // complete, neighbour unknown: the kernel resolved and sent it
  uint64_t kernel_tuple_reused = 0;  // a closing flow via another VIP gave way to a new one
  uint64_t handed_off = 0;           // frames for another worker (ActionKind::kHandOff)
  uint64_t flows_adopted = 0;        // another node's flows taken over (flow sync)
  uint64_t flow_exports = 0;         // records shared (flow sync)
  uint64_t flow_export_dropped = 0;  // ... refused by a full ring
};

class Forwarder {
 public:
  Forwarder(const ForwarderConfig& config, const NextHopTable& next_hops);
  // With a conntrack table made elsewhere (e.g. one adopted from a file that
  // outlived the previous agent); config.conntrack_* is then unused.
  Forwarder(const ForwarderConfig& config, const NextHopTable& next_hops,
            std::unique_ptr<ConnTrack> conntrack);

  // `capacity`: the bytes the frame may grow to (a PROXY protocol header is
  // inserted in place); 0: its length.
  Action process(uint8_t* frame, size_t len, const Snapshot& snap, uint32_t now_ms,
                 size_t capacity = 0);
  // A packet that came back out of the kernel's exception path (in a frame
  // with an Ethernet header): the reply of a flow this forwarder sent
  // through the kernel, translated back to come from the VIP. Anything else
  // is dropped (reason kernel_reply_no_flow), never handed back.
  Action processFromKernel(uint8_t* frame, size_t len, const Snapshot& snap, uint32_t now_ms,
                           size_t capacity = 0);

  // A batch of received frames, decided in order with the same result as
  // process() on each. Conntrack lines are prefetched a few frames ahead,
  // so their cache misses overlap instead of queueing one behind another.
  struct Frame {
    uint8_t* data;
    size_t len;
    size_t capacity = 0;  // 0: len
  };
  static constexpr size_t kMaxBatch = 8;  // the pipeline's ring, not a limit on n
  void processBatch(const Frame* frames, size_t n, const Snapshot& snap, uint32_t now_ms,
                    Action* actions);

  // A frame another worker handed over (kHandOff): first received by worker
  // `origin`, from the NIC or (`from_kernel`) out of the exception path.
  // Decided like process()/processFromKernel(); a frame whose flow this
  // worker does not hold either goes on to the next worker or, once every
  // worker has seen it, is dropped with the reason of a flow not found.
  Action processHandedOff(uint8_t* frame, size_t len, const Snapshot& snap, uint32_t now_ms,
                          size_t capacity, uint32_t origin, bool from_kernel);

  ConnTrack& conntrack() { return conntrack_; }
  const ForwarderStats& stats() const { return stats_; }
  const FragmentTable& fragments() const { return fragments_; }

 private:
  Action drop(DropReason r, int32_t service = -1);
  Action pass();
  Action handOff(uint32_t worker);
  bool owns(uint16_t snat_port) const;
  // A flow this worker does not hold that another worker may (a queue's
  // RSS hash is not the worker's): the next worker, or `r` when the frame
  // has been round every worker.
  Action notHere(DropReason r, int32_t service = -1);
  // Where a rewritten frame may go: anywhere (the kernel routes what we
  // cannot reach), only to an on-link neighbour (DSR), or only out of our
  // own interfaces (a flow source-NATed to this node's address).
  enum class Path : uint8_t { kAny, kOnLink, kOwnInterfaces };
  Action transmit(uint8_t* frame, const IpAddr& toward, Path path, Action a);
  Action kernelIcmpError(uint8_t* frame, ParsedPacket& p, const Snapshot& snap, uint32_t now_ms);
  // The forward entry of the flow an ICMP error quotes a packet of: the
  // quoted tuple, reversed, is that flow's `kind` entry. Null when none.
  const FlowEntry* quotedFlow(const FlowTuple& quoted, FlowKind kind, uint32_t now_ms);
  // An ICMP error about flow `f` on its way back to f's client.
  Action errorToClient(const FlowEntry& f, const Snapshot& snap);
  // PROXY protocol v2, client to backend: records the sequence origin on a
  // SYN, inserts the header at it, moves later segments; UDP: a header in
  // each datagram. kNone when the packet may go on, else the drop reason.
  DropReason proxyForward(uint8_t* frame, ParsedPacket& p, FlowEntry& e, bool new_flow, Action* a);
  // Backend to client: acknowledgements and SACK back, the MSS lowered.
  void proxyReply(uint8_t* frame, const ParsedPacket& p, FlowEntry& forward, FlowEntry& reply);
  // `hash_hint`: the conntrack hash of the packet's key when the batch path
  // already computed it, else nullptr.
  Action toService(uint8_t* frame, ParsedPacket& p, const Snapshot& snap, int32_t si,
                   uint32_t now_ms, const uint64_t* hash_hint);
  Action natReply(uint8_t* frame, ParsedPacket& p, const Snapshot& snap, uint32_t now_ms,
                  const uint64_t* hash_hint);
  Action icmpError(uint8_t* frame, ParsedPacket& p, const Snapshot& snap, uint32_t now_ms);
  const BackendRuntime* choose(const ServiceRuntime& svc, const Snapshot& snap, const FlowTuple& t,
                               bool opens_flow, uint32_t now_ms);
  // `vip`: the flow is source-NATed to its VIP (vipSourced), else to the node.
  bool allocateSnatPort(const Snapshot& snap, const BackendRuntime& b, const FlowTuple& t, bool vip,
                        uint32_t now_ms, uint16_t* port, FlowKey* reply_key, uint64_t* reply_hash);
  void track(FlowEntry& e, const ServiceRuntime& svc, uint8_t proto, uint8_t tcp_flags,
             bool from_client, uint32_t now_ms);
  // A NAT reply to a VIP (SnatConfig::vip_source): a destination port in
  // the SNAT range that is no service's.
  bool isVipSnatReply(const Snapshot& snap, const FlowTuple& t) const;
  // Whether the service's NAT flows are source-NATed to its VIP.
  static bool vipSourced(const Snapshot& snap, const ServiceRuntime& svc) {
    return snap.snat.vip_source && !svc.spec.announced_by_bgp;
  }
  // Flow sync: takes over another node's flow as the record has it (same
  // backend, same SNAT port); its forward entry, or nullptr when it cannot
  // (service or backend gone, the port taken here).
  FlowEntry* adopt(const FlowRecord& rec, const Snapshot& snap, uint32_t now_ms);
  // Shares a VIP-sourced flow that was just answered (upsert) or closed
  // both ways (delete): `before` is its flags before this packet.
  void shareFlow(const FlowEntry& f, uint8_t before, const Snapshot& snap);
  void exportFlow(const FlowEntry& f, FlowRecordOp op, const Snapshot& snap);

  ForwarderConfig config_;
  const NextHopTable& next_hops_;
  std::unique_ptr<ConnTrack> conntrack_owned_;
  ConnTrack& conntrack_;
  FragmentTable fragments_;
  ForwarderStats stats_;
  Action decide(uint8_t* frame, ParseOutcome parsed, ParsedPacket& p, const Snapshot& snap,
                uint32_t now_ms, const uint64_t* hash_hint = nullptr);
  // The conntrack key a parsed TCP/UDP packet will be looked up by.
  bool lookupKey(const ParsedPacket& p, const Snapshot& snap, FlowKey* key) const;

  uint32_t origin_ = 0;  // the worker that received the frame being decided
  ParsedPacket pkt_;     // scratch, reused for every frame (no per-packet init)
  FlowRecord shared_;    // scratch: a flow sync record looked up
  size_t capacity_ = 0;  // of the frame being decided
  std::array<ParsedPacket, kMaxBatch> batch_;  // processBatch's ring
  std::array<ParseOutcome, kMaxBatch> outcomes_;
};

// Canonical flow hash used for Maglev: the same on every node (rule 3).
uint64_t flowHash(const FlowTuple& t, uint64_t seed);
FlowKey makeFlowKey(const FlowTuple& t, FlowKind kind);

}  // namespace flowlb::agent

// Flow sync in the forwarder (docs/flow-sync.md): NAT flows source-NATed to
// their VIP, shared once answered and when closed, and adopted by another
// node when the VIP moves there (same backend, same SNAT port), whichever
// side speaks first; and what the steering of such a VIP looks like.
#include <gtest/gtest.h>

#include <memory>

#include "agent/control/flow_sync.h"
#include "agent/lb/forwarder.h"
#include "agent/lb/snat_ports.h"
#include "agent/packet/builder.h"
#include "agent/packet/parser.h"
#include "agent/testing/test_specs.h"

namespace flowlb::agent {

// For EXPECT_EQ on tuples (found by argument-dependent lookup).
static bool operator==(const FlowTuple& a, const FlowTuple& b) {
  return a.src == b.src && a.dst == b.dst && a.sport == b.sport && a.dport == b.dport &&
         a.proto == b.proto;
}

namespace {

using test_specs::backend;
using test_specs::ip;

constexpr const char* kVip = "192.0.2.10";
constexpr const char* kClient = "203.0.113.5";

// One LB node: `workers` forwarders sharing one snapshot, a flow sync
// table for other nodes' flows and an export ring per worker.
class Node {
 public:
  Node(uint32_t workers, uint16_t port_min = 40000, uint16_t port_max = 40999, bool bgp = false)
      : sync_(FlowSyncOptions{4096, 4096, 256, 21'600'000, 300'000, 7}, workers) {
    DesiredState state;
    state.generation = 1;
    ServiceSpec web;
    web.name = "web";
    web.vip = ip(kVip);
    web.port = 80;
    web.proto = kProtoTCP;
    web.maglev_size = 251;
    web.backends = {backend("10.1.0.1", 8080), backend("10.1.0.2", 8080)};
    web.announced_by_bgp = bgp;
    ServiceSpec dns = web;
    dns.name = "dns";
    dns.port = 53;
    dns.proto = kProtoUDP;
    dns.backends = {backend("10.1.0.1", 5353)};
    ServiceSpec dsr = web;
    dsr.name = "dsr";
    dsr.vip = ip("192.0.2.20");
    dsr.mode = ForwardingMode::kDsr;
    dsr.backends = {backend("10.1.0.1", 80)};
    state.services = {web, dns, dsr};
    SnatConfig snat = test_specs::snat();
    snat.vip_source = true;
    snat.port_min = port_min;
    snat.port_max = port_max;
    auto built = builder_.build(state, snat);
    EXPECT_TRUE(built.isOk()) << built.error();
    EXPECT_EQ(built->snapshot->services.size(), 3u);
    snap_ = built->snapshot;
    NextHop hop;
    hop.ifindex = 7;
    hop.resolved = true;
    hops_.setDefault(true, hop);
    hops_.setDefault(false, hop);
    for (uint32_t w = 0; w < workers; ++w) {
      ForwarderConfig c;
      c.conntrack_entries = 4096;
      c.worker = w;
      c.workers = workers;
      c.flow_sync = &sync_.table();
      c.flow_export = sync_.ring(w);
      fwd_.push_back(std::make_unique<Forwarder>(c, hops_));
    }
  }

  Action run(uint32_t w, std::vector<uint8_t>& f) {
    return fwd_[w]->process(f.data(), f.size(), *snap_, 1000);
  }
  Action handed(uint32_t w, std::vector<uint8_t>& f, uint32_t origin) {
    return fwd_[w]->processHandedOff(f.data(), f.size(), *snap_, 1000, f.size(), origin, false);
  }
  Forwarder& worker(uint32_t w) { return *fwd_[w]; }
  FlowSync& sync() { return sync_; }
  const Snapshot& snap() const { return *snap_; }

 private:
  SnapshotBuilder builder_;
  std::shared_ptr<const Snapshot> snap_;
  StaticNextHops hops_;
  FlowSync sync_;
  std::vector<std::unique_ptr<Forwarder>> fwd_;
};

std::vector<uint8_t> frame(const FlowTuple& t, uint8_t flags = kTcpAck) {
  FrameSpec f;
  f.tuple = t;
  f.tcp_flags = flags;
  f.payload = 20;
  return buildFrame(f);
}

FlowTuple tupleOf(const std::vector<uint8_t>& f) {
  ParsedPacket p;
  EXPECT_EQ(parsePacket(f.data(), f.size(), p).status, ParseStatus::kOk);
  return p.tuple;
}

FlowTuple clientTuple(uint16_t client_port, uint8_t proto = kProtoTCP) {
  return FlowTuple{ip(kClient), ip(kVip), client_port,
                   static_cast<uint16_t>(proto == kProtoTCP ? 80 : 53), proto};
}

// Opens a TCP flow on `node`'s worker `w` and has the backend answer it:
// returns the tuple the backend saw.
FlowTuple openAnswered(Node& node, uint32_t w, uint16_t client_port) {
  auto syn = frame(clientTuple(client_port), kTcpSyn);
  EXPECT_EQ(node.run(w, syn).kind, ActionKind::kTransmit);
  const FlowTuple seen = tupleOf(syn);
  auto synack =
      frame(FlowTuple{seen.dst, seen.src, seen.dport, seen.sport, kProtoTCP}, kTcpSyn | kTcpAck);
  const Action a = node.run(w, synack);
  EXPECT_EQ(a.kind, ActionKind::kTransmit);
  EXPECT_TRUE(a.reply);
  return seen;
}

// What `from` shared, relayed to `to` as the controller would.
size_t relay(Node& from, Node& to) {
  size_t n = 0;
  for (const std::string& b : from.sync().collect(1000)) {
    EXPECT_TRUE(to.sync().applyRelayed(b, "from", 1000).isOk());
    n += b.size() / kFlowRecordBytes;
  }
  return n;
}

TEST(FlowSyncForwarder, NatFlowsAreSourcedFromTheVipOnTheSnatPorts) {
  Node a(1);
  const FlowTuple seen = openAnswered(a, 0, 50001);
  EXPECT_EQ(seen.src, ip(kVip));
  EXPECT_GE(seen.sport, 40000);
  EXPECT_LE(seen.sport, 40999);
  EXPECT_EQ(seen.dport, 8080);
}

TEST(FlowSyncForwarder, AnIcmpErrorFromTheBackendsPathReachesTheClientAboutTheVip) {
  // A router between the node and the backend cannot forward the flow's
  // packet VIP:port -> backend (frag needed): the client must learn it
  // about its own packet, client -> VIP:80, or its path MTU never shrinks.
  Node a(1);
  const FlowTuple seen = openAnswered(a, 0, 50001);
  auto quoted = frame(seen);
  auto icmp = buildIcmpError(ip("10.1.255.1"), seen.src, 3, 4, quoted, 28);
  const Action act = a.run(0, icmp);
  ASSERT_EQ(act.kind, ActionKind::kTransmit);
  EXPECT_TRUE(act.reply);
  ParsedPacket p;
  ASSERT_EQ(parsePacket(icmp.data(), icmp.size(), p).status, ParseStatus::kOk);
  EXPECT_EQ(p.tuple.dst, ip(kClient));
  EXPECT_EQ(p.tuple.src, ip("10.1.255.1"));  // a router keeps its own address
  EXPECT_EQ(p.inner_tuple, clientTuple(50001));
}

TEST(FlowSyncForwarder, AnIcmpErrorFromTheClientsPathReachesTheBackendAboutWhatItSent) {
  // Frag needed for a reply VIP:80 -> client: the backend sent it as
  // backend -> VIP:SNAT port, and must see it quoted so.
  Node a(1);
  const FlowTuple seen = openAnswered(a, 0, 50001);
  auto reply_as_sent = frame(FlowTuple{ip(kVip), ip(kClient), 80, 50001, kProtoTCP});
  auto icmp = buildIcmpError(ip("198.18.0.1"), ip(kVip), 3, 4, reply_as_sent, 28);
  const Action act = a.run(0, icmp);
  ASSERT_EQ(act.kind, ActionKind::kTransmit);
  ParsedPacket p;
  ASSERT_EQ(parsePacket(icmp.data(), icmp.size(), p).status, ParseStatus::kOk);
  EXPECT_EQ(p.tuple.dst, seen.dst);  // to the backend
  EXPECT_EQ(p.inner_tuple, (FlowTuple{seen.dst, seen.src, seen.dport, seen.sport, kProtoTCP}));
}

TEST(FlowSyncForwarder, ABgpAnnouncedVipKeepsTheNodesSourceAndSharesNothing) {
  // ECMP may carry the reply to another node before the flow is shared.
  Node a(1, 40000, 40999, /*bgp=*/true);
  const FlowTuple seen = openAnswered(a, 0, 50001);
  EXPECT_EQ(seen.src, ip("10.0.0.1"));
  EXPECT_TRUE(a.sync().collect(1000).empty());
  const std::set<SteerKey> keys = steeringKeys(a.snap());
  EXPECT_EQ(keys.count({ip(kVip), 0, kProtoTCP, false}), 1u);
  EXPECT_EQ(keys.count({ip(kVip), 0, kProtoTCP, true}), 0u);
}

TEST(FlowSyncForwarder, AnAnsweredFlowIsSharedOnceAndItsCloseOnce) {
  Node a(1);
  auto syn = frame(clientTuple(50001), kTcpSyn);
  ASSERT_EQ(a.run(0, syn).kind, ActionKind::kTransmit);
  EXPECT_TRUE(a.sync().collect(1000).empty()) << "a half-open flow is not shared";
  const FlowTuple seen = tupleOf(syn);
  auto synack =
      frame(FlowTuple{seen.dst, seen.src, seen.dport, seen.sport, kProtoTCP}, kTcpSyn | kTcpAck);
  ASSERT_TRUE(a.run(0, synack).reply);
  auto batches = a.sync().collect(1000);
  ASSERT_EQ(batches.size(), 1u);
  auto recs = decodeFlowRecords(batches[0], 16);
  ASSERT_TRUE(recs);
  ASSERT_EQ(recs->size(), 1u);
  const FlowRecord& r = (*recs)[0];
  EXPECT_EQ(r.op, FlowRecordOp::kUpsert);
  EXPECT_EQ(r.client, ip(kClient));
  EXPECT_EQ(r.client_port, 50001);
  EXPECT_EQ(r.vip, ip(kVip));
  EXPECT_EQ(r.vip_port, 80);
  EXPECT_EQ(r.backend, seen.dst);
  EXPECT_EQ(r.backend_port, 8080);
  EXPECT_EQ(r.nat_port, seen.sport);

  auto ack = frame(clientTuple(50001), kTcpAck);  // more traffic: nothing new to share
  ASSERT_EQ(a.run(0, ack).kind, ActionKind::kTransmit);
  EXPECT_TRUE(a.sync().collect(1000).empty());

  auto fin = frame(clientTuple(50001), kTcpFin | kTcpAck);
  ASSERT_EQ(a.run(0, fin).kind, ActionKind::kTransmit);
  auto fin_back =
      frame(FlowTuple{seen.dst, seen.src, seen.dport, seen.sport, kProtoTCP}, kTcpFin | kTcpAck);
  ASSERT_TRUE(a.run(0, fin_back).reply);
  batches = a.sync().collect(1000);
  ASSERT_EQ(batches.size(), 1u);
  recs = decodeFlowRecords(batches[0], 16);
  ASSERT_TRUE(recs);
  ASSERT_EQ(recs->size(), 1u);
  EXPECT_EQ((*recs)[0].op, FlowRecordOp::kDelete);
  EXPECT_EQ(a.worker(0).stats().flow_exports, 2u);
}

TEST(FlowSyncForwarder, TheNewNodeAdoptsAMidFlowClientPacketWithTheSameBackendAndPort) {
  Node a(1), b(1);
  const FlowTuple seen = openAnswered(a, 0, 50001);
  ASSERT_EQ(relay(a, b), 1u);
  auto data = frame(clientTuple(50001), kTcpAck);
  const Action act = b.run(0, data);
  ASSERT_EQ(act.kind, ActionKind::kTransmit);
  EXPECT_FALSE(act.new_flow);
  EXPECT_EQ(tupleOf(data), seen) << "same source VIP:port, same backend";
  EXPECT_EQ(b.worker(0).stats().flows_adopted, 1u);
  // The backend's answer on the new node goes back to the client.
  auto back = frame(FlowTuple{seen.dst, seen.src, seen.dport, seen.sport, kProtoTCP}, kTcpAck);
  const Action r = b.run(0, back);
  ASSERT_EQ(r.kind, ActionKind::kTransmit);
  EXPECT_TRUE(r.reply);
  EXPECT_EQ(tupleOf(back), (FlowTuple{ip(kVip), ip(kClient), 80, 50001, kProtoTCP}));
  EXPECT_EQ(b.worker(0).stats().flows_adopted, 1u) << "adopted once";
  // Shared again by its new carrier (for a later dump), once.
  auto again = b.sync().collect(1000);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].size(), kFlowRecordBytes);
  EXPECT_EQ(b.sync().dump(1000).size(), 1u);
}

TEST(FlowSyncForwarder, TheNewNodeAdoptsWhenTheBackendSpeaksFirst) {
  Node a(1), b(1);
  const FlowTuple seen = openAnswered(a, 0, 50001);
  relay(a, b);
  auto back = frame(FlowTuple{seen.dst, seen.src, seen.dport, seen.sport, kProtoTCP}, kTcpAck);
  const Action r = b.run(0, back);
  ASSERT_EQ(r.kind, ActionKind::kTransmit);
  EXPECT_TRUE(r.reply);
  EXPECT_EQ(tupleOf(back), (FlowTuple{ip(kVip), ip(kClient), 80, 50001, kProtoTCP}));
  EXPECT_EQ(b.worker(0).stats().flows_adopted, 1u);
}

TEST(FlowSyncForwarder, UdpFlowsMoveToo) {
  Node a(1), b(1);
  auto q = frame(clientTuple(50002, kProtoUDP), 0);
  ASSERT_EQ(a.run(0, q).kind, ActionKind::kTransmit);
  const FlowTuple seen = tupleOf(q);
  auto ans = frame(FlowTuple{seen.dst, seen.src, seen.dport, seen.sport, kProtoUDP}, 0);
  ASSERT_TRUE(a.run(0, ans).reply);
  ASSERT_EQ(relay(a, b), 1u);
  auto q2 = frame(clientTuple(50002, kProtoUDP), 0);
  ASSERT_EQ(b.run(0, q2).kind, ActionKind::kTransmit);
  EXPECT_EQ(tupleOf(q2), seen);
  EXPECT_EQ(b.worker(0).stats().flows_adopted, 1u);
}

TEST(FlowSyncForwarder, OnSeveralWorkersTheOwnerOfTheSnatPortAdopts) {
  Node a(1), b(2);
  const FlowTuple seen = openAnswered(a, 0, 50001);
  relay(a, b);
  const uint32_t owner = snatPortOwner(seen.sport, 2);
  auto data = frame(clientTuple(50001), kTcpAck);
  const Action first = b.run(1 - owner, data);
  ASSERT_EQ(first.kind, ActionKind::kHandOff);
  EXPECT_EQ(first.worker, owner);
  const Action then = b.handed(owner, data, 1 - owner);
  ASSERT_EQ(then.kind, ActionKind::kTransmit);
  EXPECT_EQ(tupleOf(data), seen);
  EXPECT_EQ(b.worker(owner).stats().flows_adopted, 1u);
  EXPECT_EQ(b.worker(1 - owner).stats().flows_adopted, 0u);
}

TEST(FlowSyncForwarder, ASynIsANewFlowNotAnAdoption) {
  Node a(1), b(1);
  openAnswered(a, 0, 50001);
  relay(a, b);
  auto syn = frame(clientTuple(50001), kTcpSyn);
  const Action act = b.run(0, syn);
  ASSERT_EQ(act.kind, ActionKind::kTransmit);
  EXPECT_TRUE(act.new_flow);
  EXPECT_EQ(b.worker(0).stats().flows_adopted, 0u);
}

TEST(FlowSyncForwarder, ANewFlowNeverTakesAPortAnotherNodesFlowHolds) {
  // Two SNAT ports; node A's flow holds one of them towards its backend.
  Node a(1, 40000, 40001), b(1, 40000, 40001);
  const FlowTuple seen = openAnswered(a, 0, 50001);
  relay(a, b);
  // New flows on B to the same backend get the other port, then none is left.
  int to_same_backend = 0;
  for (uint16_t cp = 51000; cp < 51040 && to_same_backend < 3; ++cp) {
    auto syn = frame(clientTuple(cp), kTcpSyn);
    const Action act = b.run(0, syn);
    if (act.kind != ActionKind::kTransmit) {
      EXPECT_EQ(act.reason, DropReason::kSnatPortsExhausted);
      continue;
    }
    const FlowTuple t = tupleOf(syn);
    if (t.dst != seen.dst) continue;
    ++to_same_backend;
    EXPECT_NE(t.sport, seen.sport) << "port held by node A's flow";
  }
  EXPECT_GE(to_same_backend, 1);
}

TEST(FlowSyncForwarder, ARecordNamingAnUnknownBackendIsNotAdopted) {
  Node b(1);
  FlowRecord r;
  r.proto = kProtoTCP;
  r.client = ip(kClient);
  r.vip = ip(kVip);
  r.backend = ip("10.9.9.9");  // not a backend of the service
  r.client_port = 50001;
  r.vip_port = 80;
  r.backend_port = 8080;
  r.nat_port = 40010;
  std::string batch;
  appendFlowRecord(&batch, r);
  ASSERT_TRUE(b.sync().applyRelayed(batch, "rogue", 1000).isOk());
  auto data = frame(clientTuple(50001), kTcpAck);
  b.run(0, data);
  EXPECT_EQ(b.worker(0).stats().flows_adopted, 0u);
  EXPECT_NE(tupleOf(data).dst, ip("10.9.9.9"));
  auto back = frame(FlowTuple{ip("10.9.9.9"), ip(kVip), 8080, 40010, kProtoTCP}, kTcpAck);
  EXPECT_NE(b.run(0, back).kind, ActionKind::kTransmit);
}

TEST(FlowSyncForwarder, ADeleteRemovesTheFlowFromTheOtherNode) {
  Node a(1), b(1);
  const FlowTuple seen = openAnswered(a, 0, 50001);
  relay(a, b);
  EXPECT_EQ(b.sync().table().size(), 1u);
  auto fin = frame(clientTuple(50001), kTcpFin | kTcpAck);
  a.run(0, fin);
  auto fin_back =
      frame(FlowTuple{seen.dst, seen.src, seen.dport, seen.sport, kProtoTCP}, kTcpFin | kTcpAck);
  a.run(0, fin_back);
  ASSERT_EQ(relay(a, b), 1u);
  EXPECT_EQ(b.sync().table().size(), 0u);
  EXPECT_TRUE(b.sync().dump(1000).empty());
  EXPECT_TRUE(a.sync().dump(1000).empty()) << "a closed flow is not dumped";
}

TEST(FlowSyncForwarder, ADumpAlsoCarriesOtherNodesFlowsNobodyCarriesYet) {
  // a's flows reached b and c; a dies; d joins: b's dump gives d a's flows.
  Node a(1), b(1), d(1);
  for (uint16_t cp = 50001; cp <= 50003; ++cp) openAnswered(a, 0, cp);
  ASSERT_EQ(relay(a, b), 3u);
  auto dump = b.sync().dump(1000);
  ASSERT_EQ(dump.size(), 1u);
  EXPECT_EQ(dump[0].size(), 3 * kFlowRecordBytes);
  ASSERT_TRUE(d.sync().applyRelayed(dump[0], "b", 1000).isOk());
  auto data = frame(clientTuple(50002), kTcpAck);
  ASSERT_EQ(d.run(0, data).kind, ActionKind::kTransmit);
  EXPECT_EQ(d.worker(0).stats().flows_adopted, 1u);
}

TEST(FlowSyncForwarder, ADumpHoldsEveryLiveSharedFlow) {
  Node a(1), b(1);
  for (uint16_t cp = 50001; cp <= 50005; ++cp) openAnswered(a, 0, cp);
  a.sync().collect(1000);  // sent before b joined
  auto dump = a.sync().dump(1000);
  ASSERT_EQ(dump.size(), 1u);
  EXPECT_EQ(dump[0].size(), 5 * kFlowRecordBytes);
  ASSERT_TRUE(b.sync().applyRelayed(dump[0], "a", 1000).isOk());
  EXPECT_EQ(b.sync().table().size(), 5u);
}

TEST(FlowSyncForwarder, AMalformedRelayedBatchChangesNothing) {
  Node a(1), b(1);
  openAnswered(a, 0, 50001);
  auto batches = a.sync().collect(1000);
  ASSERT_EQ(batches.size(), 1u);
  std::string bad = batches[0] + batches[0];
  bad[kFlowRecordBytes + 1] = 99;  // second record: not TCP or UDP
  EXPECT_FALSE(b.sync().applyRelayed(bad, "a", 1000).isOk());
  EXPECT_EQ(b.sync().table().size(), 0u);
  EXPECT_EQ(b.sync().counters().batches_refused, 1u);
}

TEST(FlowSyncForwarder, TheVipSteersItsSnatPortsOnlyForNatServices) {
  Node b(1);
  const std::set<SteerKey> keys = steeringKeys(b.snap());
  EXPECT_EQ(keys.count({ip(kVip), 0, kProtoTCP, true}), 1u);
  EXPECT_EQ(keys.count({ip(kVip), 0, kProtoTCP, false}), 0u);
  EXPECT_EQ(keys.count({ip(kVip), 0, kProtoUDP, true}), 1u);
  EXPECT_EQ(keys.count({ip("192.0.2.20"), 0, kProtoTCP, false}), 1u) << "DSR VIP unchanged";
  EXPECT_EQ(keys.count({ip("192.0.2.20"), 0, kProtoTCP, true}), 0u);
}

TEST(FlowSyncTable, ConcurrentReadersNeverSeeATornRecord) {
  FlowSyncTable t(1024, 3, 1'000'000);
  FlowRecord r;
  r.proto = kProtoTCP;
  r.client = ip(kClient);
  r.vip = ip(kVip);
  r.backend = ip("10.1.0.1");
  r.client_port = 50001;
  r.vip_port = 80;
  r.backend_port = 8080;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> seen{0}, torn{0};
  std::thread reader([&] {
    const FlowKey k = forwardKeyOf(r);
    FlowRecord out;
    while (!stop.load()) {
      if (t.findForward(k, &out)) {
        ++seen;
        // Every writer record has proxy_seq == nat_port: a mix of two is torn.
        if (out.proxy_seq != out.nat_port) ++torn;
      }
    }
  });
  for (uint32_t i = 0; i < 200000; ++i) {
    r.nat_port = static_cast<uint16_t>(40000 + i % 1000);
    r.proxy_seq = r.nat_port;
    t.apply(r, 0);
  }
  stop.store(true);
  reader.join();
  EXPECT_GT(seen.load(), 0u);
  EXPECT_EQ(torn.load(), 0u);
  EXPECT_EQ(t.size(), 1u);
}

}  // namespace
}  // namespace flowlb::agent

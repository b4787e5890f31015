#include "agent/lb/forwarder.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "agent/packet/builder.h"
#include "agent/packet/checksum.h"
#include "agent/packet/parser.h"
#include "agent/packet/proxy_protocol.h"
#include "agent/testing/test_specs.h"

namespace flowlb::agent {
namespace {

using test_specs::backend;
using test_specs::ip;

// A node with SNAT 10.0.0.1 / fd00::1 and these services:
//   web   192.0.2.10:80/tcp  NAT, 3 backends :8080
//   dsr   192.0.2.20:80/tcp  DSR, 2 backends :80
//   dns   192.0.2.30:53/udp  NAT, 2 backends
//   web6  2001:db8::10:80/tcp NAT, 2 backends
//   sticky 192.0.2.40:80/tcp NAT, ClientIP affinity, 3 backends
//   admin 192.0.2.50:22/tcp NAT, source range 198.51.100.0/24
class ForwarderTest : public ::testing::Test {
 protected:
  ForwarderTest() {
    state_.generation = 1;
    state_.services = {
        service("web", "192.0.2.10", 80, kProtoTCP, ForwardingMode::kNat,
                {backend("10.1.0.1", 8080), backend("10.1.0.2", 8080), backend("10.1.0.3", 8080)}),
        service("dsr", "192.0.2.20", 80, kProtoTCP, ForwardingMode::kDsr,
                {backend("10.1.0.1", 80), backend("10.1.0.2", 80)}),
        service("dns", "192.0.2.30", 53, kProtoUDP, ForwardingMode::kNat,
                {backend("10.1.0.1", 5353), backend("10.1.0.2", 5353)}),
        service("web6", "2001:db8::10", 80, kProtoTCP, ForwardingMode::kNat,
                {backend("fd00:1::1", 8080), backend("fd00:1::2", 8080)}),
        service("sticky", "192.0.2.40", 80, kProtoTCP, ForwardingMode::kNat,
                {backend("10.1.0.1", 80), backend("10.1.0.2", 80), backend("10.1.0.3", 80)}),
        service("admin", "192.0.2.50", 22, kProtoTCP, ForwardingMode::kNat,
                {backend("10.1.0.1", 22)}),
    };
    state_.services[4].client_ip_affinity = true;
    state_.services[5].source_ranges = {*IpPrefix::parse("198.51.100.0/24")};
    NextHop hop;
    hop.ifindex = 7;
    hop.resolved = true;
    hop.src_mac = {0x02, 0xaa, 0, 0, 0, 1};
    hop.dst_mac = {0x02, 0xbb, 0, 0, 0, 2};
    hops_.setDefault(true, hop);
    hops_.setDefault(false, hop);
    rebuild();
  }

  static ServiceSpec service(const char* name, const char* vip, uint16_t port, uint8_t proto,
                             ForwardingMode mode, std::vector<BackendSpec> backends) {
    ServiceSpec s;
    s.name = name;
    s.vip = ip(vip);
    s.port = port;
    s.proto = proto;
    s.mode = mode;
    s.maglev_size = 251;
    s.backends = std::move(backends);
    return s;
  }

  void rebuild() {
    ++state_.generation;
    auto built = builder_.build(state_, snat_);
    ASSERT_TRUE(built.isOk()) << built.error();
    ASSERT_TRUE(built->errors.empty()) << built->errors[0].message;
    snap_ = built->snapshot;
  }

  static std::vector<uint8_t> tcp(const char* src, uint16_t sport, const char* dst, uint16_t dport,
                                  uint8_t flags) {
    FrameSpec f;
    f.tuple = FlowTuple{ip(src), ip(dst), sport, dport, kProtoTCP};
    f.tcp_flags = flags;
    f.payload = 10;
    return buildFrame(f);
  }
  static std::vector<uint8_t> udp(const char* src, uint16_t sport, const char* dst,
                                  uint16_t dport) {
    FrameSpec f;
    f.tuple = FlowTuple{ip(src), ip(dst), sport, dport, kProtoUDP};
    f.payload = 30;
    return buildFrame(f);
  }

  Action run(std::vector<uint8_t>& frame) {
    return fwd_.process(frame.data(), frame.size(), *snap_, now_ms_);
  }

  // The tuple of a frame as it would leave the node, with checksums verified.
  static FlowTuple sent(const std::vector<uint8_t>& frame) {
    ParsedPacket p;
    EXPECT_EQ(parsePacket(frame.data(), frame.size(), p).status, ParseStatus::kOk);
    if (p.outer.v4) {
      EXPECT_EQ(ipv4HeaderChecksum(frame.data(), p.outer), loadBe16(&frame[p.outer.l3 + 10]));
    }
    if (p.outer.has_l4 && !p.icmp_error && !p.outer.is_fragment) {
      const size_t off = l4ChecksumOffset(p.tuple.proto, p.outer.v4);
      EXPECT_EQ(l4Checksum(frame.data(), p.outer, p.tuple), loadBe16(&frame[p.outer.l4 + off]));
    }
    return p.tuple;
  }

  SnatConfig snat_ = test_specs::snat();
  DesiredState state_;
  SnapshotBuilder builder_;
  std::shared_ptr<const Snapshot> snap_;
  StaticNextHops hops_;
  Forwarder fwd_{ForwarderConfig{.conntrack_entries = 4096}, hops_};
  uint32_t now_ms_ = 1000;
};

TEST_F(ForwarderTest, NewTcpFlowIsNattedToABackendWithValidChecksums) {
  auto f = tcp("203.0.113.5", 40001, "192.0.2.10", 80, kTcpSyn);
  const Action a = run(f);
  ASSERT_EQ(a.kind, ActionKind::kTransmit);
  EXPECT_TRUE(a.new_flow);
  EXPECT_EQ(a.ifindex, 7u);
  const FlowTuple t = sent(f);
  EXPECT_EQ(t.src, ip("10.0.0.1"));
  EXPECT_GE(t.sport, FLOWLB_SNAT_PORT_MIN_DEFAULT);
  EXPECT_LE(t.sport, FLOWLB_SNAT_PORT_MAX_DEFAULT);
  EXPECT_EQ(t.dport, 8080);
  const std::set<IpAddr> backends = {ip("10.1.0.1"), ip("10.1.0.2"), ip("10.1.0.3")};
  EXPECT_TRUE(backends.count(t.dst));
  EXPECT_EQ(f[0], 0x02);
  EXPECT_EQ(f[1], 0xbb);                   // next hop MAC
  EXPECT_EQ(fwd_.conntrack().size(), 2u);  // forward + NAT reply entries
}

TEST_F(ForwarderTest, ReplyIsTranslatedBackToTheClientFromTheVip) {
  auto f = tcp("203.0.113.5", 40001, "192.0.2.10", 80, kTcpSyn);
  ASSERT_EQ(run(f).kind, ActionKind::kTransmit);
  const FlowTuple out = sent(f);
  auto reply = tcp(out.dst.toString().c_str(), out.dport, "10.0.0.1", out.sport, kTcpSyn | kTcpAck);
  const Action a = run(reply);
  ASSERT_EQ(a.kind, ActionKind::kTransmit);
  EXPECT_TRUE(a.reply);
  const FlowTuple back = sent(reply);
  EXPECT_EQ(back.src, ip("192.0.2.10"));
  EXPECT_EQ(back.sport, 80);
  EXPECT_EQ(back.dst, ip("203.0.113.5"));
  EXPECT_EQ(back.dport, 40001);
}

TEST_F(ForwarderTest, EstablishedFlowKeepsItsBackendAcrossTableChanges) {
  auto syn = tcp("203.0.113.5", 40001, "192.0.2.10", 80, kTcpSyn);
  const Action first = run(syn);
  ASSERT_EQ(first.kind, ActionKind::kTransmit);
  // Add two backends: the table changes, the flow must not move.
  state_.services[0].backends.push_back(backend("10.1.0.4", 8080));
  state_.services[0].backends.push_back(backend("10.1.0.5", 8080));
  rebuild();
  for (int i = 0; i < 5; ++i) {
    auto ack = tcp("203.0.113.5", 40001, "192.0.2.10", 80, kTcpAck);
    const Action a = run(ack);
    ASSERT_EQ(a.kind, ActionKind::kTransmit);
    EXPECT_EQ(a.backend, first.backend);
    EXPECT_FALSE(a.new_flow);
  }
}

TEST_F(ForwarderTest, DrainingBackendKeepsItsFlowsButGetsNoNewOnes) {
  std::map<uint32_t, std::vector<uint16_t>> ports_by_backend;
  for (uint16_t p = 1000; p < 1300; ++p) {
    auto syn = tcp("203.0.113.5", p, "192.0.2.10", 80, kTcpSyn);
    ports_by_backend[run(syn).backend].push_back(p);
  }
  ASSERT_EQ(ports_by_backend.size(), 3u);
  state_.services[0].backends[0].state = BackendState::kDraining;
  rebuild();
  const uint32_t draining = snap_->services[0].ids[0];
  ASSERT_TRUE(ports_by_backend.count(draining));
  for (uint16_t p : ports_by_backend[draining]) {
    auto ack = tcp("203.0.113.5", p, "192.0.2.10", 80, kTcpAck);
    EXPECT_EQ(run(ack).backend, draining) << "established flow moved off a draining backend";
  }
  for (uint16_t p = 2000; p < 2300; ++p) {
    auto syn = tcp("203.0.113.5", p, "192.0.2.10", 80, kTcpSyn);
    EXPECT_NE(run(syn).backend, draining) << "new flow sent to a draining backend";
  }
}

TEST_F(ForwarderTest, RemovedBackendsFlowsAreReroutedNotBlackholed) {
  std::map<uint32_t, uint16_t> port_of;
  for (uint16_t p = 1000; p < 1100; ++p) {
    auto syn = tcp("203.0.113.5", p, "192.0.2.10", 80, kTcpSyn);
    port_of[run(syn).backend] = p;
  }
  const uint32_t removed = snap_->services[0].ids[0];
  state_.services[0].backends.erase(state_.services[0].backends.begin());
  rebuild();
  auto ack = tcp("203.0.113.5", port_of[removed], "192.0.2.10", 80, kTcpAck);
  const Action a = run(ack);
  ASSERT_EQ(a.kind, ActionKind::kTransmit);
  EXPECT_NE(a.backend, removed);
  EXPECT_EQ(fwd_.stats().rerouted_backend_gone, 1u);
}

TEST_F(ForwarderTest, MidFlowPacketWithoutStateUsesThePreviousTable) {
  // Another node placed these flows with the old table; this node has no state.
  std::map<uint16_t, uint32_t> old_choice;
  {
    Forwarder other(ForwarderConfig{.conntrack_entries = 4096}, hops_);
    for (uint16_t p = 1000; p < 1400; ++p) {
      auto syn = tcp("203.0.113.5", p, "192.0.2.10", 80, kTcpSyn);
      old_choice[p] = other.process(syn.data(), syn.size(), *snap_, now_ms_).backend;
    }
  }
  state_.services[0].backends.push_back(backend("10.1.0.4", 8080));
  rebuild();
  for (auto [p, b] : old_choice) {
    auto ack = tcp("203.0.113.5", p, "192.0.2.10", 80, kTcpAck);
    EXPECT_EQ(run(ack).backend, b) << "port " << p;
  }
  EXPECT_EQ(fwd_.stats().prev_table_hits, old_choice.size());
}

TEST_F(ForwarderTest, TwoNodesPickTheSameBackendForTheSameFlow) {
  SnapshotBuilder other_builder;
  DesiredState reversed = state_;
  std::reverse(reversed.services[0].backends.begin(), reversed.services[0].backends.end());
  auto other_snap = other_builder.build(reversed, snat_);
  ASSERT_TRUE(other_snap.isOk());
  Forwarder other(ForwarderConfig{.conntrack_entries = 4096}, hops_);
  for (uint16_t p = 1000; p < 1200; ++p) {
    auto a = tcp("203.0.113.9", p, "192.0.2.10", 80, kTcpSyn);
    auto b = a;
    run(a);
    other.process(b.data(), b.size(), *other_snap->snapshot, now_ms_);
    EXPECT_EQ(sent(a).dst, sent(b).dst);
  }
}

TEST_F(ForwarderTest, DsrRewritesOnlyMacs) {
  auto f = tcp("203.0.113.5", 40001, "192.0.2.20", 80, kTcpSyn);
  const auto before = f;
  ASSERT_EQ(run(f).kind, ActionKind::kTransmit);
  EXPECT_TRUE(std::equal(before.begin() + 12, before.end(), f.begin() + 12));
  EXPECT_EQ(f[1], 0xbb);
}

TEST_F(ForwarderTest, DsrToABackendBehindAGatewayIsRefused) {
  NextHop via_gw;
  via_gw.resolved = true;
  via_gw.on_link = false;
  hops_.set(ip("10.1.0.1"), via_gw);
  hops_.set(ip("10.1.0.2"), via_gw);
  auto f = tcp("203.0.113.5", 40001, "192.0.2.20", 80, kTcpSyn);
  const Action a = run(f);
  EXPECT_EQ(a.kind, ActionKind::kDrop);
  EXPECT_EQ(a.reason, DropReason::kDsrBackendNotOnLink);
}

TEST_F(ForwarderTest, UdpAndIpv6FlowsAreNatted) {
  auto u = udp("203.0.113.5", 5000, "192.0.2.30", 53);
  ASSERT_EQ(run(u).kind, ActionKind::kTransmit);
  EXPECT_EQ(sent(u).dport, 5353);
  auto v6 = tcp("2001:db8:ffff::5", 40001, "2001:db8::10", 80, kTcpSyn);
  ASSERT_EQ(run(v6).kind, ActionKind::kTransmit);
  const FlowTuple t = sent(v6);
  EXPECT_EQ(t.src, ip("fd00::1"));
  EXPECT_TRUE(t.dst == ip("fd00:1::1") || t.dst == ip("fd00:1::2"));
}

TEST_F(ForwarderTest, ClientIpAffinityPinsAllConnectionsOfAClient) {
  std::set<uint32_t> chosen;
  for (uint16_t p = 1000; p < 1050; ++p) {
    auto syn = tcp("203.0.113.77", p, "192.0.2.40", 80, kTcpSyn);
    chosen.insert(run(syn).backend);
  }
  EXPECT_EQ(chosen.size(), 1u);
  // The pin survives a table change that would move the client's hash.
  state_.services[4].backends.push_back(backend("10.1.0.4", 80));
  state_.services[4].backends.push_back(backend("10.1.0.5", 80));
  rebuild();
  auto syn = tcp("203.0.113.77", 2000, "192.0.2.40", 80, kTcpSyn);
  EXPECT_EQ(run(syn).backend, *chosen.begin());
  // After the affinity timeout (10800 s) the client is placed afresh, still consistently.
  now_ms_ += 10800 * 1000 + 1;
  std::set<uint32_t> later;
  for (uint16_t p = 3000; p < 3020; ++p) {
    auto s = tcp("203.0.113.77", p, "192.0.2.40", 80, kTcpSyn);
    later.insert(run(s).backend);
  }
  EXPECT_EQ(later.size(), 1u);
}

TEST_F(ForwarderTest, SourceRangesAreEnforced) {
  auto denied = tcp("203.0.113.5", 40001, "192.0.2.50", 22, kTcpSyn);
  const Action a = run(denied);
  EXPECT_EQ(a.kind, ActionKind::kDrop);
  EXPECT_EQ(a.reason, DropReason::kSourceRangeDenied);
  auto allowed = tcp("198.51.100.9", 40001, "192.0.2.50", 22, kTcpSyn);
  EXPECT_EQ(run(allowed).kind, ActionKind::kTransmit);
}

TEST_F(ForwarderTest, IcmpFragNeededForATrackedFlowReachesItsBackend) {
  auto syn = tcp("203.0.113.5", 40001, "192.0.2.10", 80, kTcpSyn);
  const Action first = run(syn);
  const FlowTuple out = sent(syn);
  // A router on the client's path cannot forward the VIP's reply: frag needed.
  auto reply_as_sent = tcp("192.0.2.10", 80, "203.0.113.5", 40001, kTcpAck);
  auto icmp = buildIcmpError(ip("198.18.0.1"), ip("192.0.2.10"), 3, 4, reply_as_sent, 28);
  const Action a = run(icmp);
  ASSERT_EQ(a.kind, ActionKind::kTransmit);
  EXPECT_EQ(a.backend, first.backend);
  ParsedPacket p;
  ASSERT_EQ(parsePacket(icmp.data(), icmp.size(), p).status, ParseStatus::kOk);
  EXPECT_EQ(p.tuple.dst, out.dst);        // to the backend
  EXPECT_EQ(p.inner_tuple.src, out.dst);  // quoted as the backend sent it
  EXPECT_EQ(p.inner_tuple.sport, out.dport);
  EXPECT_EQ(p.inner_tuple.dst, ip("10.0.0.1"));
  EXPECT_EQ(p.inner_tuple.dport, out.sport);
  EXPECT_EQ(l4Checksum(icmp.data(), p.outer, p.tuple), loadBe16(&icmp[p.outer.l4 + 2]));
  EXPECT_EQ(ipv4HeaderChecksum(icmp.data(), p.inner), loadBe16(&icmp[p.inner.l3 + 10]));
}

TEST_F(ForwarderTest, IcmpErrorForAnUnknownFlowIsDropped) {
  auto reply_as_sent = tcp("192.0.2.10", 80, "203.0.113.5", 40999, kTcpAck);
  auto icmp = buildIcmpError(ip("198.18.0.1"), ip("192.0.2.10"), 3, 4, reply_as_sent, 28);
  const Action a = run(icmp);
  EXPECT_EQ(a.kind, ActionKind::kDrop);
  EXPECT_EQ(a.reason, DropReason::kIcmpNoFlow);
}

TEST_F(ForwarderTest, FragmentsFollowTheirFirstFragment) {
  FrameSpec spec;
  spec.tuple = FlowTuple{ip("203.0.113.5"), ip("192.0.2.30"), 5000, 53, kProtoUDP};
  spec.payload = 400;
  auto frags = fragmentIpv4(buildFrame(spec), 200);
  const Action a = run(frags[0]);
  ASSERT_EQ(a.kind, ActionKind::kTransmit);
  const Action b = run(frags[1]);
  ASSERT_EQ(b.kind, ActionKind::kTransmit);
  EXPECT_EQ(b.backend, a.backend);
  EXPECT_EQ(sent(frags[1]).dst, sent(frags[0]).dst);
  // A later fragment whose first was never seen is dropped, not guessed.
  spec.tuple.sport = 6000;
  spec.ipv4_id = 0x4321;
  auto orphan = fragmentIpv4(buildFrame(spec), 200)[1];
  const Action c = run(orphan);
  EXPECT_EQ(c.kind, ActionKind::kDrop);
  EXPECT_EQ(c.reason, DropReason::kFragmentUnknownFlow);
}

TEST_F(ForwarderTest, GarbageIsDroppedWithAReasonAndOtherTrafficPasses) {
  std::vector<uint8_t> runt(10, 0xff);
  EXPECT_EQ(run(runt).reason, DropReason::kTruncatedL2);
  auto f = tcp("203.0.113.5", 40001, "192.0.2.10", 80, kTcpSyn);
  f.resize(40);  // IP header claims more than is there
  EXPECT_EQ(run(f).kind, ActionKind::kDrop);
  auto other = tcp("203.0.113.5", 40001, "10.0.0.1", 22, kTcpSyn);  // the node's own SSH
  EXPECT_EQ(run(other).kind, ActionKind::kPass);
  auto no_vip = tcp("203.0.113.5", 40001, "192.0.2.10", 81, kTcpSyn);
  EXPECT_EQ(run(no_vip).kind, ActionKind::kPass);
  EXPECT_GE(fwd_.stats().drops[static_cast<size_t>(DropReason::kTruncatedL2)], 1u);
}

TEST_F(ForwarderTest, NoActiveBackendIsADropWithReason) {
  for (auto& b : state_.services[0].backends) b.state = BackendState::kDraining;
  rebuild();
  auto syn = tcp("203.0.113.5", 40001, "192.0.2.10", 80, kTcpSyn);
  const Action a = run(syn);
  EXPECT_EQ(a.kind, ActionKind::kDrop);
  EXPECT_EQ(a.reason, DropReason::kNoBackend);
}

// A neighbour not resolved yet (first contact, or its entry expired): the
// finished frame goes to the kernel, which holds it while it resolves the
// address, instead of costing the client a SYN retransmission.
TEST_F(ForwarderTest, AFrameForAnUnresolvedNeighbourIsRoutedByTheKernel) {
  NextHop pending;
  pending.resolved = false;
  pending.on_link = true;
  pending.ifindex = 7;
  for (const char* b : {"10.1.0.1", "10.1.0.2", "10.1.0.3"}) hops_.set(ip(b), pending);
  auto syn = tcp("203.0.113.5", 40001, "192.0.2.10", 80, kTcpSyn);
  const Action a = run(syn);
  ASSERT_EQ(a.kind, ActionKind::kPass);
  EXPECT_EQ(a.handoff, KernelHandoff::kRouted);
  EXPECT_NE(a.backend, 0u);
  const FlowTuple t = sent(syn);  // fully translated, checksums verified
  EXPECT_EQ(t.src, ip("10.0.0.1"));
  EXPECT_EQ(snap_->backend(a.backend)->addr, t.dst);
  EXPECT_EQ(t.dport, 8080);
  EXPECT_EQ(fwd_.stats().routed_unresolved, 1u);

  // The flow is tracked as any other: once resolved, its packets go direct.
  NextHop hop;
  hop.ifindex = 7;
  hop.resolved = true;
  hop.on_link = true;
  for (const char* b : {"10.1.0.1", "10.1.0.2", "10.1.0.3"}) hops_.set(ip(b), hop);
  auto ack = tcp("203.0.113.5", 40001, "192.0.2.10", 80, kTcpAck);
  const Action next = run(ack);
  EXPECT_EQ(next.kind, ActionKind::kTransmit);
  EXPECT_EQ(next.backend, a.backend);
  EXPECT_EQ(sent(ack).sport, t.sport);
}

// Where the kernel cannot help, the drop names the reason and the backend:
// DSR (the kernel would deliver the VIP to itself) and the kernel path off.
TEST_F(ForwarderTest, UnresolvedNeighbourWithoutTheKernelPathIsDroppedWithTheBackend) {
  NextHop pending;
  pending.resolved = false;
  pending.on_link = true;
  pending.ifindex = 7;
  for (const char* b : {"10.1.0.1", "10.1.0.2", "10.1.0.3"}) hops_.set(ip(b), pending);
  auto dsr = tcp("203.0.113.5", 40001, "192.0.2.20", 80, kTcpSyn);
  Action a = run(dsr);
  EXPECT_EQ(a.kind, ActionKind::kDrop);
  EXPECT_EQ(a.reason, DropReason::kNeighborUnresolved);
  EXPECT_NE(a.backend, 0u);

  Forwarder off(ForwarderConfig{.conntrack_entries = 4096, .kernel_path = false}, hops_);
  auto syn = tcp("203.0.113.5", 40001, "192.0.2.10", 80, kTcpSyn);
  a = off.process(syn.data(), syn.size(), *snap_, now_ms_);
  EXPECT_EQ(a.kind, ActionKind::kDrop);
  EXPECT_EQ(a.reason, DropReason::kNeighborUnresolved);
  EXPECT_NE(a.backend, 0u);
}

TEST_F(ForwarderTest, ClosedTupleReusedBySynStartsANewFlow) {
  auto syn = tcp("203.0.113.5", 40001, "192.0.2.10", 80, kTcpSyn);
  run(syn);
  auto fin = tcp("203.0.113.5", 40001, "192.0.2.10", 80, kTcpFin | kTcpAck);
  run(fin);
  auto again = tcp("203.0.113.5", 40001, "192.0.2.10", 80, kTcpSyn);
  EXPECT_TRUE(run(again).new_flow);
}

TEST_F(ForwarderTest, IdleFlowsExpireAndAreSwept) {
  auto u = udp("203.0.113.5", 5000, "192.0.2.30", 53);
  run(u);
  EXPECT_EQ(fwd_.conntrack().size(), 2u);
  EXPECT_EQ(fwd_.conntrack().sweep(now_ms_ + 60'000, 1 << 20), 0u);
  EXPECT_EQ(fwd_.conntrack().sweep(now_ms_ + 60'001, 1 << 20), 2u);
  EXPECT_EQ(fwd_.conntrack().size(), 0u);
}

}  // namespace
}  // namespace flowlb::agent

namespace flowlb::agent {
namespace {

TEST_F(ForwarderTest, BatchGivesTheSameVerdictsAndFramesAsOneByOne) {
  // A mixed batch: new flows, their repeats, a reply, UDP, IPv6, garbage, a
  // non-VIP packet and a denied source; twice, so the second round hits state.
  std::vector<std::vector<uint8_t>> frames;
  for (uint16_t p = 1000; p < 1020; ++p)
    frames.push_back(tcp("203.0.113.5", p, "192.0.2.10", 80, kTcpSyn));
  frames.push_back(udp("203.0.113.5", 5000, "192.0.2.30", 53));
  frames.push_back(tcp("2001:db8:ffff::5", 40001, "2001:db8::10", 80, kTcpSyn));
  frames.push_back(std::vector<uint8_t>(10, 0xff));
  frames.push_back(tcp("203.0.113.5", 40001, "10.0.0.1", 22, kTcpSyn));
  frames.push_back(tcp("203.0.113.5", 40001, "192.0.2.50", 22, kTcpSyn));
  for (uint16_t p = 1000; p < 1020; ++p)
    frames.push_back(tcp("203.0.113.5", p, "192.0.2.10", 80, kTcpAck));

  Forwarder batched(ForwarderConfig{.conntrack_entries = 4096}, hops_);
  for (int round = 0; round < 2; ++round) {
    auto one = frames;
    auto many = frames;
    std::vector<Forwarder::Frame> views;
    for (auto& f : many) views.push_back({f.data(), f.size()});
    std::vector<Action> actions(views.size());
    batched.processBatch(views.data(), views.size(), *snap_, now_ms_, actions.data());
    for (size_t i = 0; i < one.size(); ++i) {
      const Action a = run(one[i]);
      EXPECT_EQ(a.kind, actions[i].kind) << "frame " << i;
      EXPECT_EQ(a.reason, actions[i].reason) << "frame " << i;
      EXPECT_EQ(a.backend, actions[i].backend) << "frame " << i;
      EXPECT_EQ(a.new_flow, actions[i].new_flow) << "frame " << i;
      EXPECT_EQ(one[i], many[i]) << "frame " << i;
    }
  }
}

}  // namespace
}  // namespace flowlb::agent

namespace flowlb::agent {
namespace {

// Backends the datapath cannot reach itself (a pod behind a veth on this
// node, a pod behind an overlay): the kernel exception path (issue 11).
class KernelPathTest : public ForwarderTest {
 protected:
  KernelPathTest() {
    NextHop kernel;
    kernel.kernel = true;
    for (const char* b : {"10.1.0.1", "10.1.0.2", "10.1.0.3", "fd00:1::1", "fd00:1::2"}) {
      hops_.set(ip(b), kernel);
    }
  }
  Action fromKernel(std::vector<uint8_t>& frame) {
    return fwd_.processFromKernel(frame.data(), frame.size(), *snap_, now_ms_);
  }
};

TEST_F(KernelPathTest, ANatFlowToABackendBehindTheKernelRewritesOnlyItsDestination) {
  auto syn = tcp("203.0.113.5", 40001, "192.0.2.10", 80, kTcpSyn);
  const Action a = run(syn);
  ASSERT_EQ(a.kind, ActionKind::kPass);
  EXPECT_EQ(a.handoff, KernelHandoff::kFlowSnat);
  EXPECT_TRUE(a.new_flow);
  const FlowTuple t = sent(syn);  // checksums verified
  EXPECT_EQ(t.src, ip("203.0.113.5"));
  EXPECT_EQ(t.sport, 40001);
  EXPECT_EQ(t.dport, 8080);
  EXPECT_EQ(snap_->backend(a.backend)->addr, t.dst);

  // The backend's answer comes back out of the kernel (its own source NAT
  // undone): it must reach the client from the VIP.
  FrameSpec reply;
  reply.tuple = FlowTuple{t.dst, ip("203.0.113.5"), 8080, 40001, kProtoTCP};
  reply.tcp_flags = kTcpSyn | kTcpAck;
  auto r = buildFrame(reply);
  const Action ra = fromKernel(r);
  ASSERT_EQ(ra.kind, ActionKind::kTransmit);
  EXPECT_TRUE(ra.reply);
  const FlowTuple rt = sent(r);
  EXPECT_EQ(rt.src, ip("192.0.2.10"));
  EXPECT_EQ(rt.sport, 80);
  EXPECT_EQ(rt.dst, ip("203.0.113.5"));
  EXPECT_EQ(rt.dport, 40001);
  EXPECT_EQ(fwd_.stats().from_kernel, 1u);

  // Later packets of the flow take the same path to the same backend.
  auto ack = tcp("203.0.113.5", 40001, "192.0.2.10", 80, kTcpAck);
  const Action aa = run(ack);
  EXPECT_EQ(aa.kind, ActionKind::kPass);
  EXPECT_EQ(aa.backend, a.backend);
  EXPECT_FALSE(aa.new_flow);
}

TEST_F(KernelPathTest, ExternalTrafficPolicyLocalKeepsTheClientAddress) {
  state_.services[0].keep_client_address = true;
  state_.services[3].keep_client_address = true;
  rebuild();
  for (const auto& [client, vip] :
       {std::pair{"203.0.113.5", "192.0.2.10"}, std::pair{"2001:db8:1::5", "2001:db8::10"}}) {
    auto syn = tcp(client, 40002, vip, 80, kTcpSyn);
    const Action a = run(syn);
    ASSERT_EQ(a.kind, ActionKind::kPass) << client;
    EXPECT_EQ(a.handoff, KernelHandoff::kFlowKeep) << client;
    EXPECT_EQ(sent(syn).src, ip(client));
  }
}

// Two VIPs share a backend reached through the kernel, and the client keeps
// its address (Local): one client address:port can be one flow at the
// backend only. A live or half-closed flow keeps it; one closed both ways
// gives way to the client's next connection, which its kernel may give the
// same port.
TEST_F(KernelPathTest, AClosingFlowViaAnotherVipGivesItsTupleToANewConnection) {
  state_.services[0].backends = {backend("10.1.0.1", 8080)};
  state_.services[0].keep_client_address = true;
  ServiceSpec other = service("web-b", "192.0.2.11", 80, kProtoTCP, ForwardingMode::kNat,
                              {backend("10.1.0.1", 8080)});
  other.keep_client_address = true;
  state_.services.push_back(other);
  rebuild();

  auto syn_a = tcp("203.0.113.5", 40003, "192.0.2.10", 80, kTcpSyn);
  ASSERT_EQ(run(syn_a).kind, ActionKind::kPass);
  auto syn_b = tcp("203.0.113.5", 40003, "192.0.2.11", 80, kTcpSyn);
  Action b = run(syn_b);
  EXPECT_EQ(b.kind, ActionKind::kDrop);
  EXPECT_EQ(b.reason, DropReason::kKernelTupleInUse);

  // Half closed (the client's FIN): the backend may still be sending.
  now_ms_ += 50;
  auto fin = tcp("203.0.113.5", 40003, "192.0.2.10", 80, kTcpFin | kTcpAck);
  ASSERT_EQ(run(fin).kind, ActionKind::kPass);
  syn_b = tcp("203.0.113.5", 40003, "192.0.2.11", 80, kTcpSyn);
  EXPECT_EQ(run(syn_b).reason, DropReason::kKernelTupleInUse);
  // The backend's FIN, back out of the kernel: closed both ways.
  FrameSpec bfin;
  bfin.tuple = FlowTuple{ip("10.1.0.1"), ip("203.0.113.5"), 8080, 40003, kProtoTCP};
  bfin.tcp_flags = kTcpFin | kTcpAck;
  auto bf = buildFrame(bfin);
  ASSERT_EQ(fromKernel(bf).kind, ActionKind::kTransmit);
  syn_b = tcp("203.0.113.5", 40003, "192.0.2.11", 80, kTcpSyn);
  b = run(syn_b);
  ASSERT_EQ(b.kind, ActionKind::kPass);
  EXPECT_TRUE(b.new_flow);
  EXPECT_EQ(fwd_.stats().kernel_tuple_reused, 1u);

  // The backend's answer now belongs to the new flow: it leaves from its VIP.
  FrameSpec reply;
  reply.tuple = FlowTuple{ip("10.1.0.1"), ip("203.0.113.5"), 8080, 40003, kProtoTCP};
  reply.tcp_flags = kTcpSyn | kTcpAck;
  auto r = buildFrame(reply);
  ASSERT_EQ(fromKernel(r).kind, ActionKind::kTransmit);
  EXPECT_EQ(sent(r).src, ip("192.0.2.11"));
  // A late packet of the old flow cannot take the tuple back.
  auto again = tcp("203.0.113.5", 40003, "192.0.2.10", 80, kTcpAck);
  EXPECT_EQ(run(again).reason, DropReason::kKernelTupleInUse);
}

TEST_F(KernelPathTest, WhatComesBackOutOfTheKernelWithoutAFlowIsDroppedNeverLooped) {
  FrameSpec stray;
  stray.tuple = FlowTuple{ip("10.1.0.1"), ip("203.0.113.5"), 8080, 40009, kProtoTCP};
  auto f = buildFrame(stray);
  const Action a = fromKernel(f);
  EXPECT_EQ(a.kind, ActionKind::kDrop);
  EXPECT_EQ(a.reason, DropReason::kKernelReplyNoFlow);
}

TEST_F(KernelPathTest, AKernelIcmpErrorAboutAFlowIsShownToTheClientAboutTheVip) {
  auto syn = tcp("203.0.113.5", 40003, "192.0.2.10", 80, kTcpSyn);
  const Action a = run(syn);
  ASSERT_EQ(a.kind, ActionKind::kPass);
  // The node reports "fragmentation needed" on the packet as we rewrote it.
  auto err = buildIcmpError(ip("10.0.0.1"), ip("203.0.113.5"), 3, 4, syn, 48);
  const Action ea = fromKernel(err);
  ASSERT_EQ(ea.kind, ActionKind::kTransmit);
  ParsedPacket p;
  ASSERT_EQ(parsePacket(err.data(), err.size(), p).status, ParseStatus::kOk);
  ASSERT_TRUE(p.icmp_error);
  EXPECT_EQ(p.inner_tuple.dst, ip("192.0.2.10"));
  EXPECT_EQ(p.inner_tuple.dport, 80);
  EXPECT_EQ(p.inner_tuple.src, ip("203.0.113.5"));
}

TEST_F(KernelPathTest, DsrCannotReachABackendBehindTheKernel) {
  auto f = tcp("203.0.113.5", 40004, "192.0.2.20", 80, kTcpSyn);
  const Action a = run(f);
  EXPECT_EQ(a.kind, ActionKind::kDrop);
  EXPECT_EQ(a.reason, DropReason::kDsrBackendNotOnLink);
}

TEST_F(KernelPathTest, WithTheKernelPathOffSuchBackendsAreDroppedWithAReason) {
  Forwarder off(ForwarderConfig{.conntrack_entries = 4096, .kernel_path = false}, hops_);
  auto f = tcp("203.0.113.5", 40005, "192.0.2.10", 80, kTcpSyn);
  const Action a = off.process(f.data(), f.size(), *snap_, now_ms_);
  EXPECT_EQ(a.kind, ActionKind::kDrop);
  EXPECT_EQ(a.reason, DropReason::kKernelPathDisabled);
}

TEST_F(KernelPathTest, AReplyToAClientBehindTheKernelIsRoutedByTheKernel) {
  // Backends on our own interfaces, the client behind a device we do not own.
  NextHop direct;
  direct.resolved = true;
  direct.ifindex = 7;
  for (const char* b : {"10.1.0.1", "10.1.0.2", "10.1.0.3"}) hops_.set(ip(b), direct);
  NextHop kernel;
  kernel.kernel = true;
  hops_.set(ip("203.0.113.77"), kernel);
  auto syn = tcp("203.0.113.77", 40006, "192.0.2.10", 80, kTcpSyn);
  ASSERT_EQ(run(syn).kind, ActionKind::kTransmit);
  const FlowTuple t = sent(syn);
  FrameSpec reply;
  reply.tuple = FlowTuple{t.dst, t.src, t.dport, t.sport, kProtoTCP};
  auto r = buildFrame(reply);
  const Action ra = run(r);
  ASSERT_EQ(ra.kind, ActionKind::kPass);
  EXPECT_EQ(ra.handoff, KernelHandoff::kRouted);
  EXPECT_EQ(sent(r).src, ip("192.0.2.10"));
}

// A frame steered to us that no flow or service claims (here a reply to the
// node's own connection from a port in the SNAT range) goes to the kernel.
TEST_F(ForwarderTest, UnclaimedFramesGoToTheKernel) {
  FrameSpec own;
  own.tuple = FlowTuple{ip("10.1.0.9"), ip("10.0.0.1"), 22, 40123, kProtoTCP};
  auto f = buildFrame(own);
  const Action a = run(f);
  EXPECT_EQ(a.kind, ActionKind::kPass);
  EXPECT_EQ(a.handoff, KernelHandoff::kUnclaimed);
}

}  // namespace
}  // namespace flowlb::agent

namespace flowlb::agent {
namespace {

// Issue 15.4: PROXY protocol v2 on a NAT service, through a whole TCP
// exchange: the header in front of the first byte, sequence numbers moved up
// after it, acknowledgements and SACK blocks moved back, the MSS lowered.
class ProxyProtocolTest : public ForwarderTest {
 protected:
  ProxyProtocolTest() {
    ServiceSpec pp = service("pp", "192.0.2.60", 80, kProtoTCP, ForwardingMode::kNat,
                             {backend("10.1.0.1", 8080)});
    pp.proxy_protocol = ProxyProtocol::kV2;
    ServiceSpec ppu = service("ppu", "192.0.2.60", 53, kProtoUDP, ForwardingMode::kNat,
                              {backend("10.1.0.1", 5353)});
    ppu.proxy_protocol = ProxyProtocol::kV2;
    state_.services.push_back(pp);
    state_.services.push_back(ppu);
    rebuild();
  }
  // A client or backend segment, with room to grow.
  std::vector<uint8_t> segment(const FlowTuple& t, uint8_t flags, uint32_t seq, uint32_t ack,
                               size_t payload, std::vector<uint8_t> options = {}) {
    FrameSpec f;
    f.tuple = t;
    f.tcp_flags = flags;
    f.seq = seq;
    f.ack = ack;
    f.payload = payload;
    f.tcp_options = std::move(options);
    auto frame = buildFrame(f);
    if (frame.size() < 60) frame.resize(60, 0);  // Ethernet padding
    return frame;
  }
  Action runRoom(std::vector<uint8_t>& frame) {
    const size_t len = frame.size();
    frame.resize(2048);
    Action a = fwd_.process(frame.data(), len, *snap_, now_ms_, frame.size());
    frame.resize(a.len != 0 ? a.len : len);
    return a;
  }
  static uint32_t seqOf(const std::vector<uint8_t>& f) {
    ParsedPacket p;
    parsePacket(f.data(), f.size(), p);
    return tcpSeq(f.data(), p);
  }
  static uint32_t ackOf(const std::vector<uint8_t>& f) {
    ParsedPacket p;
    parsePacket(f.data(), f.size(), p);
    return loadBe32(f.data() + p.outer.l4 + 8);
  }
  static std::vector<uint8_t> payloadOf(const std::vector<uint8_t>& f) {
    ParsedPacket p;
    parsePacket(f.data(), f.size(), p);
    const size_t off = p.outer.l4 + static_cast<size_t>(f[p.outer.l4 + 12] >> 4) * 4;
    return {f.begin() + static_cast<long>(off),
            f.begin() + static_cast<long>(p.outer.l4 + p.outer.l4_len)};
  }
};

TEST_F(ProxyProtocolTest, TheBackendReadsTheHeaderThenTheClientsBytesInOrder) {
  const FlowTuple c2v{ip("203.0.113.7"), ip("192.0.2.60"), 56324, 80, kProtoTCP};
  const uint32_t isn = 1000;
  auto syn = segment(c2v, kTcpSyn, isn, 0, 0, {2, 4, 0x05, 0xb4});
  ASSERT_EQ(runRoom(syn).kind, ActionKind::kTransmit);
  const FlowTuple nat = sent(syn);  // snat:port -> backend:8080

  // The backend answers; the client sees the MSS lowered by 28.
  const FlowTuple b2n{nat.dst, nat.src, nat.dport, nat.sport, kProtoTCP};
  auto synack = segment(b2n, kTcpSyn | kTcpAck, 5000, isn + 1, 0, {2, 4, 0x05, 0xb4});
  ASSERT_EQ(runRoom(synack).kind, ActionKind::kTransmit);
  sent(synack);
  ParsedPacket sa;
  parsePacket(synack.data(), synack.size(), sa);
  EXPECT_EQ(loadBe16(synack.data() + sa.outer.l4 + 22), 1460 - 28);
  EXPECT_EQ(ackOf(synack), isn + 1);

  // The handshake's last ACK carries the header; so does the first data
  // (same sequence number), then the data follows moved up by 28.
  uint8_t hdr[kProxyV2MaxHeader];
  const size_t hlen =
      writeProxyV2(hdr, ProxyCommand::kProxy, kProtoTCP, c2v.src, c2v.sport, c2v.dst, c2v.dport);
  const std::vector<uint8_t> header(hdr, hdr + hlen);
  auto ack = segment(c2v, kTcpAck, isn + 1, 5001, 0);
  ASSERT_EQ(runRoom(ack).kind, ActionKind::kTransmit);
  sent(ack);
  EXPECT_EQ(seqOf(ack), isn + 1);
  EXPECT_EQ(payloadOf(ack), header);
  auto data = segment(c2v, kTcpAck | 0x08, isn + 1, 5001, 100);
  ASSERT_EQ(runRoom(data).kind, ActionKind::kTransmit);
  sent(data);
  auto p = payloadOf(data);
  ASSERT_EQ(p.size(), hlen + 100);
  EXPECT_TRUE(std::equal(header.begin(), header.end(), p.begin()));
  auto more = segment(c2v, kTcpAck | 0x08, isn + 101, 5001, 50);
  ASSERT_EQ(runRoom(more).kind, ActionKind::kTransmit);
  sent(more);
  EXPECT_EQ(seqOf(more), isn + 101 + hlen);
  EXPECT_EQ(payloadOf(more).size(), 50u);

  // The backend acknowledges everything and SACKs a later block: the client
  // sees its own numbers.
  const uint32_t b_ack = isn + 1 + static_cast<uint32_t>(hlen) + 150;
  std::vector<uint8_t> sack = {1, 1, 5, 10};
  for (uint32_t edge : {b_ack + 100, b_ack + 200}) {
    for (int shift : {24, 16, 8, 0}) sack.push_back(static_cast<uint8_t>(edge >> shift));
  }
  auto backend_ack = segment(b2n, kTcpAck, 5001, b_ack, 0, sack);
  ASSERT_EQ(runRoom(backend_ack).kind, ActionKind::kTransmit);
  sent(backend_ack);
  EXPECT_EQ(ackOf(backend_ack), isn + 151);
  ParsedPacket ba;
  parsePacket(backend_ack.data(), backend_ack.size(), ba);
  EXPECT_EQ(loadBe32(backend_ack.data() + ba.outer.l4 + 24), isn + 251);
  EXPECT_EQ(loadBe32(backend_ack.data() + ba.outer.l4 + 28), isn + 351);
}

TEST_F(ProxyProtocolTest, EveryUdpDatagramCarriesTheHeader) {
  for (int i = 0; i < 3; ++i) {
    FrameSpec f;
    f.tuple = FlowTuple{ip("203.0.113.8"), ip("192.0.2.60"), 5000, 53, kProtoUDP};
    f.payload = 20;
    auto frame = buildFrame(f);
    ASSERT_EQ(runRoom(frame).kind, ActionKind::kTransmit);
    sent(frame);
    ParsedPacket p;
    parsePacket(frame.data(), frame.size(), p);
    EXPECT_EQ(p.outer.l4_len, 8u + 28 + 20);
    EXPECT_EQ(frame[p.outer.l4 + 8 + 13], 0x12);  // INET, DGRAM
  }
}

TEST_F(ProxyProtocolTest, AFlowPickedUpMidStreamIsDroppedNotCorrupted) {
  auto mid = segment(FlowTuple{ip("203.0.113.9"), ip("192.0.2.60"), 40000, 80, kProtoTCP}, kTcpAck,
                     7000, 1, 10);
  const Action a = runRoom(mid);
  EXPECT_EQ(a.kind, ActionKind::kDrop);
  EXPECT_EQ(a.reason, DropReason::kProxyFlowUnknown);
}

}  // namespace
}  // namespace flowlb::agent

namespace flowlb::agent {
namespace {

// Issue 15.3: a SYN flood must not hold a backend's SNAT ports until they
// time out: a new flow takes the port of the oldest flow that never saw an
// answer, and never one from a flow in use.
TEST_F(ForwarderTest, AFloodOfUnansweredFlowsNeverStarvesNewFlowsOfSnatPorts) {
  snat_.port_min = 61000;
  snat_.port_max = 61015;  // 16 ports, shared by the web backends
  rebuild();
  // An established flow (its backend answered).
  auto syn = tcp("203.0.113.1", 50000, "192.0.2.10", 80, kTcpSyn);
  ASSERT_EQ(run(syn).kind, ActionKind::kTransmit);
  const FlowTuple nat = sent(syn);
  FrameSpec reply;
  reply.tuple = FlowTuple{nat.dst, nat.src, nat.dport, nat.sport, kProtoTCP};
  reply.tcp_flags = kTcpSyn | kTcpAck;
  auto r = buildFrame(reply);
  ASSERT_EQ(run(r).kind, ActionKind::kTransmit);
  // A flood: far more SYNs than ports, from ever new sources.
  size_t sent_ok = 0;
  for (uint32_t i = 0; i < 2000; ++i) {
    now_ms_ += 1;
    const std::string src = "198.18." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1);
    auto f = tcp(src.c_str(), 40000, "192.0.2.10", 80, kTcpSyn);
    sent_ok += run(f).kind == ActionKind::kTransmit;
  }
  EXPECT_GT(sent_ok, 1900u);  // new flows keep getting ports
  EXPECT_GT(fwd_.conntrack().stats().evictions[static_cast<size_t>(EvictReason::kUnanswered)], 0u);
  // The established flow still has its port: its reply is translated.
  reply.tcp_flags = kTcpAck;
  auto data = buildFrame(reply);
  const Action a = run(data);
  EXPECT_EQ(a.kind, ActionKind::kTransmit);
  EXPECT_TRUE(a.reply);
}

}  // namespace
}  // namespace flowlb::agent

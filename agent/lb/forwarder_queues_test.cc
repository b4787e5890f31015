// Several workers (one per receive queue): the SNAT port partition, and
// frames of a flow that arrive at a worker other than the one holding it
// (a NIC's RSS hash knows nothing of our flows) handed to the right one.
#include <gtest/gtest.h>

#include <set>

#include "agent/lb/forwarder.h"
#include "agent/lb/snat_ports.h"
#include "agent/packet/builder.h"
#include "agent/packet/parser.h"
#include "agent/testing/test_specs.h"

namespace flowlb::agent {
namespace {

using test_specs::backend;
using test_specs::ip;

TEST(SnatPortsTest, EveryPortHasExactlyOneOwnerWhoseShareHoldsIt) {
  for (uint32_t workers : {1u, 2u, 3u, 4u, 7u, 16u}) {
    const uint16_t min = 40001, max = 40999;
    std::vector<std::set<uint16_t>> shares(workers);
    size_t total = 0;
    for (uint32_t w = 0; w < workers; ++w) {
      const SnatPortShare s = snatPortShare(min, max, w, workers);
      for (uint32_t k = 0; k < s.count; ++k) {
        const uint16_t p = s.at(k);
        ASSERT_GE(p, min);
        ASSERT_LE(p, max);
        EXPECT_EQ(snatPortOwner(p, workers), w) << "port " << p << " workers " << workers;
        shares[w].insert(p);
      }
      EXPECT_EQ(shares[w].size(), s.count);
      total += s.count;
    }
    EXPECT_EQ(total, size_t{max - min + 1}) << "workers " << workers;
    for (uint32_t w = 0; w < workers; ++w) {  // shares within one port of each other
      EXPECT_LE(shares[w].size(), shares[0].size() + 1);
      EXPECT_GE(shares[w].size() + 1, shares[0].size());
    }
  }
}

TEST(SnatPortsTest, APortKeepsItsOwnerWhenTheRangeChanges) {
  const SnatPortShare wide = snatPortShare(40000, 59999, 1, 4);
  const SnatPortShare narrow = snatPortShare(50003, 50100, 1, 4);
  ASSERT_GT(narrow.count, 0u);
  for (uint32_t k = 0; k < narrow.count; ++k) {
    EXPECT_EQ((narrow.at(k) - wide.first) % wide.stride, 0u);
    EXPECT_EQ(snatPortOwner(narrow.at(k), 4), 1u);
  }
}

TEST(SnatPortsTest, ARangeNarrowerThanTheWorkersLeavesSomeWithoutPorts) {
  EXPECT_EQ(snatPortShare(100, 101, 0, 4).count + snatPortShare(100, 101, 1, 4).count +
                snatPortShare(100, 101, 2, 4).count + snatPortShare(100, 101, 3, 4).count,
            2u);
  EXPECT_EQ(snatPortShare(100, 101, 2, 4).count, 0u);  // 100 % 4 == 0, 101 % 4 == 1
  EXPECT_EQ(snatPortShare(5, 4, 0, 1).count, 0u);      // empty range
  EXPECT_EQ(snatPortShare(1, 65535, 0, 1).count, 65535u);
}

// Two workers of one node, each with its own conntrack, as on two queues.
class TwoQueuesTest : public ::testing::Test {
 protected:
  TwoQueuesTest() {
    DesiredState state;
    state.generation = 1;
    ServiceSpec web;
    web.name = "web";
    web.vip = ip("192.0.2.10");
    web.port = 80;
    web.proto = kProtoTCP;
    web.maglev_size = 251;
    web.backends = {backend("10.1.0.1", 8080), backend("10.1.0.2", 8080)};
    ServiceSpec dns = web;
    dns.name = "dns";
    dns.port = 53;
    dns.proto = kProtoUDP;
    dns.backends = {backend("10.1.0.1", 5353)};
    state.services = {web, dns};
    auto built = builder_.build(state, test_specs::snat());
    EXPECT_TRUE(built.isOk());
    snap_ = built->snapshot;
    NextHop hop;
    hop.ifindex = 7;
    hop.resolved = true;
    hops_.setDefault(true, hop);
    hops_.setDefault(false, hop);
  }

  static std::vector<uint8_t> frame(const FlowTuple& t, uint8_t flags = 0) {
    FrameSpec f;
    f.tuple = t;
    f.tcp_flags = flags;
    f.payload = 20;
    return buildFrame(f);
  }
  static FlowTuple tupleOf(const std::vector<uint8_t>& f) {
    ParsedPacket p;
    EXPECT_EQ(parsePacket(f.data(), f.size(), p).status, ParseStatus::kOk);
    return p.tuple;
  }
  Forwarder& worker(uint32_t w) { return w == 0 ? w0_ : w1_; }
  Action run(uint32_t w, std::vector<uint8_t>& f) {
    return worker(w).process(f.data(), f.size(), *snap_, 1000);
  }
  Action handedTo(uint32_t w, std::vector<uint8_t>& f, uint32_t origin, bool from_kernel = false) {
    return worker(w).processHandedOff(f.data(), f.size(), *snap_, 1000, f.size(), origin,
                                      from_kernel);
  }
  // A NAT flow opened on worker `w`; returns its tuple as sent to the backend.
  FlowTuple open(uint32_t w, uint16_t client_port, uint8_t proto = kProtoTCP) {
    auto syn = frame(FlowTuple{ip("203.0.113.5"), ip("192.0.2.10"), client_port,
                               static_cast<uint16_t>(proto == kProtoTCP ? 80 : 53), proto},
                     proto == kProtoTCP ? kTcpSyn : 0);
    EXPECT_EQ(run(w, syn).kind, ActionKind::kTransmit);
    return tupleOf(syn);
  }

  SnapshotBuilder builder_;
  std::shared_ptr<const Snapshot> snap_;
  StaticNextHops hops_;
  Forwarder w0_{ForwarderConfig{.conntrack_entries = 4096, .worker = 0, .workers = 2}, hops_};
  Forwarder w1_{ForwarderConfig{.conntrack_entries = 4096, .worker = 1, .workers = 2}, hops_};
};

TEST_F(TwoQueuesTest, EachWorkerSourceNatsOnlyOnItsOwnPorts) {
  for (uint32_t w : {0u, 1u}) {
    for (uint16_t p = 1000; p < 1200; ++p) {
      EXPECT_EQ(snatPortOwner(open(w, p).sport, 2), w);
    }
  }
}

TEST_F(TwoQueuesTest, AReplyOnTheOtherQueueIsHandedToTheOwnerAndTranslatedThere) {
  for (uint8_t proto : {kProtoTCP, kProtoUDP}) {
    const FlowTuple out = open(0, 40001, proto);
    const size_t entries_w1 = w1_.conntrack().size();
    auto reply = frame(FlowTuple{out.dst, out.src, out.dport, out.sport, proto},
                       proto == kProtoTCP ? kTcpSyn | kTcpAck : 0);
    const std::vector<uint8_t> as_received = reply;
    const Action a = run(1, reply);
    ASSERT_EQ(a.kind, ActionKind::kHandOff);
    EXPECT_EQ(a.worker, 0u);
    EXPECT_EQ(reply, as_received) << "a frame handed on must be untouched";
    EXPECT_EQ(w1_.conntrack().size(), entries_w1);
    const Action b = handedTo(0, reply, 1);
    ASSERT_EQ(b.kind, ActionKind::kTransmit);
    EXPECT_TRUE(b.reply);
    const FlowTuple back = tupleOf(reply);
    EXPECT_EQ(back.src, ip("192.0.2.10"));
    EXPECT_EQ(back.dst, ip("203.0.113.5"));
    EXPECT_EQ(back.dport, 40001);
  }
  EXPECT_EQ(w1_.stats().handed_off, 2u);
}

TEST_F(TwoQueuesTest, AReplyToTheOwnersPortThatNoFlowHoldsGoesToTheKernelAtTheOwner) {
  // Not a flow of ours (e.g. the node's own connection from a port in the
  // range): the owner passes it to the kernel as a single worker would.
  const uint16_t port = 61001;  // owned by worker 1
  auto stray = frame(FlowTuple{ip("10.1.0.1"), ip("10.0.0.1"), 8080, port, kProtoTCP}, kTcpAck);
  const Action a = run(0, stray);
  ASSERT_EQ(a.kind, ActionKind::kHandOff);
  EXPECT_EQ(a.worker, 1u);
  EXPECT_EQ(handedTo(1, stray, 0).kind, ActionKind::kPass);
}

TEST_F(TwoQueuesTest, AnIcmpErrorAboutANatFlowGoesToTheOwnerOfItsPort) {
  const FlowTuple out = open(1, 40002);
  // The backend's side reports on the packet we sent it (snat:port -> backend).
  auto sent = frame(out, kTcpAck);
  auto err = buildIcmpError(ip("10.1.0.254"), ip("10.0.0.1"), 3, 4, sent, 48);
  const Action a = run(0, err);
  ASSERT_EQ(a.kind, ActionKind::kHandOff);
  EXPECT_EQ(a.worker, 1u);
  const Action b = handedTo(1, err, 0);
  EXPECT_EQ(b.kind, ActionKind::kTransmit);
  EXPECT_TRUE(b.reply);
}

TEST_F(TwoQueuesTest, AnIcmpErrorAboutAVipFlowGoesRoundTheWorkersUntilOneHoldsIt) {
  open(0, 40003);
  // A router on the client's path reports on the VIP's reply.
  auto reply_as_sent =
      frame(FlowTuple{ip("192.0.2.10"), ip("203.0.113.5"), 80, 40003, kProtoTCP}, kTcpAck);
  auto err = buildIcmpError(ip("198.18.0.1"), ip("192.0.2.10"), 3, 4, reply_as_sent, 48);
  const Action a = run(1, err);
  ASSERT_EQ(a.kind, ActionKind::kHandOff);
  EXPECT_EQ(a.worker, 0u);
  EXPECT_EQ(handedTo(0, err, 1).kind, ActionKind::kTransmit);
  // About a flow nobody holds: once round, then dropped, never bounced back.
  auto unknown =
      frame(FlowTuple{ip("192.0.2.10"), ip("203.0.113.5"), 80, 40999, kProtoTCP}, kTcpAck);
  auto err2 = buildIcmpError(ip("198.18.0.1"), ip("192.0.2.10"), 3, 4, unknown, 48);
  ASSERT_EQ(run(1, err2).kind, ActionKind::kHandOff);
  const Action d = handedTo(0, err2, 1);
  EXPECT_EQ(d.kind, ActionKind::kDrop);
  EXPECT_EQ(d.reason, DropReason::kIcmpNoFlow);
}

TEST_F(TwoQueuesTest, AKernelPathReplyOnTheOtherQueueReachesTheWorkerOfItsFlow) {
  NextHop kernel;
  kernel.kernel = true;
  hops_.set(ip("10.1.0.1"), kernel);
  hops_.set(ip("10.1.0.2"), kernel);
  auto syn = frame(FlowTuple{ip("203.0.113.5"), ip("192.0.2.10"), 40004, 80, kProtoTCP}, kTcpSyn);
  ASSERT_EQ(run(1, syn).kind, ActionKind::kPass);  // to the kernel, destination rewritten
  const FlowTuple t = tupleOf(syn);
  // The kernel puts the reply on worker 0's queue of the reply device.
  auto reply =
      frame(FlowTuple{t.dst, ip("203.0.113.5"), t.dport, 40004, kProtoTCP}, kTcpSyn | kTcpAck);
  const Action a = w0_.processFromKernel(reply.data(), reply.size(), *snap_, 1000);
  ASSERT_EQ(a.kind, ActionKind::kHandOff);
  EXPECT_EQ(a.worker, 1u);
  const Action b = handedTo(1, reply, 0, /*from_kernel=*/true);
  ASSERT_EQ(b.kind, ActionKind::kTransmit);
  EXPECT_EQ(tupleOf(reply).src, ip("192.0.2.10"));
  // A reply no worker knows is dropped once every worker has looked.
  auto stray =
      frame(FlowTuple{t.dst, ip("203.0.113.5"), t.dport, 40999, kProtoTCP}, kTcpSyn | kTcpAck);
  ASSERT_EQ(w0_.processFromKernel(stray.data(), stray.size(), *snap_, 1000).kind,
            ActionKind::kHandOff);
  const Action d = handedTo(1, stray, 0, true);
  EXPECT_EQ(d.kind, ActionKind::kDrop);
  EXPECT_EQ(d.reason, DropReason::kKernelReplyNoFlow);
}

TEST_F(TwoQueuesTest, WithOneWorkerNothingIsHandedOn) {
  Forwarder alone{ForwarderConfig{.conntrack_entries = 4096}, hops_};
  auto stray =
      frame(FlowTuple{ip("10.1.0.1"), ip("10.0.0.1"), 8080, 61001, kProtoTCP}, kTcpSyn | kTcpAck);
  EXPECT_EQ(alone.process(stray.data(), stray.size(), *snap_, 1000).kind, ActionKind::kPass);
  auto k = stray;
  const Action d = alone.processFromKernel(k.data(), k.size(), *snap_, 1000);
  EXPECT_EQ(d.kind, ActionKind::kDrop);
  EXPECT_EQ(d.reason, DropReason::kKernelReplyNoFlow);
}

}  // namespace
}  // namespace flowlb::agent

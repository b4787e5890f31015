#include "agent/lb/next_hop_view.h"

#include <gtest/gtest.h>

namespace flowlb::agent {
namespace {

IpAddr ip(const char* s) {
  return *IpAddr::parse(s);
}

NextHop hop(int ifindex, uint8_t mac_last, bool resolved) {
  NextHop h;
  h.ifindex = static_cast<uint32_t>(ifindex);
  h.src_mac = {2, 0, 0, 0, 0, static_cast<uint8_t>(ifindex)};
  h.dst_mac = {2, 0, 0, 0, 1, mac_last};
  h.resolved = resolved;
  return h;
}

// Interfaces 2 and 3 carry AF_XDP sockets; 7 is a pod's veth (behind the kernel).
//   10.1.0.0/24 dev 2    (10.1.0.5 resolved, 10.1.0.6 incomplete)
//   10.1.0.128/25 dev 7  (more specific: behind the kernel)
//   0.0.0.0/0 via 10.2.0.1 dev 3 (gateway unresolved)
//   local 10.1.0.1
void fill(NextHopView& v) {
  v.attached = {2, 3};
  v.kernel_hop.kernel = true;
  v.kernel_hop.resolved = true;
  for (int i : {2, 3, 7}) v.unresolved[i] = hop(i, 0, false);
  v.neighbors[2][ip("10.1.0.5")] = hop(2, 5, true);
  v.neighbors[2][ip("10.1.0.6")] = hop(2, 6, false);
  v.local[ip("10.1.0.1")] = true;
  NextHopView::Route pod{*IpPrefix::parse("10.1.0.128/25"), 0, 7, false, {}, {}};
  NextHopView::Route link{*IpPrefix::parse("10.1.0.0/24"), 0, 2, false, {}, {}};
  NextHopView::Route def{
      *IpPrefix::parse("0.0.0.0/0"), 0, 3, true, ip("10.2.0.1"), hop(3, 0, false)};
  def.via.on_link = false;
  v.routes = {pod, link, def};
}

void expectSame(const NextHopView::Answer& a, const NextHopView::Answer& b) {
  EXPECT_EQ(a.hop, b.hop);
  EXPECT_EQ(a.miss, b.miss);
  if (a.miss) {
    EXPECT_EQ(a.miss_ifindex, b.miss_ifindex);
    EXPECT_EQ(a.miss_addr, b.miss_addr);
  }
}

TEST(NextHopView, ResolvesLocalRoutedKernelAndUnresolvedDestinations) {
  NextHopView v;
  fill(v);
  auto a = v.resolve(ip("10.1.0.5"));
  ASSERT_NE(a.hop, nullptr);
  EXPECT_TRUE(a.hop->resolved);
  EXPECT_EQ(a.hop->dst_mac[5], 5);
  EXPECT_FALSE(a.miss);

  a = v.resolve(ip("10.1.0.6"));  // known but incomplete: resolve it
  EXPECT_FALSE(a.hop->resolved);
  EXPECT_TRUE(a.miss);
  EXPECT_EQ(a.miss_ifindex, 2);
  EXPECT_EQ(a.miss_addr, ip("10.1.0.6"));

  a = v.resolve(ip("10.1.0.9"));  // on link, no neighbour entry at all
  EXPECT_EQ(a.hop, &v.unresolved.at(2));
  EXPECT_TRUE(a.miss);

  EXPECT_EQ(v.resolve(ip("10.1.0.200")).hop, &v.kernel_hop);  // the longer prefix wins
  EXPECT_EQ(v.resolve(ip("10.1.0.1")).hop, &v.kernel_hop);    // local
  EXPECT_FALSE(v.resolve(ip("10.1.0.1")).miss);

  a = v.resolve(ip("192.0.2.1"));  // through the gateway: the gateway is what to resolve
  EXPECT_EQ(a.hop, &v.routes[2].via);
  EXPECT_FALSE(a.hop->on_link);
  EXPECT_TRUE(a.miss);
  EXPECT_EQ(a.miss_addr, ip("10.2.0.1"));
  EXPECT_EQ(a.miss_ifindex, 3);

  EXPECT_EQ(v.resolve(ip("fd00::1")).hop, nullptr);  // no IPv6 route
}

TEST(NextHopView, PrecomputedAnswersAreTheResolvedOnesAndOthersStillResolve) {
  NextHopView v;
  fill(v);
  const std::vector<IpAddr> dsts = {ip("10.1.0.5"),   ip("10.1.0.6"), ip("10.1.0.9"),
                                    ip("10.1.0.200"), ip("10.1.0.1"), ip("192.0.2.1"),
                                    ip("fd00::1")};
  v.precompute(dsts);
  EXPECT_EQ(v.precomputed(), dsts.size());
  for (const IpAddr& d : dsts) {
    SCOPED_TRACE(d.toString());
    expectSame(v.find(d), v.resolve(d));
  }
  // Not precomputed: the same answer, by the tables.
  expectSame(v.find(ip("10.1.0.7")), v.resolve(ip("10.1.0.7")));
  EXPECT_EQ(v.find(ip("10.1.0.7")).hop, &v.unresolved.at(2));
  EXPECT_TRUE(v.find(ip("10.1.0.7")).miss);
}

}  // namespace
}  // namespace flowlb::agent

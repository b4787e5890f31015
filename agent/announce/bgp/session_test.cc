#include "agent/announce/bgp/session.h"

#include <gtest/gtest.h>

namespace flowlb::agent::bgp {
namespace {

IpPrefix pfx(const char* s) {
  return *IpPrefix::parse(s);
}
IpAddr ip(const char* s) {
  return *IpAddr::parse(s);
}

const Time kStart{};
Time at(int ms) {
  return kStart + Millis{ms};
}

PeerSettings peer() {
  PeerSettings p;
  p.name = "tor";
  p.address = ip("10.0.0.254");
  p.peer_asn = 65000;
  p.local_asn = 65001;
  p.hold_time_s = 9;
  return p;
}

OpenMessage peerOpen(uint32_t asn = 65000, uint16_t hold = 30) {
  OpenMessage o;
  o.asn = asn;
  o.hold_time_s = hold;
  o.router_id = 0x0a0000fe;
  o.four_octet_as = true;
  o.multiprotocol = {kIpv4Unicast, kIpv6Unicast};
  return o;
}

// Splits what the session sent into decoded messages.
std::vector<Message> sent(const Output& o) {
  std::vector<Message> out;
  std::span<const uint8_t> rest(o.send);
  while (!rest.empty()) {
    const auto len = frameLength(rest);
    EXPECT_TRUE(len.ok() && *len.value > 0);
    if (!len.ok() || *len.value == 0) break;
    const auto m = decodeMessage(rest.first(*len.value), {});
    EXPECT_TRUE(m.ok()) << m.error.reason;
    if (m.ok()) out.push_back(*m.value);
    rest = rest.subspan(*len.value);
  }
  return out;
}

// Drives a session to Established and returns what it sent on arrival.
Output establish(Session& s, Time now = kStart, OpenMessage open = peerOpen()) {
  s.start(now);
  s.tick(now);
  EXPECT_TRUE(s.takeOutput().connect);
  s.connected(now, ip("10.0.0.1"));
  const auto opens = sent(s.takeOutput());
  EXPECT_EQ(opens.size(), 1u);
  EXPECT_EQ(opens[0].type, MessageType::kOpen);
  s.received(now, encodeOpen(open));
  const auto ka = sent(s.takeOutput());
  EXPECT_EQ(ka.size(), 1u);
  EXPECT_EQ(ka[0].type, MessageType::kKeepalive);
  EXPECT_EQ(s.state(), State::kOpenConfirm);
  s.received(now, encodeKeepalive());
  EXPECT_EQ(s.state(), State::kEstablished);
  return s.takeOutput();
}

TEST(BgpSessionTest, ReachesEstablishedAndSendsItsRoutesThenEndOfRib) {
  Session s(peer(), kStart);
  RouteSet routes;
  routes[pfx("192.0.2.10/32")] = RouteAttributes{7, 300, {0xfde80001}, {{65001, 1, 2}}};
  s.setRoutes(kStart, routes);
  const auto msgs = sent(establish(s));
  ASSERT_EQ(msgs.size(), 3u);  // the route, End-of-RIB IPv4, End-of-RIB IPv6
  const UpdateMessage& u = msgs[0].update;
  EXPECT_EQ(u.nlri, std::vector<IpPrefix>{pfx("192.0.2.10/32")});
  EXPECT_EQ(u.attributes.next_hop, ip("10.0.0.1"));  // the session's local address
  EXPECT_EQ(u.attributes.as_path, std::vector<uint32_t>{65001});
  EXPECT_EQ(u.attributes.med, 7u);
  EXPECT_FALSE(u.attributes.local_pref);  // eBGP: never sent
  EXPECT_EQ(u.attributes.communities, std::vector<uint32_t>{0xfde80001});
  EXPECT_EQ(u.attributes.large_communities.size(), 1u);
  EXPECT_EQ(msgs[1].update.endOfRib(), kIpv4Unicast);
  EXPECT_EQ(msgs[2].update.endOfRib(), kIpv6Unicast);
  EXPECT_EQ(s.stats().routes_advertised, 1u);
  EXPECT_EQ(s.stats().hold_time_s, 9);  // the smaller of 9 and 30
}

TEST(BgpSessionTest, InternalPeersGetLocalPrefAndAnEmptyAsPath) {
  PeerSettings p = peer();
  p.peer_asn = p.local_asn = 65001;
  Session s(p, kStart);
  s.setRoutes(kStart, {{pfx("192.0.2.10/32"), RouteAttributes{std::nullopt, 300, {}, {}}}});
  const auto msgs = sent(establish(s, kStart, peerOpen(65001)));
  EXPECT_EQ(msgs[0].update.attributes.local_pref, 300u);
  EXPECT_TRUE(msgs[0].update.attributes.as_path.empty());
}

TEST(BgpSessionTest, ChangesSendOnlyTheDifference) {
  Session s(peer(), kStart);
  s.setRoutes(kStart, {{pfx("192.0.2.1/32"), {}}, {pfx("192.0.2.2/32"), {}}});
  establish(s);
  RouteSet next = {{pfx("192.0.2.2/32"), RouteAttributes{5, {}, {}, {}}},  // MED changed
                   {pfx("192.0.2.3/32"), {}}};                             // added; .1 removed
  s.setRoutes(at(10), next);
  const auto msgs = sent(s.takeOutput());
  ASSERT_EQ(msgs.size(), 3u);
  EXPECT_EQ(msgs[0].update.withdrawn, std::vector<IpPrefix>{pfx("192.0.2.1/32")});
  std::set<IpPrefix> announced;
  for (size_t i = 1; i < msgs.size(); ++i) {
    for (const auto& p : msgs[i].update.nlri) announced.insert(p);
  }
  EXPECT_EQ(announced, (std::set<IpPrefix>{pfx("192.0.2.2/32"), pfx("192.0.2.3/32")}));
  s.setRoutes(at(20), next);  // unchanged: nothing
  EXPECT_TRUE(s.takeOutput().send.empty());
}

TEST(BgpSessionTest, Ipv6RoutesNeedANextHopOfTheirFamily) {
  Session s(peer(), kStart);
  s.setRoutes(kStart, {{pfx("2001:db8::10/128"), {}}});
  const auto msgs = sent(establish(s));
  ASSERT_EQ(msgs.size(), 2u);  // only the two End-of-RIBs
  bool reported = false;
  for (const auto& e : s.takeEvents()) {
    if (e.kind == SessionEvent::Kind::kRouteSkipped) reported = true;
  }
  EXPECT_TRUE(reported);

  PeerSettings p = peer();
  p.next_hop_v6 = ip("2001:db8:ff::1");
  Session s6(p, kStart);
  s6.setRoutes(kStart, {{pfx("2001:db8::10/128"), {}}});
  const auto m6 = sent(establish(s6));
  ASSERT_TRUE(m6[0].update.mp_reach);
  EXPECT_EQ(m6[0].update.mp_reach->next_hop, ip("2001:db8:ff::1"));
  EXPECT_EQ(m6[0].update.mp_reach->nlri, std::vector<IpPrefix>{pfx("2001:db8::10/128")});
}

TEST(BgpSessionTest, APeerWithoutMultiprotocolGetsIpv4Only) {
  Session s(peer(), kStart);
  OpenMessage o = peerOpen();
  o.multiprotocol.clear();
  establish(s, kStart, o);
  EXPECT_EQ(s.stats().families, std::vector<Family>{kIpv4Unicast});
}

TEST(BgpSessionTest, AWrongPeerAsIsRefusedWithBadPeerAsAndRetried) {
  Session s(peer(), kStart);
  s.start(kStart);
  s.tick(kStart);
  s.takeOutput();
  s.connected(kStart, ip("10.0.0.1"));
  s.takeOutput();
  s.received(kStart, encodeOpen(peerOpen(65099)));
  const Output o = s.takeOutput();
  const auto msgs = sent(o);
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].notification.code, 2);
  EXPECT_EQ(msgs[0].notification.subcode, 2);
  EXPECT_TRUE(o.close);
  EXPECT_EQ(s.state(), State::kIdle);
  EXPECT_NE(s.stats().last_error.find("peer AS 65099"), std::string::npos);
  EXPECT_EQ(s.nextDeadline(), at(5000));  // connect retry
  s.tick(at(5000));
  EXPECT_TRUE(s.takeOutput().connect);
}

TEST(BgpSessionTest, KeepalivesEveryThirdOfTheHoldTimeAndHoldExpiryNotifies) {
  Session s(peer(), kStart);
  establish(s);
  EXPECT_EQ(s.nextDeadline(), at(3000));
  s.tick(at(3000));
  auto msgs = sent(s.takeOutput());
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].type, MessageType::kKeepalive);
  s.received(at(5000), encodeKeepalive());  // restarts the hold timer: 5 s + 9 s
  s.tick(at(13'999));
  for (const auto& m : sent(s.takeOutput())) EXPECT_EQ(m.type, MessageType::kKeepalive);
  EXPECT_EQ(s.state(), State::kEstablished);
  s.tick(at(14'000));
  msgs = sent(s.takeOutput());
  ASSERT_FALSE(msgs.empty());
  EXPECT_EQ(msgs.back().notification.code, 4);
  EXPECT_EQ(s.state(), State::kIdle);
}

TEST(BgpSessionTest, GarbageResetsTheSessionMalformedUpdatesOnlyCount) {
  Session s(peer(), kStart);
  establish(s);
  // An UPDATE with ORIGIN 7: treat-as-withdraw, the session lives.
  UpdateMessage u;
  u.has_attributes = true;
  u.attributes.next_hop = ip("10.0.0.254");
  u.nlri = {pfx("203.0.113.0/24")};
  auto bad = encodeUpdate(u, true);
  bad[19 + 4 + 3] = 7;
  s.received(at(1), bad);
  EXPECT_EQ(s.state(), State::kEstablished);
  EXPECT_EQ(s.stats().malformed_updates, 1u);
  // A good one is counted, never installed.
  s.received(at(2), encodeUpdate(u, true));
  EXPECT_EQ(s.stats().routes_received, 1u);
  // Garbage: Connection Not Synchronized, and the session goes down.
  std::vector<uint8_t> junk(40, 0x42);
  s.received(at(3), junk);
  const auto msgs = sent(s.takeOutput());
  ASSERT_FALSE(msgs.empty());
  EXPECT_EQ(msgs.back().notification.code, 1);
  EXPECT_EQ(msgs.back().notification.subcode, 1);
  EXPECT_EQ(s.state(), State::kIdle);
}

TEST(BgpSessionTest, MessagesSplitAcrossReadsAreReassembled) {
  Session s(peer(), kStart);
  s.start(kStart);
  s.tick(kStart);
  s.connected(kStart, ip("10.0.0.1"));
  s.takeOutput();
  auto bytes = encodeOpen(peerOpen());
  const auto ka = encodeKeepalive();
  bytes.insert(bytes.end(), ka.begin(), ka.end());
  for (uint8_t b : bytes) s.received(kStart, std::span<const uint8_t>(&b, 1));
  EXPECT_EQ(s.state(), State::kEstablished);
}

TEST(BgpSessionTest, GracefulRestartSaysRestartedOnceAndStopsWithoutNotification) {
  PeerSettings p = peer();
  p.graceful_restart = true;
  p.restart_time_s = 90;
  Session s(p, kStart);
  s.start(kStart);
  s.tick(kStart);
  s.connected(kStart, ip("10.0.0.1"));
  auto open = sent(s.takeOutput())[0].open;
  ASSERT_TRUE(open.graceful_restart);
  EXPECT_TRUE(open.graceful_restart->restart_state);
  EXPECT_EQ(open.graceful_restart->restart_time_s, 90);
  ASSERT_EQ(open.graceful_restart->families.size(), 2u);
  EXPECT_TRUE(open.graceful_restart->families[0].forwarding_preserved);
  s.received(kStart, encodeOpen(peerOpen()));
  s.received(kStart, encodeKeepalive());
  s.takeOutput();
  s.closed(at(10), "reset by peer");
  s.tick(at(1010));
  s.connected(at(1010), ip("10.0.0.1"));
  open = sent(s.takeOutput())[0].open;
  EXPECT_FALSE(open.graceful_restart->restart_state);  // not restarted this time
  s.received(at(1010), encodeOpen(peerOpen()));
  s.received(at(1010), encodeKeepalive());
  s.takeOutput();
  s.stop(at(2000), StopMode::kGraceful, "agent restarting");
  const Output o = s.takeOutput();
  EXPECT_TRUE(o.send.empty());
  EXPECT_TRUE(o.close);
  EXPECT_FALSE(s.nextDeadline());  // admin down: no reconnect
}

TEST(BgpSessionTest, StopWithWithdrawSendsAdministrativeShutdownWithTheReason) {
  Session s(peer(), kStart);
  establish(s);
  s.stop(at(1), StopMode::kWithdraw, "node draining");
  const auto msgs = sent(s.takeOutput());
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].notification.code, 6);
  EXPECT_EQ(msgs[0].notification.subcode, kCeaseAdminShutdown);
  EXPECT_EQ(std::string(msgs[0].notification.data.begin() + 1, msgs[0].notification.data.end()),
            "node draining");
}

TEST(BgpSessionTest, BfdDownCeasesTheSessionAndItComesBack) {
  Session s(peer(), kStart);
  establish(s);
  s.bfdDown(at(100));
  const auto msgs = sent(s.takeOutput());
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].notification.subcode, kCeaseBfdDown);
  EXPECT_EQ(s.state(), State::kIdle);
  ASSERT_TRUE(s.nextDeadline());
  s.tick(*s.nextDeadline());
  EXPECT_TRUE(s.takeOutput().connect);
}

TEST(BgpSessionTest, ConnectFailuresBackOff) {
  Session s(peer(), kStart);
  s.start(kStart);
  Time now = kStart;
  std::vector<int64_t> waits;
  for (int i = 0; i < 5; ++i) {
    s.tick(now);
    EXPECT_TRUE(s.takeOutput().connect);
    s.connectFailed(now, "refused");
    const Time next = *s.nextDeadline();
    waits.push_back(std::chrono::duration_cast<Millis>(next - now).count());
    now = next;
  }
  EXPECT_EQ(waits, (std::vector<int64_t>{1000, 2000, 4000, 5000, 5000}));
}

TEST(BgpSessionTest, RouteRefreshResendsEverything) {
  Session s(peer(), kStart);
  s.setRoutes(kStart, {{pfx("192.0.2.1/32"), {}}});
  establish(s);
  std::vector<uint8_t> rr = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                             0xff, 0xff, 0xff, 0xff, 0,    23,   5,    0,    1,    0,    1};
  s.received(at(1), rr);
  const auto msgs = sent(s.takeOutput());
  ASSERT_FALSE(msgs.empty());
  EXPECT_EQ(msgs[0].update.nlri, std::vector<IpPrefix>{pfx("192.0.2.1/32")});
}

}  // namespace
}  // namespace flowlb::agent::bgp

#include "agent/announce/bgp/config.h"

#include <gtest/gtest.h>

#include "agent/announce/bgp/routes.h"
#include "agent/source/config_file.h"

namespace flowlb::agent::bgp {
namespace {

IpPrefix pfx(const char* s) {
  return *IpPrefix::parse(s);
}
IpAddr ip(const char* s) {
  return *IpAddr::parse(s);
}

const char* kFile = R"(
services: []
bgp:
  myASN: 4200000001
  bfdProfiles: [{name: fast, receiveIntervalMs: 100, transmitIntervalMs: 50, detectMultiplier: 5}]
  peers:
    - {name: tor1, peerAddress: 10.0.0.254, peerASN: 65000, bfdProfile: fast, password: s3cret,
       enableGracefulRestart: true, gracefulRestartTimeSeconds: 90, holdTimeSeconds: 9}
    - {name: tor2, peerAddress: "fd00::fe", peerASN: 65000, myASN: 65001, families: [ipv6]}
  advertisements:
    - {name: a, prefixes: [192.0.2.0/24], peers: [tor1], communities: ["65000:1", no-export],
       largeCommunities: ["65000:1:2"], localPref: 50, med: 7, aggregationLength: 24}
)";

TEST(BgpConfigTest, TheStandaloneFileFillsEveryField) {
  auto cfg = parseAgentConfig(kFile);
  ASSERT_TRUE(cfg) << cfg.error();
  const BgpSettings& b = cfg->bgp;
  ASSERT_EQ(b.peers.size(), 2u);
  const PeerSettings& t1 = b.peers[0];
  EXPECT_EQ(t1.address, ip("10.0.0.254"));
  EXPECT_EQ(t1.local_asn, 4200000001u);
  EXPECT_EQ(t1.peer_asn, 65000u);
  EXPECT_EQ(t1.password, "s3cret");
  EXPECT_TRUE(t1.graceful_restart);
  EXPECT_EQ(t1.restart_time_s, 90);
  EXPECT_EQ(t1.hold_time_s, 9);
  EXPECT_EQ(b.peers[1].local_asn, 65001u);
  EXPECT_FALSE(b.peers[1].ipv4);
  EXPECT_EQ(b.bfd_profiles.at("fast").timers.desired_min_tx, std::chrono::milliseconds(50));
  EXPECT_EQ(b.bfd_profiles.at("fast").timers.detect_mult, 5);
  const Advertisement& a = b.advertisements[0];
  EXPECT_EQ(a.attributes.communities, (std::vector<uint32_t>{0xfde80001, 0xffffff01}));
  EXPECT_EQ(a.attributes.large_communities, (std::vector<LargeCommunity>{{65000, 1, 2}}));
  EXPECT_EQ(a.attributes.local_pref, 50u);
  EXPECT_EQ(a.attributes.med, 7u);
  EXPECT_EQ(a.aggregation_length_v4, 24);
}

TEST(BgpConfigTest, MistakesNameTheLineAndTheField) {
  struct Case {
    const char* yaml;
    const char* error;
  };
  const Case cases[] = {
      {"bgp: {peers: [{name: a, peerAddress: 10.0.0.1, peerASN: 1}]}", "myASN: is required"},
      {"bgp: {myASN: 1, peers: [{name: a, peerAddress: 10.0.0.1, peerASN: 1, bfdProfile: x}]}",
       "no BFD profile named 'x'"},
      {"bgp: {myASN: 1, peers: [{name: a, peerAddress: 10.0.0.1, peerASN: 1, holdTimeSeconds: 2}]}",
       "holdTimeSeconds: must be 0 or at least 3"},
      {"bgp: {myASN: 1, peers: [{name: a, peerAddress: nope, peerASN: 1}]}", "peerAddress"},
      {"bgp: {myASN: 1, peers: [{name: a, peerAddress: 10.0.0.1, peerASN: 1, colour: red}]}",
       "bgp.peers[0].colour: unknown field"},
      {"bgp: {myASN: 1, advertisements: [{communities: [\"70000:1\"]}]}", "is not a community"},
      {"bgp: {myASN: 1, advertisements: [{peers: [ghost]}]}", "no peer named 'ghost'"},
      {"bgp: {myASN: 1, peers: [{name: a, peerAddress: 10.0.0.1, peerASN: 1}, "
       "{name: a, peerAddress: 10.0.0.2, peerASN: 1}]}",
       "peer 'a' is repeated"},
  };
  for (const Case& c : cases) {
    auto cfg = parseAgentConfig(c.yaml);
    ASSERT_FALSE(cfg) << c.yaml;
    EXPECT_NE(cfg.error().find(c.error), std::string::npos) << cfg.error();
    EXPECT_EQ(cfg.error().rfind("line ", 0), 0u) << cfg.error();
  }
}

TEST(BgpConfigTest, CommunitiesInEveryNotation) {
  EXPECT_EQ(*parseCommunity("65000:100"), 0xfde80064u);
  EXPECT_EQ(*parseCommunity("4294967041"), 0xffffff01u);
  EXPECT_EQ(*parseCommunity("no-advertise"), 0xffffff02u);
  EXPECT_FALSE(parseCommunity("1:2:3"));
  EXPECT_FALSE(parseCommunity("65536:1"));
  EXPECT_EQ(*parseLargeCommunity("4200000001:7:8"), (LargeCommunity{4200000001u, 7, 8}));
  EXPECT_FALSE(parseLargeCommunity("1:2"));
}

ServiceSpec svc(const char* name, const char* vip, bool local, std::vector<const char*> nodes) {
  ServiceSpec s;
  s.name = name;
  s.vip = ip(vip);
  s.keep_client_address = local;
  for (const char* n : nodes) {
    BackendSpec b;
    b.addr = ip("10.1.0.1");
    b.port = static_cast<uint16_t>(80 + s.backends.size());
    b.node = n;
    s.backends.push_back(b);
  }
  return s;
}

TEST(BgpRoutesTest, EveryServingNodeAnnouncesLocalOnlyWithALocalEndpoint) {
  const std::vector<ServiceSpec> services = {
      svc("cluster", "192.0.2.1", false, {"n2"}),
      svc("local", "192.0.2.2", true, {"n1", "n2"}),
      svc("local-elsewhere", "192.0.2.3", true, {"n2"}),
      svc("empty", "192.0.2.4", false, {}),
      svc("refused", "192.0.2.5", false, {"n1"}),
  };
  const std::vector<ServiceError> refused = {{"refused", ApplyErrorCode::kResourceExhausted, ""}};
  EXPECT_EQ(eligibleVips(services, refused, "n1"),
            (std::vector<IpAddr>{ip("192.0.2.1"), ip("192.0.2.2")}));
  EXPECT_EQ(eligibleVips(services, refused, "n2"),
            (std::vector<IpAddr>{ip("192.0.2.1"), ip("192.0.2.2"), ip("192.0.2.3")}));
  // A draining backend is not a reason to attract new traffic.
  auto draining = services;
  draining[1].backends[0].state = BackendState::kDraining;
  EXPECT_EQ(eligibleVips(draining, refused, "n1"), (std::vector<IpAddr>{ip("192.0.2.1")}));
  // A VIP shared with a Cluster service is announced.
  auto shared = services;
  shared.push_back(svc("shared", "192.0.2.3", false, {"n2"}));
  EXPECT_EQ(eligibleVips(shared, refused, "n1").size(), 3u);
}

TEST(BgpRoutesTest, AdvertisementsPickPeersAggregateAndAddUp) {
  BgpSettings s;
  for (const char* n : {"a", "b"}) {
    PeerSettings p;
    p.name = n;
    s.peers.push_back(p);
  }
  const std::vector<IpAddr> vips = {ip("192.0.2.10"), ip("192.0.2.11"), ip("2001:db8::1")};
  auto plain = routesPerPeer(s, vips);
  EXPECT_EQ(plain["a"].size(), 3u);
  EXPECT_TRUE(plain["b"].count(pfx("2001:db8::1/128")));

  Advertisement agg;
  agg.prefixes = {pfx("192.0.2.0/24")};
  agg.peers = {"a"};
  agg.aggregation_length_v4 = 24;
  agg.attributes.communities = {1};
  agg.attributes.med = 5;
  Advertisement host;
  host.prefixes = {pfx("192.0.2.10/32")};
  host.attributes.communities = {2};
  host.attributes.local_pref = 300;
  Advertisement again = agg;  // same prefix again: communities add up
  again.attributes.communities = {3};
  again.attributes.med = 9;
  s.advertisements = {agg, host, again};
  auto r = routesPerPeer(s, vips);
  ASSERT_EQ(r["a"].size(), 2u);  // 192.0.2.0/24 and 192.0.2.10/32; the IPv6 VIP matches none
  const RouteAttributes& a24 = r["a"].at(pfx("192.0.2.0/24"));
  EXPECT_EQ(a24.communities, (std::vector<uint32_t>{1, 3}));
  EXPECT_EQ(a24.med, 5u);  // the first advertisement sets it
  EXPECT_EQ(r["a"].at(pfx("192.0.2.10/32")).local_pref, 300u);
  EXPECT_EQ(r["b"].size(), 1u);  // only the host advertisement names every peer
}

}  // namespace
}  // namespace flowlb::agent::bgp

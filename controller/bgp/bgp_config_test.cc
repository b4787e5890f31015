// BGPPeer and BGPAdvertisement: decoding (bad objects refused with the
// field at fault), the plan of who gets what, and how a BGP change reaches
// the agents through the distribution (INCREMENTAL states included).
#include "controller/bgp/bgp_config.h"

#include <gtest/gtest.h>

#include "controller/decode/decode.h"
#include "controller/distribution/distributor.h"
#include "controller/k8s/json_doc.h"

namespace flowlb::controller {
namespace {

IpAddr ip(const char* s) {
  return *IpAddr::parse(s);
}

Doc json(const char* text) {
  return k8s::toDoc(web::json::value::parse(text));
}

TEST(BgpDecodeTest, APeerWithEveryField) {
  auto d = decodeBgpPeer(json(R"({"metadata": {"name": "tor-a"}, "spec": {
      "peerAddress": "10.0.0.1", "peerASN": 4200000001, "myASN": 64512,
      "sourceAddress": "10.0.0.10", "port": 1179, "holdTimeSeconds": 9,
      "enableGracefulRestart": true, "gracefulRestartTimeSeconds": 60,
      "bfdProfile": {"transmitIntervalMs": 100, "receiveIntervalMs": 150, "detectMultiplier": 5},
      "nodeSelector": {"matchLabels": {"rack": "a"}}}})"));
  ASSERT_TRUE(d.ok) << d.problem.what;
  const BgpPeerSpec& p = d.value;
  EXPECT_EQ(p.name, "tor-a");
  EXPECT_EQ(p.address, ip("10.0.0.1"));
  EXPECT_EQ(p.peer_asn, 4200000001u);
  EXPECT_EQ(p.local_asn, 64512u);
  EXPECT_EQ(p.source, ip("10.0.0.10"));
  EXPECT_EQ(p.port, 1179);
  EXPECT_EQ(p.hold_time_s, 9);
  EXPECT_EQ(p.graceful_restart_s, 60);
  ASSERT_TRUE(p.bfd);
  EXPECT_EQ(*p.bfd, (BfdSpec{100, 150, 5}));
  EXPECT_EQ(p.node_selector, (Labels{{"rack", "a"}}));
  EXPECT_FALSE(p.password_secret);
  d = decodeBgpPeer(json(R"({"metadata": {"name": "r"}, "spec": {"peerAddress": "10.0.0.1",
      "peerASN": 1, "myASN": 1, "passwordSecretRef": {"name": "tor-md5"}}})"));
  ASSERT_TRUE(d.ok) << d.problem.what;
  EXPECT_EQ(d.value.password_secret, (SecretKeyRef{"tor-md5", "password"}));
  EXPECT_EQ(d.value.password, "") << "read from the Secret by the reconcile, not decoded";
  // The defaults.
  d = decodeBgpPeer(json(R"({"metadata": {"name": "r"}, "spec": {
      "peerAddress": "fd00::1", "peerASN": 65000, "myASN": 65000}})"));
  ASSERT_TRUE(d.ok) << d.problem.what;
  EXPECT_EQ(d.value.port, 179);
  EXPECT_FALSE(d.value.hold_time_s);
  EXPECT_FALSE(d.value.bfd);
  EXPECT_EQ(d.value.graceful_restart_s, 0);
  EXPECT_TRUE(d.value.node_selector.empty());
}

TEST(BgpDecodeTest, BadPeersAreRefusedWithTheFieldAtFault) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"peerASN": 1, "myASN": 1})", "spec.peerAddress is required"},
      {R"({"peerAddress": "10.0.0.300", "peerASN": 1, "myASN": 1})", "spec.peerAddress"},
      {R"({"peerAddress": "10.0.0.1", "myASN": 1})", "spec.peerASN is required"},
      {R"({"peerAddress": "10.0.0.1", "peerASN": 0, "myASN": 1})", "spec.peerASN must be in"},
      {R"({"peerAddress": "10.0.0.1", "peerASN": 1, "myASN": 1, "holdTimeSeconds": 2})",
       "0 or at least 3"},
      {R"({"peerAddress": "10.0.0.1", "peerASN": 1, "myASN": 1, "sourceAddress": "fd00::1"})",
       "not of the family"},
      {R"({"peerAddress": "10.0.0.1", "peerASN": 1, "myASN": 1,
           "passwordSecretRef": {"key": "k"}})",
       "spec.passwordSecretRef.name is required"},
      {R"({"peerAddress": "10.0.0.1", "peerASN": 1, "myASN": 1,
           "passwordSecretRef": {"name": "s", "key": ""}})",
       "spec.passwordSecretRef.key must not be empty"},
      {R"({"peerAddress": "10.0.0.1", "peerASN": 1, "myASN": 1,
           "nodeSelector": {"matchExpressions": []}})",
       "matchExpressions is not supported"},
      {R"({"peerAddress": "10.0.0.1", "peerASN": 1, "myASN": 1,
           "bfdProfile": {"detectMultiplier": 0}})",
       "spec.bfdProfile.detectMultiplier must be in 1..255"},
  };
  for (const auto& [spec, why] : cases) {
    const std::string text = std::string(R"({"metadata": {"name": "r"}, "spec": )") + spec + "}";
    auto d = decodeBgpPeer(json(text.c_str()));
    EXPECT_FALSE(d.ok) << spec;
    EXPECT_NE(d.problem.what.find(why), std::string::npos) << d.problem.what;
  }
}

TEST(BgpDecodeTest, AnAdvertisementWithCommunitiesAndAggregation) {
  auto d = decodeBgpAdvertisement(json(R"({"metadata": {"name": "ext"}, "spec": {
      "ipPools": ["public"], "ipPoolSelector": {"matchLabels": {"bgp": "yes"}},
      "peers": ["tor-a"], "communities": ["65000:100", "no-export", "4294967295"],
      "largeCommunities": ["4200000000:1:2"], "localPref": 200,
      "aggregationLength": 24, "aggregationLengthV6": 64}})"));
  ASSERT_TRUE(d.ok) << d.problem.what;
  const BgpAdvertisementSpec& a = d.value;
  EXPECT_EQ(a.route.name, "ext");
  EXPECT_EQ(a.pools, std::vector<std::string>{"public"});
  EXPECT_EQ(a.pool_selector, (Labels{{"bgp", "yes"}}));
  EXPECT_EQ(a.route.peers, std::vector<std::string>{"tor-a"});
  EXPECT_EQ(a.route.communities,
            (std::vector<uint32_t>{65000u << 16 | 100, 0xffffff01, 0xffffffff}));
  EXPECT_EQ(a.route.large_communities, (std::vector<LargeCommunityValue>{{4200000000u, 1, 2}}));
  EXPECT_EQ(a.route.local_pref, 200u);
  EXPECT_EQ(a.route.aggregation_v4, 24);
  EXPECT_EQ(a.route.aggregation_v6, 64);
  // No spec at all: every pool, host routes, every peer.
  d = decodeBgpAdvertisement(json(R"({"metadata": {"name": "all"}})"));
  ASSERT_TRUE(d.ok) << d.problem.what;
  EXPECT_TRUE(d.value.selects("any", {}));
  EXPECT_EQ(d.value.route.aggregation_v4, 32);
  EXPECT_EQ(d.value.route.aggregation_v6, 128);
}

TEST(BgpDecodeTest, BadAdvertisementsAreRefused) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"communities": ["65536:1"]})", "'65536:1' is not a community"},
      {R"({"communities": ["no-such-name"]})", "is not a community"},
      {R"({"largeCommunities": ["1:2"]})", "'1:2' is not a large community"},
      {R"({"aggregationLength": 33})", "spec.aggregationLength must be in 1..32"},
      {R"({"aggregationLengthV6": 0})", "spec.aggregationLengthV6 must be in 1..128"},
      {R"({"ipPools": "public"})", "spec.ipPools must be a list"},
      {R"({"localPref": -1})", "spec.localPref must be in"},
  };
  for (const auto& [spec, why] : cases) {
    const std::string text = std::string(R"({"metadata": {"name": "a"}, "spec": )") + spec + "}";
    auto d = decodeBgpAdvertisement(json(text.c_str()));
    EXPECT_FALSE(d.ok) << spec;
    EXPECT_NE(d.problem.what.find(why), std::string::npos) << d.problem.what;
  }
}

BgpPeerSpec peer(const char* name, Labels selector = {}) {
  BgpPeerSpec p;
  p.name = name;
  p.address = ip("10.0.0.1");
  p.peer_asn = 65000;
  p.local_asn = 65001;
  p.node_selector = std::move(selector);
  return p;
}

BgpAdvertisementSpec advertisement(const char* name, std::vector<std::string> pools,
                                   Labels selector = {}) {
  BgpAdvertisementSpec a;
  a.route.name = name;
  a.pools = std::move(pools);
  a.pool_selector = std::move(selector);
  return a;
}

TEST(BgpPlanTest, PeersFollowNodeSelectorsAndVipsTheirPoolsAdvertisements) {
  const std::vector<BgpNode> nodes = {{"n1", {{"rack", "a"}}}, {"n2", {{"rack", "b"}}}, {"n3", {}}};
  const std::vector<BgpPool> pools = {{"public", {}}, {"edge", {{"bgp", "yes"}}}, {"l2", {}}};
  const BgpDesired d =
      planBgp({peer("tor-b", {{"rack", "b"}}), peer("tor-a", {{"rack", "a"}}), peer("core")},
              {advertisement("z-by-label", {}, {{"bgp", "yes"}}),
               advertisement("by-name", {"public"}), advertisement("a-both", {"public", "edge"})},
              pools, nodes,
              {{ip("192.0.2.1"), "public"}, {ip("192.0.2.2"), "edge"}, {ip("192.0.2.3"), "l2"}});
  EXPECT_TRUE(d.configured);
  ASSERT_TRUE(d.peersOf("n1"));
  ASSERT_EQ(d.peersOf("n1")->size(), 2u);  // sorted by name
  EXPECT_EQ((*d.peersOf("n1"))[0].name, "core");
  EXPECT_EQ((*d.peersOf("n1"))[1].name, "tor-a");
  EXPECT_EQ((*d.peersOf("n2"))[1].name, "tor-b");
  ASSERT_EQ(d.peersOf("n3")->size(), 1u);
  EXPECT_EQ(d.peersOf("nx"), nullptr);

  auto names = [&](const char* vip) {
    std::vector<std::string> out;
    if (const auto* r = d.routesOf(ip(vip))) {
      for (const auto& x : *r) out.push_back(x.name);
    }
    return out;
  };
  EXPECT_EQ(names("192.0.2.1"), (std::vector<std::string>{"a-both", "by-name"}));
  EXPECT_EQ(names("192.0.2.2"), (std::vector<std::string>{"a-both", "z-by-label"}));
  EXPECT_EQ(d.routesOf(ip("192.0.2.3")), nullptr) << "a pool no advertisement selects stays L2";
}

TEST(BgpPlanTest, NothingConfiguredIsNotConfigured) {
  EXPECT_FALSE(planBgp({}, {}, {{"p", {}}}, {{"n", {}}}, {{ip("192.0.2.1"), "p"}}).configured);
}

Reconciled oneService(std::shared_ptr<const BgpDesired> bgp) {
  Reconciled r;
  auto nodes = std::make_shared<const std::vector<std::string>>(std::vector<std::string>{"a"});
  auto d = std::make_shared<DesiredService>();
  d->key = "ns/s/http/ipv4";
  d->vip = ip("192.0.2.1");
  d->port = 80;
  d->announce_candidates = nodes;
  r.vips.push_back({d->vip, nodes});
  r.desired.push_back(d);
  r.nodes = *nodes;
  r.bgp = std::move(bgp);
  return r;
}

TEST(BgpDistributionTest, ABgpChangeIsANewGenerationWithTheConfigAndEveryAnnouncement) {
  Distributor dist([](const DesiredService& s, bool) { return s.key; },
                   DistributionOptions{std::chrono::milliseconds(0)});
  ASSERT_TRUE(dist.setDesired(oneService(nullptr)));
  dist.setLive("a", true);
  const auto base = dist.view();
  NodeUpdate full = nodeUpdate(nullptr, base, "a");
  EXPECT_EQ(full.bgp, nullptr) << "no BGP objects: nothing BGP is sent";

  auto bgp = std::make_shared<const BgpDesired>(planBgp({peer("core")}, {advertisement("all", {})},
                                                        {{"p", {}}}, {{"a", {}}},
                                                        {{ip("192.0.2.1"), "p"}}));
  ASSERT_TRUE(dist.setDesired(oneService(bgp))) << "only BGP changed: still a new view";
  NodeUpdate u = nodeUpdate(base, dist.view(), "a");
  EXPECT_FALSE(u.full);
  EXPECT_TRUE(u.bgp_changed);
  ASSERT_NE(u.bgp, nullptr);
  EXPECT_EQ(u.bgp->peersOf("a")->front().name, "core");
  EXPECT_TRUE(u.upserts.empty());
  ASSERT_EQ(u.announcements.size(), 1u) << "its advertisements may have changed";

  // The same plan again (a new object, equal content): no new generation.
  const auto after = dist.view();
  EXPECT_FALSE(dist.setDesired(oneService(std::make_shared<const BgpDesired>(*bgp))));
  EXPECT_EQ(dist.view(), after);
  EXPECT_TRUE(nodeUpdate(after, dist.view(), "a").empty());

  // BGP objects all deleted: an INCREMENTAL state that clears the config.
  ASSERT_TRUE(dist.setDesired(oneService(nullptr)));
  u = nodeUpdate(after, dist.view(), "a");
  EXPECT_TRUE(u.bgp_changed);
  EXPECT_EQ(u.bgp, nullptr);
}

}  // namespace
}  // namespace flowlb::controller

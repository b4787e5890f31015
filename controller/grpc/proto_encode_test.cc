// The wire format: a service encoded once and spliced into each agent's
// message reads back exactly as a message built field by field, and the
// agent's converter gets what the controller meant.
#include "controller/grpc/proto_encode.h"

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include "agent/control/convert.h"

namespace flowlb::controller {
namespace {

namespace pb = flowlb::v1;

IpAddr ip(const char* s) {
  return *IpAddr::parse(s);
}

std::shared_ptr<const DesiredService> local() {
  auto d = std::make_shared<DesiredService>();
  d->key = "shop/dns/dns/ipv6";
  d->vip = ip("2001:db8::53");
  d->port = 53;
  d->proto = 17;
  d->mode = ForwardingMode::kDsr;
  d->external_traffic_local = true;
  d->client_ip_affinity = true;
  d->affinity_timeout_s = 600;
  d->idle_timeout_s = 30;
  d->drain_timeout_s = 60;
  d->source_ranges = {*IpPrefix::parse("2001:db8::/32")};
  d->backends = {{ip("fd00::1"), 53, BackendState::kActive, "n1", "z1"},
                 {ip("fd00::2"), 53, BackendState::kDraining, "n2", ""}};
  return d;
}

std::shared_ptr<const DesiredService> plain() {
  auto d = std::make_shared<DesiredService>();
  d->key = "shop/web/http/ipv4";
  d->vip = ip("192.0.2.1");
  d->port = 80;
  d->backends = {{ip("10.0.0.1"), 8080, BackendState::kActive, "n1", ""}};
  return d;
}

TEST(ProtoEncodeTest, CompactEncodingLeavesOutDefaultsAndKeysButLosesNothing) {
  pb::VirtualService vs;
  ASSERT_TRUE(vs.ParseFromString(encodeVirtualService(*plain(), false)));
  EXPECT_EQ(vs.forwarding_mode(), pb::FORWARDING_MODE_UNSPECIFIED);  // NAT
  EXPECT_EQ(vs.drain_timeout_seconds(), 0u);                         // the default
  EXPECT_EQ(vs.backends(0).key(), "");
  EXPECT_EQ(vs.backends(0).node_name(), "") << "read by no one for Cluster";
  EXPECT_EQ(vs.backends(0).weight(), 1u);
  ASSERT_TRUE(vs.ParseFromString(encodeVirtualService(*local(), true)));
  EXPECT_EQ(vs.backends(0).key(), "[fd00::1]:53");
  EXPECT_EQ(vs.backends(1).node_name(), "n2");
  EXPECT_EQ(vs.backends(1).state(), pb::BACKEND_STATE_DRAINING);
  EXPECT_EQ(vs.session_affinity_timeout_seconds(), 600u);

  // What the agent reads is what the controller meant.
  pb::DesiredState ds;
  ds.set_generation(3);
  ds.set_kind(pb::DESIRED_STATE_KIND_FULL);
  ASSERT_TRUE(ds.add_services()->ParseFromString(encodeVirtualService(*local(), false)));
  ASSERT_TRUE(ds.add_services()->ParseFromString(encodeVirtualService(*plain(), false)));
  const agent::ReceivedState st = agent::convertDesiredState(ds, "n2");
  ASSERT_EQ(st.desired.services.size(), 2u);
  const agent::ServiceSpec& l = st.desired.services[0];
  EXPECT_EQ(l.mode, agent::ForwardingMode::kDsr);
  EXPECT_TRUE(l.keep_client_address);
  EXPECT_TRUE(l.client_ip_affinity);
  EXPECT_EQ(l.affinity_timeout_s, 600u);
  EXPECT_EQ(l.idle_timeout_s, 30u);
  EXPECT_EQ(l.drain_timeout_s, 60u);
  ASSERT_EQ(l.backends.size(), 1u);  // n2's own endpoint (Local)
  EXPECT_EQ(l.backends[0].addr, ip("fd00::2"));
  const agent::ServiceSpec& p = st.desired.services[1];
  EXPECT_EQ(p.mode, agent::ForwardingMode::kNat);
  EXPECT_EQ(p.affinity_timeout_s, 10800u);
  EXPECT_EQ(p.drain_timeout_s, 300u);
  EXPECT_EQ(p.backends.size(), 1u);
}

// The table size is said, not left to each agent (every node and every
// agent version builds the same table), and the PROXY protocol annotation
// reaches the agent.
TEST(ProtoEncodeTest, MaglevSizeAndProxyProtocolReachTheAgent) {
  auto d = std::make_shared<DesiredService>(*plain());
  d->proxy_protocol_v2 = true;
  for (int i = 2; i <= 3; ++i) {
    d->backends.push_back(
        {ip(("10.0.0." + std::to_string(i)).c_str()), 8080, BackendState::kActive, "n1", ""});
  }
  pb::DesiredState ds;
  ds.set_generation(1);
  ds.set_kind(pb::DESIRED_STATE_KIND_FULL);
  ASSERT_TRUE(ds.add_services()->ParseFromString(encodeVirtualService(*d, false)));
  ASSERT_TRUE(ds.add_services()->ParseFromString(encodeVirtualService(*plain(), false)));
  EXPECT_EQ(ds.services(0).maglev_table_size(), 1021u);  // > 100 x 3 backends
  EXPECT_EQ(ds.services(1).maglev_table_size(), 251u);
  EXPECT_EQ(ds.services(1).proxy_protocol(), pb::PROXY_PROTOCOL_UNSPECIFIED);
  const agent::ReceivedState st = agent::convertDesiredState(ds, "n1");
  ASSERT_EQ(st.desired.services.size(), 2u);
  EXPECT_EQ(st.desired.services[0].maglev_size, 1021u);
  EXPECT_EQ(st.desired.services[0].proxy_protocol, agent::ProxyProtocol::kV2);
}

TEST(ProtoEncodeTest, SplicedServicesReadBackAsAMessageBuiltFieldByField) {
  const auto encode = [](const DesiredService& d, bool keys) {
    return encodeVirtualService(d, keys);
  };
  const Entry a(local(), encode), b(plain(), encode);
  NodeUpdate u;
  u.full = false;
  u.generation = 12;
  u.base = 10;
  u.upserts = {&a, &b};
  u.removed = {"shop/old/http/ipv4"};
  u.announcements = {{ip("192.0.2.1"), "n1"}, {ip("2001:db8::53"), "n2"}};
  u.removed_vips = {ip("192.0.2.99")};
  for (const bool keys : {false, true}) {
    const pb::ControllerMessage spliced = desiredStateMessage(u, "n1", {keys});
    pb::ControllerMessage built;
    pb::DesiredState* ds = built.mutable_desired_state();
    ds->set_generation(12);
    ds->set_kind(pb::DESIRED_STATE_KIND_INCREMENTAL);
    ds->set_base_generation(10);
    ASSERT_TRUE(ds->add_services()->ParseFromString(encodeVirtualService(*local(), keys)));
    ASSERT_TRUE(ds->add_services()->ParseFromString(encodeVirtualService(*plain(), keys)));
    ds->add_removed_service_keys("shop/old/http/ipv4");
    for (const auto& [vip, node] : std::vector<std::pair<const char*, const char*>>{
             {"192.0.2.1", "n1"}, {"2001:db8::53", "n2"}}) {
      pb::Announcement* an = ds->add_announcements();
      const IpAddr v = ip(vip);
      an->mutable_vip()->set_addr(
          v.isV4() ? std::string(reinterpret_cast<const char*>(v.v4()), 4)
                   : std::string(reinterpret_cast<const char*>(v.bytes.data()), 16));
      an->set_mode(pb::ANNOUNCEMENT_MODE_L2);
      an->set_announcer(std::string(node) == "n1");
      an->set_announcer_node(node);
    }
    ds->add_removed_announcement_vips()->set_addr(std::string("\xc0\x00\x02\x63", 4));
    pb::ControllerMessage read;
    ASSERT_TRUE(read.ParseFromString(spliced.SerializeAsString()));
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(read, built))
        << read.DebugString() << "\nvs\n"
        << built.DebugString();
    EXPECT_EQ(spliced.ByteSizeLong(), built.ByteSizeLong());
  }
}

TEST(ProtoEncodeTest, BgpGoesOnlyToAgentsThatTakeItAndTheirVipsStopArping) {
  auto view = std::make_shared<View>();
  view->generation = 5;
  auto bgp = std::make_shared<BgpDesired>();
  bgp->configured = true;
  BgpPeerSpec tor;
  tor.name = "tor";
  tor.address = ip("10.0.0.1");
  tor.peer_asn = 65000;
  tor.local_asn = 65001;
  tor.hold_time_s = 9;
  tor.bfd = BfdSpec{100, 100, 3};
  bgp->peers_by_node["n1"] = {tor};
  BgpRouteSpec route;
  route.name = "ext";
  route.peers = {"tor"};
  route.aggregation_v4 = 24;
  route.communities = {65000u << 16 | 7};
  route.large_communities = {{1, 2, 3}};
  route.local_pref = 150;
  bgp->vips[ip("192.0.2.1")] = {route};
  view->bgp = bgp;
  NodeUpdate u;
  u.full = true;
  u.generation = 5;
  u.view = view;
  u.bgp = bgp.get();
  u.announcements = {{ip("192.0.2.1"), "n1"}, {ip("192.0.2.2"), "n1"}};

  pb::DesiredState ds = desiredStateMessage(u, "n1", MessageOptions{false, true}).desired_state();
  ASSERT_TRUE(ds.has_bgp());
  ASSERT_EQ(ds.bgp().peers_size(), 1);
  const pb::BgpPeer& p = ds.bgp().peers(0);
  EXPECT_EQ(p.name(), "tor");
  EXPECT_EQ(p.peer_asn(), 65000u);
  EXPECT_EQ(p.local_asn(), 65001u);
  EXPECT_EQ(p.port(), 0u) << "179 is the default";
  EXPECT_EQ(p.hold_time_seconds(), 9u);
  EXPECT_EQ(p.bfd().min_tx_ms(), 100u);
  ASSERT_EQ(ds.announcements_size(), 2);
  const pb::Announcement& a = ds.announcements(0);
  EXPECT_EQ(a.mode(), pb::ANNOUNCEMENT_MODE_BGP);
  EXPECT_FALSE(a.announcer()) << "a BGP VIP is answered by no one on L2";
  ASSERT_EQ(a.bgp().advertisements_size(), 1);
  const pb::BgpRouteAdvertisement& r = a.bgp().advertisements(0);
  EXPECT_EQ(r.name(), "ext");
  EXPECT_EQ(r.aggregation_length_v4(), 24u);
  EXPECT_EQ(r.aggregation_length_v6(), 0u) << "host route";
  EXPECT_EQ(r.communities(0), 65000u << 16 | 7);
  EXPECT_EQ(r.large_communities(0).local_data_2(), 3u);
  EXPECT_EQ(r.local_pref(), 150u);
  EXPECT_EQ(ds.announcements(1).mode(), pb::ANNOUNCEMENT_MODE_L2) << "its pool is not selected";
  EXPECT_TRUE(ds.announcements(1).announcer());

  // A node no BGPPeer selects: an empty BgpConfig (its sessions close).
  ds = desiredStateMessage(u, "n2", MessageOptions{false, true}).desired_state();
  ASSERT_TRUE(ds.has_bgp());
  EXPECT_EQ(ds.bgp().peers_size(), 0);

  // An agent without CAPABILITY_BGP: nothing of BGP, L2 as before.
  ds = desiredStateMessage(u, "n1", MessageOptions{false, false}).desired_state();
  EXPECT_FALSE(ds.has_bgp());
  EXPECT_EQ(ds.announcements(0).mode(), pb::ANNOUNCEMENT_MODE_L2);
  EXPECT_TRUE(ds.announcements(0).announcer());

  // INCREMENTAL without a BGP change: BgpConfig unset (unchanged).
  u.full = false;
  u.bgp_changed = false;
  ds = desiredStateMessage(u, "n1", MessageOptions{false, true}).desired_state();
  EXPECT_FALSE(ds.has_bgp());
}

// The health check and the cluster's verdict reach the agent as said.
TEST(ProtoEncodeTest, HealthCheckAndUnhealthyBackendsReachTheAgent) {
  auto d = std::make_shared<DesiredService>(*plain());
  d->health = {HealthCheckKind::kHttp, "/healthz", 1000, 300, 2, 4};
  d->backends.push_back({ip("10.0.0.2"), 8080, BackendState::kUnhealthy, "n1", ""});
  pb::VirtualService vs;
  ASSERT_TRUE(vs.ParseFromString(encodeVirtualService(*d, false)));
  ASSERT_TRUE(vs.has_health_check());
  EXPECT_EQ(vs.health_check().kind(), pb::HEALTH_CHECK_KIND_HTTP);
  EXPECT_EQ(vs.health_check().path(), "/healthz");
  EXPECT_EQ(vs.health_check().interval_ms(), 1000u);
  EXPECT_EQ(vs.health_check().timeout_ms(), 300u);
  EXPECT_EQ(vs.health_check().unhealthy_threshold(), 2u);
  EXPECT_EQ(vs.health_check().healthy_threshold(), 4u);
  EXPECT_EQ(vs.backends(0).state(), pb::BACKEND_STATE_UNSPECIFIED);  // ACTIVE
  EXPECT_EQ(vs.backends(1).state(), pb::BACKEND_STATE_UNHEALTHY);
  ASSERT_TRUE(vs.ParseFromString(encodeVirtualService(*plain(), false)));
  EXPECT_FALSE(vs.has_health_check()) << "off: left out";

  for (auto [kind, want] : {std::pair{HealthCheckKind::kTcp, pb::HEALTH_CHECK_KIND_TCP},
                            std::pair{HealthCheckKind::kHttps, pb::HEALTH_CHECK_KIND_HTTPS},
                            std::pair{HealthCheckKind::kUdpDns, pb::HEALTH_CHECK_KIND_UDP_DNS}}) {
    d->health.kind = kind;
    ASSERT_TRUE(vs.ParseFromString(encodeVirtualService(*d, false)));
    EXPECT_EQ(vs.health_check().kind(), want);
  }
}

TEST(ProtoEncodeTest, HealthProbersGoOnlyToAgentsThatProbeAndOnlyWhenTheyChanged) {
  auto view = std::make_shared<View>();
  view->generation = 7;
  view->probers =
      std::make_shared<const std::vector<std::string>>(std::vector<std::string>{"n1", "n2", "n3"});
  NodeUpdate u;
  u.full = true;
  u.generation = 7;
  u.view = view;
  u.probers = view->probers.get();
  MessageOptions health;
  health.health = true;
  pb::DesiredState ds = desiredStateMessage(u, "n1", health).desired_state();
  ASSERT_TRUE(ds.has_health_probers());
  EXPECT_EQ(std::vector<std::string>(ds.health_probers().nodes().begin(),
                                     ds.health_probers().nodes().end()),
            (std::vector<std::string>{"n1", "n2", "n3"}));
  EXPECT_EQ(ds.health_probers().probers_per_backend(), 0u) << "the default, 3";
  health.probers_per_backend = 2;
  EXPECT_EQ(
      desiredStateMessage(u, "n1", health).desired_state().health_probers().probers_per_backend(),
      2u);
  // An agent without CAPABILITY_HEALTH_CHECKS: none.
  EXPECT_FALSE(desiredStateMessage(u, "n1", MessageOptions{}).desired_state().has_health_probers());
  // INCREMENTAL: only when the list changed.
  u.full = false;
  u.probers = nullptr;
  u.probers_changed = false;
  EXPECT_FALSE(desiredStateMessage(u, "n1", health).desired_state().has_health_probers());
  u.probers_changed = true;
  u.probers = view->probers.get();
  EXPECT_TRUE(desiredStateMessage(u, "n1", health).desired_state().has_health_probers());
}

}  // namespace
}  // namespace flowlb::controller

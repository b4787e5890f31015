// The agent's copy of the controller's state: FULL, INCREMENTAL against the
// applied generation, and the answers when the base is not the one it runs.
#include "agent/control/desired_view.h"

#include <gtest/gtest.h>

#include "agent/announce/bgp/routes.h"
#include "agent/control/convert_bgp.h"

namespace flowlb::agent {
namespace {

namespace pb = flowlb::v1;

void service(pb::DesiredState* ds, const std::string& key, uint8_t last_octet, int backends,
             const char* node = "") {
  pb::VirtualService* vs = ds->add_services();
  vs->set_key(key);
  vs->mutable_vip()->set_addr(std::string("\xc0\x00\x02", 3) + static_cast<char>(last_octet));
  vs->set_port(80);
  vs->set_protocol(pb::PROTOCOL_TCP);
  for (int i = 0; i < backends; ++i) {
    pb::Backend* b = vs->add_backends();  // no key: CAPABILITY_IMPLICIT_BACKEND_KEYS
    b->mutable_address()->set_addr(std::string("\x0a\x00\x00", 3) + static_cast<char>(i + 1));
    b->set_port(8080);
    b->set_weight(1);
    b->set_node_name(node);
  }
}

void announce(pb::DesiredState* ds, uint8_t last_octet, bool mine) {
  pb::Announcement* a = ds->add_announcements();
  a->mutable_vip()->set_addr(std::string("\xc0\x00\x02", 3) + static_cast<char>(last_octet));
  a->set_mode(pb::ANNOUNCEMENT_MODE_L2);
  a->set_announcer(mine);
}

TEST(DesiredViewTest, IncrementalStatesBuildOnTheAppliedOne) {
  DesiredView v("n1", 0);
  pb::DesiredState full;
  full.set_generation(10);
  full.set_kind(pb::DESIRED_STATE_KIND_FULL);
  service(&full, "a", 1, 2);
  service(&full, "b", 2, 3);
  service(&full, "c", 3, 1);
  announce(&full, 1, true);
  announce(&full, 2, false);
  auto o = v.receive(full);
  ASSERT_EQ(o.kind, DesiredView::Kind::kState);
  EXPECT_EQ(o.state.desired.services.size(), 3u);
  EXPECT_EQ(o.state.desired.services[1].drain_timeout_s, 300u) << "0 on the wire: the default";
  EXPECT_EQ(o.state.announce.size(), 1u);
  v.applied(10);

  pb::DesiredState inc;
  inc.set_generation(12);
  inc.set_kind(pb::DESIRED_STATE_KIND_INCREMENTAL);
  inc.set_base_generation(10);
  service(&inc, "b", 2, 5);  // b changes
  inc.add_removed_service_keys("c");
  announce(&inc, 2, true);  // n1 announces 192.0.2.2 now
  inc.add_removed_announcement_vips()->set_addr(std::string("\xc0\x00\x02\x01", 4));
  o = v.receive(inc);
  ASSERT_EQ(o.kind, DesiredView::Kind::kState);
  EXPECT_EQ(o.state.desired.generation, 12u);
  ASSERT_EQ(o.state.desired.services.size(), 2u);
  EXPECT_EQ(o.state.desired.services[0].name, "a");
  EXPECT_EQ(o.state.desired.services[0].backends.size(), 2u);
  EXPECT_EQ(o.state.desired.services[1].backends.size(), 5u);
  ASSERT_EQ(o.state.announce.size(), 1u);
  EXPECT_EQ(o.state.announce[0], *IpAddr::parse("192.0.2.2"));
  // Not applied yet: a delta against 12 is refused, one against 10 works.
  pb::DesiredState next = inc;
  next.set_generation(13);
  next.set_base_generation(12);
  o = v.receive(next);
  EXPECT_EQ(o.kind, DesiredView::Kind::kBaseMismatch);
  EXPECT_NE(o.error.find("runs 10"), std::string::npos);
  v.applied(12);
  next.set_generation(14);
  EXPECT_EQ(v.receive(next).kind, DesiredView::Kind::kState);
  // An old generation, or no kind at all, is rejected.
  pb::DesiredState old = full;
  old.set_generation(9);
  EXPECT_EQ(v.receive(old).kind, DesiredView::Kind::kRejected);
  pb::DesiredState kindless;
  kindless.set_generation(99);
  EXPECT_EQ(v.receive(kindless).kind, DesiredView::Kind::kRejected);
}

TEST(DesiredViewTest, AFreshAgentNeedsAFullStateAndLocalKeepsItsOwnEndpoints) {
  DesiredView v("n2", 0);
  pb::DesiredState inc;
  inc.set_generation(5);
  inc.set_kind(pb::DESIRED_STATE_KIND_INCREMENTAL);
  inc.set_base_generation(4);
  EXPECT_EQ(v.receive(inc).kind, DesiredView::Kind::kBaseMismatch);
  pb::DesiredState full;
  full.set_generation(6);
  full.set_kind(pb::DESIRED_STATE_KIND_FULL);
  service(&full, "local", 9, 3, "n1");
  full.mutable_services(0)->set_external_traffic_policy(pb::EXTERNAL_TRAFFIC_POLICY_LOCAL);
  full.mutable_services(0)->mutable_backends(2)->set_node_name("n2");
  auto o = v.receive(full);
  ASSERT_EQ(o.kind, DesiredView::Kind::kState);
  ASSERT_EQ(o.state.desired.services[0].backends.size(), 1u);  // n2's own
  EXPECT_TRUE(o.state.desired.services[0].keep_client_address);
}

TEST(DesiredViewTest, BgpFromTheControllerBecomesTheSpeakersSettingsAndStaysAcrossIncrementals) {
  DesiredView v("n1", 0);
  pb::DesiredState full;
  full.set_generation(1);
  full.set_kind(pb::DESIRED_STATE_KIND_FULL);
  service(&full, "a", 1, 1);
  service(&full, "b", 2, 1);
  pb::BgpPeer* p = full.mutable_bgp()->add_peers();
  p->set_name("tor");
  p->mutable_address()->set_addr(std::string("\x0a\x00\x00\x01", 4));
  p->set_peer_asn(65000);
  p->set_local_asn(65001);
  p->set_hold_time_seconds(9);
  p->mutable_bfd()->set_min_tx_ms(100);
  pb::BgpPeer* bad = full.mutable_bgp()->add_peers();
  bad->set_name("broken");  // no address
  bad->set_peer_asn(1);
  bad->set_local_asn(1);
  pb::Announcement* a = full.add_announcements();
  a->mutable_vip()->set_addr(std::string("\xc0\x00\x02\x01", 4));
  a->set_mode(pb::ANNOUNCEMENT_MODE_BGP);
  a->set_announcer(true);  // ignored in mode BGP: no ARP
  pb::BgpRouteAdvertisement* r = a->mutable_bgp()->add_advertisements();
  r->set_name("ext");
  r->add_peers("tor");
  r->add_peers("elsewhere");  // a peer of other nodes
  r->set_aggregation_length_v4(24);
  r->add_communities(65000u << 16 | 7);
  r->set_local_pref(150);
  pb::BgpRouteAdvertisement* other = a->mutable_bgp()->add_advertisements();
  other->set_name("only-elsewhere");
  other->add_peers("elsewhere");
  announce(&full, 2, true);  // L2

  auto out = v.receive(full);
  ASSERT_EQ(out.kind, DesiredView::Kind::kState);
  ASSERT_TRUE(out.state.bgp);
  const bgp::BgpSettings& b = *out.state.bgp;
  ASSERT_EQ(b.peers.size(), 1u) << "the malformed peer is skipped";
  EXPECT_EQ(b.peers[0].name, "tor");
  EXPECT_EQ(b.peers[0].port, 179);
  EXPECT_EQ(b.peers[0].hold_time_s, 9);
  ASSERT_EQ(b.bfd_profiles.count(b.peers[0].bfd_profile), 1u);
  EXPECT_EQ(b.bfd_profiles.at(b.peers[0].bfd_profile).timers.desired_min_tx,
            std::chrono::milliseconds(100));
  ASSERT_EQ(out.state.other_problems.size(), 1u);
  EXPECT_NE(out.state.other_problems[0].find("broken"), std::string::npos);
  EXPECT_TRUE(bgp::validate(b)) << "what the speaker is given is valid";
  ASSERT_EQ(b.advertisements.size(), 1u) << "one with no peer of this node goes nowhere";
  EXPECT_EQ(b.advertisements[0].peers, std::vector<std::string>{"tor"});
  EXPECT_EQ(b.advertisements[0].aggregation_length_v4, 24);
  EXPECT_EQ(b.advertisements[0].attributes.local_pref, 150u);
  EXPECT_EQ(out.state.announce.size(), 1u) << "only the L2 VIP is answered on ARP";
  // Services of the BGP VIP keep the node's NAT source (ECMP), the L2 one's may use the VIP.
  ASSERT_EQ(out.state.desired.services.size(), 2u);
  for (const ServiceSpec& svc : out.state.desired.services) {
    EXPECT_EQ(svc.announced_by_bgp, svc.vip == *IpAddr::parse("192.0.2.1")) << svc.name;
  }

  // The routes: the BGP VIP, aggregated, to tor; the L2 VIP to no one.
  const IpAddr vip1 = *IpAddr::parse("192.0.2.1"), vip2 = *IpAddr::parse("192.0.2.2");
  auto routes = bgp::routesPerPeer(b, {vip1, vip2});
  ASSERT_EQ(routes["tor"].size(), 1u);
  EXPECT_EQ(routes["tor"].begin()->first, *IpPrefix::parse("192.0.2.0/24"));
  v.applied(1);

  // INCREMENTAL without bgp: unchanged.
  pb::DesiredState inc;
  inc.set_generation(2);
  inc.set_kind(pb::DESIRED_STATE_KIND_INCREMENTAL);
  inc.set_base_generation(1);
  service(&inc, "b", 2, 2);
  out = v.receive(inc);
  ASSERT_TRUE(out.state.bgp);
  EXPECT_EQ(out.state.bgp->peers.size(), 1u);
  v.applied(2);

  // INCREMENTAL with an empty BgpConfig: no peers, the speaker stops.
  inc.set_generation(3);
  inc.set_base_generation(2);
  inc.mutable_bgp();
  out = v.receive(inc);
  ASSERT_TRUE(out.state.bgp);
  EXPECT_FALSE(out.state.bgp->enabled());
  v.applied(3);

  // FULL without bgp: none.
  full.set_generation(4);
  full.clear_bgp();
  out = v.receive(full);
  EXPECT_FALSE(out.state.bgp);
}

TEST(DesiredViewTest, ControllerPeersWithoutAdvertisementsAnnounceNothing) {
  pb::BgpConfig c;
  pb::BgpPeer* p = c.add_peers();
  p->set_name("tor");
  p->mutable_address()->set_addr(std::string("\x0a\x00\x00\x01", 4));
  p->set_peer_asn(65000);
  p->set_local_asn(65001);
  std::vector<std::string> problems;
  const bgp::BgpSettings b = convertBgp(c, {}, &problems);
  EXPECT_TRUE(problems.empty());
  auto routes = bgp::routesPerPeer(b, {*IpAddr::parse("192.0.2.1")});
  EXPECT_TRUE(routes["tor"].empty()) << "only pools a BGPAdvertisement selects go to BGP";
}

TEST(ConvertTest, HealthCheckZeroFieldsMeanTheDefaults) {
  pb::DesiredState ds;
  ds.set_generation(1);
  service(&ds, "a", 1, 2);
  pb::HealthCheck* h = ds.mutable_services(0)->mutable_health_check();
  h->set_kind(pb::HEALTH_CHECK_KIND_HTTP);
  h->set_path("/healthz");
  h->set_interval_ms(500);
  service(&ds, "b", 2, 1);
  ds.mutable_services(1)->mutable_health_check()->set_kind(pb::HEALTH_CHECK_KIND_UDP_DNS);
  service(&ds, "c", 3, 1);  // no health check
  ds.mutable_services(0)->mutable_backends(1)->set_state(pb::BACKEND_STATE_UNHEALTHY);
  const ReceivedState r = convertDesiredState(ds);
  ASSERT_EQ(r.desired.services.size(), 3u);
  const HealthCheckSpec& a = r.desired.services[0].health;
  EXPECT_EQ(a.kind, HealthCheckKind::kHttp);
  EXPECT_EQ(a.path, "/healthz");
  EXPECT_EQ(a.interval_ms, 500u);
  EXPECT_EQ(a.timeout_ms, 2000u);
  EXPECT_EQ(a.unhealthy_threshold, 3u);
  EXPECT_EQ(a.healthy_threshold, 2u);
  EXPECT_EQ(r.desired.services[1].health.kind, HealthCheckKind::kUdpDns);
  EXPECT_EQ(r.desired.services[1].health.path, "/");
  EXPECT_EQ(r.desired.services[2].health.kind, HealthCheckKind::kNone);
  EXPECT_EQ(r.desired.services[0].backends[0].state, BackendState::kActive);
  EXPECT_EQ(r.desired.services[0].backends[1].state, BackendState::kUnhealthy);
}

TEST(DesiredViewTest, HealthProbersFullAndIncremental) {
  DesiredView v("n1", 0);
  pb::DesiredState full;
  full.set_generation(1);
  full.set_kind(pb::DESIRED_STATE_KIND_FULL);
  service(&full, "a", 1, 2);
  full.mutable_health_probers()->add_nodes("n1");
  full.mutable_health_probers()->add_nodes("n2");
  full.mutable_health_probers()->set_probers_per_backend(1);
  auto o = v.receive(full);
  ASSERT_EQ(o.kind, DesiredView::Kind::kState);
  EXPECT_TRUE(o.state.full);
  EXPECT_EQ(o.state.desired.health_probers.nodes, (std::vector<std::string>{"n1", "n2"}));
  EXPECT_EQ(o.state.desired.health_probers.per_backend, 1u);
  v.applied(1);

  pb::DesiredState inc;  // unset: unchanged
  inc.set_generation(2);
  inc.set_kind(pb::DESIRED_STATE_KIND_INCREMENTAL);
  inc.set_base_generation(1);
  service(&inc, "b", 2, 1);
  o = v.receive(inc);
  ASSERT_EQ(o.kind, DesiredView::Kind::kState);
  EXPECT_FALSE(o.state.full);
  EXPECT_EQ(o.state.desired.health_probers.nodes, (std::vector<std::string>{"n1", "n2"}));
  v.applied(2);

  pb::DesiredState inc2;  // set: replaced
  inc2.set_generation(3);
  inc2.set_kind(pb::DESIRED_STATE_KIND_INCREMENTAL);
  inc2.set_base_generation(2);
  inc2.mutable_health_probers()->add_nodes("n3");
  o = v.receive(inc2);
  EXPECT_EQ(o.state.desired.health_probers.nodes, (std::vector<std::string>{"n3"}));
  EXPECT_EQ(o.state.desired.health_probers.per_backend, 0u);
  v.applied(3);

  pb::DesiredState full2;  // FULL without it: none (every node probes)
  full2.set_generation(4);
  full2.set_kind(pb::DESIRED_STATE_KIND_FULL);
  o = v.receive(full2);
  EXPECT_TRUE(o.state.desired.health_probers.nodes.empty());
}

}  // namespace
}  // namespace flowlb::agent

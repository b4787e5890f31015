// The agent's copy of the controller's state: FULL, INCREMENTAL against the
// applied generation, and the answers when the base is not the one it runs.
#include "agent/control/desired_view.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace flowlb::agent

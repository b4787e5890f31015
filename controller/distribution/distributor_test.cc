// The distribution core with a fake encoder and a fake clock: encode once,
// generations only for changes agents see, INCREMENTAL deltas.
#include "controller/distribution/distributor.h"

#include <gtest/gtest.h>

namespace flowlb::controller {
namespace {

IpAddr ip(const char* s) {
  return *IpAddr::parse(s);
}

std::shared_ptr<const DesiredService> svc(int i, int backends = 2) {
  auto d = std::make_shared<DesiredService>();
  d->key = "ns/s" + std::to_string(i) + "/http/ipv4";
  d->vip = *IpAddr::parse("192.0.2." + std::to_string(i));
  d->port = 80;
  for (int b = 0; b < backends; ++b) {
    d->backends.push_back({*IpAddr::parse("10.0." + std::to_string(i) + "." + std::to_string(b)),
                           8080, BackendState::kActive, "", ""});
  }
  return d;
}

Reconciled state(std::vector<std::shared_ptr<const DesiredService>> desired,
                 std::vector<std::string> nodes = {"a", "b", "c"}) {
  Reconciled r;
  auto all = std::make_shared<const std::vector<std::string>>(nodes);
  for (auto& d : desired) {
    auto copy = std::make_shared<DesiredService>(*d);
    copy->announce_candidates = all;
    r.vips.push_back({copy->vip, all});
    r.desired.push_back(std::move(copy));
  }
  std::sort(r.vips.begin(), r.vips.end(),
            [](const auto& x, const auto& y) { return x.vip < y.vip; });
  r.nodes = std::move(nodes);
  return r;
}

class DistributorTest : public ::testing::Test {
 protected:
  Distributor make(std::chrono::milliseconds settle = std::chrono::milliseconds(0)) {
    return Distributor(
        [this](const DesiredService& d, bool keys) {
          ++encodes;
          return d.key + (keys ? "+keys" : "") + "#" + std::to_string(d.backends.size());
        },
        DistributionOptions{settle}, &clock);
  }
  FakeClock clock;
  int encodes = 0;
};

TEST_F(DistributorTest, EachServiceIsEncodedOncePerContentAndSharedByEveryNode) {
  Distributor d = make();
  std::vector<std::shared_ptr<const DesiredService>> all;
  for (int i = 1; i <= 50; ++i) all.push_back(svc(i));
  ASSERT_TRUE(d.setDesired(state(all)));
  EXPECT_EQ(encodes, 50);
  const auto v = d.view();
  const NodeUpdate fa = nodeUpdate(nullptr, v, "a");
  const NodeUpdate fb = nodeUpdate(nullptr, v, "b");
  ASSERT_EQ(fa.upserts.size(), 50u);
  EXPECT_EQ(fa.upserts[7], fb.upserts[7]) << "one encoding for every node";
  EXPECT_EQ(fa.announcements.size(), 50u);
  // The same content again (a full reconcile makes new objects): no new
  // encoding, no new generation.
  EXPECT_FALSE(d.setDesired(state(all)));
  EXPECT_EQ(encodes, 50);
  EXPECT_EQ(d.view(), v);
  // A node that is not ready runs nothing.
  EXPECT_TRUE(nodeUpdate(nullptr, v, "down").upserts.empty());
}

TEST_F(DistributorTest, OneEndpointChangeIsOneUpsertForEveryNode) {
  Distributor d = make();
  std::vector<std::shared_ptr<const DesiredService>> all;
  for (int i = 1; i <= 50; ++i) all.push_back(svc(i));
  d.setDesired(state(all));
  const auto base = d.view();
  all[9] = svc(10, 3);
  all.erase(all.begin() + 20);  // s21 deleted
  ASSERT_TRUE(d.setDesired(state(all)));
  EXPECT_EQ(encodes, 51);
  const auto now = d.view();
  EXPECT_EQ(now->generation, base->generation + 1);
  const NodeUpdate u = nodeUpdate(base, now, "b");
  EXPECT_FALSE(u.full);
  EXPECT_EQ(u.base, base->generation);
  ASSERT_EQ(u.upserts.size(), 1u);
  EXPECT_EQ(u.upserts[0]->encoded(), "ns/s10/http/ipv4#3");
  EXPECT_EQ(u.removed, std::vector<std::string>{"ns/s21/http/ipv4"});
  EXPECT_EQ(u.removed_vips, std::vector<IpAddr>{ip("192.0.2.21")});
  EXPECT_TRUE(u.announcements.empty());
  EXPECT_EQ(u.upserts[0]->encodedWithBackendKeys(), "ns/s10/http/ipv4+keys#3");
  // Across several views, from an older base.
  all[0] = svc(1, 5);
  d.setDesired(state(all));
  const NodeUpdate two = nodeUpdate(base, d.view(), "c");
  EXPECT_EQ(two.upserts.size(), 2u);
  EXPECT_EQ(two.removed.size(), 1u);
}

TEST_F(DistributorTest, AgentsComingAndGoingMakeAGenerationOnlyWhenAnAnnouncerMoves) {
  Distributor d = make();
  std::vector<std::shared_ptr<const DesiredService>> all;
  for (int i = 1; i <= 30; ++i) all.push_back(svc(i));
  d.setDesired(state(all));
  EXPECT_TRUE(d.setLive("a", true)) << "the first agent takes the nominal VIPs of the others";
  EXPECT_FALSE(d.setLive("b", true)) << "sticky: a keeps them";
  EXPECT_FALSE(d.setLive("c", true));
  const uint64_t g = d.view()->generation;
  // A reconnect storm of a node that announces nothing: no new generation.
  std::string quiet;
  for (const std::string n : {"a", "b", "c"}) {
    bool announces = false;
    for (const auto& [vip, who] : d.announcers()) announces |= who == n;
    if (!announces) quiet = n;
  }
  if (!quiet.empty()) {
    for (int i = 0; i < 20; ++i) {
      EXPECT_FALSE(d.setLive(quiet, false));
      EXPECT_FALSE(d.setLive(quiet, true));
    }
    EXPECT_EQ(d.view()->generation, g);
  }
  // An announcer goes: its VIPs move, the others stay, a new generation;
  // every node learns who announces now, and nothing else.
  const std::string victim = d.announcers().begin()->second;
  const AnnouncerMap before = d.announcers();
  const auto base = d.view();
  EXPECT_TRUE(d.setLive(victim, false));
  for (const auto& [vip, who] : d.announcers()) {
    if (before.at(vip) != victim) {
      EXPECT_EQ(who, before.at(vip));
    }
    EXPECT_NE(who, victim);
  }
  const NodeUpdate u = nodeUpdate(base, d.view(), "a");
  EXPECT_TRUE(u.upserts.empty());
  size_t moved = 0;
  for (const auto& [vip, who] : before) moved += who == victim;
  EXPECT_EQ(u.announcements.size(), moved);
  // Back: sticky, nothing moves.
  EXPECT_FALSE(d.setLive(victim, true));
}

TEST_F(DistributorTest, SettlingKeepsAnnouncersForAgentsNotBackYet) {
  Distributor d = make(std::chrono::milliseconds(3000));
  std::vector<std::shared_ptr<const DesiredService>> all;
  for (int i = 1; i <= 30; ++i) all.push_back(svc(i));
  d.setDesired(state(all));
  const AnnouncerMap nominal = d.announcers();  // rendezvous over candidates
  d.setLive("a", true);
  EXPECT_EQ(d.announcers(), nominal) << "the first agent back does not take everything";
  ASSERT_TRUE(d.settleDeadline());
  clock.advance(std::chrono::milliseconds(3001));
  EXPECT_FALSE(d.settleDeadline());
  EXPECT_TRUE(d.tick());  // b and c never came back: their VIPs go to a
  for (const auto& [vip, who] : d.announcers()) EXPECT_EQ(who, "a");
}

TEST_F(DistributorTest, AFreedBaseOrAGenerationFromBeforeARestartStillGivesTheRightUpdate) {
  Distributor d = make();
  std::vector<std::shared_ptr<const DesiredService>> all;
  for (int i = 1; i <= 10; ++i) all.push_back(svc(i));
  d.setDesired(state(all));
  const auto base = d.view();
  for (int round = 0; round < 100; ++round) {  // more views than the chain follows
    all[round % 10] = svc(round % 10 + 1, 2 + round % 3);
    d.setDesired(state(all));
  }
  const NodeUpdate u = nodeUpdate(base, d.view(), "a");
  size_t differ = 0;
  for (size_t i = 0; i < 10; ++i) differ += all[i]->backends.size() != 2;
  EXPECT_EQ(u.upserts.size(), differ);
  // An agent that applied generation 5000 from the previous controller.
  EXPECT_TRUE(d.generationAbove(5000));
  EXPECT_EQ(d.view()->generation, 5001u);
  EXPECT_FALSE(d.generationAbove(10));
  // Not ready any more: everything is removed; ready again: everything back.
  const auto ready = d.view();
  d.setDesired(state(all, {"b", "c"}));
  const NodeUpdate gone = nodeUpdate(ready, d.view(), "a");
  EXPECT_EQ(gone.removed.size(), 10u);
  EXPECT_EQ(gone.removed_vips.size(), 10u);
}

TEST_F(DistributorTest, HealthProbersMakeANewViewAndReachIncrementalUpdatesWhenTheyChange) {
  Distributor d = make();
  ASSERT_TRUE(d.setDesired(state({svc(1)})));
  const auto base = d.view();
  EXPECT_TRUE(d.setProbers({"a", "b"}));
  EXPECT_FALSE(d.setProbers({"a", "b"})) << "the same list makes no view";
  const auto v = d.view();
  EXPECT_GT(v->generation, base->generation);
  NodeUpdate u = nodeUpdate(base, v, "a");
  EXPECT_FALSE(u.full);
  EXPECT_FALSE(u.empty());
  EXPECT_TRUE(u.probers_changed);
  ASSERT_NE(u.probers, nullptr);
  EXPECT_EQ(*u.probers, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(u.upserts.empty());
  // FULL: always the list.
  u = nodeUpdate(nullptr, v, "c");
  ASSERT_NE(u.probers, nullptr);
  EXPECT_EQ(u.probers->size(), 2u);
  // A later change of something else: the list is not sent again.
  ASSERT_TRUE(d.setDesired(state({svc(1), svc(2)})));
  u = nodeUpdate(v, d.view(), "a");
  EXPECT_FALSE(u.probers_changed);
  EXPECT_EQ(u.upserts.size(), 1u);
}

// An endpoint change reaches the distribution as a patch: only its
// entries are looked at and encoded, the rest of the view is shared.
TEST_F(DistributorTest, APatchTouchesOnlyTheServicesItLists) {
  Distributor d = make();
  std::vector<std::shared_ptr<const DesiredService>> all;
  for (int i = 1; i <= 50; ++i) all.push_back(svc(i));
  ASSERT_TRUE(d.setDesired(state(all)));
  d.setLive("a", true);
  const auto base = d.view();
  const int encoded = encodes;

  DesiredDelta delta;
  delta.upserts = state({svc(7, 4)}).desired;
  ASSERT_TRUE(d.patchDesired(delta));
  EXPECT_EQ(encodes, encoded + 1) << "the changed service alone is encoded";
  const auto now = d.view();
  EXPECT_EQ(now->generation, base->generation + 1);
  EXPECT_EQ(now->changed_keys, std::vector<std::string>{"ns/s7/http/ipv4"});
  ASSERT_EQ(now->services.size(), 50u);
  for (size_t i = 0; i < 50; ++i) {
    if (now->services[i]->key() == "ns/s7/http/ipv4") {
      EXPECT_EQ(now->services[i]->service().backends.size(), 4u);
    } else {
      EXPECT_EQ(now->services[i], base->services[i]) << "shared, not rebuilt";
    }
  }
  EXPECT_EQ(now->announcers, base->announcers);
  const NodeUpdate u = nodeUpdate(base, now, "b");
  EXPECT_FALSE(u.full);
  ASSERT_EQ(u.upserts.size(), 1u);
  EXPECT_EQ(u.upserts[0]->encoded(), "ns/s7/http/ipv4#4");
  EXPECT_TRUE(u.removed.empty());
  EXPECT_TRUE(u.announcements.empty());

  // The same content again: nothing for agents, no generation.
  EXPECT_FALSE(d.patchDesired(delta));
  EXPECT_EQ(d.view(), now);
  EXPECT_EQ(encodes, encoded + 1);

  // A patch and a whole comparison agree: the next whole state with the
  // same content makes no view.
  all[6] = svc(7, 4);
  EXPECT_FALSE(d.setDesired(state(all)));
}

TEST_F(DistributorTest, RemovalsAndNewServicesInAPatchReachEveryAgent) {
  Distributor d = make();
  std::vector<std::shared_ptr<const DesiredService>> all;
  for (int i = 1; i <= 10; ++i) all.push_back(svc(i));
  d.setDesired(state(all));
  d.setLive("a", true);
  const auto base = d.view();

  DesiredDelta delta;
  const Reconciled added = state({svc(20)});
  delta.upserts = added.desired;
  delta.vips = added.vips;
  delta.removed = {"ns/s3/http/ipv4"};
  delta.removed_vips = {ip("192.0.2.3")};
  ASSERT_TRUE(d.patchDesired(delta));
  const auto now = d.view();
  ASSERT_EQ(now->services.size(), 10u);
  EXPECT_TRUE(std::is_sorted(now->services.begin(), now->services.end(),
                             [](const auto& x, const auto& y) { return x->key() < y->key(); }));
  EXPECT_EQ(d.announcers().count(ip("192.0.2.3")), 0u);
  EXPECT_EQ(d.announcers().at(ip("192.0.2.20")), "a") << "the live agent announces the new VIP";
  const NodeUpdate u = nodeUpdate(base, now, "b");
  EXPECT_EQ(u.removed, std::vector<std::string>{"ns/s3/http/ipv4"});
  EXPECT_EQ(u.removed_vips, std::vector<IpAddr>{ip("192.0.2.3")});
  ASSERT_EQ(u.upserts.size(), 1u);
  EXPECT_EQ(u.upserts[0]->key(), "ns/s20/http/ipv4");
  ASSERT_EQ(u.announcements.size(), 1u);
  EXPECT_EQ(u.announcements[0].vip, ip("192.0.2.20"));
  // A FULL state from the patched view is the whole truth.
  const NodeUpdate full = nodeUpdate(nullptr, now, "c");
  EXPECT_EQ(full.upserts.size(), 10u);
  EXPECT_EQ(full.announcements.size(), 10u);
}

TEST_F(DistributorTest, APatchedVipIsDecidedAgainAloneAndStickyElsewhere) {
  Distributor d = make();
  std::vector<std::shared_ptr<const DesiredService>> all;
  for (int i = 1; i <= 30; ++i) all.push_back(svc(i));
  d.setDesired(state(all));
  for (const char* n : {"a", "b", "c"}) d.setLive(n, true);
  const AnnouncerMap before = d.announcers();
  const auto base = d.view();
  // externalTrafficPolicy: Local: s5's only local endpoint is now on a node
  // that does not announce it.
  const IpAddr vip = ip("192.0.2.5");
  const std::string was = before.at(vip);
  const std::string other = was == "a" ? "b" : "a";
  DesiredDelta delta;
  delta.vips = {VipCandidates::of(vip, {other})};
  ASSERT_TRUE(d.patchDesired(delta));
  EXPECT_EQ(d.announcers().at(vip), other);
  for (const auto& [v, who] : before) {
    if (v != vip) {
      EXPECT_EQ(d.announcers().at(v), who) << v.toString();
    }
  }
  const NodeUpdate u = nodeUpdate(base, d.view(), "c");
  ASSERT_EQ(u.announcements.size(), 1u);
  EXPECT_EQ(u.announcements[0].node, other);
  EXPECT_TRUE(u.upserts.empty());
  // The same candidates again: nothing moves, no generation.
  const auto v = d.view();
  EXPECT_FALSE(d.patchDesired(delta));
  EXPECT_EQ(d.view(), v);
}

}  // namespace
}  // namespace flowlb::controller

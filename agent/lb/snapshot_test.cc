#include "agent/lb/snapshot.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>

#include "agent/packet/packet.h"
#include "agent/testing/test_specs.h"

namespace flowlb::agent {
namespace {

using test_specs::backend;
using test_specs::ip;
using test_specs::snat;

using ::testing::HasSubstr;

ServiceSpec service(const char* name, const char* vip, uint16_t port,
                    std::vector<BackendSpec> backends, uint8_t proto = kProtoTCP) {
  ServiceSpec s;
  s.name = name;
  s.vip = ip(vip);
  s.port = port;
  s.proto = proto;
  s.maglev_size = 251;
  s.backends = std::move(backends);
  return s;
}

DesiredState state(std::vector<ServiceSpec> services) {
  DesiredState d;
  d.generation = 1;
  d.services = std::move(services);
  return d;
}

std::shared_ptr<const Snapshot> mustBuild(SnapshotBuilder& b, const DesiredState& d) {
  auto r = b.build(d, snat());
  EXPECT_TRUE(r.isOk()) << r.error();
  return r.isOk() ? *r : nullptr;
}

// Backend key -> id, for service `svc` of the snapshot.
std::map<std::string, uint32_t> ids(const Snapshot& s, size_t svc = 0) {
  std::map<std::string, uint32_t> out;
  const ServiceRuntime& rt = s.services.at(svc);
  for (size_t i = 0; i < rt.ids.size(); ++i) out[rt.table->backends()[i].key] = rt.ids[i];
  return out;
}

const std::string kA = backend("10.1.0.1").key();
const std::string kB = backend("10.1.0.2").key();
const std::string kC = backend("10.1.0.3").key();

ServiceSpec web(std::vector<BackendSpec> backends) {
  return service("default/web", "192.0.2.10", 80, std::move(backends));
}

TEST(SnapshotBuilderTest, UnchangedServicesKeepTheirTableChangedOnesGetANewOne) {
  SnapshotBuilder b;
  const ServiceSpec other = service("default/db", "192.0.2.11", 5432, {backend("10.1.0.9", 5432)});
  auto s1 = mustBuild(b, state({web({backend("10.1.0.1"), backend("10.1.0.2")}), other}));
  // Same members in another order: the same table, not a rebuilt copy.
  auto s2 = mustBuild(b, state({web({backend("10.1.0.2"), backend("10.1.0.1")}), other}));
  ASSERT_TRUE(s1 && s2);
  EXPECT_EQ(s2->services[0].table.get(), s1->services[0].table.get());
  EXPECT_EQ(s2->services[1].table.get(), s1->services[1].table.get());
  EXPECT_EQ(ids(*s2), ids(*s1));
  // A member draining (weight 0) changes the table; the other service keeps its own.
  BackendSpec draining = backend("10.1.0.2");
  draining.state = BackendState::kDraining;
  auto s3 = mustBuild(b, state({web({backend("10.1.0.1"), draining}), other}));
  ASSERT_TRUE(s3);
  EXPECT_NE(s3->services[0].table.get(), s2->services[0].table.get());
  EXPECT_EQ(s3->services[1].table.get(), s1->services[1].table.get());
  EXPECT_EQ(s3->services[0].prev_table.get(), s2->services[0].table.get());
}

TEST(SnapshotBuilderTest, BackendIdsAreStableAcrossBuilds) {
  SnapshotBuilder b;
  auto s1 = mustBuild(b, state({web({backend("10.1.0.1"), backend("10.1.0.2")})}));
  auto s2 =
      mustBuild(b, state({web({backend("10.1.0.3"), backend("10.1.0.2"), backend("10.1.0.1")})}));
  ASSERT_TRUE(s1 && s2);
  const auto before = ids(*s1);
  const auto after = ids(*s2);
  EXPECT_EQ(after.at(kA), before.at(kA));
  EXPECT_EQ(after.at(kB), before.at(kB));
  EXPECT_NE(after.at(kC), after.at(kA));
  const BackendRuntime* a = s2->backend(after.at(kA));
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->addr, ip("10.1.0.1"));
  EXPECT_EQ(a->port, 8080);
}

TEST(SnapshotBuilderTest, RemovedBackendStopsResolvingAndComesBackWithNewId) {
  SnapshotBuilder b;
  auto s1 = mustBuild(b, state({web({backend("10.1.0.1"), backend("10.1.0.2")})}));
  ASSERT_TRUE(s1);
  const uint32_t old_b = ids(*s1).at(kB);
  auto s2 = mustBuild(b, state({web({backend("10.1.0.1")})}));
  ASSERT_TRUE(s2);
  EXPECT_EQ(s2->backend(old_b), nullptr);
  EXPECT_NE(s1->backend(old_b), nullptr);  // old snapshots are immutable
  auto s3 = mustBuild(b, state({web({backend("10.1.0.1"), backend("10.1.0.2")})}));
  ASSERT_TRUE(s3);
  const uint32_t new_b = ids(*s3).at(kB);
  EXPECT_NE(new_b, old_b);  // an entry pointing at the old id must not match
  EXPECT_EQ(s3->backend(old_b), nullptr);
  ASSERT_NE(s3->backend(new_b), nullptr);
  EXPECT_EQ(s3->backend(new_b)->addr, ip("10.1.0.2"));
}

TEST(SnapshotBuilderTest, PreviousTableFollowsChanges) {
  SnapshotBuilder b;
  auto s1 = mustBuild(b, state({web({backend("10.1.0.1"), backend("10.1.0.2")})}));
  ASSERT_TRUE(s1);
  EXPECT_EQ(s1->services[0].prev_table, nullptr);
  const auto three = state({web({backend("10.1.0.1"), backend("10.1.0.2"), backend("10.1.0.3")})});
  auto s2 = mustBuild(b, three);
  ASSERT_TRUE(s2);
  EXPECT_EQ(s2->services[0].prev_table, s1->services[0].table);
  EXPECT_EQ(s2->services[0].prev_ids, s1->services[0].ids);
  // Unchanged backends: the previous generation that differed is kept.
  auto s3 = mustBuild(b, three);
  ASSERT_TRUE(s3);
  EXPECT_EQ(s3->services[0].table->fingerprint(), s2->services[0].table->fingerprint());
  EXPECT_EQ(s3->services[0].prev_table, s1->services[0].table);
  EXPECT_EQ(s3->services[0].prev_ids, s1->services[0].ids);
}

TEST(SnapshotBuilderTest, FindServiceByVipPortAndProtocol) {
  SnapshotBuilder b;
  std::vector<ServiceSpec> services = {
      web({backend("10.1.0.1")}),
      service("dns6", "2001:db8::53", 53, {backend("fd00:1::a", 53)}, kProtoUDP),
  };
  // Enough services that the open-addressed index has collisions.
  for (int i = 0; i < 60; ++i) {
    ServiceSpec s =
        service("bulk", "192.0.2.200", static_cast<uint16_t>(1000 + i), {backend("10.1.0.9")});
    s.name = "bulk-" + std::to_string(i);
    services.push_back(s);
  }
  auto s = mustBuild(b, state(services));
  ASSERT_TRUE(s);
  EXPECT_EQ(s->findService(ip("192.0.2.10"), 80, kProtoTCP), 0);
  EXPECT_EQ(s->findService(ip("2001:db8::53"), 53, kProtoUDP), 1);
  for (int i = 0; i < 60; ++i) {
    EXPECT_EQ(s->findService(ip("192.0.2.200"), static_cast<uint16_t>(1000 + i), kProtoTCP), 2 + i);
  }
  EXPECT_EQ(s->findService(ip("192.0.2.10"), 80, kProtoUDP), -1);
  EXPECT_EQ(s->findService(ip("192.0.2.10"), 81, kProtoTCP), -1);
  EXPECT_EQ(s->findService(ip("192.0.2.11"), 80, kProtoTCP), -1);
  EXPECT_EQ(s->findService(ip("2001:db8::54"), 53, kProtoUDP), -1);
  EXPECT_EQ(Snapshot{}.findService(ip("192.0.2.10"), 80, kProtoTCP), -1);
}

struct BadCase {
  const char* what;
  std::vector<ServiceSpec> services;
  SnatConfig snat;
  const char* message;
};

TEST(SnapshotBuilderTest, RejectsInvalidStatesNamingTheService) {
  ServiceSpec dsr = service("default/dsr", "192.0.2.20", 80, {backend("10.1.0.1", 8080)});
  dsr.mode = ForwardingMode::kDsr;
  SnatConfig no_v6 = snat();
  no_v6.has_v6 = false;
  const std::vector<BadCase> cases = {
      {"duplicate", {web({}), service("default/other", "192.0.2.10", 80, {})}, snat(), "same VIP"},
      {"family", {web({backend("fd00:1::1")})}, snat(), "family"},
      {"dsr port", {dsr}, snat(), "8080"},
      {"nat without snat",
       {service("default/web6", "2001:db8::10", 80, {backend("fd00:1::1")})},
       no_v6,
       "source NAT"},
  };
  for (const BadCase& c : cases) {
    SnapshotBuilder b;
    auto r = b.build(state(c.services), c.snat);
    ASSERT_FALSE(r.isOk()) << c.what;
    EXPECT_THAT(r.error(), HasSubstr("'" + c.services.back().name + "'")) << c.what;
    EXPECT_THAT(r.error(), HasSubstr(c.message)) << c.what;
  }
}

TEST(SnapshotBuilderTest, RejectedBuildLeavesIdsAlone) {
  SnapshotBuilder b;
  const auto good = state({web({backend("10.1.0.1"), backend("10.1.0.2")})});
  auto s1 = mustBuild(b, good);
  ASSERT_TRUE(s1);
  // Rejected in validation, and rejected later by the Maglev build.
  auto bad1 = state({web({backend("10.1.0.3"), backend("fd00::3")})});
  EXPECT_FALSE(b.build(bad1, snat()).isOk());
  auto bad2 = state({web({backend("10.1.0.3"), backend("10.1.0.1")})});
  bad2.services[0].maglev_size = 256;
  auto r2 = b.build(bad2, snat());
  ASSERT_FALSE(r2.isOk());
  EXPECT_THAT(r2.error(), HasSubstr("default/web"));
  auto s2 = mustBuild(b, good);
  ASSERT_TRUE(s2);
  EXPECT_EQ(ids(*s2), ids(*s1));
  EXPECT_EQ(s2->services[0].table->fingerprint(), s1->services[0].table->fingerprint());
  for (const auto& [key, id] : ids(*s1)) EXPECT_NE(s2->backend(id), nullptr) << key;
}

TEST(SnapshotPublisherTest, OldSnapshotLivesUntilTheReaderIsQuiescent) {
  SnapshotPublisher pub(1);
  EXPECT_EQ(pub.acquire(), nullptr);
  auto first = std::make_shared<Snapshot>();
  first->generation = 1;
  std::weak_ptr<const Snapshot> first_alive = first;
  pub.publish(std::move(first));
  pub.quiescent(0);  // the reader starts a batch...
  const Snapshot* held = pub.acquire();
  ASSERT_NE(held, nullptr);
  EXPECT_EQ(held->generation, 1u);

  auto second = std::make_shared<Snapshot>();
  second->generation = 2;
  std::weak_ptr<const Snapshot> second_alive = second;
  pub.publish(std::move(second));
  EXPECT_EQ(pub.acquire()->generation, 2u);
  EXPECT_EQ(pub.reclaim(), 1u);  // ...and still holds the first
  EXPECT_FALSE(first_alive.expired());
  EXPECT_EQ(held->generation, 1u);

  pub.quiescent(0);
  EXPECT_EQ(pub.reclaim(), 0u);
  EXPECT_TRUE(first_alive.expired());
  EXPECT_FALSE(second_alive.expired());  // the current one is never freed
}

TEST(SnapshotPublisherTest, OfflineReaderNeverBlocksReclaim) {
  SnapshotPublisher pub(2);
  auto first = std::make_shared<Snapshot>();
  std::weak_ptr<const Snapshot> first_alive = first;
  pub.publish(std::move(first));
  pub.quiescent(0);
  pub.quiescent(1);
  pub.offline(1);
  pub.publish(std::make_shared<Snapshot>());
  EXPECT_EQ(pub.reclaim(), 1u);  // reader 0 has not reported yet
  pub.quiescent(0);
  EXPECT_EQ(pub.reclaim(), 0u);
  EXPECT_TRUE(first_alive.expired());

  auto third = std::make_shared<Snapshot>();
  std::weak_ptr<const Snapshot> third_alive = third;
  pub.publish(std::move(third));
  pub.offline(0);
  pub.publish(std::make_shared<Snapshot>());
  EXPECT_EQ(pub.reclaim(), 0u);  // both offline: nothing waits
  EXPECT_TRUE(third_alive.expired());
}

}  // namespace
}  // namespace flowlb::agent

namespace flowlb::agent {
namespace {

TEST(SnapshotDrainTest, ADrainingBackendIsRemovedWhenItsDrainTimeoutPasses) {
  SnapshotBuilder b;
  DesiredState d;
  ServiceSpec s;
  s.name = "web";
  s.vip = *IpAddr::parse("192.0.2.10");
  s.port = 80;
  s.maglev_size = 251;
  s.drain_timeout_s = 300;
  for (const char* a : {"10.1.0.1", "10.1.0.2"}) {
    BackendSpec be;
    be.addr = *IpAddr::parse(a);
    be.port = 8080;
    s.backends.push_back(be);
  }
  s.backends[1].state = BackendState::kDraining;
  d.services.push_back(s);
  SnatConfig snat;
  snat.v4 = *IpAddr::parse("10.0.0.1");
  snat.has_v4 = true;

  auto first = b.build(d, snat, nullptr, 1'000);
  ASSERT_TRUE(first.isOk());
  const uint32_t draining_id = (*first)->services[0].ids[1];
  EXPECT_NE((*first)->backend(draining_id), nullptr);  // still a target for its flows
  EXPECT_EQ(b.nextDrainDeadlineMs(), 301'000u);

  auto before = b.build(d, snat, nullptr, 300'999);  // rebuilt meanwhile: the clock started at 1 s
  ASSERT_TRUE(before.isOk());
  EXPECT_NE((*before)->backend(draining_id), nullptr);

  std::vector<std::string> notes;
  auto after = b.build(d, snat, &notes, 301'000);
  ASSERT_TRUE(after.isOk());
  EXPECT_EQ((*after)->backend(draining_id), nullptr);  // drained: gone
  EXPECT_EQ((*after)->services[0].table->backends().size(), 1u);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("finished draining"), std::string::npos);
  EXPECT_EQ(b.nextDrainDeadlineMs(), UINT64_MAX);
  notes.clear();
  ASSERT_TRUE(b.build(d, snat, &notes, 400'000).isOk());
  EXPECT_TRUE(notes.empty());  // reported once

  // Active again, then draining again: a fresh deadline.
  d.services[0].backends[1].state = BackendState::kActive;
  ASSERT_TRUE(b.build(d, snat, nullptr, 500'000).isOk());
  d.services[0].backends[1].state = BackendState::kDraining;
  ASSERT_TRUE(b.build(d, snat, nullptr, 600'000).isOk());
  EXPECT_EQ(b.nextDrainDeadlineMs(), 900'000u);
}

}  // namespace
}  // namespace flowlb::agent

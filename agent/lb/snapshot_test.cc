#include "agent/lb/snapshot.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <set>
#include <string>

#include "agent/packet/packet.h"
#include "agent/testing/test_specs.h"

namespace flowlb::agent {
namespace {

using test_specs::backend;
using test_specs::ip;
using test_specs::snat;

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

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
  if (!r.isOk()) return nullptr;
  for (const ServiceError& e : r->errors) ADD_FAILURE() << e.message;
  return r->snapshot;
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
  ApplyErrorCode code;
  const char* message;
};

// Issues 11.4 and 17.4: an invalid or unsupported service is refused alone,
// with the contract's code and a message naming it; the others apply.
TEST(SnapshotBuilderTest, AnInvalidServiceIsRefusedAloneAndTheRestApplies) {
  ServiceSpec dsr = service("default/dsr", "192.0.2.20", 80, {backend("10.1.0.1", 8080)});
  dsr.mode = ForwardingMode::kDsr;
  SnatConfig no_v6 = snat();
  no_v6.has_v6 = false;
  ServiceSpec other_family = service("default/v6only", "192.0.2.21", 80, {backend("10.1.0.1")});
  other_family.source_ranges = {*IpPrefix::parse("2001:db8::/32")};
  const std::vector<BadCase> cases = {
      {"duplicate VIP:port",
       {service("default/zzz", "192.0.2.10", 80, {})},
       snat(),
       ApplyErrorCode::kConflict,
       "same VIP"},
      {"family",
       {service("default/fam", "192.0.2.12", 80, {backend("fd00:1::1")})},
       snat(),
       ApplyErrorCode::kInvalidArgument,
       "family"},
      {"dsr port", {dsr}, snat(), ApplyErrorCode::kUnsupported, "8080"},
      {"nat without snat",
       {service("default/web6", "2001:db8::10", 80, {backend("fd00:1::1")})},
       no_v6,
       ApplyErrorCode::kUnsupported,
       "--snat-ipv6"},
      {"VIP 0.0.0.0",
       {service("default/zero", "0.0.0.0", 80, {backend("10.1.0.1")})},
       snat(),
       ApplyErrorCode::kInvalidArgument,
       "unspecified"},
      {"VIP broadcast",
       {service("default/bc", "255.255.255.255", 80, {backend("10.1.0.1")})},
       snat(),
       ApplyErrorCode::kInvalidArgument,
       "broadcast"},
      {"VIP multicast",
       {service("default/mc", "239.1.1.1", 80, {backend("10.1.0.1")})},
       snat(),
       ApplyErrorCode::kInvalidArgument,
       "multicast"},
      {"loopback backend",
       {service("default/lo", "192.0.2.13", 80, {backend("127.0.0.1")})},
       snat(),
       ApplyErrorCode::kInvalidArgument,
       "loopback"},
      {"source ranges of the other family",
       {other_family},
       snat(),
       ApplyErrorCode::kInvalidArgument,
       "no client could reach"},
  };
  for (const BadCase& c : cases) {
    SnapshotBuilder b;
    std::vector<ServiceSpec> services = {web({backend("10.1.0.1")})};
    services.insert(services.end(), c.services.begin(), c.services.end());
    auto r = b.build(state(services), c.snat);
    ASSERT_TRUE(r.isOk()) << c.what << ": " << r.error();
    ASSERT_EQ(r->errors.size(), 1u) << c.what;
    const ServiceError& e = r->errors[0];
    EXPECT_EQ(e.service, c.services.back().name) << c.what;
    EXPECT_EQ(e.code, c.code) << c.what;
    EXPECT_THAT(e.message, HasSubstr("'" + c.services.back().name + "'")) << c.what;
    EXPECT_THAT(e.message, HasSubstr(c.message)) << c.what;
    // The good service is there and serves.
    ASSERT_EQ(r->snapshot->services.size(), 1u) << c.what;
    EXPECT_EQ(r->snapshot->findService(ip("192.0.2.10"), 80, kProtoTCP), 0) << c.what;
  }
}

TEST(SnapshotBuilderTest, TheSmallestKeyWinsAVipPortAndProtocol) {
  SnapshotBuilder b;
  auto r = b.build(state({service("b/web", "192.0.2.10", 80, {backend("10.1.0.2")}),
                          service("a/web", "192.0.2.10", 80, {backend("10.1.0.1")})}),
                   snat());
  ASSERT_TRUE(r.isOk());
  ASSERT_EQ(r->errors.size(), 1u);
  EXPECT_EQ(r->errors[0].service, "b/web");
  EXPECT_EQ(r->errors[0].code, ApplyErrorCode::kConflict);
  EXPECT_THAT(r->errors[0].message, HasSubstr("'a/web'"));
  ASSERT_EQ(r->snapshot->services.size(), 1u);
  EXPECT_EQ(r->snapshot->services[0].spec.name, "a/web");
}

// Issue 17.4: while one service is refused, the others keep taking updates.
TEST(SnapshotBuilderTest, OtherServicesKeepTakingUpdatesWhileOneIsRefused) {
  SnapshotBuilder b;
  ServiceSpec dsr = service("default/dsr", "192.0.2.20", 80, {backend("10.1.0.1", 8080)});
  dsr.mode = ForwardingMode::kDsr;
  auto r1 = b.build(state({web({backend("10.1.0.1"), backend("10.1.0.2")}), dsr}), snat());
  ASSERT_TRUE(r1.isOk());
  ASSERT_EQ(r1->errors.size(), 1u);
  auto r2 = b.build(state({web({backend("10.1.0.1")}), dsr}), snat());  // 10.1.0.2 removed
  ASSERT_TRUE(r2.isOk());
  ASSERT_EQ(r2->errors.size(), 1u);
  const ServiceRuntime& w = r2->snapshot->services.at(0);
  ASSERT_EQ(w.table->backends().size(), 1u);
  EXPECT_EQ(w.table->backends()[0].key, kA);
  EXPECT_EQ(r2->snapshot->backend(ids(*r1->snapshot).at(kB)), nullptr);
}

TEST(SnapshotBuilderTest, ARefusedUpdateKeepsThePreviousVersionOfThatService) {
  SnapshotBuilder b;
  auto s1 = mustBuild(b, state({web({backend("10.1.0.1"), backend("10.1.0.2")})}));
  ASSERT_TRUE(s1);
  // The update gives a backend of the wrong family: the old version stays.
  auto r = b.build(state({web({backend("10.1.0.3"), backend("fd00::3")})}), snat());
  ASSERT_TRUE(r.isOk());
  ASSERT_EQ(r->errors.size(), 1u);
  EXPECT_THAT(r->errors[0].message, HasSubstr("previous version stays"));
  ASSERT_EQ(r->snapshot->services.size(), 1u);
  EXPECT_EQ(r->snapshot->services[0].table->fingerprint(), s1->services[0].table->fingerprint());
  EXPECT_EQ(ids(*r->snapshot), ids(*s1));
}

TEST(SnapshotBuilderTest, AnUncommittedOutcomeLeavesTheBuilderAsItWas) {
  SnapshotBuilder b;
  const auto good = state({web({backend("10.1.0.1"), backend("10.1.0.2")})});
  auto s1 = mustBuild(b, good);
  ASSERT_TRUE(s1);
  // Prepared (new backends get ids) but never committed, as when the kernel
  // refused the VIP map update.
  auto pending = b.prepare(state({web({backend("10.1.0.3"), backend("10.1.0.4")})}), snat());
  ASSERT_TRUE(pending.isOk());
  EXPECT_EQ(b.last(), s1);
  auto s2 = mustBuild(b, good);
  ASSERT_TRUE(s2);
  EXPECT_EQ(ids(*s2), ids(*s1));
  EXPECT_EQ(s2->services[0].table.get(), s1->services[0].table.get());
  for (const auto& [key, id] : ids(*s1)) EXPECT_NE(s2->backend(id), nullptr) << key;
}

// Issue 17.5: what exceeds the XDP VIP map is refused per service, with a
// reason, and services already programmed are never evicted for new ones.
TEST(SnapshotBuilderTest, ServicesBeyondTheVipMapAreRefusedNewOnesFirst) {
  BuildLimits limits;
  limits.max_steering_keys = 6 + 3 * 2;  // the SNAT keys and two single-port VIPs
  SnapshotBuilder b({}, limits);
  auto s1 = mustBuild(b, state({service("z/old", "192.0.2.90", 80, {backend("10.1.0.1")})}));
  ASSERT_TRUE(s1);
  auto r = b.build(state({service("a/new1", "192.0.2.91", 80, {backend("10.1.0.1")}),
                          service("b/new2", "192.0.2.92", 80, {backend("10.1.0.1")}),
                          service("z/old", "192.0.2.90", 80, {backend("10.1.0.1")})}),
                   snat());
  ASSERT_TRUE(r.isOk());
  ASSERT_EQ(r->errors.size(), 1u);
  EXPECT_EQ(r->errors[0].service, "b/new2");
  EXPECT_EQ(r->errors[0].code, ApplyErrorCode::kResourceExhausted);
  EXPECT_THAT(r->errors[0].message, HasSubstr("--max-vip-entries"));
  EXPECT_GE(r->snapshot->findService(ip("192.0.2.90"), 80, kProtoTCP), 0);
  EXPECT_GE(r->snapshot->findService(ip("192.0.2.91"), 80, kProtoTCP), 0);
  EXPECT_EQ(r->snapshot->findService(ip("192.0.2.92"), 80, kProtoTCP), -1);
}

// Issue 17.6: the ports of a Service with the same backends share one table,
// tables are sized for their backends, and the budget refuses what does not
// fit.
TEST(SnapshotBuilderTest, PortsWithTheSameBackendsShareOneSizedTable) {
  SnapshotBuilder b;
  std::vector<ServiceSpec> ports;
  for (uint16_t p = 1000; p < 1100; ++p) {
    ServiceSpec s =
        service("default/many", "192.0.2.60", p, {backend("10.1.0.1"), backend("10.1.0.2")});
    s.name += "/" + std::to_string(p);
    s.maglev_size = 0;  // sized for the backend count
    ports.push_back(s);
  }
  auto snap = mustBuild(b, state(ports));
  ASSERT_TRUE(snap);
  for (const ServiceRuntime& s : snap->services) {
    EXPECT_EQ(s.table.get(), snap->services[0].table.get());
  }
  EXPECT_EQ(snap->services[0].table->size(), 251u);  // >= 100 x 2 backends
  EXPECT_LT(snap->tableBytes(), 4096u);

  BuildLimits limits;
  limits.table_budget_bytes = 2048;
  SnapshotBuilder small({}, limits);
  ServiceSpec big = service("default/big", "192.0.2.61", 80, {});
  big.maglev_size = 0;
  for (int i = 1; i <= 20; ++i)
    big.backends.push_back(backend(("10.2.0." + std::to_string(i)).c_str()));
  auto r = small.build(state({big}), snat());
  ASSERT_TRUE(r.isOk());
  ASSERT_EQ(r->errors.size(), 1u);
  EXPECT_EQ(r->errors[0].code, ApplyErrorCode::kResourceExhausted);
  EXPECT_THAT(r->errors[0].message, HasSubstr("memory budget"));
}

TEST(SnapshotBuilderTest, PreviousTablesAreDroppedWhenTheirGraceEnds) {
  BuildLimits limits;
  limits.previous_table_grace_ms = 1000;
  SnapshotBuilder b({}, limits);
  ASSERT_TRUE(b.build(state({web({backend("10.1.0.1")})}), snat(), 0).isOk());
  auto r = b.build(state({web({backend("10.1.0.1"), backend("10.1.0.2")})}), snat(), 100);
  ASSERT_TRUE(r.isOk());
  EXPECT_NE(r->snapshot->services[0].prev_table, nullptr);
  EXPECT_EQ(b.nextDeadlineMs(), 1100u);
  auto later = b.build(state({web({backend("10.1.0.1"), backend("10.1.0.2")})}), snat(), 1100);
  ASSERT_TRUE(later.isOk());
  EXPECT_EQ(later->snapshot->services[0].prev_table, nullptr);
  EXPECT_EQ(b.nextDeadlineMs(), UINT64_MAX);
}

}  // namespace
}  // namespace flowlb::agent

namespace flowlb::agent {
namespace {

// Slots of the table per backend key.
std::map<std::string, size_t> slots(const ServiceRuntime& rt) {
  std::map<std::string, size_t> out;
  const std::vector<uint32_t> counts = rt.table->slotCounts();
  for (size_t i = 0; i < counts.size(); ++i) out[rt.table->backends()[i].key] = counts[i];
  return out;
}

TEST(SnapshotHealthTest, AnUnhealthyBackendTakesNoNewFlowsButKeepsItsPinnedOnes) {
  SnapshotBuilder b;
  DesiredState d = state({service(
      "web", "192.0.2.10", 80, {backend("10.1.0.1"), backend("10.1.0.2"), backend("10.1.0.3")})});
  d.services[0].backends[1].state = BackendState::kUnhealthy;
  auto built = b.build(d, snat());
  ASSERT_TRUE(built.isOk());
  for (const std::string& w : built->warnings) EXPECT_THAT(w, Not(HasSubstr("failing open")));
  const ServiceRuntime& rt = built->snapshot->services[0];
  const auto s = slots(rt);
  EXPECT_EQ(s.at(kB), 0u);
  EXPECT_GT(s.at(kA), 0u);
  EXPECT_GT(s.at(kC), 0u);
  // Still a target for the flows pinned to it, without a drain deadline.
  const uint32_t id = ids(*built->snapshot).at(kB);
  ASSERT_NE(built->snapshot->backend(id), nullptr);
  EXPECT_EQ(built->snapshot->backend(id)->state, BackendState::kUnhealthy);
  EXPECT_EQ(b.nextDeadlineMs(), UINT64_MAX);
}

TEST(SnapshotHealthTest, WhenEveryBackendIsUnhealthyTheServiceFailsOpenToThem) {
  SnapshotBuilder b;
  DesiredState d = state({service(
      "web", "192.0.2.10", 80, {backend("10.1.0.1"), backend("10.1.0.2"), backend("10.1.0.3")})});
  for (BackendSpec& be : d.services[0].backends) be.state = BackendState::kUnhealthy;
  d.services[0].backends[2].state = BackendState::kDraining;  // draining stays out
  auto built = b.build(d, snat());
  ASSERT_TRUE(built.isOk());
  const ServiceRuntime& rt = built->snapshot->services[0];
  const auto s = slots(rt);
  EXPECT_GT(s.at(kA), 0u);
  EXPECT_GT(s.at(kB), 0u);
  EXPECT_EQ(s.at(kC), 0u);
  EXPECT_THAT(built->warnings, Contains(HasSubstr("every backend is unhealthy; failing open")));
  // For affinity and pinned flows the datapath treats them as active.
  EXPECT_EQ(built->snapshot->backend(ids(*built->snapshot).at(kA))->state, BackendState::kActive);
}

TEST(SnapshotHealthTest, ABadHealthCheckRefusesItsServiceAlone) {
  SnapshotBuilder b;
  DesiredState d = state({service("web", "192.0.2.10", 80, {backend("10.1.0.1")}),
                          service("api", "192.0.2.11", 80, {backend("10.1.0.1")})});
  d.services[0].health.kind = HealthCheckKind::kHttp;
  d.services[0].health.path = "health";
  d.services[1].health.kind = HealthCheckKind::kTcp;
  d.services[1].health.timeout_ms = 6000;  // not below the 5 s interval
  auto built = b.build(d, snat());
  ASSERT_TRUE(built.isOk());
  ASSERT_EQ(built->errors.size(), 2u);
  EXPECT_THAT(built->errors[0].message + built->errors[1].message,
              HasSubstr("must start with '/'"));
  EXPECT_THAT(built->errors[0].message + built->errors[1].message, HasSubstr("below the interval"));
}

TEST(SnapshotDrainTest, ADrainingBackendIsRemovedWhenItsDrainTimeoutPasses) {
  // (Previous tables kept far longer than the drain, so only drains set deadlines.)
  SnapshotBuilder b({}, BuildLimits{.previous_table_grace_ms = 1'000'000'000});
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

  auto first = b.build(d, snat, 1'000);
  ASSERT_TRUE(first.isOk());
  const uint32_t draining_id = first->snapshot->services[0].ids[1];
  EXPECT_NE(first->snapshot->backend(draining_id), nullptr);  // still a target for its flows
  EXPECT_EQ(b.nextDeadlineMs(), 301'000u);

  auto before = b.build(d, snat, 300'999);  // rebuilt meanwhile: the clock started at 1 s
  ASSERT_TRUE(before.isOk());
  EXPECT_NE(before->snapshot->backend(draining_id), nullptr);

  auto after = b.build(d, snat, 301'000);
  ASSERT_TRUE(after.isOk());
  EXPECT_EQ(after->snapshot->backend(draining_id), nullptr);  // drained: gone
  EXPECT_EQ(after->snapshot->services[0].table->backends().size(), 1u);
  ASSERT_EQ(after->drained.size(), 1u);
  ASSERT_EQ(after->warnings.size(), 1u);
  EXPECT_NE(after->warnings[0].find("finished draining"), std::string::npos);
  auto again = b.build(d, snat, 400'000);
  ASSERT_TRUE(again.isOk());
  EXPECT_TRUE(again->drained.empty());  // reported once

  // Active again, then draining again: a fresh deadline.
  d.services[0].backends[1].state = BackendState::kActive;
  ASSERT_TRUE(b.build(d, snat, 500'000).isOk());
  d.services[0].backends[1].state = BackendState::kDraining;
  ASSERT_TRUE(b.build(d, snat, 600'000).isOk());
  EXPECT_EQ(b.nextDeadlineMs(), 900'000u);
}

}  // namespace
}  // namespace flowlb::agent

namespace flowlb::agent {
namespace {

// Issue 15: a restarted agent that adopts its predecessor's conntrack gives
// every backend the id the adopted entries point at.
TEST(SnapshotRegistryTest, AnAdoptedRegistryKeepsEveryBackendsIdAcrossARestart) {
  SnapshotBuilder before;
  ASSERT_TRUE(mustBuild(before, state({web({backend("10.1.0.1"), backend("10.1.0.2")})})));
  // 10.1.0.3 comes and goes: its slot is reused with a new tag.
  ASSERT_TRUE(mustBuild(before, state({web({backend("10.1.0.1"), backend("10.1.0.3")})})));
  auto s1 = mustBuild(before, state({web({backend("10.1.0.1"), backend("10.1.0.4")})}));
  ASSERT_TRUE(s1);
  auto saved = decodeRegistry(encodeRegistry(before.registry()));
  ASSERT_TRUE(saved.isOk()) << saved.error();

  SnapshotBuilder after;
  ASSERT_TRUE(after.adoptRegistry(*saved).isOk());
  auto s2 = mustBuild(
      after, state({web({backend("10.1.0.4"), backend("10.1.0.1"), backend("10.1.0.5")})}));
  ASSERT_TRUE(s2);
  EXPECT_EQ(ids(*s2).at(kA), ids(*s1).at(kA));
  EXPECT_EQ(ids(*s2).at(backend("10.1.0.4").key()), ids(*s1).at(backend("10.1.0.4").key()));
  // A new backend never takes an id an adopted entry might still hold.
  std::set<uint32_t> old_ids;
  for (const auto& [k, id] : ids(*s1)) old_ids.insert(id);
  EXPECT_EQ(old_ids.count(ids(*s2).at(backend("10.1.0.5").key())), 0u);
}

TEST(SnapshotRegistryTest, ACorruptRegistryIsRefused) {
  SnapshotBuilder b;
  ASSERT_TRUE(mustBuild(b, state({web({backend("10.1.0.1")})})));
  std::string bytes = encodeRegistry(b.registry());
  EXPECT_FALSE(decodeRegistry(bytes.substr(0, bytes.size() - 1)).isOk());
  EXPECT_FALSE(decodeRegistry("garbage").isOk());
  bytes[bytes.size() - 1] = 7;  // the used flag
  EXPECT_FALSE(decodeRegistry(bytes).isOk());
  std::vector<SnapshotBuilder::RegistrySlot> twice(2);
  twice[0] = twice[1] = {ip("10.1.0.1"), 8080, 1, true};
  SnapshotBuilder fresh;
  EXPECT_FALSE(fresh.adoptRegistry(twice).isOk());
}

}  // namespace
}  // namespace flowlb::agent

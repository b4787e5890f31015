#include "controller/health/verdict.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/health_probers.h"

namespace flowlb::controller {
namespace {

using ::testing::HasSubstr;

constexpr const char* kKey = "demo/web/http/ipv4";

std::shared_ptr<const DesiredService> service(const std::vector<std::string>& backends,
                                              bool health = true) {
  auto d = std::make_shared<DesiredService>();
  d->key = kKey;
  d->vip = *IpAddr::parse("192.0.2.10");
  d->port = 80;
  if (health) d->health.kind = HealthCheckKind::kTcp;
  for (const std::string& b : backends) {
    DesiredBackend db;
    db.addr = *IpAddr::parse(b);
    db.port = 8080;
    d->backends.push_back(db);
  }
  return d;
}

ProberHealth says(const std::string& backend, ProbeStatus st, const std::string& detail = "") {
  return {{{kKey, backend + ":8080"}, {st, detail}}};
}

const std::vector<std::string> kNodes = {"node-a", "node-b", "node-c"};
constexpr ProbeStatus kUp = ProbeStatus::kHealthy;
constexpr ProbeStatus kDown = ProbeStatus::kUnhealthy;
constexpr ProbeStatus kUnknown = ProbeStatus::kUnknown;

TEST(HealthVerdictTest, AMajorityOfProbersTakesABackendDown) {
  HealthVerdicts v;
  const std::vector<std::shared_ptr<const DesiredService>> desired = {
      service({"10.1.2.3", "10.1.2.4"})};
  auto t = v.update(desired, kNodes,
                    {{"node-a", says("10.1.2.3", kDown, "connect: Connection refused")},
                     {"node-b", says("10.1.2.3", kUp)},
                     {"node-c", says("10.1.2.3", kUnknown)}});
  EXPECT_TRUE(t.empty()) << "one of three is no majority";
  EXPECT_FALSE(v.down(kKey, "10.1.2.3:8080"));

  t = v.update(desired, kNodes,
               {{"node-a", says("10.1.2.3", kDown, "connect: Connection refused")},
                {"node-b", says("10.1.2.3", kUp)},
                {"node-c", says("10.1.2.3", kDown, "timeout after 2000 ms")}});
  ASSERT_EQ(t.size(), 1u);
  EXPECT_TRUE(t[0].down);
  EXPECT_EQ(t[0].failing, 2u);
  EXPECT_EQ(t[0].probers, 3u);
  EXPECT_TRUE(v.down(kKey, "10.1.2.3:8080"));
  EXPECT_FALSE(v.down(kKey, "10.1.2.4:8080"));

  // Every agent is told: the backend is UNHEALTHY in the desired state.
  auto applied = v.apply(desired);
  ASSERT_EQ(applied.size(), 1u);
  EXPECT_EQ(applied[0]->backends[0].state, BackendState::kUnhealthy);
  EXPECT_EQ(applied[0]->backends[1].state, BackendState::kActive);
  EXPECT_EQ(desired[0]->backends[0].state, BackendState::kActive) << "the input is not changed";

  // The Event names the backend, the count and the first failing node.
  auto facts = v.facts();
  ASSERT_EQ(facts.size(), 1u);
  EXPECT_EQ(facts[0].service, "demo/web");
  EXPECT_TRUE(facts[0].event.warning);
  EXPECT_EQ(facts[0].event.reason, "BackendUnhealthy");
  EXPECT_EQ(facts[0].event.message,
            "backend 10.1.2.3:8080 failed its health check on 2 of 3 probing nodes "
            "(node-a: connect: Connection refused)");
  EXPECT_EQ(v.downPerService(), (std::map<std::string, uint64_t>{{kKey, 1}}));
}

// externalTrafficPolicy: Local: only the backend's own node keeps it in its
// table, so its report alone decides; other nodes' reports do not count.
TEST(HealthVerdictTest, ALocalBackendIsJudgedByItsOwnNode) {
  HealthVerdicts v;
  auto d = std::make_shared<DesiredService>(*service({"10.1.2.3", "10.1.2.4"}));
  d->external_traffic_local = true;
  d->backends[0].node = "node-b";
  d->backends[1].node = "node-z";  // runs no agent: nobody probes it
  const std::vector<std::shared_ptr<const DesiredService>> desired = {d};
  auto t = v.update(desired, kNodes,
                    {{"node-a", says("10.1.2.3", kDown)}, {"node-c", says("10.1.2.3", kDown)}});
  EXPECT_TRUE(t.empty()) << "node-a and node-c do not run it";
  t = v.update(desired, kNodes,
               {{"node-a", says("10.1.2.3", kDown)},
                {"node-b", says("10.1.2.3", kDown, "http status 503")},
                {"node-c", says("10.1.2.3", kDown)}});
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].probers, 1u);
  EXPECT_TRUE(v.down(kKey, "10.1.2.3:8080"));
  EXPECT_FALSE(v.down(kKey, "10.1.2.4:8080"));
}

TEST(HealthVerdictTest, OneDissentingProberDoesNotTakeItDown) {
  HealthVerdicts v;
  const std::vector<std::shared_ptr<const DesiredService>> desired = {service({"10.1.2.3"})};
  // node-a cannot reach the backend (its path is blocked); the others can.
  for (int i = 0; i < 3; ++i) {
    auto t = v.update(desired, kNodes,
                      {{"node-a", says("10.1.2.3", kDown, "connect: No route to host")},
                       {"node-b", says("10.1.2.3", kUp)},
                       {"node-c", says("10.1.2.3", kUp)}});
    EXPECT_TRUE(t.empty());
  }
  EXPECT_EQ(v.downCount(), 0u);
  EXPECT_EQ(v.downPerService(), (std::map<std::string, uint64_t>{{kKey, 0}}));
  EXPECT_EQ(v.apply(desired)[0], desired[0]) << "unchanged services are the same pointers";
  EXPECT_TRUE(v.facts().empty());
}

TEST(HealthVerdictTest, HysteresisUnknownAndDisconnectedProbersDoNotBringItBack) {
  HealthVerdicts v;
  const std::vector<std::shared_ptr<const DesiredService>> desired = {
      service({"10.1.2.3", "10.1.2.4"})};
  v.update(desired, kNodes,
           {{"node-a", says("10.1.2.3", kDown)},
            {"node-b", says("10.1.2.3", kDown)},
            {"node-c", says("10.1.2.3", kUp)}});
  ASSERT_TRUE(v.down(kKey, "10.1.2.3:8080"));
  // node-b restarts: it says UNKNOWN until it has probed again.
  EXPECT_TRUE(v.update(desired, kNodes,
                       {{"node-a", says("10.1.2.3", kDown)},
                        {"node-b", says("10.1.2.3", kUnknown)},
                        {"node-c", says("10.1.2.3", kUp)}})
                  .empty());
  EXPECT_TRUE(v.down(kKey, "10.1.2.3:8080"));
  // node-a disconnects: its place goes to nobody (three nodes left: two).
  EXPECT_TRUE(v.update(desired, {"node-b", "node-c"},
                       {{"node-b", says("10.1.2.3", kUnknown)}, {"node-c", says("10.1.2.3", kUp)}})
                  .empty())
      << "one HEALTHY of two probers is no majority for coming back";
  EXPECT_TRUE(v.down(kKey, "10.1.2.3:8080"));
  // A report from a node that is not one of its probers is not counted.
  EXPECT_TRUE(v.update(desired, {"node-b", "node-c"},
                       {{"node-a", says("10.1.2.3", kUp)},
                        {"node-b", says("10.1.2.3", kUnknown)},
                        {"node-c", says("10.1.2.3", kDown)}})
                  .empty());
  EXPECT_TRUE(v.down(kKey, "10.1.2.3:8080"));
  // A majority says HEALTHY: up.
  auto t = v.update(desired, kNodes,
                    {{"node-a", says("10.1.2.3", kUp)},
                     {"node-b", says("10.1.2.3", kUp)},
                     {"node-c", says("10.1.2.3", kDown)}});
  ASSERT_EQ(t.size(), 1u);
  EXPECT_FALSE(t[0].down);
  EXPECT_FALSE(v.down(kKey, "10.1.2.3:8080"));
  EXPECT_EQ(v.apply(desired)[0], desired[0]);
  auto facts = v.facts();
  ASSERT_EQ(facts.size(), 1u);
  EXPECT_FALSE(facts[0].event.warning);
  EXPECT_EQ(facts[0].event.reason, "BackendHealthy");
  EXPECT_THAT(facts[0].event.message, HasSubstr("backend 10.1.2.3:8080 passed its health check"));
}

TEST(HealthVerdictTest, ProbersAreTheAssignedOnesWhenThereAreMoreNodes) {
  const std::vector<std::string> nodes = {"n1", "n2", "n3", "n4", "n5", "n6", "n7"};
  const std::vector<std::string> mine = probersFor(nodes, 3, kKey, "10.1.2.3:8080");
  ASSERT_EQ(mine.size(), 3u);
  std::vector<std::string> others;
  for (const std::string& n : nodes) {
    if (std::find(mine.begin(), mine.end(), n) == mine.end()) others.push_back(n);
  }
  const std::vector<std::shared_ptr<const DesiredService>> desired = {service({"10.1.2.3"})};
  HealthVerdicts v(3);
  // Every node that is not a prober says UNHEALTHY: not counted.
  std::map<std::string, ProberHealth> reports;
  for (const std::string& n : others) reports[n] = says("10.1.2.3", kDown);
  EXPECT_TRUE(v.update(desired, nodes, reports).empty());
  // Two of its three probers: down.
  reports[mine[0]] = says("10.1.2.3", kDown);
  reports[mine[2]] = says("10.1.2.3", kDown);
  auto t = v.update(desired, nodes, reports);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].probers, 3u);
  // The prober list changes (a new node): the assignment follows it.
  std::vector<std::string> more = nodes;
  more.push_back("n8");
  std::sort(more.begin(), more.end());
  const std::vector<std::string> now = probersFor(more, 3, kKey, "10.1.2.3:8080");
  std::map<std::string, ProberHealth> healthy;
  for (const std::string& n : now) healthy[n] = says("10.1.2.3", kUp);
  EXPECT_EQ(v.update(desired, more, healthy).size(), 1u);
  EXPECT_FALSE(v.down(kKey, "10.1.2.3:8080"));
}

TEST(HealthVerdictTest, BackendsThatLeaveAreForgotten) {
  HealthVerdicts v;
  std::map<std::string, ProberHealth> all_down;
  for (const std::string& n : kNodes) all_down[n] = says("10.1.2.3", kDown);
  v.update({service({"10.1.2.3", "10.1.2.4"})}, kNodes, all_down);
  ASSERT_TRUE(v.down(kKey, "10.1.2.3:8080"));
  // It leaves the EndpointSlice: forgotten, without a transition.
  EXPECT_TRUE(v.update({service({"10.1.2.4"})}, kNodes, all_down).empty());
  EXPECT_EQ(v.downCount(), 0u);
  EXPECT_TRUE(v.facts().empty());
  // When it comes back with the old reports, it is judged afresh.
  EXPECT_EQ(v.update({service({"10.1.2.3", "10.1.2.4"})}, kNodes, all_down).size(), 1u);
  // The health check turned off: forgotten too.
  EXPECT_TRUE(v.update({service({"10.1.2.3", "10.1.2.4"}, false)}, kNodes, all_down).empty());
  EXPECT_EQ(v.downCount(), 0u);
  EXPECT_TRUE(v.downPerService().empty()) << "its series goes";
  // Nobody probes any more: no verdict.
  v.update({service({"10.1.2.3", "10.1.2.4"})}, kNodes, all_down);
  EXPECT_TRUE(v.update({service({"10.1.2.3", "10.1.2.4"})}, {}, all_down).empty());
  EXPECT_EQ(v.downCount(), 0u);
}

TEST(HealthVerdictTest, EveryBackendDownFailsOpenWithAWarning) {
  HealthVerdicts v;
  const std::vector<std::shared_ptr<const DesiredService>> desired = {
      service({"10.1.2.3", "10.1.2.4"})};
  std::map<std::string, ProberHealth> reports;
  for (const std::string& n : kNodes) {
    reports[n] = says("10.1.2.3", kDown, "http status 503");
    reports[n].merge(says("10.1.2.4", kDown, "http status 503"));
  }
  EXPECT_EQ(v.update(desired, kNodes, reports).size(), 2u);
  EXPECT_EQ(v.failingOpen(), (std::set<std::string>{kKey}));
  auto facts = v.facts();
  ASSERT_EQ(facts.size(), 3u);
  EXPECT_EQ(facts[2].event.reason, "AllBackendsUnhealthy");
  EXPECT_TRUE(facts[2].event.warning);
  EXPECT_EQ(facts[2].event.message,
            "every backend of port http (ipv4) failed its health check: failing open, new "
            "connections go to all of them");
  // Both are UNHEALTHY in the state: the agents fail open by themselves.
  auto applied = v.apply(desired);
  EXPECT_EQ(applied[0]->backends[0].state, BackendState::kUnhealthy);
  EXPECT_EQ(applied[0]->backends[1].state, BackendState::kUnhealthy);
  // One comes back: no longer failing open.
  reports["node-a"][{kKey, "10.1.2.4:8080"}] = {kUp, ""};
  reports["node-b"][{kKey, "10.1.2.4:8080"}] = {kUp, ""};
  EXPECT_EQ(v.update(desired, kNodes, reports).size(), 1u);
  EXPECT_TRUE(v.failingOpen().empty());
}

TEST(HealthVerdictTest, DrainingBackendsStayDrainingAndDoNotTakeNewFlows) {
  auto d = std::make_shared<DesiredService>(*service({"10.1.2.3", "10.1.2.4"}));
  d->backends[1].state = BackendState::kDraining;
  const std::vector<std::shared_ptr<const DesiredService>> desired = {d};
  HealthVerdicts v;
  std::map<std::string, ProberHealth> reports;
  for (const std::string& n : kNodes) {
    reports[n] = says("10.1.2.3", kDown);
    reports[n].merge(says("10.1.2.4", kDown));
  }
  v.update(desired, kNodes, reports);
  auto applied = v.apply(desired);
  EXPECT_EQ(applied[0]->backends[0].state, BackendState::kUnhealthy);
  EXPECT_EQ(applied[0]->backends[1].state, BackendState::kDraining);
  // The only active backend is down: failing open.
  EXPECT_EQ(v.failingOpen().size(), 1u);
}

}  // namespace
}  // namespace flowlb::controller

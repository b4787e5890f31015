#include "controller/reconciler/reconciler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>

namespace flowlb::controller {
namespace {

using ::testing::HasSubstr;

IpAddr ip(const char* s) {
  return *IpAddr::parse(s);
}

ServiceObject lb(const char* name, std::optional<std::string> cls = "flowlb.io/lb") {
  ServiceObject s;
  s.meta.ns = "default";
  s.meta.name = name;
  s.spec.type = "LoadBalancer";
  s.spec.load_balancer_class = std::move(cls);
  s.spec.ports = {{"http", 6, 80}};
  return s;
}

EndpointSliceObject slice(const char* service, std::vector<Endpoint> endpoints) {
  EndpointSliceObject e;
  e.meta.ns = "default";
  e.meta.name = std::string(service) + "-abc";
  e.service = service;
  e.ports = {{"http", 6, 8080}};
  e.endpoints = std::move(endpoints);
  return e;
}

Endpoint ep(const char* addr, const char* node, bool ready = true, bool serving = true,
            bool terminating = false) {
  return Endpoint{{ip(addr)}, ready, serving, terminating, node, "zone-a"};
}

IpPool pool() {
  IpPool p;
  p.name = "default";
  p.ranges = {*AddressRange::parse("192.0.2.0/28")};
  return p;
}

const std::vector<NodeObject> kNodes = {{"n1", true}, {"n2", true}, {"n3", true}, {"down", false}};

TEST(ReconcilerTest, ServesOnlyItsClassAndTheDefaultWhenAsked) {
  ReconcilerConfig cfg;
  auto ours = lb("ours");
  auto other = lb("other", std::string("example.com/other"));
  auto plain = lb("plain", std::nullopt);
  auto cluster_ip = lb("cip");
  cluster_ip.spec.type = "ClusterIP";
  auto r = reconcile(cfg, {pool()}, {ours, other, plain, cluster_ip}, {}, kNodes);
  ASSERT_EQ(r.services.size(), 1u);
  EXPECT_EQ(r.services[0].key, "default/ours");
  cfg.default_class = true;
  r = reconcile(cfg, {pool()}, {ours, other, plain, cluster_ip}, {}, kNodes);
  ASSERT_EQ(r.services.size(), 2u);
  EXPECT_EQ(r.services[1].key, "default/plain");
}

TEST(ReconcilerTest, EndpointConditionsBecomeActiveDrainingOrNothing) {
  auto r = reconcile({}, {pool()}, {lb("web")},
                     {slice("web", {ep("10.1.0.1", "n1"), ep("10.1.0.2", "n2", false, true, true),
                                    ep("10.1.0.3", "n3", false, false, true),
                                    ep("10.1.0.4", "n1", false, false, false)})},
                     kNodes);
  EXPECT_EQ(r.nodes, (std::vector<std::string>{"n1", "n2", "n3"}));  // ready nodes only
  const DesiredService& d = *r.desired.at(0);
  EXPECT_EQ(d.vip, ip("192.0.2.0"));
  EXPECT_EQ(d.port, 80);
  EXPECT_EQ(d.key, "default/web/http/ipv4");
  ASSERT_EQ(d.backends.size(), 2u);
  EXPECT_EQ(d.backends[0].addr, ip("10.1.0.1"));
  EXPECT_EQ(d.backends[0].port, 8080);
  EXPECT_EQ(d.backends[0].state, BackendState::kActive);
  EXPECT_EQ(d.backends[1].addr, ip("10.1.0.2"));
  EXPECT_EQ(d.backends[1].state, BackendState::kDraining);
}

TEST(ReconcilerTest, ExternalTrafficPolicyLocalCandidatesAreNodesWithLocalEndpoints) {
  auto web = lb("web");
  web.spec.external_traffic_local = true;
  auto r = reconcile({}, {pool()}, {web},
                     {slice("web", {ep("10.1.0.1", "n2"), ep("10.1.0.2", "n2"),
                                    ep("10.1.0.3", "n3", false, true, true)})},
                     kNodes);
  const DesiredService& d = *r.desired.at(0);
  // Every endpoint is sent: each agent keeps those on its own node.
  EXPECT_EQ(d.backends.size(), 3u);
  EXPECT_EQ(*d.announce_candidates, std::vector<std::string>{"n2"});  // n3's only drains
  ASSERT_EQ(r.vips.size(), 1u);
  EXPECT_EQ(*r.vips[0].candidates, std::vector<std::string>{"n2"});
  auto none = reconcile({}, {pool()}, {web}, {}, kNodes);
  EXPECT_TRUE(none.vips.at(0).candidates->empty());
  EXPECT_EQ(none.services[0].events.back().reason, "NoAnnouncer");
}

TEST(ReconcilerTest, CandidatesAreTheReadyNodesNeverTheDownOne) {
  std::vector<ServiceObject> many;
  for (int i = 0; i < 12; ++i) many.push_back(lb(("s" + std::to_string(i)).c_str()));
  auto r = reconcile({}, {pool()}, many, {}, kNodes);
  ASSERT_EQ(r.vips.size(), 12u);
  for (const VipCandidates& v : r.vips) {
    EXPECT_EQ(*v.candidates, (std::vector<std::string>{"n1", "n2", "n3"}));
  }
  // Services share one list of all ready nodes, not a copy each.
  EXPECT_EQ(r.desired[0]->announce_candidates, r.desired[11]->announce_candidates);
}

TEST(ReconcilerTest, UserProblemsBecomeWarningsAndTheRestIsServed) {
  auto bad = lb("bad");
  bad.meta.annotations = {{"flowlb.io/forwarding-mode", "magic"}, {"flowlb.io/pool", "nope"}};
  auto good = lb("good");
  good.meta.annotations = {{"flowlb.io/forwarding-mode", "dsr"}};
  auto r = reconcile({}, {pool()}, {bad, good}, {}, kNodes);
  ASSERT_EQ(r.services.size(), 2u);
  const ServiceOutcome& b = r.services[0];
  EXPECT_FALSE(b.satisfied);
  EXPECT_EQ(b.reason, "UnknownPool");
  ASSERT_GE(b.events.size(), 2u);
  EXPECT_EQ(b.events[0].reason, "InvalidAnnotation");
  EXPECT_THAT(b.events[0].message, HasSubstr("'magic'"));
  EXPECT_TRUE(b.events[1].warning);
  const ServiceOutcome& g = r.services[1];
  EXPECT_TRUE(g.satisfied);
  EXPECT_EQ(g.events.back().reason, "IPAllocated");
  EXPECT_FALSE(g.events.back().warning);
  EXPECT_EQ(r.desired.at(0)->mode, ForwardingMode::kDsr);
  EXPECT_EQ(r.pools["default"].used, 1u);
  EXPECT_EQ(r.pools["default"].free, 15u);
}

// flowlb.io/health-check reaches every node's VirtualService; a bad value
// is a Warning and leaves the check off, the Service served.
TEST(ReconcilerTest, HealthCheckAnnotationReachesTheDesiredStateOrWarns) {
  auto checked = lb("checked");
  checked.meta.annotations = {{"flowlb.io/health-check", "http:/healthz"},
                              {"flowlb.io/health-check-interval", "1s"}};
  auto bad = lb("bad");
  bad.meta.annotations = {{"flowlb.io/health-check", "http:/healthz"},
                          {"flowlb.io/health-check-timeout", "1ms"}};
  auto r = reconcile({}, {pool()}, {bad, checked}, {}, kNodes);
  ASSERT_EQ(r.desired.size(), 2u);
  const DesiredService& b = *r.desired[0];  // default/bad/...
  const DesiredService& c = *r.desired[1];
  EXPECT_EQ(c.health.kind, HealthCheckKind::kHttp);
  EXPECT_EQ(c.health.path, "/healthz");
  EXPECT_EQ(c.health.interval_ms, 1000u);
  EXPECT_EQ(b.health.kind, HealthCheckKind::kNone);
  ASSERT_EQ(r.services.size(), 2u);
  EXPECT_TRUE(r.services[0].satisfied) << "served without its health check";
  EXPECT_EQ(r.services[0].events[0].reason, "InvalidAnnotation");
  EXPECT_THAT(r.services[0].events[0].message, HasSubstr("flowlb.io/health-check-timeout"));
  // The check is part of what agents receive: a change of it alone is one.
  DesiredService other = c;
  other.health.timeout_ms = 200;
  EXPECT_FALSE(other.sameForAgents(c));
  // Who may announce is the controller's business: not sent, not a change.
  DesiredService moved = c;
  moved.announce_candidates = std::make_shared<const std::vector<std::string>>();
  EXPECT_TRUE(moved.sameForAgents(c));
}

TEST(ReconcilerTest, DualStackServiceGetsAServicePerFamily) {
  auto web = lb("web");
  web.spec.ip_families = {Family::kV4, Family::kV6};
  web.spec.ip_family_policy = "RequireDualStack";
  IpPool p = pool();
  p.ranges.push_back(*AddressRange::parse("2001:db8::/120"));
  auto r = reconcile(
      {}, {p}, {web},
      {slice("web", {Endpoint{{ip("10.1.0.1"), ip("fd00::1")}, true, true, false, "n1", ""}})},
      kNodes);
  ASSERT_EQ(r.desired.size(), 2u);
  EXPECT_EQ(r.desired[0]->key, "default/web/http/ipv4");
  EXPECT_EQ(r.desired[1]->key, "default/web/http/ipv6");
  EXPECT_EQ(r.desired[1]->backends.at(0).addr, ip("fd00::1"));
}

}  // namespace
}  // namespace flowlb::controller

namespace flowlb::controller {
namespace {

// The incremental path must give exactly what a full reconcile gives.
TEST(IncrementalReconcilerTest, EndpointChangeMatchesAFullReconcile) {
  std::vector<IpPool> pools(1);
  pools[0].name = "p";
  pools[0].ranges.push_back(*AddressRange::parse("192.0.2.0/28"));
  std::vector<ServiceObject> svcs;
  std::vector<EndpointSliceObject> slices;
  for (int i = 0; i < 4; ++i) {
    ServiceObject s;
    s.meta.ns = "d";
    s.meta.name = "s" + std::to_string(i);
    s.spec.type = "LoadBalancer";
    s.spec.load_balancer_class = "flowlb.io/lb";
    s.spec.ports.push_back({"http", 6, 80});
    s.spec.external_traffic_local = i == 3;
    svcs.push_back(s);
    EndpointSliceObject e;
    e.meta.ns = "d";
    e.meta.name = s.meta.name + "-x";
    e.service = s.meta.name;
    e.ports.push_back({"http", 6, 8080});
    Endpoint ep;
    ep.addresses.push_back(*IpAddr::parse("10.0.0." + std::to_string(i + 1)));
    ep.node = "n1";
    e.endpoints.push_back(ep);
    slices.push_back(e);
  }
  const std::vector<NodeObject> nodes = {{"n1", true}, {"n2", true}};
  IncrementalReconciler inc{ReconcilerConfig()};
  inc.full(pools, svcs, slices, nodes);

  // s3 (externalTrafficPolicy: Local) moves its endpoint to n2 and gains a
  // draining one; s1 loses its only endpoint.
  slices[3].endpoints[0].node = "n2";
  Endpoint drain;
  drain.addresses.push_back(*IpAddr::parse("10.0.0.9"));
  drain.ready = false;
  drain.terminating = true;
  drain.node = "n2";
  slices[3].endpoints.push_back(drain);
  slices[1].endpoints.clear();
  const Reconciled& got = inc.endpointsChanged({"d/s1", "d/s3"}, {slices[1], slices[3]});
  const Reconciled want = reconcile(ReconcilerConfig(), pools, svcs, slices, nodes);

  ASSERT_EQ(got.desired.size(), want.desired.size());
  for (size_t i = 0; i < want.desired.size(); ++i) {
    EXPECT_TRUE(got.desired[i]->sameForAgents(*want.desired[i])) << want.desired[i]->key;
    EXPECT_EQ(*got.desired[i]->announce_candidates, *want.desired[i]->announce_candidates);
  }
  EXPECT_EQ(got.vips, want.vips);
  ASSERT_EQ(got.services.size(), want.services.size());
  for (size_t i = 0; i < want.services.size(); ++i) {
    EXPECT_EQ(got.services[i].ips, want.services[i].ips);
    ASSERT_EQ(got.services[i].events.size(), want.services[i].events.size())
        << want.services[i].key;
  }
  // n1 lost s3's only local endpoint: only n2 may announce it now; the
  // untouched Services keep their very entries.
  EXPECT_EQ(*got.desired[3]->announce_candidates, std::vector<std::string>{"n2"});
  EXPECT_EQ(got.desired[3]->backends.size(), 2u);
}

// An endpoint change says what it touched: the distribution patches those
// entries instead of comparing every Service (issue 13).
TEST(IncrementalReconcilerTest, EndpointChangeReportsOnlyTheServicesItTouched) {
  std::vector<ServiceObject> svcs;
  std::vector<EndpointSliceObject> slices;
  for (const char* name : {"a", "b", "c", "local"}) {
    svcs.push_back(lb(name));
    slices.push_back(slice(name, {ep("10.1.0.1", "n1"), ep("10.1.0.2", "n2")}));
  }
  svcs[3].spec.external_traffic_local = true;
  IncrementalReconciler inc{ReconcilerConfig()};
  const Reconciled& full = inc.full({pool()}, svcs, slices, kNodes);
  EXPECT_EQ(full.delta, nullptr) << "a full reconcile is compared whole";
  const uint64_t first = full.revision;
  const std::vector<std::shared_ptr<const DesiredService>> before = full.desired;
  const std::vector<VipCandidates> vips_before = full.vips;

  slices[1].endpoints.push_back(ep("10.1.0.3", "n3"));
  const Reconciled& got = inc.endpointsChanged({"default/b"}, {slices[1]});
  EXPECT_EQ(got.revision, first + 1);
  ASSERT_NE(got.delta, nullptr);
  ASSERT_EQ(got.delta->upserts.size(), 1u);
  EXPECT_EQ(got.delta->upserts[0]->key, "default/b/http/ipv4");
  EXPECT_EQ(got.delta->upserts[0]->backends.size(), 3u);
  EXPECT_TRUE(got.delta->removed.empty());
  EXPECT_TRUE(got.delta->vips.empty()) << "every ready node may still announce it";
  // The result itself is patched: the others are the very same entries.
  ASSERT_EQ(got.desired.size(), before.size());
  for (size_t i = 0; i < before.size(); ++i) {
    if (before[i]->key == "default/b/http/ipv4") {
      EXPECT_EQ(got.desired[i], got.delta->upserts[0]);
    } else {
      EXPECT_EQ(got.desired[i], before[i]) << before[i]->key;
    }
  }
  EXPECT_EQ(got.vips, vips_before);

  // A Local Service whose endpoint leaves n1: its VIP's candidates change,
  // and only that VIP is listed.
  slices[3].endpoints = {ep("10.1.0.2", "n2")};
  const Reconciled& local = inc.endpointsChanged({"default/local"}, {slices[3]});
  EXPECT_EQ(local.revision, first + 2);
  ASSERT_NE(local.delta, nullptr);
  ASSERT_EQ(local.delta->upserts.size(), 1u);
  EXPECT_EQ(local.delta->upserts[0]->key, "default/local/http/ipv4");
  ASSERT_EQ(local.delta->vips.size(), 1u);
  EXPECT_EQ(local.delta->vips[0].vip, local.delta->upserts[0]->vip);
  EXPECT_EQ(*local.delta->vips[0].candidates, std::vector<std::string>{"n2"});
  // And the patched result is what a full reconcile gives.
  const Reconciled want = reconcile(ReconcilerConfig(), {pool()}, svcs, slices, kNodes);
  ASSERT_EQ(local.desired.size(), want.desired.size());
  for (size_t i = 0; i < want.desired.size(); ++i) {
    EXPECT_TRUE(local.desired[i]->sameForAgents(*want.desired[i])) << want.desired[i]->key;
  }
  EXPECT_EQ(local.vips, want.vips);

  // A full reconcile again: no delta, the next revision.
  const Reconciled& again = inc.full({pool()}, svcs, slices, kNodes);
  EXPECT_EQ(again.delta, nullptr);
  EXPECT_EQ(again.revision, first + 3);
}

// Endpoint-only detection is the reconciler's, from ServiceSpec's defaulted
// operator==: any spec field counts, with no list kept by hand.
TEST(IncrementalReconcilerTest, PlanNeedsAFullReconcileForAnyInputButEndpointsAndOurOwnWrites) {
  IncrementalReconciler inc{ReconcilerConfig()};
  ServiceObject web = lb("web");
  web.meta.annotations["team"] = "a";
  const ServiceObject other = lb("other", std::string("example.com/lb"));
  inc.full({pool()}, {web, other}, {}, kNodes);
  ServiceObject echoed = web;  // our status write, as the API gives it back
  echoed.status.ips = inc.result().services[0].ips;
  echoed.meta.annotations[kAnnotationAllocatedFrom] = "default";
  echoed.meta.resource_version = "77";
  auto plan = [&](const ServiceObject* now, bool pending = false) {
    return inc.plan({{"default/web", now, pending}}, {"default/web", "default/other"}, false);
  };
  ReconcilePlan p = plan(&echoed);
  EXPECT_FALSE(p.full) << "our own status and annotation coming back";
  EXPECT_EQ(p.endpoints_of, std::vector<std::string>{"default/web"}) << "only served Services";

  std::vector<std::pair<const char*, std::function<void(ServiceObject&)>>> changes = {
      {"type", [](ServiceObject& s) { s.spec.type = "NodePort"; }},
      {"class", [](ServiceObject& s) { s.spec.load_balancer_class = "x"; }},
      {"port", [](ServiceObject& s) { s.spec.ports[0].port = 81; }},
      {"port name", [](ServiceObject& s) { s.spec.ports[0].name = "web"; }},
      {"protocol", [](ServiceObject& s) { s.spec.ports[0].proto = 17; }},
      {"loadBalancerIP", [](ServiceObject& s) { s.spec.load_balancer_ip = "192.0.2.9"; }},
      {"ipFamilies", [](ServiceObject& s) { s.spec.ip_families.push_back(Family::kV6); }},
      {"ipFamilyPolicy", [](ServiceObject& s) { s.spec.ip_family_policy = "PreferDualStack"; }},
      {"externalTrafficPolicy", [](ServiceObject& s) { s.spec.external_traffic_local = true; }},
      {"sessionAffinity", [](ServiceObject& s) { s.spec.session_affinity_client_ip = true; }},
      {"affinity timeout", [](ServiceObject& s) { s.spec.session_affinity_timeout_s = 60; }},
      {"source ranges",
       [](ServiceObject& s) { s.spec.source_ranges.push_back(*IpPrefix::parse("10.0.0.0/8")); }},
      {"label", [](ServiceObject& s) { s.meta.labels["tier"] = "edge"; }},
      {"user annotation", [](ServiceObject& s) { s.meta.annotations["team"] = "b"; }},
      {"flowlb annotation",
       [](ServiceObject& s) { s.meta.annotations[kAnnotationForwardingMode] = "dsr"; }},
      {"creation time", [](ServiceObject& s) { s.meta.created = 5; }},
      {"status by someone else", [](ServiceObject& s) { s.status.ips = {ip("192.0.2.15")}; }},
  };
  for (auto& [what, change] : changes) {
    ServiceObject now = echoed;
    change(now);
    EXPECT_TRUE(plan(&now).full) << what;
  }
  // While our own status write is in flight, the status is not news.
  ServiceObject stale = web;
  EXPECT_FALSE(plan(&stale, true).full);
  EXPECT_TRUE(plan(&stale, false).full);
  // A served Service deleted: its address is released by a full reconcile.
  EXPECT_TRUE(plan(nullptr).full);
  // Another class's Service appearing, changing or going: nothing to do.
  ServiceObject theirs = lb("theirs", std::string("example.com/lb"));
  EXPECT_FALSE(inc.plan({{"default/theirs", &theirs, false}}, {}, false).full);
  EXPECT_FALSE(inc.plan({{"default/other", nullptr, false}}, {}, false).full);
  // A new Service of ours.
  ServiceObject fresh = lb("fresh");
  EXPECT_TRUE(inc.plan({{"default/fresh", &fresh, false}}, {}, false).full);
  // Nodes, pools, a re-list.
  EXPECT_TRUE(inc.plan({}, {}, true).full);
}

// Issue 17.12: a Service whose class (or type) changed kept our address in
// its status, the address went to a newer Service, and two Services showed
// it. Its address stays held until what we wrote is cleared.
TEST(ReconcilerTest, ServiceThatLeavesUsHoldsItsAddressUntilOurStatusIsCleared) {
  IpPool one;
  one.name = "one";
  one.ranges = {*AddressRange::parse("192.0.2.1/32")};
  IncrementalReconciler inc{ReconcilerConfig()};
  ServiceObject web = lb("web");
  web.meta.created = 1;
  inc.full({one}, {web}, {}, kNodes);
  ASSERT_EQ(inc.result().services.at(0).ips, std::vector<IpAddr>{ip("192.0.2.1")});
  // Our write came back, then the user moved it to another class.
  web.status.ips = {ip("192.0.2.1")};
  web.status.conditions = {{kConditionAllocated, "True", "Allocated", "assigned 192.0.2.1"}};
  web.meta.annotations[kAnnotationAllocatedFrom] = "one";
  web.spec.load_balancer_class = "example.com/other";
  ServiceObject late = lb("late");
  late.meta.created = 2;
  const Reconciled& r = inc.full({one}, {web, late}, {}, kNodes);
  ASSERT_EQ(r.services.size(), 1u);  // only late is served
  EXPECT_TRUE(r.services[0].ips.empty()) << "192.0.2.1 is still shown by web";
  ASSERT_EQ(r.leaving.size(), 1u);
  EXPECT_EQ(r.leaving[0].key, "default/web");
  EXPECT_EQ(r.leaving[0].ips, std::vector<IpAddr>{ip("192.0.2.1")});
  EXPECT_EQ(r.pools.at("one").used, 1u);
  // Any change to a leaving Service (here: our clearing write coming back)
  // is a full reconcile, which releases the address.
  ServiceObject cleared = web;
  cleared.status = {};
  cleared.meta.annotations.clear();
  EXPECT_TRUE(inc.plan({{"default/web", &cleared, false}}, {}, false).full);
  const Reconciled& after = inc.full({one}, {cleared, late}, {}, kNodes);
  EXPECT_TRUE(after.leaving.empty());
  EXPECT_EQ(after.services.at(0).ips, std::vector<IpAddr>{ip("192.0.2.1")});
  // Someone else's address in a Service of another class is not ours to hold.
  ServiceObject foreign = lb("foreign", std::string("example.com/other"));
  foreign.status.ips = {ip("192.0.2.1")};
  const Reconciled& f = inc.full({one}, {foreign, late}, {}, kNodes);
  EXPECT_TRUE(f.leaving.empty());
  EXPECT_EQ(f.services.at(0).ips, std::vector<IpAddr>{ip("192.0.2.1")});
}

}  // namespace
}  // namespace flowlb::controller

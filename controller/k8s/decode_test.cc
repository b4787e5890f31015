#include "controller/k8s/decode.h"

#include <gtest/gtest.h>

namespace flowlb::controller::k8s {
namespace {

web::json::value json(const std::string& s) {
  return web::json::value::parse(s);
}

TEST(DecodeTest, ServiceWithEverythingTheReconcilerUses) {
  auto s = decodeService(json(R"({
    "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "resourceVersion": "42",
                 "generation": 3, "creationTimestamp": "2026-01-02T03:04:05Z",
                 "labels": {"app": "web"}, "annotations": {"flowlb.io/pool": "public"}},
    "spec": {"type": "LoadBalancer", "loadBalancerClass": "flowlb.io/lb",
             "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
                       {"name": "dns", "port": 53, "protocol": "UDP"}],
             "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "PreferDualStack",
             "externalTrafficPolicy": "Local", "sessionAffinity": "ClientIP",
             "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
             "loadBalancerSourceRanges": ["10.0.0.0/8"], "loadBalancerIP": "192.0.2.10"},
    "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10", "ipMode": "VIP"},
                                            {"hostname": "lb.example.com"}]},
               "conditions": [{"type": "flowlb.io/AddressAllocated", "status": "True",
                               "reason": "Allocated", "message": "assigned 192.0.2.10",
                               "lastTransitionTime": "2026-01-02T03:04:06Z",
                               "observedGeneration": 3}]}})"));
  ASSERT_TRUE(s) << s.error();
  EXPECT_EQ(s->meta.key(), "shop/web");
  EXPECT_EQ(s->meta.uid, "u-1");
  EXPECT_EQ(s->meta.resource_version, "42");
  EXPECT_EQ(s->meta.generation, 3);
  EXPECT_EQ(s->meta.created, 1767323045);
  EXPECT_EQ(s->meta.annotations.at("flowlb.io/pool"), "public");
  EXPECT_EQ(s->spec.type, "LoadBalancer");
  EXPECT_EQ(s->spec.load_balancer_class, "flowlb.io/lb");
  ASSERT_EQ(s->spec.ports.size(), 2u);
  EXPECT_EQ(s->spec.ports[1].proto, 17);
  EXPECT_EQ(s->spec.ip_families.size(), 2u);
  EXPECT_TRUE(s->spec.external_traffic_local);
  EXPECT_TRUE(s->spec.session_affinity_client_ip);
  EXPECT_EQ(s->spec.session_affinity_timeout_s, 600u);
  EXPECT_EQ(s->spec.source_ranges.size(), 1u);
  EXPECT_EQ(s->spec.load_balancer_ip, "192.0.2.10");
  ASSERT_EQ(s->status.ips.size(), 1u);  // the hostname entry is not an address
  EXPECT_EQ(s->status.ips[0].toString(), "192.0.2.10");
  ASSERT_EQ(s->status.conditions.size(), 1u);
  EXPECT_EQ(s->status.conditions[0].reason, "Allocated");
  EXPECT_EQ(s->status.conditions[0].observed_generation, 3);
}

TEST(DecodeTest, BadServicesAreRejectedWithTheirName) {
  auto port = decodeService(json(
      R"({"metadata": {"name": "a", "namespace": "n"}, "spec": {"ports": [{"port": 70000}]}})"));
  ASSERT_FALSE(port);
  EXPECT_NE(port.error().find("Service n/a"), std::string::npos);
  EXPECT_NE(port.error().find("1..65535"), std::string::npos);

  auto proto = decodeService(json(
      R"({"metadata": {"name": "a"}, "spec": {"ports": [{"port": 80, "protocol": "ICMP"}]}})"));
  ASSERT_FALSE(proto);
  EXPECT_NE(proto.error().find("ICMP"), std::string::npos);

  EXPECT_FALSE(decodeService(json(R"({"metadata": {}, "spec": {}})")));
  EXPECT_FALSE(decodeService(json(R"({"metadata": {"name": "x"}})")));
  EXPECT_FALSE(decodeService(json(R"([1, 2])")));
  EXPECT_FALSE(decodeService(json(
      R"({"metadata": {"name": "x"}, "spec": {}, "status": {"loadBalancer": {"ingress": [{"ip": "nope"}]}}})")));
}

TEST(DecodeTest, EndpointSliceConditions) {
  auto e = decodeEndpointSlice(json(R"({
    "metadata": {"name": "web-abc", "namespace": "shop",
                 "labels": {"kubernetes.io/service-name": "web"}},
    "addressType": "IPv4",
    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "all"}],
    "endpoints": [
      {"addresses": ["10.1.0.1"], "conditions": {"ready": true}, "nodeName": "n1", "zone": "a"},
      {"addresses": ["10.1.0.2"], "conditions": {"ready": false, "serving": true, "terminating": true}},
      {"addresses": ["10.1.0.3"], "conditions": {"ready": false, "serving": false, "terminating": true}},
      {"addresses": ["10.1.0.4"]}]})"));
  ASSERT_TRUE(e) << e.error();
  EXPECT_EQ(e->service, "web");
  ASSERT_EQ(e->ports.size(), 1u);  // a port without a number is not a target
  EXPECT_EQ(e->ports[0].port, 8080);
  ASSERT_EQ(e->endpoints.size(), 4u);
  EXPECT_TRUE(e->endpoints[0].ready);
  EXPECT_EQ(e->endpoints[0].node, "n1");
  EXPECT_EQ(e->endpoints[0].zone, "a");
  EXPECT_TRUE(e->endpoints[1].serving && e->endpoints[1].terminating && !e->endpoints[1].ready);
  EXPECT_FALSE(e->endpoints[2].serving);
  EXPECT_TRUE(e->endpoints[3].ready && e->endpoints[3].serving);  // unset: unknown = ready

  EXPECT_FALSE(decodeEndpointSlice(json(R"({"metadata": {"name": "orphan"}})")));
  EXPECT_FALSE(decodeEndpointSlice(json(R"({"metadata": {"name": "x",
      "labels": {"kubernetes.io/service-name": "web"}},
      "endpoints": [{"addresses": ["10.1.0.1"], "conditions": {"ready": "yes"}}]})")));
}

TEST(DecodeTest, NodesAndPools) {
  auto n = decodeNode(json(R"({"metadata": {"name": "n1"},
      "status": {"conditions": [{"type": "MemoryPressure", "status": "False"},
                                {"type": "Ready", "status": "False"}]}})"));
  ASSERT_TRUE(n);
  EXPECT_FALSE(n->node.ready);
  auto excluded = decodeNode(json(R"({"metadata": {"name": "n2",
      "labels": {"node.kubernetes.io/exclude-from-external-load-balancers": ""}}})"));
  ASSERT_TRUE(excluded);
  EXPECT_FALSE(excluded->node.ready);

  auto p = decodePool(json(R"({"metadata": {"name": "public"},
      "spec": {"addresses": ["192.0.2.0/28", "2001:db8::1-2001:db8::9"], "autoAssign": false,
               "avoidBuggyIPs": true, "serviceSelector": {"matchLabels": {"tier": "edge"}},
               "namespaces": ["shop"]},
      "status": {"used": 3, "free": 13}})"));
  ASSERT_TRUE(p) << p.error();
  EXPECT_EQ(p->pool.ranges.size(), 2u);
  EXPECT_FALSE(p->pool.auto_assign);
  EXPECT_TRUE(p->pool.avoid_buggy_ips);
  EXPECT_EQ(p->pool.service_selector.at("tier"), "edge");
  EXPECT_TRUE(p->has_status);
  EXPECT_EQ(p->used, 3u);
  EXPECT_EQ(p->free, 13u);
  // Issue 10: a pool with an unreadable entry used to be dropped whole, and a
  // Service naming it was told the pool "does not exist". It stays, without
  // that entry, and says why in its condition.
  auto bad = decodePool(json(
      R"({"metadata": {"name": "x"}, "spec": {"addresses": ["nope", "10.0.0.0/33", "10.1.0.0/30"]},
          "status": {"conditions": [{"type": "flowlb.io/Valid", "status": "False",
                                     "message": "old"}]}})"));
  ASSERT_TRUE(bad) << bad.error();
  EXPECT_EQ(bad->pool.ranges.size(), 1u);
  ASSERT_EQ(bad->pool.invalid.size(), 2u);
  EXPECT_NE(bad->pool.invalid[0].find("'nope'"), std::string::npos);
  EXPECT_NE(bad->pool.invalid[1].find("'10.0.0.0/33'"), std::string::npos);
  EXPECT_TRUE(bad->has_valid_condition);
  EXPECT_EQ(bad->valid_message, "old");
  EXPECT_FALSE(decodePool(json(R"({"metadata": {"name": "y"}, "spec": {}})")));
}

TEST(DecodeTest, Timestamps) {
  EXPECT_EQ(rfc3339(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(rfc3339(1767323045), "2026-01-02T03:04:05Z");
  const auto t = std::chrono::system_clock::time_point(std::chrono::microseconds(1767323045000007));
  EXPECT_EQ(rfc3339Micro(t), "2026-01-02T03:04:05.000007Z");
}

}  // namespace
}  // namespace flowlb::controller::k8s

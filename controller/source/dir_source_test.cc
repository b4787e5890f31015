#include "controller/source/dir_source.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

namespace flowlb::controller {
namespace {

using ::testing::HasSubstr;

constexpr const char* kDocs = R"(apiVersion: flowlb.io/v1alpha1
kind: IPPool
metadata: {name: public}
spec:
  addresses: ["192.0.2.0/28", "2001:db8::10-2001:db8::1f"]
  avoidBuggyIPs: true
  namespaces: [shop]
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  creationTimestamp: "2024-01-31T12:00:00Z"
  annotations: {flowlb.io/forwarding-mode: dsr}
spec:
  type: LoadBalancer
  loadBalancerClass: flowlb.io/lb
  externalTrafficPolicy: Local
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: PreferDualStack
  ports: [{name: http, port: 80, protocol: TCP}]
  loadBalancerSourceRanges: ["10.0.0.0/8"]
status:
  loadBalancer:
    ingress: [{ip: 192.0.2.5}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-x1
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
  - addresses: [10.1.0.1]
    conditions: {ready: true}
    nodeName: n1
  - addresses: [10.1.0.2]
    conditions: {ready: false, serving: true, terminating: true}
    nodeName: n2
---
apiVersion: v1
kind: Node
metadata: {name: n2}
status:
  conditions: [{type: Ready, status: "False"}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ignored}
)";

TEST(DirSourceTest, ReadsTheKindsItKnowsAndIgnoresOthers) {
  SourceSnapshot s;
  parseDocuments(kDocs, "cluster.yaml", &s);
  EXPECT_TRUE(s.problems.empty()) << s.problems.front();
  ASSERT_EQ(s.pools.size(), 1u);
  EXPECT_TRUE(s.pools[0].avoid_buggy_ips);
  EXPECT_EQ(s.pools[0].ranges.size(), 2u);
  EXPECT_EQ(s.pools[0].namespaces, std::vector<std::string>{"shop"});
  ASSERT_EQ(s.services.size(), 1u);
  const ServiceObject& w = s.services[0];
  EXPECT_EQ(w.meta.key(), "shop/web");
  EXPECT_EQ(w.meta.created, 1706702400);
  EXPECT_EQ(w.load_balancer_class, "flowlb.io/lb");
  EXPECT_TRUE(w.external_traffic_local);
  EXPECT_EQ(w.ip_families.size(), 2u);
  EXPECT_EQ(w.ports.at(0).port, 80);
  EXPECT_EQ(w.status_ips.at(0).toString(), "192.0.2.5");
  EXPECT_EQ(w.source_ranges.at(0).toString(), "10.0.0.0/8");
  ASSERT_EQ(s.slices.size(), 1u);
  EXPECT_EQ(s.slices[0].service, "web");
  EXPECT_TRUE(s.slices[0].endpoints[1].terminating);
  EXPECT_TRUE(s.slices[0].endpoints[1].serving);
  ASSERT_EQ(s.nodes.size(), 1u);
  EXPECT_FALSE(s.nodes[0].ready);
}

TEST(DirSourceTest, BrokenDocumentsAreReportedAndSkippedTheRestIsUsed) {
  SourceSnapshot s;
  parseDocuments(R"(kind: Service
metadata: {name: bad}
spec:
  type: LoadBalancer
  ports: [{port: 99999}]
---
kind: IPPool
metadata: {name: p}
spec: {addresses: ["10.0.0.0/33"]}
---
kind: Service
metadata: {name: good}
spec: {type: LoadBalancer, ports: [{port: 80}]}
)",
                 "mixed.yaml", &s);
  ASSERT_EQ(s.problems.size(), 2u);
  EXPECT_THAT(s.problems[0], HasSubstr("mixed.yaml: Service/bad: line 5: ports[].port"));
  EXPECT_THAT(s.problems[1], HasSubstr("IPPool/p: address '10.0.0.0/33'"));
  // The pool itself stays (without the bad entry), so a Service naming it is
  // told what is wrong with it instead of "does not exist".
  ASSERT_EQ(s.pools.size(), 1u);
  EXPECT_TRUE(s.pools[0].ranges.empty());
  EXPECT_EQ(s.pools[0].invalid.size(), 1u);
  ASSERT_EQ(s.services.size(), 1u);
  EXPECT_EQ(s.services[0].meta.name, "good");
  SourceSnapshot t;
  parseDocuments("kind: [unclosed", "syntax.yaml", &t);
  ASSERT_EQ(t.problems.size(), 1u);
  EXPECT_THAT(t.problems[0], HasSubstr("syntax.yaml:1"));
}

TEST(DirSourceTest, StatusFileRoundTripKeepsAllocationsAcrossRestarts) {
  const std::string path = testing::TempDir() + "/flowlb-status-test.yaml";
  std::filesystem::remove(path);
  SourceSnapshot s;
  parseDocuments(kDocs, "cluster.yaml", &s);
  s.services[0].status_ips.clear();  // as if the YAML had no status
  Reconciled r;
  ServiceOutcome o;
  o.key = "shop/web";
  o.ips = {*IpAddr::parse("192.0.2.9")};
  r.services.push_back(o);
  ASSERT_TRUE(writeStatusFile(path, r).isOk());
  ASSERT_TRUE(applyStatusFile(path, &s.services).isOk());
  ASSERT_EQ(s.services[0].status_ips.size(), 1u);
  EXPECT_EQ(s.services[0].status_ips[0].toString(), "192.0.2.9");
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace flowlb::controller

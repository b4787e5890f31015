#include "controller/source/dir_source.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

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
  EXPECT_EQ(w.spec.load_balancer_class, "flowlb.io/lb");
  EXPECT_TRUE(w.spec.external_traffic_local);
  EXPECT_EQ(w.spec.ip_families.size(), 2u);
  EXPECT_EQ(w.spec.ports.at(0).port, 80);
  EXPECT_EQ(w.status.ips.at(0).toString(), "192.0.2.5");
  EXPECT_EQ(w.spec.source_ranges.at(0).toString(), "10.0.0.0/8");
  ASSERT_EQ(s.slices.size(), 1u);
  EXPECT_EQ(s.slices[0].service, "web");
  EXPECT_TRUE(s.slices[0].endpoints[1].terminating);
  EXPECT_TRUE(s.slices[0].endpoints[1].serving);
  ASSERT_EQ(s.nodes.size(), 1u);
  EXPECT_FALSE(s.nodes[0].ready);
}

TEST(DirSourceTest, BgpObjectsAreReadAndABadOneIsReportedWithItsLine) {
  SourceSnapshot s;
  parseDocuments(R"(kind: BGPPeer
metadata: {name: tor}
spec: {peerAddress: 10.0.0.1, peerASN: 65000, myASN: 65001}
---
kind: BGPPeer
metadata: {name: bad}
spec:
  peerAddress: 10.0.0.2
  peerASN: 65000
  myASN: 0
---
kind: BGPAdvertisement
metadata: {name: all}
)",
                 "bgp.yaml", &s);
  ASSERT_EQ(s.bgp_peers.size(), 1u);
  EXPECT_EQ(s.bgp_peers[0].name, "tor");
  ASSERT_EQ(s.bgp_advertisements.size(), 1u);
  ASSERT_EQ(s.problems.size(), 1u);
  EXPECT_EQ(s.problems[0], "bgp.yaml:10: BGPPeer/bad: spec.myASN must be in 1..4294967295");
  // A change to them asks for a full reconcile.
  SourceSnapshot t = s;
  t.bgp_peers.clear();
  EXPECT_TRUE(diffSnapshots(s, t).others);
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
  EXPECT_THAT(s.problems[0],
              HasSubstr("mixed.yaml:5: Service/bad (namespace default): spec.ports[].port"));
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

class DirSourceFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::TempDir() + "/flowlb-dir-source-" +
           testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ + "/" + name) << text;
  }
  std::string dir_;
};

constexpr const char* kPool = R"(kind: IPPool
metadata: {name: p}
spec: {addresses: ["192.0.2.1-192.0.2.2"]}
)";
constexpr const char* kWeb = R"(kind: Service
metadata: {name: web, namespace: shop, creationTimestamp: "2024-01-01T00:00:00Z"}
spec: {type: LoadBalancer, loadBalancerClass: flowlb.io/lb, ports: [{port: 80}]}
---
kind: Service
metadata: {name: api, namespace: shop, creationTimestamp: "2024-01-01T00:00:01Z"}
spec: {type: LoadBalancer, loadBalancerClass: flowlb.io/lb, ports: [{port: 443}]}
)";
constexpr const char* kLate = R"(kind: Service
metadata: {name: late, namespace: other, creationTimestamp: "2024-02-01T00:00:00Z"}
spec: {type: LoadBalancer, loadBalancerClass: flowlb.io/lb, ports: [{port: 80}]}
)";

std::map<std::string, std::vector<IpAddr>> allocate(const SourceSnapshot& snap,
                                                    StatusFile* status) {
  std::vector<ServiceObject> services = snap.services;
  status->overlay(&services);
  const Reconciled r = reconcile(ReconcilerConfig(), snap.pools, services, snap.slices, snap.nodes);
  EXPECT_TRUE(status->save(r).isOk());
  std::map<std::string, std::vector<IpAddr>> out;
  for (const ServiceOutcome& o : r.services) out[o.key] = o.ips;
  return out;
}

// Issue 17.14: a YAML typo in one file withdrew and released its Services'
// addresses, and another Service took one.
TEST_F(DirSourceFiles, BrokenFileKeepsItsLastGoodObjectsAndNoOneTakesTheirAddresses) {
  write("pool.yaml", kPool);
  write("web.yaml", kWeb);
  DirSource src(dir_);
  auto status = StatusFile::load("");
  ASSERT_TRUE(status);
  ASSERT_TRUE(src.refresh().isOk());
  const auto before = allocate(src.snapshot(), &*status);
  ASSERT_EQ(before.at("shop/web").size(), 1u);
  ASSERT_EQ(before.at("shop/api").size(), 1u);

  // A typo that breaks the YAML, and a newcomer that wants an address.
  write("web.yaml", std::string(kWeb) + "  oops: [unclosed\n");
  write("late.yaml", kLate);
  ASSERT_TRUE(src.refresh().isOk());
  ASSERT_EQ(src.snapshot().problems.size(), 1u);
  EXPECT_THAT(src.snapshot().problems[0], HasSubstr("web.yaml"));
  EXPECT_THAT(src.snapshot().problems[0], HasSubstr("stay in force"));
  const auto during = allocate(src.snapshot(), &*status);
  EXPECT_EQ(during.at("shop/web"), before.at("shop/web"));
  EXPECT_EQ(during.at("shop/api"), before.at("shop/api"));
  EXPECT_TRUE(during.at("other/late").empty()) << "the pool has no third address";

  // One object broken, the file still YAML: that object keeps its last
  // good version, the other follows the file.
  std::string edited = kWeb;
  edited.replace(edited.find("{port: 443}"), 11, "{port: 8443}");
  edited.replace(edited.find("{port: 80}"), 10, "{port: 0}");
  write("web.yaml", edited);
  ASSERT_TRUE(src.refresh().isOk());
  ASSERT_EQ(src.snapshot().problems.size(), 1u);
  EXPECT_THAT(src.snapshot().problems[0], HasSubstr("Service/web (namespace shop)"));
  EXPECT_THAT(src.snapshot().problems[0], HasSubstr("last good version"));
  for (const ServiceObject& s : src.snapshot().services) {
    if (s.meta.name == "api") {
      EXPECT_EQ(s.spec.ports.at(0).port, 8443);
    } else if (s.meta.name == "web") {
      EXPECT_EQ(s.spec.ports.at(0).port, 80);
    }
  }
  const auto partly = allocate(src.snapshot(), &*status);
  EXPECT_EQ(partly.at("shop/web"), before.at("shop/web"));

  // Fixed: no problem left, addresses unchanged. Deleting the file is what
  // removes its Services.
  write("web.yaml", kWeb);
  ASSERT_TRUE(src.refresh().isOk());
  EXPECT_TRUE(src.snapshot().problems.empty());
  EXPECT_EQ(allocate(src.snapshot(), &*status).at("shop/web"), before.at("shop/web"));
  std::filesystem::remove(dir_ + "/web.yaml");
  ASSERT_TRUE(src.refresh().isOk());
  EXPECT_EQ(allocate(src.snapshot(), &*status).at("other/late").size(), 1u);
}

// Issue 17.14: an unreadable status file was overwritten with recomputed
// allocations.
TEST_F(DirSourceFiles, UnreadableStatusFileIsAnErrorNotAFreshStart) {
  EXPECT_TRUE(StatusFile::load(dir_ + "/missing.yaml")) << "a first start has none";
  write("empty.yaml", "");
  EXPECT_TRUE(StatusFile::load(dir_ + "/empty.yaml"));
  write("garbage.yaml", "services: {shop/web: {ingress: [192.0.2.1\n");
  auto garbage = StatusFile::load(dir_ + "/garbage.yaml");
  ASSERT_FALSE(garbage);
  EXPECT_THAT(garbage.error(), HasSubstr("garbage.yaml"));
  write("badip.yaml", "services:\n  shop/web: {ingress: [192.0.2.300]}\n");
  EXPECT_FALSE(StatusFile::load(dir_ + "/badip.yaml"));
  write("other.yaml", "- just\n- a list\n");
  EXPECT_FALSE(StatusFile::load(dir_ + "/other.yaml"));
  std::filesystem::create_directories(dir_ + "/adir.yaml");  // exists, cannot be read as a file
  EXPECT_FALSE(StatusFile::load(dir_ + "/adir.yaml"));
}

TEST_F(DirSourceFiles, ChangesAreReportedByKindAndKey) {
  write("pool.yaml", kPool);
  write("web.yaml", kWeb);
  DirSource src(dir_);
  ASSERT_TRUE(src.refresh().isOk());
  const SourceSnapshot first = src.snapshot();
  write("slices.yaml", R"(kind: EndpointSlice
metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}
endpoints: [{addresses: [10.0.0.1]}]
)");
  ASSERT_TRUE(src.refresh().isOk());
  SourceChanges c = diffSnapshots(first, src.snapshot());
  EXPECT_TRUE(c.services.empty());
  EXPECT_EQ(c.slices, std::vector<std::string>{"shop/web"});
  EXPECT_FALSE(c.others);
  const SourceSnapshot second = src.snapshot();
  write("late.yaml", kLate);
  write("pool.yaml", std::string(kPool) + "\n");  // same objects, new text: no change
  ASSERT_TRUE(src.refresh().isOk());
  c = diffSnapshots(second, src.snapshot());
  EXPECT_EQ(c.services, std::vector<std::string>{"other/late"});
  EXPECT_FALSE(c.others);
  write("pool.yaml", "kind: IPPool\nmetadata: {name: p}\nspec: {addresses: [192.0.2.0/28]}\n");
  ASSERT_TRUE(src.refresh().isOk());
  EXPECT_TRUE(diffSnapshots(second, src.snapshot()).others);
}

TEST(DirSourceTest, StatusFileRoundTripKeepsAllocationsAcrossRestarts) {
  const std::string path = testing::TempDir() + "/flowlb-status-test.yaml";
  std::filesystem::remove(path);
  SourceSnapshot s;
  parseDocuments(kDocs, "cluster.yaml", &s);
  s.services[0].status.ips.clear();  // as if the YAML had no status
  Reconciled r;
  ServiceOutcome o;
  o.key = "shop/web";
  o.ips = {*IpAddr::parse("192.0.2.9")};
  r.services.push_back(o);
  auto written = StatusFile::load(path);
  ASSERT_TRUE(written);
  ASSERT_TRUE(written->save(r).isOk());
  auto read = StatusFile::load(path);
  ASSERT_TRUE(read) << read.error();
  read->overlay(&s.services);
  ASSERT_EQ(s.services[0].status.ips.size(), 1u);
  EXPECT_EQ(s.services[0].status.ips[0].toString(), "192.0.2.9");
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace flowlb::controller

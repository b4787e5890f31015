// One decoder for both sources: the same objects, sent by an API server as
// JSON or written in a directory as YAML, decode to identical domain
// objects, and bad input is refused alike.
#include <gtest/gtest.h>

#include "controller/decode/decode.h"
#include "controller/k8s/json_doc.h"
#include "controller/source/dir_source.h"
#include "controller/source/yaml_doc.h"

namespace flowlb::controller {
namespace {

// What an API server would send (one object per JSON text).
const char* const kJson[] = {
    R"({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "resourceVersion": "42",
                     "creationTimestamp": "2026-01-10T09:00:00Z",
                     "labels": {"app": "web"}, "annotations": {"flowlb.io/pool": "public"}},
        "spec": {"type": "LoadBalancer", "loadBalancerClass": "flowlb.io/lb",
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                           {"name": "dns", "port": 53, "protocol": "UDP"}],
                 "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "PreferDualStack",
                 "externalTrafficPolicy": "Local", "sessionAffinity": "ClientIP",
                 "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
                 "loadBalancerSourceRanges": ["10.0.0.0/8", "2001:db8::/32"]},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}, {"hostname": "x.example"}]},
                   "conditions": [{"type": "flowlb.io/AddressAllocated", "status": "True",
                                   "reason": "Allocated", "message": "assigned 192.0.2.1",
                                   "lastTransitionTime": "2026-01-10T09:00:01Z"}]}})",
    R"({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "bare", "namespace": "shop"},
        "spec": {"type": "LoadBalancer", "ipFamilies": [], "ports": [{"port": 443}]}})",
    R"({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-1", "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "any"}],
        "endpoints": [
          {"addresses": ["10.1.0.1"], "conditions": {"ready": true}, "nodeName": "n1", "zone": "a"},
          {"addresses": ["10.1.0.2"],
           "conditions": {"ready": false, "serving": true, "terminating": true}},
          {"addresses": ["10.1.0.3"]}]})",
    R"({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "n1", "labels": {"node.kubernetes.io/exclude-from-external-load-balancers": ""}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}})",
    R"({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2"},
        "status": {"conditions": [{"type": "Ready", "status": "False"}]}})",
    R"({"apiVersion": "flowlb.io/v1alpha1", "kind": "IPPool",
        "metadata": {"name": "public"},
        "spec": {"addresses": ["192.0.2.0/28", "2001:db8::10-2001:db8::1f"], "autoAssign": false,
                 "avoidBuggyIPs": true, "serviceSelector": {"matchLabels": {"tier": "edge"}},
                 "namespaces": ["shop"]}})",
    R"({"apiVersion": "flowlb.io/v1alpha1", "kind": "BGPPeer", "metadata": {"name": "tor"},
        "spec": {"peerAddress": "fd00::1", "peerASN": 4200000001, "myASN": 64512,
                 "holdTimeSeconds": 9, "bfdProfile": {"receiveIntervalMs": 100},
                 "nodeSelector": {"matchLabels": {"rack": "a"}}}})",
    R"({"apiVersion": "flowlb.io/v1alpha1", "kind": "BGPAdvertisement",
        "metadata": {"name": "web"},
        "spec": {"ipPools": ["public"], "communities": ["65000:100", "no-export"],
                 "largeCommunities": ["1:2:3"], "localPref": 200, "aggregationLength": 24}})",
};

// The same objects as a person writes them in a directory.
constexpr const char* kYaml = R"(apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  uid: u-1
  resourceVersion: "42"
  creationTimestamp: "2026-01-10T09:00:00Z"
  labels: {app: web}
  annotations: {flowlb.io/pool: public}
spec:
  type: LoadBalancer
  loadBalancerClass: flowlb.io/lb
  ports:
    - {name: http, port: 80, protocol: TCP}
    - {name: dns, port: 53, protocol: UDP}
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: PreferDualStack
  externalTrafficPolicy: Local
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}
  loadBalancerSourceRanges: [10.0.0.0/8, "2001:db8::/32"]
status:
  loadBalancer:
    ingress: [{ip: 192.0.2.1}, {hostname: x.example}]
  conditions:
    - type: flowlb.io/AddressAllocated
      status: "True"
      reason: Allocated
      message: assigned 192.0.2.1
      lastTransitionTime: "2026-01-10T09:00:01Z"
---
apiVersion: v1
kind: Service
metadata: {name: bare, namespace: shop}
spec: {type: LoadBalancer, ipFamilies: [], ports: [{port: 443}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}, {name: any}]
endpoints:
  - {addresses: [10.1.0.1], conditions: {ready: true}, nodeName: n1, zone: a}
  - addresses: [10.1.0.2]
    conditions: {ready: false, serving: true, terminating: true}
  - addresses: [10.1.0.3]
---
apiVersion: v1
kind: Node
metadata:
  name: n1
  labels: {node.kubernetes.io/exclude-from-external-load-balancers: ""}
status: {conditions: [{type: Ready, status: "True"}]}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
status: {conditions: [{type: Ready, status: "False"}]}
---
apiVersion: flowlb.io/v1alpha1
kind: IPPool
metadata: {name: public}
spec:
  addresses: [192.0.2.0/28, 2001:db8::10-2001:db8::1f]
  autoAssign: false
  avoidBuggyIPs: true
  serviceSelector: {matchLabels: {tier: edge}}
  namespaces: [shop]
---
apiVersion: flowlb.io/v1alpha1
kind: BGPPeer
metadata: {name: tor}
spec:
  peerAddress: fd00::1
  peerASN: 4200000001
  myASN: 64512
  holdTimeSeconds: 9
  bfdProfile: {receiveIntervalMs: 100}
  nodeSelector: {matchLabels: {rack: a}}
---
apiVersion: flowlb.io/v1alpha1
kind: BGPAdvertisement
metadata: {name: web}
spec:
  ipPools: [public]
  communities: [65000:100, no-export]
  largeCommunities: [1:2:3]
  localPref: 200
  aggregationLength: 24
)";

struct Decoded4 {
  std::vector<ServiceObject> services;
  std::vector<EndpointSliceObject> slices;
  std::vector<NodeEntry> nodes;
  std::vector<PoolObject> pools;
  std::vector<BgpPeerSpec> bgp_peers;
  std::vector<BgpAdvertisementSpec> bgp_advertisements;
};

Decoded4 decodeAll(const std::vector<Doc>& docs) {
  Decoded4 out;
  for (const Doc& d : docs) {
    const std::string kind = d.get("kind")->asString();
    if (kind == "Service") {
      auto s = decodeService(d);
      EXPECT_TRUE(s.ok) << s.problem.what;
      out.services.push_back(s.value);
    } else if (kind == "EndpointSlice") {
      auto e = decodeEndpointSlice(d);
      EXPECT_TRUE(e.ok) << e.problem.what;
      out.slices.push_back(e.value);
    } else if (kind == "Node") {
      auto n = decodeNode(d);
      EXPECT_TRUE(n.ok) << n.problem.what;
      out.nodes.push_back(n.value);
    } else if (kind == "IPPool") {
      auto p = decodePool(d);
      EXPECT_TRUE(p.ok) << p.problem.what;
      out.pools.push_back(p.value);
    } else if (kind == "BGPPeer") {
      auto p = decodeBgpPeer(d);
      EXPECT_TRUE(p.ok) << p.problem.what;
      out.bgp_peers.push_back(p.value);
    } else if (kind == "BGPAdvertisement") {
      auto a = decodeBgpAdvertisement(d);
      EXPECT_TRUE(a.ok) << a.problem.what;
      out.bgp_advertisements.push_back(a.value);
    }
  }
  return out;
}

std::vector<Doc> fromApi() {
  std::vector<Doc> docs;
  for (const char* j : kJson) docs.push_back(k8s::toDoc(web::json::value::parse(j)));
  return docs;
}

TEST(SourcesEqualTest, ApiJsonAndDirectoryYamlGiveIdenticalObjects) {
  const Decoded4 api = decodeAll(fromApi());
  auto yaml = parseYamlDocuments(kYaml);
  ASSERT_TRUE(yaml) << yaml.error();
  const Decoded4 dir = decodeAll(*yaml);
  ASSERT_EQ(api.services.size(), 2u);
  EXPECT_EQ(api.services, dir.services);
  EXPECT_EQ(api.slices, dir.slices);
  EXPECT_EQ(api.nodes, dir.nodes);
  EXPECT_EQ(api.pools, dir.pools);
  ASSERT_EQ(api.bgp_peers.size(), 1u);
  EXPECT_EQ(api.bgp_peers, dir.bgp_peers);
  ASSERT_EQ(api.bgp_advertisements.size(), 1u);
  EXPECT_EQ(api.bgp_advertisements, dir.bgp_advertisements)
      << "an unquoted 65000:100 is a community in YAML too, not a number";

  // The two places the sources used to disagree.
  EXPECT_FALSE(dir.nodes[0].node.ready) << "exclude-from-external-load-balancers";
  EXPECT_EQ(dir.services[1].spec.ip_families, std::vector<Family>{Family::kV4});
  // And what the reconciler reads came through.
  EXPECT_EQ(dir.services[0].spec.source_ranges.size(), 2u);
  EXPECT_EQ(dir.services[0].status.hostnames, std::vector<std::string>{"x.example"});
  EXPECT_EQ(dir.services[0].meta.created, 1768035600);
  EXPECT_EQ(dir.slices[0].endpoints[1].terminating, true);
}

TEST(SourcesEqualTest, JsonInTheDirectoryIsReadLikeTheApisJson) {
  std::string text;
  for (const char* j : kJson) text += std::string(j) + "\n---\n";
  auto yaml = parseYamlDocuments(text);
  ASSERT_TRUE(yaml) << yaml.error();
  const Decoded4 api = decodeAll(fromApi());
  const Decoded4 dir = decodeAll(*yaml);
  EXPECT_EQ(api.services, dir.services);
  EXPECT_EQ(api.slices, dir.slices);
  EXPECT_EQ(api.nodes, dir.nodes);
  EXPECT_EQ(api.pools, dir.pools);
}

TEST(SourcesEqualTest, BadInputIsRefusedAlikeWithTheFieldNamed) {
  const char* json = R"({"kind": "Service", "metadata": {"name": "a", "namespace": "n"},
                         "spec": {"ports": [{"port": 70000}]}})";
  const char* yaml =
      "kind: Service\nmetadata: {name: a, namespace: n}\nspec:\n  ports:\n"
      "    - port: 70000\n";
  auto a = decodeService(k8s::toDoc(web::json::value::parse(json)));
  auto docs = parseYamlDocuments(yaml);
  ASSERT_TRUE(docs);
  auto b = decodeService((*docs)[0]);
  ASSERT_FALSE(a.ok);
  ASSERT_FALSE(b.ok);
  EXPECT_EQ(a.problem.what, b.problem.what);
  EXPECT_EQ(a.problem.what, "spec.ports[].port must be in 1..65535");
  EXPECT_EQ(a.problem.line, 0);  // JSON from the API has no lines
  EXPECT_EQ(b.problem.line, 5);  // the directory's YAML does

  // A quoted number is a string in both, and a string is not a port.
  auto q =
      parseYamlDocuments("kind: Service\nmetadata: {name: a}\nspec: {ports: [{port: \"80\"}]}");
  ASSERT_TRUE(q);
  EXPECT_FALSE(decodeService((*q)[0]).ok);
}

TEST(SourcesEqualTest, Rfc3339) {
  int64_t t = 0;
  ASSERT_TRUE(parseRfc3339("2026-01-02T03:04:05Z", &t));
  EXPECT_EQ(t, 1767323045);
  ASSERT_TRUE(parseRfc3339("2026-01-02T03:04:05.123456Z", &t));
  EXPECT_EQ(t, 1767323045);
  ASSERT_TRUE(parseRfc3339("2026-01-02T05:04:05+02:00", &t));
  EXPECT_EQ(t, 1767323045);
  EXPECT_FALSE(parseRfc3339("2026-01-02", &t));
  EXPECT_FALSE(parseRfc3339("2026-01-02T03:04:05", &t));
  EXPECT_FALSE(parseRfc3339("yesterday", &t));
}

}  // namespace
}  // namespace flowlb::controller

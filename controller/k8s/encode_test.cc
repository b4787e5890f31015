#include "controller/k8s/encode.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace flowlb::controller::k8s {
namespace {

using ::testing::HasSubstr;

// Issue 17.13: names go into paths percent-encoded.
TEST(EncodeTest, NamesArePercentEncodedPathSegments) {
  EXPECT_EQ(pathSegment("web-1.a_b~"), "web-1.a_b~");
  EXPECT_EQ(pathSegment("q?x=1"), "q%3Fx%3D1");
  EXPECT_EQ(pathSegment("a/b#c d%"), "a%2Fb%23c%20d%25");
  EXPECT_EQ(serviceStatusPath("ns x/q?x=1"), "/api/v1/namespaces/ns%20x/services/q%3Fx%3D1/status");
  EXPECT_EQ(eventPath("shop", "web.17a"), "/api/v1/namespaces/shop/events/web.17a");
  EXPECT_EQ(poolStatusPath("p/../x"), "/apis/flowlb.io/v1alpha1/ippools/p%2F..%2Fx/status");
  EXPECT_EQ(leasePath("flowlb-system", "flowlb-controller"),
            "/apis/coordination.k8s.io/v1/namespaces/flowlb-system/leases/flowlb-controller");
}

TEST(EncodeTest, StatusPatchCarriesItsVersionAndClearsWithNull) {
  StatusUpdate u;
  u.ips = {*IpAddr::parse("192.0.2.1")};
  u.conditions.push_back({kConditionAllocated, "True", "Allocated", "assigned", "t", 3});
  const std::string p = serviceStatusPatch("42", u);
  EXPECT_THAT(p, HasSubstr(R"("resourceVersion":"42")"));
  EXPECT_THAT(p, HasSubstr(R"({"ip":"192.0.2.1","ipMode":"VIP"})"));
  EXPECT_THAT(p, HasSubstr(R"("observedGeneration":3)"));
  const std::string cleared = serviceStatusPatch("43", StatusUpdate{});
  EXPECT_THAT(cleared, HasSubstr(R"("ingress":null)"));
  EXPECT_THAT(cleared, HasSubstr(R"("conditions":null)"));
  EXPECT_THAT(annotationPatch("flowlb.io/x", std::nullopt), HasSubstr(R"("flowlb.io/x":null)"));
}

// An IPPool says whether every address entry could be read (condition
// flowlb.io/Valid), naming those that could not.
TEST(EncodeTest, PoolStatusCarriesTheValidCondition) {
  const std::string ok = poolStatusPatch(3, 5, "", "2026-11-29T00:00:00Z");
  EXPECT_THAT(ok, HasSubstr(R"("used":3)"));
  EXPECT_THAT(ok, HasSubstr(R"("type":"flowlb.io/Valid")"));
  EXPECT_THAT(ok, HasSubstr(R"("status":"True")"));
  const std::string bad = poolStatusPatch(0, 0, "'10.0.0.0/33': bad prefix", "t");
  EXPECT_THAT(bad, HasSubstr(R"("status":"False")"));
  EXPECT_THAT(bad, HasSubstr(R"("reason":"InvalidAddresses")"));
  EXPECT_THAT(bad, HasSubstr("10.0.0.0/33"));
}

TEST(EncodeTest, LeaseBodiesKeepWhatTheyReadAndNameTheLeader) {
  LeaseWrite w;
  w.holder = "ctl-a";
  w.leader_address = "10.0.0.5:9443";
  const std::string created = leaseCreateBody("flowlb-system", "flowlb-controller", w);
  EXPECT_THAT(created, HasSubstr(R"("holderIdentity":"ctl-a")"));
  EXPECT_THAT(created, HasSubstr(R"("flowlb.io/leader-grpc-address":"10.0.0.5:9443")"));
  const std::string updated = leaseUpdateBody(
      R"({"metadata": {"name": "l", "resourceVersion": "7", "annotations": {"x": "y"}}, "spec": {}})",
      w);
  EXPECT_THAT(updated, HasSubstr(R"("resourceVersion":"7")"));
  EXPECT_THAT(updated, HasSubstr(R"("x":"y")"));
  EXPECT_EQ(leaseUpdateBody("not json", w), "");
}

}  // namespace
}  // namespace flowlb::controller::k8s

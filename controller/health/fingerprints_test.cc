#include "controller/health/fingerprints.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace flowlb::controller {
namespace {

using ::testing::HasSubstr;

const int kGen1 = 1, kGen2 = 2;  // stand-ins for two contents of a service

TEST(FingerprintsTest, AgreeingNodesAreNoMismatch) {
  const MaglevPrint p{0xabc, 65537, 3};
  EXPECT_TRUE(compareFingerprints(
                  {{"demo/web/http/ipv4", {{"node-a", &kGen1, p}, {"node-b", &kGen1, p}}}}, {})
                  .empty());
}

TEST(FingerprintsTest, DisagreeingNodesOnTheSameContentAreAMismatch) {
  const MaglevPrint p{0xabc, 65537, 3}, q{0xdef, 65537, 2};
  auto m =
      compareFingerprints({{"demo/web/http/ipv4",
                            {{"node-c", &kGen1, q}, {"node-b", &kGen1, p}, {"node-a", &kGen1, p}}}},
                          {});
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].service_key, "demo/web/http/ipv4");
  ASSERT_EQ(m[0].groups.size(), 2u);
  EXPECT_EQ(m[0].groups[0].first, p);  // the majority first
  EXPECT_EQ(m[0].groups[0].second, (std::vector<std::string>{"node-a", "node-b"}));
  EXPECT_EQ(m[0].groups[1].second, (std::vector<std::string>{"node-c"}));
  HealthFact f = mismatchFact(m[0]);
  EXPECT_EQ(f.service, "demo/web");
  EXPECT_EQ(f.event.reason, "MaglevTableMismatch");
  EXPECT_TRUE(f.event.warning);
  EXPECT_EQ(f.event.message,
            "nodes built different Maglev tables for demo/web/http/ipv4: node-a, node-b built "
            "0000000000000abc (65537 slots, 3 backends); node-c built 0000000000000def (65537 "
            "slots, 2 backends)");
}

TEST(FingerprintsTest, DifferentContentIsNotCompared) {
  // node-b has not applied the newer generation yet: its table differs
  // for a reason.
  const MaglevPrint p{0xabc, 65537, 3}, q{0xdef, 65537, 2};
  EXPECT_TRUE(compareFingerprints(
                  {{"demo/web/http/ipv4", {{"node-a", &kGen2, p}, {"node-b", &kGen1, q}}}}, {})
                  .empty());
}

TEST(FingerprintsTest, LocalTrafficPolicyServicesAreSkipped) {
  const MaglevPrint p{0xabc, 65537, 1}, q{0xdef, 65537, 1};
  const std::map<std::string, std::vector<FingerprintSample>> s = {
      {"demo/local/http/ipv4", {{"node-a", &kGen1, p}, {"node-b", &kGen1, q}}},
      {"demo/web/http/ipv4", {{"node-a", &kGen1, p}, {"node-b", &kGen1, q}}}};
  auto m = compareFingerprints(s, {"demo/local/http/ipv4"});
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].service_key, "demo/web/http/ipv4");
}

TEST(FingerprintsTest, ManyNodesAreSummed) {
  std::vector<FingerprintSample> list;
  for (int i = 0; i < 8; ++i) list.push_back({"n" + std::to_string(i), &kGen1, {1, 7, 1}});
  list.push_back({"odd", &kGen1, {2, 7, 1}});
  auto m = compareFingerprints({{"a/b/c/ipv6", list}}, {});
  ASSERT_EQ(m.size(), 1u);
  EXPECT_THAT(mismatchFact(m[0]).event.message, HasSubstr("n0, n1, n2, n3, n4 and 3 more built"));
}

}  // namespace
}  // namespace flowlb::controller

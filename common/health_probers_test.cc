#include "common/health_probers.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

namespace flowlb {
namespace {

std::vector<std::string> nodes(int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back("node-" + std::to_string(i));
  return out;
}

TEST(HealthProbersTest, EveryNodeAgreesWithTheListOfProbers) {
  const auto all = nodes(20);
  for (int b = 0; b < 200; ++b) {
    const std::string backend = "10.1.0." + std::to_string(b) + ":8080";
    const auto probers = probersFor(all, 3, "shop/web/http/ipv4", backend);
    ASSERT_EQ(probers.size(), 3u);
    std::set<std::string> chosen(probers.begin(), probers.end());
    EXPECT_EQ(chosen.size(), 3u);
    for (const std::string& n : all) {
      EXPECT_EQ(isProber(all, 3, n, "shop/web/http/ipv4", backend), chosen.count(n) == 1)
          << n << " " << backend;
    }
  }
}

TEST(HealthProbersTest, LoadIsSpreadAndANodeLeavingMovesOnlyItsOwnShare) {
  const auto all = nodes(10);
  std::map<std::string, int> load;
  std::map<std::string, std::vector<std::string>> before;
  for (int b = 0; b < 3000; ++b) {
    const std::string backend = "10.2." + std::to_string(b / 250) + "." + std::to_string(b % 250);
    before[backend] = probersFor(all, 3, "svc", backend);
    for (const auto& n : before[backend]) ++load[n];
  }
  for (const auto& [n, count] : load) {  // 900 each on average
    EXPECT_GT(count, 750) << n;
    EXPECT_LT(count, 1050) << n;
  }
  auto fewer = all;
  fewer.erase(fewer.begin() + 4);  // node-4 leaves
  int changed = 0;
  for (const auto& [backend, probers] : before) {
    const auto now = probersFor(fewer, 3, "svc", backend);
    const bool had = std::find(probers.begin(), probers.end(), "node-4") != probers.end();
    if (now != probers) ++changed;
    if (!had) {
      EXPECT_EQ(now, probers) << backend;  // untouched unless node-4 probed it
    }
  }
  EXPECT_EQ(changed, load["node-4"]);
}

TEST(HealthProbersTest, FewNodesAllProbeAndNoListMeansEveryone) {
  const auto two = nodes(2);
  EXPECT_EQ(probersFor(two, 3, "svc", "b").size(), 2u);
  EXPECT_TRUE(isProber(two, 3, "node-1", "svc", "b"));
  EXPECT_FALSE(isProber(two, 3, "node-9", "svc", "b"));
  EXPECT_TRUE(isProber({}, 3, "anyone", "svc", "b"));
  EXPECT_EQ(probersFor(nodes(5), 0, "svc", "b").size(), kDefaultProbersPerBackend);
}

}  // namespace
}  // namespace flowlb

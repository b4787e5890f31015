#include "common/watchdog.h"

#include <gtest/gtest.h>

namespace flowlb {
namespace {

TEST(WatchdogTest, APartThatStopsBeatingFailsTheCheckByName) {
  FakeClock clock;
  Watchdog w(&clock);
  w.expect("informer/services", std::chrono::seconds(60));
  w.expect("api-client-pool", std::chrono::seconds(10));
  EXPECT_TRUE(w.check().ok);
  clock.advance(std::chrono::seconds(8));
  w.beat("informer/services");
  w.beat("api-client-pool");
  clock.advance(std::chrono::seconds(8));
  EXPECT_TRUE(w.check().ok);
  clock.advance(std::chrono::seconds(3));  // the pool missed its 10 s
  const auto v = w.check();
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.detail, "api-client-pool stuck for 11s");
  w.beat("api-client-pool");
  EXPECT_TRUE(w.check().ok);
  w.beat("unknown");  // not watched: ignored
  EXPECT_EQ(w.check().detail, "all 2 moving");
}

}  // namespace
}  // namespace flowlb

#include "common/health.h"

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>

namespace flowlb {
namespace {

TEST(HealthChecksTest, LivenessAndReadinessListEveryCheck) {
  HealthChecks h;
  std::atomic<bool> synced{false};
  h.add("loop", [] { return HealthCheck::pass("ticked 5ms ago"); });
  h.addReadiness("caches", [&] {
    return synced ? HealthCheck::pass() : HealthCheck::fail("services not listed yet");
  });
  auto live = h.run(false);
  EXPECT_TRUE(live.ok);
  EXPECT_EQ(live.text, "[+]loop ok: ticked 5ms ago\nhealthz check passed\n");
  auto ready = h.run(true);
  EXPECT_FALSE(ready.ok);
  EXPECT_NE(ready.text.find("[-]caches failed: services not listed yet\n"), std::string::npos);
  EXPECT_NE(ready.text.find("readyz check failed"), std::string::npos);
  synced = true;
  EXPECT_TRUE(h.run(true).ok);
  EXPECT_TRUE(h.run(true, {"caches"}).ok);
}

TEST(HealthChecksTest, ACheckThatThrowsFails) {
  HealthChecks h;
  h.add("boom", []() -> HealthCheck { throw std::runtime_error("bad"); });
  auto r = h.run(false);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.text.find("[-]boom failed: check threw: bad"), std::string::npos);
}

TEST(HealthChecksTest, ChecksAddedLaterAreServed) {
  HealthChecks h;
  EXPECT_TRUE(h.run(true).ok);
  h.add("watchdog", [] { return HealthCheck::fail("informers stalled for 61s"); });
  EXPECT_FALSE(h.run(false).ok);
  EXPECT_FALSE(h.run(true).ok);
}

}  // namespace
}  // namespace flowlb

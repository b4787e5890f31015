#include "controller/k8s/api_client.h"

#include <gtest/gtest.h>

#include "controller/k8s/informer.h"

namespace flowlb::controller::k8s {
namespace {

using std::chrono::milliseconds;

TEST(RateLimiterTest, BurstThenSteadyRate) {
  RateLimiter rl(10, 3);  // 10/s, bursts of 3
  const auto t0 = RateLimiter::Clock::now();
  EXPECT_EQ(rl.reserve(t0), RateLimiter::Clock::duration::zero());
  EXPECT_EQ(rl.reserve(t0), RateLimiter::Clock::duration::zero());
  EXPECT_EQ(rl.reserve(t0), RateLimiter::Clock::duration::zero());
  // The fourth waits one token (100 ms), the fifth two.
  EXPECT_NEAR(std::chrono::duration<double>(rl.reserve(t0)).count(), 0.1, 1e-6);
  EXPECT_NEAR(std::chrono::duration<double>(rl.reserve(t0)).count(), 0.2, 1e-6);
  // A second later the debt is paid and tokens refill up to the burst only.
  EXPECT_EQ(rl.reserve(t0 + std::chrono::seconds(1)), RateLimiter::Clock::duration::zero());
  const auto t2 = t0 + std::chrono::seconds(10);
  int free_requests = 0;
  while (rl.reserve(t2) == RateLimiter::Clock::duration::zero()) ++free_requests;
  EXPECT_EQ(free_requests, 3);
}

TEST(BackoffTest, GrowsWithJitterAndIsCapped) {
  Backoff b(milliseconds(100), milliseconds(1000));
  for (int i = 0; i < 8; ++i) {
    const auto d = b.next();
    const int64_t full = std::min<int64_t>(1000, int64_t{100} << i);
    EXPECT_GE(d.count(), full / 2) << "failure " << i;
    EXPECT_LE(d.count(), full) << "failure " << i;
  }
  b.reset();
  EXPECT_LE(b.next().count(), 100);
}

TEST(ApiResponseTest, WhatIsWorthRetrying) {
  ApiResponse r;
  r.code = 0;
  EXPECT_TRUE(r.retryable());
  r.code = 429;
  EXPECT_TRUE(r.retryable());
  r.code = 503;
  EXPECT_TRUE(r.retryable());
  r.code = 409;
  EXPECT_FALSE(r.retryable());
  r.code = 422;
  EXPECT_FALSE(r.retryable());
  r.code = 201;
  EXPECT_TRUE(r.ok());
}

TEST(StatusBodyTest, MessageAndReason) {
  const std::string body =
      R"j({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",)j"
      R"j("message":"too old resource version: 5 (9)","reason":"Expired","code":410})j";
  EXPECT_EQ(statusMessage(body), "too old resource version: 5 (9)");
  EXPECT_EQ(statusReason(body), "Expired");
  EXPECT_EQ(statusMessage("<html>bad gateway</html>"), "<html>bad gateway</html>");
  EXPECT_EQ(statusReason("nope"), "");
}

TEST(ApiClientTest, UnreachableServerIsAnAnswerNotACrash) {
  ClusterConfig c;
  c.server = "http://127.0.0.1:1";  // nothing listens on port 1
  ApiClientOptions o;
  o.request_timeout = std::chrono::seconds(2);
  ApiClient api(c, o, nullptr);
  const ApiResponse r = api.request("GET", "/api/v1/services");
  EXPECT_EQ(r.code, 0);
  EXPECT_FALSE(r.error.empty());
  EXPECT_TRUE(r.retryable());
  api.shutdown();
  EXPECT_EQ(api.request("GET", "/").error, "client is shutting down");
}

}  // namespace
}  // namespace flowlb::controller::k8s

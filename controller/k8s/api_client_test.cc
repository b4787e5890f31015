#include "controller/k8s/api_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
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

// A watch stream that stays open must hand each event over as it arrives,
// not when the server ends the stream: a one-line read that waited to fill
// its 64 KiB buffer delivered a cluster's Service changes up to ten minutes
// late (timeoutSeconds), and every test with a five-second watch hid it.
TEST(ApiClientTest, AStreamDeliversEachLineWhileItStaysOpen) {
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM, 0));
  ASSERT_TRUE(listener.valid());
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener.get(), 1), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);

  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> lines;
  std::vector<size_t> seen_while_open;  // lines the client had when the server wrote the next
  std::thread server([&] {
    UniqueFd conn(::accept(listener.get(), nullptr, nullptr));
    if (!conn.valid()) return;
    std::string head;
    char c;
    while (head.find("\r\n\r\n") == std::string::npos && ::read(conn.get(), &c, 1) == 1) head += c;
    auto send = [&](const std::string& s) {
      return ::write(conn.get(), s.data(), s.size()) == static_cast<ssize_t>(s.size());
    };
    auto chunk = [&](const std::string& line) {
      char size[16];
      std::snprintf(size, sizeof size, "%zx\r\n", line.size() + 1);
      return send(size + line + "\n\r\n");
    };
    send(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 3; ++i) {
      chunk(R"({"type":"ADDED","n":)" + std::to_string(i) + "}");
      // Hold the stream open until the client has the line (or 5 s pass).
      std::unique_lock<std::mutex> lock(mu);
      cv.wait_for(lock, std::chrono::seconds(5), [&] { return lines.size() > size_t(i); });
      seen_while_open.push_back(lines.size());
    }
    send("0\r\n\r\n");
  });

  ClusterConfig cfg;
  cfg.server = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  ApiClient api(cfg, ApiClientOptions{}, nullptr);
  const ApiResponse r =
      api.stream("/api/v1/services?watch=true", std::chrono::seconds(30), [&](std::string_view l) {
        std::lock_guard<std::mutex> lock(mu);
        lines.emplace_back(l);
        cv.notify_all();
        return true;
      });
  server.join();
  api.shutdown();
  EXPECT_EQ(r.code, 200) << r.error;
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[2], R"({"type":"ADDED","n":2})");
  EXPECT_EQ(seen_while_open, (std::vector<size_t>{1, 2, 3}));
}

}  // namespace
}  // namespace flowlb::controller::k8s

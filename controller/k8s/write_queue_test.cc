#include "controller/k8s/write_queue.h"

#include <gtest/gtest.h>

namespace flowlb::controller::k8s {
namespace {

TEST(WriteQueueTest, HigherPriorityFirstOneAttemptPerKeyAtATime) {
  FakeClock clock;
  WriteQueue q({}, &clock);
  std::vector<std::string> ran;
  const int low = q.addKind("low", 2, [&](const std::string& k) {
    ran.push_back("low:" + k);
    return Verdict::success();
  });
  int high = -1;
  bool changed = false;
  high = q.addKind("high", 0, [&](const std::string& k) {
    ran.push_back("high:" + k);
    if (k == "a" && !changed) {
      changed = true;
      q.add(high, "a");  // changed again while in flight: runs again after
    }
    return Verdict::success();
  });
  q.add(low, "x");
  q.add(high, "b");
  q.add(high, "a");
  q.add(high, "a");  // already queued: once
  while (q.runOne()) {
  }
  // Equal due times go by key; "a" again after its first attempt, before
  // the lower priority.
  EXPECT_EQ(ran, (std::vector<std::string>{"high:a", "high:a", "high:b", "low:x"}));
}

TEST(WriteQueueTest, RetryVerdictsBackOffAndGiveUpAfterTheLimit) {
  FakeClock clock;
  WriteQueueOptions o;
  o.backoff_initial = std::chrono::milliseconds(100);
  o.max_attempts = 3;
  WriteQueue q(o, &clock);
  int calls = 0;
  const int k = q.addKind("k", 0, [&](const std::string&) {
    ++calls;
    return Verdict::retry();
  });
  q.add(k, "a");
  EXPECT_TRUE(q.runOne());
  EXPECT_FALSE(q.runOne()) << "backing off";
  for (int i = 0; i < 10; ++i) {
    clock.advance(std::chrono::seconds(1));
    q.runOne();
  }
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(q.size(), 0u);
  int now_calls = 0;
  const int n = q.addKind("n", 0, [&](const std::string&) {
    return ++now_calls < 3 ? Verdict::retryNow() : Verdict::success();
  });
  q.add(n, "b");
  while (q.runOne()) {
  }
  EXPECT_EQ(now_calls, 3) << "a re-read conflict is retried at once";
}

}  // namespace
}  // namespace flowlb::controller::k8s

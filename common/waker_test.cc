#include "common/waker.h"

#include <gtest/gtest.h>
#include <poll.h>

#include <thread>

namespace flowlb {
namespace {

bool readable(const Waker& w, int timeout_ms) {
  pollfd p{w.fd(), POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN) != 0;
}

TEST(WakerTest, AWakeFromAnotherThreadEndsTheWaitAndWakeupsCoalesce) {
  auto w = Waker::create();
  ASSERT_TRUE(w) << w.error();
  EXPECT_FALSE(readable(*w, 0));
  EXPECT_FALSE(w->drain());  // nothing pending: a drain does not block
  std::thread t([&] {
    w->wake();
    w->wake();
  });
  EXPECT_TRUE(readable(*w, 10000));
  t.join();
  EXPECT_TRUE(w->drain());  // both wakeups in one
  EXPECT_FALSE(readable(*w, 0));
  EXPECT_FALSE(w->drain());
}

}  // namespace
}  // namespace flowlb

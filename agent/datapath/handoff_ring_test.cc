#include "agent/datapath/handoff_ring.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace flowlb::agent {
namespace {

TEST(HandoffRingTest, FramesComeOutInOrderWithTheirOriginUntilTheRingIsFull) {
  HandoffRing ring(3);  // rounded up to 4
  ASSERT_EQ(ring.capacity(), 4u);
  EXPECT_EQ(ring.front(), nullptr);
  for (uint8_t i = 0; i < 4; ++i) {
    const uint8_t frame[3] = {i, 0xaa, i};
    EXPECT_TRUE(ring.push(frame, sizeof frame, i, i == 2));
  }
  const uint8_t extra[1] = {9};
  EXPECT_FALSE(ring.push(extra, 1, 0, false)) << "a full ring must refuse, not overwrite";
  for (uint8_t i = 0; i < 4; ++i) {
    const HandoffRing::Slot* s = ring.front();
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->len, 3u);
    EXPECT_EQ(s->data[0], i);
    EXPECT_EQ(s->data[2], i);
    EXPECT_EQ(s->origin, i);
    EXPECT_EQ(s->from_kernel != 0, i == 2);
    ring.pop();
  }
  EXPECT_EQ(ring.front(), nullptr);
  EXPECT_TRUE(ring.empty());
  EXPECT_TRUE(ring.push(extra, 1, 0, false)) << "room again once consumed";
}

TEST(HandoffRingTest, AFrameLargerThanASlotIsRefused) {
  HandoffRing ring(4);
  std::vector<uint8_t> big(HandoffRing::kMaxFrame + 1, 1);
  EXPECT_FALSE(ring.push(big.data(), static_cast<uint32_t>(big.size()), 0, false));
  EXPECT_TRUE(ring.empty());
}

// One producer thread, one consumer thread, many laps of a small ring: every
// frame arrives once, in order, intact.
TEST(HandoffRingTest, TwoThreadsPassEveryFrameOnceInOrder) {
  HandoffRing ring(64);
  constexpr uint32_t kFrames = 200000;
  std::thread producer([&] {
    for (uint32_t i = 0; i < kFrames;) {
      uint8_t frame[64];
      for (size_t b = 0; b < sizeof frame; ++b) frame[b] = static_cast<uint8_t>(i + b);
      const uint32_t len = 8 + i % 56;
      if (ring.push(frame, len, i % 7, false)) {
        ++i;
      } else {
        std::this_thread::yield();
      }
    }
  });
  uint32_t next = 0;
  bool intact = true;
  while (next < kFrames) {
    const HandoffRing::Slot* s = ring.front();
    if (s == nullptr) {
      std::this_thread::yield();
      continue;
    }
    intact = intact && s->len == 8 + next % 56 && s->origin == next % 7;
    for (uint32_t b = 0; b < s->len; ++b) intact = intact && s->data[b] == uint8_t(next + b);
    ring.pop();
    ++next;
  }
  producer.join();
  EXPECT_TRUE(intact);
  EXPECT_TRUE(ring.empty());
}

}  // namespace
}  // namespace flowlb::agent

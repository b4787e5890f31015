#include <gtest/gtest.h>

#include "agent/announce/bfd/bfd_packet.h"
#include "agent/announce/bfd/bfd_session.h"

namespace flowlb::agent::bfd {
namespace {

using std::chrono::milliseconds;

const Time kStart{};

TEST(BfdPacketTest, MatchesTheRfcLayoutAndRoundTrips) {
  ControlPacket p;
  p.diag = Diag::kDetectionTimeExpired;
  p.state = State::kUp;
  p.poll = true;
  p.detect_mult = 3;
  p.my_discriminator = 0x01020304;
  p.your_discriminator = 0x0a0b0c0d;
  p.desired_min_tx_us = 100000;
  p.required_min_rx_us = 300000;
  const std::vector<uint8_t> wire = {0x21, 0xe0, 3,    24,   1, 2, 3,    4,    10, 11, 12, 13,
                                     0,    1,    0x86, 0xa0, 0, 4, 0x93, 0xe0, 0,  0,  0,  0};
  EXPECT_EQ(encode(p), wire);
  std::string why;
  EXPECT_EQ(decode(wire, &why), p);
}

TEST(BfdPacketTest, DiscardsWhatSection686Discards) {
  ControlPacket good;
  good.my_discriminator = 7;
  std::string why;
  ASSERT_TRUE(decode(encode(good), &why));
  auto with = [&](size_t at, uint8_t v) {
    auto w = encode(good);
    w[at] = v;
    return w;
  };
  EXPECT_FALSE(decode(with(0, 0x40), &why));  // version 2
  EXPECT_FALSE(decode(with(3, 20), &why));    // length < 24
  EXPECT_FALSE(decode(with(2, 0), &why));     // detect multiplier 0
  EXPECT_FALSE(decode(with(1, 0x41), &why));  // multipoint
  EXPECT_FALSE(decode(with(1, 0x44), &why));  // authentication, not configured
  EXPECT_FALSE(decode(with(7, 0), &why));     // my discriminator 0
  EXPECT_FALSE(decode(with(1, 0xc0), &why));  // Up with your discriminator 0
  EXPECT_EQ(why, "your discriminator 0 in state Init or Up");
  EXPECT_FALSE(decode(std::vector<uint8_t>(10, 0), &why));
}

// Two sessions joined by a link the test can cut; the clock moves in 1 ms steps.
struct Pair {
  Timers fast{std::chrono::microseconds(100'000), std::chrono::microseconds(100'000), 3};
  Session a{1111, fast, 1, kStart};
  Session b{2222, fast, 2, kStart};
  bool link = true;
  Time now = kStart;

  void step() {
    now += milliseconds(1);
    for (Session* s : {&a, &b}) s->tick(now);
    for (auto& p : a.takePackets()) {
      if (link) b.receive(now, p);
    }
    for (auto& p : b.takePackets()) {
      if (link) a.receive(now, p);
    }
  }
  // Steps until `done` or `limit` ms passed; the ms it took.
  template <typename F>
  int runUntil(F done, int limit) {
    for (int i = 0; i < limit; ++i) {
      if (done()) return i;
      step();
    }
    return -1;
  }
};

TEST(BfdSessionTest, TwoSessionsComeUpThenSpeedUpThroughAPollSequence) {
  Pair p;
  const int up =
      p.runUntil([&] { return p.a.state() == State::kUp && p.b.state() == State::kUp; }, 10'000);
  ASSERT_GE(up, 0);
  EXPECT_LT(up, 3500);  // slow start: one packet a second at most while not Up
  // After the Poll/Final exchange both sides detect in 3 x 100 ms.
  p.runUntil([] { return false; }, 1500);
  EXPECT_EQ(p.a.detectionTime(), std::chrono::microseconds(300'000));
  EXPECT_EQ(p.b.detectionTime(), std::chrono::microseconds(300'000));
  // Transmissions are now at 75-100 % of 100 ms.
  int sent = 0;
  for (int i = 0; i < 1000; ++i) {
    p.now += milliseconds(1);
    p.a.tick(p.now);
    for (auto& pk : p.a.takePackets()) {
      ++sent;
      p.b.receive(p.now, pk);
    }
    p.b.tick(p.now);
    for (auto& pk : p.b.takePackets()) p.a.receive(p.now, pk);
  }
  EXPECT_GE(sent, 10);
  EXPECT_LE(sent, 14);
  EXPECT_EQ(p.a.state(), State::kUp);
}

TEST(BfdSessionTest, ACutLinkIsDetectedWithinTheDetectionTime) {
  Pair p;
  p.runUntil([&] { return p.a.state() == State::kUp && p.b.state() == State::kUp; }, 10'000);
  p.runUntil([] { return false; }, 1500);
  p.a.takeTransitions();
  p.link = false;
  const int down = p.runUntil([&] { return p.a.state() == State::kDown; }, 2000);
  EXPECT_GT(down, 200);
  EXPECT_LE(down, 301);
  EXPECT_EQ(p.a.diag(), Diag::kDetectionTimeExpired);
  const auto t = p.a.takeTransitions();
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].from, State::kUp);
  EXPECT_EQ(t[0].to, State::kDown);
  // The link returns: the sessions come back up by themselves.
  p.link = true;
  EXPECT_GE(
      p.runUntil([&] { return p.a.state() == State::kUp && p.b.state() == State::kUp; }, 10'000),
      0);
}

TEST(BfdSessionTest, APeerGoingAdminDownTakesUsDownWithNeighborSignaled) {
  Pair p;
  p.runUntil([&] { return p.a.state() == State::kUp && p.b.state() == State::kUp; }, 10'000);
  p.b.adminDown(p.now);
  p.runUntil([&] { return p.a.state() == State::kDown; }, 100);
  EXPECT_EQ(p.a.state(), State::kDown);
  EXPECT_EQ(p.a.diag(), Diag::kNeighborSignaledDown);
}

TEST(BfdSessionTest, APollIsAnsweredAtOnceWithFinal) {
  Session s(5, Timers{}, 1, kStart);
  ControlPacket poll;
  poll.state = State::kDown;
  poll.poll = true;
  poll.my_discriminator = 9;
  poll.desired_min_tx_us = poll.required_min_rx_us = 1'000'000;
  s.receive(kStart, poll);
  const auto out = s.takePackets();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].final);
  EXPECT_FALSE(out[0].poll);
  EXPECT_EQ(out[0].your_discriminator, 9u);
  EXPECT_EQ(s.state(), State::kInit);
}

TEST(BfdSessionTest, PacketsForAnotherDiscriminatorAreIgnored) {
  Session s(5, Timers{}, 1, kStart);
  ControlPacket p;
  p.state = State::kInit;
  p.my_discriminator = 9;
  p.your_discriminator = 6;
  s.receive(kStart, p);
  EXPECT_EQ(s.state(), State::kDown);
  EXPECT_EQ(s.remoteDiscriminator(), 0u);
}

}  // namespace
}  // namespace flowlb::agent::bfd

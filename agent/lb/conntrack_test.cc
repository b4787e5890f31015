#include "agent/lb/conntrack.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <vector>

#include "agent/testing/test_specs.h"

namespace flowlb::agent {
namespace {

using test_specs::ip;

constexpr uint64_t kSeed = 0xc0ffee;
constexpr size_t kUnanswered = static_cast<size_t>(EvictReason::kUnanswered);
constexpr size_t kOldest = static_cast<size_t>(EvictReason::kOldest);
constexpr size_t kExpired = static_cast<size_t>(EvictReason::kExpired);

// Client `n` (a distinct address and port per n) to a VIP of either family.
FlowKey key(uint32_t n, bool v4 = true, FlowKind kind = FlowKind::kForward) {
  FlowKey k;
  IpAddr src = ip(v4 ? "198.51.0.0" : "2001:db8:1::");
  src.bytes[13] = static_cast<uint8_t>(n >> 16);
  src.bytes[14] = static_cast<uint8_t>(n >> 8);
  src.bytes[15] = static_cast<uint8_t>(n);
  k.src = src.bytes;
  k.dst = ip(v4 ? "192.0.2.10" : "2001:db8::10").bytes;
  k.sport = static_cast<uint16_t>(1024 + n % 50000);
  k.dport = 80;
  k.proto = 6;
  k.kind = kind;
  return k;
}

FlowEntry* add(ConnTrack& ct, const FlowKey& k, uint32_t now, FlowState state, uint32_t timeout,
               uint32_t backend = 0) {
  FlowEntry* e = ct.insert(k, ct.hash(k), now);
  e->state = state;
  e->timeout_ms = timeout;
  e->backend = backend;
  // An established TCP flow has seen its handshake answered.
  if (state == FlowState::kEstablished) e->flags |= kFlowAnswered;
  return e;
}

FlowEntry* find(ConnTrack& ct, const FlowKey& k, uint32_t now) {
  return ct.find(k, ct.hash(k), now);
}

TEST(ConntrackTest, InsertThenFindBothFamilies) {
  ConnTrack ct(1024, kSeed);
  for (bool v4 : {true, false}) {
    const FlowKey k = key(7, v4);
    FlowEntry* e = add(ct, k, 100, FlowState::kEstablished, 1000, v4 ? 11 : 22);
    FlowEntry* found = find(ct, k, 200);
    ASSERT_NE(found, nullptr) << (v4 ? "v4" : "v6");
    EXPECT_EQ(found, e);
    EXPECT_EQ(found->key, k);
    EXPECT_EQ(found->backend, v4 ? 11u : 22u);
    EXPECT_EQ(found->last_seen_ms, 100u);
  }
  EXPECT_EQ(ct.size(), 2u);
  EXPECT_EQ(ct.stats().inserts, 2u);
}

TEST(ConntrackTest, DifferentKindPortOrFamilyMisses) {
  ConnTrack ct(1024, kSeed);
  const FlowKey k = key(7);
  add(ct, k, 0, FlowState::kEstablished, 1000);
  EXPECT_EQ(find(ct, key(7, true, FlowKind::kNatReply), 0), nullptr);
  EXPECT_EQ(find(ct, key(7, true, FlowKind::kAffinity), 0), nullptr);
  EXPECT_EQ(find(ct, key(7, false), 0), nullptr);
  FlowKey other_port = k;
  other_port.dport = 81;
  EXPECT_EQ(find(ct, other_port, 0), nullptr);
  // Even under the same hash a different key is not a match.
  EXPECT_EQ(ct.find(other_port, ct.hash(k), 0), nullptr);
  EXPECT_NE(find(ct, k, 0), nullptr);
}

TEST(ConntrackTest, EntryLivesExactlyItsTimeout) {
  ConnTrack ct(1024, kSeed);
  const FlowKey k = key(1);
  add(ct, k, 5000, FlowState::kEstablished, 1000);
  EXPECT_NE(find(ct, k, 6000), nullptr);
  EXPECT_EQ(ct.size(), 1u);
  EXPECT_EQ(find(ct, k, 6001), nullptr);
  EXPECT_EQ(ct.size(), 0u);
  EXPECT_EQ(ct.stats().expired_on_lookup, 1u);
  EXPECT_EQ(find(ct, k, 5500), nullptr);  // freed for good, not just hidden
}

TEST(ConntrackTest, AgeSurvivesClockWrap) {
  ConnTrack ct(1024, kSeed);
  const FlowKey k = key(1);
  add(ct, k, 0xffffff00u, FlowState::kUdp, 1000);
  EXPECT_NE(find(ct, k, 0x100), nullptr);  // 512 ms later, across the wrap
  EXPECT_EQ(find(ct, k, 0x300), nullptr);  // 1024 ms later
}

TEST(ConntrackTest, SweepFreesDeadEntriesAndKeepsLiveOnes) {
  ConnTrack ct(1024, kSeed);
  for (uint32_t i = 0; i < 200; ++i) {
    add(ct, key(i), 0, FlowState::kEstablished, i % 2 == 0 ? 100 : 1'000'000);
  }
  ASSERT_EQ(ct.size(), 200u);
  const size_t buckets = ct.capacity() / ConnTrack::kWays;
  // A bucket at a time, as the idle loop does: the cursor covers the table.
  size_t freed = 0;
  for (size_t i = 0; i < buckets; ++i) freed += ct.sweep(1000, 1);
  EXPECT_EQ(freed, 100u);
  EXPECT_EQ(ct.size(), 100u);
  EXPECT_EQ(ct.stats().swept, 100u);
  for (uint32_t i = 0; i < 200; ++i) {
    EXPECT_EQ(find(ct, key(i), 1000) != nullptr, i % 2 == 1) << i;
  }
  EXPECT_EQ(ct.stats().expired_on_lookup, 0u);  // the sweep got them all
  EXPECT_EQ(ct.sweep(1000, buckets), 0u);
}

// A worker that never idles sweeps on its flush tick: the clock, not idle
// time, paces it, and one period covers the whole table.
TEST(ConntrackTest, APacedSweepCoversTheTableEachPeriodHoweverOftenItIsCalled) {
  ConnTrack ct(4096, kSeed);
  for (uint32_t i = 0; i < 300; ++i) {
    add(ct, key(i), 0, FlowState::kEstablished, i % 3 == 0 ? 1000 : 1'000'000);
  }
  EXPECT_EQ(ct.sweepPaced(2000), 0u);  // the first call starts the clock
  size_t freed = 0;
  uint32_t now = 2000;
  for (; now <= 2000 + ConnTrack::kSweepPeriodMs; now += 250) freed += ct.sweepPaced(now);
  EXPECT_EQ(freed, 100u);
  EXPECT_EQ(ct.size(), 200u);
  // Calls closer together than one bucket's worth of time sweep nothing yet,
  // but the time adds up.
  for (uint32_t i = 0; i < 100; ++i) add(ct, key(1000 + i), now, FlowState::kUdp, 10);
  freed = 0;
  for (uint32_t t = 0; t <= ConnTrack::kSweepPeriodMs; ++t) freed += ct.sweepPaced(now + 20 + t);
  EXPECT_EQ(freed, 100u);
  EXPECT_EQ(ct.stats().expired_on_lookup, 0u);
}

TEST(ConntrackTest, CapacityIsFixed) {
  ConnTrack ct(1000, kSeed);
  const size_t cap = ct.capacity();
  ASSERT_GE(cap, 1000u);
  for (uint32_t i = 0; i < 10 * cap; ++i) {
    add(ct, key(i), i, FlowState::kEstablished, 1'000'000'000);
    ASSERT_LE(ct.size(), cap);
  }
  EXPECT_EQ(ct.capacity(), cap);
  EXPECT_GT(ct.stats().evictions[kOldest], 0u);
  // The newest flow always gets in.
  EXPECT_NE(find(ct, key(static_cast<uint32_t>(10 * cap - 1)), static_cast<uint32_t>(10 * cap)),
            nullptr);
}

TEST(ConntrackTest, SynFloodDoesNotEvictEstablishedFlows) {
  ConnTrack ct(1024, kSeed);
  const size_t cap = ct.capacity();
  std::vector<FlowKey> established;
  for (uint32_t n = 0; established.size() < cap * 3 / 4; ++n) {
    established.push_back(key(n));
    add(ct, established.back(), 1000, FlowState::kEstablished, 21'600'000);
  }
  ASSERT_EQ(ct.size(), established.size()) << "the fill itself evicted";
  // Precondition: no 8-way bucket holds only established flows. (A SYN whose
  // candidate buckets are all established may, by design, evict the oldest.)
  size_t fullest = 0;
  for (size_t b = 0; b < cap / ConnTrack::kWays; ++b) {
    size_t n = 0;
    for (uint32_t w = 0; w < ConnTrack::kWays; ++w) {
      n += ct.at(static_cast<uint32_t>(b * ConnTrack::kWays + w))->state == FlowState::kEstablished;
    }
    fullest = std::max(fullest, n);
  }
  ASSERT_LT(fullest, ConnTrack::kWays);

  constexpr uint32_t kSyns = 100'000;
  for (uint32_t i = 0; i < kSyns; ++i) {
    FlowKey k = key(1'000'000 + i);
    k.dst[15] ^= 0x55;  // other VIP: never one of the established keys
    add(ct, k, 1000 + i / 1000, FlowState::kSynSent, 60'000);
    ASSERT_LE(ct.size(), cap);
  }
  const uint32_t now = 1000 + kSyns / 1000;
  size_t alive = 0;
  for (const FlowKey& k : established) alive += find(ct, k, now) != nullptr ? 1 : 0;
  EXPECT_EQ(alive, established.size());
  EXPECT_EQ(ct.size(), cap);  // every free way went to a half-open entry
  EXPECT_GT(ct.stats().evictions[kUnanswered], 0u);
  EXPECT_EQ(ct.stats().evictions[kOldest], 0u);
  EXPECT_EQ(ct.stats().evictions[kExpired], 0u);
}

TEST(ConntrackTest, EvictionOrderIsExpiredThenUnansweredThenOldest) {
  ConnTrack ct(8, kSeed);  // one bucket of 8 ways
  ASSERT_EQ(ct.capacity(), 8u);
  add(ct, key(0), 0, FlowState::kEstablished, 10);  // dead at now=100
  add(ct, key(1), 90, FlowState::kSynSent, 60'000);
  for (uint32_t i = 2; i < 8; ++i) add(ct, key(i), i, FlowState::kEstablished, 1'000'000);
  ASSERT_EQ(ct.size(), 8u);

  add(ct, key(8), 100, FlowState::kEstablished, 1'000'000);
  EXPECT_EQ(ct.stats().evictions[kExpired], 1u);
  EXPECT_EQ(find(ct, key(0), 100), nullptr);
  EXPECT_NE(find(ct, key(1), 100), nullptr);

  add(ct, key(9), 100, FlowState::kEstablished, 1'000'000);
  EXPECT_EQ(ct.stats().evictions[kUnanswered], 1u);
  EXPECT_EQ(find(ct, key(1), 100), nullptr);

  add(ct, key(10), 100, FlowState::kEstablished, 1'000'000);
  EXPECT_EQ(ct.stats().evictions[kOldest], 1u);
  EXPECT_EQ(find(ct, key(2), 100), nullptr);  // last seen at 2: the oldest
  for (uint32_t i = 3; i <= 10; ++i) EXPECT_NE(find(ct, key(i), 100), nullptr) << i;
  EXPECT_EQ(ct.size(), 8u);
}

// Issue 17.7: a flood of new flows of any protocol (random-source UDP, stray
// ACKs picked up mid-flow) must not evict idle flows that are in use: an
// answered UDP flow and an established TCP connection outlive it.
TEST(ConntrackTest, UnansweredFloodOfAnyProtocolNeverEvictsAnsweredFlows) {
  ConnTrack ct(8, kSeed);  // one bucket of 8 ways
  FlowKey udp = key(0);
  udp.proto = 17;
  FlowEntry* answered_udp = add(ct, udp, 0, FlowState::kUdp, 1'000'000);
  answered_udp->flags |= kFlowAnswered;
  add(ct, key(1), 0, FlowState::kEstablished, 1'000'000);  // idle since 0: the oldest
  for (uint32_t i = 0; i < 10'000; ++i) {
    FlowKey k = key(100 + i);
    k.proto = i % 2 == 0 ? 17 : 6;
    // UDP without answer, and TCP picked up mid-flow that nobody answered.
    add(ct, k, 10 + i, i % 2 == 0 ? FlowState::kUdp : FlowState::kEstablished, 1'000'000)->flags =
        0;
  }
  EXPECT_NE(find(ct, udp, 20'000), nullptr);
  EXPECT_NE(find(ct, key(1), 20'000), nullptr);
  EXPECT_EQ(ct.stats().evictions[kOldest], 0u);
  EXPECT_GT(ct.stats().evictions[kUnanswered], 9'000u);
}

TEST(ConntrackTest, ProtectedEntryIsNeverTheVictim) {
  ConnTrack ct(8, kSeed);
  std::vector<FlowEntry*> entries;
  for (uint32_t i = 0; i < 8; ++i) {
    entries.push_back(add(ct, key(i), i, FlowState::kEstablished, 1'000'000));
  }
  const FlowKey k = key(100);
  ct.insert(k, ct.hash(k), 50, ct.indexOf(entries[0]));
  EXPECT_NE(find(ct, key(0), 50), nullptr);  // oldest, but protected
  EXPECT_EQ(find(ct, key(1), 50), nullptr);  // the next oldest went instead
}

TEST(ConntrackTest, LinkedPeersLiveAndDieTogether) {
  ConnTrack ct(1024, kSeed);
  const FlowKey fwd = key(1);
  const FlowKey reply = key(2, true, FlowKind::kNatReply);
  FlowEntry* f = add(ct, fwd, 0, FlowState::kEstablished, 1000);
  FlowEntry* r = ct.insert(reply, ct.hash(reply), 0, ct.indexOf(f));
  ct.link(f, r);
  EXPECT_EQ(ct.size(), 2u);
  // The reply has no timeout of its own: it lives as long as its forward entry.
  EXPECT_NE(find(ct, reply, 900), nullptr);
  ct.erase(f);
  EXPECT_EQ(ct.size(), 0u);
  EXPECT_EQ(find(ct, reply, 900), nullptr);
  EXPECT_EQ(find(ct, fwd, 900), nullptr);

  // Expiry of the forward entry found through the reply frees both.
  f = add(ct, fwd, 0, FlowState::kEstablished, 1000);
  r = ct.insert(reply, ct.hash(reply), 0, ct.indexOf(f));
  ct.link(f, r);
  EXPECT_EQ(find(ct, reply, 1001), nullptr);
  EXPECT_EQ(ct.size(), 0u);
  EXPECT_EQ(find(ct, fwd, 0), nullptr);
}

TEST(ConntrackTest, SixtyFourBytesPerEntry) {
  ConnTrack ct(16, kSeed);
  EXPECT_LE(ct.bytesPerEntry(), 64u);
}

}  // namespace
}  // namespace flowlb::agent

namespace flowlb::agent {
namespace {

// Issue 15: conntrack in a file a restarted agent adopts.
class ConntrackFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/flowlb-ct-XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = dir_ + "/conntrack-0";
    owner_.worker = 0;
    owner_.workers = 1;
    owner_.snat_port_min = 40000;
    owner_.snat_port_max = 59999;
    owner_.boot_id = "boot-a";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<ConnTrack> open(ConntrackAdoption* a, uint64_t seed = kSeed,
                                  size_t capacity = 4096) {
    auto ct = ConnTrack::openFile(path_, capacity, seed, owner_, a);
    EXPECT_TRUE(ct.isOk()) << ct.error();
    return ct.isOk() ? std::move(*ct) : nullptr;
  }

  // A NAT flow: forward entry and its reply, linked.
  static void natFlow(ConnTrack& ct, uint32_t n, uint32_t now) {
    FlowEntry* f = add(ct, key(n), now, FlowState::kEstablished, 21'600'000, 7);
    FlowKey rk = key(n, true, FlowKind::kNatReply);
    rk.sport ^= 0x5555;
    FlowEntry* r = ct.insert(rk, ct.hash(rk), now, ct.indexOf(f));
    r->state = FlowState::kEstablished;
    ct.link(f, r);
  }

  std::string dir_, path_;
  ConntrackOwner owner_;
};

TEST_F(ConntrackFileTest, ARestartedAgentAdoptsTheTableItsPredecessorLeft) {
  ConntrackAdoption a;
  {
    auto ct = open(&a);
    ASSERT_TRUE(ct);
    EXPECT_FALSE(a.adopted);
    EXPECT_TRUE(a.why_not.empty());  // a new file
    for (uint32_t n = 0; n < 500; ++n) natFlow(*ct, n, 1000);
    EXPECT_EQ(ct->size(), 1000u);
  }                                       // the process "exits": only the file remains
  auto again = open(&a, /*seed=*/12345);  // the seed comes from the file
  ASSERT_TRUE(again);
  EXPECT_TRUE(a.adopted);
  EXPECT_EQ(a.entries, 1000u);
  EXPECT_EQ(a.discarded, 0u);
  for (uint32_t n = 0; n < 500; ++n) {
    FlowEntry* e = find(*again, key(n), 2000);
    ASSERT_NE(e, nullptr) << n;
    EXPECT_EQ(e->backend, 7u);
    ASSERT_NE(e->peer, kNoPeer);
    EXPECT_EQ(again->at(e->peer)->peer, again->indexOf(e));
  }
}

TEST_F(ConntrackFileTest, AnIncompatibleTableIsDiscardedWithItsReason) {
  ConntrackAdoption a;
  {
    auto ct = open(&a);
    natFlow(*ct, 1, 1000);
  }
  struct Case {
    const char* what;
    std::function<void()> change;
    const char* reason;
  };
  const std::vector<Case> cases = {
      {"another boot", [&] { owner_.boot_id = "boot-b"; }, "another boot"},
      {"more workers", [&] { owner_.workers = 2; }, "workers"},
      {"other SNAT ports", [&] { owner_.snat_port_max = 50000; }, "SNAT port range"},
  };
  for (const Case& c : cases) {
    SetUp();  // a fresh owner and file for each case
    { natFlow(*open(&a), 1, 1000); }
    c.change();
    auto ct = open(&a);
    ASSERT_TRUE(ct) << c.what;
    EXPECT_FALSE(a.adopted) << c.what;
    EXPECT_NE(a.why_not.find(c.reason), std::string::npos) << c.what << ": " << a.why_not;
    EXPECT_EQ(ct->size(), 0u) << c.what;
    EXPECT_EQ(find(*ct, key(1), 1000), nullptr) << c.what;
  }
  // Another capacity: another size.
  auto bigger = open(&a, kSeed, 8192);
  EXPECT_FALSE(a.adopted);
  // A corrupt header.
  {
    FILE* f = std::fopen(path_.c_str(), "r+");
    ASSERT_NE(f, nullptr);
    std::fseek(f, 20, SEEK_SET);
    std::fputc(0x42, f);
    std::fclose(f);
  }
  auto corrupt = open(&a, kSeed, 8192);
  EXPECT_FALSE(a.adopted);
  EXPECT_NE(a.why_not.find("corrupt"), std::string::npos) << a.why_not;
}

TEST_F(ConntrackFileTest, InconsistentEntriesAreFreedAndTheRestKept) {
  ConntrackAdoption a;
  uint32_t broken_forward = 0;
  {
    auto ct = open(&a);
    for (uint32_t n = 0; n < 100; ++n) natFlow(*ct, n, 1000);
    // A torn write: one reply's link points elsewhere; one key's bytes
    // changed under its signature.
    FlowEntry* f = find(*ct, key(3), 1000);
    broken_forward = ct->indexOf(f);
    ct->at(f->peer)->peer = 0xfffff;
    find(*ct, key(4), 1000)->key.dport = 9999;
  }
  auto ct = open(&a);
  EXPECT_TRUE(a.adopted);
  EXPECT_EQ(a.discarded, 4u);  // both flows, forward and reply
  EXPECT_EQ(ct->size(), 196u);
  EXPECT_EQ(find(*ct, key(3), 1000), nullptr);
  EXPECT_EQ(ct->at(broken_forward)->state, FlowState::kFree);
  EXPECT_NE(find(*ct, key(5), 1000), nullptr);
}

}  // namespace
}  // namespace flowlb::agent

#include "agent/announce/l2_announcer.h"

#include <gtest/gtest.h>

#include "agent/packet/checksum.h"
#include "agent/packet/parser.h"

namespace flowlb::agent {
namespace {

const std::array<uint8_t, 6> kOurs = {0x02, 0xaa, 0, 0, 0, 1};
const std::array<uint8_t, 6> kPeer = {0x02, 0xbb, 0, 0, 0, 2};

IpAddr ip(const char* s) {
  return *IpAddr::parse(s);
}

TEST(L2AnnouncerTest, ArpReplyAnswersTheAskerWithOurMac) {
  const auto f = l2::arpReply(kOurs, ip("192.0.2.10"), kPeer, ip("192.0.2.77"));
  ASSERT_EQ(f.size(), 60u);
  EXPECT_TRUE(std::equal(kPeer.begin(), kPeer.end(), f.begin()));  // to the asker
  EXPECT_EQ(loadBe16(&f[12]), kEthP_ARP);
  EXPECT_EQ(loadBe16(&f[20]), 2);                                       // reply
  EXPECT_TRUE(std::equal(kOurs.begin(), kOurs.end(), f.begin() + 22));  // sender hardware = us
  EXPECT_EQ(IpAddr::fromV4(&f[28]), ip("192.0.2.10"));                  // sender protocol = VIP
  EXPECT_EQ(IpAddr::fromV4(&f[38]), ip("192.0.2.77"));
}

TEST(L2AnnouncerTest, GratuitousArpIsABroadcastRequestForTheVipFromTheVip) {
  const auto f = l2::gratuitousArp(kOurs, ip("192.0.2.10"));
  EXPECT_EQ(f[0], 0xff);
  EXPECT_EQ(loadBe16(&f[20]), 1);
  EXPECT_EQ(IpAddr::fromV4(&f[28]), ip("192.0.2.10"));
  EXPECT_EQ(IpAddr::fromV4(&f[38]), ip("192.0.2.10"));
  // And it reads back as a question about the VIP.
  l2::Question q;
  ASSERT_TRUE(l2::parseQuestion(f.data(), f.size(), &q));
  EXPECT_EQ(q.target, ip("192.0.2.10"));
}

TEST(L2AnnouncerTest, NeighborAdvertisementIsValidIcmpv6WithTheTargetAndOurMac) {
  const auto f = l2::neighborAdvert(kOurs, ip("2001:db8::10"), kPeer, ip("fe80::1"), true);
  ParsedPacket p;
  ASSERT_EQ(parsePacket(f.data(), f.size(), p).status, ParseStatus::kOk);
  EXPECT_EQ(p.tuple.proto, kProtoICMPv6);
  EXPECT_EQ(f[21], 255);  // hop limit
  EXPECT_EQ(f[54], 136);
  EXPECT_EQ(f[58], 0x60);  // solicited + override
  EXPECT_EQ(IpAddr::fromV6(&f[62]), ip("2001:db8::10"));
  EXPECT_TRUE(std::equal(kOurs.begin(), kOurs.end(), f.begin() + 80));
  EXPECT_EQ(l4Checksum(f.data(), p.outer, p.tuple), loadBe16(&f[56]));
}

TEST(L2AnnouncerTest, ParsesNeighborSolicitationsWithTheirSourceLinkLayerOption) {
  // Build an NS by turning an NA around: type 135, option type 1 (source).
  auto f = l2::neighborAdvert(kPeer, ip("2001:db8::10"), kOurs, ip("fe80::99"), true);
  std::memcpy(&f[22], ip("fe80::99").bytes.data(), 16);  // asker's address as source
  f[54] = 135;
  f[78] = 1;
  l2::Question q;
  ASSERT_TRUE(l2::parseQuestion(f.data(), f.size(), &q));
  EXPECT_TRUE(q.v6);
  EXPECT_EQ(q.target, ip("2001:db8::10"));
  EXPECT_EQ(q.asker, ip("fe80::99"));
  EXPECT_EQ(q.asker_mac, kPeer);
  // Not questions: an ARP reply, a truncated frame, an echo request.
  const auto reply = l2::arpReply(kOurs, ip("192.0.2.10"), kPeer, ip("192.0.2.77"));
  EXPECT_FALSE(l2::parseQuestion(reply.data(), reply.size(), &q));
  EXPECT_FALSE(l2::parseQuestion(f.data(), 40, &q));
  f[54] = 128;
  EXPECT_FALSE(l2::parseQuestion(f.data(), f.size(), &q));
}

}  // namespace
}  // namespace flowlb::agent

#include "common/ip_addr.h"

#include <gtest/gtest.h>

namespace flowlb {
namespace {

TEST(IpAddrTest, ParsesBothFamiliesAndRoundTrips) {
  auto v4 = IpAddr::parse("192.0.2.10");
  ASSERT_TRUE(v4.isOk());
  EXPECT_TRUE(v4->isV4());
  EXPECT_EQ(v4->toString(), "192.0.2.10");
  auto v6 = IpAddr::parse("2001:db8::1");
  ASSERT_TRUE(v6.isOk());
  EXPECT_FALSE(v6->isV4());
  EXPECT_EQ(v6->toString(), "2001:db8::1");
}

TEST(IpAddrTest, RejectsGarbageWithTheInputInTheMessage) {
  auto bad = IpAddr::parse("300.1.1.1");
  ASSERT_FALSE(bad.isOk());
  EXPECT_NE(bad.error().find("300.1.1.1"), std::string::npos);
}

TEST(IpPrefixTest, ContainsRespectsLengthAndFamily) {
  auto p = IpPrefix::parse("10.1.2.77/24");
  ASSERT_TRUE(p.isOk());
  EXPECT_EQ(p->toString(), "10.1.2.0/24");
  EXPECT_TRUE(p->contains(*IpAddr::parse("10.1.2.200")));
  EXPECT_FALSE(p->contains(*IpAddr::parse("10.1.3.1")));
  EXPECT_FALSE(p->contains(*IpAddr::parse("::1")));
  auto p6 = IpPrefix::parse("2001:db8::/33");
  ASSERT_TRUE(p6.isOk());
  EXPECT_TRUE(p6->contains(*IpAddr::parse("2001:db8:7fff::1")));
  EXPECT_FALSE(p6->contains(*IpAddr::parse("2001:db8:8000::1")));
  EXPECT_FALSE(p6->contains(*IpAddr::parse("10.1.2.3")));
  auto all = IpPrefix::parse("0.0.0.0/0");
  ASSERT_TRUE(all.isOk());
  EXPECT_TRUE(all->contains(*IpAddr::parse("203.0.113.9")));
}

TEST(IpPrefixTest, RejectsBadLengths) {
  EXPECT_FALSE(IpPrefix::parse("10.0.0.0/33").isOk());
  EXPECT_FALSE(IpPrefix::parse("10.0.0.0/").isOk());
  EXPECT_FALSE(IpPrefix::parse("10.0.0.0/x").isOk());
  EXPECT_FALSE(IpPrefix::parse("::/129").isOk());
}

TEST(IpAddrTest, HostAndPortBracketIpv6Only) {
  EXPECT_EQ(IpAddr::parse("192.0.2.1")->withPort(80), "192.0.2.1:80");
  EXPECT_EQ(IpAddr::parse("2001:db8::1")->withPort(443), "[2001:db8::1]:443");
  EXPECT_EQ(IpAddr::parse("::ffff:192.0.2.1")->toHost(), "192.0.2.1");  // v4-mapped is v4
  EXPECT_EQ(IpAddr::parse("::")->toHost(), "[::]");
}

}  // namespace
}  // namespace flowlb

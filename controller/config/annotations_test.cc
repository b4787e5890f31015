#include "controller/config/annotations.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace flowlb::controller {
namespace {

using ::testing::HasSubstr;

TEST(AnnotationsTest, AllAnnotationsParsed) {
  auto s = parseServiceSettings({{"flowlb.io/pool", "public"},
                                 {"flowlb.io/ips", "192.0.2.10, 2001:db8::10"},
                                 {"flowlb.io/sharing-key", "web"},
                                 {"flowlb.io/forwarding-mode", "dsr"},
                                 {"flowlb.io/idle-timeout", "1h30m"},
                                 {"flowlb.io/drain-timeout", "45s"},
                                 {"flowlb.io/proxy-protocol", "v2"}});
  EXPECT_TRUE(s.errors.empty());
  EXPECT_TRUE(s.proxy_protocol_v2);
  EXPECT_EQ(s.pool, "public");
  ASSERT_EQ(s.ips.size(), 2u);
  EXPECT_EQ(s.ips[1].toString(), "2001:db8::10");
  EXPECT_EQ(s.sharing_key, "web");
  EXPECT_EQ(s.mode, ForwardingMode::kDsr);
  EXPECT_EQ(s.idle_timeout_s, 5400u);
  EXPECT_EQ(s.drain_timeout_s, 45u);
}

TEST(AnnotationsTest, DefaultsWithoutAnnotations) {
  auto s = parseServiceSettings({});
  EXPECT_TRUE(s.errors.empty());
  EXPECT_EQ(s.mode, ForwardingMode::kNat);
  EXPECT_EQ(s.idle_timeout_s, 0u);
  EXPECT_EQ(s.drain_timeout_s, 300u);
  EXPECT_FALSE(s.proxy_protocol_v2);
  EXPECT_TRUE(s.ips.empty());
}

TEST(AnnotationsTest, LoadBalancerIpIsHonouredAndTheAnnotationWins) {
  EXPECT_EQ(parseServiceSettings({}, "192.0.2.7").ips.at(0).toString(), "192.0.2.7");
  auto s = parseServiceSettings({{"flowlb.io/ips", "192.0.2.8"}}, "192.0.2.7");
  ASSERT_EQ(s.ips.size(), 1u);
  EXPECT_EQ(s.ips[0].toString(), "192.0.2.8");
}

TEST(AnnotationsTest, BadValuesAreErrorsNamingTheAnnotationAndTheRestStillApplies) {
  auto s = parseServiceSettings({{"flowlb.io/ips", "192.0.2.1,banana,192.0.2.2"},
                                 {"flowlb.io/forwarding-mode", "tunnel"},
                                 {"flowlb.io/idle-timeout", "0s"},
                                 {"flowlb.io/drain-timeout", "ten minutes"},
                                 {"flowlb.io/proxy-protocol", "v1"},
                                 {"flowlb.io/pool", "ok"}});
  ASSERT_EQ(s.errors.size(), 6u);
  EXPECT_THAT(s.errors[0], HasSubstr("'banana'"));
  EXPECT_THAT(s.errors[1], HasSubstr("one per family"));
  EXPECT_THAT(s.errors[2], HasSubstr("flowlb.io/forwarding-mode: 'tunnel'"));
  EXPECT_THAT(s.errors[3], HasSubstr("flowlb.io/proxy-protocol: 'v1'"));
  EXPECT_THAT(s.errors[4], HasSubstr("flowlb.io/idle-timeout"));
  EXPECT_THAT(s.errors[5], HasSubstr("flowlb.io/drain-timeout"));
  EXPECT_FALSE(s.proxy_protocol_v2);
  EXPECT_EQ(s.ips.size(), 1u);  // the good address is kept
  EXPECT_EQ(s.pool, "ok");
  EXPECT_EQ(s.mode, ForwardingMode::kNat);
  EXPECT_EQ(s.drain_timeout_s, 300u);
}

TEST(AnnotationsTest, Durations) {
  uint32_t v = 0;
  EXPECT_TRUE(parseDuration("90", &v));
  EXPECT_EQ(v, 90u);
  EXPECT_TRUE(parseDuration("2h", &v));
  EXPECT_EQ(v, 7200u);
  EXPECT_FALSE(parseDuration("1h30", &v));
  EXPECT_FALSE(parseDuration("-5s", &v));
  EXPECT_FALSE(parseDuration("1d", &v));
  EXPECT_FALSE(parseDuration("", &v));
  EXPECT_FALSE(parseDuration("999h", &v));  // beyond 24 days
}

}  // namespace
}  // namespace flowlb::controller

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

TEST(AnnotationsTest, HealthCheckIsOffByDefault) {
  EXPECT_EQ(parseServiceSettings({}).health.kind, HealthCheckKind::kNone);
  // Settings without a kind change nothing.
  auto s = parseServiceSettings({{"flowlb.io/health-check-interval", "1s"}});
  EXPECT_TRUE(s.errors.empty());
  EXPECT_EQ(s.health.kind, HealthCheckKind::kNone);
}

TEST(AnnotationsTest, HealthCheckKindsAndSettings) {
  auto s = parseServiceSettings({{"flowlb.io/health-check", "http:/healthz"},
                                 {"flowlb.io/health-check-interval", "500ms"},
                                 {"flowlb.io/health-check-timeout", "200ms"},
                                 {"flowlb.io/health-check-unhealthy-threshold", "2"},
                                 {"flowlb.io/health-check-healthy-threshold", "5"}});
  EXPECT_TRUE(s.errors.empty()) << s.errors.front();
  EXPECT_EQ(s.health.kind, HealthCheckKind::kHttp);
  EXPECT_EQ(s.health.path, "/healthz");
  EXPECT_EQ(s.health.interval_ms, 500u);
  EXPECT_EQ(s.health.timeout_ms, 200u);
  EXPECT_EQ(s.health.unhealthy_threshold, 2u);
  EXPECT_EQ(s.health.healthy_threshold, 5u);

  EXPECT_EQ(parseServiceSettings({{"flowlb.io/health-check", "tcp"}}).health,
            (HealthCheckSettings{HealthCheckKind::kTcp, "", 5000, 2000, 3, 2}));
  EXPECT_EQ(parseServiceSettings({{"flowlb.io/health-check", "udp-dns"}}).health.kind,
            HealthCheckKind::kUdpDns);
  auto https = parseServiceSettings({{"flowlb.io/health-check", "https:/ready?full=1"},
                                     {"flowlb.io/health-check-interval", "1m"},
                                     {"flowlb.io/health-check-timeout", "1s500ms"}});
  EXPECT_TRUE(https.errors.empty());
  EXPECT_EQ(https.health.kind, HealthCheckKind::kHttps);
  EXPECT_EQ(https.health.path, "/ready?full=1");
  EXPECT_EQ(https.health.interval_ms, 60000u);
  EXPECT_EQ(https.health.timeout_ms, 1500u);
  // Without a timeout, a short interval gets half of it.
  auto quick = parseServiceSettings(
      {{"flowlb.io/health-check", "tcp"}, {"flowlb.io/health-check-interval", "1s"}});
  EXPECT_TRUE(quick.errors.empty());
  EXPECT_EQ(quick.health.timeout_ms, 500u);
  EXPECT_EQ(parseServiceSettings({{"flowlb.io/health-check", "none"}}).health.kind,
            HealthCheckKind::kNone);
}

TEST(AnnotationsTest, InvalidHealthCheckIsAnErrorAndTurnsTheCheckOff) {
  const std::vector<std::map<std::string, std::string>> bad = {
      {{"flowlb.io/health-check", "icmp"}},
      {{"flowlb.io/health-check", "http:healthz"}},
      {{"flowlb.io/health-check", "http:/a b"}},
      {{"flowlb.io/health-check", "https:"}},
      {{"flowlb.io/health-check", "tcp"}, {"flowlb.io/health-check-interval", "50ms"}},
      {{"flowlb.io/health-check", "tcp"}, {"flowlb.io/health-check-interval", "fast"}},
      {{"flowlb.io/health-check", "tcp"}, {"flowlb.io/health-check-timeout", "5ms"}},
      {{"flowlb.io/health-check", "tcp"}, {"flowlb.io/health-check-timeout", "5s"}},
      {{"flowlb.io/health-check", "tcp"},
       {"flowlb.io/health-check-interval", "1s"},
       {"flowlb.io/health-check-timeout", "1s"}},
      {{"flowlb.io/health-check", "tcp"}, {"flowlb.io/health-check-unhealthy-threshold", "0"}},
      {{"flowlb.io/health-check", "tcp"}, {"flowlb.io/health-check-healthy-threshold", "101"}},
      {{"flowlb.io/health-check", "tcp"}, {"flowlb.io/health-check-healthy-threshold", "-1"}},
  };
  for (const auto& a : bad) {
    auto s = parseServiceSettings(a);
    ASSERT_EQ(s.errors.size(), 1u) << a.rbegin()->second;
    EXPECT_THAT(s.errors[0], HasSubstr("health checking is off"));
    EXPECT_EQ(s.health.kind, HealthCheckKind::kNone) << a.rbegin()->second;
  }
  // The error names the annotation at fault.
  auto s = parseServiceSettings(
      {{"flowlb.io/health-check", "tcp"}, {"flowlb.io/health-check-timeout", "2h"}});
  ASSERT_EQ(s.errors.size(), 1u);
  EXPECT_THAT(s.errors[0], HasSubstr("flowlb.io/health-check-timeout: '2h'"));
}

TEST(AnnotationsTest, MillisecondDurations) {
  uint64_t ms = 0;
  EXPECT_TRUE(parseDurationMs("500ms", &ms));
  EXPECT_EQ(ms, 500u);
  EXPECT_TRUE(parseDurationMs("2", &ms));
  EXPECT_EQ(ms, 2000u);
  EXPECT_TRUE(parseDurationMs("1m30s", &ms));
  EXPECT_EQ(ms, 90000u);
  EXPECT_FALSE(parseDurationMs("1s500", &ms));
  EXPECT_FALSE(parseDurationMs("5us", &ms));
  EXPECT_FALSE(parseDurationMs("", &ms));
  // The seconds parser is unchanged: no milliseconds there.
  uint32_t s = 0;
  EXPECT_FALSE(parseDuration("500ms", &s));
}

}  // namespace
}  // namespace flowlb::controller

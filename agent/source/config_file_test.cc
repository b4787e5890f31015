#include "agent/source/config_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "agent/packet/packet.h"
#include "agent/testing/test_specs.h"

namespace flowlb::agent {
namespace {

using test_specs::ip;

using ::testing::HasSubstr;

// Like examples/agent-standalone.yaml.
constexpr const char* kExample = R"(# two services on one node
generation: 1
snat:
  ipv4: 10.0.0.1        # this node's address
  ipv6: fd00::1
  portMin: 40000
  portMax: 59999
services:
  - name: default/web:http
    vip: 192.0.2.10
    port: 80
    protocol: tcp
    mode: nat
    backends:
      - {address: 10.1.0.11, port: 8080, weight: 1}
      - {address: 10.1.0.12, port: 8080, weight: 1}
      - {address: 10.1.0.13, port: 8080, weight: 2}
      - {address: 10.1.0.14, port: 8080, state: draining}
  - name: default/dns:udp
    vip: 2001:db8::53
    port: 53
    protocol: udp
    mode: dsr
    sessionAffinity: ClientIP
    sourceRanges: ["::/0"]
    backends:
      - {address: "fd00:1::a", port: 53}
      - {address: "fd00:1::b", port: 53}
)";

// One service; `extra` lines are inserted after line 5 (the port line), at
// the service's indentation.
std::string oneService(const std::string& extra, const std::string& port = "80",
                       const std::string& vip = "192.0.2.10") {
  return "services:\n"      // line 1
         "  - name: web\n"  // line 2
         "    vip: " +
         vip +
         "\n"                                                 // line 3
         "    backends: [{address: 10.1.0.1, port: 8080}]\n"  // line 4
         "    port: " +
         port + "\n" +  // line 5
         extra;         // line 6...
}

std::string mustFail(const std::string& text) {
  auto r = parseAgentConfig(text);
  EXPECT_FALSE(r.isOk()) << text;
  return r.isOk() ? "" : r.error();
}

TEST(ConfigFileTest, ParsesTheStandaloneExample) {
  auto r = parseAgentConfig(kExample);
  ASSERT_TRUE(r.isOk()) << r.error();
  const AgentConfigFile& c = *r;
  EXPECT_EQ(c.desired.generation, 1u);
  EXPECT_TRUE(c.snat.has_v4);
  EXPECT_TRUE(c.snat.has_v6);
  EXPECT_EQ(c.snat.v4, ip("10.0.0.1"));
  EXPECT_EQ(c.snat.v6, ip("fd00::1"));
  EXPECT_EQ(c.snat.port_min, 40000);
  EXPECT_EQ(c.snat.port_max, 59999);
  ASSERT_EQ(c.desired.services.size(), 2u);

  const ServiceSpec& web = c.desired.services[0];
  EXPECT_EQ(web.name, "default/web:http");
  EXPECT_EQ(web.vip, ip("192.0.2.10"));
  EXPECT_EQ(web.port, 80);
  EXPECT_EQ(web.proto, kProtoTCP);
  EXPECT_EQ(web.mode, ForwardingMode::kNat);
  EXPECT_FALSE(web.client_ip_affinity);
  EXPECT_TRUE(web.source_ranges.empty());
  EXPECT_EQ(web.maglev_size, 0u);  // sized for its backends
  ASSERT_EQ(web.backends.size(), 4u);
  EXPECT_EQ(web.backends[0].addr, ip("10.1.0.11"));
  EXPECT_EQ(web.backends[0].port, 8080);
  EXPECT_EQ(web.backends[2].weight, 2u);
  EXPECT_EQ(web.backends[2].state, BackendState::kActive);
  EXPECT_EQ(web.backends[3].weight, 1u);
  EXPECT_EQ(web.backends[3].state, BackendState::kDraining);

  const ServiceSpec& dns = c.desired.services[1];
  EXPECT_EQ(dns.vip, ip("2001:db8::53"));
  EXPECT_EQ(dns.port, 53);
  EXPECT_EQ(dns.proto, kProtoUDP);
  EXPECT_EQ(dns.mode, ForwardingMode::kDsr);
  EXPECT_TRUE(dns.client_ip_affinity);
  EXPECT_EQ(dns.affinity_timeout_s, 10800u);
  ASSERT_EQ(dns.source_ranges.size(), 1u);
  EXPECT_EQ(dns.source_ranges[0].toString(), "::/0");
  EXPECT_TRUE(dns.source_ranges[0].contains(ip("2001:db8::99")));
  ASSERT_EQ(dns.backends.size(), 2u);
  EXPECT_EQ(dns.backends[1].addr, ip("fd00:1::b"));
}

TEST(ConfigFileTest, OptionalFieldsAreParsed) {
  auto r = parseAgentConfig(
      oneService("    maglevTableSize: 16381\n    hashSeed: 77\n    idleTimeoutSeconds: 30\n"
                 "    sourceRanges: [198.51.100.0/24, 203.0.113.7]\n"));
  ASSERT_TRUE(r.isOk()) << r.error();
  const ServiceSpec& s = r->desired.services[0];
  EXPECT_EQ(s.maglev_size, 16381u);
  EXPECT_EQ(s.hash_seed, 77u);
  EXPECT_EQ(s.idle_timeout_s, 30u);
  ASSERT_EQ(s.source_ranges.size(), 2u);
  EXPECT_TRUE(s.source_ranges[0].contains(ip("198.51.100.200")));
  EXPECT_FALSE(s.source_ranges[1].contains(ip("203.0.113.8")));
}

TEST(ConfigFileTest, UnknownFieldNamesPathAndLine) {
  const std::string e = mustFail(oneService("    portt: 81\n"));
  EXPECT_THAT(e, HasSubstr("services[0].portt"));
  EXPECT_THAT(e, HasSubstr("line 6"));
  EXPECT_THAT(e, HasSubstr("unknown field"));

  const std::string top = mustFail("generation: 1\nservice: []\n");
  EXPECT_THAT(top, HasSubstr("service"));
  EXPECT_THAT(top, HasSubstr("line 2"));

  const std::string nested = mustFail(
      "services:\n  - name: web\n    vip: 192.0.2.10\n    port: 80\n    backends:\n"
      "      - {address: 10.1.0.1, port: 8080}\n      - {address: 10.1.0.2, prot: 8080}\n");
  EXPECT_THAT(nested, HasSubstr("services[0].backends[1].prot"));
  EXPECT_THAT(nested, HasSubstr("line 7"));
}

TEST(ConfigFileTest, BadAddressIsRejected) {
  const std::string e = mustFail(oneService("", "80", "192.0.2.300"));
  EXPECT_THAT(e, HasSubstr("services[0].vip"));
  EXPECT_THAT(e, HasSubstr("192.0.2.300"));
  EXPECT_THAT(e, HasSubstr("line 3"));
}

TEST(ConfigFileTest, PortOutOfRangeIsRejected) {
  const std::string e = mustFail(oneService("", "70000"));
  EXPECT_THAT(e, HasSubstr("services[0].port"));
  EXPECT_THAT(e, HasSubstr("70000"));
  EXPECT_THAT(e, HasSubstr("line 5"));
  EXPECT_THAT(mustFail(oneService("", "0")), HasSubstr("services[0].port"));
  EXPECT_THAT(mustFail(oneService("", "eighty")), HasSubstr("'eighty'"));
  EXPECT_THAT(mustFail(oneService("", "80.5")), HasSubstr("services[0].port"));
}

TEST(ConfigFileTest, UnknownModeIsRejected) {
  const std::string e = mustFail(oneService("    mode: foo\n"));
  EXPECT_THAT(e, HasSubstr("services[0].mode"));
  EXPECT_THAT(e, HasSubstr("'foo'"));
  EXPECT_THAT(e, HasSubstr("line 6"));
  EXPECT_THAT(mustFail(oneService("    protocol: sctp\n")), HasSubstr("'sctp'"));
  EXPECT_THAT(mustFail(oneService("    sessionAffinity: Sticky\n")), HasSubstr("'Sticky'"));
}

TEST(ConfigFileTest, NonPrimeTableSizeIsRejected) {
  const std::string e = mustFail(oneService("    maglevTableSize: 65536\n"));
  EXPECT_THAT(e, HasSubstr("services[0].maglevTableSize"));
  EXPECT_THAT(e, HasSubstr("prime"));
  EXPECT_THAT(e, HasSubstr("line 6"));
}

TEST(ConfigFileTest, SnatErrors) {
  EXPECT_THAT(mustFail("snat:\n  ipv4: fd00::1\n"), HasSubstr("snat.ipv4"));
  EXPECT_THAT(mustFail("snat:\n  portMin: 50000\n  portMax: 40000\n"), HasSubstr("portMin"));
  EXPECT_THAT(mustFail("snat:\n  source: vpi\n"), HasSubstr("snat.source"));
  EXPECT_THAT(mustFail("snat: {source: vip}\nbgp: {myASN: 64512, peers: [{name: a, "
                       "peerAddress: 10.0.0.1, peerASN: 1}]}\n"),
              HasSubstr("cannot be combined with bgp"));
  auto vip = parseAgentConfig("snat: {source: vip}\n");
  ASSERT_TRUE(vip) << vip.error();
  EXPECT_TRUE(vip->snat.vip_source);
}

TEST(ConfigFileTest, MissingRequiredFieldIsNamed) {
  const std::string e = mustFail("services:\n  - name: web\n    port: 80\n    backends: []\n");
  EXPECT_THAT(e, HasSubstr("services[0].vip"));
  EXPECT_THAT(e, HasSubstr("required"));
}

TEST(ConfigFileTest, YamlSyntaxErrorGivesTheLine) {
  const std::string e = mustFail("generation: 1\nservices:\n  - name: web: x\n    port: 80\n");
  EXPECT_THAT(e, testing::MatchesRegex("line [1-9][0-9]*: .*"));
  EXPECT_THAT(e, HasSubstr("line 3"));
  const std::string tabs = mustFail("services:\n  - name: web\n   vip: 192.0.2.10\n");
  EXPECT_THAT(tabs, HasSubstr("line 3"));
}

TEST(ConfigFileTest, EmptyOrScalarDocumentIsRejected) {
  EXPECT_THAT(mustFail(""), HasSubstr("mapping"));
  EXPECT_THAT(mustFail("just text"), HasSubstr("mapping"));
}

TEST(ConfigFileTest, HealthCheckIsParsedWithDurations) {
  auto r = parseAgentConfig(
      oneService("    healthCheck: {type: http, path: /healthz, interval: 2s, timeout: 500ms,"
                 " unhealthyThreshold: 4, healthyThreshold: 1}\n"));
  ASSERT_TRUE(r.isOk()) << r.error();
  ASSERT_EQ(r->desired.services.size(), 1u);
  const HealthCheckSpec& h = r->desired.services[0].health;
  EXPECT_EQ(h.kind, HealthCheckKind::kHttp);
  EXPECT_EQ(h.path, "/healthz");
  EXPECT_EQ(h.interval_ms, 2000u);
  EXPECT_EQ(h.timeout_ms, 500u);
  EXPECT_EQ(h.unhealthy_threshold, 4u);
  EXPECT_EQ(h.healthy_threshold, 1u);
  EXPECT_TRUE(r->refused.empty());
}

TEST(ConfigFileTest, HealthCheckDefaultsAndKinds) {
  for (const auto& [text, kind] : std::vector<std::pair<std::string, HealthCheckKind>>{
           {"tcp", HealthCheckKind::kTcp},
           {"https", HealthCheckKind::kHttps},
           {"udp-dns", HealthCheckKind::kUdpDns}}) {
    auto r = parseAgentConfig(oneService("    healthCheck: {type: " + text + "}\n"));
    ASSERT_TRUE(r.isOk()) << r.error();
    ASSERT_EQ(r->desired.services.size(), 1u);
    const HealthCheckSpec& h = r->desired.services[0].health;
    EXPECT_EQ(h.kind, kind);
    EXPECT_EQ(h.interval_ms, 5000u);
    EXPECT_EQ(h.timeout_ms, 2000u);
    EXPECT_EQ(h.unhealthy_threshold, 3u);
    EXPECT_EQ(h.healthy_threshold, 2u);
  }
  auto none = parseAgentConfig(oneService(""));
  ASSERT_TRUE(none.isOk());
  EXPECT_EQ(none->desired.services[0].health.kind, HealthCheckKind::kNone);
}

// A bad health check refuses its service alone, with the field named; the
// other services of the file apply.
TEST(ConfigFileTest, BadHealthCheckRefusesItsServiceAlone) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{type: icmp}", "healthCheck.type: 'icmp' is not one of"},
      {"{type: http, interval: 2}", "healthCheck.interval: '2' is not a duration"},
      {"{type: http, interval: 2m}", "healthCheck.interval"},
      {"{type: http, interval: 50ms}", "healthCheck.interval: '50ms' is outside"},
      {"{type: http, interval: 1s, timeout: 1s}", "healthCheck.timeout: 1000ms must be below"},
      {"{type: http, path: healthz}", "healthCheck.path: 'healthz' must start with '/'"},
      {"{type: tcp, path: /x}", "healthCheck.path: is for http and https"},
      {"{type: tcp, unhealthyThreshold: 0}", "healthCheck.unhealthyThreshold: 0 is outside"},
      {"{type: tcp, healthyThreshold: 101}", "healthCheck.healthyThreshold: 101 is outside"},
      {"{type: tcp, bogus: 1}", "healthCheck.bogus: unknown field"},
      {"{}", "healthCheck.type: is required"},
  };
  for (const auto& [hc, want] : cases) {
    const std::string text =
        "services:\n"
        "  - {name: bad, vip: 192.0.2.10, port: 80, backends: [{address: 10.1.0.1, port: 80}],\n"
        "     healthCheck: " +
        hc +
        "}\n"
        "  - {name: good, vip: 192.0.2.11, port: 80, backends: [{address: 10.1.0.1, port: 80}]}\n";
    auto r = parseAgentConfig(text);
    ASSERT_TRUE(r.isOk()) << hc << ": " << r.error();
    ASSERT_EQ(r->desired.services.size(), 1u) << hc;
    EXPECT_EQ(r->desired.services[0].name, "good");
    ASSERT_EQ(r->refused.size(), 1u) << hc;
    EXPECT_EQ(r->refused[0].service, "bad");
    EXPECT_THAT(r->refused[0].message, HasSubstr("services[0]." + want)) << hc;
  }
}

}  // namespace
}  // namespace flowlb::agent

// The health checks' pure parts: thresholds, the HTTP status line, the DNS
// answer check, which targets a node probes and how they change, the
// stagger, and the standalone verdict.
#include <gtest/gtest.h>

#include <set>

#include "agent/health/health_state.h"
#include "agent/health/probe_wire.h"
#include "agent/health/targets.h"
#include "common/health_probers.h"

namespace flowlb::agent::health {
namespace {

TEST(HealthThresholdTest, UnknownUntilAThresholdIsMet) {
  HealthThreshold t(2, 3);
  EXPECT_EQ(t.status(), HealthStatus::kUnknown);
  EXPECT_FALSE(t.record(true));
  EXPECT_EQ(t.status(), HealthStatus::kUnknown);
  EXPECT_TRUE(t.record(true));
  EXPECT_EQ(t.status(), HealthStatus::kHealthy);
  EXPECT_TRUE(t.detail().empty());
}

TEST(HealthThresholdTest, FlipsOnlyAfterConsecutiveResults) {
  HealthThreshold t(2, 3);
  t.record(true);
  t.record(true);
  EXPECT_FALSE(t.record(false, "connect: Connection refused"));
  EXPECT_FALSE(t.record(false, "connect: Connection refused"));
  EXPECT_FALSE(t.record(true)) << "a pass resets the failures";
  EXPECT_FALSE(t.record(false, "a"));
  EXPECT_FALSE(t.record(false, "b"));
  EXPECT_EQ(t.status(), HealthStatus::kHealthy);
  EXPECT_TRUE(t.record(false, "http status 503"));
  EXPECT_EQ(t.status(), HealthStatus::kUnhealthy);
  EXPECT_EQ(t.detail(), "http status 503");
  EXPECT_FALSE(t.record(true));
  EXPECT_FALSE(t.record(false, "timeout after 2000 ms")) << "a failure resets the passes";
  EXPECT_EQ(t.detail(), "timeout after 2000 ms");
  EXPECT_FALSE(t.record(true));
  EXPECT_TRUE(t.record(true));
  EXPECT_EQ(t.status(), HealthStatus::kHealthy);
  EXPECT_EQ(t.detail(), "");
}

TEST(HealthThresholdTest, UnknownGoesStraightToUnhealthy) {
  HealthThreshold t(2, 1);
  EXPECT_TRUE(t.record(false, "connect: No route to host"));
  EXPECT_EQ(t.status(), HealthStatus::kUnhealthy);
  EXPECT_STREQ(healthStatusName(t.status()), "unhealthy");
}

TEST(ProbeWireTest, HttpStatusLine) {
  using K = HttpVerdict::Kind;
  EXPECT_EQ(parseHttpStatusLine("").kind, K::kIncomplete);
  EXPECT_EQ(parseHttpStatusLine("HTTP/1.1 20").kind, K::kIncomplete);
  auto ok = parseHttpStatusLine("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n");
  EXPECT_EQ(ok.kind, K::kStatus);
  EXPECT_EQ(ok.status, 200);
  EXPECT_TRUE(ok.passed());
  EXPECT_TRUE(parseHttpStatusLine("HTTP/1.0 302 Found\r\n").passed());
  EXPECT_TRUE(parseHttpStatusLine("HTTP/1.1 204\r\n").passed()) << "the reason may be absent";
  auto bad = parseHttpStatusLine("HTTP/1.1 503 Service Unavailable\r\n");
  EXPECT_EQ(bad.status, 503);
  EXPECT_FALSE(bad.passed());
  EXPECT_FALSE(parseHttpStatusLine("HTTP/1.1 404 Not Found\n").passed());
  EXPECT_FALSE(parseHttpStatusLine("HTTP/1.1 199 x\r\n").passed());
  EXPECT_EQ(parseHttpStatusLine("SSH-2.0-OpenSSH\r\n").kind, K::kMalformed);
  EXPECT_EQ(parseHttpStatusLine("SSH").kind, K::kMalformed) << "known bad before a line end";
  EXPECT_EQ(parseHttpStatusLine("HTTP/1.1 2x0 OK\r\n").kind, K::kMalformed);
  EXPECT_EQ(parseHttpStatusLine("HTTP/1.1 2000 OK\r\n").kind, K::kMalformed);
  EXPECT_EQ(parseHttpStatusLine("HTTP/2 200\r\n").kind, K::kMalformed);
  EXPECT_EQ(
      parseHttpStatusLine(std::string("HTTP/1.1 200") + std::string(kHttpReadLimit, 'x')).kind,
      K::kMalformed)
      << "no line end within the read limit";
}

TEST(ProbeWireTest, HttpRequestNamesPathAndHost) {
  const std::string r = httpRequest("/healthz", "10.1.2.3:8080");
  EXPECT_EQ(r.rfind("GET /healthz HTTP/1.1\r\nHost: 10.1.2.3:8080\r\n", 0), 0u) << r;
  EXPECT_EQ(r.substr(r.size() - 4), "\r\n\r\n");
}

TEST(ProbeWireTest, DnsQueryAndAnswer) {
  const auto q = dnsQuery(0xbeef);
  ASSERT_EQ(q.size(), 17u);
  EXPECT_EQ(q[0], 0xbe);
  EXPECT_EQ(q[1], 0xef);
  // A server's answer: the query echoed with QR set (RCODE REFUSED still passes).
  std::vector<uint8_t> a = q;
  a[2] |= 0x80;
  a[3] = 0x05;
  EXPECT_EQ(checkDnsResponse(a.data(), a.size(), 0xbeef), "");
  EXPECT_NE(checkDnsResponse(a.data(), a.size(), 0xbeee), "") << "another id";
  EXPECT_NE(checkDnsResponse(q.data(), q.size(), 0xbeef), "") << "a query is no answer";
  EXPECT_NE(checkDnsResponse(a.data(), 11, 0xbeef), "") << "a short header";
  EXPECT_NE(checkDnsResponse(a.data(), 14, 0xbeef), "") << "a truncated question";
  std::vector<uint8_t> label = {0xbe, 0xef, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'c', 'o'};
  EXPECT_NE(checkDnsResponse(label.data(), label.size(), 0xbeef), "") << "a label past the end";
}

ServiceSpec svc(const std::string& name, int backends, HealthCheckKind kind) {
  ServiceSpec s;
  s.name = name;
  s.vip = *IpAddr::parse("192.0.2.1");
  s.port = 80;
  s.health.kind = kind;
  for (int i = 0; i < backends; ++i) {
    BackendSpec b;
    b.addr = *IpAddr::parse("10.1.0." + std::to_string(i + 1));
    b.port = 8080;
    s.backends.push_back(b);
  }
  return s;
}

TEST(TargetsTest, OnlyServicesWithACheckAndTheCanonicalKey) {
  DesiredState d;
  d.services.push_back(svc("a", 3, HealthCheckKind::kHttp));
  d.services.push_back(svc("b", 2, HealthCheckKind::kNone));
  ServiceSpec v6 = svc("c", 0, HealthCheckKind::kTcp);
  BackendSpec b6;
  b6.addr = *IpAddr::parse("fd00::5");
  b6.port = 8080;
  v6.backends.push_back(b6);
  d.services.push_back(v6);
  const TargetSet t = probeTargets(d, "n1", 100);
  ASSERT_EQ(t.targets.size(), 4u);
  EXPECT_EQ(t.targets[0].key.service, "a");
  EXPECT_EQ(t.targets[0].key.backend, "10.1.0.1:8080");
  EXPECT_EQ(t.targets[3].key.backend, "[fd00::5]:8080");
  EXPECT_EQ(t.refused, 0u);
}

TEST(TargetsTest, ProbersShareTheBackendsAndTheCapRefuses) {
  DesiredState d;
  d.services.push_back(svc("a", 200, HealthCheckKind::kTcp));
  d.health_probers.nodes = {"n1", "n2", "n3", "n4"};
  d.health_probers.per_backend = 2;
  size_t total = 0;
  for (const std::string& n : d.health_probers.nodes) {
    const TargetSet t = probeTargets(d, n, 1000);
    total += t.targets.size();
    for (const ProbeTarget& p : t.targets) {
      const auto probers = probersFor(d.health_probers.nodes, 2, p.key.service, p.key.backend);
      EXPECT_NE(std::find(probers.begin(), probers.end(), n), probers.end());
    }
  }
  EXPECT_EQ(total, 400u) << "each backend probed by exactly 2 nodes";
  EXPECT_TRUE(probeTargets(d, "not-listed", 1000).targets.empty());
  const TargetSet capped = probeTargets(d, "n1", 10);
  EXPECT_EQ(capped.targets.size(), 10u);
  EXPECT_EQ(capped.refused, probeTargets(d, "n1", 1000).targets.size() - 10);
}

// externalTrafficPolicy: Local: the node keeps only its own backends (the
// conversion drops the others) and probes each of them itself, whatever the
// rendezvous assignment says; the controller counts its report alone.
TEST(TargetsTest, ALocalServicesBackendsAreProbedByTheirOwnNode) {
  DesiredState d;
  d.services.push_back(svc("local", 40, HealthCheckKind::kTcp));
  d.services[0].keep_client_address = true;
  for (BackendSpec& b : d.services[0].backends) b.node = "n1";
  d.health_probers.nodes = {"n1", "n2", "n3", "n4", "n5", "n6"};
  d.health_probers.per_backend = 2;
  EXPECT_EQ(probeTargets(d, "n1", 1000).targets.size(), 40u);
  // A backend with no node name is kept on every node: the normal
  // assignment, 2 probers each, as the controller counts them.
  for (BackendSpec& b : d.services[0].backends) b.node.clear();
  size_t total = 0;
  for (const std::string& n : d.health_probers.nodes)
    total += probeTargets(d, n, 1000).targets.size();
  EXPECT_EQ(total, 80u);
}

TEST(TargetsTest, DiffDropsAddsAndRestartsChangedChecks) {
  DesiredState d;
  d.services.push_back(svc("a", 3, HealthCheckKind::kHttp));
  const auto before = probeTargets(d, "n", 100).targets;
  DesiredState e = d;
  e.services[0].backends.pop_back();  // 10.1.0.3 goes
  BackendSpec nb;
  nb.addr = *IpAddr::parse("10.1.0.9");
  nb.port = 8080;
  e.services[0].backends.push_back(nb);  // 10.1.0.9 comes
  auto diff = diffTargets(before, probeTargets(e, "n", 100).targets);
  ASSERT_EQ(diff.removed.size(), 1u);
  EXPECT_EQ(diff.removed[0].backend, "10.1.0.3:8080");
  ASSERT_EQ(diff.added.size(), 1u);
  EXPECT_EQ(diff.added[0].key.backend, "10.1.0.9:8080");
  EXPECT_TRUE(diffTargets(before, before).added.empty());
  EXPECT_TRUE(diffTargets(before, before).removed.empty());
  DesiredState f = d;
  f.services[0].health.interval_ms = 1000;  // the check changes: every target restarts
  diff = diffTargets(before, probeTargets(f, "n", 100).targets);
  EXPECT_EQ(diff.removed.size(), 3u);
  EXPECT_EQ(diff.added.size(), 3u);
}

TEST(TargetsTest, StaggerSpreadsOverTheInterval) {
  std::set<uint32_t> buckets;
  for (int i = 0; i < 1000; ++i) {
    const uint32_t s = staggerMs(
        {"svc", "10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250) + ":80"}, 5000);
    ASSERT_LT(s, 5000u);
    buckets.insert(s / 500);
  }
  EXPECT_EQ(buckets.size(), 10u) << "every tenth of the interval gets probes";
  EXPECT_EQ(staggerMs({"a", "b"}, 5000), staggerMs({"a", "b"}, 5000));
}

TEST(TargetsTest, StandaloneVerdictMarksUnhealthyOnly) {
  DesiredState d;
  d.services.push_back(svc("a", 3, HealthCheckKind::kHttp));
  d.services.push_back(svc("b", 1, HealthCheckKind::kNone));
  d.services[0].backends[2].state = BackendState::kDraining;
  std::map<TargetKey, HealthStatus> v = {{{"a", "10.1.0.1:8080"}, HealthStatus::kUnhealthy},
                                         {{"a", "10.1.0.2:8080"}, HealthStatus::kHealthy},
                                         {{"a", "10.1.0.3:8080"}, HealthStatus::kUnhealthy},
                                         {{"b", "10.1.0.1:8080"}, HealthStatus::kUnhealthy}};
  const DesiredState o = withVerdicts(d, v);
  EXPECT_EQ(o.services[0].backends[0].state, BackendState::kUnhealthy);
  EXPECT_EQ(o.services[0].backends[1].state, BackendState::kActive);
  EXPECT_EQ(o.services[0].backends[2].state, BackendState::kDraining) << "the file's drain wins";
  EXPECT_EQ(o.services[1].backends[0].state, BackendState::kActive) << "no check: no verdict";
}

}  // namespace
}  // namespace flowlb::agent::health

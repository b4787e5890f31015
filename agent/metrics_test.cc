// AgentMetrics as a scrape sees it: per-service and per-backend series follow
// the desired state (removed once gone and no longer counting, back if they
// count again), and the announced VIPs are one series each.
#include "agent/metrics.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "agent/testing/test_specs.h"

namespace flowlb::agent {
namespace {

using test_specs::backend;
using test_specs::ip;

std::string scrape(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  const std::string req = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  EXPECT_EQ(::send(fd, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;)
    out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

ServiceSpec service(const std::string& name, std::initializer_list<const char*> backends) {
  ServiceSpec s;
  s.name = name;
  s.vip = ip("192.0.2.10");
  s.port = 80;
  for (const char* b : backends) {
    BackendSpec be;
    be.addr = IpAddr::parse(b).value();
    be.port = 8080;
    s.backends.push_back(be);
  }
  return s;
}

DatapathStatus status(uint64_t web_packets, uint64_t old_backend_packets) {
  WorkerReport w;
  w.services["demo/web/http/ipv4"] = {web_packets, web_packets * 100, 1};
  w.services["demo/old/http/ipv4"] = {7, 700, 1};
  w.backends["10.0.0.1:8080"] = {web_packets, web_packets * 100, 1};
  w.backends["10.0.0.2:8080"] = {old_backend_packets, old_backend_packets * 100, 1};
  w.backends["[fd00::3]:8080"] = {5, 500, 1};
  DatapathStatus st;
  st.workers.push_back(w);
  return st;
}

class AgentMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = AgentMetrics::serve("127.0.0.1:0", &health_);
    ASSERT_TRUE(m) << m.error();
    m_ = std::move(*m);
  }
  bool has(const std::string& series) {
    return scrape(m_->port()).find(series) != std::string::npos;
  }
  HealthChecks health_;
  std::unique_ptr<AgentMetrics> m_;
};

TEST_F(AgentMetricsTest, SeriesOfRemovedServicesAndBackendsGoOnceTheyStopCounting) {
  DesiredState before;
  before.services = {service("demo/web/http/ipv4", {"10.0.0.1", "10.0.0.2", "fd00::3"}),
                     service("demo/old/http/ipv4", {"10.0.0.1"})};
  m_->desiredState(before);
  m_->update(status(10, 4));
  EXPECT_TRUE(has("flowlb_agent_service_packets_total{service=\"demo/old/http/ipv4\"} 7"));
  EXPECT_TRUE(has("flowlb_agent_backend_packets_total{backend=\"10.0.0.2:8080\"} 4"));
  EXPECT_TRUE(has("flowlb_agent_backend_new_flows_total{backend=\"[fd00::3]:8080\"} 1"));

  // old/ and backend 10.0.0.2 leave the state; 10.0.0.2 still counts a draining flow.
  DesiredState after;
  after.services = {service("demo/web/http/ipv4", {"10.0.0.1", "fd00::3"})};
  m_->desiredState(after);
  m_->update(status(20, 6));
  EXPECT_FALSE(has("service=\"demo/old/http/ipv4\""));
  EXPECT_TRUE(has("flowlb_agent_backend_packets_total{backend=\"10.0.0.2:8080\"} 6"));
  EXPECT_TRUE(has("flowlb_agent_service_packets_total{service=\"demo/web/http/ipv4\"} 20"));

  // The flow ended: nothing new, the series go (all three families).
  m_->update(status(30, 6));
  EXPECT_FALSE(has("backend=\"10.0.0.2:8080\""));
  EXPECT_TRUE(has("flowlb_agent_backend_packets_total{backend=\"10.0.0.1:8080\"} 30"));
  EXPECT_TRUE(has("backend=\"[fd00::3]:8080\""));  // in the state, idle: stays
  m_->update(status(40, 6));
  EXPECT_FALSE(has("backend=\"10.0.0.2:8080\""));

  // It counts again (back in a state, or a late packet): the series returns.
  m_->update(status(50, 9));
  EXPECT_TRUE(has("flowlb_agent_backend_packets_total{backend=\"10.0.0.2:8080\"} 9"));
}

TEST_F(AgentMetricsTest, AnnouncedVipsAreOneSeriesEach) {
  m_->announcedVips({ip("192.0.2.10"), ip("192.0.2.10"), ip("2001:db8::1")});
  EXPECT_TRUE(has("flowlb_agent_announced_vip_info{vip=\"192.0.2.10\"} 1"));
  EXPECT_TRUE(has("flowlb_agent_announced_vip_info{vip=\"2001:db8::1\"} 1"));
  m_->announcedVips({ip("2001:db8::1")});
  EXPECT_FALSE(has("vip=\"192.0.2.10\""));
  EXPECT_TRUE(has("flowlb_agent_announced_vip_info{vip=\"2001:db8::1\"} 1"));
  m_->announcedVips({});
  EXPECT_FALSE(has("flowlb_agent_announced_vip_info{"));
}

TEST_F(AgentMetricsTest, BackendHealthSeriesFollowTheTargets) {
  health::ProberCounters c;
  c.passed = 5;
  c.failed = 2;
  c.targets = 2;
  m_->healthChecks({{{"web", "10.0.0.1:8080"}, health::HealthStatus::kHealthy, ""},
                    {{"web", "[fd00::3]:8080"}, health::HealthStatus::kUnknown, ""}},
                   c);
  EXPECT_TRUE(has("flowlb_agent_backend_health{backend=\"10.0.0.1:8080\",service=\"web\"} 1"));
  EXPECT_TRUE(has("flowlb_agent_backend_health{backend=\"[fd00::3]:8080\",service=\"web\"} -1"));
  EXPECT_TRUE(has("flowlb_agent_health_probes_total{result=\"pass\"} 5"));
  EXPECT_TRUE(has("flowlb_agent_health_probes_total{result=\"fail\"} 2"));
  EXPECT_TRUE(has("flowlb_agent_health_targets 2"));
  c.targets = 1;
  m_->healthChecks(
      {{{"web", "10.0.0.1:8080"}, health::HealthStatus::kUnhealthy, "http status 503"}}, c);
  EXPECT_TRUE(has("flowlb_agent_backend_health{backend=\"10.0.0.1:8080\",service=\"web\"} 0"));
  EXPECT_FALSE(has("[fd00::3]:8080\",service=\"web\"}")) << "the target went: so does its series";
  EXPECT_TRUE(has("flowlb_agent_health_targets 1"));
}

}  // namespace
}  // namespace flowlb::agent

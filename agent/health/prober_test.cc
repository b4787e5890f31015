// The prober against real servers on loopback: TCP, HTTP (2xx passes, 503
// fails), HTTPS, DNS over UDP, refused connections and timeouts, and
// targets that go away. Tests wait for the statuses the prober publishes.
#include "agent/health/prober.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <thread>

#include "agent/health/probe.h"
#include "common/pki.h"

namespace flowlb::agent::health {
namespace {

using namespace std::chrono_literals;

// A server on 127.0.0.1 that answers probes the way it is told.
class TestServer {
 public:
  enum class Kind { kTcp, kHttp, kHttps, kSilent, kDns };
  explicit TestServer(Kind kind) : kind_(kind) {
    const bool udp = kind == Kind::kDns;
    fd_ = ::socket(AF_INET, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    socklen_t len = sizeof sa;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len);
    port_ = ntohs(sa.sin_port);
    if (!udp) ::listen(fd_, 64);
    if (kind == Kind::kHttps) {
      auto ca = flowlb::pki::createCa("probe-test", std::chrono::hours(1));
      EXPECT_TRUE(ca.isOk());
      ctx_ = SSL_CTX_new(TLS_server_method());
      BIO* cb = BIO_new_mem_buf(ca->cert_pem.data(), static_cast<int>(ca->cert_pem.size()));
      X509* cert = PEM_read_bio_X509(cb, nullptr, nullptr, nullptr);
      BIO* kb = BIO_new_mem_buf(ca->key_pem.data(), static_cast<int>(ca->key_pem.size()));
      EVP_PKEY* key = PEM_read_bio_PrivateKey(kb, nullptr, nullptr, nullptr);
      EXPECT_EQ(SSL_CTX_use_certificate(ctx_, cert), 1);
      EXPECT_EQ(SSL_CTX_use_PrivateKey(ctx_, key), 1);
      X509_free(cert);
      EVP_PKEY_free(key);
      BIO_free(cb);
      BIO_free(kb);
    }
    thread_ = std::thread([this] { run(); });
  }
  ~TestServer() {
    stop_ = true;
    thread_.join();
    if (fd_ >= 0) ::close(fd_);
    for (int c : silent_) ::close(c);
    if (ctx_) SSL_CTX_free(ctx_);
  }
  uint16_t port() const { return port_; }
  void setStatus(int s) { status_ = s; }
  int maxPeerPort() const { return max_peer_port_; }

 private:
  void run() {
    sigset_t pipe;  // a probe that closed first: EPIPE, not a dead test
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      if (kind_ == Kind::kDns) {
        uint8_t buf[512];
        sockaddr_in from{};
        socklen_t fl = sizeof from;
        const ssize_t n =
            ::recvfrom(fd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &fl);
        if (n < 12) continue;
        buf[2] |= 0x80;  // the question back, as an answer (no records)
        ::sendto(fd_, buf, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&from), fl);
        continue;
      }
      sockaddr_in peer{};
      socklen_t pl = sizeof peer;
      const int c = ::accept(fd_, reinterpret_cast<sockaddr*>(&peer), &pl);
      if (c < 0) continue;
      max_peer_port_ = std::max<int>(max_peer_port_, ntohs(peer.sin_port));
      const int flags = fcntl(c, F_GETFL);
      fcntl(c, F_SETFL, flags & ~O_NONBLOCK);
      timeval tv{1, 0};
      ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      const std::string answer =
          "HTTP/1.1 " + std::to_string(status_.load()) + " X\r\nContent-Length: 0\r\n\r\n";
      if (kind_ == Kind::kSilent) {
        silent_.push_back(c);
        continue;
      }
      if (kind_ == Kind::kHttp) {
        char buf[2048];
        std::string req;
        while (req.find("\r\n\r\n") == std::string::npos) {
          const ssize_t n = ::recv(c, buf, sizeof buf, 0);
          if (n <= 0) break;
          req.append(buf, static_cast<size_t>(n));
        }
        if (req.rfind("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:", 0) == 0) {
          (void)!::send(c, answer.data(), answer.size(), MSG_NOSIGNAL);
        }
      } else if (kind_ == Kind::kHttps) {
        SSL* ssl = SSL_new(ctx_);
        SSL_set_fd(ssl, c);
        if (SSL_accept(ssl) == 1) {
          char buf[2048];
          if (SSL_read(ssl, buf, sizeof buf) > 0) {
            SSL_write(ssl, answer.data(), static_cast<int>(answer.size()));
          }
          SSL_shutdown(ssl);
        }
        SSL_free(ssl);
      }
      ::close(c);
    }
  }

  Kind kind_;
  int fd_ = -1;
  uint16_t port_ = 0;
  SSL_CTX* ctx_ = nullptr;
  std::atomic<int> status_{200};
  std::atomic<int> max_peer_port_{0};
  std::atomic<bool> stop_{false};
  std::vector<int> silent_;
  std::thread thread_;
};

DesiredState stateFor(uint16_t port, HealthCheckKind kind, uint32_t timeout_ms = 200) {
  DesiredState d;
  ServiceSpec s;
  s.name = "default/web";
  s.vip = *IpAddr::parse("192.0.2.1");
  s.port = 80;
  s.health.kind = kind;
  s.health.path = "/healthz";
  s.health.interval_ms = 100;
  s.health.timeout_ms = timeout_ms;
  s.health.healthy_threshold = 2;
  s.health.unhealthy_threshold = 2;
  BackendSpec b;
  b.addr = *IpAddr::parse("127.0.0.1");
  b.port = port;
  s.backends.push_back(b);
  d.services.push_back(s);
  return d;
}

// Waits (up to 10 s) until the one target has `want`; returns it.
TargetStatus waitFor(const Prober& p, HealthStatus want) {
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < until) {
    const auto s = p.statuses();
    if (s.size() == 1 && s[0].status == want) return s[0];
    std::this_thread::sleep_for(10ms);
  }
  ADD_FAILURE() << "no status " << healthStatusName(want);
  return {};
}

std::unique_ptr<Prober> startProber(std::atomic<int>* changes = nullptr,
                                    uint16_t port_ceiling = 61000) {
  ProberOptions o;
  o.node = "n1";
  o.port_ceiling = port_ceiling;
  o.on_change = [changes] {
    if (changes) ++*changes;
  };
  auto p = Prober::start(o);
  EXPECT_TRUE(p.isOk());
  return std::move(*p);
}

TEST(ProberTest, TcpPassesAndARefusedConnectionFails) {
  auto p = startProber();
  uint16_t port;
  {
    TestServer tcp(TestServer::Kind::kTcp);
    port = tcp.port();
    p->setTargets(stateFor(port, HealthCheckKind::kTcp));
    const TargetStatus s = waitFor(*p, HealthStatus::kHealthy);
    EXPECT_EQ(s.key.backend, "127.0.0.1:" + std::to_string(port));
  }
  const TargetStatus s = waitFor(*p, HealthStatus::kUnhealthy);
  EXPECT_EQ(s.detail, "connect: Connection refused");
  EXPECT_GT(p->counters().passed, 0u);
  EXPECT_GT(p->counters().failed, 0u);
}

// The datapath steers replies to its SNAT ports to the workers: a probe's
// source port stays below them, even where the kernel's ephemeral range
// overlaps them.
TEST(ProberTest, SourcePortsStayBelowTheCeiling) {
  std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
  int lo = 0, hi = 0;
  ASSERT_TRUE(range >> lo >> hi);
  const int ceiling = std::min(lo + 50, hi);  // as if the SNAT ports started there
  auto p = startProber(nullptr, static_cast<uint16_t>(ceiling));
  TestServer tcp(TestServer::Kind::kTcp);
  p->setTargets(stateFor(tcp.port(), HealthCheckKind::kTcp));
  waitFor(*p, HealthStatus::kHealthy);
  EXPECT_GE(tcp.maxPeerPort(), lo);
  EXPECT_LT(tcp.maxPeerPort(), ceiling);
}

TEST(ProberTest, HttpStatusDecides) {
  std::atomic<int> changes{0};
  auto p = startProber(&changes);
  TestServer http(TestServer::Kind::kHttp);
  p->setTargets(stateFor(http.port(), HealthCheckKind::kHttp));
  waitFor(*p, HealthStatus::kHealthy);
  http.setStatus(503);
  EXPECT_EQ(waitFor(*p, HealthStatus::kUnhealthy).detail, "http status 503");
  http.setStatus(302);
  waitFor(*p, HealthStatus::kHealthy);
  EXPECT_GE(changes.load(), 2);
}

TEST(ProberTest, HttpsWithoutVerification) {
  auto p = startProber();
  TestServer https(TestServer::Kind::kHttps);
  p->setTargets(stateFor(https.port(), HealthCheckKind::kHttps, 500));
  waitFor(*p, HealthStatus::kHealthy);
  https.setStatus(500);
  EXPECT_EQ(waitFor(*p, HealthStatus::kUnhealthy).detail, "http status 500");
}

TEST(ProberTest, HttpsToAServerWithoutTlsFailsInTheHandshake) {
  auto p = startProber();
  TestServer tcp(TestServer::Kind::kTcp);  // accepts and closes
  p->setTargets(stateFor(tcp.port(), HealthCheckKind::kHttps, 500));
  const std::string detail = waitFor(*p, HealthStatus::kUnhealthy).detail;
  EXPECT_EQ(detail.rfind("tls handshake: ", 0), 0u) << detail;
  // Many handshakes into a closed connection: each fails with EPIPE or a
  // reset, none kills the process (SIGPIPE).
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (p->counters().failed < 15 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_GE(p->counters().failed, 15u);
}

TEST(ProberTest, SilenceIsATimeout) {
  auto p = startProber();
  TestServer silent(TestServer::Kind::kSilent);
  p->setTargets(stateFor(silent.port(), HealthCheckKind::kHttp, 50));
  EXPECT_EQ(waitFor(*p, HealthStatus::kUnhealthy).detail, "timeout after 50 ms");
}

TEST(ProberTest, DnsOverUdp) {
  auto p = startProber();
  uint16_t port;
  {
    TestServer dns(TestServer::Kind::kDns);
    port = dns.port();
    p->setTargets(stateFor(port, HealthCheckKind::kUdpDns));
    waitFor(*p, HealthStatus::kHealthy);
  }
  // Nothing listens: the ICMP port unreachable comes back as a refusal.
  EXPECT_EQ(waitFor(*p, HealthStatus::kUnhealthy).detail, "dns: Connection refused");
}

TEST(ProberTest, TargetsThatGoAwayAreDropped) {
  auto p = startProber();
  TestServer tcp(TestServer::Kind::kTcp);
  p->setTargets(stateFor(tcp.port(), HealthCheckKind::kTcp));
  waitFor(*p, HealthStatus::kHealthy);
  EXPECT_EQ(p->counters().targets, 1u);
  DesiredState none = stateFor(tcp.port(), HealthCheckKind::kNone);
  p->setTargets(none);
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (!p->statuses().empty() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(p->statuses().empty());
  EXPECT_EQ(p->counters().targets, 0u);
}

TEST(ProberTest, TargetsBeyondTheCapAreRefused) {
  ProberOptions o;
  o.node = "n1";
  o.max_targets = 2;
  auto p = Prober::start(o);
  ASSERT_TRUE(p.isOk());
  DesiredState d = stateFor(9, HealthCheckKind::kTcp);
  for (int i = 2; i <= 4; ++i) {
    BackendSpec b = d.services[0].backends[0];
    b.addr = *IpAddr::parse("127.0.0." + std::to_string(i));
    d.services[0].backends.push_back(b);
  }
  EXPECT_EQ((*p)->setTargets(d), 2u);
  EXPECT_EQ((*p)->counters().refused, 2u);
}

}  // namespace
}  // namespace flowlb::agent::health

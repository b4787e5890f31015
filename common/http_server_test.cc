#include "common/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace flowlb {
namespace {

// A blocking client socket with a receive deadline, closed on scope exit.
class Client {
 public:
  explicit Client(int port, int timeout_ms = 5000) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~Client() { ::close(fd_); }
  bool connected() const { return connected_; }
  bool send(const std::string& s) {
    return ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(s.size());
  }
  // Reads until the peer closes, a timeout, or `until` appears.
  std::string read(const std::string& until = "") {
    std::string out;
    char buf[4096];
    while (until.empty() || out.find(until) == std::string::npos) {
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        closed_ = n == 0;
        break;
      }
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }
  bool closedByPeer() const { return closed_; }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool closed_ = false;
};

std::unique_ptr<HttpServer> serve(HttpServerOptions o = {}) {
  o.address = "127.0.0.1:0";
  std::map<std::string, HttpHandler> routes;
  routes["/metrics"] = [](const HttpRequest&) {
    return HttpResponse{200, "text/plain", "flowlb_up 1\n"};
  };
  routes["/readyz"] = [](const HttpRequest& r) {
    return HttpResponse{503, "text/plain", "waiting " + r.query + "\n"};
  };
  auto s = HttpServer::start(o, routes);
  EXPECT_TRUE(s) << s.error();
  return std::move(*s);
}

TEST(HttpServerTest, ServesRoutesAndStatusCodes) {
  auto s = serve();
  Client c(s->port());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
  const std::string r = c.read("flowlb_up 1\n");
  EXPECT_EQ(r.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << r;
  EXPECT_NE(r.find("Content-Length: 12\r\n"), std::string::npos) << r;
  // Keep-alive: a second request on the same connection.
  ASSERT_TRUE(c.send("GET /readyz?exclude=x HTTP/1.1\r\n\r\n"));
  EXPECT_NE(c.read("waiting exclude=x\n").find("HTTP/1.1 503"), std::string::npos);
  ASSERT_TRUE(c.send("GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n"));
  const std::string nf = c.read();
  EXPECT_EQ(nf.rfind("HTTP/1.1 404", 0), 0u) << nf;
  EXPECT_TRUE(c.closedByPeer());
}

TEST(HttpServerTest, RefusesMethodsBodiesAndHugeHeads) {
  HttpServerOptions o;
  o.max_request_bytes = 1024;
  auto s = serve(o);
  {
    Client c(s->port());
    c.send("POST /metrics HTTP/1.1\r\n\r\n");
    EXPECT_EQ(c.read("\r\n\r\n").rfind("HTTP/1.1 405", 0), 0u);
  }
  {
    Client c(s->port());
    c.send("GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
    EXPECT_EQ(c.read().rfind("HTTP/1.1 413", 0), 0u);
  }
  {
    Client c(s->port());
    c.send("GET /metrics HTTP/1.1\r\nX: " + std::string(4000, 'a'));
    EXPECT_EQ(c.read().rfind("HTTP/1.1 431", 0), 0u);
  }
  {
    Client c(s->port());
    c.send("GET /metrics HTTP/1.1\r\n\r\n");  // the server still serves
    EXPECT_EQ(c.read("flowlb_up").rfind("HTTP/1.1 200", 0), 0u);
  }
  EXPECT_GE(s->stats().rejected, 3u);
}

// Regression (issue 17, finding 16): two slow HTTP connections blocked every
// scrape of the controller, four the agent's (prometheus-cpp's CivetWeb
// exposer gives each connection a thread from a pool of 2). Here 200
// connections trickle an unfinished request, and a scrape is still answered.
TEST(HttpServerTest, SlowlorisConnectionsDoNotBlockAScrape) {
  HttpServerOptions o;
  o.max_connections = 32;
  auto s = serve(o);
  std::vector<std::unique_ptr<Client>> slow;
  for (int i = 0; i < 200; ++i) {
    slow.push_back(std::make_unique<Client>(s->port()));
    ASSERT_TRUE(slow.back()->connected());
    slow.back()->send("GET /metrics HTTP/1.1\r\nHost: x\r\n");  // never finished
  }
  for (auto& c : slow) c->send("X-Slow: 1\r\n");
  Client scrape(s->port(), 3000);
  ASSERT_TRUE(scrape.connected());
  ASSERT_TRUE(scrape.send("GET /metrics HTTP/1.1\r\n\r\n"));
  const std::string r = scrape.read("flowlb_up 1\n");
  EXPECT_NE(r.find("flowlb_up 1"), std::string::npos) << "scrape not answered: '" << r << "'";
  const HttpServerStats st = s->stats();
  EXPECT_LE(st.open, o.max_connections);
  EXPECT_GE(st.evicted, 200u - o.max_connections);
}

// A connection that does not finish its request in time is closed, so slow
// clients cost a socket for a bounded time, never a thread.
TEST(HttpServerTest, UnfinishedRequestIsClosedAtItsDeadline) {
  HttpServerOptions o;
  o.request_timeout = std::chrono::milliseconds(200);
  auto s = serve(o);
  Client c(s->port(), 5000);
  c.send("GET /metrics HTTP/1.1\r\n");
  c.read();  // returns when the server closes it
  EXPECT_TRUE(c.closedByPeer());
  EXPECT_EQ(s->stats().timed_out, 1u);
}

TEST(HttpServerTest, ParseHostPortRefusesWithoutThrowing) {
  std::string host;
  uint16_t port = 0;
  EXPECT_TRUE(parseHostPort("0.0.0.0:9464", &host, &port));
  EXPECT_EQ(host, "0.0.0.0");
  EXPECT_EQ(port, 9464);
  EXPECT_TRUE(parseHostPort("[::1]:80", &host, &port));
  EXPECT_EQ(host, "::1");
  EXPECT_FALSE(parseHostPort("0.0.0.0:99999999999999999999999", &host, &port));
  EXPECT_FALSE(parseHostPort("0.0.0.0:65536", &host, &port));
  EXPECT_FALSE(parseHostPort("0.0.0.0:", &host, &port));
  EXPECT_FALSE(parseHostPort("9464", &host, &port));
  EXPECT_FALSE(parseHostPort("::1:80", &host, &port));
  EXPECT_FALSE(parseHostPort("host:8x", &host, &port));
}

}  // namespace
}  // namespace flowlb

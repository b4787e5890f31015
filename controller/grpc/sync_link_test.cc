// The control link end to end in one process: the controller's SyncServer
// and the agent's ControllerLink over loopback (port 0), plaintext and with
// mutual TLS.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "agent/control/controller_link.h"
#include "controller/grpc/sync_server.h"
#include "flowlb/v1/sync.pb.h"

namespace flowlb {
namespace {

using namespace std::chrono_literals;
using controller::DesiredBackend;
using controller::DesiredService;
using controller::NodeDesiredState;
using controller::Reconciled;
using controller::SyncServer;
using controller::SyncServerOptions;

IpAddr ip(const char* s) {
  return *IpAddr::parse(s);
}

Reconciled twoNodeState() {
  auto d = std::make_shared<DesiredService>();
  d->key = "shop/web/http/ipv4";
  d->vip = ip("192.0.2.10");
  d->port = 80;
  d->proto = 6;
  d->drain_timeout_s = 30;
  d->backends.push_back({ip("10.1.0.1"), 8080, controller::BackendState::kActive, "n1", "a"});
  d->backends.push_back({ip("10.1.0.2"), 8080, controller::BackendState::kDraining, "n2", "b"});
  d->announce_candidates = {"n1", "n2"};
  Reconciled r;
  for (const char* n : {"n1", "n2"}) {
    NodeDesiredState ns;
    ns.node = n;
    ns.services.push_back(d);
    r.nodes.push_back(ns);
  }
  return r;
}

std::unique_ptr<agent::ControllerLink> connect(int port, const std::string& node,
                                               agent::ControllerLinkOptions o = {}) {
  o.address = "127.0.0.1:" + std::to_string(port);
  if (o.tls_ca.empty()) o.plaintext = true;
  o.node_name = node;
  auto link = agent::ControllerLink::start(o, 0);
  EXPECT_TRUE(link) << link.error();
  return link ? std::move(*link) : nullptr;
}

// The newest state that arrives within `timeout`.
std::optional<agent::ReceivedState> next(agent::ControllerLink& l,
                                         std::chrono::milliseconds timeout = 3000ms) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::optional<agent::ReceivedState> got;
  while (std::chrono::steady_clock::now() < deadline) {
    l.wait(50ms);
    if (auto s = l.take()) return s;
  }
  return got;
}

Result<std::unique_ptr<SyncServer>> plaintextServer(std::function<bool()> is_leader) {
  SyncServerOptions so;
  so.address = "127.0.0.1:0";
  so.plaintext = true;
  return SyncServer::start(so, std::move(is_leader));
}

bool announces(const agent::ReceivedState& s) {
  return !s.announce.empty() && s.announce[0] == ip("192.0.2.10");
}

TEST(SyncLinkTest, DesiredStateReachesTheAgentAndTheAckComesBack) {
  auto server = plaintextServer(nullptr);
  ASSERT_TRUE(server) << server.error();
  (*server)->publish(twoNodeState());
  auto link = connect((*server)->port(), "n1");
  auto st = next(*link);
  ASSERT_TRUE(st);
  ASSERT_EQ(st->desired.services.size(), 1u);
  const agent::ServiceSpec& s = st->desired.services[0];
  EXPECT_EQ(s.name, "shop/web/http/ipv4");
  EXPECT_EQ(s.vip, ip("192.0.2.10"));
  EXPECT_EQ(s.port, 80);
  EXPECT_EQ(s.drain_timeout_s, 30u);
  ASSERT_EQ(s.backends.size(), 2u);
  EXPECT_EQ(s.backends[0].addr, ip("10.1.0.1"));
  EXPECT_EQ(s.backends[0].state, agent::BackendState::kActive);
  EXPECT_EQ(s.backends[1].state, agent::BackendState::kDraining);
  EXPECT_EQ(s.backends[1].zone, "b");
  EXPECT_TRUE(announces(*st));  // the only connected candidate
  EXPECT_TRUE(st->problems.empty());
  link->ack({.generation = st->desired.generation});
  for (int i = 0; i < 100; ++i) {
    auto agents = (*server)->agents();
    if (agents.size() == 1 && agents[0].acked_generation == st->desired.generation) break;
    std::this_thread::sleep_for(20ms);
  }
  auto agents = (*server)->agents();
  ASSERT_EQ(agents.size(), 1u);
  EXPECT_EQ(agents[0].node, "n1");
  EXPECT_EQ(agents[0].acked_generation, st->desired.generation);
  EXPECT_TRUE(link->connected());

  // A change is pushed with a higher generation.
  Reconciled r = twoNodeState();
  auto d = std::make_shared<DesiredService>(*r.nodes[0].services[0]);
  d->backends.pop_back();
  r.nodes[0].services[0] = d;
  (*server)->publish(r);
  auto st2 = next(*link);
  ASSERT_TRUE(st2);
  EXPECT_GT(st2->desired.generation, st->desired.generation);
  EXPECT_EQ(st2->desired.services[0].backends.size(), 1u);
}

TEST(SyncLinkTest, AnnouncerMovesWhenItsAgentGoesOrIsUnhealthyAndStaysPut) {
  auto server = plaintextServer(nullptr);
  ASSERT_TRUE(server) << server.error();
  (*server)->publish(twoNodeState());
  std::map<std::string, std::unique_ptr<agent::ControllerLink>> links;
  links["n1"] = connect((*server)->port(), "n1");
  links["n2"] = connect((*server)->port(), "n2");
  // Settle: both connected, exactly one announces.
  std::map<std::string, bool> ann;
  for (int i = 0; i < 60 && (*server)->agents().size() < 2; ++i) std::this_thread::sleep_for(50ms);
  ASSERT_EQ((*server)->agents().size(), 2u);
  std::this_thread::sleep_for(200ms);
  (*server)->publish(twoNodeState());
  for (auto& [n, l] : links) {
    auto st = next(*l);
    ASSERT_TRUE(st) << n;
    ann[n] = announces(*st);
  }
  ASSERT_NE(ann["n1"], ann["n2"]) << "exactly one node announces";
  const std::string first = ann["n1"] ? "n1" : "n2";
  const std::string other = first == "n1" ? "n2" : "n1";

  // Its agent goes away: the other announces, promptly.
  const auto t0 = std::chrono::steady_clock::now();
  links.erase(first);
  auto st = next(*links[other]);
  ASSERT_TRUE(st);
  EXPECT_TRUE(announces(*st));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1000ms);

  // It comes back: the VIP stays where it is (moving would cut NAT flows).
  links[first] = connect((*server)->port(), first);
  auto back = next(*links[first]);
  ASSERT_TRUE(back);
  EXPECT_FALSE(announces(*back));

  // The announcer reports its interface down: the VIP moves back.
  links[other]->setHealthy(false, "interface l0 is down");
  auto moved = next(*links[first]);
  ASSERT_TRUE(moved);
  EXPECT_TRUE(announces(*moved));
}

TEST(SyncLinkTest, NotLeaderRefusesToServe) {
  auto server = plaintextServer([] { return false; });
  ASSERT_TRUE(server);
  (*server)->publish(twoNodeState());
  auto link = connect((*server)->port(), "n1");
  EXPECT_FALSE(next(*link, 700ms));
  EXPECT_TRUE((*server)->agents().empty());
}

TEST(SyncLinkTest, MalformedPartsAreSkippedAndReported) {
  flowlb::v1::DesiredState pb;
  pb.set_generation(7);
  auto* good = pb.add_services();
  good->set_key("ok");
  good->mutable_vip()->set_addr(std::string("\xc0\x00\x02\x01", 4));
  good->set_port(80);
  good->set_protocol(flowlb::v1::PROTOCOL_TCP);
  auto* b = good->add_backends();
  b->mutable_address()->set_addr("xyz");  // 3 bytes: not an address
  b->set_port(80);
  auto* bad = pb.add_services();
  bad->set_key("bad");
  bad->mutable_vip()->set_addr("12345");
  bad->set_port(80);
  auto* proto = pb.add_services();
  proto->set_key("sctp");
  proto->mutable_vip()->set_addr(std::string("\xc0\x00\x02\x02", 4));
  proto->set_port(80);
  proto->set_protocol(flowlb::v1::PROTOCOL_UNSPECIFIED);
  const agent::ReceivedState st = agent::convertDesiredState(pb);
  EXPECT_EQ(st.desired.generation, 7u);
  ASSERT_EQ(st.desired.services.size(), 1u);
  EXPECT_EQ(st.desired.services[0].name, "ok");
  EXPECT_TRUE(st.desired.services[0].backends.empty());
  EXPECT_EQ(st.problems.size(), 3u);
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::system("command -v openssl >/dev/null") != 0) GTEST_SKIP() << "no openssl";
    char tmpl[] = "/tmp/flowlb-tls-XXXXXX";
    dir_ = mkdtemp(tmpl);
    const std::string d = dir_;
    const std::string cmd =
        "cd " + d +
        " && openssl req -x509 -newkey rsa:2048 -nodes -days 1 -keyout ca.key -out ca.crt "
        "-subj /CN=flowlb-ca"
        " && openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=controller"
        " && printf 'subjectAltName=IP:127.0.0.1\\n' > san.ext"
        " && openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 "
        "-out srv.crt -extfile san.ext"
        " && openssl req -newkey rsa:2048 -nodes -keyout cli.key -out cli.csr -subj /CN=n1"
        " && openssl x509 -req -in cli.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 "
        "-out cli.crt"
        " && openssl req -x509 -newkey rsa:2048 -nodes -days 1 -keyout evil.key -out evil.crt "
        "-subj /CN=evil) >/dev/null 2>&1";
    ASSERT_EQ(std::system(("(" + cmd).c_str()), 0);
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  std::string f(const char* name) { return dir_ + "/" + name; }
  std::string dir_;
};

TEST_F(TlsTest, MutualTlsAcceptsOnlyAgentsWithACertificateFromTheCa) {
  SyncServerOptions so;
  so.address = "127.0.0.1:0";
  so.tls_cert = f("srv.crt");
  so.tls_key = f("srv.key");
  so.tls_ca = f("ca.crt");
  auto server = SyncServer::start(so, nullptr);
  ASSERT_TRUE(server) << server.error();
  (*server)->publish(twoNodeState());

  agent::ControllerLinkOptions good;
  good.tls_ca = f("ca.crt");
  good.tls_cert = f("cli.crt");
  good.tls_key = f("cli.key");
  auto ok = connect((*server)->port(), "n1", good);
  ASSERT_TRUE(next(*ok)) << "an agent with a CA-signed certificate is served";

  agent::ControllerLinkOptions anonymous;
  anonymous.tls_ca = f("ca.crt");
  auto no_cert = connect((*server)->port(), "n2", anonymous);
  EXPECT_FALSE(next(*no_cert, 800ms)) << "an agent without a certificate is refused";

  agent::ControllerLinkOptions self_signed = good;
  self_signed.tls_cert = f("evil.crt");
  self_signed.tls_key = f("evil.key");
  auto evil = connect((*server)->port(), "n3", self_signed);
  EXPECT_FALSE(next(*evil, 800ms)) << "a certificate from another CA is refused";

  agent::ControllerLinkOptions wrong_ca = good;
  wrong_ca.tls_ca = f("evil.crt");  // does not trust the controller's certificate
  auto mitm = connect((*server)->port(), "n4", wrong_ca);
  EXPECT_FALSE(next(*mitm, 800ms)) << "the agent verifies the controller";
  EXPECT_EQ((*server)->agents().size(), 1u);
}

}  // namespace
}  // namespace flowlb

// Node identity on the control link (issue 17, findings 1 and 2), end to end
// in one process over loopback: the controller's SyncServer with mutual TLS
// and the certificate bootstrap, the agent's ControllerLink and
// CertificateBootstrap. Certificates come from common/pki.h.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>

#include "agent/control/certificate_bootstrap.h"
#include "agent/control/controller_link.h"
#include "common/pki.h"
#include "controller/grpc/sync_server.h"
#include "controller/identity/bootstrap_service.h"

namespace flowlb {
namespace {

using namespace std::chrono_literals;
using controller::NodeAuthorization;

IpAddr ip(const char* s) {
  return *IpAddr::parse(s);
}

// One Service per node, on its own VIP, that only that node may announce:
// a node's state is told apart by the VIP it is asked to announce.
controller::Reconciled state(const std::vector<std::string>& nodes) {
  controller::Reconciled r;
  int i = 0;
  for (const std::string& n : nodes) {
    auto d = std::make_shared<controller::DesiredService>();
    d->key = "shop/" + n + "-only/http/ipv4";
    d->vip = ip(("192.0.2." + std::to_string(10 + i++)).c_str());
    d->port = 80;
    d->proto = 6;
    d->backends.push_back({ip("10.1.0.1"), 8080, controller::BackendState::kActive, n, ""});
    d->announce_candidates =
        std::make_shared<const std::vector<std::string>>(std::vector<std::string>{n});
    r.vips.push_back(controller::VipCandidates::of(d->vip, {n}));
    r.desired.push_back(std::move(d));
    r.nodes.push_back(n);
  }
  return r;
}

// The VIPs a node was asked to announce, as text.
std::vector<std::string> announced(const agent::ReceivedState& s) {
  std::vector<std::string> out;
  for (const IpAddr& a : s.announce) out.push_back(a.toString());
  return out;
}

// Tokens are node names' keys: "token-<node>" is a valid token for <node>.
class FakeAuthorizer : public controller::NodeAuthorizer {
 public:
  NodeAuthorization authorize(const std::string& token, const std::string& node) override {
    if (token.rfind("token-", 0) != 0) {
      return {NodeAuthorization::Verdict::kUnauthenticated, "unknown token", ""};
    }
    const std::string owner = token.substr(6);
    if (owner != node) {
      return {NodeAuthorization::Verdict::kDenied,
              "the token's Pod runs on node '" + owner + "', not on '" + node + "'", owner};
    }
    return {NodeAuthorization::Verdict::kAllowed, "", owner};
  }
};

class IdentityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("flowlb-identity-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    auto ca = pki::createCa("flowlb test CA", 24h);
    ASSERT_TRUE(ca) << ca.error();
    ca_ = *ca;
    write("ca.crt", ca_.cert_pem);
    auto loaded = pki::CertificateAuthority::load(ca_.cert_pem, ca_.key_pem);
    ASSERT_TRUE(loaded);
    auto server = loaded->issueServer({"localhost"}, 24h);
    ASSERT_TRUE(server);
    server_ = *server;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }

  // A key and a CA-signed certificate for CN=cn, as files; returns link options.
  agent::ControllerLinkOptions certFor(const std::string& cn) {
    auto ca = pki::CertificateAuthority::load(ca_.cert_pem, ca_.key_pem);
    auto key = pki::generateKey();
    auto cert = ca->signNodeCsr(*pki::makeCsr(*key, cn), cn, 1h);
    EXPECT_TRUE(cert) << cert.error();
    agent::ControllerLinkOptions o;
    o.tls_ca = write("ca.crt", ca_.cert_pem);
    o.tls_cert = write(cn + ".crt", *cert);
    o.tls_key = write(cn + ".key", *key);
    return o;
  }

  std::unique_ptr<controller::SyncServer> startServer(controller::BootstrapService* bootstrap) {
    controller::SyncServerOptions so;
    so.address = "localhost:0";
    so.tls_cert_pem = server_.cert_pem;
    so.tls_key_pem = server_.key_pem;
    so.tls_ca = write("ca.crt", ca_.cert_pem);
    if (bootstrap) so.additional_services.push_back(bootstrap->service());
    auto s = controller::SyncServer::start(so, nullptr);
    EXPECT_TRUE(s) << s.error();
    (*s)->publish(state({"node-a", "node-b"}));
    return std::move(*s);
  }

  std::unique_ptr<agent::ControllerLink> link(int port, const std::string& node,
                                              agent::ControllerLinkOptions o) {
    o.address = "localhost:" + std::to_string(port);
    o.node_name = node;
    auto l = agent::ControllerLink::start(o, 0);
    EXPECT_TRUE(l) << l.error();
    agent::AgentCapabilities caps;  // the datapath is up: the link may say Hello
    caps.l2_announcement = true;
    (*l)->setCapabilities(caps);
    return std::move(*l);
  }

  static std::optional<agent::ReceivedState> next(agent::ControllerLink& l,
                                                  std::chrono::milliseconds timeout = 5000ms) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      l.wait(50ms);
      if (auto s = l.take()) return s;
    }
    return std::nullopt;
  }

  std::unique_ptr<controller::BootstrapService> bootstrapService(
      std::chrono::seconds validity = std::chrono::seconds(3600)) {
    controller::BootstrapOptions bo;
    bo.validity = validity;
    bo.on_result = [this](std::string_view r) {
      std::lock_guard<std::mutex> lock(results_mu_);
      ++results_[std::string(r)];
    };
    auto ca = pki::CertificateAuthority::load(ca_.cert_pem, ca_.key_pem);
    return std::make_unique<controller::BootstrapService>(std::move(*ca), &authorizer_, bo);
  }

  int results(const std::string& r) {
    std::lock_guard<std::mutex> lock(results_mu_);
    return results_[r];
  }

  template <typename F>
  static bool eventually(F f, std::chrono::milliseconds timeout = 10000ms) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (f()) return true;
      std::this_thread::sleep_for(10ms);  // polling a condition with a deadline, not a sleep-sync
    }
    return f();
  }

  std::filesystem::path dir_;
  pki::KeyAndCert ca_, server_;
  FakeAuthorizer authorizer_;
  std::mutex results_mu_;
  std::map<std::string, int> results_;
};

// Regression (issue 17, finding 1): a client holding a valid certificate for
// node-b said Hello as node-a, received node-a's full desired state and
// cancelled the real node-a's stream (the newer stream wins). Now the Hello
// must name the certificate's node: the impostor gets nothing and node-a
// keeps its stream.
TEST_F(IdentityTest, ACertificateForOneNodeCannotSayHelloAsAnother) {
  auto server = startServer(nullptr);
  auto real_a = link(server->port(), "node-a", certFor("node-a"));
  auto first = next(*real_a);
  ASSERT_TRUE(first);
  EXPECT_EQ(announced(*first), std::vector<std::string>{"192.0.2.10"});

  auto impostor = link(server->port(), "node-a", certFor("node-b"));
  EXPECT_FALSE(next(*impostor, 1500ms)) << "node-b's certificate was served node-a's state";
  EXPECT_TRUE(real_a->connected());
  EXPECT_EQ(real_a->resets(), 0u) << "the impostor cut the real node-a's stream";
  const auto agents = server->agents();
  ASSERT_EQ(agents.size(), 1u);
  EXPECT_EQ(agents[0].node, "node-a");

  auto honest_b = link(server->port(), "node-b", certFor("node-b"));
  auto got = next(*honest_b);
  ASSERT_TRUE(got) << "the same certificate is served as its own node";
  EXPECT_EQ(announced(*got), std::vector<std::string>{"192.0.2.11"});
}

// With the bootstrap on the same port TLS only requests client
// certificates; the Sync stream itself still refuses a peer without one.
TEST_F(IdentityTest, WithTheBootstrapOnThePortSyncStillRequiresACertificate) {
  auto bootstrap = bootstrapService();
  auto server = startServer(bootstrap.get());
  agent::ControllerLinkOptions anonymous;
  anonymous.tls_ca = write("ca.crt", ca_.cert_pem);
  auto l = link(server->port(), "node-a", anonymous);
  EXPECT_FALSE(next(*l, 1500ms));
  EXPECT_TRUE(server->agents().empty());
}

// The whole bootstrap: the agent's token for its node buys a certificate for
// that node only, with which the Sync stream is served.
TEST_F(IdentityTest, BootstrapIssuesACertificateForTheTokensOwnNodeOnly) {
  auto bootstrap = bootstrapService();
  auto server = startServer(bootstrap.get());
  const auto start = [&](const std::string& node, const std::string& token) {
    agent::CertificateBootstrapOptions bo;
    bo.address = "localhost:" + std::to_string(server->port());
    bo.ca_pem = ca_.cert_pem;
    bo.token_file = write("token-file-" + node + "-" + token, token + "\n");
    bo.node_name = node;
    bo.backoff_initial = 50ms;
    bo.backoff_max = 200ms;
    auto b = agent::CertificateBootstrap::start(bo);
    EXPECT_TRUE(b) << b.error();
    return std::move(*b);
  };
  auto a = start("node-a", "token-node-a");
  ASSERT_TRUE(eventually([&] { return a->current() != nullptr; }));
  auto info = pki::inspect(a->current()->cert_pem);
  EXPECT_EQ(info->common_name, "node-a");

  agent::ControllerLinkOptions o;
  o.tls_ca = write("ca.crt", ca_.cert_pem);
  o.client_identity = [&a] { return a->current(); };
  auto l = link(server->port(), "node-a", o);
  auto got = next(*l);
  ASSERT_TRUE(got);
  EXPECT_EQ(announced(*got), std::vector<std::string>{"192.0.2.10"});

  // node-a's token asking for node-b: denied; a made-up token: unauthenticated.
  auto stolen = start("node-b", "token-node-a");
  auto forged = start("node-b", "forged");
  ASSERT_TRUE(
      eventually([&] { return results("denied") >= 1 && results("unauthenticated") >= 1; }));
  EXPECT_EQ(stolen->current(), nullptr);
  EXPECT_EQ(forged->current(), nullptr);
  auto bad_name = start("Node_A", "token-Node_A");
  ASSERT_TRUE(eventually([&] { return results("invalid") >= 1; }));
  EXPECT_EQ(bad_name->current(), nullptr);
  EXPECT_EQ(results("issued"), 1);
}

// Before its certificate expires the agent gets a new one (new key); the
// next stream uses it.
TEST_F(IdentityTest, TheAgentRenewsItsCertificateBeforeItExpires) {
  auto bootstrap = bootstrapService(std::chrono::seconds(2));
  auto server = startServer(bootstrap.get());
  agent::CertificateBootstrapOptions bo;
  bo.address = "localhost:" + std::to_string(server->port());
  bo.ca_pem = ca_.cert_pem;
  bo.token_file = write("token", "token-node-a");
  bo.node_name = "node-a";
  auto b = agent::CertificateBootstrap::start(bo);
  ASSERT_TRUE(b);
  ASSERT_TRUE(eventually([&] { return (*b)->issued() >= 1; }));
  const auto first = (*b)->current();
  ASSERT_TRUE(eventually([&] { return (*b)->issued() >= 2; }));
  EXPECT_NE((*b)->current()->key_pem, first->key_pem);
  agent::ControllerLinkOptions o;
  o.tls_ca = write("ca.crt", ca_.cert_pem);
  o.client_identity = [&b] { return (*b)->current(); };
  auto l = link(server->port(), "node-a", o);
  EXPECT_TRUE(next(*l));
}

}  // namespace
}  // namespace flowlb

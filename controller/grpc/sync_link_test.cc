// The control link end to end in one process: the controller's SyncServer
// and the agent's ControllerLink over loopback (port 0), plaintext and with
// mutual TLS. Every wait is on an event: a state arriving at the agent, an
// acknowledgement, a connection or a refusal counted by the server.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "agent/announce/bgp/routes.h"
#include "agent/control/controller_link.h"
#include "common/version.h"
#include "controller/grpc/sync_server.h"
#include "flowlb/v1/sync.grpc.pb.h"

namespace flowlb {
namespace {

using namespace std::chrono_literals;
using controller::AgentStatus;
using controller::DesiredBackend;
using controller::DesiredService;
using controller::Reconciled;
using controller::SyncServer;
using controller::SyncServerOptions;
namespace pb = flowlb::v1;

IpAddr ip(const char* s) {
  return *IpAddr::parse(s);
}

// `n` services on nodes n1 and n2, each with `backends` endpoints.
Reconciled state(int n = 1, int backends = 2, std::vector<std::string> nodes = {"n1", "n2"}) {
  Reconciled r;
  auto all = std::make_shared<const std::vector<std::string>>(nodes);
  for (int i = 0; i < n; ++i) {
    auto d = std::make_shared<DesiredService>();
    d->key = "shop/web" + std::to_string(i) + "/http/ipv4";
    d->vip = ip(("192.0.2." + std::to_string(10 + i)).c_str());
    d->port = 80;
    d->proto = 6;
    d->drain_timeout_s = 30;
    for (int b = 0; b < backends; ++b) {
      d->backends.push_back(
          {ip(("10.1." + std::to_string(i) + "." + std::to_string(b + 1)).c_str()), 8080,
           b == 1 ? controller::BackendState::kDraining : controller::BackendState::kActive,
           "n" + std::to_string(b % 2 + 1), b == 1 ? "b" : "a"});
    }
    d->announce_candidates = all;
    r.vips.push_back({d->vip, all});
    r.desired.push_back(std::move(d));
  }
  r.nodes = std::move(nodes);
  return r;
}

SyncServerOptions plaintextOptions() {
  SyncServerOptions so;
  so.address = "127.0.0.1:0";
  so.plaintext = true;
  so.distribution.settle = 0ms;  // tests decide who is live themselves
  return so;
}

std::unique_ptr<SyncServer> startServer(SyncServerOptions so = plaintextOptions(),
                                        std::function<bool()> is_leader = nullptr) {
  auto s = SyncServer::start(so, std::move(is_leader));
  EXPECT_TRUE(s) << s.error();
  return s ? std::move(*s) : nullptr;
}

// What an agent whose datapath is up says it can do.
agent::AgentCapabilities capabilities() {
  agent::AgentCapabilities c;
  c.l2_announcement = true;
  c.af_xdp_copy = true;
  c.xdp_native = true;
  c.max_maglev_table_size = 1u << 24;
  c.conntrack_capacity = 1u << 20;
  return c;
}

std::unique_ptr<agent::ControllerLink> connect(int port, const std::string& node,
                                               agent::ControllerLinkOptions o = {},
                                               bool datapath_up = true) {
  if (o.address.empty()) o.address = "127.0.0.1:" + std::to_string(port);
  if (o.tls_ca.empty()) o.plaintext = true;
  o.node_name = node;
  auto link = agent::ControllerLink::start(o, 0);
  EXPECT_TRUE(link) << link.error();
  if (link && datapath_up) (*link)->setCapabilities(capabilities());
  return link ? std::move(*link) : nullptr;
}

// The newest state that arrives within `timeout` (the link's own
// notification, not polling).
std::optional<agent::ReceivedState> next(agent::ControllerLink& l,
                                         std::chrono::milliseconds timeout = 5000ms) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto s = l.take()) return s;
    l.wait(std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                 std::chrono::steady_clock::now()));
  }
  return l.take();
}

// Applies (as the agent's main loop does) and waits until the server has
// the acknowledgement.
void applyAndWait(SyncServer& server, agent::ControllerLink& link, const std::string& node,
                  const agent::ReceivedState& st) {
  link.ack({st.desired.generation, true, "", {}});
  ASSERT_TRUE(server.waitFor(
      [&](const std::vector<AgentStatus>& agents) {
        for (const AgentStatus& a : agents) {
          if (a.node == node && a.acked_generation == st.desired.generation) return true;
        }
        return false;
      },
      5000ms))
      << node << " never acknowledged " << st.desired.generation;
}

bool announces(const agent::ReceivedState& s, const char* vip = "192.0.2.10") {
  return std::find(s.announce.begin(), s.announce.end(), ip(vip)) != s.announce.end();
}

uint64_t bytesTo(SyncServer& server, const std::string& node) {
  for (const AgentStatus& a : server.agents()) {
    if (a.node == node) return a.bytes_sent;
  }
  return 0;
}

TEST(SyncLinkTest, DesiredStateReachesTheAgentAndTheAckComesBack) {
  auto server = startServer();
  server->publish(state());
  auto link = connect(server->port(), "n1");
  auto st = next(*link);
  ASSERT_TRUE(st);
  ASSERT_EQ(st->desired.services.size(), 1u);
  const agent::ServiceSpec& s = st->desired.services[0];
  EXPECT_EQ(s.name, "shop/web0/http/ipv4");
  EXPECT_EQ(s.vip, ip("192.0.2.10"));
  EXPECT_EQ(s.port, 80);
  EXPECT_EQ(s.drain_timeout_s, 30u);
  ASSERT_EQ(s.backends.size(), 2u);
  EXPECT_EQ(s.backends[0].addr, ip("10.1.0.1"));
  EXPECT_EQ(s.backends[0].state, agent::BackendState::kActive);
  EXPECT_EQ(s.backends[1].state, agent::BackendState::kDraining);
  EXPECT_EQ(s.backends[1].zone, "b");
  EXPECT_TRUE(announces(*st));  // the only live candidate
  EXPECT_TRUE(st->problems.empty());
  applyAndWait(*server, *link, "n1", *st);
  EXPECT_TRUE(link->connected());

  // A change is pushed with a higher generation, as a delta.
  Reconciled r = state();
  auto d = std::make_shared<DesiredService>(*r.desired[0]);
  d->backends.pop_back();
  r.desired[0] = d;
  server->publish(r);
  auto st2 = next(*link);
  ASSERT_TRUE(st2);
  EXPECT_GT(st2->desired.generation, st->desired.generation);
  EXPECT_EQ(st2->desired.services[0].backends.size(), 1u);
  EXPECT_EQ(server->counters().states_incremental, 1u);
}

// Issue 18: the Hello's capabilities were constants written before the
// datapath existed. The link now says Hello once the datapath has said what
// it did, and the controller keeps what it said (version, L2, conntrack).
TEST(SyncLinkTest, TheHelloWaitsForTheDatapathAndSaysWhatItCanDo) {
  auto server = startServer();
  server->publish(state());
  auto link = connect(server->port(), "n1", {}, /*datapath_up=*/false);
  const auto greeted = [](const std::vector<AgentStatus>& agents) { return !agents.empty(); };
  EXPECT_FALSE(server->waitFor(greeted, 300ms)) << "a Hello before the datapath was up";
  agent::AgentCapabilities c = capabilities();
  c.l2_announcement = false;  // no announce interface on this node
  c.conntrack_capacity = 4096;
  link->setCapabilities(c);
  ASSERT_TRUE(server->waitFor(greeted, 5000ms));
  const AgentStatus a = server->agents().at(0);
  EXPECT_EQ(a.agent_version, buildVersion());
  EXPECT_FALSE(a.l2_announcement);
  EXPECT_EQ(a.conntrack_capacity, 4096u);
  EXPECT_TRUE(a.incremental);
  EXPECT_TRUE(next(*link)) << "no desired state after the Hello";
}

// Issue 13.1: every change sent the full state to every agent.
TEST(SyncLinkTest, EachAgentGetsItsOwnBgpPeersAndBgpVipsAreNotArped) {
  auto server = startServer();
  auto link1 = connect(server->port(), "n1");
  auto link2 = connect(server->port(), "n2");
  controller::BgpPeerSpec tor_a;
  tor_a.name = "tor-a";
  tor_a.address = ip("10.0.0.1");
  tor_a.peer_asn = 65000;
  tor_a.local_asn = 65001;
  tor_a.node_selector = {{"rack", "a"}};
  controller::BgpPeerSpec tor_b = tor_a;
  tor_b.name = "tor-b";
  tor_b.address = ip("10.0.1.1");
  tor_b.node_selector = {{"rack", "b"}};
  controller::BgpAdvertisementSpec ad;
  ad.route.name = "public";
  ad.pools = {"public"};
  Reconciled r = state();
  r.bgp = std::make_shared<const controller::BgpDesired>(controller::planBgp(
      {tor_a, tor_b}, {ad}, {{"public", {}}}, {{"n1", {{"rack", "a"}}}, {"n2", {{"rack", "b"}}}},
      {{ip("192.0.2.10"), "public"}}));
  server->publish(r);
  for (auto [link, node, peer] :
       {std::tuple{link1.get(), "n1", "tor-a"}, std::tuple{link2.get(), "n2", "tor-b"}}) {
    // Each state is acknowledged, as the agent does, until the one with peers.
    std::optional<agent::ReceivedState> st;
    for (int i = 0; i < 4 && !(st && st->bgp && !st->bgp->peers.empty()); ++i) {
      st = next(*link);
      ASSERT_TRUE(st) << node << " got no state";
      applyAndWait(*server, *link, node, *st);
    }
    ASSERT_TRUE(st->bgp) << node << " got no BGP configuration";
    ASSERT_EQ(st->bgp->peers.size(), 1u) << node;
    EXPECT_EQ(st->bgp->peers[0].name, peer);
    EXPECT_FALSE(announces(*st)) << "a BGP VIP is answered on L2 by no one";
    auto routes = agent::bgp::routesPerPeer(*st->bgp, {ip("192.0.2.10")});
    EXPECT_EQ(routes[peer].size(), 1u) << node << " announces the VIP to " << peer;
  }
}

TEST(SyncLinkTest, AnEndpointChangeIsAnIncrementalUpdateAFractionOfTheFullState) {
  auto server = startServer();
  server->publish(state(200, 10));
  auto link = connect(server->port(), "n1");
  auto full = next(*link);
  ASSERT_TRUE(full);
  ASSERT_EQ(full->desired.services.size(), 200u);
  applyAndWait(*server, *link, "n1", *full);
  const uint64_t full_bytes = bytesTo(*server, "n1");

  Reconciled r = state(200, 10);
  auto d = std::make_shared<DesiredService>(*r.desired[17]);
  d->backends[3].state = controller::BackendState::kDraining;
  r.desired[17] = d;
  server->publish(r);
  auto delta = next(*link);
  ASSERT_TRUE(delta);
  // The agent gets the complete state, built from what it had.
  ASSERT_EQ(delta->desired.services.size(), 200u);
  for (const agent::ServiceSpec& s : delta->desired.services) {
    if (s.name == "shop/web17/http/ipv4") {
      EXPECT_EQ(s.backends.at(3).state, agent::BackendState::kDraining);
    }
  }
  applyAndWait(*server, *link, "n1", *delta);
  const uint64_t delta_bytes = bytesTo(*server, "n1") - full_bytes;
  EXPECT_LT(delta_bytes, 400u) << "one service of ten backends";
  EXPECT_LT(delta_bytes * 100, full_bytes);
  const auto c = server->counters();
  EXPECT_EQ(c.states_full, 1u);
  EXPECT_EQ(c.states_incremental, 1u);

  // The same content again (a full reconcile's new objects): nothing sent.
  server->publish(r);
  const uint64_t g = server->generation();
  server->publish(state(200, 10));  // back as it was: one more delta
  auto back = next(*link);
  ASSERT_TRUE(back);
  EXPECT_GT(back->desired.generation, g);
}

TEST(SyncLinkTest, AnnouncerMovesWhenItsAgentGoesOrIsUnhealthyAndStaysPut) {
  auto server = startServer();
  server->publish(state());
  std::map<std::string, std::unique_ptr<agent::ControllerLink>> links;
  std::map<std::string, agent::ReceivedState> last;
  for (const char* n : {"n1", "n2"}) {
    links[n] = connect(server->port(), n);
    auto st = next(*links[n]);
    ASSERT_TRUE(st) << n;
    applyAndWait(*server, *links[n], n, *st);
    last[n] = *st;
  }
  // The first agent took the VIP; the second one coming did not move it.
  auto announcer = server->announcers().at(ip("192.0.2.10"));
  ASSERT_EQ(announcer, "n1");
  EXPECT_TRUE(announces(last["n1"]));
  EXPECT_FALSE(announces(last["n2"]));

  // Its agent goes away: the other announces, without a sleep.
  links.erase("n1");
  auto st = next(*links["n2"]);
  ASSERT_TRUE(st);
  EXPECT_TRUE(announces(*st));
  applyAndWait(*server, *links["n2"], "n2", *st);

  // It comes back: the VIP stays where it is (moving would cut NAT flows).
  links["n1"] = connect(server->port(), "n1");
  auto back = next(*links["n1"]);
  ASSERT_TRUE(back);
  EXPECT_FALSE(announces(*back));
  applyAndWait(*server, *links["n1"], "n1", *back);
  EXPECT_EQ(server->announcers().at(ip("192.0.2.10")), "n2");

  // The announcer reports its interface down: the VIP moves back.
  links["n2"]->setHealthy(false, "interface l0 is down");
  auto moved = next(*links["n1"]);
  ASSERT_TRUE(moved);
  EXPECT_TRUE(announces(*moved));
}

// Issue 17.3: connection churn at 55/s made the controller resend 316 full
// states in 10 s to an agent that changed nothing. Connects and disconnects
// that move no VIP send nothing to anyone.
TEST(SyncLinkTest, ConnectionChurnSendsNothingToOtherAgents) {
  auto server = startServer();
  server->publish(state(20, 4));
  auto steady = connect(server->port(), "n1");
  auto st = next(*steady);
  ASSERT_TRUE(st);
  applyAndWait(*server, *steady, "n1", *st);
  const uint64_t bytes = bytesTo(*server, "n1");
  const uint64_t generation = server->generation();
  const uint64_t resets = server->streamResets();
  for (int i = 0; i < 30; ++i) {
    // n2 is a candidate, but n1 keeps every VIP (sticky); n9 is no ready node.
    for (const char* n : {"n2", "n9"}) {
      auto churn = connect(server->port(), n);
      auto got = next(*churn);
      ASSERT_TRUE(got);
      applyAndWait(*server, *churn, n, *got);
    }
  }
  ASSERT_TRUE(server->waitUntil([&] { return server->streamResets() >= resets + 60; }, 5000ms));
  EXPECT_EQ(bytesTo(*server, "n1"), bytes) << "nothing more was sent to the steady agent";
  EXPECT_EQ(server->generation(), generation);
  EXPECT_FALSE(steady->take());
}

TEST(SyncLinkTest, FollowersSendAgentsToTheLeaderAndServeNothing) {
  auto leader = startServer();
  leader->publish(state());
  SyncServerOptions fo = plaintextOptions();
  const std::string leader_address = "127.0.0.1:" + std::to_string(leader->port());
  fo.leader_address = [leader_address] { return leader_address; };
  auto follower = startServer(fo, [] { return false; });
  follower->publish(state());
  auto link = connect(follower->port(), "n1");
  auto st = next(*link);
  ASSERT_TRUE(st) << "sent on to the leader";
  applyAndWait(*leader, *link, "n1", *st);
  EXPECT_TRUE(follower->agents().empty());
  EXPECT_GE(follower->counters().not_leader, 1u);
  // A follower that does not know the leader serves nothing either.
  auto lost = startServer(plaintextOptions(), [] { return false; });
  lost->publish(state());
  auto orphan = connect(lost->port(), "n2");
  ASSERT_TRUE(lost->waitUntil([&] { return lost->counters().not_leader >= 2; }, 5000ms));
  EXPECT_FALSE(orphan->take());
  EXPECT_TRUE(lost->agents().empty());
}

// Issue 17.3: streams that never said Hello pinned a thread each (1,000 of
// them took the controller to 1,013 threads).
TEST(SyncLinkTest, StreamsWithoutHelloAreClosedAndStreamsAreLimited) {
  SyncServerOptions so = plaintextOptions();
  so.hello_timeout = 300ms;
  so.max_streams_per_source = 3;
  auto server = startServer(so);
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(server->port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = pb::FlowlbControl::NewStub(channel);
  struct Raw {
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReaderWriter<pb::AgentMessage, pb::ControllerMessage>> s;
  };
  std::vector<std::unique_ptr<Raw>> raws;
  for (int i = 0; i < 5; ++i) {
    raws.push_back(std::make_unique<Raw>());
    raws.back()->s = stub->Sync(&raws.back()->ctx);
  }
  ASSERT_TRUE(server->waitUntil([&] { return server->counters().refused_streams == 2; }, 5000ms));
  ASSERT_TRUE(server->waitUntil([&] { return server->counters().hello_timeouts == 3; }, 5000ms));
  int exhausted = 0, deadline = 0;
  for (auto& r : raws) {
    pb::ControllerMessage m;
    while (r->s->Read(&m)) {
    }
    const grpc::Status st = r->s->Finish();
    exhausted += st.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED;
    deadline += st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
  }
  EXPECT_EQ(exhausted, 2);
  EXPECT_EQ(deadline, 3);
  // Room again: a real agent is served.
  server->publish(state());
  auto link = connect(server->port(), "n1");
  EXPECT_TRUE(next(*link));
}

// Issue 17.3: peer-supplied strings went verbatim into the log (a node name
// with a newline forged a line; 200 acks of 1 MiB wrote 207 MiB of log).
TEST(SyncLinkTest, NodeNamesAreValidatedAndPeerTextIsEscapedAndBoundedInLogs) {
  std::ostringstream log;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(log);
  sink->set_pattern(">> %v");
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink));
  auto server = startServer();
  server->publish(state());
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(server->port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = pb::FlowlbControl::NewStub(channel);
  {
    grpc::ClientContext ctx;
    auto s = stub->Sync(&ctx);
    pb::AgentMessage hello;
    hello.mutable_hello()->set_node_name("n1\n[info] event=forged");
    ASSERT_TRUE(s->Write(hello));
    pb::ControllerMessage m;
    EXPECT_FALSE(s->Read(&m));
    EXPECT_EQ(s->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext ctx;
    auto s = stub->Sync(&ctx);
    pb::AgentMessage hello;
    hello.mutable_hello()->set_node_name("n1");
    ASSERT_TRUE(s->Write(hello));
    pb::ControllerMessage m;
    ASSERT_TRUE(s->Read(&m));
    pb::AgentMessage ack;
    ack.mutable_ack()->set_generation(m.desired_state().generation());
    ack.mutable_ack()->set_result(pb::ACK_RESULT_REJECTED);
    ack.mutable_ack()->set_error_message(std::string(1 << 20, 'x') + "\n[error] forged");
    ASSERT_TRUE(s->Write(ack));
    ASSERT_TRUE(server->waitFor(
        [](const std::vector<AgentStatus>& a) { return !a.empty() && !a[0].last_error.empty(); },
        5000ms));
    ctx.TryCancel();
  }
  spdlog::set_default_logger(previous);
  const std::string text = log.str();
  EXPECT_EQ(text.find("[error] forged"), std::string::npos) << "cut off, 1 MiB in";
  EXPECT_NE(text.find("event=agent_refused reason=bad_hello"), std::string::npos);
  EXPECT_NE(text.find("n1\\n[info] event=forged"), std::string::npos) << "escaped, on its line";
  EXPECT_LT(text.size(), 8192u) << "1 MiB of peer text did not reach the log";
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    EXPECT_EQ(line.rfind(">> ", 0), 0u) << "a line no log call began: " << line.substr(0, 80);
  }
}

TEST(SyncLinkTest, MalformedPartsAreSkippedAndReported) {
  pb::DesiredState ds;
  ds.set_generation(7);
  auto* good = ds.add_services();
  good->set_key("ok");
  good->mutable_vip()->set_addr(std::string("\xc0\x00\x02\x01", 4));
  good->set_port(80);
  good->set_protocol(pb::PROTOCOL_TCP);
  auto* b = good->add_backends();
  b->mutable_address()->set_addr("xyz");  // 3 bytes: not an address
  b->set_port(80);
  auto* bad = ds.add_services();
  bad->set_key("bad");
  bad->mutable_vip()->set_addr("12345");
  bad->set_port(80);
  auto* proto = ds.add_services();
  proto->set_key("sctp");
  proto->mutable_vip()->set_addr(std::string("\xc0\x00\x02\x02", 4));
  proto->set_port(80);
  proto->set_protocol(pb::PROTOCOL_UNSPECIFIED);
  const agent::ReceivedState st = agent::convertDesiredState(ds);
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

// No state, after the link has failed (and retried) at least twice.
bool refused(agent::ControllerLink& l) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (l.resets() < 2 && std::chrono::steady_clock::now() < deadline) l.wait(50ms);
  return l.resets() >= 2 && !l.take();
}

TEST_F(TlsTest, MutualTlsAcceptsOnlyAgentsWithACertificateFromTheCa) {
  SyncServerOptions so = plaintextOptions();
  so.plaintext = false;
  so.tls_cert = f("srv.crt");
  so.tls_key = f("srv.key");
  so.tls_ca = f("ca.crt");
  auto server = startServer(so);
  server->publish(state());

  agent::ControllerLinkOptions good;
  good.tls_ca = f("ca.crt");
  good.tls_cert = f("cli.crt");
  good.tls_key = f("cli.key");
  good.backoff_initial = 20ms;
  good.backoff_max = 50ms;
  auto ok = connect(server->port(), "n1", good);
  ASSERT_TRUE(next(*ok)) << "an agent with a CA-signed certificate is served";

  agent::ControllerLinkOptions anonymous = good;
  anonymous.tls_cert.clear();
  anonymous.tls_key.clear();
  auto no_cert = connect(server->port(), "n2", anonymous);
  EXPECT_TRUE(refused(*no_cert)) << "an agent without a certificate is refused";

  agent::ControllerLinkOptions self_signed = good;
  self_signed.tls_cert = f("evil.crt");
  self_signed.tls_key = f("evil.key");
  auto evil = connect(server->port(), "n3", self_signed);
  EXPECT_TRUE(refused(*evil)) << "a certificate from another CA is refused";

  agent::ControllerLinkOptions wrong_ca = good;
  wrong_ca.tls_ca = f("evil.crt");  // does not trust the controller's certificate
  auto mitm = connect(server->port(), "n4", wrong_ca);
  EXPECT_TRUE(refused(*mitm)) << "the agent verifies the controller";
  EXPECT_EQ(server->agents().size(), 1u);
}

}  // namespace
}  // namespace flowlb

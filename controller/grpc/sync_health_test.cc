// Health checks and Maglev fingerprints through the real SyncServer over
// loopback, with agents speaking the contract by hand (the agent's own
// prober is tested on its side): probers report a backend UNHEALTHY, and
// every agent then receives it as BACKEND_STATE_UNHEALTHY; a node that
// builds a different table is named. Every wait is on a state arriving or
// on the server's counters and feedback.
#include "controller/grpc/sync_health.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <condition_variable>
#include <map>
#include <mutex>

#include "common/health_probers.h"
#include "controller/grpc/sync_server.h"
#include "flowlb/v1/sync.grpc.pb.h"

namespace flowlb {
namespace {

using namespace std::chrono_literals;
using controller::DesiredService;
using controller::Reconciled;
using controller::ServiceFeedback;
using controller::SyncServer;
using controller::SyncServerOptions;
namespace pb = flowlb::v1;

constexpr const char* kKey = "shop/web/http/ipv4";

IpAddr ip(const char* s) {
  return *IpAddr::parse(s);
}

// One Service with a TCP health check and two backends, on n1..n3.
Reconciled state() {
  Reconciled r;
  std::vector<std::string> nodes = {"n1", "n2", "n3"};
  auto all = std::make_shared<const std::vector<std::string>>(nodes);
  auto d = std::make_shared<DesiredService>();
  d->key = kKey;
  d->vip = ip("192.0.2.10");
  d->port = 80;
  d->health.kind = controller::HealthCheckKind::kTcp;
  d->backends = {{ip("10.1.0.1"), 8080, controller::BackendState::kActive, "n1", ""},
                 {ip("10.1.0.2"), 8080, controller::BackendState::kActive, "n2", ""}};
  d->announce_candidates = all;
  r.vips.push_back({d->vip, all});
  r.desired.push_back(std::move(d));
  r.nodes = std::move(nodes);
  return r;
}

// An agent speaking the contract by hand: it keeps what it was sent
// (FULL and INCREMENTAL) and acknowledges every state.
class RawAgent {
 public:
  RawAgent(int port, const std::string& node, bool prints = false) : node_(node) {
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                   grpc::InsecureChannelCredentials());
    stub_ = pb::FlowlbControl::NewStub(channel_);
    ctx_.set_deadline(std::chrono::system_clock::now() + 30s);  // a hang fails, not blocks
    stream_ = stub_->Sync(&ctx_);
    pb::AgentMessage hello;
    pb::Hello* h = hello.mutable_hello();
    h->set_node_name(node);
    h->set_agent_version("test");
    h->add_capabilities(pb::CAPABILITY_INCREMENTAL_UPDATES);
    h->add_capabilities(pb::CAPABILITY_HEALTH_CHECKS);
    if (prints) h->add_capabilities(pb::CAPABILITY_MAGLEV_FINGERPRINTS);
    EXPECT_TRUE(stream_->Write(hello));
  }
  ~RawAgent() {
    ctx_.TryCancel();
    pb::ControllerMessage m;
    while (stream_->Read(&m)) {
    }
    stream_->Finish();
  }

  // Reads (and acknowledges) states until `done` holds; false when the
  // stream ends first.
  bool until(const std::function<bool(const RawAgent&)>& done, uint64_t fingerprint = 0) {
    while (!done(*this)) {
      pb::ControllerMessage m;
      if (!stream_->Read(&m)) return false;
      if (!m.has_desired_state()) continue;
      const pb::DesiredState& ds = m.desired_state();
      if (ds.kind() == pb::DESIRED_STATE_KIND_FULL) services_.clear();
      for (const pb::VirtualService& vs : ds.services()) services_[vs.key()] = vs;
      for (const std::string& k : ds.removed_service_keys()) services_.erase(k);
      if (ds.has_health_probers()) {
        probers_.assign(ds.health_probers().nodes().begin(), ds.health_probers().nodes().end());
      }
      pb::AgentMessage ack;
      ack.mutable_ack()->set_generation(ds.generation());
      ack.mutable_ack()->set_result(pb::ACK_RESULT_APPLIED);
      if (fingerprint != 0) {
        for (const auto& [key, vs] : services_) {
          pb::MaglevFingerprint* f = ack.mutable_ack()->add_maglev_fingerprints();
          f->set_service_key(key);
          f->set_fingerprint(fingerprint);
          f->set_table_size(vs.maglev_table_size());
          f->set_backend_count(static_cast<uint32_t>(vs.backends_size()));
        }
      }
      if (!stream_->Write(ack)) return false;
    }
    return true;
  }
  // Report.backend_health: every backend this node probes with `status`
  // for the ones listed and HEALTHY for the others.
  void report(const std::map<std::string, pb::HealthStatus>& status) {
    pb::AgentMessage m;
    pb::Report* r = m.mutable_report();
    r->mutable_datapath()->set_state(pb::DATAPATH_STATE_HEALTHY);
    for (const char* b : {"10.1.0.1:8080", "10.1.0.2:8080"}) {
      if (!isProber(probers_, 0, node_, kKey, b)) continue;
      pb::BackendHealth* h = r->add_backend_health();
      h->set_service_key(kKey);
      h->set_backend_key(b);
      auto it = status.find(b);
      h->set_status(it == status.end() ? pb::HEALTH_STATUS_HEALTHY : it->second);
      if (h->status() == pb::HEALTH_STATUS_UNHEALTHY) h->set_detail("connect: Connection refused");
    }
    EXPECT_TRUE(stream_->Write(m));
  }

  const std::vector<std::string>& probers() const { return probers_; }
  // The state of backend `i` of the Service as this node has it.
  pb::BackendState backendState(int i) const {
    auto it = services_.find(kKey);
    if (it == services_.end() || it->second.backends_size() <= i) return pb::BackendState(-1);
    return it->second.backends(i).state();
  }

 private:
  std::string node_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::FlowlbControl::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<pb::AgentMessage, pb::ControllerMessage>> stream_;
  std::map<std::string, pb::VirtualService> services_;
  std::vector<std::string> probers_;
};

// The feedback listener's latest word per Service.
struct Feedback {
  std::mutex mu;
  std::map<std::string, ServiceFeedback> last;
  bool has(const std::string& reason, const std::string& part = "") {
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& [k, f] : last) {
      for (const auto& e : f.health) {
        if (e.reason == reason && e.message.find(part) != std::string::npos) return true;
      }
    }
    return false;
  }
};

std::unique_ptr<SyncServer> start(Feedback* fb) {
  SyncServerOptions so;
  so.address = "127.0.0.1:0";
  so.plaintext = true;
  so.distribution.settle = 0ms;
  auto s = SyncServer::start(so, nullptr);
  EXPECT_TRUE(s) << s.error();
  if (!s) return nullptr;
  (*s)->onFeedback([fb](const std::map<std::string, ServiceFeedback>& changed) {
    std::lock_guard<std::mutex> lock(fb->mu);
    for (const auto& [k, f] : changed) fb->last[k] = f;
  });
  return std::move(*s);
}

bool allThree(const RawAgent& a) {
  return a.probers() == std::vector<std::string>{"n1", "n2", "n3"};
}

TEST(SyncHealthTest, AMajorityOfProbersTakesABackendDownOnEveryNodeAndItComesBack) {
  Feedback fb;
  auto server = start(&fb);
  ASSERT_TRUE(server);
  server->publish(state());
  std::vector<std::unique_ptr<RawAgent>> agents;
  for (const char* n : {"n1", "n2", "n3"}) {
    agents.push_back(std::make_unique<RawAgent>(server->port(), n));
  }
  // Every agent learns the same prober list (the three of them) and the check.
  for (auto& a : agents) {
    ASSERT_TRUE(a->until(allThree));
    ASSERT_EQ(a->backendState(0), pb::BACKEND_STATE_UNSPECIFIED);
  }
  // n1 and n2 cannot connect to 10.1.0.1; n3 can.
  agents[0]->report({{"10.1.0.1:8080", pb::HEALTH_STATUS_UNHEALTHY}});
  agents[1]->report({{"10.1.0.1:8080", pb::HEALTH_STATUS_UNHEALTHY}});
  agents[2]->report({});
  // Every node, the dissenting one too, gets it UNHEALTHY; the other stays.
  for (auto& a : agents) {
    ASSERT_TRUE(a->until(
        [](const RawAgent& r) { return r.backendState(0) == pb::BACKEND_STATE_UNHEALTHY; }));
    EXPECT_EQ(a->backendState(1), pb::BACKEND_STATE_UNSPECIFIED);
  }
  auto c = server->counters();
  EXPECT_EQ(c.health_down, 1u);
  EXPECT_EQ(c.backends_unhealthy, (std::map<std::string, uint64_t>{{kKey, 1}}));
  ASSERT_TRUE(server->waitUntil(
      [&] {
        return fb.has("BackendUnhealthy",
                      "backend 10.1.0.1:8080 failed its health check on 2 of 3 probing nodes "
                      "(n1: connect: Connection refused)");
      },
      5000ms));

  // It passes again on two of three: back on every node.
  agents[0]->report({});
  agents[1]->report({});
  for (auto& a : agents) {
    ASSERT_TRUE(a->until(
        [](const RawAgent& r) { return r.backendState(0) == pb::BACKEND_STATE_UNSPECIFIED; }));
  }
  EXPECT_EQ(server->counters().health_up, 1u);
  EXPECT_EQ(server->counters().backends_unhealthy, (std::map<std::string, uint64_t>{{kKey, 0}}));
  ASSERT_TRUE(server->waitUntil([&] { return fb.has("BackendHealthy", "10.1.0.1:8080"); }, 5000ms));
}

TEST(SyncHealthTest, EveryBackendDownFailsOpenWithAWarning) {
  Feedback fb;
  auto server = start(&fb);
  ASSERT_TRUE(server);
  server->publish(state());
  std::vector<std::unique_ptr<RawAgent>> agents;
  for (const char* n : {"n1", "n2", "n3"}) {
    agents.push_back(std::make_unique<RawAgent>(server->port(), n));
  }
  for (auto& a : agents) ASSERT_TRUE(a->until(allThree));
  for (auto& a : agents) {
    a->report({{"10.1.0.1:8080", pb::HEALTH_STATUS_UNHEALTHY},
               {"10.1.0.2:8080", pb::HEALTH_STATUS_UNHEALTHY}});
  }
  for (auto& a : agents) {
    ASSERT_TRUE(a->until([](const RawAgent& r) {
      return r.backendState(0) == pb::BACKEND_STATE_UNHEALTHY &&
             r.backendState(1) == pb::BACKEND_STATE_UNHEALTHY;
    }));
  }
  ASSERT_TRUE(server->waitUntil(
      [&] { return fb.has("AllBackendsUnhealthy", "every backend of port http (ipv4)"); }, 5000ms));
}

TEST(SyncHealthTest, AProberThatLeavesIsReplacedAndDoesNotFlipTheVerdict) {
  Feedback fb;
  auto server = start(&fb);
  ASSERT_TRUE(server);
  server->publish(state());
  std::vector<std::unique_ptr<RawAgent>> agents;
  for (const char* n : {"n1", "n2", "n3"}) {
    agents.push_back(std::make_unique<RawAgent>(server->port(), n));
  }
  for (auto& a : agents) ASSERT_TRUE(a->until(allThree));
  agents[0]->report({{"10.1.0.1:8080", pb::HEALTH_STATUS_UNHEALTHY}});
  agents[1]->report({{"10.1.0.1:8080", pb::HEALTH_STATUS_UNHEALTHY}});
  agents[2]->report({});
  for (auto& a : agents) {
    ASSERT_TRUE(a->until(
        [](const RawAgent& r) { return r.backendState(0) == pb::BACKEND_STATE_UNHEALTHY; }));
  }
  // n1 goes: the prober list loses it; one HEALTHY of two is no majority.
  agents[0].reset();
  for (int i = 1; i < 3; ++i) {
    ASSERT_TRUE(agents[i]->until([](const RawAgent& r) {
      return r.probers() == std::vector<std::string>{"n2", "n3"};
    }));
  }
  // n2 restarts its prober (UNKNOWN); n3 still passes it.
  agents[1]->report({{"10.1.0.1:8080", pb::HEALTH_STATUS_UNKNOWN}});
  agents[2]->report({});
  ASSERT_TRUE(server->waitUntil(
      [&] {
        const auto c = server->counters();
        return c.health_reports == 5 && c.health_reports_decided == 5;
      },
      5000ms));
  EXPECT_EQ(server->counters().health_up, 0u);
  EXPECT_EQ(server->counters().backends_unhealthy, (std::map<std::string, uint64_t>{{kKey, 1}}));
  EXPECT_EQ(agents[1]->backendState(0), pb::BACKEND_STATE_UNHEALTHY);
}

TEST(SyncHealthTest, NodesThatBuildDifferentTablesAreNamed) {
  Feedback fb;
  auto server = start(&fb);
  ASSERT_TRUE(server);
  server->publish(state());
  RawAgent a(server->port(), "n1", true), b(server->port(), "n2", true),
      odd(server->port(), "n3", true);
  // Each acks with its fingerprint; n3's differs.
  const auto seen = [](const RawAgent& r) { return r.backendState(0) != pb::BackendState(-1); };
  ASSERT_TRUE(a.until(seen, 0x1111));
  ASSERT_TRUE(b.until(seen, 0x1111));
  ASSERT_TRUE(odd.until(seen, 0x2222));
  // Later states (the prober list growing) are acknowledged the same way.
  ASSERT_TRUE(a.until(allThree, 0x1111));
  ASSERT_TRUE(b.until(allThree, 0x1111));
  ASSERT_TRUE(odd.until(allThree, 0x2222));
  ASSERT_TRUE(server->waitUntil([&] { return server->counters().maglev_mismatches == 1; }, 5000ms));
  ASSERT_TRUE(server->waitUntil(
      [&] {
        return fb.has("MaglevTableMismatch",
                      "nodes built different Maglev tables for shop/web/http/ipv4: n1, n2 built "
                      "0000000000001111");
      },
      5000ms));
}

// The server's health side keeps the reconcile's result: an endpoint change
// (the next revision, with its delta) patches it, verdicts included; a
// missed revision makes it take the next result whole.
TEST(SyncHealthTest, PatchesTheNextRevisionAndTakesAResultWholeAfterAGap) {
  using controller::BackendState;
  using controller::DesiredDelta;
  using controller::ProbeReport;
  using controller::ProbeStatus;
  controller::SyncHealth h(3);
  Reconciled r = state();
  r.revision = 7;
  EXPECT_FALSE(h.setReconciled(r)) << "the first result is taken whole";
  h.setProbers({"n1", "n2", "n3"});
  for (const char* n : {"n1", "n2", "n3"}) {
    h.report(n, {{{kKey, "10.1.0.1:8080"}, ProbeReport{ProbeStatus::kUnhealthy, "refused"}},
                 {{kKey, "10.1.0.2:8080"}, ProbeReport{ProbeStatus::kHealthy, ""}}});
  }
  ASSERT_TRUE(h.decide());

  // One more endpoint: a patch, and the down backend stays down in it.
  auto grown = std::make_shared<DesiredService>(*r.desired[0]);
  grown->backends.push_back({ip("10.1.0.3"), 8080, BackendState::kActive, "n3", ""});
  Reconciled next = r;
  next.revision = 8;
  next.desired = {grown};
  auto delta = std::make_shared<DesiredDelta>();
  delta->upserts = {grown};
  next.delta = delta;
  ASSERT_TRUE(h.setReconciled(next));
  ASSERT_EQ(h.patch().upserts.size(), 1u);
  const DesiredService& sent = *h.patch().upserts[0];
  ASSERT_EQ(sent.backends.size(), 3u);
  EXPECT_EQ(sent.backends[0].state, BackendState::kUnhealthy);
  EXPECT_EQ(sent.backends[2].state, BackendState::kActive);
  // The kept state is patched too (what a later verdict is applied to).
  EXPECT_EQ(h.desired().desired.at(0)->backends.size(), 3u);

  // Revision 9 never arrived: 10 is taken whole even with a delta.
  Reconciled after_gap = next;
  after_gap.revision = 10;
  after_gap.desired = r.desired;
  EXPECT_FALSE(h.setReconciled(after_gap));
  EXPECT_EQ(h.desired().desired.at(0)->backends.size(), 2u);
  // A result without a delta (a full reconcile) is always taken whole.
  Reconciled whole = r;
  whole.revision = 11;
  EXPECT_FALSE(h.setReconciled(whole));
}

}  // namespace
}  // namespace flowlb

// The agent's side of the Sync stream as the controller receives it, against
// a minimal gRPC server on loopback: the Hello's capabilities, the probed
// backends' health in a Report (sent when it changes, and again on a new
// stream), the Maglev fingerprints in an Ack, and flow sync both ways.
// Waits are on messages.
#include "agent/control/controller_link.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>

#include "flowlb/v1/sync.grpc.pb.h"

namespace flowlb::agent {
namespace {

using namespace std::chrono_literals;
namespace pb = flowlb::v1;

// Records what agents send; sends one FULL state per stream.
class FakeController final : public pb::FlowlbControl::Service {
 public:
  grpc::Status Sync(grpc::ServerContext* ctx,
                    grpc::ServerReaderWriter<pb::ControllerMessage, pb::AgentMessage>* s) override {
    pb::AgentMessage m;
    bool sent = false;
    while (s->Read(&m)) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        got_.push_back(m);
      }
      cv_.notify_all();
      if (m.has_flow_sync()) {  // relayed back as if from n2, then a dump asked for n3
        pb::ControllerMessage c;
        *c.mutable_flow_sync() = m.flow_sync();
        c.mutable_flow_sync()->set_origin_node("n2");
        s->Write(c);
        pb::ControllerMessage d;
        d.mutable_flow_sync_dump()->set_for_node("n3");
        s->Write(d);
      }
      if (m.has_hello() && !sent) {
        pb::ControllerMessage c;
        pb::DesiredState* ds = c.mutable_desired_state();
        ds->set_generation(++generation_);
        ds->set_kind(pb::DESIRED_STATE_KIND_FULL);
        s->Write(c);
        sent = true;
      }
      if (ctx->IsCancelled()) break;
    }
    return grpc::Status::OK;
  }
  // Waits for the first message after the `skip` first that `pred` accepts.
  template <typename P>
  std::optional<pb::AgentMessage> waitFor(P pred, size_t skip = 0) {
    std::unique_lock<std::mutex> lock(mu_);
    std::optional<pb::AgentMessage> found;
    cv_.wait_for(lock, 10s, [&] {
      for (size_t i = skip; i < got_.size(); ++i) {
        if (pred(got_[i])) {
          found = got_[i];
          return true;
        }
      }
      return false;
    });
    return found;
  }
  size_t count() {
    std::lock_guard<std::mutex> lock(mu_);
    return got_.size();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<pb::AgentMessage> got_;
  uint64_t generation_ = 0;
};

class ControllerLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    b.RegisterService(&fake_);
    server_ = b.BuildAndStart();
    ASSERT_TRUE(server_);
    ControllerLinkOptions o;
    o.address = "127.0.0.1:" + std::to_string(port_);
    o.plaintext = true;
    o.node_name = "n1";
    auto l = ControllerLink::start(o, 0);
    ASSERT_TRUE(l) << l.error();
    link_ = std::move(*l);
    link_->setCapabilities(AgentCapabilities{});
  }
  void TearDown() override {
    link_.reset();
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + 1s);
  }
  FakeController fake_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<ControllerLink> link_;
};

TEST_F(ControllerLinkTest, HelloListsHealthChecksAndFingerprints) {
  auto hello = fake_.waitFor([](const pb::AgentMessage& m) { return m.has_hello(); });
  ASSERT_TRUE(hello);
  const auto& caps = hello->hello().capabilities();
  for (pb::Capability c : {pb::CAPABILITY_HEALTH_CHECKS, pb::CAPABILITY_MAGLEV_FINGERPRINTS}) {
    EXPECT_NE(std::find(caps.begin(), caps.end(), c), caps.end()) << pb::Capability_Name(c);
  }
}

TEST_F(ControllerLinkTest, BackendHealthIsReportedWhenSet) {
  ASSERT_TRUE(fake_.waitFor([](const pb::AgentMessage& m) { return m.has_report(); }));
  const size_t before = fake_.count();
  link_->setBackendHealth(
      {{"shop/web", "10.1.2.3:8080", BackendHealthReport::Status::kUnhealthy, "http status 503"},
       {"shop/web", "[fd00::5]:8080", BackendHealthReport::Status::kHealthy, ""},
       {"shop/web", "10.1.2.4:8080", BackendHealthReport::Status::kUnknown, ""}});
  auto r = fake_.waitFor(
      [](const pb::AgentMessage& m) { return m.has_report() && m.report().backend_health_size(); },
      before);
  ASSERT_TRUE(r);
  const auto& h = r->report().backend_health();
  ASSERT_EQ(h.size(), 3);
  EXPECT_EQ(h[0].service_key(), "shop/web");
  EXPECT_EQ(h[0].backend_key(), "10.1.2.3:8080");
  EXPECT_EQ(h[0].status(), pb::HEALTH_STATUS_UNHEALTHY);
  EXPECT_EQ(h[0].detail(), "http status 503");
  EXPECT_EQ(h[1].backend_key(), "[fd00::5]:8080");
  EXPECT_EQ(h[1].status(), pb::HEALTH_STATUS_HEALTHY);
  EXPECT_EQ(h[2].status(), pb::HEALTH_STATUS_UNKNOWN);
}

TEST_F(ControllerLinkTest, AckCarriesTheFingerprints) {
  std::optional<ReceivedState> st;
  for (int i = 0; i < 1000 && !st; ++i) {
    link_->wait(10ms);
    st = link_->take();
  }
  ASSERT_TRUE(st);
  AckReport a;
  a.generation = st->desired.generation;
  a.fingerprints.push_back({"shop/web", 0x1234abcd5678ef00ULL, 65537, 3});
  link_->ack(a);
  auto ack = fake_.waitFor([](const pb::AgentMessage& m) { return m.has_ack(); });
  ASSERT_TRUE(ack);
  ASSERT_EQ(ack->ack().maglev_fingerprints_size(), 1);
  const pb::MaglevFingerprint& f = ack->ack().maglev_fingerprints(0);
  EXPECT_EQ(f.service_key(), "shop/web");
  EXPECT_EQ(f.fingerprint(), 0x1234abcd5678ef00ULL);
  EXPECT_EQ(f.table_size(), 65537u);
  EXPECT_EQ(f.backend_count(), 3u);
  EXPECT_EQ(ack->ack().result(), pb::ACK_RESULT_APPLIED);
}

TEST(ControllerLinkFlowSyncTest, BatchesGoOutAndRelayedOnesAndDumpRequestsComeIn) {
  FakeController fake;
  int port = 0;
  grpc::ServerBuilder b;
  b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  b.RegisterService(&fake);
  auto server = b.BuildAndStart();
  ASSERT_TRUE(server);
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::tuple<std::string, std::string, bool>> relayed;
  std::vector<std::string> dumps;
  ControllerLinkOptions o;
  o.address = "127.0.0.1:" + std::to_string(port);
  o.plaintext = true;
  o.node_name = "n1";
  o.on_flow_sync = [&](const std::string& records, const std::string& origin, bool dump) {
    std::lock_guard<std::mutex> lock(mu);
    relayed.emplace_back(records, origin, dump);
    cv.notify_all();
  };
  o.on_flow_sync_dump = [&](const std::string& for_node) {
    std::lock_guard<std::mutex> lock(mu);
    dumps.push_back(for_node);
    cv.notify_all();
  };
  auto link = ControllerLink::start(o, 0);
  ASSERT_TRUE(link) << link.error();
  (*link)->setCapabilities(AgentCapabilities{});
  auto hello = fake.waitFor([](const pb::AgentMessage& m) { return m.has_hello(); });
  ASSERT_TRUE(hello);
  const auto& caps = hello->hello().capabilities();
  EXPECT_NE(std::find(caps.begin(), caps.end(), pb::CAPABILITY_FLOW_SYNC), caps.end());

  const std::string records(128, '\x01');
  ASSERT_TRUE((*link)->sendFlowSync(records, true));
  auto sent = fake.waitFor([](const pb::AgentMessage& m) { return m.has_flow_sync(); });
  ASSERT_TRUE(sent);
  EXPECT_EQ(sent->flow_sync().format(), 1u);
  EXPECT_EQ(sent->flow_sync().records(), records);
  EXPECT_TRUE(sent->flow_sync().dump());
  EXPECT_EQ(sent->flow_sync().origin_node(), "") << "the controller names the origin";

  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return !relayed.empty() && !dumps.empty(); }));
  EXPECT_EQ(std::get<0>(relayed[0]), records);
  EXPECT_EQ(std::get<1>(relayed[0]), "n2");
  EXPECT_TRUE(std::get<2>(relayed[0]));
  EXPECT_EQ(dumps[0], "n3");
  lock.unlock();
  link->reset();
  server->Shutdown(std::chrono::system_clock::now() + 1s);
}

}  // namespace
}  // namespace flowlb::agent

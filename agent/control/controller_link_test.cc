// The agent's side of the Sync stream as the controller receives it, against
// a minimal gRPC server on loopback: the Hello's capabilities, the probed
// backends' health in a Report (sent when it changes, and again on a new
// stream), and the Maglev fingerprints in an Ack. Waits are on messages.
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

}  // namespace
}  // namespace flowlb::agent

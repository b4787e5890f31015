// Flow sync through the real SyncServer over loopback: agents are raw gRPC
// streams that say Hello with or without CAPABILITY_FLOW_SYNC, send
// FlowSyncBatches and read what the controller relays. Every wait is on an
// event: a message arriving, a counter the server keeps, a log line.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <sstream>
#include <thread>

#include "agent/control/controller_link.h"
#include "common/flow_record.h"
#include "controller/grpc/sync_server.h"
#include "flowlb/v1/sync.grpc.pb.h"

namespace flowlb {
namespace {

using namespace std::chrono_literals;
using controller::AgentStatus;
using controller::DesiredService;
using controller::Reconciled;
using controller::SyncServer;
using controller::SyncServerOptions;
namespace pb = flowlb::v1;

IpAddr ip(const char* s) {
  return *IpAddr::parse(s);
}

// One service, 192.0.2.10:80/TCP to 10.1.0.1:8080 and 10.1.0.2:8080, run
// by the ready nodes (a, b and c).
Reconciled state(std::vector<std::string> ready = {"a", "b", "c"}) {
  Reconciled r;
  auto nodes = std::make_shared<const std::vector<std::string>>(std::move(ready));
  auto d = std::make_shared<DesiredService>();
  d->key = "shop/web/http/ipv4";
  d->vip = ip("192.0.2.10");
  d->port = 80;
  d->proto = 6;
  d->backends.push_back({ip("10.1.0.1"), 8080, controller::BackendState::kActive, "", ""});
  d->backends.push_back({ip("10.1.0.2"), 8080, controller::BackendState::kActive, "", ""});
  d->announce_candidates = nodes;
  r.vips.push_back({d->vip, nodes});
  r.desired.push_back(std::move(d));
  r.nodes = *nodes;
  return r;
}

std::string records(const char* vip, const char* backend, uint16_t client_port, int n = 1) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    FlowRecord r;
    r.proto = 6;
    r.client = ip("198.51.100.7");
    r.client_port = static_cast<uint16_t>(client_port + i);
    r.vip = ip(vip);
    r.vip_port = 80;
    r.backend = ip(backend);
    r.backend_port = 8080;
    r.nat_port = static_cast<uint16_t>(client_port + i);
    appendFlowRecord(&out, r);
  }
  return out;
}

pb::AgentMessage batch(const std::string& records, bool dump = false) {
  pb::AgentMessage m;
  m.mutable_flow_sync()->set_format(kFlowRecordFormat);
  m.mutable_flow_sync()->set_records(records);
  m.mutable_flow_sync()->set_dump(dump);
  return m;
}

// The log while it lives (the previous logger is back afterwards, even
// when an assertion returns early).
class LogCapture {
 public:
  LogCapture() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(text_);
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink));
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  std::string text() const { return text_.str(); }

 private:
  std::ostringstream text_;
  std::shared_ptr<spdlog::logger> previous_;
};

// An agent as the wire sees it: a Sync stream, a reader thread keeping
// every message, and (if asked) an Ack for each DesiredState.
class RawAgent {
 public:
  RawAgent(int port, const std::string& node, bool flow_sync, bool ack = true) : ack_(ack) {
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                   grpc::InsecureChannelCredentials());
    stub_ = pb::FlowlbControl::NewStub(channel_);
    stream_ = stub_->Sync(&ctx_);
    pb::AgentMessage hello;
    hello.mutable_hello()->set_node_name(node);
    hello.mutable_hello()->add_capabilities(pb::CAPABILITY_INCREMENTAL_UPDATES);
    if (flow_sync) hello.mutable_hello()->add_capabilities(pb::CAPABILITY_FLOW_SYNC);
    send(hello);
    reader_ = std::thread([this] { read(); });
  }
  ~RawAgent() {
    ctx_.TryCancel();
    reader_.join();
    stream_->Finish();
  }
  void send(const pb::AgentMessage& m) { EXPECT_TRUE(write(m)); }
  // The first message not yet taken that `match` accepts, waiting up to
  // `timeout`; the messages before it are taken too.
  std::optional<pb::ControllerMessage> next(
      const std::function<bool(const pb::ControllerMessage&)>& match,
      std::chrono::milliseconds timeout = 5000ms) {
    std::unique_lock<std::mutex> lock(mu_);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      while (!got_.empty()) {
        pb::ControllerMessage m = std::move(got_.front());
        got_.pop_front();
        if (match(m)) return m;
        skipped_.push_back(std::move(m));
      }
      if (done_ || cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
        if (got_.empty()) return std::nullopt;
      }
    }
  }
  std::optional<pb::ControllerMessage> nextFlowSync() {
    return next([](const pb::ControllerMessage& m) { return m.has_flow_sync(); });
  }
  // Everything received so far, taken or not.
  std::vector<pb::ControllerMessage> all() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<pb::ControllerMessage> out(skipped_.begin(), skipped_.end());
    out.insert(out.end(), got_.begin(), got_.end());
    return out;
  }

 private:
  bool write(const pb::AgentMessage& m) {
    std::lock_guard<std::mutex> lock(write_mu_);
    return stream_->Write(m);
  }
  void read() {
    pb::ControllerMessage m;
    while (stream_->Read(&m)) {
      if (m.has_desired_state() && ack_) {
        pb::AgentMessage a;
        a.mutable_ack()->set_generation(m.desired_state().generation());
        a.mutable_ack()->set_result(pb::ACK_RESULT_APPLIED);
        write(a);  // fails once the test cancels the stream
      }
      std::lock_guard<std::mutex> lock(mu_);
      got_.push_back(m);
      cv_.notify_all();
    }
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    cv_.notify_all();
  }

  const bool ack_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::FlowlbControl::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<pb::AgentMessage, pb::ControllerMessage>> stream_;
  std::mutex write_mu_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<pb::ControllerMessage> got_, skipped_;
  bool done_ = false;
  std::thread reader_;
};

std::unique_ptr<SyncServer> startServer(SyncServerOptions so = {}) {
  so.address = "127.0.0.1:0";
  so.plaintext = true;
  so.distribution.settle = 0ms;
  auto s = SyncServer::start(so, nullptr);
  EXPECT_TRUE(s) << s.error();
  if (s) (*s)->publish(state());
  return s ? std::move(*s) : nullptr;
}

AgentStatus statusOf(SyncServer& server, const std::string& node) {
  for (const AgentStatus& a : server.agents()) {
    if (a.node == node) return a;
  }
  return {};
}

void waitGreeted(SyncServer& server, const std::string& node) {
  ASSERT_TRUE(server.waitFor(
      [&](const std::vector<AgentStatus>& agents) {
        return std::any_of(agents.begin(), agents.end(),
                           [&](const AgentStatus& a) { return a.node == node; });
      },
      5000ms))
      << node << " never said Hello";
}

TEST(FlowSyncLinkTest, RecordsGoToCapableAgentsThatRunTheServiceAndOnlyTheSendersOwn) {
  auto log = std::make_unique<LogCapture>();
  auto server = startServer();
  RawAgent a(server->port(), "a", true);
  waitGreeted(*server, "a");
  // B never acknowledges its state: flow sync does not wait for it.
  RawAgent b(server->port(), "b", true, /*ack=*/false);
  RawAgent c(server->port(), "c", false);

  // B joined after A: A is asked for every flow it shares; C (no flow
  // sync) asks nothing.
  auto dump = a.next([](const pb::ControllerMessage& m) { return m.has_flow_sync_dump(); });
  ASSERT_TRUE(dump) << "A got no FlowSyncDumpRequest";
  EXPECT_EQ(dump->flow_sync_dump().for_node(), "b");
  waitGreeted(*server, "c");
  EXPECT_EQ(statusOf(*server, "a").flow_dump_requests, 1u);
  // A is listed once its Hello is accepted and joins flow sync just after:
  // when B connected in between, A's join found B and asked it for A's
  // flows, which is right too (both are new to each other). Never more.
  EXPECT_LE(statusOf(*server, "b").flow_dump_requests, 1u);
  EXPECT_TRUE(statusOf(*server, "a").flow_sync);
  EXPECT_FALSE(statusOf(*server, "c").flow_sync);

  // One record of A's service, one for a VIP A does not run.
  const std::string good = records("192.0.2.10", "10.1.0.1", 40000);
  pb::AgentMessage m = batch(good + records("192.0.2.99", "10.1.0.1", 40001));
  m.mutable_flow_sync()->set_origin_node("c");  // a name the agent made up: ignored
  a.send(m);
  auto relayed = b.nextFlowSync();
  ASSERT_TRUE(relayed) << "B got nothing";
  EXPECT_EQ(relayed->flow_sync().records(), good) << "exactly the good record";
  EXPECT_EQ(relayed->flow_sync().origin_node(), "a");
  EXPECT_EQ(relayed->flow_sync().format(), kFlowRecordFormat);
  EXPECT_FALSE(relayed->flow_sync().dump());

  // A malformed batch (the second record's op), then a good one: the first
  // is dropped whole and counted, B gets the second next.
  std::string bad = records("192.0.2.10", "10.1.0.1", 41000, 2);
  bad[kFlowRecordBytes] = 9;
  a.send(batch(bad));
  const std::string marker = records("192.0.2.10", "10.1.0.2", 42000);
  a.send(batch(marker));
  auto after = b.nextFlowSync();
  ASSERT_TRUE(after);
  EXPECT_EQ(after->flow_sync().records(), marker) << "the malformed batch was relayed";
  // C's batch is dropped: it did not list the capability.
  c.send(batch(records("192.0.2.10", "10.1.0.1", 43000, 3)));
  ASSERT_TRUE(
      server->waitUntil([&] { return server->counters().flow_sync.not_capable == 3; }, 5000ms));

  const controller::FlowSyncCounters fs = server->counters().flow_sync;
  EXPECT_EQ(fs.relayed, 2u) << "two records, to B only";
  EXPECT_EQ(fs.refused_vip, 1u);
  EXPECT_EQ(fs.refused_backend, 0u);
  EXPECT_EQ(fs.malformed, 2u);
  EXPECT_EQ(fs.queue_full, 0u);
  EXPECT_GT(fs.bytes_in, 3 * kFlowRecordBytes);
  EXPECT_GT(fs.bytes_out, 2 * kFlowRecordBytes);
  EXPECT_EQ(statusOf(*server, "c").flow_records_queued, 0u);
  EXPECT_EQ(statusOf(*server, "a").flow_records_queued, 0u) << "never back to the sender";
  for (const pb::ControllerMessage& got : c.all()) {
    EXPECT_FALSE(got.has_flow_sync() || got.has_flow_sync_dump()) << "C got flow sync";
  }
  const std::string text = log->text();
  log.reset();
  EXPECT_NE(text.find("event=flow_sync_refused node=a reason=refused_vip"), std::string::npos)
      << text;
  EXPECT_NE(text.find("event=flow_sync_refused node=c reason=not_capable"), std::string::npos);
}

TEST(FlowSyncLinkTest, DumpsGoOnlyToNodesThatJoinedWithinTheWindow) {
  SyncServerOptions so;
  so.flow_sync.dump_window = 0s;  // no node is new
  auto server = startServer(so);
  RawAgent a(server->port(), "a", true);
  waitGreeted(*server, "a");
  RawAgent b(server->port(), "b", true);
  ASSERT_TRUE(a.next([](const pb::ControllerMessage& m) { return m.has_flow_sync_dump(); }));
  a.send(batch(records("192.0.2.10", "10.1.0.1", 40000), /*dump=*/true));
  const std::string marker = records("192.0.2.10", "10.1.0.2", 42000);
  a.send(batch(marker));
  auto got = b.nextFlowSync();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->flow_sync().records(), marker) << "the dump reached a node outside the window";
  EXPECT_EQ(server->counters().flow_sync.relayed, 1u);

  // With the window (60 s by default), the joiner gets the dump.
  auto fresh = startServer();
  RawAgent a2(fresh->port(), "a", true);
  waitGreeted(*fresh, "a");
  RawAgent b2(fresh->port(), "b", true);
  ASSERT_TRUE(a2.next([](const pb::ControllerMessage& m) { return m.has_flow_sync_dump(); }));
  const std::string dumped = records("192.0.2.10", "10.1.0.1", 40000, 3);
  a2.send(batch(dumped, /*dump=*/true));
  auto d = b2.nextFlowSync();
  ASSERT_TRUE(d);
  EXPECT_EQ(d->flow_sync().records(), dumped);
  EXPECT_TRUE(d->flow_sync().dump());
}

// A node that turns Ready (starts running the view) on a stream it already
// had has missed the flows shared meanwhile: it joins as a new stream does.
TEST(FlowSyncLinkTest, ANodeThatStartsRunningTheViewGetsADump) {
  auto server = startServer();
  server->publish(state({"a"}));  // b is not Ready
  RawAgent a(server->port(), "a", true);
  waitGreeted(*server, "a");
  RawAgent b(server->port(), "b", true);
  auto dump = [](const pb::ControllerMessage& m) { return m.has_flow_sync_dump(); };
  ASSERT_TRUE(a.next(dump)) << "asked when b connected";
  // b runs nothing: a's flows are not for it (the first b gets below is
  // the dump).
  a.send(batch(records("192.0.2.10", "10.1.0.1", 41000)));
  // Then a record for a VIP A does not run, counted once it is decided: the
  // batch before it on the same stream has been decided too (bytes_in is
  // counted on arrival, before the view is read).
  a.send(batch(records("192.0.2.99", "10.1.0.1", 41001)));
  ASSERT_TRUE(
      server->waitUntil([&] { return server->counters().flow_sync.refused_vip == 1; }, 5000ms));
  EXPECT_EQ(server->counters().flow_sync.relayed, 0u);
  server->publish(state({"a", "b"}));
  auto again = a.next(dump);
  ASSERT_TRUE(again) << "a was not asked again when b turned Ready";
  EXPECT_EQ(again->flow_sync_dump().for_node(), "b");
  EXPECT_EQ(statusOf(*server, "a").flow_dump_requests, 2u);
  const std::string flows = records("192.0.2.10", "10.1.0.1", 40000);
  a.send(batch(flows, /*dump=*/true));
  auto got = b.nextFlowSync();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->flow_sync().records(), flows);
  EXPECT_TRUE(got->flow_sync().dump());
  EXPECT_EQ(server->counters().flow_sync.relayed, 1u);
}

TEST(FlowSyncLinkTest, AnAgentOverItsRateLosesWholeBatches) {
  SyncServerOptions so;
  // A token every 1,000 s; the burst is still one full batch.
  so.flow_sync.max_records_per_second = 0.001;
  auto server = startServer(so);
  RawAgent a(server->port(), "a", true);
  waitGreeted(*server, "a");
  RawAgent b(server->port(), "b", true);
  waitGreeted(*server, "b");
  const std::string full = records("192.0.2.10", "10.1.0.1", 1000, 1024);
  a.send(batch(full));
  a.send(batch(records("192.0.2.10", "10.1.0.1", 3000)));  // no token left for it
  ASSERT_TRUE(
      server->waitUntil([&] { return server->counters().flow_sync.rate_limited == 1; }, 5000ms));
  auto got = b.nextFlowSync();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->flow_sync().records(), full);
  EXPECT_EQ(server->counters().flow_sync.relayed, 1024u);
}

// What an agent's own link (agent/control/controller_link.h) hands its
// flow sync callbacks.
struct Inbox {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::tuple<std::string, std::string, bool>> batches;  // records, origin, dump
  std::vector<std::string> dumps;                                   // for_node
  bool waitFor(const std::function<bool()>& done) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, 5s, done);
  }
};

std::unique_ptr<agent::ControllerLink> agentLink(int port, const std::string& node, Inbox& in) {
  agent::ControllerLinkOptions o;
  o.address = "127.0.0.1:" + std::to_string(port);
  o.plaintext = true;
  o.node_name = node;
  o.on_flow_sync = [&in](const std::string& records, const std::string& origin, bool dump) {
    std::lock_guard<std::mutex> lock(in.mu);
    in.batches.emplace_back(records, origin, dump);
    in.cv.notify_all();
  };
  o.on_flow_sync_dump = [&in](const std::string& for_node) {
    std::lock_guard<std::mutex> lock(in.mu);
    in.dumps.push_back(for_node);
    in.cv.notify_all();
  };
  auto link = agent::ControllerLink::start(o, 0);
  EXPECT_TRUE(link) << link.error();
  if (!link) return nullptr;
  agent::AgentCapabilities caps;
  caps.af_xdp_copy = true;
  (*link)->setCapabilities(caps);
  return std::move(*link);
}

// Both ends of the contract as they are built: the agent's link says Hello
// with the capability, shares a batch, and receives the relay and a dump
// request.
TEST(FlowSyncLinkTest, TheAgentsOwnLinkSharesAndReceivesThroughTheRelay) {
  auto server = startServer();
  Inbox in_a, in_b;
  auto a = agentLink(server->port(), "a", in_a);
  waitGreeted(*server, "a");
  auto b = agentLink(server->port(), "b", in_b);
  ASSERT_TRUE(in_a.waitFor([&] { return !in_a.dumps.empty(); })) << "a was not asked for a dump";
  EXPECT_EQ(in_a.dumps, std::vector<std::string>{"b"});
  EXPECT_TRUE(statusOf(*server, "b").flow_sync);
  const std::string flows = records("192.0.2.10", "10.1.0.2", 40000, 2);
  ASSERT_TRUE(a->sendFlowSync(flows, /*dump=*/true));
  ASSERT_TRUE(in_b.waitFor([&] { return !in_b.batches.empty(); })) << "b got nothing";
  EXPECT_EQ(in_b.batches[0], std::make_tuple(flows, std::string("a"), true));
  {
    std::lock_guard<std::mutex> lock(in_a.mu);
    EXPECT_TRUE(in_a.batches.empty()) << "a got its own records back";
  }
}

}  // namespace
}  // namespace flowlb

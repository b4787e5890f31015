// Flow sync's decision at the controller, without gRPC: which records a
// node may share and who gets each (flow_sync_relay.h), the per-agent bounds
// (flow_sync_queue.h) and the batch checks (flow_sync_hub.h).
#include "controller/grpc/flow_sync_relay.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <sstream>

#include "controller/grpc/flow_sync_hub.h"
#include "controller/grpc/flow_sync_queue.h"
#include "flowlb/v1/sync.pb.h"

namespace flowlb::controller {
namespace {

using namespace std::chrono_literals;

IpAddr ip(const char* s) {
  return *IpAddr::parse(s);
}

std::shared_ptr<const DesiredService> service(const std::string& key, const char* vip,
                                              uint16_t port, uint8_t proto,
                                              std::vector<DesiredBackend> backends,
                                              bool local = false) {
  auto d = std::make_shared<DesiredService>();
  d->key = key;
  d->vip = ip(vip);
  d->port = port;
  d->proto = proto;
  d->external_traffic_local = local;
  std::sort(backends.begin(), backends.end(), [](const auto& x, const auto& y) {
    return x.addr != y.addr ? x.addr < y.addr : x.port < y.port;
  });
  d->backends = std::move(backends);
  return d;
}

DesiredBackend backend(const char* addr, uint16_t port, const char* node = "") {
  return {ip(addr), port, BackendState::kActive, node, ""};
}

// Nodes a, b and c are ready (they run every service); d is connected but
// runs nothing.
std::shared_ptr<const View> view() {
  const Entry::Encoder none = [](const DesiredService&, bool) { return std::string(); };
  auto v = std::make_shared<View>();
  v->nodes =
      std::make_shared<const std::vector<std::string>>(std::vector<std::string>{"a", "b", "c"});
  for (auto s : {
           service("shop/dns/udp/ipv4", "192.0.2.10", 53, 17, {backend("10.0.2.1", 53)}),
           service("shop/local/http/ipv4", "192.0.2.11", 80, 6,
                   {backend("10.0.1.1", 8080, "a"), backend("10.0.1.2", 8080, "b"),
                    backend("10.0.1.3", 8080)},
                   true),
           service("shop/v6/https/ipv6", "2001:db8::10", 443, 6, {backend("fd00::1", 8443)}),
           service("shop/web/http/ipv4", "192.0.2.10", 80, 6,
                   {backend("10.0.0.2", 8080, "b"), backend("10.0.0.1", 8080, "a")}),
       }) {
    v->services.push_back(std::make_shared<Entry>(s, none));
  }
  return v;
}

FlowRecord record(FlowRecordOp op, uint8_t proto, const char* vip, uint16_t vip_port,
                  const char* backend, uint16_t backend_port, const char* client = "198.51.100.7") {
  FlowRecord r;
  r.op = op;
  r.proto = proto;
  r.client = ip(client);
  r.client_port = 40000;
  r.vip = ip(vip);
  r.vip_port = vip_port;
  r.backend = ip(backend);
  r.backend_port = backend_port;
  r.nat_port = 50000;
  return r;
}

constexpr auto kUp = FlowRecordOp::kUpsert;
constexpr auto kDel = FlowRecordOp::kDelete;

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

TEST(FlowSyncRelayTest, ANodeSharesOnlyItsOwnServicesAndEachPeerGetsWhatItRuns) {
  struct Case {
    const char* name;
    FlowRecord record;
    std::string sender;
    std::vector<std::string> expect_to;  // of destinations a, b, c, d
    uint64_t refused_vip = 0, refused_backend = 0;
  };
  const std::vector<Case> cases = {
      {"an upsert to a backend of the service",
       record(kUp, 6, "192.0.2.10", 80, "10.0.0.1", 8080),
       "a",
       {"b", "c"}},
      {"a delete", record(kDel, 6, "192.0.2.10", 80, "10.0.0.2", 8080), "c", {"a", "b"}},
      {"IPv6",
       record(kUp, 6, "2001:db8::10", 443, "fd00::1", 8443, "2001:db8:1::7"),
       "b",
       {"a", "c"}},
      {"the VIP's other port and protocol",
       record(kUp, 17, "192.0.2.10", 53, "10.0.2.1", 53),
       "a",
       {"b", "c"}},
      {"a VIP no service has", record(kUp, 6, "192.0.2.99", 80, "10.0.0.1", 8080), "a", {}, 1},
      {"a port the VIP does not serve",
       record(kUp, 6, "192.0.2.10", 81, "10.0.0.1", 8080),
       "a",
       {},
       1},
      {"the protocol the VIP's port does not serve",
       record(kUp, 17, "192.0.2.10", 80, "10.0.0.1", 8080),
       "a",
       {},
       1},
      {"a sender that runs nothing (not a ready node)",
       record(kUp, 6, "192.0.2.10", 80, "10.0.0.1", 8080),
       "d",
       {},
       1},
      {"an upsert to an address that is no backend",
       record(kUp, 6, "192.0.2.10", 80, "10.0.0.9", 8080),
       "a",
       {},
       0,
       1},
      {"an upsert to a backend's address on another port",
       record(kUp, 6, "192.0.2.10", 80, "10.0.0.1", 9090),
       "a",
       {},
       0,
       1},
      {"an upsert to another service's backend",
       record(kUp, 6, "192.0.2.10", 80, "10.0.2.1", 53),
       "a",
       {},
       0,
       1},
      {"a delete for a backend that left: the copies must go too",
       record(kDel, 6, "192.0.2.10", 80, "10.0.0.9", 8080),
       "a",
       {"b", "c"}},
      {"Local: an upsert to the sender's own backend goes to no node that cannot use it",
       record(kUp, 6, "192.0.2.11", 80, "10.0.1.1", 8080),
       "a",
       {}},
      {"Local: an upsert to another node's backend is not the sender's",
       record(kUp, 6, "192.0.2.11", 80, "10.0.1.2", 8080),
       "a",
       {},
       0,
       1},
      {"Local: a backend of no known node is everyone's",
       record(kUp, 6, "192.0.2.11", 80, "10.0.1.3", 8080),
       "a",
       {"b", "c"}},
      {"Local: a delete goes to every node running the service",
       record(kDel, 6, "192.0.2.11", 80, "10.0.1.1", 8080),
       "a",
       {"b", "c"}},
  };
  const FlowServiceIndex index(view());
  const std::vector<std::string> destinations = {"a", "b", "c", "d"};
  for (const Case& c : cases) {
    std::string packed;
    appendFlowRecord(&packed, c.record);
    const FlowRelay r = relayFlowRecords({c.record}, packed, index, c.sender, destinations);
    ASSERT_EQ(r.records.size(), destinations.size()) << c.name;
    for (size_t d = 0; d < destinations.size(); ++d) {
      const bool expected =
          std::find(c.expect_to.begin(), c.expect_to.end(), destinations[d]) != c.expect_to.end();
      EXPECT_EQ(r.records[d], expected ? packed : "") << c.name << ": to " << destinations[d];
    }
    EXPECT_EQ(r.refused_vip, c.refused_vip) << c.name;
    EXPECT_EQ(r.refused_backend, c.refused_backend) << c.name;
    EXPECT_EQ(r.accepted, 1 - c.refused_vip - c.refused_backend) << c.name;
    EXPECT_EQ(r.first_reason != nullptr, c.refused_vip + c.refused_backend > 0) << c.name;
  }
}

TEST(FlowSyncRelayTest, ABatchIsSplitRecordByRecordInItsOrder) {
  const std::vector<FlowRecord> records = {
      record(kUp, 6, "192.0.2.10", 80, "10.0.0.1", 8080, "198.51.100.1"),
      record(kUp, 6, "192.0.2.99", 80, "10.0.0.1", 8080, "198.51.100.2"),  // refused_vip
      record(kUp, 6, "192.0.2.11", 80, "10.0.1.3", 8080, "198.51.100.3"),
      record(kUp, 6, "192.0.2.10", 80, "10.0.0.7", 8080, "198.51.100.4"),  // refused_backend
      record(kDel, 6, "192.0.2.10", 80, "10.0.0.1", 8080, "198.51.100.1"),
  };
  std::string packed;
  for (const FlowRecord& r : records) appendFlowRecord(&packed, r);
  auto bytes = [&](std::initializer_list<int> which) {
    std::string s;
    for (int i : which) appendFlowRecord(&s, records[i]);
    return s;
  };
  const FlowRelay r = relayFlowRecords(records, packed, FlowServiceIndex(view()), "a", {"b", "a"});
  EXPECT_EQ(r.records[0], bytes({0, 2, 4}));
  EXPECT_EQ(r.records[1], "") << "never back to the sender";
  EXPECT_EQ(r.accepted, 3u);
  EXPECT_EQ(r.refused_vip, 1u);
  EXPECT_EQ(r.refused_backend, 1u);
  EXPECT_STREQ(r.first_reason, "refused_vip");
  EXPECT_NE(r.first_refusal.find("192.0.2.99:80/tcp"), std::string::npos) << r.first_refusal;
}

TEST(FlowSyncRelayTest, TheIndexFindsServicesByVipPortAndProtocol) {
  const FlowServiceIndex index(view());
  ASSERT_NE(index.find(ip("192.0.2.10"), 80, 6), nullptr);
  EXPECT_EQ(index.find(ip("192.0.2.10"), 80, 6)->key, "shop/web/http/ipv4");
  EXPECT_EQ(index.find(ip("192.0.2.10"), 53, 17)->key, "shop/dns/udp/ipv4");
  EXPECT_EQ(index.find(ip("192.0.2.10"), 53, 6), nullptr);
  EXPECT_EQ(index.find(ip("192.0.2.12"), 80, 6), nullptr);
  EXPECT_EQ(FlowServiceIndex(std::make_shared<View>()).find(ip("192.0.2.10"), 80, 6), nullptr);
}

TEST(FlowSyncQueueTest, AFullQueueDropsTheOldestBatchesAndSaysHowManyRecords) {
  const std::string one(kFlowRecordBytes, 'x');
  FlowSyncQueue by_count(2, 1 << 20);
  EXPECT_EQ(by_count.push({one, "n1", false}), 0u);
  EXPECT_EQ(by_count.push({one + one, "n2", false}), 0u);
  EXPECT_EQ(by_count.push({one, "n3", false}), 1u) << "n1's record went";
  EXPECT_EQ(by_count.push({one, "n4", false}), 2u) << "n2's two records went";
  ASSERT_EQ(by_count.size(), 2u);
  EXPECT_EQ(by_count.pop()->origin_node, "n3");
  EXPECT_EQ(by_count.pop()->origin_node, "n4");
  EXPECT_FALSE(by_count.pop());
  EXPECT_EQ(by_count.bytes(), 0u);

  FlowSyncQueue by_bytes(100, 3 * kFlowRecordBytes);
  EXPECT_EQ(by_bytes.push({one + one, "n1", false}), 0u);
  EXPECT_EQ(by_bytes.push({one, "n2", false}), 0u);
  EXPECT_EQ(by_bytes.bytes(), 3 * kFlowRecordBytes);
  EXPECT_EQ(by_bytes.push({one, "n3", true}), 2u);
  EXPECT_EQ(by_bytes.bytes(), 2 * kFlowRecordBytes);
  // A batch larger than the bound on its own is still sent (it is the newest).
  EXPECT_EQ(by_bytes.push({std::string(4 * kFlowRecordBytes, 'y'), "n4", false}), 2u);
  EXPECT_EQ(by_bytes.size(), 1u);
  EXPECT_EQ(by_bytes.pop()->count(), 4u);
}

// Many slow agents at once: each queue is under its own bound, but the
// total is not; the queue that grows drops its own oldest.
TEST(FlowSyncQueueTest, AllQueuesTogetherStayUnderTheTotal) {
  const std::string one(kFlowRecordBytes, 'x');
  FlowSyncTotal total(4 * kFlowRecordBytes);
  {
    FlowSyncQueue a(100, 1 << 20, &total), b(100, 1 << 20, &total);
    EXPECT_EQ(a.push({one, "n1", false}), 0u);
    EXPECT_EQ(a.push({one, "n2", false}), 0u);
    EXPECT_EQ(a.push({one, "n3", false}), 0u);
    EXPECT_EQ(b.push({one, "n4", false}), 0u);
    EXPECT_EQ(total.bytes.load(), 4 * kFlowRecordBytes);
    EXPECT_EQ(b.push({one, "n5", false}), 1u) << "b's oldest went, not a's";
    EXPECT_EQ(a.size(), 3u);
    EXPECT_EQ(b.pop()->origin_node, "n5");
    EXPECT_EQ(total.bytes.load(), 3 * kFlowRecordBytes);
    EXPECT_EQ(b.push({one + one + one, "n6", false}), 0u) << "its only batch is kept";
    EXPECT_EQ(total.bytes.load(), 6 * kFlowRecordBytes);
    EXPECT_EQ(a.push({one, "n7", false}), 3u) << "a drops until the total fits";
    EXPECT_EQ(a.size(), 1u);
    EXPECT_EQ(a.pop()->origin_node, "n7");
    EXPECT_EQ(total.bytes.load(), 3 * kFlowRecordBytes);
  }
  EXPECT_EQ(total.bytes.load(), 0u) << "a queue that goes takes its bytes with it";
}

TEST(FlowSyncQueueTest, TheTokenBucketAllowsABurstThenTheRate) {
  const auto t0 = std::chrono::steady_clock::time_point{} + 100s;
  TokenBucket b(1000, 2000, t0);
  EXPECT_TRUE(b.take(1500, t0));
  EXPECT_FALSE(b.take(501, t0)) << "a batch is taken whole or not at all";
  EXPECT_TRUE(b.take(500, t0));
  EXPECT_FALSE(b.take(1, t0));
  EXPECT_FALSE(b.take(101, t0 + 100ms));
  EXPECT_TRUE(b.take(100, t0 + 100ms));
  EXPECT_TRUE(b.take(2000, t0 + 1h)) << "refilled to the burst";
  EXPECT_FALSE(b.take(1, t0 + 1h)) << "never beyond it";
}

// The batch checks before the records: format, size, the rate (the hub's
// bucket bursts at least one full batch), a malformed record refuses all.
TEST(FlowSyncHubTest, BatchesAreRefusedWholeForFormatSizeRateOrAMalformedRecord) {
  FlowSyncOptions o;
  o.max_records_per_second = 10;  // the burst is still one full batch
  FlowSyncHub hub(o);
  const auto t0 = std::chrono::steady_clock::time_point{} + 100s;
  TokenBucket bucket = hub.bucket(t0);
  const auto v = view();
  const FlowRecord good = record(kUp, 6, "192.0.2.10", 80, "10.0.0.1", 8080);
  auto batch = [](const std::string& records, uint32_t format = kFlowRecordFormat) {
    flowlb::v1::FlowSyncBatch b;
    b.set_format(format);
    b.set_records(records);
    return b;
  };
  std::string one;
  appendFlowRecord(&one, good);

  EXPECT_EQ(hub.relay("a", batch(one), bucket, {"b"}, v, t0), std::vector<std::string>{one});
  EXPECT_TRUE(hub.relay("a", batch(one, 2), bucket, {"b"}, v, t0).empty()) << "format 2";
  EXPECT_EQ(hub.counters().malformed, 1u);
  EXPECT_TRUE(hub.relay("a", batch(one + "x"), bucket, {"b"}, v, t0).empty()) << "65 bytes";
  EXPECT_EQ(hub.counters().malformed, 3u) << "a partial record counts";
  std::string bad = one + one;
  bad[kFlowRecordBytes] = 9;  // the second record's op
  EXPECT_TRUE(hub.relay("a", batch(bad), bucket, {"b"}, v, t0).empty());
  EXPECT_EQ(hub.counters().malformed, 5u);

  std::string full;
  for (size_t i = 0; i < FlowSyncHub::kMaxBatchRecords; ++i) full += one;
  EXPECT_TRUE(hub.relay("a", batch(full + one), bucket, {"b"}, v, t0).empty()) << "1025 records";
  EXPECT_EQ(hub.counters().malformed, 5u + FlowSyncHub::kMaxBatchRecords + 1);
  // One record was taken above (malformed batches take none): a full batch
  // is over what is left.
  EXPECT_TRUE(hub.relay("a", batch(full), bucket, {"b"}, v, t0).empty());
  EXPECT_EQ(hub.counters().rate_limited, FlowSyncHub::kMaxBatchRecords);
  EXPECT_EQ(hub.relay("a", batch(full), bucket, {"b"}, v, t0 + 200s),
            std::vector<std::string>{full})
      << "refilled";
  EXPECT_EQ(hub.counters().refused_vip + hub.counters().refused_backend, 0u);
}

// A hostile agent cannot flood the log: one line per node per 10 s, which
// says how many refusals it did not log.
TEST(FlowSyncHubTest, RefusalsAreLoggedAtMostOncePerNodeEveryTenSeconds) {
  auto log = std::make_unique<LogCapture>();
  FlowSyncHub hub(FlowSyncOptions{});
  const auto t0 = std::chrono::steady_clock::time_point{} + 100s;
  TokenBucket bucket = hub.bucket(t0);
  flowlb::v1::FlowSyncBatch b;
  b.set_format(kFlowRecordFormat);
  b.set_records("\n[error] forged");
  for (int i = 0; i < 1000; ++i) hub.relay("a\nforged", b, bucket, {}, view(), t0 + i * 1ms);
  hub.relay("b", b, bucket, {}, view(), t0 + 2s);
  hub.relay("a\nforged", b, bucket, {}, view(), t0 + 11s);
  const std::string text = log->text();
  log.reset();
  EXPECT_EQ(hub.counters().malformed, 1002u);
  size_t lines = 0;
  for (size_t at = 0; (at = text.find("event=flow_sync_refused", at)) != std::string::npos; ++at) {
    ++lines;
  }
  EXPECT_EQ(lines, 3u) << text;
  EXPECT_NE(text.find("node=a\\nforged reason=malformed records=1 msg=\"flow records: 15 bytes"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("suppressed=999"), std::string::npos) << text;
  EXPECT_NE(text.find("node=b reason=malformed"), std::string::npos) << text;
}

}  // namespace
}  // namespace flowlb::controller

// The controller's flow sync relay (docs/flow-sync.md, "The controller's
// relay") at cluster scale: full batches of 1024 upserts from one node,
// checked against a view of 10,000 Services and split for N other nodes
// (decode, identity check, one copy per destination), without gRPC.
// bench/run.sh controller reports the records a second one core relays.
#include <benchmark/benchmark.h>

#include "controller/grpc/flow_sync_hub.h"
#include "flowlb/v1/sync.pb.h"

namespace flowlb::controller {
namespace {

constexpr int kServices = 10000;

IpAddr v4(uint32_t a) {
  const uint8_t b[4] = {static_cast<uint8_t>(a >> 24), static_cast<uint8_t>(a >> 16),
                        static_cast<uint8_t>(a >> 8), static_cast<uint8_t>(a)};
  return IpAddr::fromV4(b);
}

std::shared_ptr<const View> view(int nodes) {
  const Entry::Encoder none = [](const DesiredService&, bool) { return std::string(); };
  auto v = std::make_shared<View>();
  auto names = std::make_shared<std::vector<std::string>>();
  for (int n = 0; n < nodes; ++n) names->push_back("node-" + std::to_string(1000 + n));
  v->nodes = names;
  for (int i = 0; i < kServices; ++i) {
    auto d = std::make_shared<DesiredService>();
    d->key = "bench/svc-" + std::to_string(100000 + i) + "/http/ipv4";
    d->vip = v4(0x0ac80000u + static_cast<uint32_t>(i));  // 10.200.x.y
    d->port = 80;
    for (uint32_t b = 0; b < 10; ++b) {
      d->backends.push_back({v4(0x0a010000u + static_cast<uint32_t>(i) * 16 + b), 8080,
                             BackendState::kActive, "", ""});
    }
    v->services.push_back(std::make_shared<Entry>(d, none));
  }
  return v;
}

void BM_FlowSyncRelay(benchmark::State& state) {
  const int nodes = static_cast<int>(state.range(0));
  const std::shared_ptr<const View> v = view(nodes);
  std::vector<std::string> destinations(v->nodes->begin() + 1, v->nodes->end());
  const std::string& sender = v->nodes->front();
  flowlb::v1::FlowSyncBatch batch;
  batch.set_format(kFlowRecordFormat);
  std::string records;
  for (uint32_t i = 0; i < FlowSyncHub::kMaxBatchRecords; ++i) {
    const uint32_t s = (i * 7919) % kServices;
    FlowRecord r;
    r.proto = 6;
    r.client = v4(0xc6336400u + i);
    r.client_port = static_cast<uint16_t>(1024 + i);
    r.vip = v4(0x0ac80000u + s);
    r.vip_port = 80;
    r.backend = v4(0x0a010000u + s * 16 + i % 10);
    r.backend_port = 8080;
    r.nat_port = static_cast<uint16_t>(20000 + i);
    appendFlowRecord(&records, r);
  }
  batch.set_records(records);
  FlowSyncOptions o;
  o.max_records_per_second = 1e12;  // the bench measures the relay, not the limit
  FlowSyncHub hub(o);
  auto now = std::chrono::steady_clock::now();
  TokenBucket bucket = hub.bucket(now);
  for (auto _ : state) {
    now += std::chrono::seconds(1);
    std::vector<std::string> out = hub.relay(sender, batch, bucket, destinations, v, now);
    if (out.size() != destinations.size() || out[0].size() != records.size()) {
      state.SkipWithError("records were refused");
      break;
    }
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(state.iterations() * FlowSyncHub::kMaxBatchRecords);
}
BENCHMARK(BM_FlowSyncRelay)->Arg(3)->Arg(100)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace flowlb::controller
BENCHMARK_MAIN();

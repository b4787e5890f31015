// Benchmarks of the agent's forwarding core: Maglev build time, balance and
// disruption; conntrack lookups and memory; the whole forwarding decision
// per packet. bench/run.sh core turns the results into FIGURE lines.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "agent/datapath/handoff_ring.h"
#include "agent/lb/conntrack.h"
#include "agent/lb/forwarder.h"
#include "agent/lb/maglev.h"
#include "agent/lb/next_hop_view.h"
#include "agent/lb/snapshot.h"
#include "agent/packet/builder.h"
#include "common/hash.h"

namespace flowlb::agent {
namespace {

constexpr uint32_t kPaperMaglevSize = 65537;  // the Maglev paper's table size

std::vector<MaglevBackend> backends(int n) {
  std::vector<MaglevBackend> v;
  for (int i = 0; i < n; ++i) {
    v.push_back({"10." + std::to_string(i / 250) + "." + std::to_string(i % 250) + ".1|8080", 1});
  }
  return v;
}

void BM_MaglevBuild(benchmark::State& state) {
  const auto n = static_cast<int>(state.range(0));
  const auto set = backends(n);
  double imbalance = 0;
  for (auto _ : state) {
    auto t = MaglevTable::build(set, kPaperMaglevSize, 7);
    benchmark::DoNotOptimize(t);
    state.PauseTiming();
    const auto counts = t->slotCounts();
    const double mean = static_cast<double>(kPaperMaglevSize) / n;
    imbalance = *std::max_element(counts.begin(), counts.end()) / mean;
    state.ResumeTiming();
  }
  state.counters["imbalance"] = imbalance;
}
BENCHMARK(BM_MaglevBuild)->Arg(10)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond);

// Slots that change owner when one of N backends is removed, divided by the
// optimum (the removed backend's share, 1/N).
void BM_MaglevDisruption(benchmark::State& state) {
  const auto n = static_cast<int>(state.range(0));
  auto set = backends(n);
  double excess = 0;
  for (auto _ : state) {
    auto before = MaglevTable::build(set, kPaperMaglevSize, 7);
    auto smaller = set;
    smaller.erase(smaller.begin() + n / 2);
    auto after = MaglevTable::build(smaller, kPaperMaglevSize, 7);
    size_t moved = 0;
    for (uint32_t i = 0; i < kPaperMaglevSize; ++i) {
      moved +=
          before->backends()[before->slots()[i]].key != after->backends()[after->slots()[i]].key;
    }
    excess = static_cast<double>(moved) / (static_cast<double>(kPaperMaglevSize) / n);
  }
  state.counters["excess"] = excess;
}
BENCHMARK(BM_MaglevDisruption)->Arg(100)->Unit(benchmark::kMillisecond)->Iterations(3);

// Key number i, computed rather than stored: in a worker the key comes
// from the packet, already in cache.
FlowKey keyOf(uint64_t i) {
  FlowTuple t;
  const uint64_t h = mix64(i + 1);
  t.src = IpAddr::fromV4(reinterpret_cast<const uint8_t*>(&h));
  static const IpAddr vip = *IpAddr::parse("192.0.2.10");  // not parsed per key
  t.dst = vip;
  t.sport = static_cast<uint16_t>(h >> 32);
  t.dport = 80;
  t.proto = kProtoTCP;
  return makeFlowKey(t, FlowKind::kForward);
}

// 1 M live entries in a 2 M-slot table; lookups of random present keys.
// Arg 0: one lookup at a time; arg 1: 16 lookups in flight, the buckets'
// signatures prefetched 16 lookups ahead and the entries they match 8
// ahead, in a rolling pipeline (a worker's processBatch runs the same over
// an RX burst, 4 ahead). The misses then overlap; what is left is the work
// of a lookup (about 41-47 ns on this guest with the table in cache).
void BM_ConntrackLookupHit(benchmark::State& state) {
  constexpr size_t kEntries = 1 << 20;
  ConnTrack ct(2 * kEntries, 1);
  std::vector<uint32_t> present;
  for (uint32_t i = 0; present.size() < kEntries; ++i) {
    const FlowKey k = keyOf(i);
    const uint64_t h = ct.hash(k);
    if (ct.find(k, h, 0)) continue;  // a duplicate tuple
    FlowEntry* e = ct.insert(k, h, 0);
    e->state = FlowState::kEstablished;
    e->timeout_ms = kMaxTimeoutMs;
    present.push_back(i);
  }
  std::mt19937_64 rng(3);
  std::vector<uint32_t> order(1 << 16);
  for (auto& o : order) o = present[rng() % present.size()];
  size_t i = 0;
  size_t hits = 0;
  const bool batched = state.range(0) == 1;
  constexpr size_t kLead = 16, kRing = 2 * kLead;
  FlowKey rk[kRing];
  uint64_t rh[kRing];
  for (size_t j = 0; j < kLead; ++j) {  // fill the pipeline
    rk[j] = keyOf(order[j]);
    rh[j] = ct.hash(rk[j]);
    ct.prefetch(rh[j]);
  }
  for (auto _ : state) {
    if (!batched) {
      const FlowKey k = keyOf(order[i++ & (order.size() - 1)]);
      hits += ct.find(k, ct.hash(k), 1) != nullptr;
    } else {
      // A rolling pipeline: lookup j's bucket signatures are prefetched 16
      // lookups before it is done and its entry 8 before (when the
      // signatures have arrived), so 16 lookups are in flight at any time.
      for (size_t j = i; j < i + 16; ++j) {
        const size_t ahead = j + kLead;
        rk[ahead % kRing] = keyOf(order[ahead & (order.size() - 1)]);
        rh[ahead % kRing] = ct.hash(rk[ahead % kRing]);
        ct.prefetch(rh[ahead % kRing]);
        ct.prefetchEntry(rh[(j + kLead / 2) % kRing]);
        hits += ct.find(rk[j % kRing], rh[j % kRing], 1) != nullptr;
      }
      i += 16;
    }
  }
  const int64_t lookups = batched ? state.iterations() * 16 : state.iterations();
  if (static_cast<int64_t>(hits) != lookups) state.SkipWithError("missed");
  state.SetItemsProcessed(lookups);
  state.counters["ns_per_lookup"] = benchmark::Counter(
      static_cast<double>(lookups), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["bytes_per_entry"] = static_cast<double>(ct.bytesPerEntry());
  state.counters["size"] = static_cast<double>(ct.size());
}
BENCHMARK(BM_ConntrackLookupHit)->Arg(0)->Arg(1);

// The bench service: 192.0.2.10, `backends` backends 10.1.0.N on `port`.
ServiceSpec benchService(int backends, uint16_t port) {
  ServiceSpec s;
  s.name = "bench";
  s.vip = *IpAddr::parse("192.0.2.10");
  s.port = port;
  for (int i = 1; i <= backends; ++i) {
    BackendSpec b;
    b.addr = *IpAddr::parse("10.1.0." + std::to_string(i));
    b.port = port == 80 ? 8080 : port;
    s.backends.push_back(b);
  }
  return s;
}

struct ForwardBench {
  explicit ForwardBench(const ServiceSpec& s = benchService(10, 80)) {
    SnatConfig snat;
    snat.v4 = *IpAddr::parse("10.0.0.1");
    snat.has_v4 = true;
    // 10 backends x 55,001 ports: room for every flow of every case (the
    // default range, 4,536 ports, would hold only 45 Ki flows, and the
    // 128 Ki-flow cases would measure SNAT ports running out).
    snat.port_min = 10000;
    snat.port_max = 65000;
    DesiredState d;
    d.services.push_back(s);
    snap = builder.build(d, snat)->snapshot;
    NextHop hop;
    hop.resolved = true;
    hop.ifindex = 2;
    hops.setDefault(true, hop);
  }
  static std::vector<uint8_t> frame(uint32_t i, uint8_t flags) {
    FrameSpec f;
    const uint8_t a[4] = {203, 0, static_cast<uint8_t>(i >> 16), static_cast<uint8_t>(i >> 8)};
    f.tuple = FlowTuple{IpAddr::fromV4(a), *IpAddr::parse("192.0.2.10"),
                        static_cast<uint16_t>(1024 + (i & 0xff) * 200 + (i >> 24)), 80, kProtoTCP};
    f.tcp_flags = flags;
    f.payload = 6;  // a 64-byte frame
    return buildFrame(f);
  }
  SnapshotBuilder builder;
  std::shared_ptr<const Snapshot> snap;
  StaticNextHops hops;
};

// Restores 64 frames from their templates (NAT rewrites them in place; the
// copy of ~64 bytes each is part of the figure) and decides them as one
// batch, as a worker does after one RX burst.
size_t forwardBatch(Forwarder& fwd, const std::vector<std::vector<uint8_t>>& templates,
                    uint32_t& next, std::vector<uint8_t>& buffers, const Snapshot& snap,
                    uint32_t now, bool batched = true) {
  constexpr size_t kBatch = 64;
  const size_t len = templates[0].size();
  Forwarder::Frame frames[kBatch];
  for (size_t j = 0; j < kBatch; ++j) {
    const auto& t = templates[next++ % templates.size()];
    std::memcpy(&buffers[j * len], t.data(), len);
    frames[j] = {&buffers[j * len], len};
  }
  Action actions[kBatch];
  if (batched) {
    fwd.processBatch(frames, kBatch, snap, now, actions);
  } else {
    for (size_t j = 0; j < kBatch; ++j) actions[j] = fwd.process(frames[j].data, len, snap, now);
  }
  size_t transmitted = 0;
  for (const Action& a : actions) transmitted += a.kind == ActionKind::kTransmit;
  return transmitted;
}

// Established NAT flows, batches of 64. Args: live flows (4 Ki: tables
// cache-resident; 128 Ki in a 1 Mi-entry table: every lookup a cache miss),
// and 0: one by one with process(), 1: processBatch (prefetch pipeline).
void BM_ForwardEstablished(benchmark::State& state) {
  ForwardBench fb;
  const auto flows = static_cast<uint32_t>(state.range(0));
  Forwarder fwd(
      ForwarderConfig{.conntrack_entries = flows <= 4096 ? size_t{1} << 16 : size_t{1} << 20},
      fb.hops);
  std::vector<std::vector<uint8_t>> templates;
  for (uint32_t i = 0; i < flows; ++i) {
    auto syn = ForwardBench::frame(i * 977, kTcpSyn);
    fwd.process(syn.data(), syn.size(), *fb.snap, 0);
    templates.push_back(ForwardBench::frame(i * 977, kTcpAck));
  }
  std::vector<uint8_t> buffers(64 * templates[0].size());
  uint32_t next = 0;
  size_t sent = 0;
  const bool batched = state.range(1) == 1;
  for (auto _ : state) sent += forwardBatch(fwd, templates, next, buffers, *fb.snap, 1, batched);
  if (static_cast<int64_t>(sent) != state.iterations() * 64)
    state.SkipWithError("not all forwarded");
  state.SetItemsProcessed(state.iterations() * 64);
  state.counters["ns_per_packet"] =
      benchmark::Counter(static_cast<double>(state.iterations() * 64),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_ForwardEstablished)
    ->Args({4096, 0})
    ->Args({4096, 1})
    ->Args({1 << 17, 0})
    ->Args({1 << 17, 1});

// A new flow per packet (a SYN from a fresh tuple): Maglev lookup, SNAT port
// allocation, two conntrack inserts; the table is full, so each also evicts.
// Arg: conntrack entries (16 Ki: 1 MiB, cache-resident; 1 Mi: 64 MiB, every
// bucket a cache miss). Tuples repeat after 128 Ki packets, by which time
// the clock has moved past the SYN timeout.
void BM_ForwardNewFlow(benchmark::State& state) {
  ForwardBench fb;
  Forwarder fwd(ForwarderConfig{.conntrack_entries = static_cast<size_t>(state.range(0))}, fb.hops);
  constexpr uint32_t kFrames = 1 << 17;  // within the 550 Ki SNAT (backend, port) pairs
  std::vector<std::vector<uint8_t>> templates;
  for (uint32_t i = 0; i < kFrames; ++i) {
    templates.push_back(ForwardBench::frame(i * 2654435761u, kTcpSyn));
  }
  std::vector<uint8_t> buffers(64 * templates[0].size());
  uint32_t next = 0;
  uint32_t now = 0;
  for (int warm = 0; warm < 4096; ++warm)
    forwardBatch(fwd, templates, next, buffers, *fb.snap, now);
  size_t sent = 0;
  for (auto _ : state) {
    if (next % kFrames < 64) now += 61'000;
    sent += forwardBatch(fwd, templates, next, buffers, *fb.snap, now);
  }
  if (static_cast<int64_t>(sent) != state.iterations() * 64) state.SkipWithError("not all sent");
  state.SetItemsProcessed(state.iterations() * 64);
  state.counters["ns_per_packet"] =
      benchmark::Counter(static_cast<double>(state.iterations() * 64),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_ForwardNewFlow)->Arg(1 << 14)->Arg(1 << 20);

// The datapath bench's new-flow case without the veth: a UDP packet from a
// fresh client per packet, at a simulated offered rate, to 3 backends with a
// 1 s idle timeout, a 55,001-port SNAT range and a 1 Mi-entry table, the
// worker's paced sweep every 250 ms of simulated time. Args: 0 NAT, 1 DSR;
// offered rate in thousands of packets per second (what decides how many
// flows are alive, and how many dead ones wait for the sweep).
void BM_ForwardNewUdpFlowSteady(benchmark::State& state) {
  const bool dsr = state.range(0) == 1;
  const auto kpps = static_cast<uint32_t>(state.range(1));
  ServiceSpec s = benchService(3, 53);
  s.proto = kProtoUDP;
  s.mode = dsr ? ForwardingMode::kDsr : ForwardingMode::kNat;
  s.idle_timeout_s = 1;
  ForwardBench fb(s);
  const auto& snap = fb.snap;
  Forwarder fwd(ForwarderConfig{.conntrack_entries = size_t{1} << 20}, fb.hops);
  FrameSpec f;
  f.tuple = FlowTuple{*IpAddr::parse("203.0.113.1"), s.vip, 1024, 53, kProtoUDP};
  f.payload = 18;  // a 64-byte frame
  const std::vector<uint8_t> tmpl = buildFrame(f);
  const size_t len = tmpl.size();
  constexpr size_t kBatch = 64;
  std::vector<uint8_t> buffers(kBatch * len);
  uint64_t client = 0;
  uint64_t packets = 0;
  uint32_t now = 1000, last_sweep = now;
  size_t sent = 0;
  auto batch = [&] {
    Forwarder::Frame frames[kBatch];
    for (size_t j = 0; j < kBatch; ++j) {
      uint8_t* b = &buffers[j * len];
      std::memcpy(b, tmpl.data(), len);
      const uint64_t c = mix64(++client);  // a fresh client address and port
      std::memcpy(b + 14 + 12, &c, 4);
      std::memcpy(b + 14 + 20, reinterpret_cast<const uint8_t*>(&c) + 4, 2);
      frames[j] = {b, len};
    }
    Action actions[kBatch];
    fwd.processBatch(frames, kBatch, *snap, now, actions);
    for (const Action& a : actions) sent += a.kind == ActionKind::kTransmit;
    packets += kBatch;
    now = 1000 + static_cast<uint32_t>(packets / kpps);  // kpps packets per ms
    if (now - last_sweep >= 250) {
      fwd.conntrack().sweepPaced(now);
      last_sweep = now;
    }
  };
  // Warm up to the steady state: 12 s of simulated time (past the sweep's
  // 10 s period) or 8 Mi packets, whichever is first.
  while (now < 13'000 && packets < (uint64_t{8} << 20)) batch();
  sent = 0;
  for (auto _ : state) batch();
  if (static_cast<int64_t>(sent) * 100 < state.iterations() * int64_t{kBatch} * 99) {
    state.SkipWithError("more than 1% not forwarded");
  }
  state.SetItemsProcessed(state.iterations() * int64_t{kBatch});
  state.counters["ns_per_packet"] =
      benchmark::Counter(static_cast<double>(state.iterations() * kBatch),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["forwarded"] =
      static_cast<double>(sent) / static_cast<double>(state.iterations() * kBatch);
  state.counters["ct_size"] = static_cast<double>(fwd.conntrack().size());
}
// (NAT at 1,000 kpps is left out: 1 M flows alive on 3 x 55,001 ports, so
// every new flow tries its 64 ports in vain before it evicts: about 100 us a
// packet, the SNAT range is what binds.)
BENCHMARK(BM_ForwardNewUdpFlowSteady)
    ->Args({0, 50})
    ->Args({0, 150})
    ->Args({1, 150})
    ->Args({1, 1000});

// Baseline for the memory-bound figures: one dependent random read in a
// 128 MiB array (a pointer chase), the cost of one cache and TLB miss on
// this machine, measured in the same run.
// The next hop of a packet to one of 16 backends on a link, with `routes`
// routes in the view (a node with a route per pod block has hundreds):
// arg 1 = 0 scans the routes (resolve), 1 takes the answer precomputed with
// the view (find).
void BM_NextHopLookup(benchmark::State& state) {
  const int nroutes = static_cast<int>(state.range(0));
  const bool pre = state.range(1) != 0;
  NextHopView v;
  v.attached = {2};
  NextHop h;
  h.ifindex = 2;
  h.resolved = true;
  v.unresolved[2] = h;
  for (int i = 0; i < nroutes - 1; ++i) {  // more specific, elsewhere
    NextHopView::Route r;
    r.prefix = *IpPrefix::parse("10." + std::to_string(100 + i / 250) + "." +
                                std::to_string(i % 250) + ".0/24");
    r.ifindex = 7;
    v.routes.push_back(r);
  }
  NextHopView::Route link;
  link.prefix = *IpPrefix::parse("10.0.0.0/16");
  link.ifindex = 2;
  v.routes.push_back(link);
  std::vector<IpAddr> dsts;
  for (int i = 0; i < 16; ++i) {
    dsts.push_back(*IpAddr::parse("10.0.0." + std::to_string(10 + i)));
    v.neighbors[2][dsts.back()] = h;
  }
  v.local[*IpAddr::parse("10.0.0.1")] = true;
  if (pre) v.precompute(dsts);
  size_t i = 0;
  for (auto _ : state) {
    const NextHopView::Answer a = pre ? v.find(dsts[i++ & 15]) : v.resolve(dsts[i++ & 15]);
    benchmark::DoNotOptimize(a.hop);
  }
  state.counters["ns_per_lookup"] =
      benchmark::Counter(static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_NextHopLookup)->Args({4, 0})->Args({4, 1})->Args({500, 0})->Args({500, 1});

// A desired state of N services (10 backends each, default 65537-slot
// tables) where one service's backends change: what the agent rebuilds
// when the controller sends an endpoint change.
void BM_SnapshotUpdateOne(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  DesiredState d;
  for (int i = 0; i < n; ++i) {
    ServiceSpec s;
    s.name = "svc-" + std::to_string(i);
    s.vip = *IpAddr::parse("10.200." + std::to_string(i / 250) + "." + std::to_string(i % 250));
    s.port = 80;
    for (int j = 0; j < 10; ++j) {
      BackendSpec b;
      b.addr = *IpAddr::parse("10." + std::to_string(1 + i / 250) + "." + std::to_string(i % 250) +
                              "." + std::to_string(j + 1));
      b.port = 8080;
      s.backends.push_back(b);
    }
    d.services.push_back(std::move(s));
  }
  SnatConfig snat;
  snat.v4 = *IpAddr::parse("10.0.0.1");
  snat.has_v4 = true;
  SnapshotBuilder builder;
  if (!builder.build(d, snat)) state.SkipWithError("build failed");
  for (auto _ : state) {
    auto& b = d.services[0].backends[0];
    b.state = b.state == BackendState::kActive ? BackendState::kDraining : BackendState::kActive;
    ++d.generation;
    auto snap = builder.build(d, snat);
    benchmark::DoNotOptimize(snap);
  }
}
BENCHMARK(BM_SnapshotUpdateOne)->Arg(1000)->Unit(benchmark::kMillisecond);

// A frame handed from one worker to another (several queues), as a NAT
// reply on the wrong queue is: copied into the ring by its receiver and out
// of it into the owner's UMEM frame. Both sides run here on one thread, so
// this is the CPU work of a hand-off without the cache lines crossing cores
// (two threads on this 2-vCPU guest measured the scheduler instead). Arg:
// frame bytes.
void BM_HandoffFrame(benchmark::State& state) {
  const auto len = static_cast<uint32_t>(state.range(0));
  HandoffRing ring(512);  // two workers' ring
  std::vector<uint8_t> frame(len, 0x5a);
  std::vector<uint8_t> umem(4096);
  for (auto _ : state) {
    for (int i = 0; i < 32; ++i) ring.push(frame.data(), len, 1, false);
    for (int i = 0; i < 32; ++i) {
      const HandoffRing::Slot* s = ring.front();
      std::memcpy(umem.data(), s->data, s->len);
      ring.pop();
    }
    benchmark::DoNotOptimize(umem.data());
  }
  state.counters["ns_per_frame"] =
      benchmark::Counter(static_cast<double>(state.iterations() * 32),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_HandoffFrame)->Arg(64)->Arg(1514);

void BM_MemoryLatencyBaseline(benchmark::State& state) {
  constexpr size_t kSlots = (128u << 20) / sizeof(uint32_t);
  std::vector<uint32_t> next(kSlots);
  std::vector<uint32_t> order(kSlots);
  for (uint32_t i = 0; i < kSlots; ++i) order[i] = i;
  std::mt19937_64 rng(5);
  std::shuffle(order.begin(), order.end(), rng);
  for (size_t i = 0; i < kSlots; ++i) next[order[i]] = order[(i + 1) % kSlots];
  uint32_t at = order[0];
  for (auto _ : state) {
    for (int i = 0; i < 16; ++i) at = next[at];
    benchmark::DoNotOptimize(at);
  }
  state.SetItemsProcessed(state.iterations() * 16);
  state.counters["ns_per_load"] =
      benchmark::Counter(static_cast<double>(state.iterations() * 16),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_MemoryLatencyBaseline);

}  // namespace
}  // namespace flowlb::agent

BENCHMARK_MAIN();

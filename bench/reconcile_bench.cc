// The controller's reconcile at cluster scale: N LoadBalancer Services with
// 10 endpoints each over 3 nodes, from the caches to every node's desired
// state. bench/run.sh controller reports it next to the end-to-end figures.
#include <benchmark/benchmark.h>

#include "controller/reconciler/reconciler.h"

namespace flowlb::controller {
namespace {

struct Cluster {
  std::vector<IpPool> pools;
  std::vector<ServiceObject> services;
  std::vector<EndpointSliceObject> slices;
  std::vector<NodeObject> nodes;
};

Cluster makeCluster(int n) {
  Cluster c;
  IpPool p;
  p.name = "public";
  p.ranges.push_back(*AddressRange::parse("10.200.0.0/16"));
  c.pools.push_back(p);
  for (const char* name : {"node-a", "node-b", "node-c"}) c.nodes.push_back({name, true});
  for (int i = 0; i < n; ++i) {
    ServiceObject s;
    s.meta.ns = "bench";
    s.meta.name = "svc-" + std::to_string(i);
    s.meta.created = i;
    s.spec.type = "LoadBalancer";
    s.spec.load_balancer_class = "flowlb.io/lb";
    s.spec.ports.push_back({"http", 6, 80});
    c.services.push_back(s);
    EndpointSliceObject e;
    e.meta.ns = "bench";
    e.meta.name = s.meta.name + "-x";
    e.service = s.meta.name;
    e.ports.push_back({"http", 6, 8080});
    for (int j = 0; j < 10; ++j) {
      Endpoint ep;
      ep.addresses.push_back(*IpAddr::parse("10." + std::to_string(1 + i / 25000) + "." +
                                            std::to_string((i / 100) % 250) + "." +
                                            std::to_string((i % 100) * 2 + j % 2 + 1)));
      ep.node = c.nodes[static_cast<size_t>(j) % 3].name;
      e.endpoints.push_back(ep);
    }
    c.slices.push_back(e);
  }
  return c;
}

// First reconcile: every Service gets an address.
void BM_ReconcileInitial(benchmark::State& state) {
  const Cluster c = makeCluster(static_cast<int>(state.range(0)));
  ReconcilerConfig cfg;
  // Shared as the informers hand them out: the copy is not the reconcile's.
  const std::vector<ServicePtr> services = shareAll(c.services);
  const std::vector<SlicePtr> slices = shareAll(c.slices);
  for (auto _ : state) {
    IncrementalReconciler r(cfg);
    benchmark::DoNotOptimize(&r.full(c.pools, services, slices, c.nodes));
  }
}
BENCHMARK(BM_ReconcileInitial)->Arg(1000)->Arg(10000)->Unit(benchmark::kMillisecond);

// Steady state: addresses are in status, one EndpointSlice changed.
void BM_ReconcileSteady(benchmark::State& state) {
  Cluster c = makeCluster(static_cast<int>(state.range(0)));
  ReconcilerConfig cfg;
  const Reconciled first = reconcile(cfg, c.pools, c.services, c.slices, c.nodes);
  for (size_t i = 0; i < c.services.size(); ++i) c.services[i].status.ips = first.services[i].ips;
  const std::vector<ServicePtr> services = shareAll(c.services);
  std::vector<SlicePtr> slices = shareAll(c.slices);
  for (auto _ : state) {
    EndpointSliceObject changed = *slices[0];  // an update replaces the object
    changed.endpoints[0].ready = !changed.endpoints[0].ready;
    slices[0] = std::make_shared<const EndpointSliceObject>(std::move(changed));
    IncrementalReconciler r(cfg);
    benchmark::DoNotOptimize(&r.full(c.pools, services, slices, c.nodes));
  }
}
BENCHMARK(BM_ReconcileSteady)->Arg(1000)->Arg(10000)->Unit(benchmark::kMillisecond);

// The controller's path for the common change: one Service's endpoints.
void BM_ReconcileEndpointChange(benchmark::State& state) {
  Cluster c = makeCluster(static_cast<int>(state.range(0)));
  IncrementalReconciler inc{ReconcilerConfig()};
  const Reconciled& first = inc.full(c.pools, c.services, c.slices, c.nodes);
  for (size_t i = 0; i < c.services.size(); ++i) c.services[i].status.ips = first.services[i].ips;
  inc.full(c.pools, c.services, c.slices, c.nodes);
  const std::vector<std::string> keys = {c.services[0].meta.key()};
  for (auto _ : state) {
    c.slices[0].endpoints[0].ready = !c.slices[0].endpoints[0].ready;
    const Reconciled& r = inc.endpointsChanged(keys, {c.slices[0]});
    benchmark::DoNotOptimize(&r);
  }
}
BENCHMARK(BM_ReconcileEndpointChange)->Arg(1000)->Arg(10000)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace flowlb::controller

BENCHMARK_MAIN();

// The reconciler: a pure function from what the caches hold (Services,
// EndpointSlices, Nodes, IP pools) to the allocations, what to tell users
// (status condition, Events) and the desired state of every node. It
// decides; the callers write (status, Events) and stream (gRPC).
#pragma once

#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "controller/allocator/allocator.h"
#include "controller/bgp/bgp_config.h"
#include "controller/config/annotations.h"
#include "controller/distribution/announcer_policy.h"
#include "controller/reconciler/objects.h"

namespace flowlb::controller {

struct ReconcilerConfig {
  std::string load_balancer_class = "flowlb.io/lb";
  bool default_class = false;  // also serve Services without a class
};

// kUnhealthy: the cluster's health verdict (controller/health/), set on
// the desired state after the reconcile; the reconciler makes only the
// other two.
enum class BackendState : uint8_t { kActive, kDraining, kUnhealthy };

struct DesiredBackend {
  IpAddr addr;
  uint16_t port = 0;
  BackendState state = BackendState::kActive;
  std::string node;
  std::string zone;
  bool operator==(const DesiredBackend&) const = default;
};

// One VIP:port:protocol of one Service, as every node gets it (with
// externalTrafficPolicy: Local too: it carries every endpoint, and each agent
// keeps those on its own node): everything an agent receives, compared as a
// whole, so a field added here is never left out of "did it change".
struct AgentService {
  std::string key;  // namespace/name/port/family
  IpAddr vip;
  uint16_t port = 0;
  uint8_t proto = 6;
  ForwardingMode mode = ForwardingMode::kNat;
  bool client_ip_affinity = false;
  uint32_t affinity_timeout_s = 10800;
  uint32_t idle_timeout_s = 0;
  uint32_t drain_timeout_s = 300;
  bool external_traffic_local = false;
  bool proxy_protocol_v2 = false;  // flowlb.io/proxy-protocol: v2
  HealthCheckSettings health;      // flowlb.io/health-check; kind kNone: off
  std::vector<IpPrefix> source_ranges;
  std::vector<DesiredBackend> backends;  // sorted by (address, port)
  bool operator==(const AgentService&) const = default;
};

// The same with what the controller alone uses.
struct DesiredService : AgentService {
  // Nodes that may announce its VIP (ready; with externalTrafficPolicy:
  // Local, those with a ready local endpoint), sorted. Services whose
  // candidates are all ready nodes share one list. Who announces is
  // decided by the distribution (controller/distribution/).
  std::shared_ptr<const std::vector<std::string>> announce_candidates;
  // Everything an agent receives is equal (the candidates are not sent).
  bool sameForAgents(const DesiredService& o) const {
    return static_cast<const AgentService&>(*this) == o;
  }
  // Not the base's ==, which would ignore the candidates: say which is meant.
  bool operator==(const DesiredService&) const = delete;
};

struct ServiceEvent {
  bool warning = true;
  std::string reason;
  std::string message;
  bool operator==(const ServiceEvent&) const = default;
};

struct ServiceOutcome {
  std::string key;
  std::vector<IpAddr> ips;
  std::string pool;
  bool satisfied = false;
  std::string reason;   // condition reason
  std::string message;  // condition message
  std::vector<ServiceEvent> events;
};

// A Service that stopped being ours (its class or type changed) while its
// status still shows what we wrote: the caller clears our ingress entries,
// conditions and annotation; until then its addresses stay held.
struct LeavingService {
  std::string key;
  std::vector<IpAddr> ips;  // ours, still in its status
  bool operator==(const LeavingService&) const = default;
};

// What an endpoint change altered in the desired state: only these entries
// differ from the result before it, so whoever keeps a copy (the
// distribution) patches them instead of comparing every Service again
// (issue 13: the work per endpoint change grew with the number of Services).
struct DesiredDelta {
  std::vector<std::shared_ptr<const DesiredService>> upserts;  // new or rebuilt, by key
  std::vector<std::string> removed;                            // VirtualService keys, sorted
  std::vector<VipCandidates> vips;   // VIPs whose candidates changed (their new ones), by VIP
  std::vector<IpAddr> removed_vips;  // sorted
};

struct Reconciled {
  std::vector<ServiceOutcome> services;  // served Services only, by key
  std::vector<LeavingService> leaving;   // by key
  // Every VirtualService, by key. Every ready node runs all of them.
  std::vector<std::shared_ptr<const DesiredService>> desired;
  std::vector<std::string> nodes;  // ready nodes, sorted
  // Per VIP, the nodes that may announce it (those that may announce every
  // service on it), sorted by VIP.
  std::vector<VipCandidates> vips;
  std::map<std::string, PoolUsage> pools;
  // BGP peers per node and advertisements per VIP (controller/bgp/); null:
  // no BGP configured. Set by the reconcile loop after a full reconcile.
  std::shared_ptr<const BgpDesired> bgp;
  // Counts the results of one reconciler. With `delta`, this result is
  // the one of `revision - 1` but for what `delta` lists (nodes, pools,
  // BGP and every other entry are the same); without (a full reconcile),
  // compare it whole. A consumer that missed a revision compares it whole.
  uint64_t revision = 0;
  std::shared_ptr<const DesiredDelta> delta;
};

bool servedByUs(const ServiceObject& s, const ReconcilerConfig& config);

// Whether a Service's status or annotations show what the controller wrote
// (one of our conditions, or the pool annotation).
bool carriesOurMarks(const ServiceObject& s);

// Whether two versions of a Service ask for the same allocation, announcers
// and backends: the same spec (ServiceSpec's defaulted operator==, so a new
// field counts without anyone listing it), labels, creation time and
// annotations, except those the controller writes itself.
bool sameInputs(const ServiceObject& a, const ServiceObject& b);

// One Service that changed in the source since the last reconcile.
struct ServiceChange {
  std::string key;
  const ServiceObject* now = nullptr;  // nullptr: deleted
  bool status_write_pending = false;   // our own status write has not come back yet
};

// What a batch of changes needs: a full reconcile, or a rebuild of the
// backends of some Services.
struct ReconcilePlan {
  bool full = false;
  std::vector<std::string> endpoints_of;  // served Services whose EndpointSlices changed
};

Reconciled reconcile(const ReconcilerConfig& config, const std::vector<IpPool>& pools,
                     const std::vector<ServiceObject>& services,
                     const std::vector<EndpointSliceObject>& slices,
                     const std::vector<NodeObject>& nodes);

// The same, keeping what it computed so that the common change -- a
// Service's endpoints -- rebuilds only that Service's entries: allocations
// cannot change when only EndpointSlices do. full() after anything else.
class IncrementalReconciler {
 public:
  explicit IncrementalReconciler(ReconcilerConfig config);
  // Keeps the Services it serves (shared, not copied) until the next one.
  const Reconciled& full(const std::vector<IpPool>& pools, const std::vector<ServicePtr>& services,
                         const std::vector<SlicePtr>& slices, const std::vector<NodeObject>& nodes);
  // The same, from objects (tests, benches): shares copies of them.
  const Reconciled& full(const std::vector<IpPool>& pools,
                         const std::vector<ServiceObject>& services,
                         const std::vector<EndpointSliceObject>& slices,
                         const std::vector<NodeObject>& nodes) {
    return full(pools, shareAll(services), shareAll(slices), nodes);
  }
  // The EndpointSlices of `service_keys` changed; `slices` are all their
  // current slices. Rebuilds only those Services' entries and their VIPs'
  // candidates, and says which in result().delta.
  const Reconciled& endpointsChanged(const std::vector<std::string>& service_keys,
                                     const std::vector<EndpointSliceObject>& slices);
  // Decides, from what the last full() saw, whether these changes can only
  // have moved endpoints (the common case: a rollout, a pod becoming ready)
  // or need a full reconcile. `slice_owners` are the Service keys of the
  // EndpointSlices that changed; `others` is any other change (Nodes, pools,
  // a re-list).
  ReconcilePlan plan(const std::vector<ServiceChange>& services,
                     const std::vector<std::string>& slice_owners, bool others) const;
  const Reconciled& result() const { return out_; }
  // The BGP plan made from this result (kept until the next full()).
  void setBgp(std::shared_ptr<const BgpDesired> bgp) { out_.bgp = std::move(bgp); }
  bool serves(const std::string& service_key) const;
  const ServiceOutcome* outcomeOf(const std::string& service_key) const;
  // As of the last full(): the Service and its allocated addresses.
  const ServiceObject* serviceOf(const std::string& service_key) const;
  const std::vector<IpAddr>* addressesOf(const std::string& service_key) const;

 private:
  struct Entry {
    ServicePtr svc;
    ServiceSettings settings;
    size_t outcome = 0;      // index in out_.services
    size_t base_events = 0;  // events of the allocation; the rest come from endpoints
    std::vector<std::shared_ptr<const DesiredService>> desired;
    size_t first = 0;  // where `desired` starts in out_.desired
  };
  // out_.desired and out_.vips from every entry (after a full reconcile).
  void assemble();
  // The nodes that may announce `vip`: those that may announce every entry
  // on it, of the Services `keys` (in order_).
  std::shared_ptr<const std::vector<std::string>> candidatesOf(
      const IpAddr& vip, const std::vector<std::string>& keys) const;

  ReconcilerConfig config_;
  std::unordered_map<std::string, Entry> entries_;
  std::vector<std::string> order_;  // served keys, sorted
  std::set<std::string> leaving_;   // as of the last full()
  std::vector<std::string> ready_nodes_;
  std::shared_ptr<const std::vector<std::string>> all_ready_;  // candidates shared by most
  std::vector<std::vector<std::string>> vip_users_;  // per out_.vips entry: its Services, in order_
  uint64_t revision_ = 0;
  Reconciled out_;
};

}  // namespace flowlb::controller

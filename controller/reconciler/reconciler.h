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
#include "controller/config/annotations.h"
#include "controller/reconciler/objects.h"

namespace flowlb::controller {

struct ReconcilerConfig {
  std::string load_balancer_class = "flowlb.io/lb";
  bool default_class = false;  // also serve Services without a class
};

enum class BackendState : uint8_t { kActive, kDraining };

struct DesiredBackend {
  IpAddr addr;
  uint16_t port = 0;
  BackendState state = BackendState::kActive;
  std::string node;
  std::string zone;
};

// One VIP:port:protocol of one Service, as every node gets it.
struct DesiredService {
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
  std::vector<IpPrefix> source_ranges;
  std::vector<DesiredBackend> backends;  // sorted by (address, port)
  std::string announcer;                 // the node that answers ARP/NDP for the VIP
  // Nodes that may announce it (ready; with externalTrafficPolicy: Local, a
  // ready local endpoint). The gRPC server narrows them to connected agents.
  std::vector<std::string> announce_candidates;
};

struct ServiceEvent {
  bool warning = true;
  std::string reason;
  std::string message;
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

struct NodeDesiredState {
  std::string node;
  // Every VIP; `announcer` says who announces it. Nodes share the entries
  // that are the same everywhere (all but externalTrafficPolicy: Local).
  std::vector<std::shared_ptr<const DesiredService>> services;
};

struct Reconciled {
  std::vector<ServiceOutcome> services;  // served Services only, by key
  std::vector<LeavingService> leaving;   // by key
  std::vector<NodeDesiredState> nodes;   // ready nodes, by name
  std::map<std::string, PoolUsage> pools;
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

// Rendezvous hashing: the candidate with the highest hash of (VIP, node)
// announces. VIPs spread over nodes, and a node's loss moves only its own.
std::string chooseAnnouncer(const IpAddr& vip, const std::vector<std::string>& candidates);

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
  const Reconciled& full(const std::vector<IpPool>& pools,
                         const std::vector<ServiceObject>& services,
                         const std::vector<EndpointSliceObject>& slices,
                         const std::vector<NodeObject>& nodes);
  // The EndpointSlices of `service_keys` changed; `slices` are all their
  // current slices.
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
  bool serves(const std::string& service_key) const;
  const ServiceOutcome* outcomeOf(const std::string& service_key) const;
  // As of the last full(): the Service and its allocated addresses.
  const ServiceObject* serviceOf(const std::string& service_key) const;
  const std::vector<IpAddr>* addressesOf(const std::string& service_key) const;

 private:
  struct Entry {
    ServiceObject svc;
    ServiceSettings settings;
    size_t outcome = 0;      // index in out_.services
    size_t base_events = 0;  // events of the allocation; the rest come from endpoints
    std::vector<std::shared_ptr<const DesiredService>> desired;
  };
  void assembleNodes();

  ReconcilerConfig config_;
  std::unordered_map<std::string, Entry> entries_;
  std::vector<std::string> order_;  // served keys, sorted
  std::set<std::string> leaving_;   // as of the last full()
  std::vector<std::string> ready_nodes_;
  Reconciled out_;
};

}  // namespace flowlb::controller

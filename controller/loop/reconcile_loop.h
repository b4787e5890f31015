// The controller's one reconcile loop, the same for both sources (the
// Kubernetes API's informers, the directory of YAML): changes come in as
// keys, a short debounce lets a burst settle, the reconciler decides whether
// they only moved endpoints or need a full pass, and the outcome goes to the
// distribution (agents), the status sink and the Event recorder.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/watchdog.h"
#include "controller/decode/decode.h"
#include "controller/reconciler/reconciler.h"
#include "controller/status/event_recorder.h"
#include "controller/status/wanted.h"

namespace flowlb::controller {

// The objects to reconcile, wherever they come from. Reads return copies,
// except the two lists a full reconcile reads, which share the objects.
class ObjectSource {
 public:
  virtual ~ObjectSource() = default;
  // False until every kind has been read once: a partial view would
  // release addresses.
  virtual bool synced() const = 0;
  virtual std::vector<ServicePtr> services() const = 0;
  virtual std::optional<ServiceObject> service(const std::string& key) const = 0;
  virtual std::vector<SlicePtr> slices() const = 0;
  virtual std::vector<EndpointSliceObject> slicesOf(const std::string& service_key) const = 0;
  virtual std::vector<NodeObject> nodes() const = 0;
  virtual std::vector<IpPool> pools() const = 0;
  // BGPPeer and BGPAdvertisement objects; a source without them has none.
  virtual std::vector<BgpPeerSpec> bgpPeers() const { return {}; }
  virtual std::vector<BgpAdvertisementSpec> bgpAdvertisements() const { return {}; }
  // A Secret of the controller's namespace (BGPPeer passwords); nullopt
  // when there is none by that name.
  virtual std::optional<SecretObject> secret(const std::string& /*name*/) const {
    return std::nullopt;
  }
  // The newest resourceVersion included, for tracing (0: none).
  virtual uint64_t version() const { return 0; }
};

// Where statuses go: the API server (k8s::StatusWriter) or the directory
// source's status file.
class StatusSink {
 public:
  virtual ~StatusSink() = default;
  // Lays over `*s` what we wrote that the source does not show yet (our
  // write's answer, before the watch brings it back): `*s` becomes a
  // changed copy, and stays the shared object when nothing applies.
  virtual void overlay(ServicePtr* s) const = 0;
  // Whether a write for this Service is queued or under way.
  virtual bool pending(const std::string& key) const = 0;
  // What Services should show. `complete`: every served and leaving
  // Service is in `wanted` (after a full reconcile); the others are no
  // longer ours to write. Otherwise only the keys given changed.
  virtual void want(const std::map<std::string, WantedStatus>& wanted, bool complete) = 0;
  // The whole outcome of a full reconcile (pool usage, the status file).
  virtual void reconciled(const Reconciled& /*r*/) {}
};

class LoopTelemetry {
 public:
  virtual ~LoopTelemetry() = default;
  virtual void reconciled(double /*seconds*/, const Reconciled& /*r*/, bool /*full*/) {}
};

struct ReconcileLoopOptions {
  ReconcilerConfig reconciler;
  // The one debounce: let a burst settle. Endpoint changes that find the
  // loop idle for as long skip it.
  std::chrono::milliseconds debounce{10};
  std::chrono::seconds resync{60};  // a full pass anyway (retries what failed)
  Watchdog* watchdog = nullptr;     // beaten each turn ("reconcile-loop")
};

class ReconcileLoop {
 public:
  // Called on the loop thread after every reconcile, with the newest
  // resourceVersion it includes.
  using Published = std::function<void(const Reconciled&, uint64_t version)>;
  ReconcileLoop(ReconcileLoopOptions options, ObjectSource* source, StatusSink* status,
                EventRecorder* events, Published published, LoopTelemetry* telemetry = nullptr,
                Clock* clock = SystemClock::get());
  ~ReconcileLoop();
  ReconcileLoop(const ReconcileLoop&) = delete;
  ReconcileLoop& operator=(const ReconcileLoop&) = delete;

  // Change notifications, from any thread.
  void serviceChanged(const std::string& key);
  void slicesChanged(const std::string& service_key);
  void everythingChanged();  // Nodes, pools, a re-list, leadership
  // What the distribution and agents now say about some Services.
  void feedback(const std::map<std::string, ServiceFeedback>& changed);

  void start();
  void stop();
  // One pass over what is pending, on the caller's thread (tests, --once).
  // False when nothing was pending or the source is not synced yet.
  bool runOnce();

 private:
  struct Pending {
    bool full = false;
    std::set<std::string> services;
    std::set<std::string> slice_owners;
    std::set<std::string> feedback;
    bool any() const {
      return full || !services.empty() || !slice_owners.empty() || !feedback.empty();
    }
  };
  void run();
  void pass(Pending p);
  void publishStatuses(const std::vector<std::string>* only);
  void observeEvents(const std::vector<std::string>* only);
  std::shared_ptr<const BgpDesired> bgpPlan(const std::vector<IpPool>& pools,
                                            const std::vector<NodeObject>& nodes,
                                            const Reconciled& r);

  ReconcileLoopOptions opt_;
  ObjectSource* source_;
  StatusSink* status_;
  EventRecorder* events_;
  Published published_;
  LoopTelemetry* telemetry_;
  Clock* clock_;

  std::mutex mu_;
  std::condition_variable cv_;
  Pending pending_;  // guarded by mu_
  bool stopping_ = false;
  std::thread thread_;

  // Loop thread only (or runOnce's caller).
  IncrementalReconciler reconciler_;
  std::map<std::string, ServiceFeedback> feedback_;    // guarded by mu_
  std::map<std::string, std::string> uids_;            // served Services' uids, for Events
  std::map<std::string, std::string> bgp_refused_;     // BGPPeers left out, why (said once)
  std::chrono::steady_clock::time_point last_pass_{};  // when the last pass ended
};

}  // namespace flowlb::controller

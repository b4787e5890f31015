// The controller on the Kubernetes API: informers for Services,
// EndpointSlices, Nodes and IPPools feed the reconciler; the leader writes
// what it decided back (Service status and the pool annotation, Events,
// IPPool status) through a small pool of writer threads, so a slow API
// never delays the desired state. Allocations live only in Service status:
// a restarted controller re-reads them and keeps them.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "controller/config/annotations.h"
#include "controller/k8s/api_client.h"
#include "controller/k8s/leader.h"
#include "controller/reconciler/reconciler.h"

namespace flowlb::controller::k8s {

// The condition flowlb keeps in every served Service's status, and the
// annotation naming the pool its address came from.
inline constexpr const char* kConditionType = "flowlb.io/AddressAllocated";
inline constexpr const char* kPoolAnnotation = kAnnotationAllocatedFrom;

class ControllerTelemetry : public ApiTelemetry {
 public:
  virtual void reconciled(double /*seconds*/, const Reconciled& /*r*/) {}
  virtual void leader(bool /*is_leader*/) {}
  virtual void statusWrite(std::string_view /*result*/) {}  // ok | conflict | failed
  virtual void eventPosted(std::string_view /*type*/, std::string_view /*reason*/) {}
};

struct KubeControllerOptions {
  ClusterConfig cluster;
  ApiClientOptions api;
  ReconcilerConfig reconciler;
  bool leader_elect = true;
  LeaderOptions leader;
  int writers = 4;
  std::chrono::milliseconds debounce{10};  // let a burst of watch events settle
  std::chrono::seconds resync{60};         // reconcile anyway (retries failed writes)
  int watch_timeout_min_s = 300;
  int watch_timeout_max_s = 600;
  std::chrono::milliseconds backoff_initial{200};
  std::chrono::milliseconds backoff_max{30000};
};

class KubeController {
 public:
  // `on_desired` gets every reconcile's result (on the reconcile thread) and
  // the highest resourceVersion it includes.
  using DesiredCallback = std::function<void(const Reconciled&, uint64_t version)>;
  KubeController(KubeControllerOptions options, ControllerTelemetry* telemetry,
                 DesiredCallback on_desired);
  ~KubeController();
  void start();
  void stop();
  bool synced() const;
  bool isLeader() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace flowlb::controller::k8s

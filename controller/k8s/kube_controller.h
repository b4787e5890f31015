// The controller on the Kubernetes API, wired from its parts: the informers
// (KubeSource) feed the one reconcile loop; the leader writes what it
// decided back through the writers' queue (StatusWriter: Service status,
// pool annotation, IPPool status; EventPoster: Events, deduplicated by the
// EventRecorder), so a slow API never delays the desired state.
// Allocations live only in Service status: a restarted controller re-reads
// them and keeps them.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "common/watchdog.h"
#include "controller/config/annotations.h"
#include "controller/k8s/api_client.h"
#include "controller/k8s/bgp_status_writer.h"
#include "controller/k8s/event_poster.h"
#include "controller/k8s/leader.h"
#include "controller/k8s/status_writer.h"
#include "controller/loop/reconcile_loop.h"

namespace flowlb::controller::k8s {

class KubeSource;

// The condition flowlb keeps in every served Service's status, and the
// annotation naming the pool its address came from.
inline constexpr const char* kConditionType = kConditionAllocated;
inline constexpr const char* kPoolAnnotation = kAnnotationAllocatedFrom;

class ControllerTelemetry : public ApiTelemetry,
                            public WriteTelemetry,
                            public EventTelemetry,
                            public LoopTelemetry {
 public:
  virtual void leader(bool /*is_leader*/) {}
  // A problem with leader election only the operator can fix ("" solved).
  virtual void leaderElectionProblem(const std::string& /*problem*/) {}
  // The watchdog found a part that stopped moving (or it moves again).
  virtual void stuck(bool /*stuck*/) {}
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
  // The controller's namespace: BGPPeer password Secrets are read there.
  std::string secret_namespace = "flowlb-system";
  int watch_timeout_min_s = 300;
  int watch_timeout_max_s = 600;
  std::chrono::milliseconds backoff_initial{200};
  std::chrono::milliseconds backoff_max{30000};
};

class KubeController {
 public:
  KubeController(KubeControllerOptions options, ControllerTelemetry* telemetry);
  ~KubeController();
  KubeController(const KubeController&) = delete;
  KubeController& operator=(const KubeController&) = delete;

  // `on_reconciled` gets every reconcile's result (on the loop thread) and
  // the newest resourceVersion it includes.
  void start(ReconcileLoop::Published on_reconciled);
  void stop();
  bool synced() const;
  bool isLeader() const;
  // What the distribution and the agents say about Services.
  void feedback(const std::map<std::string, ServiceFeedback>& changed);
  // What the agents say about their BGP sessions: each BGPPeer's status
  // and Events. Returns the sessions per state (metrics).
  std::map<std::string, uint64_t> bgpStatus(const BgpPeerSessions& sessions);
  // A problem only the operator can fix (shown in readiness), or "".
  std::string problem() const;
  // The leader's gRPC address while another instance leads, or "".
  std::string leaderAddress() const;
  // Liveness: every informer, the reconcile loop and the HTTP client's
  // thread pool keep moving (a hung controller gets restarted).
  Watchdog::Verdict health() const { return watchdog_->check(); }

 private:
  // A refused BGPPeer or BGPAdvertisement: a Warning InvalidSpec Event on
  // it ("" why: fixed). Kept, so a follower that becomes leader posts them.
  void tellDecodeProblem(const std::string& key, const std::string& uid, const std::string& why);

  KubeControllerOptions opt_;
  ControllerTelemetry* telemetry_;
  ApiClient api_;
  WriteQueue queue_;
  std::unique_ptr<KubeSource> source_;
  std::unique_ptr<StatusWriter> status_;
  std::unique_ptr<EventPoster> poster_;
  std::unique_ptr<EventRecorder> recorder_;
  std::unique_ptr<BgpStatusWriter> bgp_status_;
  std::unique_ptr<BgpPeerReporter> bgp_reporter_;
  std::unique_ptr<LeaderElector> elector_;
  std::unique_ptr<ReconcileLoop> loop_;
  // Shared: a probe stuck in a starved pool may run after we are gone.
  std::shared_ptr<Watchdog> watchdog_ = std::make_shared<Watchdog>();
  // Probes the HTTP client's pool every second (it beats "api-client-pool").
  std::thread prober_;
  std::mutex prober_mu_;
  std::condition_variable prober_cv_;
  bool stopping_ = false;
  bool started_ = false;
  std::mutex decode_mu_;
  std::map<std::string, std::pair<std::string, std::string>> decode_problems_;  // key -> uid, why
};

}  // namespace flowlb::controller::k8s

// The controller's Prometheus metrics, served on --metrics-address with
// /healthz and /readyz (common/endpoints.h). The Kubernetes layer reports
// through ControllerTelemetry; this turns the reports into
// flowlb_controller_* series.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/health.h"
#include "common/http_server.h"
#include "common/status.h"
#include "controller/grpc/sync_server.h"
#include "controller/k8s/kube_controller.h"

namespace flowlb::controller {

class ControllerMetrics : public k8s::ControllerTelemetry {
 public:
  // `health` backs /healthz and /readyz; it must outlive the metrics.
  static Result<std::unique_ptr<ControllerMetrics>> serve(const std::string& address,
                                                          const HealthChecks* health);

  void request(std::string_view verb, int code) override;
  void watchRestart(std::string_view resource, std::string_view reason) override;
  void rejectedObject(std::string_view resource) override;
  void throttled(double seconds) override;
  void apiWarning(std::string_view text) override;
  void reconciled(double seconds, const Reconciled& r, bool full) override;
  void leader(bool is_leader) override;
  void leaderElectionProblem(const std::string& problem) override;
  void stuck(bool stuck) override;
  void statusWrite(std::string_view result) override;
  void eventPosted(std::string_view type, std::string_view reason) override;
  // BGP sessions the agents report, per state (Idle ... Established).
  void bgpSessions(const std::map<std::string, uint64_t>& per_state);
  // One certificate bootstrap request's result (issued, denied, ...).
  void certificateRequest(std::string_view result);
  // The gRPC link, sampled once a second from now on.
  void sampleAgents(const SyncServer* server);
  void stopSampling();  // before the server goes
  void updateAgents(const std::vector<AgentStatus>& agents, uint64_t generation,
                    const SyncCounters& counters);
  ~ControllerMetrics() override;

 private:
  ControllerMetrics() = default;

  std::mutex mu_;  // prometheus-cpp's Add() is thread-safe; the pool gauges' reset is not
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<HttpServer> server_;  // destroyed first: no scrape outlives the families
  prometheus::Family<prometheus::Counter>* requests_ = nullptr;
  prometheus::Family<prometheus::Counter>* watch_restarts_ = nullptr;
  prometheus::Family<prometheus::Counter>* rejected_ = nullptr;
  prometheus::Counter* throttled_seconds_ = nullptr;
  prometheus::Counter* api_warnings_ = nullptr;
  prometheus::Family<prometheus::Counter>* reconciles_ = nullptr;
  prometheus::Histogram* reconcile_seconds_ = nullptr;
  prometheus::Gauge* leader_ = nullptr;
  prometheus::Gauge* leader_problem_ = nullptr;
  prometheus::Gauge* stuck_ = nullptr;
  prometheus::Family<prometheus::Counter>* status_writes_ = nullptr;
  prometheus::Family<prometheus::Counter>* events_ = nullptr;
  prometheus::Family<prometheus::Gauge>* services_ = nullptr;
  prometheus::Family<prometheus::Gauge>* pool_addresses_ = nullptr;
  prometheus::Gauge* bgp_vips_ = nullptr;
  prometheus::Gauge* bgp_peered_nodes_ = nullptr;
  prometheus::Family<prometheus::Gauge>* bgp_sessions_ = nullptr;
  prometheus::Gauge* agents_connected_ = nullptr;
  prometheus::Gauge* generation_ = nullptr;
  prometheus::Counter* stream_resets_ = nullptr;
  prometheus::Counter* sent_bytes_ = nullptr;
  prometheus::Family<prometheus::Counter>* states_ = nullptr;
  prometheus::Family<prometheus::Counter>* refused_ = nullptr;
  prometheus::Family<prometheus::Counter>* apply_errors_ = nullptr;
  prometheus::Gauge* not_programmed_ = nullptr;
  prometheus::Family<prometheus::Gauge>* agent_generation_ = nullptr;
  prometheus::Family<prometheus::Gauge>* agent_lag_ = nullptr;
  prometheus::Family<prometheus::Counter>* certificates_ = nullptr;
  prometheus::Family<prometheus::Gauge>* backends_unhealthy_ = nullptr;
  prometheus::Family<prometheus::Counter>* health_transitions_ = nullptr;
  prometheus::Family<prometheus::Gauge>* health_reports_ = nullptr;
  prometheus::Gauge* maglev_agreeing_ = nullptr;
  prometheus::Gauge* maglev_mismatches_ = nullptr;
  prometheus::Family<prometheus::Counter>* flow_sync_records_ = nullptr;
  prometheus::Family<prometheus::Counter>* flow_sync_bytes_ = nullptr;
  std::vector<std::string> health_services_;  // labels set last time
  std::vector<std::string> pool_names_;       // pools reported last time, to drop deleted ones
  std::vector<std::string> agent_nodes_;      // labels set last time, to drop departed agents
  std::mutex sample_mu_;
  std::condition_variable sample_cv_;
  bool stopping_ = false;
  std::thread sampler_;
};

}  // namespace flowlb::controller

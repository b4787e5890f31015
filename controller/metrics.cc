#include "controller/metrics.h"

#include <prometheus/family.h>

#include "common/endpoints.h"

namespace flowlb::controller {

Result<std::unique_ptr<ControllerMetrics>> ControllerMetrics::serve(const std::string& address,
                                                                    const HealthChecks* health) {
  std::unique_ptr<ControllerMetrics> m(new ControllerMetrics());
  m->registry_ = std::make_shared<prometheus::Registry>();
  auto& r = *m->registry_;
  registerBuildInfo(r, "controller");
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  using prometheus::BuildHistogram;
  m->requests_ = &BuildCounter()
                      .Name("flowlb_controller_api_requests_total")
                      .Help("Kubernetes API requests by verb and HTTP code (0: no answer)")
                      .Register(r);
  m->watch_restarts_ = &BuildCounter()
                            .Name("flowlb_controller_watch_restarts_total")
                            .Help("Watches or lists restarted, by resource and reason")
                            .Register(r);
  m->rejected_ = &BuildCounter()
                      .Name("flowlb_controller_rejected_objects_total")
                      .Help("Objects the controller could not decode and skipped")
                      .Register(r);
  m->throttled_seconds_ = &BuildCounter()
                               .Name("flowlb_controller_api_throttled_seconds_total")
                               .Help("Time requests waited for the client-side rate limit")
                               .Register(r)
                               .Add({});
  m->api_warnings_ = &BuildCounter()
                          .Name("flowlb_controller_api_warnings_total")
                          .Help(
                              "Distinct Warning headers the API server answered with (each is "
                              "logged once, event=api_warning)")
                          .Register(r)
                          .Add({});
  m->reconciles_ = &BuildCounter()
                        .Name("flowlb_controller_reconciles_total")
                        .Help("Reconcile passes, by kind (full, endpoints)")
                        .Register(r);
  m->reconcile_seconds_ =
      &BuildHistogram()
           .Name("flowlb_controller_reconcile_duration_seconds")
           .Help("Time to compute allocations and every node's desired state")
           .Register(r)
           .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                            0.25, 0.5, 1, 2.5});
  m->leader_ = &BuildGauge()
                    .Name("flowlb_controller_leader")
                    .Help("1 while this instance is the leader (the only one that writes)")
                    .Register(r)
                    .Add({});
  m->leader_problem_ = &BuildGauge()
                            .Name("flowlb_controller_leader_election_problem")
                            .Help(
                                "1 while leader election fails for a reason only the operator "
                                "can fix (no Lease namespace, RBAC); see the error log")
                            .Register(r)
                            .Add({});
  m->stuck_ = &BuildGauge()
                   .Name("flowlb_controller_watchdog_stuck")
                   .Help(
                       "1 while a part the watchdog follows (an informer, the reconcile loop, "
                       "the API client's threads) has stopped moving; liveness fails")
                   .Register(r)
                   .Add({});
  m->status_writes_ = &BuildCounter()
                           .Name("flowlb_controller_status_writes_total")
                           .Help("Service status writes by result (ok, conflict, failed)")
                           .Register(r);
  m->events_ = &BuildCounter()
                    .Name("flowlb_controller_events_total")
                    .Help("Kubernetes Events posted on Services, by type and reason")
                    .Register(r);
  m->services_ = &BuildGauge()
                      .Name("flowlb_controller_services")
                      .Help("Served LoadBalancer Services by whether their request is satisfied")
                      .Register(r);
  m->pool_addresses_ = &BuildGauge()
                            .Name("flowlb_controller_pool_addresses")
                            .Help("Addresses of each IPPool by state (used, free)")
                            .Register(r);
  m->bgp_vips_ = &BuildGauge()
                      .Name("flowlb_controller_bgp_vips")
                      .Help("VIPs whose IPPool a BGPAdvertisement selects (announced over BGP)")
                      .Register(r)
                      .Add({});
  m->bgp_peered_nodes_ = &BuildGauge()
                              .Name("flowlb_controller_bgp_peered_nodes")
                              .Help("Nodes that at least one BGPPeer's nodeSelector selects")
                              .Register(r)
                              .Add({});
  m->bgp_sessions_ = &BuildGauge()
                          .Name("flowlb_controller_bgp_sessions")
                          .Help("BGP sessions (BGPPeer x node) the agents report, by state")
                          .Register(r);
  m->agents_connected_ = &BuildGauge()
                              .Name("flowlb_controller_agents_connected")
                              .Help("Agents with an open Sync stream")
                              .Register(r)
                              .Add({});
  m->generation_ = &BuildGauge()
                        .Name("flowlb_controller_desired_generation")
                        .Help("Generation of the desired state being served")
                        .Register(r)
                        .Add({});
  m->stream_resets_ = &BuildCounter()
                           .Name("flowlb_controller_stream_resets_total")
                           .Help("Agent Sync streams that ended")
                           .Register(r)
                           .Add({});
  m->sent_bytes_ = &BuildCounter()
                        .Name("flowlb_controller_sync_sent_bytes_total")
                        .Help("Bytes of DesiredState messages sent to agents")
                        .Register(r)
                        .Add({});
  m->states_ = &BuildCounter()
                    .Name("flowlb_controller_sync_states_total")
                    .Help("DesiredStates sent to agents, by kind (full, incremental)")
                    .Register(r);
  m->refused_ = &BuildCounter()
                     .Name("flowlb_controller_sync_refused_streams_total")
                     .Help(
                         "Sync streams refused or closed early, by reason (stream_limit, "
                         "hello_timeout, bad_hello, not_leader)")
                     .Register(r);
  m->apply_errors_ = &BuildCounter()
                          .Name("flowlb_controller_agent_apply_errors_total")
                          .Help(
                              "Services an agent acknowledged but could not apply, by the "
                              "contract's ApplyErrorCode (each acknowledgement counts)")
                          .Register(r);
  m->not_programmed_ = &BuildGauge()
                            .Name("flowlb_controller_services_not_programmed")
                            .Help(
                                "Services that at least one agent could not apply "
                                "(flowlb.io/Programmed False)")
                            .Register(r)
                            .Add({});
  m->agent_generation_ = &BuildGauge()
                              .Name("flowlb_controller_agent_applied_generation")
                              .Help("Generation each agent acknowledged as applied")
                              .Register(r);
  m->agent_lag_ = &BuildGauge()
                       .Name("flowlb_controller_agent_generation_lag")
                       .Help("Generations an agent is behind the one sent to it")
                       .Register(r);
  m->certificates_ = &BuildCounter()
                          .Name("flowlb_controller_agent_certificates_total")
                          .Help(
                              "Agent certificate requests (bootstrap) by result: issued, "
                              "unauthenticated, denied, invalid, unavailable, throttled")
                          .Register(r);
  m->backends_unhealthy_ = &BuildGauge()
                                .Name("flowlb_controller_backends_unhealthy")
                                .Help(
                                    "Backends the cluster's health verdict holds down, per "
                                    "service with a health check")
                                .Register(r);
  m->health_transitions_ = &BuildCounter()
                                .Name("flowlb_controller_health_transitions_total")
                                .Help("Backend health verdicts that changed, by to (down, up)")
                                .Register(r);
  m->health_reports_ = &BuildGauge()
                            .Name("flowlb_controller_health_reports")
                            .Help(
                                "What the probing agents last reported, one per prober and "
                                "backend, as the last verdict saw it, by status (unknown, "
                                "healthy, unhealthy)")
                            .Register(r);
  m->maglev_mismatches_ = &BuildGauge()
                               .Name("flowlb_controller_maglev_fingerprint_mismatches")
                               .Help(
                                   "Services whose agents built different Maglev tables from "
                                   "the same state")
                               .Register(r)
                               .Add({});
  m->maglev_agreeing_ = &BuildGauge()
                             .Name("flowlb_controller_maglev_fingerprints_agreeing")
                             .Help(
                                 "Services that two or more agents built from the same state "
                                 "into the same Maglev table (what the mismatch check covers)")
                             .Register(r)
                             .Add({});
  m->flow_sync_records_ = &BuildCounter()
                               .Name("flowlb_controller_flow_sync_records_total")
                               .Help(
                                   "Flow sync records agents sent, by result: relayed (once per "
                                   "receiving agent), malformed, rate_limited, refused_vip, "
                                   "refused_backend, not_capable, queue_full")
                               .Register(r);
  m->flow_sync_bytes_ = &BuildCounter()
                             .Name("flowlb_controller_flow_sync_bytes_total")
                             .Help("Bytes of flow sync messages, by direction (in, out)")
                             .Register(r);
  HttpServerOptions o;
  o.address = address;
  auto server = serveEndpoints(o, m->registry_, health);
  if (!server) return Status::error("cannot serve metrics on " + address + ": " + server.error());
  m->server_ = std::move(*server);
  return m;
}

void ControllerMetrics::request(std::string_view verb, int code) {
  requests_->Add({{"verb", std::string(verb)}, {"code", std::to_string(code)}}).Increment();
}

void ControllerMetrics::watchRestart(std::string_view resource, std::string_view reason) {
  watch_restarts_->Add({{"resource", std::string(resource)}, {"reason", std::string(reason)}})
      .Increment();
}

void ControllerMetrics::rejectedObject(std::string_view resource) {
  rejected_->Add({{"resource", std::string(resource)}}).Increment();
}

void ControllerMetrics::throttled(double seconds) {
  throttled_seconds_->Increment(seconds);
}

void ControllerMetrics::apiWarning(std::string_view) {
  api_warnings_->Increment();
}

void ControllerMetrics::reconciled(double seconds, const Reconciled& r, bool full) {
  reconcile_seconds_->Observe(seconds);
  reconciles_->Add({{"kind", full ? "full" : "endpoints"}}).Increment();
  size_t ok = 0;
  for (const ServiceOutcome& s : r.services) ok += s.satisfied ? 1 : 0;
  std::lock_guard<std::mutex> lock(mu_);
  services_->Add({{"state", "satisfied"}}).Set(static_cast<double>(ok));
  services_->Add({{"state", "unsatisfied"}}).Set(static_cast<double>(r.services.size() - ok));
  // A deleted pool's series go with it (else an alert on a full pool would outlive the pool).
  for (const std::string& name : pool_names_) {
    if (r.pools.count(name) != 0) continue;
    for (const char* state : {"used", "free"}) {
      pool_addresses_->Remove(&pool_addresses_->Add({{"pool", name}, {"state", state}}));
    }
  }
  pool_names_.clear();
  for (const auto& [name, u] : r.pools) {
    pool_addresses_->Add({{"pool", name}, {"state", "used"}}).Set(static_cast<double>(u.used));
    pool_addresses_->Add({{"pool", name}, {"state", "free"}}).Set(static_cast<double>(u.free));
    pool_names_.push_back(name);
  }
  bgp_vips_->Set(r.bgp ? static_cast<double>(r.bgp->vips.size()) : 0);
  bgp_peered_nodes_->Set(r.bgp ? static_cast<double>(r.bgp->peers_by_node.size()) : 0);
}

void ControllerMetrics::bgpSessions(const std::map<std::string, uint64_t>& per_state) {
  for (const auto& [state, n] : per_state) {
    bgp_sessions_->Add({{"state", state}}).Set(static_cast<double>(n));
  }
}

ControllerMetrics::~ControllerMetrics() {
  stopSampling();
}

void ControllerMetrics::stopSampling() {
  {
    std::lock_guard<std::mutex> lock(sample_mu_);
    stopping_ = true;
  }
  sample_cv_.notify_all();
  if (sampler_.joinable()) sampler_.join();
}

void ControllerMetrics::sampleAgents(const SyncServer* server) {
  sampler_ = std::thread([this, server] {
    std::unique_lock<std::mutex> lock(sample_mu_);
    while (!sample_cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_; })) {
      updateAgents(server->agents(), server->generation(), server->counters());
    }
  });
}

namespace {

// A Prometheus counter brought up to a total counted elsewhere.
void catchUp(prometheus::Counter& c, uint64_t total) {
  const double have = c.Value();
  if (static_cast<double>(total) > have) c.Increment(static_cast<double>(total) - have);
}

}  // namespace

void ControllerMetrics::updateAgents(const std::vector<AgentStatus>& agents, uint64_t generation,
                                     const SyncCounters& counters) {
  std::lock_guard<std::mutex> lock(mu_);
  agents_connected_->Set(static_cast<double>(agents.size()));
  generation_->Set(static_cast<double>(generation));
  catchUp(*stream_resets_, counters.stream_resets);
  catchUp(*sent_bytes_, counters.bytes_sent);
  catchUp(states_->Add({{"kind", "full"}}), counters.states_full);
  catchUp(states_->Add({{"kind", "incremental"}}), counters.states_incremental);
  catchUp(refused_->Add({{"reason", "stream_limit"}}), counters.refused_streams);
  catchUp(refused_->Add({{"reason", "hello_timeout"}}), counters.hello_timeouts);
  catchUp(refused_->Add({{"reason", "bad_hello"}}), counters.hello_rejected);
  catchUp(refused_->Add({{"reason", "not_leader"}}), counters.not_leader);
  for (const auto& [code, n] : counters.apply_errors)
    catchUp(apply_errors_->Add({{"code", code}}), n);
  not_programmed_->Set(static_cast<double>(counters.services_not_programmed));
  catchUp(health_transitions_->Add({{"to", "down"}}), counters.health_down);
  catchUp(health_transitions_->Add({{"to", "up"}}), counters.health_up);
  const char* statuses[] = {"unknown", "healthy", "unhealthy"};
  for (size_t i = 0; i < 3; ++i) {
    health_reports_->Add({{"status", statuses[i]}})
        .Set(static_cast<double>(counters.health_statuses[i]));
  }
  maglev_mismatches_->Set(static_cast<double>(counters.maglev_mismatches));
  maglev_agreeing_->Set(static_cast<double>(counters.maglev_agreeing));
  const FlowSyncCounters& fs = counters.flow_sync;
  for (const auto& [result, n] :
       {std::pair{"relayed", fs.relayed}, std::pair{"malformed", fs.malformed},
        std::pair{"rate_limited", fs.rate_limited}, std::pair{"refused_vip", fs.refused_vip},
        std::pair{"refused_backend", fs.refused_backend}, std::pair{"not_capable", fs.not_capable},
        std::pair{"queue_full", fs.queue_full}}) {
    catchUp(flow_sync_records_->Add({{"result", result}}), n);
  }
  catchUp(flow_sync_bytes_->Add({{"direction", "in"}}), fs.bytes_in);
  catchUp(flow_sync_bytes_->Add({{"direction", "out"}}), fs.bytes_out);
  for (const std::string& k : health_services_) {
    if (!counters.backends_unhealthy.count(k)) {
      backends_unhealthy_->Remove(&backends_unhealthy_->Add({{"service", k}}));
    }
  }
  health_services_.clear();
  for (const auto& [k, n] : counters.backends_unhealthy) {
    backends_unhealthy_->Add({{"service", k}}).Set(static_cast<double>(n));
    health_services_.push_back(k);
  }
  for (const std::string& n : agent_nodes_) {
    agent_generation_->Remove(&agent_generation_->Add({{"node", n}}));
    agent_lag_->Remove(&agent_lag_->Add({{"node", n}}));
  }
  agent_nodes_.clear();
  for (const AgentStatus& a : agents) {
    agent_generation_->Add({{"node", a.node}}).Set(static_cast<double>(a.acked_generation));
    agent_lag_->Add({{"node", a.node}})
        .Set(a.sent_generation > a.acked_generation
                 ? static_cast<double>(a.sent_generation - a.acked_generation)
                 : 0.0);
    agent_nodes_.push_back(a.node);
  }
}

void ControllerMetrics::certificateRequest(std::string_view result) {
  certificates_->Add({{"result", std::string(result)}}).Increment();
}

void ControllerMetrics::leader(bool is_leader) {
  leader_->Set(is_leader ? 1 : 0);
}

void ControllerMetrics::leaderElectionProblem(const std::string& problem) {
  leader_problem_->Set(problem.empty() ? 0 : 1);
}

void ControllerMetrics::stuck(bool stuck) {
  stuck_->Set(stuck ? 1 : 0);
}

void ControllerMetrics::statusWrite(std::string_view result) {
  status_writes_->Add({{"result", std::string(result)}}).Increment();
}

void ControllerMetrics::eventPosted(std::string_view type, std::string_view reason) {
  events_->Add({{"type", std::string(type)}, {"reason", std::string(reason)}}).Increment();
}

}  // namespace flowlb::controller

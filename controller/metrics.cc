#include "controller/metrics.h"

#include <prometheus/family.h>

namespace flowlb::controller {

Result<std::unique_ptr<ControllerMetrics>> ControllerMetrics::serve(const std::string& address) {
  std::unique_ptr<ControllerMetrics> m(new ControllerMetrics());
  try {
    m->exposer_ = std::make_unique<prometheus::Exposer>(address);
  } catch (const std::exception& e) {
    return Status::error("cannot serve metrics on " + address + ": " + e.what());
  }
  m->registry_ = std::make_shared<prometheus::Registry>();
  auto& r = *m->registry_;
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
  m->exposer_->RegisterCollectable(m->registry_);
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

void ControllerMetrics::reconciled(double seconds, const Reconciled& r) {
  reconcile_seconds_->Observe(seconds);
  size_t ok = 0;
  for (const ServiceOutcome& s : r.services) ok += s.satisfied ? 1 : 0;
  std::lock_guard<std::mutex> lock(mu_);
  services_->Add({{"state", "satisfied"}}).Set(static_cast<double>(ok));
  services_->Add({{"state", "unsatisfied"}}).Set(static_cast<double>(r.services.size() - ok));
  for (const auto& [name, u] : r.pools) {
    pool_addresses_->Add({{"pool", name}, {"state", "used"}}).Set(static_cast<double>(u.used));
    pool_addresses_->Add({{"pool", name}, {"state", "free"}}).Set(static_cast<double>(u.free));
  }
}

void ControllerMetrics::leader(bool is_leader) {
  leader_->Set(is_leader ? 1 : 0);
}

void ControllerMetrics::statusWrite(std::string_view result) {
  status_writes_->Add({{"result", std::string(result)}}).Increment();
}

void ControllerMetrics::eventPosted(std::string_view type, std::string_view reason) {
  events_->Add({{"type", std::string(type)}, {"reason", std::string(reason)}}).Increment();
}

}  // namespace flowlb::controller

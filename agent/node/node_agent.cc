#include "agent/node/node_agent.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "agent/health/targets.h"
#include "agent/lb/maglev.h"

namespace flowlb::agent {
namespace {

// Logs why a part did not start and passes the error on.
Status failed(const char* reason, const Status& st) {
  spdlog::error("event=start reason={} msg=\"{}\"", reason, st.message());
  return st;
}

std::vector<IpAddr> vipsOf(const DesiredState& d) {
  std::vector<IpAddr> vips;
  for (const ServiceSpec& s : d.services) vips.push_back(s.vip);
  return vips;
}

size_t unhealthyBackends(const DesiredState& d) {
  size_t unhealthy = 0;
  for (const ServiceSpec& svc : d.services) {
    for (const BackendSpec& b : svc.backends) {
      unhealthy += b.state == BackendState::kUnhealthy ? 1 : 0;
    }
  }
  return unhealthy;
}

// Whether two states would build the same tables: the same services with the
// same backends in the same states (what a health verdict changes).
bool desiredEqual(const DesiredState& a, const DesiredState& b) {
  if (a.services.size() != b.services.size()) return false;
  for (size_t i = 0; i < a.services.size(); ++i) {
    const auto& x = a.services[i].backends;
    const auto& y = b.services[i].backends;
    if (a.services[i].name != b.services[i].name || x.size() != y.size()) return false;
    for (size_t j = 0; j < x.size(); ++j) {
      if (x[j].state != y[j].state || x[j].key() != y[j].key()) return false;
    }
  }
  return true;
}

// The file's state with this agent's verdicts of backends still probed
// (a changed check starts over: its targets are UNKNOWN again).
DesiredState withFileVerdicts(const DesiredState& next, const DesiredState& file_desired,
                              const std::map<health::TargetKey, health::HealthStatus>& verdicts) {
  DesiredState with_verdicts = health::withVerdicts(next, verdicts);
  for (ServiceSpec& svc : with_verdicts.services) {
    const auto old = std::find_if(file_desired.services.begin(), file_desired.services.end(),
                                  [&svc](const ServiceSpec& o) { return o.name == svc.name; });
    if (old == file_desired.services.end() || !(old->health == svc.health)) {
      const auto fresh = std::find_if(next.services.begin(), next.services.end(),
                                      [&svc](const ServiceSpec& o) { return o.name == svc.name; });
      svc.backends = fresh->backends;
    }
  }
  return with_verdicts;
}

BackendHealthReport::Status reportStatus(health::HealthStatus s) {
  return s == health::HealthStatus::kHealthy     ? BackendHealthReport::Status::kHealthy
         : s == health::HealthStatus::kUnhealthy ? BackendHealthReport::Status::kUnhealthy
                                                 : BackendHealthReport::Status::kUnknown;
}

}  // namespace

uint32_t monotonicMs() {
  return static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

// Refused services are logged one line each; warnings too.
void logApplyReport(const ApplyReport& r, const std::vector<ServiceError>& refused) {
  for (const ServiceError& e : refused) {
    spdlog::warn("event=service_refused service=\"{}\" reason={} msg=\"{}\"", e.service,
                 applyErrorCodeName(e.code), e.message);
  }
  for (const auto& w : r.warnings) spdlog::warn("event=config_warning msg=\"{}\"", w);
}

NodeAgent::NodeAgent(const NodeAgentOptions& options, const AgentConfigFile& initial,
                     std::unique_ptr<ControllerLink> link, FlowSync* flow_sync)
    : options_(options),
      health_(options.datapath.interfaces, options.interface_choice, link != nullptr),
      bgp_(options.node),
      link_(std::move(link)),
      flow_sync_(flow_sync),
      announce_interfaces_(initial.announce_interfaces),
      snat_(initial.snat),
      file_desired_(initial.desired),
      file_snat_(initial.snat),
      file_refused_(initial.refused),
      applied_desired_(initial.desired) {}

NodeAgent::~NodeAgent() {
  teardown();
}

Result<std::unique_ptr<NodeAgent>> NodeAgent::start(const NodeAgentOptions& options,
                                                    const AgentConfigFile& initial,
                                                    std::unique_ptr<ControllerLink> link,
                                                    FlowSync* flow_sync) {
  std::unique_ptr<NodeAgent> agent(new NodeAgent(options, initial, std::move(link), flow_sync));
  if (Status st = agent->startParts(initial); !st) return st;
  return agent;
}

Status NodeAgent::startParts(const AgentConfigFile& initial) {
  auto metrics = AgentMetrics::serve(options_.metrics_address, &health_.checks());
  if (!metrics) return failed("metrics", metrics.status());
  metrics_ = std::move(*metrics);
  {
    std::vector<std::pair<std::string, std::string>> roles;
    for (const std::string& i : options_.datapath.interfaces) roles.emplace_back(i, "xdp");
    for (const std::string& i : initial.announce_interfaces) roles.emplace_back(i, "announce");
    metrics_->interfaces(roles,
                         options_.interface_source.empty() ? "flag" : options_.interface_source);
  }
  auto dp = Datapath::start(options_.datapath);
  if (!dp) return failed("datapath", dp.status());
  dp_ = std::move(*dp);
  auto first_apply = dp_->apply(initial.desired, initial.snat);
  if (!first_apply) {
    spdlog::error("event=config_rejected reason=invalid msg=\"{}\"", first_apply.error());
    return first_apply.status();
  }
  // Services of the file refused for a bad health check (the rest applied).
  first_apply->errors.insert(first_apply->errors.end(), initial.refused.begin(),
                             initial.refused.end());
  logApplyReport(*first_apply, first_apply->errors);
  metrics_->configReload(true);
  metrics_->refusedServices(first_apply->errors);
  metrics_->desiredState(initial.desired);
  health_.attached();
  if (!link_) health_.applied(initial.desired.generation);
  if (Status st = startHealthChecks(initial); !st) return st;
  if (Status st = startAnnouncer(initial); !st) return st;
  if (link_) sendCapabilities();  // the Hello says what this node can do, now that it is known
  if (auto st = bgp_.update(initial.bgp, initial.desired, first_apply->errors); !st) {
    return failed("bgp", st);
  }
  const DatapathStatus first = dp_->status();
  spdlog::info("event=started interfaces={} services={} bind={} poll={} metrics={}",
               options_.datapath.interfaces.size(), initial.desired.services.size(),
               first.zero_copy ? "zerocopy" : "copy", options_.poll_mode, options_.metrics_address);
  // The standalone file: reloaded once a new version is complete and settled.
  if (!link_) {
    auto w = FileWatch::open(options_.config);
    if (!w) return failed("config_watch", w.status());
    watch_.emplace(std::move(*w));
  }
  last_update_wall_ = std::chrono::system_clock::now();
  return Status::ok();
}

// Health checks: the prober probes the backends of the applied state this
// node is assigned. Standalone, its verdicts are applied over the file's
// state (health::withVerdicts); with a controller they are only reported.
Status NodeAgent::startHealthChecks(const AgentConfigFile& initial) {
  health::ProberOptions po;
  po.node = options_.node;
  po.max_targets = options_.health_max_targets;
  po.max_in_flight = options_.health_max_in_flight;
  // A probe's replies are never taken for SNAT flows.
  po.port_ceiling = options_.datapath.snat_port_min;
  po.on_change = options_.on_health_change;
  auto prober = health::Prober::start(po);
  if (!prober) return failed("health_checks", prober.status());
  prober_ = std::move(*prober);
  prober_->setTargets(initial.desired);
  return Status::ok();
}

Status NodeAgent::startAnnouncer(const AgentConfigFile& initial) {
  if (initial.announce_interfaces.empty()) return Status::ok();
  auto a = L2Announcer::start(initial.announce_interfaces);
  if (!a) return failed("announce", a.status());
  announcer_ = std::move(*a);
  announcer_->setVips(vipsOf(initial.desired));
  metrics_->announcedVips(vipsOf(initial.desired));
  return Status::ok();
}

void NodeAgent::sendCapabilities() {
  const DatapathStatus st = dp_->status();
  AgentCapabilities caps;
  caps.l2_announcement = announcer_ != nullptr;
  caps.af_xdp_zero_copy = st.zero_copy;
  caps.af_xdp_copy = !st.zero_copy;
  for (const auto& a : st.attached) {
    caps.xdp_native = caps.xdp_native || a.mode == "native";
    caps.xdp_generic = caps.xdp_generic || a.mode == "generic";
  }
  caps.xdp_dispatcher = st.dispatcher;
  caps.max_maglev_table_size = kMaxMaglevSize;
  caps.conntrack_capacity = uint64_t{options_.datapath.conntrack_entries} * st.workers.size();
  link_->setCapabilities(caps);
}

std::chrono::milliseconds NodeAgent::longestSleep() const {
  std::chrono::milliseconds sleep(1000);
  if (watch_ && watch_->pending()) sleep = std::min(sleep, std::chrono::milliseconds(20));
  if (flow_sync_ != nullptr) sleep = std::min(sleep, std::chrono::milliseconds(100));
  return sleep;
}

void NodeAgent::poll(int timeout_ms, int wake_fd) {
  dp_->poll(timeout_ms, {wake_fd, watch_ ? watch_->fd() : -1});
}

void NodeAgent::syncFlows(std::atomic<bool>& dump_requested) {
  if (flow_sync_ == nullptr || !link_) return;
  FlowSync& fs = *flow_sync_;
  const uint32_t now = monotonicMs();
  for (const std::string& b : fs.collect(now)) {
    if (link_->sendFlowSync(b, false)) fs.noteSent(b.size() / kFlowRecordBytes, b.size(), false);
  }
  if (dump_requested.exchange(false)) {
    size_t records = 0;
    for (const std::string& b : fs.dump(now)) {
      if (link_->sendFlowSync(b, true)) {
        fs.noteSent(b.size() / kFlowRecordBytes, b.size(), true);
        records += b.size() / kFlowRecordBytes;
      }
    }
    spdlog::info("event=flow_sync_dump_sent records={}", records);
  }
  fs.expire(now);
}

void NodeAgent::applyFromController() {
  if (!link_) return;
  // Desired state from the controller, applied as a file would be.
  if (auto next = link_->take()) applyReceived(*next);
}

void NodeAgent::applyReceived(const ReceivedState& next) {
  AckReport ack;
  ack.generation = next.desired.generation;
  ack.errors = next.problems;
  for (const auto& p : next.other_problems) {
    spdlog::warn("event=desired_state_problem msg=\"{}\"", p);
  }
  auto report = dp_->apply(next.desired, snat_);
  if (report) {
    if (announcer_) {
      announcer_->setVips(next.announce);
      metrics_->announcedVips(next.announce);
    }
    metrics_->desiredState(next.desired);
    ack.errors.insert(ack.errors.end(), report->errors.begin(), report->errors.end());
    size_t backends = 0;
    for (const ServiceSpec& svc : next.desired.services) backends += svc.backends.size();
    spdlog::info(
        "event=desired_state_applied generation={} services={} refused={} backends={} "
        "announced={} unhealthy={}",
        next.desired.generation, next.desired.services.size(), ack.errors.size(), backends,
        next.announce.size(), unhealthyBackends(next.desired));
    logApplyReport(*report, ack.errors);
    health_.applied(next.desired.generation);
    for (const TableFingerprint& t : report->tables) {
      if (t.built || next.full) {
        ack.fingerprints.push_back({t.service, t.fingerprint, t.size, t.backends_with_slots});
      }
    }
    prober_->setTargets(next.desired);
    // BGP from the controller (none: the speaker stops). Sessions
    // whose settings did not change stay up (Speaker::configure).
    const bgp::BgpSettings settings = next.bgp ? *next.bgp : bgp::BgpSettings{};
    if (auto st = bgp::validate(settings); !st) {
      spdlog::error("event=bgp_config_rejected reason=invalid msg=\"{}\"", st.message());
    } else if (auto up = bgp_.update(settings, next.desired, ack.errors); !up) {
      spdlog::error("event=bgp_failed msg=\"{}\"", up.message());
    }
  } else {
    spdlog::error("event=desired_state_rejected generation={} msg=\"{}\" previous=kept",
                  next.desired.generation, report.error());
    ack.applied = false;
    ack.error = report.error();
  }
  link_->ack(ack);
  metrics_->configReload(report.isOk());
  metrics_->refusedServices(ack.errors);
  last_update_wall_ = std::chrono::system_clock::now();
}

// A node whose announce interface lost its link cannot serve its VIPs:
// say so, and the controller moves them to another node. The kernel's
// link event wakes the loop; the state comes from the netlink cache.
void NodeAgent::checkLinkHealth() {
  if (!link_) return;
  std::string down;
  for (const std::string& ifc : announce_interfaces_) {
    if (!dp_->interfaceUp(ifc)) down += (down.empty() ? "" : ",") + ifc;
  }
  if (down.empty() != healthy_) {
    healthy_ = down.empty();
    spdlog::warn("event=node_health healthy={} down=\"{}\"", healthy_, down);
    link_->setHealthy(healthy_, healthy_ ? "" : "interface " + down + " is down");
  }
}

void NodeAgent::reloadFile(FileWatch::Clock::time_point now, bool sighup) {
  if (!watch_) return;
  if (sighup) watch_->touch(now);  // SIGHUP
  if (!watch_->ready(now)) return;
  auto next = loadAgentConfig(options_.config);
  DesiredState with_verdicts;
  if (next) with_verdicts = withFileVerdicts(next->desired, file_desired_, prober_->verdicts());
  Result<ApplyReport> report =
      next ? dp_->apply(with_verdicts, next->snat) : Result<ApplyReport>(next.status());
  if (report) {
    report->errors.insert(report->errors.end(), next->refused.begin(), next->refused.end());
    spdlog::info("event=config_applied generation={} services={} refused={}",
                 next->desired.generation, next->desired.services.size(), report->errors.size());
    logApplyReport(*report, report->errors);
    metrics_->refusedServices(report->errors);
    health_.applied(next->desired.generation);
    file_desired_ = next->desired;
    file_snat_ = next->snat;
    file_refused_ = next->refused;
    applied_desired_ = with_verdicts;
    prober_->setTargets(next->desired);
    metrics_->desiredState(next->desired);
    if (announcer_) {
      announcer_->setVips(vipsOf(next->desired));
      metrics_->announcedVips(vipsOf(next->desired));
    }
    if (auto st = bgp_.update(next->bgp, next->desired, report->errors); !st) {
      spdlog::error("event=bgp_failed msg=\"{}\"", st.message());
    }
    if (next->announce_interfaces != announce_interfaces_) {
      spdlog::warn("event=config_warning msg=\"announce interfaces change on restart only\"");
    }
  } else {
    spdlog::error("event=config_rejected reason=invalid msg=\"{}\" previous=kept", report.error());
  }
  metrics_->configReload(report.isOk());
}

void NodeAgent::onHealthChanged() {
  const auto statuses = prober_->statuses();
  if (link_) {
    reportBackendHealth(statuses);
  } else {
    applyVerdicts();
  }
  metrics_->healthChecks(statuses, prober_->counters());
}

void NodeAgent::reportBackendHealth(const std::vector<health::TargetStatus>& statuses) {
  std::vector<BackendHealthReport> out;
  out.reserve(statuses.size());
  for (const health::TargetStatus& t : statuses) {
    out.push_back({t.key.service, t.key.backend, reportStatus(t.status), t.detail});
  }
  link_->setBackendHealth(std::move(out));
}

// Standalone: this agent's verdict is the verdict. The file's state
// is applied again (same generation) with unhealthy backends marked.
void NodeAgent::applyVerdicts() {
  DesiredState next = health::withVerdicts(file_desired_, prober_->verdicts());
  if (desiredEqual(next, applied_desired_)) return;
  auto report = dp_->apply(next, file_snat_);
  if (report) {
    report->errors.insert(report->errors.end(), file_refused_.begin(), file_refused_.end());
    spdlog::info("event=health_verdicts_applied generation={} unhealthy={}", next.generation,
                 unhealthyBackends(next));
    logApplyReport(*report, report->errors);
    metrics_->refusedServices(report->errors);
    applied_desired_ = std::move(next);
  } else {
    spdlog::error("event=health_verdicts_rejected msg=\"{}\" previous=kept", report.error());
  }
}

void NodeAgent::refreshMetrics() {
  if (link_) metrics_->controllerLink(link_->connected(), link_->resets(), last_update_wall_);
  metrics_->healthChecks(prober_->statuses(), prober_->counters());
  metrics_->update(dp_->status());
  if (flow_sync_ != nullptr) metrics_->update(flow_sync_->counters());
  if (announcer_) metrics_->update(announcer_->stats());
  if (bgp_.speaker()) metrics_->update(bgp_.speaker()->status());
  if (link_) bgp_.report(link_.get());
}

void NodeAgent::stop() {
  spdlog::info("event=stopping");
  teardown();
}

void NodeAgent::teardown() {
  prober_.reset();
  link_.reset();
  announcer_.reset();
  bgp_.stop();  // before the datapath: a withdrawal moves traffic away first
  dp_.reset();  // stops workers, detaches XDP
}

}  // namespace flowlb::agent

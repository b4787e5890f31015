#include "controller/health/verdict.h"

#include <algorithm>

#include "common/health_probers.h"
#include "controller/distribution/feedback.h"

namespace flowlb::controller {
namespace {

// "ns/name/web/ipv4" -> "port web (ipv4)".
std::string portOf(const std::string& key) {
  const size_t fam = key.rfind('/');
  const size_t port =
      fam == std::string::npos || fam == 0 ? std::string::npos : key.rfind('/', fam - 1);
  if (port == std::string::npos) return "port " + key;
  return "port " + key.substr(port + 1, fam - port - 1) + " (" + key.substr(fam + 1) + ")";
}

}  // namespace

std::string backendKeyOf(const DesiredBackend& b) {
  return (b.addr.isV4() ? b.addr.toString() : "[" + b.addr.toString() + "]") + ":" +
         std::to_string(b.port);
}

std::vector<HealthTransition> HealthVerdicts::update(
    const std::vector<std::shared_ptr<const DesiredService>>& desired,
    const std::vector<std::string>& probers, const std::map<std::string, ProberHealth>& reports) {
  std::vector<HealthTransition> out;
  if (probers != probers_) {
    probers_ = probers;
    assigned_.clear();
  }
  std::map<BackendId, Verdict> verdicts;
  std::map<BackendId, std::vector<std::string>> assigned;
  std::set<BackendId> down;
  failing_open_.clear();
  port_of_.clear();
  checked_.clear();
  for (const auto& d : desired) {
    if (d->health.kind == HealthCheckKind::kNone) continue;
    checked_.insert(d->key);
    size_t down_here = 0, takes_new = 0;  // of the active backends
    for (const DesiredBackend& b : d->backends) {
      BackendId id{d->key, backendKeyOf(b)};
      // externalTrafficPolicy: Local: only the backend's own node has it in
      // its table (the others drop it), so that node alone probes it.
      auto cached = assigned_.find(id);
      std::vector<std::string> mine;
      if (d->external_traffic_local && !b.node.empty()) {
        if (std::binary_search(probers_.begin(), probers_.end(), b.node)) mine = {b.node};
      } else {
        mine = cached != assigned_.end() ? std::move(cached->second)
                                         : probersFor(probers_, per_backend_, id.first, id.second);
      }
      size_t failing = 0, healthy = 0;
      std::string first_failing;
      for (const std::string& node : mine) {
        auto r = reports.find(node);
        if (r == reports.end()) continue;
        auto h = r->second.find(id);
        if (h == r->second.end()) continue;
        if (h->second.status == ProbeStatus::kHealthy) ++healthy;
        if (h->second.status == ProbeStatus::kUnhealthy) {
          if (failing++ == 0) {
            first_failing = node + (h->second.detail.empty() ? "" : ": " + h->second.detail);
          }
        }
      }
      const size_t n = mine.size();
      assigned.emplace(id, std::move(mine));
      if (n == 0) {  // nobody probes it: no verdict
        if (b.state == BackendState::kActive) ++takes_new;
        continue;
      }
      auto before = verdicts_.find(id);
      const bool was_down = before != verdicts_.end() && before->second.down;
      bool now_down = was_down;
      if (!was_down && failing * 2 > n) now_down = true;
      if (was_down && healthy * 2 > n) now_down = false;  // so no majority fails either
      if (now_down != was_down) {
        HealthTransition t{id.first, id.second, now_down, failing, n, first_failing};
        Verdict v;
        v.down = now_down;
        if (now_down) {
          v.message = "backend " + id.second + " failed its health check on " +
                      std::to_string(failing) + " of " + std::to_string(n) + " probing nodes (" +
                      first_failing + ")";
        } else {
          v.message = "backend " + id.second + " passed its health check again on " +
                      std::to_string(healthy) + " of " + std::to_string(n) + " probing nodes";
        }
        verdicts.emplace(id, std::move(v));
        out.push_back(std::move(t));
      } else if (before != verdicts_.end()) {
        verdicts.emplace(id, std::move(before->second));
      }
      if (now_down) down.insert(id);
      if (b.state == BackendState::kActive) ++(now_down ? down_here : takes_new);
    }
    // As the agents do: no backend takes new flows and some are only
    // unhealthy, so those take them.
    if (down_here > 0 && takes_new == 0) {
      failing_open_.insert(d->key);
      port_of_[d->key] = portOf(d->key);
    }
  }
  verdicts_ = std::move(verdicts);  // backends that left are forgotten
  assigned_ = std::move(assigned);
  down_ = std::move(down);
  return out;
}

bool HealthVerdicts::down(const std::string& service_key, const std::string& backend_key) const {
  return down_.count({service_key, backend_key}) > 0;
}

std::map<std::string, uint64_t> HealthVerdicts::downPerService() const {
  std::map<std::string, uint64_t> out;
  for (const std::string& key : checked_) out[key] = 0;
  for (const BackendId& id : down_) ++out[id.first];
  return out;
}

std::vector<std::shared_ptr<const DesiredService>> HealthVerdicts::apply(
    const std::vector<std::shared_ptr<const DesiredService>>& desired) const {
  if (down_.empty()) return desired;
  std::vector<std::shared_ptr<const DesiredService>> out;
  out.reserve(desired.size());
  for (const auto& d : desired) {
    auto first = down_.lower_bound({d->key, ""});
    if (first == down_.end() || first->first != d->key) {
      out.push_back(d);
      continue;
    }
    auto copy = std::make_shared<DesiredService>(*d);
    for (DesiredBackend& b : copy->backends) {
      if (b.state == BackendState::kActive && down_.count({d->key, backendKeyOf(b)})) {
        b.state = BackendState::kUnhealthy;
      }
    }
    out.push_back(std::move(copy));
  }
  return out;
}

std::vector<HealthFact> HealthVerdicts::facts() const {
  std::vector<HealthFact> out;
  for (const auto& [id, v] : verdicts_) {
    out.push_back({serviceKeyOf(id.first),
                   {v.down, v.down ? "BackendUnhealthy" : "BackendHealthy", v.message}});
  }
  for (const std::string& key : failing_open_) {
    out.push_back({serviceKeyOf(key),
                   {true, "AllBackendsUnhealthy",
                    "every backend of " + port_of_.at(key) +
                        " failed its health check: failing open, new connections go to all "
                        "of them"}});
  }
  return out;
}

}  // namespace flowlb::controller

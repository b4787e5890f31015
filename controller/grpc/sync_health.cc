#include "controller/grpc/sync_health.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/log_safe.h"

namespace flowlb::controller {
namespace {

namespace pb = flowlb::v1;

// A hostile or broken agent cannot make the controller hold more.
constexpr int kMaxEntries = 200'000;
constexpr size_t kMaxText = 512;

}  // namespace

ProberHealth proberHealthOf(const pb::Report& r) {
  ProberHealth out;
  const int n = std::min(r.backend_health_size(), kMaxEntries);
  for (int i = 0; i < n; ++i) {
    const pb::BackendHealth& h = r.backend_health(i);
    ProbeReport p;
    p.status = h.status() == pb::HEALTH_STATUS_HEALTHY     ? ProbeStatus::kHealthy
               : h.status() == pb::HEALTH_STATUS_UNHEALTHY ? ProbeStatus::kUnhealthy
                                                           : ProbeStatus::kUnknown;
    p.detail = logSafe(h.detail(), kMaxText);
    out[{h.service_key().substr(0, kMaxText), h.backend_key().substr(0, kMaxText)}] = std::move(p);
  }
  return out;
}

std::map<std::string, MaglevPrint> maglevPrintsOf(const pb::Ack& a) {
  std::map<std::string, MaglevPrint> out;
  const int n = std::min(a.maglev_fingerprints_size(), kMaxEntries);
  for (int i = 0; i < n; ++i) {
    const pb::MaglevFingerprint& f = a.maglev_fingerprints(i);
    out[f.service_key().substr(0, kMaxText)] = {f.fingerprint(), f.table_size(), f.backend_count()};
  }
  return out;
}

bool SyncHealth::setReconciled(const Reconciled& r) {
  // Backends may have left or checks changed: only Services with a check
  // (or verdicts held) need a decision, not every endpoint change.
  const bool held = verdicts_.checking();
  const bool patch = r.delta && !base_.desired.empty() && r.revision == base_.revision + 1;
  base_.revision = r.revision;
  if (!patch) {
    base_.desired = r.desired;
    base_.nodes = r.nodes;
    base_.vips = r.vips;
    base_.bgp = r.bgp;
    index_.clear();
    index_.reserve(base_.desired.size());
    checks_ = 0;
    for (size_t i = 0; i < base_.desired.size(); ++i) {
      index_[base_.desired[i]->key] = i;
      checks_ += base_.desired[i]->health.kind != HealthCheckKind::kNone;
    }
    any_checks_ = checks_ > 0;
    dirty_ = dirty_ || held || any_checks_;
    patch_ = DesiredDelta();
    return false;
  }
  const DesiredDelta& d = *r.delta;
  bool checked = false;
  for (const auto& s : d.upserts) {
    checked = checked || s->health.kind != HealthCheckKind::kNone;
    auto [it, fresh] = index_.try_emplace(s->key, base_.desired.size());
    if (fresh) {
      base_.desired.push_back(s);
      checks_ += s->health.kind != HealthCheckKind::kNone;
      continue;
    }
    std::shared_ptr<const DesiredService>& slot = base_.desired[it->second];
    checked = checked || slot->health.kind != HealthCheckKind::kNone;
    checks_ -= slot->health.kind != HealthCheckKind::kNone;
    checks_ += s->health.kind != HealthCheckKind::kNone;
    slot = s;
  }
  for (const std::string& key : d.removed) {
    auto it = index_.find(key);
    if (it == index_.end()) continue;
    const size_t at = it->second;
    index_.erase(it);
    checked = checked || base_.desired[at]->health.kind != HealthCheckKind::kNone;
    checks_ -= base_.desired[at]->health.kind != HealthCheckKind::kNone;
    if (at + 1 != base_.desired.size()) {
      base_.desired[at] = std::move(base_.desired.back());
      index_[base_.desired[at]->key] = at;
    }
    base_.desired.pop_back();
  }
  for (const VipCandidates& v : d.vips) {
    auto at = std::lower_bound(base_.vips.begin(), base_.vips.end(), v.vip,
                               [](const VipCandidates& x, const IpAddr& a) { return x.vip < a; });
    if (at != base_.vips.end() && at->vip == v.vip) {
      *at = v;
    } else {
      base_.vips.insert(at, v);
    }
  }
  for (const IpAddr& vip : d.removed_vips) {
    auto at = std::lower_bound(base_.vips.begin(), base_.vips.end(), vip,
                               [](const VipCandidates& x, const IpAddr& a) { return x.vip < a; });
    if (at != base_.vips.end() && at->vip == vip) base_.vips.erase(at);
  }
  any_checks_ = checks_ > 0;
  dirty_ = dirty_ || held || checked;
  patch_.upserts = verdicts_.apply(d.upserts);
  patch_.removed = d.removed;
  patch_.vips = d.vips;
  patch_.removed_vips = d.removed_vips;
  return true;
}

Reconciled SyncHealth::desired() const {
  Reconciled out;
  out.desired = verdicts_.apply(base_.desired);
  out.nodes = base_.nodes;
  out.vips = base_.vips;
  out.bgp = base_.bgp;
  return out;
}

void SyncHealth::setProbers(const std::vector<std::string>& nodes) {
  if (nodes == probers_) return;
  probers_ = nodes;
  dirty_ = true;
}

bool SyncHealth::report(const std::string& node, ProberHealth h) {
  ++reports_received_;
  auto it = reports_.find(node);
  if (it != reports_.end() && it->second == h) return false;
  reports_[node] = std::move(h);
  dirty_ = true;
  return true;
}

void SyncHealth::forget(const std::string& node) {
  if (reports_.erase(node)) dirty_ = true;
}

bool SyncHealth::decide() {
  reports_decided_ = reports_received_;
  if (!dirty_) return false;
  dirty_ = false;
  const std::vector<HealthTransition> changes = verdicts_.update(base_.desired, probers_, reports_);
  decided_statuses_ = {};
  for (const auto& [node, health] : reports_) {
    for (const auto& [id, r] : health) ++decided_statuses_[static_cast<size_t>(r.status)];
  }
  for (const HealthTransition& t : changes) {
    ++(t.down ? down_total_ : up_total_);
    if (t.down) {
      spdlog::warn(
          "event=backend_unhealthy reason=health_check service={} backend={} failing={} "
          "probers={} first=\"{}\"",
          t.service_key, t.backend_key, t.failing, t.probers, logSafe(t.first_failing, 256));
    } else {
      spdlog::info("event=backend_healthy service={} backend={} probers={}", t.service_key,
                   t.backend_key, t.probers);
    }
  }
  if (verdicts_.failingOpen() != failing_open_) {
    for (const std::string& key : verdicts_.failingOpen()) {
      if (!failing_open_.count(key)) {
        spdlog::warn("event=service_failing_open reason=all_backends_unhealthy service={}", key);
      }
    }
    failing_open_ = verdicts_.failingOpen();
  }
  return !changes.empty();
}

bool SyncHealth::comparePrints(const std::vector<AgentPrints>& agents) {
  std::map<std::string, std::vector<FingerprintSample>> samples;
  std::set<std::string> local;
  for (const AgentPrints& a : agents) {
    if (!a.view || !a.prints) continue;
    for (const auto& [key, print] : *a.prints) {
      const std::shared_ptr<const Entry>* it = a.view->services.find(key);
      if (!it) continue;  // not in what it runs
      if ((*it)->service().external_traffic_local) local.insert(key);
      samples[key].push_back({a.node, it->get(), print});
    }
  }
  std::vector<FingerprintMismatch> now = compareFingerprints(samples, local);
  // Services at least two agents built from the same content, all alike:
  // what the check covers.
  agreeing_ = 0;
  for (const auto& [key, list] : samples) {
    if (local.count(key)) continue;
    const bool mismatch = std::any_of(now.begin(), now.end(),
                                      [&key = key](const auto& m) { return m.service_key == key; });
    std::map<const void*, size_t> per_content;
    size_t most = 0;
    for (const FingerprintSample& s : list) most = std::max(most, ++per_content[s.content]);
    if (!mismatch && most >= 2) ++agreeing_;
  }
  if (now == mismatches_) return false;
  for (const FingerprintMismatch& m : now) {
    if (std::find_if(mismatches_.begin(), mismatches_.end(), [&](const FingerprintMismatch& o) {
          return o.service_key == m.service_key;
        }) == mismatches_.end()) {
      spdlog::warn("event=maglev_mismatch service={} msg=\"{}\"", m.service_key,
                   logSafe(mismatchFact(m).event.message, 1024));
    }
  }
  mismatches_ = std::move(now);
  return true;
}

std::vector<HealthFact> SyncHealth::facts() const {
  std::vector<HealthFact> out = verdicts_.facts();
  for (const FingerprintMismatch& m : mismatches_) out.push_back(mismatchFact(m));
  return out;
}

}  // namespace flowlb::controller

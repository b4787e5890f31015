#include "agent/health/targets.h"

#include <algorithm>

#include "common/hash.h"
#include "common/health_probers.h"

namespace flowlb::agent::health {

TargetSet probeTargets(const DesiredState& desired, const std::string& node, size_t cap) {
  TargetSet out;
  const HealthProbers& p = desired.health_probers;
  for (const ServiceSpec& s : desired.services) {
    if (s.health.kind == HealthCheckKind::kNone) continue;
    for (const BackendSpec& b : s.backends) {
      ProbeTarget t{{s.name, b.addr.withPort(b.port)}, b.addr, b.port, s.health};
      // externalTrafficPolicy: Local: this node keeps only its own backends,
      // and it alone probes them (the controller counts its report only).
      // (A backend with no node name is kept on every node: the normal
      // assignment then, as the controller does.)
      const bool own = s.keep_client_address && !b.node.empty();
      if (!own && !isProber(p.nodes, p.per_backend, node, t.key.service, t.key.backend)) {
        continue;
      }
      out.targets.push_back(std::move(t));
    }
  }
  std::sort(out.targets.begin(), out.targets.end(),
            [](const ProbeTarget& a, const ProbeTarget& b) { return a.key < b.key; });
  out.targets.erase(
      std::unique(out.targets.begin(), out.targets.end(),
                  [](const ProbeTarget& a, const ProbeTarget& b) { return a.key == b.key; }),
      out.targets.end());
  if (out.targets.size() > cap) {
    out.refused = out.targets.size() - cap;
    out.targets.resize(cap);
  }
  return out;
}

TargetDiff diffTargets(const std::vector<ProbeTarget>& before,
                       const std::vector<ProbeTarget>& after) {
  TargetDiff d;
  size_t i = 0, j = 0;
  while (i < before.size() || j < after.size()) {
    if (j == after.size() || (i < before.size() && before[i].key < after[j].key)) {
      d.removed.push_back(before[i++].key);
    } else if (i == before.size() || after[j].key < before[i].key) {
      d.added.push_back(after[j++]);
    } else {
      if (!(before[i] == after[j])) {  // same key, another check or address: restart
        d.removed.push_back(before[i].key);
        d.added.push_back(after[j]);
      }
      ++i;
      ++j;
    }
  }
  return d;
}

uint32_t staggerMs(const TargetKey& key, uint32_t interval_ms) {
  if (interval_ms == 0) return 0;
  const uint64_t h = hashBytes(key.service.data(), key.service.size(), 0x7374616767ULL);
  return static_cast<uint32_t>(mix64(hashBytes(key.backend.data(), key.backend.size(), h)) %
                               interval_ms);
}

DesiredState withVerdicts(const DesiredState& file,
                          const std::map<TargetKey, HealthStatus>& statuses) {
  DesiredState out = file;
  for (ServiceSpec& s : out.services) {
    if (s.health.kind == HealthCheckKind::kNone) continue;
    for (BackendSpec& b : s.backends) {
      if (b.state != BackendState::kActive) continue;
      const auto it = statuses.find({s.name, b.addr.withPort(b.port)});
      if (it != statuses.end() && it->second == HealthStatus::kUnhealthy) {
        b.state = BackendState::kUnhealthy;
      }
    }
  }
  return out;
}

}  // namespace flowlb::agent::health

// The cluster's one health verdict per backend, as a pure core: from what
// each prober last reported (Report.backend_health), the prober list
// (DesiredState.health_probers) and the desired services, which backends
// are down. Every agent then gets those as BACKEND_STATE_UNHEALTHY, so every
// node builds the same Maglev table.
//
// - A backend's probers are probersFor(prober list) (common/health_probers.h),
//   the same k nodes the agents compute; reports from other nodes are not
//   counted.
// - DOWN when a strict majority of its probers report UNHEALTHY.
// - UP again only when a strict majority of its probers report HEALTHY (so
//   no majority says UNHEALTHY and at least one says HEALTHY). A prober
//   that disconnects (its replacement says UNKNOWN until it has probed) or
//   says UNKNOWN moves it neither way: hysteresis.
// - A backend that left its service, a service without a health check and
//   a backend nobody probes any more are forgotten (no Event).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "controller/reconciler/reconciler.h"

namespace flowlb::controller {

enum class ProbeStatus : uint8_t { kUnknown, kHealthy, kUnhealthy };

struct ProbeReport {
  ProbeStatus status = ProbeStatus::kUnknown;
  std::string detail;  // the last failed probe's reason
  bool operator==(const ProbeReport&) const = default;
};

// (VirtualService key, backend key).
using BackendId = std::pair<std::string, std::string>;

// One prober's last Report.backend_health.
using ProberHealth = std::map<BackendId, ProbeReport>;

// The backend key of the contract ("10.1.2.3:8080", "[fd00::1]:8080"): what
// agents report and what probersFor hashes.
std::string backendKeyOf(const DesiredBackend& b);

// A verdict that changed in one update.
struct HealthTransition {
  std::string service_key;  // VirtualService key
  std::string backend_key;
  bool down = false;
  size_t failing = 0;  // probers reporting UNHEALTHY
  size_t probers = 0;
  std::string first_failing;  // "node-a: connect: Connection refused", or ""
};

// A fact to show on the Service while it holds (a Kubernetes Event, posted
// once by the event recorder).
struct HealthFact {
  std::string service;  // "ns/name"
  ServiceEvent event;
  bool operator==(const HealthFact&) const = default;
};

class HealthVerdicts {
 public:
  // `per_backend`: probers per backend (0: the default, 3).
  explicit HealthVerdicts(uint32_t per_backend = 0) : per_backend_(per_backend) {}

  // Decides again. `reports`: node -> its last report (nodes that are not
  // probers any more may be present; they are ignored).
  std::vector<HealthTransition> update(
      const std::vector<std::shared_ptr<const DesiredService>>& desired,
      const std::vector<std::string>& probers, const std::map<std::string, ProberHealth>& reports);

  bool down(const std::string& service_key, const std::string& backend_key) const;
  size_t downCount() const { return down_.size(); }
  // Whether the last update saw a service with a health check.
  bool checking() const { return !checked_.empty(); }
  // Down backends per VirtualService key, for every one with a health
  // check (0 when none is down), for the gauge.
  std::map<std::string, uint64_t> downPerService() const;
  // VirtualService keys whose every backend is down (they fail open).
  const std::set<std::string>& failingOpen() const { return failing_open_; }

  // `desired` with the down backends' state UNHEALTHY (draining ones stay
  // draining). Services without a down backend are the same pointers.
  std::vector<std::shared_ptr<const DesiredService>> apply(
      const std::vector<std::shared_ptr<const DesiredService>>& desired) const;

  // What holds now, per Service: a Warning per down backend, a Normal per
  // backend that came back (until it goes down again or leaves), a Warning
  // per port failing open. Messages stay the same while the fact holds.
  std::vector<HealthFact> facts() const;

 private:
  struct Verdict {
    bool down = false;
    std::string message;  // the Event's, fixed at the transition
  };
  uint32_t per_backend_;
  std::vector<std::string> probers_;  // as of the last update
  // The probers of each backend, for `probers_`.
  std::map<BackendId, std::vector<std::string>> assigned_;
  // Backends that went down at least once and are still in their service.
  std::map<BackendId, Verdict> verdicts_;
  std::set<BackendId> down_;
  std::set<std::string> failing_open_;
  std::set<std::string> checked_;               // VirtualService keys with a health check
  std::map<std::string, std::string> port_of_;  // failing-open key -> "port 80/TCP (IPv4)"
};

}  // namespace flowlb::controller

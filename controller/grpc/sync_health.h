// The health-check and Maglev-fingerprint side of the Sync server: it keeps
// each prober's last Report.backend_health, decides the cluster's verdict
// (controller/health/verdict.h) and gives the distribution the reconcile's
// desired state with the down backends UNHEALTHY; and it compares the
// Maglev fingerprints agents ack (controller/health/fingerprints.h). Not
// thread-safe: the server calls it under its lock.
#pragma once

#include <array>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "controller/distribution/distributor.h"
#include "controller/health/fingerprints.h"
#include "controller/health/verdict.h"
#include "flowlb/v1/sync.pb.h"

namespace flowlb::controller {

// Report.backend_health as the verdict reads it (bounded).
ProberHealth proberHealthOf(const flowlb::v1::Report& r);
// Ack.maglev_fingerprints, by VirtualService key (bounded).
std::map<std::string, MaglevPrint> maglevPrintsOf(const flowlb::v1::Ack& a);

// One agent's fingerprints with the view it acknowledged them in.
struct AgentPrints {
  std::string node;
  std::shared_ptr<const View> view;
  const std::map<std::string, MaglevPrint>* prints = nullptr;
};

class SyncHealth {
 public:
  explicit SyncHealth(uint32_t per_backend) : verdicts_(per_backend) {}

  // A reconcile's result, kept. True when it is a patch of the one kept
  // (r.delta on the next revision): then the distribution needs only
  // patch(); false: desired(), compared whole (a full reconcile, or a
  // revision missed).
  bool setReconciled(const Reconciled& r);
  // The reconcile's result with the verdicts applied.
  Reconciled desired() const;
  // The last patch with the verdicts applied.
  const DesiredDelta& patch() const { return patch_; }
  // Whether any service of the last reconcile has a health check.
  bool anyChecks() const { return any_checks_; }
  // The probers (sorted), a prober's last report, a node gone.
  void setProbers(const std::vector<std::string>& nodes);
  // False when it is the same as its last.
  bool report(const std::string& node, ProberHealth h);
  void forget(const std::string& node);
  bool dirty() const { return dirty_; }
  // Decides again (when dirty); true when a verdict changed (publish
  // desired() again). Logs each change.
  bool decide();

  // Compares the agents' fingerprints; true when the mismatches changed.
  bool comparePrints(const std::vector<AgentPrints>& agents);

  // The facts to show on Services (health verdicts, fingerprint mismatches).
  std::vector<HealthFact> facts() const;
  std::map<std::string, uint64_t> unhealthyPerService() const { return verdicts_.downPerService(); }
  uint64_t transitionsDown() const { return down_total_; }
  uint64_t transitionsUp() const { return up_total_; }
  uint64_t mismatches() const { return mismatches_.size(); }
  uint64_t agreeing() const { return agreeing_; }
  // Reports received, and how many of them the last decision had seen.
  uint64_t reportsReceived() const { return reports_received_; }
  uint64_t reportsDecided() const { return reports_decided_; }
  // What the probers' reports the last decision saw say, one per (prober,
  // backend): unknown, healthy, unhealthy.
  std::array<uint64_t, 3> decidedStatuses() const { return decided_statuses_; }

 private:
  HealthVerdicts verdicts_;
  Reconciled base_;  // desired, nodes, vips, bgp, revision: what the distribution reads
  std::unordered_map<std::string, size_t> index_;  // key -> position in base_.desired
  size_t checks_ = 0;                              // entries of base_.desired with a check
  DesiredDelta patch_;
  std::vector<std::string> probers_;
  std::map<std::string, ProberHealth> reports_;
  std::set<std::string> failing_open_;
  std::vector<FingerprintMismatch> mismatches_;
  bool dirty_ = false;
  bool any_checks_ = false;
  uint64_t agreeing_ = 0;
  uint64_t down_total_ = 0, up_total_ = 0;
  uint64_t reports_received_ = 0, reports_decided_ = 0;
  std::array<uint64_t, 3> decided_statuses_{};
};

}  // namespace flowlb::controller

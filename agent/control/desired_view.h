// The agent's copy of the controller's state, kept by service key, so that
// an INCREMENTAL state (upserts and removals against the generation the
// agent runs) becomes the complete state the datapath applies. A state
// stays pending until the agent acknowledges it as applied; only then is it
// the base of the next INCREMENTAL state. An INCREMENTAL state against any
// other base is answered BASE_GENERATION_MISMATCH (the controller then
// sends a FULL state).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "agent/control/convert.h"

namespace flowlb::agent {

class DesiredView {
 public:
  enum class Kind { kState, kBaseMismatch, kRejected };
  struct Outcome {
    Kind kind = Kind::kState;
    ReceivedState state;  // kState: the complete state of this generation
    std::string error;    // otherwise: why, for the Ack
  };

  DesiredView(std::string node, uint64_t active_generation)
      : node_(std::move(node)), active_generation_(active_generation) {}

  Outcome receive(const flowlb::v1::DesiredState& in);
  // The pending state of `generation` was applied: it is the base now.
  void applied(uint64_t generation);
  uint64_t active() const { return active_generation_; }

 private:
  struct Snapshot {
    std::map<std::string, std::shared_ptr<const ConvertedService>> services;
    struct Announced {
      bool announcer = false;                          // L2: this node answers ARP/NDP for it
      std::optional<flowlb::v1::BgpAnnouncement> bgp;  // mode BGP
    };
    std::map<IpAddr, Announced> announcements;
    std::optional<flowlb::v1::BgpConfig> bgp;  // none: the controller configures no BGP
    HealthProbers health_probers;              // none set: every node probes
    std::vector<std::string> other_problems;
  };
  ReceivedState complete(uint64_t generation, const Snapshot& s) const;

  std::string node_;
  uint64_t active_generation_;
  std::optional<Snapshot> active_;  // what the agent runs (none: nothing from a controller yet)
  uint64_t pending_generation_ = 0;
  std::optional<Snapshot> pending_;
};

}  // namespace flowlb::agent

// BGP announcement: the speaker runs while the configuration has peers; the
// routes follow every applied state (routes.h decides them).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "agent/announce/bgp/config.h"
#include "agent/announce/bgp/speaker.h"
#include "agent/control/bgp_report.h"
#include "agent/control/controller_link.h"
#include "agent/lb/service.h"
#include "common/status.h"

namespace flowlb::agent {

class BgpAnnouncement {
 public:
  explicit BgpAnnouncement(std::string node) : node_(std::move(node)) {}
  Status update(const bgp::BgpSettings& settings, const DesiredState& desired,
                const std::vector<ServiceError>& refused);
  const bgp::Speaker* speaker() const { return speaker_.get(); }
  // The sessions' states for the controller (BGPPeer status, Events).
  void report(ControllerLink* link);
  // Withdraws (or, with graceful restart, leaves) the routes and closes.
  void stop() { speaker_.reset(); }

 private:
  std::string node_;
  bgp::BgpSettings settings_;
  bool first_ = true;
  std::unique_ptr<bgp::Speaker> speaker_;
  std::vector<BgpSessionReport> reported_;
};

}  // namespace flowlb::agent

// The controller's side of the wire format: a DesiredService as the
// VirtualService bytes every agent receives (encoded once per content by
// the distribution), and a NodeUpdate as one ControllerMessage, with those
// bytes spliced in as they are instead of being encoded again per node.
#pragma once

#include <string>

#include "controller/distribution/distributor.h"
#include "flowlb/v1/sync.pb.h"

namespace flowlb::controller {

// Compact: fields at their documented defaults are left out (NAT, CLUSTER,
// no affinity, default timeouts, ACTIVE); node names only for
// externalTrafficPolicy: Local (the agents filter on them); backend keys
// only when `backend_keys` (agents without CAPABILITY_IMPLICIT_BACKEND_KEYS).
std::string encodeVirtualService(const DesiredService& d, bool backend_keys);

struct MessageOptions {
  bool backend_keys = false;         // the agent needs Backend.key
  bool bgp = false;                  // the agent listed CAPABILITY_BGP
  bool health = false;               // the agent listed CAPABILITY_HEALTH_CHECKS
  uint32_t probers_per_backend = 0;  // HealthProbers.probers_per_backend (0: 3)
};

// One node's BGP peers as the wire's BgpConfig (none: empty).
void encodeBgpConfig(const std::vector<BgpPeerSpec>* peers, flowlb::v1::BgpConfig* out);
// A VIP's advertisements as the wire's BgpAnnouncement.
void encodeBgpAnnouncement(const std::vector<BgpRouteSpec>& routes,
                           flowlb::v1::BgpAnnouncement* out);

// The DesiredState for `node`: FULL or INCREMENTAL as `u` says.
flowlb::v1::ControllerMessage desiredStateMessage(const NodeUpdate& u, const std::string& node,
                                                  const MessageOptions& o);

}  // namespace flowlb::controller

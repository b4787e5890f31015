// Which routes this node announces to each peer: the one place that
// decides it (DESIGN "one decision, one place").
//
// A VIP is announced by every node that can serve it, so the router
// spreads its traffic over all of them with ECMP (every node builds the
// same Maglev table, so a flow the router moves keeps its backend):
// - a service the datapath refused on this node does not count;
// - externalTrafficPolicy Cluster: the service has an active backend;
// - externalTrafficPolicy Local: an active backend runs on this node.
// A VIP shared by several services is announced if any of them qualifies.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "agent/announce/bgp/config.h"
#include "agent/lb/service.h"

namespace flowlb::agent::bgp {

// VIPs this node may announce (see above), sorted.
std::vector<IpAddr> eligibleVips(const std::vector<ServiceSpec>& services,
                                 const std::vector<ServiceError>& refused, const std::string& node);

// Routes per peer name, after advertisements (aggregation, attributes).
std::map<std::string, RouteSet> routesPerPeer(const BgpSettings& settings,
                                              const std::vector<IpAddr>& vips);

}  // namespace flowlb::agent::bgp

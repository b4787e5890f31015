// The controller's protobuf messages to the agent's domain structures: the
// agent's edge of the contract. A malformed service is skipped and
// reported; the rest is used.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "agent/announce/bgp/config.h"
#include "agent/lb/service.h"
#include "common/status.h"
#include "flowlb/v1/sync.pb.h"

namespace flowlb::agent {

// One desired state as the agent uses it.
struct ReceivedState {
  DesiredState desired;                     // generation inside
  std::vector<IpAddr> announce;             // VIPs this node answers ARP/NDP for
  std::vector<ServiceError> problems;       // services skipped as malformed (reported in the ack)
  std::vector<std::string> other_problems;  // parts that name no service (announcements)
  // BGP from the controller (agents with CAPABILITY_BGP): set when the
  // controller configures BGP for this node. An agent with a controller
  // reads no file, so this is its only BGP source.
  std::optional<bgp::BgpSettings> bgp;
  bool full = true;  // a FULL state (an INCREMENTAL one: false)
};

Result<IpAddr> pbAddress(const flowlb::v1::IpAddress& a);

struct ConvertedService {
  std::optional<ServiceSpec> spec;     // nullopt: skipped as malformed
  std::vector<ServiceError> problems;  // why, or backends skipped
};
// 0 fields mean the contract's defaults; an unknown kind means off.
HealthCheckSpec convertHealthCheck(const flowlb::v1::HealthCheck& h);
HealthProbers convertHealthProbers(const flowlb::v1::HealthProbers& p);

// `node` (may be empty): this node's name, for externalTrafficPolicy: Local,
// whose services keep only the backends on this node.
ConvertedService convertService(const flowlb::v1::VirtualService& vs, const std::string& node);

// A complete (FULL) state; INCREMENTAL states go through DesiredView.
ReceivedState convertDesiredState(const flowlb::v1::DesiredState& pb, const std::string& node = "");

}  // namespace flowlb::agent

// What the agents said, per Service: the pure function from the current
// view, the live agents and each agent's last acknowledgement to each
// Service's announcers and programming (status/wanted.h turns that into the
// flowlb.io/Announced and flowlb.io/Programmed conditions and the Events).
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "controller/bgp/peer_status.h"
#include "controller/distribution/distributor.h"
#include "controller/status/wanted.h"

namespace flowlb::controller {

struct AgentReport {
  std::string node;
  bool acked = false;          // acknowledged some state on this stream
  bool rejected = false;       // its last state was refused whole
  std::string reject_message;  // why
  // VirtualService key -> (code, message) of what it could not apply.
  std::map<std::string, std::pair<std::string, std::string>> errors;
  // Its BGP sessions (Report.bgp_sessions), bounded; node filled in.
  std::vector<BgpNodeSession> bgp;
};

// "ns/name/port/family" -> "ns/name".
std::string serviceKeyOf(const std::string& virtual_service_key);

// Every Service of the view. `announcers_known`: the distribution is past
// its settle period (before, announcers may still move as agents return).
std::map<std::string, ServiceFeedback> serviceFeedback(const View& view,
                                                       const std::set<std::string>& live,
                                                       bool announcers_known,
                                                       const std::vector<AgentReport>& agents);

// The agents' BGP sessions per BGPPeer, keeping only the peers each node
// was sent in `view` (an agent speaks for its own sessions, nothing else);
// every peer the view sends anywhere is listed, with no session if no
// agent reported one.
BgpPeerSessions bgpPeerSessions(const View& view, const std::vector<AgentReport>& agents);

}  // namespace flowlb::controller

// What the agents say about their BGP sessions, per BGPPeer: each node's
// session state for the peer's status (in the style of Cilium's
// CiliumBGPNodeConfig status), and the facts to post as Events on it (a
// session down, a session established). Pure: the Sync server gathers the
// agents' Report.bgp_sessions, the writers (status/bgp_peer_report.h) post.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "controller/reconciler/reconciler.h"

namespace flowlb::controller {

// One node's session to one peer, as its agent last reported it.
struct BgpNodeSession {
  std::string node;
  std::string peer;
  std::string state;           // Idle, Connect, OpenSent, OpenConfirm, Established
  uint64_t since_unix_ms = 0;  // when it entered `state` (agent's clock)
  uint64_t routes_advertised = 0;
  uint64_t routes_received = 0;
  uint64_t flaps = 0;
  uint64_t established_count = 0;  // since the agent started
  std::string bfd;                 // "" (off), AdminDown, Down, Init, Up
  std::string last_error;
  bool established() const { return state == "Established"; }
  bool operator==(const BgpNodeSession&) const = default;
};

// Per BGPPeer name, its sessions sorted by node.
using BgpPeerSessions = std::map<std::string, std::vector<BgpNodeSession>>;

// Groups the agents' sessions by peer; a peer in `known` with no session
// gets an empty list (so its status is cleared).
BgpPeerSessions groupByPeer(const std::vector<BgpNodeSession>& sessions,
                            const std::vector<std::string>& known);

// How long a session that never came up may try before it counts as down
// (an agent's first connect takes a moment; a wrong ASN never comes up).
inline constexpr uint64_t kBgpNeverUpGraceMs = 30000;

// The facts that hold for one peer now: per node, a Warning SessionDown
// while its session is not Established after having been (or, for one
// that never came up, once the grace above has passed since the controller
// first saw it: `first_seen_ms` by node, the controller's clock), a Normal
// SessionEstablished while it is. The message names only the node: the
// state cycles (Connect, Idle, ...) while a router is away and the error
// changes with each attempt; both are in the status, and one outage is
// one Event.
std::vector<ServiceEvent> bgpPeerFacts(const std::vector<BgpNodeSession>& sessions,
                                       uint64_t now_unix_ms,
                                       const std::map<std::string, uint64_t>& first_seen_ms);

// Counts of sessions per state (for the metric), over every peer.
std::map<std::string, uint64_t> sessionsPerState(const BgpPeerSessions& peers);

}  // namespace flowlb::controller

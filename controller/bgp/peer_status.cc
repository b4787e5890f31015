#include "controller/bgp/peer_status.h"

#include <algorithm>

namespace flowlb::controller {

BgpPeerSessions groupByPeer(const std::vector<BgpNodeSession>& sessions,
                            const std::vector<std::string>& known) {
  BgpPeerSessions out;
  for (const std::string& name : known) out[name];
  for (const BgpNodeSession& s : sessions) out[s.peer].push_back(s);
  for (auto& [name, list] : out) {
    std::sort(list.begin(), list.end(),
              [](const BgpNodeSession& a, const BgpNodeSession& b) { return a.node < b.node; });
  }
  return out;
}

std::vector<ServiceEvent> bgpPeerFacts(const std::vector<BgpNodeSession>& sessions,
                                       uint64_t now_unix_ms,
                                       const std::map<std::string, uint64_t>& first_seen_ms) {
  std::vector<ServiceEvent> out;
  for (const BgpNodeSession& s : sessions) {
    if (s.established()) {
      out.push_back({false, "SessionEstablished", "node " + s.node + ": session established"});
      continue;
    }
    const bool was_up = s.established_count > 0;
    auto first = first_seen_ms.find(s.node);
    const bool tried_long = first != first_seen_ms.end() && now_unix_ms >= first->second &&
                            now_unix_ms - first->second >= kBgpNeverUpGraceMs;
    if (!was_up && !tried_long) continue;
    out.push_back({true, "SessionDown",
                   "node " + s.node + ": session " + (was_up ? "down" : "not established") +
                       "; the BGPPeer's status.nodes has its state and last error"});
  }
  return out;
}

std::map<std::string, uint64_t> sessionsPerState(const BgpPeerSessions& peers) {
  std::map<std::string, uint64_t> out;
  for (const char* s : {"Idle", "Connect", "OpenSent", "OpenConfirm", "Established"}) out[s] = 0;
  for (const auto& [name, list] : peers) {
    for (const BgpNodeSession& s : list) ++out[s.state];
  }
  return out;
}

}  // namespace flowlb::controller

#include "controller/grpc/bgp_report.h"

#include <algorithm>
#include <chrono>
#include <set>
#include <string>

#include "common/log_safe.h"

namespace flowlb::controller {
namespace pb = flowlb::v1;

namespace {

const char* stateName(pb::BgpSessionState s) {
  switch (s) {
    case pb::BGP_SESSION_STATE_CONNECT: return "Connect";
    case pb::BGP_SESSION_STATE_OPEN_SENT: return "OpenSent";
    case pb::BGP_SESSION_STATE_OPEN_CONFIRM: return "OpenConfirm";
    case pb::BGP_SESSION_STATE_ESTABLISHED: return "Established";
    default: return "Idle";
  }
}

const char* bfdName(pb::BfdSessionState s) {
  switch (s) {
    case pb::BFD_SESSION_STATE_ADMIN_DOWN: return "AdminDown";
    case pb::BFD_SESSION_STATE_INIT: return "Init";
    case pb::BFD_SESSION_STATE_UP: return "Up";
    default: return "Down";
  }
}

}  // namespace

std::vector<BgpNodeSession> bgpSessionsOf(const pb::Report& r) {
  std::vector<BgpNodeSession> out;
  std::set<std::string> peers;
  const uint64_t now =
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count());
  const int n = std::min(r.bgp_sessions_size(), kMaxBgpSessionsPerAgent);
  out.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    const pb::BgpSessionStatus& s = r.bgp_sessions(i);
    BgpNodeSession b;
    b.peer = s.peer().substr(0, 253);            // a BGPPeer's name; matched against what was sent
    if (!peers.insert(b.peer).second) continue;  // one session per peer and node
    b.state = stateName(s.state());
    // The agent's clock, but never in the future (the status' date-time
    // must stay a valid timestamp).
    b.since_unix_ms = std::min(s.since_unix_ms(), now);
    b.routes_advertised = s.routes_advertised();
    b.routes_received = s.routes_received();
    b.flaps = s.flaps();
    b.established_count = s.established_count();
    if (s.has_bfd()) b.bfd = bfdName(s.bfd());
    b.last_error = logSafe(s.last_error(), 256);
    out.push_back(std::move(b));
  }
  return out;
}

}  // namespace flowlb::controller

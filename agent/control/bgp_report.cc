#include "agent/control/bgp_report.h"

#include <algorithm>

namespace flowlb::agent {
namespace {

BgpSessionReport::State stateOf(bgp::State s) {
  switch (s) {
    case bgp::State::kIdle: return BgpSessionReport::State::kIdle;
    case bgp::State::kConnect: return BgpSessionReport::State::kConnect;
    case bgp::State::kOpenSent: return BgpSessionReport::State::kOpenSent;
    case bgp::State::kOpenConfirm: return BgpSessionReport::State::kOpenConfirm;
    case bgp::State::kEstablished: return BgpSessionReport::State::kEstablished;
  }
  return BgpSessionReport::State::kIdle;
}

BgpSessionReport::Bfd bfdOf(bfd::State s) {
  switch (s) {
    case bfd::State::kAdminDown: return BgpSessionReport::Bfd::kAdminDown;
    case bfd::State::kDown: return BgpSessionReport::Bfd::kDown;
    case bfd::State::kInit: return BgpSessionReport::Bfd::kInit;
    case bfd::State::kUp: return BgpSessionReport::Bfd::kUp;
  }
  return BgpSessionReport::Bfd::kDown;
}

}  // namespace

std::vector<BgpSessionReport> bgpSessionReports(const bgp::SpeakerStatus& status,
                                                const std::vector<BgpSessionReport>& previous,
                                                uint64_t now_unix_ms) {
  std::vector<BgpSessionReport> out;
  out.reserve(status.peers.size());
  for (const bgp::PeerStatus& p : status.peers) {
    BgpSessionReport r;
    r.peer = p.name;
    r.state = stateOf(p.session.state);
    r.routes_advertised = p.session.routes_advertised;
    r.routes_received = p.session.routes_received;
    r.flaps = p.flaps;
    r.established_count = p.session.established_transitions;
    if (p.bfd_enabled) r.bfd = bfdOf(p.bfd_state);
    r.last_error = p.session.last_error.substr(0, 256);
    r.since_unix_ms = now_unix_ms;
    for (const BgpSessionReport& old : previous) {
      if (old.peer == r.peer && old.state == r.state && old.bfd == r.bfd) {
        r.since_unix_ms = old.since_unix_ms;
      }
    }
    out.push_back(std::move(r));
  }
  std::sort(out.begin(), out.end(),
            [](const BgpSessionReport& a, const BgpSessionReport& b) { return a.peer < b.peer; });
  return out;
}

}  // namespace flowlb::agent

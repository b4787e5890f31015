// The BGP sessions as the agent reports them to the controller
// (Report.bgp_sessions): the speaker's status (bgp/speaker.h) with, per
// session, the time it entered its state, kept from the previous report
// while the state holds. Pure.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "agent/announce/bgp/speaker.h"

namespace flowlb::agent {

struct BgpSessionReport {
  enum class State { kIdle, kConnect, kOpenSent, kOpenConfirm, kEstablished };
  enum class Bfd { kAdminDown, kDown, kInit, kUp };
  std::string peer;
  State state = State::kIdle;
  uint64_t since_unix_ms = 0;
  uint64_t routes_advertised = 0;
  uint64_t routes_received = 0;
  uint64_t flaps = 0;
  uint64_t established_count = 0;
  std::optional<Bfd> bfd;  // unset: BFD off
  std::string last_error;
  bool operator==(const BgpSessionReport&) const = default;
};

// Sorted by peer. A session whose state (or BFD state) is the one in
// `previous` keeps its since_unix_ms; any other gets `now_unix_ms`.
std::vector<BgpSessionReport> bgpSessionReports(const bgp::SpeakerStatus& status,
                                                const std::vector<BgpSessionReport>& previous,
                                                uint64_t now_unix_ms);

}  // namespace flowlb::agent

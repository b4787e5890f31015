// Report.bgp_sessions as the controller reads it: bounded in count and in
// text, the agent's words sanitised for logs and the API. The node is the
// session's authenticated identity; the server fills it in.
#pragma once

#include <vector>

#include "controller/bgp/peer_status.h"
#include "flowlb/v1/sync.pb.h"

namespace flowlb::controller {

inline constexpr int kMaxBgpSessionsPerAgent = 256;

std::vector<BgpNodeSession> bgpSessionsOf(const flowlb::v1::Report& r);

}  // namespace flowlb::controller

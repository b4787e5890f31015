// The controller's BGP messages (DesiredState.bgp, Announcement.bgp) to the
// speaker's settings: the agent's edge of that part of the contract. A
// malformed peer is skipped and reported; the rest is used.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "agent/announce/bgp/config.h"
#include "flowlb/v1/sync.pb.h"

namespace flowlb::agent {

// `vips`: the VIPs announced in mode BGP, with their advertisements. Each
// BgpRouteAdvertisement becomes one bgp::Advertisement of that VIP alone;
// peer names this node does not have are dropped, and an advertisement
// left with none goes nowhere. Only VIPs listed here are announced
// (BgpSettings::only_advertised). Each peer's BFD timers become a profile
// named after the peer.
bgp::BgpSettings convertBgp(const flowlb::v1::BgpConfig& config,
                            const std::vector<std::pair<IpAddr, flowlb::v1::BgpAnnouncement>>& vips,
                            std::vector<std::string>* problems);

}  // namespace flowlb::agent

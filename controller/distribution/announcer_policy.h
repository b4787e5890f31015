// Who announces each VIP: the one place this is decided (the reconciler
// only names the candidates, the gRPC server only carries the result).
//
// A pure function of the candidates (ready nodes; with
// externalTrafficPolicy: Local, nodes with a ready local endpoint), the
// agents that can announce now (connected, healthy, L2-capable) and the
// previous assignment:
//   1. Sticky: a VIP keeps its announcer while that node stays a candidate
//      and its agent stays live; moving a VIP cuts the NAT flows through
//      its node, so it moves only when it must. While the distribution is
//      settling (just started or just became leader, agents still
//      reconnecting) the previous announcer is kept even if its agent is not
//      back yet, so a restart does not herd every VIP onto the first agent
//      that reconnects; but not if its agent came back during the settling
//      and went again (`lost`): that is a failure, and its VIPs move at once.
//   2. Otherwise rendezvous hashing over the live candidates: VIPs spread
//      over nodes, and a node's loss moves only its own VIPs.
//   3. No live candidate: rendezvous over all candidates, a nominal
//      announcer that announces as soon as its agent connects ("" when there
//      is no candidate at all).
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/ip_addr.h"

namespace flowlb::controller {

struct VipCandidates {
  IpAddr vip;
  // Sorted. Shared: most VIPs have every ready node as candidates, and one
  // list serves them all.
  std::shared_ptr<const std::vector<std::string>> candidates;
  static VipCandidates of(const IpAddr& vip, std::vector<std::string> candidates) {
    return {vip, std::make_shared<const std::vector<std::string>>(std::move(candidates))};
  }
  bool operator==(const VipCandidates& o) const {
    return vip == o.vip && (candidates == o.candidates || *candidates == *o.candidates);
  }
};

using AnnouncerMap = std::map<IpAddr, std::string>;

// Rendezvous hashing: the candidate with the highest hash of (VIP, node).
std::string rendezvous(const IpAddr& vip, const std::vector<std::string>& candidates);

AnnouncerMap assignAnnouncers(const std::vector<VipCandidates>& vips,
                              const std::set<std::string>& live, const AnnouncerMap& previous,
                              bool settling, const std::set<std::string>& lost = {});

}  // namespace flowlb::controller

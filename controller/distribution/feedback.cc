#include "controller/distribution/feedback.h"

#include <algorithm>

namespace flowlb::controller {

std::string serviceKeyOf(const std::string& k) {
  const auto first = k.find('/');
  if (first == std::string::npos) return k;
  const auto second = k.find('/', first + 1);
  return second == std::string::npos ? k : k.substr(0, second);
}

std::map<std::string, ServiceFeedback> serviceFeedback(const View& view,
                                                       const std::set<std::string>& live,
                                                       bool announcers_known,
                                                       const std::vector<AgentReport>& agents) {
  std::map<std::string, ServiceFeedback> out;
  int nodes = 0;
  bool any_ack = false;
  for (const AgentReport& a : agents) {
    if (!view.runs(a.node)) continue;
    ++nodes;
    any_ack |= a.acked;
  }
  std::map<IpAddr, std::string> announcer;
  for (const AnnouncerEntry& a : view.announcers) {
    announcer[a.vip] = live.count(a.node) ? a.node : "";
  }
  for (const auto& e : view.services) {
    const DesiredService& d = e->service();
    ServiceFeedback& f = out[serviceKeyOf(d.key)];
    f.announcers_known = announcers_known;
    f.programmed_known = any_ack;
    f.nodes = nodes;
    auto a = announcer.find(d.vip);
    const std::pair<IpAddr, std::string> entry{d.vip, a == announcer.end() ? "" : a->second};
    if (std::find(f.announcers.begin(), f.announcers.end(), entry) == f.announcers.end()) {
      f.announcers.push_back(entry);
    }
  }
  for (const AgentReport& a : agents) {
    if (!view.runs(a.node) || !a.acked) continue;
    if (a.rejected) {
      for (auto& [key, f] : out) {
        f.failed.push_back(
            {a.node, "REJECTED", "the agent refused the whole state: " + a.reject_message});
      }
      continue;
    }
    for (const auto& [vs, why] : a.errors) {
      auto it = out.find(serviceKeyOf(vs));
      if (it == out.end()) continue;  // not in this view any more
      auto& failed = it->second.failed;
      if (std::none_of(failed.begin(), failed.end(),
                       [&](const ApplyFailure& x) { return x.node == a.node; })) {
        failed.push_back({a.node, why.first, why.second});
      }
    }
  }
  for (auto& [key, f] : out) {
    std::sort(f.announcers.begin(), f.announcers.end());
    std::sort(f.failed.begin(), f.failed.end(),
              [](const ApplyFailure& x, const ApplyFailure& y) { return x.node < y.node; });
  }
  return out;
}

BgpPeerSessions bgpPeerSessions(const View& view, const std::vector<AgentReport>& agents) {
  std::vector<std::string> known;
  std::vector<BgpNodeSession> sessions;
  if (view.bgp) {
    std::set<std::string> names;
    for (const auto& [node, peers] : view.bgp->peers_by_node) {
      for (const BgpPeerSpec& p : peers) names.insert(p.name);
    }
    known.assign(names.begin(), names.end());
    for (const AgentReport& a : agents) {
      const std::vector<BgpPeerSpec>* sent = view.bgp->peersOf(a.node);
      if (!sent) continue;
      for (const BgpNodeSession& s : a.bgp) {
        const bool ours = std::any_of(sent->begin(), sent->end(),
                                      [&](const BgpPeerSpec& p) { return p.name == s.peer; });
        if (ours) sessions.push_back(s);
      }
    }
  }
  return groupByPeer(sessions, known);
}

}  // namespace flowlb::controller

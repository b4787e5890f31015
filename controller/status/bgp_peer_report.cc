#include "controller/status/bgp_peer_report.h"

#include <spdlog/spdlog.h>

#include "common/log_safe.h"

namespace flowlb::controller {

void LogBgpStatusSink::want(const std::string& peer, const std::vector<BgpNodeSession>& sessions) {
  if (sessions.empty()) {
    spdlog::info("event=bgp_peer_status peer={} sessions=0", peer);
    return;
  }
  for (const BgpNodeSession& s : sessions) {
    spdlog::info(
        "event=bgp_peer_status peer={} node={} state={} bfd={} routes_advertised={} "
        "routes_received={} flaps={} last_error=\"{}\"",
        peer, s.node, s.state, s.bfd.empty() ? "off" : s.bfd, s.routes_advertised,
        s.routes_received, s.flaps, logSafe(s.last_error));
  }
}

BgpPeerReporter::BgpPeerReporter(EventRecorder* events, BgpStatusSink* sink,
                                 std::function<std::string(const std::string&)> uid_of,
                                 Clock* clock)
    : events_(events), sink_(sink), uid_of_(std::move(uid_of)), clock_(clock) {}

void BgpPeerReporter::resend() {
  std::lock_guard<std::mutex> lock(mu_);
  resend_ = true;
}

std::map<std::string, uint64_t> BgpPeerReporter::perState() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sessionsPerState(last_);
}

void BgpPeerReporter::update(const BgpPeerSessions& now) {
  const uint64_t now_ms = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(clock_->wallNow().time_since_epoch())
          .count());
  BgpPeerSessions last;
  bool resend;
  std::map<std::string, std::map<std::string, uint64_t>> first_seen;
  {
    std::lock_guard<std::mutex> lock(mu_);
    last = last_;
    resend = resend_;
    resend_ = false;
    last_ = now;
    std::map<std::string, std::map<std::string, uint64_t>> kept;
    for (const auto& [peer, sessions] : now) {
      for (const BgpNodeSession& s : sessions) {
        auto& seen = first_seen_[peer];
        auto it = seen.find(s.node);
        kept[peer][s.node] = it == seen.end() ? now_ms : it->second;
      }
    }
    first_seen_ = kept;  // sessions gone are forgotten
    first_seen = std::move(kept);
  }
  for (const auto& [peer, sessions] : now) {
    auto old = last.find(peer);
    if (resend || old == last.end() || old->second != sessions) sink_->want(peer, sessions);
    if (events_) {
      events_->observe(bgpPeerEventKey(peer), uid_of_ ? uid_of_(peer) : "", "bgp",
                       bgpPeerFacts(sessions, now_ms, first_seen[peer]));
    }
  }
  for (const auto& [peer, sessions] : last) {
    if (now.count(peer)) continue;
    // No node peers with it any more (or it was deleted: the write finds
    // no object and stops).
    if (!sessions.empty()) sink_->want(peer, {});
    if (events_) events_->forget(bgpPeerEventKey(peer), "bgp");
  }
}

}  // namespace flowlb::controller

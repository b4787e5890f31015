// Turns what the agents say about their BGP sessions into what users see
// on each BGPPeer: its status (per node: the session state, since when,
// routes, BFD, the last error) through a BgpStatusSink, and Events through
// the EventRecorder (SessionDown, SessionEstablished; deduplicated there).
// Called by the Sync server at every feedback refresh, on the leader.
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "common/clock.h"
#include "controller/bgp/peer_status.h"
#include "controller/status/event_recorder.h"

namespace flowlb::controller {

class BgpStatusSink {
 public:
  virtual ~BgpStatusSink() = default;
  // The peer's status should list `sessions` (sorted by node; empty: none).
  virtual void want(const std::string& peer, const std::vector<BgpNodeSession>& sessions) = 0;
};

// Directory mode: status changes become log lines (event=bgp_peer_status).
class LogBgpStatusSink final : public BgpStatusSink {
 public:
  void want(const std::string& peer, const std::vector<BgpNodeSession>& sessions) override;
};

class BgpPeerReporter {
 public:
  // `uid_of` gives a BGPPeer's metadata.uid ("" unknown).
  BgpPeerReporter(EventRecorder* events, BgpStatusSink* sink,
                  std::function<std::string(const std::string&)> uid_of,
                  Clock* clock = SystemClock::get());
  void update(const BgpPeerSessions& now);
  // Leadership changed or the peers were re-listed: every status is
  // wanted again at the next update.
  void resend();
  // The sessions per state at the last update (flowlb_controller_bgp_sessions).
  std::map<std::string, uint64_t> perState() const;

 private:
  EventRecorder* events_;
  BgpStatusSink* sink_;
  std::function<std::string(const std::string&)> uid_of_;
  Clock* clock_;
  mutable std::mutex mu_;
  BgpPeerSessions last_;
  // Per peer, per node: when this controller first saw the session (its
  // clock), for the grace of a session that never came up.
  std::map<std::string, std::map<std::string, uint64_t>> first_seen_;
  bool resend_ = true;
};

}  // namespace flowlb::controller

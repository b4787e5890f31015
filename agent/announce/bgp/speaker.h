// The BGP speaker of the agent: the edge that runs the pure sessions
// (session.h) and BFD state machines (bfd_session.h) over real sockets, on
// one thread with poll(). The main loop hands it settings and routes; it
// hands back a status snapshot for metrics, logs and the controller.
//
// Stopping (destruction): peers with graceful restart are left without a
// NOTIFICATION, so the router keeps our routes while the agent restarts
// (RFC 4724), and BFD falls silent after the close; the others get Cease /
// Administrative Shutdown, withdraw the routes at once, and BFD says
// AdminDown. A crash sends nothing: BFD (or the hold timer) detects it.
// BFD and graceful restart pull in opposite directions on a restart (BFD
// sees the agent go): docs/bgp.md says what each router does.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agent/announce/bgp/config.h"
#include "common/status.h"
#include "common/unique_fd.h"

namespace flowlb::agent::bgp {

struct PeerStatus {
  std::string name;
  IpAddr address;
  SessionStats session;
  uint64_t flaps = 0;  // times the session left Established
  bool bfd_enabled = false;
  bfd::State bfd_state = bfd::State::kDown;
  uint64_t bfd_downs = 0;  // Up -> Down transitions
  std::string bfd_last_diag;
};

struct SpeakerStatus {
  std::vector<PeerStatus> peers;
  uint64_t bfd_discarded = 0;  // wrong TTL, undecodable, or no session
  std::string bfd_error;       // why BFD cannot run here, if it cannot
};

class Speaker {
 public:
  static Result<std::unique_ptr<Speaker>> start();
  ~Speaker();
  Speaker(const Speaker&) = delete;
  Speaker& operator=(const Speaker&) = delete;

  // Peers added, changed (the session restarts) or removed (withdrawn).
  void configure(const BgpSettings& settings);
  // Routes per peer name (routes.h); peers not named get none.
  void setRoutes(std::map<std::string, RouteSet> routes);
  SpeakerStatus status() const;

 private:
  Speaker() = default;
  struct Loop;
  void wake();

  UniqueFd wake_fd_;       // eventfd: wakes the poll() thread
  mutable std::mutex mu_;  // guards the pending_* fields and status_
  bool pending_settings_set_ = false;
  BgpSettings pending_settings_;
  bool pending_routes_set_ = false;
  std::map<std::string, RouteSet> pending_routes_;
  SpeakerStatus status_;
  std::atomic<bool> stop_{false};
  std::unique_ptr<Loop> loop_;
  std::thread thread_;
};

}  // namespace flowlb::agent::bgp

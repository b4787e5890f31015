// The agent's started parts and what it does with them: the datapath, the
// metrics server, the health prober, the ARP/NDP announcer, the BGP speaker,
// readiness, and the controller link or the standalone file. It applies a
// desired state from the controller and acks it, reloads the standalone file
// (with this agent's health verdicts), reports or applies health verdicts,
// tells the controller when an announce interface lost its link, and
// refreshes the metrics. main.cc builds it from the flags and calls it from
// its poll loop; every method runs on that loop's thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/announce/bgp_announcement.h"
#include "agent/announce/l2_announcer.h"
#include "agent/control/controller_link.h"
#include "agent/control/flow_sync.h"
#include "agent/datapath/datapath.h"
#include "agent/health.h"
#include "agent/health/prober.h"
#include "agent/metrics.h"
#include "agent/source/config_file.h"
#include "agent/source/file_watch.h"
#include "common/status.h"

namespace flowlb::agent {

struct NodeAgentOptions {
  DatapathConfig datapath;       // its interfaces are the XDP interfaces
  std::string node;              // this node's name
  std::string interface_choice;  // how the interfaces were chosen (/readyz)
  std::string interface_source;  // flag | detected ("" is flag)
  std::string metrics_address;
  std::string poll_mode;  // shown in event=started
  std::string config;     // standalone: the file, watched; "" with a controller
  uint32_t health_max_targets = 20000;
  uint32_t health_max_in_flight = 256;
  // Called from the prober's thread when a backend's status changed; the
  // loop then calls onHealthChanged().
  std::function<void()> on_health_change;
};

// Milliseconds of the steady clock: flow sync's time.
uint32_t monotonicMs();

// Refused services are logged one line each; warnings too.
void logApplyReport(const ApplyReport& r, const std::vector<ServiceError>& refused);

class NodeAgent {
 public:
  // Starts every part and applies `initial` (the file's state, or with a
  // `link` the node-local settings). On failure it logs why (event=start
  // reason=..., event=config_rejected) and stops what it started.
  static Result<std::unique_ptr<NodeAgent>> start(const NodeAgentOptions& options,
                                                  const AgentConfigFile& initial,
                                                  std::unique_ptr<ControllerLink> link,
                                                  FlowSync* flow_sync);
  ~NodeAgent();
  NodeAgent(const NodeAgent&) = delete;
  NodeAgent& operator=(const NodeAgent&) = delete;

  void beat() { health_.beat(); }  // once per loop turn
  // The longest the loop may sleep for this agent's own chores: the file's
  // settle period while it settles, flow sync's batches.
  std::chrono::milliseconds longestSleep() const;
  // Waits up to `timeout_ms` for a kernel link/route/neighbour event, a
  // next-hop miss or a drain deadline, a change to the file, or `wake_fd`.
  void poll(int timeout_ms, int wake_fd);
  // Flow sync's chores (every 100 ms), with a controller: the flows the
  // workers shared go to the controller in batches, a dump when
  // `dump_requested` (set by the link's thread), and expired records go.
  void syncFlows(std::atomic<bool>& dump_requested);
  // With a controller: applies the state it sent, if any, and acks it.
  void applyFromController();
  // With a controller: reports the node unhealthy while an announce
  // interface has no link.
  void checkLinkHealth();
  // Standalone: reloads the file once a new version has settled; `sighup`
  // forces a reload (still after settling).
  void reloadFile(FileWatch::Clock::time_point now, bool sighup);
  // A backend's health changed: reported to the controller, or standalone
  // applied over the file's state.
  void onHealthChanged();
  // Once a second: counters and gauges, and the BGP sessions to the controller.
  void refreshMetrics();
  // Logs event=stopping and stops the parts: BGP before the datapath.
  void stop();

 private:
  NodeAgent(const NodeAgentOptions& options, const AgentConfigFile& initial,
            std::unique_ptr<ControllerLink> link, FlowSync* flow_sync);
  Status startParts(const AgentConfigFile& initial);
  Status startHealthChecks(const AgentConfigFile& initial);
  Status startAnnouncer(const AgentConfigFile& initial);
  void sendCapabilities();
  void applyReceived(const ReceivedState& next);
  void reportBackendHealth(const std::vector<health::TargetStatus>& statuses);
  void applyVerdicts();
  void teardown();

  NodeAgentOptions options_;
  AgentHealth health_;  // before the metrics server, which reads it
  std::unique_ptr<AgentMetrics> metrics_;
  std::unique_ptr<Datapath> dp_;
  std::unique_ptr<health::Prober> prober_;
  std::unique_ptr<L2Announcer> announcer_;
  BgpAnnouncement bgp_;
  std::unique_ptr<ControllerLink> link_;
  FlowSync* flow_sync_;  // with a controller and --nat-source=vip; not owned
  std::vector<std::string> announce_interfaces_;  // as started
  SnatConfig snat_;                               // with a controller: the node's
  // The standalone file: reloaded once a new version is complete and settled.
  std::optional<FileWatch> watch_;
  DesiredState file_desired_;  // standalone: the file's state, no verdicts
  SnatConfig file_snat_;       // ... and its source NAT, as last reloaded
  std::vector<ServiceError> file_refused_;
  DesiredState applied_desired_;  // standalone: with the verdicts applied
  bool healthy_ = true;
  std::chrono::system_clock::time_point last_update_wall_;  // for the metric: a timestamp
};

}  // namespace flowlb::agent

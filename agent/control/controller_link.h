// The agent's side of the control link: a gRPC client of the controller's
// Sync stream. It says hello (node, capabilities, last applied generation),
// receives desired states, hands the newest one to the agent's main loop
// (which applies it through the same path as a standalone file) and sends
// back what was applied. When the controller is unreachable or the stream
// breaks, nothing changes on the datapath (fail static): the link reconnects
// with jittered backoff and the controller resends the full state.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/control/bgp_report.h"
#include "agent/control/convert.h"
#include "agent/control/desired_view.h"
#include "agent/lb/service.h"
#include "common/status.h"

namespace flowlb::v1 {
class DesiredState;
}

namespace flowlb::agent {

// A client certificate and its key, PEM.
struct ClientIdentity {
  std::string cert_pem;
  std::string key_pem;
};

struct ControllerLinkOptions {
  std::string address;  // host:port
  bool plaintext = false;
  std::string tls_ca;  // PEM files; the server must be signed by tls_ca
  std::string tls_cert;
  std::string tls_key;
  // Instead of tls_cert/tls_key: asked before every new stream (the newest
  // certificate from the bootstrap, certificate_bootstrap.h); while it
  // returns null the link waits rather than connect without an identity.
  std::function<std::shared_ptr<const ClientIdentity>()> client_identity;
  std::string node_name;
  std::chrono::milliseconds keepalive_time{200};
  std::chrono::milliseconds keepalive_timeout{100};
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{5000};
  // Called from the link's thread when take() has a new state: the agent's
  // main loop sleeps until then (or until its own events) instead of polling.
  std::function<void()> on_state;
  // Flow sync (docs/flow-sync.md): set, the agent lists CAPABILITY_FLOW_SYNC
  // and these are called from the link's thread with what the controller
  // relays (records, the node they came from, whether a dump) and when it
  // asks for a dump (a node joined).
  std::function<void(const std::string& records, const std::string& origin, bool dump)>
      on_flow_sync;
  std::function<void(const std::string& for_node)> on_flow_sync_dump;
};

// What this agent can do, said in every Hello. Known once the datapath is
// up (how its sockets bound, how XDP attached): the link says Hello only
// after setCapabilities().
struct AgentCapabilities {
  bool l2_announcement = false;  // an announcer runs (announce interfaces)
  bool af_xdp_zero_copy = false;
  bool af_xdp_copy = false;
  bool xdp_native = false;
  bool xdp_generic = false;
  bool xdp_dispatcher = false;
  bool ipv6 = true;
  bool nat = true;
  bool dsr = true;
  uint32_t max_maglev_table_size = 0;
  uint64_t conntrack_capacity = 0;  // across all workers
};

// What the agent answers for one desired state.
struct AckReport {
  uint64_t generation = 0;
  bool applied = true;               // false: nothing applied, the previous state runs
  std::string error;                 // why, when not applied
  std::vector<ServiceError> errors;  // services refused alone (the rest applied)
  // The contract's MaglevFingerprint: the services whose table this
  // generation built (all of them after a FULL state).
  struct Fingerprint {
    std::string service;
    uint64_t fingerprint = 0;
    uint32_t table_size = 0;
    uint32_t backend_count = 0;  // backends holding at least one slot
  };
  std::vector<Fingerprint> fingerprints;
};

// One probed backend's status, as this agent's thresholds have it
// (the contract's BackendHealth).
struct BackendHealthReport {
  enum class Status { kUnknown, kHealthy, kUnhealthy };
  std::string service_key;
  std::string backend_key;
  Status status = Status::kUnknown;
  std::string detail;
};

class ControllerLink {
 public:
  static Result<std::unique_ptr<ControllerLink>> start(ControllerLinkOptions options,
                                                       uint64_t last_applied);
  ~ControllerLink();
  ControllerLink(const ControllerLink&) = delete;
  ControllerLink& operator=(const ControllerLink&) = delete;

  // The newest state received since the last call; older ones are skipped.
  std::optional<ReceivedState> take();
  // Waits up to `timeout` for a new state.
  bool wait(std::chrono::milliseconds timeout);
  void ack(const AckReport& report);
  // Streams wait for this before their Hello (the first call releases them);
  // a later call is said on the next stream.
  void setCapabilities(const AgentCapabilities& caps);
  // Whether this node can serve its VIPs (its announce interfaces are up).
  // Sent now and after every reconnect; the controller announces VIPs only
  // from healthy agents.
  void setHealthy(bool healthy, const std::string& why);
  // The status of every backend this agent probes: kept for every later
  // Report, and sent now in one.
  void setBackendHealth(std::vector<BackendHealthReport> health);
  // The BGP sessions' states: kept for every later Report, and sent now in
  // one when they differ from the last.
  void setBgpSessions(std::vector<BgpSessionReport> sessions);
  // Flow sync: shares a batch of this node's flows (FlowSyncBatch.records).
  // False when no stream is up (the batch is lost: flows it names are not
  // adopted elsewhere, as without sync).
  bool sendFlowSync(const std::string& records, bool dump);

  bool connected() const { return connected_.load(); }
  uint64_t resets() const { return resets_.load(); }

 private:
  ControllerLink() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::atomic<bool> connected_{false};
  std::atomic<uint64_t> resets_{0};
};

}  // namespace flowlb::agent

// The controller's side of the control link: a gRPC server for the Sync
// stream of proto/flowlb/v1, and nothing but the transport. What each node
// runs and who announces each VIP come from the distribution core
// (controller/distribution/); this server carries its views to the agents
// and their answers back.
//
// - Streams are callback reactors: an open stream costs no thread, so idle
//   or hostile connections cannot exhaust threads (issue 17.3). A stream
//   must say Hello within a deadline; streams are limited in total and per
//   source address; a Hello is checked in one place (hello.h).
// - Each agent has at most one state unacknowledged; changes meanwhile are
//   merged into the next. The first state on a stream is FULL; later ones
//   are INCREMENTAL (the upserts and removals since the state it
//   acknowledged) for agents that list CAPABILITY_INCREMENTAL_UPDATES, FULL
//   otherwise and after a rejection or a base mismatch.
// - Each service is encoded once per content and spliced into every
//   agent's message (proto_encode.h).
// - Only the leader serves: a follower answers NotLeader, naming the
//   leader's address when it knows it, and closes the stream; agents go
//   there directly (no reconnect storm through the Service).
// - Flow sync (docs/flow-sync.md): NAT flow records from an agent with
//   CAPABILITY_FLOW_SYNC are checked (flow_sync_hub.h) and relayed to the
//   other such agents that run their services, through a bounded queue per
//   agent; they never wait for a DesiredState's Ack, and a ready
//   DesiredState goes first.
#pragma once

#include <array>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "controller/bgp/peer_status.h"
#include "controller/distribution/distributor.h"
#include "controller/grpc/flow_sync_hub.h"
#include "controller/reconciler/reconciler.h"
#include "controller/status/wanted.h"

namespace grpc {
class Service;
}

namespace flowlb::controller {

struct SyncServerOptions {
  std::string address = "0.0.0.0:9443";
  bool plaintext = false;
  std::string tls_cert;  // PEM files; with tls_ca, agents must present a certificate it signed
  std::string tls_key;   // whose CN is the node of their Hello (controller/identity/)
  std::string tls_ca;
  // Instead of the files: PEM text (a self-issued certificate, a CA read from the API).
  std::string tls_cert_pem, tls_key_pem, tls_ca_pem;
  // More services on the same port, e.g. the certificate bootstrap: agents
  // reach it before they have a certificate, so TLS then requests client
  // certificates and the Sync handler requires them.
  std::vector<grpc::Service*> additional_services;
  // A dead peer is noticed after about time + timeout.
  std::chrono::milliseconds keepalive_time{200};
  std::chrono::milliseconds keepalive_timeout{100};
  // A stream that has not said Hello by then is closed.
  std::chrono::milliseconds hello_timeout{10000};
  int max_streams = 4096;
  int max_streams_per_source = 8;  // one agent per node; room for reconnects
  DistributionOptions distribution;
  // How many agents probe each backend of a Service with a health check
  // (DesiredState.health_probers; common/health_probers.h).
  uint32_t health_probers_per_backend = 3;
  // Flow sync: the rate each agent may send records at, its queue, the
  // window in which a new node gets dumps (flow_sync_hub.h).
  FlowSyncOptions flow_sync;
  // The leader's gRPC address for NotLeader ("" unknown), asked each time.
  std::function<std::string()> leader_address;
};

struct AgentStatus {
  std::string node;
  std::string peer;
  uint64_t sent_generation = 0;
  uint64_t acked_generation = 0;
  std::string last_error;
  double connected_seconds = 0;
  uint64_t bytes_sent = 0;
  bool incremental = false;  // the agent takes INCREMENTAL states
  // From its Hello: what the agent runs and can do.
  bool health_checks = false;  // CAPABILITY_HEALTH_CHECKS: a prober
  std::string agent_version;
  bool l2_announcement = false;
  uint64_t conntrack_capacity = 0;
  bool flow_sync = false;            // CAPABILITY_FLOW_SYNC
  uint64_t flow_records_queued = 0;  // other nodes' flow records queued for it
  uint64_t flow_dump_requests = 0;   // FlowSyncDumpRequests queued for it
};

struct SyncCounters {
  uint64_t stream_resets = 0;    // streams that ended
  uint64_t refused_streams = 0;  // over the total or per-source limit
  uint64_t hello_timeouts = 0;   // no Hello in time
  uint64_t hello_rejected = 0;   // Hello refused (hello.h)
  uint64_t not_leader = 0;       // streams told to go to the leader
  uint64_t states_full = 0;      // DesiredStates sent, by kind
  uint64_t states_incremental = 0;
  uint64_t bytes_sent = 0;                       // serialized DesiredState messages
  std::map<std::string, uint64_t> apply_errors;  // services agents could not apply, by code
  uint64_t services_not_programmed = 0;          // Services some agent could not apply
  // Health checks (controller/health/): backends down per Service
  // ("ns/name"; Services with none are left out), verdicts that changed.
  std::map<std::string, uint64_t> backends_unhealthy;
  uint64_t health_down = 0, health_up = 0;
  std::array<uint64_t, 3> health_statuses{};  // decided reports: unknown, healthy, unhealthy
  uint64_t maglev_agreeing = 0;               // VirtualServices two or more agents built alike
  uint64_t maglev_mismatches = 0;             // VirtualServices whose agents built different tables
  // Reports from probers received, and how many the last verdict had seen.
  uint64_t health_reports = 0, health_reports_decided = 0;
  FlowSyncCounters flow_sync;  // records relayed and refused, bytes
};

// What the agents said about Services (their announcers, what they could
// not apply), for the ones that changed since the last call.
using FeedbackListener = std::function<void(const std::map<std::string, ServiceFeedback>&)>;

// What the agents say about their BGP sessions, per BGPPeer (only the peers
// each node was sent), at every feedback refresh (at least every 10 s).
using BgpStatusListener = std::function<void(const BgpPeerSessions&)>;

class SyncServer {
 public:
  static Result<std::unique_ptr<SyncServer>> start(SyncServerOptions options,
                                                   std::function<bool()> is_leader);
  ~SyncServer();
  SyncServer(const SyncServer&) = delete;
  SyncServer& operator=(const SyncServer&) = delete;

  // The desired state of every node, from a reconcile.
  void publish(const Reconciled& r);
  // Where feedback goes (called from the server's own thread).
  void onFeedback(FeedbackListener listener);
  void onBgpStatus(BgpStatusListener listener);
  std::vector<AgentStatus> agents() const;
  uint64_t generation() const;
  uint64_t streamResets() const;
  SyncCounters counters() const;
  AnnouncerMap announcers() const;
  int port() const;
  // Waits until `done(agents())` holds, re-checking on every connect,
  // disconnect and acknowledgement (for tests and the benchmark); false on
  // timeout.
  bool waitFor(const std::function<bool(const std::vector<AgentStatus>&)>& done,
               std::chrono::milliseconds timeout) const;
  // The same for any condition on this server (counters, announcers).
  bool waitUntil(const std::function<bool()>& done, std::chrono::milliseconds timeout) const;

  struct Impl;  // opaque: gRPC and the streams (sync_server_impl.h)

 private:
  SyncServer() = default;
  std::shared_ptr<Impl> impl_;
};

}  // namespace flowlb::controller

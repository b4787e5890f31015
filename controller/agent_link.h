// The controller's end of the agents' link, assembled from its flags: the
// Sync server (controller/grpc/), how it authenticates (plaintext, TLS with
// or without client certificates: controller/identity/serving_tls.h), and,
// when the controller holds the CA key and talks to Kubernetes, the
// certificate bootstrap on the same port (identity/bootstrap_service.h with
// k8s/node_authorizer.h). Decides and logs once what the link trusts.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "controller/grpc/sync_server.h"
#include "controller/k8s/kubeconfig.h"

namespace flowlb::controller {

namespace k8s {
class ApiTelemetry;
}

struct AgentLinkFlags {
  std::string grpc_address = "0.0.0.0:9443";
  bool plaintext = false;
  std::string tls_cert, tls_key, tls_ca, tls_ca_key;
  std::string ca_secret;             // the CA in this Secret (generated there if empty)
  std::string ca_bundle_configmap;   // publish the CA certificate here for the agents
  std::string ns = "flowlb-system";  // of both
  std::vector<std::string> server_names;
  bool allow_unauthenticated_agents = false;
  std::chrono::seconds agent_cert_validity{std::chrono::hours(24)};
  std::chrono::seconds ca_validity{std::chrono::hours(24 * 3650)};
  std::string audience = "flowlb-controller";
  std::string agent_namespace = "flowlb-system";
  std::string agent_service_account = "flowlb-agent";
  // The Sync server's keepalives (a silent agent is taken for dead after
  // about the two) and stream limits.
  int keepalive_ms = 200;
  int keepalive_timeout_ms = 100;
  int max_streams = 4096;
  int max_streams_per_source = 8;                   // one agent per node; room for reconnects
  uint32_t health_probers_per_backend = 3;          // --health-probers-per-backend
  double flow_sync_max_records_per_second = 50000;  // --flow-sync-max-records-per-second
};

// Whether the flags ask for an agents' link at all (TLS or --plaintext).
bool agentLinkWanted(const AgentLinkFlags& f);
// A usage problem with the flags ("" when none): TLS without a client CA
// and without --allow-unauthenticated-agents, --tls-ca-key without --tls-ca.
std::string agentLinkUsageError(const AgentLinkFlags& f);

class AgentLink {
 public:
  // `cluster` (may be null: no certificate bootstrap) is where TokenReviews
  // go; `leader_address` (may be null) names the leader's gRPC address for
  // followers' NotLeader; `on_certificate` gets each bootstrap request's result.
  static Result<std::unique_ptr<AgentLink>> start(
      const AgentLinkFlags& f, const k8s::ClusterConfig* cluster, k8s::ApiTelemetry* telemetry,
      std::function<bool()> is_leader, std::function<std::string()> leader_address,
      std::function<void(std::string_view)> on_certificate);
  ~AgentLink();
  SyncServer* server() { return server_.get(); }

 private:
  AgentLink() = default;
  struct Bootstrap;
  std::unique_ptr<Bootstrap> bootstrap_;  // outlives the server that serves it
  std::unique_ptr<SyncServer> server_;
};

}  // namespace flowlb::controller

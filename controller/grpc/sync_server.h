// The controller's side of the control link: a gRPC server for the Sync
// stream of proto/flowlb/v1. Each connected agent gets its node's desired
// state as a FULL update with a generation, again whenever it changes
// (bursts coalesced by a short debounce), and acknowledges what it applied.
// The stream is the liveness signal: a VIP is announced by a connected
// agent, chosen among the reconciler's candidates by rendezvous hashing, and
// an agent's loss moves its VIPs to the others at once. Only the leader
// serves desired state; a follower answers NOT_LEADER and closes the stream.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "controller/reconciler/reconciler.h"

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
  std::chrono::milliseconds debounce{10};
  // A dead peer is noticed after about time + timeout.
  std::chrono::milliseconds keepalive_time{200};
  std::chrono::milliseconds keepalive_timeout{100};
};

struct AgentStatus {
  std::string node;
  std::string peer;
  uint64_t sent_generation = 0;
  uint64_t acked_generation = 0;
  std::string last_ack_error;
  double connected_seconds = 0;
};

class SyncServer {
 public:
  static Result<std::unique_ptr<SyncServer>> start(SyncServerOptions options,
                                                   std::function<bool()> is_leader);
  ~SyncServer();
  SyncServer(const SyncServer&) = delete;
  SyncServer& operator=(const SyncServer&) = delete;

  // The desired state of every node, from a reconcile.
  void publish(const Reconciled& r);
  std::vector<AgentStatus> agents() const;
  uint64_t generation() const;
  uint64_t streamResets() const;
  int port() const;

 private:
  SyncServer() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace flowlb::controller

// The controller's side of FlowlbBootstrap (proto/flowlb/v1/bootstrap.proto):
// signs an agent's certificate request for its node once the NodeAuthorizer
// has accepted the agent's ServiceAccount token for that node. Served on the
// Sync port (SyncServerOptions::additional_services); requests beyond a rate
// limit are refused with RESOURCE_EXHAUSTED so a flood of bad tokens cannot
// turn into a flood of TokenReviews.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string_view>

#include "common/pki.h"
#include "controller/identity/node_authorizer.h"

namespace grpc {
class Service;
}

namespace flowlb::controller {

struct BootstrapOptions {
  std::chrono::seconds validity{std::chrono::hours(24)};
  double qps = 20;  // requests per second on average, bursts of `burst`
  int burst = 50;
  // Each request's outcome: issued, unauthenticated, denied, invalid,
  // unavailable, throttled.
  std::function<void(std::string_view result)> on_result;
};

class BootstrapService {
 public:
  BootstrapService(pki::CertificateAuthority ca, NodeAuthorizer* authorizer,
                   BootstrapOptions options);
  ~BootstrapService();
  BootstrapService(const BootstrapService&) = delete;
  BootstrapService& operator=(const BootstrapService&) = delete;

  grpc::Service* service();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A Kubernetes object name (RFC 1123 subdomain: lowercase alphanumerics,
// '-' and '.', at most 253 characters, alphanumeric at both ends).
bool isKubernetesName(std::string_view s);

}  // namespace flowlb::controller

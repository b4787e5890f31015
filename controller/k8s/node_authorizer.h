// The Kubernetes proof behind a certificate bootstrap request (kubelet TLS
// bootstrap, in small): the agent's projected ServiceAccount token is sent
// to a TokenReview with our audience; the API server says whether it is
// valid, for which ServiceAccount, and which Pod it was issued to. The
// request is allowed only if that ServiceAccount is the agents' and that Pod
// (read back, same UID) runs on the node the certificate would name. So an
// agent, or anyone holding its token, can only ever get its own node's
// identity; a token from any other Pod, a deleted Pod or another audience
// gets nothing.
//
// API calls: create tokenreviews.authentication.k8s.io (cluster-wide), get
// pods in the agents' namespace.
#pragma once

#include <memory>
#include <string>

#include "controller/identity/node_authorizer.h"
#include "controller/k8s/api_client.h"

namespace flowlb::controller::k8s {

struct NodeAuthorizerOptions {
  std::string audience = "flowlb-controller";
  std::string agent_namespace = "flowlb-system";
  std::string agent_service_account = "flowlb-agent";
};

class KubeNodeAuthorizer : public NodeAuthorizer {
 public:
  KubeNodeAuthorizer(ApiClient* api, NodeAuthorizerOptions options);
  NodeAuthorization authorize(const std::string& token, const std::string& node) override;

 private:
  ApiClient* api_;
  NodeAuthorizerOptions opt_;
};

}  // namespace flowlb::controller::k8s

// Whether a certificate bootstrap request may have a certificate for a
// node: the seam between the bootstrap service (gRPC, the CA) and how the
// proof is checked (controller/k8s/node_authorizer.h asks the Kubernetes API
// with a TokenReview and a Pod read; tests pass fakes).
#pragma once

#include <string>

namespace flowlb::controller {

struct NodeAuthorization {
  enum class Verdict { kAllowed, kUnauthenticated, kDenied, kUnavailable };
  Verdict verdict = Verdict::kDenied;
  std::string reason;   // why not, in words an operator can act on
  std::string subject;  // who asked, e.g. "pod flowlb-system/flowlb-agent-x2kq9"
};

class NodeAuthorizer {
 public:
  virtual ~NodeAuthorizer() = default;
  // May block on the network; called from gRPC handler threads concurrently.
  virtual NodeAuthorization authorize(const std::string& token, const std::string& node) = 0;
};

}  // namespace flowlb::controller

// Who is at the other end of a Sync stream, and whether it may speak for
// the node its Hello names (issue 17, finding 1: a client holding any valid
// certificate said Hello as another node, got that node's state and cut its
// stream). With mutual TLS a peer must present a certificate from the
// agents' CA, and a certificate speaks for one node: the one in its CN
// (issued by the controller's certificate bootstrap, bootstrap.proto).
// Without a client CA (plaintext, or --allow-unauthenticated-agents) nobody
// is checked, and the controller said so loudly at start.
#pragma once

#include <grpcpp/grpcpp.h>

#include <string>

#include "common/log_safe.h"

namespace flowlb::controller {

// The CN of the peer's verified client certificate; "" when it showed none.
std::string peerCertificateName(const grpc::ServerContextBase& ctx);

// Before Hello: when certificates are required, a peer without one is
// refused (UNAUTHENTICATED) without reading anything from it.
grpc::Status admitPeer(bool require_certificate, const grpc::ServerContextBase& ctx);

// After Hello: when certificates are required, Hello.node_name must be the
// certificate's CN (PERMISSION_DENIED otherwise, logged with both names).
grpc::Status checkHelloNode(bool require_certificate, const grpc::ServerContextBase& ctx,
                            const std::string& hello_node);

}  // namespace flowlb::controller

#include "controller/identity/peer_identity.h"

#include <spdlog/spdlog.h>

namespace flowlb::controller {

std::string peerCertificateName(const grpc::ServerContextBase& ctx) {
  const auto auth = ctx.auth_context();
  if (!auth || !auth->IsPeerAuthenticated()) return "";
  const auto cn = auth->FindPropertyValues(GRPC_X509_CN_PROPERTY_NAME);
  if (cn.size() != 1) return "";
  return std::string(cn.front().data(), cn.front().size());
}

grpc::Status admitPeer(bool require_certificate, const grpc::ServerContextBase& ctx) {
  if (!require_certificate || !peerCertificateName(ctx).empty()) return grpc::Status::OK;
  spdlog::warn("event=agent_refused reason=no_client_certificate peer=\"{}\"",
               logSafe(ctx.peer(), 64));
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                      "a client certificate from the agents' CA is required (the agent gets one "
                      "through FlowlbBootstrap.IssueCertificate)");
}

grpc::Status checkHelloNode(bool require_certificate, const grpc::ServerContextBase& ctx,
                            const std::string& hello_node) {
  if (!require_certificate) return grpc::Status::OK;
  const std::string cn = peerCertificateName(ctx);
  if (cn == hello_node) return grpc::Status::OK;
  spdlog::warn(
      "event=agent_refused reason=identity_mismatch certificate=\"{}\" hello_node=\"{}\" "
      "peer=\"{}\"",
      logSafe(cn, 64), logSafe(hello_node, 64), logSafe(ctx.peer(), 64));
  return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "this certificate is for node '" +
                                                               logSafe(cn, 64) + "', not '" +
                                                               logSafe(hello_node, 64) + "'");
}

}  // namespace flowlb::controller
